// mkbench boot: start -> READY latency of the real mk-kernel image (see
// boot_bench.h). Baseline in the same run: posix_spawn + waitpid of /bin/true.
// Also reported: the image's own main() -> READY (ReadyMsg.boot_ns, its
// monotonic clock), which splits wait_ready() into exec + image startup
// (the rest) and the image's boot (this).
//
// Rerun: mkbench boot [--json] [--runs N] [--cpu N] [--image PATH]
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench_util.h"
#include "boot_bench.h"
#include "mk/units.h"
#include "mkernel/boot.h"
#include "mkernel/image.h"

extern char** environ;

namespace mkbench {

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr double kGoalP50Ms = 5.0;
constexpr const char* kUsage = "usage: mkbench boot [--json] [--runs N] [--cpu N] [--image PATH]\n";

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// posix_spawn + waitpid of `prog`; false (errno text in `err`) on failure.
bool spawn_and_wait(const char* prog, std::string& err) {
  char* argv[] = {const_cast<char*>(prog), nullptr};
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, prog, nullptr, nullptr, argv, environ);
  if (rc != 0) {
    err = std::string("posix_spawn ") + prog + ": " + std::strerror(rc);
    return false;
  }
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0) {
    if (errno != EINTR) {
      err = std::string("waitpid: ") + std::strerror(errno);
      return false;
    }
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    err = std::string(prog) + " did not exit 0";
    return false;
  }
  return true;
}

struct BootTimes {
  double boot_ms = 0;     // boot_instance() call -> wait_ready() returned
  double spawn_ms = 0;    // boot_instance() (setup + spawn)
  double ready_ms = 0;    // wait_ready() (spawned -> READY)
  double image_ms = 0;    // the image's own main() -> READY (ReadyMsg.boot_ns)
};

// One boot: timed start -> READY, then shutdown + release (untimed).
mk::Result<BootTimes> boot_once(const mk::Topology& topo, mk::BootRequest req) {
  BootTimes t;
  auto t0 = Clock::now();
  MK_TRY_ASSIGN(auto run, mk::boot_instance(topo, req));
  auto t1 = Clock::now();
  auto ready = run->wait_ready(10s);
  auto t2 = Clock::now();
  if (!ready) {
    run->kill();
    (void)run->release();
    return ready.error();
  }
  t.spawn_ms = ms_between(t0, t1);
  t.ready_ms = ms_between(t1, t2);
  t.boot_ms = ms_between(t0, t2);
  t.image_ms = static_cast<double>(ready->boot_ns) / 1e6;
  if (!run->shutdown(500ms, 5s)) run->kill();
  MK_TRY(run->release());
  return t;
}

}  // namespace

int run_boot(const Args& args) {
  long runs = 50;
  long cpu = -1;
  std::string image = self_dir() + "/mk-kernel";
  for (std::size_t i = 0; i < args.rest.size(); ++i) {
    const std::string& a = args.rest[i];
    bool has = i + 1 < args.rest.size();
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--runs" && has && parse_long_arg(args.rest[i + 1], 1, runs)) {
      ++i;
    } else if (a == "--cpu" && has && parse_long_arg(args.rest[i + 1], 0, cpu)) {
      ++i;
    } else if (a == "--image" && has) {
      image = args.rest[++i];
    } else {
      std::fputs(kUsage, stderr);
      return 2;
    }
  }
  if (::geteuid() != 0) {
    std::fprintf(stderr, "mkbench boot: needs root (each boot creates an instance cgroup); rerun with sudo\n");
    return 1;
  }
  auto info = mk::inspect_image(image);
  if (!info) {
    std::fprintf(stderr, "mkbench boot: %s\n", info.error().to_string().c_str());
    return 1;
  }
  auto topo = mk::load_topology_live();
  if (!topo) {
    std::fprintf(stderr, "mkbench boot: %s\n", topo.error().to_string().c_str());
    return 1;
  }
  if (topo->pus.empty()) {
    std::fprintf(stderr, "mkbench boot: the live topology has no PUs\n");
    return 1;
  }
  if (cpu < 0) cpu = topo->pus.back().os_index;
  if (!topo->find_pu(static_cast<uint32_t>(cpu))) {
    std::fprintf(stderr, "mkbench boot: cpu %ld is not a PU of this machine (%s)\n", cpu,
                 topo->all_pus().to_string().c_str());
    return 2;
  }
  mk::BootRequest req;
  req.instance.cpus = mk::CpuSet::of({static_cast<uint32_t>(cpu)});
  uint32_t node = topo->main_node_of(req.instance.cpus);
  req.instance.memory = {{node, 64 * mk::kMiB}};
  req.image.path = info->path;
  req.root = mk::SysRoot();

  // One untimed warm-up of each (page cache, cgroup hierarchy, dynamic loader).
  auto boot_req = [&](long n) {
    mk::BootRequest r = req;
    r.instance.id = static_cast<uint32_t>(1 + n % 511);  // boot tree: ids 1..511
    r.instance.name = "bench-boot-" + std::to_string(n);
    return r;
  };
  std::vector<double> boot_ms, spawn_ms, ready_ms, image_ms, true_ms;
  for (long i = -1; i < runs; ++i) {
    auto t = boot_once(*topo, boot_req(i < 0 ? 0 : i));
    if (!t) {
      std::string which = i < 0 ? "warm-up boot" : "boot " + std::to_string(i + 1);
      std::fprintf(stderr, "mkbench boot: %s of %s failed: %s\n", which.c_str(), info->path.c_str(),
                   t.error().to_string().c_str());
      return 1;
    }
    if (i < 0) continue;
    boot_ms.push_back(t->boot_ms);
    spawn_ms.push_back(t->spawn_ms);
    ready_ms.push_back(t->ready_ms);
    image_ms.push_back(t->image_ms);
  }
  const char* trivial = "/bin/true";
  for (long i = -1; i < runs; ++i) {
    std::string err;
    auto t0 = Clock::now();
    if (!spawn_and_wait(trivial, err)) {
      std::fprintf(stderr, "mkbench boot: baseline: %s\n", err.c_str());
      return 1;
    }
    if (i >= 0) true_ms.push_back(ms_between(t0, Clock::now()));
  }
  LatencyStats boot = stats_of(boot_ms), spawn = stats_of(spawn_ms), ready = stats_of(ready_ms),
        img = stats_of(image_ms), base = stats_of(true_ms);
  double ratio = base.p50_ms > 0 ? boot.p50_ms / base.p50_ms : 0;
  bool met = boot.p50_ms <= kGoalP50Ms;
  std::string rerun = "mkbench boot --runs " + std::to_string(runs) + " --cpu " + std::to_string(cpu) +
                      " --image " + info->path;

  if (args.json) {
    boost::json::object doc{{"suite", "boot"},
                            {"image", info->path},
                            {"image_sha256", info->sha256},
                            {"cpu", cpu},
                            {"node", node},
                            {"memory_bytes", 64 * mk::kMiB},
                            {"runs", runs},
                            {"start_to_ready", to_json(boot)},
                            {"boot_instance", to_json(spawn)},
                            {"wait_ready", to_json(ready)},
                            {"image_main_to_ready", to_json(img)},
                            {"baseline_posix_spawn_true", to_json(base)},
                            {"ratio_p50_vs_spawn_true", ratio},
                            {"goal_p50_ms", kGoalP50Ms},
                            {"goal_met", met},
                            {"rerun", rerun}};
    std::printf("%s\n", boost::json::serialize(doc).c_str());
    return 0;
  }
  std::printf("mkbench boot: %s on cpu %ld (node %u, 64 MiB), %ld runs (+1 warm-up each)\n", info->path.c_str(),
              cpu, node, runs);
  std::printf("  %-40s %9s %9s %9s %9s\n", "case", "p50 ms", "p99 ms", "min ms", "max ms");
  auto row = [](const char* name, const LatencyStats& s) {
    std::printf("  %-40s %9.3f %9.3f %9.3f %9.3f\n", name, s.p50_ms, s.p99_ms, s.min_ms, s.max_ms);
  };
  row("start -> READY", boot);
  row("  boot_instance() (setup + spawn)", spawn);
  row("  wait_ready() (spawned -> READY)", ready);
  row("  image main() -> READY (image's clock)", img);
  row("baseline: posix_spawn+waitpid /bin/true", base);
  std::printf("  ratio p50 start->READY / spawn true: %.1fx\n", ratio);
  std::printf("  goal: start -> READY p50 <= %.0f ms: %s (p50 %.3f ms)\n", kGoalP50Ms, met ? "met" : "NOT met",
              boot.p50_ms);
  std::printf("  rerun: %s\n", rerun.c_str());
  return 0;
}

}  // namespace mkbench
