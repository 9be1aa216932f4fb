// DOC: mk::move_cpu / mk::resize_cpus — moving CPUs between running
// instances, and growing or shrinking one (DESIGN.md §5 "staged update by
// core migration", §7 `mkctl cpu move`, `mkctl update NAME --cpus`).
//
// What this is: the host's side of the CPU consent handshake of
// mk/abi/control_messages.h (kMsgCpuRelease / kMsgCpuAdd), one CPU at a
// time, all or nothing:
//   release  the losing image is asked to give the CPU up (it stops its
//            per-CPU loop there and re-pins its own threads and its tenants
//            to the CPUs it keeps); it may refuse (its last CPU, an update
//            in progress): then nothing has changed;
//   cgroup   the loser's cpuset loses the CPU (v1 cpuset.cpus / v2
//            cpuset.cpus, InstanceCgroup::set_cpus), then the gainer's gains
//            it (the shared parent is widened first when the CPU comes from
//            the pool);
//   add      the gaining image is told: it re-pins its threads and tenants
//            to the grown set and starts a per-CPU loop there.
// On any failure the steps already done are undone in reverse order (the
// cgroups written back, the loser sent kMsgCpuAdd for the CPU it gave up),
// so both instances end as they began; the error names the failing step and
// what the undo did. No CPU is ever in two instances' cpusets at once: the
// loser's cpuset shrinks before the gainer's grows.
//
// A request that fails without the image's answer (ETIMEDOUT) may still have
// taken effect: its opposite is sent too when undoing (both are idempotent).
// The undo stops at its first failure (what follows depends on it, e.g. the
// loser's kMsgCpuAdd on its cpuset); the error then says what is left changed.
//
// resize_cpus releases the CPUs leaving first, then writes the cpuset once
// (the final set), then adds the new ones. When the old and the new set are
// disjoint the image would have to give up its last CPU first: then the
// cpuset grows to both, the new CPUs are added, the old ones released, and
// the cpuset shrinks to the new set. The shared parent is never narrowed.
//
// A side that is not running (holder.ep == nullptr) only changes on paper:
// the caller updates the partition (no cgroup writes, no messages, no
// steps). The caller (mkerneld) validates first
// with check_cpu_move / check_cpu_resize, then persists the partition; if
// persisting fails it calls the opposite move.
//
// Tenants follow: after the change, every thread in the instance's cgroup
// (or, without a cgroup, of the processes `pids` lists) is read back from
// /proc/<pid>/task/<tid>/status (Cpus_allowed_list, through the SysRoot).
// The image's own per-CPU loop threads (comm "mk-cpu<N>") and its pinned
// service threads (comm "mk-kv") must be within the set; every other thread
// must equal it. Those that do not are returned in not_following.
//
// Returns (move_cpu / resize_cpus): EINVAL/ENOENT/EBUSY from the checks;
// the image's refusal (-CpuReply::status, detail); ETIMEDOUT / ECONNRESET /
// EPROTO of a request; the cgroup write's errno (EINVAL, EACCES, ENOSPC).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ipi/endpoint.h"
#include "mk/abi/control_messages.h"
#include "mk/cpu_set.h"
#include "mk/result.h"
#include "mkernel/cgroup.h"
#include "mkernel/instance.h"
#include "mkernel/partition.h"
#include "mkernel/sysroot.h"
#include "mkernel/topology.h"

namespace mk {

// One instance taking part in a CPU change.
struct CpuHolder {
  uint32_t id = 0;                    // instance id: the image's peer id on `ep`
  std::string name;
  CpuSet cpus;                        // what it owns before the change
  ipi::Endpoint* ep = nullptr;        // its host endpoint; null: not running (paper only)
  InstanceCgroup* cgroup = nullptr;   // null: no cgroup (affinity alone)
  std::vector<pid_t> pids;            // without a cgroup: the processes whose threads are checked
};

struct CpuChangeOptions {
  std::chrono::milliseconds timeout{5000};  // per image request
  uint32_t op_id = 0;
  // Each step as it ends ("release CPU 1 from a", "cpuset of a", "add CPU 1
  // to b", "undo: ..."), with its duration.
  std::function<void(std::string_view step, double ms)> on_step;
  // Fault injection (tests, mkctl --fault): called before each step with its
  // name; an error fails that step as if it had failed by itself.
  std::function<Result<void>(std::string_view step)> inject;
};

// A thread whose allowed CPUs do not follow its instance's set.
struct StrayThread {
  pid_t tid = 0;
  std::string comm;
  CpuSet allowed;
};

struct CpuChangeResult {
  CpuSet from_cpus;  // move: the loser's CPUs after; resize: unused
  CpuSet cpus;       // move: the gainer's CPUs after; resize: the instance's
  std::vector<std::pair<std::string, double>> steps;  // name, ms
  double ms = 0;                                      // the whole change
  uint32_t threads_checked = 0;
  std::vector<StrayThread> not_following;
  // The change stands but something after it could not be checked (the
  // threads of an instance could not be read).
  std::vector<std::string> warnings;
};

// Validation against the partition and topology, no side effects.
// move: both instances exist and differ, the CPU exists, `from` owns it and
// has another one. Returns ENOENT (instance/CPU), EINVAL (same instance,
// not owned by `from`), EBUSY (it is `from`'s last CPU).
Result<void> check_cpu_move(const Topology& topo, const Partition& part, uint32_t cpu, std::string_view from,
                            std::string_view to);
// resize: non-empty, in the pool, every added CPU free (not another
// instance's). Returns ENOENT, EINVAL (empty, outside the pool), EBUSY
// (owned by another instance, named).
Result<void> check_cpu_resize(const Topology& topo, const Partition& part, std::string_view name,
                              const CpuSet& cpus);

Result<CpuChangeResult> move_cpu(const Topology& topo, const SysRoot& root, const CpuHolder& from,
                                 const CpuHolder& to, uint32_t cpu, const CpuChangeOptions& opts);

// Releases the CPUs leaving (one by one, each with consent), then adds the
// new ones; on failure everything done is undone.
Result<CpuChangeResult> resize_cpus(const Topology& topo, const SysRoot& root, const CpuHolder& target,
                                    const CpuSet& cpus, const CpuChangeOptions& opts);

// Threads of `holder` (its cgroup's tasks when it has a cgroup directory,
// else `pids`) whose allowed CPUs do not follow `cpus` (see above). Sets
// *checked (may be null) to the number of threads read; tasks that vanish
// while being read are skipped. Returns the errno of reading cgroup.procs,
// a task directory or status (not ENOENT/ESRCH), EPROTO for a status
// without Cpus_allowed_list.
Result<std::vector<StrayThread>> threads_not_following(const SysRoot& root, const CpuHolder& holder,
                                                       const CpuSet& cpus, uint32_t* checked);

// A restarted host making an image and its cgroup match `cpus` again for the
// CPUs in `touched` (an interrupted move): sets the cgroup to `cpus`, sends
// kMsgCpuRelease for touched CPUs not in `cpus` (before the cgroup shrinks)
// and kMsgCpuAdd for those in it (after it grows). Idempotent. Stops at the
// first failing step (the error names it; calling again is safe). Reconcile
// the instances losing CPUs before those gaining them (a v1 exclusive
// sibling still holding a CPU makes the gainer's write fail with EINVAL).
// holder.ep == nullptr: nothing to do.
Result<void> reconcile_cpus(const Topology& topo, const SysRoot& root, const CpuHolder& holder, const CpuSet& cpus,
                            const CpuSet& touched, const CpuChangeOptions& opts);

}  // namespace mk
