// Count-only placement: compact (whole cores, one L3/node, tightest fit) and
// spread, on recorded topologies.
#include <gtest/gtest.h>

#include "mk/units.h"
#include "mkernel/placement.h"
#include "test_topologies.h"

namespace mk {
namespace {

using test::load;

TEST(Placement, CompactTakesWholeCoresFirst) {
  Topology t = load(test::kRaptorLake);
  // Free: 3-19. Core {2,3} is split (2 is the host's); cores {4,5}... whole.
  auto c = place_cpus(t, CpuSet::range(3, 19), 4, false);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->to_string(), "4-7");
  // An odd count uses the leftover of the split core before splitting a whole one.
  auto odd = place_cpus(t, CpuSet::range(3, 11), 3, false);
  ASSERT_TRUE(odd);
  EXPECT_EQ(odd->to_string(), "3-5");
}

TEST(Placement, CompactPrefersOneL3AndTightestFit) {
  Topology t = load(test::kEpyc9654);  // 24 L3 groups of 8 cores / 16 PUs
  CpuSet free = t.all_pus();
  auto c = place_cpus(t, free, 16, false);
  ASSERT_TRUE(c);
  // All 16 PUs inside one L3 group.
  int groups = 0;
  for (const auto& g : t.l3_groups) groups += c->is_subset_of(g.pus) ? 1 : 0;
  EXPECT_EQ(groups, 1);
  // Use 6 of the first L3's 8 cores: a 4-PU request should go to its two
  // remaining whole cores (tightest fit) rather than open a fresh L3.
  CpuSet l3_0 = t.l3_groups[0].pus;
  CpuSet taken;
  for (uint32_t pu : l3_0)
    if (t.find_pu(pu)->core < t.find_pu(static_cast<uint32_t>(l3_0.first()))->core + 6) taken.insert(pu);
  ASSERT_EQ(taken.count(), 12u);
  auto small = place_cpus(t, free - taken, 4, false);
  ASSERT_TRUE(small);
  EXPECT_TRUE(small->is_subset_of(l3_0));
}

TEST(Placement, CompactStaysInOneNumaNodeWhenItFits) {
  Topology t = load(test::kEpyc9654);
  auto c = place_cpus(t, t.all_pus(), 100, false);  // > one L3, < one node (192)
  ASSERT_TRUE(c);
  int nodes = 0;
  for (const auto& n : t.numa_nodes) nodes += c->is_subset_of(n.pus) ? 1 : 0;
  EXPECT_EQ(nodes, 1);
  EXPECT_EQ(c->count(), 100u);
}

TEST(Placement, SpreadUsesOnePuPerCoreAcrossNodes) {
  Topology t = load(test::kEpyc9654);
  auto c = place_cpus(t, t.all_pus(), 4, true);
  ASSERT_TRUE(c);
  ASSERT_EQ(c->count(), 4u);
  std::set<int32_t> nodes, cores;
  for (uint32_t cpu : *c) {
    nodes.insert(t.find_pu(cpu)->numa);
    cores.insert(static_cast<int32_t>(t.find_pu(cpu)->core));
  }
  EXPECT_EQ(nodes.size(), 2u);
  EXPECT_EQ(cores.size(), 4u);
}

TEST(Placement, SpreadFallsBackToSiblings) {
  Topology t = load(test::kRaptorLake);
  CpuSet p = CpuSet::range(0, 3);  // two SMT cores
  auto c = place_cpus(t, p, 3, true);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->count(), 3u);
}

TEST(Placement, Errors) {
  Topology t = load(test::kRaptorLake);
  auto zero = place_cpus(t, t.all_pus(), 0, false);
  ASSERT_FALSE(zero);
  EXPECT_EQ(zero.error().code(), EINVAL);
  auto many = place_cpus(t, CpuSet::range(0, 3), 5, false);
  ASSERT_FALSE(many);
  EXPECT_EQ(many.error().code(), ENOSPC);
  EXPECT_STREQ(many.error().detail(), "5 cpu(s) asked, 4 free: 0-3");
}

}  // namespace
}  // namespace mk
