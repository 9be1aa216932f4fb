// DOC: mk::tools::apply_partition_action — what init, create, delete, show
// and plan do to a partition, in one place for both places that run them.
//
// What this is: the executor behind the partition actions of the control
// protocol. mkerneld runs it on the partition it owns (the live machine);
// mkctl runs it itself on the state file of an hwloc XML topology
// (--topology: planning only). Both therefore answer with the same
// rpc::Response: the same --json document and the same text.
//
// Happy path:
//   1. the caller holds the partition (a working copy for a change);
//   2. apply_partition_action() validates through the mkernel library
//      (make_pool, plan_create, make_plan), then changes the copy;
//   3. `changed` says whether the caller must persist the copy; it does, and
//      only then makes the copy current (validate, then commit).
// Unhappy paths: a refused action returns a failure Response with the
// library's error and a hint ("nothing was changed"), and leaves `part`
// exactly as it was. failure_hint() gives the same hint for a failed save.
// Host actions (host-status, host-stop) are not partition actions: EOPNOTSUPP.
#pragma once

#include <string>

#include "mkernel/partition.h"
#include "mkernel/sysroot.h"
#include "mkernel/topology.h"
#include "rpc_protocol.h"

namespace mk::tools {

struct ActionEnv {
  const Topology& topology;
  const SysRoot& sysroot;
  std::string topology_source;  // "live" or the XML path
};

rpc::Response apply_partition_action(const rpc::Action& action, const ActionEnv& env, Partition& part,
                                     bool& changed);

// What a failure of `action` left behind, for the user ("nothing was changed").
const char* failure_hint(const rpc::Action& action);

// "name1, name2" or "none": for "no such instance" messages.
std::string instance_names(const Partition& part);

}  // namespace mk::tools
