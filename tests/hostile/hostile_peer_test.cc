// A hostile peer at the endpoint level: it sends requests and never reads
// the replies. Every reply the endpoint owes it then meets a full reverse
// ring; the endpoint may wait once (reply_timeout) for it to drain, but not
// once per request: a dispatch pass over a ring of such requests must stay
// bounded (before the fix: slot_count x reply_timeout, 25.6 s for 256 slots
// at 100 ms; mkerneld and every image serve their host or peer channel from
// one thread, so that was a hang of the daemon or of the instance's peer
// link). Replies that cannot be sent are counted, and the peer is answered
// again once it drains its ring.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

#include "ipi/channel.h"
#include "ipi/endpoint.h"
#include "ipi/message_types.h"

namespace mk::ipi {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr ChannelConfig kCfg{256, 64 * 1024};
constexpr std::uint16_t kQuery = type_in(TypeRange::kUser, 7);

// Sends `n` requests of `type` from the attacker's side; all must fit.
void send_requests(Channel& attacker, std::uint16_t type, std::uint32_t n, std::uint32_t first_corr) {
  const std::byte payload[16]{};
  for (std::uint32_t i = 0; i < n; ++i)
    ASSERT_TRUE(attacker.try_send(type, payload, MessageKind::kRequest, first_corr + i).ok()) << i;
  attacker.flush();
}

double drain_seconds(Endpoint& ep) {
  const auto t0 = Clock::now();
  (void)ep.poll();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

class HostilePeer : public ::testing::TestWithParam<bool> {};

// Param: the built-in ping echo (false) or a handler that replies (true).
TEST_P(HostilePeer, RequestsWhoseRepliesAreNeverReadDoNotStallDispatch) {
  auto pair = Channel::create_pair(kCfg);
  ASSERT_TRUE(pair);
  Channel& attacker = pair->second;
  auto ep = Endpoint::create({.reply_timeout = 100ms});
  ASSERT_TRUE(ep);
  ASSERT_TRUE((*ep)->add_peer(1, std::move(pair->first)));
  const bool handler = GetParam();
  const std::uint16_t type = handler ? kQuery : sys::kPing;
  if (handler) {
    ASSERT_TRUE((*ep)->on(kQuery, [](Incoming& in) { (void)in.reply(in.payload()); }));
  }
  // First ring: every reply fits in the reverse ring.
  send_requests(attacker, type, kCfg.slot_count, 0);
  EXPECT_LT(drain_seconds(**ep), 2.0);
  // Second ring: the reverse ring is full and stays full.
  send_requests(attacker, type, kCfg.slot_count, kCfg.slot_count);
  const double s = drain_seconds(**ep);
  EXPECT_LT(s, 2.0) << "one pass over " << kCfg.slot_count << " unanswerable requests";
  EXPECT_GE((*ep)->stats().replies_dropped, kCfg.slot_count - 1);
  // And again: no second wait for a peer that still does not read.
  send_requests(attacker, type, kCfg.slot_count, 2 * kCfg.slot_count);
  EXPECT_LT(drain_seconds(**ep), 0.5);
  // The peer reads everything: it is answered again at once.
  InMessage m;
  std::uint32_t got = 0;
  while (attacker.try_receive(m).ok()) ++got;
  EXPECT_EQ(got, kCfg.slot_count);
  send_requests(attacker, type, 1, 0xabcd);
  EXPECT_LT(drain_seconds(**ep), 0.5);
  bool answered = false;
  for (int i = 0; i < 100 && !answered; ++i) {
    if (attacker.try_receive(m).ok()) answered = m.kind == MessageKind::kResponse && m.corr == 0xabcd;
    else std::this_thread::sleep_for(1ms);
  }
  EXPECT_TRUE(answered);
}

INSTANTIATE_TEST_SUITE_P(EchoAndHandler, HostilePeer, ::testing::Bool());

}  // namespace
}  // namespace mk::ipi
