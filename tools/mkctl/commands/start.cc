// mkctl start: boot an instance's loaded image and wait until it is ready.
#include "../commands.h"

namespace mkctl {

int cmd_start(Context& ctx) {
  po::options_description desc("mkctl start options");
  desc.add_options()("name", po::value<std::string>(), "instance")(
      "timeout", po::value<uint32_t>()->default_value(10000), "milliseconds to wait for READY")(
      "steer-irqs",
      "move every movable IRQ (/proc/irq/N/smp_affinity_list, default_smp_affinity) off the CPUs of the "
      "instances started with this option; the originals are kept in the runtime dir and restored when "
      "the last of them stops. Managed IRQs are named as not movable. Reported as 'irq steering'")(
      "evict-host-tasks",
      "move the host's other movable tasks off the instance's CPUs (sched_setaffinity; per-CPU kernel "
      "threads stay); given back when it stops. Reported as the 'host tasks' guarantee")(
      "exclusive-memory",
      "cgroup v1: cpuset.mem_exclusive on the instance's memory nodes (refused while another cpuset "
      "uses them; a later instance on the same nodes cannot start). Reported as 'memory nodes'");
  ctx.add_global_options(desc);
  po::positional_options_description pos;
  pos.add("name", 1);
  po::variables_map vm;
  int code = 0;
  if (!ctx.parse(desc, pos, vm, "mkctl start NAME [--timeout MS] [--steer-irqs] [--evict-host-tasks] [--exclusive-memory]", code)) return code;
  if (!vm.count("name")) return ctx.usage_error("missing the instance NAME");
  mk::tools::rpc::StartAction a;
  a.name = vm["name"].as<std::string>();
  a.timeout_ms = vm["timeout"].as<uint32_t>();
  if (a.timeout_ms < 1 || a.timeout_ms > 600000) return ctx.usage_error("--timeout must be 1..600000 (ms)");
  a.steer_irqs = vm.count("steer-irqs") > 0;
  a.evict_host_tasks = vm.count("evict-host-tasks") > 0;
  a.exclusive_memory = vm.count("exclusive-memory") > 0;
  return ctx.finish(ctx.execute(a));
}

}  // namespace mkctl
