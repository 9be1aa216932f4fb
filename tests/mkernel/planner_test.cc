// Planner policies on the recorded topologies, and their refusals.
#include <gtest/gtest.h>

#include "mk/units.h"
#include "mkernel/planner.h"
#include "test_topologies.h"

namespace mk {
namespace {

using test::load;
using test::pool_of;

void expect_disjoint(const Plan& p) {
  CpuSet seen;
  for (const auto& ip : p.instances) {
    EXPECT_FALSE(ip.instance.cpus.intersects(seen)) << ip.instance.name;
    seen |= ip.instance.cpus;
  }
}

TEST(Planner, PeSplitOnRaptorLake) {
  Topology t = load(test::kRaptorLake);
  Partition part = pool_of(t, t.all_pus(), 16 * kGiB);
  PlanRequest r;
  r.policy = PlanPolicy::PeSplit;
  auto p = make_plan(t, part, r);
  ASSERT_TRUE(p) << p.error().to_string();
  ASSERT_EQ(p->instances.size(), 2u);
  EXPECT_EQ(p->instances[0].instance.name, "ecores");
  EXPECT_EQ(p->instances[0].instance.cpus.to_string(), "12-19");
  EXPECT_EQ(p->instances[1].instance.name, "pcores");
  EXPECT_EQ(p->instances[1].instance.cpus.to_string(), "0-11");
  EXPECT_EQ(p->instances[0].instance.memory_bytes(), 8 * kGiB);
  expect_disjoint(*p);
}

TEST(Planner, PeSplitThreeKindsOnArrowLake) {
  Topology t = load(test::kArrowLake);
  Partition part = pool_of(t, t.all_pus(), 4 * kGiB);
  PlanRequest r;
  r.policy = PlanPolicy::PeSplit;
  auto p = make_plan(t, part, r);
  ASSERT_TRUE(p) << p.error().to_string();
  ASSERT_EQ(p->instances.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(p->instances[i].instance.cpus, t.kinds[i].pus);
  r.instances = 2;
  auto wrong = make_plan(t, part, r);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code(), EINVAL);
}

TEST(Planner, PeSplitNeedsKindsOrOverride) {
  Topology t = load(test::kEpyc7763);
  Partition part = pool_of(t, CpuSet::range(0, 3), kGiB);
  PlanRequest r;
  r.policy = PlanPolicy::PeSplit;
  auto no = make_plan(t, part, r);
  ASSERT_FALSE(no);
  EXPECT_EQ(no.error().code(), ENOENT);
  EXPECT_NE(std::string(no.error().detail()).find("--kinds"), std::string::npos);
  r.kinds_override = *parse_kinds_override("0-1:2-3");
  auto yes = make_plan(t, part, r);
  ASSERT_TRUE(yes) << yes.error().to_string();
  EXPECT_EQ(yes->instances[0].instance.cpus.to_string(), "0-1");
  EXPECT_EQ(yes->instances[1].instance.cpus.to_string(), "2-3");
}

TEST(Planner, KindsOverrideErrors) {
  EXPECT_EQ(parse_kinds_override("0").error().code(), EINVAL);
  EXPECT_EQ(parse_kinds_override("0-2:2").error().code(), EINVAL);
  EXPECT_EQ(parse_kinds_override("a:1").error().code(), EINVAL);
  Topology t = load(test::kRaptorLake);
  EXPECT_EQ(override_kinds(t, *parse_kinds_override("0:99")).error().code(), ENOENT);
}

TEST(Planner, PerNumaOnEpyc9654) {
  Topology t = load(test::kEpyc9654);
  Partition part = pool_of(t, t.all_pus(), 64 * kGiB);
  PlanRequest r;
  r.policy = PlanPolicy::PerNuma;
  r.instances = 2;
  auto p = make_plan(t, part, r);
  ASSERT_TRUE(p) << p.error().to_string();
  ASSERT_EQ(p->instances.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(p->instances[i].instance.cpus, t.numa_nodes[i].pus);
    EXPECT_EQ(p->instances[i].instance.memory[0].node, t.numa_nodes[i].os_index);
  }
  expect_disjoint(*p);
  r.instances = 3;
  EXPECT_EQ(make_plan(t, part, r).error().code(), EINVAL);
}

TEST(Planner, PerNumaOnKnlSkipsCpulessNodes) {
  Topology t = load(test::kKnl);
  Partition part = pool_of(t, t.all_pus(), kGiB);
  PlanRequest r;
  r.policy = PlanPolicy::PerNuma;
  auto p = make_plan(t, part, r);
  ASSERT_TRUE(p) << p.error().to_string();
  std::size_t with_cpus = 0;
  for (const auto& n : t.numa_nodes) with_cpus += n.pus.empty() ? 0 : 1;
  EXPECT_GE(p->instances.size(), 1u);
  EXPECT_LE(p->instances.size(), with_cpus);
  expect_disjoint(*p);
}

TEST(Planner, EvenOnEpyc9654Into192) {
  Topology t = load(test::kEpyc9654);
  Partition part = pool_of(t, t.all_pus(), 192 * kGiB);
  PlanRequest r;
  r.policy = PlanPolicy::Even;
  r.instances = 192;
  auto p = make_plan(t, part, r);
  ASSERT_TRUE(p) << p.error().to_string();
  ASSERT_EQ(p->instances.size(), 192u);
  for (const auto& ip : p->instances) {
    ASSERT_EQ(ip.instance.cpus.count(), 2u);
    // Two PUs of one core: no SMT sharing between instances.
    const Pu* a = t.find_pu(static_cast<uint32_t>(ip.instance.cpus.first()));
    const Pu* b = t.find_pu(static_cast<uint32_t>(ip.instance.cpus.last()));
    EXPECT_EQ(a->core, b->core);
    EXPECT_TRUE(ip.warnings.empty()) << ip.warnings[0];
  }
  expect_disjoint(*p);
}

TEST(Planner, EvenRefusals) {
  Topology t = load(test::kRaptorLake);
  Partition part = pool_of(t, CpuSet::range(1, 4), kGiB);
  PlanRequest r;
  r.policy = PlanPolicy::Even;
  EXPECT_EQ(make_plan(t, part, r).error().code(), EINVAL);  // no --instances
  r.instances = 5;
  EXPECT_EQ(make_plan(t, part, r).error().code(), ENOSPC);
  r.instances = 0;
  EXPECT_EQ(make_plan(t, part, r).error().code(), EINVAL);
  r.instances = 2;
  r.memory_per_instance = 2 * kGiB;  // 2 x 2G > 1G pool
  EXPECT_EQ(make_plan(t, part, r).error().code(), ENOMEM);
  Partition none;
  EXPECT_EQ(make_plan(t, none, r).error().code(), ENOENT);
}

TEST(Planner, EvenLeavesRemainderAndReportsIt) {
  Topology t = load(test::kRaptorLake);
  Partition part = pool_of(t, CpuSet::range(12, 19), kGiB);
  PlanRequest r;
  r.policy = PlanPolicy::Even;
  r.instances = 3;
  auto p = make_plan(t, part, r);
  ASSERT_TRUE(p) << p.error().to_string();
  for (const auto& ip : p->instances) EXPECT_EQ(ip.instance.cpus.count(), 2u);
  ASSERT_FALSE(p->warnings.empty());
  EXPECT_NE(p->warnings[0].find("18-19 stay free"), std::string::npos);
}

TEST(Planner, ParsesPolicies) {
  EXPECT_EQ(*parse_plan_policy("pe-split"), PlanPolicy::PeSplit);
  EXPECT_EQ(*parse_plan_policy("per-numa"), PlanPolicy::PerNuma);
  EXPECT_EQ(*parse_plan_policy("even"), PlanPolicy::Even);
  EXPECT_EQ(parse_plan_policy("random").error().code(), EINVAL);
}

}  // namespace
}  // namespace mk

namespace mk {
namespace {

TEST(Planner, PoolWithoutMemoryPlansCpusAndSaysSo) {
  Topology t = test::load(test::kEpyc9654);
  Partition part = test::pool_of(t, t.all_pus(), 0);
  part.pool.memory.clear();
  PlanRequest r;
  r.policy = PlanPolicy::PerNuma;
  auto p = make_plan(t, part, r);
  ASSERT_TRUE(p) << p.error().to_string();
  ASSERT_EQ(p->instances.size(), 2u);
  EXPECT_TRUE(p->instances[0].instance.memory.empty());
  ASSERT_FALSE(p->warnings.empty());
  EXPECT_NE(p->warnings[0].find("no memory on NUMA node 0"), std::string::npos);
}

}  // namespace
}  // namespace mk
