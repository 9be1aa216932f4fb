// mkctl plan: propose a validated partitioning for a policy; --apply commits it.
#include <cstdio>

#include "../commands.h"
#include "json_codec.h"
#include "mk/units.h"
#include "mkernel/planner.h"
#include "mkernel/sysroot.h"

namespace mkctl {

namespace {

std::string plan_text(const mk::Plan& plan, bool applied, bool default_pool) {
  std::string s;
  if (default_pool) s += "note: no pool is set; planning over the default pool (mkctl init sets one)\n";
  char line[512];
  std::snprintf(line, sizeof line, "plan (%s): %zu instance(s)%s\n", mk::to_string(plan.policy),
                plan.instances.size(), applied ? ", applied" : "; rerun with --apply to create them");
  s += line;
  std::snprintf(line, sizeof line, "  %-4s %-12s %-24s %s\n", "ID", "NAME", "CPUS", "MEMORY");
  s += line;
  for (const auto& ip : plan.instances) {
    std::string mem;
    for (const auto& r : ip.instance.memory)
      mem += (mem.empty() ? "" : " + ") + mk::format_size(r.bytes) + "@" + std::to_string(r.node);
    std::snprintf(line, sizeof line, "  %-4u %-12s %-24s %s\n", ip.instance.id, ip.instance.name.c_str(),
                  ip.instance.cpus.to_string().c_str(), mem.empty() ? "none" : mem.c_str());
    s += line;
    for (const auto& w : ip.warnings) s += "       warning: " + w + "\n";
  }
  s += warning_lines(plan.warnings);
  return s;
}

}  // namespace

int cmd_plan(Context& ctx) {
  po::options_description desc("mkctl plan options");
  desc.add_options()
      ("policy", po::value<std::string>(), "pe-split | per-numa | even (required)")
      ("instances", po::value<uint32_t>(), "number of instances (even: required)")
      ("memory", po::value<std::string>(), "memory per instance (default: equal share of the pool's node memory)")
      ("kinds", po::value<std::string>(), "pe-split on machines without kinds: CPULIST:CPULIST, most efficient first")
      ("prefix", po::value<std::string>(), "instance name prefix")
      ("apply", po::bool_switch(), "create the planned instances (all or none)");
  ctx.add_global_options(desc);
  po::variables_map vm;
  int code = 0;
  if (!ctx.parse(desc, {}, vm,
                 "mkctl plan --policy pe-split|per-numa|even [--instances N] [--memory SIZE] [--kinds A:B] [--apply]",
                 code))
    return code;
  if (!vm.count("policy")) return ctx.usage_error("missing --policy (pe-split, per-numa or even)");
  mk::PlanRequest req;
  auto pol = mk::parse_plan_policy(vm["policy"].as<std::string>());
  if (!pol) return ctx.usage_error(std::string("--policy: ") + pol.error().message());
  req.policy = *pol;
  if (vm.count("instances")) req.instances = vm["instances"].as<uint32_t>();
  if (vm.count("memory")) {
    auto m = mk::parse_size(vm["memory"].as<std::string>());
    if (!m) return ctx.usage_error(std::string("--memory: ") + m.error().message());
    req.memory_per_instance = *m;
  }
  if (vm.count("kinds")) {
    auto k = mk::parse_kinds_override(vm["kinds"].as<std::string>());
    if (!k) return ctx.usage_error(std::string("--kinds: ") + k.error().message());
    req.kinds_override = *k;
  }
  if (vm.count("prefix")) req.name_prefix = vm["prefix"].as<std::string>();
  bool apply = vm["apply"].as<bool>();

  auto topo = ctx.topology();
  if (!topo) return ctx.fail(topo.error());
  auto store = ctx.open_state(apply ? mk::tools::StateStore::Mode::Write : mk::tools::StateStore::Mode::Read);
  if (!store) return ctx.fail(store.error());
  auto part = store->load();
  if (!part) return ctx.fail(part.error());
  bool default_pool = !part->has_pool;
  if (default_pool) {
    auto avail = mk::available_memory(*topo, mk::SysRoot::from_env());
    if (!avail) return ctx.fail(avail.error());
    auto d = mk::make_pool(*topo, {}, *avail, {});
    if (!d) return ctx.fail(d.error());
    part->pool = d->pool;
    part->has_pool = true;
  }
  auto plan = mk::make_plan(*topo, *part, req);
  if (!plan) return ctx.fail(plan.error(), apply ? "nothing was created" : "");
  if (apply) {
    for (const auto& ip : plan->instances) part->add(ip.instance);
    if (auto s = store->save(*part); !s) return ctx.fail(s.error(), "nothing was created");
  }
  boost::json::object doc = mk::tools::to_json(*plan);
  doc["applied"] = apply;
  doc["pool"] = mk::tools::to_json(part->pool);
  doc["default_pool"] = default_pool;
  doc["topology"] = ctx.topology_source();
  return ctx.emit(doc, plan_text(*plan, apply, default_pool));
}

}  // namespace mkctl
