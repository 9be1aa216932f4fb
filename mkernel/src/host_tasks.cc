// Moving the host's other tasks off instance CPUs, and back (see
// host_tasks.h).
#include "mkernel/host_tasks.h"

#include <dirent.h>
#include <sched.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <sstream>

namespace mk {
namespace {

constexpr uint64_t kPfKthread = 0x00200000;        // PF_KTHREAD
constexpr uint64_t kPfNoSetaffinity = 0x04000000;  // PF_NO_SETAFFINITY

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::vector<pid_t> list_numeric(const SysRoot& root, const std::string& abs, int* err) {
  std::vector<pid_t> out;
  DIR* d = ::opendir(root.path(abs).c_str());
  if (!d) {
    if (err) *err = errno;
    return out;
  }
  while (dirent* e = ::readdir(d))
    if (all_digits(e->d_name)) out.push_back(static_cast<pid_t>(std::atol(e->d_name)));
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

struct TaskInfo {
  std::string comm;
  uint64_t flags = 0;
  uint64_t start_time = 0;
  CpuSet allowed;
};

// /proc/PID/task/TID/{stat,status}; false when the task is gone.
bool read_task(const SysRoot& root, const std::string& dir, TaskInfo& t) {
  auto stat = root.read_file(dir + "/stat", 8192);
  auto status = root.read_file(dir + "/status", 1 << 16);
  if (!stat || !status) return false;
  const std::size_t open = stat->find('('), close = stat->rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) return false;
  t.comm = stat->substr(open + 1, close - open - 1);
  std::istringstream rest(stat->substr(close + 1));
  std::vector<std::string> f;  // f[0] = field 3 (state)
  for (std::string x; rest >> x;) f.push_back(x);
  if (f.size() < 20) return false;
  t.flags = std::strtoull(f[6].c_str(), nullptr, 10);        // field 9
  t.start_time = std::strtoull(f[19].c_str(), nullptr, 10);  // field 22
  std::istringstream st(*status);
  for (std::string line; std::getline(st, line);) {
    if (line.rfind("Cpus_allowed_list:", 0) != 0) continue;
    std::string v = line.substr(std::strlen("Cpus_allowed_list:"));
    v.erase(0, v.find_first_not_of(" \t"));
    auto c = CpuSet::parse(v);
    if (!c) return false;
    t.allowed = *c;
    return true;
  }
  return false;
}

bool in_instance_cgroup(const SysRoot& root, const std::string& dir, const std::string& prefix) {
  if (prefix.empty()) return false;
  auto cg = root.read_file(dir + "/cgroup", 1 << 16);
  if (!cg) return false;
  std::istringstream in(*cg);
  for (std::string line; std::getline(in, line);) {
    // "N:controllers:/path"
    auto p = line.find(':', line.find(':') + 1);
    if (p == std::string::npos) continue;
    std::string path = line.substr(p + 1) + "/";
    if (path.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

}  // namespace

int sched_set_affinity(pid_t tid, const CpuSet& cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (uint32_t c : cpus)
    if (c < CPU_SETSIZE) CPU_SET(c, &set);
  return ::sched_setaffinity(tid, sizeof set, &set) == 0 ? 0 : errno;
}

Guarantee EvictReport::guarantee() const {
  std::string d = std::to_string(moved.size()) + " of " + std::to_string(on_cpus) + " host tasks moved off cpus " +
                  cpus.to_string() + " (" + std::to_string(scanned) + " scanned; " +
                  std::to_string(per_cpu_kthreads) + " per-cpu kernel threads left";
  if (confined) d += "; " + std::to_string(confined) + " pinned to instance cpus left";
  d += ")";
  if (!failed.empty()) {
    d += "; " + std::to_string(failed.size()) + " could not move:";
    for (std::size_t i = 0; i < failed.size(); ++i) {
      if (i == 6) {
        d += " ...";
        break;
      }
      d += (i ? ", " : " ") + std::to_string(failed[i].first) + " (" + failed[i].second + ")";
    }
  }
  return {"host tasks", moved.size() == on_cpus, d};
}

Guarantee host_tasks_not_requested() {
  return {"host tasks", false, "not moved off (not requested: mkctl start --evict-host-tasks)"};
}

Result<EvictReport> evict_host_tasks(const SysRoot& root, const EvictOptions& opts) {
  const SetAffinityFn set = opts.set_affinity ? opts.set_affinity : SetAffinityFn(sched_set_affinity);
  const CpuSet reserved = opts.reserved | opts.instance_cpus;
  EvictReport r;
  r.cpus = opts.instance_cpus;
  int err = 0;
  const auto pids = list_numeric(root, "/proc", &err);
  if (err != 0)
    return MK_FAIL(err, "cannot list tasks", "%s: %s", root.path("/proc").c_str(), std::strerror(err));
  for (pid_t pid : pids) {
    const bool instance_pid =
        std::find(opts.instance_pids.begin(), opts.instance_pids.end(), pid) != opts.instance_pids.end();
    const std::string pdir = "/proc/" + std::to_string(pid);
    for (pid_t tid : list_numeric(root, pdir + "/task", nullptr)) {
      const std::string dir = pdir + "/task/" + std::to_string(tid);
      TaskInfo t;
      if (!read_task(root, dir, t)) continue;  // gone
      ++r.scanned;
      if (!t.allowed.intersects(opts.instance_cpus)) continue;
      if (instance_pid || in_instance_cgroup(root, dir, opts.instance_cgroup)) continue;
      if ((t.flags & kPfKthread) && ((t.flags & kPfNoSetaffinity) || t.allowed.count() == 1)) {
        ++r.per_cpu_kthreads;
        continue;
      }
      const CpuSet want = t.allowed - reserved;
      if (want.empty()) {
        ++r.confined;
        continue;
      }
      ++r.on_cpus;
      const int e = set(tid, want);
      if (e == 0) {
        r.moved.push_back({pid, tid, t.start_time, t.allowed, want});
      } else if (e == ESRCH) {
        --r.on_cpus;  // exited meanwhile
      } else {
        r.failed.emplace_back(tid, t.comm + ": " + std::strerror(e));
      }
    }
  }
  return r;
}

RestoreReport restore_host_tasks(const SysRoot& root, const std::vector<MovedTask>& moved,
                                 const CpuSet& reserved, const SetAffinityFn& set_affinity) {
  RestoreReport r;
  const SetAffinityFn set = set_affinity ? set_affinity : SetAffinityFn(sched_set_affinity);
  for (const MovedTask& m : moved) {
    TaskInfo t;
    const std::string dir = "/proc/" + std::to_string(m.pid) + "/task/" + std::to_string(m.tid);
    if (!read_task(root, dir, t) || t.start_time != m.start_time || !(t.allowed == m.now)) {
      ++r.skipped;
      continue;
    }
    const CpuSet back = m.original - reserved;
    if (back.empty() || back == m.now) {
      ++r.skipped;
      continue;
    }
    if (set(m.tid, back) == 0) ++r.restored;
    else ++r.skipped;
  }
  return r;
}

}  // namespace mk
