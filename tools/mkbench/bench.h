// DOC: mkbench — the benchmark driver. Each suite is a function registered in
// the table in main.cc (one file per suite: ipi.cc, plan.cc, ...). A suite
// measures itself *and* its baselines in the same run, reports medians and
// ratios, and prints the command that reproduces it. Suites never assert
// speed: goals are reported, not enforced (the CI machine is a noisy VM).
#pragma once

#include <string>
#include <vector>

namespace mkbench {

struct Args {
  bool json = false;                // --json: machine-readable output on stdout
  std::vector<std::string> rest;    // suite-specific arguments
};

// A suite returns a process exit code (0 = ran; 2 = bad arguments; 1 = failed).
using SuiteFn = int (*)(const Args&);

struct Suite {
  const char* name;
  const char* help;  // one line
  SuiteFn fn;
};

// Suites (one per file).
int run_plan(const Args&);
int run_isolation(const Args&);  // isolation.cc
int run_pe_split(const Args&);   // pe_split.cc

}  // namespace mkbench
