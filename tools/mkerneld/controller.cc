// Action -> library calls, state ownership (see controller.h).
#include "controller.h"

#include <unistd.h>

#include "mkernel/host_devices.h"
#include "partition_actions.h"
#include "state_store.h"

namespace mkerneld {

namespace rpc = mk::tools::rpc;
using mk::tools::StateStore;

mk::Result<std::unique_ptr<Controller>> Controller::create(std::string runtime_dir, mk::SysRoot sysroot) {
  // The live machine as mkctl sees it: hwloc plus the virtual interfaces
  // sysfs lists. Read once; a hot-plugged device needs a daemon restart.
  MK_TRY_ASSIGN(mk::Topology topo, mk::load_topology_live());
  mk::add_sysfs_devices(topo, sysroot);
  MK_TRY_ASSIGN(StateStore store, StateStore::open(runtime_dir, "live", StateStore::Mode::Read));
  MK_TRY_ASSIGN(mk::Partition part, store.load());
  return std::unique_ptr<Controller>(
      new Controller(std::move(runtime_dir), std::move(sysroot), std::move(topo), std::move(part)));
}

rpc::Response Controller::handle(const rpc::Action& action) {
  if (std::holds_alternative<rpc::HostStatusAction>(action)) return status();
  if (std::holds_alternative<rpc::HostStopAction>(action)) {
    stop_requested_ = true;
    return rpc::Response::success({{"stopped", true}, {"pid", ::getpid()}, {"runtime_dir", dir_}},
                                  "mkerneld (pid " + std::to_string(::getpid()) +
                                      ") stopped; instances keep running\n");
  }
  if (mk::tools::rpc::changes_partition(action)) return change(action);
  mk::Partition view = part_;  // read-only actions never touch the owned state
  bool changed = false;
  return mk::tools::apply_partition_action(action, {topo_, sysroot_, "live"}, view, changed);
}

rpc::Response Controller::change(const rpc::Action& action) {
  // Validate and change a copy, persist it, and only then make it current.
  mk::Partition work = part_;
  bool changed = false;
  rpc::Response r = mk::tools::apply_partition_action(action, {topo_, sysroot_, "live"}, work, changed);
  if (!r.ok || !changed) return r;
  auto store = StateStore::open(dir_, "live", StateStore::Mode::Write);
  if (!store) return rpc::Response::failure(store.error(), mk::tools::failure_hint(action));
  if (auto s = store->save(work); !s) return rpc::Response::failure(s.error(), mk::tools::failure_hint(action));
  part_ = std::move(work);
  return r;
}

rpc::Response Controller::status() const {
  auto up = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_).count();
  boost::json::object doc{{"running", true},
                          {"pid", ::getpid()},
                          {"runtime_dir", dir_},
                          {"uptime_s", up},
                          {"instances", part_.instances.size()},
                          {"has_pool", part_.has_pool}};
  return rpc::Response::success(std::move(doc), "mkerneld running: pid " + std::to_string(::getpid()) + ", " +
                                                    dir_ + ", up " + std::to_string(up) + " s, " +
                                                    std::to_string(part_.instances.size()) + " instance(s)\n");
}

}  // namespace mkerneld
