// DOC: `mkbench pe-split` — the same workload in the instance of each CPU
// kind (issue #7's P/E-core split experiments).
//
// The instances are the ones `mkctl plan --policy pe-split` proposes:
// mk::make_plan(PeSplit) over a pool of the whole machine, one instance per
// CPU kind (kind 0 = the most efficient, hwloc order); on a machine without
// kinds --kinds CPULIST:CPULIST declares them (e.g. 0:1). Each instance is
// booted for real (mk::boot_instance: cpuset + memory cgroup, its CPUs, a
// 64 MiB region, plus --bytes for memory) and runs the workload by itself,
// one kind after the other (so the kinds never compete for shared caches or
// memory bandwidth). While a kind runs, the host's movable tasks and the
// IRQs are moved off its CPUs (HostEnforcement, as mkerneld does with
// --evict-host-tasks and IRQ steering; --no-enforce leaves them): the host
// side of ipi and kv then runs on the other kinds' CPUs.
//
// Workloads (--workload NAME), or --cmd CMD:
//   compute  integer compute in a tenant (`mkbench __worker compute`)
//   memory   memory-bound streaming in a tenant (read-modify-write passes
//            over --bytes, default 256 MiB: above the LLC of the hybrid
//            parts; the instance's region grows by it, see below)
//   ipi      round trips over the instance's host IPI channel
//            (RunningInstance::ping, 64 B): the image answers on the kind's
//            CPUs; the host side runs wherever the host runs
//   kv       the image's KV service (--services=kv, a listen device) under
//            the built-in RESP client from the host (alternating SET/GET of
//            64 B values, one connection, one request in flight)
//   --cmd    CMD run in a tenant with /bin/sh -c, repeatedly for --seconds
// Reported per kind: ops, throughput (its unit), latency p50/p99/p999 of one
// op (µs), CPU time (the tenant's getrusage plus the image's own utime+stime
// from /proc; ipi and kv: the image's only) and wall time; as a table,
// --json, --csv FILE and --chart FILE.png (gnuplot: throughput bars and
// latency p50/p99 bars, one per kind).
//
// --topology FILE plans on a recorded topology instead of this machine; the
// instances only run when its CPUs are this machine's (else the plan is
// printed and nothing runs).
//
// Needs root to run (cgroups). Rerun: the command printed at the end.
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "bench.h"
#include "bench_instance.h"
#include "bench_util.h"
#include "mk/units.h"
#include "mkernel/boot.h"
#include "mkernel/image.h"
#include "mkernel/planner.h"
#include "resp_client.h"

namespace mkbench {

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr const char* kPeUsage =
    "usage: mkbench pe-split (--workload compute|memory|ipi|kv | --cmd CMD) [--kinds A:B] [--json]\n"
    "                        [--csv FILE] [--chart FILE.png] [--topology FILE.xml] [--seconds S]\n"
    "                        [--bytes SIZE] [--no-enforce] [--image PATH]\n"
    "  --kinds A:B  declare CPU kinds on a machine without them, most efficient first (e.g. 0:1)\n";
constexpr const char* kWorkloads[] = {"compute", "memory", "ipi", "kv"};

struct KindResult {
  uint32_t kind = 0;
  std::string label, short_label, instance, cpus;  // short_label: the chart's
  std::vector<std::string> guarantees;
  uint64_t ops = 0;
  double throughput = 0, wall_s = 0, cpu_s = 0;
  std::string unit;
  double p50 = 0, p99 = 0, p999 = 0;
};

bool parse_seconds(const std::string& s, double& out) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || *end || !std::isfinite(v) || v <= 0 || v > 3600) return false;
  out = v;
  return true;
}

void set_latencies(KindResult& k, std::vector<double> lat) {
  std::sort(lat.begin(), lat.end());
  k.ops = lat.size();
  k.p50 = quantile(lat, 0.5);
  k.p99 = quantile(lat, 0.99);
  k.p999 = quantile(lat, 0.999);
}

// ipi: host <-> image round trips for `seconds`.
mk::Result<void> run_ipi(mk::RunningInstance& run, double seconds, KindResult& k) {
  std::vector<double> lat;
  double cpu0 = proc_cpu_seconds(run.pid());
  auto t0 = Clock::now(), end = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  for (int i = 0; i < 100; ++i) MK_TRY(run.ping(64, 1s));  // warm-up
  t0 = Clock::now();
  end = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  while (Clock::now() < end) {
    MK_TRY_ASSIGN(auto ns, run.ping(64, 1s));
    lat.push_back(static_cast<double>(ns.count()) / 1e3);
  }
  k.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  k.cpu_s = proc_cpu_seconds(run.pid()) - cpu0;
  set_latencies(k, std::move(lat));
  k.unit = "round trips/s";
  k.throughput = static_cast<double>(k.ops) / k.wall_s;
  return {};
}

// kv: one connection, alternating SET and GET of a 64 B value.
mk::Result<void> run_kv(mk::RunningInstance& run, uint16_t port, double seconds, KindResult& k) {
  int fd = connect_to(port);
  if (fd < 0) return MK_FAIL(ECONNREFUSED, "kv workload", "cannot connect to the KV service on 127.0.0.1:%u", port);
  std::string value(64, 'v');
  std::vector<double> lat;
  double cpu0 = proc_cpu_seconds(run.pid());
  auto t0 = Clock::now(), end = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  uint64_t i = 0;
  mk::Result<void> out;
  while (Clock::now() < end) {
    std::string key = "k" + std::to_string(i / 2 % 1000);  // SET k, then GET k
    auto a = Clock::now();
    bool ok = (i & 1) == 0 ? send_all(fd, resp({"SET", key, value})) && expect_replies(fd, "+OK\r\n", 1)
                           : get_length(fd, key) == static_cast<long>(value.size());
    if (!ok) {
      out = MK_FAIL(EIO, "kv workload", "request %llu (%s %s) failed", static_cast<unsigned long long>(i),
                    (i & 1) == 0 ? "SET" : "GET", key.c_str());
      break;
    }
    lat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - a).count());
    ++i;
  }
  ::close(fd);
  MK_TRY(out);
  k.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  k.cpu_s = proc_cpu_seconds(run.pid()) - cpu0;
  set_latencies(k, std::move(lat));
  k.unit = "requests/s";
  k.throughput = static_cast<double>(k.ops) / k.wall_s;
  return {};
}

// compute/memory/--cmd: the tenant's result file.
mk::Result<void> read_worker(mk::RunningInstance& run, const std::string& out, double seconds, double cpu0,
                             KindResult& k) {
  MK_TRY_ASSIGN(auto doc, wait_result_file(out, std::chrono::milliseconds(static_cast<long>(seconds * 1000) + 60000)));
  if (const auto* e = doc.if_contains("error"))
    return MK_FAIL(EIO, "the workload failed", "%s", boost::json::value_to<std::string>(*e).c_str());
  std::vector<double> lat;
  if (const auto* l = doc.if_contains("lat_us"); l && l->is_array())
    for (const auto& v : l->as_array()) lat.push_back(v.to_number<double>());
  if (lat.empty()) return MK_FAIL(EPROTO, "the workload reported no ops", "%s", out.c_str());
  set_latencies(k, std::move(lat));
  k.wall_s = doc.at("wall_s").to_number<double>();
  k.throughput = doc.at("throughput").to_number<double>();
  k.unit = boost::json::value_to<std::string>(doc.at("throughput_unit"));
  double image_cpu = proc_cpu_seconds(run.pid()) - cpu0;
  k.cpu_s = doc.at("cpu_s").to_number<double>() + std::max(0.0, image_cpu);
  return {};
}

std::string csv_text(const std::string& workload, const std::vector<KindResult>& ks) {
  std::string s = "kind,label,cpus,instance,workload,ops,throughput,throughput_unit,lat_p50_us,lat_p99_us,lat_p999_us,"
                  "cpu_s,wall_s\n";
  char line[512];
  for (const auto& k : ks) {
    std::snprintf(line, sizeof line, "%u,%s,\"%s\",%s,\"%s\",%llu,%.3f,%s,%.3f,%.3f,%.3f,%.4f,%.4f\n", k.kind,
                  k.label.c_str(), k.cpus.c_str(), k.instance.c_str(), workload.c_str(),
                  static_cast<unsigned long long>(k.ops), k.throughput, k.unit.c_str(), k.p50, k.p99, k.p999, k.cpu_s,
                  k.wall_s);
    s += line;
  }
  return s;
}

// Two panels side by side: throughput per kind, latency p50/p99 per kind.
mk::Result<void> draw_chart(const std::string& png, const std::string& workload, const std::vector<KindResult>& ks,
                            const std::string& scratch) {
  std::string dat = scratch + "/chart.dat", gp = scratch + "/chart.gp";
  // Big throughputs in thousands or millions: readable tick labels.
  double top = 0;
  for (const auto& k : ks) top = std::max(top, k.throughput);
  double scale = top >= 1e7 ? 1e6 : top >= 1e5 ? 1e3 : 1;
  std::string unit = ks.empty() ? "" : ks.front().unit;
  if (scale == 1e6) unit = "million " + unit;
  if (scale == 1e3) unit = "thousand " + unit;
  {
    std::ofstream d(dat);
    d << "# label throughput p50_us p99_us\n";
    for (const auto& k : ks)
      d << '"' << k.short_label << "\\nCPUs " << k.cpus << "\" " << k.throughput / scale << ' ' << k.p50 << ' ' << k.p99
        << "\n";
  }
  std::string title = "mkbench pe-split: " + workload + " workload in the instance of each CPU kind";
  std::ofstream g(gp);
  g << "set terminal pngcairo size 1200,560 enhanced font 'DejaVu Sans,11' noenhanced\n"
    << "set output '" << png << "'\n"
    << "set multiplot layout 1,2 title '" << title << "' font ',14'\n"
    << "set style data histograms\nset style fill solid 0.85 border -1\nset boxwidth 0.7\n"
    << "set grid ytics\nset yrange [0:*]\nset key top right\nset xtics nomirror\nset bmargin 6\n"
    << "set offsets 0, 0, graph 0.1, 0\n"
    << "fmt(v) = v >= 100 ? sprintf('%.0f', v) : sprintf('%.3g', v)\n"
    << "set title 'Throughput (higher is better)'\n"
    << "set xlabel 'CPU kind (E: efficient, P: performance) and its instance CPUs' offset 0,-1.2\nset ylabel 'throughput (" << unit << ")'\n"
    << "plot '" << dat << "' using 2:xtic(1) notitle lc rgb '#2b6cb0', "
    << "'' using 0:2:(fmt($2)) with labels offset 0,0.8 notitle\n"
    << "set title 'Latency of one op (lower is better)'\n"
    << "set style histogram clustered gap 1\nset boxwidth 0.9\n"
    << "set ylabel 'latency (microseconds)'\n"
    << "plot '" << dat << "' using 3:xtic(1) title 'p50' lc rgb '#38a169', '' using 4 title 'p99' lc rgb '#dd6b20', "
    << "'' using ($0-0.15):3:(fmt($3)) with labels offset 0,0.8 notitle, "
    << "'' using ($0+0.15):4:(fmt($4)) with labels offset 0,0.8 notitle\n"
    << "unset multiplot\n";
  g.close();
  std::string cmd = "gnuplot " + sh_quote(gp) + " 2>" + sh_quote(scratch + "/gnuplot.err");
  int st = std::system(cmd.c_str());
  if (st != 0) {
    std::ifstream e(scratch + "/gnuplot.err");
    std::string why((std::istreambuf_iterator<char>(e)), std::istreambuf_iterator<char>());
    return MK_FAIL(EIO, "drawing the chart", "gnuplot failed (is gnuplot installed? apt install gnuplot-nox): %s",
                   why.c_str());
  }
  return {};
}

}  // namespace

int run_pe_split(const Args& args) {
  std::string workload, cmd, kinds_arg, csv, chart, topo_file, image = self_dir() + "/mk-kernel";
  double seconds = 3.0;
  bool enforce = true;
  uint64_t bytes = 256 * mk::kMiB;
  for (std::size_t i = 0; i < args.rest.size(); ++i) {
    const std::string& a = args.rest[i];
    bool has = i + 1 < args.rest.size();
    if (a == "--help" || a == "-h") {
      std::fputs(kPeUsage, stdout);
      return 0;
    } else if (a == "--workload" && has) {
      workload = args.rest[++i];
    } else if (a == "--cmd" && has) {
      cmd = args.rest[++i];
    } else if (a == "--kinds" && has) {
      kinds_arg = args.rest[++i];
    } else if (a == "--csv" && has) {
      csv = args.rest[++i];
    } else if (a == "--chart" && has) {
      chart = args.rest[++i];
    } else if (a == "--topology" && has) {
      topo_file = args.rest[++i];
    } else if (a == "--image" && has) {
      image = args.rest[++i];
    } else if (a == "--no-enforce") {
      enforce = false;
    } else if (a == "--seconds" && has && parse_seconds(args.rest[i + 1], seconds)) {
      ++i;
    } else if (a == "--bytes" && has) {
      auto v = mk::parse_size(args.rest[++i]);
      if (!v || *v < mk::kMiB || *v > mk::kGiB || *v % (2 * mk::kMiB)) {
        std::fprintf(stderr, "mkbench pe-split: --bytes wants a size from 2M to 1G, a multiple of 2M, got '%s'\n",
                     args.rest[i].c_str());
        return 2;
      }
      bytes = *v;
    } else {
      std::fprintf(stderr, "mkbench pe-split: bad argument '%s'\n", a.c_str());
      std::fputs(kPeUsage, stderr);
      return 2;
    }
  }
  if (workload.empty() == cmd.empty()) {
    std::fprintf(stderr, "mkbench pe-split: give exactly one of --workload NAME and --cmd CMD\n");
    std::fputs(kPeUsage, stderr);
    return 2;
  }
  if (!workload.empty() && std::find_if(std::begin(kWorkloads), std::end(kWorkloads),
                                        [&](const char* w) { return workload == w; }) == std::end(kWorkloads)) {
    std::fprintf(stderr, "mkbench pe-split: unknown workload '%s' (compute, memory, ipi, kv; or --cmd CMD)\n",
                 workload.c_str());
    return 2;
  }
  if (!chart.empty() && (chart.size() < 4 || chart.substr(chart.size() - 4) != ".png")) {
    std::fprintf(stderr, "mkbench pe-split: --chart wants a FILE.png, got '%s'\n", chart.c_str());
    return 2;
  }
  const std::string wname = workload.empty() ? "cmd" : workload;
  mk::PlanRequest preq;
  preq.policy = mk::PlanPolicy::PeSplit;
  // The memory workload's buffer is the tenant's own (charged to the
  // instance's memory cgroup, whose limit is the regions + 256 MiB): the
  // region grows by it so the limit does.
  preq.memory_per_instance = 64 * mk::kMiB + (workload == "memory" ? bytes : 0);
  preq.name_prefix = "mkbench-pe";
  if (!kinds_arg.empty()) {
    auto k = mk::parse_kinds_override(kinds_arg);
    if (!k) {
      std::fprintf(stderr, "mkbench pe-split: %s\n", k.error().to_string().c_str());
      return 2;
    }
    preq.kinds_override = *k;
  }
  auto live = mk::load_topology_live();
  if (!live) {
    std::fprintf(stderr, "mkbench pe-split: %s\n", live.error().to_string().c_str());
    return 1;
  }
  mk::Result<mk::Topology> topo = topo_file.empty() ? live : mk::load_topology_xml(topo_file);
  if (!topo) {
    std::fprintf(stderr, "mkbench pe-split: %s\n", topo.error().to_string().c_str());
    return 2;
  }
  mk::Partition part;
  part.has_pool = true;
  part.pool.cpus = topo->all_pus();
  for (const auto& n : topo->numa_nodes) part.pool.memory.push_back({n.os_index, 64 * mk::kGiB});
  auto plan = mk::make_plan(*topo, part, preq);
  if (!plan) {
    std::fprintf(stderr, "mkbench pe-split: %s\n", plan.error().to_string().c_str());
    return 2;
  }
  std::vector<KindResult> ks;
  for (std::size_t i = 0; i < plan->instances.size(); ++i) {
    KindResult k;
    k.kind = static_cast<uint32_t>(i);
    const auto& inst = plan->instances[i].instance;
    k.instance = inst.name;
    k.cpus = inst.cpus.to_string();
    k.label = "kind " + std::to_string(i) +
              (plan->instances.size() == 2 ? (i == 0 ? " (efficient)" : " (performance)") : "");
    k.short_label = "kind " + std::to_string(i) +
                    (plan->instances.size() == 2 ? (i == 0 ? " (E)" : " (P)") : "");
    ks.push_back(k);
  }
  if (!topo_file.empty() && !topo->all_pus().is_subset_of(live->all_pus())) {
    std::printf("mkbench pe-split: plan on %s (not this machine: nothing runs)\n", topo_file.c_str());
    for (const auto& k : ks) std::printf("  %-22s %-16s CPUs %s\n", k.label.c_str(), k.instance.c_str(), k.cpus.c_str());
    return 0;
  }
  int setup_code = 0;
  const auto setup = setup_instance_bench("pe-split", image, &setup_code);
  if (!setup) return setup_code;
  const std::string* dir = &setup->dir;
  const std::string& self = setup->self;
  char secs_buf[32];
  std::snprintf(secs_buf, sizeof secs_buf, "%g", seconds);
  auto fail = [&](const KindResult& k, const mk::Error& e) {
    std::fprintf(stderr, "mkbench pe-split: %s (%s, CPUs %s): %s\n", k.label.c_str(), k.instance.c_str(),
                 k.cpus.c_str(), e.to_string().c_str());
    remove_dir(*dir);
    return 1;
  };
  for (std::size_t i = 0; i < ks.size(); ++i) {
    KindResult& k = ks[i];
    if (!args.json) std::fprintf(stderr, "mkbench pe-split: %s on CPUs %s...\n", k.label.c_str(), k.cpus.c_str());
    mk::BootRequest req;
    req.instance = plan->instances[i].instance;
    req.instance.id = static_cast<uint32_t>(i + 1);
    req.image.path = setup->image;
    req.root = mk::SysRoot();
    std::string out = *dir + "/kind" + std::to_string(i) + ".json";
    uint16_t port = 0;
    if (workload == "compute" || workload == "memory") {
      req.image.init = sh_quote(self) + " __worker " + workload + " --seconds " + secs_buf + " --bytes " +
                       std::to_string(bytes) + " --out " + sh_quote(out);
    } else if (!cmd.empty()) {
      req.image.init = sh_quote(self) + " __worker cmd --seconds " + secs_buf + " --cmd " + sh_quote(cmd) +
                       " --out " + sh_quote(out);
    } else if (workload == "kv") {
      port = free_port();
      auto dev = mk::DeviceSpec::parse("listen:127.0.0.1:" + std::to_string(port));
      if (!port || !dev) return fail(k, dev ? MK_FAIL(EADDRINUSE, "kv workload", "no free loopback port") : dev.error());
      req.instance.devices = {*dev};
      req.image.cmdline = "--services=kv";
    }
    HostEnforcement host(req.instance.cpus, live->all_pus());
    std::vector<mk::Guarantee> enforced;
    if (enforce) enforced = host.apply();
    auto booted = boot_ready(*live, req);
    if (!booted) return fail(k, booted.error());
    auto run = std::move(*booted);
    k.guarantees.clear();
    for (const auto& g : run->guarantees()) k.guarantees.push_back(mk::to_line(g));
    if (enforced.empty()) enforced.push_back(mk::host_tasks_not_requested());
    for (const auto& g : enforced) k.guarantees.push_back(mk::to_line(g));
    double cpu0 = proc_cpu_seconds(run->pid());
    mk::Result<void> r = workload == "ipi" ? run_ipi(*run, seconds, k)
                         : workload == "kv" ? run_kv(*run, port, seconds, k)
                                            : read_worker(*run, out, seconds, cpu0, k);
    stop_instance(run);
    host.restore();
    if (!r) return fail(k, r.error());
  }
  if (!csv.empty()) {
    std::ofstream f(csv, std::ios::trunc);
    f << csv_text(wname, ks);
    if (!f.flush()) {
      std::fprintf(stderr, "mkbench pe-split: cannot write %s\n", csv.c_str());
      remove_dir(*dir);
      return 1;
    }
  }
  if (!chart.empty()) {
    if (auto r = draw_chart(chart, workload.empty() ? "--cmd" : workload, ks, *dir); !r) {
      std::fprintf(stderr, "mkbench pe-split: %s\n", r.error().to_string().c_str());
      remove_dir(*dir);
      return 1;
    }
  }
  remove_dir(*dir);
  std::string rerun = "mkbench pe-split " + (cmd.empty() ? "--workload " + workload : "--cmd " + sh_quote(cmd)) +
                      (kinds_arg.empty() ? "" : " --kinds " + kinds_arg) + " --seconds " + secs_buf +
                      (workload == "memory" ? " --bytes " + std::to_string(bytes) : "") +
                      (csv.empty() ? "" : " --csv " + csv) + (chart.empty() ? "" : " --chart " + chart) +
                      (topo_file.empty() ? "" : " --topology " + topo_file) + (enforce ? "" : " --no-enforce") +
                      " --image " + setup->image;
  if (args.json) {
    boost::json::array kinds;
    for (const auto& k : ks) {
      boost::json::array gs;
      for (const auto& g : k.guarantees) gs.push_back(boost::json::string(g));
      kinds.push_back(boost::json::object{{"kind", k.kind},
                                          {"label", k.label},
                                          {"instance", k.instance},
                                          {"cpus", k.cpus},
                                          {"ops", k.ops},
                                          {"throughput", k.throughput},
                                          {"throughput_unit", k.unit},
                                          {"lat_p50_us", k.p50},
                                          {"lat_p99_us", k.p99},
                                          {"lat_p999_us", k.p999},
                                          {"cpu_s", k.cpu_s},
                                          {"wall_s", k.wall_s},
                                          {"guarantees", std::move(gs)}});
    }
    boost::json::object doc{{"suite", "pe-split"},
                            {"workload", wname},
                            {"seconds", seconds},
                            {"host_tasks_and_irqs_moved_off", enforce},
                            {"image", setup->image},
                            {"kinds", std::move(kinds)},
                            {"csv", csv},
                            {"chart", chart},
                            {"rerun", rerun}};
    if (!cmd.empty()) doc["cmd"] = cmd;
    std::printf("%s\n", boost::json::serialize(doc).c_str());
    return 0;
  }
  std::printf("mkbench pe-split: workload %s, %s s per kind, one instance per CPU kind (mkctl plan --policy pe-split)\n",
              cmd.empty() ? workload.c_str() : ("--cmd " + cmd).c_str(), secs_buf);
  std::printf("  %-20s %-6s %-12s %9s %14s %-14s %10s %10s %10s %8s %8s\n", "kind", "cpus", "instance", "ops",
              "throughput", "unit", "p50 us", "p99 us", "p999 us", "cpu s", "wall s");
  for (const auto& k : ks) {
    std::printf("  %-20s %-6s %-12s %9llu %14.2f %-14s %10.1f %10.1f %10.1f %8.3f %8.3f\n", k.label.c_str(),
                k.cpus.c_str(), k.instance.c_str(), static_cast<unsigned long long>(k.ops), k.throughput,
                k.unit.c_str(), k.p50, k.p99, k.p999, k.cpu_s, k.wall_s);
  }
  if (ks.size() >= 2 && ks.front().throughput > 0)
    std::printf("  throughput, last kind / kind 0: %.2fx\n", ks.back().throughput / ks.front().throughput);
  if (!ks.empty()) {
    std::printf("  guarantees (%s):\n", ks.front().instance.c_str());
    for (const auto& g : ks.front().guarantees) std::printf("    %s\n", g.c_str());
  }
  if (!csv.empty()) std::printf("  csv: %s\n", csv.c_str());
  if (!chart.empty()) std::printf("  chart: %s\n", chart.c_str());
  std::printf("  rerun: %s\n", rerun.c_str());
  return 0;
}

}  // namespace mkbench
