// RingProducer / RingConsumer over plain heap memory: wrap-around, batching,
// spanning and by-reference messages, back-pressure and every validation path.
#include "ipi/ring.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "ipi/message_types.h"
#include "ipi_test_util.h"

namespace mk::ipi {
namespace {

using test::check_pattern;
using test::fill_pattern;

constexpr std::uint16_t kType = type_in(TypeRange::kUser, 1);

struct TestRing {
  explicit TestRing(std::uint32_t slots = 64, std::uint64_t bulk = 0) {
    const std::size_t size = sizeof(abi::DirectionControl) + std::size_t{slots} * 64 + bulk;
    mem.reset(static_cast<std::byte*>(std::aligned_alloc(64, (size + 63) / 64 * 64)));
    std::memset(mem.get(), 0, size);
    v.control = reinterpret_cast<abi::DirectionControl*>(mem.get());
    v.slots = mem.get() + sizeof(abi::DirectionControl);
    v.slot_count = slots;
    v.bulk = bulk ? v.slots + std::size_t{slots} * 64 : nullptr;
    v.bulk_size = bulk;
    init_ring(v);
    prod = RingProducer(v);
    cons = RingConsumer(v, scratch);
  }
  std::byte* slot(std::uint64_t pos) { return v.slots + (pos % v.slot_count) * 64; }
  Status send(std::span<const std::byte> b, std::uint16_t type = kType) {
    Status s = prod.write(type, MessageKind::kOneWay, 0, b);
    if (s) prod.publish();
    return s;
  }

  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::unique_ptr<std::byte, Free> mem;
  std::byte scratch[abi::kMaxSpanPayload];
  RingView v;
  RingProducer prod;
  RingConsumer cons;
};

std::vector<std::byte> pattern(std::size_t len, std::uint64_t seq) {
  std::vector<std::byte> b(len);
  fill_pattern(b.data(), len, seq);
  return b;
}

TEST(Ring, EmptyRingReturnsAgain) {
  TestRing r;
  InMessage m;
  EXPECT_EQ(r.cons.try_pop(m).code(), EAGAIN);
  EXPECT_FALSE(r.cons.has_pending());
}

TEST(Ring, SingleSlotRoundTripKeepsHeaderFields) {
  TestRing r;
  auto b = pattern(48, 1);
  ASSERT_TRUE(r.prod.write(type_in(TypeRange::kIo, 9), MessageKind::kRequest, 0xabcdef, b));
  EXPECT_TRUE(r.prod.publish());
  EXPECT_TRUE(r.cons.has_pending());
  InMessage m;
  ASSERT_TRUE(r.cons.try_pop(m));
  EXPECT_EQ(m.type, type_in(TypeRange::kIo, 9));
  EXPECT_EQ(m.kind, MessageKind::kRequest);
  EXPECT_EQ(m.corr, 0xabcdefu);
  EXPECT_FALSE(m.by_ref);
  ASSERT_EQ(m.payload.size(), 48u);
  EXPECT_TRUE(check_pattern(m.payload.data(), 48, 1));
  EXPECT_EQ(r.cons.try_pop(m).code(), EAGAIN);
}

TEST(Ring, WrapAroundManyLapsWithMixedSizes) {
  TestRing r(64);
  std::uint64_t sent = 0, got = 0;
  InMessage m;
  // Sizes 0..400 bytes (1..8 slots) so messages straddle the ring end.
  while (got < 20000) {
    while (sent < 20000) {
      auto b = pattern(sent * 7 % 401, sent);
      Status s = r.send(b);
      if (s.again()) break;
      ASSERT_TRUE(s) << s.code();
      ++sent;
    }
    Status s;
    while ((s = r.cons.try_pop(m))) {
      ASSERT_EQ(m.payload.size(), got * 7 % 401);
      ASSERT_TRUE(check_pattern(m.payload.data(), m.payload.size(), got));
      ++got;
    }
    ASSERT_EQ(s.code(), EAGAIN);
  }
  EXPECT_GT(r.prod.position(), 100u * 64);  // many laps
  EXPECT_EQ(r.cons.stats().errors(), 0u);
}

TEST(Ring, FullRingIsBackPressureNotLoss) {
  TestRing r(64);
  auto b = pattern(110, 0);  // 3 slots each
  int n = 0;
  Status s;
  while ((s = r.send(b))) ++n;
  EXPECT_EQ(s.code(), EAGAIN);
  EXPECT_EQ(n, 21);  // 21 * 3 = 63 slots; a 22nd does not fit
  InMessage m;
  int popped = 0;
  while (r.cons.try_pop(m)) ++popped;
  EXPECT_EQ(popped, n);
  EXPECT_TRUE(r.send(b));  // room again
}

TEST(Ring, BatchIsInvisibleUntilPublish) {
  TestRing r;
  for (int i = 0; i < 5; ++i) {
    auto b = pattern(60, i);
    ASSERT_TRUE(r.prod.write(kType, MessageKind::kOneWay, 0, b));
  }
  EXPECT_EQ(r.prod.unpublished(), 5u);
  InMessage m;
  EXPECT_EQ(r.cons.try_pop(m).code(), EAGAIN);
  EXPECT_FALSE(r.cons.has_pending());
  EXPECT_TRUE(r.prod.publish());
  EXPECT_FALSE(r.prod.publish());  // nothing new
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(r.cons.try_pop(m));
    EXPECT_TRUE(check_pattern(m.payload.data(), 60, i));
  }
  EXPECT_EQ(r.cons.try_pop(m).code(), EAGAIN);
}

TEST(Ring, LargestSpanningMessageAndSizeLimits) {
  TestRing r(64);
  auto big = pattern(abi::kMaxSpanPayload, 3);
  ASSERT_TRUE(r.send(big));
  EXPECT_EQ(r.prod.position(), abi::kMaxSpanSlots);
  InMessage m;
  ASSERT_TRUE(r.cons.try_pop(m));
  EXPECT_EQ(m.payload.size(), abi::kMaxSpanPayload);
  EXPECT_TRUE(check_pattern(m.payload.data(), m.payload.size(), 3));
  auto too_big = pattern(abi::kMaxSpanPayload + 1, 4);
  EXPECT_EQ(r.send(too_big).code(), EMSGSIZE);  // no bulk ring
  EXPECT_EQ(r.prod.max_payload(), abi::kMaxSpanPayload);
}

TEST(Ring, ByReferenceMessagesWrapTheBulkRing) {
  TestRing r(64, 64 * 1024);
  InMessage m;
  for (std::uint64_t i = 0; i < 200; ++i) {
    const std::size_t len = 5000 + (i * 3331) % 20000;
    auto b = pattern(len, i);
    ASSERT_TRUE(r.send(b)) << i;
    ASSERT_TRUE(r.cons.try_pop(m));
    ASSERT_TRUE(m.by_ref);
    ASSERT_EQ(m.payload.size(), len);
    ASSERT_TRUE(check_pattern(m.payload.data(), len, i));
    r.cons.release();  // otherwise the held payload plus the next may not fit
  }
  EXPECT_EQ(r.cons.stats().errors(), 0u);
}

TEST(Ring, BulkFullIsBackPressureAndHeldPayloadIsNotOverwritten) {
  TestRing r(64, 64 * 1024);
  auto a = pattern(40000, 1);
  auto b = pattern(40000, 2);
  ASSERT_TRUE(r.send(a));
  EXPECT_EQ(r.send(b).code(), EAGAIN);  // 80000 > 64 KiB
  InMessage m;
  ASSERT_TRUE(r.cons.try_pop(m));  // holds `a` in the bulk ring
  EXPECT_EQ(r.send(b).code(), EAGAIN);
  EXPECT_TRUE(check_pattern(m.payload.data(), 40000, 1));
  r.cons.release();
  EXPECT_TRUE(r.send(b));
  ASSERT_TRUE(r.cons.try_pop(m));
  EXPECT_TRUE(check_pattern(m.payload.data(), 40000, 2));
  auto huge = pattern(64 * 1024 + 1, 3);
  EXPECT_EQ(r.send(huge).code(), EMSGSIZE);
}

TEST(Ring, ProducerRejectsInvalidTypeAndKind) {
  TestRing r;
  std::byte b[4]{};
  EXPECT_EQ(r.prod.write(0x0fff, MessageKind::kOneWay, 0, b).code(), EINVAL);
  EXPECT_EQ(r.prod.write(0x5000, MessageKind::kOneWay, 0, b).code(), EINVAL);
  EXPECT_EQ(r.prod.write(kType, static_cast<MessageKind>(7), 0, b).code(), EINVAL);
  EXPECT_EQ(r.prod.position(), 0u);
}

TEST(Ring, GarbageSeqIsCountedAndSkipped) {
  TestRing r;
  auto b = pattern(10, 0);
  ASSERT_TRUE(r.send(b));
  ASSERT_TRUE(r.send(b));
  const std::uint32_t junk = 1 + 1000;  // ahead of position 0: impossible
  std::memcpy(r.slot(0), &junk, 4);
  InMessage m;
  EXPECT_TRUE(r.cons.has_pending());
  EXPECT_EQ(r.cons.try_pop(m).code(), EBADMSG);
  EXPECT_EQ(r.cons.stats().corrupt_slots, 1u);
  ASSERT_TRUE(r.cons.try_pop(m));  // the next message survives
  EXPECT_EQ(r.cons.stats().received, 1u);
}

TEST(Ring, OrphanContinuationAndBrokenChainAreCounted) {
  TestRing r;
  auto b = pattern(110, 0);  // 3 slots
  ASSERT_TRUE(r.send(b));
  // Break the chain: continuation 2 gets the wrong index.
  r.slot(2)[7] = std::byte{5};
  InMessage m;
  EXPECT_EQ(r.cons.try_pop(m).code(), EBADMSG);  // head skipped
  EXPECT_EQ(r.cons.try_pop(m).code(), EBADMSG);  // orphan continuation 1
  EXPECT_EQ(r.cons.try_pop(m).code(), EBADMSG);  // broken continuation 2
  EXPECT_EQ(r.cons.stats().corrupt_slots, 3u);
  EXPECT_EQ(r.cons.try_pop(m).code(), EAGAIN);
}

TEST(Ring, StaleSeqReadsAsEmptySoTheConsumerResynchronises) {
  TestRing r;
  auto b = pattern(10, 0);
  // Garbage that looks older than the expected seq: wait, do not skip.
  const std::uint32_t old = 0xdeadbeef;  // int32(old - 1) < 0
  std::memcpy(r.slot(0), &old, 4);
  InMessage m;
  EXPECT_EQ(r.cons.try_pop(m).code(), EAGAIN);
  EXPECT_FALSE(r.cons.has_pending());
  ASSERT_TRUE(r.send(b));  // the honest write repairs the slot
  ASSERT_TRUE(r.cons.try_pop(m));
  // A consumer pushed ahead of the producer by skipped garbage stops at the
  // first stale slot instead of racing around the ring.
  const std::uint32_t ahead = 2 + 5;
  std::memcpy(r.slot(1), &ahead, 4);
  EXPECT_EQ(r.cons.try_pop(m).code(), EBADMSG);
  EXPECT_EQ(r.cons.try_pop(m).code(), EAGAIN);
  EXPECT_EQ(r.cons.position(), 2u);
  EXPECT_EQ(r.cons.stats().corrupt_slots, 1u);
}

TEST(Ring, InconsistentLengthIsCounted) {
  TestRing r;
  auto b = pattern(10, 0);
  ASSERT_TRUE(r.send(b));
  const std::uint32_t len = 4000;  // > 1 slot but nslots says 1
  std::memcpy(r.slot(0) + 8, &len, 4);
  InMessage m;
  EXPECT_EQ(r.cons.try_pop(m).code(), EBADMSG);
  EXPECT_EQ(r.cons.stats().bad_length, 1u);
}

TEST(Ring, UnknownFlagsAndInvalidTypeAreCounted) {
  TestRing r;
  auto b = pattern(110, 0);  // 3 slots
  ASSERT_TRUE(r.send(b));
  ASSERT_TRUE(r.send(b));
  r.slot(0)[6] = std::byte{0x40};  // unknown flag bit
  const std::uint16_t bad_type = 0x0042;
  std::memcpy(r.slot(3) + 4, &bad_type, 2);  // second message: valid shape, bad type
  InMessage m;
  EXPECT_EQ(r.cons.try_pop(m).code(), EBADMSG);
  EXPECT_EQ(r.cons.stats().corrupt_slots, 1u);
  EXPECT_EQ(r.cons.try_pop(m).code(), EBADMSG);  // continuation 1 of message 1
  EXPECT_EQ(r.cons.try_pop(m).code(), EBADMSG);  // continuation 2
  EXPECT_EQ(r.cons.try_pop(m).code(), EBADMSG);  // message 2 skipped whole
  EXPECT_EQ(r.cons.stats().bad_type, 1u);
  EXPECT_EQ(r.cons.position(), 6u);
}

TEST(Ring, OutOfBoundsBulkReferenceIsCounted) {
  TestRing r(64, 64 * 1024);
  auto b = pattern(5000, 0);
  ASSERT_TRUE(r.send(b));
  ASSERT_TRUE(r.send(b));
  ASSERT_TRUE(r.send(b));
  const std::uint64_t far = 1ull << 40;
  std::memcpy(r.slot(0) + 16, &far, 8);  // pos beyond the ring
  const std::uint32_t badcheck = 1;
  std::memcpy(r.slot(1) + 16 + 12, &badcheck, 4);  // length check word
  const std::uint64_t odd = 5064 + 1;  // misaligned pos
  std::memcpy(r.slot(2) + 16, &odd, 8);
  InMessage m;
  EXPECT_EQ(r.cons.try_pop(m).code(), EBADMSG);
  EXPECT_EQ(r.cons.try_pop(m).code(), EBADMSG);
  EXPECT_EQ(r.cons.try_pop(m).code(), EBADMSG);
  EXPECT_EQ(r.cons.stats().bad_bulk, 3u);
}

TEST(Ring, ByRefFlagWithoutBulkRingIsCounted) {
  TestRing r(64, 0);
  auto b = pattern(16, 0);
  ASSERT_TRUE(r.send(b));
  r.slot(0)[6] = std::byte{abi::kFlagByRef};
  const std::uint32_t len = 16, check = ~len;
  std::memcpy(r.slot(0) + 16 + 8, &len, 4);
  std::memcpy(r.slot(0) + 16 + 12, &check, 4);
  InMessage m;
  EXPECT_EQ(r.cons.try_pop(m).code(), EBADMSG);
  EXPECT_EQ(r.cons.stats().bad_bulk, 1u);
}

TEST(Ring, CorruptConsumerIndicesMakeProducerFailWithEproto) {
  TestRing r(64, 64 * 1024);
  auto b = pattern(100, 0);
  while (r.send(b)) {
  }
  r.v.control->consumer.tail = 1000;  // ahead of the producer: impossible
  EXPECT_EQ(r.send(b).code(), EPROTO);

  TestRing r2(64, 64 * 1024);
  auto big = pattern(40000, 0);
  ASSERT_TRUE(r2.send(big));
  r2.v.control->consumer.bulk_tail = 1ull << 50;
  EXPECT_EQ(r2.send(big).code(), EPROTO);
}

TEST(Ring, SlotsForMatchesLayout) {
  EXPECT_EQ(slots_for(0), 1u);
  EXPECT_EQ(slots_for(48), 1u);
  EXPECT_EQ(slots_for(49), 2u);
  EXPECT_EQ(slots_for(104), 2u);
  EXPECT_EQ(slots_for(105), 3u);
  EXPECT_EQ(slots_for(abi::kMaxSpanPayload), abi::kMaxSpanSlots);
}

}  // namespace
}  // namespace mk::ipi
