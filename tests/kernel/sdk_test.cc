// Unit tests of the mksdk components (boot info, per-CPU loops, regions,
// devices, tenants), in-process.
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include <gtest/gtest.h>

#include <signal.h>

#include "host_harness.h"
#include "mk/abi/control_messages.h"
#include "mksdk/boot_info.h"
#include "mksdk/devices.h"
#include "mksdk/percpu.h"
#include "mksdk/regions.h"
#include "mksdk/tenants.h"

namespace mk::sdk {
namespace {

using namespace std::chrono_literals;

int memfd_with(const std::vector<std::uint8_t>& bytes) {
  int fd = ::memfd_create("t", MFD_CLOEXEC);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  return fd;
}

BootTree minimal_tree(int region_fd, int console_fd, int chan_fd) {
  BootTree t;
  t.instance = {3, "u"};
  t.cpus = {BootCpu{0, 0, 0, 0, -1, -1}};
  t.memory = {BootMemory{0, 1 << 20, 0, region_fd, 0}};
  t.devices = {BootDevice{"console", DeviceKind::kConsole, console_fd, {}}};
  t.ipi.channels = {IpiChannel{0, "host", chan_fd, 64 * 64, ChannelRole::kBidirectional}};
  return t;
}

TEST(BootInfo, ReadsAndParsesATree) {
  int nul = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  auto blob = emit_boot_tree(minimal_tree(nul, nul, nul));
  ASSERT_TRUE(blob.has_value());
  int fd = memfd_with(*blob);
  auto t = read_boot_tree(fd);
  ASSERT_TRUE(t.has_value()) << t.error().to_string();
  EXPECT_EQ(t->instance.id, 3u);
  ::close(fd);
  ::close(nul);
}

TEST(BootInfo, RejectsMissingEmptyGarbageAndOversizedBlobs) {
  EXPECT_EQ(read_boot_tree(1000).error().code(), EBADF);
  int empty = memfd_with({});
  EXPECT_EQ(read_boot_tree(empty).error().code(), EBADMSG);
  int garbage = memfd_with(std::vector<std::uint8_t>(256, 0x41));
  EXPECT_EQ(read_boot_tree(garbage).error().code(), EBADMSG);
  int big = ::memfd_create("big", MFD_CLOEXEC);
  ASSERT_EQ(::ftruncate(big, static_cast<off_t>(abi::kMaxTreeBytes + 1)), 0);
  EXPECT_EQ(read_boot_tree(big).error().code(), E2BIG);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  EXPECT_EQ(read_boot_tree(p[0]).error().code(), EBADF);  // not a memfd
  for (int fd : {empty, garbage, big, p[0], p[1]}) ::close(fd);
}

TEST(BootInfo, CheckBootFdsNamesTheMissingFdAndSetsCloexec) {
  int a = ::open("/dev/null", O_RDWR);  // no CLOEXEC, as after exec
  int base = ::open("/dev/null", O_RDWR);
  int b = ::dup(base), c = ::dup(base);  // the channel's three fds: base, base+1, base+2?
  (void)b;
  (void)c;
  BootTree t = minimal_tree(a, a, base);
  // The channel needs base, base+1 and base+2 open.
  const bool contiguous = (b == base + 1 && c == base + 2);
  if (contiguous) {
    ASSERT_TRUE(check_boot_fds(t, a).has_value());
    EXPECT_TRUE(::fcntl(a, F_GETFD) & FD_CLOEXEC);
    EXPECT_TRUE(::fcntl(base + 2, F_GETFD) & FD_CLOEXEC);
  }
  ::close(c);
  ::close(base + 2);
  auto r = check_boot_fds(t, a);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), EBADF);
  EXPECT_NE(std::string(r.error().detail()).find("/ipi/channel@0"), std::string::npos) << r.error().detail();
  t.memory[0].fd = 999;
  r = check_boot_fds(t, a);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(std::string(r.error().detail()).find("/memory@0 lists fd 999"), std::string::npos);
  for (int fd : {a, base, b}) ::close(fd);
}

TEST(BootInfo, ChannelFdsFollowTheMemfd) {
  IpiChannel ch;
  ch.fd = 10;
  EXPECT_EQ(channel_fds(ch), (std::vector<int>{10, 11, 12}));
}

TEST(PerCpu, PinsEachLoopToExactlyItsCpuAndRunsWork) {
  const std::uint32_t cpu = test::instance_cpu();
  std::vector<BootCpu> cpus = {BootCpu{cpu, cpu, 0, 0, -1, -1}};
  auto loops = PerCpu::start(cpus, PerCpuOptions{1ms});
  ASSERT_TRUE(loops.has_value()) << loops.error().to_string();
  std::atomic<int> seen_cpu{-1}, allowed{-1};
  std::atomic<bool> done{false};
  ASSERT_TRUE((*loops)->post(0, [&] {
    cpu_set_t set;
    CPU_ZERO(&set);
    pthread_getaffinity_np(pthread_self(), sizeof set, &set);
    allowed.store(CPU_COUNT(&set) == 1 && CPU_ISSET(cpu, &set) ? 1 : 0);
    seen_cpu.store(sched_getcpu());
    done.store(true);
  }).has_value());
  while (!done.load()) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(allowed.load(), 1);
  EXPECT_EQ(seen_cpu.load(), static_cast<int>(cpu));
  EXPECT_EQ((*loops)->cpu_of(0), cpu);
  while ((*loops)->iterations() == 0) std::this_thread::sleep_for(1ms);
  EXPECT_EQ((*loops)->post(1, [] {}).error().code(), EINVAL);
  (*loops)->stop();
  EXPECT_EQ((*loops)->post(0, [] {}).error().code(), ESHUTDOWN);
}

TEST(PerCpu, RejectsNoCpusAndCpusWeMayNotUse) {
  EXPECT_EQ(PerCpu::start({}).error().code(), EINVAL);
  std::vector<BootCpu> huge = {BootCpu{CPU_SETSIZE + 1, 0, 0, 0, -1, -1}};
  EXPECT_EQ(PerCpu::start(huge).error().code(), EINVAL);
  std::vector<BootCpu> absent = {BootCpu{1000, 0, 0, 0, -1, -1}};  // no such CPU here
  EXPECT_EQ(PerCpu::start(absent).error().code(), EINVAL);
}

class RegionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fd_ = ::memfd_create("r", MFD_CLOEXEC);
    ASSERT_EQ(::ftruncate(fd_, 64 * 4096), 0);
  }
  void TearDown() override { ::close(fd_); }
  int fd_ = -1;
};

// Regions added and removed while running (mkctl update --memory): only at
// the end, never the only one, never one with pages in use.
TEST_F(RegionsTest, AddsAndRemovesTheLastRegionWithConsent) {
  std::vector<BootMemory> mem = {BootMemory{0, 64 * 4096, 0, fd_, 0}};
  auto r = Regions::map(mem);
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  auto& reg = **r;
  EXPECT_EQ(reg.remove_last(0).error().code(), EBUSY);  // the only region
  const int fd2 = ::memfd_create("r2", MFD_CLOEXEC);
  ASSERT_EQ(::ftruncate(fd2, 16 * 4096), 0);
  EXPECT_EQ(reg.add(BootMemory{2, 16 * 4096, 0, fd2, 0}).error().code(), EINVAL);   // not the next index
  EXPECT_EQ(reg.add(BootMemory{1, 32 * 4096, 0, fd2, 0}).error().code(), EINVAL);   // memfd too small
  EXPECT_EQ(reg.add(BootMemory{1, 100, 0, fd2, 0}).error().code(), EINVAL);         // not pages
  EXPECT_EQ(reg.count(), 1u);
  ASSERT_TRUE(reg.add(BootMemory{1, 16 * 4096, 0, fd2, 0}).has_value());
  EXPECT_EQ(reg.count(), 2u);
  EXPECT_EQ(reg.total_bytes(), 80u * 4096);
  auto big = reg.alloc(64);  // fills region 0
  ASSERT_TRUE(big.has_value());
  auto in1 = reg.alloc(4);   // lands in region 1
  ASSERT_TRUE(in1.has_value());
  EXPECT_EQ(in1->region, 1u);
  std::memcpy(reg.at(*in1), "r1", 2);
  char buf[2];
  ASSERT_EQ(::pread(fd2, buf, 2, 0), 2);
  EXPECT_EQ(std::memcmp(buf, "r1", 2), 0);
  auto busy = reg.remove_last(1);
  ASSERT_FALSE(busy.has_value());
  EXPECT_EQ(busy.error().code(), EBUSY);
  EXPECT_NE(std::string(busy.error().message()).find("4 page(s)"), std::string::npos) << busy.error().to_string();
  EXPECT_EQ(reg.remove_last(0).error().code(), EINVAL);  // not the last
  ASSERT_TRUE(reg.release(*in1).has_value());
  ASSERT_TRUE(reg.remove_last(1).has_value());
  EXPECT_EQ(reg.count(), 1u);
  EXPECT_EQ(reg.total_bytes(), 64u * 4096);
  EXPECT_EQ(reg.alloc(1).error().code(), ENOMEM);  // region 0 is still full
  ::close(fd2);
}

TEST_F(RegionsTest, AllocatesByOffsetAndAccounts) {
  std::vector<BootMemory> mem = {BootMemory{0, 64 * 4096, 0, fd_, 0}};
  auto r = Regions::map(mem);
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  auto& reg = **r;
  EXPECT_EQ(reg.total_bytes(), 64u * 4096);
  EXPECT_EQ(reg.used_bytes(), 0u);
  auto a = reg.alloc(10);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->offset, 0u);
  auto b = reg.alloc(54);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->offset, 10u * 4096);
  EXPECT_EQ(reg.used_bytes(), 64u * 4096);
  EXPECT_EQ(reg.alloc(1).error().code(), ENOMEM);
  // Shared mapping: what we write is in the memfd at that offset.
  std::memcpy(reg.at(*b), "mk", 2);
  char buf[2];
  ASSERT_EQ(::pread(fd_, buf, 2, static_cast<off_t>(b->offset)), 2);
  EXPECT_EQ(std::memcmp(buf, "mk", 2), 0);
  ASSERT_TRUE(reg.release(*a).has_value());
  EXPECT_EQ(reg.release(*a).error().code(), EINVAL);  // double free
  PageRange partial = *b;
  partial.pages = 1;
  EXPECT_EQ(reg.release(partial).error().code(), EINVAL);
  auto c = reg.alloc(10);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->offset, 0u);  // first fit reuses the hole
  EXPECT_EQ(reg.alloc(0).error().code(), EINVAL);
  EXPECT_EQ(reg.alloc(65).error().code(), ENOMEM);
}

TEST_F(RegionsTest, ReserveMarksAPredecessorsAllocations) {
  std::vector<BootMemory> mem = {BootMemory{0, 64 * 4096, 0, fd_, 0}};
  auto r = Regions::map(mem);
  ASSERT_TRUE(r.has_value());
  auto& reg = **r;
  ASSERT_TRUE(reg.reserve(PageRange{0, 8 * 4096, 4}).has_value());
  EXPECT_EQ(reg.used_bytes(), 4u * 4096);
  EXPECT_EQ(reg.live(), (std::vector<PageRange>{{0, 8 * 4096, 4}}));
  auto a = reg.alloc(10);  // does not fit before the reserved pages
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->offset, 12u * 4096);
  EXPECT_EQ(reg.reserve(PageRange{0, 11 * 4096, 2}).error().code(), EBUSY);  // overlaps both
  EXPECT_EQ(reg.reserve(PageRange{0, 0, 0}).error().code(), EINVAL);
  EXPECT_EQ(reg.reserve(PageRange{1, 0, 1}).error().code(), EINVAL);        // no region 1
  EXPECT_EQ(reg.reserve(PageRange{0, 100, 1}).error().code(), EINVAL);      // unaligned
  EXPECT_EQ(reg.reserve(PageRange{0, 60 * 4096, 5}).error().code(), EINVAL);  // past the end
  EXPECT_EQ(reg.reserve(PageRange{0, 64 * 4096, 1}).error().code(), EINVAL);
  EXPECT_EQ(reg.live().size(), 2u);  // failed reservations changed nothing
  ASSERT_TRUE(reg.release(PageRange{0, 8 * 4096, 4}).has_value());  // a reservation is a live allocation
  ASSERT_TRUE(reg.reserve(PageRange{0, 0, 12}).has_value());
  EXPECT_EQ(reg.used_bytes(), 22u * 4096);
}

TEST_F(RegionsTest, ReserveAcrossBitmapWords) {
  // 256 pages = 4 bitmap words: ranges that start, end and straddle words.
  int fd = ::memfd_create("regions-words", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 256 * 4096), 0);
  std::vector<BootMemory> mem = {BootMemory{0, 256 * 4096, 0, fd, 0}};
  auto r = Regions::map(mem);
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  auto& reg = **r;
  ASSERT_TRUE(reg.reserve(PageRange{0, 60 * 4096, 10}).has_value());  // pages 60..69: words 0 and 1
  auto busy = reg.reserve(PageRange{0, 69 * 4096, 2});
  ASSERT_FALSE(busy.has_value());
  EXPECT_EQ(busy.error().code(), EBUSY);
  EXPECT_NE(std::string(busy.error().message()).find("page 69 is in use"), std::string::npos) << busy.error().to_string();
  ASSERT_TRUE(reg.reserve(PageRange{0, 70 * 4096, 130}).has_value());  // 70..199: words 1..3
  ASSERT_TRUE(reg.reserve(PageRange{0, 200 * 4096, 56}).has_value());  // 200..255: to the last bit
  EXPECT_EQ(reg.used_bytes(), 196u * 4096);
  auto a = reg.alloc(60);  // exactly the free pages 0..59
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->offset, 0u);
  EXPECT_EQ(reg.alloc(1).error().code(), ENOMEM);
  ASSERT_TRUE(reg.release(PageRange{0, 70 * 4096, 130}).has_value());  // clears exactly 70..199
  auto b = reg.alloc(130);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->offset, 70u * 4096);
  ::close(fd);
}

TEST_F(RegionsTest, RejectsBadSizesAndShortMemfds) {
  EXPECT_EQ(Regions::map({}).error().code(), EINVAL);
  std::vector<BootMemory> odd = {BootMemory{0, 4095, 0, fd_, 0}};
  EXPECT_EQ(Regions::map(odd).error().code(), EINVAL);
  std::vector<BootMemory> big = {BootMemory{0, 128 * 4096, 0, fd_, 0}};
  auto r = Regions::map(big);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), EINVAL);
  std::vector<BootMemory> closed = {BootMemory{0, 4096, 0, 999, 0}};
  EXPECT_EQ(Regions::map(closed).error().code(), EBADF);
}

TEST(Devices, LooksUpByKindAndName) {
  Devices d({BootDevice{"console", DeviceKind::kConsole, 5, {}}, BootDevice{"web", DeviceKind::kListen, 6, {}},
             BootDevice{"eth0", DeviceKind::kNet, -1, {{"ifname", "eth0"}}}});
  EXPECT_EQ(d.console_fd().value(), 5);
  EXPECT_EQ(d.fd(DeviceKind::kListen, "web").value(), 6);
  EXPECT_EQ(d.fd(DeviceKind::kFile, "web").error().code(), ENOENT);
  EXPECT_EQ(d.fd(DeviceKind::kListen, "nope").error().code(), ENOENT);
  EXPECT_EQ(d.fd(DeviceKind::kNet, "eth0").error().code(), EBADF);
  EXPECT_EQ(d.all(DeviceKind::kListen).size(), 1u);
  EXPECT_EQ(Devices().console_fd().error().code(), ENOENT);
}

TEST(Devices, ConsoleWritesAndDropsWhenClosed) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  Console con(p[1]);
  con.print("hello %d\n", 42);
  char buf[32] = {};
  ASSERT_EQ(::read(p[0], buf, sizeof buf), 9);
  EXPECT_STREQ(buf, "hello 42\n");
  ::close(p[0]);
  auto old = ::signal(SIGPIPE, SIG_IGN);
  con.print("lost\n");
  ::signal(SIGPIPE, old);
  EXPECT_EQ(con.dropped(), 1u);
  ::close(p[1]);
}

TEST(Tenants, StartReapAndStop) {
  Tenants t;
  EXPECT_EQ(t.start("", -1).error().code(), EINVAL);
  auto i0 = t.start("exit 4", -1);
  ASSERT_TRUE(i0.has_value());
  auto i1 = t.start("sleep 30", -1);
  ASSERT_TRUE(i1.has_value());
  EXPECT_EQ(*i1, 1u);
  std::vector<TenantExit> exits;
  const auto end = std::chrono::steady_clock::now() + 30s;
  while (exits.empty() && std::chrono::steady_clock::now() < end) {
    exits = t.reap();
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].index, 0u);
  EXPECT_EQ(WEXITSTATUS(exits[0].status), 4);
  EXPECT_EQ(t.running(), 1u);
  auto r = t.stop(5s);
  EXPECT_EQ(r.killed, 0u);
  ASSERT_EQ(r.exits.size(), 1u);
  EXPECT_EQ(r.exits[0].index, 1u);
  EXPECT_TRUE(WIFSIGNALED(r.exits[0].status));
  EXPECT_EQ(t.running(), 0u);
  EXPECT_EQ(t.started(), 2u);
}

// A child in its own process group, as an earlier image's tenant would be.
// Returns once the child has set its signal disposition.
pid_t spawn_group_child(bool ignore_term) {
  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) return -1;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    if (ignore_term) ::signal(SIGTERM, SIG_IGN);
    (void)!::write(ready[1], "r", 1);
    for (;;) ::pause();
  }
  ::setpgid(pid, pid);
  char c;
  (void)!::read(ready[0], &c, 1);
  ::close(ready[0]);
  ::close(ready[1]);
  return pid;
}

void write_record(int fd, pid_t pid, int status) {
  const abi::TenantExitMsg m{pid, status, 0, 0};
  ASSERT_EQ(::write(fd, &m, sizeof m), static_cast<ssize_t>(sizeof m));
}

TEST(Tenants, AdoptValidatesItsArguments) {
  Tenants t;
  EXPECT_EQ(t.adopt(0, 1, 0, "x").error().code(), EINVAL);
  EXPECT_EQ(t.adopt(5, -1, 0, "x").error().code(), EINVAL);
  ASSERT_TRUE(t.adopt(123456, 123456, 3, "sleep 1").has_value());
  EXPECT_EQ(t.adopt(123456, 123456, 4, "x").error().code(), EEXIST);  // same pid
  EXPECT_EQ(t.adopt(123457, 123457, 3, "x").error().code(), EEXIST);  // same index
  EXPECT_EQ(t.set_reaper_fd(1000).error().code(), EBADF);
  auto info = t.running_tenants();
  ASSERT_EQ(info.size(), 1u);
  EXPECT_TRUE(info[0].adopted);
  EXPECT_EQ(info[0].command, "sleep 1");
  // A tenant started afterwards takes the next free index.
  auto i = t.start("exit 0", -1);
  ASSERT_TRUE(i.has_value());
  EXPECT_EQ(*i, 4u);
}

TEST(Tenants, AdoptedExitsComeThroughTheReaperPipe) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  Tenants t;
  ASSERT_TRUE(t.set_reaper_fd(p[0]).has_value());
  ASSERT_TRUE(t.adopt(4242, 4242, 0, "a").has_value());
  ASSERT_TRUE(t.adopt(4343, 4343, 1, "b").has_value());
  EXPECT_TRUE(t.reap().empty());
  write_record(p[1], 999, 0);  // not ours (an orphan the reaper collected): dropped
  // Half a record, then the rest.
  const abi::TenantExitMsg m{4343, 7 << 8, 0, 0};
  ASSERT_EQ(::write(p[1], &m, 6), 6);
  EXPECT_TRUE(t.reap().empty());
  ASSERT_EQ(::write(p[1], reinterpret_cast<const char*>(&m) + 6, sizeof m - 6), static_cast<ssize_t>(sizeof m - 6));
  auto e = t.reap();
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].pid, 4343);
  EXPECT_EQ(e[0].index, 1u);
  EXPECT_EQ(WEXITSTATUS(e[0].status), 7);
  EXPECT_EQ(t.running(), 1u);
  write_record(p[1], 4242, 0);
  EXPECT_EQ(t.reap().size(), 1u);
  EXPECT_EQ(t.running(), 0u);
  ::close(p[0]);
  ::close(p[1]);
}

TEST(Tenants, StopEndsAdoptedGroupsAndWaitsForTheirRecords) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  const pid_t polite = spawn_group_child(false);
  const pid_t stubborn = spawn_group_child(true);
  // This test process plays the reaper: it is the children's parent.
  std::atomic<bool> done{false};
  std::thread reaper([&] {
    for (int left = 2; left > 0;) {
      int st = 0;
      pid_t r = ::waitpid(-1, &st, 0);
      if (r == polite || r == stubborn) {
        write_record(p[1], r, st);
        --left;
      }
    }
    done = true;
  });
  Tenants t;
  ASSERT_TRUE(t.set_reaper_fd(p[0]).has_value());
  ASSERT_TRUE(t.adopt(polite, polite, 0, "polite").has_value());
  ASSERT_TRUE(t.adopt(stubborn, stubborn, 1, "stubborn").has_value());
  auto r = t.stop(300ms);
  reaper.join();
  EXPECT_EQ(r.killed, 1u);
  ASSERT_EQ(r.exits.size(), 2u);
  for (const auto& e : r.exits) {
    ASSERT_TRUE(WIFSIGNALED(e.status));
    EXPECT_EQ(WTERMSIG(e.status), e.pid == polite ? SIGTERM : SIGKILL) << e.pid;
  }
  EXPECT_EQ(t.running(), 0u);
  ::close(p[0]);
  ::close(p[1]);
}

TEST(Tenants, StopReportsSigkillWhenTheReaperSaysNothing) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  const pid_t child = spawn_group_child(true);
  Tenants t;
  ASSERT_TRUE(t.set_reaper_fd(p[0]).has_value());
  ASSERT_TRUE(t.adopt(child, child, 0, "silent").has_value());
  auto r = t.stop(100ms);
  EXPECT_EQ(r.killed, 1u);
  ASSERT_EQ(r.exits.size(), 1u);
  EXPECT_EQ(r.exits[0].status, SIGKILL);  // as waitpid would say for a SIGKILLed process
  int st = 0;
  ASSERT_EQ(::waitpid(child, &st, 0), child);
  EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  ::close(p[0]);
  ::close(p[1]);
}

}  // namespace
}  // namespace mk::sdk
