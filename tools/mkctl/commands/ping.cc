// mkctl ping: IPI round trips to a running instance, from the host or from
// another instance over their channel; min/p50/p99.
#include "../commands.h"

namespace mkctl {

int cmd_ping(Context& ctx) {
  po::options_description desc("mkctl ping options");
  desc.add_options()("name", po::value<std::string>(), "instance to ping")(
      "from", po::value<std::string>(), "instance that pings NAME over their channel (default: the host)")(
      "count,c", po::value<uint32_t>()->default_value(10), "round trips (1..100000)")(
      "size,s", po::value<uint32_t>()->default_value(64), "payload bytes (0..4096)");
  ctx.add_global_options(desc);
  po::positional_options_description pos;
  pos.add("name", 1);
  po::variables_map vm;
  int code = 0;
  if (!ctx.parse(desc, pos, vm, "mkctl ping NAME [--from NAME] [--count N] [--size BYTES]", code)) return code;
  if (!vm.count("name")) return ctx.usage_error("missing the instance NAME");
  mk::tools::rpc::PingAction a;
  a.name = vm["name"].as<std::string>();
  if (vm.count("from")) a.from = vm["from"].as<std::string>();
  a.count = vm["count"].as<uint32_t>();
  a.size = vm["size"].as<uint32_t>();
  if (a.count < 1 || a.count > 100000) return ctx.usage_error("--count must be 1..100000");
  if (a.size > 4096) return ctx.usage_error("--size must be 0..4096");
  return ctx.finish(ctx.execute(a));
}

}  // namespace mkctl
