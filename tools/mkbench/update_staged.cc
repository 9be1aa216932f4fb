// mkbench update --staged: the per-step blackouts and the total duration of
// a staged live update (mk::staged_update) of the mk-kernel KV service,
// next to the in-place update (mk::live_update) of the same instance in the
// same run (see update_bench.h).
//
// Rerun: mkbench update --staged [--json] [--runs N] [--sizes 256M] [--conns 10,1000]
//                       [--cpus LIST] [--image PATH]
#include <sys/resource.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "bench_util.h"
#include "mk/units.h"
#include "mkernel/boot.h"
#include "mkernel/image.h"
#include "mkernel/live_update.h"
#include "mkernel/staged_update.h"
#include "resp_client.h"
#include "update_bench.h"

namespace mkbench {

namespace {

using namespace std::chrono_literals;

constexpr const char* kStagedUsage =
    "usage: mkbench update --staged [--json] [--runs N] [--sizes 256M] [--conns 10,1000] [--cpus LIST]\n"
    "                      [--image PATH]\n";
constexpr double kGoalStepP99Ms = 2.0;

struct StagedCase {
  uint64_t bytes = 0;
  uint64_t conns = 0;
  std::map<std::string, std::vector<double>> step_blackout;  // per handover step
  std::vector<double> worst_step, total, in_place;
};

mk::Result<void> run_case(const mk::Topology& topo, mk::BootRequest req, uint16_t port, StagedCase& c, long runs) {
  req.instance.memory = {{topo.main_node_of(req.instance.cpus), c.bytes}};
  MK_TRY_ASSIGN(auto run, mk::boot_instance(topo, req));
  struct Guard {
    std::unique_ptr<mk::RunningInstance>& r;
    std::vector<int> fds;
    ~Guard() {
      for (int f : fds) ::close(f);
      if (r && !r->shutdown(500ms, 5s)) r->kill();
      if (r) (void)r->release();
    }
  } guard{run, {}};
  MK_TRY(run->wait_ready(10s));
  int loader = connect_to(port);
  if (loader < 0) return MK_FAIL(EIO, "cannot connect to the KV service", "127.0.0.1:%u", port);
  guard.fds.push_back(loader);
  const uint64_t keys = std::max<uint64_t>(1, c.bytes * 6 / 10 / (64 * 1024));
  const std::string value(64 * 1024 - 64, 'v');
  for (uint64_t first = 0; first < keys; first += 32) {
    std::string batch;
    const uint64_t n = std::min<uint64_t>(32, keys - first);
    for (uint64_t k = first; k < first + n; ++k) batch += resp({"SET", "key:" + std::to_string(k), value});
    if (!send_all(loader, batch) || !expect_replies(loader, "+OK\r\n", n))
      return MK_FAIL(EIO, "filling the store failed", "at key %llu", static_cast<unsigned long long>(first));
  }
  MK_TRY_ASSIGN(std::vector<int> clients, connect_clients(port, c.conns));
  guard.fds.insert(guard.fds.end(), clients.begin(), clients.end());
  auto probe = [&](long i, const char* what) -> mk::Result<void> {
    const int fd = clients[static_cast<std::size_t>(i + 1) % clients.size()];
    if (!send_all(fd, resp({"PING"})) || !expect_replies(fd, "+PONG\r\n", 1))
      return MK_FAIL(EIO, "a client lost its connection", "after %s %ld", what, i + 2);
    return mk::ok();
  };
  uint32_t id = 1;
  for (long i = -1; i < runs; ++i) {  // -1: warm-up
    mk::StagedRequest s;
    s.image = req.image;
    s.update_id = id++;
    mk::StagedOutcome out = mk::staged_update(run, topo, req.root, s);
    if (!run) return MK_FAIL(EIO, "the instance was lost in a staged update", "%s", out.cause ? out.cause->to_string().c_str() : "");
    if (!out.updated)
      return MK_FAIL(EIO, "staged update aborted", "update %ld: %s; %s", i + 2,
                     out.cause ? out.cause->to_string().c_str() : "?", out.rollback.c_str());
    MK_TRY(probe(i, "staged update"));
    if (i < 0) continue;
    double worst = 0;
    for (const auto& st : out.steps) {
      if (!st.blackout_ms) continue;
      c.step_blackout[st.name].push_back(*st.blackout_ms);
      worst = std::max(worst, *st.blackout_ms);
    }
    c.worst_step.push_back(worst);
    c.total.push_back(out.total_ms);
  }
  for (long i = -1; i < runs; ++i) {
    mk::UpdateRequest u;
    u.image = req.image;
    u.update_id = id++;
    mk::UpdateOutcome out = mk::live_update(run, topo, req.root, u);
    if (!run || !out.updated || !out.blackout_ms)
      return MK_FAIL(EIO, "in-place update rolled back", "%s", out.cause ? out.cause->to_string().c_str() : "?");
    MK_TRY(probe(i, "in-place update"));
    if (i >= 0) c.in_place.push_back(*out.blackout_ms);
  }
  if (get_length(loader, "key:0") != static_cast<long>(value.size()))
    return MK_FAIL(EIO, "data lost across updates", "GET key:0 did not return the value written before them");
  return mk::ok();
}

}  // namespace

int run_update_staged(const Args& args) {
  long runs = 20;
  std::vector<uint64_t> sizes = {256 * mk::kMiB}, conns = {10, 1000};
  std::optional<mk::CpuSet> cpus;
  std::string image = self_dir() + "/mk-kernel";
  for (std::size_t i = 0; i < args.rest.size(); ++i) {
    const std::string& a = args.rest[i];
    const bool has = i + 1 < args.rest.size();
    if (a == "--help" || a == "-h") {
      std::fputs(kStagedUsage, stdout);
      return 0;
    } else if (a == "--runs" && has && parse_long_arg(args.rest[i + 1], 1, runs)) {
      ++i;
    } else if (a == "--sizes" && has && parse_list_arg(args.rest[i + 1], true, sizes)) {
      ++i;
    } else if (a == "--conns" && has && parse_list_arg(args.rest[i + 1], false, conns)) {
      ++i;
    } else if (a == "--cpus" && has) {
      auto c = mk::CpuSet::parse(args.rest[++i]);
      if (!c || c->count() < 2) {
        std::fprintf(stderr, "mkbench update --staged: --cpus: at least two CPUs\n%s", kStagedUsage);
        return 2;
      }
      cpus = *c;
    } else if (a == "--image" && has) {
      image = args.rest[++i];
    } else {
      std::fprintf(stderr, "mkbench update --staged: bad argument '%s'\n%s", a.c_str(), kStagedUsage);
      return 2;
    }
  }
  if (::geteuid() != 0) {
    std::fprintf(stderr, "mkbench update --staged: needs root (instance cgroups and namespaces); rerun with sudo\n");
    return 1;
  }
  raise_nofile();
  auto info = mk::inspect_image(image);
  auto topo = mk::load_topology_live();
  if (!info || !topo) {
    std::fprintf(stderr, "mkbench update --staged: %s\n",
                 (!info ? info.error() : topo.error()).to_string().c_str());
    return 1;
  }
  if (!cpus) cpus = topo->all_pus();
  if (cpus->count() < 2 || !cpus->is_subset_of(topo->all_pus())) {
    std::fprintf(stderr, "mkbench update --staged: needs two CPUs of this machine (have %s)\n",
                 cpus->to_string().c_str());
    return 1;
  }
  const uint16_t port = free_port();
  mk::BootRequest req;
  req.instance.id = 1;
  req.instance.name = "bench-staged";
  req.instance.cpus = *cpus;
  req.instance.devices = {*mk::DeviceSpec::parse("listen:127.0.0.1:" + std::to_string(port))};
  req.image.path = info->path;
  req.image.cmdline = "--services=kv";
  req.image.init = "sleep 1000000";  // a tenant: the tenants step moves it
  req.root = mk::SysRoot();

  std::vector<StagedCase> cases;
  for (uint64_t n : conns) {
    for (uint64_t b : sizes) {
      StagedCase c;
      c.bytes = b;
      c.conns = n;
      if (!args.json)
        std::fprintf(stderr, "mkbench update --staged: %llu MiB, %llu connection(s)...\n",
                     static_cast<unsigned long long>(b >> 20), static_cast<unsigned long long>(n));
      if (auto r = run_case(*topo, req, port, c, runs); !r) {
        std::fprintf(stderr, "mkbench update --staged: %s\n", r.error().to_string().c_str());
        return 1;
      }
      cases.push_back(std::move(c));
    }
  }
  const std::string rerun = "mkbench update --staged --runs " + std::to_string(runs) + " --cpus " +
                            cpus->to_string() + " --image " + info->path;
  bool met = true;
  for (const auto& c : cases) met = met && stats_of(c.worst_step).p99_ms <= kGoalStepP99Ms;
  if (args.json) {
    boost::json::array rows;
    for (const auto& c : cases) {
      boost::json::object steps;
      for (const auto& [name, v] : c.step_blackout) steps[name] = to_json(stats_of(v));
      const LatencyStats worst = stats_of(c.worst_step), in_place = stats_of(c.in_place);
      rows.push_back(boost::json::object{{"memory_bytes", c.bytes},
                                         {"conns", c.conns},
                                         {"step_blackout", std::move(steps)},
                                         {"worst_step_blackout", to_json(worst)},
                                         {"staged_total", to_json(stats_of(c.total))},
                                         {"in_place_blackout", to_json(in_place)},
                                         {"ratio_worst_step_p99_vs_in_place_p99",
                                          in_place.p99_ms > 0 ? worst.p99_ms / in_place.p99_ms : 0}});
    }
    boost::json::object doc{{"suite", "update-staged"}, {"image", info->path}, {"cpus", cpus->to_string()},
                            {"runs", runs},            {"cases", std::move(rows)}, {"goal_step_p99_ms", kGoalStepP99Ms},
                            {"goal_met", met},         {"rerun", rerun}};
    std::printf("%s\n", boost::json::serialize(doc).c_str());
    return 0;
  }
  std::printf("mkbench update --staged: %s on cpus %s, %ld staged and %ld in-place updates per case (+1 warm-up each)\n",
              info->path.c_str(), cpus->to_string().c_str(), runs, runs);
  std::printf("  %-8s %6s | %-19s | %-19s | %-19s | %-19s\n", "memory", "conns", "tenants p50/p99", "services p50/p99",
              "in-place p50/p99", "staged total p50");
  for (const auto& c : cases) {
    auto st = [&](const char* k) { return c.step_blackout.count(k) ? stats_of(c.step_blackout.at(k)) : LatencyStats{}; };
    const LatencyStats t = st("tenants"), s = st("services"), ip = stats_of(c.in_place), tot = stats_of(c.total);
    std::printf("  %5llu MiB %6llu | %8.3f / %8.3f | %8.3f / %8.3f | %8.3f / %8.3f | %10.1f ms\n",
                static_cast<unsigned long long>(c.bytes >> 20), static_cast<unsigned long long>(c.conns), t.p50_ms,
                t.p99_ms, s.p50_ms, s.p99_ms, ip.p50_ms, ip.p99_ms, tot.p50_ms);
  }
  std::printf("  (ms; a step's blackout = its freeze sent -> the new image restored that part; in-place = the whole\n"
              "   instance in one handover, same instance, same run; total = first step to the old image retired)\n");
  for (const auto& c : cases) {
    const double worst = stats_of(c.worst_step).p99_ms;
    std::printf("  goal: per-step blackout p99 <= %.0f ms, %llu connections: %s (worst step p99 %.3f ms)\n",
                kGoalStepP99Ms, static_cast<unsigned long long>(c.conns), worst <= kGoalStepP99Ms ? "met" : "NOT met",
                worst);
  }
  std::printf("  rerun: %s\n", rerun.c_str());
  return 0;
}

}  // namespace mkbench
