// mkctl load: record (validated, hashed) the kernel image an instance boots.
#include <unistd.h>

#include "../commands.h"

namespace mkctl {

int cmd_load(Context& ctx) {
  po::options_description desc("mkctl load options");
  desc.add_options()("name", po::value<std::string>(), "instance")(
      "kernel", po::value<std::string>(), "the image: an executable ELF for this architecture (e.g. mk-kernel)")(
      "cmdline", po::value<std::string>()->default_value(""),
      "the image's command line (split on blanks into argv[1..]; mk-kernel: --tick-ms=N --wait-mode=poll|adaptive|block --grace-ms=N)")(
      "init", po::value<std::vector<std::string>>()->multitoken(),
      "the tenant command started inside the instance (rest of the line after --init)");
  ctx.add_global_options(desc);
  po::positional_options_description pos;
  pos.add("name", 1);
  po::variables_map vm;
  int code = 0;
  if (!ctx.parse(desc, pos, vm, "mkctl load NAME --kernel IMAGE [--cmdline STR] [--init CMD...]", code)) return code;
  if (!vm.count("name")) return ctx.usage_error("missing the instance NAME");
  if (!vm.count("kernel")) return ctx.usage_error("missing --kernel IMAGE (mk-kernel is the default image)");
  mk::tools::rpc::LoadAction a;
  a.name = vm["name"].as<std::string>();
  a.kernel = vm["kernel"].as<std::string>();
  if (!a.kernel.empty() && a.kernel[0] != '/') {  // the daemon has another cwd
    char cwd[4096];
    if (::getcwd(cwd, sizeof cwd)) a.kernel = std::string(cwd) + "/" + a.kernel;
  }
  a.cmdline = vm["cmdline"].as<std::string>();
  if (vm.count("init")) {
    for (const auto& w : vm["init"].as<std::vector<std::string>>()) a.init += (a.init.empty() ? "" : " ") + w;
  }
  return ctx.finish(ctx.execute(a));
}

}  // namespace mkctl
