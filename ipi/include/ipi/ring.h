// DOC: RingProducer / RingConsumer — the two halves of one SPSC slot ring.
//
// What this is: views over one Direction block of a channel region
// (abi/ring_layout.h). The producer copies a message into 1..32 consecutive
// 64-byte slots (or into the bulk byte ring, leaving a BulkRef in one slot)
// and publishes it with a release store of the head slot's sequence number.
// The consumer acquires the sequence number, validates everything, copies the
// payload out and releases the slots. Neither side allocates, locks or makes a
// syscall; both keep their own position privately and never trust the other
// side's copy more than as a bound.
//
// Place in the IPI flow: Channel owns one producer (its outgoing direction)
// and one consumer (its incoming direction) and adds the doorbell on top.
// The fuzzer (tests/fuzz/ipi) drives RingConsumer directly over random bytes.
//
// Happy path:
//   1. producer.write(type, kind, corr, bytes)  -> message written, unpublished
//   2. producer.publish()                       -> visible (release store of
//      the batch's first head seq; pairs with the acquire in try_pop)
//   3. consumer.try_pop(msg)                    -> validated copy (or a
//      BulkRef span) handed out; tail release-stored (pairs with the acquire
//      of `tail` in RingProducer::reserve)
//   4. consumer.release() / next try_pop        -> bulk bytes given back
// Unhappy paths:
//   1. Ring or bulk full: write() returns EAGAIN and writes nothing
//      (back-pressure; nothing is overwritten or lost).
//   2. Payload larger than the bulk ring (or than kMaxSpanPayload with no bulk
//      ring): EMSGSIZE. Type outside the four ranges or bad kind: EINVAL.
//   3. The consumer's `tail` / `bulk_tail` are impossible (peer scribbled
//      them): write() returns EPROTO; the producer's own state is unchanged.
//   4. A slot whose seq, flags, length, continuation chain, type or BulkRef
//      is wrong: try_pop counts it in RingStats, skips it and returns
//      EBADMSG. A scribbling peer can therefore only lose its own messages;
//      each try_pop does bounded work.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "ipi/abi/ring_layout.h"
#include "ipi/status.h"

namespace mk::ipi {

// Where one direction lives in this process's mapping. Geometry comes from
// the region probe (trusted local copy), never re-read from shared memory.
struct RingView {
  abi::DirectionControl* control = nullptr;
  std::byte* slots = nullptr;  // slot_count * abi::kSlotSize bytes
  std::uint32_t slot_count = 0;
  std::byte* bulk = nullptr;  // bulk_size bytes, may be null when 0
  std::uint64_t bulk_size = 0;
};

// Number of slots an inline payload of `len` bytes occupies (len <= kMaxSpanPayload).
constexpr std::uint32_t slots_for(std::size_t len) {
  if (len <= abi::kHeadPayload) return 1;
  return static_cast<std::uint32_t>(1 + (len - abi::kHeadPayload + abi::kContPayload - 1) /
                                            abi::kContPayload);
}

enum class MessageKind : std::uint8_t {
  kOneWay = abi::kKindOneWay,
  kRequest = abi::kKindRequest,
  kResponse = abi::kKindResponse,
  kErrorResponse = abi::kKindErrorResponse,
};

// A received message. `payload` points into the consumer's scratch buffer
// (inline/spanning messages) or into the shared bulk ring (by_ref); it stays
// valid until the next try_pop() or release() on the same consumer. A by_ref
// payload lives in memory the peer can still write: treat its bytes as
// untrusted (its bounds are already checked).
struct InMessage {
  std::uint16_t type = 0;
  MessageKind kind = MessageKind::kOneWay;
  bool by_ref = false;
  std::uint32_t corr = 0;
  std::span<const std::byte> payload;
};

struct RingStats {
  std::uint64_t received = 0;       // messages handed out
  std::uint64_t corrupt_slots = 0;  // bad seq / flags / continuation chain
  std::uint64_t bad_length = 0;     // length inconsistent with nslots
  std::uint64_t bad_type = 0;       // type outside the four ranges
  std::uint64_t bad_bulk = 0;       // BulkRef out of bounds or inconsistent
  std::uint64_t errors() const { return corrupt_slots + bad_length + bad_type + bad_bulk; }
};

class RingProducer {
 public:
  RingProducer() = default;
  explicit RingProducer(const RingView& v);

  // Copies one message into the ring without publishing it.
  // Returns: 0; EAGAIN (no room now); EMSGSIZE (too large for this channel);
  // EINVAL (type or kind invalid); EPROTO (consumer indices corrupt).
  Status write(std::uint16_t type, MessageKind kind, std::uint32_t corr,
               std::span<const std::byte> payload);

  // Makes every written message visible at once. Returns true when something
  // new was published (the caller then rings the doorbell).
  bool publish();

  std::uint32_t unpublished() const { return unpublished_; }
  std::uint64_t position() const { return head_; }
  std::uint64_t max_payload() const;
  // Slots written and not yet taken by the consumer, from a fresh read of
  // its shared `tail`; slot_count when that tail is impossible (ahead of our
  // head: a scribbled index), so a corrupt peer looks full, never empty.
  std::uint64_t backlog() const;

  // Take-over (Channel::take_over): recovers where the previous producer of
  // this direction stopped, from shared memory only. Reads, never writes.
  // Head: from the consumer's `tail`, walk forward while each slot's seq says
  // "published at this position" (a valid message advances by its nslots,
  // anything else by one slot, as the consumer would skip it), at most
  // slot_count slots. Bulk head: end of the newest by-reference message
  // still in the slots (forward walk, else back to head - slot_count), else
  // the consumer's `bulk_tail`. Returns 0, or EBADMSG when the indices are
  // impossible for an honest ring (nothing is changed then).
  Status resume();
  // After resume(): gives every slot from the recovered head up to a lap
  // past the consumer's tail its "empty" seq, so messages the previous owner
  // wrote but never published can never become visible. Those slots belong
  // to the producer (the consumer cannot pass the head), so this races with
  // nobody but a second live producer (a broken precondition).
  void discard_unpublished();

 private:
  Status reserve(std::uint32_t nslots);
  Status reserve_bulk(std::size_t len, std::uint64_t* pos);
  std::byte* slot_at(std::uint64_t pos) const {
    return v_.slots + (pos & mask_) * abi::kSlotSize;
  }

  RingView v_{};
  std::uint64_t mask_ = 0;
  std::uint64_t head_ = 0;       // next slot position to write
  std::uint64_t pub_ = 0;        // first unpublished position (its seq is withheld)
  std::uint64_t tail_cache_ = 0; // last consumer tail we read
  std::uint64_t bulk_head_ = 0;
  std::uint64_t bulk_tail_cache_ = 0;
  std::uint32_t unpublished_ = 0;
};

class RingConsumer {
 public:
  RingConsumer() = default;
  // `scratch` receives inline payloads; it must hold kMaxSpanPayload bytes.
  RingConsumer(const RingView& v, std::span<std::byte> scratch);

  // Returns: 0 (out filled); EAGAIN (nothing published); EBADMSG (an invalid
  // slot was counted and skipped: call again).
  Status try_pop(InMessage& out);

  // Gives a held by-reference payload back to the producer.
  void release() {
    if (holding_) release_held();
  }

  // True when the next slot is not "empty" (ready, or garbage that try_pop
  // will skip). seq_cst: the load half of the doorbell protocol.
  bool has_pending() const;

  const RingStats& stats() const { return stats_; }
  std::uint64_t position() const { return pos_; }

  // Take-over (Channel::take_over): continues from the shared `tail` and
  // `bulk_tail` the previous consumer of this direction left. Reads only.
  // Returns 0, or EBADMSG when the slot at `tail` shows a seq no honest ring
  // has there (neither ready nor one lap old): a scribbled tail.
  Status resume();

 private:
  Status skip(std::uint32_t n, std::uint64_t& counter);
  void release_held();
  const std::byte* slot_at(std::uint64_t pos) const {
    return v_.slots + (pos & mask_) * abi::kSlotSize;
  }

  RingView v_{};
  std::span<std::byte> scratch_{};
  std::uint64_t mask_ = 0;
  std::uint64_t pos_ = 0;        // next slot position to read
  std::uint64_t bulk_pos_ = 0;   // bulk bytes released so far
  std::uint64_t held_end_ = 0;   // bulk position to release, when holding
  bool holding_ = false;
  RingStats stats_{};
};

// Creation-time initialisation of a fresh direction: every slot gets the seq
// of "written one lap ago" so position 0.. read as empty.
void init_ring(const RingView& v);

}  // namespace mk::ipi
