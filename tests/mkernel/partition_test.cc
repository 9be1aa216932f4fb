// Create-time validation: every rule, its error code and its message; the
// validate-then-commit contract; placement warnings.
#include <gtest/gtest.h>

#include "mk/units.h"
#include "mkernel/partition.h"
#include "test_topologies.h"

namespace mk {
namespace {

using test::load;
using test::pool_of;

class PartitionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    topo = load(test::kRaptorLake);  // 20 PUs: P cores 0-11 (SMT pairs), E 12-19
    part = pool_of(topo, CpuSet::range(4, 19), 8 * kGiB);
  }
  CreateRequest req(const std::string& name, const std::string& cpus, const std::string& mem = "1G") {
    CreateRequest r;
    r.name = name;
    r.cpus = *CpuSet::parse(cpus);
    r.memory.push_back(*MemorySpec::parse(mem));
    return r;
  }
  Instance commit(const CreateRequest& r) {
    auto p = plan_create(topo, part, r);
    EXPECT_TRUE(p) << p.error().to_string();
    part.add(p->instance);
    return p->instance;
  }
  Topology topo;
  Partition part;
};

TEST_F(PartitionTest, CreatesWithLowestFreeId) {
  Instance a = commit(req("a", "4-7"));
  Instance b = commit(req("b", "8-11"));
  EXPECT_EQ(a.id, 1u);
  EXPECT_EQ(b.id, 2u);
  EXPECT_EQ(a.memory, (std::vector<MemoryRegion>{{0, kGiB}}));
  EXPECT_EQ(part.free_cpus().to_string(), "12-19");
  EXPECT_EQ(part.free_memory_on(0), 6 * kGiB);
}

TEST_F(PartitionTest, OverlapNamesOwnerAndFreeCpus) {
  commit(req("db", "4-7"));
  auto r = plan_create(topo, part, req("web", "5-8"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), EBUSY);
  EXPECT_STREQ(r.error().detail(), "cpu 5 already belongs to instance 'db' (cpus 4-7); free pool cpus: 8-19");
}

TEST_F(PartitionTest, HostCpuRefused) {
  auto r = plan_create(topo, part, req("x", "2-5"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), EACCES);
  EXPECT_NE(std::string(r.error().detail()).find("cpu 2 is the host's"), std::string::npos);
}

TEST_F(PartitionTest, MissingCpuRefused) {
  auto r = plan_create(topo, part, req("x", "19-20"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ENOENT);
  EXPECT_NE(std::string(r.error().detail()).find("cpu 20 does not exist"), std::string::npos);
}

TEST_F(PartitionTest, NoPool) {
  Partition empty;
  auto r = plan_create(topo, empty, req("x", "4"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ENOENT);
}

TEST_F(PartitionTest, NamesAndIds) {
  commit(req("a", "4"));
  auto dup = plan_create(topo, part, req("a", "5"));
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code(), EEXIST);
  for (const char* bad : {"", "-x", "a b", "a/b", "ü"}) {
    auto r = plan_create(topo, part, req(bad, "5"));
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), EINVAL) << bad;
  }
  auto too_long = plan_create(topo, part, req(std::string(64, 'n'), "5"));
  EXPECT_FALSE(too_long);
  CreateRequest r = req("b", "5");
  r.id = 0;
  EXPECT_EQ(plan_create(topo, part, r).error().code(), ERANGE);
  r.id = 512;
  EXPECT_EQ(plan_create(topo, part, r).error().code(), ERANGE);
  r.id = 1;
  auto taken = plan_create(topo, part, r);
  ASSERT_FALSE(taken);
  EXPECT_EQ(taken.error().code(), EEXIST);
  EXPECT_NE(std::string(taken.error().detail()).find("'a'"), std::string::npos);
  r.id = 511;
  auto ok = plan_create(topo, part, r);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->instance.id, 511u);
}

TEST_F(PartitionTest, MemoryRules) {
  auto unaligned = plan_create(topo, part, req("x", "4", "1000"));
  ASSERT_FALSE(unaligned);
  EXPECT_EQ(unaligned.error().code(), EINVAL);
  EXPECT_NE(std::string(unaligned.error().detail()).find("use 4 KiB"), std::string::npos);
  auto too_much = plan_create(topo, part, req("x", "4", "9G"));
  ASSERT_FALSE(too_much);
  EXPECT_EQ(too_much.error().code(), ENOMEM);
  EXPECT_NE(std::string(too_much.error().detail()).find("8 GiB free"), std::string::npos);
  auto bad_node = plan_create(topo, part, req("x", "4", "1G@3"));
  ASSERT_FALSE(bad_node);
  EXPECT_EQ(bad_node.error().code(), ENOENT);
  commit(req("a", "4", "6G"));
  auto rest = plan_create(topo, part, req("b", "5", "3G"));
  ASSERT_FALSE(rest);
  EXPECT_EQ(rest.error().code(), ENOMEM);
  CreateRequest none = req("c", "6");
  none.memory.clear();
  EXPECT_EQ(plan_create(topo, part, none).error().code(), EINVAL);
}

TEST_F(PartitionTest, DeviceRules) {
  part.pool.devices = {"eth1"};
  CreateRequest a = req("a", "4");
  a.devices.push_back(*DeviceSpec::parse("net:eth1"));
  a.devices.push_back(*DeviceSpec::parse("file:/srv/a"));
  commit(a);
  CreateRequest b = req("b", "5");
  b.devices.push_back(*DeviceSpec::parse("net:eth1"));
  auto busy = plan_create(topo, part, b);
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().code(), EBUSY);
  EXPECT_NE(std::string(busy.error().detail()).find("instance 'a'"), std::string::npos);
  b.devices = {*DeviceSpec::parse("file:/srv/a:ro")};  // same file, other mode
  EXPECT_EQ(plan_create(topo, part, b).error().code(), EBUSY);
  b.devices = {*DeviceSpec::parse("net:eth9")};
  EXPECT_EQ(plan_create(topo, part, b).error().code(), ENOENT);
  b.devices = {*DeviceSpec::parse("listen:127.0.0.1:80"), *DeviceSpec::parse("listen:127.0.0.1:80")};
  EXPECT_EQ(plan_create(topo, part, b).error().code(), EINVAL);
}

TEST_F(PartitionTest, FailedCreateChangesNothing) {
  commit(req("a", "4-5"));
  Partition before = part;
  auto r = plan_create(topo, part, req("b", "5-6"));
  ASSERT_FALSE(r);
  EXPECT_EQ(part.instances.size(), before.instances.size());
  EXPECT_EQ(part.free_cpus(), before.free_cpus());
}

TEST_F(PartitionTest, CountPlacementWithKind) {
  CreateRequest r;
  r.name = "e";
  r.cpu_count = 4;
  r.kind = *KindSelector::parse("efficiency");
  r.memory.push_back(*MemorySpec::parse("1G"));
  auto p = plan_create(topo, part, r);
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_TRUE(p->instance.cpus.is_subset_of(CpuSet::range(12, 19)));
  EXPECT_EQ(p->instance.cpus.count(), 4u);
  r.kind = *KindSelector::parse("performance");
  r.cpu_count = 9;  // P PUs in the pool: 4-11 = 8
  auto no = plan_create(topo, part, r);
  ASSERT_FALSE(no);
  EXPECT_EQ(no.error().code(), ENOSPC);
  EXPECT_NE(std::string(no.error().detail()).find("of kind 1"), std::string::npos);
  r.kind = *KindSelector::parse("7");
  EXPECT_EQ(plan_create(topo, part, r).error().code(), ENOENT);
  EXPECT_FALSE(KindSelector::parse("fast"));
}

TEST_F(PartitionTest, ConflictingCpuOptions) {
  CreateRequest r = req("x", "4");
  r.cpu_count = 2;
  EXPECT_EQ(plan_create(topo, part, r).error().code(), EINVAL);
  CreateRequest none;
  none.name = "y";
  none.memory.push_back(*MemorySpec::parse("1G"));
  EXPECT_EQ(plan_create(topo, part, none).error().code(), EINVAL);
}

TEST_F(PartitionTest, WarnsOnSmtSplitAndHostSibling) {
  // Core of PUs 4-5: give 4 to one instance and 5 to another.
  commit(req("a", "4"));
  auto p = plan_create(topo, part, req("b", "5"));
  ASSERT_TRUE(p);
  ASSERT_FALSE(p->warnings.empty());
  EXPECT_NE(p->warnings[0].find("instance 'a' (SMT siblings)"), std::string::npos);
  // Pool 3-19: PU 3 shares a core with host PU 2.
  part = pool_of(topo, CpuSet::range(3, 19), kGiB);
  auto h = plan_create(topo, part, req("c", "3"));
  ASSERT_TRUE(h);
  ASSERT_FALSE(h->warnings.empty());
  EXPECT_NE(h->warnings[0].find("host cpu 2"), std::string::npos);
}

TEST(PartitionNuma, WarnsOnNumaSpanAndRemoteMemory) {
  Topology t = load(test::kEpyc9654);
  Partition part = pool_of(t, t.all_pus(), 16 * kGiB);
  CreateRequest r;
  r.name = "wide";
  r.cpus = CpuSet::of({0, 96});  // node 0 and node 1 on this machine
  r.memory.push_back(*MemorySpec::parse("1G@1"));
  auto p = plan_create(t, part, r);
  ASSERT_TRUE(p) << p.error().to_string();
  bool span = false;
  for (const auto& w : p->warnings) span |= w.find("span NUMA nodes 0,1") != std::string::npos;
  EXPECT_TRUE(span);
  r.name = "remote";
  r.cpus = CpuSet::of({1});
  auto q = plan_create(t, part, r);
  ASSERT_TRUE(q);
  bool remote = false;
  for (const auto& w : q->warnings) remote |= w.find("remote") != std::string::npos;
  EXPECT_TRUE(remote);
}

TEST(DeviceSpec, ParsesAndPrints) {
  EXPECT_EQ(DeviceSpec::parse("net:eth0")->to_string(), "net:eth0");
  auto f = DeviceSpec::parse("file:/data/x:ro");
  ASSERT_TRUE(f);
  EXPECT_TRUE(f->read_only);
  EXPECT_EQ(f->target, "/data/x");
  auto l = DeviceSpec::parse("listen:[::1]:6379");
  ASSERT_TRUE(l);
  EXPECT_EQ(l->target, "::1");
  EXPECT_EQ(l->port, 6379);
  EXPECT_EQ(l->to_string(), "listen:[::1]:6379");
  for (const char* bad : {"eth0", "net:", "net:a/b", "net:0123456789abcdef", "file:rel", "listen:1.2.3.4",
                          "listen:1.2.3.4:0", "listen:1.2.3.4:70000", "listen:host:80", "gpu:0"}) {
    auto r = DeviceSpec::parse(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), EINVAL) << bad;
    EXPECT_NE(std::string(r.error().detail()).find("accepted forms"), std::string::npos);
  }
}

}  // namespace
}  // namespace mk
