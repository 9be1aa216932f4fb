// DOC: mk::soak::run_cli — runs one command (mkctl, with extra environment)
// as a child and collects its exit code, stdout and stderr; what mksoak
// drives the system with, as a user would.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace mk::soak {

struct CliResult {
  int code = -1;  // exit status; 128+N for signal N; -1 when it could not run
  std::string out, err;
  double ms = 0;  // wall time
};

// argv[0] is a path. `env` entries ("K=V") are added to this process's
// environment; "K=" removes K. A child still running after `timeout` is
// SIGKILLed (code 128+9).
CliResult run_cli(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                  std::chrono::milliseconds timeout);

}  // namespace mk::soak
