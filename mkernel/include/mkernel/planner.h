// DOC: mk::make_plan — proposing a whole partitioning of the pool.
//
// What this is: `mkctl plan`. Given a policy and an instance count, it turns
// the free part of the pool into a list of CreateRequests with explicit CPUs
// and memory, and runs every one of them through plan_create() against a
// scratch copy of the partition, so a plan is always a validated proposal.
// `--apply` commits all of them at once or none.
//
// Policies:
//   pe-split  one instance per CPU kind (P-cores vs E-cores on hybrid parts;
//             kind order as hwloc: the most efficient first). --instances, if
//             given, must equal the number of kinds. On a machine without kinds
//             `kinds_override` declares them (mkctl plan --kinds 0:1).
//   per-numa  one instance per NUMA node that has free pool CPUs (the first N
//             when --instances N is smaller).
//   even      N equal parts, each a run of whole cores in topology order
//             (NUMA node, then L3, then core), so parts align to caches and
//             nodes as far as N allows; PUs left over stay in the pool.
// Memory: --memory SIZE per instance, or else an equal share of the free pool
// memory on each instance's node, rounded down to 2 MiB.
//
// Returns: EINVAL (N is 0, above 511, or does not fit the policy), ENOENT (no
// pool / no kinds), ENOSPC (fewer free CPUs than instances), or the first
// validation error of a generated instance.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mk/result.h"
#include "mkernel/partition.h"
#include "mkernel/topology.h"

namespace mk {

enum class PlanPolicy { PeSplit, PerNuma, Even };
const char* to_string(PlanPolicy p);
Result<PlanPolicy> parse_plan_policy(std::string_view text);

struct PlanRequest {
  PlanPolicy policy = PlanPolicy::Even;
  std::optional<uint32_t> instances;
  std::optional<uint64_t> memory_per_instance;
  std::string name_prefix;             // default: the policy's names
  std::vector<CpuSet> kinds_override;  // pe-split on machines without kinds
};

struct Plan {
  PlanPolicy policy;
  std::vector<CreatePlan> instances;
  std::vector<std::string> warnings;
};

Result<Plan> make_plan(const Topology& topo, const Partition& part, const PlanRequest& req);

// "0:1" or "12-19:0-11": CPU lists of each kind, most efficient first.
// Returns: EINVAL for malformed lists or overlapping kinds.
Result<std::vector<CpuSet>> parse_kinds_override(std::string_view text);

// Applies kinds_override to a topology (replaces its kinds, efficiency = index).
// Returns: ENOENT if a listed CPU does not exist, EINVAL if kinds overlap.
Result<void> override_kinds(Topology& topo, const std::vector<CpuSet>& kinds);

}  // namespace mk
