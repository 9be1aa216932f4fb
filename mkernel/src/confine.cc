// Child-side confinement and the confined spawn (see confine.h).
#include "mkernel/confine.h"

#include <fcntl.h>
#include <linux/mempolicy.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

namespace mk {
namespace {

// clone3's argument, version 0 (64 bytes); spelled here to avoid mixing
// <linux/sched.h> with glibc's <sched.h>.
struct CloneArgs {
  uint64_t flags;
  uint64_t pidfd;
  uint64_t child_tid;
  uint64_t parent_tid;
  uint64_t exit_signal;
  uint64_t stack;
  uint64_t stack_size;
  uint64_t tls;
};
static_assert(sizeof(CloneArgs) == 64);

struct ChildReport {
  int32_t step;
  int32_t errnum;
};

int close_range_or_loop(unsigned first, unsigned last) noexcept {
  if (first > last) return 0;
  if (::syscall(SYS_close_range, first, last, 0) == 0) return 0;
  if (errno != ENOSYS) return errno;
  for (unsigned fd = first; fd <= last && fd < 65536; ++fd) ::close(static_cast<int>(fd));
  return 0;
}

// Step 7: make the fd table exactly plan.fds (+ *keep_fd, moved above them).
int arrange_fds(const ConfinePlan& plan, int* keep_fd) noexcept {
  int hi = plan.fd_ceiling;
  if (keep_fd && *keep_fd >= 0) {
    if (*keep_fd + 1 > hi) hi = *keep_fd + 1;
    int moved = ::fcntl(*keep_fd, F_DUPFD_CLOEXEC, hi);
    if (moved < 0) return errno;
    *keep_fd = moved;
  }
  int staged[kMaxPlanFds];
  for (uint32_t i = 0; i < plan.nfds; ++i) {
    staged[i] = ::fcntl(plan.fds[i].source, F_DUPFD_CLOEXEC, hi);
    if (staged[i] < 0) return errno;
  }
  for (uint32_t i = 0; i < plan.nfds; ++i) {
    // dup2 clears FD_CLOEXEC on the target: it survives execve.
    if (::dup2(staged[i], plan.fds[i].target) < 0) return errno;
  }
  // Close the gaps below hi (targets are sorted), then everything from hi up
  // except the kept fd (the error pipe, itself close-on-exec).
  unsigned next = 0;
  for (uint32_t i = 0; i < plan.nfds; ++i) {
    unsigned t = static_cast<unsigned>(plan.fds[i].target);
    if (t > next) close_range_or_loop(next, t - 1);
    next = t + 1;
  }
  if (static_cast<unsigned>(hi) > next) close_range_or_loop(next, static_cast<unsigned>(hi) - 1);
  if (keep_fd && *keep_fd >= 0) {
    close_range_or_loop(static_cast<unsigned>(hi), static_cast<unsigned>(*keep_fd) - 1);
    close_range_or_loop(static_cast<unsigned>(*keep_fd) + 1, ~0u);
  } else {
    close_range_or_loop(static_cast<unsigned>(hi), ~0u);
  }
  return 0;
}

std::string cpus_of(const ConfinePlan& p) {
  CpuSet s;
  for (uint32_t i = 0; i < p.cpu_mask_bytes * 8; ++i)
    if (p.cpu_mask[i / 64] & (1ull << (i % 64))) s.insert(i);
  return s.to_string();
}

std::string nodes_of(const ConfinePlan& p) {
  CpuSet s;  // the same list syntax
  for (uint32_t i = 0; i < kMaxPlanNodes; ++i)
    if (p.node_mask[i / (8 * sizeof(unsigned long))] & (1ul << (i % (8 * sizeof(unsigned long)))))
      s.insert(i);
  return s.to_string();
}

[[noreturn]] void child_main(const ConfinePlan& plan, int err_fd, int gate_fd, const char* path,
                             char* const* argv, char* const* envp) noexcept {
  ConfineStep step = ConfineStep::kNone;
  int e = 0;
  if (gate_fd >= 0) {
    // Wait for the parent's prepare step (cgroup attach, link moves). EOF
    // means the parent gave up; it normally kills us instead.
    char go = 0;
    ssize_t n;
    do {
      n = ::read(gate_fd, &go, 1);
    } while (n < 0 && errno == EINTR);
    ::close(gate_fd);
    if (n != 1) {
      e = ECANCELED;
      step = ConfineStep::kGate;
    }
  }
  if (e == 0) e = apply_confinement(plan, &err_fd, &step);
  if (e == 0) {
    ::execve(path, argv, envp);
    e = errno;
    step = ConfineStep::kExec;
  }
  ChildReport rep{static_cast<int32_t>(step), e};
  ssize_t n;
  do {
    n = ::write(err_fd, &rep, sizeof rep);
  } while (n < 0 && errno == EINTR);
  ::_exit(127);
}

}  // namespace

const char* to_string(ConfineStep s) {
  switch (s) {
    case ConfineStep::kNone: return "none";
    case ConfineStep::kSignals: return "signals";
    case ConfineStep::kSetsid: return "setsid";
    case ConfineStep::kMountPrivate: return "mount-private";
    case ConfineStep::kMountProc: return "mount-proc";
    case ConfineStep::kHostname: return "sethostname";
    case ConfineStep::kAffinity: return "sched_setaffinity";
    case ConfineStep::kMempolicy: return "set_mempolicy";
    case ConfineStep::kFds: return "fd-layout";
    case ConfineStep::kGroups: return "setgroups";
    case ConfineStep::kGid: return "setresgid";
    case ConfineStep::kUid: return "setresuid";
    case ConfineStep::kNoNewPrivs: return "no_new_privs";
    case ConfineStep::kExec: return "execve";
    case ConfineStep::kGate: return "gate";
  }
  return "unknown";
}

Result<ConfinePlan> make_confine_plan(const ConfineSpec& spec) {
  ConfinePlan p{};
  if (spec.cpus.empty()) return MK_FAIL(EINVAL, "bad confine plan", "no cpus to confine to");
  for (uint32_t cpu : spec.cpus) {
    p.cpu_mask[cpu / 64] |= 1ull << (cpu % 64);
    p.cpu_mask_bytes = std::max<uint32_t>(p.cpu_mask_bytes, (cpu / 64 + 1) * 8);
  }
  for (uint32_t node : spec.nodes) {
    if (node >= kMaxPlanNodes)
      return MK_FAIL(EINVAL, "bad confine plan", "numa node %u out of range", node);
    constexpr uint32_t kBits = 8 * sizeof(unsigned long);
    p.node_mask[node / kBits] |= 1ul << (node % kBits);
    p.mempolicy = true;
  }
  p.node_max = kMaxPlanNodes;
  p.no_new_privs = spec.no_new_privs;
  if (spec.uid) {
    p.set_uid = true;
    p.uid = *spec.uid;
  }
  if (spec.gid) {
    p.set_gid = true;
    p.gid = *spec.gid;
  }
  if (spec.hostname.size() > 64)
    return MK_FAIL(EINVAL, "bad confine plan", "hostname '%s' longer than 64 bytes",
                   spec.hostname.c_str());
  std::memcpy(p.hostname, spec.hostname.data(), spec.hostname.size());
  p.hostname_len = static_cast<uint32_t>(spec.hostname.size());
  if (spec.fds.size() > kMaxPlanFds)
    return MK_FAIL(E2BIG, "bad confine plan", "%zu fds, at most %zu", spec.fds.size(), kMaxPlanFds);
  std::set<int> targets;
  int ceiling = 0;
  for (const FdMap& m : spec.fds) {
    if (m.target < 0 || m.target > kMaxPlanFdNumber)
      return MK_FAIL(EINVAL, "bad confine plan", "fd target %d out of range 0..%d", m.target,
                     kMaxPlanFdNumber);
    if (!targets.insert(m.target).second)
      return MK_FAIL(EINVAL, "bad confine plan", "fd %d is the target of two sources", m.target);
    if (m.source < 0 || ::fcntl(m.source, F_GETFD) < 0)
      return MK_FAIL(EBADF, "bad confine plan", "source fd %d (for child fd %d) is not open",
                     m.source, m.target);
    ceiling = std::max({ceiling, m.source + 1, m.target + 1});
  }
  std::vector<FdMap> sorted(spec.fds);
  std::sort(sorted.begin(), sorted.end(),
            [](const FdMap& a, const FdMap& b) { return a.target < b.target; });
  std::copy(sorted.begin(), sorted.end(), p.fds);
  p.nfds = static_cast<uint32_t>(sorted.size());
  p.fd_ceiling = ceiling;
  return p;
}

int apply_confinement(const ConfinePlan& plan, int* keep_fd, ConfineStep* failed) noexcept {
  auto fail = [&](ConfineStep s) {
    *failed = s;
    return errno ? errno : EIO;
  };
  struct sigaction dfl{};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    ::sigaction(sig, &dfl, nullptr);  // EINVAL for the reserved RT signals: fine
  }
  sigset_t none;
  sigemptyset(&none);
  if (::sigprocmask(SIG_SETMASK, &none, nullptr) != 0) return fail(ConfineStep::kSignals);
  if (::setsid() < 0) return fail(ConfineStep::kSetsid);
  if (plan.in_mount_ns) {
    // Keep the instance's mounts (its /proc) from propagating to the host.
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      return fail(ConfineStep::kMountPrivate);
    if (plan.in_pid_ns &&
        ::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
      return fail(ConfineStep::kMountProc);
  }
  if (plan.in_uts_ns && plan.hostname_len > 0 &&
      ::sethostname(plan.hostname, plan.hostname_len) != 0)
    return fail(ConfineStep::kHostname);
  if (::sched_setaffinity(0, plan.cpu_mask_bytes,
                          reinterpret_cast<const cpu_set_t*>(plan.cpu_mask)) != 0)
    return fail(ConfineStep::kAffinity);
  if (plan.mempolicy &&
      ::syscall(SYS_set_mempolicy, MPOL_BIND, plan.node_mask, plan.node_max + 1ul) != 0)
    return fail(ConfineStep::kMempolicy);
  if (int e = arrange_fds(plan, keep_fd)) {
    errno = e;
    return fail(ConfineStep::kFds);
  }
  // Raw syscalls, not glibc's setgroups/setresgid/setresuid: in a process
  // cloned from a multi-threaded parent, glibc still lists the parent's
  // threads and would try to broadcast the id change to them (its "setxid"
  // signal protocol) and wait forever for threads that do not exist here.
  if (plan.set_uid && ::syscall(SYS_setgroups, 0, nullptr) != 0) return fail(ConfineStep::kGroups);
  if (plan.set_gid && ::syscall(SYS_setresgid, plan.gid, plan.gid, plan.gid) != 0)
    return fail(ConfineStep::kGid);
  if (plan.set_uid && ::syscall(SYS_setresuid, plan.uid, plan.uid, plan.uid) != 0)
    return fail(ConfineStep::kUid);
  if (plan.no_new_privs && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return fail(ConfineStep::kNoNewPrivs);
  return 0;
}

Result<SpawnedProcess> spawn_confined(const ConfinePlan& plan, const std::vector<std::string>& argv,
                                      const std::vector<std::string>& envp,
                                      const SpawnOptions& opts) {
  if (argv.empty() || argv[0].empty())
    return MK_FAIL(EINVAL, "bad spawn request", "empty argv (argv[0] is the image path)");
  // Everything the child touches is built here, before clone.
  std::vector<char*> av, ev;
  for (const auto& a : argv) av.push_back(const_cast<char*>(a.c_str()));
  av.push_back(nullptr);
  for (const auto& e : envp) ev.push_back(const_cast<char*>(e.c_str()));
  ev.push_back(nullptr);

  const bool root = ::geteuid() == 0;
  uint64_t ns = 0;
  std::string ns_why;
  if (opts.namespaces || opts.net_namespace) {
    if (root) {
      if (opts.namespaces) ns |= CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC;
      if (opts.net_namespace) ns |= CLONE_NEWNET;
    } else if (opts.fallback_without_namespaces) {
      ns_why = "no (not root)";
    } else {
      return MK_FAIL(EPERM, "namespaces need root", "spawning '%s' with namespaces as uid %d",
                     argv[0].c_str(), static_cast<int>(::geteuid()));
    }
  } else {
    ns_why = "no (not requested)";
  }

  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return errno_error("cannot create error pipe");
  OwnedFd rd(pipefd[0]), wr(pipefd[1]);
  OwnedFd gate_rd, gate_wr;
  if (opts.prepare) {
    if (::pipe2(pipefd, O_CLOEXEC) != 0) return errno_error("cannot create gate pipe");
    gate_rd.reset(pipefd[0]);
    gate_wr.reset(pipefd[1]);
  }

  ConfinePlan local = plan;  // trivially copyable; carries the namespace bits
  int pidfd = -1;
  long pid = -1;
  for (int attempt = 0; attempt < 2; ++attempt) {
    local.in_pid_ns = ns & CLONE_NEWPID;
    local.in_mount_ns = ns & CLONE_NEWNS;
    local.in_uts_ns = ns & CLONE_NEWUTS;
    CloneArgs ca{};
    ca.flags = ns | CLONE_PIDFD;
    ca.pidfd = reinterpret_cast<uint64_t>(&pidfd);
    ca.exit_signal = SIGCHLD;
    // Block every signal so no parent handler runs in the child before
    // apply_confinement resets them (what posix_spawn does).
    sigset_t all, old;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &old);
    pid = ::syscall(SYS_clone3, &ca, sizeof ca);
    if (pid == 0) child_main(local, wr.get(), gate_rd.get(), av[0], av.data(), ev.data());
    int e = errno;
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (pid > 0) break;
    if (ns != 0 && (e == EPERM || e == EINVAL || e == ENOSPC || e == EUSERS) &&
        opts.fallback_without_namespaces) {
      ns_why = std::string("no (kernel refused: ") + std::strerror(e) + ")";
      ns = 0;
      continue;
    }
    return MK_FAIL(e, "clone3 failed", "spawning '%s': %s", argv[0].c_str(), std::strerror(e));
  }
  wr.reset();
  gate_rd.reset();
  SpawnedProcess out;
  out.pid = static_cast<pid_t>(pid);
  out.pidfd.reset(pidfd);
  out.clone_flags = ns;
  if (opts.prepare) {
    auto prepared = opts.prepare(out.pid);
    if (!prepared) {
      ::kill(out.pid, SIGKILL);
      int status = 0;
      while (::waitpid(out.pid, &status, 0) < 0 && errno == EINTR) {
      }
      return prepared.error();
    }
    char go = 'g';
    if (::write(gate_wr.get(), &go, 1) != 1) {
      int e = errno;
      ::kill(out.pid, SIGKILL);
      int status = 0;
      while (::waitpid(out.pid, &status, 0) < 0 && errno == EINTR) {
      }
      return MK_FAIL(e, "cannot release confined child", "%s: %s", argv[0].c_str(),
                     std::strerror(e));
    }
    gate_wr.reset();
  }

  ChildReport rep{};
  ssize_t n;
  do {
    n = ::read(rd.get(), &rep, sizeof rep);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof rep)) {
    int status = 0;
    while (::waitpid(out.pid, &status, 0) < 0 && errno == EINTR) {
    }
    const char* step = to_string(static_cast<ConfineStep>(rep.step));
    return MK_FAIL(rep.errnum, "confined child failed", "%s: step %s: %s", argv[0].c_str(), step,
                   std::strerror(rep.errnum));
  }

  Guarantees& g = out.guarantees;
  g.push_back({"affinity", true, "cpus " + cpus_of(plan)});
  g.push_back({"mempolicy", plan.mempolicy,
               plan.mempolicy ? "bind " + nodes_of(plan) : std::string("no (none requested)")});
  g.push_back({"no_new_privs", plan.no_new_privs, plan.no_new_privs ? "yes" : "no (disabled)"});
  g.push_back({"uid", plan.set_uid || plan.set_gid,
               plan.set_uid || plan.set_gid
                   ? "uid " + (plan.set_uid ? std::to_string(plan.uid) : std::string("-")) +
                         " gid " + (plan.set_gid ? std::to_string(plan.gid) : std::string("-"))
                   : "no (runs as uid " + std::to_string(::geteuid()) + ")"});
  auto nsg = [&](const char* name, uint64_t flag, bool wanted) {
    if (ns & flag) g.push_back({name, true, "yes"});
    else g.push_back({name, false, wanted && !ns_why.empty() ? ns_why : "no (not requested)"});
  };
  nsg("pidns", CLONE_NEWPID, opts.namespaces);
  nsg("mntns", CLONE_NEWNS, opts.namespaces);
  nsg("utsns", CLONE_NEWUTS, opts.namespaces);
  nsg("ipcns", CLONE_NEWIPC, opts.namespaces);
  nsg("netns", CLONE_NEWNET, opts.net_namespace);
  return out;
}

}  // namespace mk
