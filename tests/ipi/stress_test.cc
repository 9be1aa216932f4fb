// Multi-process stress: millions of messages of mixed sizes (inline,
// spanning and by-reference) from one process to another, batched, with
// order and content checked for every message and nothing lost. A second
// variant runs both sides as threads of one process so TSan sees the
// synchronisation of one shared mapping.
#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "ipi/channel.h"
#include "ipi/message_types.h"
#include "ipi_test_util.h"

namespace mk::ipi {
namespace {

using namespace std::chrono_literals;
using test::check_pattern;
using test::fill_pattern;

constexpr std::uint16_t kType = type_in(TypeRange::kIo, 42);

// Size of message i: mostly small, every 16th spans slots, every 4096th goes
// by reference.
std::size_t size_of(std::uint64_t i) {
  if (i % 4096 == 4095) return 8 + (i * 131) % (48 * 1024);
  if (i % 16 == 15) return 8 + (i * 37) % 1700;
  return 8 + (i * 13) % 56;
}

int produce(Channel& ch, std::uint64_t n) {
  std::vector<std::byte> buf(64 * 1024);
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::size_t len = size_of(i);
    std::memcpy(buf.data(), &i, 8);
    fill_pattern(buf.data() + 8, len - 8, i);
    Status s = ch.try_send(kType, std::span(buf.data(), len));
    if (s.again()) {
      if (!ch.send(kType, std::span(buf.data(), len), 30s)) return 3;
    } else if (!s) {
      return 4;
    }
  }
  ch.flush();
  return 0;
}

// Returns the number of messages verified; fails the test on the first bad one.
std::uint64_t consume(Channel& ch, std::uint64_t n) {
  InMessage m;
  for (std::uint64_t i = 0; i < n; ++i) {
    auto r = ch.receive(m, 30s);
    if (!r) {
      ADD_FAILURE() << "message " << i << ": " << r.error().to_string();
      return i;
    }
    std::uint64_t seq;
    if (m.payload.size() != size_of(i) || (std::memcpy(&seq, m.payload.data(), 8), seq != i) ||
        !check_pattern(m.payload.data() + 8, m.payload.size() - 8, i)) {
      ADD_FAILURE() << "message " << i << " corrupted or out of order (size " << m.payload.size() << ")";
      return i;
    }
  }
  return n;
}

TEST(Stress, MillionsOfMessagesBetweenProcesses) {
  const std::uint64_t n = test::scaled(3'000'000);
  ChannelOptions tx;
  tx.batch = 16;
  auto ch = Channel::create(ChannelConfig{1024, 1 << 20}, tx);
  ASSERT_TRUE(ch);
  auto fds = ch->export_fds();
  ASSERT_TRUE(fds);
  pid_t pid = test::fork_child([&]() -> int {
    auto b = Channel::attach(std::move(*fds), tx);
    if (!b) return 2;
    return produce(*b, n);
  });
  fds->memfd.reset();
  EXPECT_EQ(consume(*ch, n), n);
  EXPECT_EQ(test::wait_child(pid), 0);
  EXPECT_EQ(ch->rx_stats().errors(), 0u);
  EXPECT_EQ(ch->rx_stats().received, n);
  InMessage m;
  EXPECT_EQ(ch->try_receive(m).code(), EAGAIN);  // nothing extra
}

TEST(Stress, BothDirectionsBetweenThreadsInBlockMode) {
  const std::uint64_t n = test::scaled(300'000);
  ChannelOptions o;
  o.batch = 8;
  o.mode = WaitMode::kBlock;
  auto pair = Channel::create_pair(ChannelConfig{256, 256 * 1024}, o, o);
  ASSERT_TRUE(pair);
  auto& [a, b] = *pair;
  int rc_a = -1, rc_b = -1;
  std::uint64_t got_a = 0, got_b = 0;
  std::thread ta([&] { rc_a = produce(a, n); });
  std::thread tb([&] { rc_b = produce(b, n); });
  std::thread ra([&] { got_a = consume(a, n); });
  got_b = consume(b, n);
  ta.join();
  tb.join();
  ra.join();
  EXPECT_EQ(rc_a, 0);
  EXPECT_EQ(rc_b, 0);
  EXPECT_EQ(got_a, n);
  EXPECT_EQ(got_b, n);
}

}  // namespace
}  // namespace mk::ipi
