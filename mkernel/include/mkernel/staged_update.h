// DOC: mk::staged_update — the host's side of a staged live update by core
// migration (DESIGN.md §5, `mkctl update NAME --kernel IMAGE --staged`).
//
// What this is: the second live-update mode. Instead of replacing the image
// on the same CPUs in one handover (live_update.h), the new image boots as a
// second image of the instance on CPUs of its own, the instance's parts
// move to it one handover at a time, each with its own short blackout, and
// the old image's CPUs follow as it drains:
//   1. cpu       the new image's CPUs: the spare CPUs given (the instance's
//                cgroup grows by them for the update), or the old image's
//                last CPU, which it gives up with consent (kMsgCpuRelease:
//                its loop there stops, its threads and tenants move off).
//   2. boot      the new image is booted parked on those CPUs, in the
//                instance's namespaces and cgroup (boot_successor with
//                SuccessorRequest::cpus), same instance id and name.
//   3. tenants   a handover of scope kUpdateScopeTenants: the new image
//                adopts the tenants (re-pinned to its CPUs) and reads their
//                exits from the reaper pipe; the old image, still their
//                parent, relays exits into it.
//   4. services  scope kUpdateScopeServices: services (kv), their listen
//                devices and client connections (pre-copied first, as in
//                the in-place update), file devices and the memory regions'
//                allocations.
//   5. peers     scope kUpdateScopePeers: the channels to other instances.
//   6. cpu N     per remaining CPU of the old image but its last: released
//                by the old image, added to the new one (kMsgCpuAdd).
//   7. retire    kMsgUpdateFinish without kUpdateFlagPartial: the old image
//                exits or stays as the reaper; its last CPU goes to the new
//                image; spare CPUs go back to the pool (the new image
//                releases them, the cgroup shrinks). The new image becomes
//                the instance's RunningInstance: one instance throughout,
//                same name and id.
// Steps 3-5 are handovers with a blackout each (freeze sent -> restore
// answered), measured and reported per step. Each step ends with a check
// that no CPU belongs to both images (every thread's Cpus_allowed_list of
// each image within its CPUs; StagedStep::check).
//
// Abort (a failing step, UpdateRequest-like fault injection, or
// StagedRequest::abort_requested returning true between steps): the step
// in flight is cancelled (the sender unfreezes, the receiver drops what it
// staged), then the completed steps run backwards: CPUs go back to the old
// image, and each part is handed back new -> old the same way (every image
// has a handover socket). If the new image is dead, the parts it held are
// restored to the old image from the packages the host holds (like the
// in-place update's rollback by booting again). Then the new image is
// killed and the spare CPUs returned: the old image runs with everything.
// Once the old image retired (step 7) the update is complete; what fails
// after it (returning a spare CPU) is reported, not rolled back.
//
// Returns: StagedOutcome (never throws; `current` is always the image that
// serves afterwards). cause codes: EBUSY (no spare CPU and the old image has
// only one), the CPU move's and the handover steps' codes (live_update.h),
// ECANCELED (aborted on request).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mk/cpu_set.h"
#include "mk/result.h"
#include "mkernel/boot.h"
#include "mkernel/sysroot.h"
#include "mkernel/topology.h"

namespace mk {

// Where a staged update stands (after each step): what a restarted host
// needs to undo it (abort_staged_update).
struct StagedProgress {
  CpuSet old_cpus, new_cpus;
  CpuSet spare_cpus;                 // added to the instance's cgroup for the update
  std::optional<uint32_t> taken_cpu;  // the old image's CPU the new image started on
  std::vector<uint32_t> cpus_moved;   // old -> new after the parts, in order
  uint32_t parts = 0;                 // scope bits the new image holds
  bool retired = false;               // the old image retired: the update is done
};

struct StagedRequest {
  ImageSpec image;                     // the new image (init ignored: tenants move)
  std::vector<PeerChannelFds> peers;   // the instance's peer channels (borrowed)
  CpuSet spare_cpus;                   // free pool CPUs (validated by the caller); empty: take one from the old image
  std::chrono::milliseconds timeout{10000};  // per request
  uint32_t update_id = 1;
  // Each step as it ends (also each abort step, prefixed "abort: ").
  std::function<void(const struct StagedStep&)> on_step;
  // Once the new image is READY and parked (the daemon's journal).
  std::function<void(const RuntimeRecord& next)> on_new_image;
  // Polled between steps and while waiting: true aborts the update.
  std::function<bool()> abort_requested;
  // Fault injection (tests, mkctl --fault): called before each step with its
  // name ("cpu", "boot", "tenants", "services", "peers", "cpu N", "retire");
  // an error fails that step.
  std::function<Result<void>(std::string_view step)> inject;
  // After each step, with where the update stands (the daemon's journal).
  std::function<void(const StagedProgress&)> on_progress;
  // Test hook: called after each step completed (a host that dies here).
  std::function<void(std::string_view step)> after_step;
  // Between dispatches while a request has waited 20 ms or more.
  std::function<void()> on_wait;
};

struct StagedStep {
  std::string name;               // "cpu", "boot", "tenants", ...
  std::string moved;              // what moved, for the user ("CPU 1", "2 tenants", ...)
  double ms = 0;                  // the whole step
  std::optional<double> blackout_ms;  // handover steps: freeze sent -> restore answered
  CpuSet old_cpus, new_cpus;      // after the step
  std::string check;              // "" = no CPU in both images; else what overlapped
};

struct StagedOutcome {
  bool updated = false;
  std::vector<StagedStep> steps;      // including abort steps
  std::optional<Error> cause;         // why it aborted
  std::string rollback;               // how ("" when updated)
  double total_ms = 0;
  std::optional<double> max_blackout_ms;
  // What did not go as it should without undoing the update (a spare CPU
  // not given back, a sender that did not acknowledge its finish).
  std::vector<std::string> warnings;
};

StagedOutcome staged_update(std::unique_ptr<RunningInstance>& current, const Topology& topo, const SysRoot& root,
                            const StagedRequest& req);

// A restarted host undoing a staged update a dead one left at `at`: the
// same abort as above, with `next` the new image re-adopted (null when it
// is gone: then the parts it held are lost, there are no held packages).
// `old` is the old image, re-adopted. Not for `at.retired` (then the new
// image is the instance: adopt it instead).
StagedOutcome abort_staged_update(std::unique_ptr<RunningInstance>& old, std::unique_ptr<RunningInstance> next,
                                  const StagedProgress& at, const Topology& topo, const SysRoot& root,
                                  const StagedRequest& req);

}  // namespace mk
