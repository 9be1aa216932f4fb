// DOC: mkerneld::Controller — what the host daemon does with each Action.
//
// What this is: the daemon's owner of the live machine's partition (pool +
// instances) and the one place an rpc::Action turns into library calls
// (Firecracker's RuntimeApiController). server.cc hands it parsed Actions,
// one at a time (the Asio loop is single-threaded, so requests from
// concurrent mkctl calls are serialized here).
//
// Lifecycle:
//   1. create(): read the live topology once, load the state file
//      (<dir>/state.json) under the runtime directory's lock; a corrupt file
//      refuses the start (EBADMSG, the file is left untouched);
//   2. handle(action) for each request: partition actions run on a copy
//      (partition_actions.h); a change is saved atomically (StateStore: temp
//      file, fsync, rename, under the exclusive flock of <dir>/lock, which
//      mkctl --topology calls share) and only then becomes current, so a
//      failed save leaves memory and disk as they were;
//   3. host-stop: answers, then stop_requested() turns true and the server
//      ends the loop; nothing else is touched (instances outlive mkerneld).
// Unhappy paths: every failure is a failure Response (errno, what, message,
// hint) for the client; nothing here throws or exits.
//
// Where the instance lifecycle plugs in (issue #4, boot recipe): load/start/
// stop Actions get handlers here that call the backend (mkernel boot recipe)
// with the instance from part_, record the started root process's
// ProcessIdentity in the persisted Instance, and hand it to a Supervisor
// (supervisor.h) whose ExitFn marks the instance failed. create() re-adopts
// every persisted identity after loading the state.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>

#include "mk/result.h"
#include "mkernel/partition.h"
#include "mkernel/sysroot.h"
#include "mkernel/topology.h"
#include "rpc_protocol.h"

namespace mkerneld {

class Controller {
 public:
  static mk::Result<std::unique_ptr<Controller>> create(std::string runtime_dir, mk::SysRoot sysroot);

  mk::tools::rpc::Response handle(const mk::tools::rpc::Action& action);
  bool stop_requested() const { return stop_requested_; }
  const mk::Partition& partition() const { return part_; }

 private:
  Controller(std::string dir, mk::SysRoot sysroot, mk::Topology topo, mk::Partition part)
      : dir_(std::move(dir)), sysroot_(std::move(sysroot)), topo_(std::move(topo)), part_(std::move(part)) {}
  mk::tools::rpc::Response change(const mk::tools::rpc::Action& action);
  mk::tools::rpc::Response status() const;

  std::string dir_;
  mk::SysRoot sysroot_;
  mk::Topology topo_;
  mk::Partition part_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  bool stop_requested_ = false;
};

}  // namespace mkerneld
