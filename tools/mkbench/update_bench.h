// DOC: `mkbench update` — the blackout of a live update of the real mk-kernel
// KV service (tools/mkbench/update.cc), against its physical floor and a
// cold restart, in the same run.
//
// What it measures: for each preserved-memory size (--sizes, default
// 16M,256M,1G) and each count of open client connections (--conns, default
// 10,1000): one instance on one CPU (--cpu, default the last PU) with one
// region of that size, a listen device on 127.0.0.1 and `--services=kv`,
// its store filled to ~60% with 64 KiB values over RESP, then `conns` TCP
// clients connected; then --runs (default 50, +1 warm-up) mk::live_update()
// calls, each reporting its blackout (kMsgUpdateFreeze sent -> the
// successor's restore reply). After every update one client (round robin)
// must still get PONG on its same connection, and at the end a key written
// before the first update must read back whole — else the suite fails.
// Baselines in the same run, same sizes and connection counts:
//   floor  the fds (a listen socket + `conns` connected TCP sockets) passed
//          over SCM_RIGHTS to an already-running process, which maps a
//          populated memfd of the same size and answers: what the kernel's
//          fd passing and mmap alone cost (the update cannot beat it);
//   cold   what a user would do without mkernel: stop the instance, boot a
//          fresh one, reload the same data from a dump file of RESP commands,
//          reconnect the clients (--cold-runs, default 5);
//   criu   `criu check`: CRIU dump + restore is measured only when CRIU works
//          on this kernel; otherwise the row says why not.
// Goals (reported, not enforced): update p99 <= 1 ms at 1 GiB + 1000
// connections; flat in memory: p50 at the largest size <= 1.2x p50 at the
// smallest, for each connection count.
//
// Needs root (cgroups, namespaces); exits 1 when not root or when an update
// fails or loses data.
#pragma once

#include "bench.h"

namespace mkbench {

// Returns 0 when it ran, 2 on bad arguments, 1 when not root or it failed.
// `--staged` among the arguments runs run_update_staged instead.
int run_update(const Args& args);

// mkbench update --staged (update_staged.cc): the per-step blackouts
// (tenants, services) and the total of mk::staged_update on an instance
// with two CPUs or more (--cpus, default every PU), a KV store filled to
// ~60% (--sizes, default 256M), --conns clients (default 10,1000) and a
// tenant, --runs times (default 20, +1 warm-up), then as many in-place
// updates of the same instance: medians, p99s and the ratio of the worst
// step's p99 to the in-place p99. After every update a client must still
// get PONG on its connection, and a key written first must read back.
// Goal (reported): per-step blackout p99 <= 2 ms.
int run_update_staged(const Args& args);

}  // namespace mkbench
