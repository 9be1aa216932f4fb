// mkctl stop: shut an instance down over IPI (tenants get SIGTERM, then
// SIGKILL after the grace period); --force kills it at once.
#include "../commands.h"

namespace mkctl {

int cmd_stop(Context& ctx) {
  po::options_description desc("mkctl stop options");
  desc.add_options()("name", po::value<std::string>(), "instance")(
      "force", po::bool_switch(), "SIGKILL the instance instead of asking it to shut down")(
      "grace", po::value<uint32_t>()->default_value(2000), "ms between SIGTERM and SIGKILL for tenants")(
      "timeout", po::value<uint32_t>()->default_value(5000),
      "ms to wait for the reply and the exit before falling back to SIGKILL");
  ctx.add_global_options(desc);
  po::positional_options_description pos;
  pos.add("name", 1);
  po::variables_map vm;
  int code = 0;
  if (!ctx.parse(desc, pos, vm, "mkctl stop NAME [--force] [--grace MS] [--timeout MS]", code)) return code;
  if (!vm.count("name")) return ctx.usage_error("missing the instance NAME");
  mk::tools::rpc::StopAction a;
  a.name = vm["name"].as<std::string>();
  a.force = vm["force"].as<bool>();
  a.grace_ms = vm["grace"].as<uint32_t>();
  a.timeout_ms = vm["timeout"].as<uint32_t>();
  if (a.grace_ms > 600000) return ctx.usage_error("--grace must be 0..600000 (ms)");
  if (a.timeout_ms < 1 || a.timeout_ms > 600000) return ctx.usage_error("--timeout must be 1..600000 (ms)");
  return ctx.finish(ctx.execute(a));
}

}  // namespace mkctl
