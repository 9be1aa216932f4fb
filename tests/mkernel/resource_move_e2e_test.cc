// mk::resize_memory / change_devices on a real mk-kernel booted through
// boot_instance() (no daemon): net interfaces moved into and out of the
// instance's network namespace with the image's consent (a veth pair the
// test creates), the refusal for an instance started without a network
// namespace, a failure injected at each step undone, and the handle's
// record following the regions (the fd numbers the image keeps them under,
// which a restarted host takes back with adopt_instance). The daemon-level
// flows (mkctl, journal, listen and file devices) are in
// tests/tools/resources_e2e_test.cc. Needs root; SERIAL.
#include "mkernel/resource_move.h"

#include <gtest/gtest.h>
#include <net/if.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "mk/units.h"
#include "mkernel/boot.h"

namespace mk {
namespace {

using namespace std::chrono_literals;

bool have_ip() { return ::access("/usr/sbin/ip", X_OK) == 0 || ::access("/sbin/ip", X_OK) == 0; }

// A veth pair in the host's namespace, deleted at the end (wherever it is:
// the test hands it back first).
struct Veth {
  std::string a, b;
  explicit Veth(const std::string& tag) {
    a = "mkr" + std::to_string(::getpid() % 100000) + tag + "a";
    b = "mkr" + std::to_string(::getpid() % 100000) + tag + "b";
    ok = std::system(("ip link add " + a + " type veth peer name " + b + " 2>&1").c_str()) == 0;
  }
  ~Veth() { (void)!std::system(("ip link del " + a + " 2>/dev/null").c_str()); }
  bool ok = false;
};

bool in_host(const std::string& ifname) { return ::if_nametoindex(ifname.c_str()) != 0; }

class ResourceMoveE2e : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (namespaces, cgroups, rtnetlink)";
    auto t = load_topology_live();
    ASSERT_TRUE(t) << t.error().to_string();
    topo = *t;
    req.instance.id = 9;
    req.instance.name = "rm-test-" + std::to_string(::getpid());
    req.instance.cpus = CpuSet::of({topo.pus.back().os_index});
    req.instance.memory = {{topo.numa_nodes.front().os_index, 16 * kMiB}};
    req.image.path = std::string(MK_BIN_DIR) + "/mk-kernel";
    req.root = SysRoot();
  }
  void TearDown() override {
    if (run) {
      (void)run->shutdown(500ms, 5s);
      (void)run->release();
    }
  }
  void boot() {
    auto r = boot_instance(topo, req);
    ASSERT_TRUE(r) << r.error().to_string();
    run = std::move(*r);
    ASSERT_TRUE(run->wait_ready(10s));
  }
  DeviceSpec net(const std::string& ifname) { return *DeviceSpec::parse("net:" + ifname); }
  Topology topo;
  BootRequest req;
  std::unique_ptr<RunningInstance> run;
};

TEST_F(ResourceMoveE2e, NetInterfacesMoveInAndOutWithTheImagesConsent) {
  if (!have_ip()) GTEST_SKIP() << "iproute2 'ip' not installed (used only to create the test veths)";
  Veth first("x"), second("y");
  ASSERT_TRUE(first.ok && second.ok);
  req.instance.devices = {net(first.a)};
  boot();
  ASSERT_FALSE(in_host(first.a));
  const std::vector<DeviceSpec> cur{net(first.a)};

  // A failure at each step: undone, the interface where it was.
  for (const char* at : {"move", "add net"}) {
    ResourceChangeOptions o;
    const std::string what = at;
    o.inject = [what](std::string_view step) -> Result<void> {
      if (step.rfind("undo: ", 0) == 0 || step.find(what) == std::string_view::npos) return {};
      return MK_FAIL(EIO, "fault injected", "at %s", what.c_str());
    };
    auto r = change_devices(run.get(), run->instance().name, cur, {net(first.a), net(second.a)}, o);
    ASSERT_FALSE(r) << at;
    EXPECT_NE(r.error().to_string().find("nothing changed"), std::string::npos) << r.error().to_string();
    EXPECT_TRUE(in_host(second.a)) << at << ": the second interface is back in the host's namespace";
    EXPECT_EQ(run->instance().devices, cur);
  }

  auto add = change_devices(run.get(), run->instance().name, cur, {net(first.a), net(second.a)}, {});
  ASSERT_TRUE(add) << add.error().to_string();
  EXPECT_FALSE(in_host(second.a)) << "moved into the instance's namespace";
  EXPECT_EQ(run->instance().devices, (std::vector<DeviceSpec>{net(first.a), net(second.a)}));
  std::vector<std::string> names;
  for (const auto& [n, ms] : add->steps) names.push_back(n);
  EXPECT_EQ(names.front(), "move " + second.a + " into " + run->instance().name);

  auto rel = change_devices(run.get(), run->instance().name, add->devices, {net(second.a)}, {});
  ASSERT_TRUE(rel) << rel.error().to_string();
  EXPECT_TRUE(in_host(first.a)) << "handed back to the host";
  EXPECT_FALSE(in_host(second.a));
  EXPECT_EQ(run->instance().devices, (std::vector<DeviceSpec>{net(second.a)}));
  ASSERT_TRUE(run->ping(16, 2s)) << "the image serves on";
  // Stopping hands the remaining one back as for a boot-time device.
  ASSERT_TRUE(run->shutdown(500ms, 5s));
  ASSERT_TRUE(run->release());
  run.reset();
  EXPECT_TRUE(in_host(second.a));
}

TEST_F(ResourceMoveE2e, NoNetworkNamespaceNoNetDeviceAndRegionsAreRecorded) {
  boot();
  if (have_ip()) {
    Veth v("z");
    ASSERT_TRUE(v.ok);
    auto r = change_devices(run.get(), run->instance().name, {}, {net(v.a)}, {});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ENOTSUP);
    EXPECT_NE(r.error().to_string().find("host's network namespace"), std::string::npos) << r.error().to_string();
    EXPECT_TRUE(in_host(v.a)) << "nothing moved";
  }
  // A region added: the record lists the fd number the image keeps it under.
  const std::vector<MemoryRegion> one = run->instance().memory;
  std::vector<MemoryRegion> two = one;
  two.push_back({one.front().node, 4 * kMiB});
  auto g = resize_memory(run.get(), run->instance().name, one, two, {});
  ASSERT_TRUE(g) << g.error().to_string();
  ASSERT_EQ(run->record().region_fds.size(), 2u);
  const int fd = run->record().region_fds[1];
  EXPECT_GE(fd, 0);
  char link[64];
  const std::string path = "/proc/" + std::to_string(run->pid()) + "/fd/" + std::to_string(fd);
  const ssize_t n = ::readlink(path.c_str(), link, sizeof link - 1);
  ASSERT_GT(n, 0) << path;
  EXPECT_NE(std::string(link, static_cast<std::size_t>(n)).find("mem1"), std::string::npos)
      << "fd " << fd << " of the image is the new region's memfd";
  auto stats = run->stats(2s);
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->memory_bytes, 20 * kMiB);
  // Out of step with what the handle holds: refused before anything is asked.
  auto stale = resize_memory(run.get(), run->instance().name, one, one, {});
  EXPECT_TRUE(stale) << "nothing to do";
  auto wrong = resize_memory(run.get(), run->instance().name, one, {{one.front().node, 8 * kMiB}}, {});
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().to_string().find("out of step"), std::string::npos) << wrong.error().to_string();
  auto s = resize_memory(run.get(), run->instance().name, two, one, {});
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_EQ(run->record().region_fds.size(), 1u);
  EXPECT_EQ(run->stats(2s)->memory_bytes, 16 * kMiB);
}

}  // namespace
}  // namespace mk
