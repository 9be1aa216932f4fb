// Hostile peer: a child process maps the channel and, for a while, writes
// random bytes over the whole shared region (header, control lines, slots,
// bulk ring, doorbell words) while also sending valid messages and forged
// responses. The parent keeps receiving: it must not crash or hang, every
// message it accepts must be within bounds, and the damage must show up as
// counted errors.
#include <sys/wait.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>

#include "ipi/channel.h"
#include "ipi/endpoint.h"
#include "ipi/message_types.h"
#include "ipi_test_util.h"

namespace mk::ipi {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr std::uint16_t kType = type_in(TypeRange::kUser, 5);
constexpr ChannelConfig kCfg{256, 64 * 1024};

// The scribbler: runs in the child, owns side B.
int scribble(ChannelFds fds, std::chrono::milliseconds duration, std::uint64_t seed) {
  auto ch = Channel::attach(std::move(fds));
  if (!ch) return 2;
  Region& r = ch->region();
  std::byte* base = r.base();
  const std::size_t size = r.size();
  std::uint64_t s = seed;
  std::vector<std::byte> buf(8192);
  const auto end = Clock::now() + duration;
  while (Clock::now() < end) {
    const std::uint64_t x = test::splitmix(s);
    switch (x % 8) {
      case 0:
      case 1: {  // a valid message (may fail: we scribble our own indices too)
        const std::size_t len = test::splitmix(s) % buf.size();
        (void)ch->try_send(kType, std::span(buf.data(), len));
        break;
      }
      case 2: {  // forged response/request with random ids and kinds
        const auto kind = static_cast<MessageKind>(test::splitmix(s) % 4);
        (void)ch->try_send(type_in(TypeRange::kSystem, 1), std::span(buf.data(), 4), kind,
                           static_cast<std::uint32_t>(test::splitmix(s)));
        break;
      }
      case 3: {  // a large burst of garbage anywhere
        const std::size_t off = test::splitmix(s) % size;
        const std::size_t len = std::min<std::size_t>(size - off, 1 + test::splitmix(s) % 4096);
        for (std::size_t i = 0; i < len; i += 8) {
          const std::uint64_t v = test::splitmix(s);
          std::memcpy(base + off + i, &v, std::min<std::size_t>(8, len - i));
        }
        break;
      }
      default: {  // one aligned word anywhere, biased to the control and slot areas
        const std::size_t span = (x & 0x100) ? size : std::min<std::size_t>(size, 64 * 1024);
        const std::size_t off = (test::splitmix(s) % (span / 4)) * 4;
        const std::uint32_t v = static_cast<std::uint32_t>(test::splitmix(s));
        std::memcpy(base + off, &v, 4);
        break;
      }
    }
    ch->flush();
  }
  return 0;
}

bool exited(pid_t pid, int* status) { return ::waitpid(pid, status, WNOHANG) == pid; }

TEST(Hostile, ReceiverSurvivesARandomWritingPeer) {
  auto a = Channel::create(kCfg);
  ASSERT_TRUE(a);
  auto fds = a->export_fds();
  ASSERT_TRUE(fds);
  pid_t pid = test::fork_child([&] { return scribble(std::move(*fds), 1500ms, 12345); });
  fds->memfd.reset();

  std::uint64_t ok = 0, timeouts = 0, epipe = 0, send_ok = 0, send_refused = 0;
  int status = 0;
  bool done = false;
  InMessage m;
  std::vector<std::byte> out(3000);
  const auto give_up = Clock::now() + 60s;  // a hang fails instead of stalling CI
  while (!done && Clock::now() < give_up) {
    done = exited(pid, &status);
    auto r = a->receive(m, 20ms);
    if (r) {
      ++ok;
      ASSERT_TRUE(is_valid_type(m.type));
      ASSERT_LE(m.payload.size(), kCfg.bulk_size);
      if (!m.by_ref) {
        ASSERT_LE(m.payload.size(), abi::kMaxSpanPayload);
      }
      unsigned sum = 0;
      for (std::byte b : m.payload) sum += static_cast<unsigned>(b);  // every byte readable
      asm volatile("" : : "r"(sum));  // keep the reads
    } else if (r.error().code() == ETIMEDOUT) {
      ++timeouts;
    } else {
      ASSERT_EQ(r.error().code(), EPIPE) << r.error().to_string();
      ++epipe;
    }
    // The other direction: its consumer indices are being scribbled too.
    Status s = a->try_send(kType, std::span(out.data(), ok % out.size()));
    if (s) {
      ++send_ok;
    } else {
      ASSERT_TRUE(s.code() == EAGAIN || s.code() == EPROTO || s.code() == EPIPE) << s.code();
      ++send_refused;
    }
  }
  ASSERT_TRUE(done) << "receiver loop did not finish";
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  const RingStats& st = a->rx_stats();
  EXPECT_GT(st.errors(), 0u) << "the scribbling went unnoticed";
  std::printf("hostile: %llu accepted, %llu corrupt, %llu bad length, %llu bad type, %llu bad bulk, "
              "%llu timeouts, %llu epipe; sends %llu ok / %llu refused\n",
              (unsigned long long)ok, (unsigned long long)st.corrupt_slots,
              (unsigned long long)st.bad_length, (unsigned long long)st.bad_type,
              (unsigned long long)st.bad_bulk, (unsigned long long)timeouts,
              (unsigned long long)epipe, (unsigned long long)send_ok,
              (unsigned long long)send_refused);
}

TEST(Hostile, EndpointSurvivesForgedTraffic) {
  EndpointOptions o;
  o.liveness_interval = 10ms;
  auto ep = Endpoint::create(o);
  ASSERT_TRUE(ep);
  auto a = Channel::create(kCfg);
  ASSERT_TRUE(a);
  auto fds = a->export_fds();
  pid_t pid = test::fork_child([&] { return scribble(std::move(*fds), 1000ms, 777); });
  fds->memfd.reset();
  ASSERT_TRUE((*ep)->add_peer(9, std::move(*a), pid));
  std::uint64_t handled = 0, answered = 0, failed = 0;
  ASSERT_TRUE((*ep)->on(kType, [&](Incoming& in) {
    ++handled;
    if (in.is_request()) (void)in.reply({});
  }));
  bool down = false;
  (*ep)->on_peer_down([&](PeerId, const Error&) { down = true; });
  const auto give_up = Clock::now() + 60s;
  while (!down && Clock::now() < give_up) {
    (*ep)->dispatch(5ms);
    if ((*ep)->pending_requests() < 8) {
      (void)(*ep)->request_async(9, kType, {}, 20ms, [&](Result<std::span<const std::byte>> r) {
        r ? ++answered : ++failed;
      });
    }
  }
  EXPECT_TRUE(down) << "peer death not noticed";
  EXPECT_EQ((*ep)->pending_requests(), 0u);  // every request completed one way or another
  EXPECT_GT(answered + failed, 0u);
  EXPECT_EQ(test::wait_child(pid), 0);
  std::printf("hostile endpoint: %llu handled, %llu requests answered, %llu failed, %llu stray\n",
              (unsigned long long)handled, (unsigned long long)answered, (unsigned long long)failed,
              (unsigned long long)(*ep)->stats().stray_responses);
}

}  // namespace
}  // namespace mk::ipi
