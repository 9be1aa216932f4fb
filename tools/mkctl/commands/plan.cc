// mkctl plan: propose a validated partitioning for a policy; --apply commits it.
#include "../commands.h"
#include "mk/units.h"
#include "mkernel/planner.h"

namespace mkctl {

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

  return ctx.finish(ctx.execute(mk::tools::rpc::PlanAction{std::move(req), apply}));
}

}  // namespace mkctl
