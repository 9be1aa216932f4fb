// SCM_RIGHTS helpers: a channel handed to a forked process over a socket,
// and every error path of the framing.
#include "ipi/fd_passing.h"

#include <sys/mman.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <cstring>

#include "ipi/message_types.h"
#include "ipi_test_util.h"

namespace mk::ipi {
namespace {

using namespace std::chrono_literals;
constexpr std::uint16_t kType = type_in(TypeRange::kSystem, 100);

struct SockPair {
  SockPair() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    a.reset(sv[0]);
    b.reset(sv[1]);
  }
  UniqueFd a, b;
};

TEST(FdPassing, ChannelTravelsToAnotherProcess) {
  SockPair sp;
  pid_t pid = test::fork_child([&]() -> int {
    sp.a.reset();
    auto fds = recv_channel(sp.b.get());
    if (!fds) return 2;
    auto ch = Channel::attach(std::move(*fds));
    if (!ch) return 3;
    InMessage m;
    for (int i = 0; i < 1000; ++i) {
      if (!ch->receive(m, 10s)) return 4;
      std::vector<std::byte> copy(m.payload.begin(), m.payload.end());
      if (!ch->send(kType, copy, 10s)) return 5;
    }
    return 0;
  });
  sp.b.reset();
  auto ch = Channel::create(ChannelConfig{64, 0});
  ASSERT_TRUE(ch);
  ASSERT_TRUE(send_channel(sp.a.get(), *ch));
  InMessage m;
  for (std::uint64_t i = 0; i < 1000; ++i) {
    ASSERT_TRUE(ch->send(kType, std::as_bytes(std::span(&i, 1)), 10s));
    ASSERT_TRUE(ch->receive(m, 10s));
    std::uint64_t v;
    std::memcpy(&v, m.payload.data(), 8);
    ASSERT_EQ(v, i);
  }
  EXPECT_EQ(test::wait_child(pid), 0);
  EXPECT_EQ(ch->peer_pid(), pid);
}

TEST(FdPassing, RawFdsAndData) {
  SockPair sp;
  UniqueFd f(::memfd_create("x", MFD_CLOEXEC));
  const int fds[1] = {f.get()};
  const char data[] = "abc";
  ASSERT_TRUE(send_fds(sp.a.get(), fds, std::as_bytes(std::span(data))));
  UniqueFd got[2];
  char buf[16] = {};
  auto r = recv_fds(sp.b.get(), got, std::as_writable_bytes(std::span(buf)));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->nfds, 1u);
  EXPECT_EQ(r->nbytes, sizeof data);
  EXPECT_TRUE(got[0].valid());
  EXPECT_STREQ(buf, "abc");
}

TEST(FdPassing, ErrorPaths) {
  SockPair sp;
  int many[kMaxFds + 1] = {};
  EXPECT_EQ(send_fds(sp.a.get(), many).error().code(), EINVAL);
  std::vector<std::byte> huge(5000);
  EXPECT_EQ(send_fds(sp.a.get(), {}, huge).error().code(), EMSGSIZE);
  EXPECT_EQ(send_fds(-1, {}).error().code(), EBADF);

  // A frame without descriptors / wrong magic is not a channel.
  const char junk[16] = "not a frame";
  ASSERT_TRUE(send_fds(sp.a.get(), {}, std::as_bytes(std::span(junk))));
  EXPECT_EQ(recv_channel(sp.b.get()).error().code(), EBADMSG);

  // More descriptors than the receiver has room for: all closed, EBADMSG.
  UniqueFd f(::memfd_create("x", MFD_CLOEXEC));
  const int two[2] = {f.get(), f.get()};
  ASSERT_TRUE(send_fds(sp.a.get(), two));
  UniqueFd one[1];
  EXPECT_EQ(recv_fds(sp.b.get(), one, {}).error().code(), EBADMSG);

  // End of stream.
  sp.a.reset();
  EXPECT_EQ(recv_channel(sp.b.get()).error().code(), ECONNRESET);
}

}  // namespace
}  // namespace mk::ipi
