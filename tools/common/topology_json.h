// DOC: the two printed forms of an mk::Topology (Boost.JSON; tools/ only).
//
// What this is: the output of `mkctl topology` — `--json` for scripts and
// tests, a table for people. Both are pure functions of the Topology value,
// so they render live machines and XML files alike and never touch hwloc.
//
// JSON shape (stable; fields are only ever added):
//   source, is_live, machine_model,
//   summary   {pus, cores, numa_nodes, packages, kinds, l3_groups, devices, memory_bytes}
//   pus       [{os_index, core, package, numa, kind, l3}]        (-1: none)
//   cores     [{index, os_index, package, numa, pus}]
//   numa_nodes[{os_index, memory_bytes, subtype, pus, local_pus}]
//   packages  [{os_index, model, pus}]
//   l3_groups [{index, size_bytes, subtype, pus}]
//   kinds     [{index, efficiency, pus, core_type, frequency_max_mhz, infos{}}]
//   devices   [{kind, name, pci_busid, vendor_device, description, numa}]
// Every PU set is a cpu-list string ("0-11,16"), the syntax --cpus accepts.
// Kind 0 is the most power-efficient; efficiency -1 means hwloc could not
// rank the kinds. memory_bytes 0 means the source gave no size.
#pragma once

#include <boost/json.hpp>
#include <string>

#include "mkernel/topology.h"

namespace mk::tools {

boost::json::value topology_to_json(const Topology& t);

// A readable multi-line summary ending in a newline: machine, NUMA nodes,
// CPU kinds, L3 groups, cores with their SMT siblings (runs of alike cores
// folded into one line, so a 384-PU machine stays short) and devices.
std::string topology_to_text(const Topology& t);

}  // namespace mk::tools
