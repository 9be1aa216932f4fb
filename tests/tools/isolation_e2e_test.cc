// Isolation extras of `mkctl start` end to end (issue #7): --steer-irqs,
// --evict-host-tasks and --exclusive-memory on this machine's real
// /proc/irq, tasks and v1 cpuset, through mkctl and mkerneld; each shows up
// as a guarantee line; the daemon is SIGKILLed while the instance runs and
// the next daemon still gives every IRQ and host task back at stop. Needs
// root and 2 CPUs; SERIAL (it changes live IRQ and task affinities; a guard
// puts them back even when an expectation fails).
#include <sched.h>

#include <map>

#include "daemon_fixture.h"

namespace {

std::map<int, std::string> irq_affinities() {
  std::map<int, std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc/irq", ec)) {
    const std::string n = e.path().filename().string();
    if (n.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string v = slurp(e.path() / "smp_affinity_list");
    while (!v.empty() && v.back() == '\n') v.pop_back();
    if (!v.empty()) out[std::stoi(n)] = v;
  }
  return out;
}

std::string own_allowed() {
  cpu_set_t s;
  CPU_ZERO(&s);
  ::sched_getaffinity(0, sizeof s, &s);
  std::string out;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &s)) out += (out.empty() ? "" : ",") + std::to_string(c);
  return out;
}

// Every task's affinity now; put back (tasks still alive) on destruction.
struct AffinityGuard {
  std::map<int, std::string> irqs = irq_affinities();
  std::string default_mask = slurp("/proc/irq/default_smp_affinity");
  std::map<pid_t, cpu_set_t> tasks;
  AffinityGuard() {
    for (const auto& p : fs::directory_iterator("/proc")) {
      const std::string n = p.path().filename().string();
      if (n.find_first_not_of("0123456789") != std::string::npos) continue;
      std::error_code ec;
      for (const auto& t : fs::directory_iterator(p.path() / "task", ec)) {
        const pid_t tid = static_cast<pid_t>(std::stoi(t.path().filename().string()));
        cpu_set_t s;
        if (::sched_getaffinity(tid, sizeof s, &s) == 0) tasks[tid] = s;
      }
    }
  }
  ~AffinityGuard() {
    for (const auto& [irq, v] : irqs) {
      if (irq_affinities()[irq] == v) continue;
      std::ofstream("/proc/irq/" + std::to_string(irq) + "/smp_affinity_list") << v;
    }
    std::ofstream("/proc/irq/default_smp_affinity") << default_mask;
    for (auto& [tid, s] : tasks) {
      cpu_set_t now;
      if (::sched_getaffinity(tid, sizeof now, &now) == 0 && !CPU_EQUAL(&now, &s))
        ::sched_setaffinity(tid, sizeof s, &s);
    }
  }
};

class Isolation : public Daemon {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (cgroups, /proc/irq, other tasks' affinity)";
    if (::sysconf(_SC_NPROCESSORS_ONLN) < 2) GTEST_SKIP() << "needs 2 CPUs";
    if (!fs::exists("/proc/irq")) GTEST_SKIP() << "no /proc/irq";
    Daemon::SetUp();
    name = "iso-" + std::to_string(::getpid());
    cpu = std::to_string(::sysconf(_SC_NPROCESSORS_ONLN) - 1);
  }
  void TearDown() override {
    if (::geteuid() != 0 || name.empty()) return;
    Daemon::TearDown();
    for (const char* h : {"cpuset", "memory"}) {
      ::rmdir(("/sys/fs/cgroup/" + std::string(h) + "/mkernel/" + name).c_str());
      ::rmdir(("/sys/fs/cgroup/" + std::string(h) + "/mkernel").c_str());
    }
  }
  json::object run_json(const std::string& args) {
    CliRun r = run(args + " --json");
    EXPECT_EQ(r.code, 0) << args << ": " << r.err;
    boost::system::error_code ec;
    json::value v = json::parse(r.out, ec);
    return !ec && v.is_object() ? v.as_object() : json::object{};
  }
  static std::string line(const json::array& gs, const std::string& prefix) {
    for (const auto& g : gs)
      if (g.is_string() && std::string(g.as_string()).rfind(prefix, 0) == 0) return std::string(g.as_string());
    return "";
  }
  std::string name, cpu;
};

TEST_F(Isolation, StartWithEveryExtraThenRestartAndStop) {
  AffinityGuard guard;
  ASSERT_EQ(run("init --cpus " + cpu + " --memory 256M").code, 0);
  ASSERT_EQ(run("create " + name + " --cpus " + cpu + " --memory 64M").code, 0);
  ASSERT_EQ(run("load " + name + " --kernel " + std::string(MK_BIN_DIR) + "/mk-kernel").code, 0);

  json::object s = run_json("start " + name + " --steer-irqs --evict-host-tasks --exclusive-memory");
  ASSERT_TRUE(s.contains("guarantees"));
  const json::array& gs = s.at("guarantees").as_array();
  const std::string irq = line(gs, "irq steering: ");
  const std::string tasks = line(gs, "host tasks: ");
  const std::string mems = line(gs, "memory nodes: ");
  std::printf("%s\n%s\n%s\n", irq.c_str(), tasks.c_str(), mems.c_str());
  EXPECT_NE(irq.find(" IRQs on cpus " + cpu + " moved off them"), std::string::npos) << irq;
  EXPECT_NE(tasks.find(" host tasks moved off cpus " + cpu), std::string::npos) << tasks;
  EXPECT_TRUE(mems.find("v1 mem_exclusive") != std::string::npos ||
              mems.find("kernel refused mem_exclusive=1") != std::string::npos ||
              mems.find("cgroup v2 has no mem_exclusive") != std::string::npos)
      << mems;
  EXPECT_NE(line(gs, "mempolicy: bind"), "");
  EXPECT_NE(line(gs, "memory cgroup: "), "");

  // While it runs: this test process (a host task) is off the CPU, every IRQ
  // is unless named as not movable, and the originals are on disk.
  EXPECT_EQ(own_allowed().find(cpu), std::string::npos) << own_allowed();
  for (const auto& [n, v] : irq_affinities()) {
    if (irq.find(" " + std::to_string(n) + " (") != std::string::npos) continue;  // named: not movable
    EXPECT_EQ(v.find(cpu), std::string::npos) << "IRQ " << n << " on " << v;
  }
  EXPECT_TRUE(fs::exists(rt / "irq-affinity.json"));
  EXPECT_TRUE(fs::exists(rt / ("evicted-" + name + ".json")));

  {
    const std::string ev = slurp(rt / ("evicted-" + name + ".json"));
    const std::string me = "[" + std::to_string(::getpid()) + "," + std::to_string(::gettid()) + ",";
    const auto at = ev.find(me);
    std::printf("this test in evicted-NAME.json: %s\n", at == std::string::npos ? "no" : ev.substr(at, 40).c_str());
  }
  // The daemon dies; the next one (started by mkctl) still knows.
  const pid_t d = daemon_pid();
  ASSERT_GT(d, 0);
  ASSERT_EQ(::kill(d, SIGKILL), 0);
  ::waitpid(d, nullptr, 0);
  json::object shown = run_json("show " + name);
  EXPECT_NE(json::serialize(shown).find("irq steering: "), std::string::npos);

  ASSERT_EQ(run("stop " + name).code, 0);
  EXPECT_EQ(irq_affinities(), guard.irqs);
  EXPECT_EQ(slurp("/proc/irq/default_smp_affinity"), guard.default_mask);
  EXPECT_NE(own_allowed().find(cpu), std::string::npos) << own_allowed() << "\n" << slurp(rt / "mkerneld.log");
  EXPECT_FALSE(fs::exists(rt / "irq-affinity.json"));
  EXPECT_FALSE(fs::exists(rt / ("evicted-" + name + ".json")));

  // Without the options: the three lines say why not.
  json::object plain = run_json("start " + name);
  const json::array& pg = plain.at("guarantees").as_array();
  EXPECT_EQ(line(pg, "irq steering: "), "irq steering: not steered (not requested: mkctl start --steer-irqs) [not in force]");
  EXPECT_NE(line(pg, "host tasks: ").find("--evict-host-tasks"), std::string::npos);
  EXPECT_NE(line(pg, "memory nodes: ").find("--exclusive-memory"), std::string::npos);
  EXPECT_EQ(irq_affinities(), guard.irqs);  // nothing steered
  ASSERT_EQ(run("stop " + name).code, 0);
  ASSERT_EQ(run("delete " + name).code, 0);
}

// The image dies (SIGKILL): the instance is marked failed and its IRQs and
// host tasks are given back at once; deleting it leaves no state file.
TEST_F(Isolation, ImageKilledGivesEverythingBack) {
  AffinityGuard guard;
  ASSERT_EQ(run("init --cpus " + cpu + " --memory 256M").code, 0);
  ASSERT_EQ(run("create " + name + " --cpus " + cpu + " --memory 64M").code, 0);
  ASSERT_EQ(run("load " + name + " --kernel " + std::string(MK_BIN_DIR) + "/mk-kernel").code, 0);
  json::object s = run_json("start " + name + " --steer-irqs --evict-host-tasks");
  ASSERT_TRUE(s.contains("pid"));
  EXPECT_EQ(own_allowed().find(cpu), std::string::npos) << own_allowed();
  EXPECT_NE(irq_affinities(), guard.irqs);
  ASSERT_EQ(::kill(static_cast<pid_t>(s.at("pid").as_int64()), SIGKILL), 0);
  std::string state;
  for (int i = 0; i < 200 && state != "failed"; ++i) {
    json::object doc = run_json("show " + name);
    if (doc.contains("instance")) state = std::string(doc.at("instance").as_object().at("state").as_string());
    if (state != "failed") ::usleep(20000);
  }
  ASSERT_EQ(state, "failed");
  EXPECT_EQ(irq_affinities(), guard.irqs);
  EXPECT_EQ(slurp("/proc/irq/default_smp_affinity"), guard.default_mask);
  EXPECT_NE(own_allowed().find(cpu), std::string::npos) << own_allowed();
  EXPECT_FALSE(fs::exists(rt / "irq-affinity.json"));
  EXPECT_FALSE(fs::exists(rt / ("evicted-" + name + ".json")));
  ASSERT_EQ(run("delete " + name).code, 0);
}

}  // namespace
