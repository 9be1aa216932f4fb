// DOC: `mkbench isolation` — the noisy-neighbour benchmark (issue #7).
//
// A latency probe in instance A and an aggressor in instance B, three
// configurations in the same run (each --runs times, interleaved):
//   alone        A by itself (its own CPUs, cpuset + memory cgroup)
//   partitioned  A and B each their own instance: own CPUs, cgroups, memory
// In both, while A runs, the host's movable tasks and the IRQs are moved off
// A's CPUs (mk::evict_host_tasks, mk::IrqSteering: what mkerneld does for
// `mkctl start --evict-host-tasks` and IRQ steering) and put back after;
// --no-enforce leaves them (a v1 cpuset alone does not keep host tasks off).
//   shared       A and B booted the same way but without partitioning: both
//                on A's CPUs, no cgroups (affinity only), like two services
//                sharing a box
// The probe (`mkbench __worker probe`, A's tenant) is a periodic-timer
// wake-up jitter probe: clock_nanosleep(TIMER_ABSTIME) every --period-us,
// lateness of each wake-up. Why this probe and not a request round trip: a
// round trip needs a second party (the host or another instance) whose own
// scheduling is part of every sample; on a 2-CPU machine the host has no
// CPU of its own, so a ping would measure the host's noise as much as A's.
// The timer probe has nobody else on its path: its lateness is exactly how
// long A waited for its CPU, which is the harm a neighbour does.
// The aggressor (B's tenant) is stress-ng (--cpu and --vm, one of each per
// B CPU, 128 MiB) when installed, else `mkbench __worker hog` (the same
// shape: CPU + streaming read-modify-write threads over 128 MiB).
// Reported: p50/p99/p999/max of the lateness per configuration, the ratios
// to alone, the per-run p99s, and A's (and B's) guarantee lines
// (mk::Guarantee) in each configuration. Goal (reported, not enforced):
// partitioned p99 <= 1.3x alone, and shared worse than partitioned.
//
// Needs root (cgroups). Rerun: the command printed at the end.
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "bench.h"
#include "bench_instance.h"
#include "bench_util.h"
#include "mk/units.h"
#include "mkernel/boot.h"
#include "mkernel/image.h"

namespace mkbench {

namespace {

using namespace std::chrono_literals;

constexpr const char* kIsoUsage =
    "usage: mkbench isolation [--json] [--runs N] [--seconds S] [--period-us N] [--cpus A:B]\n"
    "                         [--hog auto|stress-ng|builtin] [--no-enforce] [--image PATH]\n"
    "  A alone, A+B partitioned, A+B sharing A's CPUs; the probe runs in A, the aggressor in B.\n"
    "  --cpus A:B    CPU lists of A and B (default: the last PU : the first PU)\n"
    "  --no-enforce  alone/partitioned: leave host tasks and IRQs on A's CPUs (default: moved\n"
    "                off while A runs, as mkctl start --evict-host-tasks and IRQ steering do)\n";
constexpr double kGoalRatio = 1.3;
constexpr const char* kConfigs[3] = {"alone", "partitioned", "shared"};

// A positive number of seconds, at most an hour.
bool parse_seconds(const std::string& s, double& out) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || *end || !std::isfinite(v) || v <= 0 || v > 3600) return false;
  out = v;
  return true;
}

std::string find_in_path(const char* prog) {
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "/usr/bin:/bin";
  std::size_t pos = 0;
  while (pos <= p.size()) {
    std::size_t c = p.find(':', pos);
    std::string dir = p.substr(pos, c == std::string::npos ? std::string::npos : c - pos);
    std::string f = (dir.empty() ? "." : dir) + "/" + prog;
    if (::access(f.c_str(), X_OK) == 0) return f;
    if (c == std::string::npos) break;
    pos = c + 1;
  }
  return "";
}

struct ConfigResult {
  std::vector<double> samples;  // lateness, µs, all runs
  std::vector<double> run_p99;
  std::vector<std::string> a_guarantees, b_guarantees;
  std::string a_cpus, b_cpus;
  double p50 = 0, p99 = 0, p999 = 0, max = 0;
};

std::vector<std::string> lines_of(const mk::Guarantees& gs) {
  std::vector<std::string> out;
  for (const auto& g : gs) out.push_back(mk::to_line(g));
  return out;
}

boost::json::array json_lines(const std::vector<std::string>& v) {
  boost::json::array a;
  for (const auto& s : v) a.push_back(boost::json::string(s));
  return a;
}

}  // namespace

int run_isolation(const Args& args) {
  long runs = 3, period_us = 200;
  double seconds = 5.0;
  bool enforce = true;
  std::string cpus_arg, hog_arg = "auto", image = self_dir() + "/mk-kernel";
  for (std::size_t i = 0; i < args.rest.size(); ++i) {
    const std::string& a = args.rest[i];
    bool has = i + 1 < args.rest.size();
    if (a == "--help" || a == "-h") {
      std::fputs(kIsoUsage, stdout);
      return 0;
    } else if (a == "--runs" && has && parse_long_arg(args.rest[i + 1], 1, runs) && runs <= 100) {
      ++i;
    } else if (a == "--seconds" && has && parse_seconds(args.rest[i + 1], seconds)) {
      ++i;
    } else if (a == "--period-us" && has && parse_long_arg(args.rest[i + 1], 50, period_us) && period_us <= 1000000) {
      ++i;
    } else if (a == "--cpus" && has) {
      cpus_arg = args.rest[++i];
    } else if (a == "--hog" && has && (args.rest[i + 1] == "auto" || args.rest[i + 1] == "stress-ng" ||
                                       args.rest[i + 1] == "builtin")) {
      hog_arg = args.rest[++i];
    } else if (a == "--no-enforce") {
      enforce = false;
    } else if (a == "--image" && has) {
      image = args.rest[++i];
    } else {
      std::fprintf(stderr, "mkbench isolation: bad argument '%s'\n", a.c_str());
      std::fputs(kIsoUsage, stderr);
      return 2;
    }
  }
  auto topo = mk::load_topology_live();
  if (!topo || topo->pus.size() < 2) {
    std::fprintf(stderr, "mkbench isolation: needs a machine with at least 2 CPUs (%s)\n",
                 topo ? "this one has 1" : topo.error().to_string().c_str());
    return 1;
  }
  mk::CpuSet a_cpus = mk::CpuSet::of({topo->pus.back().os_index});
  mk::CpuSet b_cpus = mk::CpuSet::of({topo->pus.front().os_index});
  if (!cpus_arg.empty()) {
    auto colon = cpus_arg.find(':');
    auto ca = colon == std::string::npos ? mk::Result<mk::CpuSet>(MK_FAIL(EINVAL, "--cpus", "no ':'"))
                                         : mk::CpuSet::parse(cpus_arg.substr(0, colon));
    auto cb = colon == std::string::npos ? mk::Result<mk::CpuSet>(MK_FAIL(EINVAL, "--cpus", "no ':'"))
                                         : mk::CpuSet::parse(cpus_arg.substr(colon + 1));
    if (!ca || !cb || ca->empty() || cb->empty()) {
      std::fprintf(stderr, "mkbench isolation: --cpus wants A:B, two CPU lists (e.g. 1:0), got '%s'\n",
                   cpus_arg.c_str());
      return 2;
    }
    a_cpus = *ca;
    b_cpus = *cb;
  }
  if (!a_cpus.is_subset_of(topo->all_pus()) || !b_cpus.is_subset_of(topo->all_pus())) {
    std::fprintf(stderr, "mkbench isolation: --cpus %s:%s names CPUs this machine does not have (%s)\n",
                 a_cpus.to_string().c_str(), b_cpus.to_string().c_str(), topo->all_pus().to_string().c_str());
    return 2;
  }
  for (uint32_t c : a_cpus) {
    if (b_cpus.contains(c)) {
      std::fprintf(stderr, "mkbench isolation: A's and B's CPUs overlap (%s : %s); they must be disjoint\n",
                   a_cpus.to_string().c_str(), b_cpus.to_string().c_str());
      return 2;
    }
  }
  std::string stress = find_in_path("stress-ng");
  if (hog_arg == "stress-ng" && stress.empty()) {
    std::fprintf(stderr, "mkbench isolation: --hog stress-ng but stress-ng is not installed (apt install stress-ng)\n");
    return 2;
  }
  bool use_stress = hog_arg != "builtin" && !stress.empty();
  int setup_code = 0;
  const auto setup = setup_instance_bench("isolation", image, &setup_code);
  if (!setup) return setup_code;
  const std::string* dir = &setup->dir;
  const std::string& self = setup->self;
  // The aggressor outlives the probe; shutdown stops it.
  const long hog_s = static_cast<long>(std::ceil(seconds)) + 60;
  std::string hog_cmd;
  if (use_stress) {
    std::size_t n = b_cpus.count();
    hog_cmd = sh_quote(stress) + " --cpu " + std::to_string(n) + " --vm " + std::to_string(n) +
              " --vm-bytes 128M --timeout " + std::to_string(hog_s) + "s --quiet";
  } else {
    hog_cmd = sh_quote(self) + " __worker hog --threads " + std::to_string(2 * b_cpus.count()) +
              " --bytes 128M --seconds " + std::to_string(hog_s);
  }

  auto request = [&](uint32_t id, const char* name, const mk::CpuSet& cpus, const std::string& init, bool cgroups) {
    mk::BootRequest r;
    r.instance.id = id;
    r.instance.name = name;
    r.instance.cpus = cpus;
    r.instance.memory = {{topo->main_node_of(cpus), 64 * mk::kMiB}};
    r.image.path = setup->image;
    r.image.init = init;
    r.root = mk::SysRoot();
    r.use_cgroups = cgroups;
    return r;
  };

  std::map<std::string, ConfigResult> res;
  auto fail = [&](const std::string& what, const mk::Error& e) {
    std::fprintf(stderr, "mkbench isolation: %s: %s\n", what.c_str(), e.to_string().c_str());
    remove_dir(*dir);
    return 1;
  };
  for (long run = 0; run < runs; ++run) {
    for (const char* cfg : kConfigs) {
      const std::string c = cfg;
      if (!args.json) std::fprintf(stderr, "mkbench isolation: run %ld/%ld: %s...\n", run + 1, runs, cfg);
      bool partitioned = c != "shared";
      mk::CpuSet b_on = c == "shared" ? a_cpus : b_cpus;
      std::unique_ptr<mk::RunningInstance> b, a;
      ConfigResult& cr = res[c];
      if (c != "alone") {
        auto br = boot_ready(*topo, request(2, "bench-iso-b", b_on, hog_cmd, partitioned));
        if (!br) return fail(c + ": booting B (aggressor)", br.error());
        b = std::move(*br);
        std::this_thread::sleep_for(300ms);  // the aggressor is up to speed
        cr.b_cpus = b_on.to_string();
        if (cr.b_guarantees.empty()) cr.b_guarantees = lines_of(b->guarantees());
      }
      // alone and partitioned: A's CPUs as mkerneld enforces them (shared: nothing).
      HostEnforcement host(a_cpus, topo->all_pus());
      std::vector<mk::Guarantee> enforced;
      if (enforce && partitioned) enforced = host.apply();
      std::string out = *dir + "/probe-" + c + "-" + std::to_string(run) + ".json";
      std::string probe_cmd = sh_quote(self) + " __worker probe --period-us " + std::to_string(period_us) +
                              " --seconds " + std::to_string(seconds) + " --out " + sh_quote(out);
      auto ar = boot_ready(*topo, request(1, "bench-iso-a", a_cpus, probe_cmd, partitioned));
      if (!ar) {
        stop_instance(b);
        return fail(c + ": booting A (probe)", ar.error());
      }
      a = std::move(*ar);
      cr.a_cpus = a_cpus.to_string();
      if (cr.a_guarantees.empty()) {
        cr.a_guarantees = lines_of(a->guarantees());
        auto more = lines_of(enforced.empty() ? mk::Guarantees{mk::host_tasks_not_requested()} : enforced);
        cr.a_guarantees.insert(cr.a_guarantees.end(), more.begin(), more.end());
      }
      auto doc = wait_result_file(out, std::chrono::milliseconds(static_cast<long>(seconds * 1000) + 30000));
      stop_instance(a);
      stop_instance(b);
      host.restore();
      if (!doc) return fail(c + ": the probe", doc.error());
      const auto* lat = doc->if_contains("lat_us");
      if (!lat || !lat->is_array() || lat->as_array().empty()) {
        std::fprintf(stderr, "mkbench isolation: %s: the probe reported no samples (%s)\n", cfg, out.c_str());
        remove_dir(*dir);
        return 1;
      }
      std::vector<double> one;
      for (const auto& v : lat->as_array()) one.push_back(v.to_number<double>());
      std::sort(one.begin(), one.end());
      cr.run_p99.push_back(quantile(one, 0.99));
      cr.samples.insert(cr.samples.end(), one.begin(), one.end());
    }
  }
  remove_dir(*dir);
  for (auto& [name, cr] : res) {
    std::sort(cr.samples.begin(), cr.samples.end());
    cr.p50 = quantile(cr.samples, 0.50);
    cr.p99 = quantile(cr.samples, 0.99);
    cr.p999 = quantile(cr.samples, 0.999);
    cr.max = cr.samples.empty() ? 0 : cr.samples.back();
  }
  const ConfigResult& alone = res["alone"];
  auto ratio = [](double x, double base) { return base > 0 ? x / base : 0.0; };
  double part_p99 = ratio(res["partitioned"].p99, alone.p99);
  double shared_p99 = ratio(res["shared"].p99, alone.p99);
  bool met = part_p99 <= kGoalRatio;
  bool harm = res["shared"].p99 > res["partitioned"].p99;
  char secs_buf[32];
  std::snprintf(secs_buf, sizeof secs_buf, "%g", seconds);
  std::string rerun = "mkbench isolation --runs " + std::to_string(runs) + " --seconds " + secs_buf +
                      " --period-us " + std::to_string(period_us) + " --cpus " + a_cpus.to_string() + ":" +
                      b_cpus.to_string() + " --hog " + (use_stress ? "stress-ng" : "builtin") + (enforce ? "" : " --no-enforce") + " --image " +
                      setup->image;

  if (args.json) {
    boost::json::array configs;
    for (const char* cfg : kConfigs) {
      const ConfigResult& cr = res[cfg];
      boost::json::array rp;
      for (double v : cr.run_p99) rp.push_back(v);
      configs.push_back(boost::json::object{
          {"name", cfg},
          {"a_cpus", cr.a_cpus},
          {"b_cpus", cr.b_cpus.empty() ? boost::json::value(nullptr) : boost::json::value(cr.b_cpus)},
          {"partitioned", std::string(cfg) != "shared"},
          {"samples", cr.samples.size()},
          {"p50_us", cr.p50},
          {"p99_us", cr.p99},
          {"p999_us", cr.p999},
          {"max_us", cr.max},
          {"ratio_p50", ratio(cr.p50, alone.p50)},
          {"ratio_p99", ratio(cr.p99, alone.p99)},
          {"ratio_p999", ratio(cr.p999, alone.p999)},
          {"runs_p99_us", std::move(rp)},
          {"a_guarantees", json_lines(cr.a_guarantees)},
          {"b_guarantees", json_lines(cr.b_guarantees)}});
    }
    boost::json::object doc{
        {"suite", "isolation"},
        {"image", setup->image},
        {"runs", runs},
        {"probe", boost::json::object{{"kind", "periodic timer wake-up lateness"},
                                      {"period_us", period_us},
                                      {"seconds_per_run", seconds}}},
        {"host_tasks_and_irqs_moved_off_a", enforce},
        {"aggressor", boost::json::object{{"tool", use_stress ? "stress-ng" : "builtin"}, {"command", hog_cmd}}},
        {"configurations", std::move(configs)},
        {"guarantees_in_force_for_a", json_lines(res["partitioned"].a_guarantees)},
        {"goal", boost::json::object{{"partitioned_p99_max_ratio", kGoalRatio},
                                     {"partitioned_p99_ratio", part_p99},
                                     {"met", met},
                                     {"shared_p99_ratio", shared_p99},
                                     {"shared_shows_harm", harm}}},
        {"rerun", rerun}};
    std::printf("%s\n", boost::json::serialize(doc).c_str());
    return 0;
  }
  std::printf("mkbench isolation: timer probe every %ld us for %s s in A (CPUs %s), aggressor %s in B, %ld run(s)\n",
              period_us, secs_buf, a_cpus.to_string().c_str(), use_stress ? "stress-ng" : "builtin hog", runs);
  std::printf("  %-12s %-7s %-7s %8s %9s %9s %9s %9s %7s %7s %7s\n", "config", "A cpus", "B cpus", "samples",
              "p50 us", "p99 us", "p999 us", "max us", "x p50", "x p99", "x p999");
  for (const char* cfg : kConfigs) {
    const ConfigResult& cr = res[cfg];
    std::printf("  %-12s %-7s %-7s %8zu %9.1f %9.1f %9.1f %9.1f %7.2f %7.2f %7.2f\n", cfg, cr.a_cpus.c_str(),
                cr.b_cpus.empty() ? "-" : cr.b_cpus.c_str(), cr.samples.size(), cr.p50, cr.p99, cr.p999, cr.max,
                ratio(cr.p50, alone.p50), ratio(cr.p99, alone.p99), ratio(cr.p999, alone.p999));
  }
  for (const char* cfg : kConfigs) {
    std::printf("  per-run p99 us, %s:", cfg);
    for (double v : res[cfg].run_p99) std::printf(" %.1f", v);
    std::printf("\n");
  }
  std::printf("  aggressor: %s\n", hog_cmd.c_str());
  for (const char* cfg : {"partitioned", "shared"}) {
    std::printf("  guarantees for A (%s):\n", cfg);
    for (const auto& l : res[cfg].a_guarantees) std::printf("    %s\n", l.c_str());
  }
  std::printf("  goal: partitioned p99 <= %.1fx alone: %s (%.2fx); shared shows the harm: %s (%.2fx)\n", kGoalRatio,
              met ? "met" : "NOT met", part_p99, harm ? "yes" : "no", shared_p99);
  std::printf("  rerun: %s\n", rerun.c_str());
  return 0;
}

}  // namespace mkbench
