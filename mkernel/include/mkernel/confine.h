// DOC: mk::ConfinePlan and mk::spawn_confined — the child-side confinement of
// an instance process, applied between clone and execve (DESIGN.md §2, §3
// step 2).
//
// What this is: everything a new instance process must have before the first
// instruction of its image runs: CPU affinity to the instance's CPUs, a
// memory policy bound to its nodes, no_new_privs, an optional uid/gid, a
// hostname in its own UTS namespace, and an exact fd layout (fd 3 = boot
// tree, 4.. = regions, ... as manifest.h lists; every other fd closed).
// make_confine_plan() turns a ConfineSpec (allocating, validated in the
// parent) into a ConfinePlan: a plain fixed-size struct, so the child applies
// it without allocating or taking locks. That makes the child path safe
// after clone in a multi-threaded parent (mkerneld runs Asio threads).
// spawn_confined() clones (CLONE_PIDFD, plus new PID, mount, UTS, IPC and
// optionally network namespaces when root), applies the plan in the child
// and execs; an O_CLOEXEC error pipe carries a child-side failure (step +
// errno) back, so a failure before exec is never silent. On x86_64/arm64
// (no sanitizer) the clone shares the parent's memory (CLONE_VM, like
// posix_spawn's child, but the parent is not suspended: it runs prepare while
// the child waits at the gate): the child runs on a stack of its own and
// makes raw system calls only (no libc errno, which lives in the parent
// thread's TLS) until execve. That spares copying the host's page tables and
// the copy-on-write faults (with their TLB-shootdown IPIs) on both sides;
// elsewhere it is a copy-on-write clone3 child with the same steps.
//
// Place in the boot flow: `start`, after the regions, the boot-tree memfd and
// the device fds exist and the cgroup is created (cgroup.h); the returned pid
// is then attached to the cgroup and the pidfd watched for exit.
//
// Happy path (child, in this order):
//   0. with SpawnOptions::prepare: wait until the parent ran it (gate pipe).
//   1. signals: all dispositions to default, mask cleared (the parent blocks
//      every signal around clone so no parent handler runs in the child).
//   2. setsid (the instance outlives the daemon's session).
//   2b. with SpawnOptions::join: setns into each listed namespace (a live
//      update's successor joins the running image's mount, UTS, IPC and
//      network namespaces; it was cloned into its PID namespace, below).
//   3. with a mount namespace: "/" made recursively private; with a PID
//      namespace too: a fresh /proc for it.
//   4. sethostname (UTS namespace only).
//   5. sched_setaffinity(instance cpus); 6. set_mempolicy(MPOL_BIND, nodes).
//   7. fds: every source staged above all targets, dup2 to its target, every
//      other fd closed (close_range).
//   8. setgroups({}), setresgid, setresuid (when a uid/gid is configured).
//   9. prctl(PR_SET_NO_NEW_PRIVS); 10. execve.
//
// Unhappy paths:
//   1. Plan invalid (no cpus, duplicate fd target, source not open, hostname
//      longer than 64): make_confine_plan fails, nothing spawned.
//   2. Not root, or the kernel refuses the namespaces (EPERM/EINVAL in a
//      container) with fallback_without_namespaces: spawned without them; the
//      guarantees say "no (not root)" / "no (kernel refused: ...)".
//   3. prepare(pid) fails: the child is killed and reaped before it ran any
//      of its own code; that error is returned.
//   4. A child step fails: the child writes {step, errno} to the error pipe
//      and exits 127; spawn_confined reaps it and returns that errno with the
//      step name ("confined child failed: sched_setaffinity: Invalid argument").
//
// Returns: make_confine_plan: EINVAL, EBADF, E2BIG (more than kMaxPlanFds).
// spawn_confined: EINVAL (empty argv, more than 4 joins), setns's errno for
// join_pid_ns (EPERM not root, EINVAL not a PID namespace), what prepare returned, the child's errno (ENOENT for a
// missing image, EACCES, EINVAL, EPERM, ...), and errno of pipe/mmap/clone.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "mk/cpu_set.h"
#include "mk/result.h"
#include "mkernel/guarantee.h"
#include "mkernel/owned_fd.h"

namespace mk {

inline constexpr std::size_t kMaxPlanFds = 128;
inline constexpr uint32_t kMaxPlanNodes = 1024;
inline constexpr int kMaxPlanFdNumber = 65535;

struct FdMap {
  int source = -1;  // an fd open in the parent
  int target = -1;  // its number in the child
};

// Parent-side input, validated by make_confine_plan.
struct ConfineSpec {
  CpuSet cpus;                   // required
  std::vector<uint32_t> nodes;   // MPOL_BIND nodes; empty = leave the policy
  std::optional<uid_t> uid;      // setresuid (and setgroups({}) when set)
  std::optional<gid_t> gid;      // setresgid
  std::string hostname;          // applied only in a new UTS namespace
  std::vector<FdMap> fds;        // the child's complete fd table
  bool no_new_privs = true;
};

enum class ConfineStep : int32_t {
  kNone = 0,
  kSignals,
  kSetsid,
  kMountPrivate,
  kMountProc,
  kHostname,
  kAffinity,
  kMempolicy,
  kFds,
  kGroups,
  kGid,
  kUid,
  kNoNewPrivs,
  kExec,
  kGate,  // the parent's prepare step failed or went away
  kJoinNs,  // setns into a namespace of SpawnOptions::join
};
const char* to_string(ConfineStep s);

// Plain data: no pointers to the heap, safe to use after clone.
struct ConfinePlan {
  uint64_t cpu_mask[CpuSet::kMaxCpus / 64];
  uint32_t cpu_mask_bytes;
  unsigned long node_mask[kMaxPlanNodes / (8 * sizeof(unsigned long))];
  uint32_t node_max;  // maxnode argument of set_mempolicy
  bool mempolicy;
  bool no_new_privs;
  bool set_uid;
  bool set_gid;
  uint32_t uid;
  uint32_t gid;
  char hostname[65];
  uint32_t hostname_len;
  FdMap fds[kMaxPlanFds];  // sorted by target
  uint32_t nfds;
  int fd_ceiling;          // 1 + the largest source or target
  // Set by spawn_confined from the namespaces it actually got.
  bool in_uts_ns;
  bool in_mount_ns;
  bool in_pid_ns;
  // Set by spawn_confined from SpawnOptions::join (step 2b).
  int join_fd[4];
  int join_type[4];
  uint32_t njoin;
};

Result<ConfinePlan> make_confine_plan(const ConfineSpec& spec);

// Applies `plan` to the calling process, steps 1-9 above. Async-signal-safe:
// for use in a child after fork/clone. Returns 0, or the errno with *failed set
// to the failing step. Does not exec.
int apply_confinement(const ConfinePlan& plan, int* keep_fd, ConfineStep* failed) noexcept;

struct SpawnOptions {
  bool namespaces = true;                   // PID, mount, UTS, IPC when root
  bool net_namespace = false;               // + network (an instance with a net device)
  bool fallback_without_namespaces = true;  // not root / refused -> run without
  // Runs in the parent after clone, while the child waits at a gate before
  // its first confinement step: attach it to its cgroup, move net devices
  // into its namespace (open_netns(pid)), so the image never runs a single
  // instruction outside them. An error kills and reaps the child, and
  // spawn_confined returns that error.
  std::function<Result<void>(pid_t pid)> prepare;
  // Joining existing namespaces instead of creating them (a live update's
  // successor, mkernel/live_update.h). With join_pid_ns >= 0 (a pidfd, or an
  // fd of /proc/PID/ns/pid), the calling thread setns()es its
  // pid_for_children into that namespace right before clone and back to its
  // own (/proc/thread-self/ns/pid, opened first) right after: the child is
  // our child (wait status) inside the other namespace. `join` lists
  // setns(fd, nstype) calls the child makes after setsid (a pidfd with
  // CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWNET, or a namespace fd
  // with its own type); at most 4. Namespaces joined are not also created:
  // `namespaces`/`net_namespace` create only what is not joined (the caller
  // clears them), and a joined mount namespace is not remounted (its /proc
  // belongs to the joined PID namespace already). Needs root; a refused
  // setns is the child's kJoinNs failure (never a silent fallback).
  int join_pid_ns = -1;
  struct JoinNs {
    int fd = -1;
    int nstype = 0;  // CLONE_NEW* bits
  };
  std::vector<JoinNs> join;
};

struct SpawnedProcess {
  pid_t pid = -1;
  OwnedFd pidfd;
  uint64_t clone_flags = 0;  // the namespace flags actually used
  Guarantees guarantees;     // affinity, mempolicy, no_new_privs, uid, *ns
};

// argv[0] is the path executed. envp is the complete environment.
Result<SpawnedProcess> spawn_confined(const ConfinePlan& plan, const std::vector<std::string>& argv,
                                      const std::vector<std::string>& envp,
                                      const SpawnOptions& opts);

}  // namespace mk
