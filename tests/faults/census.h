// What a failed operation could leak, counted over the whole machine: image
// processes, memfds of instances, the instances' cgroups, namespaces, and
// the daemon's fds. Two censuses taken around an injected failure must be
// equal (the fault matrix and the update storm, tests/faults).
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>

namespace {

struct Census {
  int images = 0;       // processes running mk-kernel
  int memfds = 0;       // distinct memfds held by any process
  int cgroups = 0;      // instance cgroups under cpuset/mkernel and memory/mkernel
  int namespaces = 0;   // distinct pid/mnt/net/uts/ipc namespaces of all processes
  int daemon_fds = 0;   // open fds of the daemon (pid given)

  bool operator==(const Census&) const = default;
  std::string str() const {
    std::ostringstream o;
    o << "{images " << images << ", memfds " << memfds << ", cgroups " << cgroups << ", namespaces " << namespaces
      << ", daemon fds " << daemon_fds << "}";
    return o.str();
  }
};

inline std::string link_of(const std::filesystem::path& p) {
  std::error_code ec;
  auto t = std::filesystem::read_symlink(p, ec);
  return ec ? std::string() : t.string();
}

inline Census take_census(pid_t daemon) {
  namespace fs = std::filesystem;
  Census c;
  std::set<std::pair<dev_t, ino_t>> memfds;
  std::set<std::string> ns;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string pid = e.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string exe = link_of(e.path() / "exe");
    if (exe.size() >= 10 && exe.find("/mk-kernel") != std::string::npos) ++c.images;
    for (const char* n : {"pid", "mnt", "net", "uts", "ipc"}) {
      std::string l = link_of(e.path() / "ns" / n);
      if (!l.empty()) ns.insert(l);
    }
    std::error_code fe;
    for (const auto& f : fs::directory_iterator(e.path() / "fd", fe)) {
      if (link_of(f.path()).rfind("/memfd:", 0) != 0) continue;
      struct stat st{};
      if (::stat(f.path().c_str(), &st) == 0) memfds.insert({st.st_dev, st.st_ino});
    }
  }
  c.memfds = static_cast<int>(memfds.size());
  c.namespaces = static_cast<int>(ns.size());
  for (const char* h : {"cpuset", "memory"}) {
    std::error_code ce;
    for (const auto& d : fs::directory_iterator(fs::path("/sys/fs/cgroup") / h / "mkernel", ce))
      c.cgroups += d.is_directory();
  }
  if (daemon > 0) {
    std::error_code de;
    for ([[maybe_unused]] const auto& f : fs::directory_iterator("/proc/" + std::to_string(daemon) + "/fd", de))
      ++c.daemon_fds;
  }
  return c;
}

}  // namespace
