// Staged live update end to end through mkctl and mkerneld (issue #6): a KV
// instance on CPUs 0-1 with a tenant (a shell and its two children) and a
// connected client is updated with `mkctl update NAME --staged`: the new
// image starts on CPU 1 taken from the old one, tenants, then services move
// one handover each, the old image retires and CPU 0 follows. After every
// step no CPU is in both images (the step's check); afterwards the new image
// runs on 0-1, every thread of the instance follows, the tenants kept their
// pids and the same client connection reads every key. Each step failing,
// the old image refusing to give a CPU up, the new image failing to boot and
// the daemon dying mid-migration all end with the old image serving
// everything on CPUs 0-1 (a daemon dying after the old image retired: with
// the new image adopted). Needs root; SERIAL (live cgroups, both CPUs).
#include "kv_instance_fixture.h"

namespace {

class Staged : public KvInstance {
 protected:
  // Everything with the image `pid` on 0-1: both loops, tenants following,
  // the client's keys on the same connection.
  void expect_whole(pid_t pid, const std::vector<pid_t>& tenants, const std::string& where) {
    EXPECT_EQ(image_pid(), pid) << where;
    EXPECT_EQ(cpus_of(name), "0-1") << where;
    expect_on("0-1", {0, 1}, where);
    EXPECT_EQ(sleepers(), tenants) << where << ": the tenants keep their pids";
    expect_keys(where);
    json::object doc = run_json("show " + name);
    EXPECT_EQ(doc.at("instance").as_object().at("state").as_string(), "active") << where;
  }
};

TEST_F(Staged, MovesTheInstanceToANewImageStepByStepOnTwoCpus) {
  start_kv();
  const std::vector<pid_t> tenants = sleepers();
  ASSERT_EQ(tenants.size(), 2u);
  pid_t pid = image_pid();
  for (int round = 1; round <= 2; ++round) {
    const std::string where = "staged update " + std::to_string(round);
    json::object u = run_json("update " + name + " --staged");
    ASSERT_TRUE(u.contains("steps")) << json::serialize(u);
    EXPECT_TRUE(u.at("updated").as_bool());
    EXPECT_EQ(u.at("old_pid").as_int64(), pid);
    std::vector<std::string> names;
    for (const auto& sv : u.at("steps").as_array()) {
      const json::object& s = sv.as_object();
      names.push_back(std::string(s.at("step").as_string()));
      EXPECT_TRUE(s.at("cpus_disjoint").as_bool()) << where << ": " << json::serialize(s);
      const bool handover = names.back() == "tenants" || names.back() == "services";
      EXPECT_EQ(s.contains("blackout_ms"), handover) << json::serialize(s);
    }
    EXPECT_EQ(names, (std::vector<std::string>{"cpu", "boot", "tenants", "services", "retire"})) << where;
    const json::object& first = u.at("steps").as_array().front().as_object();
    EXPECT_EQ(first.at("old_cpus").as_string(), "0");  // the new image starts on CPU 1, taken from the old one
    EXPECT_EQ(first.at("new_cpus").as_string(), "1");
    EXPECT_GT(u.at("max_blackout_ms").to_number<double>(), 0.0);
    const pid_t next = image_pid();
    EXPECT_NE(next, pid) << where;
    EXPECT_EQ(static_cast<pid_t>(u.at("pid").as_int64()), next);
    expect_whole(next, tenants, where);
    EXPECT_EQ(resp(client, {"SET", "round" + std::to_string(round), "done"}), "+OK");
    pid = next;
  }
  // Human output: one line per step, with the blackouts.
  CliRun h = run("update " + name + " --staged");
  ASSERT_EQ(h.code, 0) << h.err << h.out;
  for (const char* step : {"cpu", "boot", "tenants", "services", "retire"})
    EXPECT_NE(h.out.find(std::string("  ") + step + " "), std::string::npos) << step << " missing from:\n" << h.out;
  EXPECT_NE(h.out.find("blackout"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("updated '" + name + "' in stages"), std::string::npos) << h.out;
  expect_whole(image_pid(), tenants, "after the third update");
  // The tenants are still supervised: stop ends them.
  ASSERT_EQ(run("stop " + name).code, 0);
  std::this_thread::sleep_for(100ms);
  for (pid_t t : tenants) EXPECT_FALSE(process_alive(t)) << t;
}

TEST_F(Staged, AFailureAtEveryStepReturnsEverythingToTheOldImage) {
  start_kv();
  const std::vector<pid_t> tenants = sleepers();
  ASSERT_EQ(tenants.size(), 2u);
  const pid_t pid = image_pid();
  for (std::string step : {"cpu", "boot", "tenants", "services", "retire"}) {
    CliRun r = run("update " + name + " --staged --fault fail:" + step);
    EXPECT_EQ(r.code, 1) << step << ": " << r.out << r.err;
    EXPECT_NE(r.err.find("staged update aborted"), std::string::npos) << step << ": " << r.err;
    EXPECT_NE(r.err.find("--fault fail:" + step), std::string::npos) << step << ": " << r.err;
    expect_whole(pid, tenants, "after a failure at " + step);
  }
  // The new image fails to boot.
  CliRun boot = run("update " + name + " --staged --cmdline '--services=kv --fault=exit-at-boot'");
  EXPECT_EQ(boot.code, 1) << boot.out << boot.err;
  expect_whole(pid, tenants, "after the new image exited at boot");
  // And then an update goes through.
  ASSERT_EQ(run("update " + name + " --staged").code, 0);
  expect_whole(image_pid(), tenants, "after the update that went through");
}

TEST_F(Staged, TheOldImageRefusingItsCpuChangesNothing) {
  start_kv("--services=kv --fault=refuse-cpu-release");
  const std::vector<pid_t> tenants = sleepers();
  const pid_t pid = image_pid();
  CliRun r = run("update " + name + " --staged --cmdline --services=kv");
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("refused by --fault"), std::string::npos) << r.err;
  expect_whole(pid, tenants, "after the refusal");
}

TEST_F(Staged, ADaemonKilledMidMigrationIsUndoneByItsRestart) {
  start_kv();
  const std::vector<pid_t> tenants = sleepers();
  const pid_t pid = image_pid();
  // Killed right after the old image gave its CPU up (no new image yet).
  CliRun early = run("update " + name + " --staged --fault host-exit-after:cpu");
  EXPECT_NE(early.code, 0) << early.out << early.err;
  expect_whole(pid, tenants, "after the restarted daemon gave the CPU back");
  CliRun r = run("update " + name + " --staged --fault host-exit-after:tenants");
  EXPECT_NE(r.code, 0) << r.out << r.err;
  // The next call starts a daemon: it re-adopts both images and hands the
  // tenants back to the old one.
  expect_whole(pid, tenants, "after the restarted daemon undid the update");
  EXPECT_FALSE(fs::exists(rt / "update" / (name + ".json")));
  // Killed once the old image retired: the update was complete; the
  // restarted daemon adopts the new image as the instance.
  CliRun late = run("update " + name + " --staged --fault host-exit-after:retire");
  EXPECT_NE(late.code, 0) << late.out << late.err;
  const pid_t now = image_pid();  // starts a daemon, which adopts the new image
  EXPECT_NE(now, pid);
  expect_whole(now, tenants, "after the restarted daemon adopted the new image");
  ASSERT_EQ(run("update " + name + " --staged").code, 0);
  expect_whole(image_pid(), tenants, "updated after the restarts");
}

TEST_F(Staged, OnASpareCpuTheInstanceKeepsItsCpus) {
  start_kv("--services=kv", "0");
  const std::vector<pid_t> tenants = sleepers();
  ASSERT_EQ(tenants.size(), 2u);
  const pid_t pid = image_pid();
  // Refusals first: a spare CPU that is not free, none at all on one CPU.
  CliRun none = run("update " + name + " --staged");
  EXPECT_EQ(none.code, 1);
  EXPECT_NE(none.err.find("--spare-cpus"), std::string::npos) << none.err;
  CliRun taken = run("update " + name + " --staged --spare-cpus 0");
  EXPECT_EQ(taken.code, 1);
  EXPECT_NE(taken.err.find("spare CPUs not free"), std::string::npos) << taken.err;
  EXPECT_EQ(run("update " + name + " --spare-cpus 1").code, 2);
  EXPECT_EQ(image_pid(), pid);

  json::object u = run_json("update " + name + " --staged --spare-cpus 1");
  ASSERT_TRUE(u.contains("updated")) << json::serialize(u);
  EXPECT_TRUE(u.at("updated").as_bool());
  for (const auto& sv : u.at("steps").as_array())
    EXPECT_TRUE(sv.as_object().at("cpus_disjoint").as_bool()) << json::serialize(sv);
  EXPECT_NE(image_pid(), pid);
  EXPECT_EQ(cpus_of(name), "0");
  expect_on("0", {0}, "after a staged update on spare CPU 1");
  EXPECT_EQ(sleepers(), tenants);
  expect_keys("after a staged update on a spare CPU");
}

}  // namespace
