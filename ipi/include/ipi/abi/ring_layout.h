// DOC: mk-ipi-ring-v1 — the shared-memory ABI of one IPI channel.
//
// THIS FILE IS A CONTRACT. Two processes (possibly built from different
// versions of mkernel, possibly hostile) map the same memfd and interpret its
// bytes through these structs. Any change to a size, an offset, a constant or
// the meaning of a field must bump kVersion and kCompatible; the golden-layout
// test (tests/ipi/abi_layout_test.cc) fails until you do.
//
// What this is: the byte layout of a channel region: one RegionHeader, then two
// Direction blocks (ring A->B, ring B->A). Each direction is one
// single-producer/single-consumer ring of 64-byte slots plus a bulk buffer for
// payloads too large to span slots. Only fixed-width integers appear; atomics
// are accessed with std::atomic_ref on naturally aligned words (asserted
// lock-free below).
//
//   offset 0      RegionHeader            (2 cache lines, read once at attach)
//   dir_offset[0] Direction A->B:
//                   ProducerLine          (reserved, zero)
//                   ConsumerLine          (consumer-written: tail, bulk_tail)
//                   DoorbellLine          (futex word; consumer sleeps on it)
//                   spare line
//                   Slot[slot_count]      (64 B each, seq marker inside)
//                   bulk[bulk_size]       (byte ring for by-reference payloads)
//   dir_offset[1] Direction B->A: same shape
//
// Place in the IPI flow: channel.cc creates/attaches a region (region.cc probes
// the header once), ring.cc reads and writes slots, doorbell.cc owns the
// DoorbellLine.
//
// Slot protocol (one message = 1..kMaxSpanSlots consecutive slots):
//   1. The producer writes continuation slots (ContSlot: seq, flags=kFlagCont,
//      index) and the head slot's fields and payload.
//   2. It publishes with a release store of the head slot's `seq` =
//      low32(position + 1). Pairs with the acquire load of `seq` in
//      RingConsumer::try_pop. Batching withholds the seq of the batch's first
//      head slot until flush(), which makes the whole batch visible at once.
//   3. A slot at ring position p is "ready" when seq == low32(p + 1) and
//      "empty" when seq is behind that (int32 difference < 0; an honest ring
//      shows low32(p + 1 - N), written one lap ago; creation pre-fills lap -1).
//      A seq ahead of low32(p + 1) is corruption: the consumer counts it and
//      skips the slot.
//   4. The consumer copies the payload out, then release-stores `tail` (pairs
//      with the acquire load of `tail` in RingProducer when it runs out of
//      cached space). By-reference payloads are released by storing
//      `bulk_tail` after the handler is done with them.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace mk::ipi {

// One x86-64 / arm64 cache line. Deliberately not
// std::hardware_destructive_interference_size, whose value can change with
// -mtune and so must never shape an ABI.
inline constexpr std::size_t kCacheLine = 64;

}  // namespace mk::ipi

namespace mk::ipi::abi {

inline constexpr std::uint64_t kMagic = 0x31765f49504b4d7fULL;  // "\x7fMKPI_v1" LE
inline constexpr char kCompatible[16] = "mk-ipi-ring-v1";
inline constexpr std::uint32_t kVersion = 1;

inline constexpr std::uint32_t kSlotSize = 64;
inline constexpr std::uint32_t kHeadHeaderSize = 16;
inline constexpr std::uint32_t kContHeaderSize = 8;
inline constexpr std::uint32_t kHeadPayload = kSlotSize - kHeadHeaderSize;  // 48
inline constexpr std::uint32_t kContPayload = kSlotSize - kContHeaderSize;  // 56
inline constexpr std::uint32_t kMaxSpanSlots = 32;
// Largest payload carried inline (spanning slots): 48 + 31 * 56 = 1784 bytes.
inline constexpr std::uint32_t kMaxSpanPayload = kHeadPayload + (kMaxSpanSlots - 1) * kContPayload;

inline constexpr std::uint32_t kMinSlots = 64;
inline constexpr std::uint32_t kMaxSlots = 1u << 20;
inline constexpr std::uint64_t kMaxBulkSize = 1ull << 32;  // 4 GiB per direction
inline constexpr std::uint64_t kBulkAlign = kCacheLine;

// Slot flags (Slot::flags / ContSlot::flags).
inline constexpr std::uint8_t kKindMask = 0x03;
inline constexpr std::uint8_t kKindOneWay = 0;
inline constexpr std::uint8_t kKindRequest = 1;
inline constexpr std::uint8_t kKindResponse = 2;
inline constexpr std::uint8_t kKindErrorResponse = 3;  // payload: int32 errno
inline constexpr std::uint8_t kFlagByRef = 0x10;       // payload: BulkRef
inline constexpr std::uint8_t kFlagCont = 0x80;        // continuation slot
inline constexpr std::uint8_t kKnownHeadFlags = kKindMask | kFlagByRef;

// Doorbell states (DoorbellLine::state, the futex word).
inline constexpr std::uint32_t kAwake = 0;
inline constexpr std::uint32_t kSleepingFutex = 1;
inline constexpr std::uint32_t kSleepingEventfd = 2;

// Side lifecycle (RegionHeader::side_state[]).
inline constexpr std::uint32_t kSideUnattached = 0;
inline constexpr std::uint32_t kSideAttached = 1;
inline constexpr std::uint32_t kSideClosed = 2;

// Side A creates the region and produces into direction 0; side B attaches
// and produces into direction 1.
inline constexpr std::uint32_t kDirAtoB = 0;
inline constexpr std::uint32_t kDirBtoA = 1;

struct RegionHeader {
  std::uint64_t magic;           // kMagic
  char compatible[16];           // kCompatible, NUL padded
  std::uint32_t version;         // kVersion
  std::uint32_t header_size;     // sizeof(RegionHeader)
  std::uint32_t slot_size;       // kSlotSize
  std::uint32_t slot_count;      // power of two in [kMinSlots, kMaxSlots]
  std::uint64_t bulk_size;       // bytes per direction, multiple of kBulkAlign, may be 0
  std::uint64_t direction_size;  // bytes per Direction block (page multiple)
  std::uint64_t total_size;      // whole region, == memfd size
  std::uint64_t dir_offset[2];   // Direction blocks
  std::int32_t pid[2];           // pid of side A / B, written at create/attach
  std::uint32_t side_state[2];   // kSide* (atomic)
  std::uint8_t reserved[32];
};

// Unused in v1 and deliberately left untouched on the hot path: the producer
// keeps its head privately (each slot's seq publishes it), and a counter
// stored here on every publish measurably slowed round trips (the adjacent-line
// prefetcher pairs this line with ConsumerLine). Zero; reserved.
struct ProducerLine {
  std::uint8_t reserved[64];
};

struct ConsumerLine {
  std::uint64_t tail;       // next slot position the consumer will read (atomic)
  std::uint64_t bulk_tail;  // bulk bytes released by the consumer (atomic)
  std::uint8_t reserved[48];
};

struct DoorbellLine {
  std::uint32_t state;  // futex word: kAwake / kSleepingFutex / kSleepingEventfd
  std::uint32_t reserved0;
  std::uint8_t reserved[56];
};

struct Slot {
  std::uint32_t seq;     // low32(position + 1) when ready (atomic; release)
  std::uint16_t type;    // message type, see message_types.h
  std::uint8_t flags;    // kKind* | kFlagByRef (never kFlagCont)
  std::uint8_t nslots;   // slots in this message, 1..kMaxSpanSlots
  std::uint32_t length;  // payload bytes (by-reference: bulk bytes)
  std::uint32_t corr;    // request/response correlation id, 0 for one-way
  std::uint8_t payload[kHeadPayload];
};

struct ContSlot {
  std::uint32_t seq;    // low32(position + 1)
  std::uint16_t type;   // 0
  std::uint8_t flags;   // kFlagCont
  std::uint8_t index;   // 1..nslots-1 within its message
  std::uint8_t payload[kContPayload];
};

struct BulkRef {
  std::uint64_t pos;     // monotonic bulk byte position (offset = pos % bulk_size)
  std::uint32_t length;  // == Slot::length
  std::uint32_t check;   // ~length, a cheap consistency marker
};

struct DirectionControl {
  ProducerLine producer;
  ConsumerLine consumer;
  DoorbellLine doorbell;
  std::uint8_t spare[kCacheLine];
};

// ---- layout lock -----------------------------------------------------------
template <class T>
inline constexpr bool kAbiType = std::is_trivially_copyable_v<T> && std::is_standard_layout_v<T>;

static_assert(kAbiType<RegionHeader> && kAbiType<ProducerLine> && kAbiType<ConsumerLine> &&
              kAbiType<DoorbellLine> && kAbiType<Slot> && kAbiType<ContSlot> &&
              kAbiType<BulkRef> && kAbiType<DirectionControl>);

static_assert(sizeof(RegionHeader) == 2 * kCacheLine);
static_assert(offsetof(RegionHeader, magic) == 0);
static_assert(offsetof(RegionHeader, compatible) == 8);
static_assert(offsetof(RegionHeader, version) == 24);
static_assert(offsetof(RegionHeader, header_size) == 28);
static_assert(offsetof(RegionHeader, slot_size) == 32);
static_assert(offsetof(RegionHeader, slot_count) == 36);
static_assert(offsetof(RegionHeader, bulk_size) == 40);
static_assert(offsetof(RegionHeader, direction_size) == 48);
static_assert(offsetof(RegionHeader, total_size) == 56);
static_assert(offsetof(RegionHeader, dir_offset) == 64);
static_assert(offsetof(RegionHeader, pid) == 80);
static_assert(offsetof(RegionHeader, side_state) == 88);
static_assert(alignof(RegionHeader) == 8);

static_assert(sizeof(ProducerLine) == kCacheLine);
static_assert(sizeof(ConsumerLine) == kCacheLine && offsetof(ConsumerLine, tail) == 0 &&
              offsetof(ConsumerLine, bulk_tail) == 8);
static_assert(sizeof(DoorbellLine) == kCacheLine && offsetof(DoorbellLine, state) == 0);
static_assert(sizeof(DirectionControl) == 4 * kCacheLine);
// Producer- and consumer-written words never share a cache line.
static_assert(offsetof(DirectionControl, producer) / kCacheLine !=
              offsetof(DirectionControl, consumer) / kCacheLine);
static_assert(offsetof(DirectionControl, consumer) == kCacheLine);
static_assert(offsetof(DirectionControl, doorbell) == 2 * kCacheLine);

static_assert(sizeof(Slot) == kSlotSize && sizeof(ContSlot) == kSlotSize);
static_assert(offsetof(Slot, seq) == 0 && offsetof(Slot, type) == 4 && offsetof(Slot, flags) == 6 &&
              offsetof(Slot, nslots) == 7 && offsetof(Slot, length) == 8 &&
              offsetof(Slot, corr) == 12 && offsetof(Slot, payload) == kHeadHeaderSize);
static_assert(offsetof(ContSlot, seq) == 0 && offsetof(ContSlot, flags) == 6 &&
              offsetof(ContSlot, index) == 7 && offsetof(ContSlot, payload) == kContHeaderSize);
static_assert(sizeof(BulkRef) == 16 && sizeof(BulkRef) <= kHeadPayload);
static_assert(kMaxSpanSlots <= 255 && kMinSlots >= 2 * kMaxSpanSlots);

// Atomics in shared memory must be lock-free (a lock would live in one
// process only) and naturally aligned.
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic_ref<std::uint32_t>::required_alignment == 4);
static_assert(std::atomic_ref<std::uint64_t>::required_alignment == 8);

}  // namespace mk::ipi::abi
