// DOC: mk::sdk::HostLink — the image's end of the host control channel.
//
// What this is: an ipi::Endpoint attached to /ipi/channel@HOST of the boot
// tree, speaking mk-control-v1 (mk/abi/control_messages.h): the image sends
// kMsgReady and kMsgTenantExit, and answers kMsgPing (echo), kMsgStats
// (StatsMsg), kMsgPingPeer (round trips to another instance over
// /ipi/channel@PEER, answered with min/p50/p99/max) and kMsgShutdown
// (ShutdownReply, after the services' shutdown callback stopped the
// tenants). Peer channels live on a second endpoint driven by their own
// thread, which also answers other instances' pings, so a PingPeer in
// progress never blocks peers pinging us.
//
// Channel fds: the tree's `mkernel,fd` of a channel is its memfd; the two
// doorbell eventfds follow it (memfd+1: direction 0, memfd+2: direction 1;
// see boot_info.h channel_fds). The image attaches as side B: the host
// created the region (ipi::Channel::create) and keeps side A.
//
// Place in the boot flow: last step before READY: HostLink::open ->
// send_ready -> serve loop (serve_once) until shutdown or host down.
//
// Happy path:
//   1. auto link = HostLink::open(tree, services, opts);
//   2. link->send_ready(msg);
//   3. while (link->state() == State::kRunning) { link->serve_once(50ms);
//      report tenant exits with send_tenant_exit(); }
//   4. state kShutdown: the reply went out; the image exits 0.
// Unhappy paths:
//   1. No /ipi/channel@HOST in the tree: ENOENT. Attach fails (EBADF,
//      EPERM unsealed, EPROTO not a channel, EBUSY already attached...):
//      that code; the image exits with exit_code::kHostLink.
//   2. The host closes its side on purpose: state becomes kHostDown (at
//      most liveness_interval later while idle); the image stops its
//      tenants and exits with exit_code::kHostDown. A host *process* that
//      dies is not "down": its side stays attached, nothing is lost, and a
//      restarted mkerneld takes the side over (ipi::Channel::take_over) and
//      carries on — instances outlive mkerneld.
//   3. A peer channel fails to attach: logged once; PingPeer to that peer
//      replies with status -errno of the attach. No channel to the peer:
//      status -ENOENT. A round trip failing midway: status -errno with
//      `done` round trips measured.
//   4. Malformed control messages (wrong payload size) are answered with
//      EBADMSG by the endpoint and counted.
//
// Live update (docs/sdk.md "Live update"): kMsgUpdatePrepare/Freeze/Cancel/
// Finish and kMsgHandover are answered by HostServices::update / handover
// (UpdateReply; no callback: -EOPNOTSUPP). After a Finish (without
// kUpdateFlagPartial: a staged step's finish keeps it serving) answered with
// status 0 the state becomes kRetired (the reply is flushed first). A
// successor image opens the link with attach_peers = false (its peer channel
// sides are still the old image's) and calls attach_peers() once restored;
// the old image calls detach_peers() at freeze (ipi::Channel::detach, the
// peers see nothing) and attach_peers() again when the update is cancelled.
// While the peer channels are detached, PingPeer answers -ESHUTDOWN.
//
// CPU moves (docs/sdk.md "Moving CPUs"): kMsgCpuRelease/kMsgCpuAdd are
// answered by HostServices::cpu (CpuReply; no callback: -EOPNOTSUPP).
//
// Memory and device moves (docs/sdk.md "Moving memory and devices"):
// kMsgMemoryAdd/kMsgMemoryRelease/kMsgDeviceAdd/kMsgDeviceRelease are
// answered by HostServices::resource (ResourceReply; no callback:
// -EOPNOTSUPP). The fd an add brings arrives on the image's handover
// socket; reading it is the callback's business.
//
// Thread safety: open/send_*/serve_once/state from one thread (the image's
// main thread). rx()/tx() may be read anywhere.
//
// Returns:
//   open:             ENOENT, ipi attach codes, Endpoint::create codes.
//   send_ready / send_tenant_exit: ECONNRESET (host down), channel codes.
//   attach_peers:     EALREADY (attached); Endpoint::create codes (a side that
//                     fails to attach is recorded per peer, as at open).
//   detach_peers:     EALREADY (not attached); dup errno (nothing detached).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include "ipi/endpoint.h"
#include "mk/abi/control_messages.h"
#include "mk/boot_tree.h"
#include "mk/result.h"

namespace mk::sdk {

struct HostServices {
  // Fills what the image knows; HostLink adds ipi_rx/ipi_tx.
  std::function<abi::StatsMsg()> stats;
  // Stops the tenants (SIGTERM -> grace -> SIGKILL) and reports their exits
  // (the callback may call send_tenant_exit); returns the reply to send.
  std::function<abi::ShutdownReply(std::uint32_t grace_ms)> shutdown;
  // Live update steps (type = kMsgUpdatePrepare/Freeze/Cancel/Finish).
  std::function<abi::UpdateReply(std::uint16_t type, const abi::UpdateStepMsg&)> update;
  // kMsgHandover (a parked successor).
  std::function<abi::UpdateReply(const abi::HandoverMsg&)> handover;
  // kMsgUpdatePrecopy (a parked successor, before the freeze).
  std::function<abi::UpdateReply(const abi::HandoverMsg&)> precopy;
  // kMsgCpuRelease / kMsgCpuAdd (type): give a CPU up, or start using one
  // (no callback: -EOPNOTSUPP).
  std::function<abi::CpuReply(std::uint16_t type, const abi::CpuMsg&)> cpu;
  // kMsgMemoryAdd / kMsgMemoryRelease / kMsgDeviceAdd / kMsgDeviceRelease
  // (type): take a region or device, or give one up (no callback:
  // -EOPNOTSUPP).
  std::function<abi::ResourceReply(std::uint16_t type, const abi::ResourceMsg&)> resource;
};

struct HostLinkOptions {
  ipi::WaitMode mode = ipi::WaitMode::kAdaptive;
  std::chrono::nanoseconds liveness_interval = std::chrono::milliseconds(100);
  std::chrono::milliseconds peer_ping_timeout{1000};    // one round trip
  std::chrono::milliseconds peer_ping_deadline{30000};  // a whole PingPeer
  bool attach_peers = true;  // false: a parked successor (attach_peers() later)
};

class PeerLink;

class HostLink {
 public:
  // kRetired: a live update finished; this (old) image leaves.
  enum class State : std::uint8_t { kRunning, kShutdown, kHostDown, kRetired };

  static Result<std::unique_ptr<HostLink>> open(const BootTree& tree, HostServices services,
                                                const HostLinkOptions& opts = {});
  ~HostLink();
  HostLink(const HostLink&) = delete;
  HostLink& operator=(const HostLink&) = delete;

  Result<void> send_ready(const abi::ReadyMsg& msg);
  Result<void> send_tenant_exit(const abi::TenantExitMsg& msg);

  // Dispatches host traffic for at most `timeout`; returns the state after.
  State serve_once(std::chrono::nanoseconds timeout);
  State state() const { return state_; }

  Result<void> attach_peers();
  Result<void> detach_peers();
  bool peers_attached() const { return peers_ != nullptr; }

  std::uint64_t rx() const;
  std::uint64_t tx() const;
  std::uint32_t host_id() const { return host_id_; }

 private:
  HostLink() = default;
  Result<void> register_handlers();
  void handle_ping_peer(const abi::PingPeerMsg& m, ipi::Incoming& in);
  Result<void> send(std::uint16_t type, std::span<const std::byte> bytes);
  void set_state(State s);

  std::unique_ptr<ipi::Endpoint> ep_;
  struct ParkedPeers;  // detached peer sides (their fds), or not yet attached
  std::unique_ptr<PeerLink> peers_;
  std::unique_ptr<PeerLink> retired_peers_;  // detached, not yet destroyed
  std::unique_ptr<ParkedPeers> parked_;
  HostServices services_;
  HostLinkOptions opts_;
  std::uint32_t host_id_ = abi::kHostId;
  State state_ = State::kRunning;
  std::atomic<std::uint64_t> rx_{0}, tx_{0};
};

const char* to_string(HostLink::State s);

}  // namespace mk::sdk
