// RingProducer / RingConsumer: see ipi/ring.h for the protocol and
// abi/ring_layout.h for the bytes.
#include "ipi/ring.h"

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstring>

#include "ipi/message_types.h"
#include "shm_atomic.h"

namespace mk::ipi {

using detail::low32;
using detail::shm_load;
using detail::shm_store;
using std::memory_order_acquire;
using std::memory_order_relaxed;
using std::memory_order_release;

namespace {

constexpr std::size_t kWord1 = offsetof(abi::Slot, type);  // type | flags | nslots
constexpr std::size_t kLength = offsetof(abi::Slot, length);
constexpr std::size_t kCorr = offsetof(abi::Slot, corr);

// Word 1 of a slot packs type (low 16 bits), flags (bits 16-23), nslots / index
// (bits 24-31), matching the little-endian struct layout.
constexpr std::uint32_t pack_word1(std::uint16_t type, std::uint8_t flags, std::uint8_t n) {
  return static_cast<std::uint32_t>(type) | (static_cast<std::uint32_t>(flags) << 16) |
         (static_cast<std::uint32_t>(n) << 24);
}
static_assert(std::endian::native == std::endian::little, "ring ABI is little-endian");

std::uint64_t round_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) & ~(a - 1); }

// An honest ring shows at position p either "ready" (written at p) or
// "empty" (written one lap ago, or the creation pre-fill).
bool plausible_seq(std::uint32_t seq, std::uint64_t p, std::uint64_t n) {
  return seq == low32(p + 1) || seq == low32(p + 1 - n);
}

// A consumer tail an honest ring can show: the slot at `t` is ready or one
// lap old, and the slot before it was written at t - 1 (or, ring full, reused
// at t - 1 + n). Catches a tail scribbled ahead of the producer or to garbage.
bool plausible_tail(const RingView& v, std::uint64_t mask, std::uint64_t t) {
  const std::uint64_t n = v.slot_count;
  const auto seq_at = [&](std::uint64_t q) {
    return shm_load<std::uint32_t>(v.slots + (q & mask) * abi::kSlotSize, memory_order_acquire);
  };
  if (!plausible_seq(seq_at(t), t, n)) return false;
  if (t == 0) return true;
  const std::uint32_t before = seq_at(t - 1);
  return before == low32(t) || before == low32(t + n);
}

// A message whose head seq already read "written at p": its structure as
// the producer laid it out (for RingProducer::resume; never trusted further).
struct WrittenMessage {
  std::uint32_t nslots = 1;
  bool by_ref = false;
  std::uint64_t bulk_end = 0;  // by_ref: end of its bulk bytes
};

// Parses the head at `p` (and its continuation chain); false when it is not
// a well-formed message of at most `room` slots. Reads only.
bool parse_written(const RingView& v, std::uint64_t mask, std::uint64_t p, std::uint64_t room,
                   WrittenMessage* out) {
  const auto at = [&](std::uint64_t q) { return v.slots + (q & mask) * abi::kSlotSize; };
  const std::byte* h = at(p);
  const std::uint32_t w1 = shm_load<std::uint32_t>(h + kWord1, memory_order_relaxed);
  const std::uint32_t len = shm_load<std::uint32_t>(h + kLength, memory_order_relaxed);
  const auto flags = static_cast<std::uint8_t>((w1 >> 16) & 0xff);
  const std::uint32_t nslots = w1 >> 24;
  if (flags & ~abi::kKnownHeadFlags) return false;
  const bool by_ref = flags & abi::kFlagByRef;
  if (by_ref ? nslots != 1 : (nslots == 0 || len > abi::kMaxSpanPayload || slots_for(len) != nslots)) {
    return false;
  }
  if (nslots > room) return false;
  for (std::uint32_t i = 1; i < nslots; ++i) {
    const std::byte* c = at(p + i);
    const std::uint32_t cs = shm_load<std::uint32_t>(c, memory_order_relaxed);
    const std::uint32_t cw = shm_load<std::uint32_t>(c + kWord1, memory_order_relaxed);
    if (cs != low32(p + i + 1) || cw != pack_word1(0, abi::kFlagCont, static_cast<std::uint8_t>(i))) {
      return false;
    }
  }
  out->nslots = nslots;
  out->by_ref = by_ref;
  if (by_ref) {
    const std::uint64_t rpos =
        shm_load<std::uint64_t>(h + abi::kHeadHeaderSize + offsetof(abi::BulkRef, pos), memory_order_relaxed);
    const std::uint32_t rlen = shm_load<std::uint32_t>(
        h + abi::kHeadHeaderSize + offsetof(abi::BulkRef, length), memory_order_relaxed);
    const std::uint32_t rcheck = shm_load<std::uint32_t>(
        h + abi::kHeadHeaderSize + offsetof(abi::BulkRef, check), memory_order_relaxed);
    const std::uint64_t b = v.bulk_size;
    if (b == 0 || rlen != len || rcheck != ~len || len > b || rpos % abi::kBulkAlign != 0 ||
        rpos % b + len > b) {
      return false;
    }
    out->bulk_end = rpos + len;
  }
  return true;
}

}  // namespace

void init_ring(const RingView& v) {
  // Lap -1: slot i "was written" at position i - N, so its seq is low32(i + 1 - N).
  for (std::uint32_t i = 0; i < v.slot_count; ++i) {
    std::byte* s = v.slots + std::size_t{i} * abi::kSlotSize;
    std::memset(s, 0, abi::kSlotSize);
    shm_store<std::uint32_t>(s, low32(std::uint64_t{i} + 1 - v.slot_count), memory_order_relaxed);
  }
}

// ---------------------------------------------------------------- producer --

RingProducer::RingProducer(const RingView& v) : v_(v), mask_(v.slot_count - 1) {}

std::uint64_t RingProducer::max_payload() const {
  return v_.bulk_size > abi::kMaxSpanPayload ? std::min<std::uint64_t>(v_.bulk_size, UINT32_MAX)
                                             : abi::kMaxSpanPayload;
}

std::uint64_t RingProducer::backlog() const {
  const std::uint64_t t = shm_load<std::uint64_t>(&v_.control->consumer.tail, memory_order_acquire);
  if (t - tail_cache_ > head_ - tail_cache_) return v_.slot_count;
  return std::min<std::uint64_t>(head_ - t, v_.slot_count);
}

Status RingProducer::reserve(std::uint32_t nslots) {
  const std::uint64_t n = v_.slot_count;
  if (head_ + nslots - tail_cache_ <= n) return kOk;
  // Pairs with the release store of `tail` in RingConsumer::try_pop/skip: the
  // consumer is done with every slot below it.
  std::uint64_t t = shm_load<std::uint64_t>(&v_.control->consumer.tail, memory_order_acquire);
  // The consumer's tail only moves forward and never passes our head.
  if (t - tail_cache_ > head_ - tail_cache_) return Status(EPROTO);
  tail_cache_ = t;
  return head_ + nslots - t <= n ? kOk : Status(EAGAIN);
}

Status RingProducer::reserve_bulk(std::size_t len, std::uint64_t* pos_out) {
  const std::uint64_t b = v_.bulk_size;
  std::uint64_t pos = round_up(bulk_head_, abi::kBulkAlign);
  const std::uint64_t off = pos % b;
  if (off + len > b) pos += b - off;  // never split a payload across the wrap
  if (pos + len - bulk_tail_cache_ > b) {
    // Pairs with the release store of `bulk_tail` in RingConsumer::release.
    std::uint64_t t =
        shm_load<std::uint64_t>(&v_.control->consumer.bulk_tail, memory_order_acquire);
    // The consumer's cursor only moves forward and never passes our head.
    if (t - bulk_tail_cache_ > bulk_head_ - bulk_tail_cache_) return Status(EPROTO);
    bulk_tail_cache_ = t;
    // Drained completely: the padding before `pos` holds nothing live, so
    // any payload up to the ring size fits (needed for payloads > b / 2).
    if (t != bulk_head_ && pos + len - t > b) return Status(EAGAIN);
  }
  *pos_out = pos;
  return kOk;
}

Status RingProducer::write(std::uint16_t type, MessageKind kind, std::uint32_t corr,
                           std::span<const std::byte> payload) {
  if (!is_valid_type(type)) return Status(EINVAL);
  const auto k = static_cast<std::uint8_t>(kind);
  if (k > abi::kKindMask) return Status(EINVAL);
  const std::size_t len = payload.size();
  const bool by_ref = len > abi::kMaxSpanPayload;
  if (by_ref && (len > v_.bulk_size || len > UINT32_MAX)) return Status(EMSGSIZE);

  const std::uint32_t nslots = by_ref ? 1 : slots_for(len);
  if (Status s = reserve(nslots); !s) return s;
  std::uint64_t bulk_pos = 0;
  if (by_ref) {
    if (Status s = reserve_bulk(len, &bulk_pos); !s) return s;
  }

  // Continuations first: they become visible with the head's release store.
  const std::byte* src = payload.data();
  std::size_t done = 0;
  if (!by_ref) {
    done = std::min<std::size_t>(len, abi::kHeadPayload);
    for (std::uint32_t i = 1; i < nslots; ++i) {
      std::byte* c = slot_at(head_ + i);
      const std::size_t chunk = std::min<std::size_t>(len - done, abi::kContPayload);
      std::memcpy(c + abi::kContHeaderSize, src + done, chunk);
      done += chunk;
      shm_store<std::uint32_t>(c + kWord1, pack_word1(0, abi::kFlagCont, static_cast<std::uint8_t>(i)),
                               memory_order_relaxed);
      shm_store<std::uint32_t>(c, low32(head_ + i + 1), memory_order_relaxed);
    }
  }

  std::byte* h = slot_at(head_);
  std::uint8_t flags = k;
  if (by_ref) {
    flags |= abi::kFlagByRef;
    std::memcpy(v_.bulk + bulk_pos % v_.bulk_size, src, len);
    abi::BulkRef ref{bulk_pos, static_cast<std::uint32_t>(len), ~static_cast<std::uint32_t>(len)};
    std::memcpy(h + abi::kHeadHeaderSize, &ref, sizeof ref);
    bulk_head_ = bulk_pos + len;
  } else if (len) {
    std::memcpy(h + abi::kHeadHeaderSize, src, std::min<std::size_t>(len, abi::kHeadPayload));
  }
  shm_store<std::uint32_t>(h + kWord1, pack_word1(type, flags, static_cast<std::uint8_t>(nslots)),
                           memory_order_relaxed);
  shm_store<std::uint32_t>(h + kLength, static_cast<std::uint32_t>(len), memory_order_relaxed);
  shm_store<std::uint32_t>(h + kCorr, corr, memory_order_relaxed);
  if (head_ != pub_) {
    // Not the first of the batch: the consumer cannot pass the withheld
    // batch head before publish(), so publishing now is invisible early.
    shm_store<std::uint32_t>(h, low32(head_ + 1), memory_order_release);
  }
  head_ += nslots;
  ++unpublished_;
  return kOk;
}

bool RingProducer::publish() {
  if (pub_ == head_) return false;
  // Pairs with the acquire load of `seq` in RingConsumer::try_pop: everything
  // written above (payloads, continuation slots, later batch members) is
  // visible once this seq is. seq_cst rather than release: this store is the
  // "store" half of the doorbell's store-then-load (Doorbell::ring() is the
  // load); see doorbell.h.
  shm_store<std::uint32_t>(slot_at(pub_), low32(pub_ + 1), std::memory_order_seq_cst);
  pub_ = head_;
  unpublished_ = 0;
  return true;
}

Status RingProducer::resume() {
  const std::uint64_t n = v_.slot_count;
  // Pairs with the consumer's release stores of tail / bulk_tail.
  const std::uint64_t t = shm_load<std::uint64_t>(&v_.control->consumer.tail, memory_order_acquire);
  const std::uint64_t bt =
      shm_load<std::uint64_t>(&v_.control->consumer.bulk_tail, memory_order_acquire);
  if (!plausible_tail(v_, mask_, t)) return Status(EBADMSG);
  // Forward walk: every position below the old head carries seq p + 1; the
  // withheld head of an unpublished batch (or a never-written slot) does not.
  // p - t <= n throughout: each step is 1 or a message that fits in the room.
  std::uint64_t p = t;
  bool have_ref = false;
  std::uint64_t ref_end = 0;
  while (p - t < n) {
    // Pairs with the release store of the seq in write()/publish().
    if (shm_load<std::uint32_t>(slot_at(p), memory_order_acquire) != low32(p + 1)) break;
    WrittenMessage m;
    if (parse_written(v_, mask_, p, n - (p - t), &m)) {
      if (m.by_ref) {
        have_ref = true;
        ref_end = m.bulk_end;
      }
      p += m.nslots;
    } else {
      p += 1;  // garbage: the consumer skips it one slot at a time too
    }
  }
  // No by-reference message in flight: the newest one already consumed may
  // still be held (not yet released through bulk_tail); its slot survives
  // if it is within a lap of the new head.
  if (!have_ref && v_.bulk_size != 0) {
    const std::uint64_t lo = p >= n ? p - n : 0;
    for (std::uint64_t q = t; q > lo;) {
      --q;
      if (shm_load<std::uint32_t>(slot_at(q), memory_order_acquire) != low32(q + 1)) break;
      WrittenMessage m;
      if (parse_written(v_, mask_, q, 1, &m) && m.by_ref) {
        have_ref = true;
        ref_end = m.bulk_end;
        break;
      }
    }
  }
  // The producer keeps pos + len - bulk_tail <= b, plus up to one ring of
  // padding when it found the bulk ring drained.
  if (have_ref && ref_end - bt > 2 * v_.bulk_size) return Status(EBADMSG);
  head_ = pub_ = p;
  tail_cache_ = t;
  bulk_head_ = have_ref ? ref_end : bt;
  bulk_tail_cache_ = bt;
  unpublished_ = 0;
  return kOk;
}

void RingProducer::discard_unpublished() {
  const std::uint64_t end = tail_cache_ + v_.slot_count;
  for (std::uint64_t q = head_; q != end; ++q) {
    shm_store<std::uint32_t>(slot_at(q), low32(q + 1 - v_.slot_count), memory_order_relaxed);
  }
}

// ---------------------------------------------------------------- consumer --

Status RingConsumer::resume() {
  const std::uint64_t t = shm_load<std::uint64_t>(&v_.control->consumer.tail, memory_order_acquire);
  const std::uint64_t bt =
      shm_load<std::uint64_t>(&v_.control->consumer.bulk_tail, memory_order_acquire);
  if (!plausible_tail(v_, mask_, t)) return Status(EBADMSG);
  pos_ = t;
  bulk_pos_ = bt;
  held_end_ = bt;
  holding_ = false;
  return kOk;
}

RingConsumer::RingConsumer(const RingView& v, std::span<std::byte> scratch)
    : v_(v), scratch_(scratch), mask_(v.slot_count - 1) {}

bool RingConsumer::has_pending() const {
  // seq_cst: the "load" half of the consumer's store-then-load (after
  // Doorbell::announce_sleep's seq_cst store); see doorbell.h.
  const std::uint32_t s = shm_load<std::uint32_t>(slot_at(pos_), std::memory_order_seq_cst);
  return static_cast<std::int32_t>(s - low32(pos_ + 1)) >= 0;  // ready, or garbage to skip
}

void RingConsumer::release_held() {
  holding_ = false;
  bulk_pos_ = held_end_;
  // Pairs with the acquire load of `bulk_tail` in RingProducer::reserve_bulk.
  shm_store<std::uint64_t>(&v_.control->consumer.bulk_tail, bulk_pos_, memory_order_release);
}

Status RingConsumer::skip(std::uint32_t n, std::uint64_t& counter) {
  ++counter;
  pos_ += n;
  shm_store<std::uint64_t>(&v_.control->consumer.tail, pos_, memory_order_release);
  return Status(EBADMSG);
}

Status RingConsumer::try_pop(InMessage& out) {
  release();
  const std::byte* h = slot_at(pos_);
  // Pairs with the release store of the head seq in RingProducer::write/publish.
  const std::uint32_t seq = shm_load<std::uint32_t>(h, memory_order_acquire);
  if (seq != low32(pos_ + 1)) {
    // Behind us (one lap ago when honest; older if the peer scribbled): not
    // written yet, wait. Ahead of us: impossible for an honest producer, so
    // count and skip it. Treating "behind" as empty is what lets a consumer
    // that skipped garbage fall back into step with the producer: it stops
    // at the first stale slot instead of racing through the whole ring.
    if (static_cast<std::int32_t>(seq - low32(pos_ + 1)) < 0) {
      // While waiting, keep pulling the next slot's line: a producer writes
      // continuation slots before the head, so a spanning message's second
      // line is already here (or in flight) when its head becomes visible.
      __builtin_prefetch(slot_at(pos_ + 1));
      return Status(EAGAIN);
    }
    return skip(1, stats_.corrupt_slots);
  }
  // Each peer-written field is loaded once into a local and checked there.
  const std::uint32_t w1 = shm_load<std::uint32_t>(h + kWord1, memory_order_relaxed);
  const std::uint32_t len = shm_load<std::uint32_t>(h + kLength, memory_order_relaxed);
  const std::uint32_t corr = shm_load<std::uint32_t>(h + kCorr, memory_order_relaxed);
  const auto type = static_cast<std::uint16_t>(w1 & 0xffff);
  const auto flags = static_cast<std::uint8_t>((w1 >> 16) & 0xff);
  const std::uint32_t nslots = w1 >> 24;

  if (flags & ~abi::kKnownHeadFlags) return skip(1, stats_.corrupt_slots);  // incl. orphan cont
  const bool by_ref = flags & abi::kFlagByRef;
  if (by_ref ? nslots != 1
             : (nslots == 0 || len > abi::kMaxSpanPayload || slots_for(len) != nslots)) {
    return skip(1, stats_.bad_length);
  }
  for (std::uint32_t i = 1; i < nslots; ++i) {
    const std::byte* c = slot_at(pos_ + i);
    // Ordered after the head's acquire; a valid producer wrote these first.
    const std::uint32_t cs = shm_load<std::uint32_t>(c, memory_order_relaxed);
    const std::uint32_t cw = shm_load<std::uint32_t>(c + kWord1, memory_order_relaxed);
    if (cs != low32(pos_ + i + 1) || cw != pack_word1(0, abi::kFlagCont, static_cast<std::uint8_t>(i))) {
      return skip(1, stats_.corrupt_slots);
    }
  }
  if (!is_valid_type(type)) return skip(nslots, stats_.bad_type);

  if (by_ref) {
    const std::uint64_t rpos =
        shm_load<std::uint64_t>(h + abi::kHeadHeaderSize + offsetof(abi::BulkRef, pos), memory_order_relaxed);
    const std::uint32_t rlen = shm_load<std::uint32_t>(
        h + abi::kHeadHeaderSize + offsetof(abi::BulkRef, length), memory_order_relaxed);
    const std::uint32_t rcheck = shm_load<std::uint32_t>(
        h + abi::kHeadHeaderSize + offsetof(abi::BulkRef, check), memory_order_relaxed);
    const std::uint64_t b = v_.bulk_size;
    // Everything before rpos is released (we hold nothing now), so the only
    // constraints are: in order, padding shorter than the ring, contiguous.
    const std::uint64_t gap = rpos - bulk_pos_;
    if (b == 0 || rlen != len || rcheck != ~len || len > b || rpos % abi::kBulkAlign != 0 ||
        gap >= b || rpos % b + len > b) {
      return skip(1, stats_.bad_bulk);
    }
    out.payload = std::span<const std::byte>(v_.bulk + rpos % b, len);
    held_end_ = rpos + len;
    holding_ = true;
  } else {
    std::size_t done = std::min<std::size_t>(len, abi::kHeadPayload);
    std::memcpy(scratch_.data(), h + abi::kHeadHeaderSize, done);
    for (std::uint32_t i = 1; i < nslots; ++i) {
      const std::size_t chunk = std::min<std::size_t>(len - done, abi::kContPayload);
      std::memcpy(scratch_.data() + done, slot_at(pos_ + i) + abi::kContHeaderSize, chunk);
      done += chunk;
    }
    out.payload = std::span<const std::byte>(scratch_.data(), len);
  }
  out.type = type;
  out.kind = static_cast<MessageKind>(flags & abi::kKindMask);
  out.by_ref = by_ref;
  out.corr = corr;
  pos_ += nslots;
  // Pairs with the acquire load of `tail` in RingProducer::reserve: the slots
  // are copied out (by-ref bytes are held separately via bulk_tail).
  shm_store<std::uint64_t>(&v_.control->consumer.tail, pos_, memory_order_release);
  ++stats_.received;
  return kOk;
}

}  // namespace mk::ipi
