// Action -> library calls, state ownership, persistence (see controller.h).
#include "controller.h"

#include <sched.h>
#include <unistd.h>

#include "mkernel/host_devices.h"
#include "partition_actions.h"
#include "server.h"
#include "state_store.h"

namespace mkerneld {

namespace rpc = mk::tools::rpc;
using mk::tools::StateStore;

const char* const kLimitsHint = "limits are read when mkerneld starts (mkctl host stop, then any mkctl command)";

Controller::Controller(std::string dir, mk::SysRoot sysroot, mk::Topology topo, mk::Partition part,
                       boost::asio::io_context& io)
    : dir_(std::move(dir)),
      sysroot_(std::move(sysroot)),
      topo_(std::move(topo)),
      part_(std::move(part)),
      io_(io),
      supervisor_(io, sysroot_, [this](const ProcessExit& ex) { on_exit(ex); }) {}

mk::Result<std::unique_ptr<Controller>> Controller::create(std::string runtime_dir, mk::SysRoot sysroot,
                                                           boost::asio::io_context& io, Limits limits) {
  // The live machine as mkctl sees it: hwloc plus the virtual interfaces
  // sysfs lists. Read once; a hot-plugged device needs a daemon restart.
  MK_TRY_ASSIGN(mk::Topology topo, mk::load_topology_live());
  mk::add_sysfs_devices(topo, sysroot);
  mk::Partition part;
  {
    MK_TRY_ASSIGN(StateStore store, StateStore::open(runtime_dir, "live", StateStore::Mode::Read));
    MK_TRY_ASSIGN(part, store.load());
  }
  std::unique_ptr<Controller> c(
      new Controller(std::move(runtime_dir), std::move(sysroot), std::move(topo), std::move(part), io));
  c->limits_ = std::move(limits);
  c->apply_host_affinity();
  c->load_last_updates();  // before adopt_all(): it may record an interrupted update
  c->adopt_all();
  return c;
}

Controller::~Controller() {
  // Instances outlive mkerneld: leave every one running, its channel side
  // attached for the next daemon to take over.
  for (auto& [name, live] : live_) {
    if (live.ipi_watch) live.ipi_watch->cancel();
    if (live.console_watch) live.console_watch->cancel();
    if (live.log) drain_console(live);
    live.run->detach();
  }
}

rpc::Response Controller::handle(const rpc::Action& action, const Progress& progress) {
  if (auto busy = refuse_while_updating(action)) return *busy;  // only while an update polls the loop
  if (std::holds_alternative<rpc::HostStatusAction>(action)) return status();
  if (std::holds_alternative<rpc::HostStopAction>(action)) {
    stop_requested_ = true;
    return rpc::Response::success({{"stopped", true}, {"pid", ::getpid()}, {"runtime_dir", dir_},
                                   {"instances_running", live_.size()}},
                                  "mkerneld (pid " + std::to_string(::getpid()) + ") stopped; " +
                                      std::to_string(live_.size()) + " instance(s) keep running\n");
  }
  if (const auto* a = std::get_if<rpc::LoadAction>(&action)) return load(*a);
  if (const auto* a = std::get_if<rpc::StartAction>(&action)) return start(*a);
  if (const auto* a = std::get_if<rpc::StopAction>(&action)) return stop(*a);
  if (const auto* a = std::get_if<rpc::PingAction>(&action)) return ping(*a);
  if (const auto* a = std::get_if<rpc::ConsoleAction>(&action)) return console(*a);
  if (const auto* a = std::get_if<rpc::TopAction>(&action)) return top(*a);
  if (const auto* a = std::get_if<rpc::UpdateAction>(&action)) return update(*a, progress);
  if (const auto* a = std::get_if<rpc::UpdateAbortAction>(&action)) return abort_staged(*a);
  if (const auto* a = std::get_if<rpc::CpuMoveAction>(&action)) return cpu_move(*a);
  if (const auto* a = std::get_if<rpc::ResizeAction>(&action)) return resize(*a);
  if (const auto* a = std::get_if<rpc::ResourcesAction>(&action)) return resources(*a);
  if (const auto* a = std::get_if<rpc::DeleteAction>(&action)) return remove(*a);
  if (mk::tools::rpc::changes_partition(action)) return change(action);
  mk::Partition view = part_;  // read-only actions never touch the owned state
  bool changed = false;
  rpc::Response r = mk::tools::apply_partition_action(action, {topo_, sysroot_, "live"}, view, changed);
  if (const auto* a = std::get_if<rpc::ShowAction>(&action)) add_update_status(*a, r);
  return r;
}

rpc::Response Controller::change(const rpc::Action& action) {
  // Validate and change a copy, persist it, and only then make it current.
  mk::Partition work = part_;
  if (std::holds_alternative<rpc::CreateAction>(action)) {
    // One too many is refused before the placement is even tried.
    work.instances.emplace_back();
    auto l = check_instance_limit(work);
    work.instances.pop_back();
    if (!l) return rpc::Response::failure(l.error(), std::string(mk::tools::failure_hint(action)) + "; " + kLimitsHint);
  }
  bool changed = false;
  rpc::Response r = mk::tools::apply_partition_action(action, {topo_, sysroot_, "live"}, work, changed);
  if (!r.ok || !changed) return r;
  if (auto l = check_instance_limit(work); !l)
    return rpc::Response::failure(l.error(), std::string(mk::tools::failure_hint(action)) + "; " + kLimitsHint);
  if (auto s = persist(work); !s) return rpc::Response::failure(s.error(), mk::tools::failure_hint(action));
  part_ = std::move(work);
  if (std::holds_alternative<rpc::InitAction>(action)) apply_host_affinity();
  return r;
}

mk::Result<void> Controller::persist(const mk::Partition& p) const {
  MK_TRY_ASSIGN(StateStore store, StateStore::open(dir_, "live", StateStore::Mode::Write));
  return store.save(p);
}

mk::Result<void> Controller::check_instance_limit(const mk::Partition& work) const {
  // Only growth is refused: a partition already above a lowered limit can
  // still shrink.
  if (work.instances.size() <= limits_.max_instances || work.instances.size() <= part_.instances.size()) return mk::ok();
  return MK_FAIL(EDQUOT, "instance limit reached",
                 "%zu instances would exist, the limit is %u: raise max_instances (mkerneld --max-instances N, or "
                 "in %s/limits.json)",
                 work.instances.size(), limits_.max_instances, dir_.c_str());
}

void Controller::set_aside(const std::string& path, const std::string& problem, const std::string& advice) {
  auto to = mk::tools::move_aside(path);
  std::string w = path + " is corrupt (" + problem + "): ";
  w += to ? "moved aside to " + *to : "could not be moved aside (" + to.error().to_string() + ")";
  if (!advice.empty()) w += "; " + advice;
  log("%s", w.c_str());
  warnings_.push_back(std::move(w));
}

std::string Controller::console_path(const std::string& name) const { return dir_ + "/console/" + name + ".log"; }

void Controller::apply_host_affinity() const {
  // The host's own threads stay off instance CPUs: the daemon runs on the
  // CPUs outside the pool. A pool that takes every CPU (2-CPU machines) has
  // been warned about at init; the daemon then keeps them all.
  mk::CpuSet all = topo_.all_pus();
  mk::CpuSet host = part_.has_pool ? all - part_.pool.cpus : all;
  if (host.empty()) host = all;
  cpu_set_t set;
  CPU_ZERO(&set);
  for (uint32_t c : host)
    if (c < CPU_SETSIZE) CPU_SET(c, &set);
  if (::sched_setaffinity(0, sizeof set, &set) != 0) log("cannot pin mkerneld to cpus %s: %s", host.to_string().c_str(), strerror(errno));
}

rpc::Response Controller::status() const {
  auto up = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_).count();
  boost::json::object doc{{"running", true},
                          {"pid", ::getpid()},
                          {"runtime_dir", dir_},
                          {"uptime_s", up},
                          {"instances", part_.instances.size()},
                          {"instances_running", live_.size()},
                          {"has_pool", part_.has_pool},
                          {"limits", limits_.to_json()}};
  boost::json::array warnings;
  for (const auto& w : warnings_) warnings.emplace_back(w);
  doc["warnings"] = std::move(warnings);
  std::string text = "mkerneld running: pid " + std::to_string(::getpid()) + ", " + dir_ + ", up " +
                     std::to_string(up) + " s, " + std::to_string(part_.instances.size()) + " instance(s), " +
                     std::to_string(live_.size()) + " running\n";
  text += "  limits (" + limits_.source + "): " + std::to_string(limits_.max_instances) + " instances, " +
          std::to_string(limits_.max_channels_per_instance) + " channels per instance, " +
          std::to_string(limits_.max_handoff_fds) + " handoff fds, " + std::to_string(limits_.max_handoff_blob) +
          "-byte handoff blob, " + std::to_string(limits_.max_console_log) + "-byte console log\n";
  for (const auto& w : warnings_) text += "  warning: " + w + "\n";
  return rpc::Response::success(std::move(doc), std::move(text));
}

}  // namespace mkerneld
