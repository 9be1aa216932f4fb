// CPU moves end to end through mkctl and mkerneld (issue #6): a running KV
// instance with tenants (a shell and its two children) shrinks from CPUs 0-1
// to 0 and grows back with `mkctl update NAME --cpus`; after each change the
// cgroup's cpuset and the Cpus_allowed_list of every thread in the instance
// are read back: the tenants follow, the per-CPU loop of a released CPU is
// gone and one runs on an added CPU, the same client connection keeps being
// served. Refusals (the image's consent, the host's checks, an injected
// failure at each step) change nothing; a daemon killed mid-move is undone
// by its restart. `mkctl cpu move` between two running instances needs a
// third CPU: here only its refusals run for real (the moves themselves are
// in tests/mkernel/cpu_move_test.cc against a fake root). Needs root;
// SERIAL (live cgroups, both CPUs).
#include "kv_instance_fixture.h"

namespace {

class CpuMove : public KvInstance {};

TEST_F(CpuMove, InstanceShrinksToOneCpuAndGrowsBackWithItsTenantsFollowing) {
  start_kv();
  expect_on("0-1", {0, 1}, "after start");

  json::object s = run_json("update " + name + " --cpus 0");
  ASSERT_TRUE(s.contains("cpus")) << json::serialize(s);
  EXPECT_EQ(s.at("cpus").as_string(), "0");
  EXPECT_EQ(s.at("cpus_before").as_string(), "0-1");
  EXPECT_TRUE(s.at("running").as_bool());
  EXPECT_GT(s.at("threads_checked").as_int64(), 3);
  EXPECT_TRUE(s.at("not_following").as_array().empty()) << json::serialize(s);
  EXPECT_EQ(cpus_of(name), "0");
  expect_on("0", {0}, "after shrinking to 0");
  expect_keys("after shrinking, same connection");

  CliRun g = run("update " + name + " --cpus 0-1");
  ASSERT_EQ(g.code, 0) << g.err << g.out;
  EXPECT_NE(g.out.find("CPUs 0 -> 0-1"), std::string::npos) << g.out;
  EXPECT_NE(g.out.find("all follow"), std::string::npos) << g.out;
  EXPECT_EQ(cpus_of(name), "0-1");
  expect_on("0-1", {0, 1}, "after growing back");
  expect_keys("after growing, same connection");

  // Shrink to the other CPU: the kv thread and loop of CPU 0 move away.
  ASSERT_EQ(run("update " + name + " --cpus 1").code, 0);
  expect_on("1", {1}, "after shrinking to 1");
  expect_keys("on CPU 1 alone");
  ASSERT_EQ(run("update " + name + " --cpus 0-1").code, 0);
  expect_on("0-1", {0, 1}, "grown again");
}

TEST_F(CpuMove, RefusedAndFailedChangesLeaveEverythingAsItWas) {
  start_kv();
  // The host's checks.
  CliRun out = run("update " + name + " --cpus 0,5");
  EXPECT_EQ(out.code, 1);
  EXPECT_NE(out.err.find("5"), std::string::npos) << out.err;
  EXPECT_EQ(run("update " + name + " --cpus x").code, 2);
  EXPECT_EQ(run("update " + name + " --cpus 0 --kernel " + kernel).code, 2);
  EXPECT_NE(run("update nope --cpus 0").err.find("no such instance"), std::string::npos);
  // A failure injected at each step of a shrink, then of a grow: undone.
  for (std::string step : {"release CPU", "cpuset of"}) {
    CliRun r = run("update " + name + " --cpus 0 --fault 'fail:" + step + "'");
    EXPECT_EQ(r.code, 1) << step << ": " << r.out << r.err;
    EXPECT_NE(r.err.find("--fault fail:" + step), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("nothing changed"), std::string::npos) << r.err;
    EXPECT_EQ(cpus_of(name), "0-1") << step;
    expect_on("0-1", {0, 1}, "after a failed shrink at " + step);
    expect_keys("after a failed shrink at " + step);
  }
  ASSERT_EQ(run("update " + name + " --cpus 0").code, 0);
  for (std::string step : {"cpuset of", "add CPU"}) {
    CliRun r = run("update " + name + " --cpus 0-1 --fault 'fail:" + step + "'");
    EXPECT_EQ(r.code, 1) << step << ": " << r.out << r.err;
    EXPECT_EQ(cpus_of(name), "0") << step;
    expect_on("0", {0}, "after a failed grow at " + step);
    expect_keys("after a failed grow at " + step);
  }
  // Its last CPU: refused by the host before anything is asked.
  CliRun last = run("update " + name + " --cpus 1 --fault 'fail:add CPU'");
  EXPECT_EQ(last.code, 1);
  expect_on("0", {0}, "after a failed swap");
}

TEST_F(CpuMove, TheImageRefusesAndTheHostChangesNothing) {
  start_kv("--services=kv --fault=refuse-cpu-release");
  CliRun r = run("update " + name + " --cpus 0");
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("refused by --fault"), std::string::npos) << r.err;
  EXPECT_EQ(cpus_of(name), "0-1");
  expect_on("0-1", {0, 1}, "after the image refused");
  expect_keys("after the image refused");
}

TEST_F(CpuMove, ADaemonKilledMidMoveIsUndoneByItsRestart) {
  start_kv();
  CliRun r = run("update " + name + " --cpus 0 --fault 'host-exit-after:release CPU 1'");
  EXPECT_NE(r.code, 0) << r.out << r.err;
  // The next call starts a daemon: it re-adopts the image and puts CPU 1 back.
  EXPECT_EQ(cpus_of(name), "0-1");
  expect_on("0-1", {0, 1}, "after the restarted daemon reconciled");
  expect_keys("after the restart");
  EXPECT_FALSE(fs::exists(rt / "cpu-move.json"));
  // And the move can then be made.
  ASSERT_EQ(run("update " + name + " --cpus 0").code, 0);
  expect_on("0", {0}, "moved after the restart");
}

TEST_F(CpuMove, CpuMoveRefusalsBetweenTwoRunningInstances) {
  ASSERT_EQ(run("init --cpus 0-1 --memory 256M").code, 0);
  ASSERT_EQ(run("create " + name + " --cpus 0 --memory 16M").code, 0);
  ASSERT_EQ(run("create " + name + "-b --cpus 1 --memory 16M").code, 0);
  for (const std::string& n : {name, name + "-b"}) {
    ASSERT_EQ(run("load " + n + " --kernel " + kernel).code, 0);
    ASSERT_EQ(run("start " + n).code, 0);
  }
  struct Case {
    std::string args, words;
  };
  const std::vector<Case> cases = {
      {"cpu move 1 --from " + name + "-b --to " + name, "last"},
      {"cpu move 0 --from " + name + "-b --to " + name, "cpu not owned"},
      {"cpu move 0 --from " + name + " --to " + name, "same instance"},
      {"cpu move 0 --from nope --to " + name, "no such instance"},
      {"cpu move 9 --from " + name + " --to " + name + "-b", "9"},
  };
  for (const Case& c : cases) {
    CliRun r = run(c.args);
    EXPECT_EQ(r.code, 1) << c.args << ": " << r.out << r.err;
    EXPECT_NE(r.err.find(c.words), std::string::npos) << c.args << ": " << r.err;
    EXPECT_EQ(cpus_of(name), "0");
    EXPECT_EQ(cpus_of(name + "-b"), "1");
  }
  EXPECT_EQ(run("cpu move 1 --to " + name).code, 2);
  EXPECT_EQ(run("cpu move --from a --to b").code, 2);
  EXPECT_EQ(run("cpu move 0-1 --from a --to b").code, 2);
  EXPECT_EQ(run("cpu jump 1 --from a --to b").code, 2);
}

}  // namespace
