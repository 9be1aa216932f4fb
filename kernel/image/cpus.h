// DOC: the image's CPU set changes — mk-kernel's side of a CPU move.
//
// What this is: what the image does when the host moves a CPU (`mkctl cpu
// move`, `mkctl update NAME --cpus`; mk/abi/control_messages.h steps 10 and
// 11, docs/sdk.md "Moving CPUs"). One CPU per request. The host asks the
// image to give a CPU up (kMsgCpuRelease) before it takes the CPU out of
// the instance's cpuset, and tells it to use one (kMsgCpuAdd) after it put
// the CPU in; main.cc's HostServices::cpu calls release_cpu / add_cpu
// (after its own refusals: parked successor, live update in progress).
//
// Which threads follow the CPU set: every thread of the image process
// (/proc/self/task) except the per-CPU loops (`mk-cpu<N>`, one CPU each) and
// the kv service (`mk-kv`, one CPU, moved by KvService::set_cpu); every
// thread of every tenant process the Tenants know (adopted ones included)
// and of all their descendants (a ppid map from /proc/*/stat: `sh -c 'a &
// b'` spawns children that must follow too); and the reaper a live update
// left (reaper.h): the namespace's PID 1 when this image is not PID 1 and
// /proc/1/cmdline holds "--reaper=", and an adopted tenant's parent whose
// cmdline holds it (the previous image, when it was the tenants' parent).
// Nothing else: without root the image shares the host's PID namespace and
// /proc. Threads are re-pinned with
// sched_setaffinity(tid) in passes until one pass finds no thread it had not
// pinned (at most 3; a thread created meanwhile inherits its creator's
// mask); a thread that ended meanwhile (ESRCH) is skipped.
//
// Release (happy path):
//   1. not held: status 0, changed 0; the last CPU held: -EBUSY;
//   2. the kv thread, if pinned there, moves to the first CPU kept;
//   3. every other thread is re-pinned to the CPUs kept;
//   4. the per-CPU loop on the CPU is stopped and joined (PerCpu::remove);
//   5. the CPU leaves tree.cpus; reply changed 1.
// Add (happy path):
//   1. held already: status 0, changed 0; an index >= CPU_SETSIZE: -EINVAL;
//   2. every thread re-pinned to the grown set first (so the main thread
//      may spawn there);
//   3. a per-CPU loop started and pinned on it (PerCpu::add);
//   4. the CPU joins tree.cpus (sorted by os_index); reply changed 1.
// Unhappy paths (all or nothing: the image is left as before the request):
//   1. release: re-pinning fails (EPERM: a tenant changed its credentials)
//      -> the threads pinned so far go back to the old set, kv goes back;
//      reply -errno. kv refusing its new CPU -> reply -errno, nothing moved.
//   2. add: the kernel refuses the CPU for the loop (EINVAL: the host did
//      not grant it in the cpuset, or it does not exist / is offline) or
//      re-pinning fails -> the threads go back to the old set; reply -errno
//      (the detail says the host must grant the CPU first).
//   Undoing is best effort: a thread that cannot be put back stays on the
//   set it was given (a subset of what the cpuset allows).
//
// Thread safety: from the image's main thread only (the one serving the
// host link), like every HostServices callback.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "kv_service.h"
#include "mk/abi/control_messages.h"
#include "mk/boot_tree.h"
#include "mksdk/devices.h"
#include "mksdk/percpu.h"
#include "mksdk/tenants.h"

namespace mk::image {

struct CpuContext {
  BootTree* tree = nullptr;                  // tree->cpus: the CPUs held, sorted by os_index
  sdk::PerCpu* loops = nullptr;
  std::unique_ptr<KvService>* kv = nullptr;  // may hold null (no kv service)
  const sdk::Tenants* tenants = nullptr;
  sdk::Console* con = nullptr;               // serve_cpu's one line per request
};

// The caller's own reason to refuse a request before anything changes
// (errnum 0: none), e.g. -EBUSY during a live update.
struct CpuRefusal {
  int errnum = 0;
  const char* detail = "";
};

// kMsgCpuRelease / kMsgCpuAdd (`type`): refused with `no` when given,
// else release_cpu / add_cpu; image_ns set; one console line either way.
abi::CpuReply serve_cpu(const CpuContext& cx, std::uint16_t type, const abi::CpuMsg& m, const CpuRefusal& no);
// The reply: status, changed, cpus (per-CPU loops running after),
// threads_pinned, detail on refusal; image_ns is left 0.
abi::CpuReply release_cpu(const CpuContext& cx, const abi::CpuMsg& m);
abi::CpuReply add_cpu(const CpuContext& cx, const abi::CpuMsg& m);

// Re-pins every thread that follows the CPU set (see above: the image's,
// its tenants' and their descendants', the reaper's) to tree.cpus, e.g.
// after a staged update handed this image tenants that ran on the other
// image's CPUs. Returns the threads pinned; sched_setaffinity errno.
Result<std::uint32_t> repin_to(const BootTree& tree, const sdk::Tenants& tenants);

// The instance's tenant processes: the Tenants' running ones, all their
// descendants and the reaper(s) of a live update (see above), in no
// particular order.
std::vector<pid_t> tenant_processes(const sdk::Tenants& tenants);

}  // namespace mk::image
