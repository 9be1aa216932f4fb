// DOC: mk::Pool — what the host sets aside for instances.
//
// What this is: the first decision of a partitioned machine (`mkctl init`).
// The pool is a set of CPUs, a memory capacity per NUMA node, and a list of
// I/O devices. Everything outside it stays with the host (instance 0), and
// every instance is carved out of it (partition.h).
//
// Happy path:
//   1. available_memory() tells how much memory each node can give (free
//      memory on the live machine, the node size for an XML topology);
//   2. make_pool() validates a PoolRequest against the topology and the
//      instances that already exist, and fills defaults;
//   3. the caller stores the Pool in the runtime state.
//
// Defaults (no arguments): every CPU but the first (the host keeps CPU 0),
// and kDefaultPoolMemoryPercent of each node's available memory, rounded
// down to 2 MiB; every device the topology lists is left to the host.
//
// Unhappy paths (make_pool returns an error, nothing is stored):
//   1. a CPU that does not exist → ENOENT naming it and the machine's CPUs;
//   2. memory above what a node can give, on a node that does not exist, or
//      not page aligned → EINVAL/ENOENT/ENOMEM naming node and figures;
//   3. a device the topology does not list → ENOENT with the known devices;
//   4. an existing instance whose CPUs, memory or devices would fall outside
//      the new pool → EBUSY naming the instance (delete it first).
// Warnings (not errors): the pool takes every CPU (the host keeps none).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mk/cpu_set.h"
#include "mk/result.h"
#include "mkernel/instance.h"
#include "mkernel/sysroot.h"
#include "mkernel/topology.h"

namespace mk {

inline constexpr unsigned kDefaultPoolMemoryPercent = 50;
// available_memory() reports this for a node whose size the topology does not
// give (many recorded hwloc XML files carry no memory sizes): explicit sizes
// on it are then accepted unchecked, with a warning, and defaults give none.
inline constexpr uint64_t kUnknownMemory = UINT64_MAX;
inline constexpr uint64_t kPoolMemoryGranule = 2 * 1024 * 1024;

// "SIZE" or "SIZE@NODE" as given to --memory.
struct MemorySpec {
  uint64_t bytes = 0;
  std::optional<uint32_t> node;
  // Returns: EINVAL for a malformed size or node (see mk/units.h).
  static Result<MemorySpec> parse(std::string_view text);
};

struct Pool {
  CpuSet cpus;
  std::vector<MemoryRegion> memory;  // one entry per node, sorted by node
  std::vector<std::string> devices;

  uint64_t memory_on(uint32_t node) const;
  uint64_t total_memory() const;
  bool has_device(std::string_view name) const;
};

struct PoolRequest {
  std::optional<CpuSet> cpus;
  std::vector<MemorySpec> memory;
  std::vector<std::string> devices;
};

struct PoolDecision {
  Pool pool;
  std::vector<std::string> warnings;
};

// Memory each NUMA node can give to the pool: for an XML topology the node's
// size (kUnknownMemory when the file gives none); for the live machine the node's MemFree from sysfs (or MemAvailable
// from /proc/meminfo on a machine without per-node files).
// Returns: EIO if the live machine's memory files cannot be read or parsed.
Result<std::vector<MemoryRegion>> available_memory(const Topology& topo, const SysRoot& root);

Result<PoolDecision> make_pool(const Topology& topo, const PoolRequest& req,
                               const std::vector<MemoryRegion>& available,
                               const std::vector<Instance>& existing);

// Splits `bytes` across `nodes` in equal page-aligned parts (the first node
// takes the remainder). Used when a size is given without @NODE.
std::vector<MemoryRegion> split_memory(uint64_t bytes, const std::vector<uint32_t>& nodes);

}  // namespace mk
