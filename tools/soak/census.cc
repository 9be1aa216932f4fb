// The machine-wide leak census (see census.h).
#include "census.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <system_error>
#include <utility>

namespace mk::soak {
namespace {

namespace fs = std::filesystem;

std::string link_of(const fs::path& p) {
  std::error_code ec;
  auto t = fs::read_symlink(p, ec);
  return ec ? std::string() : t.string();
}

bool in_mkernel_cgroup(const fs::path& proc) {
  std::ifstream f(proc / "cgroup");
  for (std::string line; std::getline(f, line);)
    if (line.find(":/mkernel/") != std::string::npos) return true;
  return false;
}

bool is_namespace_link(const std::string& l) {
  for (const char* k : {"pid:[", "mnt:[", "net:[", "uts:[", "ipc:[", "user:[", "cgroup:[", "time:["})
    if (l.rfind(k, 0) == 0) return true;
  return false;
}

}  // namespace

std::string Census::str() const {
  std::ostringstream o;
  o << "{images " << images << ", memfds " << memfds << ", cgroups " << cgroups << ", namespaces " << namespaces
    << ", daemon fds " << daemon_fds << "}";
  return o.str();
}

Census take_census(pid_t daemon) {
  Census c;
  std::set<std::pair<dev_t, ino_t>> memfds;
  std::set<std::string> ns;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string pid = e.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string exe = link_of(e.path() / "exe");
    const bool image = exe.find("/mk-kernel") != std::string::npos;
    c.images += image;
    // The namespaces of instance processes (an image, its tenants: all in
    // an mkernel cgroup), and every namespace any process holds an fd to.
    // Not every process's: the machine's own sandboxes come and go.
    if (image || in_mkernel_cgroup(e.path())) {
      for (const char* n : {"pid", "mnt", "net", "uts", "ipc"}) {
        std::string l = link_of(e.path() / "ns" / n);
        if (!l.empty()) ns.insert(l);
      }
    }
    std::error_code fe;
    for (const auto& f : fs::directory_iterator(e.path() / "fd", fe)) {
      const std::string l = link_of(f.path());
      if (is_namespace_link(l)) ns.insert(l);
      if (l.rfind("/memfd:", 0) != 0) continue;
      struct stat st{};
      if (::stat(f.path().c_str(), &st) == 0) memfds.insert({st.st_dev, st.st_ino});
    }
  }
  c.memfds = static_cast<int>(memfds.size());
  c.namespaces = static_cast<int>(ns.size());
  for (const char* h : {"cpuset", "memory"}) {
    std::error_code ce;
    for (const auto& d : fs::directory_iterator(fs::path("/sys/fs/cgroup") / h / "mkernel", ce)) c.cgroups += d.is_directory();
  }
  if (daemon > 0) {
    std::error_code de;
    for ([[maybe_unused]] const auto& f : fs::directory_iterator("/proc/" + std::to_string(daemon) + "/fd", de))
      ++c.daemon_fds;
  }
  return c;
}

}  // namespace mk::soak
