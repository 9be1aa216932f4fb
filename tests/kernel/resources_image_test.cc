// Memory and device moves of a running mk-kernel, end to end (docs/sdk.md
// "Moving memory and devices"; kernel/image/resources.h): the harness plays
// the host (the fd message on the image's handover socket, then the
// request) and checks what is real afterwards: StatsMsg memory_bytes, the
// image's fds in /proc/PID/fd, RESP clients on the listen ports.
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/sockios.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "host_harness.h"
#include "resp_client.h"

namespace mk::test {
namespace {

using namespace std::chrono_literals;

constexpr std::uint32_t kMemory = 0, kNet = 1, kFile = 2, kListen = 3, kConsole = 0;
constexpr std::uint64_t kMiB = 1ull << 20;

abi::ResourceMsg msg(std::uint32_t op, std::uint32_t index, bool fd_sent, std::uint32_t kind, std::uint64_t size,
                     std::string_view props = "", std::string_view name = "") {
  abi::ResourceMsg m{};
  m.op_id = op;
  m.index = index;
  m.fd_sent = fd_sent ? 1 : 0;
  m.kind = kind;
  m.size = size;
  std::memcpy(m.name, name.data(), std::min(name.size(), sizeof m.name - 1));
  std::memcpy(m.properties, props.data(), std::min(props.size(), sizeof m.properties - 1));
  return m;
}

std::string detail(const abi::ResourceReply& r) { return std::string(r.detail, strnlen(r.detail, sizeof r.detail)); }

// A memfd of `bytes` (what the host's RegionFd is, without the NUMA binding).
int memfd_of(std::uint64_t bytes) {
  const int fd = ::memfd_create("mk-test-added-region", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(bytes)) != 0) return -1;
  return fd;
}

std::size_t fd_count(pid_t pid) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) ++n;
  return n;
}

// Whether fd `image_fd` of `pid` is the open file `ours` refers to (same
// device and inode).
bool holds(pid_t pid, int image_fd, int ours) {
  struct stat a {}, b {};
  if (::stat(("/proc/" + std::to_string(pid) + "/fd/" + std::to_string(image_fd)).c_str(), &a) != 0) return false;
  if (::fstat(ours, &b) != 0) return false;
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

// Bytes sent on `sock` its peer has not read yet.
int unread(int sock) {
  int n = -1;
  if (::ioctl(sock, SIOCOUTQ, &n) != 0) return -1;
  return n;
}

std::uint64_t memory_bytes(ImageRun& run) {
  auto st = run.request<abi::StatsMsg, abi::StatsMsg>(abi::kMsgStats, abi::StatsMsg{});
  EXPECT_TRUE(st.has_value());
  return st ? st->memory_bytes : 0;
}

// A listening TCP socket on 127.0.0.1, ephemeral port.
int listen_socket(std::uint16_t* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(fd, 128) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    return -1;
  }
  *port = ntohs(sa.sin_port);
  return fd;
}

std::string listen_props(std::uint16_t port) { return "address=127.0.0.1\nport=" + std::to_string(port) + "\n"; }

std::unique_ptr<ImageRun> launch(LaunchSpec spec) {
  auto r = ImageRun::launch(spec);
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().to_string());
  if (!r) return nullptr;
  EXPECT_TRUE((*r)->wait_ready()) << (*r)->stderr_text() << (*r)->console();
  return std::move(*r);
}

std::unique_ptr<ImageRun> launch_kv() {
  return launch(LaunchSpec{.args = {"--services=kv"}, .listen_device = true, .handover_socket = true});
}

void shutdown(ImageRun& run) {
  auto rep = run.request<abi::ShutdownMsg, abi::ShutdownReply>(abi::kMsgShutdown, abi::ShutdownMsg{500, 0});
  ASSERT_TRUE(rep.has_value()) << rep.error().to_string();
  auto st = run.wait_exit();
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << run.stderr_text() << run.console();
}

// Sends the fd message (when fd >= 0) and the request; the reply.
abi::ResourceReply move(ImageRun& run, std::uint16_t type, const abi::ResourceMsg& m, int fd = -1) {
  if (fd >= 0) {
    auto s = send_resource_fd(run.handover_fd(), m.op_id, m.index, m.kind, fd);
    EXPECT_TRUE(s.has_value()) << s.error().to_string();
  }
  auto r = run.resource_request(type, m);
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().to_string());
  if (!r) {
    abi::ResourceReply bad{};
    bad.status = -9999;
    return bad;
  }
  return *r;
}

TEST(ResourceMovesImage, MemoryAddMapsTheRegionReleaseGivesItBackBothIdempotent) {
  auto run = launch_kv();
  ASSERT_TRUE(run);
  const pid_t pid = run->pid();
  EXPECT_EQ(memory_bytes(*run), kRegionBytes);
  const std::size_t fds0 = fd_count(pid);

  // A stale fd message of a request that timed out (another op) comes
  // first: dropped, its fd closed; then the request's own.
  const int stale = memfd_of(8 * kMiB);
  const int region = memfd_of(8 * kMiB);
  ASSERT_GE(stale, 0);
  ASSERT_GE(region, 0);
  ASSERT_TRUE(send_resource_fd(run->handover_fd(), 50, 1, kMemory, stale));
  auto r = move(*run, abi::kMsgMemoryAdd, msg(1, 1, true, kMemory, 8 * kMiB), region);
  ASSERT_EQ(r.status, 0) << detail(r);
  EXPECT_EQ(r.changed, 1u);
  EXPECT_EQ(r.count, 2u);
  ASSERT_GE(r.fd, 0);
  const int held = r.fd;
  EXPECT_TRUE(holds(pid, held, region));
  EXPECT_EQ(fd_count(pid), fds0 + 1);  // the region's fd; the stale one was closed
  EXPECT_NE(run->console().find("dropped a message"), std::string::npos) << run->console();
  EXPECT_EQ(memory_bytes(*run), kRegionBytes + 8 * kMiB);
  EXPECT_EQ(unread(run->handover_fd()), 0);

  // Retried (the host restarted): nothing to do, the same fd; the one sent
  // again is closed.
  r = move(*run, abi::kMsgMemoryAdd, msg(2, 1, true, kMemory, 8 * kMiB), region);
  EXPECT_EQ(r.status, 0) << detail(r);
  EXPECT_EQ(r.changed, 0u);
  EXPECT_EQ(r.fd, held);
  EXPECT_EQ(r.count, 2u);
  EXPECT_EQ(fd_count(pid), fds0 + 1);

  // A region index past the next one.
  r = move(*run, abi::kMsgMemoryAdd, msg(3, 5, true, kMemory, 8 * kMiB), region);
  EXPECT_EQ(r.status, -EINVAL);
  EXPECT_NE(detail(r).find("next is /memory@2"), std::string::npos) << detail(r);
  // Index 1 again with another size.
  r = move(*run, abi::kMsgMemoryAdd, msg(4, 1, true, kMemory, 4 * kMiB), region);
  EXPECT_EQ(r.status, -EINVAL);
  EXPECT_NE(detail(r).find("held with"), std::string::npos) << detail(r);
  // A memfd smaller than the request's size: nothing changes.
  const int small = memfd_of(4 * kMiB);
  r = move(*run, abi::kMsgMemoryAdd, msg(5, 2, true, kMemory, 8 * kMiB), small);
  EXPECT_EQ(r.status, -EINVAL);
  EXPECT_NE(detail(r).find("holds 4194304 bytes"), std::string::npos) << detail(r);
  EXPECT_EQ(r.count, 2u);
  EXPECT_EQ(memory_bytes(*run), kRegionBytes + 8 * kMiB);
  EXPECT_EQ(fd_count(pid), fds0 + 1);
  // fd_sent but no fd message within the timeout (1 s).
  r = move(*run, abi::kMsgMemoryAdd, msg(6, 2, true, kMemory, 8 * kMiB));
  EXPECT_EQ(r.status, -ETIMEDOUT);
  EXPECT_NE(detail(r).find("op 6 index 2"), std::string::npos) << detail(r);
  // An fd message of this request without an fd.
  ASSERT_TRUE(send_resource_fd(run->handover_fd(), 7, 2, kMemory, -1));
  r = move(*run, abi::kMsgMemoryAdd, msg(7, 2, true, kMemory, 8 * kMiB));
  EXPECT_EQ(r.status, -EBADMSG) << detail(r);
  // No fd sent at all for a new region.
  r = move(*run, abi::kMsgMemoryAdd, msg(8, 2, false, kMemory, 8 * kMiB));
  EXPECT_EQ(r.status, -EINVAL);
  EXPECT_NE(detail(r).find("comes with its memfd"), std::string::npos) << detail(r);
  EXPECT_EQ(memory_bytes(*run), kRegionBytes + 8 * kMiB);
  EXPECT_EQ(fd_count(pid), fds0 + 1);

  // Release: not the last region, then the added one, then again.
  r = move(*run, abi::kMsgMemoryRelease, msg(9, 0, false, kMemory, kRegionBytes));
  EXPECT_EQ(r.status, -EINVAL);
  EXPECT_NE(detail(r).find("the last is /memory@1"), std::string::npos) << detail(r);
  r = move(*run, abi::kMsgMemoryRelease, msg(10, 1, false, kMemory, 8 * kMiB));
  EXPECT_EQ(r.status, 0) << detail(r);
  EXPECT_EQ(r.changed, 1u);
  EXPECT_EQ(r.count, 1u);
  EXPECT_EQ(memory_bytes(*run), kRegionBytes);
  EXPECT_FALSE(holds(pid, held, region));  // unmapped and closed
  EXPECT_EQ(fd_count(pid), fds0);
  r = move(*run, abi::kMsgMemoryRelease, msg(11, 1, false, kMemory, 8 * kMiB));
  EXPECT_EQ(r.status, 0) << detail(r);
  EXPECT_EQ(r.changed, 0u);
  EXPECT_EQ(r.count, 1u);
  // Region 0 holds the kv store.
  r = move(*run, abi::kMsgMemoryRelease, msg(12, 0, false, kMemory, kRegionBytes));
  EXPECT_EQ(r.status, -EBUSY);
  EXPECT_NE(detail(r).find("holds the kv store"), std::string::npos) << detail(r);
  EXPECT_EQ(memory_bytes(*run), kRegionBytes);

  // Added again after the release (the next index is 1 again), and the kv
  // service served all along.
  const int again = memfd_of(8 * kMiB);
  r = move(*run, abi::kMsgMemoryAdd, msg(13, 1, true, kMemory, 8 * kMiB), again);
  EXPECT_EQ(r.status, 0) << detail(r);
  EXPECT_EQ(r.changed, 1u);
  EXPECT_EQ(memory_bytes(*run), kRegionBytes + 8 * kMiB);
  Client c(run->listen_port());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c.cmd({"SET", "k", "v"}), "+OK");
  EXPECT_EQ(c.cmd({"GET", "k"}), "$v");
  for (int fd : {stale, region, small, again}) ::close(fd);
  shutdown(*run);
}

TEST(ResourceMovesImage, AListenDeviceIsServedAtOnceAndAReleasedOneStopsAcceptingItsConnectionsStay) {
  auto run = launch_kv();
  ASSERT_TRUE(run);
  const std::uint16_t p1 = run->listen_port();
  Client old_client(p1);  // accepted on the first listen device, stays
  ASSERT_TRUE(old_client.ok());
  ASSERT_EQ(old_client.cmd({"PING"}), "+PONG");

  std::uint16_t p2 = 0;
  const int l2 = listen_socket(&p2);
  ASSERT_GE(l2, 0);
  // devices: console 0, kv 1; the new one is 2 ("kv" is taken: kv-2).
  auto r = move(*run, abi::kMsgDeviceAdd, msg(1, 2, true, kListen, 0, listen_props(p2), "kv"), l2);
  ASSERT_EQ(r.status, 0) << detail(r);
  EXPECT_EQ(r.changed, 1u);
  EXPECT_EQ(r.count, 3u);
  ASSERT_GE(r.fd, 0);
  const int held = r.fd;
  EXPECT_TRUE(holds(run->pid(), held, l2));
  ::close(l2);  // the image's is the only one now
  EXPECT_NE(run->console().find("/devices/kv-2"), std::string::npos) << run->console();
  {
    Client c2(p2);
    ASSERT_TRUE(c2.ok());
    EXPECT_EQ(c2.cmd({"SET", "moved", "yes"}), "+OK");
    Client c1(p1);
    ASSERT_TRUE(c1.ok());
    EXPECT_EQ(c1.cmd({"GET", "moved"}), "$yes");
  }
  // Retried without an fd (the host knows the image has it): nothing to do.
  r = move(*run, abi::kMsgDeviceAdd, msg(2, 2, false, kListen, 0, listen_props(p2), "kv"));
  EXPECT_EQ(r.status, 0) << detail(r);
  EXPECT_EQ(r.changed, 0u);
  EXPECT_EQ(r.fd, held);
  EXPECT_EQ(r.count, 3u);

  // The first listen device goes: no new connection on its port, the one
  // accepted there stays, the second port serves on.
  r = move(*run, abi::kMsgDeviceRelease, msg(3, 1, false, kListen, 0, "port=" + std::to_string(p1) + "\n"));
  ASSERT_EQ(r.status, 0) << detail(r);
  EXPECT_EQ(r.changed, 1u);
  EXPECT_EQ(r.count, 2u);
  {
    Client refused(p1);
    EXPECT_FALSE(refused.ok());
  }
  EXPECT_EQ(old_client.cmd({"GET", "moved"}), "$yes");
  {
    Client c2(p2);
    ASSERT_TRUE(c2.ok());
    EXPECT_EQ(c2.cmd({"INCR", "n"}), ":1");
  }
  r = move(*run, abi::kMsgDeviceRelease, msg(4, 1, false, kListen, 0, "port=" + std::to_string(p1) + "\n"));
  EXPECT_EQ(r.status, 0) << detail(r);
  EXPECT_EQ(r.changed, 0u);

  // The kv service's last listen device, and the console: refused.
  r = move(*run, abi::kMsgDeviceRelease, msg(5, 1, false, kListen, 0, listen_props(p2)));
  EXPECT_EQ(r.status, -EBUSY);
  EXPECT_NE(detail(r).find("add another first"), std::string::npos) << detail(r);
  r = move(*run, abi::kMsgDeviceRelease, msg(6, 0, false, kConsole, 0));
  EXPECT_EQ(r.status, -EINVAL);
  EXPECT_NE(detail(r).find("console"), std::string::npos) << detail(r);
  {
    Client c2(p2);
    ASSERT_TRUE(c2.ok());
    EXPECT_EQ(c2.cmd({"GET", "n"}), "$1");
  }
  shutdown(*run);
}

TEST(ResourceMovesImage, FileAndNetDevicesComeAndGoAndBadRequestsChangeNothing) {
  auto run = launch(LaunchSpec{.handover_socket = true});
  ASSERT_TRUE(run);
  const pid_t pid = run->pid();
  const std::size_t fds0 = fd_count(pid);
  char path[] = "/tmp/mk-resources-test-XXXXXX";
  const int file = ::mkstemp(path);
  ASSERT_GE(file, 0);
  const std::string props = std::string("path=") + path + "\nro=1\n";

  auto r = move(*run, abi::kMsgDeviceAdd, msg(1, 1, true, kFile, 0, props, "data"), file);
  ASSERT_EQ(r.status, 0) << detail(r);
  EXPECT_EQ(r.changed, 1u);
  EXPECT_EQ(r.count, 2u);
  const int held = r.fd;
  EXPECT_TRUE(holds(pid, held, file));
  EXPECT_EQ(fd_count(pid), fds0 + 1);
  // Retried with its fd: the one sent again is closed.
  r = move(*run, abi::kMsgDeviceAdd, msg(2, 1, true, kFile, 0, props, "data"), file);
  EXPECT_EQ(r.status, 0) << detail(r);
  EXPECT_EQ(r.changed, 0u);
  EXPECT_EQ(r.fd, held);
  EXPECT_EQ(fd_count(pid), fds0 + 1);

  // A net interface comes without an fd.
  r = move(*run, abi::kMsgDeviceAdd, msg(3, 2, false, kNet, 0, "ifname=x\n", "eth"));
  ASSERT_EQ(r.status, 0) << detail(r);
  EXPECT_EQ(r.changed, 1u);
  EXPECT_EQ(r.fd, -1);
  EXPECT_EQ(r.count, 3u);
  r = move(*run, abi::kMsgDeviceAdd, msg(4, 2, false, kNet, 0, "ifname=x\n", "eth"));
  EXPECT_EQ(r.status, 0) << detail(r);
  EXPECT_EQ(r.changed, 0u);
  EXPECT_EQ(r.count, 3u);

  // Bad requests: malformed properties, none, an unknown kind, the
  // console, a file without its fd; each leaves 3 devices.
  r = move(*run, abi::kMsgDeviceAdd, msg(5, 3, false, kNet, 0, "ifname\n"));
  EXPECT_EQ(r.status, -EINVAL);
  EXPECT_NE(detail(r).find("not key=value"), std::string::npos) << detail(r);
  r = move(*run, abi::kMsgDeviceAdd, msg(6, 3, false, kNet, 0, "if name=y\n"));
  EXPECT_EQ(r.status, -EINVAL);
  r = move(*run, abi::kMsgDeviceAdd, msg(7, 3, false, kNet, 0, "a=1\na=2\n"));
  EXPECT_EQ(r.status, -EINVAL);
  EXPECT_NE(detail(r).find("given twice"), std::string::npos) << detail(r);
  r = move(*run, abi::kMsgDeviceAdd, msg(8, 3, false, kNet, 0, ""));
  EXPECT_EQ(r.status, -EINVAL);
  r = move(*run, abi::kMsgDeviceAdd, msg(9, 3, false, 7, 0, "a=1\n"));
  EXPECT_EQ(r.status, -EINVAL);
  r = move(*run, abi::kMsgDeviceAdd, msg(10, 3, false, kConsole, 0, "a=1\n"));
  EXPECT_EQ(r.status, -EINVAL);
  r = move(*run, abi::kMsgDeviceAdd, msg(11, 3, false, kFile, 0, "path=/nope\n"));
  EXPECT_EQ(r.status, -EINVAL);
  EXPECT_NE(detail(r).find("comes with its fd"), std::string::npos) << detail(r);
  // Malformed properties with an fd sent: the fd is read (and closed) all the same.
  r = move(*run, abi::kMsgDeviceAdd, msg(12, 3, true, kFile, 0, "path"), file);
  EXPECT_EQ(r.status, -EINVAL);
  EXPECT_EQ(r.count, 3u);
  EXPECT_EQ(unread(run->handover_fd()), 0);
  EXPECT_EQ(fd_count(pid), fds0 + 1);

  // Refused while a live update is prepared.
  auto prep = run->step(abi::kMsgUpdatePrepare);
  ASSERT_TRUE(prep.has_value());
  ASSERT_EQ(prep->status, 0) << prep->detail;
  r = move(*run, abi::kMsgDeviceRelease, msg(13, 1, false, kFile, 0, props));
  EXPECT_EQ(r.status, -EBUSY);
  EXPECT_NE(detail(r).find("live update"), std::string::npos) << detail(r);
  auto cancel = run->step(abi::kMsgUpdateCancel);
  ASSERT_TRUE(cancel.has_value());
  ASSERT_EQ(cancel->status, 0) << cancel->detail;

  // Released: the file's fd closes in the image; the net node goes; the
  // order of the rest is kept (the net device is found by its properties).
  r = move(*run, abi::kMsgDeviceRelease, msg(14, 1, false, kFile, 0, std::string("path=") + path + "\n"));
  ASSERT_EQ(r.status, 0) << detail(r);
  EXPECT_EQ(r.changed, 1u);
  EXPECT_EQ(r.count, 2u);
  EXPECT_FALSE(holds(pid, held, file));
  EXPECT_EQ(fd_count(pid), fds0);
  r = move(*run, abi::kMsgDeviceRelease, msg(15, 1, false, kFile, 0, std::string("path=") + path + "\n"));
  EXPECT_EQ(r.status, 0) << detail(r);
  EXPECT_EQ(r.changed, 0u);
  r = move(*run, abi::kMsgDeviceRelease, msg(16, 1, false, kNet, 0, "ifname=x\n"));
  EXPECT_EQ(r.status, 0) << detail(r);
  EXPECT_EQ(r.changed, 1u);
  EXPECT_EQ(r.count, 1u);
  r = move(*run, abi::kMsgDeviceRelease, msg(17, 1, false, kNet, 0, "ifname=x\n"));
  EXPECT_EQ(r.changed, 0u);
  ::close(file);
  ::unlink(path);
  shutdown(*run);
}

TEST(ResourceMovesImage, AParkedSuccessorRefusesButReadsTheFdFirst) {
  auto run = launch(LaunchSpec{.successor = true});
  ASSERT_TRUE(run);
  const std::size_t fds0 = fd_count(run->pid());
  const int region = memfd_of(8 * kMiB);
  auto r = move(*run, abi::kMsgMemoryAdd, msg(1, 1, true, kMemory, 8 * kMiB), region);
  EXPECT_EQ(r.status, -EBUSY);
  EXPECT_NE(detail(r).find("parked"), std::string::npos) << detail(r);
  EXPECT_EQ(r.count, 1u);
  EXPECT_EQ(unread(run->handover_fd()), 0);  // read, not left for the next request
  EXPECT_EQ(fd_count(run->pid()), fds0);     // and closed
  r = move(*run, abi::kMsgDeviceRelease, msg(2, 0, false, kConsole, 0));
  EXPECT_EQ(r.status, -EBUSY);
  ::close(region);
}

TEST(ResourceMovesImage, AnImageWithoutTheCallbackAnswersNotSupported) {
  auto run = launch(LaunchSpec{.image = "mk-hello"});
  ASSERT_TRUE(run);
  auto r = run->resource_request(abi::kMsgDeviceAdd, msg(1, 1, false, kNet, 0, "ifname=x\n"));
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->status, -EOPNOTSUPP);
  EXPECT_EQ(r->fd, -1);
}

}  // namespace
}  // namespace mk::test
