// DOC: Endpoint — typed messaging, handlers and request/response over channels.
//
// What this is: the IPI API an instance (or the host) programs against. An
// endpoint owns one Channel per peer, a handler table keyed by message type,
// a fixed table of pending requests, and (for peers in other processes) a
// pidfd per peer so that a dead peer is noticed and its pending requests fail
// with ECONNRESET instead of hanging until their timeout. It is driven by one
// thread: dispatch() waits according to the endpoint's WaitMode, drains at
// most one ring's worth of messages per peer, runs handlers, expires
// requests, checks peer liveness when idle and flushes batched sends.
//
// Place in the IPI flow: kernel images and mkerneld build one Endpoint each;
// Channel (channel.h) carries the bytes; message_types.h numbers them.
//
// Happy path:
//   1. auto ep = Endpoint::create(opts);             (a unique_ptr)
//   2. ep->add_peer(id, std::move(channel), peer_pid);   (one per peer)
//   3. ep->on(type, handler) / ep->on_value<T>(type, fn); ep->on_peer_down(fn);
//   4. ep->send(peer, type, bytes) / send_value / broadcast; ep->flush();
//   5. ep->request(peer, type, bytes, reply_buf, timeout) -> reply length;
//      or request_async(..., callback) completed from dispatch();
//   6. loop: ep->dispatch(timeout).
// Unhappy paths:
//   1. No handler for a request's type: the requester gets ENOSYS; a one-way
//      message without a handler is counted (stats().unhandled).
//   2. No reply in time: ETIMEDOUT ("ipi request timed out").
//   3. Peer process exits or closes its channel: pending requests to it fail
//      with ECONNRESET, on_peer_down fires once, later sends return
//      ECONNRESET. Detection latency: at most liveness_interval while idle.
//   4. request() from inside a handler: EDEADLK (the nested dispatch would
//      reuse the buffers the outer handler is reading). Use request_async.
//   5. Pending table full: ENOSPC. Unknown peer: ENOENT. Reply larger than
//      reply_buf: EMSGSIZE. Bad type: EINVAL. Duplicate peer/handler: EEXIST.
//   6. Malformed traffic from a peer is counted in its channel's rx_stats and
//      dropped; the remote error code of an error response is passed through.
//   7. A peer that sends requests but does not read the replies (its ring
//      toward it full): the first reply that finds the ring full waits up to
//      reply_timeout; if it times out the peer is marked stalled and later
//      replies to it are tried once and dropped (stats().replies_dropped)
//      until it has read its ring down to half. So a dispatch pass never
//      blocks for more than one reply_timeout per such peer (not one per
//      request), and the peer just sees its own requests time out.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <span>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "ipi/channel.h"
#include "ipi/message_types.h"
#include "ipi/unique_fd.h"
#include "mk/result.h"

namespace mk::ipi {

using PeerId = std::uint32_t;

struct EndpointOptions {
  WaitMode mode = WaitMode::kAdaptive;
  std::chrono::nanoseconds poll_budget = std::chrono::microseconds(50);
  std::chrono::nanoseconds liveness_interval = std::chrono::milliseconds(100);
  std::chrono::nanoseconds reply_timeout = std::chrono::milliseconds(100);  // full reverse ring
  std::uint32_t max_pending = 256;  // outstanding requests, <= 65536
};

struct EndpointStats {
  std::uint64_t dispatched = 0;       // handler invocations
  std::uint64_t unhandled = 0;        // one-way messages without a handler
  std::uint64_t stray_responses = 0;  // responses to unknown/expired requests
  std::uint64_t bad_payload = 0;      // typed handler got the wrong size
  std::uint64_t timeouts = 0;
  std::uint64_t peers_down = 0;
  std::uint64_t replies_dropped = 0;  // replies a peer's full ring could not take (unhappy path 7)
};

class Endpoint;

// A received message while its handler runs. Do not keep it (or its payload)
// past the handler's return.
class Incoming {
 public:
  PeerId peer() const { return peer_; }
  std::uint16_t type() const { return msg_->type; }
  bool is_request() const { return msg_->kind == MessageKind::kRequest; }
  std::uint32_t id() const { return msg_->corr; }
  std::span<const std::byte> payload() const { return msg_->payload; }

  // Answers a request (at most once). Returns EINVAL (not a request),
  // EALREADY (already answered), or the channel's send codes.
  Status reply(std::span<const std::byte> bytes);
  template <class T>
    requires std::is_trivially_copyable_v<T>
  Status reply_value(const T& v) {
    return reply(std::as_bytes(std::span<const T, 1>(&v, 1)));
  }
  Status reply_error(int code);

 private:
  friend class Endpoint;
  Incoming(Endpoint* ep, PeerId peer, const InMessage* msg) : ep_(ep), peer_(peer), msg_(msg) {}
  Endpoint* ep_;
  PeerId peer_;
  const InMessage* msg_;
  bool replied_ = false;
};

using Handler = std::function<void(Incoming&)>;
using PeerDownFn = std::function<void(PeerId, const Error&)>;
// Called once per request: the reply bytes (valid during the call) or the error.
using ResponseFn = std::function<void(Result<std::span<const std::byte>>)>;

class Endpoint {
 public:
  // Returns EINVAL (bad options) or epoll_create1's errno. Heap-allocated
  // and pinned: handlers and callbacks may capture the endpoint's address.
  static Result<std::unique_ptr<Endpoint>> create(const EndpointOptions& opts = {});

  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;
  ~Endpoint();

  // peer_pid > 0: watch that process with a pidfd (it must be our child or
  // otherwise not yet reaped to avoid pid reuse). 0: same-process peer,
  // noticed down only when it closes its channel.
  // Returns: EEXIST, EINVAL (more than 127 peers), pidfd_open errno (ESRCH).
  Result<void> add_peer(PeerId id, Channel&& ch, pid_t peer_pid = 0);

  Result<void> on(std::uint16_t type, Handler h);
  template <class T>
    requires std::is_trivially_copyable_v<T>
  Result<void> on_value(std::uint16_t type, std::function<void(const T&, Incoming&)> fn);
  void on_peer_down(PeerDownFn fn) { on_peer_down_ = std::move(fn); }

  // Hot path. Returns: 0; ENOENT; ECONNRESET (peer down); channel codes.
  Status send(PeerId peer, std::uint16_t type, std::span<const std::byte> bytes);
  template <class T>
    requires std::is_trivially_copyable_v<T>
  Status send_value(PeerId peer, std::uint16_t type, const T& v) {
    return send(peer, type, std::as_bytes(std::span<const T, 1>(&v, 1)));
  }
  // Sends to every peer that is up (waiting up to reply_timeout on a full
  // ring). Returns the number reached, or the first error after trying all.
  Result<unsigned> broadcast(std::uint16_t type, std::span<const std::byte> bytes);
  void flush();

  Result<std::uint32_t> request_async(PeerId peer, std::uint16_t type,
                                      std::span<const std::byte> bytes,
                                      std::chrono::nanoseconds timeout, ResponseFn done);
  // Synchronous: dispatches other traffic while it waits. Returns the reply
  // length copied into `reply`.
  Result<std::size_t> request(PeerId peer, std::uint16_t type, std::span<const std::byte> bytes,
                              std::span<std::byte> reply, std::chrono::nanoseconds timeout);

  // Waits (per WaitMode) until at least one message was handled or `timeout`
  // passed; returns how many were handled (0 on timeout).
  std::size_t dispatch(std::chrono::nanoseconds timeout);
  // One non-blocking pass. Returns messages handled.
  std::size_t poll();
  // From any thread: the dispatch() running (or the next one to start)
  // returns at once, 0 if it handled nothing. For a thread that serves
  // this endpoint and must also see a request of its own (a stop, a job),
  // without waiting for a message or its timeout.
  void wake();
  // How later dispatch() calls wait (from the dispatching thread only): a
  // host that must not pay a wake-up for a reply it expects within
  // microseconds (a live update's blackout) spins with kPoll meanwhile.
  void set_wait_mode(WaitMode mode) { opts_.mode = mode; }
  WaitMode wait_mode() const { return opts_.mode; }

  // Event-loop view: event_fd() is an epoll fd that becomes readable when a
  // peer rings or dies. arm() returns false if work is already pending (do
  // not wait; call poll()). After waking, call disarm() then poll().
  int event_fd() const { return epoll_.get(); }
  bool arm();
  void disarm();

  bool peer_up(PeerId peer) const;
  std::size_t peer_count() const { return peers_.size(); }
  Channel* channel(PeerId peer);
  const EndpointStats& stats() const { return stats_; }
  std::uint32_t pending_requests() const { return pending_count_; }

 private:
  friend class Incoming;
  struct Peer;
  struct Pending;
  explicit Endpoint(const EndpointOptions& opts);

  Peer* find(PeerId id);
  const Peer* find(PeerId id) const;
  std::size_t drain(Peer& p);
  std::size_t drain_all();
  void handle(Peer& p, const InMessage& m);
  void complete(Peer& p, const InMessage& m);
  void expire_requests();
  void check_liveness(bool force);
  void mark_down(Peer& p, const Error& why);
  void fail_pending(PeerId peer, const Error& why);
  Status send_reply(PeerId peer, std::uint32_t corr, MessageKind kind,
                    std::span<const std::byte> bytes);
  void sleep_until(Channel::Clock::time_point deadline);

  EndpointOptions opts_{};
  std::vector<std::unique_ptr<Peer>> peers_;
  std::unordered_map<std::uint16_t, Handler> handlers_;
  PeerDownFn on_peer_down_;
  std::vector<Pending> pending_;
  std::uint32_t pending_count_ = 0;
  std::uint32_t next_gen_ = 1;
  std::vector<std::uint32_t> free_slots_;
  Channel::Clock::time_point next_liveness_{};
  Channel::Clock::time_point next_expiry_ = Channel::Clock::time_point::max();
  UniqueFd epoll_;
  EndpointStats stats_{};
  int dispatch_depth_ = 0;
  // wake(): a futex word that sleep_until() waits on next to the peers'
  // doorbells (first of them), and the flag dispatch() returns on.
  abi::DoorbellLine wake_line_{};
  Doorbell wake_bell_{&wake_line_, -1};
  std::atomic<bool> wake_requested_{false};
  bool take_wake() { return wake_requested_.load(std::memory_order_relaxed) && wake_requested_.exchange(false); }
};

template <class T>
  requires std::is_trivially_copyable_v<T>
Result<void> Endpoint::on_value(std::uint16_t type, std::function<void(const T&, Incoming&)> fn) {
  return on(type, [this, fn = std::move(fn)](Incoming& in) {
    if (in.payload().size() != sizeof(T)) {
      ++stats_.bad_payload;
      if (in.is_request()) (void)in.reply_error(EBADMSG);
      return;
    }
    T v;
    std::memcpy(&v, in.payload().data(), sizeof v);
    fn(v, in);
  });
}

}  // namespace mk::ipi
