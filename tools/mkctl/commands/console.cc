// mkctl console: what an instance printed (its bounded console log in the
// runtime directory); -f keeps printing what it appends, like tail -f.
#include <unistd.h>

#include "../commands.h"
#include "mkernel/console_log.h"

namespace mkctl {

int cmd_console(Context& ctx) {
  po::options_description desc("mkctl console options");
  desc.add_options()("name", po::value<std::string>(), "instance")(
      "follow,f", po::bool_switch(), "keep printing new output until interrupted");
  ctx.add_global_options(desc);
  po::positional_options_description pos;
  pos.add("name", 1);
  po::variables_map vm;
  int code = 0;
  if (!ctx.parse(desc, pos, vm, "mkctl console NAME [-f]", code)) return code;
  if (!vm.count("name")) return ctx.usage_error("missing the instance NAME");
  const bool follow = vm["follow"].as<bool>();
  if (follow && ctx.json()) return ctx.usage_error("-f streams text; it does not combine with --json");
  auto r = ctx.execute(mk::tools::rpc::ConsoleAction{vm["name"].as<std::string>()});
  if (!r.ok || !follow) return ctx.finish(r);
  // The daemon drains the pipe into the log; following is reading the file.
  const auto* path = r.result.if_contains("path");
  if (!path || !path->is_string()) return ctx.fail(MK_FAIL(EPROTO, "bad response", "console: no path"));
  if (auto f = mk::follow_console(std::string(path->get_string()), STDOUT_FILENO, -1); !f) {
    if (f.error().code() == EPIPE) return kExitOk;  // the reader went away (| head)
    return ctx.fail(f.error());
  }
  return kExitOk;
}

}  // namespace mkctl
