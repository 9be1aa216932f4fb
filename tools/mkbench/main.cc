// mkbench main: parses `mkbench SUITE [--json] [suite args]` and dispatches to
// the suite table. Thin on purpose: each suite lives in its own file.
#include <cstdio>
#include <cstring>
#include <string>

#include "bench.h"
#include "boot_bench.h"
#include "ipi_bench.h"
#include "update_bench.h"
#include "worker.h"

namespace {

constexpr mkbench::Suite kSuites[] = {
    {"ipi", "IPI round trips and throughput vs cache-line ping-pong, eventfd, pipe, spsc_queue",
     mkbench::run_ipi},
    {"plan", "planner latency on real topologies (2x EPYC 9654 into 192 instances)",
     mkbench::run_plan},
    {"boot", "start -> READY of the real mk-kernel image via boot_instance vs posix_spawn /bin/true (root)",
     mkbench::run_boot},
    {"update", "live-update blackout of the mk-kernel KV service vs SCM_RIGHTS+mmap floor and cold restart (root)",
     mkbench::run_update},
    {"isolation", "noisy neighbour: timer-probe latency in A alone, A+B partitioned, A+B sharing CPUs (root)",
     mkbench::run_isolation},
    {"pe-split", "the same workload in the instance of each CPU kind (mkctl plan --policy pe-split) (root)",
     mkbench::run_pe_split},
};

void usage(FILE* f) {
  std::fprintf(f, "usage: mkbench SUITE [--json] [options]\n\nsuites:\n");
  for (const auto& s : kSuites) std::fprintf(f, "  %-12s %s\n", s.name, s.help);
  std::fprintf(f, "\nRun `mkbench SUITE --help` for a suite's options.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  mkbench::Args args;
  for (int i = 2; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json")) args.json = true;
    else args.rest.emplace_back(argv[i]);
  }
  // The in-instance suites' tenants (worker.h): hidden, not a suite.
  if (!std::strcmp(argv[1], "__worker")) return mkbench::run_worker(args);
  for (const auto& s : kSuites) {
    if (!std::strcmp(s.name, argv[1])) return s.fn(args);
  }
  std::fprintf(stderr, "mkbench: unknown suite '%s'\n", argv[1]);
  usage(stderr);
  return 2;
}
