// mkctl delete: free an instance and everything it holds (refused while it runs).
#include "../commands.h"

namespace mkctl {

int cmd_delete(Context& ctx) {
  po::options_description desc("mkctl delete options");
  desc.add_options()("name", po::value<std::string>(), "instance to delete");
  ctx.add_global_options(desc);
  po::positional_options_description pos;
  pos.add("name", 1);
  po::variables_map vm;
  int code = 0;
  if (!ctx.parse(desc, pos, vm, "mkctl delete NAME", code)) return code;
  if (!vm.count("name")) return ctx.usage_error("missing the instance NAME");
  std::string name = vm["name"].as<std::string>();

  return ctx.finish(ctx.execute(mk::tools::rpc::DeleteAction{std::move(name)}));
}

}  // namespace mkctl
