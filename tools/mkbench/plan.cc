// mkbench plan: planner latency on recorded topologies.
//
// Measures make_plan() for the policies users run on big machines, the goal
// being 2 x EPYC 9654 (384 PUs) into 192 instances in under 50 ms. Baseline
// in the same run: loading the topology itself (hwloc XML parse), which any
// plan pays once. Reports the median and p99 of N runs.
//
// Rerun: mkbench plan [--json] [--runs N] [--topology FILE.xml]
#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "bench.h"
#include "mk/units.h"
#include "mkernel/planner.h"

namespace mkbench {

namespace {

struct PlanStats {
  double p50_ms, p99_ms;
};

template <class F>
PlanStats measure(int runs, F&& f) {
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms[std::min(ms.size() - 1, ms.size() * 99 / 100)]};
}

}  // namespace

int run_plan(const Args& args) {
  int runs = 50;
  std::string file = std::string(MK_SOURCE_DIR) + "/tests/data/topologies/AMD-19h-Zen4-2xEpyc-9654.xml";
  for (std::size_t i = 0; i < args.rest.size(); ++i) {
    if (args.rest[i] == "--runs" && i + 1 < args.rest.size()) runs = std::max(1, std::stoi(args.rest[++i]));
    else if (args.rest[i] == "--topology" && i + 1 < args.rest.size()) file = args.rest[++i];
    else {
      std::fprintf(stderr, "usage: mkbench plan [--json] [--runs N] [--topology FILE.xml]\n");
      return 2;
    }
  }
  auto topo = mk::load_topology_xml(file);
  if (!topo) {
    std::fprintf(stderr, "mkbench plan: %s\n", topo.error().to_string().c_str());
    return 1;
  }
  mk::Partition part;
  part.has_pool = true;
  part.pool.cpus = topo->all_pus();
  for (const auto& n : topo->numa_nodes) part.pool.memory.push_back({n.os_index, 256 * mk::kGiB});

  PlanStats load = measure(runs, [&] { (void)mk::load_topology_xml(file); });
  struct Case {
    const char* name;
    mk::PlanPolicy policy;
    uint32_t n;
  };
  uint32_t cores = static_cast<uint32_t>(topo->cores.size());
  std::vector<Case> cases = {{"even_per_core", mk::PlanPolicy::Even, cores},
                             {"even_2", mk::PlanPolicy::Even, 2},
                             {"per_numa", mk::PlanPolicy::PerNuma, static_cast<uint32_t>(topo->numa_nodes.size())}};
  boost::json::array results;
  std::string text = "mkbench plan: " + file + " (" + std::to_string(topo->pus.size()) + " PUs, " +
                     std::to_string(cores) + " cores), " + std::to_string(runs) + " runs\n";
  char line[256];
  std::snprintf(line, sizeof line, "  %-28s %10s %10s\n", "case", "p50 ms", "p99 ms");
  text += line;
  std::snprintf(line, sizeof line, "  %-28s %10.3f %10.3f\n", "baseline: load XML", load.p50_ms, load.p99_ms);
  text += line;
  for (const auto& c : cases) {
    mk::PlanRequest r;
    r.policy = c.policy;
    r.instances = c.n;
    std::size_t made = 0;
    bool failed = false;
    PlanStats s = measure(runs, [&] {
      auto p = mk::make_plan(*topo, part, r);
      if (p) made = p->instances.size();
      else failed = true;
    });
    if (failed) {
      std::fprintf(stderr, "mkbench plan: %s failed\n", c.name);
      return 1;
    }
    std::string label = std::string(c.name) + " (" + std::to_string(made) + " inst)";
    std::snprintf(line, sizeof line, "  %-28s %10.3f %10.3f\n", label.c_str(), s.p50_ms, s.p99_ms);
    text += line;
    results.push_back(boost::json::object{{"case", c.name},
                                          {"instances", made},
                                          {"p50_ms", s.p50_ms},
                                          {"p99_ms", s.p99_ms},
                                          {"ratio_p50_vs_load", s.p50_ms / load.p50_ms}});
  }
  text += "  goal: even_per_core p50 < 50 ms\n  rerun: mkbench plan --runs " + std::to_string(runs) + "\n";
  if (args.json) {
    boost::json::object doc{{"suite", "plan"},
                            {"topology", file},
                            {"runs", runs},
                            {"baseline_load_xml", boost::json::object{{"p50_ms", load.p50_ms}, {"p99_ms", load.p99_ms}}},
                            {"results", std::move(results)}};
    std::printf("%s\n", boost::json::serialize(doc).c_str());
  } else {
    std::fputs(text.c_str(), stdout);
  }
  return 0;
}

}  // namespace mkbench
