// Child-side confinement and the confined spawn (see confine.h).
#include "mkernel/confine.h"

#include <fcntl.h>
#include <linux/mempolicy.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

// The child shares the parent's memory (CLONE_VM, see spawn_confined) only
// where it can make its system calls without libc: glibc's wrappers store
// errno in the calling thread's TLS, which such a child shares with the
// parent thread. Sanitizer runtimes do not expect a second task on a thread's
// stack and TLS either: those builds keep the copy-on-write child.
#if (defined(__x86_64__) || defined(__aarch64__)) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(__SANITIZE_THREAD__)
#define MK_SHARED_VM_SPAWN 1
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#undef MK_SHARED_VM_SPAWN
#endif
#endif
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

// How the child path makes a system call: Sys::call(nr, args...) returns the
// result, or -errno. LibcSys goes through syscall(3) (errno of the calling
// thread); RawSys traps directly and never touches errno or any other libc
// state, so it is safe in a child that shares the parent's memory and TLS.
struct LibcSys {
  static long call(long nr, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0) noexcept {
    long r = ::syscall(nr, a, b, c, d, e);
    return r < 0 ? -(errno ? errno : EIO) : r;
  }
};

#ifdef MK_SHARED_VM_SPAWN
struct RawSys {
  static long call(long nr, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0) noexcept {
#if defined(__x86_64__)
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
                     : "rcx", "r11", "memory");
    return ret;
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = nr;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4) : "memory");
    return x0;
#endif
  }
};
#endif

template <class Sys>
long sys_retry(long nr, long a = 0, long b = 0, long c = 0) noexcept {
  long r;
  do {
    r = Sys::call(nr, a, b, c);
  } while (r == -EINTR);
  return r;
}

template <class Sys>
int close_range_or_loop(unsigned first, unsigned last) noexcept {
  if (first > last) return 0;
  long r = Sys::call(SYS_close_range, first, last, 0);
  if (r == 0) return 0;
  if (r != -ENOSYS) return static_cast<int>(-r);
  for (unsigned fd = first; fd <= last && fd < 65536; ++fd) Sys::call(SYS_close, fd);
  return 0;
}

// Step 7: make the fd table exactly plan.fds (+ *keep_fd, moved above them).
// Returns 0 or the errno.
template <class Sys>
int arrange_fds(const ConfinePlan& plan, int* keep_fd) noexcept {
  int hi = plan.fd_ceiling;
  if (keep_fd && *keep_fd >= 0) {
    if (*keep_fd + 1 > hi) hi = *keep_fd + 1;
    long moved = Sys::call(SYS_fcntl, *keep_fd, F_DUPFD_CLOEXEC, hi);
    if (moved < 0) return static_cast<int>(-moved);
    *keep_fd = static_cast<int>(moved);
  }
  int staged[kMaxPlanFds];
  for (uint32_t i = 0; i < plan.nfds; ++i) {
    long r = Sys::call(SYS_fcntl, plan.fds[i].source, F_DUPFD_CLOEXEC, hi);
    if (r < 0) return static_cast<int>(-r);
    staged[i] = static_cast<int>(r);
  }
  for (uint32_t i = 0; i < plan.nfds; ++i) {
    // dup3 (dup2 without the old == new case, which staging rules out)
    // clears FD_CLOEXEC on the target: it survives execve.
    long r = Sys::call(SYS_dup3, staged[i], plan.fds[i].target, 0);
    if (r < 0) return static_cast<int>(-r);
  }
  // Close the gaps below hi (targets are sorted), then everything from hi up
  // except the kept fd (the error pipe, itself close-on-exec).
  unsigned next = 0;
  for (uint32_t i = 0; i < plan.nfds; ++i) {
    unsigned t = static_cast<unsigned>(plan.fds[i].target);
    if (t > next) close_range_or_loop<Sys>(next, t - 1);
    next = t + 1;
  }
  if (static_cast<unsigned>(hi) > next) close_range_or_loop<Sys>(next, static_cast<unsigned>(hi) - 1);
  if (keep_fd && *keep_fd >= 0) {
    close_range_or_loop<Sys>(static_cast<unsigned>(hi), static_cast<unsigned>(*keep_fd) - 1);
    close_range_or_loop<Sys>(static_cast<unsigned>(*keep_fd) + 1, ~0u);
  } else {
    close_range_or_loop<Sys>(static_cast<unsigned>(hi), ~0u);
  }
  return 0;
}

// The kernel's struct sigaction (rt_sigaction), the same layout on x86_64
// and arm64: handler, flags, restorer, a 64-bit mask.
struct KernelSigaction {
  unsigned long handler;
  unsigned long flags;
  unsigned long restorer;
  uint64_t mask;
};

// Steps 1-9 (see confine.h). Returns 0, or the errno with *failed set.
template <class Sys>
int confine(const ConfinePlan& plan, int* keep_fd, ConfineStep* failed) noexcept {
  auto fail = [&](ConfineStep s, long r) {
    *failed = s;
    return r < 0 ? static_cast<int>(-r) : EIO;
  };
  long r;
  // Every disposition to SIG_DFL (SIGKILL/SIGSTOP cannot be changed). Raw
  // rt_sigaction also resets the two signals glibc reserves for itself.
  KernelSigaction dfl{};  // handler 0 == SIG_DFL
  for (int sig = 1; sig <= 64; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    Sys::call(SYS_rt_sigaction, sig, reinterpret_cast<long>(&dfl), 0, sizeof dfl.mask);
  }
  uint64_t none = 0;
  if ((r = Sys::call(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&none), 0, sizeof none)) < 0)
    return fail(ConfineStep::kSignals, r);
  if ((r = Sys::call(SYS_setsid)) < 0) return fail(ConfineStep::kSetsid, r);
  for (uint32_t i = 0; i < plan.njoin; ++i) {
    if ((r = Sys::call(SYS_setns, plan.join_fd[i], plan.join_type[i])) < 0) return fail(ConfineStep::kJoinNs, r);
  }
  if (plan.in_mount_ns) {
    // Keep the instance's mounts (its /proc) from propagating to the host.
    if ((r = Sys::call(SYS_mount, 0, reinterpret_cast<long>("/"), 0, MS_REC | MS_PRIVATE, 0)) < 0)
      return fail(ConfineStep::kMountPrivate, r);
    if (plan.in_pid_ns &&
        (r = Sys::call(SYS_mount, reinterpret_cast<long>("proc"), reinterpret_cast<long>("/proc"),
                       reinterpret_cast<long>("proc"), MS_NOSUID | MS_NODEV | MS_NOEXEC, 0)) < 0)
      return fail(ConfineStep::kMountProc, r);
  }
  if (plan.in_uts_ns && plan.hostname_len > 0 &&
      (r = Sys::call(SYS_sethostname, reinterpret_cast<long>(plan.hostname), plan.hostname_len)) < 0)
    return fail(ConfineStep::kHostname, r);
  if ((r = Sys::call(SYS_sched_setaffinity, 0, plan.cpu_mask_bytes, reinterpret_cast<long>(plan.cpu_mask))) < 0)
    return fail(ConfineStep::kAffinity, r);
  if (plan.mempolicy &&
      (r = Sys::call(SYS_set_mempolicy, MPOL_BIND, reinterpret_cast<long>(plan.node_mask),
                     static_cast<long>(plan.node_max) + 1)) < 0)
    return fail(ConfineStep::kMempolicy, r);
  if (int e = arrange_fds<Sys>(plan, keep_fd)) return fail(ConfineStep::kFds, -e);
  // Raw syscalls, not glibc's setgroups/setresgid/setresuid: in a process
  // cloned from a multi-threaded parent, glibc still lists the parent's
  // threads and would try to broadcast the id change to them (its "setxid"
  // signal protocol) and wait forever for threads that do not exist here.
  if (plan.set_uid && (r = Sys::call(SYS_setgroups, 0, 0)) < 0) return fail(ConfineStep::kGroups, r);
  if (plan.set_gid && (r = Sys::call(SYS_setresgid, plan.gid, plan.gid, plan.gid)) < 0)
    return fail(ConfineStep::kGid, r);
  if (plan.set_uid && (r = Sys::call(SYS_setresuid, plan.uid, plan.uid, plan.uid)) < 0)
    return fail(ConfineStep::kUid, r);
  if (plan.no_new_privs && (r = Sys::call(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) < 0)
    return fail(ConfineStep::kNoNewPrivs, r);
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

// What the child runs between clone and execve. Only Sys system calls and
// plain memory reads of what the parent built before clone.
struct ChildArgs {
  const ConfinePlan* plan;
  int err_fd;
  int gate_fd;
  const char* path;
  char* const* argv;
  char* const* envp;
};

template <class Sys>
[[noreturn]] void child_main(const ChildArgs& a) noexcept {
  ConfineStep step = ConfineStep::kNone;
  int err_fd = a.err_fd;
  int e = 0;
  if (a.gate_fd >= 0) {
    // Wait for the parent's prepare step (cgroup attach, link moves). EOF
    // means the parent gave up; it normally kills us instead.
    char go = 0;
    long n = sys_retry<Sys>(SYS_read, a.gate_fd, reinterpret_cast<long>(&go), 1);
    Sys::call(SYS_close, a.gate_fd);
    if (n != 1) {
      e = ECANCELED;
      step = ConfineStep::kGate;
    }
  }
  if (e == 0) e = confine<Sys>(*a.plan, &err_fd, &step);
  if (e == 0) {
    long r = Sys::call(SYS_execve, reinterpret_cast<long>(a.path), reinterpret_cast<long>(a.argv),
                       reinterpret_cast<long>(a.envp));
    e = r < 0 ? static_cast<int>(-r) : EIO;
    step = ConfineStep::kExec;
  }
  ChildReport rep{static_cast<int32_t>(step), e};
  sys_retry<Sys>(SYS_write, err_fd, reinterpret_cast<long>(&rep), sizeof rep);
  for (;;) Sys::call(SYS_exit_group, 127);
}

#ifdef MK_SHARED_VM_SPAWN
int shared_vm_child(void* arg) { child_main<RawSys>(*static_cast<const ChildArgs*>(arg)); }

// The CLONE_VM child's stack (it must not run on the parent thread's).
// Unmapped only once the child can no longer be on it: it has exec'd (the
// error pipe hit EOF) or has been reaped.
constexpr std::size_t kChildStackBytes = 256 * 1024;
struct ChildStack {
  void* base = MAP_FAILED;
  ~ChildStack() {
    if (base != MAP_FAILED) ::munmap(base, kChildStackBytes);
  }
  void* top() const { return static_cast<char*>(base) + kChildStackBytes; }
};
#endif

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
    case ConfineStep::kJoinNs: return "setns";
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
  return confine<LibcSys>(plan, keep_fd, failed);
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

  if (opts.join.size() > 4)
    return MK_FAIL(EINVAL, "bad spawn request", "%zu namespaces to join, at most 4", opts.join.size());
  uint64_t joined = 0;
  for (const auto& j : opts.join) joined |= static_cast<uint64_t>(j.nstype);
  // The PID namespace is joined by this thread for the clone (pid_for_children),
  // then left again: opened first, so we can always come back.
  OwnedFd own_pidns;
  if (opts.join_pid_ns >= 0) {
    int fd = ::open("/proc/thread-self/ns/pid", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno_error("cannot open /proc/thread-self/ns/pid (our own PID namespace)");
    own_pidns.reset(fd);
    joined |= CLONE_NEWPID;
  }
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

  // The child reads `local`, av, ev and the strings behind them until it
  // execs: they live in this frame, which outlives the child's use of them.
  ConfinePlan local = plan;  // trivially copyable; carries the namespace bits
  ns &= ~joined;             // what is joined is never also created
  local.njoin = 0;
  for (const auto& j : opts.join) {
    local.join_fd[local.njoin] = j.fd;
    local.join_type[local.njoin] = j.nstype;
    ++local.njoin;
  }
  ChildArgs child_args{&local, wr.get(), gate_rd.get(), av[0], av.data(), ev.data()};
#ifdef MK_SHARED_VM_SPAWN
  // Declared before anything that can return early after clone, so it is
  // unmapped last: after the exec (error pipe EOF) or the reaping.
  ChildStack stack;
  stack.base = ::mmap(nullptr, kChildStackBytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
  if (stack.base == MAP_FAILED) return errno_error("cannot map the child's stack");
  if (::mprotect(stack.base, 4096, PROT_NONE) != 0) return errno_error("child stack guard page");
#endif
  int pidfd = -1;
  long pid = -1;
  for (int attempt = 0; attempt < 2; ++attempt) {
    local.in_pid_ns = ns & CLONE_NEWPID;
    local.in_mount_ns = ns & CLONE_NEWNS;
    local.in_uts_ns = ns & CLONE_NEWUTS;
    // Block every signal so no parent handler runs in the child before
    // confinement resets them (what posix_spawn does).
    sigset_t all, old;
    if (opts.join_pid_ns >= 0 && ::setns(opts.join_pid_ns, CLONE_NEWPID) != 0) {
      int e = errno;
      return MK_FAIL(e, "cannot join the PID namespace", "spawning '%s': setns(CLONE_NEWPID): %s%s", argv[0].c_str(),
                     std::strerror(e), e == EPERM ? " (needs root)" : "");
    }
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &old);
#ifdef MK_SHARED_VM_SPAWN
    // CLONE_VM: the child runs on its own stack in the parent's memory
    // until execve, like posix_spawn's vfork child but without suspending
    // the parent (it has to run prepare while the child waits at the gate).
    // No copy of the parent's page tables and no copy-on-write faults on
    // either side: on a 2-CPU VM a fork of the host cost ~1 ms in clone plus
    // TLB-shootdown IPIs on every page the host then wrote.
    pid = ::clone(&shared_vm_child, stack.top(), static_cast<int>(ns | CLONE_VM | CLONE_PIDFD | SIGCHLD),
                  &child_args, &pidfd);
#else
    CloneArgs ca{};
    ca.flags = ns | CLONE_PIDFD;
    ca.pidfd = reinterpret_cast<uint64_t>(&pidfd);
    ca.exit_signal = SIGCHLD;
    pid = ::syscall(SYS_clone3, &ca, sizeof ca);
    if (pid == 0) child_main<LibcSys>(child_args);
#endif
    int e = errno;
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (own_pidns && ::setns(own_pidns.get(), CLONE_NEWPID) != 0) {
      // Cannot happen for our own namespace; never leave this thread's
      // later children in the instance's namespace silently.
      int e2 = errno;
      if (pid > 0) {
        ::kill(static_cast<pid_t>(pid), SIGKILL);
        int status = 0;
        while (::waitpid(static_cast<pid_t>(pid), &status, 0) < 0 && errno == EINTR) {
        }
      }
      return MK_FAIL(e2, "cannot return to our PID namespace", "after spawning '%s': setns: %s", argv[0].c_str(),
                     std::strerror(e2));
    }
    if (pid > 0) break;
    if (ns != 0 && (e == EPERM || e == EINVAL || e == ENOSPC || e == EUSERS) &&
        opts.fallback_without_namespaces) {
      ns_why = std::string("no (kernel refused: ") + std::strerror(e) + ")";
      ns = 0;
      continue;
    }
    return MK_FAIL(e, "clone failed", "spawning '%s': %s", argv[0].c_str(), std::strerror(e));
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
    if (joined & flag) g.push_back({name, true, "yes (joined the running image's)"});
    else if (ns & flag) g.push_back({name, true, "yes"});
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
