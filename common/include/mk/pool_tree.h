// DOC: mk::PoolTree — the pool (what the host sets aside for instances) as
// an FDT, schema "mkernel,pool-v1" (docs/boot-tree.md, "Pool tree").
//
// What this is: the CPUs, memory per NUMA node and device names of the pool
// (DESIGN.md §1), serialized with the same libfdt wrappers and the same
// strictness as the boot tree. mkernel emits it for `mkctl show --dtb` and
// for anything that wants the pool as one self-describing blob; any reader
// (a tool, a test, a later native backend) parses it back with
// parse_pool_tree(), which treats the blob as untrusted.
//
// Happy path:
//   1. mkernel fills a PoolTree from the pool it committed at `mkctl init`.
//   2. emit_pool_tree() validates it and writes the FDT.
//   3. parse_pool_tree() returns a PoolTree equal to the one emitted.
// Unhappy paths:
//   1. Invalid pool (CPU >= 8192, duplicate NUMA node, bad device name):
//      emit fails with EINVAL, nothing is written.
//   2. Corrupt, truncated, oversized or foreign blob: parse fails with
//      EBADMSG, E2BIG, EPROTONOSUPPORT or EINVAL (as for the boot tree).
//
// Returns:
//   emit_pool_tree:     EINVAL, E2BIG.
//   parse_pool_tree:    E2BIG, EBADMSG, EPROTONOSUPPORT, EINVAL.
//   validate_pool_tree: EINVAL.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mk/abi/boot_tree_abi.h"
#include "mk/cpu_set.h"
#include "mk/result.h"

namespace mk {

struct PoolMemory {
  uint32_t node = 0;   // NUMA node, < 1024, unique in the pool
  uint64_t bytes = 0;  // > 0, <= 2^62
  bool operator==(const PoolMemory&) const = default;
};

struct PoolTree {
  CpuSet cpus;                       // may be empty; every index < 8192
  std::vector<PoolMemory> memory;    // at most 1024 entries
  // Host device names (interfaces, block devices, paths): at most 1024,
  // unique, 1..255 printable ASCII characters other than space and ','.
  std::vector<std::string> devices;
  bool operator==(const PoolTree&) const = default;
};

Result<void> validate_pool_tree(const PoolTree& pool);
Result<std::vector<uint8_t>> emit_pool_tree(const PoolTree& pool);
Result<PoolTree> parse_pool_tree(std::span<const uint8_t> blob);

}  // namespace mk
