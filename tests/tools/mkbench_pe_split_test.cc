// `mkbench pe-split` end to end (tools/mkbench/pe_split.cc): argument errors
// (exit 2, a message), the plan on a recorded hybrid topology (no root: the
// plan is printed, nothing runs), and for real (root): `--kinds 0:1` makes
// two instances on CPUs 0 and 1, each runs the workload, --csv writes a row
// per kind and --chart a PNG; the ipi, kv and --cmd workloads; a failing
// --cmd is reported; the host tasks moved off each kind's CPUs are given
// back. Short runs (--seconds 0.2); no timing thresholds.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <sstream>
#include <vector>

#include "mkbench_cli.h"

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using mkbench_test::run_mkbench;

class MkbenchPeSplit : public ::testing::Test {
 protected:
  void SetUp() override { dir = mkbench_test::test_dir("pe-split"); }
  void TearDown() override { fs::remove_all(dir); }
  fs::path dir;
};

TEST_F(MkbenchPeSplit, ArgumentErrorsExit2WithAMessage) {
  struct Case {
    const char* args;
    const char* says;
  } cases[] = {
      {"", "give exactly one of --workload NAME and --cmd CMD"},
      {"--workload compute --cmd true", "give exactly one of --workload NAME and --cmd CMD"},
      {"--workload nope --kinds 0:1", "unknown workload 'nope'"},
      {"--workload compute --kinds 0:0", "bad --kinds"},
      {"--workload compute --kinds 0", "bad --kinds"},
      {"--workload compute --kinds 0:63", "63"},
      {"--workload compute --kinds 0:1 --chart out.svg", "--chart wants a FILE.png"},
      {"--workload compute --kinds 0:1 --seconds 0", "bad argument '--seconds'"},
      {"--workload memory --kinds 0:1 --bytes 2G", "--bytes wants a size"},
      {"--workload memory --kinds 0:1 --bytes 3M", "--bytes wants a size"},
      {"--workload compute --frobnicate", "bad argument '--frobnicate'"},
  };
  for (const auto& c : cases) {
    auto r = run_mkbench(dir, std::string("pe-split ") + c.args);
    EXPECT_EQ(r.code, 2) << c.args << ": " << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << c.args << ": " << r.err;
  }
}

TEST_F(MkbenchPeSplit, RecordedHybridTopologyShowsThePlanAndRunsNothing) {
  auto r = run_mkbench(dir, "pe-split --workload compute --topology " + std::string(MK_TEST_DATA) +
                                "/topologies/Intel-RaptorLake-Corei7-1370P.xml");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("nothing runs"), std::string::npos) << r.out;
  // Two kinds (E-cores, then P-cores), each its own instance.
  EXPECT_NE(r.out.find("kind 0 (efficient)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("kind 1 (performance)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("mkbench-pe0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("mkbench-pe1"), std::string::npos) << r.out;
}

bool can_run() { return ::geteuid() == 0 && ::sysconf(_SC_NPROCESSORS_ONLN) >= 2; }
bool have_gnuplot() { return std::system("gnuplot -e 'set terminal png' >/dev/null 2>&1") == 0; }

// kinds[i]: kind i on CPU i, ops > 0, finite stats.
void expect_two_kinds(const json::value& v, const char* unit) {
  const auto& ks = v.at("kinds").as_array();
  ASSERT_EQ(ks.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& k = ks[i].as_object();
    EXPECT_EQ(k.at("kind").to_number<double>(), static_cast<double>(i));
    EXPECT_EQ(k.at("cpus").as_string(), std::to_string(i));
    EXPECT_EQ(k.at("instance").as_string(), "mkbench-pe" + std::to_string(i));
    EXPECT_GT(k.at("ops").to_number<double>(), 0);
    EXPECT_EQ(k.at("throughput_unit").as_string(), unit);
    for (const char* f : {"throughput", "lat_p50_us", "lat_p99_us", "lat_p999_us", "wall_s"}) {
      double x = k.at(f).to_number<double>();
      EXPECT_TRUE(std::isfinite(x) && x > 0) << f << " = " << x;
    }
    EXPECT_GE(k.at("cpu_s").to_number<double>(), 0);
    bool affinity = false, host_tasks = false;
    for (const auto& g : k.at("guarantees").as_array()) {
      std::string line(g.as_string());
      affinity |= line == "affinity: cpus " + std::to_string(i);
      host_tasks |= line.rfind("host tasks: ", 0) == 0 && line.find("not requested") == std::string::npos;
    }
    EXPECT_TRUE(affinity) << json::serialize(k.at("guarantees"));
    // Host tasks moved off the kind's CPUs while it ran (the default).
    EXPECT_TRUE(host_tasks) << json::serialize(k.at("guarantees"));
  }
}

TEST_F(MkbenchPeSplit, KindsZeroOneMakesTwoInstancesWithCsvAndChart) {
  if (!can_run()) GTEST_SKIP() << "needs root and 2 CPUs";
  std::string csv = (dir / "out.csv").string(), png = (dir / "out.png").string();
  bool chart = have_gnuplot();
  std::string init_before = mkbench_test::slurp("/proc/1/status");
  init_before = init_before.substr(init_before.find("Cpus_allowed_list:"), 30);
  auto r = run_mkbench(dir, "pe-split --kinds 0:1 --workload compute --seconds 0.2 --json --csv " + csv +
                                (chart ? " --chart " + png : ""));
  ASSERT_EQ(r.code, 0) << r.err;
  std::string init_after = mkbench_test::slurp("/proc/1/status");
  EXPECT_EQ(init_after.substr(init_after.find("Cpus_allowed_list:"), 30), init_before);
  auto v = mkbench_test::parse_json(r.out);
  ASSERT_TRUE(v.is_object()) << r.out;
  EXPECT_EQ(v.at("workload").as_string(), "compute");
  EXPECT_TRUE(v.at("host_tasks_and_irqs_moved_off").as_bool());
  expect_two_kinds(v, "ops/s");
  // CSV: a header and one row per kind, in kind order.
  std::istringstream in(mkbench_test::slurp(csv));
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 3u) << mkbench_test::slurp(csv);
  EXPECT_EQ(lines[0].rfind("kind,label,cpus,instance,workload,ops,throughput,throughput_unit,lat_p50_us", 0), 0u);
  EXPECT_EQ(lines[1].rfind("0,kind 0 (efficient),\"0\",mkbench-pe0,\"compute\",", 0), 0u) << lines[1];
  EXPECT_EQ(lines[2].rfind("1,kind 1 (performance),\"1\",mkbench-pe1,\"compute\",", 0), 0u) << lines[2];
  if (chart) {
    std::string p = mkbench_test::slurp(png);
    ASSERT_GT(p.size(), 1000u);
    EXPECT_EQ(p.substr(1, 3), "PNG");
  }
}

TEST_F(MkbenchPeSplit, TextTableWithRerunLine) {
  if (!can_run()) GTEST_SKIP() << "needs root and 2 CPUs";
  auto r = run_mkbench(dir, "pe-split --kinds 0:1 --workload memory --bytes 4M --seconds 0.2");
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* s : {"kind 0 (efficient)", "kind 1 (performance)", "MiB/s", "p99 us", "cpu s",
                        "rerun: mkbench pe-split --workload memory --kinds 0:1 --seconds 0.2 --bytes 4194304"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
}

TEST_F(MkbenchPeSplit, IpiKvAndCmdWorkloadsRun) {
  if (!can_run()) GTEST_SKIP() << "needs root and 2 CPUs";
  struct Case {
    const char* args;
    const char* unit;
  } cases[] = {{"--workload ipi", "round trips/s"}, {"--workload kv", "requests/s"}, {"--cmd true", "runs/s"}};
  for (const auto& c : cases) {
    auto r = run_mkbench(dir, std::string("pe-split --kinds 0:1 --seconds 0.2 --json ") + c.args);
    ASSERT_EQ(r.code, 0) << c.args << ": " << r.err;
    auto v = mkbench_test::parse_json(r.out);
    ASSERT_TRUE(v.is_object()) << r.out;
    expect_two_kinds(v, c.unit);
  }
}

TEST_F(MkbenchPeSplit, FailingCmdIsReported) {
  if (!can_run()) GTEST_SKIP() << "needs root and 2 CPUs";
  auto r = run_mkbench(dir, "pe-split --kinds 0:1 --seconds 0.2 --cmd 'exit 3'");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("the command exited with status 3"), std::string::npos) << r.err;
}

}  // namespace
