// Pool defaults, explicit pools, every refusal, and free memory from a fake sysfs.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "mk/units.h"
#include "mkernel/pool.h"
#include "test_topologies.h"

namespace mk {
namespace {

using test::load;

TEST(Pool, UnknownMemoryGivesNoDefaultAndAcceptsExplicit) {
  Topology t = load(test::kEpyc9654);  // the recorded file has no memory sizes
  auto avail = available_memory(t, SysRoot());
  ASSERT_TRUE(avail);
  EXPECT_EQ((*avail)[0].bytes, kUnknownMemory);
  auto d = make_pool(t, {}, *avail, {});
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->pool.memory.empty());
  ASSERT_EQ(d->warnings.size(), 2u);
  EXPECT_NE(d->warnings[0].find("--memory SIZE@0"), std::string::npos);
  PoolRequest r;
  r.memory = {*MemorySpec::parse("64G@1")};
  auto e = make_pool(t, r, *avail, {});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->pool.memory_on(1), 64 * kGiB);
  EXPECT_NE(e->warnings.back().find("unchecked"), std::string::npos);
}

TEST(Pool, DefaultsKeepFirstCpuAndHalfTheMemory) {
  Topology t = load(test::kKnl);  // 4 x 2 GiB DRAM + 4 x 1 GiB MCDRAM
  auto avail = available_memory(t, SysRoot());
  ASSERT_TRUE(avail);
  auto d = make_pool(t, {}, *avail, {});
  ASSERT_TRUE(d) << d.error().to_string();
  EXPECT_FALSE(d->pool.cpus.contains(0));
  EXPECT_EQ(d->pool.cpus.count(), t.pus.size() - 1);
  ASSERT_EQ(d->pool.memory.size(), t.numa_nodes.size());
  for (std::size_t i = 0; i < t.numa_nodes.size(); ++i) {
    uint64_t half = t.numa_nodes[i].memory_bytes / 2;
    EXPECT_LE(d->pool.memory[i].bytes, half);
    EXPECT_GT(d->pool.memory[i].bytes, half - kPoolMemoryGranule - 100);
    EXPECT_EQ(d->pool.memory[i].bytes % kPoolMemoryGranule, 0u);
  }
  EXPECT_TRUE(d->warnings.empty());
}

TEST(Pool, ExplicitCpusMemoryAndWarningWhenHostKeepsNothing) {
  Topology t = load(test::kRaptorLake);
  PoolRequest r;
  r.cpus = t.all_pus();
  r.memory = {*MemorySpec::parse("2G"), *MemorySpec::parse("1G@0")};
  auto d = make_pool(t, r, {{0, 32 * kGiB}}, {});
  ASSERT_TRUE(d) << d.error().to_string();
  EXPECT_EQ(d->pool.memory_on(0), 3 * kGiB);
  ASSERT_EQ(d->warnings.size(), 1u);
  EXPECT_NE(d->warnings[0].find("host keeps none"), std::string::npos);
}

TEST(Pool, SplitsPlainSizeAcrossTheNodesOfItsCpus) {
  Topology t = load(test::kEpyc9654);
  PoolRequest r;
  r.cpus = CpuSet::of({1, 100});  // node 0 and node 1
  r.memory = {*MemorySpec::parse("2G")};
  auto d = make_pool(t, r, {{0, 8 * kGiB}, {1, 8 * kGiB}}, {});
  ASSERT_TRUE(d);
  EXPECT_EQ(d->pool.memory_on(0), kGiB);
  EXPECT_EQ(d->pool.memory_on(1), kGiB);
}

TEST(Pool, Refusals) {
  Topology t = load(test::kRaptorLake);
  std::vector<MemoryRegion> avail{{0, 4 * kGiB}};
  PoolRequest r;
  r.cpus = CpuSet::of({1, 25});
  auto missing = make_pool(t, r, avail, {});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ENOENT);
  EXPECT_NE(std::string(missing.error().detail()).find("cpu 25"), std::string::npos);

  r.cpus = CpuSet::of({1});
  r.memory = {*MemorySpec::parse("5G")};
  auto big = make_pool(t, r, avail, {});
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code(), ENOMEM);

  r.memory = {*MemorySpec::parse("1G@4")};
  EXPECT_EQ(make_pool(t, r, avail, {}).error().code(), ENOENT);
  r.memory = {*MemorySpec::parse("4097")};
  EXPECT_EQ(make_pool(t, r, avail, {}).error().code(), EINVAL);
  r.memory = {};
  r.devices = {"nosuchdev"};
  auto dev = make_pool(t, r, avail, {});
  ASSERT_FALSE(dev);
  EXPECT_EQ(dev.error().code(), ENOENT);
  EXPECT_NE(std::string(dev.error().detail()).find("known:"), std::string::npos);
}

TEST(Pool, ExistingInstancesMustStillFit) {
  Topology t = load(test::kRaptorLake);
  Instance db;
  db.id = 1;
  db.name = "db";
  db.cpus = CpuSet::range(4, 7);
  db.memory = {{0, 2 * kGiB}};
  PoolRequest r;
  r.cpus = CpuSet::range(5, 19);
  auto cpus = make_pool(t, r, {{0, 8 * kGiB}}, {db});
  ASSERT_FALSE(cpus);
  EXPECT_EQ(cpus.error().code(), EBUSY);
  EXPECT_NE(std::string(cpus.error().detail()).find("instance 'db' owns cpu 4"), std::string::npos);
  r.cpus = CpuSet::range(4, 19);
  r.memory = {*MemorySpec::parse("1G")};
  auto mem = make_pool(t, r, {{0, 8 * kGiB}}, {db});
  ASSERT_FALSE(mem);
  EXPECT_EQ(mem.error().code(), EBUSY);
  r.memory = {*MemorySpec::parse("3G")};
  EXPECT_TRUE(make_pool(t, r, {{0, 8 * kGiB}}, {db}));
}

TEST(Pool, MemorySpecParsing) {
  auto m = MemorySpec::parse("2G@1");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->bytes, 2 * kGiB);
  EXPECT_EQ(*m->node, 1u);
  EXPECT_FALSE(MemorySpec::parse("2G").value().node);
  for (const char* bad : {"2G@", "2G@x", "@1", "0", "2G@1@2"}) EXPECT_FALSE(MemorySpec::parse(bad)) << bad;
}

TEST(Pool, SplitMemoryIsPageAligned) {
  auto parts = split_memory(3 * kGiB + 3 * kPageSize, {0, 1, 2});
  ASSERT_EQ(parts.size(), 3u);
  uint64_t sum = 0;
  for (const auto& p : parts) {
    EXPECT_EQ(p.bytes % kPageSize, 0u);
    sum += p.bytes;
  }
  EXPECT_EQ(sum, 3 * kGiB + 3 * kPageSize);
}

class FakeSys : public ::testing::Test {
 protected:
  void SetUp() override {
    root = std::filesystem::temp_directory_path() / ("mk-sys-" + std::to_string(::getpid()));
    std::filesystem::create_directories(root);
  }
  void TearDown() override { std::filesystem::remove_all(root); }
  void write(const std::string& rel, const std::string& text) {
    auto p = root / rel.substr(1);
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  std::filesystem::path root;
};

TEST_F(FakeSys, LiveMemoryFromPerNodeMeminfo) {
  Topology t = load(test::kEpyc9654);
  t.is_live = true;
  write("/sys/devices/system/node/node0/meminfo", "Node 0 MemTotal: 100 kB\nNode 0 MemFree:  2048 kB\n");
  write("/sys/devices/system/node/node1/meminfo", "Node 1 MemFree:  4096 kB\n");
  auto a = available_memory(t, SysRoot(root.string()));
  ASSERT_TRUE(a) << a.error().to_string();
  EXPECT_EQ((*a)[0].bytes, 2048u * 1024);
  EXPECT_EQ((*a)[1].bytes, 4096u * 1024);
}

TEST_F(FakeSys, SingleNodeFallsBackToMemAvailable) {
  Topology t = load(test::kRaptorLake);
  t.is_live = true;
  write("/proc/meminfo", "MemTotal: 1000 kB\nMemAvailable:   512 kB\n");
  auto a = available_memory(t, SysRoot(root.string()));
  ASSERT_TRUE(a) << a.error().to_string();
  EXPECT_EQ((*a)[0].bytes, 512u * 1024);
}

TEST_F(FakeSys, UnreadableMemoryIsAnError) {
  Topology t = load(test::kEpyc9654);
  t.is_live = true;
  auto a = available_memory(t, SysRoot(root.string()));
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().code(), EIO);
}

}  // namespace
}  // namespace mk
