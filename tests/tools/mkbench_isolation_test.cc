// `mkbench isolation` end to end (tools/mkbench/isolation.cc): argument
// errors (exit 2, a message naming the problem), and for real (root: it
// boots instances A and B on CPUs 1 and 0): the JSON has the three
// configurations with finite percentiles and ratios, and the guarantee
// lines that were in force (host tasks and IRQ steering with and without
// --no-enforce), and the host's task affinities are given back. Short runs (--seconds 0.2); no timing
// thresholds: the machine is a noisy VM.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <set>

#include "mkbench_cli.h"

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using mkbench_test::run_mkbench;

class MkbenchIsolation : public ::testing::Test {
 protected:
  void SetUp() override { dir = mkbench_test::test_dir("isolation"); }
  void TearDown() override { fs::remove_all(dir); }
  fs::path dir;
};

TEST_F(MkbenchIsolation, ArgumentErrorsExit2WithAMessage) {
  struct Case {
    const char* args;
    const char* says;
  } cases[] = {
      {"--runs 0", "bad argument '--runs'"},
      {"--seconds -1", "bad argument '--seconds'"},
      {"--seconds abc", "bad argument '--seconds'"},
      {"--hog bogus", "bad argument '--hog'"},
      {"--frobnicate", "bad argument '--frobnicate'"},
      {"--cpus 1", "--cpus wants A:B"},
      {"--cpus 1:1", "overlap"},
      {"--cpus 0:63", "does not have"},
  };
  for (const auto& c : cases) {
    auto r = run_mkbench(dir, std::string("isolation ") + c.args);
    EXPECT_EQ(r.code, 2) << c.args << ": " << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << c.args << ": " << r.err;
    EXPECT_TRUE(r.out.empty()) << c.args;
  }
}

TEST_F(MkbenchIsolation, HelpListsTheOptions) {
  auto r = run_mkbench(dir, "isolation --help");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("--seconds S"), std::string::npos);
  EXPECT_NE(r.out.find("--hog auto|stress-ng|builtin"), std::string::npos);
  EXPECT_NE(r.out.find("--no-enforce"), std::string::npos);
}

void expect_finite_number(const json::object& o, const char* key) {
  ASSERT_TRUE(o.contains(key)) << key;
  double v = o.at(key).to_number<double>();
  EXPECT_TRUE(std::isfinite(v)) << key;
  EXPECT_GT(v, 0) << key;
}

// The three configurations, in order, each with samples and finite stats.
void expect_three_configurations(const json::object& doc, bool enforced) {
  const auto& cs = doc.at("configurations").as_array();
  ASSERT_EQ(cs.size(), 3u);
  const char* names[] = {"alone", "partitioned", "shared"};
  for (std::size_t i = 0; i < 3; ++i) {
    const auto& c = cs[i].as_object();
    EXPECT_EQ(c.at("name").as_string(), names[i]);
    EXPECT_GT(c.at("samples").to_number<double>(), 0) << names[i];
    for (const char* k : {"p50_us", "p99_us", "p999_us", "ratio_p50", "ratio_p99", "ratio_p999"})
      expect_finite_number(c, k);
    EXPECT_LE(c.at("p50_us").to_number<double>(), c.at("p99_us").to_number<double>());
    EXPECT_LE(c.at("p99_us").to_number<double>(), c.at("p999_us").to_number<double>());
    EXPECT_EQ(c.at("runs_p99_us").as_array().size(), 1u);
    EXPECT_EQ(c.at("a_cpus").as_string(), "1");
  }
  EXPECT_DOUBLE_EQ(cs[0].at("ratio_p99").to_number<double>(), 1.0);
  EXPECT_TRUE(cs[0].at("b_cpus").is_null());               // alone: no B
  EXPECT_EQ(cs[1].at("b_cpus").as_string(), "0");          // partitioned: B on its own CPU
  EXPECT_EQ(cs[2].at("b_cpus").as_string(), "1");          // shared: B on A's CPU
  EXPECT_TRUE(cs[1].at("partitioned").as_bool());
  EXPECT_FALSE(cs[2].at("partitioned").as_bool());
  // A's guarantees: partitioned has its cpuset and affinity; shared has no cgroups.
  auto has_line = [](const json::array& a, const std::string& prefix) {
    for (const auto& l : a)
      if (std::string(l.as_string()).rfind(prefix, 0) == 0) return true;
    return false;
  };
  const auto& part = doc.at("guarantees_in_force_for_a").as_array();
  EXPECT_TRUE(has_line(part, "cpuset: ")) << json::serialize(part);
  EXPECT_TRUE(has_line(part, "affinity: cpus 1")) << json::serialize(part);
  EXPECT_FALSE(has_line(cs[2].at("a_guarantees").as_array(), "cpuset: "));
  EXPECT_TRUE(has_line(cs[2].at("a_guarantees").as_array(), "affinity: cpus 1"));
  // Host tasks and IRQs: moved off A's CPUs (the default) or not requested;
  // never in the shared configuration.
  EXPECT_EQ(doc.at("host_tasks_and_irqs_moved_off_a").as_bool(), enforced);
  EXPECT_EQ(has_line(part, "host tasks: not moved off (not requested"), !enforced) << json::serialize(part);
  EXPECT_EQ(has_line(part, "irq steering: "), enforced) << json::serialize(part);
  EXPECT_TRUE(has_line(cs[2].at("a_guarantees").as_array(), "host tasks: not moved off (not requested"));
  const auto& goal = doc.at("goal").as_object();
  EXPECT_DOUBLE_EQ(goal.at("partitioned_p99_max_ratio").to_number<double>(), 1.3);
  EXPECT_TRUE(goal.at("met").is_bool());
  EXPECT_NE(std::string(doc.at("rerun").as_string()).find("mkbench isolation --runs 1 --seconds 0.2"),
            std::string::npos);
}

bool two_cpus() { return ::sysconf(_SC_NPROCESSORS_ONLN) >= 2; }

TEST_F(MkbenchIsolation, JsonHasTheThreeConfigurationsAndGuarantees) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (instances get cgroups)";
  if (!two_cpus()) GTEST_SKIP() << "needs 2 CPUs";
  auto allowed_of_init = [] {
    std::string s = mkbench_test::slurp("/proc/1/status");
    auto at = s.find("Cpus_allowed_list:");
    return at == std::string::npos ? std::string() : s.substr(at, s.find('\n', at) - at);
  };
  std::string before = allowed_of_init();
  auto r = run_mkbench(dir, "isolation --json --runs 1 --seconds 0.2 --cpus 1:0");
  ASSERT_EQ(r.code, 0) << r.err;
  auto v = mkbench_test::parse_json(r.out);
  ASSERT_TRUE(v.is_object()) << r.out;
  expect_three_configurations(v.as_object(), true);
  EXPECT_EQ(v.at("suite").as_string(), "isolation");
  // Nothing left behind: the scratch directory and the instance cgroups are gone.
  EXPECT_FALSE(fs::exists("/sys/fs/cgroup/cpuset/mkernel/bench-iso-a"));
  EXPECT_FALSE(fs::exists("/sys/fs/cgroup/cpuset/mkernel/bench-iso-b"));
  // Host tasks moved off CPU 1 got their affinity back (pid 1 among them).
  EXPECT_EQ(allowed_of_init(), before);
}

TEST_F(MkbenchIsolation, BuiltinHogAndNoEnforceWhenAsked) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (instances get cgroups)";
  if (!two_cpus()) GTEST_SKIP() << "needs 2 CPUs";
  auto r = run_mkbench(dir, "isolation --json --runs 1 --seconds 0.2 --cpus 1:0 --hog builtin --no-enforce");
  ASSERT_EQ(r.code, 0) << r.err;
  auto v = mkbench_test::parse_json(r.out);
  ASSERT_TRUE(v.is_object()) << r.out;
  const auto& agg = v.at("aggressor").as_object();
  EXPECT_EQ(agg.at("tool").as_string(), "builtin");
  EXPECT_NE(std::string(agg.at("command").as_string()).find("__worker hog"), std::string::npos);
  expect_three_configurations(v.as_object(), false);
  EXPECT_NE(std::string(v.at("rerun").as_string()).find("--no-enforce"), std::string::npos);
}

TEST_F(MkbenchIsolation, TextTableAndRerunLine) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (instances get cgroups)";
  if (!two_cpus()) GTEST_SKIP() << "needs 2 CPUs";
  auto r = run_mkbench(dir, "isolation --runs 1 --seconds 0.2 --cpus 1:0");
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* s : {"alone", "partitioned", "shared", "p999 us", "guarantees for A (partitioned):",
                        "goal: partitioned p99 <= 1.3x alone", "rerun: mkbench isolation"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
}

}  // namespace
