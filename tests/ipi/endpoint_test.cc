// Endpoint: handlers, typed send, request/response, timeouts, broadcast,
// peer-down (process death and close), event-loop view, every error code.
#include "ipi/endpoint.h"

#include <signal.h>
#include <sys/epoll.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "ipi/message_types.h"
#include "ipi_test_util.h"

namespace mk::ipi {
namespace {

using namespace std::chrono_literals;

constexpr std::uint16_t kEcho = type_in(TypeRange::kUser, 10);
constexpr std::uint16_t kNote = type_in(TypeRange::kUser, 11);
constexpr std::uint16_t kSilent = type_in(TypeRange::kUser, 12);
constexpr std::uint16_t kDeny = type_in(TypeRange::kResource, 1);
constexpr std::uint16_t kTyped = type_in(TypeRange::kIo, 1);

struct Point {
  std::int32_t x, y;
};

std::unique_ptr<Endpoint> make_ep(EndpointOptions o = {}) {
  auto ep = Endpoint::create(o);
  EXPECT_TRUE(ep);
  return std::move(*ep);
}

// Two endpoints linked by one in-process channel pair.
struct Pair {
  explicit Pair(EndpointOptions o = {}) : a(make_ep(o)), b(make_ep(o)) {
    auto ch = Channel::create_pair(ChannelConfig{256, 64 * 1024});
    EXPECT_TRUE(ch);
    EXPECT_TRUE(a->add_peer(2, std::move(ch->first)));
    EXPECT_TRUE(b->add_peer(1, std::move(ch->second)));
  }
  std::unique_ptr<Endpoint> a, b;
};

// Runs b's dispatch loop in a thread until stop.
struct Server {
  Server(Endpoint& ep) : t([this, &ep] {
    while (!stop) ep.dispatch(1ms);
  }) {}
  ~Server() {
    stop = true;
    t.join();
  }
  std::atomic<bool> stop{false};
  std::thread t;
};

TEST(Endpoint, CreateRejectsBadOptions) {
  EndpointOptions o;
  o.max_pending = 0;
  EXPECT_EQ(Endpoint::create(o).error().code(), EINVAL);
  o.max_pending = 70000;
  EXPECT_EQ(Endpoint::create(o).error().code(), EINVAL);
  o = {};
  o.liveness_interval = 0ns;
  EXPECT_EQ(Endpoint::create(o).error().code(), EINVAL);
}

TEST(Endpoint, RegistrationErrors) {
  Pair p;
  EXPECT_EQ(p.a->on(0x0100, [](Incoming&) {}).error().code(), EINVAL);
  EXPECT_EQ(p.a->on(kNote, Handler{}).error().code(), EINVAL);
  EXPECT_TRUE(p.a->on(kNote, [](Incoming&) {}));
  EXPECT_EQ(p.a->on(kNote, [](Incoming&) {}).error().code(), EEXIST);
  auto ch = Channel::create_pair(ChannelConfig{64, 0});
  EXPECT_EQ(p.a->add_peer(2, std::move(ch->first)).error().code(), EEXIST);
  EXPECT_EQ(p.a->send(99, kNote, {}).code(), ENOENT);
  std::byte buf[8];
  EXPECT_EQ(p.a->request(99, kEcho, {}, buf, 1s).error().code(), ENOENT);
}

TEST(Endpoint, AddPeerWithDeadPidFails) {
  auto ep = make_ep();
  pid_t pid = test::fork_child([] { return 0; });
  ASSERT_EQ(test::wait_child(pid), 0);  // reaped: the pid no longer exists
  auto ch = Channel::create_pair(ChannelConfig{64, 0});
  auto r = ep->add_peer(5, std::move(ch->first), pid);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ESRCH);
}

TEST(Endpoint, HandlersPerTypeAndTypedSend) {
  Pair p;
  int notes = 0;
  Point got{};
  ASSERT_TRUE(p.b->on(kNote, [&](Incoming& in) {
    EXPECT_EQ(in.peer(), 1u);
    EXPECT_FALSE(in.is_request());
    EXPECT_EQ(in.reply({}).code(), EINVAL);  // not a request
    ++notes;
  }));
  ASSERT_TRUE(p.b->on_value<Point>(kTyped, [&](const Point& pt, Incoming&) { got = pt; }));
  ASSERT_TRUE(p.a->send(2, kNote, {}));
  ASSERT_TRUE(p.a->send_value(2, kTyped, Point{3, 4}));
  ASSERT_TRUE(p.a->send_value(2, kTyped, std::uint8_t{1}));  // wrong size
  ASSERT_TRUE(p.a->send(2, type_in(TypeRange::kUser, 99), {}));  // no handler
  p.a->flush();
  std::size_t n = 0;
  while (n < 3) n += p.b->dispatch(1s);
  EXPECT_EQ(notes, 1);
  EXPECT_EQ(got.x, 3);
  EXPECT_EQ(got.y, 4);
  EXPECT_EQ(p.b->stats().bad_payload, 1u);
  EXPECT_EQ(p.b->stats().unhandled, 1u);
  EXPECT_EQ(p.a->send(2, 0x7000, {}).code(), EINVAL);
}

TEST(Endpoint, RequestResponseAndRemoteErrors) {
  Pair p;
  ASSERT_TRUE(p.b->on(kEcho, [](Incoming& in) {
    EXPECT_TRUE(in.is_request());
    EXPECT_TRUE(in.reply(in.payload()));
    EXPECT_EQ(in.reply(in.payload()).code(), EALREADY);
  }));
  ASSERT_TRUE(p.b->on(kDeny, [](Incoming& in) { (void)in.reply_error(EACCES); }));
  ASSERT_TRUE(p.b->on(kSilent, [](Incoming&) {}));
  ASSERT_TRUE(p.b->on_value<Point>(kTyped, [](const Point& pt, Incoming& in) {
    (void)in.reply_value(Point{pt.y, pt.x});
  }));
  Server s(*p.b);
  std::byte reply[64];
  const char msg[] = "hello, instance";
  auto r = p.a->request(2, kEcho, std::as_bytes(std::span(msg)), reply, 5s);
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_EQ(*r, sizeof msg);
  EXPECT_EQ(0, std::memcmp(reply, msg, sizeof msg));

  auto big = p.a->request(2, kEcho, std::as_bytes(std::span(msg)), std::span(reply, 4), 5s);
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code(), EMSGSIZE);

  auto denied = p.a->request(2, kDeny, {}, reply, 5s);
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code(), EACCES);

  auto none = p.a->request(2, type_in(TypeRange::kUser, 77), {}, reply, 5s);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), ENOSYS);

  auto silent = p.a->request(2, kSilent, {}, reply, 5s);
  ASSERT_FALSE(silent);
  EXPECT_EQ(silent.error().code(), ENOMSG);

  const Point pt{1, 2};
  auto typed = p.a->request(2, kTyped, std::as_bytes(std::span(&pt, 1)), reply, 5s);
  ASSERT_TRUE(typed);
  Point back;
  std::memcpy(&back, reply, sizeof back);
  EXPECT_EQ(back.x, 2);
  EXPECT_EQ(back.y, 1);

  const std::uint64_t token = 0x1122334455667788;
  auto ping = p.a->request(2, sys::kPing, std::as_bytes(std::span(&token, 1)), reply, 5s);
  ASSERT_TRUE(ping);
  EXPECT_EQ(0, std::memcmp(reply, &token, sizeof token));
  EXPECT_EQ(p.a->pending_requests(), 0u);
}

TEST(Endpoint, RequestTimesOutAndLateReplyIsStray) {
  Pair p;
  ASSERT_TRUE(p.b->on(kEcho, [](Incoming& in) { (void)in.reply(in.payload()); }));
  std::byte reply[8];
  auto r = p.a->request(2, kEcho, {}, reply, 20ms);  // b is not dispatching
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ETIMEDOUT);
  EXPECT_EQ(p.a->stats().timeouts, 1u);
  // b answers now; a must drop the late reply.
  while (p.b->dispatch(10ms) == 0) {
  }
  while (p.a->dispatch(10ms) == 0) {
  }
  EXPECT_EQ(p.a->stats().stray_responses, 1u);
}

TEST(Endpoint, PendingTableFullIsEnospc) {
  EndpointOptions o;
  o.max_pending = 2;
  Pair p(o);
  auto cb = [](Result<std::span<const std::byte>>) {};
  ASSERT_TRUE(p.a->request_async(2, kEcho, {}, 1s, cb));
  ASSERT_TRUE(p.a->request_async(2, kEcho, {}, 1s, cb));
  auto r = p.a->request_async(2, kEcho, {}, 1s, cb);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ENOSPC);
  EXPECT_EQ(p.a->request_async(2, kEcho, {}, 1s, ResponseFn{}).error().code(), EINVAL);
}

TEST(Endpoint, SyncRequestInsideHandlerIsEdeadlk) {
  Pair p;
  int code = 0;
  ASSERT_TRUE(p.b->on(kNote, [&](Incoming&) {
    std::byte reply[8];
    auto r = p.b->request(1, kEcho, {}, reply, 1s);
    code = r ? 0 : r.error().code();
  }));
  ASSERT_TRUE(p.a->send(2, kNote, {}));
  p.a->flush();
  while (p.b->dispatch(1s) == 0) {
  }
  EXPECT_EQ(code, EDEADLK);
}

TEST(Endpoint, BroadcastReachesEveryPeer) {
  auto hub = make_ep();
  std::vector<std::unique_ptr<Endpoint>> leaves;
  std::atomic<int> got{0};
  for (PeerId id = 1; id <= 3; ++id) {
    auto ch = Channel::create_pair(ChannelConfig{64, 0});
    ASSERT_TRUE(hub->add_peer(id, std::move(ch->first)));
    leaves.push_back(make_ep());
    ASSERT_TRUE(leaves.back()->add_peer(0, std::move(ch->second)));
    ASSERT_TRUE(leaves.back()->on(kNote, [&](Incoming&) { ++got; }));
  }
  auto r = hub->broadcast(kNote, {});
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 3u);
  std::vector<std::thread> ts;
  for (auto& l : leaves) ts.emplace_back([&l] { while (l->dispatch(1s) == 0) {} });
  for (auto& t : ts) t.join();
  EXPECT_EQ(got.load(), 3);
  // One leaf closes its channel: broadcast skips it once it is known down.
  leaves[1]->channel(0)->close();
  hub->dispatch(1ms);  // idle -> liveness check
  EXPECT_FALSE(hub->peer_up(2));
  auto r2 = hub->broadcast(kNote, {});
  ASSERT_TRUE(r2);
  EXPECT_EQ(*r2, 2u);
  auto r3 = hub->broadcast(0x0001, {});
  ASSERT_FALSE(r3);
  EXPECT_EQ(r3.error().code(), EINVAL);
}

TEST(Endpoint, PeerProcessDeathFailsPendingRequests) {
  EndpointOptions o;
  o.mode = WaitMode::kBlock;
  o.liveness_interval = 20ms;
  auto ep = make_ep(o);
  auto a = Channel::create(ChannelConfig{64, 0});
  ASSERT_TRUE(a);
  auto fds = a->export_fds();
  pid_t pid = test::fork_child([&]() -> int {
    auto b = Channel::attach(std::move(*fds));
    if (!b) return 2;
    InMessage m;
    if (!b->receive(m, 10s)) return 3;  // the request arrives...
    ::raise(SIGKILL);                   // ...and the peer dies without replying
    return 4;
  });
  ASSERT_GT(pid, 0);
  fds->memfd.reset();
  ASSERT_TRUE(ep->add_peer(7, std::move(*a), pid));
  int downs = 0;
  ep->on_peer_down([&](PeerId id, const Error& e) {
    EXPECT_EQ(id, 7u);
    EXPECT_EQ(e.code(), ECONNRESET);
    ++downs;
  });
  std::byte reply[8];
  // A generous timeout: the failure must come from the death, not the clock.
  auto r = ep->request(7, kEcho, {}, reply, 60s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ECONNRESET);
  EXPECT_NE(std::strstr(r.error().message(), "exited"), nullptr) << r.error().message();
  EXPECT_EQ(downs, 1);
  EXPECT_FALSE(ep->peer_up(7));
  EXPECT_EQ(ep->send(7, kNote, {}).code(), ECONNRESET);
  EXPECT_EQ(ep->request(7, kEcho, {}, reply, 1s).error().code(), ECONNRESET);
  EXPECT_EQ(test::wait_child(pid), 128 + SIGKILL);
}

TEST(Endpoint, EventLoopViewWakesEpoll) {
  Pair p;
  int notes = 0;
  ASSERT_TRUE(p.b->on(kNote, [&](Incoming&) { ++notes; }));
  ASSERT_TRUE(p.b->arm());
  epoll_event ev{};
  EXPECT_EQ(::epoll_wait(p.b->event_fd(), &ev, 1, 0), 0);
  ASSERT_TRUE(p.a->send(2, kNote, {}));
  p.a->flush();
  EXPECT_EQ(::epoll_wait(p.b->event_fd(), &ev, 1, 5000), 1);
  p.b->disarm();
  EXPECT_EQ(p.b->poll(), 1u);
  EXPECT_EQ(notes, 1);
  ASSERT_TRUE(p.a->send(2, kNote, {}));
  p.a->flush();
  EXPECT_FALSE(p.b->arm());  // work pending: do not wait
}

TEST(Endpoint, ManyRequestsAcrossThreadsInBlockMode) {
  EndpointOptions o;
  o.mode = WaitMode::kBlock;
  Pair p(o);
  ASSERT_TRUE(p.b->on(kEcho, [](Incoming& in) { (void)in.reply(in.payload()); }));
  Server s(*p.b);
  std::byte reply[8];
  const std::uint64_t n = test::scaled(5000);
  for (std::uint64_t i = 0; i < n; ++i) {
    auto r = p.a->request(2, kEcho, std::as_bytes(std::span(&i, 1)), reply, 10s);
    ASSERT_TRUE(r) << r.error().to_string();
    std::uint64_t v;
    std::memcpy(&v, reply, 8);
    ASSERT_EQ(v, i);
  }
}

}  // namespace
}  // namespace mk::ipi

namespace mk::ipi {
namespace {

double thread_cpu_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

// Regression: once every request was answered, an idle dispatch() must sleep
// on the doorbell, not spin towards the answered request's old deadline (a
// stale deadline made every image's peer thread burn its CPU after one ping).
TEST(Endpoint, IdleDispatchSleepsAfterAnsweredRequests) {
  Pair p;
  ASSERT_TRUE(p.b->on(kEcho, [](Incoming& in) { (void)in.reply(in.payload()); }));
  {
    Server s(*p.b);
    std::byte reply[16];
    const char msg[] = "ping";
    // A short timeout: its deadline passes during the idle phase below.
    ASSERT_TRUE(p.a->request(2, kEcho, std::as_bytes(std::span(msg)), reply, 20ms));
  }
  ASSERT_EQ(p.a->pending_requests(), 0u);
  std::this_thread::sleep_for(30ms);  // the old deadline is now in the past
  const double cpu0 = thread_cpu_ms();
  const auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < 300ms) (void)p.a->dispatch(50ms);
  const double used = thread_cpu_ms() - cpu0;
  // Sleeping costs well under a millisecond per wake-up; spinning costs the
  // whole 300 ms. The bound leaves room for a slow, loaded machine.
  EXPECT_LT(used, 150.0) << "idle dispatch used " << used << " ms of CPU in 300 ms";
}

// wake() from another thread ends a dispatch that would otherwise wait for
// its (long) timeout, in every wait mode, with and without peers; a wake()
// before dispatch() makes the next one return at once, and only that one.
TEST(Endpoint, WakeFromAnotherThreadEndsTheDispatch) {
  for (WaitMode mode : {WaitMode::kBlock, WaitMode::kAdaptive, WaitMode::kPoll}) {
    for (bool with_peer : {true, false}) {
      EndpointOptions o;
      o.mode = mode;
      Pair p(o);
      std::unique_ptr<Endpoint> alone = make_ep(o);
      Endpoint& ep = with_peer ? *p.a : *alone;
      std::atomic<bool> returned{false};
      std::size_t handled = 99;
      const auto t0 = std::chrono::steady_clock::now();
      std::thread t([&] {
        handled = ep.dispatch(60s);
        returned = true;
      });
      std::this_thread::sleep_for(20ms);
      EXPECT_FALSE(returned) << to_string(mode) << " peer " << with_peer;  // still waiting
      ep.wake();
      t.join();
      EXPECT_EQ(handled, 0u);
      // Not the 60 s timeout (any bound far below it shows the wake-up).
      EXPECT_LT(std::chrono::steady_clock::now() - t0, 30s) << to_string(mode) << " peer " << with_peer;
      ep.wake();  // before: the next dispatch returns at once...
      EXPECT_EQ(ep.dispatch(60s), 0u);
      const auto t1 = std::chrono::steady_clock::now();
      EXPECT_EQ(ep.dispatch(20ms), 0u);  // ...and the one after waits its timeout again
      EXPECT_GE(std::chrono::steady_clock::now() - t1, 20ms);
    }
  }
}

}  // namespace
}  // namespace mk::ipi
