// The staged live update in the daemon (`mkctl update NAME --staged`,
// DESIGN.md §5): the request, its progress frames (one per step), the
// abort requests (`mkctl update --abort NAME`, or the client going away),
// and the journal that lets a daemon killed mid-update undo it on restart.
//
// Role in the flow: mk::staged_update (mkernel/staged_update.h) does the
// work; this file validates (running instance, kernel image, spare CPUs
// free in the pool), journals <dir>/update/NAME.json after each step
// ({"staged": true, "old", "new" runtime records, "progress"}), turns each
// step into a progress frame, and afterwards makes the image that serves
// the instance's RunningInstance (same name and id) and persists it. A
// restarted daemon finding a staged journal (recover_staged) re-adopts the
// new image and runs mk::abort_staged_update: every part goes back to the
// old image, which the state file still names; when the journal says the
// old image had retired, the new image is the instance and is adopted as it.
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <optional>

#include "controller.h"
#include "json_codec.h"
#include "mkernel/image.h"
#include "mkernel/process_identity.h"
#include "mkernel/staged_update.h"
#include "state_store.h"

namespace mkerneld {

namespace rpc = mk::tools::rpc;
namespace json = boost::json;
using mk::Instance;

namespace {

json::object progress_json(const mk::StagedProgress& p) {
  json::object o{{"old_cpus", p.old_cpus.to_string()}, {"new_cpus", p.new_cpus.to_string()},
                 {"spare_cpus", p.spare_cpus.to_string()}, {"parts", p.parts}, {"retired", p.retired}};
  if (p.taken_cpu) o["taken_cpu"] = *p.taken_cpu;
  json::array moved;
  for (uint32_t c : p.cpus_moved) moved.push_back(c);
  o["cpus_moved"] = std::move(moved);
  return o;
}

mk::Result<mk::StagedProgress> progress_from_json(const json::value& v) {
  auto bad = [] { return MK_FAIL(EBADMSG, "corrupt staged-update journal", "bad 'progress'"); };
  if (!v.is_object()) return bad();
  const json::object& o = v.get_object();
  mk::StagedProgress p;
  for (auto [key, set] : {std::pair{"old_cpus", &p.old_cpus}, std::pair{"new_cpus", &p.new_cpus},
                          std::pair{"spare_cpus", &p.spare_cpus}}) {
    const json::value* s = o.if_contains(key);
    if (!s || !s->is_string()) return bad();
    if (s->get_string().empty()) continue;  // an empty set
    auto c = mk::CpuSet::parse(std::string(s->get_string()));
    if (!c) return bad();
    *set = *c;
  }
  const json::value* parts = o.if_contains("parts");
  const json::value* retired = o.if_contains("retired");
  const json::value* moved = o.if_contains("cpus_moved");
  // (Boost.JSON keeps unsigned numbers as uint64: read every number with as_u32.)
  auto as_u32 = [](const json::value& n, uint64_t max) -> std::optional<uint32_t> {
    if (n.is_uint64() && n.get_uint64() <= max) return static_cast<uint32_t>(n.get_uint64());
    if (n.is_int64() && n.get_int64() >= 0 && static_cast<uint64_t>(n.get_int64()) <= max)
      return static_cast<uint32_t>(n.get_int64());
    return std::nullopt;
  };
  if (!parts || !as_u32(*parts, UINT32_MAX) || !retired || !retired->is_bool() || !moved || !moved->is_array())
    return bad();
  p.parts = *as_u32(*parts, UINT32_MAX) & mk::abi::kUpdateScopeAll;
  p.retired = retired->get_bool();
  for (const auto& c : moved->get_array()) {
    auto cpu = as_u32(c, 8191);
    if (!cpu) return bad();
    p.cpus_moved.push_back(*cpu);
  }
  if (const json::value* t = o.if_contains("taken_cpu")) {
    auto cpu = as_u32(*t, 8191);
    if (!cpu) return bad();
    p.taken_cpu = *cpu;
  }
  return p;
}

json::object step_json(const mk::StagedStep& s) {
  json::object o{{"step", s.name}, {"moved", s.moved}, {"ms", s.ms}, {"old_cpus", s.old_cpus.to_string()},
                 {"new_cpus", s.new_cpus.to_string()}, {"cpus_disjoint", s.check.empty()}};
  if (s.blackout_ms) o["blackout_ms"] = *s.blackout_ms;
  if (!s.check.empty()) o["check"] = s.check;
  return o;
}

}  // namespace

rpc::Response Controller::abort_staged(const rpc::UpdateAbortAction& a) {
  if (!part_.find(a.name)) return rpc::Response::failure(no_such_instance(part_, a.name));
  if (!updating_ || *updating_ != a.name || !staged_running_) {
    return rpc::Response::failure(MK_FAIL(ENOENT, "no staged update to abort", "'%s' is not being updated in stages",
                                          a.name.c_str()),
                                  "an in-place update is short and rolls back by itself on failure");
  }
  abort_requested_ = true;
  log("staged update %u of %s: abort requested", updating_id_, a.name.c_str());
  return rpc::Response::success({{"instance", a.name}, {"abort_requested", true}},
                                "abort of the staged update of '" + a.name +
                                    "' requested: it stops after the step in progress and returns everything to the "
                                    "old image (mkctl update prints how)\n");
}

rpc::Response Controller::run_staged(const rpc::UpdateAction& a, const Progress& progress,
                                     const mk::LoadedImage& next) {
  const Instance* cur = part_.find(a.name);
  Live& live = live_.at(a.name);
  if (a.spare_cpus) {
    const mk::CpuSet free = part_.free_cpus();
    if (!a.spare_cpus->is_subset_of(free)) {
      return rpc::Response::failure(
          MK_FAIL(EBUSY, "spare CPUs not free", "%s: the pool's free CPUs are %s",
                  (*a.spare_cpus - free).to_string().c_str(), free.empty() ? "none" : free.to_string().c_str()),
          "nothing was changed; without --spare-cpus the new image starts on a CPU taken from the old one");
    }
  }
  const uint32_t id = cur->id;
  const pid_t old_pid = live.run->pid();
  const mk::RuntimeRecord old_record = live.run->record();

  mk::StagedRequest req;
  req.image = {next.path, next.cmdline, next.init, next.uid, next.gid};
  req.peers = peer_fds_of(id);
  if (a.spare_cpus) req.spare_cpus = *a.spare_cpus;
  req.timeout = std::chrono::milliseconds(a.timeout_ms);
  req.update_id = next_update_id_++;
  std::optional<mk::RuntimeRecord> new_record;
  json::object journal{{"instance", a.name},   {"update_id", req.update_id}, {"kernel", next.path},
                       {"staged", true},       {"old", mk::tools::runtime_to_json(old_record)}};
  auto write_journal = [&] {
    ::mkdir((dir_ + "/update").c_str(), 0700);
    if (auto w = mk::tools::write_file_atomic(journal_path(a.name), json::serialize(journal) + "\n"); !w)
      log("staged update %u of %s: cannot write the journal: %s", req.update_id, a.name.c_str(),
          w.error().to_string().c_str());
  };
  req.on_new_image = [&](const mk::RuntimeRecord& r) {
    new_record = r;
    journal["new"] = mk::tools::runtime_to_json(r);
    write_journal();
  };
  // Journaled from the first step on: a daemon killed after the old image
  // gave its CPU up, before the new image booted, gives it back on restart.
  req.on_progress = [&](const mk::StagedProgress& p) {
    journal["progress"] = progress_json(p);
    write_journal();
  };
  req.on_step = [&](const mk::StagedStep& s) {
    log("staged update %u of %s: %s: %s (%.3f ms%s)", req.update_id, a.name.c_str(), s.name.c_str(),
        s.moved.c_str(), s.ms, s.blackout_ms ? ", with a blackout" : "");
    if (progress) {
      json::object f = step_json(s);
      f["instance"] = a.name;
      progress(f);
    }
  };
  const std::string fail_at = a.fault.rfind("fail:", 0) == 0 ? a.fault.substr(5) : "";
  const std::string exit_after = a.fault.rfind("host-exit-after:", 0) == 0 ? a.fault.substr(16) : "";
  req.inject = [fail_at](std::string_view step) -> mk::Result<void> {
    if (fail_at.empty() || step != fail_at) return {};
    return MK_FAIL(EIO, "fault injected", "--fault fail:%s", fail_at.c_str());
  };
  req.after_step = [&](std::string_view step) {
    if (exit_after.empty() || step != exit_after) return;
    log("staged update %u of %s: fault injection: mkerneld kills itself after step %s", req.update_id,
        a.name.c_str(), exit_after.c_str());
    ::kill(::getpid(), SIGKILL);
  };
  // Aborted on request, or when the client that asked went away (mkctl
  // interrupted): checked between steps.
  req.abort_requested = [this] {
    serve_while_updating();
    return abort_requested_ || (client_gone_ && client_gone_());
  };
  req.on_wait = [this] { serve_while_updating(); };

  live.stopping = true;
  stop_watching(live);
  drain_console(live);
  log("staged update %u of %s: %s -> %s%s", req.update_id, a.name.c_str(), cur->image->path.c_str(),
      next.path.c_str(), a.spare_cpus ? (" on spare CPUs " + a.spare_cpus->to_string()).c_str() : "");
  updating_ = a.name;
  updating_id_ = req.update_id;
  staged_running_ = true;
  abort_requested_ = false;
  mk::StagedOutcome out = mk::staged_update(live.run, topo_, sysroot_, req);
  updating_.reset();
  staged_running_ = false;
  abort_requested_ = false;
  live.stopping = false;
  ::unlink(journal_path(a.name).c_str());
  record_last_update(a.name, LastUpdate{utc_now_iso8601(), req.update_id, next.path,
                                        out.updated ? "updated" : (live.run ? "rolled back" : "failed"),
                                        out.max_blackout_ms, out.cause ? out.cause->to_string() : "",
                                        out.rollback});
  if (!live.run) {
    const std::string why = "staged update failed and the instance could not be kept running: " +
                            (out.cause ? out.cause->to_string() : std::string("unknown"));
    live_.erase(a.name);
    retire(a.name, mk::InstanceState::Failed, why);
    return rpc::Response::failure(MK_FAIL(EIO, "staged update failed", "%s", why.c_str()));
  }
  if (auto w = begin_watching(a.name, live); !w) log("%s: %s", a.name.c_str(), w.error().to_string().c_str());
  mk::Partition work = part_;
  Instance* w = work.find(a.name);
  w->runtime = live.run->record();
  if (out.updated) w->image = next;
  if (auto s = persist(work); !s) log("staged update %u of %s: cannot save state: %s", req.update_id, a.name.c_str(),
                                      s.error().to_string().c_str());
  part_ = std::move(work);
  if (live.log) {
    (void)live.log->append("[mkerneld] staged update " + std::to_string(req.update_id) + ": " +
                           (out.updated ? "now running " + next.path + " (pid " + std::to_string(live.run->pid()) + ")"
                                        : "aborted: " + out.rollback) +
                           "\n");
  }

  json::array steps;
  for (const auto& s : out.steps) steps.push_back(step_json(s));
  json::array warnings;
  for (const auto& s : out.warnings) warnings.push_back(json::string(s));
  json::object doc{{"instance", mk::tools::instance_to_json(*part_.find(a.name))},
                   {"update_id", req.update_id},
                   {"staged", true},
                   {"updated", out.updated},
                   {"old_pid", old_pid},
                   {"pid", live.run->pid()},
                   {"steps", std::move(steps)},
                   {"total_ms", out.total_ms},
                   {"warnings", std::move(warnings)}};
  if (out.max_blackout_ms) doc["max_blackout_ms"] = *out.max_blackout_ms;
  if (!out.updated) {
    const mk::Error cause = out.cause ? *out.cause : MK_FAIL(EIO, "staged update failed", "no cause recorded");
    log("staged update %u of %s aborted: %s; %s", req.update_id, a.name.c_str(), cause.to_string().c_str(),
        out.rollback.c_str());
    return rpc::Response::failure(
        mk::Error(cause.code(), "staged update aborted").set_detail("%s; %s", cause.to_string().c_str(),
                                                                    out.rollback.c_str()),
        "the instance runs its previous image (pid " + std::to_string(live.run->pid()) + "); see mkctl console " +
            a.name);
  }
  char text[512];
  std::snprintf(text, sizeof text,
                "updated '%s' in stages: pid %d -> %d in %.1f ms, %zu steps, longest blackout %.3f ms, CPUs %s\n",
                a.name.c_str(), old_pid, live.run->pid(), out.total_ms, out.steps.size(),
                out.max_blackout_ms.value_or(0), live.run->instance().cpus.to_string().c_str());
  std::string all = text;
  for (const auto& wv : out.warnings) all += "  warning: " + wv + "\n";
  log("staged update %u of %s: done in %.1f ms, longest blackout %.3f ms", req.update_id, a.name.c_str(),
      out.total_ms, out.max_blackout_ms.value_or(0));
  return rpc::Response::success(std::move(doc), all);
}

// A staged journal found at start (recover_updates): undo the update, or
// adopt the new image when the old one had retired already.
bool Controller::recover_staged(const std::string& name, const json::object& j, std::string& problem) {
  auto it = live_.find(name);
  const Instance* inst = part_.find(name);
  const json::value* nv = j.if_contains("new");
  const json::value* pv = j.if_contains("progress");
  auto rec = nv ? mk::tools::runtime_from_json(*nv)
                : mk::Result<mk::RuntimeRecord>(MK_FAIL(ENOENT, "no new image", "it never booted"));
  auto at = pv ? progress_from_json(*pv) : mk::Result<mk::StagedProgress>(mk::StagedProgress{});
  if (!at) {
    problem = at.error().to_string();
    return false;
  }
  if (!inst) return true;
  if (at->retired) return true;  // finish_retired_staged_updates() took it before the adoption
  std::unique_ptr<mk::RunningInstance> next;
  if (rec) {
    Instance as_new = *inst;
    as_new.runtime = *rec;
    as_new.cpus = at->new_cpus;
    if (auto run = mk::adopt_instance(as_new, sysroot_)) next = std::move(*run);
    else log("staged update of %s: the new image (pid %d) cannot be re-adopted: %s", name.c_str(), rec->pid,
             run.error().to_string().c_str());
  }
  if (it == live_.end()) {
    if (next) next->kill();
    log("staged update of %s interrupted and its old image is gone: new image killed", name.c_str());
    return true;
  }
  stop_watching(it->second);
  mk::StagedRequest req;
  req.peers = peer_fds_of(inst->id);
  req.timeout = std::chrono::seconds(5);
  if (const json::value* id = j.if_contains("update_id"); id && id->is_number()) {
    boost::system::error_code ec;
    const auto v = id->to_number<uint32_t>(ec);
    if (!ec) req.update_id = v;
  }
  mk::StagedOutcome out = mk::abort_staged_update(it->second.run, std::move(next), *at, topo_, sysroot_, req);
  if (auto w = begin_watching(name, it->second); !w) log("%s: %s", name.c_str(), w.error().to_string().c_str());
  log("staged update of %s interrupted by a mkerneld restart: %s", name.c_str(), out.rollback.c_str());
  if (it->second.log) (void)it->second.log->append("[mkerneld] staged update interrupted by a restart: " + out.rollback + "\n");
  record_last_update(name, LastUpdate{utc_now_iso8601(), req.update_id, "", "rolled back", std::nullopt,
                                      "mkerneld was restarted during the staged update", out.rollback});
  return true;
}

// Before adopt_all() adopts anything: a staged update whose old image had
// retired when the daemon died is complete; the state file still names the
// old image, which is gone or runs the reaper now. The instance's record
// becomes the new image's, with the old image as the namespace's reaper
// when it stays as one (exec keeps its pid and start time).
void Controller::finish_retired_staged_updates() {
  mk::Partition work = part_;
  bool changed = false;
  for (Instance& inst : work.instances) {
    const std::string path = journal_path(inst.name);
    std::ifstream in(path);
    if (!in || !inst.runtime) continue;
    std::stringstream ss;
    ss << in.rdbuf();
    boost::system::error_code ec;
    json::value v = json::parse(ss.str(), ec);
    if (ec || !v.is_object() || !v.get_object().contains("staged")) continue;
    const json::object& j = v.get_object();
    const json::value* pv = j.if_contains("progress");
    const json::value* nv = j.if_contains("new");
    auto at = pv ? progress_from_json(*pv) : mk::Result<mk::StagedProgress>(mk::StagedProgress{});
    if (!at || !at->retired || !nv) continue;
    auto rec = mk::tools::runtime_from_json(*nv);
    if (!rec) continue;
    const mk::RuntimeRecord old = *inst.runtime;
    if (mk::open_identity(sysroot_, {old.pid, old.start_time})) {
      rec->ns_init_pid = old.pid;
      rec->ns_init_start_time = old.start_time;
    } else {
      rec->ns_init_pid = old.ns_init_pid;
      rec->ns_init_start_time = old.ns_init_start_time;
    }
    inst.runtime = *rec;
    changed = true;
    log("staged update of %s had finished when mkerneld died: the new image (pid %d) is the instance now",
        inst.name.c_str(), rec->pid);
    ::unlink(path.c_str());
  }
  if (!changed) return;
  if (auto s = persist(work); !s) log("cannot save state: %s", s.error().to_string().c_str());
  part_ = std::move(work);
}

std::vector<mk::PeerChannelFds> Controller::peer_fds_of(uint32_t id) const {
  std::vector<mk::PeerChannelFds> out;
  for (const auto& [key, pc] : pairs_) {
    if (key.first != id && key.second != id) continue;
    const uint32_t peer = key.first == id ? key.second : key.first;
    const Instance* other = part_.find_id(peer);
    if (!other) continue;  // deleted meanwhile: no channel to nobody in a boot tree
    out.push_back({peer, other ? other->name : std::string(), static_cast<uint8_t>(pc.side_a == id ? 0 : 1),
                   pc.fds.memfd.get(), {pc.fds.eventfd[0].get(), pc.fds.eventfd[1].get()}});
  }
  return out;
}

bool client_hung_up(int fd) {
  pollfd p{fd, POLLRDHUP, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

}  // namespace mkerneld
