// Shared helpers for mkernel tests: load the recorded hwloc topologies in
// tests/data/topologies and build partitions over them.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "mkernel/partition.h"
#include "mkernel/topology.h"

namespace mk::test {

inline std::string topo_path(const std::string& file) {
  return std::string(MK_TEST_DATA) + "/topologies/" + file;
}

inline Topology load(const std::string& file) {
  auto t = load_topology_xml(topo_path(file));
  EXPECT_TRUE(t) << file << ": " << (t ? "" : t.error().to_string());
  return t ? *t : Topology{};
}

inline constexpr const char* kRaptorLake = "Intel-RaptorLake-Corei7-1370P.xml";
inline constexpr const char* kArrowLake = "Intel-ArrowLake-CoreUltra5-225U.xml";
inline constexpr const char* kStrixPoint = "AMD-1Ah-Zen5StrixPoint-RyzenAI9HX370.xml";
inline constexpr const char* kEpyc9654 = "AMD-19h-Zen4-2xEpyc-9654.xml";
inline constexpr const char* kEpyc7763 = "AMD-19h-Zen3-2xEpyc-7763.xml";
inline constexpr const char* kKnl = "64intel64-fakeKNL-SNC4-hybrid.xml";
inline constexpr const char* kFakeKinds = "fakecpukinds.xml";

// A partition whose pool is `cpus` with `per_node` bytes on every node.
inline Partition pool_of(const Topology& t, const CpuSet& cpus, uint64_t per_node) {
  Partition p;
  p.has_pool = true;
  p.pool.cpus = cpus;
  for (const auto& n : t.numa_nodes) p.pool.memory.push_back({n.os_index, per_node});
  return p;
}

}  // namespace mk::test
