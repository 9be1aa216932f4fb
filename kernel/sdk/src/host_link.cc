// host_link: the host control channel (mk-control-v1) of an image.
#include "mksdk/host_link.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "mksdk/boot_info.h"
#include "peer_link.h"

namespace mk::sdk {

const char* to_string(HostLink::State s) {
  switch (s) {
    case HostLink::State::kRunning: return "running";
    case HostLink::State::kShutdown: return "shutdown";
    case HostLink::State::kHostDown: return "host-down";
    case HostLink::State::kRetired: return "retired";
  }
  return "?";
}

namespace {

// The host is not watched by pid: instances outlive mkerneld (DESIGN.md §1).
// A host that dies (SIGKILL, crash) leaves its side of the channel attached;
// the restarted daemon takes that side over from our fds (pidfd_getfd +
// ipi::Channel::take_over) and the conversation resumes where the rings
// are. Only a host that closes its side on purpose is "down".
}  // namespace

struct HostLink::ParkedPeers {
  std::vector<PeerLink::Side> sides;
};

Result<std::unique_ptr<HostLink>> HostLink::open(const BootTree& tree, HostServices services,
                                                 const HostLinkOptions& opts) {
  std::unique_ptr<HostLink> self(new HostLink());
  self->services_ = std::move(services);
  self->opts_ = opts;
  self->host_id_ = tree.ipi.host_id;
  const IpiChannel* host = nullptr;
  for (const auto& ch : tree.ipi.channels) {
    if (ch.peer_id == tree.ipi.host_id) host = &ch;
  }
  if (!host) {
    return MK_FAIL(ENOENT, "no host channel", "the boot tree has no /ipi/channel@%x (the host)", tree.ipi.host_id);
  }
  ipi::EndpointOptions eo;
  eo.mode = opts.mode;
  eo.liveness_interval = opts.liveness_interval;
  MK_TRY_ASSIGN(self->ep_, ipi::Endpoint::create(eo));
  auto fds = channel_fds(*host);
  ipi::ChannelFds cf;
  cf.memfd.reset(fds[0]);
  cf.eventfd[0].reset(fds[1]);
  cf.eventfd[1].reset(fds[2]);
  ipi::ChannelOptions co;
  co.mode = opts.mode;
  MK_TRY_ASSIGN(ipi::Channel ch, ipi::Channel::attach(std::move(cf), co));
  MK_TRY(self->ep_->add_peer(self->host_id_, std::move(ch), 0));
  MK_TRY(self->register_handlers());
  self->parked_ = std::make_unique<ParkedPeers>();
  self->parked_->sides = PeerLink::sides_of(tree);
  if (opts.attach_peers) MK_TRY(self->attach_peers());
  return self;
}

HostLink::~HostLink() = default;

Result<void> HostLink::attach_peers() {
  if (peers_) return MK_FAIL(EALREADY, "peer channels already attached", "attach_peers() twice");
  retired_peers_.reset();
  PeerLink::Options po;
  po.mode = opts_.mode;
  po.ping_timeout = opts_.peer_ping_timeout;
  po.ping_deadline = opts_.peer_ping_deadline;
  MK_TRY_ASSIGN(peers_, PeerLink::open(std::move(parked_->sides), po));
  parked_->sides.clear();
  return {};
}

Result<void> HostLink::detach_peers() {
  if (!peers_) return MK_FAIL(EALREADY, "peer channels not attached", "detach_peers() twice");
  MK_TRY_ASSIGN(parked_->sides, peers_->detach());
  // Destroyed later (attach_peers, or with the link): its endpoint's
  // teardown is tens of microseconds a live update's freeze need not wait.
  retired_peers_ = std::move(peers_);
  return {};
}

void HostLink::set_state(State s) {
  if (s == state_) return;
  // Legal: running -> shutdown | host-down | retired. Terminal states stay.
  if (state_ != State::kRunning) return;
  std::fprintf(stderr, "mksdk: host link %s -> %s\n", to_string(state_), to_string(s));
  state_ = s;
}

Result<void> HostLink::register_handlers() {
  ipi::Endpoint* ep = ep_.get();
  MK_TRY(ep->on(abi::kMsgPing, [this](ipi::Incoming& in) {
    rx_.fetch_add(1, std::memory_order_relaxed);
    if (in.reply(in.payload()).ok()) tx_.fetch_add(1, std::memory_order_relaxed);
  }));
  MK_TRY(ep->on(abi::kMsgStats, [this](ipi::Incoming& in) {
    rx_.fetch_add(1, std::memory_order_relaxed);
    abi::StatsMsg s{};
    if (services_.stats) s = services_.stats();
    // Count this reply as sent before reporting, so tx covers it.
    tx_.fetch_add(1, std::memory_order_relaxed);
    s.ipi_rx = rx();
    s.ipi_tx = tx();
    (void)in.reply_value(s);
  }));
  MK_TRY(ep->on_value<abi::ShutdownMsg>(abi::kMsgShutdown, [this](const abi::ShutdownMsg& m, ipi::Incoming& in) {
    rx_.fetch_add(1, std::memory_order_relaxed);
    abi::ShutdownReply r{};
    if (services_.shutdown) r = services_.shutdown(m.grace_ms);
    if (in.reply_value(r).ok()) tx_.fetch_add(1, std::memory_order_relaxed);
    ep_->flush();
    set_state(State::kShutdown);
  }));
  MK_TRY(ep->on_value<abi::PingPeerMsg>(abi::kMsgPingPeer, [this](const abi::PingPeerMsg& m, ipi::Incoming& in) {
    rx_.fetch_add(1, std::memory_order_relaxed);
    handle_ping_peer(m, in);
  }));
  for (std::uint16_t type : {abi::kMsgUpdatePrepare, abi::kMsgUpdateFreeze, abi::kMsgUpdateCancel,
                             abi::kMsgUpdateFinish}) {
    MK_TRY(ep->on_value<abi::UpdateStepMsg>(type, [this, type](const abi::UpdateStepMsg& m, ipi::Incoming& in) {
      rx_.fetch_add(1, std::memory_order_relaxed);
      abi::UpdateReply r{};
      r.fd = -1;
      if (services_.update) {
        r = services_.update(type, m);
      } else {
        r.status = -EOPNOTSUPP;
        std::snprintf(r.detail, sizeof r.detail, "this image does not support live update");
      }
      if (in.reply_value(r).ok()) tx_.fetch_add(1, std::memory_order_relaxed);
      ep_->flush();
      // A partial finish (a staged update's step) leaves the image serving.
      if (type == abi::kMsgUpdateFinish && r.status == 0 && !(m.flags & abi::kUpdateFlagPartial)) {
        set_state(State::kRetired);
      }
    }));
  }
  for (std::uint16_t type : {abi::kMsgHandover, abi::kMsgUpdatePrecopy}) {
    MK_TRY(ep->on_value<abi::HandoverMsg>(type, [this, type](const abi::HandoverMsg& m, ipi::Incoming& in) {
      rx_.fetch_add(1, std::memory_order_relaxed);
      abi::UpdateReply r{};
      r.fd = -1;
      const auto& service = type == abi::kMsgHandover ? services_.handover : services_.precopy;
      if (service) {
        r = service(m);
      } else {
        r.status = -EOPNOTSUPP;
        std::snprintf(r.detail, sizeof r.detail, "this image is not a parked successor");
      }
      if (in.reply_value(r).ok()) tx_.fetch_add(1, std::memory_order_relaxed);
      ep_->flush();
    }));
  }
  for (std::uint16_t type : {abi::kMsgCpuRelease, abi::kMsgCpuAdd}) {
    MK_TRY(ep->on_value<abi::CpuMsg>(type, [this, type](const abi::CpuMsg& m, ipi::Incoming& in) {
      rx_.fetch_add(1, std::memory_order_relaxed);
      abi::CpuReply r{};
      if (services_.cpu) {
        r = services_.cpu(type, m);
      } else {
        r.status = -EOPNOTSUPP;
        std::snprintf(r.detail, sizeof r.detail, "this image does not move CPUs");
      }
      if (in.reply_value(r).ok()) tx_.fetch_add(1, std::memory_order_relaxed);
      ep_->flush();
    }));
  }
  for (std::uint16_t type :
       {abi::kMsgMemoryAdd, abi::kMsgMemoryRelease, abi::kMsgDeviceAdd, abi::kMsgDeviceRelease}) {
    MK_TRY(ep->on_value<abi::ResourceMsg>(type, [this, type](const abi::ResourceMsg& m, ipi::Incoming& in) {
      rx_.fetch_add(1, std::memory_order_relaxed);
      abi::ResourceReply r{};
      r.fd = -1;
      if (services_.resource) {
        r = services_.resource(type, m);
      } else {
        r.status = -EOPNOTSUPP;
        std::snprintf(r.detail, sizeof r.detail, "this image does not move memory or devices");
      }
      if (in.reply_value(r).ok()) tx_.fetch_add(1, std::memory_order_relaxed);
      ep_->flush();
    }));
  }
  ep->on_peer_down([this](ipi::PeerId peer, const Error& why) {
    if (peer != host_id_) return;
    std::fprintf(stderr, "mksdk: host down: %s\n", why.to_string().c_str());
    set_state(State::kHostDown);
  });
  return {};
}

void HostLink::handle_ping_peer(const abi::PingPeerMsg& m, ipi::Incoming& in) {
  // Blocks this (the host) thread for the series; the peer thread keeps
  // answering other instances meanwhile.
  abi::PingPeerReply r{};
  if (peers_) {
    r = peers_->ping(m.peer_id, m.count, m.size, m.deadline_ms);
  } else {
    r.status = -ESHUTDOWN;  // detached for a live update, or a successor not restored yet
  }
  if (in.reply_value(r).ok()) tx_.fetch_add(1, std::memory_order_relaxed);
}

Result<void> HostLink::send(std::uint16_t type, std::span<const std::byte> bytes) {
  ipi::Status st = ep_->send(host_id_, type, bytes);
  if (!st.ok()) {
    return MK_FAIL(st.code(), "sending to the host", "type 0x%x: %s", type, std::strerror(st.code()));
  }
  ep_->flush();
  tx_.fetch_add(1, std::memory_order_relaxed);
  return {};
}

Result<void> HostLink::send_ready(const abi::ReadyMsg& msg) {
  return send(abi::kMsgReady, std::as_bytes(std::span<const abi::ReadyMsg, 1>(&msg, 1)));
}

Result<void> HostLink::send_tenant_exit(const abi::TenantExitMsg& msg) {
  return send(abi::kMsgTenantExit, std::as_bytes(std::span<const abi::TenantExitMsg, 1>(&msg, 1)));
}

HostLink::State HostLink::serve_once(std::chrono::nanoseconds timeout) {
  if (state_ != State::kRunning) return state_;
  ep_->dispatch(timeout);
  if (state_ == State::kRunning && !ep_->peer_up(host_id_)) set_state(State::kHostDown);
  return state_;
}

std::uint64_t HostLink::rx() const {
  return rx_.load(std::memory_order_relaxed) + (peers_ ? peers_->rx() : 0);
}

std::uint64_t HostLink::tx() const {
  return tx_.load(std::memory_order_relaxed) + (peers_ ? peers_->tx() : 0);
}

}  // namespace mk::sdk
