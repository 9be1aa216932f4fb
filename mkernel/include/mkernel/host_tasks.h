// DOC: mk::evict_host_tasks — moving the host's other tasks off an
// instance's CPUs (`mkctl start --evict-host-tasks`, issue #7; see
// docs/isolation.md).
//
// What this is: a cpuset cgroup keeps an instance's tasks on its CPUs, but
// it does not keep the host's tasks off them (v1 cpu_exclusive only stops
// sibling cpusets from claiming the CPUs; the root cpuset's tasks still run
// everywhere). When asked, mkerneld walks /proc/PID/task/TID (through the
// injectable SysRoot) and narrows the affinity of every host task allowed on
// the instance's CPUs to the CPUs left once every running instance's are
// taken out. The original affinity of each task moved is returned so the
// daemon can give it back when the instance stops (restore_host_tasks).
//
// Place in the boot flow: mkerneld `start`, after the instance is ready,
// only with StartAction::evict_host_tasks; restore at stop/crash/delete.
//
// Happy path: every task whose Cpus_allowed_list meets `instance_cpus`, that
// is not an instance's (cgroup path under `instance_cgroup`, or pid listed),
// not a per-CPU kernel thread (PF_KTHREAD with PF_NO_SETAFFINITY or a single
// allowed CPU), and whose allowed set keeps a CPU outside `reserved`, gets
// `allowed - reserved` through the injectable set_affinity.
//
// Unhappy paths (counted, none fails the call):
//   1. EINVAL/EPERM from sched_setaffinity (a kernel thread the kernel keeps
//      where it is, a task of another user without CAP_SYS_NICE): "could not".
//   2. ESRCH: the task exited meanwhile: not counted.
//   3. A task allowed only on reserved CPUs (pinned there by someone): left,
//      counted as "confined to instance cpus".
//   4. /proc unreadable: an error (ENOENT/EACCES naming the path).
//
// Returns: evict_host_tasks: errno of listing /proc. restore_host_tasks:
// never fails (a task gone or re-pinned since is left alone; counted).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "mk/cpu_set.h"
#include "mk/result.h"
#include "mkernel/guarantee.h"
#include "mkernel/sysroot.h"

namespace mk {

// sched_setaffinity(tid, cpus): 0 or the errno. Injectable for tests.
using SetAffinityFn = std::function<int(pid_t tid, const CpuSet& cpus)>;
int sched_set_affinity(pid_t tid, const CpuSet& cpus);

struct EvictOptions {
  CpuSet instance_cpus;  // the CPUs to clear of host tasks
  CpuSet reserved;       // every running instance's CPUs (contains instance_cpus)
  // A task whose cgroup path (any line of /proc/PID/task/TID/cgroup) starts
  // with this is an instance's: "/mkernel/" (InstanceCgroup's parent).
  std::string instance_cgroup = "/mkernel/";
  std::vector<pid_t> instance_pids;  // processes of instances (no cgroup)
  SetAffinityFn set_affinity;        // default: sched_set_affinity
};

// One task moved: enough to give it its affinity back if it is still the
// same task (start time) and still where it was put.
struct MovedTask {
  pid_t pid = 0;  // its process (thread group)
  pid_t tid = 0;
  uint64_t start_time = 0;  // /proc/.../stat field 22
  CpuSet original;
  CpuSet now;
};

struct EvictReport {
  CpuSet cpus;
  std::size_t scanned = 0;          // tasks (threads) seen
  std::size_t on_cpus = 0;          // allowed on `cpus`, not an instance's
  std::size_t per_cpu_kthreads = 0; // left: kernel threads bound to one CPU
  std::size_t confined = 0;         // left: allowed only on instance CPUs
  std::vector<MovedTask> moved;
  std::vector<std::pair<pid_t, std::string>> failed;  // tid, "comm: errno text"
  // "host tasks": in force when nothing movable stayed (failures only
  // from kernel threads count as "could not").
  Guarantee guarantee() const;
};

Result<EvictReport> evict_host_tasks(const SysRoot& root, const EvictOptions& opts);

struct RestoreReport {
  std::size_t restored = 0;
  std::size_t skipped = 0;  // gone, reused tid, or re-pinned since
};
// Each task still the same (start time) and still at `now` gets `original`
// less `reserved` (the CPUs of the instances still running) back.
RestoreReport restore_host_tasks(const SysRoot& root, const std::vector<MovedTask>& moved,
                                 const CpuSet& reserved,
                                 const SetAffinityFn& set_affinity = sched_set_affinity);

// The "host tasks" line when eviction was not asked for.
Guarantee host_tasks_not_requested();

}  // namespace mk
