// DOC: mk::Topology — the machine as hwloc sees it, as plain data.
//
// What this is: the first step of every flow. `mkctl topology` prints it;
// the pool, validation and the planner read it to know which CPUs exist,
// which core / L3 / NUMA node / CPU kind each PU belongs to, and which I/O
// devices the machine has. It is loaded once, either from the live machine
// or from an hwloc XML file (`--topology FILE`: experiments and tests; then
// nothing is ever booted). After loading it is a plain value with no hwloc
// handle inside, so tests can also build one by hand.
//
// Lifecycle:
//   1. load_topology_live() or load_topology_xml(path) (the hwloc seam:
//      topology.cc, and picture.cc, which loads the same source again to
//      annotate it for lstopo, are the only files that include hwloc.h);
//   2. read the vectors; look PUs up with find_pu();
//   3. copy or drop it freely.
//
// Unhappy paths:
//   1. the XML file is missing/unreadable → ENOENT/EACCES naming the path;
//   2. hwloc rejects the XML → EINVAL with hwloc's reason when it gives one;
//   3. a topology without PUs → EINVAL.
//
// Conventions: CPU numbers are OS indices (what Linux calls cpuN). NUMA node
// numbers are OS indices. CPU kinds follow hwloc: kind 0 is the most
// power-efficient; `efficiency` is hwloc's rank, -1 when hwloc could not rank
// the kinds. A machine without kind information has an empty `kinds`.
// A PU can be local to several NUMA nodes (KNL SNC4: a DRAM and an MCDRAM
// node per quadrant); Pu::numa and Core::numa name its home node, the
// lowest-numbered ordinary-DRAM one (subtype "" or "DRAM"), else the lowest.
// NumaNode::pus holds the PUs whose home it is (what Linux lists in
// nodeN/cpulist, so the nodes' pus partition the PUs and a memory-side node
// such as MCDRAM has none); NumaNode::local_pus is hwloc's locality cpuset.
// numa_nodes is sorted by OS index; every other vector is in hwloc's logical
// order except pus (sorted by OS index).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mk/cpu_set.h"
#include "mk/result.h"

namespace mk {

struct Pu {
  uint32_t os_index = 0;
  uint32_t core = 0;     // index into Topology::cores
  uint32_t package = 0;  // package OS index
  int32_t numa = -1;     // home NUMA node OS index (-1: none); see the DOC above
  int32_t kind = -1;     // index into Topology::kinds (-1: no kinds)
  int32_t l3 = -1;       // index into Topology::l3_groups (-1: no L3)
};

struct Core {
  uint32_t index = 0;     // logical index (dense, 0..n-1)
  uint32_t os_index = 0;  // core id within its package as the OS reports it
  uint32_t package = 0;
  int32_t numa = -1;
  CpuSet pus;  // SMT siblings
};

struct NumaNode {
  uint32_t os_index = 0;
  uint64_t memory_bytes = 0;  // local memory
  std::string subtype;        // e.g. "MCDRAM" on KNL, "" for DRAM
  CpuSet pus;        // PUs whose home node this is (empty for memory-side nodes)
  CpuSet local_pus;  // PUs hwloc says are close to it (its cpuset); ⊇ pus
};

struct CpuKind {
  uint32_t index = 0;      // 0 = most power-efficient (hwloc order)
  int32_t efficiency = -1; // hwloc rank, -1 = unrankable
  CpuSet pus;
  std::string core_type;        // "IntelCore", "IntelAtom", ... ("" if absent)
  uint32_t frequency_max_mhz = 0;  // 0 if absent
  std::vector<std::pair<std::string, std::string>> infos;  // every info hwloc gives
};

struct Package {
  uint32_t os_index = 0;
  std::string model;  // CPUModel info when present
  CpuSet pus;
};

struct CacheGroup {
  uint32_t index = 0;
  uint64_t size_bytes = 0;
  std::string subtype;  // "MemorySideCache" when hwloc says so (KNL MCDRAM cache), else ""
  CpuSet pus;
};

struct IoDevice {
  std::string kind;       // "net", "block", "pci", "gpu", "dma", "openfabrics", "coproc", "other"
  std::string name;       // OS device name ("eth0", "nvme0n1") or PCI id for pci
  std::string pci_busid;  // "0000:00:1f.6" when known
  std::string vendor_device;  // "8086:15fa": the PCI device's, or its PCI parent's
  std::string description;    // hwloc's class/name info when present
  int32_t numa = -1;          // locality when known
};

struct Topology {
  std::string source;  // "live" or the XML path
  bool is_live = false;
  std::string machine_model;  // DMI / CPU model summary, may be empty
  std::vector<Package> packages;
  std::vector<NumaNode> numa_nodes;
  std::vector<CacheGroup> l3_groups;
  std::vector<Core> cores;
  std::vector<Pu> pus;  // sorted by os_index
  std::vector<CpuKind> kinds;
  std::vector<IoDevice> devices;

  CpuSet all_pus() const;
  const Pu* find_pu(uint32_t os_index) const;
  const NumaNode* find_numa(uint32_t os_index) const;
  uint64_t total_memory() const;
  // Home NUMA nodes of `cpus`, ascending (CPUs without a node are skipped).
  std::vector<uint32_t> nodes_of(const CpuSet& cpus) const;
  // The node holding most of `cpus` (ties: the lowest); the first node when
  // none of them has one, 0 on a topology without nodes.
  uint32_t main_node_of(const CpuSet& cpus) const;
};

// Loads the machine this process runs on (the PUs and NUMA nodes this
// process is allowed to use, plus I/O devices).
// Returns: EIO if hwloc fails to initialise or load; EINVAL if it reports no
// PUs or a PU index >= CpuSet::kMaxCpus.
Result<Topology> load_topology_live();

// Loads an hwloc XML export (hwloc 2.x format).
// Returns: ENOENT/EACCES (or open(2)'s other errno) if the file cannot be
// read; EISDIR if it is a directory; EINVAL if hwloc rejects it, it has no
// PUs, or a PU index >= CpuSet::kMaxCpus.
Result<Topology> load_topology_xml(const std::string& path);

}  // namespace mk
