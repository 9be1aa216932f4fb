// The host side of a live update without an image that speaks the update
// protocol: the handoff package checks (every corruption the old image could
// write), the socket protocol to the successor (chunks, SCM_RIGHTS), a
// confined spawn that joins another process's namespaces, and
// boot_successor() next to a running /bin/sleep "image" (same namespaces,
// cgroup, CPUs, regions, console; a handover socket).
#include "mkernel/live_update.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "handover/kho_blob.h"
#include "mk/units.h"
#include "mkernel/confine.h"
#include "free_cpus.h"

namespace mk {
namespace {

using namespace std::chrono_literals;

std::vector<uint8_t> kho_blob() {
  handover::KhoBlob b;
  b.memory = {{0, 0, 8192}, {0, 16384, 4096}};
  auto bytes = handover::emit_kho_blob(b);
  EXPECT_TRUE(bytes) << bytes.error().to_string();
  return bytes ? *bytes : std::vector<uint8_t>{};
}

std::vector<uint8_t> package(const std::vector<int32_t>& fds, const std::vector<uint8_t>& blob, uint32_t id) {
  abi::HandoffHeader h{};
  std::memcpy(h.magic, abi::kHandoffMagic, sizeof h.magic);
  h.version = abi::kHandoffVersion;
  h.fd_count = static_cast<uint32_t>(fds.size());
  h.blob_bytes = blob.size();
  h.update_id = id;
  std::vector<uint8_t> out(abi::handoff_size(h.fd_count, h.blob_bytes), 0);
  std::memcpy(out.data(), &h, sizeof h);
  if (!fds.empty()) std::memcpy(out.data() + sizeof h, fds.data(), 4 * fds.size());
  std::memcpy(out.data() + abi::handoff_blob_offset(h.fd_count), blob.data(), blob.size());
  return out;
}

abi::HandoffHeader& header_of(std::vector<uint8_t>& p) { return *reinterpret_cast<abi::HandoffHeader*>(p.data()); }

OwnedFd memfd_with(const std::vector<uint8_t>& bytes) {
  OwnedFd fd(::memfd_create("test-package", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  EXPECT_TRUE(fd);
  EXPECT_EQ(::write(fd.get(), bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  return fd;
}

TEST(HandoffPackage, AValidPackageParses) {
  auto blob = kho_blob();
  auto bytes = package({5, 9, 12}, blob, 7);
  auto p = parse_handoff_package(bytes, 7);
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_EQ(p->source_fds, (std::vector<int32_t>{5, 9, 12}));
  EXPECT_EQ(p->header.blob_bytes, blob.size());
  EXPECT_TRUE(std::equal(blob.begin(), blob.end(), p->blob().begin(), p->blob().end()));
  // No fds: the blob follows the header directly.
  auto none = parse_handoff_package(package({}, blob, 1), 1);
  ASSERT_TRUE(none) << none.error().to_string();
  EXPECT_TRUE(none->source_fds.empty());
  // Read back from a memfd, as from the old image.
  OwnedFd fd = memfd_with(bytes);
  auto r = read_handoff_package(fd.get(), 7);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->bytes, bytes);
}

TEST(HandoffPackage, EveryCorruptionIsRefusedWithItsCode) {
  const auto blob = kho_blob();
  const auto good = package({5, 9}, blob, 3);
  struct Case {
    const char* what;
    std::function<void(std::vector<uint8_t>&)> mutate;
    int code;
    uint32_t id = 3;
  };
  const std::vector<Case> cases = {
      {"shorter than a header", [](auto& p) { p.resize(20); }, EBADMSG},
      {"empty", [](auto& p) { p.clear(); }, EBADMSG},
      {"magic", [](auto& p) { header_of(p).magic[2] = 'X'; }, EBADMSG},
      {"version", [](auto& p) { header_of(p).version = 2; }, EPROTONOSUPPORT},
      {"reserved", [](auto& p) { header_of(p).reserved = 1; }, EBADMSG},
      {"too many fds", [](auto& p) { header_of(p).fd_count = abi::kMaxHandoffFds + 1; }, E2BIG},
      {"empty blob", [](auto& p) { header_of(p).blob_bytes = 0; }, EBADMSG},
      {"blob above the cap", [](auto& p) { header_of(p).blob_bytes = abi::kMaxHandoffBlobBytes + 1; }, E2BIG},
      {"one byte too many", [](auto& p) { p.push_back(0); }, EBADMSG},
      {"one byte short", [](auto& p) { p.pop_back(); }, EBADMSG},
      {"fd count larger than the package", [](auto& p) { header_of(p).fd_count = 3; }, EBADMSG},
      {"blob size larger than the package", [](auto& p) { header_of(p).blob_bytes += 8; }, EBADMSG},
      {"negative fd number",
       [](auto& p) {
         int32_t bad = -1;
         std::memcpy(p.data() + sizeof(abi::HandoffHeader), &bad, 4);
       },
       EBADMSG},
      {"fd number above 65535",
       [](auto& p) {
         int32_t bad = 70000;
         std::memcpy(p.data() + sizeof(abi::HandoffHeader) + 4, &bad, 4);
       },
       EBADMSG},
      {"another update's package", [](auto&) {}, EBADMSG, 4},
  };
  for (const auto& c : cases) {
    auto bytes = good;
    c.mutate(bytes);
    auto p = parse_handoff_package(bytes, c.id);
    ASSERT_FALSE(p) << c.what;
    EXPECT_EQ(p.error().code(), c.code) << c.what << ": " << p.error().to_string();
    EXPECT_NE(std::string(p.error().detail()), "") << c.what;
  }
}

TEST(HandoffPackage, AHugeMemfdIsRefusedBeforeReading) {
  OwnedFd fd(::memfd_create("test-huge", MFD_CLOEXEC));
  ASSERT_TRUE(fd);
  const uint64_t cap = abi::handoff_size(abi::kMaxHandoffFds, abi::kMaxHandoffBlobBytes);
  ASSERT_EQ(::ftruncate(fd.get(), static_cast<off_t>(cap + 1)), 0);
  auto p = read_handoff_package(fd.get(), 1);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code(), E2BIG) << p.error().to_string();
}

TEST(HandoffPackage, CorruptedCopyLeavesTheSourceAndIsRefusedByTheBlobParser) {
  auto bytes = package({4}, kho_blob(), 9);
  OwnedFd src = memfd_with(bytes);
  auto p = read_handoff_package(src.get(), 9);
  ASSERT_TRUE(p) << p.error().to_string();
  auto copy = corrupted_package_copy(*p);
  ASSERT_TRUE(copy) << copy.error().to_string();
  // The source memfd is unchanged.
  auto again = read_handoff_package(src.get(), 9);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->bytes, bytes);
  // The copy: same header and fds (the successor reads them), a blob that
  // no longer parses, and sealed.
  auto c = read_handoff_package(copy->get(), 9);
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->source_fds, p->source_fds);
  EXPECT_NE(c->bytes, bytes);
  auto parsed = handover::parse_kho_blob(c->blob());
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error().code(), EBADMSG) << parsed.error().to_string();
  EXPECT_TRUE(handover::parse_kho_blob(p->blob()));
  int seals = ::fcntl(copy->get(), F_GET_SEALS);
  EXPECT_TRUE(seals & F_SEAL_WRITE);
  EXPECT_NE(::write(copy->get(), "x", 1), 1);
}

// One received SEQPACKET message: its chunk header and its fds.
struct Received {
  abi::HandoffChunk chunk{};
  ssize_t bytes = -1;
  std::vector<OwnedFd> fds;
};

Received receive(int sock) {
  Received r;
  iovec iov{&r.chunk, sizeof r.chunk};
  std::vector<char> ctl(CMSG_SPACE(sizeof(int) * 253));
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl.data();
  mh.msg_controllen = ctl.size();
  r.bytes = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < n; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      r.fds.emplace_back(fd);
    }
  }
  return r;
}

ino_t inode_of(int fd) {
  struct stat st{};
  return ::fstat(fd, &st) == 0 ? st.st_ino : 0;
}

TEST(HandoffSocket, PackageFirstThenFdsInChunksInOrder) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  OwnedFd host(sv[0]), image(sv[1]);
  // Room for everything in flight (4 messages, 601 fds).
  int big = 4 << 20;
  ::setsockopt(host.get(), SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  ::setsockopt(image.get(), SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  OwnedFd pkg = memfd_with(package({}, kho_blob(), 1));
  // 600 distinct files, so order is checkable by inode.
  std::vector<OwnedFd> owned;
  std::vector<int> fds;
  for (int i = 0; i < 600; ++i) {
    owned.emplace_back(::memfd_create("test-fd", MFD_CLOEXEC));
    ASSERT_TRUE(owned.back());
    fds.push_back(owned.back().get());
  }
  auto sent = send_handoff(host.get(), pkg.get(), fds);
  ASSERT_TRUE(sent) << sent.error().to_string();
  Received m0 = receive(image.get());
  ASSERT_EQ(m0.bytes, static_cast<ssize_t>(sizeof(abi::HandoffChunk)));
  EXPECT_EQ(m0.chunk.first, 0u);
  EXPECT_EQ(m0.chunk.count, 1u);
  ASSERT_EQ(m0.fds.size(), 1u);
  EXPECT_EQ(inode_of(m0.fds[0].get()), inode_of(pkg.get()));
  std::size_t next = 0;
  const uint32_t sizes[] = {250, 250, 100};
  for (uint32_t want : sizes) {
    Received m = receive(image.get());
    ASSERT_EQ(m.bytes, static_cast<ssize_t>(sizeof(abi::HandoffChunk)));
    EXPECT_EQ(m.chunk.first, next);
    EXPECT_EQ(m.chunk.count, want);
    ASSERT_EQ(m.fds.size(), want);
    for (std::size_t i = 0; i < want; ++i)
      EXPECT_EQ(inode_of(m.fds[i].get()), inode_of(fds[next + i])) << "fd index " << next + i;
    next += want;
  }
  EXPECT_EQ(receive(image.get()).bytes, -1);  // nothing more
}

TEST(HandoffSocket, NoFdsIsThePackageAloneAndAClosedPeerIsEpipe) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  OwnedFd host(sv[0]), image(sv[1]);
  OwnedFd pkg = memfd_with(package({}, kho_blob(), 1));
  ASSERT_TRUE(send_handoff(host.get(), pkg.get(), {}));
  Received m0 = receive(image.get());
  EXPECT_EQ(m0.fds.size(), 1u);
  EXPECT_EQ(receive(image.get()).bytes, -1);
  image.reset();
  auto r = send_handoff(host.get(), pkg.get(), {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), EPIPE) << r.error().to_string();
}

std::string ns_link(pid_t pid, const char* ns) {
  char buf[128] = {};
  std::string p = "/proc/" + std::to_string(pid) + "/ns/" + ns;
  ssize_t n = ::readlink(p.c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string("?");
}

std::string status_line(pid_t pid, const char* key) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind(key, 0) == 0) return line.substr(line.find_first_not_of(" \t", std::strlen(key)));
  return "?";
}

std::string file_text(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

uint32_t some_cpu() {
  cpu_set_t s;
  CPU_ZERO(&s);
  ::sched_getaffinity(0, sizeof s, &s);
  uint32_t last = 0;
  for (uint32_t i = 0; i < CPU_SETSIZE; ++i)
    if (CPU_ISSET(i, &s)) last = i;
  return last;
}

Result<SpawnedProcess> spawn_sleep(const SpawnOptions& so, OwnedFd& devnull) {
  ConfineSpec spec;
  spec.cpus = CpuSet::of({some_cpu()});
  spec.hostname = "lu-test";
  spec.fds = {{devnull.get(), 0}, {devnull.get(), 1}, {devnull.get(), 2}};
  MK_TRY_ASSIGN(ConfinePlan plan, make_confine_plan(spec));
  return spawn_confined(plan, {"/bin/sleep", "100"}, {"PATH=/bin:/usr/bin"}, so);
}

void kill_and_reap(const SpawnedProcess& p, int* status) {
  ::kill(p.pid, SIGKILL);
  while (::waitpid(p.pid, status, 0) < 0 && errno == EINTR) {
  }
}

TEST(JoinNamespaces, ASpawnJoinsAnotherProcessesNamespacesAndStaysOurChild) {
  if (::geteuid() != 0) GTEST_SKIP() << "joining namespaces needs root";
  OwnedFd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
  SpawnOptions holder_opts;
  holder_opts.namespaces = true;
  holder_opts.net_namespace = true;
  holder_opts.fallback_without_namespaces = false;
  auto holder = spawn_sleep(holder_opts, devnull);
  if (!holder && holder.error().code() == EPERM) GTEST_SKIP() << "namespaces refused: " << holder.error().to_string();
  ASSERT_TRUE(holder) << holder.error().to_string();
  const std::string own_pid_ns = ns_link(::getpid(), "pid");

  SpawnOptions so;
  so.namespaces = false;
  so.join_pid_ns = holder->pidfd.get();
  so.join.push_back({holder->pidfd.get(), CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET});
  auto joiner = spawn_sleep(so, devnull);
  ASSERT_TRUE(joiner) << joiner.error().to_string();
  for (const char* ns : {"pid", "mnt", "uts", "ipc", "net"}) {
    EXPECT_EQ(ns_link(joiner->pid, ns), ns_link(holder->pid, ns)) << ns;
    EXPECT_NE(ns_link(joiner->pid, ns), ns_link(::getpid(), ns)) << ns;
  }
  // Inside the holder's PID namespace, but not its init.
  std::string nspid = status_line(joiner->pid, "NSpid:");
  EXPECT_EQ(nspid.rfind(std::to_string(joiner->pid) + "\t", 0), 0u) << nspid;
  EXPECT_NE(nspid.substr(nspid.find('\t') + 1), "1") << nspid;
  EXPECT_EQ(status_line(holder->pid, "NSpid:").substr(status_line(holder->pid, "NSpid:").find('\t') + 1), "1");
  // This thread's children go to our own namespace again.
  EXPECT_EQ(ns_link(static_cast<pid_t>(::syscall(SYS_gettid)), "pid_for_children"), own_pid_ns);
  bool joined = false;
  for (const auto& g : joiner->guarantees) joined |= g.name == "pidns" && g.in_force && g.detail.find("joined") != std::string::npos;
  EXPECT_TRUE(joined);
  // Our child: a wait status.
  int status = 0;
  kill_and_reap(*joiner, &status);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  kill_and_reap(*holder, &status);
}

TEST(JoinNamespaces, AJoinThatTheKernelRefusesIsTheChildsSetnsStep) {
  if (::geteuid() != 0) GTEST_SKIP() << "joining namespaces needs root";
  OwnedFd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
  SpawnOptions so;
  so.namespaces = false;
  // /dev/null is no namespace: setns fails in the child, never silently.
  so.join.push_back({devnull.get(), CLONE_NEWNET});
  auto r = spawn_sleep(so, devnull);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), EINVAL) << r.error().to_string();
  EXPECT_NE(std::string(r.error().detail()).find("setns"), std::string::npos) << r.error().to_string();
  SpawnOptions bad_pid;
  bad_pid.namespaces = false;
  bad_pid.join_pid_ns = devnull.get();
  auto r2 = spawn_sleep(bad_pid, devnull);
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.error().code(), EINVAL) << r2.error().to_string();
}

std::string fd_target(pid_t pid, int fd) {
  char buf[256] = {};
  std::string p = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
  ssize_t n = ::readlink(p.c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string("closed");
}

ino_t fd_inode(pid_t pid, int fd) {
  struct stat st{};
  std::string p = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
  return ::stat(p.c_str(), &st) == 0 ? st.st_ino : 0;
}

class SuccessorBoot : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = load_topology_live();
    ASSERT_TRUE(t) << t.error().to_string();
    topo = *t;
    req.instance.id = 9;
    req.instance.name = "lu-succ-" + std::to_string(::getpid());
    auto free = test::free_cpus(topo);
    req.instance.cpus = CpuSet::of({free.empty() ? topo.pus.back().os_index : free.front()});
    req.instance.memory = {{topo.numa_nodes.front().os_index, 4 * kMiB}};
    req.instance.devices = {*DeviceSpec::parse("listen:127.0.0.1:" + std::to_string(20000 + ::getpid() % 20000))};
    // A stand-in image that never speaks IPI: only the process matters here.
    req.image.path = "/bin/sleep";
    req.image.cmdline = "1000";
  }
  Topology topo;
  BootRequest req;
};

TEST_F(SuccessorBoot, SharesNamespacesCgroupCpusRegionsAndConsoleAndGetsAHandoverSocket) {
  auto old = boot_instance(topo, req);
  ASSERT_TRUE(old) << old.error().to_string();
  RunningInstance& o = **old;
  auto cw = ::syscall(SYS_pidfd_getfd, o.pidfd(), console_fd_of(req.instance), 0);
  ASSERT_GE(cw, 0) << std::strerror(errno);
  OwnedFd console_write(static_cast<int>(cw));
  SuccessorRequest sr;
  sr.image = req.image;
  sr.root = req.root;
  sr.console_write_fd = console_write.get();
  sr.ns_pidfd = o.pidfd();
  sr.ns_pid = o.pid();
  auto s = boot_successor(topo, o, sr);
  ASSERT_TRUE(s) << s.error().to_string();
  RunningInstance& n = *s->run;
  ASSERT_GT(n.pid(), 0);
  EXPECT_NE(n.pid(), o.pid());
  EXPECT_TRUE(n.is_child());
  for (const char* ns : {"pid", "mnt", "uts", "ipc", "net"}) EXPECT_EQ(ns_link(n.pid(), ns), ns_link(o.pid(), ns)) << ns;
  if (::geteuid() == 0) {
    EXPECT_NE(ns_link(n.pid(), "pid"), ns_link(::getpid(), "pid"));
    // The old image is PID 1 there; the successor is not.
    std::string nspid = status_line(n.pid(), "NSpid:");
    EXPECT_NE(nspid.substr(nspid.find('\t') + 1), "1") << nspid;
  }
  EXPECT_EQ(file_text("/proc/" + std::to_string(n.pid()) + "/cgroup"),
            file_text("/proc/" + std::to_string(o.pid()) + "/cgroup"));
  EXPECT_EQ(status_line(n.pid(), "Cpus_allowed_list:"), req.instance.cpus.to_string());
  // The same region memfd, console pipe (both ends); a new host channel.
  const RuntimeRecord& nr = n.record();
  const RuntimeRecord& orec = o.record();
  ASSERT_EQ(nr.region_fds.size(), 1u);
  EXPECT_EQ(fd_inode(n.pid(), nr.region_fds[0]), fd_inode(o.pid(), orec.region_fds[0]));
  EXPECT_EQ(fd_inode(n.pid(), console_fd_of(req.instance)), fd_inode(o.pid(), console_fd_of(req.instance)));
  EXPECT_EQ(fd_inode(n.pid(), 1), fd_inode(o.pid(), 1));
  EXPECT_EQ(fd_inode(n.pid(), nr.console_host_fd), fd_inode(o.pid(), orec.console_host_fd));
  EXPECT_NE(fd_inode(n.pid(), nr.host_channel_fd), fd_inode(o.pid(), orec.host_channel_fd));
  // The listen device is not passed (it comes in the package): the old
  // image has it right after the console, the successor its host channel.
  EXPECT_EQ(fd_target(o.pid(), console_fd_of(req.instance) + 1).rfind("socket:", 0), 0u);
  EXPECT_EQ(nr.host_channel_fd, console_fd_of(req.instance) + 1);
  EXPECT_EQ(orec.host_channel_fd, console_fd_of(req.instance) + 2);
  // The handover socket and the copy of the host's end are last, after
  // the console's host end: one socket pair; the host holds the other end.
  const int hs = nr.console_host_fd + 1;
  EXPECT_EQ(nr.handover_host_fd, hs + 1);
  EXPECT_EQ(fd_target(n.pid(), hs).rfind("socket:", 0), 0u) << fd_target(n.pid(), hs);
  EXPECT_EQ(fd_target(n.pid(), hs + 1).rfind("socket:", 0), 0u) << fd_target(n.pid(), hs + 1);
  ASSERT_GE(s->run->handover_socket(), 0);
  EXPECT_EQ(fd_inode(n.pid(), hs + 1), fd_inode(::getpid(), s->run->handover_socket()));
  // Nothing after it (polled: the dynamic loader of /bin/sleep may still
  // hold /etc/ld.so.cache at that number for a moment).
  std::string after = fd_target(n.pid(), hs + 2);
  for (int i = 0; i < 200 && after != "closed"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    after = fd_target(n.pid(), hs + 2);
  }
  EXPECT_EQ(after, "closed");
  // The old image has a handover socket of its own (a staged update hands
  // state back to it), a different one.
  EXPECT_GE(o.handover_socket(), 0);
  EXPECT_EQ(fd_target(o.pid(), orec.handover_host_fd - 1).rfind("socket:", 0), 0u);
  EXPECT_NE(fd_inode(o.pid(), orec.handover_host_fd), fd_inode(n.pid(), nr.handover_host_fd));

  n.kill();
  EXPECT_TRUE(n.exited());
  EXPECT_EQ(::kill(o.pid(), 0), 0) << "killing the successor took the old image";
  s->run.reset();  // owns none of the shared resources: nothing released
  EXPECT_EQ(fd_inode(o.pid(), orec.region_fds[0]) != 0, true);
  o.kill();
  auto rel = o.release();
  EXPECT_TRUE(rel) << rel.error().to_string();
}

TEST_F(SuccessorBoot, WithoutAConsoleOrRegionsThereIsNothingToBootOn) {
  auto old = boot_instance(topo, req);
  ASSERT_TRUE(old) << old.error().to_string();
  SuccessorRequest sr;
  sr.image = req.image;
  sr.root = req.root;
  sr.console_write_fd = -1;
  auto s = boot_successor(topo, **old, sr);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ENOTCONN) << s.error().to_string();
  (*old)->kill();
  EXPECT_TRUE((*old)->release());
}

}  // namespace
}  // namespace mk
