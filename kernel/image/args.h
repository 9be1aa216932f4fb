// DOC: mk-kernel's command line (the instance's bootargs, main.cc's
// "Options"): the options, the fault flags of docs/sdk.md "Live update" and
// "Moving CPUs", and their parser.
//
// Place in the flow: main() parses argv before anything else; a bad
// argument is a usage error (exit 2) before the boot tree is read; the
// parsed Args stay with the image for its whole life (e.g. --fault is
// checked at each update step, --services=kv decides which handlers a live
// update registers).
//
// Returns (parse_args): -1 to go on booting, or the exit code (0 for
// --help, exit_code::kUsage for a bad argument).
#pragma once

#include <string>
#include <string_view>

#include "ipi/doorbell.h"

namespace mk::image {

enum class Fault { kNone, kExitAtBoot, kHangAtHandover, kRefuseHandover, kDieInPrepare, kRefuseCpuRelease };

struct Args {
  Fault fault = Fault::kNone;
  int reaper_fd = -1;  // --reaper=FD
  std::string init;
  bool init_set = false;
  ipi::WaitMode mode = ipi::WaitMode::kAdaptive;
  unsigned tick_ms = 10;
  unsigned grace_ms = 1000;
  bool kv = false;
};

int parse_args(int argc, char** argv, Args* a);

}  // namespace mk::image
