// Tests for mkernel/devices.h: file and listen fds, and moving a veth end
// into a network namespace this test creates (root only).
#include "mkernel/devices.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

namespace fs = std::filesystem;

namespace mk {
namespace {

DeviceSpec spec(const std::string& text) {
  auto s = DeviceSpec::parse(text);
  EXPECT_TRUE(s) << text << ": " << s.error().to_string();
  return s ? *s : DeviceSpec{};
}

class DevicesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("mk_devices_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    file_ = (dir_ / "data.bin").string();
    std::ofstream(file_) << "0123456789";
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
  std::string file_;
};

TEST_F(DevicesTest, FileReadWriteAndReadOnly) {
  auto rw = open_device(spec("file:" + file_));
  ASSERT_TRUE(rw) << rw.error().to_string();
  EXPECT_TRUE(::fcntl(rw->get(), F_GETFD) & FD_CLOEXEC);
  EXPECT_EQ(::pwrite(rw->get(), "AB", 2, 0), 2);
  char buf[4] = {};
  auto ro = open_device(spec("file:" + file_ + ":ro"));
  ASSERT_TRUE(ro) << ro.error().to_string();
  EXPECT_EQ(::pread(ro->get(), buf, 2, 0), 2);
  EXPECT_EQ(std::string(buf, 2), "AB");
  errno = 0;
  EXPECT_EQ(::write(ro->get(), "x", 1), -1);
  EXPECT_EQ(errno, EBADF);
}

TEST_F(DevicesTest, MissingFileNamesThePath) {
  std::string missing = (dir_ / "nope").string();
  auto r = open_device(spec("file:" + missing));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ENOENT);
  EXPECT_NE(std::string(r.error().detail()).find(missing), std::string::npos);
}

uint16_t free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

TEST_F(DevicesTest, ListenSocketAcceptsAndReportsAddrInUse) {
  uint16_t port = free_port();
  std::string text = "listen:127.0.0.1:" + std::to_string(port);
  auto l = open_device(spec(text));
  ASSERT_TRUE(l) << l.error().to_string();
  EXPECT_TRUE(::fcntl(l->get(), F_GETFD) & FD_CLOEXEC);
  EXPECT_FALSE(::fcntl(l->get(), F_GETFL) & O_NONBLOCK);
  int acc = 0;
  socklen_t len = sizeof acc;
  ASSERT_EQ(::getsockopt(l->get(), SOL_SOCKET, SO_ACCEPTCONN, &acc, &len), 0);
  EXPECT_EQ(acc, 1);
  int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  int s = ::accept4(l->get(), nullptr, nullptr, SOCK_CLOEXEC);
  EXPECT_GE(s, 0);
  ::close(s);
  ::close(c);

  auto again = open_device(spec(text));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), EADDRINUSE);
  EXPECT_NE(std::string(again.error().detail()).find("127.0.0.1:" + std::to_string(port)),
            std::string::npos)
      << again.error().to_string();
}

TEST_F(DevicesTest, ListenIpv6Loopback) {
  int probe = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  bool v6 = probe >= 0 && ::bind(probe, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  socklen_t len = sizeof a;
  if (v6) ::getsockname(probe, reinterpret_cast<sockaddr*>(&a), &len);
  if (probe >= 0) ::close(probe);
  if (!v6) GTEST_SKIP() << "no IPv6 loopback here";
  auto l = open_device(spec("listen:[::1]:" + std::to_string(ntohs(a.sin6_port))));
  ASSERT_TRUE(l) << l.error().to_string();
}

TEST_F(DevicesTest, KindsWithoutAHostFd) {
  auto n = open_device(spec("net:eth0"));
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().code(), EINVAL);
}

TEST_F(DevicesTest, BlockDeviceMissingNamesThePath) {
  auto b = open_device(spec("block:mkbnosuchdisk0"));
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code(), ENOENT);
  EXPECT_NE(std::string(b.error().detail()).find("/dev/mkbnosuchdisk0"), std::string::npos);
}

// The root filesystem's disk is mounted: the host must not hand it out.
TEST_F(DevicesTest, MountedBlockDeviceIsBusy) {
  if (::geteuid() != 0) GTEST_SKIP() << "opening disks needs root";
  struct stat st{};
  ASSERT_EQ(::stat("/", &st), 0);
  char link[64];
  std::snprintf(link, sizeof link, "/sys/dev/block/%u:%u", major(st.st_dev), minor(st.st_dev));
  std::error_code ec;
  fs::path target = fs::read_symlink(link, ec);
  if (ec || !fs::exists("/dev/" + target.filename().string()))
    GTEST_SKIP() << "the root filesystem is not on a block device in /dev";
  auto b = open_device(spec("block:" + target.filename().string()));
  ASSERT_FALSE(b);
  // EBUSY from the exclusive claim, or EPERM where the kernel refuses any
  // write open of a mounted disk (CONFIG_BLK_DEV_WRITE_MOUNTED=n, 6.8+).
  EXPECT_TRUE(b.error().code() == EBUSY || b.error().code() == EPERM) << b.error().to_string();
  EXPECT_NE(std::string(b.error().detail()).find("/dev/" + target.filename().string()),
            std::string::npos);
}

// A network namespace owned by a fd only: a thread unshares, opens its own
// namespace and exits.
OwnedFd new_netns() {
  int fd = -1;
  std::thread t([&] {
    if (::unshare(CLONE_NEWNET) == 0) fd = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  });
  t.join();
  return OwnedFd(fd);
}

unsigned ifindex_in(int netns_fd, const std::string& name) {
  unsigned idx = 0;
  std::thread t([&] {
    if (::setns(netns_fd, CLONE_NEWNET) == 0) idx = ::if_nametoindex(name.c_str());
  });
  t.join();
  return idx;
}

TEST(NetDevice, MoveVethIntoNamespaceAndBack) {
  if (::geteuid() != 0) GTEST_SKIP() << "moving interfaces needs root";
  if (::access("/usr/sbin/ip", X_OK) != 0 && ::access("/sbin/ip", X_OK) != 0)
    GTEST_SKIP() << "iproute2 'ip' not installed (used only to create the test veth)";
  const std::string a = "mkb" + std::to_string(::getpid() % 100000) + "a";
  const std::string b = "mkb" + std::to_string(::getpid() % 100000) + "b";
  std::string add = "ip link add " + a + " type veth peer name " + b + " 2>&1";
  ASSERT_EQ(std::system(add.c_str()), 0);
  struct Cleanup {
    std::string a;
    ~Cleanup() { std::system(("ip link del " + a + " 2>/dev/null").c_str()); }
  } cleanup{a};

  OwnedFd ns = new_netns();
  ASSERT_TRUE(ns.valid());
  auto host = open_current_netns();
  ASSERT_TRUE(host) << host.error().to_string();
  ASSERT_NE(::if_nametoindex(a.c_str()), 0u);

  auto moved = move_link(a, ns.get());
  ASSERT_TRUE(moved) << moved.error().to_string();
  EXPECT_EQ(::if_nametoindex(a.c_str()), 0u);
  EXPECT_NE(ifindex_in(ns.get(), a), 0u);

  auto back = return_link(a, ns.get(), host->get());
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_NE(::if_nametoindex(a.c_str()), 0u);
  EXPECT_EQ(ifindex_in(ns.get(), a), 0u);

  // Unknown interface: ENODEV naming it.
  auto none = move_link("mkbnosuch0", ns.get());
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), ENODEV);
  EXPECT_NE(std::string(none.error().detail()).find("mkbnosuch0"), std::string::npos);
  auto bad = move_link("a/b", ns.get());
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), EINVAL);
}

TEST(NetDevice, OpenNetnsOfMissingPid) {
  auto r = open_netns(0x3fffffff);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ENOENT);
}

}  // namespace
}  // namespace mk
