// DOC: mk::Partition — the pool plus the instances carved out of it, and the
// validation that keeps them exclusive.
//
// What this is: the registry state of DESIGN.md §1 ("the host owns the pool
// and the registry of instances") as a value, and the rules every `create`
// passes before anything is committed. Validation is always on, as in kerf.
//
// Happy path (mkctl create):
//   1. plan_create(topo, partition, request) checks every rule and, when only
//      a CPU count is given, chooses the CPUs (placement.h) — it changes
//      nothing;
//   2. the caller commits the returned Instance with Partition::add() (which
//      cannot fail once plan_create succeeded on the same partition), then
//      persists the partition.
//
// Rules, each with its own error naming what conflicts and what is free:
//   - the pool is set (ENOENT otherwise: run `mkctl init`);
//   - names valid and unique (EINVAL / EEXIST); ids unique in 1..511 (ERANGE /
//     EEXIST), the lowest free id when none is given;
//   - CPUs exist (ENOENT), are in the pool rather than the host's (EACCES),
//     and belong to no other instance (EBUSY: "cpu 5 already belongs to
//     instance 'db' (cpus 4-7); free pool cpus: 8-11");
//   - memory page aligned (EINVAL), on nodes that exist (ENOENT), within what
//     the pool has left on each node (ENOMEM);
//   - devices well formed, in the pool when they are machine devices (ENOENT),
//     held by no other instance (EBUSY).
// Warnings (returned, not errors): the instance splits SMT siblings with
// another instance or with the host; it spans NUMA nodes; its memory sits on
// a node none of its CPUs is on.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mk/cpu_set.h"
#include "mk/result.h"
#include "mkernel/instance.h"
#include "mkernel/pool.h"
#include "mkernel/topology.h"

namespace mk {

struct Partition {
  bool has_pool = false;
  Pool pool;
  std::vector<Instance> instances;  // sorted by id

  const Instance* find(std::string_view name) const;
  Instance* find(std::string_view name);
  const Instance* find_id(uint32_t id) const;
  const Instance* owner_of_cpu(uint32_t cpu) const;
  CpuSet used_cpus() const;
  CpuSet free_cpus() const;  // pool cpus no instance owns
  uint64_t used_memory_on(uint32_t node) const;
  uint64_t free_memory_on(uint32_t node) const;

  void add(Instance inst);            // keeps `instances` sorted by id
  bool remove(std::string_view name);  // false if absent
};

// Which CPU kind --kind asks for.
struct KindSelector {
  enum class By { Performance, Efficiency, Index } by = By::Index;
  uint32_t index = 0;
  // "performance" | "efficiency" | "p" | "e" | INDEX. Returns: EINVAL.
  static Result<KindSelector> parse(std::string_view text);
};

struct CreateRequest {
  std::string name;
  std::optional<uint32_t> id;
  std::optional<CpuSet> cpus;         // explicit list, or
  uint32_t cpu_count = 0;             // a count placed by the runtime
  std::optional<KindSelector> kind;   // count only
  std::optional<uint32_t> numa;       // count only: node to place on
  bool spread = false;                // count only: one PU per core, across L3s/nodes
  std::vector<MemorySpec> memory;     // SIZE or SIZE@NODE, at least one...
  bool allow_no_memory = false;       // ...unless the planner found no pool memory
  std::vector<DeviceSpec> devices;
};

struct CreatePlan {
  Instance instance;
  std::vector<std::string> warnings;
};

Result<CreatePlan> plan_create(const Topology& topo, const Partition& part, const CreateRequest& req);

// Warnings about an instance's placement (SMT sharing, NUMA span).
std::vector<std::string> placement_warnings(const Topology& topo, const Partition& part,
                                            const Instance& inst);

// Resolves --kind to a kind index. Returns: ENOENT if the topology reports no
// kinds or not that index.
Result<uint32_t> resolve_kind(const Topology& topo, const KindSelector& sel);

}  // namespace mk
