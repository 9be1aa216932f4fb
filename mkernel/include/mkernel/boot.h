// DOC: mk::boot_instance — the process backend's start recipe (DESIGN.md §3).
//
// What this is: `mkctl start NAME` on stock Linux. It turns a committed
// Instance and a loaded image into a running, confined process that reports
// READY over IPI, composing the backend's building blocks in one linear
// recipe (each step lives in its concept's file):
//   1. cgroups        detect_cgroups + InstanceCgroup::create   (cgroup.h)
//   2. memory         one sealed, node-bound RegionFd per region (memory_region.h)
//   3. devices        open_device per file/listen/block device   (devices.h)
//   4. console        make_console_pipe; image stdout/stderr too (console_log.h)
//   5. host channel   ipi::Channel::create (side A stays here)   (ipi/channel.h)
//   6. boot tree      make_boot_tree + emit into a sealed memfd  (manifest.h)
//   7. spawn          make_confine_plan + spawn_confined; the prepare gate
//                     attaches the cgroup and moves net devices before the
//                     image runs one instruction                 (confine.h)
//   8. endpoint       the host's ipi::Endpoint on the channel, watching the
//                     image's pidfd; READY is awaited by wait_ready().
// Unhappy paths: any step failing returns its error; everything created so
// far is released in reverse (RAII members; the cgroup is destroyed, the
// child killed and reaped), so a failed start leaves nothing behind.
//
// Lifecycle of the returned RunningInstance:
//   wait_ready() -> ping()/stats() ... -> shutdown() (or kill()) -> release().
// The host keeps the memory regions open for the instance's lifetime (it owns
// them, DESIGN.md §1).
//
// Instances outlive the host (DESIGN.md §1): record() is what the host
// persists; detach() forgets a running instance without touching it (host
// stop, daemon exit: its side of the channel is left attached, not closed);
// adopt_instance() is the restarted host taking it back: a pidfd on the
// recorded process (pid + start time, never a recycled pid), its side of the
// host channel, the console's read end and the memory regions fetched from
// the image with pidfd_getfd, and the channel resumed where its rings are
// (ipi::Channel::take_over). An adopted instance is not the host's child:
// its exit is seen on the pidfd, without a wait status.
//
// boot_successor() is step 1 of a live update (mkernel/live_update.h): the
// new image spawned next to the running one, sharing its resources (see
// there). After an update, the earlier image may stay as the reaper (the
// namespace init, RuntimeRecord::ns_init_pid): kill(), shutdown() and
// release() end it too, after the image, so nothing is left behind.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ipi/endpoint.h"
#include "mk/abi/control_messages.h"
#include "mk/result.h"
#include "mkernel/cgroup.h"
#include "mkernel/guarantee.h"
#include "mkernel/instance.h"
#include "mkernel/manifest.h"
#include "mkernel/memory_region.h"
#include "mkernel/owned_fd.h"
#include "mkernel/sysroot.h"
#include "mkernel/topology.h"

namespace mk {

// Memory the image and its tenants may use beyond their regions (memory
// cgroup limit = regions + this). Region pages fault in when the image first
// touches them and are charged to the instance's cgroup, like its own heap
// and page cache; a tenant that uses more than this of its own can make a
// later region fault hit the limit (an OOM inside the instance, never the
// host).
inline constexpr uint64_t kInstanceOverheadBytes = 256ull << 20;

struct ImageSpec {
  std::string path;     // validated ELF (image.h)
  std::string cmdline;  // split on blanks into argv[1..]
  std::string init;     // tenant command, "" = none
  std::optional<uid_t> uid;  // drop to uid:gid before exec (none: stay root)
  std::optional<gid_t> gid;
};

// One side of a channel to another instance, created by the host
// (borrowed fds: the caller keeps them open during boot_instance).
struct PeerChannelFds {
  uint32_t peer_id = 0;
  std::string peer_name;
  uint8_t side = 1;  // 0: the image takes over side A, 1: attaches as B
  int memfd = -1;
  int eventfd[2] = {-1, -1};
};

struct BootRequest {
  Instance instance;
  ImageSpec image;
  SysRoot root;
  bool use_cgroups = true;  // false: affinity + mempolicy only
  bool namespaces = true;   // PID/mount/UTS/IPC (+net) when root
  std::vector<PeerChannelFds> peers;
};

// A live update's successor (or the image booted again by a rollback),
// spawned next to `old` and sharing what it has (mkernel/live_update.h):
// the cgroup (the prepare gate attaches it), the memory regions, the console
// pipe (the write end given as console_write_fd, the read end the host
// holds), the held network namespace; plus a new host channel and the peer
// channels (the same sides `old` has).
struct SuccessorRequest {
  ImageSpec image;
  std::vector<PeerChannelFds> peers;
  SysRoot root;
  int console_write_fd = -1;  // borrowed: the console pipe's write end
  // Namespaces: join those of the process behind ns_pidfd (pid ns_pid) that
  // differ from the host's — PID by the spawning thread, mount/UTS/IPC/net
  // by the child (confine.h SpawnOptions::join). ns_pidfd = -1: new
  // namespaces (when `namespaces`; the network namespace `old` holds is
  // joined), as a normal boot.
  int ns_pidfd = -1;
  pid_t ns_pid = -1;
  bool namespaces = true;
  // Parked: boot tree `mkernel,handover-socket`, file/listen/block devices
  // listed with fd -1 (they come in the handoff package), no init (tenants
  // are re-adopted). Not parked: a fresh boot with init and newly opened
  // devices (a rollback when nothing was frozen).
  bool parked = true;
  // The successor's CPUs (boot tree /cpus and its affinity) when they are
  // not the old image's: a staged update boots it on CPUs the old image
  // gave up (or spare ones the instance's cgroup was given). Default: the
  // old image's CPUs (an in-place update).
  std::optional<CpuSet> cpus;
};

class RunningInstance;

struct Successor {
  std::unique_ptr<RunningInstance> run;  // its own host channel, pidfd and handover socket
};

// wait_exit()'s status for a process that is not the host's child.
inline constexpr int kExitStatusUnknown = -1;

class RunningInstance {
 public:
  ~RunningInstance();
  RunningInstance(const RunningInstance&) = delete;
  RunningInstance& operator=(const RunningInstance&) = delete;

  pid_t pid() const { return pid_; }
  int pidfd() const { return pidfd_.get(); }
  int console_fd() const { return console_.get(); }  // nonblocking read end
  // The host's end of the image's handover socket (handoff packages go
  // there: a live update's successor, a staged update's steps); -1: none
  // (an image adopted from a record without one).
  int handover_socket() const { return handover_.get(); }
  const Guarantees& guarantees() const { return guarantees_; }
  const std::optional<abi::ReadyMsg>& ready() const { return ready_; }
  ipi::Endpoint& endpoint() { return *ep_; }
  const Instance& instance() const { return inst_; }
  // The instance's cgroup (null: it runs confined by affinity alone).
  InstanceCgroup* cgroup() { return cgroup_ ? &*cgroup_ : nullptr; }
  // A CPU move changed what it owns (cpu_move.h): later boot trees (a live
  // update's successor) list these CPUs.
  void set_cpus(const CpuSet& cpus) { inst_.cpus = cpus; }
  // What the host persists to re-adopt the instance (see above).
  const RuntimeRecord& record() const { return record_; }
  // Lines the host states after boot (mkerneld's isolation: irq steering,
  // host tasks, memory nodes), appended to record().guarantees: every later
  // copy of the record (a memory or device change, a live update's new
  // image, which takes the lines it does not state itself) keeps them.
  void add_guarantee_lines(const std::vector<std::string>& lines) {
    record_.guarantees.insert(record_.guarantees.end(), lines.begin(), lines.end());
  }
  bool is_child() const { return child_; }
  // What it runs (boot_instance's request, or the record of an adopted one).
  const ImageSpec& image() const { return image_; }
  // The reaper left by a live update (RuntimeRecord::ns_init_pid), -1: none.
  pid_t ns_init_pid() const { return ns_init_pid_; }
  bool exited() const { return reaped_; }
  // Tenant exits the image reported (kMsgTenantExit), oldest first, at most 64.
  const std::vector<abi::TenantExitMsg>& tenant_exits() const { return tenant_exits_; }

  // Serves the channel until READY arrives. Returns: ETIMEDOUT, ECHILD (the
  // image exited first; detail has its status), EPROTO (READY of another
  // protocol version or instance id).
  Result<abi::ReadyMsg> wait_ready(std::chrono::milliseconds timeout);
  // Round trip of `bytes` through the image. Returns the latency.
  Result<std::chrono::nanoseconds> ping(std::size_t bytes, std::chrono::milliseconds timeout);
  Result<abi::StatsMsg> stats(std::chrono::milliseconds timeout);
  // Asks the image to ping instance `peer` over their channel. The reply's
  // status is the image's (0 or -errno, e.g. -ENOENT: no channel).
  Result<abi::PingPeerReply> ping_peer(uint32_t peer, uint32_t count, uint32_t size,
                                       std::chrono::milliseconds timeout);
  // Asks the image to stop its tenants and exit, then reaps it. Returns the
  // image's reply; ETIMEDOUT/ECONNRESET leave the process to kill().
  Result<abi::ShutdownReply> shutdown(std::chrono::milliseconds grace, std::chrono::milliseconds timeout);
  // SIGKILL and reap (idempotent). Adopted: SIGKILL and wait for the pidfd.
  void kill();
  // Waits for the process to exit (reaps it when it is our child). Returns
  // its wait status, or kExitStatusUnknown for an adopted process.
  Result<int> wait_exit(std::chrono::milliseconds timeout);
  // Someone else collected the exit (the daemon's Supervisor reaped it).
  void mark_exited() { reaped_ = true; }
  // Forgets the instance and leaves it running: the host channel is
  // detached (not closed), every fd closed, cgroup and process untouched.
  // The object is inert afterwards.
  void detach();
  // Frees the cgroup and regions and hands net devices back to the host's
  // namespace (after the process is gone; the host held the instance's
  // network namespace open since start, so even a virtual interface
  // survives). Returns EBUSY if tasks remain in the cgroup, or the
  // rtnetlink error of a device that could not be returned.
  Result<void> release();

 private:
  friend Result<std::unique_ptr<RunningInstance>> boot_instance(const Topology&, const BootRequest&);
  friend Result<std::unique_ptr<RunningInstance>> adopt_instance(const Instance&, const SysRoot&);
  friend Result<Successor> boot_successor(const Topology&, RunningInstance&, const SuccessorRequest&);
  friend struct UpdateAccess;  // live_update.cc: moves ownership old -> successor
  friend struct ResourceAccess;  // resource_move.cc: regions and devices added / removed
  RunningInstance() = default;
  Result<void> add_host_endpoint(ipi::Channel&& ch);
  // SIGKILL the reaper (after the image is gone) and wait for it.
  void end_ns_init();
  ImageSpec image_;
  OwnedFd ns_init_pidfd_;
  pid_t ns_init_pid_ = -1;
  bool ns_init_child_ = false;
  Instance inst_;
  RuntimeRecord record_;
  pid_t pid_ = -1;
  bool child_ = true;
  bool reaped_ = false;
  std::vector<OwnedFd> adopted_regions_;
  std::vector<abi::TenantExitMsg> tenant_exits_;
  OwnedFd pidfd_, console_, netns_, handover_;
  std::optional<InstanceCgroup> cgroup_;
  std::vector<RegionFd> regions_;
  std::unique_ptr<ipi::Endpoint> ep_;
  std::optional<abi::ReadyMsg> ready_;
  Guarantees guarantees_;
};

Result<std::unique_ptr<RunningInstance>> boot_instance(const Topology& topo, const BootRequest& req);

// Spawns a live update's successor next to `old` (see SuccessorRequest).
// `old` keeps owning the shared resources: live_update() moves them to the
// successor on success. Returns: ENOTCONN (`old` holds no console read end
// or regions), what the spawn and setns return (EPERM, EINVAL), what the
// boot tree builder returns.
Result<Successor> boot_successor(const Topology& topo, RunningInstance& old, const SuccessorRequest& req);

// A copy of the channel whose memfd is fd `first_fd` (eventfds first_fd+1,
// +2) in the process behind `pidfd` (pidfd_getfd; the manifest.h layout).
// Returns pidfd_getfd's errno (EPERM, EBADF: that fd is not open there).
Result<ipi::ChannelFds> fetch_channel_fds(int pidfd, int first_fd);

// Takes back a running instance from inst.runtime (a restarted host).
// Returns: EINVAL (no runtime record); ESRCH (the process is gone or its pid
// was recycled, process_identity.h); EPERM/EBADF from pidfd_getfd (not
// allowed to reach into the image, or the recorded fd is closed); what
// ipi::Channel::take_over returns (EPIPE: the host side was closed).
Result<std::unique_ptr<RunningInstance>> adopt_instance(const Instance& inst, const SysRoot& root);

}  // namespace mk
