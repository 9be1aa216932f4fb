// mkctl cpu move CPU --from NAME --to NAME: hand one CPU from an instance to
// another (DESIGN.md §7). The losing image is asked over IPI first and may
// refuse (its last CPU, a live update in progress); then the host moves the
// cpusets and the gaining image starts a per-CPU loop there. All or
// nothing: on any failure both instances keep what they had.
#include <cmath>

#include "../commands.h"

namespace mkctl {

namespace {

int cpu_move(Context& ctx, const po::variables_map& vm) {
  if (!vm.count("cpu")) return ctx.usage_error("missing the CPU to move (an OS CPU number, see mkctl topology)");
  if (!vm.count("from") || !vm.count("to")) return ctx.usage_error("give both --from NAME and --to NAME");
  const std::string cpu = vm["cpu"].as<std::string>();
  auto one = mk::CpuSet::parse(cpu);
  if (!one || one->count() != 1) return ctx.usage_error("CPU: one OS CPU number, not '" + cpu + "'");
  const double s = vm["timeout"].as<double>();
  if (!std::isfinite(s) || s < 0.001 || s > 600) return ctx.usage_error("--timeout: seconds, 0.001..600");
  mk::tools::rpc::CpuMoveAction a;
  a.cpu = static_cast<uint32_t>(one->first());
  a.from = vm["from"].as<std::string>();
  a.to = vm["to"].as<std::string>();
  a.timeout_ms = static_cast<uint32_t>(std::lround(s * 1000));
  a.fault = vm["fault"].as<std::string>();
  if (!a.fault.empty() && !((a.fault.rfind("fail:", 0) == 0 && a.fault.size() > 5) ||
                            (a.fault.rfind("host-exit-after:", 0) == 0 && a.fault.size() > 16)))
    return ctx.usage_error("--fault: '" + a.fault + "': use fail:STEP or host-exit-after:STEP");
  return ctx.finish(ctx.execute(a));
}

}  // namespace

int cmd_cpu(Context& ctx) {
  po::options_description desc("mkctl cpu options");
  desc.add_options()("what", po::value<std::string>(), "move")("cpu", po::value<std::string>(), "the CPU (OS index)")(
      "from", po::value<std::string>(), "the instance that gives the CPU up")(
      "to", po::value<std::string>(), "the instance that receives it")(
      "timeout", po::value<double>()->default_value(5.0), "seconds each image may take to answer")(
      "fault", po::value<std::string>()->default_value(""),
      "fault injection for tests: fail:STEP | host-exit-after:STEP (docs/cli.md)");
  ctx.add_global_options(desc);
  po::positional_options_description pos;
  pos.add("what", 1).add("cpu", 1);
  po::variables_map vm;
  int code = 0;
  if (!ctx.parse(desc, pos, vm, "mkctl cpu move CPU --from NAME --to NAME [--timeout S]", code)) return code;
  if (!vm.count("what")) return ctx.usage_error("missing what to do: move");
  if (ctx.planning_only()) return ctx.usage_error("cpu move acts on mkerneld's instances; --topology does not apply");
  const std::string what = vm["what"].as<std::string>();
  if (what == "move") return cpu_move(ctx, vm);
  return ctx.usage_error("unknown cpu command '" + what + "' (use move)");
}

}  // namespace mkctl
