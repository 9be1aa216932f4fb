// mk-kernel's command line (args.h).
#include "args.h"

#include <cstdio>

#include "mksdk/boot_info.h"

namespace mk::image {

namespace {

namespace exit_code = sdk::exit_code;

bool parse_fault(std::string_view s, Fault* f) {
  if (s == "exit-at-boot") {
    *f = Fault::kExitAtBoot;
  } else if (s == "hang-at-handover") {
    *f = Fault::kHangAtHandover;
  } else if (s == "refuse-handover") {
    *f = Fault::kRefuseHandover;
  } else if (s == "die-in-prepare") {
    *f = Fault::kDieInPrepare;
  } else if (s == "refuse-cpu-release") {
    *f = Fault::kRefuseCpuRelease;
  } else {
    return false;
  }
  return true;
}


constexpr char kUsage[] =
    "usage: mk-kernel [--init=CMD] [--wait-mode=poll|adaptive|block] [--tick-ms=N] [--grace-ms=N]\n"
    "                 [--services=kv]\n"
    "                 [--fault=exit-at-boot|hang-at-handover|refuse-handover|die-in-prepare|refuse-cpu-release]\n"
    "       mk-kernel --reaper=FD   (exec'ed by a retiring image, see docs/sdk.md)\n"
    "The host starts it with the boot tree on fd 3 (see docs/sdk.md).\n";

bool parse_uint(std::string_view s, unsigned* out) {
  if (s.empty() || s.size() > 9) return false;
  unsigned v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  *out = v;
  return true;
}

// "kv" or "" (a comma-separated list of known services).
bool parse_services(std::string_view s, Args* a) {
  while (!s.empty()) {
    const std::size_t comma = s.find(',');
    const std::string_view one = s.substr(0, comma);
    if (one == "kv") {
      a->kv = true;
    } else if (!one.empty()) {
      return false;
    }
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return true;
}

}  // namespace

int parse_args(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    std::string_view s = argv[i];
    auto value = [&](std::string_view key, std::string_view* v) {
      if (s.substr(0, key.size()) != key) return false;
      if (s.size() > key.size() && s[key.size()] == '=') {
        *v = s.substr(key.size() + 1);
        return true;
      }
      if (s.size() == key.size() && i + 1 < argc) {
        *v = argv[++i];
        return true;
      }
      return false;
    };
    std::string_view v;
    unsigned u = 0;
    if (s == "--help" || s == "-h") {
      std::fputs(kUsage, stdout);
      return exit_code::kOk;
    } else if (value("--init", &v)) {
      a->init = std::string(v);
      a->init_set = true;
    } else if (value("--wait-mode", &v) && ipi::parse_wait_mode(v, &a->mode)) {
    } else if (value("--tick-ms", &v) && parse_uint(v, &a->tick_ms) && a->tick_ms > 0) {
    } else if (value("--grace-ms", &v) && parse_uint(v, &a->grace_ms)) {
    } else if (value("--services", &v) && parse_services(v, a)) {
    } else if (value("--fault", &v) && parse_fault(v, &a->fault)) {
    } else if (value("--reaper", &v) && parse_uint(v, &u) && u >= 3 && u <= 65535) {
      a->reaper_fd = static_cast<int>(u);
    } else {
      std::fprintf(stderr, "mk-kernel: bad argument '%s'\n%s", argv[i], kUsage);
      return exit_code::kUsage;
    }
  }
  return -1;
}

}  // namespace mk::image
