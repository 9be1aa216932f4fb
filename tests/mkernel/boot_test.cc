// The boot recipe end to end: boots the real mk-kernel image through
// boot_instance() on one CPU of this machine, with its cgroup, sealed memory
// region, console and host channel; checks READY, ping, stats, the CPU
// confinement of every thread, shutdown, and that release() leaves no cgroup.
#include <gtest/gtest.h>
#include <net/if.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>
#include <cstdlib>
#include <fstream>
#include <string>

#include "mk/units.h"
#include "mkernel/boot.h"

namespace mk {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> cpus_allowed_of_tasks(pid_t pid) {
  std::vector<std::string> out;
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream f(dir + "/" + e->d_name + "/status");
    for (std::string line; std::getline(f, line);)
      if (line.rfind("Cpus_allowed_list:", 0) == 0) out.push_back(line.substr(line.find_first_not_of(" \t", 18)));
  }
  ::closedir(d);
  return out;
}

std::string read_all(int fd) {
  std::string s;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) s.append(buf, static_cast<std::size_t>(n));
  return s;
}

class BootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = load_topology_live();
    ASSERT_TRUE(t) << t.error().to_string();
    topo = *t;
    req.instance.id = 7;
    req.instance.name = "boot-test-" + std::to_string(::getpid());
    req.instance.cpus = CpuSet::of({topo.pus.back().os_index});
    req.instance.memory = {{topo.numa_nodes.front().os_index, 16 * kMiB}};
    req.image.path = std::string(MK_BIN_DIR) + "/mk-kernel";
    req.root = SysRoot();
  }
  Topology topo;
  BootRequest req;
};

TEST_F(BootTest, BootsPingsAndStops) {
  req.image.init = "sleep 30";
  auto run = boot_instance(topo, req);
  ASSERT_TRUE(run) << run.error().to_string();
  auto ready = (*run)->wait_ready(10s);
  ASSERT_TRUE(ready) << ready.error().to_string() << "\nconsole: " << read_all((*run)->console_fd());
  EXPECT_EQ(ready->instance_id, 7u);
  EXPECT_EQ(ready->cpu_count, 1u);
  auto rtt = (*run)->ping(64, 2s);
  ASSERT_TRUE(rtt) << rtt.error().to_string();
  EXPECT_GT(rtt->count(), 0);
  auto st = (*run)->stats(2s);
  ASSERT_TRUE(st) << st.error().to_string();
  EXPECT_EQ(st->memory_bytes, 16 * kMiB);
  EXPECT_EQ(st->tenants_running, 1u);
  // Every thread of the image is confined to the instance CPU.
  std::string want = req.instance.cpus.to_string();
  auto allowed = cpus_allowed_of_tasks((*run)->pid());
  ASSERT_FALSE(allowed.empty());
  for (const auto& a : allowed) EXPECT_EQ(a, want);
  bool any_affinity = false;
  for (const auto& g : (*run)->guarantees()) any_affinity |= g.name == "affinity" && g.in_force;
  EXPECT_TRUE(any_affinity);
  auto bye = (*run)->shutdown(500ms, 5s);
  ASSERT_TRUE(bye) << bye.error().to_string();
  EXPECT_EQ(bye->status, 0);
  auto rel = (*run)->release();
  EXPECT_TRUE(rel) << rel.error().to_string();
  std::string console = read_all((*run)->console_fd());
  EXPECT_FALSE(console.empty());
}

TEST_F(BootTest, MissingImageFailsAndLeavesNothing) {
  req.image.path = "/nonexistent/mk-kernel";
  auto run = boot_instance(topo, req);
  ASSERT_FALSE(run);
  EXPECT_EQ(run.error().code(), ENOENT) << run.error().to_string();
  // The instance cgroup was removed again (v1 cpuset hierarchy on this VM).
  struct stat sb;
  std::string dir = "/sys/fs/cgroup/cpuset/mkernel/" + req.instance.name;
  EXPECT_NE(::stat(dir.c_str(), &sb), 0) << dir << " left behind";
}

TEST_F(BootTest, ImageThatExitsEarlyIsReported) {
  req.image.cmdline = "--no-such-option";  // mk-kernel exits 2 on a bad argument
  auto run = boot_instance(topo, req);
  ASSERT_TRUE(run) << run.error().to_string();
  auto ready = (*run)->wait_ready(10s);
  ASSERT_FALSE(ready);
  EXPECT_TRUE(ready.error().code() == ECHILD || ready.error().code() == ECONNRESET) << ready.error().to_string();
}

TEST_F(BootTest, NetDeviceIsMovedInAndHandedBackAfterStop) {
  if (::access("/usr/sbin/ip", X_OK) != 0 && ::access("/sbin/ip", X_OK) != 0)
    GTEST_SKIP() << "iproute2 'ip' not installed (used only to create the test veth)";
  // A veth end: virtual, so it would die with the instance's namespace if
  // the host did not hand it back.
  const std::string a = "mkn" + std::to_string(::getpid() % 100000) + "a";
  const std::string b = "mkn" + std::to_string(::getpid() % 100000) + "b";
  ASSERT_EQ(std::system(("ip link add " + a + " type veth peer name " + b + " 2>&1").c_str()), 0);
  struct Cleanup {
    std::string a;
    ~Cleanup() { (void)!std::system(("ip link del " + a + " 2>/dev/null").c_str()); }
  } cleanup{a};
  auto spec = DeviceSpec::parse("net:" + a);
  ASSERT_TRUE(spec);
  req.instance.devices.push_back(*spec);
  auto run = boot_instance(topo, req);
  ASSERT_TRUE(run) << run.error().to_string();
  ASSERT_TRUE((*run)->wait_ready(10s));
  EXPECT_EQ(::if_nametoindex(a.c_str()), 0u) << a << " is still in the host's namespace";
  bool netns = false;
  for (const auto& g : (*run)->guarantees()) netns |= g.name == "netns" && g.in_force;
  EXPECT_TRUE(netns);
  ASSERT_TRUE((*run)->shutdown(500ms, 5s));
  auto rel = (*run)->release();
  ASSERT_TRUE(rel) << rel.error().to_string();
  EXPECT_NE(::if_nametoindex(a.c_str()), 0u) << a << " was not handed back";
}

TEST_F(BootTest, DetachedInstanceKeepsRunningAndIsAdopted) {
  // What a restarted mkerneld does: the first host forgets the instance
  // without closing anything; adopt_instance() takes it back from the
  // persisted record (pidfd_getfd of its host-channel side, console, regions)
  // and the conversation resumes on the same rings.
  req.image.init = "sleep 30";
  auto run = boot_instance(topo, req);
  ASSERT_TRUE(run) << run.error().to_string();
  ASSERT_TRUE((*run)->wait_ready(10s));
  ASSERT_TRUE((*run)->ping(16, 2s));
  const pid_t pid = (*run)->pid();
  Instance inst = req.instance;
  inst.runtime = (*run)->record();
  EXPECT_EQ(inst.runtime->pid, pid);
  EXPECT_GT(inst.runtime->start_time, 0u);
  EXPECT_EQ(inst.runtime->region_fds.size(), 1u);
  (*run)->detach();
  run->reset();  // a detached handle's destruction touches nothing
  ASSERT_EQ(::kill(pid, 0), 0) << "the image died with its first host";

  // A wrong start time is another process: refused, nothing touched.
  Instance wrong = inst;
  wrong.runtime->start_time += 1;
  auto refused = adopt_instance(wrong, req.root);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ESRCH) << refused.error().to_string();
  Instance norecord = req.instance;
  auto none = adopt_instance(norecord, req.root);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), EINVAL);

  auto back = adopt_instance(inst, req.root);
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_FALSE((*back)->is_child());
  EXPECT_EQ((*back)->pid(), pid);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE((*back)->ping(64, 2s)) << "round trip " << i;
  auto st = (*back)->stats(2s);
  ASSERT_TRUE(st) << st.error().to_string();
  EXPECT_EQ(st->tenants_running, 1u);
  // The console read end came back too: what the image prints arrives.
  EXPECT_GE((*back)->console_fd(), 0);
  auto bye = (*back)->shutdown(500ms, 5s);
  ASSERT_TRUE(bye) << bye.error().to_string();
  auto code = (*back)->wait_exit(1s);
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, kExitStatusUnknown);  // not our child: no wait status
  EXPECT_TRUE((*back)->release());
  // The test process is the image's parent: reap it.
  int ws = 0;
  EXPECT_EQ(::waitpid(pid, &ws, 0), pid);
}

}  // namespace
}  // namespace mk
