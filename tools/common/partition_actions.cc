// The partition actions (see partition_actions.h). The text and --json forms
// here are mkctl's output contract (docs/cli.md); tests/tools/mkctl_test.cc
// checks them through the local path, daemon_test.cc through mkerneld.
#include "partition_actions.h"

#include <cstdio>

#include "json_codec.h"
#include "mk/units.h"
#include "mkernel/planner.h"
#include "mkernel/pool.h"

namespace mk::tools {

namespace json = boost::json;
using rpc::Response;

namespace {

std::string warning_lines(const std::vector<std::string>& w) {
  std::string s;
  for (const auto& x : w) s += "warning: " + x + "\n";
  return s;
}

std::string memory_text(const Instance& i) {
  std::string mem;
  for (const auto& r : i.memory) mem += (mem.empty() ? "" : " + ") + format_size(r.bytes) + "@" + std::to_string(r.node);
  return mem.empty() ? "none" : mem;
}

Error no_such_instance(const Partition& part, const std::string& name) {
  return MK_FAIL(ENOENT, "no such instance", "no instance named '%s' (instances: %s)", name.c_str(),
                 instance_names(part).c_str());
}

Response run(const rpc::InitAction& a, const ActionEnv& env, Partition& part, bool& changed) {
  auto avail = available_memory(env.topology, env.sysroot);
  if (!avail) return Response::failure(avail.error());
  auto d = make_pool(env.topology, a.request, *avail, part.instances);
  if (!d) return Response::failure(d.error(), "the pool was left unchanged");
  part.pool = d->pool;
  part.has_pool = true;
  changed = true;

  std::string text = "pool: cpus " + d->pool.cpus.to_string() + ", memory " + format_size(d->pool.total_memory());
  for (const auto& r : d->pool.memory) text += " [node " + std::to_string(r.node) + ": " + format_size(r.bytes) + "]";
  if (!d->pool.devices.empty()) {
    text += ", devices";
    for (const auto& dev : d->pool.devices) text += " " + dev;
  }
  CpuSet host = env.topology.all_pus() - d->pool.cpus;
  text += "\nhost keeps: cpus " + (host.empty() ? std::string("none") : host.to_string()) + "\n";
  return Response::success({{"pool", to_json(d->pool)},
                            {"host_cpus", host.to_string()},
                            {"warnings", warnings_to_json(d->warnings)}},
                           warning_lines(d->warnings) + text);
}

Response run(const rpc::CreateAction& a, const ActionEnv& env, Partition& part, bool& changed) {
  auto plan = plan_create(env.topology, part, a.request);
  if (!plan) return Response::failure(plan.error(), "nothing was changed");
  part.add(plan->instance);
  changed = true;

  const Instance& i = plan->instance;
  std::string text = "created '" + i.name + "' (id " + std::to_string(i.id) + "): cpus " + i.cpus.to_string() +
                     ", memory " + format_size(i.memory_bytes());
  for (const auto& d : i.devices) text += ", " + d.to_string();
  text += "\n";
  return Response::success({{"instance", to_json(i)}, {"warnings", warnings_to_json(plan->warnings)}},
                           warning_lines(plan->warnings) + text);
}

Response run(const rpc::DeleteAction& a, const ActionEnv&, Partition& part, bool& changed) {
  const Instance* inst = part.find(a.name);
  if (!inst) return Response::failure(no_such_instance(part, a.name));
  if (inst->state == InstanceState::Active || inst->state == InstanceState::Stopping) {
    return Response::failure(MK_FAIL(EBUSY, "instance is running", "'%s' is %s; stop it first (mkctl stop %s)",
                                     a.name.c_str(), to_string(inst->state), a.name.c_str()));
  }
  Instance gone = *inst;
  part.remove(a.name);
  changed = true;
  return Response::success({{"deleted", to_json(gone)}, {"free_cpus", part.free_cpus().to_string()}},
                           "deleted '" + a.name + "': cpus " + gone.cpus.to_string() + " are free again\n");
}

Response show_one(const ActionEnv& env, const Partition& part, const std::string& name) {
  const Instance* inst = part.find(name);
  if (!inst) return Response::failure(no_such_instance(part, name));
  auto warnings = placement_warnings(env.topology, part, *inst);
  json::object doc{{"instance", instance_to_json(*inst)}, {"warnings", warnings_to_json(warnings)}};
  std::string text = "instance '" + inst->name + "' (id " + std::to_string(inst->id) + "), " +
                     to_string(inst->state) + "\n  cpus:    " + inst->cpus.to_string() +
                     "\n  memory:  " + memory_text(*inst) + "\n  devices: console";
  for (const auto& d : inst->devices) text += ", " + d.to_string();
  if (inst->image) {
    text += "\n  image:   " + inst->image->path + " (sha256 " + inst->image->sha256.substr(0, 16) + "...)";
    if (!inst->image->cmdline.empty()) text += "\n  cmdline: " + inst->image->cmdline;
    if (!inst->image->init.empty()) text += "\n  init:    " + inst->image->init;
  }
  if (inst->runtime) {
    text += "\n  pid:     " + std::to_string(inst->runtime->pid);
    text += "\n  guarantees:";
    for (const auto& g : inst->runtime->guarantees) text += "\n    " + g;
  }
  if (!inst->last_exit.empty()) text += "\n  last exit: " + inst->last_exit;
  text += "\n" + warning_lines(warnings);
  return Response::success(std::move(doc), std::move(text));
}

Response run(const rpc::ShowAction& a, const ActionEnv& env, Partition& part, bool&) {
  if (a.name) return show_one(env, part, *a.name);
  json::array insts;
  for (const auto& i : part.instances) {
    auto o = instance_to_json(i);
    o["warnings"] = warnings_to_json(placement_warnings(env.topology, part, i));
    insts.push_back(std::move(o));
  }
  json::object doc{{"topology", env.topology_source}, {"instances", std::move(insts)}};
  if (!part.has_pool) {
    doc["pool"] = nullptr;
    return Response::success(std::move(doc), "no pool set (mkctl init sets one)\n");
  }
  doc["pool"] = to_json(part.pool);
  doc["free_cpus"] = part.free_cpus().to_string();
  CpuSet host = env.topology.all_pus() - part.pool.cpus;
  doc["host_cpus"] = host.to_string();
  std::string text = "pool: cpus " + part.pool.cpus.to_string() + ", memory " +
                     format_size(part.pool.total_memory()) + "; free cpus " +
                     (part.free_cpus().empty() ? std::string("none") : part.free_cpus().to_string()) +
                     "; host cpus " + (host.empty() ? std::string("none") : host.to_string()) + "\n";
  char line[512];
  std::snprintf(line, sizeof line, "%-4s %-16s %-9s %-8s %-20s %-24s %s\n", "ID", "NAME", "STATE", "PID", "CPUS",
                "MEMORY", "DEVICES");
  text += line;
  for (const auto& i : part.instances) {
    std::string devs = "console";
    for (const auto& d : i.devices) devs += "," + d.to_string();
    std::string pid = i.runtime ? std::to_string(i.runtime->pid) : "-";
    std::snprintf(line, sizeof line, "%-4u %-16s %-9s %-8s %-20s %-24s %s\n", i.id, i.name.c_str(),
                  to_string(i.state), pid.c_str(), i.cpus.to_string().c_str(), memory_text(i).c_str(), devs.c_str());
    text += line;
  }
  return Response::success(std::move(doc), std::move(text));
}

std::string plan_text(const Plan& plan, bool applied, bool default_pool) {
  std::string s;
  if (default_pool) s += "note: no pool is set; planning over the default pool (mkctl init sets one)\n";
  char line[512];
  std::snprintf(line, sizeof line, "plan (%s): %zu instance(s)%s\n", to_string(plan.policy), plan.instances.size(),
                applied ? ", applied" : "; rerun with --apply to create them");
  s += line;
  std::snprintf(line, sizeof line, "  %-4s %-12s %-24s %s\n", "ID", "NAME", "CPUS", "MEMORY");
  s += line;
  for (const auto& ip : plan.instances) {
    std::string mem;
    for (const auto& r : ip.instance.memory)
      mem += (mem.empty() ? "" : " + ") + format_size(r.bytes) + "@" + std::to_string(r.node);
    std::snprintf(line, sizeof line, "  %-4u %-12s %-24s %s\n", ip.instance.id, ip.instance.name.c_str(),
                  ip.instance.cpus.to_string().c_str(), mem.empty() ? "none" : mem.c_str());
    s += line;
    for (const auto& w : ip.warnings) s += "       warning: " + w + "\n";
  }
  s += warning_lines(plan.warnings);
  return s;
}

Response run(const rpc::PlanAction& a, const ActionEnv& env, Partition& part, bool& changed) {
  // Planning works on a copy: a default pool is only a basis for the
  // proposal, never stored, and a refused plan leaves `part` untouched.
  Partition work = part;
  bool default_pool = !work.has_pool;
  if (default_pool) {
    auto avail = available_memory(env.topology, env.sysroot);
    if (!avail) return Response::failure(avail.error());
    auto d = make_pool(env.topology, {}, *avail, {});
    if (!d) return Response::failure(d.error());
    work.pool = d->pool;
    work.has_pool = true;
  }
  auto plan = make_plan(env.topology, work, a.request);
  if (!plan) return Response::failure(plan.error(), a.apply ? "nothing was created" : "");
  if (a.apply) {
    for (const auto& ip : plan->instances) work.add(ip.instance);
    part = work;
    changed = true;
  }
  json::object doc = to_json(*plan);
  doc["applied"] = a.apply;
  doc["pool"] = to_json(work.pool);
  doc["default_pool"] = default_pool;
  doc["topology"] = env.topology_source;
  return Response::success(std::move(doc), plan_text(*plan, a.apply, default_pool));
}

template <class HostAction>
Response run(const HostAction&, const ActionEnv&, Partition&, bool&) {
  return Response::failure(MK_FAIL(EOPNOTSUPP, "not a partition action", "host actions go to mkerneld"));
}

}  // namespace

Response apply_partition_action(const rpc::Action& action, const ActionEnv& env, Partition& part, bool& changed) {
  changed = false;
  return std::visit([&](const auto& a) { return run(a, env, part, changed); }, action);
}

const char* failure_hint(const rpc::Action& action) {
  if (std::holds_alternative<rpc::InitAction>(action)) return "the pool was left unchanged";
  if (std::holds_alternative<rpc::PlanAction>(action)) return "nothing was created";
  return "nothing was changed";
}

std::string instance_names(const Partition& part) {
  std::string names;
  for (const auto& i : part.instances) names += (names.empty() ? "" : ", ") + i.name;
  return names.empty() ? "none" : names;
}

}  // namespace mk::tools
