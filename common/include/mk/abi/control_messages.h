// DOC: the host <-> instance control protocol over IPI (ABI, "mk-control-v1").
//
// What this is: the system-range message types (0x1000..0x1fff, see
// ipi/message_types.h) that mkerneld and every kernel image exchange on the
// host channel (/ipi/channel@0 of the boot tree), and their payloads. Both
// sides include this header; it is part of the boot protocol's contract, so
// any change to a payload's layout bumps kControlVersion, and a host refuses
// a READY whose version it does not speak.
//
// Lifecycle (happy path):
//   1. image boots, parses its tree, starts per-CPU loops and tenants;
//   2. image -> host  kMsgReady (one-way) with ReadyMsg;
//   3. host -> image  kMsgPing (request; payload echoed), kMsgStats (request;
//      reply StatsMsg), kMsgPingPeer (request PingPeerMsg; reply
//      PingPeerReply: the image pings another instance over their channel);
//   4. image -> host  kMsgTenantExit (one-way) each time a tenant ends;
//   5. host -> image  kMsgShutdown (request ShutdownMsg; reply ShutdownReply
//      once tenants are gone: SIGTERM, then SIGKILL after grace_ms); the
//      image exits 0 after replying.
// Live update (DESIGN.md §5, docs/handover.md "Protocol"): the host has
// booted the successor parked (boot tree `mkernel,handover-socket`), then
//   6. host -> old    kMsgUpdatePrepare (request UpdateStepMsg; reply
//      UpdateReply): the old image's handlers preserve (may refuse: the
//      update is cancelled, nothing changed);
//   6b. host -> new   kMsgUpdatePrecopy (request HandoverMsg; reply
//      UpdateReply), when prepare was sent with kUpdateFlagPrecopy and its
//      reply carried a package (fd >= 0):
//      what the old image preserved at prepare (client connections, listen
//      sockets, pipes: the fds whose per-fd work is costly) travels now,
//      outside the blackout, the same way as at step 8; the successor
//      stages it (takes the fds, registers them, parks its service
//      threads) and the freeze package carries only what changed since;
//   7. host -> old    kMsgUpdateFreeze: the old image stops mutating
//      preserved state (services paused at a request boundary, peer channel
//      sides detached), writes the handoff package (mk/abi/handoff.h) into a
//      sealed memfd and replies with its fd number (UpdateReply::fd), which
//      the host copies out with pidfd_getfd, with every fd the package lists;
//   8. host -> new    kMsgHandover (request HandoverMsg; reply UpdateReply)
//      after sending the package and the fds on the handover socket: the
//      successor restores and serves, or refuses (status < 0: rollback);
//   9. host -> old    kMsgUpdateFinish: the old image releases everything
//      and exits (as PID 1 of the instance's PID namespace, or with tenants
//      still its children, it execs the image's reaper instead: tenants live
//      on and their exits reach the successor through the reaper pipe);
//      or kMsgUpdateCancel (from prepared or frozen): the old image unfreezes
//      and resumes with everything it had.
// Staged update (the scope bits below): the new image boots parked on CPUs
// the old one gave up (kMsgCpuRelease) or spare ones; then per step
// (tenants, then services with their devices, connections and memory, then
// peers) steps 6-8 run with that scope, and step 9 is kMsgUpdateFinish with
// kUpdateFlagPartial: the old image drops the part and serves the rest (its
// tenants' exits, which it still reaps as their parent, go to the reaper
// pipe the new image reads). The new image takes each part with
// kMsgHandover (and kMsgUpdatePrecopy) whether parked or already serving
// an earlier part: it restores the subsystems the blob carries and refuses
// a part it already holds (-EEXIST). The old image's CPUs then move to the
// new one (10/11) and a last finish without the flag retires it. Aborting
// runs the completed steps backwards, new -> old, the same way (every image
// has a handover socket).
// CPU moves (DESIGN.md §5 "staged update", `mkctl cpu move`, `mkctl update
// NAME --cpus`; docs/handover.md "Moving CPUs"): one CPU per request, so
// every request is small and idempotent (a restarted host re-sends them):
//   10. host -> image kMsgCpuRelease (request CpuMsg; reply CpuReply): the
//       image's consent to give the CPU up. It stops its per-CPU loop there,
//       moves any other pinned thread of its own (the kv service) to a CPU
//       it keeps, and re-pins its remaining threads and every thread of its
//       tenants to the CPUs it keeps; then replies 0. It refuses (status
//       < 0, detail says why) when the CPU is its last one (-EBUSY), during
//       a live update or while parked (-EBUSY). A CPU it does not hold
//       answers 0 with CpuReply::changed = 0. Only after the consent does
//       the host take the CPU out of the instance's cpuset and affinity.
//   11. host -> image kMsgCpuAdd (request CpuMsg; reply CpuReply), after the
//       host put the CPU into the instance's cpuset: the image re-pins its
//       threads and its tenants to the grown set and starts a per-CPU loop
//       on the CPU. -EINVAL when the kernel does not let it run there (the
//       host did not grant it). A CPU it holds already answers 0, changed 0.
//   A host whose later step fails sends the opposite request to put the
//   image back where it was (all or nothing).
// Memory and device moves (`mkctl update NAME --memory LIST | --device
// SPEC...`; docs/handover.md "Moving memory and devices"): one region or
// device per request, each idempotent, the same consent rule:
//   12. host -> image kMsgMemoryAdd (request ResourceMsg; reply
//       ResourceReply), after the host sent the region's memfd on the
//       image's handover socket (one SOCK_SEQPACKET message: ResourceFdMsg
//       and SCM_RIGHTS with that one fd) and, with a memory cgroup, raised
//       its limit: the image maps it as /memory@index (index = the regions
//       it has; fstat must show at least `size` bytes) and replies the fd
//       number it keeps it under (ResourceReply::fd), which the host records
//       to take the region back after a restart. A region it has already
//       (same index and size) answers 0, changed 0.
//   13. host -> image kMsgMemoryRelease (request ResourceMsg): the image's
//       consent to give region `index` up: only its last region, never its
//       only one, and only when nothing in it is allocated (-EBUSY, the
//       detail counts the pages in use, e.g. the kv store's). It unmaps the
//       region and closes its fd; the host then drops its own and lowers
//       the memory cgroup's limit. A region it does not have: 0, changed 0.
//   14. host -> image kMsgDeviceAdd (request ResourceMsg): the device node
//       (kind, name, "key=value" properties as the boot tree's /devices
//       node has them) joins the image's tree at /devices index `index`
//       (the end for a new device; where it was for one an undone release
//       puts back: the image's order must stay the host's, a live update
//       names devices by index); file, listen and block devices come with
//       their fd (sent first, as for memory), a net interface was moved
//       into the instance's network namespace before. A listen device is
//       served by the kv service at once. A device with the same kind and
//       properties: 0, changed 0, fd = the one it holds (so a host may probe
//       without sending an fd: a device it does not have and that needs one
//       answers -EINVAL).
//   15. host -> image kMsgDeviceRelease (request ResourceMsg: kind and
//       properties name the device): the image's consent. The console is
//       never released (-EINVAL); the kv service's last listen device is
//       refused (-EBUSY). Otherwise it stops using it (a listen socket
//       leaves the kv service's epoll set, connections it accepted stay),
//       closes its fd and drops the node. The host then moves a net
//       interface back to its own namespace. Unknown device: 0, changed 0.
//   All four are refused (-EBUSY) while parked or during a live update.
// Unhappy paths:
//   1. no READY within the boot timeout: the host kills the instance and
//      marks it failed;
//   2. a request times out or the peer dies (ECONNRESET): the host reports
//      it and, for shutdown, falls back to SIGKILL (mkctl stop --force);
//   3. a payload of the wrong size is dropped by the receiver (counted).
//
// All payloads are trivially copyable, fixed-width, little-endian (both ends
// are the same machine), with explicit padding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace mk::abi {

inline constexpr uint32_t kControlVersion = 1;
inline constexpr uint32_t kHostId = 0;  // the host's IPI peer id

// System range: 0x1000 + index.
inline constexpr uint16_t kMsgReady = 0x1001;       // image -> host, one-way
inline constexpr uint16_t kMsgShutdown = 0x1002;    // host -> image, request
inline constexpr uint16_t kMsgPing = 0x1003;        // either way, request, echo
inline constexpr uint16_t kMsgStats = 0x1004;       // host -> image, request
inline constexpr uint16_t kMsgTenantExit = 0x1005;  // image -> host, one-way
inline constexpr uint16_t kMsgPingPeer = 0x1006;    // host -> image, request
inline constexpr uint16_t kMsgUpdatePrepare = 0x1007;  // host -> old image, request
inline constexpr uint16_t kMsgUpdateFreeze = 0x1008;   // host -> old image, request
inline constexpr uint16_t kMsgUpdateCancel = 0x1009;   // host -> old image, request
inline constexpr uint16_t kMsgUpdateFinish = 0x100a;   // host -> old image, request
inline constexpr uint16_t kMsgHandover = 0x100b;       // host -> successor, request
inline constexpr uint16_t kMsgUpdatePrecopy = 0x100c;  // host -> successor, request
inline constexpr uint16_t kMsgCpuRelease = 0x100d;     // host -> image, request
inline constexpr uint16_t kMsgCpuAdd = 0x100e;         // host -> image, request
inline constexpr uint16_t kMsgMemoryAdd = 0x100f;      // host -> image, request
inline constexpr uint16_t kMsgMemoryRelease = 0x1010;  // host -> image, request
inline constexpr uint16_t kMsgDeviceAdd = 0x1011;      // host -> image, request
inline constexpr uint16_t kMsgDeviceRelease = 0x1012;  // host -> image, request

struct ReadyMsg {
  uint32_t version;      // kControlVersion
  uint32_t instance_id;  // from the boot tree
  uint32_t cpu_count;    // per-CPU loops started
  uint32_t tenants;      // tenants started
  uint64_t boot_ns;      // image's own time from exec to ready (CLOCK_MONOTONIC)
};

struct ShutdownMsg {
  uint32_t grace_ms;  // SIGTERM -> SIGKILL delay for tenants
  uint32_t reserved;
};

struct ShutdownReply {
  int32_t status;             // 0, or a negative errno
  uint32_t tenants_killed;    // tenants that needed SIGKILL
};

struct StatsMsg {
  uint64_t ipi_rx;            // messages received by the image
  uint64_t ipi_tx;            // messages sent by the image
  uint64_t memory_used_bytes; // pages handed out by the region allocator
  uint64_t memory_bytes;      // total of its regions
  uint64_t loop_iterations;   // summed over per-CPU loops
  uint32_t cpus;              // per-CPU loops running
  uint32_t tenants_running;
  uint64_t uptime_ns;
};

struct TenantExitMsg {
  int32_t pid;     // in the instance's PID namespace
  int32_t status;  // waitpid() status
  uint32_t index;  // which tenant (order of start)
  uint32_t reserved;
};

struct PingPeerMsg {
  uint32_t peer_id;  // instance to ping over the image's channel to it
  uint32_t count;    // round trips, 1..100000
  uint32_t size;     // payload bytes, 0..4096
  // The series ends by then (ETIMEDOUT with what was done), so the image's
  // host thread is busy no longer than the host waits. 0: the image's own
  // bound (30 s). Was `reserved` (always 0) before.
  uint32_t deadline_ms;
};

struct PingPeerReply {
  int32_t status;  // 0, or a negative errno (ENOENT: no channel to that peer)
  uint32_t done;   // round trips completed
  uint64_t min_ns, p50_ns, p99_ns, max_ns;
};

// Payload of kMsgUpdatePrepare / Freeze / Cancel / Finish.
struct UpdateStepMsg {
  uint32_t update_id;  // the host's number for this update (logs, checks)
  uint32_t flags;      // prepare: kUpdateFlagPrecopy | scope bits; finish: kUpdateFlagPartial; others 0
};

// kMsgUpdatePrepare's flag: the host will deliver a pre-copy package (the
// prepare reply's fd, when >= 0) with kMsgUpdatePrecopy before the freeze;
// the freeze package then carries only what changed since. Without it the
// freeze package carries everything (one-step handover).
inline constexpr uint32_t kUpdateFlagPrecopy = 1u << 0;

// Staged update (DESIGN.md §5, docs/handover.md "Staged update"): the old
// and the new image run side by side on disjoint CPUs and the instance's
// parts move between them in steps, each its own handover (prepare, freeze,
// transfer, restore, finish) with its own blackout. kMsgUpdatePrepare's
// scope bits say which part a step moves; none set = everything (the
// in-place update). Prepare refuses a scope the image does not hold.
inline constexpr uint32_t kUpdateScopeTenants = 1u << 8;   // tenants and their reaper pipe
inline constexpr uint32_t kUpdateScopeServices = 1u << 9;  // services, devices, connections, memory
inline constexpr uint32_t kUpdateScopePeers = 1u << 10;    // the channels to other instances
inline constexpr uint32_t kUpdateScopeAll = kUpdateScopeTenants | kUpdateScopeServices | kUpdateScopePeers;
// kMsgUpdateFinish's flag: the step's handover is complete, the image
// drops what it handed over and goes on with the rest (it answers, and
// retires only when nothing is left). Without it, finish retires the image.
inline constexpr uint32_t kUpdateFlagPartial = 1u << 1;

// Reply of every update step and of kMsgHandover.
struct UpdateReply {
  int32_t status;      // 0, or a negative errno (the step failed / refused)
  int32_t fd;          // Freeze: the package memfd's number in the old image; else -1
  uint64_t image_ns;   // time the image spent on the step
  char detail[112];    // NUL-terminated: what failed, for the user
};

// Payload of kMsgHandover (sent after the package and fds went out on the
// handover socket).
struct HandoverMsg {
  uint32_t update_id;
  uint32_t fds;        // session fds sent after the package memfd
};

// Payload of kMsgCpuRelease / kMsgCpuAdd: the CPU, as the boot tree's /cpus
// describes it (mk/boot_tree.h BootCpu), so an image that grows needs no
// other source for what it gains.
struct CpuMsg {
  uint32_t op_id;       // the host's number for the move (logs)
  uint32_t os_index;    // the CPU
  uint32_t core;
  uint32_t package;
  uint32_t numa;
  int32_t kind;         // hwloc CPU kind index, -1 = none
  int32_t efficiency;   // -1 = unknown
  uint32_t reserved;    // 0
};

// Reply of kMsgCpuRelease / kMsgCpuAdd.
struct CpuReply {
  int32_t status;           // 0, or a negative errno (refused / failed)
  uint32_t changed;         // 1: the CPU was released / added; 0: nothing to do
  uint32_t cpus;            // per-CPU loops running after the request
  uint32_t threads_pinned;  // threads (own and tenants') given the new CPU set
  uint64_t image_ns;        // time the image spent on the request
  char detail[104];         // NUL-terminated: why it refused, for the user
};

// Payload of kMsgMemoryAdd / kMsgMemoryRelease / kMsgDeviceAdd /
// kMsgDeviceRelease.
struct ResourceMsg {
  uint32_t op_id;       // the host's number for the change (logs, matching the fd message)
  uint32_t index;       // memory: N of /memory@N; device: its index in /devices as the host counts (console 0)
  uint32_t fd_sent;     // add: 1 when an fd went on the handover socket first (ResourceFdMsg); else 0
  uint32_t kind;        // device: mk::DeviceKind (console 0, net 1, file 2, listen 3, block 4); memory: 0
  uint64_t size;        // memory: bytes, a multiple of 4096; device: 0
  uint32_t numa;        // memory: NUMA node; device: 0
  uint32_t flags;       // memory: abi::kMemoryFlag* (boot_tree_abi.h); device: 0
  char name[32];        // device add: the node name (the image makes it unique); NUL-terminated
  char properties[448]; // device: "key=value\n" lines, NUL-terminated (no '\n' or '=' in keys, no '\n' in values)
};

// Reply of the four requests above.
struct ResourceReply {
  int32_t status;    // 0, or a negative errno (refused / failed)
  uint32_t changed;  // 1: added / released; 0: nothing to do (idempotent retry)
  int32_t fd;        // add: the fd number the image holds the region / device under (-1: none, a net device)
  uint32_t count;    // regions (memory) / devices (device) the image has after the request
  uint64_t image_ns; // time the image spent on the request
  char detail[104];  // NUL-terminated: why it refused, for the user
};

// The message that carries a region's or device's fd on the handover
// socket, ahead of kMsgMemoryAdd / kMsgDeviceAdd (SCM_RIGHTS, one fd). An
// image reading one whose op_id/index is not the request's drops it (and
// closes its fd): it belonged to a request that timed out.
inline constexpr uint32_t kResourceFdMagic = 0x46524b4du;  // "MKRF"
struct ResourceFdMsg {
  uint32_t magic;  // kResourceFdMagic
  uint32_t op_id;
  uint32_t index;
  uint32_t kind;   // as in ResourceMsg
};

#define MK_CONTROL_ABI(T, size)                          \
  static_assert(std::is_trivially_copyable_v<T>);        \
  static_assert(std::is_standard_layout_v<T>);           \
  static_assert(sizeof(T) == (size), #T " layout changed: bump kControlVersion")
MK_CONTROL_ABI(ReadyMsg, 24);
MK_CONTROL_ABI(ShutdownMsg, 8);
MK_CONTROL_ABI(ShutdownReply, 8);
MK_CONTROL_ABI(StatsMsg, 56);
MK_CONTROL_ABI(TenantExitMsg, 16);
MK_CONTROL_ABI(PingPeerMsg, 16);
MK_CONTROL_ABI(PingPeerReply, 40);
MK_CONTROL_ABI(UpdateStepMsg, 8);
MK_CONTROL_ABI(UpdateReply, 128);
MK_CONTROL_ABI(HandoverMsg, 8);
MK_CONTROL_ABI(CpuMsg, 32);
MK_CONTROL_ABI(CpuReply, 128);
MK_CONTROL_ABI(ResourceMsg, 512);
MK_CONTROL_ABI(ResourceReply, 128);
MK_CONTROL_ABI(ResourceFdMsg, 16);
#undef MK_CONTROL_ABI

}  // namespace mk::abi
