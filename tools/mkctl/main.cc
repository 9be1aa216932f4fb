// mkctl main: `mkctl VERB [options]`. Finds the verb in the command table
// and hands it the rest of the command line. Thin on purpose.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "commands.h"

namespace {

void usage(FILE* f) {
  std::size_t n = 0;
  const mkctl::Command* cmds = mkctl::commands(n);
  std::fprintf(f,
               "usage: mkctl VERB [options]   (mkctl VERB --help for a verb's options)\n\n"
               "mkernel control: partition this machine into instances with dedicated CPUs,\n"
               "memory and devices. Every verb takes --json and --topology FILE.xml.\n\nverbs:\n");
  for (std::size_t i = 0; i < n; ++i) std::fprintf(f, "  %-10s %s\n", cmds[i].name, cmds[i].summary);
  std::fprintf(f,
               "\nenvironment:\n  MKERNEL_RUNTIME_DIR  state directory (default /run/mkernel as root,\n"
               "                       $XDG_RUNTIME_DIR/mkernel otherwise); mkctl starts\n"
               "                       mkerneld there when none is running\n"
               "  MKERNEL_MKERNELD     the mkerneld binary (default: next to mkctl)\n");
}

}  // namespace

// Under ASan: no leak check at exit by default. mkctl is a short-lived CLI
// that the end-to-end tests run thousands of times, and LeakSanitizer's
// scan at exit was a third of each run (50 of 140 ms). The bad-input table
// (tests/security) turns it back on (ASAN_OPTIONS=detect_leaks=1 wins).
#if defined(__SANITIZE_ADDRESS__)
extern "C" const char* __asan_default_options() { return "detect_leaks=0"; }
#endif

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(stderr);
    return mkctl::kExitUsage;
  }
  if (!std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    usage(stdout);
    return mkctl::kExitOk;
  }
  std::size_t n = 0;
  const mkctl::Command* cmds = mkctl::commands(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (std::strcmp(cmds[i].name, argv[1]) != 0) continue;
    mkctl::Context ctx(argv[1], std::vector<std::string>(argv + 2, argv + argc));
    try {
      return cmds[i].fn(ctx);
    } catch (const std::exception& e) {
      // Boost throws on allocation or I/O failure; never let it abort.
      std::fprintf(stderr, "mkctl %s: internal error: %s\n", argv[1], e.what());
      return mkctl::kExitFailed;
    }
  }
  std::fprintf(stderr, "mkctl: unknown verb '%s'\n\n", argv[1]);
  usage(stderr);
  return mkctl::kExitUsage;
}
