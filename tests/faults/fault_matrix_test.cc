// The fault-injection matrix (issue #8): for every point of mk::fault's
// catalogue (mkernel/fault.h) a KV instance under mkerneld meets that step
// failing (MKERNEL_FAULT=OP:STEP in the daemon's environment) and must end
// either working (the instance answers ping and the same client connection
// reads every key) or cleanly failed (not running, nothing of it left), with
// the census (tools/soak/census.h: image processes, memfds, cgroups,
// namespaces, the daemon's fds) equal before and after. Afterwards, with the
// switch off, the same operation succeeds. Needs root and CPUs 0-1; SERIAL.
#include <cstdlib>

#include "fault_fixture.h"
#include "mkernel/fault.h"

namespace {

struct Case {
  std::string op, step;
};

std::vector<Case> all_cases() {
  std::vector<Case> v;
  for (const auto& p : mk::fault::catalog()) v.push_back({std::string(p.op), std::string(p.step)});
  return v;
}

// Staged steps that a KV instance without peer channels never reaches.
bool not_reached(const Case& c) { return c.op == "staged" && c.step == "peers"; }

class FaultMatrix : public FaultyDaemon, public ::testing::WithParamInterface<Case> {
 protected:
  std::string state() {
    json::object doc = run_json("show " + name);
    return doc.contains("instance") ? std::string(doc.at("instance").as_object().at("state").as_string()) : "?";
  }
  void expect_serving(const std::string& where) {
    EXPECT_EQ(state(), "active") << where;
    CliRun p = run("ping " + name + " --count 3");
    EXPECT_EQ(p.code, 0) << where << ": " << p.err;
    expect_keys(where);
  }
  // No process of the instance and no cgroup of it.
  void expect_gone(const std::string& where) {
    EXPECT_FALSE(fs::exists(cgroup(name))) << where << ": cgroup left";
    EXPECT_FALSE(fs::exists(fs::path("/sys/fs/cgroup/memory/mkernel") / name)) << where << ": memory cgroup left";
  }
  std::string op_command(const Case& c) {
    if (c.op == "boot") return "start " + name;
    if (c.op == "stop") return "stop " + name;
    if (c.op == "update") return "update " + name;
    return "update " + name + " --staged";
  }
};

TEST_P(FaultMatrix, EndsWorkingOrCleanlyFailedWithNothingLeaked) {
  const Case c = GetParam();
  const std::string spec = c.op + ":" + c.step;
  SCOPED_TRACE("MKERNEL_FAULT=" + spec);
  start_kv();
  if (HasFatalFailure()) return;
  if (c.op == "boot") {
    // Boot from stopped: the census is taken with the instance loaded, not running.
    ::close(client);
    client = -1;
    ASSERT_EQ(run("stop " + name).code, 0);
  }
  restart_daemon(spec);
  if (HasFatalFailure()) return;
  const Census before = take_census(daemon_pid());
  CliRun r = run(op_command(c));
  const Census after = take_census(daemon_pid());
  const std::string where = spec + " (" + op_command(c) + ")";

  if (not_reached(c)) {
    EXPECT_EQ(r.code, 0) << where << ": " << r.err;
  } else if (c.op == "stop") {
    // Stop has fallbacks (SIGKILL, then removal at the next start): it ends
    // stopped either way, and says what failed when it failed.
    if (r.code != 0) {
      EXPECT_NE(r.err.find("fault injected"), std::string::npos) << where << ": " << r.err;
    }
    EXPECT_NE(state(), "active") << where;
    EXPECT_EQ(after.images, before.images - 1) << where << ": " << before.str() << " -> " << after.str();
  } else {
    EXPECT_EQ(r.code, 1) << where << ": " << r.out << r.err;
    EXPECT_NE(r.err.find("fault injected"), std::string::npos) << where << ": " << r.err;
    EXPECT_EQ(after, before) << where << ": " << before.str() << " -> " << after.str();
    if (c.op == "boot") {
      EXPECT_NE(state(), "active") << where;
      expect_gone(where);
    } else {
      expect_serving(where + ", rolled back");
    }
  }
  if (c.op == "stop" && c.step == "release") {
    // The cgroups could not be removed: they stay, empty (the image and
    // its tenants are gone), and the next start reuses them.
    EXPECT_EQ(trim(slurp(cgroup(name) / "cgroup.procs")), "") << where;
  } else if (c.op == "stop") {
    expect_gone(where);
  }
  if (c.op == "stop") {
    if (r.code != 0) std::cerr << "note: " << where << " exited " << r.code << ": " << r.err;
  }

  // With the switch off, the same operation works.
  restart_daemon("");
  if (HasFatalFailure()) return;
  if (c.op == "stop") {
    ASSERT_EQ(run("start " + name).code, 0) << where << ": start after the failed stop";
    CliRun p = run("ping " + name + " --count 3");
    EXPECT_EQ(p.code, 0) << where << ": " << p.err;
    ASSERT_EQ(run("stop " + name).code, 0) << where << ": stop without the fault";
    expect_gone(where + ", stopped without the fault");
  } else if (c.op == "boot") {
    CliRun s = run("start " + name);
    ASSERT_EQ(s.code, 0) << where << ": " << s.err;
    CliRun p = run("ping " + name + " --count 3");
    EXPECT_EQ(p.code, 0) << where << ": " << p.err;
  } else {
    CliRun u = run(op_command(c));
    EXPECT_EQ(u.code, 0) << where << ": without the fault: " << u.err;
    expect_serving(where + ", updated without the fault");
  }
}

INSTANTIATE_TEST_SUITE_P(EveryPoint, FaultMatrix, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           std::string n = i.param.op + "_" + i.param.step;
                           for (char& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

// A malformed MKERNEL_FAULT is refused, naming what is wrong and the steps.
TEST(FaultSwitch, ValidateNamesTheBadItemAndTheSteps) {
  EXPECT_TRUE(mk::fault::validate(""));
  EXPECT_TRUE(mk::fault::validate("update:freeze,boot:spawn@2"));
  auto a = mk::fault::validate("update:thaw");
  ASSERT_FALSE(a);
  EXPECT_NE(std::string(a.error().to_string()).find("freeze"), std::string::npos) << a.error().to_string();
  auto b = mk::fault::validate("reboot:x");
  ASSERT_FALSE(b);
  EXPECT_NE(std::string(b.error().to_string()).find("no operation 'reboot'"), std::string::npos);
  EXPECT_FALSE(mk::fault::validate("update"));
  EXPECT_FALSE(mk::fault::validate("update:freeze@0"));
  EXPECT_FALSE(mk::fault::validate("update:freeze@x"));
}

// mkerneld refuses to start with a MKERNEL_FAULT it cannot honour, and
// mkctl says why (the daemon's own message).
TEST_F(Daemon, ADaemonWithABadFaultSpecRefusesToStart) {
  ::setenv("MKERNEL_FAULT", "update:thaw", 1);
  CliRun r = run("show");
  ::unsetenv("MKERNEL_FAULT");
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("bad MKERNEL_FAULT item"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("freeze"), std::string::npos) << "the message lists the steps: " << r.err;
  EXPECT_EQ(daemon_pid(), 0);
  EXPECT_EQ(run("show").code, 0) << "without it the daemon starts";
}

// @N fails only the N-th time the point is reached in this process.
TEST(FaultSwitch, NthHitOnly) {
  ::setenv("MKERNEL_FAULT", "stop:exit@2", 1);
  EXPECT_TRUE(mk::fault::point("stop", "exit"));
  EXPECT_FALSE(mk::fault::point("stop", "exit"));
  EXPECT_TRUE(mk::fault::point("stop", "exit"));
  EXPECT_TRUE(mk::fault::point("stop", "shutdown"));
  ::setenv("MKERNEL_FAULT", "staged:cpu", 1);
  EXPECT_FALSE(mk::fault::point("staged", "cpu 3"));
  EXPECT_TRUE(mk::fault::point("staged", "cpus"));
  ::unsetenv("MKERNEL_FAULT");
  EXPECT_TRUE(mk::fault::point("staged", "cpu"));
}

}  // namespace
