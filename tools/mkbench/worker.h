// DOC: `mkbench __worker MODE ...` — the tenants the in-instance suites run
// (hidden: not in the suite list). The image starts one with /bin/sh -c
// inside the instance (its cgroup, its CPUs); it works for --seconds and
// writes one JSON result file (--out, written with a rename):
//   probe    periodic-timer wake-up jitter: clock_nanosleep(TIMER_ABSTIME)
//            every --period-us (timer slack 1 ns), lateness of each wake-up
//            in µs (isolation.cc)
//   hog      CPU + memory-bandwidth aggressor: --threads threads streaming
//            read-modify-write over --bytes in all (no result unless --out)
//   compute  integer compute: ops of 2^18 xorshift/multiply/popcount steps
//   memory   memory-bound: ops = one read-modify-write pass over --bytes
//   cmd      --cmd CMD run with /bin/sh -c, again and again for --seconds
//            (at least once); an op = one run; fails if CMD exits non-zero
// Result: {mode, ops, wall_s, cpu_s (getrusage: self plus children, over
// the timed ops only), throughput, throughput_unit, lat_us [one per op]}
// or {error}.
#pragma once

#include "bench.h"

namespace mkbench {

// Returns 0 when the result was written, 2 on bad arguments, 1 on failure.
int run_worker(const Args& args);

}  // namespace mkbench
