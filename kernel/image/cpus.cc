// cpus: the image's CPU set changes (cpus.h): release_cpu / add_cpu, and
// the re-pinning of the image's and its tenants' threads they share.
#include "cpus.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "mksdk/boot_info.h"

namespace mk::image {

namespace {

constexpr int kMaxPasses = 3;

// A small /proc file, whole ("" when it cannot be read: the task is gone).
std::string read_small(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

// The numeric entries of a /proc directory (pids, or tids of a task/).
std::vector<pid_t> numeric_entries(const std::string& dir) {
  std::vector<pid_t> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    char* end = nullptr;
    const long v = std::strtol(e->d_name, &end, 10);
    if (*end == '\0' && v > 0) out.push_back(static_cast<pid_t>(v));
  }
  ::closedir(d);
  return out;
}

// The ppid field of /proc/PID/stat: "pid (comm) S ppid ..." (comm may hold
// ") ", so the last ')' ends it). -1 when the process is gone.
pid_t ppid_of(pid_t pid) {
  const std::string s = read_small("/proc/" + std::to_string(pid) + "/stat");
  const auto rp = s.rfind(')');
  if (rp == std::string::npos || rp + 4 >= s.size()) return -1;
  return static_cast<pid_t>(std::strtol(s.c_str() + rp + 4, nullptr, 10));
}

// A process running `mk-kernel --reaper=FD` (reaper.h): what a live
// update leaves of the previous image when it was PID 1 or its tenants'
// parent.
bool runs_reaper(pid_t pid) {
  return pid != ::getpid() &&
         read_small("/proc/" + std::to_string(pid) + "/cmdline").find("--reaper=") != std::string::npos;
}

// The threads of the image that keep a CPU of their own: the per-CPU loops
// and the kv service (names: docs/sdk.md "Moving CPUs").
bool pinned_alone(pid_t tid) {
  std::string comm = read_small("/proc/self/task/" + std::to_string(tid) + "/comm");
  if (!comm.empty() && comm.back() == '\n') comm.pop_back();
  return comm.rfind("mk-cpu", 0) == 0 || comm == "mk-kv";
}

cpu_set_t set_of(const std::vector<BootCpu>& cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (const auto& c : cpus) CPU_SET(c.os_index, &set);
  return set;
}

// One re-pin of everything that follows the CPU set (cpus.h) to `set`.
class Pinner {
 public:
  explicit Pinner(const cpu_set_t& set) : set_(set) {}

  // Passes until one finds no thread not pinned yet (at most kMaxPasses).
  Result<void> run(const sdk::Tenants& tenants) {
    for (int pass = 0; pass < kMaxPasses; ++pass) {
      const std::size_t before = seen_.size();
      for (pid_t tid : numeric_entries("/proc/self/task")) {
        if (!pinned_alone(tid)) MK_TRY(pin(tid));
      }
      for (pid_t pid : tenant_processes(tenants)) {
        for (pid_t tid : numeric_entries("/proc/" + std::to_string(pid) + "/task")) MK_TRY(pin(tid));
      }
      if (seen_.size() == before) break;
    }
    return {};
  }
  std::uint32_t pinned() const { return pinned_; }

 private:
  Result<void> pin(pid_t tid) {
    if (!seen_.insert(tid).second) return {};
    if (::sched_setaffinity(tid, sizeof set_, &set_) == 0) {
      ++pinned_;
      return {};
    }
    if (errno == ESRCH) return {};  // ended meanwhile
    const int e = errno;
    return MK_FAIL(e, "re-pinning a thread", "sched_setaffinity of thread %d: %s", tid, std::strerror(e));
  }

  cpu_set_t set_;
  std::unordered_set<pid_t> seen_;
  std::uint32_t pinned_ = 0;
};

// Puts every thread back on `cpus` after a failed request (best effort:
// the reply carries the first error, not this one's).
void pin_back(const CpuContext& cx, const std::vector<BootCpu>& cpus) {
  Pinner back(set_of(cpus));
  (void)back.run(*cx.tenants);
}

void refuse(abi::CpuReply* r, int errnum, const char* detail) {
  r->status = -errnum;
  const std::size_t n = std::min(std::strlen(detail), sizeof r->detail - 1);
  std::memcpy(r->detail, detail, n);
  r->detail[n] = '\0';
}

void refuse(abi::CpuReply* r, const Error& e) { refuse(r, e.code(), e.message()); }

std::vector<BootCpu>::const_iterator find_cpu(const std::vector<BootCpu>& cpus, std::uint32_t os_index) {
  return std::find_if(cpus.begin(), cpus.end(), [&](const BootCpu& c) { return c.os_index == os_index; });
}

// Release steps 2-4 (cpus.h); `kept` is tree.cpus without the CPU.
Result<std::uint32_t> release(const CpuContext& cx, std::uint32_t cpu, const std::vector<BootCpu>& kept) {
  KvService* kv = cx.kv ? cx.kv->get() : nullptr;
  const bool move_kv = kv && kv->cpu() == cpu;
  if (move_kv) MK_TRY(kv->set_cpu(kept.front().os_index));
  Pinner p(set_of(kept));
  if (auto r = p.run(*cx.tenants); !r) {
    pin_back(cx, cx.tree->cpus);
    if (move_kv) (void)kv->set_cpu(cpu);
    return r.error();
  }
  // Last, and it cannot fail: joining a loop (ENOENT only when no loop ran
  // there, which leaves nothing to stop).
  (void)cx.loops->remove(cpu);
  return p.pinned();
}

// Add steps 2-3 (cpus.h); `grown` is tree.cpus with the CPU.
Result<std::uint32_t> add(const CpuContext& cx, const BootCpu& cpu, const std::vector<BootCpu>& grown) {
  Pinner p(set_of(grown));
  if (auto r = p.run(*cx.tenants); !r) {
    pin_back(cx, cx.tree->cpus);
    return r.error();
  }
  if (auto r = cx.loops->add(cpu); !r) {
    pin_back(cx, cx.tree->cpus);
    if (r.error().code() == EINVAL) {
      return MK_FAIL(EINVAL, "cpu not usable",
                     "cpu %u: the kernel does not let the instance run there; the host must grant it first",
                     cpu.os_index);
    }
    return r.error();
  }
  return p.pinned();
}

}  // namespace

std::vector<pid_t> tenant_processes(const sdk::Tenants& tenants) {
  std::vector<pid_t> out;
  std::vector<pid_t> todo;
  std::vector<pid_t> reapers;
  for (const auto& t : tenants.running_tenants()) {
    todo.push_back(t.pid);
    // An adopted tenant's parent: the previous image, now its reaper.
    if (const pid_t pp = t.adopted ? ppid_of(t.pid) : -1; pp > 1 && runs_reaper(pp)) reapers.push_back(pp);
  }
  if (!todo.empty()) {
    std::unordered_multimap<pid_t, pid_t> children;  // ppid -> pid
    for (pid_t pid : numeric_entries("/proc")) {
      const pid_t pp = ppid_of(pid);
      if (pp > 0) children.emplace(pp, pid);
    }
    std::unordered_set<pid_t> seen;
    while (!todo.empty()) {
      const pid_t pid = todo.back();
      todo.pop_back();
      if (!seen.insert(pid).second) continue;
      out.push_back(pid);
      const auto [first, last] = children.equal_range(pid);
      for (auto it = first; it != last; ++it) todo.push_back(it->second);
    }
  }
  if (runs_reaper(1)) reapers.push_back(1);
  for (pid_t r : reapers) {
    if (std::find(out.begin(), out.end(), r) == out.end()) out.push_back(r);
  }
  return out;
}

Result<std::uint32_t> repin_to(const BootTree& tree, const sdk::Tenants& tenants) {
  Pinner p(set_of(tree.cpus));
  MK_TRY(p.run(tenants));
  return p.pinned();
}

abi::CpuReply release_cpu(const CpuContext& cx, const abi::CpuMsg& m) {
  abi::CpuReply r{};
  std::vector<BootCpu>& cpus = cx.tree->cpus;
  const auto it = find_cpu(cpus, m.os_index);
  if (it == cpus.end()) {
    // Not held: nothing to do.
  } else if (cpus.size() == 1) {
    refuse(&r, MK_FAIL(EBUSY, "last cpu", "cpu %u is the instance's last CPU: it keeps one at least", m.os_index));
  } else {
    std::vector<BootCpu> kept = cpus;
    kept.erase(kept.begin() + (it - cpus.begin()));
    if (auto x = release(cx, m.os_index, kept); !x) {
      refuse(&r, x.error());
    } else {
      cpus = std::move(kept);
      r.changed = 1;
      r.threads_pinned = *x;
    }
  }
  r.cpus = static_cast<std::uint32_t>(cx.loops->size());
  return r;
}

abi::CpuReply add_cpu(const CpuContext& cx, const abi::CpuMsg& m) {
  abi::CpuReply r{};
  std::vector<BootCpu>& cpus = cx.tree->cpus;
  const BootCpu cpu{m.os_index, m.core, m.package, m.numa, m.kind, m.efficiency};
  if (find_cpu(cpus, m.os_index) != cpus.end()) {
    // Held already: nothing to do.
  } else if (m.os_index >= CPU_SETSIZE) {
    refuse(&r, MK_FAIL(EINVAL, "cpu out of range", "cpu %u >= %d: no such CPU", m.os_index, CPU_SETSIZE));
  } else {
    std::vector<BootCpu> grown = cpus;
    grown.insert(std::find_if(grown.begin(), grown.end(), [&](const BootCpu& c) { return c.os_index > m.os_index; }),
                 cpu);
    if (auto x = add(cx, cpu, grown); !x) {
      refuse(&r, x.error());
    } else {
      cpus = std::move(grown);
      r.changed = 1;
      r.threads_pinned = *x;
    }
  }
  r.cpus = static_cast<std::uint32_t>(cx.loops->size());
  return r;
}

abi::CpuReply serve_cpu(const CpuContext& cx, std::uint16_t type, const abi::CpuMsg& m, const CpuRefusal& no) {
  const std::uint64_t t0 = sdk::monotonic_ns();
  const bool release = type == abi::kMsgCpuRelease;
  abi::CpuReply r{};
  if (no.errnum != 0) {
    refuse(&r, no.errnum, no.detail);
    r.cpus = static_cast<std::uint32_t>(cx.loops->size());
  } else {
    r = release ? release_cpu(cx, m) : add_cpu(cx, m);
  }
  r.image_ns = sdk::monotonic_ns() - t0;
  const char* op = release ? "release" : "add";
  if (r.status != 0) {
    cx.con->print("mk-kernel: cpu %u %s refused (move %u): %s\n", m.os_index, op, m.op_id, r.detail);
  } else if (!r.changed) {
    cx.con->print("mk-kernel: cpu %u %s: nothing to do, %s (move %u)\n", m.os_index, op,
                  release ? "not held" : "held already", m.op_id);
  } else {
    cx.con->print("mk-kernel: cpu %u %s (move %u): %u loops, %u threads re-pinned\n", m.os_index,
                  release ? "released" : "added", m.op_id, r.cpus, r.threads_pinned);
  }
  return r;
}

}  // namespace mk::image
