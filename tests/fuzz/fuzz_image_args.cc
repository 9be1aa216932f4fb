// Fuzzes mk::image::parse_args (kernel/image/args.cc): the mk-kernel image's
// command line, which comes from the host's `mkctl load --cmdline` (the
// user's text, split on blanks). The input is split at NUL bytes into argv
// (argv[0] = "mk-kernel", at most 64 arguments). Invariants: the result is
// -1 (boot), 0 (--help) or 2 (usage error); on -1 every value is within its
// documented bounds (tick-ms > 0 and < 10^9, grace-ms < 10^9, reaper fd
// 3..65535 or unset, a known wait mode and fault); parsing the canonical
// command line rebuilt from the result gives the same Args.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "args.h"
#include "fuzz_check.h"

namespace {

using mk::image::Args;
using mk::image::Fault;

const char* fault_name(Fault f) {
  switch (f) {
    case Fault::kExitAtBoot: return "exit-at-boot";
    case Fault::kHangAtHandover: return "hang-at-handover";
    case Fault::kRefuseHandover: return "refuse-handover";
    case Fault::kDieInPrepare: return "die-in-prepare";
    case Fault::kRefuseCpuRelease: return "refuse-cpu-release";
    case Fault::kNone: return nullptr;
  }
  MK_FUZZ_CHECK(false, "fault %d", static_cast<int>(f));
  return nullptr;
}

int parse(std::vector<std::string>& words, Args* a) {
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  return mk::image::parse_args(static_cast<int>(words.size()), argv.data(), a);
}

bool same(const Args& x, const Args& y) {
  return x.fault == y.fault && x.reaper_fd == y.reaper_fd && x.init == y.init && x.init_set == y.init_set &&
         x.mode == y.mode && x.tick_ms == y.tick_ms && x.grace_ms == y.grace_ms && x.kv == y.kv;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool quiet = [] {
    // Usage errors print the usage text: keep the fuzzer's output readable.
    return std::freopen("/dev/null", "w", stdout) != nullptr;
  }();
  (void)quiet;
  std::vector<std::string> words{"mk-kernel"};
  std::string cur;
  for (size_t i = 0; i < size && words.size() < 64; ++i) {
    if (data[i] == 0) {
      words.push_back(cur);
      cur.clear();
    } else {
      cur += static_cast<char>(data[i]);
    }
  }
  if (size > 0 && words.size() < 64) words.push_back(cur);

  Args a;
  const int rc = parse(words, &a);
  MK_FUZZ_CHECK(rc == -1 || rc == 0 || rc == 2, "parse_args returned %d", rc);
  if (rc != -1) return 0;
  MK_FUZZ_CHECK(a.tick_ms > 0 && a.tick_ms < 1000000000u, "tick_ms %u", a.tick_ms);
  MK_FUZZ_CHECK(a.grace_ms < 1000000000u, "grace_ms %u", a.grace_ms);
  MK_FUZZ_CHECK(a.reaper_fd == -1 || (a.reaper_fd >= 3 && a.reaper_fd <= 65535), "reaper fd %d", a.reaper_fd);
  MK_FUZZ_CHECK(a.mode == mk::ipi::WaitMode::kPoll || a.mode == mk::ipi::WaitMode::kAdaptive ||
                    a.mode == mk::ipi::WaitMode::kBlock,
                "wait mode %d", static_cast<int>(a.mode));
  MK_FUZZ_CHECK(a.init_set || a.init.empty(), "init without init_set");

  std::vector<std::string> canon{"mk-kernel", std::string("--wait-mode=") + mk::ipi::to_string(a.mode),
                                 "--tick-ms=" + std::to_string(a.tick_ms), "--grace-ms=" + std::to_string(a.grace_ms)};
  if (a.init_set) canon.push_back("--init=" + a.init);
  if (a.kv) canon.push_back("--services=kv");
  if (const char* f = fault_name(a.fault)) canon.push_back(std::string("--fault=") + f);
  if (a.reaper_fd != -1) canon.push_back("--reaper=" + std::to_string(a.reaper_fd));
  Args b;
  const int rc2 = parse(canon, &b);
  MK_FUZZ_CHECK(rc2 == -1 && same(a, b), "canonical command line parsed differently (rc %d)", rc2);
  return 0;
}
