// The mkctl verb table (see commands.h).
#include "commands.h"

namespace mkctl {

namespace {
constexpr Command kCommands[] = {
    {"topology", "show the machine: NUMA nodes, cores, CPU kinds, devices", cmd_topology},
    {"init", "set the pool of CPUs, memory and devices instances are carved from", cmd_init},
    {"create", "allocate an instance (exclusive CPUs, memory, devices), validated", cmd_create},
    {"delete", "free an instance and everything it holds", cmd_delete},
    {"load", "record the kernel image (validated ELF, sha256), cmdline and init of an instance", cmd_load},
    {"start", "boot an instance's image on its CPUs and wait for READY", cmd_start},
    {"stop", "shut an instance down over IPI (--force: SIGKILL)", cmd_stop},
    {"update", "live-update an instance in place (rollback on failure), or resize it: --cpus LIST",
     cmd_update},
    {"cpu", "cpu move CPU --from NAME --to NAME: hand a core between running instances, with consent", cmd_cpu},
    {"ping", "IPI round trips to an instance, from the host or --from another instance", cmd_ping},
    {"console", "an instance's console log (-f: follow)", cmd_console},
    {"top", "per instance: CPU use, IPI messages/s, memory, state", cmd_top},
    {"plan", "propose instances for a policy (pe-split, per-numa, even); --apply", cmd_plan},
    {"show", "show the pool and instances, or one instance (--dtb FILE: its boot tree)", cmd_show},
    {"host", "the host daemon mkerneld: host stop (instances keep running), host status", cmd_host},
};
}  // namespace

const Command* commands(std::size_t& count) {
  count = sizeof kCommands / sizeof kCommands[0];
  return kCommands;
}

}  // namespace mkctl
