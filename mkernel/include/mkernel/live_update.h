// DOC: mk::live_update — the host's side of an in-place live update
// (DESIGN.md §5, `mkctl update`): pre-boot the successor, prepare, freeze,
// hand over, restore, finish — or roll back.
//
// What this is: the orchestration of one update of a running instance on its
// own CPUs, in the order of kexec -l / kexec -e with KHO:
//   1. boot      the successor image is spawned in the instance's cgroup and
//                namespaces (it joins the old image's PID, mount, UTS, IPC
//                and network namespaces), with the same memory regions, the
//                same console, a fresh host channel, the same sides of the
//                channels to other instances (attached only after the
//                handover) and a handover socket (boot tree
//                `mkernel,handover-socket`); it boots, sends READY and parks.
//                exec, dynamic loading, boot-tree parsing and region mapping
//                all happen here, outside the blackout.
//   2. prepare   kMsgUpdatePrepare to the old image: its handlers preserve.
//   3. freeze    kMsgUpdateFreeze: the old image pauses its services at a
//                request boundary, detaches its peer channel sides and writes
//                the handoff package (mk/abi/handoff.h). The blackout starts
//                when this request is sent.
//   4. transfer  the host copies the package and every fd it lists out of
//                the old image (pidfd_getfd; the host holds them from here
//                on) and sends them on the handover socket.
//   5. restore   kMsgHandover to the successor: it parses the blob, retrieves
//                its sessions, re-adopts the tenants, attaches the peer
//                channels and serves; its reply ends the blackout.
//   6. finish    kMsgUpdateFinish to the old image: it exits (or, as PID 1 of
//                the instance's PID namespace, or with tenants still its
//                children, execs the reaper and stays as their parent).
//                The successor becomes the instance's RunningInstance: it
//                takes over the cgroup, the regions, the network namespace,
//                the console and the namespace-init process.
// Unhappy paths (each ends with the instance running and nothing preserved
// lost; UpdateOutcome says which way it went and why):
//   1. The successor fails to boot (exits, no READY in time): it is killed,
//      the old image was never touched.
//   2. prepare refused or failed (the old image's handler said no, or it
//      timed out): kMsgUpdateCancel, the successor is killed; nothing changed.
//   3. The successor crashes, hangs past the timeout or refuses the package
//      (incompatible compatible, corrupt blob): it is killed and the old
//      image is told kMsgUpdateCancel (unfreeze: it resumes with every fd,
//      connection and byte of memory it had).
//   4. The old image is gone when the rollback needs it (died during
//      prepare or freeze): the old kernel image is booted again as a
//      successor and restored from the package the host holds (when the
//      freeze completed), else booted afresh on the same regions (its
//      service re-attaches the data in them).
//   5. The host itself dies mid-update: the daemon persisted the successor's
//      record (on_successor) and the phase; its restart calls
//      abort_update(): successor killed, old image unfrozen. Never half.
//
// How the host does it (boot.h boot_successor, confine.h SpawnOptions::join):
//   - the successor is the host's child (wait status) inside the instance's
//     PID namespace: the spawning thread setns()es its pid_for_children to
//     the old image's pidfd for the clone and back; the child joins the
//     mount/UTS/IPC/net namespaces with setns(pidfd) before exec. Only the
//     namespaces that differ from the host's are joined (none when not
//     root: then it is spawned as a normal image, minus new namespaces).
//   - the prepare gate attaches it to the instance's cgroup; its fd layout
//     is manifest.h's with file/listen/block devices at fd -1 and the
//     handover socket last; the console write end is copied from the old
//     image (pidfd_getfd at console_fd_of()), the host keeps the read end.
//   - the transfer copies the package memfd and every fd it lists with
//     pidfd_getfd and checks the package (parse_handoff_package) and its
//     blob (handover/kho_blob.h) before anything is sent: a bad package
//     from the old image is a rollback (cancel), never forwarded.
//   - finish: the old image exits (reaped when it is our child) or, as PID
//     1 of the namespace, stays as the reaper (its cmdline says --reaper):
//     it becomes the successor's RuntimeRecord::ns_init_pid, ended after
//     the image by kill()/shutdown()/release(). An old image that is not
//     PID 1 and neither exits nor becomes the reaper within the timeout is
//     killed (everything it had is handed over already).
//   - rollback by booting again: the image booted again joins the
//     namespaces of the reaper if one is alive (a later update), else gets
//     new ones (the old PID namespace died with its PID 1) joined to the
//     network namespace the host holds; it is parked and restored from the
//     held package when the freeze completed, else a normal boot with its
//     init on the same regions. It replaces `current`.
// UpdateOutcome::cause carries the failing step's error: ECHILD (the
// successor exited before READY), ETIMEDOUT (a step or READY timed out),
// ECONNRESET (an image died during a request), the image's own errno for a
// refused step (EPROTONOSUPPORT, EINVAL, ... with its detail), EBADMSG /
// EPROTONOSUPPORT / E2BIG (a bad package or blob from the old image),
// pidfd_getfd's errno (EPERM, EBADF), ESRCH (the successor did not survive
// the old image's exit: booted again from the held package).
//
// Fault injection (tests and `mkctl update --fault`, docs/handover.md): the
// image side takes `--fault=STEP` in the successor's cmdline
// (exit-at-boot, hang-at-handover, refuse-handover) or the old image's
// (die-in-prepare); the host side corrupts the package it forwards
// (UpdateRequest::corrupt_package).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mk/abi/handoff.h"
#include "mk/result.h"
#include "mkernel/boot.h"
#include "mkernel/handoff_package.h"
#include "mkernel/instance.h"
#include "mkernel/sysroot.h"
#include "mkernel/topology.h"

namespace mk {

struct UpdateRequest {
  ImageSpec image;  // the successor's image (init is ignored: tenants are re-adopted)
  // The instance's channels to other instances, the same sides the old image
  // holds (borrowed fds, open for the duration of the call).
  std::vector<PeerChannelFds> peers;
  std::chrono::milliseconds timeout{10000};  // per step (successor READY, each request)
  uint32_t update_id = 1;
  bool corrupt_package = false;  // fault injection: flip bytes of the blob in transit
  // Progress: called when each phase ends ("boot", "prepare", "precopy",
  // "freeze", "transfer", "restore", "finish", "rollback"), with its
  // duration. "precopy" (the old image had fds to send ahead) is outside
  // the blackout: the fds preserved at prepare travel to the successor,
  // which stages them; the freeze then hands over only what changed.
  std::function<void(std::string_view phase, double ms)> on_phase;
  // Called once the successor is READY and parked, before prepare: the
  // daemon persists it (a restarted daemon must be able to kill it).
  std::function<void(const RuntimeRecord& successor)> on_successor;
  // Called right after the freeze reply (test hook: a host that dies here).
  std::function<void()> after_freeze;
  // Called after the pre-copy, before the freeze (test hook: connections
  // that open, close or send between the two).
  std::function<void()> after_precopy;
  // The instance's update state each time it changes (DESIGN.md §5):
  // "prepared" once the old image preserved everything, "frozen" when the
  // freeze is sent (the blackout starts), "updated" when the successor
  // restored, "normal" at the end, updated or rolled back. Called inside
  // the blackout: it must only record, never block or do I/O.
  std::function<void(std::string_view state)> on_state;
  // Called between dispatches while the host waits for a step that has
  // taken `wait_hook_after` or more (never inside a normal blackout): the
  // daemon answers read-only requests from here, so `mkctl show` works
  // during a step that hangs until its timeout.
  std::function<void()> on_wait;
  std::chrono::milliseconds wait_hook_after{20};
};

struct UpdatePhaseTime {
  std::string phase;
  double ms = 0;        // as the host saw it (request sent -> reply handled)
  // The image's own time for the step (UpdateReply::image_ns): prepare and
  // freeze in the old image, restore in the successor; the rest of `ms` is
  // IPI wake-ups, scheduling and the host's own work. Absent for host-only
  // phases (boot, transfer, finish, rollback).
  std::optional<double> image_ms;
};

struct UpdateOutcome {
  bool updated = false;  // true: the successor runs; false: rolled back
  std::vector<UpdatePhaseTime> phases;
  std::optional<double> blackout_ms;   // freeze sent -> successor's restore reply
  std::optional<Error> cause;          // why it rolled back
  std::string rollback;                // how ("" when updated)
  uint32_t fds = 0;                    // fds handed over (pre-copied ones included)
  uint32_t precopied_fds = 0;          // of which sent before the freeze
  uint64_t blob_bytes = 0;
  uint64_t preserved_bytes = 0;        // sum of the blob's preserved-memory map
};

// Updates `current` in place. On success `current` is the successor; on
// rollback it is the old image (or the image booted again in its place).
// `current` is null afterwards only if the instance could not be kept
// running at all (outcome.cause says why; the caller marks it failed).
UpdateOutcome live_update(std::unique_ptr<RunningInstance>& current, const Topology& topo,
                          const SysRoot& root, const UpdateRequest& req);

// A restarted host finishing what a dead one left mid-update: kills the
// recorded successor (pid + start time, never a recycled pid) and tells the
// old image kMsgUpdateCancel (an image that was not frozen answers 0 too).
// update_id: the interrupted update's (UpdateStepMsg of the cancel).
// Returns: what the cancel request returned (ETIMEDOUT, ECONNRESET, the
// image's refusal), ETIMEDOUT (the successor outlived SIGKILL), what
// open_identity returns other than ESRCH (a successor already gone is fine).
Result<void> abort_update(RunningInstance& old, const RuntimeRecord& successor,
                          std::chrono::milliseconds timeout, uint32_t update_id = 0);

}  // namespace mk
