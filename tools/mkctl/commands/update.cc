// mkctl update: live-update a running instance in place (DESIGN.md §5,
// docs/handover.md): the new image is booted and parked on the instance's
// CPUs, the old one prepares and freezes, its state (memory, fds, tenants)
// is handed over, the new one restores and serves; any failure rolls back.
// Prints each phase as the daemon reports it, then the blackout.
// With --cpus LIST it resizes the instance instead (mkerneld/cpu_move.cc):
// CPUs leaving are released with the image's consent, new ones added from
// the pool's free CPUs; the tenants follow. With --memory LIST or --device
// SPEC... it adds and removes regions or devices (mkerneld/resources.cc).
#include <cmath>
#include <unistd.h>

#include <cstdio>

#include "../commands.h"

namespace mkctl {

namespace {

// A staged update's step: name, time, blackout (handover steps), what moved.
void print_step(const boost::json::object& p) {
  const auto* step = p.if_contains("step");
  const auto* ms = p.if_contains("ms");
  const auto* moved = p.if_contains("moved");
  if (!step || !step->is_string() || !ms || !ms->is_number()) return;
  char blackout[48] = "";
  if (const auto* b = p.if_contains("blackout_ms"); b && b->is_number())
    std::snprintf(blackout, sizeof blackout, "blackout %8.3f ms", b->to_number<double>());
  std::printf("  %-16s %9.3f ms  %-21s %s\n", std::string(step->get_string()).c_str(), ms->to_number<double>(), blackout,
              moved && moved->is_string() ? std::string(moved->get_string()).c_str() : "");
  if (const auto* c = p.if_contains("check"); c && c->is_string())
    std::printf("  %-16s CPU check: %s\n", "", std::string(c->get_string()).c_str());
  std::fflush(stdout);
}

void print_phase(const boost::json::object& p) {
  if (p.contains("step")) return print_step(p);
  const auto* phase = p.if_contains("phase");
  const auto* ms = p.if_contains("ms");
  if (!phase || !phase->is_string() || !ms || !ms->is_number()) return;
  std::printf("  %-9s %9.3f ms\n", std::string(phase->get_string()).c_str(), ms->to_number<double>());
  std::fflush(stdout);
}

// --fault of a move (--cpus, --memory, --device, --staged; cpu move has its
// own copy): fail:STEP | host-exit-after:STEP, checked here so a typo is a
// usage error (exit 2) rather than the daemon's "bad request".
bool move_fault_ok(const std::string& f) {
  return f.empty() || (f.rfind("fail:", 0) == 0 && f.size() > 5) ||
         (f.rfind("host-exit-after:", 0) == 0 && f.size() > 16);
}

// --cpus LIST: grow or shrink the instance (running or not).
int resize(Context& ctx, const po::variables_map& vm, double timeout_s) {
  if (vm.count("kernel") || vm.count("cmdline"))
    return ctx.usage_error("--cpus resizes the instance; --kernel/--cmdline update its image: one at a time");
  if (ctx.planning_only()) return ctx.usage_error("update acts on mkerneld's instances; --topology does not apply");
  const std::string list = vm["cpus"].as<std::string>();
  auto cpus = mk::CpuSet::parse(list);
  if (!cpus) return ctx.usage_error("--cpus: " + std::string(cpus.error().message()));
  if (cpus->empty()) return ctx.usage_error("--cpus: an instance needs at least one CPU");
  mk::tools::rpc::ResizeAction a;
  a.name = vm["name"].as<std::string>();
  a.cpus = *cpus;
  a.timeout_ms = static_cast<uint32_t>(std::lround(timeout_s * 1000));
  a.fault = vm["fault"].as<std::string>();
  if (!move_fault_ok(a.fault))
    return ctx.usage_error("--fault: '" + a.fault + "': with --cpus use fail:STEP or host-exit-after:STEP");
  return ctx.finish(ctx.execute(a));
}

// --memory LIST / --device SPEC...: the instance's whole region or device
// list after the change (running or not).
int resources(Context& ctx, const po::variables_map& vm, double timeout_s, const std::vector<std::string>& memory,
              const std::vector<std::string>& devices) {
  if (vm.count("kernel") || vm.count("cmdline") || vm["staged"].as<bool>() || vm.count("cpus"))
    return ctx.usage_error("--memory/--device change the instance's resources; --cpus, --kernel, --cmdline and "
                           "--staged are other changes: one at a time");
  if (!memory.empty() && !devices.empty())
    return ctx.usage_error("--memory and --device: one at a time (each is the whole list after the change)");
  if (ctx.planning_only()) return ctx.usage_error("update acts on mkerneld's instances; --topology does not apply");
  mk::tools::rpc::ResourcesAction a;
  a.name = vm["name"].as<std::string>();
  if (!memory.empty()) {
    a.memory.emplace();
    for (const auto& arg : memory) {
      std::size_t from = 0;
      while (from <= arg.size()) {
        const std::size_t comma = std::min(arg.find(',', from), arg.size());
        const std::string item = arg.substr(from, comma - from);
        auto m = mk::MemorySpec::parse(item);
        if (!m) return ctx.usage_error("--memory: " + std::string(m.error().message()) +
                                       " (SIZE[@NODE] per region, e.g. --memory 64M,32M@0)");
        a.memory->push_back(*m);
        from = comma + 1;
      }
    }
  } else {
    a.devices.emplace();
    const bool none = devices.size() == 1 && devices.front() == "none";
    for (const auto& d : devices) {
      if (none) break;
      if (d == "none") return ctx.usage_error("--device none stands alone (it means: no device but the console)");
      auto s = mk::DeviceSpec::parse(d);
      if (!s) return ctx.usage_error("--device: " + std::string(s.error().message()));
      a.devices->push_back(*s);
    }
  }
  a.timeout_ms = static_cast<uint32_t>(std::lround(timeout_s * 1000));
  a.fault = vm["fault"].as<std::string>();
  if (!move_fault_ok(a.fault))
    return ctx.usage_error("--fault: '" + a.fault + "': with --memory/--device use fail:STEP or host-exit-after:STEP");
  return ctx.finish(ctx.execute(a));
}

}  // namespace

int cmd_update(Context& ctx) {
  po::options_description desc("mkctl update options");
  std::vector<std::string> memory, devices;
  desc.add_options()("name", po::value<std::string>(), "instance")(
      "kernel", po::value<std::string>(), "the new image (default: the loaded image's path, read again)")(
      "cmdline", po::value<std::string>(), "the new image's command line (default: the loaded one)")(
      "timeout", po::value<double>()->default_value(10.0),
      "seconds each step may take (new image READY, prepare, freeze, restore) before the update rolls back")(
      "staged", po::bool_switch(),
      "staged update by core migration: the new image starts on a CPU taken from the old one (or --spare-cpus), "
      "tenants, services and peers move to it one handover each, then the CPUs follow")(
      "spare-cpus", po::value<std::string>(), "with --staged: free pool CPUs the new image starts on")(
      "abort", po::bool_switch(), "abort the staged update running on NAME: everything returns to the old image")(
      "cpus", po::value<std::string>(),
      "resize instead: the instance's new CPU list (grow from the pool's free CPUs, shrink with the image's "
      "consent; its tenants follow)")(
      "memory", po::value(&memory)->composing(),
      "change the instance's memory instead: its whole region list after, SIZE[@NODE] per region, comma-separated "
      "or repeated (regions it keeps from the start stay; the rest are released with the image's consent, new "
      "ones added)")(
      "device", po::value(&devices)->multitoken()->composing(),
      "change its devices instead: the whole device list after (net:IFNAME | block:NAME | file:PATH[:ro] | "
      "listen:ADDR:PORT, repeatable; `none`: only the console); new ones are added first, missing ones released "
      "with the image's consent")(
      "fault", po::value<std::string>()->default_value(""),
      "fault injection for tests: corrupt-package | host-exit-after-freeze (docs/handover.md); with --cpus or "
      "--staged: fail:STEP | host-exit-after:STEP (docs/cli.md)");
  ctx.add_global_options(desc);
  po::positional_options_description pos;
  pos.add("name", 1);
  po::variables_map vm;
  int code = 0;
  if (!ctx.parse(desc, pos, vm, "mkctl update NAME [--kernel IMAGE] [--cmdline TEXT] [--timeout S] | mkctl update NAME --staged [--spare-cpus LIST] | mkctl update --abort NAME | mkctl update NAME --cpus LIST | mkctl update NAME --memory SIZE[@NODE],... | mkctl update NAME --device SPEC...",
                 code))
    return code;
  if (!vm.count("name")) return ctx.usage_error("missing the instance NAME");
  const double s = vm["timeout"].as<double>();
  if (!std::isfinite(s) || s < 0.001 || s > 600) return ctx.usage_error("--timeout: seconds, 0.001..600");
  if (vm["abort"].as<bool>()) {
    if (vm.count("cpus") || vm.count("kernel") || vm["staged"].as<bool>() || !memory.empty() || !devices.empty())
      return ctx.usage_error("--abort NAME takes nothing else");
    if (ctx.planning_only()) return ctx.usage_error("update acts on mkerneld's instances; --topology does not apply");
    return ctx.finish(ctx.execute(mk::tools::rpc::UpdateAbortAction{vm["name"].as<std::string>()}));
  }
  if (!memory.empty() || !devices.empty()) return resources(ctx, vm, s, memory, devices);
  if (vm.count("cpus")) {
    if (vm["staged"].as<bool>()) return ctx.usage_error("--cpus resizes the instance; --staged updates its image: one at a time");
    return resize(ctx, vm, s);
  }
  mk::tools::rpc::UpdateAction a;
  a.name = vm["name"].as<std::string>();
  a.staged = vm["staged"].as<bool>();
  if (vm.count("spare-cpus")) {
    if (!a.staged) return ctx.usage_error("--spare-cpus goes with --staged");
    auto c = mk::CpuSet::parse(vm["spare-cpus"].as<std::string>());
    if (!c) return ctx.usage_error("--spare-cpus: " + std::string(c.error().message()));
    if (c->empty()) return ctx.usage_error("--spare-cpus: give at least one CPU");
    a.spare_cpus = *c;
  }
  if (vm.count("kernel")) {
    a.kernel = vm["kernel"].as<std::string>();
    if (a.kernel.empty()) return ctx.usage_error("--kernel: empty path");
    char cwd[4096];
    if (a.kernel.front() != '/' && ::getcwd(cwd, sizeof cwd)) a.kernel = std::string(cwd) + "/" + a.kernel;  // the daemon has another cwd
  }
  if (vm.count("cmdline")) a.cmdline = vm["cmdline"].as<std::string>();
  a.timeout_ms = static_cast<uint32_t>(std::lround(s * 1000));
  a.fault = vm["fault"].as<std::string>();
  if (a.staged ? !move_fault_ok(a.fault)
               : !a.fault.empty() && a.fault != "corrupt-package" && a.fault != "host-exit-after-freeze")
    return ctx.usage_error("--fault: '" + a.fault + "': " +
                           (a.staged ? "with --staged use fail:STEP or host-exit-after:STEP"
                                     : "use corrupt-package or host-exit-after-freeze"));
  // The header goes out with the first progress frame (or the result): a
  // request refused before anything ran prints nothing on stdout.
  bool header = ctx.json();
  auto print_header = [&] {
    if (header) return;
    header = true;
    std::printf("updating '%s'%s\n", a.name.c_str(), a.staged ? " in stages" : "");
    std::fflush(stdout);
  };
  auto on_progress = [&ctx, &print_header](const boost::json::object& p) {
    if (ctx.json()) return;
    print_header();
    print_phase(p);
  };
  mk::tools::rpc::Response r = ctx.execute(a, on_progress);
  if (r.ok) print_header();
  return ctx.finish(r);
}

}  // namespace mkctl
