// DOC: mkerneld::Controller — what the host daemon does with each Action.
//
// What this is: the daemon's owner of the live machine's partition (pool +
// instances) and of the running instances, and the one place an rpc::Action
// turns into library calls (Firecracker's RuntimeApiController). server.cc
// hands it parsed Actions one at a time: the Asio loop is single-threaded,
// so requests from concurrent mkctl calls, instance exits, IPI traffic and
// console output are all serialized on it.
//
// Files: controller.cc (creation, partition actions, persistence),
// lifecycle.cc (load, start, stop, crash, re-adoption, instance-to-instance
// channels), observe.cc (ping, console, top), update.cc (live update and its
// journal: what a restarted daemon needs to finish or undo one),
// update_gate.cc (requests while an update runs, the update status in show;
// the values are update_state.h's).
//
// Lifecycle:
//   1. create(): read the live topology once, load <dir>/state.json under
//      the runtime directory's lock (a corrupt file refuses the start,
//      EBADMSG, untouched), then re-adopt every instance the state says is
//      running (mk::adopt_instance: pid + start time, pidfd_getfd of its
//      host-channel side and console, ipi::Channel::take_over); one that is
//      gone is marked failed ("exited while mkerneld was down");
//   2. handle(action): partition actions run on a copy (partition_actions.h)
//      saved atomically before it becomes current; lifecycle actions change
//      one instance the same way (validate, act, persist, then commit);
//   3. a Supervisor (supervisor.h) watches every image's pidfd: an exit the
//      daemon did not ask for marks the instance failed within one loop turn
//      (the pidfd is readable at once), closes its side of its channels so
//      peers' pending requests fail with ECONNRESET, keeps its CPUs and
//      memory (it can be started again) and logs the reason on its console;
//   4. host-stop / destruction: every running instance is detached (its
//      host-channel side left attached, not closed) — instances outlive
//      mkerneld.
//   5. while an update runs, its waits call serve_while_updating(): the loop
//      is polled re-entrantly (never recursively) so read-only requests
//      (show, host status, console, plan without --apply) are answered and
//      every other one is refused with EBUSY; instance exits seen meanwhile
//      are handled once the update returned (update_gate.cc).
// Unhappy paths: every failure is a failure Response (errno, what, message,
// hint) for the client; nothing here throws or exits, and a refused or
// failed action leaves the state file and the instance as they were.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ipi/channel.h"
#include "mk/result.h"
#include "mkernel/boot.h"
#include "mkernel/console_log.h"
#include "mkernel/cpu_move.h"
#include "mkernel/host_tasks.h"
#include "mkernel/irq.h"
#include "mkernel/partition.h"
#include "mkernel/sysroot.h"
#include "mkernel/topology.h"
#include "daemon_limits.h"
#include "rpc_protocol.h"
#include "supervisor.h"
#include "update_state.h"

namespace mkerneld {

// The hint of a refusal by a limit (daemon_limits.h).
extern const char* const kLimitsHint;

// ENOENT "no such instance", listing the instances there are.
mk::Error no_such_instance(const mk::Partition& part, const std::string& name);
// The client on socket `fd` closed its end (POLLRDHUP): it was interrupted.
bool client_hung_up(int fd);

class Controller {
 public:
  // Progress frames of a long action (update: one per phase), sent to the
  // client before the response.
  using Progress = std::function<void(const boost::json::object&)>;

  static mk::Result<std::unique_ptr<Controller>> create(std::string runtime_dir, mk::SysRoot sysroot,
                                                        boost::asio::io_context& io, Limits limits = {});
  ~Controller();  // detaches every running instance: they keep running

  mk::tools::rpc::Response handle(const mk::tools::rpc::Action& action, const Progress& progress = {});
  bool stop_requested() const { return stop_requested_; }
  // Set by the server around each request: true once the requesting client
  // went away (a staged update aborts then).
  void set_client_gone(std::function<bool()> f) { client_gone_ = std::move(f); }
  const mk::Partition& partition() const { return part_; }
  std::size_t running() const { return live_.size(); }
  const Limits& limits() const { return limits_; }
  // Problems found at start that did not stop it (corrupt journals moved
  // aside): logged, and listed by host status under "warnings".
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  // A running instance as the daemon holds it.
  struct Live {
    std::unique_ptr<mk::RunningInstance> run;
    std::unique_ptr<boost::asio::posix::stream_descriptor> ipi_watch;      // dup of the endpoint's epoll fd
    // A peer whose rings never empty (a flooder) cannot be armed: read
    // again after a short pause instead of waiting on an unarmed fd.
    std::unique_ptr<boost::asio::steady_timer> ipi_retry;
    std::unique_ptr<boost::asio::posix::stream_descriptor> console_watch;  // dup of the console read end
    std::optional<mk::ConsoleLog> log;
    bool stopping = false;  // exits are expected (stop in progress)
    bool steer_irqs = false;             // started with --steer-irqs
    std::vector<mk::MovedTask> evicted;  // --evict-host-tasks: given back when it stops
  };
  // A channel between two instances: the host created the region and keeps
  // its fds while at least one of them runs.
  struct PairChannel {
    mk::ipi::ChannelFds fds;
    uint32_t side_a = 0;  // id of the instance that took side A
  };
  using PairKey = std::pair<uint32_t, uint32_t>;  // (lower id, higher id)

  Controller(std::string dir, mk::SysRoot sysroot, mk::Topology topo, mk::Partition part,
             boost::asio::io_context& io);

  // controller.cc
  mk::tools::rpc::Response change(const mk::tools::rpc::Action& action);
  mk::tools::rpc::Response status() const;
  mk::Result<void> persist(const mk::Partition& p) const;
  // The instance limit (daemon_limits.h) for a partition action's result `work`.
  mk::Result<void> check_instance_limit(const mk::Partition& work) const;
  // A journal or record at `path` that cannot be used: moved aside (never
  // over an earlier copy), logged and kept as a warning naming the copy,
  // `problem` and `advice` (what the user should check or do).
  void set_aside(const std::string& path, const std::string& problem, const std::string& advice);
  std::string console_path(const std::string& name) const;
  void apply_host_affinity() const;

  // lifecycle.cc
  mk::tools::rpc::Response load(const mk::tools::rpc::LoadAction& a);
  mk::tools::rpc::Response start(const mk::tools::rpc::StartAction& a);
  mk::tools::rpc::Response stop(const mk::tools::rpc::StopAction& a);
  mk::tools::rpc::Response remove(const mk::tools::rpc::DeleteAction& a);
  void adopt_all();
  // Isolation extras of a start (docs/isolation.md): IRQ steering, host
  // tasks, v1 mem_exclusive; each a guarantee line, never a failure.
  std::vector<std::string> isolate(const mk::Instance& inst, pid_t pid, const mk::tools::rpc::StartAction& a,
                                   std::vector<mk::MovedTask>& evicted);
  // IRQs off the CPUs of every running instance that asked for it (`plus`
  // too: one starting), back to their originals when none does.
  mk::Result<void> steer_irqs(const mk::CpuSet& plus = {});
  // An instance left (stop, crash, delete): its host tasks and IRQs back.
  void unisolate(std::vector<mk::MovedTask> evicted);
  mk::Result<void> begin_watching(const std::string& name, Live& live);
  void watch_ipi(const std::string& name);
  void watch_console(const std::string& name);
  void drain_console(Live& live);
  void on_exit(const ProcessExit& ex);
  // Stops tracking `name` after its image exited: closes its channel sides,
  // frees cgroup and regions, records `why` and the new state, persists.
  void retire(const std::string& name, mk::InstanceState next, const std::string& why);
  mk::Result<std::vector<mk::PeerChannelFds>> peer_channels_for(const mk::Instance& inst,
                                                                std::vector<PairKey>& created);
  void close_pair_channels(uint32_t id);

  // update.cc
  mk::tools::rpc::Response update(const mk::tools::rpc::UpdateAction& a, const Progress& progress);
  std::string journal_path(const std::string& name) const;
  // A journal left by a daemon that died mid-update: undo it (the adopted
  // old image is unfrozen, the successor killed). Called by adopt_all().
  void recover_updates();
  // Stop watching the image of `live` (its pid changes in an update).
  void stop_watching(Live& live);
  mk::tools::rpc::Response run_update(const mk::tools::rpc::UpdateAction& a, const Progress& progress);
  // The update's end as `mkctl show` keeps it (memory and last-update file).
  void record_last_update(const std::string& name, LastUpdate u);

  // staged.cc
  mk::tools::rpc::Response run_staged(const mk::tools::rpc::UpdateAction& a, const Progress& progress,
                                      const mk::LoadedImage& next);
  mk::tools::rpc::Response abort_staged(const mk::tools::rpc::UpdateAbortAction& a);
  // Returns: false when the journal's progress is unreadable (the caller
  // sets it aside; nothing was done).
  bool recover_staged(const std::string& name, const boost::json::object& journal, std::string& problem);
  void finish_retired_staged_updates();
  std::vector<mk::PeerChannelFds> peer_fds_of(uint32_t id) const;

  // cpu_move.cc
  mk::tools::rpc::Response cpu_move(const mk::tools::rpc::CpuMoveAction& a);
  mk::tools::rpc::Response resize(const mk::tools::rpc::ResizeAction& a);
  // A journal left by a daemon that died mid-move: every running image it
  // names is put back on the CPUs the state file gives it. Called by adopt_all().
  void recover_cpu_moves();
  std::string cpu_journal_path() const;
  // One instance's side of a move: running (endpoint, cgroup) or on paper.
  // Returns: EBUSY (it is stopping).
  mk::Result<mk::CpuHolder> cpu_holder(const mk::Instance& inst);
  mk::CpuChangeOptions cpu_options(uint32_t timeout_ms, const std::string& fault, uint32_t op_id);
  // Returns: write_file_atomic's error (the move is then refused: without
  // its journal a restarted daemon could not put the CPUs back).
  mk::Result<void> write_cpu_journal(uint32_t op_id, const std::vector<const mk::Instance*>& insts,
                                     const mk::CpuSet& touched);
  mk::tools::rpc::Response commit_cpus(const std::vector<std::pair<std::string, mk::CpuSet>>& sets,
                                       const std::function<void()>& undo, boost::json::object doc, std::string text);

  // resources.cc
  mk::tools::rpc::Response resources(const mk::tools::rpc::ResourcesAction& a);
  std::string resource_journal_path() const;
  // Before adopt_instance (adopt_all): when the journal of an interrupted
  // memory or device change names `inst`, the regions its image released
  // are dropped from the record it is adopted from.
  void trim_for_resource_journal(mk::Instance& inst);
  // After adopt_all: the image of the instance the journal names is made
  // to match the state file again (mk::reconcile_resources).
  void recover_resource_moves();

  // update_gate.cc
  // What an update in progress answers for `action` instead of running it:
  // EBUSY for everything but the read-only actions; nullopt = run it.
  std::optional<mk::tools::rpc::Response> refuse_while_updating(const mk::tools::rpc::Action& action) const;
  // UpdateRequest::on_wait: polls the loop once (guarded: never recursive).
  void serve_while_updating();
  // Exits the supervisor reported during an update, handled now.
  void handle_deferred_exits();
  // "update" of show's instance(s), and its lines in show NAME's text.
  void add_update_status(const mk::tools::rpc::ShowAction& a, mk::tools::rpc::Response& r) const;
  boost::json::object update_status_json(const std::string& name) const;
  // Reads every instance's last-update file (create(), before adopt_all()).
  void load_last_updates();

  // observe.cc
  mk::tools::rpc::Response ping(const mk::tools::rpc::PingAction& a);
  mk::tools::rpc::Response console(const mk::tools::rpc::ConsoleAction& a);
  mk::tools::rpc::Response top(const mk::tools::rpc::TopAction& a);

  std::string dir_;
  Limits limits_;
  std::vector<std::string> warnings_;
  mk::SysRoot sysroot_;
  mk::Topology topo_;
  mk::Partition part_;
  boost::asio::io_context& io_;
  Supervisor supervisor_;
  std::map<std::string, Live> live_;
  std::unique_ptr<mk::IrqSteering> irq_;  // originals in <dir>/irq-affinity.json
  std::map<PairKey, PairChannel> pairs_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  bool stop_requested_ = false;
  uint32_t next_update_id_ = 1;

  // Live-update status (update_gate.cc). An entry exists for every instance
  // that was updated since the daemon started or has a last-update file.
  struct UpdateStatus {
    UpdateState state = UpdateState::Normal;
    std::optional<LastUpdate> last;
  };
  std::map<std::string, UpdateStatus> update_status_;
  std::optional<std::string> updating_;  // the instance an update runs on
  uint32_t updating_id_ = 0;
  bool serving_ = false;                 // inside serve_while_updating()'s poll
  bool staged_running_ = false;          // updating_ is a staged update
  bool abort_requested_ = false;         // mkctl update --abort NAME arrived meanwhile
  std::function<bool()> client_gone_;
  std::vector<ProcessExit> deferred_exits_;
};

}  // namespace mkerneld
