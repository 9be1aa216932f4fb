// The handoff package codec of the image (kernel/image/handoff_package.h):
// write/seal, the socket protocol and every validation error.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "handoff_package.h"
#include "host_harness.h"

namespace mk::test {
namespace {

using image::read_handoff_package;
using image::receive_handoff;
using image::write_handoff_package;
using namespace std::chrono_literals;

struct Pair {
  int a = -1, b = -1;
  Pair() {
    int s[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, s) == 0) {
      a = s[0];
      b = s[1];
    }
  }
  ~Pair() {
    ::close(a);
    ::close(b);
  }
};

int open_fds() {
  int n = 0;
  for (int fd = 0; fd < 1024; ++fd) n += ::fcntl(fd, F_GETFD) >= 0;
  return n;
}

TEST(HandoffPackage, RoundTripThroughTheSocket) {
  const std::vector<std::uint8_t> blob = {1, 2, 3, 4, 5};
  const std::vector<int> src = {11, 12, 13};
  auto pkg = write_handoff_package(42, src, blob);
  ASSERT_TRUE(pkg.has_value()) << pkg.error().to_string();
  EXPECT_EQ(::fcntl(pkg->get(), F_GET_SEALS), F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  // 300 fds: two chunks after the package (250 + 50).
  std::vector<int> fds;
  for (int i = 0; i < 300; ++i) fds.push_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  Pair p;
  ASSERT_TRUE(send_handoff(p.a, pkg->get(), fds).has_value());
  auto got = receive_handoff(p.b, 300, 1000ms);
  ASSERT_TRUE(got.has_value()) << got.error().to_string();
  EXPECT_EQ(got->fds.size(), 300u);
  for (auto& f : got->fds) EXPECT_GE(::fcntl(f.get(), F_GETFD) & FD_CLOEXEC, 1);
  for (int f : fds) ::close(f);
  // The package as received says 3 fds: announcing 300 is a mismatch.
  auto bad = read_handoff_package(got->package.get(), 300, 42);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), EPROTO);
  auto other = read_handoff_package(got->package.get(), 3, 43);
  ASSERT_FALSE(other.has_value());
  EXPECT_EQ(other.error().code(), EBADMSG);
  auto c = read_handoff_package(got->package.get(), 3, 42);
  ASSERT_TRUE(c.has_value()) << c.error().to_string();
  EXPECT_EQ(c->header.update_id, 42u);
  EXPECT_EQ(c->source_fds, (std::vector<std::int32_t>{11, 12, 13}));
  EXPECT_EQ(c->blob, blob);
}

// The freeze writes into a memfd made (and its pages reserved) at prepare:
// the package is the same, at its exact size, sealed.
TEST(HandoffPackage, WrittenIntoAReservedMemfdItHasItsExactSize) {
  auto spare = image::make_package_memfd(64 * 1024);
  ASSERT_TRUE(spare.has_value()) << spare.error().to_string();
  struct stat st {};
  ASSERT_EQ(::fstat(spare->get(), &st), 0);
  EXPECT_EQ(st.st_size, 64 * 1024);
  const std::vector<std::uint8_t> blob(100, 9);
  const int src[2] = {7, 8};
  auto pkg = write_handoff_package(5, src, blob, std::move(*spare));
  ASSERT_TRUE(pkg.has_value()) << pkg.error().to_string();
  ASSERT_EQ(::fstat(pkg->get(), &st), 0);
  EXPECT_EQ(static_cast<std::uint64_t>(st.st_size), abi::handoff_size(2, 100));
  EXPECT_EQ(::fcntl(pkg->get(), F_GET_SEALS), F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  auto c = read_handoff_package(pkg->get(), 2, 5);
  ASSERT_TRUE(c.has_value()) << c.error().to_string();
  EXPECT_EQ(c->source_fds, (std::vector<std::int32_t>{7, 8}));
  EXPECT_EQ(c->blob, blob);
  // A blob bigger than the reservation grows the memfd.
  auto small = image::make_package_memfd(16);
  ASSERT_TRUE(small.has_value());
  const std::vector<std::uint8_t> big(8192, 3);
  auto grown = write_handoff_package(6, {}, big, std::move(*small));
  ASSERT_TRUE(grown.has_value()) << grown.error().to_string();
  auto g = read_handoff_package(grown->get(), 0, 6);
  ASSERT_TRUE(g.has_value()) << g.error().to_string();
  EXPECT_EQ(g->blob, big);
}

TEST(HandoffPackage, WriteRefusesEmptyBlobs) {
  auto r = write_handoff_package(1, {}, {});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), EINVAL);
}

int memfd_with(const std::vector<std::uint8_t>& bytes) {
  int fd = ::memfd_create("t", MFD_CLOEXEC);
  EXPECT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  return fd;
}

std::vector<std::uint8_t> good_bytes() {
  const std::vector<std::uint8_t> blob(16, 7);
  const int src[1] = {5};
  auto pkg = write_handoff_package(1, src, blob);
  std::vector<std::uint8_t> out(abi::handoff_size(1, 16));
  EXPECT_EQ(::pread(pkg->get(), out.data(), out.size(), 0), static_cast<ssize_t>(out.size()));
  return out;
}

TEST(HandoffPackage, ReadValidatesEveryField) {
  struct Case {
    const char* name;
    void (*mutate)(std::vector<std::uint8_t>&);
    int code;
  };
  const Case cases[] = {
      {"magic", [](std::vector<std::uint8_t>& b) { b[0] = 'X'; }, EBADMSG},
      {"version", [](std::vector<std::uint8_t>& b) { b[8] = 2; }, EBADMSG},
      {"reserved", [](std::vector<std::uint8_t>& b) { b[28] = 1; }, EBADMSG},
      {"blob_bytes 0", [](std::vector<std::uint8_t>& b) { std::memset(b.data() + 16, 0, 8); }, EBADMSG},
      {"blob_bytes too big", [](std::vector<std::uint8_t>& b) { b[16 + 7] = 0x10; }, EBADMSG},
      {"trailing byte", [](std::vector<std::uint8_t>& b) { b.push_back(0); }, EBADMSG},
      {"truncated", [](std::vector<std::uint8_t>& b) { b.pop_back(); }, EBADMSG},
      {"header only half", [](std::vector<std::uint8_t>& b) { b.resize(20); }, EBADMSG},
  };
  for (const auto& c : cases) {
    auto bytes = good_bytes();
    c.mutate(bytes);
    int fd = memfd_with(bytes);
    auto r = read_handoff_package(fd, 1, 1);
    ::close(fd);
    ASSERT_FALSE(r.has_value()) << c.name;
    EXPECT_EQ(r.error().code(), c.code) << c.name << ": " << r.error().to_string();
  }
  int fd = memfd_with(good_bytes());
  EXPECT_TRUE(read_handoff_package(fd, 1, 1).has_value());
  ::close(fd);
}

void send_raw_chunk(int sock, std::uint32_t first, std::uint32_t count, const std::vector<int>& fds) {
  abi::HandoffChunk chunk{first, count};
  iovec iov{&chunk, sizeof chunk};
  std::vector<char> cbuf(CMSG_SPACE(sizeof(int) * std::max<std::size_t>(fds.size(), 1)));
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (!fds.empty()) {
    msg.msg_control = cbuf.data();
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ASSERT_EQ(::sendmsg(sock, &msg, 0), static_cast<ssize_t>(sizeof chunk));
}

TEST(HandoffPackage, ReceiveRefusesBadChunksAndClosesWhatArrived) {
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const int before = open_fds();
  {
    Pair p;  // nothing sent
    auto r = receive_handoff(p.b, 0, 50ms);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), ETIMEDOUT);
  }
  {
    Pair p;  // chunk out of order
    send_raw_chunk(p.a, 0, 1, {null_fd});
    send_raw_chunk(p.a, 1, 1, {null_fd});
    auto r = receive_handoff(p.b, 1, 500ms);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), EPROTO);
  }
  {
    Pair p;  // count says 2, one fd attached
    send_raw_chunk(p.a, 0, 1, {null_fd});
    send_raw_chunk(p.a, 0, 2, {null_fd});
    auto r = receive_handoff(p.b, 2, 500ms);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), EPROTO);
  }
  {
    Pair p;  // no fd with the package message
    send_raw_chunk(p.a, 0, 1, {});
    auto r = receive_handoff(p.b, 0, 500ms);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), EPROTO);
  }
  {
    Pair p;  // more fds in one message than the protocol allows: MSG_CTRUNC
    send_raw_chunk(p.a, 0, 1, {null_fd});
    std::vector<int> many(252, null_fd);
    send_raw_chunk(p.a, 0, 252, many);
    auto r = receive_handoff(p.b, 252, 500ms);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), EPROTO);
    EXPECT_NE(r.error().to_string().find("MSG_CTRUNC"), std::string::npos) << r.error().to_string();
  }
  {
    Pair p;  // the host hung up half way
    send_raw_chunk(p.a, 0, 1, {null_fd});
    ::shutdown(p.a, SHUT_WR);
    auto r = receive_handoff(p.b, 1, 500ms);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), ECONNRESET);
  }
  EXPECT_EQ(open_fds(), before);  // every received fd was closed
  ::close(null_fd);
}

}  // namespace
}  // namespace mk::test
