// peer_link: instance-to-instance channels, echo service, ping series.
#include "peer_link.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "mksdk/boot_info.h"

namespace mk::sdk {

std::vector<PeerLink::Side> PeerLink::sides_of(const BootTree& tree) {
  std::vector<Side> out;
  for (const auto& ch : tree.ipi.channels) {
    if (ch.peer_id == tree.ipi.host_id) continue;
    auto fds = channel_fds(ch);
    Side s;
    s.peer_id = ch.peer_id;
    s.side = ch.side;
    s.name = ch.peer_name;
    s.fds.memfd.reset(fds[0]);
    s.fds.eventfd[0].reset(fds[1]);
    s.fds.eventfd[1].reset(fds[2]);
    out.push_back(std::move(s));
  }
  return out;
}

Result<std::unique_ptr<PeerLink>> PeerLink::open(std::vector<Side> sides, const Options& opts) {
  std::unique_ptr<PeerLink> self(new PeerLink());
  self->opts_ = opts;
  ipi::EndpointOptions eo;
  eo.mode = opts.mode;
  MK_TRY_ASSIGN(self->ep_, ipi::Endpoint::create(eo));
  std::map<std::uint32_t, std::string> names;
  for (auto& sd : sides) {
    names[sd.peer_id] = sd.name;
    ipi::ChannelOptions co;
    co.mode = opts.mode;
    Side kept{sd.peer_id, sd.side, sd.name, {}};
    self->sides_.push_back(std::move(kept));
    if (!sd.fds.memfd.valid()) {  // failed to attach before a detach(): still failed
      self->attach_error_[sd.peer_id] = EBADF;
      continue;
    }
    // The side the tree names (docs/boot-tree.md mkernel,side); take_over
    // claims a never-attached side like attach and resumes a detached one.
    auto c = ipi::Channel::take_over(std::move(sd.fds), sd.side, co);
    if (!c) {
      std::fprintf(stderr, "mksdk: channel to peer %u: %s\n", sd.peer_id, c.error().to_string().c_str());
      self->attach_error_[sd.peer_id] = c.error().code();
      continue;
    }
    if (auto r = self->ep_->add_peer(sd.peer_id, std::move(*c), 0); !r) {
      self->attach_error_[sd.peer_id] = r.error().code();
      continue;
    }
    self->attach_error_[sd.peer_id] = 0;
  }
  PeerLink* raw = self.get();
  // A peer instance that stops or dies: its side is closed (by itself, or by
  // the host on its behalf), pending requests to it fail with ECONNRESET.
  // Said on the console so operators see it.
  self->ep_->on_peer_down([names](ipi::PeerId peer, const Error& why) {
    auto it = names.find(peer);
    std::fprintf(stderr, "mksdk: peer %u '%s' down: %s\n", peer, it == names.end() ? "?" : it->second.c_str(),
                 why.to_string().c_str());
  });
  MK_TRY(self->ep_->on(abi::kMsgPing, [raw](ipi::Incoming& in) {
    raw->rx_.fetch_add(1, std::memory_order_relaxed);
    if (in.reply(in.payload()).ok()) raw->tx_.fetch_add(1, std::memory_order_relaxed);
  }));
  // No peer channels: no thread (ping() answers ENOENT inline).
  if (!self->attach_error_.empty()) self->thread_ = std::thread([raw] { raw->run(); });
  return self;
}

Result<std::vector<PeerLink::Side>> PeerLink::detach() {
  {
    std::lock_guard g(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  ep_->wake();  // out of its dispatch now, not when the 10 ms wait ends (inside an update's freeze)
  if (thread_.joinable()) thread_.join();
  std::vector<Side> out;
  for (const auto& sd : sides_) {
    Side s{sd.peer_id, sd.side, sd.name, {}};
    auto it = attach_error_.find(sd.peer_id);
    if (it != attach_error_.end() && it->second == 0) {
      ipi::Channel* ch = ep_->channel(sd.peer_id);
      if (ch) {
        MK_TRY_ASSIGN(s.fds, ch->export_fds());
      }
    }
    out.push_back(std::move(s));
  }
  for (const auto& s : out) {
    if (!s.fds.memfd.valid()) continue;
    if (ipi::Channel* ch = ep_->channel(s.peer_id)) ch->detach();
  }
  return out;
}

PeerLink::~PeerLink() {
  {
    std::lock_guard g(mu_);
    stop_ = true;
  }
  if (ep_) ep_->wake();
  if (thread_.joinable()) thread_.join();
}

void PeerLink::run() {
  for (;;) {
    Job* job = nullptr;
    {
      std::lock_guard g(mu_);
      if (stop_) return;
      job = job_;
    }
    if (job && !job->done) {
      abi::PingPeerReply r = run_ping(job->req);
      {
        std::lock_guard g(mu_);
        job->reply = r;
        job->done = true;
        job_ = nullptr;
      }
      cv_.notify_all();
      continue;
    }
    // Short waits: a new job or stop is seen within this bound.
    ep_->dispatch(std::chrono::milliseconds(10));
  }
}

abi::PingPeerReply PeerLink::ping(std::uint32_t peer, std::uint32_t count, std::uint32_t size,
                                  std::uint32_t deadline_ms) {
  Job job;
  job.req = abi::PingPeerMsg{peer, count, size, deadline_ms};
  if (!thread_.joinable()) return run_ping(job.req);  // no peers: ENOENT
  std::unique_lock lock(mu_);
  job_ = &job;
  ep_->wake();  // the peer thread takes the job now, not after its current wait
  cv_.wait(lock, [&] { return job.done || stop_; });
  if (!job.done) {
    job_ = nullptr;
    job.reply.status = -ESHUTDOWN;
  }
  return job.reply;
}

abi::PingPeerReply PeerLink::run_ping(const abi::PingPeerMsg& req) {
  abi::PingPeerReply out{};
  auto it = attach_error_.find(req.peer_id);
  if (it == attach_error_.end()) {
    out.status = -ENOENT;
    return out;
  }
  if (it->second != 0) {
    out.status = -it->second;
    return out;
  }
  if (req.count == 0 || req.count > 100000 || req.size > 4096) {
    out.status = -EINVAL;
    return out;
  }
  std::vector<std::byte> payload(req.size, std::byte{0x5a}), reply(req.size + 64);
  std::vector<std::uint64_t> rtt;
  rtt.reserve(req.count);
  // The host's deadline, when it gave one, caps ours: it stops waiting then.
  auto bound = std::chrono::duration_cast<std::chrono::milliseconds>(opts_.ping_deadline);
  if (req.deadline_ms > 0) bound = std::min(bound, std::chrono::milliseconds(req.deadline_ms));
  const auto deadline = std::chrono::steady_clock::now() + bound;
  for (std::uint32_t i = 0; i < req.count; ++i) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      out.status = -ETIMEDOUT;
      break;
    }
    const std::uint64_t t0 = monotonic_ns();
    auto r = ep_->request(req.peer_id, abi::kMsgPing, payload, reply,
                          std::min(std::chrono::duration_cast<std::chrono::milliseconds>(opts_.ping_timeout), left));
    const std::uint64_t t1 = monotonic_ns();
    tx_.fetch_add(1, std::memory_order_relaxed);
    if (!r) {
      out.status = -r.error().code();
      break;
    }
    rx_.fetch_add(1, std::memory_order_relaxed);
    if (*r != req.size) {
      out.status = -EBADMSG;
      break;
    }
    rtt.push_back(t1 - t0);
  }
  out.done = static_cast<std::uint32_t>(rtt.size());
  if (!rtt.empty()) {
    std::sort(rtt.begin(), rtt.end());
    out.min_ns = rtt.front();
    out.max_ns = rtt.back();
    out.p50_ns = rtt[(rtt.size() - 1) / 2];
    out.p99_ns = rtt[std::min(rtt.size() - 1, (rtt.size() * 99) / 100)];
  }
  return out;
}

}  // namespace mk::sdk
