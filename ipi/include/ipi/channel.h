// DOC: Channel — one side of a two-way IPI link between two endpoints.
//
// What this is: a Region (one sealed memfd, two SPSC rings) seen from side A
// (the creator) or side B (the attacher). A channel produces into its
// outgoing ring, consumes from its incoming ring, rings the peer's doorbell
// after publishing and sleeps on its own doorbell when its wait mode says so.
// Sends can be batched: up to `batch` messages are written and then published
// together (one release store, one doorbell check) when the batch fills or on
// flush(). Payloads up to 48 bytes take one slot, up to 1784 bytes span slots,
// larger ones go by reference into the channel's bulk ring.
//
// A side can change hands: detach() leaves without closing and
// take_over(fds, side) resumes that side (or one whose owner died) from the
// region's fds, recovering both ring positions from shared memory.
//
// A Channel is used by one thread at a time (it is one side of an SPSC pair);
// the two sides may live in two threads of one process (create_pair) or in
// two processes (create + fork, or create + SCM_RIGHTS + attach).
//
// Place in the IPI flow: Endpoint holds one Channel per peer. The benchmark
// (tools/mkbench/ipi.cc) and tests drive Channels directly.
//
// Happy path:
//   1. auto a = Channel::create(cfg, opts);  fds go to the peer (fork or
//      fd_passing.h);  auto b = Channel::attach(std::move(fds), opts);
//   2. a->try_send(type, bytes) [batched] ... a->flush();
//   3. b->receive(msg, timeout) polls, then sleeps per WaitMode, returns msg;
//   4. close() (or destruction) marks the side closed and wakes the peer.
//   5. Hand-over / restart: the old owner detach()es (or dies); the new one
//      calls Channel::take_over(fds, side) and continues both rings where
//      they are (its previous owner must be gone: the library cannot check).
// Unhappy paths:
//   1. Ring full: try_send returns EAGAIN (after publishing our own pending
//      batch so the peer can drain it); send(timeout) backs off and retries
//      until ETIMEDOUT. Nothing is ever overwritten.
//   2. Peer closed: try_send/send return EPIPE; receive drains what is left,
//      then returns EPIPE.
//   3. Peer scribbled the ring: try_receive returns EBADMSG (counted in
//      rx_stats()); receive() skips such slots and keeps waiting.
//   4. Message too large: EMSGSIZE; bad type or kind: EINVAL.
//   5. Nothing arrives in time: receive returns ETIMEDOUT.
//   6. take_over: EPIPE when that side was closed for good; EBADMSG when the
//      shared indices cannot come from an honest ring (nothing written); the
//      attach probe codes otherwise. A message the dead owner had popped but
//      not handled is lost; replies to its requests reach the new owner as
//      strays; messages it wrote but never published are dropped.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <type_traits>
#include <utility>

#include "ipi/doorbell.h"
#include "ipi/region.h"
#include "ipi/ring.h"
#include "ipi/status.h"
#include "mk/result.h"

namespace mk::ipi {

inline constexpr std::uint32_t kMaxBatch = 16;

struct ChannelOptions {
  WaitMode mode = WaitMode::kAdaptive;
  std::uint32_t batch = 1;  // 1 = publish every message; up to kMaxBatch
  std::chrono::nanoseconds poll_budget = std::chrono::microseconds(50);  // kAdaptive spin
};

struct ChannelStats {
  std::uint64_t sent = 0;
  std::uint64_t send_full = 0;         // EAGAIN from a full ring / bulk ring
  std::uint64_t publishes = 0;
  std::uint64_t doorbell_syscalls = 0; // rings that had to wake the peer
  std::uint64_t sleeps = 0;            // times receive() slept on the doorbell
};

// The descriptors side B needs (owned). Obtained from Channel::export_fds()
// (dups) or received over SCM_RIGHTS.
struct ChannelFds {
  UniqueFd memfd;
  UniqueFd eventfd[2];
};

class Channel {
 public:
  using Clock = std::chrono::steady_clock;

  // Side A: a fresh region. Returns: EINVAL (bad cfg/opts) or create errors.
  static Result<Channel> create(const ChannelConfig& cfg, const ChannelOptions& opts = {});
  // Side B of a region received from side A; see Region::attach for codes.
  static Result<Channel> attach(ChannelFds fds, const ChannelOptions& opts = {});
  // Becomes `side` (0 = A, 1 = B) of an existing channel, continuing its
  // rings exactly where they are: for a daemon restarted after SIGKILL that
  // recovered the fds (pidfd_getfd) from the still-running peer, or for an
  // instance handed side A's fds by the host that created the channel.
  // Maps and probes like attach (same codes), then:
  //   - side B never attached: claims it exactly like attach;
  //   - pid[side] = getpid() (the peer's peer_pid() then reports us);
  //   - incoming ring: continues at the shared consumer tail / bulk_tail;
  //   - outgoing ring: the head is recovered by walking forward from the
  //     peer's consumer tail while slots read "published here" (at most one
  //     ring); messages the previous owner wrote but never published are
  //     discarded and later overwritten; the bulk head follows the newest
  //     by-reference message still in the ring, else bulk_tail.
  // PRECONDITION (not checkable by the library): the previous owner of
  // `side` is dead or detach()ed. Two live producers on one ring corrupt it;
  // two live consumers lose messages.
  // Lost across a take-over: a message the previous owner had popped but not
  // handled; a reply to a request it sent arrives as a stray response.
  // Returns: EINVAL (side > 1, bad opts); attach's probe codes (EBADF,
  // EPERM, EPROTO, EPROTONOSUPPORT, EBADMSG, EINVAL); EPIPE (that side was
  // closed for good); EBUSY (side B got attached concurrently); EBADMSG
  // (shared indices impossible for an honest ring; nothing was written).
  static Result<Channel> take_over(ChannelFds fds, std::uint32_t side,
                                   const ChannelOptions& opts = {});
  // Both sides in this process sharing one mapping (threads). Returns the
  // create() codes.
  static Result<std::pair<Channel, Channel>> create_pair(const ChannelConfig& cfg,
                                                         const ChannelOptions& opts_a = {},
                                                         const ChannelOptions& opts_b = {});

  Channel(Channel&&) noexcept = default;
  Channel& operator=(Channel&& o) noexcept;
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;
  ~Channel();

  // Duplicates the region's fds for side B. Returns errno of dup (EMFILE).
  Result<ChannelFds> export_fds() const;

  // ---- hot path (no allocation, lock or syscall unless the peer sleeps) ----
  // Returns: 0; EAGAIN (full); EPIPE (peer closed); EMSGSIZE; EINVAL; EPROTO.
  Status try_send(std::uint16_t type, std::span<const std::byte> payload,
                  MessageKind kind = MessageKind::kOneWay, std::uint32_t corr = 0);
  template <class T>
    requires std::is_trivially_copyable_v<T>
  Status try_send_value(std::uint16_t type, const T& v) {
    return try_send(type, std::as_bytes(std::span<const T, 1>(&v, 1)));
  }
  // Publishes the pending batch and rings the doorbell if the peer sleeps.
  void flush();
  // Returns: 0; EAGAIN (empty); EBADMSG (invalid slot skipped, counted).
  // msg.payload stays valid until the next try_receive/receive/release.
  Status try_receive(InMessage& msg) { return rx_.try_pop(msg); }
  void release() { rx_.release(); }

  // ---- blocking ----
  // Returns: ok; ETIMEDOUT; EPIPE; EMSGSIZE; EINVAL; EPROTO.
  Result<void> send(std::uint16_t type, std::span<const std::byte> payload,
                    std::chrono::nanoseconds timeout, MessageKind kind = MessageKind::kOneWay,
                    std::uint32_t corr = 0);
  // Waits per the wait mode. Returns: ok; ETIMEDOUT; EPIPE (peer closed and
  // nothing left).
  Result<void> receive(InMessage& msg, std::chrono::nanoseconds timeout);

  // ---- eventfd view ----
  // Publishes "sleeping on eventfd" unless a message is already there
  // (returns false: do not wait, call try_receive). After the event loop saw
  // event_fd() readable (or gave up), call disarm_eventfd().
  bool arm_eventfd();
  void disarm_eventfd();
  int event_fd() const { return bell_rx_.eventfd(); }

  // Marks this side closed (after flushing) and wakes the peer. Idempotent.
  void close();
  // Leaves the channel without closing the side (flushes the pending batch
  // and gives back a held by-reference payload first), so a later
  // take_over() can resume it. The peer sees nothing. Afterwards this object
  // is inert like a moved-from Channel (only destruction, assignment and
  // detach/close are valid). Idempotent.
  void detach();
  bool peer_closed() const;
  pid_t peer_pid() const;  // as written by the peer at create/attach (untrusted)

  std::uint32_t side() const { return side_; }
  const ChannelOptions& options() const { return opts_; }
  const RingStats& rx_stats() const { return rx_.stats(); }
  const ChannelStats& stats() const { return stats_; }
  Region& region() const { return *region_; }
  // Our outgoing messages the peer has not taken yet, in slots (see
  // RingProducer::backlog: a corrupt consumer index reads as a full ring).
  std::uint64_t tx_backlog() const { return tx_.backlog(); }
  RingConsumer& consumer() { return rx_; }
  Doorbell& rx_doorbell() { return bell_rx_; }

 private:
  Channel() = default;
  static Result<Channel> make(std::shared_ptr<Region> region, std::uint32_t side,
                              const ChannelOptions& opts);

  std::shared_ptr<Region> region_;
  std::uint32_t side_ = 0;
  ChannelOptions opts_{};
  std::unique_ptr<std::byte[]> scratch_;  // kMaxSpanPayload; stable across moves
  RingProducer tx_;
  RingConsumer rx_;
  Doorbell bell_tx_;  // the peer's doorbell (consumer of our outgoing ring)
  Doorbell bell_rx_;  // ours
  ChannelStats stats_{};
  bool closed_ = false;
};

// Validates options. Returns EINVAL on batch 0 or > kMaxBatch, negative budget.
Result<void> validate(const ChannelOptions& opts);

}  // namespace mk::ipi
