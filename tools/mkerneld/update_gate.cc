// Requests while a live update runs, and the update status in `mkctl show`
// (see controller.h, update_state.h).
//
// The daemon is single-threaded and `mkctl update` holds the loop for the
// whole update. mk::live_update calls UpdateRequest::on_wait between
// dispatches once a step has waited 20 ms (a successor still booting, a
// step that hangs until its timeout; never in a normal blackout), and
// serve_while_updating() then polls the io_context once, re-entrantly.
// What may run in that poll, and why it is safe:
//   - new connections and requests: handle() answers the read-only actions
//     (show, host status, console, plan without --apply: they read part_,
//     which the update changes only after live_update returned) and refuses
//     every other one with EBUSY (start/stop/delete/update/load/create/...,
//     and ping/top: they send IPI requests, also to the instance the update
//     is talking to, and block the loop);
//   - the update's own connection has no pending operation (its request was
//     read, its response not written yet; progress frames are synchronous
//     writes from the update), so nothing in the poll touches it;
//   - IPI and console events of the other instances: served as usual; the
//     updating instance's watches were cancelled before the update;
//   - an instance exit: deferred (on_exit queues it while updating_ and
//     stops watching that instance's IPI and console, which a dead image
//     leaves readable for good) and handled once the update returned —
//     retiring an instance closes its channels, and the update borrows the
//     fds of its peers' channels;
//   - Asio's scheduler supports nested poll() on the thread that runs
//     run(); serving_ makes sure it never nests twice, each call runs at
//     most kMaxHandlersPerWait handlers, and an exception from a handler is
//     logged here, never thrown through live_update.
#include <cstdio>
#include <variant>

#include "controller.h"
#include "server.h"

namespace mkerneld {

namespace rpc = mk::tools::rpc;
namespace json = boost::json;

namespace {
constexpr int kMaxHandlersPerWait = 256;
}  // namespace

std::optional<rpc::Response> Controller::refuse_while_updating(const rpc::Action& action) const {
  if (!updating_) return std::nullopt;
  if (std::holds_alternative<rpc::ShowAction>(action) || std::holds_alternative<rpc::HostStatusAction>(action) ||
      std::holds_alternative<rpc::ConsoleAction>(action) || std::holds_alternative<rpc::UpdateAbortAction>(action))
    return std::nullopt;
  if (const auto* p = std::get_if<rpc::PlanAction>(&action); p && !p->apply) return std::nullopt;
  auto st = update_status_.find(*updating_);
  const char* state = st == update_status_.end() ? "normal" : to_string(st->second.state);
  return rpc::Response::failure(
      MK_FAIL(EBUSY, "a live update is in progress",
              "instance %s is being updated (state %s); retry when `mkctl update` returns", updating_->c_str(), state),
      "mkctl show " + *updating_ + " reports the update's state; `" + rpc::action_name(action) +
          "` was not run and nothing was changed");
}

void Controller::serve_while_updating() {
  if (serving_) return;  // a handler of this poll never waits on an update, but never nest anyway
  serving_ = true;
  try {
    // Bounded: a handler that re-arms on an fd that stays ready must not
    // keep the update from its own wait (the next call goes on).
    for (int i = 0; i < kMaxHandlersPerWait && io_.poll_one() != 0; ++i) {
    }
  } catch (const std::exception& e) {
    log("internal error while serving requests during update %u: %s", updating_id_, e.what());
  }
  serving_ = false;
}

void Controller::handle_deferred_exits() {
  std::vector<ProcessExit> exits = std::move(deferred_exits_);
  deferred_exits_.clear();
  for (const ProcessExit& ex : exits) on_exit(ex);
}

json::object Controller::update_status_json(const std::string& name) const {
  auto it = update_status_.find(name);
  const bool running = updating_ && *updating_ == name;
  json::object o{{"state", it == update_status_.end() ? "normal" : to_string(it->second.state)},
                 {"in_progress", running}};
  if (running) o["update_id"] = updating_id_;
  o["last"] = it != update_status_.end() && it->second.last ? json::value(last_update_to_json(*it->second.last))
                                                            : json::value(nullptr);
  return o;
}

void Controller::add_update_status(const rpc::ShowAction& a, rpc::Response& r) const {
  if (!r.ok) return;
  if (!a.name) {
    json::value* insts = r.result.if_contains("instances");
    if (!insts || !insts->is_array()) return;
    for (json::value& v : insts->get_array()) {
      if (!v.is_object()) continue;
      const json::value* n = v.get_object().if_contains("name");
      if (n && n->is_string()) v.get_object()["update"] = update_status_json(std::string(n->get_string()));
    }
    return;
  }
  json::value* inst = r.result.if_contains("instance");
  if (!inst || !inst->is_object()) return;
  inst->get_object()["update"] = update_status_json(*a.name);

  // The lines go before the placement warnings that end show NAME's text.
  std::string lines = "  update:  ";
  auto it = update_status_.find(*a.name);
  lines += it == update_status_.end() ? "normal" : to_string(it->second.state);
  if (updating_ && *updating_ == *a.name) lines += " (update " + std::to_string(updating_id_) + " in progress)";
  lines += "\n";
  if (it != update_status_.end() && it->second.last)
    lines += "  last update: " + last_update_text(*it->second.last) + "\n";
  std::size_t warn_len = 0;
  if (const json::value* w = r.result.if_contains("warnings"); w && w->is_array())
    for (const json::value& x : w->get_array())
      if (x.is_string()) warn_len += std::string("warning: ").size() + x.get_string().size() + 1;
  const std::size_t at = warn_len <= r.text.size() ? r.text.size() - warn_len : r.text.size();
  r.text.insert(at, lines);
}

void Controller::load_last_updates() {
  for (const mk::Instance& inst : part_.instances) {
    auto u = load_last_update(dir_, inst.name);
    if (!u) {
      // Never fatal: the record is informational. Kept aside for a look.
      set_aside(last_update_path(dir_, inst.name), u.error().to_string(),
                "`mkctl show " + inst.name + "` shows no last update until the next one");
      continue;
    }
    if (*u) update_status_[inst.name].last = std::move(**u);
  }
}

void Controller::record_last_update(const std::string& name, LastUpdate u) {
  if (auto s = save_last_update(dir_, name, u); !s)
    log("update %u of %s: cannot save the last-update record: %s", u.update_id, name.c_str(),
        s.error().to_string().c_str());
  UpdateStatus& st = update_status_[name];
  st.state = UpdateState::Normal;
  st.last = std::move(u);
}

}  // namespace mkerneld
