// mkctl top: per instance, CPU use of its CPUs, IPI messages/s, memory and
// state over one sampling interval.
#include "../commands.h"

namespace mkctl {

int cmd_top(Context& ctx) {
  po::options_description desc("mkctl top options");
  desc.add_options()("interval", po::value<uint32_t>()->default_value(500), "sampling interval in ms (50..10000)");
  ctx.add_global_options(desc);
  po::positional_options_description pos;
  po::variables_map vm;
  int code = 0;
  if (!ctx.parse(desc, pos, vm, "mkctl top [--interval MS]", code)) return code;
  mk::tools::rpc::TopAction a;
  a.interval_ms = vm["interval"].as<uint32_t>();
  if (a.interval_ms < 50 || a.interval_ms > 10000) return ctx.usage_error("--interval must be 50..10000");
  return ctx.finish(ctx.execute(a));
}

}  // namespace mkctl
