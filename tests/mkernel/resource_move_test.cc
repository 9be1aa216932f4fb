// Tests for mkernel/resource_move.h that need no running image: the checks
// of a memory or device change against the partition (on a recorded
// two-socket topology, so regions land on several NUMA nodes), the lists a
// change produces on paper, the device nodes a hot-added device gets (the
// same as a boot tree's), and InstanceCgroup::set_memory on fake v1 and v2
// cgroup trees. The moves with a real image are in
// tests/tools/resources_e2e_test.cc (mkctl, mkerneld, mk-kernel).
#include "mkernel/resource_move.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "mkernel/cgroup.h"
#include "mkernel/manifest.h"
#include "test_topologies.h"

namespace fs = std::filesystem;

namespace mk {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

DeviceSpec dev(const char* text) {
  auto d = DeviceSpec::parse(text);
  EXPECT_TRUE(d) << text;
  return d ? *d : DeviceSpec{};
}

MemorySpec mem(uint64_t bytes, std::optional<uint32_t> node = std::nullopt) { return MemorySpec{bytes, node}; }

void expect_error(const Result<void>& r, int code, const std::string& words) {
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), code) << r.error().to_string();
  EXPECT_NE(r.error().to_string().find(words), std::string::npos) << r.error().to_string();
}

class ResourceChecks : public ::testing::Test {
 protected:
  void SetUp() override {
    topo = test::load(test::kEpyc9654);
    ASSERT_GE(topo.numa_nodes.size(), 2u);
    node_b = topo.numa_nodes[1].os_index;
    part = test::pool_of(topo, topo.all_pus(), 1024 * kMiB);
    part.pool.devices = {"eth1", "nvme1n1"};
    Instance a;
    a.id = 1;
    a.name = "a";
    a.cpus = CpuSet::of({0, 1});
    a.memory = {{topo.main_node_of(a.cpus), 512 * kMiB}};
    a.devices = {dev("listen:127.0.0.1:7000")};
    part.add(a);
    Instance b;
    b.id = 2;
    b.name = "b";
    b.cpus = CpuSet::of({2});
    b.memory = {{topo.main_node_of(b.cpus), 256 * kMiB}};
    b.devices = {dev("net:eth1")};
    part.add(b);
  }
  Topology topo;
  Partition part;
  uint32_t node_b = 0;
};

TEST_F(ResourceChecks, MemoryListsResolveNodesAndCountWhatTheInstanceGivesBack) {
  const uint32_t home = topo.main_node_of(CpuSet::of({0, 1}));
  auto p = plan_memory(topo, part, "a", {mem(512 * kMiB), mem(64 * kMiB), mem(32 * kMiB, node_b)});
  ASSERT_TRUE(p) << p.error().to_string();
  ASSERT_EQ(p->size(), 3u);
  EXPECT_EQ((*p)[0], (MemoryRegion{home, 512 * kMiB})) << "kept: its node";
  EXPECT_EQ((*p)[1], (MemoryRegion{home, 64 * kMiB})) << "new, no @NODE: the node of its CPUs";
  EXPECT_EQ((*p)[2], (MemoryRegion{node_b, 32 * kMiB}));
  // 1 GiB pool on the node, 512 MiB held by a and 256 MiB by b: a may
  // replace its region by a 768 MiB one (it gives 512 back), not an 800 MiB one.
  EXPECT_TRUE(plan_memory(topo, part, "a", {mem(768 * kMiB)}));
  auto too_much = plan_memory(topo, part, "a", {mem(800 * kMiB)});
  ASSERT_FALSE(too_much);
  EXPECT_EQ(too_much.error().code(), ENOMEM);
  EXPECT_NE(too_much.error().to_string().find("288 MiB more"), std::string::npos) << too_much.error().to_string();
}

TEST_F(ResourceChecks, MemoryListsThatCannotBeAreRefused) {
  struct Case {
    std::string name;
    std::vector<MemorySpec> want;
    int code;
    const char* words;
  };
  const std::vector<Case> cases = {
      {"nope", {mem(kMiB)}, ENOENT, "no instance 'nope'"},
      {"a", {}, EINVAL, "at least one region"},
      {"a", {mem(512 * kMiB), mem(1000)}, EINVAL, "region 1"},
      {"a", {mem(512 * kMiB), mem(0)}, EINVAL, "page"},
      {"a", {mem(512 * kMiB), mem(kMiB, 4095)}, ENOENT, "NUMA node 4095"},
      {"a", {mem(512 * kMiB), mem(2048 * kMiB, node_b)}, ENOMEM, "grow the pool"},
  };
  for (const Case& c : cases) {
    auto r = plan_memory(topo, part, c.name, c.want);
    ASSERT_FALSE(r) << c.words;
    EXPECT_EQ(r.error().code(), c.code) << r.error().to_string();
    EXPECT_NE(r.error().to_string().find(c.words), std::string::npos) << r.error().to_string();
  }
}

TEST_F(ResourceChecks, DeviceListsThatCannotBeAreRefused) {
  EXPECT_TRUE(check_device_change(part, "a", {dev("listen:127.0.0.1:7000"), dev("file:/etc/hostname:ro")}));
  EXPECT_TRUE(check_device_change(part, "a", {})) << "no device but the console";
  EXPECT_TRUE(check_device_change(part, "b", {dev("net:eth1"), dev("block:nvme1n1")})) << "kept and in the pool";
  expect_error(check_device_change(part, "nope", {}), ENOENT, "no instance 'nope'");
  expect_error(check_device_change(part, "a", {dev("net:eth1")}), EBUSY, "belongs to instance 'b'");
  expect_error(check_device_change(part, "b", {dev("listen:127.0.0.1:7000")}), EBUSY, "belongs to instance 'a'");
  expect_error(check_device_change(part, "a", {dev("net:eth9")}), ENOENT, "not in the pool (pool devices: eth1, nvme1n1)");
  expect_error(check_device_change(part, "a", {dev("file:/x"), dev("file:/x:ro")}), EINVAL, "given twice");
  DeviceSpec console;
  console.kind = DeviceKind::kConsole;
  expect_error(check_device_change(part, "a", {console}), EINVAL, "console");
}

TEST_F(ResourceChecks, OnPaperTheListsChangeAtTheirEnd) {
  const std::vector<MemoryRegion> cur{{0, 64 * kMiB}, {0, 32 * kMiB}, {1, 16 * kMiB}};
  auto r = resize_memory(nullptr, "a", cur, {{0, 64 * kMiB}, {1, 8 * kMiB}}, {});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->memory, (std::vector<MemoryRegion>{{0, 64 * kMiB}, {1, 8 * kMiB}}));
  EXPECT_EQ(r->removed, (std::vector<std::string>{"region 2: 16 MiB on node 1", "region 1: 32 MiB on node 0"}));
  EXPECT_EQ(r->added, (std::vector<std::string>{"region 1: 8 MiB on node 1"}));
  EXPECT_TRUE(r->steps.empty()) << "nothing runs, nothing to ask";
  auto same = resize_memory(nullptr, "a", cur, cur, {});
  ASSERT_TRUE(same);
  EXPECT_TRUE(same->added.empty() && same->removed.empty());
  EXPECT_FALSE(resize_memory(nullptr, "a", cur, {}, {}));

  auto d = change_devices(nullptr, "a", {dev("listen:127.0.0.1:1"), dev("file:/a"), dev("listen:127.0.0.1:2")},
                          {dev("listen:127.0.0.1:3"), dev("listen:127.0.0.1:2"), dev("file:/a")}, {});
  ASSERT_TRUE(d) << d.error().to_string();
  // Kept ones in their order, new ones after them.
  EXPECT_EQ(d->devices, (std::vector<DeviceSpec>{dev("file:/a"), dev("listen:127.0.0.1:2"), dev("listen:127.0.0.1:3")}));
  EXPECT_EQ(d->added, (std::vector<std::string>{"listen:127.0.0.1:3"}));
  EXPECT_EQ(d->removed, (std::vector<std::string>{"listen:127.0.0.1:1"}));
}

TEST(DeviceNode, AHotAddedDeviceGetsTheNodeABootTreeWouldGiveIt) {
  Instance inst;
  inst.id = 3;
  inst.name = "n";
  inst.cpus = CpuSet::of({0});
  inst.memory = {{0, 16 * kMiB}};
  inst.devices = {dev("listen:127.0.0.1:6379"), dev("net:eth1"), dev("file:/srv/d:ro"), dev("block:nvme0n1")};
  Topology topo = test::load(test::kRaptorLake);
  auto tree = make_boot_tree(topo, inst, BootOptions{});
  ASSERT_TRUE(tree) << tree.error().to_string();
  ASSERT_EQ(tree->devices.size(), 5u);  // the console first
  for (std::size_t i = 0; i < inst.devices.size(); ++i) {
    BootDevice n = device_node(inst.devices, i);
    BootDevice t = tree->devices[i + 1];
    t.fd = -1;
    EXPECT_EQ(n, t) << i;
  }
  EXPECT_EQ(device_node(inst.devices, 2).name, "file1");
  EXPECT_EQ(device_node(inst.devices, 2).properties.at("ro"), "1");
  EXPECT_EQ(device_node(inst.devices, 1).properties.at("ifname"), "eth1");
}

// set_memory on fake cgroup trees.
class FakeCgroups : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::path(::testing::TempDir()) / ("mk_resource_move_" + std::to_string(::getpid()));
    fs::remove_all(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
  void write(const std::string& abs, const std::string& v) {
    fs::create_directories((dir / abs.substr(1)).parent_path());
    std::ofstream(dir / abs.substr(1)) << v;
  }
  std::string read(const std::string& abs) {
    std::ifstream in(dir / abs.substr(1));
    std::stringstream ss;
    ss << in.rdbuf();
    std::string s = ss.str();
    while (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
  }
  fs::path dir;
};

TEST_F(FakeCgroups, V1LimitAndMemsFollowTheRegions) {
  write("/proc/self/mountinfo",
        "33 30 0:30 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
        "34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n");
  for (const char* f : {"cpuset.cpus", "cpuset.mems", "cgroup.procs"}) write(std::string("/sys/fs/cgroup/cpuset/") + f, "");
  write("/sys/fs/cgroup/cpuset/cpuset.cpus", "0-7");
  write("/sys/fs/cgroup/cpuset/cpuset.mems", "0-1");
  for (const std::string d : {"/sys/fs/cgroup/cpuset/mkernel", "/sys/fs/cgroup/cpuset/mkernel/i"})
    for (const char* f : {"cpuset.cpus", "cpuset.mems", "cpuset.cpu_exclusive", "cgroup.procs"}) write(d + "/" + f, "");
  for (const std::string d : {"/sys/fs/cgroup/memory/mkernel", "/sys/fs/cgroup/memory/mkernel/i"})
    for (const char* f : {"memory.limit_in_bytes", "cgroup.procs"}) write(d + "/" + f, "");
  SysRoot root(dir.string());
  auto layout = detect_cgroups(root);
  ASSERT_TRUE(layout) << layout.error().to_string();
  InstanceCgroup::Options o;
  o.memory_limit = 100;
  auto cg = InstanceCgroup::create(root, *layout, "i", CpuSet::of({1}), CpuSet::of({0}), o);
  ASSERT_TRUE(cg) << cg.error().to_string();
  ASSERT_TRUE(cg->set_memory(123 * kMiB, CpuSet::of({0, 1})));
  EXPECT_EQ(read("/sys/fs/cgroup/memory/mkernel/i/memory.limit_in_bytes"), std::to_string(123 * kMiB));
  EXPECT_EQ(read("/sys/fs/cgroup/cpuset/mkernel/i/cpuset.mems"), "0-1");
  EXPECT_EQ(read("/sys/fs/cgroup/cpuset/mkernel/cpuset.mems"), "0-1") << "the parent widened first";
  bool seen = false;
  for (const auto& g : cg->guarantees())
    if (g.name == "memory cgroup") seen = g.in_force && g.detail == "v1 limit " + std::to_string(123 * kMiB);
  EXPECT_TRUE(seen);
  ASSERT_TRUE(cg->set_memory(64 * kMiB, CpuSet::of({1})));
  EXPECT_EQ(read("/sys/fs/cgroup/cpuset/mkernel/i/cpuset.mems"), "1");
  EXPECT_EQ(read("/sys/fs/cgroup/cpuset/mkernel/cpuset.mems"), "0-1") << "the parent is never narrowed";
  expect_error(cg->set_memory(64 * kMiB, CpuSet{}), EINVAL, "at least one memory node");
  // The kernel refusing the write (a file that cannot be written): its errno.
  fs::remove(dir / "sys/fs/cgroup/memory/mkernel/i/memory.limit_in_bytes");
  fs::create_directory(dir / "sys/fs/cgroup/memory/mkernel/i/memory.limit_in_bytes");
  EXPECT_FALSE(cg->set_memory(64 * kMiB, CpuSet::of({1})));
}

TEST_F(FakeCgroups, V2WritesMemoryMax) {
  write("/proc/self/mountinfo", "30 25 0:26 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n");
  write("/sys/fs/cgroup/cgroup.controllers", "cpuset memory");
  write("/sys/fs/cgroup/cgroup.subtree_control", "cpuset memory");
  write("/sys/fs/cgroup/cpuset.cpus", "0-7");
  write("/sys/fs/cgroup/cpuset.mems", "0-1");
  for (const std::string d : {"/sys/fs/cgroup/mkernel", "/sys/fs/cgroup/mkernel/i"})
    for (const char* f : {"cpuset.cpus", "cpuset.mems", "cgroup.procs", "cgroup.subtree_control", "memory.max"})
      write(d + "/" + f, "");
  write("/sys/fs/cgroup/mkernel/cgroup.subtree_control", "cpuset memory");
  SysRoot root(dir.string());
  auto layout = detect_cgroups(root);
  ASSERT_TRUE(layout) << layout.error().to_string();
  InstanceCgroup::Options o;
  o.memory_limit = 100;
  auto cg = InstanceCgroup::create(root, *layout, "i", CpuSet::of({1}), CpuSet::of({0}), o);
  ASSERT_TRUE(cg) << cg.error().to_string();
  ASSERT_TRUE(cg->set_memory(80 * kMiB, CpuSet::of({1})));
  EXPECT_EQ(read("/sys/fs/cgroup/mkernel/i/memory.max"), std::to_string(80 * kMiB));
  EXPECT_EQ(read("/sys/fs/cgroup/mkernel/i/cpuset.mems"), "1");
}

}  // namespace
}  // namespace mk
