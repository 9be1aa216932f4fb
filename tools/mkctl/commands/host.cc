// mkctl host stop | host status: the host daemon itself (mkerneld).
// `host stop` never starts a daemon just to stop it, and never touches
// instances: they outlive mkerneld (DESIGN.md §2) and the next daemon
// re-adopts them.
#include "../commands.h"
#include "daemon_client.h"

namespace mkctl {

namespace {

int host_stop(Context& ctx, const std::string& dir) {
  auto r = mk::tools::call_daemon(dir, mk::tools::rpc::HostStopAction{}, mk::tools::AutoStart::No);
  if (!r && r.error().code() == ENOTCONN) {
    // Already stopped is success: `host stop` is idempotent, like systemctl stop.
    return ctx.emit({{"stopped", false}, {"running", false}, {"runtime_dir", dir}},
                    "mkerneld is not running (" + dir + ")\n");
  }
  if (!r) return ctx.fail(r.error(), "mkerneld log: " + mk::tools::daemon_log_path(dir));
  return ctx.finish(*r);
}

int host_status(Context& ctx, const std::string& dir) {
  auto r = mk::tools::call_daemon(dir, mk::tools::rpc::HostStatusAction{}, mk::tools::AutoStart::No);
  if (!r && r.error().code() == ENOTCONN)
    return ctx.emit({{"running", false}, {"runtime_dir", dir}}, "mkerneld is not running (" + dir + ")\n");
  if (!r) return ctx.fail(r.error(), "mkerneld log: " + mk::tools::daemon_log_path(dir));
  return ctx.finish(*r);
}

}  // namespace

int cmd_host(Context& ctx) {
  po::options_description desc("mkctl host options");
  desc.add_options()("what", po::value<std::string>(), "stop | status");
  ctx.add_global_options(desc);
  po::positional_options_description pos;
  pos.add("what", 1);
  po::variables_map vm;
  int code = 0;
  if (!ctx.parse(desc, pos, vm, "mkctl host stop | mkctl host status", code)) return code;
  if (!vm.count("what")) return ctx.usage_error("missing what to do: stop or status");
  if (ctx.planning_only()) return ctx.usage_error("host acts on the live machine's mkerneld; --topology does not apply");
  std::string what = vm["what"].as<std::string>();
  std::string dir = mk::tools::runtime_dir();
  if (what == "stop") return host_stop(ctx, dir);
  if (what == "status") return host_status(ctx, dir);
  return ctx.usage_error("unknown host command '" + what + "' (use stop or status)");
}

}  // namespace mkctl
