// Unit tests of the KV service's live-update side (kernel/image/kv_service.h):
// stage() + begin() on a successor, pause()/resume() on the old image, and
// the close that a dup held elsewhere must not hide. Connections are
// AF_UNIX stream socket pairs: the service's end and the client's end.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kv_service.h"
#include "mksdk/kv_store.h"

namespace mk::image {
namespace {

using namespace std::chrono_literals;

struct Pair {
  int server = -1, client = -1;
  Pair() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0) {
      server = sv[0];
      client = sv[1];
    }
  }
  ~Pair() {
    if (client >= 0) ::close(client);
  }
};

// What the client end reads within `ms`: the bytes, "EOF" or "TIMEOUT".
std::string read_some(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, ms) <= 0) return "TIMEOUT";
  char buf[256];
  ssize_t n = ::read(fd, buf, sizeof buf);
  if (n <= 0) return "EOF";
  return std::string(buf, static_cast<std::size_t>(n));
}

bool send_all(int fd, const std::string& s) { return ::write(fd, s.data(), s.size()) == static_cast<ssize_t>(s.size()); }

const std::string kPing = "*1\r\n$4\r\nPING\r\n";

class KvServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mem_ = ::mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(mem_, MAP_FAILED);
    auto s = sdk::KvStore::format(mem_, kBytes);
    ASSERT_TRUE(s) << s.error().to_string();
    store_.emplace(*s);
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, listen_pair_), 0);  // never readable for accept
  }
  void TearDown() override {
    ::munmap(mem_, kBytes);
    ::close(listen_pair_[0]);
    ::close(listen_pair_[1]);
  }
  // A listen fd the service polls: a socket no client connects to (it is
  // never readable, so accept is never tried).
  std::vector<int> listen() const { return {listen_pair_[0]}; }

  static constexpr std::size_t kBytes = 1 << 20;
  void* mem_ = nullptr;
  std::optional<sdk::KvStore> store_;
  int listen_pair_[2] = {-1, -1};
  sdk::Console con_{2};
};

TEST_F(KvServiceTest, StagedConnectionsWaitThenBeginKeepsLiveOnesClosesGoneOnesAddsNewOnes) {
  Pair a, waiting, gone, fresh;
  std::vector<KvConnState> staged{
      {7, a.server, {}, {}, false}, {8, waiting.server, {}, {}, false}, {9, gone.server, {}, {}, false}};
  auto svc = KvService::stage(listen(), 0, &con_, std::move(staged));
  ASSERT_TRUE(svc) << svc.error().to_string();
  // Staged: registered but nobody serves yet.
  ASSERT_TRUE(send_all(waiting.client, kPing));
  EXPECT_EQ(read_some(waiting.client, 100), "TIMEOUT");
  // Live: 7 (with half a request buffered), 8, and 12 (new, a reply
  // pending). 9 was closed by the predecessor.
  const std::vector<std::uint32_t> live{12, 8, 7};
  std::vector<KvConnState> changes{{7, -1, "*3\r\n$3\r\nSET\r\n$1\r\nk", {}, false},
                                   {12, fresh.server, {}, "+HELLO\r\n", false}};
  auto r = (*svc)->begin(*store_, &live, std::move(changes));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(read_some(waiting.client, 2000), "+PONG\r\n");  // what waited in its socket
  ASSERT_TRUE(send_all(a.client, "\r\n$1\r\nv\r\n"));   // the buffered half goes first
  EXPECT_EQ(read_some(a.client, 2000), "+OK\r\n");
  EXPECT_EQ(read_some(fresh.client, 2000), "+HELLO\r\n");  // its pending reply is written
  EXPECT_EQ(read_some(gone.client, 2000), "EOF");            // not live: closed
  EXPECT_EQ((*svc)->connections(), 3u);
  ASSERT_TRUE(send_all(fresh.client, "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"));
  EXPECT_EQ(read_some(fresh.client, 2000), "$1\r\nv\r\n");
}

TEST_F(KvServiceTest, BeginRefusesBadChangesBeforeChangingAnything) {
  Pair a, b, n1, n2;
  std::vector<KvConnState> staged{{1, a.server, {}, {}, false}, {2, b.server, {}, {}, false}};
  auto svc = KvService::stage(listen(), 0, &con_, std::move(staged));
  ASSERT_TRUE(svc) << svc.error().to_string();
  auto refused = [&](std::vector<std::uint32_t> live, std::vector<KvConnState> ch, const char* what) {
    auto r = (*svc)->begin(*store_, &live, std::move(ch));
    ASSERT_FALSE(r) << what;
    EXPECT_EQ(r.error().code(), EINVAL) << what << ": " << r.error().to_string();
  };
  refused({1, 1, 2}, {}, "an id listed twice");
  refused({1, 2}, {{5, -1, "x", {}, false}}, "buffers for an id not staged");
  refused({1}, {{2, -1, "x", {}, false}}, "buffers for an id not live");
  refused({1, 2, 3}, {}, "a live id with no fd");
  {
    int d = ::dup(n1.server);
    refused({1, 2}, {{2, d, {}, {}, false}}, "a new fd under a staged id");
  }
  {
    int d1 = ::dup(n1.server), d2 = ::dup(n2.server);
    refused({1, 2, 4}, {{4, d1, {}, {}, false}, {4, d2, {}, {}, false}}, "two new connections with one id");
  }
  // Nothing changed: a good begin still works and serves both.
  const std::vector<std::uint32_t> live{1, 2};
  auto ok = (*svc)->begin(*store_, &live, {});
  ASSERT_TRUE(ok) << ok.error().to_string();
  for (Pair* p : {&a, &b}) {
    ASSERT_TRUE(send_all(p->client, kPing));
    EXPECT_EQ(read_some(p->client, 2000), "+PONG\r\n");
  }
  // begin() once.
  auto again = (*svc)->begin(*store_, &live, {});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), EINVAL);
  ::close(n1.server);
  ::close(n2.server);
}

TEST_F(KvServiceTest, StageRefusesTwoConnectionsWithOneIdAndClosesThem) {
  Pair a, b;
  std::vector<KvConnState> staged{{3, a.server, {}, {}, false}, {3, b.server, {}, {}, false}};
  auto svc = KvService::stage(listen(), 0, &con_, std::move(staged));
  ASSERT_FALSE(svc);
  EXPECT_EQ(svc.error().code(), EINVAL);
  EXPECT_EQ(read_some(a.client, 1000), "EOF");  // owned even on error: closed
  EXPECT_EQ(read_some(b.client, 1000), "EOF");
}

TEST_F(KvServiceTest, ResumeOfAStagedServiceIsRefusedAndStopEndsItsParkedThread) {
  Pair a;
  auto svc = KvService::stage(listen(), 0, &con_, {{1, a.server, {}, {}, false}});
  ASSERT_TRUE(svc);
  auto r = (*svc)->resume();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), EINVAL);
  (*svc)->stop();  // joins the parked thread; closes (no shutdown) the connection
  EXPECT_EQ(read_some(a.client, 1000), "EOF");
}

TEST_F(KvServiceTest, PauseHoldsRequestsUntilResume) {
  Pair a;
  auto svc = KvService::start(*store_, listen(), 0, &con_, {{1, a.server, {}, {}, false}});
  ASSERT_TRUE(svc) << svc.error().to_string();
  ASSERT_TRUE(send_all(a.client, kPing));
  EXPECT_EQ(read_some(a.client, 2000), "+PONG\r\n");
  (*svc)->pause();
  EXPECT_TRUE((*svc)->paused());
  ASSERT_TRUE(send_all(a.client, kPing));
  EXPECT_EQ(read_some(a.client, 200), "TIMEOUT");  // held at the gate
  auto st = (*svc)->snapshot().ids;
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0], 1u);
  ASSERT_TRUE((*svc)->resume());
  EXPECT_EQ(read_some(a.client, 2000), "+PONG\r\n");
}

TEST_F(KvServiceTest, AQuitClosesTheConnectionEvenWhileADupIsHeldElsewhere) {
  Pair a;
  const int held = ::dup(a.server);  // as the host and the successor hold one
  auto svc = KvService::start(*store_, listen(), 0, &con_, {{1, a.server, {}, {}, false}});
  ASSERT_TRUE(svc);
  ASSERT_TRUE(send_all(a.client, "*1\r\n$4\r\nQUIT\r\n"));
  EXPECT_EQ(read_some(a.client, 2000), "+OK\r\n");
  EXPECT_EQ(read_some(a.client, 2000), "EOF");
  ::close(held);
}

TEST_F(KvServiceTest, SnapshotListsEveryConnectionAndTheStateOfThoseWithBufferedBytes) {
  Pair idle, half, gone;
  auto svc = KvService::start(*store_, listen(), 0, &con_,
                              {{3, idle.server, {}, {}, false}, {4, half.server, {}, {}, false},
                               {5, gone.server, {}, {}, false}});
  ASSERT_TRUE(svc);
  ASSERT_TRUE(send_all(half.client, "*2\r\n$3\r\nGET"));  // half a request: buffered
  ::close(gone.client);
  gone.client = -1;
  // Until the service has read both (no reply comes for either).
  KvService::Snapshot snap;
  for (int i = 0; i < 200; ++i) {
    (*svc)->pause();
    snap = (*svc)->snapshot();
    const bool done = snap.ids.size() == 2 && snap.pending.size() == 1;
    if (done) break;
    ASSERT_TRUE((*svc)->resume());
    ::usleep(10000);
  }
  ASSERT_EQ(snap.ids.size(), 2u);
  EXPECT_EQ(snap.ids[0], 3u);  // fd order: idle's server end was opened first
  EXPECT_EQ(snap.ids[1], 4u);
  EXPECT_EQ(snap.fds[0], idle.server);
  EXPECT_EQ(snap.fds[1], half.server);
  ASSERT_EQ(snap.pending.size(), 1u);
  EXPECT_EQ(snap.pending[0].id, 4u);
  EXPECT_EQ(snap.pending[0].in, "*2\r\n$3\r\nGET");
  ASSERT_TRUE((*svc)->resume());
}

TEST_F(KvServiceTest, AcceptedConnectionsGetIdsAfterTheRestoredOnes) {
  Pair a;
  auto svc = KvService::start(*store_, listen(), 0, &con_, {{41, a.server, {}, {}, false}});
  ASSERT_TRUE(svc);
  (*svc)->pause();
  auto st = (*svc)->snapshot().ids;
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0], 41u);
  ASSERT_TRUE((*svc)->resume());
}

// A TCP listen socket on 127.0.0.1 (ephemeral port), and a client of it.
int tcp_listen(std::uint16_t* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(fd, 16) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    return -1;
  }
  *port = ntohs(sa.sin_port);
  return fd;
}

int tcp_connect(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) return fd;
  if (fd >= 0) ::close(fd);
  return -1;
}

TEST_F(KvServiceTest, AnAddedListenerAcceptsARemovedOneNoLongerDoesItsConnectionsStay) {
  auto svc = KvService::start(*store_, listen(), 0, &con_);
  ASSERT_TRUE(svc) << svc.error().to_string();
  EXPECT_EQ((*svc)->listeners(), 1u);
  std::uint16_t port = 0;
  const int l = tcp_listen(&port);
  ASSERT_GE(l, 0);
  ASSERT_TRUE((*svc)->add_listener(l));
  EXPECT_EQ((*svc)->listeners(), 2u);
  EXPECT_NE(::fcntl(l, F_GETFL) & O_NONBLOCK, 0);
  auto twice = (*svc)->add_listener(l);
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().code(), EINVAL);

  const int a = tcp_connect(port);
  ASSERT_GE(a, 0);
  ASSERT_TRUE(send_all(a, kPing));
  EXPECT_EQ(read_some(a, 2000), "+PONG\r\n");

  ASSERT_TRUE((*svc)->remove_listener(l));
  EXPECT_EQ((*svc)->listeners(), 1u);
  auto again = (*svc)->remove_listener(l);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), EINVAL);
  EXPECT_GE(::fcntl(l, F_GETFD), 0);  // not closed: the caller's
  // The kernel still queues a connection on the socket, nobody accepts it.
  const int b = tcp_connect(port);
  ASSERT_GE(b, 0);
  ASSERT_TRUE(send_all(b, kPing));
  EXPECT_EQ(read_some(b, 300), "TIMEOUT");
  ASSERT_TRUE(send_all(a, kPing));  // accepted before: served on
  EXPECT_EQ(read_some(a, 2000), "+PONG\r\n");
  ::close(l);
  EXPECT_EQ(read_some(b, 2000), "EOF");  // reset with the listen socket
  ::close(b);

  // While paused (a live update), the change keeps it paused.
  std::uint16_t port2 = 0;
  const int l2 = tcp_listen(&port2);
  ASSERT_GE(l2, 0);
  (*svc)->pause();
  ASSERT_TRUE((*svc)->add_listener(l2));
  EXPECT_TRUE((*svc)->paused());
  const int c = tcp_connect(port2);
  ASSERT_GE(c, 0);
  ASSERT_TRUE(send_all(c, kPing));
  EXPECT_EQ(read_some(c, 200), "TIMEOUT");
  ASSERT_TRUE((*svc)->resume());
  EXPECT_EQ(read_some(c, 2000), "+PONG\r\n");
  auto closed = (*svc)->add_listener(999);
  ASSERT_FALSE(closed);
  EXPECT_EQ(closed.error().code(), EINVAL);
  (*svc)->stop();
  auto stopped = (*svc)->add_listener(l2);
  ASSERT_FALSE(stopped);
  ::close(a);
  ::close(c);
  ::close(l2);
}

}  // namespace
}  // namespace mk::image
