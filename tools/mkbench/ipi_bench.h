// DOC: `mkbench ipi` — the IPI suite (tools/mkbench/ipi*.cc).
//
// What it measures, all in one run on the same two pinned CPUs (--cpus A,B,
// default 0,1): mk::ipi round trips (p50/p99/p999, 64-byte payloads) in poll,
// adaptive and block mode between two processes; one-way throughput for 64 B,
// 1 KiB and 64 KiB payloads with and without batching; and the baselines the
// goals are stated against (raw cache-line ping-pong, eventfd ping-pong, pipe
// ping-pong, Boost.Lockfree spsc_queue between two threads, Boost.Interprocess
// message_queue round trip). Goals are reported, never enforced.
//
// Flow: run_ipi parses its options -> each measurement forks a pinned peer
// (or starts a pinned thread for spsc_queue) -> results are printed as a
// table or, with --json, as one JSON object with a `ratios` member.
#pragma once

#include "bench.h"

namespace mkbench {

// Returns 0 when it ran, 2 on bad arguments, 1 when a measurement failed.
int run_ipi(const Args& args);

}  // namespace mkbench
