// Channel: create/attach probes, blocking send/receive in every wait mode,
// back-pressure, close, batching + doorbell economy, eventfd view, fork.
#include "ipi/channel.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "ipi/message_types.h"
#include "ipi_test_util.h"

namespace mk::ipi {
namespace {

using namespace std::chrono_literals;
using test::check_pattern;
using test::fill_pattern;

constexpr std::uint16_t kType = type_in(TypeRange::kUser, 2);

std::span<const std::byte> bytes_of(const std::uint64_t& v) {
  return std::as_bytes(std::span<const std::uint64_t, 1>(&v, 1));
}

std::uint64_t value_of(const InMessage& m) {
  std::uint64_t v = 0;
  std::memcpy(&v, m.payload.data(), std::min(m.payload.size(), sizeof v));
  return v;
}

TEST(Channel, CreateRejectsBadConfigAndOptions) {
  EXPECT_EQ(Channel::create(ChannelConfig{100, 0}).error().code(), EINVAL);
  EXPECT_EQ(Channel::create(ChannelConfig{32, 0}).error().code(), EINVAL);
  EXPECT_EQ(Channel::create(ChannelConfig{1u << 21, 0}).error().code(), EINVAL);
  EXPECT_EQ(Channel::create(ChannelConfig{64, 100}).error().code(), EINVAL);
  EXPECT_EQ(Channel::create(ChannelConfig{64, 1ull << 33}).error().code(), EINVAL);
  ChannelOptions o;
  o.batch = 0;
  EXPECT_EQ(Channel::create(ChannelConfig{}, o).error().code(), EINVAL);
  o.batch = kMaxBatch + 1;
  EXPECT_EQ(Channel::create(ChannelConfig{}, o).error().code(), EINVAL);
  o.batch = 1;
  o.poll_budget = -1ns;
  EXPECT_EQ(Channel::create(ChannelConfig{}, o).error().code(), EINVAL);
}

// Creates side A and returns fds for side B after `patch` ran on the header.
template <class Patch>
Result<Channel> attach_patched(Patch patch, Channel* keep_a) {
  auto a = Channel::create(ChannelConfig{64, 4096});
  if (!a) return a.error();
  auto fds = a->export_fds();
  if (!fds) return fds.error();
  patch(a->region().header());
  *keep_a = std::move(*a);
  return Channel::attach(std::move(*fds));
}

TEST(Channel, AttachProbesEveryHeaderField) {
  Channel a = std::move(*Channel::create(ChannelConfig{64, 0}));
  auto code = [&](auto patch) { return attach_patched(patch, &a).error().code(); };
  EXPECT_EQ(code([](abi::RegionHeader* h) { h->magic ^= 1; }), EPROTO);
  EXPECT_EQ(code([](abi::RegionHeader* h) { h->compatible[3] = 'X'; }), EPROTO);
  EXPECT_EQ(code([](abi::RegionHeader* h) { h->version = 2; }), EPROTONOSUPPORT);
  EXPECT_EQ(code([](abi::RegionHeader* h) { h->slot_count = 128; }), EBADMSG);
  EXPECT_EQ(code([](abi::RegionHeader* h) { h->slot_count = 65; }), EBADMSG);
  EXPECT_EQ(code([](abi::RegionHeader* h) { h->bulk_size = 8192; }), EBADMSG);
  EXPECT_EQ(code([](abi::RegionHeader* h) { h->dir_offset[1] += 64; }), EBADMSG);
  EXPECT_EQ(code([](abi::RegionHeader* h) { h->header_size = 64; }), EBADMSG);
  EXPECT_EQ(code([](abi::RegionHeader* h) { h->side_state[1] = abi::kSideAttached; }), EBUSY);
  EXPECT_TRUE(attach_patched([](abi::RegionHeader*) {}, &a));
}

TEST(Channel, AttachRejectsBadDescriptors) {
  auto a = Channel::create(ChannelConfig{64, 0});
  ASSERT_TRUE(a);
  {
    auto fds = *a->export_fds();
    fds.memfd.reset();
    EXPECT_EQ(Channel::attach(std::move(fds)).error().code(), EBADF);
  }
  {
    auto fds = *a->export_fds();
    fds.eventfd[1].reset();
    EXPECT_EQ(Channel::attach(std::move(fds)).error().code(), EBADF);
  }
  {
    // An unsealed memfd: the peer could truncate it under us.
    auto fds = *a->export_fds();
    UniqueFd m(::memfd_create("unsealed", MFD_CLOEXEC));
    ASSERT_EQ(::ftruncate(m.get(), static_cast<off_t>(a->region().size())), 0);
    fds.memfd = std::move(m);
    EXPECT_EQ(Channel::attach(std::move(fds)).error().code(), EPERM);
  }
  {
    auto fds = *a->export_fds();
    UniqueFd m(::memfd_create("tiny", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    ASSERT_EQ(::ftruncate(m.get(), 100), 0);
    fds.memfd = std::move(m);
    EXPECT_EQ(Channel::attach(std::move(fds)).error().code(), EINVAL);
  }
  ChannelOptions bad;
  bad.batch = 99;
  EXPECT_EQ(Channel::attach(*a->export_fds(), bad).error().code(), EINVAL);
}

void ping_pong(WaitMode mode, std::uint64_t rounds) {
  ChannelOptions o;
  o.mode = mode;
  o.poll_budget = 5us;
  auto pair = Channel::create_pair(ChannelConfig{64, 0}, o, o);
  ASSERT_TRUE(pair);
  auto& [a, b] = *pair;
  std::thread echo([&b, rounds] {
    InMessage m;
    for (std::uint64_t i = 0; i < rounds; ++i) {
      if (!b.receive(m, 10s)) return;
      const std::uint64_t v = value_of(m) + 1;
      if (!b.send(kType, bytes_of(v), 10s)) return;
    }
  });
  InMessage m;
  for (std::uint64_t i = 0; i < rounds; ++i) {
    ASSERT_TRUE(a.send(kType, bytes_of(i), 10s));
    auto r = a.receive(m, 10s);
    ASSERT_TRUE(r) << r.error().to_string() << " at " << i;
    ASSERT_EQ(value_of(m), i + 1);
  }
  echo.join();
}

TEST(Channel, PingPongPollMode) { ping_pong(WaitMode::kPoll, test::scaled(50000)); }
TEST(Channel, PingPongAdaptiveMode) { ping_pong(WaitMode::kAdaptive, test::scaled(50000)); }
// Every round trip sleeps on both sides: a lost wake-up would show up as a
// 10 s receive timeout.
TEST(Channel, PingPongBlockModeLosesNoWakeups) { ping_pong(WaitMode::kBlock, test::scaled(20000)); }

TEST(Channel, ReceiveTimesOutInEveryMode) {
  for (WaitMode mode : {WaitMode::kPoll, WaitMode::kAdaptive, WaitMode::kBlock}) {
    ChannelOptions o;
    o.mode = mode;
    o.poll_budget = 100us;
    auto pair = Channel::create_pair(ChannelConfig{64, 0}, o, o);
    ASSERT_TRUE(pair);
    InMessage m;
    auto r = pair->second.receive(m, 2ms);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ETIMEDOUT) << to_string(mode);
  }
}

TEST(Channel, FullRingTrySendAgainAndSendTimesOut) {
  auto pair = Channel::create_pair(ChannelConfig{64, 0});
  ASSERT_TRUE(pair);
  auto& [a, b] = *pair;
  std::uint64_t n = 0;
  Status s;
  while ((s = a.try_send_value(kType, n))) ++n;
  EXPECT_EQ(s.code(), EAGAIN);
  EXPECT_EQ(n, 64u);
  EXPECT_GT(a.stats().send_full, 0u);
  auto r = a.send(kType, bytes_of(n), 1ms);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ETIMEDOUT);
  InMessage m;
  for (std::uint64_t i = 0; i < n; ++i) {
    ASSERT_TRUE(b.try_receive(m));
    EXPECT_EQ(value_of(m), i);
  }
  EXPECT_TRUE(a.send(kType, bytes_of(n), 1ms));
}

TEST(Channel, SendRejectsOversizeAndBadType) {
  auto pair = Channel::create_pair(ChannelConfig{64, 4096});
  ASSERT_TRUE(pair);
  std::vector<std::byte> big(4097);
  auto r = pair->first.send(kType, big, 1ms);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), EMSGSIZE);
  auto r2 = pair->first.send(0x0001, {}, 1ms);
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.error().code(), EINVAL);
}

TEST(Channel, ClosedPeerDrainsThenReportsEpipe) {
  auto pair = Channel::create_pair(ChannelConfig{64, 0});
  ASSERT_TRUE(pair);
  auto& [a, b] = *pair;
  ASSERT_TRUE(a.try_send_value(kType, std::uint64_t{7}));
  a.close();
  EXPECT_EQ(a.try_send_value(kType, std::uint64_t{8}).code(), EPIPE);
  EXPECT_TRUE(b.peer_closed());
  EXPECT_EQ(b.try_send_value(kType, std::uint64_t{9}).code(), EPIPE);
  auto r0 = b.send(kType, bytes_of(9), 1ms);
  ASSERT_FALSE(r0);
  EXPECT_EQ(r0.error().code(), EPIPE);
  InMessage m;
  ASSERT_TRUE(b.receive(m, 1s));
  EXPECT_EQ(value_of(m), 7u);
  auto r = b.receive(m, 1s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), EPIPE);
}

TEST(Channel, CloseWakesASleepingReceiver) {
  ChannelOptions o;
  o.mode = WaitMode::kBlock;
  auto pair = Channel::create_pair(ChannelConfig{64, 0}, o, o);
  ASSERT_TRUE(pair);
  auto& [a, b] = *pair;
  std::atomic<int> code{0};
  std::thread t([&] {
    InMessage m;
    auto r = b.receive(m, 30s);
    code = r ? 0 : r.error().code();
  });
  while (std::atomic_ref<std::uint32_t>(*b.rx_doorbell().word()).load() != abi::kSleepingFutex) {
    std::this_thread::yield();
  }
  a.close();
  t.join();
  EXPECT_EQ(code.load(), EPIPE);
}

TEST(Channel, BatchPublishesOnceAndRingsOnlyASleepingPeer) {
  ChannelOptions tx;
  tx.batch = 16;
  ChannelOptions rx;
  rx.mode = WaitMode::kBlock;
  auto pair = Channel::create_pair(ChannelConfig{256, 0}, tx, rx);
  ASSERT_TRUE(pair);
  auto& [a, b] = *pair;
  for (std::uint64_t i = 0; i < 15; ++i) ASSERT_TRUE(a.try_send_value(kType, i));
  InMessage m;
  EXPECT_EQ(b.try_receive(m).code(), EAGAIN);  // batch not yet visible
  EXPECT_EQ(a.stats().publishes, 0u);
  ASSERT_TRUE(a.try_send_value(kType, std::uint64_t{15}));  // 16th fills the batch
  EXPECT_EQ(a.stats().publishes, 1u);
  EXPECT_EQ(a.stats().doorbell_syscalls, 0u);  // receiver was awake
  for (std::uint64_t i = 0; i < 16; ++i) {
    ASSERT_TRUE(b.try_receive(m));
    EXPECT_EQ(value_of(m), i);
  }
  ASSERT_TRUE(a.try_send_value(kType, std::uint64_t{16}));
  a.flush();  // explicit flush publishes a partial batch
  EXPECT_EQ(a.stats().publishes, 2u);
  ASSERT_TRUE(b.try_receive(m));

  // Now let the receiver sleep, and check the sender pays exactly one wake.
  std::atomic<bool> got{false};
  std::thread t([&] {
    InMessage mm;
    got = static_cast<bool>(b.receive(mm, 30s));
  });
  while (std::atomic_ref<std::uint32_t>(*b.rx_doorbell().word()).load() != abi::kSleepingFutex) {
    std::this_thread::yield();
  }
  ASSERT_TRUE(a.try_send_value(kType, std::uint64_t{17}));
  a.flush();
  t.join();
  EXPECT_TRUE(got.load());
  EXPECT_EQ(a.stats().doorbell_syscalls, 1u);
  EXPECT_GE(b.stats().sleeps, 1u);
}

TEST(Channel, EventfdViewBecomesReadableOnSend) {
  auto pair = Channel::create_pair(ChannelConfig{64, 0});
  ASSERT_TRUE(pair);
  auto& [a, b] = *pair;
  ASSERT_TRUE(b.arm_eventfd());
  pollfd p{b.event_fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0);  // nothing yet
  ASSERT_TRUE(a.try_send_value(kType, std::uint64_t{1}));
  EXPECT_EQ(::poll(&p, 1, 1000), 1);
  b.disarm_eventfd();
  EXPECT_EQ(::poll(&p, 1, 0), 0);  // drained
  InMessage m;
  ASSERT_TRUE(b.try_receive(m));
  // Armed while a message is pending: refuse to wait.
  ASSERT_TRUE(a.try_send_value(kType, std::uint64_t{2}));
  EXPECT_FALSE(b.arm_eventfd());
  EXPECT_EQ(a.stats().doorbell_syscalls, 1u);
}

TEST(Channel, LargeMessagesAcrossThreads) {
  auto pair = Channel::create_pair(ChannelConfig{128, 256 * 1024});
  ASSERT_TRUE(pair);
  auto& [a, b] = *pair;
  const std::uint64_t n = test::scaled(3000);
  std::thread prod([&] {
    std::vector<std::byte> buf(200 * 1024);
    for (std::uint64_t i = 0; i < n; ++i) {
      const std::size_t len = (i * 7919) % buf.size();
      fill_pattern(buf.data(), len, i);
      auto r = a.send(kType, std::span(buf.data(), len), 10s);
      if (!r) {
        ADD_FAILURE() << "send " << i << ": " << r.error().to_string();
        return;
      }
    }
  });
  InMessage m;
  for (std::uint64_t i = 0; i < n; ++i) {
    auto r = b.receive(m, 10s);
    if (!r) prod.join();
    ASSERT_TRUE(r) << r.error().to_string() << " at " << i << " stats " << b.rx_stats().errors();
    ASSERT_EQ(m.payload.size(), (i * 7919) % (200 * 1024));
    ASSERT_TRUE(check_pattern(m.payload.data(), m.payload.size(), i)) << i;
  }
  prod.join();
  EXPECT_EQ(b.rx_stats().errors(), 0u);
}

TEST(Channel, WorksAcrossForkWithAttach) {
  auto a = Channel::create(ChannelConfig{64, 64 * 1024});
  ASSERT_TRUE(a);
  auto fds = a->export_fds();
  ASSERT_TRUE(fds);
  const std::uint64_t n = test::scaled(20000);
  pid_t pid = test::fork_child([&]() -> int {
    auto b = Channel::attach(std::move(*fds));
    if (!b) return 2;
    InMessage m;
    std::vector<std::byte> echo;
    for (std::uint64_t i = 0; i < n; ++i) {
      if (!b->receive(m, 10s)) return 3;
      echo.assign(m.payload.begin(), m.payload.end());
      if (!b->send(kType, echo, 10s)) return 4;
    }
    return 0;
  });
  fds->memfd.reset();
  std::vector<std::byte> buf(5000);
  InMessage m;
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::size_t len = i % 50 == 0 ? 5000 : i % 200;
    fill_pattern(buf.data(), len, i);
    ASSERT_TRUE(a->send(kType, std::span(buf.data(), len), 10s));
    ASSERT_TRUE(a->receive(m, 10s));
    ASSERT_EQ(m.payload.size(), len);
    ASSERT_TRUE(check_pattern(m.payload.data(), len, i));
  }
  EXPECT_EQ(test::wait_child(pid), 0);
  EXPECT_EQ(a->peer_pid(), pid);
}

TEST(Doorbell, ParseWaitMode) {
  WaitMode m{};
  EXPECT_TRUE(parse_wait_mode("poll", &m));
  EXPECT_EQ(m, WaitMode::kPoll);
  EXPECT_TRUE(parse_wait_mode("block", &m));
  EXPECT_EQ(m, WaitMode::kBlock);
  EXPECT_TRUE(parse_wait_mode("adaptive", &m));
  EXPECT_EQ(m, WaitMode::kAdaptive);
  EXPECT_FALSE(parse_wait_mode("spin", &m));
}

TEST(Doorbell, WaitAnyTimesOutAndWakesOnAnyRing) {
  abi::DoorbellLine lines[2]{};
  Doorbell a(&lines[0], -1), b(&lines[1], -1);
  Doorbell* both[2] = {&a, &b};
  a.announce_sleep();
  b.announce_sleep();
  EXPECT_EQ(wait_any(both, 1ms), ETIMEDOUT);
  std::thread t([&] {
    std::this_thread::sleep_for(5ms);
    Doorbell ringer(&lines[1], -1);
    ringer.ring();
  });
  EXPECT_EQ(wait_any(both, 10s), 0);
  t.join();
  EXPECT_EQ(lines[1].state, abi::kAwake);
  // A word holding garbage (scribbled) never blocks.
  lines[0].state = 0x1234;
  Doorbell* one[1] = {&a};
  EXPECT_EQ(wait_any(one, 10s), 0);
  // Ringing an awake doorbell is free.
  Doorbell r(&lines[1], -1);
  EXPECT_FALSE(r.ring());
  EXPECT_EQ(r.syscalls(), 0u);
}

}  // namespace
}  // namespace mk::ipi
