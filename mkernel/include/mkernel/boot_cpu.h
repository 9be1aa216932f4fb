// DOC: mk::boot_cpu_of — one CPU as an image is told about it.
//
// What this is: the single source of truth for how a PU of the Topology is
// described to an image: the boot tree's /cpus entries (manifest.cc) and the
// CpuMsg of a CPU move (cpu_move.cc, kMsgCpuRelease / kMsgCpuAdd) both come
// from here, so an image that grows sees the same core, package, NUMA node,
// kind and efficiency it would have seen at boot.
//
// Returns: nullopt when the CPU is not in the topology (callers name it).
#pragma once

#include <cstdint>
#include <optional>

#include "mk/boot_tree.h"
#include "mkernel/topology.h"

namespace mk {

std::optional<BootCpu> boot_cpu_of(const Topology& topo, uint32_t cpu);

}  // namespace mk
