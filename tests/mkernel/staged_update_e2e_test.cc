// staged_update() end to end with the real mk-kernel: an instance on two
// CPUs serving the KV service on a listen device, with a `sleep` tenant and
// a connected client, updated in stages (the new image on one of its CPUs,
// tenants then services handed over, the old image retired); then the
// aborts: on request between steps (the new image hands every part back),
// the new image killed mid-migration (the host restores what it had from
// the packages it holds), and abort_staged_update() as a restarted host
// runs it from a journaled position. Each ends with the old or the new
// image serving every key on the same connection and the tenant alive.
// Needs two CPUs (skipped otherwise); SERIAL (live cgroups).
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <map>
#include <thread>

#include "kv_e2e_util.h"
#include "mk/units.h"
#include "mkernel/staged_update.h"

namespace mk {
namespace {

using namespace std::chrono_literals;

class StagedUpdate : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = load_topology_live();
    ASSERT_TRUE(t) << t.error().to_string();
    topo = *t;
    if (topo.pus.size() < 2) GTEST_SKIP() << "needs two CPUs";
    port = free_port();
    req.instance.id = 14;
    req.instance.name = "su-e2e-" + std::to_string(::getpid());
    req.instance.cpus = CpuSet::of({topo.pus[0].os_index, topo.pus[1].os_index});
    req.instance.memory = {{topo.numa_nodes.front().os_index, 16 * kMiB}};
    req.instance.devices = {*DeviceSpec::parse("listen:127.0.0.1:" + std::to_string(port))};
    req.image.path = std::string(MK_BIN_DIR) + "/mk-kernel";
    req.image.cmdline = "--services=kv";
    req.image.init = "sleep 1000";
    req.root = SysRoot();
    auto r = boot_instance(topo, req);
    ASSERT_TRUE(r) << r.error().to_string();
    run = std::move(*r);
    auto ready = run->wait_ready(10s);
    ASSERT_TRUE(ready) << ready.error().to_string() << "\nconsole: " << drain(run->console_fd());
    client.emplace(port);
    ASSERT_TRUE(client->ok());
    for (int i = 0; i < 100; ++i) ASSERT_EQ(client->cmd({"SET", "k" + std::to_string(i), "v" + std::to_string(i)}), "+OK");
    tenant = find_tenant(run->pid());
    ASSERT_GT(tenant, 0);
  }
  void TearDown() override {
    client.reset();
    if (run) {
      run->kill();
      (void)run->release();
    }
  }
  StagedRequest request() {
    StagedRequest s;
    s.image = req.image;
    s.timeout = 5s;
    s.on_new_image = [this](const RuntimeRecord& r) { new_pid = r.pid; };
    s.on_step = [this](const StagedStep& st) { steps.push_back(st); };
    s.on_progress = [this](const StagedProgress& p) { last_progress = p; };
    return s;
  }
  // The instance serves every key on the first connection and a new one;
  // the tenant lives; the image runs on both CPUs.
  void expect_serving(const std::string& where) {
    ASSERT_TRUE(run) << where;
    ASSERT_TRUE(run->ping(64, 2s)) << where << "\n" << drain(run->console_fd());
    for (int i = 0; i < 100; ++i)
      ASSERT_EQ(client->cmd({"GET", "k" + std::to_string(i)}), "$v" + std::to_string(i)) << where << ": key " << i;
    Client c(port);
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c.cmd({"GET", "k7"}), "$v7") << where;
    EXPECT_TRUE(alive(tenant)) << where;
    EXPECT_EQ(run->instance().cpus, req.instance.cpus) << where;
    EXPECT_EQ(status_line(run->pid(), "Cpus_allowed_list:"), req.instance.cpus.to_string()) << where;
    EXPECT_EQ(status_line(tenant, "Cpus_allowed_list:"), req.instance.cpus.to_string()) << where;
  }
  std::vector<std::string> step_names() const {
    std::vector<std::string> n;
    for (const auto& s : steps) n.push_back(s.name);
    return n;
  }

  Topology topo;
  BootRequest req;
  uint16_t port = 0;
  std::unique_ptr<RunningInstance> run;
  std::optional<Client> client;
  pid_t tenant = -1;
  pid_t new_pid = -1;
  std::vector<StagedStep> steps;
  StagedProgress last_progress;
};

TEST_F(StagedUpdate, MovesTenantsAndServicesStepByStepOnTheInstancesCpus) {
  const pid_t old_pid = run->pid();
  const uint32_t c0 = topo.pus[0].os_index, c1 = topo.pus[1].os_index;
  StagedOutcome out = staged_update(run, topo, req.root, request());
  ASSERT_TRUE(out.updated) << (out.cause ? out.cause->to_string() : "") << "; " << out.rollback << "\n"
                           << drain(run->console_fd());
  EXPECT_EQ(step_names(), (std::vector<std::string>{"cpu", "boot", "tenants", "services", "retire"}));
  ASSERT_EQ(steps.size(), 5u);
  // The new image started on the old one's highest CPU; no CPU in both, ever.
  EXPECT_EQ(steps[0].old_cpus, CpuSet::of({c0}));
  EXPECT_EQ(steps[0].new_cpus, CpuSet::of({c1}));
  for (const auto& s : steps) {
    EXPECT_TRUE(s.check.empty()) << s.name << ": " << s.check;
    EXPECT_FALSE(s.old_cpus.intersects(s.new_cpus)) << s.name;
    EXPECT_EQ(s.blackout_ms.has_value(), s.name == "tenants" || s.name == "services") << s.name;
  }
  EXPECT_TRUE(last_progress.retired);
  EXPECT_EQ(run->pid(), new_pid);
  EXPECT_NE(run->pid(), old_pid);
  EXPECT_TRUE(out.max_blackout_ms.has_value());
  EXPECT_TRUE(out.warnings.empty()) << out.warnings.front();
  expect_serving("after the staged update");
  // Again, from the new image (not PID 1 of the namespace: it exits).
  steps.clear();
  const pid_t second = run->pid();
  StagedOutcome again = staged_update(run, topo, req.root, request());
  ASSERT_TRUE(again.updated) << (again.cause ? again.cause->to_string() : "") << "; " << again.rollback;
  EXPECT_NE(run->pid(), second);
  for (int i = 0; i < 100 && alive(second); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(alive(second));
  expect_serving("after the second staged update");
}

TEST_F(StagedUpdate, AnAbortBetweenStepsHandsEveryPartBack) {
  const pid_t old_pid = run->pid();
  StagedRequest s = request();
  bool after_services = false;
  s.after_step = [&](std::string_view step) { after_services = after_services || step == "services"; };
  s.abort_requested = [&] { return after_services; };
  StagedOutcome out = staged_update(run, topo, req.root, s);
  EXPECT_FALSE(out.updated);
  ASSERT_TRUE(out.cause);
  EXPECT_EQ(out.cause->code(), ECANCELED);
  EXPECT_NE(out.rollback.find("everything back with the old image"), std::string::npos) << out.rollback;
  std::vector<std::string> aborts;
  for (const auto& st : steps)
    if (st.name.rfind("abort: ", 0) == 0) aborts.push_back(st.name);
  EXPECT_EQ(aborts, (std::vector<std::string>{"abort: services", "abort: tenants", "abort: done"}));
  EXPECT_EQ(run->pid(), old_pid);
  EXPECT_FALSE(alive(new_pid));
  expect_serving("after the abort");
  // The old image took its tenant back: its exit reaches the host again.
  ASSERT_EQ(::kill(tenant, SIGKILL), 0);
  bool seen = false;
  for (int i = 0; i < 200 && !seen; ++i) {
    (void)run->ping(0, 1s);
    for (const auto& e : run->tenant_exits()) seen = seen || e.index == 0;
    if (!seen) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(seen) << drain(run->console_fd());
}

TEST_F(StagedUpdate, TheNewImageKilledMidMigrationIsUndoneFromTheHeldPackages) {
  const pid_t old_pid = run->pid();
  StagedRequest s = request();
  s.after_step = [&](std::string_view step) {
    if (step != "services" || new_pid <= 0) return;
    // Killed, and gone before the next step (its pidfd polls readable).
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, new_pid, 0));
    ::kill(new_pid, SIGKILL);
    if (pidfd >= 0) {
      pollfd p{pidfd, POLLIN, 0};
      (void)::poll(&p, 1, 5000);
      ::close(pidfd);
    }
  };
  StagedOutcome out = staged_update(run, topo, req.root, s);
  EXPECT_FALSE(out.updated);
  ASSERT_TRUE(out.cause);
  EXPECT_NE(out.rollback.find("everything back"), std::string::npos) << out.rollback;
  bool restored = false;
  for (const auto& st : steps) restored = restored || st.moved.find("held") != std::string::npos;
  EXPECT_TRUE(restored) << "the parts were not restored from the held packages";
  EXPECT_EQ(run->pid(), old_pid);
  expect_serving("after the new image died");
}

TEST_F(StagedUpdate, ARestartedHostAbortsFromTheJournaledPosition) {
  // The position a dead host journaled after the tenants step; the new
  // image it left is re-adopted like mkerneld does.
  const pid_t old_pid = run->pid();
  StagedRequest s = request();
  s.inject = [](std::string_view step) -> Result<void> {
    if (step == "services") return MK_FAIL(EIO, "stop here", "test");
    return ok();
  };
  // First a real run to the tenants step (then it aborts by itself, which
  // must also work); its journaled position after "tenants" is what a
  // restarted host would find.
  std::optional<StagedProgress> after_tenants;
  std::optional<RuntimeRecord> next;
  s.on_new_image = [&](const RuntimeRecord& r) { next = r; };
  s.on_progress = [&](const StagedProgress& p) {
    if (p.parts == abi::kUpdateScopeTenants && !after_tenants) after_tenants = p;
  };
  StagedOutcome out = staged_update(run, topo, req.root, s);
  EXPECT_FALSE(out.updated);
  ASSERT_TRUE(after_tenants);
  EXPECT_EQ(after_tenants->new_cpus.count(), 1u);
  EXPECT_EQ(run->pid(), old_pid);
  expect_serving("after the injected failure");
  // Without a new image (it died with the host): nothing to hand back, the
  // CPU returns; the old image serves.
  StagedProgress at = *after_tenants;
  at.parts = 0;
  StagedOutcome undo = abort_staged_update(run, nullptr, at, topo, req.root, request());
  EXPECT_FALSE(undo.updated);
  EXPECT_EQ(undo.cause->code(), ECANCELED);
  EXPECT_EQ(run->pid(), old_pid);
  expect_serving("after abort_staged_update");
}

}  // namespace
}  // namespace mk
