// mkctl start: boot an instance's loaded image and wait until it is ready.
#include "../commands.h"

namespace mkctl {

int cmd_start(Context& ctx) {
  po::options_description desc("mkctl start options");
  desc.add_options()("name", po::value<std::string>(), "instance")(
      "timeout", po::value<uint32_t>()->default_value(10000), "milliseconds to wait for READY");
  ctx.add_global_options(desc);
  po::positional_options_description pos;
  pos.add("name", 1);
  po::variables_map vm;
  int code = 0;
  if (!ctx.parse(desc, pos, vm, "mkctl start NAME [--timeout MS]", code)) return code;
  if (!vm.count("name")) return ctx.usage_error("missing the instance NAME");
  mk::tools::rpc::StartAction a;
  a.name = vm["name"].as<std::string>();
  a.timeout_ms = vm["timeout"].as<uint32_t>();
  return ctx.finish(ctx.execute(a));
}

}  // namespace mkctl
