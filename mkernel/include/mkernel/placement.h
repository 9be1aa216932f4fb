// DOC: mk::place_cpus — choosing CPUs when `create` is given only a count.
//
// What this is: the placement step of `mkctl create --cpu-count N` and of
// the planner. It picks N CPUs among `candidates` (free pool CPUs, already
// filtered by kind and NUMA node) using the topology's structure.
//
// Compact (default), in order of preference:
//   1. inside one L3 group, else one NUMA node, else the whole candidate set;
//   2. among groups that fit, whole cores before split ones, then the tightest
//      fit (so large groups stay whole for large instances), then the lowest
//      CPU number (deterministic);
//   3. within the group: whole free cores first, then the leftover PUs of cores
//      that are already split, and only then a fresh core is split.
// Spread (--spread): one PU per core, taking cores round-robin across L3
// groups (and NUMA nodes), then second PUs the same way.
//
// Returns: ENOSPC when fewer than N candidates exist (the message gives how
// many are free), EINVAL for N == 0.
#pragma once

#include <cstdint>

#include "mk/cpu_set.h"
#include "mk/result.h"
#include "mkernel/topology.h"

namespace mk {

Result<CpuSet> place_cpus(const Topology& topo, const CpuSet& candidates, uint32_t count, bool spread);

}  // namespace mk
