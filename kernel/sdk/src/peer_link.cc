// peer_link: instance-to-instance channels, echo service, ping series.
#include "peer_link.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "mksdk/boot_info.h"

namespace mk::sdk {

Result<std::unique_ptr<PeerLink>> PeerLink::open(const BootTree& tree, const Options& opts) {
  std::unique_ptr<PeerLink> self(new PeerLink());
  self->opts_ = opts;
  ipi::EndpointOptions eo;
  eo.mode = opts.mode;
  MK_TRY_ASSIGN(self->ep_, ipi::Endpoint::create(eo));
  for (const auto& ch : tree.ipi.channels) {
    if (ch.peer_id == tree.ipi.host_id) continue;
    auto fds = channel_fds(ch);
    ipi::ChannelFds cf;
    cf.memfd.reset(fds[0]);
    cf.eventfd[0].reset(fds[1]);
    cf.eventfd[1].reset(fds[2]);
    ipi::ChannelOptions co;
    co.mode = opts.mode;
    // Side A: the host created the region for this pair and we are the
    // first of the two to start (docs/boot-tree.md mkernel,side).
    auto c = ipi::Channel::take_over(std::move(cf), ch.side, co);
    if (!c) {
      std::fprintf(stderr, "mksdk: channel to peer %u: %s\n", ch.peer_id, c.error().to_string().c_str());
      self->attach_error_[ch.peer_id] = c.error().code();
      continue;
    }
    if (auto r = self->ep_->add_peer(ch.peer_id, std::move(*c), 0); !r) {
      self->attach_error_[ch.peer_id] = r.error().code();
      continue;
    }
    self->attach_error_[ch.peer_id] = 0;
  }
  PeerLink* raw = self.get();
  // A peer instance that stops or dies: its side is closed (by itself, or by
  // the host on its behalf), pending requests to it fail with ECONNRESET.
  // Said on the console so operators see it.
  std::map<std::uint32_t, std::string> names;
  for (const auto& ch : tree.ipi.channels) names[ch.peer_id] = ch.peer_name;
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

PeerLink::~PeerLink() {
  {
    std::lock_guard g(mu_);
    stop_ = true;
  }
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

abi::PingPeerReply PeerLink::ping(std::uint32_t peer, std::uint32_t count, std::uint32_t size) {
  Job job;
  job.req = abi::PingPeerMsg{peer, count, size, 0};
  if (!thread_.joinable()) return run_ping(job.req);  // no peers: ENOENT
  std::unique_lock lock(mu_);
  job_ = &job;
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
  const auto deadline = std::chrono::steady_clock::now() + opts_.ping_deadline;
  for (std::uint32_t i = 0; i < req.count; ++i) {
    if (std::chrono::steady_clock::now() >= deadline) {
      out.status = -ETIMEDOUT;
      break;
    }
    const std::uint64_t t0 = monotonic_ns();
    auto r = ep_->request(req.peer_id, abi::kMsgPing, payload, reply, opts_.ping_timeout);
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
