// CPU moves in the daemon (`mkctl cpu move`, `mkctl update NAME --cpus`,
// DESIGN.md §5/§7): the request, the partition it changes, and the journal
// that makes a daemon killed mid-move put every CPU back on restart.
//
// Role in the flow: validate against the partition (mk::check_cpu_move /
// check_cpu_resize), write the journal <dir>/cpu-move.json (the instances
// and the CPUs the move touches), run mk::move_cpu / resize_cpus (the
// consent handshake with the images, cgroups, undo on failure), then
// persist the partition, tell each RunningInstance what it owns now and
// remove the journal. A daemon that dies in between leaves the journal: its
// restart (adopt_all) calls recover_cpu_moves(), which makes each running
// image and its cgroup match the state file again (mk::reconcile_cpus), so
// the move is either fully done (it was persisted) or not at all.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "controller.h"
#include "json_codec.h"
#include "mkernel/cpu_move.h"
#include "state_store.h"

namespace mkerneld {

namespace rpc = mk::tools::rpc;
namespace json = boost::json;
using mk::Instance;
using mk::InstanceState;

namespace {

json::array steps_json(const mk::CpuChangeResult& r) {
  json::array a;
  for (const auto& [name, ms] : r.steps) a.push_back(json::object{{"step", name}, {"ms", ms}});
  return a;
}

json::array strays_json(const mk::CpuChangeResult& r) {
  json::array a;
  for (const auto& t : r.not_following)
    a.push_back(json::object{{"tid", t.tid}, {"comm", t.comm}, {"allowed", t.allowed.to_string()}});
  return a;
}

std::string strays_text(const mk::CpuChangeResult& r) {
  std::string s = std::to_string(r.threads_checked) + " thread(s) checked, ";
  if (r.not_following.empty()) return s + "all follow";
  s += std::to_string(r.not_following.size()) + " do NOT follow:";
  for (const auto& t : r.not_following)
    s += " " + std::to_string(t.tid) + "(" + t.comm + ": " + t.allowed.to_string() + ")";
  return s;
}

}  // namespace

std::string Controller::cpu_journal_path() const { return dir_ + "/cpu-move.json"; }

mk::Result<mk::CpuHolder> Controller::cpu_holder(const Instance& inst) {
  mk::CpuHolder h;
  h.id = inst.id;
  h.name = inst.name;
  h.cpus = inst.cpus;
  auto it = live_.find(inst.name);
  if (it == live_.end()) {
    if (inst.state == InstanceState::Active || inst.state == InstanceState::Stopping)
      return MK_FAIL(EBUSY, "instance is changing state", "'%s' is %s and not tracked as running", inst.name.c_str(),
                     to_string(inst.state));
    return h;  // not running: the move happens on paper
  }
  if (it->second.stopping)
    return MK_FAIL(EBUSY, "instance is stopping", "'%s': wait until `mkctl stop` ends", inst.name.c_str());
  mk::RunningInstance& run = *it->second.run;
  h.ep = &run.endpoint();
  h.cgroup = run.cgroup();
  h.pids.push_back(run.pid());
  if (run.ns_init_pid() > 0) h.pids.push_back(run.ns_init_pid());
  return h;
}

mk::CpuChangeOptions Controller::cpu_options(uint32_t timeout_ms, const std::string& fault, uint32_t op_id) {
  mk::CpuChangeOptions o;
  o.timeout = std::chrono::milliseconds(timeout_ms);
  o.op_id = op_id;
  if (fault.rfind("fail:", 0) == 0) {
    const std::string what = fault.substr(5);
    o.inject = [what](std::string_view step) -> mk::Result<void> {
      if (step.rfind("undo: ", 0) == 0 || step.find(what) == std::string_view::npos) return {};
      return MK_FAIL(EIO, "fault injected", "--fault fail:%s", what.c_str());
    };
  }
  const std::string exit_after = fault.rfind("host-exit-after:", 0) == 0 ? fault.substr(16) : "";
  o.on_step = [this, op_id, exit_after](std::string_view step, double ms) {
    log("cpu move %u: %.*s (%.3f ms)", op_id, static_cast<int>(step.size()), step.data(), ms);
    if (!exit_after.empty() && step.rfind("undo: ", 0) != 0 && step.find(exit_after) != std::string_view::npos) {
      log("cpu move %u: fault injection: mkerneld kills itself after '%s'", op_id, exit_after.c_str());
      ::kill(::getpid(), SIGKILL);
    }
  };
  return o;
}

mk::Result<void> Controller::write_cpu_journal(uint32_t op_id, const std::vector<const Instance*>& insts,
                                               const mk::CpuSet& touched) {
  json::array a;
  for (const Instance* i : insts) a.push_back(json::object{{"name", i->name}, {"cpus_before", i->cpus.to_string()}});
  json::object j{{"op_id", op_id}, {"instances", std::move(a)}, {"touched", touched.to_string()}};
  if (auto w = mk::tools::write_file_atomic(cpu_journal_path(), json::serialize(j) + "\n"); !w) {
    log("cpu move %u: cannot write the journal: %s", op_id, w.error().to_string().c_str());
    return w;
  }
  return mk::ok();
}

// After the library succeeded: the partition and the running instances take
// the new sets, persisted; on a failed save the move is undone (`undo`).
rpc::Response Controller::commit_cpus(const std::vector<std::pair<std::string, mk::CpuSet>>& sets,
                                      const std::function<void()>& undo, json::object doc, std::string text) {
  mk::Partition work = part_;
  for (const auto& [name, cpus] : sets) work.find(name)->cpus = cpus;
  if (auto s = persist(work); !s) {
    undo();
    ::unlink(cpu_journal_path().c_str());
    return rpc::Response::failure(s.error(), "the move was undone: every CPU is where it was");
  }
  part_ = std::move(work);
  bool steered = false;
  for (const auto& [name, cpus] : sets) {
    if (auto it = live_.find(name); it != live_.end()) {
      it->second.run->set_cpus(cpus);
      steered |= it->second.steer_irqs;
    }
  }
  ::unlink(cpu_journal_path().c_str());
  // IRQs steered off an instance's CPUs follow them (mkctl start --steer-irqs).
  if (steered) {
    if (auto st = steer_irqs(); !st) log("irq steering after a CPU change: %s", st.error().to_string().c_str());
  }
  return rpc::Response::success(std::move(doc), std::move(text));
}

rpc::Response Controller::cpu_move(const rpc::CpuMoveAction& a) {
  if (auto c = mk::check_cpu_move(topo_, part_, a.cpu, a.from, a.to); !c) {
    return rpc::Response::failure(c.error(), "nothing was changed");
  }
  const Instance& fi = *part_.find(a.from);
  const Instance& ti = *part_.find(a.to);
  auto from = cpu_holder(fi);
  if (!from) return rpc::Response::failure(from.error(), "nothing was changed");
  auto to = cpu_holder(ti);
  if (!to) return rpc::Response::failure(to.error(), "nothing was changed");
  const uint32_t op_id = next_update_id_++;
  const bool live = from->ep || to->ep;
  if (live) {
    if (auto j = write_cpu_journal(op_id, {&fi, &ti}, mk::CpuSet::of({a.cpu})); !j)
      return rpc::Response::failure(j.error(), "nothing was changed");
  }
  log("cpu move %u: CPU %u from %s to %s", op_id, a.cpu, a.from.c_str(), a.to.c_str());
  const mk::CpuChangeOptions opts = cpu_options(a.timeout_ms, a.fault, op_id);
  auto r = mk::move_cpu(topo_, sysroot_, *from, *to, a.cpu, opts);
  if (!r) {
    ::unlink(cpu_journal_path().c_str());
    log("cpu move %u failed: %s", op_id, r.error().to_string().c_str());
    return rpc::Response::failure(r.error(), "both instances keep the CPUs they had (mkctl show)");
  }
  json::object doc{{"cpu", a.cpu},
                   {"from", json::object{{"name", a.from}, {"cpus", r->from_cpus.to_string()}, {"running", from->ep != nullptr}}},
                   {"to", json::object{{"name", a.to}, {"cpus", r->cpus.to_string()}, {"running", to->ep != nullptr}}},
                   {"steps", steps_json(*r)},
                   {"ms", r->ms},
                   {"threads_checked", r->threads_checked},
                   {"not_following", strays_json(*r)}};
  char head[256];
  std::snprintf(head, sizeof head, "moved CPU %u from '%s' (now %s) to '%s' (now %s) in %.3f ms\n", a.cpu,
                a.from.c_str(), r->from_cpus.to_string().c_str(), a.to.c_str(), r->cpus.to_string().c_str(), r->ms);
  std::string text = head;
  for (const auto& [name, ms] : r->steps) {
    char line[256];
    std::snprintf(line, sizeof line, "  %-32s %9.3f ms\n", name.c_str(), ms);
    text += line;
  }
  if (live) text += "  " + strays_text(*r) + "\n";
  const mk::CpuHolder f2{from->id, from->name, r->from_cpus, from->ep, from->cgroup, from->pids};
  const mk::CpuHolder t2{to->id, to->name, r->cpus, to->ep, to->cgroup, to->pids};
  auto undo = [&, f2, t2] {
    mk::CpuChangeOptions back = cpu_options(a.timeout_ms, "", op_id);
    if (auto u = mk::move_cpu(topo_, sysroot_, t2, f2, a.cpu, back); !u)
      log("cpu move %u: the state could not be saved and the undo failed: %s", op_id, u.error().to_string().c_str());
  };
  return commit_cpus({{a.from, r->from_cpus}, {a.to, r->cpus}}, undo, std::move(doc), std::move(text));
}

rpc::Response Controller::resize(const rpc::ResizeAction& a) {
  if (auto c = mk::check_cpu_resize(topo_, part_, a.name, a.cpus); !c) {
    return rpc::Response::failure(c.error(), "nothing was changed");
  }
  const Instance& inst = *part_.find(a.name);
  auto h = cpu_holder(inst);
  if (!h) return rpc::Response::failure(h.error(), "nothing was changed");
  const mk::CpuSet before = inst.cpus;
  const uint32_t op_id = next_update_id_++;
  const mk::CpuSet touched = (before - a.cpus) | (a.cpus - before);
  if (h->ep) {
    if (auto j = write_cpu_journal(op_id, {&inst}, touched); !j)
      return rpc::Response::failure(j.error(), "nothing was changed");
  }
  log("cpu resize %u: %s %s -> %s", op_id, a.name.c_str(), before.to_string().c_str(), a.cpus.to_string().c_str());
  const mk::CpuChangeOptions opts = cpu_options(a.timeout_ms, a.fault, op_id);
  auto r = mk::resize_cpus(topo_, sysroot_, *h, a.cpus, opts);
  if (!r) {
    ::unlink(cpu_journal_path().c_str());
    log("cpu resize %u failed: %s", op_id, r.error().to_string().c_str());
    return rpc::Response::failure(r.error(), "'" + a.name + "' keeps CPUs " + before.to_string() + " (mkctl show)");
  }
  json::object doc{{"name", a.name},
                   {"cpus_before", before.to_string()},
                   {"cpus", r->cpus.to_string()},
                   {"running", h->ep != nullptr},
                   {"steps", steps_json(*r)},
                   {"ms", r->ms},
                   {"threads_checked", r->threads_checked},
                   {"not_following", strays_json(*r)}};
  char head[256];
  std::snprintf(head, sizeof head, "'%s': CPUs %s -> %s in %.3f ms\n", a.name.c_str(), before.to_string().c_str(),
                r->cpus.to_string().c_str(), r->ms);
  std::string text = head;
  for (const auto& [name, ms] : r->steps) {
    char line[256];
    std::snprintf(line, sizeof line, "  %-32s %9.3f ms\n", name.c_str(), ms);
    text += line;
  }
  if (h->ep) text += "  " + strays_text(*r) + "\n";
  mk::CpuHolder after = *h;
  after.cpus = r->cpus;
  auto undo = [&, after, before] {
    mk::CpuChangeOptions back = cpu_options(a.timeout_ms, "", op_id);
    if (auto u = mk::resize_cpus(topo_, sysroot_, after, before, back); !u)
      log("cpu resize %u: the state could not be saved and the undo failed: %s", op_id, u.error().to_string().c_str());
  };
  return commit_cpus({{a.name, r->cpus}}, undo, std::move(doc), std::move(text));
}

void Controller::recover_cpu_moves() {
  const std::string path = cpu_journal_path();
  std::ifstream in(path);
  if (!in) return;
  std::stringstream ss;
  ss << in.rdbuf();
  boost::system::error_code ec;
  json::value v = json::parse(ss.str(), ec);
  const json::object* o = (!ec && v.is_object()) ? &v.get_object() : nullptr;
  const json::value* insts = o ? o->if_contains("instances") : nullptr;
  const json::value* touched_v = o ? o->if_contains("touched") : nullptr;
  auto touched = touched_v && touched_v->is_string() ? mk::CpuSet::parse(std::string(touched_v->get_string()))
                                                     : mk::Result<mk::CpuSet>(MK_FAIL(EBADMSG, "no touched", "-"));
  if (!insts || !insts->is_array() || !touched) {
    const std::string problem = ec                ? "not JSON: " + ec.message()
                                : !o              ? std::string("not a JSON object")
                                : !insts || !insts->is_array() ? std::string("'instances': expected an array")
                                                  : std::string("'touched': expected a cpu list");
    set_aside(path, problem,
              "a CPU move was interrupted: check each running instance's CPUs (mkctl show) and set them with "
              "`mkctl update NAME --cpus LIST`");
    return;
  }
  for (const json::value& e : insts->get_array()) {
    const json::value* n = e.is_object() ? e.get_object().if_contains("name") : nullptr;
    if (!n || !n->is_string()) continue;
    const std::string name(n->get_string());
    const Instance* inst = part_.find(name);
    auto it = live_.find(name);
    if (!inst || it == live_.end()) continue;  // not running: nothing but the state file to trust
    auto h = cpu_holder(*inst);
    if (!h) continue;
    auto r = mk::reconcile_cpus(topo_, sysroot_, *h, inst->cpus, *touched, cpu_options(5000, "", 0));
    log("cpu move interrupted by a mkerneld restart: %s put back on CPUs %s%s%s", name.c_str(),
        inst->cpus.to_string().c_str(), r ? "" : ": ", r ? "" : r.error().to_string().c_str());
    if (it->second.log)
      (void)it->second.log->append("[mkerneld] CPU move interrupted by a mkerneld restart: CPUs " +
                                   inst->cpus.to_string() + (r ? "" : " (reconcile failed: " + r.error().to_string() + ")") +
                                   "\n");
  }
  ::unlink(path.c_str());
}

}  // namespace mkerneld
