// Channel::take_over on corrupt shared memory: impossible indices are
// refused without writing, published-looking garbage is skipped as the
// consumer would, and random scribbles never crash or hang the new owner.
#include "takeover_util.h"

namespace mk::ipi {
namespace {

// ---- corrupt shared memory -------------------------------------------------

TEST(TakeOver, ImpossibleTailsAreRefusedWithoutWriting) {
  auto a = Channel::create(kCfg);
  ASSERT_TRUE(a);
  auto fb = a->export_fds();
  ASSERT_TRUE(fb);
  auto b = Channel::attach(std::move(*fb));
  ASSERT_TRUE(b);
  std::uint64_t sent = 0, got = 0;
  pump(*a, *b, &sent, &got, 100);
  drain(*b, &got, 100);  // head == tail now
  auto fds_a = *a->export_fds();
  a->detach();
  Region& r = b->region();
  abi::ConsumerLine& out = r.ring(abi::kDirAtoB).control->consumer;
  abi::ConsumerLine& in = r.ring(abi::kDirBtoA).control->consumer;
  const std::uint64_t tail = out.tail;
  auto try_with = [&](std::uint64_t* word, std::uint64_t v) {
    const std::uint64_t keep = *word;
    *word = v;
    auto fds = *b->export_fds();  // same region, fresh descriptors
    auto c = Channel::take_over(std::move(fds), 0);
    *word = keep;
    return c ? 0 : c.error().code();
  };
  r.header()->pid[0] = 4242;
  const std::vector<std::byte> marked(r.base(), r.base() + r.size());
  EXPECT_EQ(try_with(&out.tail, tail + 3), EBADMSG);          // ahead of the head
  EXPECT_EQ(try_with(&out.tail, tail + 1000003), EBADMSG);    // nowhere near
  EXPECT_EQ(try_with(&out.tail, ~0ull), EBADMSG);
  // (A tail moved *back* onto published slots looks like an honest "not yet
  // consumed" state; that only replays the peer's own input to it.)
  EXPECT_EQ(try_with(&in.tail, 77777), EBADMSG);              // our own incoming tail
  // Nothing was written by the refusals (byte-identical region).
  EXPECT_EQ(std::memcmp(marked.data(), r.base(), r.size()), 0);
  auto na = Channel::take_over(std::move(fds_a), 0);
  ASSERT_TRUE(na) << na.error().what();
  pump(*na, *b, &sent, &got, 200);
  drain(*b, &got, 200);
}

// Garbage that reads "published" beyond the old head: the walk treats it the
// way the consumer will (skip one slot each), so the peer counts it and then
// receives the new owner's messages in order.
TEST(TakeOver, PublishedLookingGarbageIsSkippedConsistently) {
  auto a = Channel::create(kCfg);
  ASSERT_TRUE(a);
  auto fb = a->export_fds();
  ASSERT_TRUE(fb);
  auto b = Channel::attach(std::move(*fb));
  ASSERT_TRUE(b);
  std::uint64_t sent = 0, got = 0;
  pump(*a, *b, &sent, &got, 70);
  drain(*b, &got, 70);
  auto fds_a = *a->export_fds();
  a->detach();
  RingView v = b->region().ring(abi::kDirAtoB);
  const std::uint64_t head = v.control->consumer.tail;
  for (std::uint64_t p = head; p < head + 3; ++p) {
    std::byte* s = v.slots + (p % v.slot_count) * abi::kSlotSize;
    const std::uint32_t seq = static_cast<std::uint32_t>(p + 1);
    std::memcpy(s, &seq, 4);
    std::memset(s + 4, 0xff, 4);  // flags with the continuation bit, nslots 255
  }
  auto na = Channel::take_over(std::move(fds_a), 0);
  ASSERT_TRUE(na) << na.error().what();
  for (std::uint64_t i = 0; i < 5; ++i) ASSERT_TRUE(send_one(*na, 70 + i));
  InMessage m;
  int bad = 0;
  while (got < 75) {
    Status s = b->try_receive(m);
    if (s.code() == EBADMSG) {
      ++bad;
      ASSERT_LE(bad, 3);
      continue;
    }
    ASSERT_EQ(s.code(), 0);
    expect_msg(m, got++);
  }
  EXPECT_EQ(bad, 3);
  EXPECT_EQ(b->rx_stats().corrupt_slots, 3u);
}

// Random scribbles over slots, nslots, seqs and indices: take_over either
// refuses with EBADMSG or yields a channel that works within bounds; it never
// crashes or loops (the walk is bounded by slot_count).
TEST(TakeOver, RandomCorruptionNeverCrashesOrHangs) {
  std::uint64_t rng = 0x7a4e;
  int refused = 0, taken = 0;
  const int rounds = static_cast<int>(test::kSanitized ? 60 : 300);
  for (int round = 0; round < rounds; ++round) {
    auto a = Channel::create(kCfg);
    ASSERT_TRUE(a);
    auto b = Channel::attach(*a->export_fds());
    ASSERT_TRUE(b);
    std::uint64_t sent = 0, got = 0;
    pump(*a, *b, &sent, &got, 20 + test::splitmix(rng) % 80);
    InMessage m;
    for (std::uint64_t k = test::splitmix(rng) % 8; k > 0 && got < sent; --k) {
      ASSERT_TRUE(b->try_receive(m));
      expect_msg(m, got++);
    }
    auto fds_a = *a->export_fds();
    a->detach();
    RingView v = b->region().ring(abi::kDirAtoB);
    const std::uint64_t tail = v.control->consumer.tail;
    for (int k = 1 + static_cast<int>(test::splitmix(rng) % 6); k > 0; --k) {
      const std::uint64_t x = test::splitmix(rng);
      const std::uint64_t p = tail + (x >> 8) % (2 * v.slot_count);
      std::byte* s = v.slots + (p % v.slot_count) * abi::kSlotSize;
      switch (x % 5) {
        case 0: {  // a "published" seq at a random position
          const auto seq = static_cast<std::uint32_t>(p + 1);
          std::memcpy(s, &seq, 4);
          break;
        }
        case 1: s[7] = static_cast<std::byte>(x >> 40); break;  // nslots
        case 2: s[6] = static_cast<std::byte>(x >> 40); break;  // flags
        case 3: {
          const auto seq = static_cast<std::uint32_t>(x >> 16);
          std::memcpy(s, &seq, 4);
          break;
        }
        default: v.control->consumer.bulk_tail += (x >> 20) % 8192; break;
      }
    }
    auto na = Channel::take_over(std::move(fds_a), 0);
    if (!na) {
      EXPECT_EQ(na.error().code(), EBADMSG);
      ++refused;
      continue;
    }
    ++taken;
    for (std::uint64_t i = 0; i < 30; ++i) {
      (void)send_one(*na, 500 + i);
      for (int k = 0; k < 4; ++k) {
        if (b->try_receive(m)) {
          EXPECT_LE(m.payload.size(), kCfg.bulk_size);
        }
      }
    }
  }
  EXPECT_EQ(refused + taken, rounds);
  EXPECT_GT(taken, 0);
}


}  // namespace
}  // namespace mk::ipi
