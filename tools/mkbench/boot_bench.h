// DOC: `mkbench boot` — start -> READY latency of the real mk-kernel image
// (tools/mkbench/boot.cc).
//
// What it measures: N boots (--runs, default 50) of the mk-kernel image
// through mk::boot_instance() on one CPU (--cpu, default the last PU of this
// machine) with one 64 MiB region on that CPU's NUMA node, each timed from
// the boot_instance() call until wait_ready() returns; shutdown and release
// are outside the timed part. Split into boot_instance() (cgroup, region,
// console, channel, boot tree, spawn) and wait_ready() (spawned image ->
// READY). Baseline in the same run: posix_spawn + waitpid of /bin/true.
// Goal (reported, not enforced): start -> READY p50 <= 5 ms.
//
// Needs root (cgroups); exits 1 when not root or when a boot fails.
#pragma once

#include "bench.h"

namespace mkbench {

// Returns 0 when it ran, 2 on bad arguments, 1 when not root or a boot failed.
int run_boot(const Args& args);

}  // namespace mkbench
