// Instances that really run, end to end through mkctl and mkerneld: load,
// start (two single-CPU instances on this 2-CPU machine), confinement of
// every thread, ping host->instance and instance->instance, console, top,
// SIGKILL of the daemon (instances keep running, the next daemon re-adopts
// them with the same pids), SIGKILL of an image (failed within a second, the
// other instance untouched), stop + delete (nothing left behind), and the
// refusals along the way. Needs root (cgroups, namespaces); SERIAL: it uses
// both CPUs and the live `mkernel` cgroup parent.
#include <dirent.h>

#include <chrono>
#include <set>
#include <thread>

#include "daemon_fixture.h"

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

std::string status_field(pid_t pid, const std::string& task, const char* key) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/task/" + task + "/status");
  for (std::string line; std::getline(f, line);) {
    if (line.rfind(key, 0) == 0) return line.substr(line.find_first_not_of(" \t", std::strlen(key)));
  }
  return "";
}

// Every thread of `pid`: its Cpus_allowed_list.
std::vector<std::string> allowed_lists(pid_t pid) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec))
    out.push_back(status_field(pid, e.path().filename().string(), "Cpus_allowed_list:"));
  return out;
}

// Live (not zombie) children of `pid`.
std::vector<pid_t> children(pid_t pid) {
  std::vector<pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string stat = slurp(e.path() / "stat");
    std::size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    char state = 0;
    int ppid = 0;
    if (std::sscanf(stat.c_str() + close + 1, " %c %d", &state, &ppid) == 2 && ppid == pid && state != 'Z')
      out.push_back(static_cast<pid_t>(std::stoi(name)));
  }
  return out;
}

bool alive(pid_t pid) {
  std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
  std::size_t close = stat.rfind(')');
  if (close == std::string::npos) return false;
  return stat[close + 2] != 'Z';
}

std::string memfd_links(pid_t pid, const std::string& needle) {
  std::string out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    std::string target = fs::read_symlink(e.path(), ec).string();
    if (target.find(needle) != std::string::npos) out += target + " ";
  }
  return out;
}

class Lifecycle : public Daemon {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (cgroups, namespaces)";
    Daemon::SetUp();
    a = "lt-a-" + std::to_string(::getpid());
    b = "lt-b-" + std::to_string(::getpid());
    kernel = std::string(MK_BIN_DIR) + "/mk-kernel";
  }
  void TearDown() override {
    if (::geteuid() != 0) return;
    Daemon::TearDown();  // kills and reaps the daemon and every instance
    for (const char* h : {"cpuset", "memory"})
      for (const auto& n : {a, b}) ::rmdir(("/sys/fs/cgroup/" + std::string(h) + "/mkernel/" + n).c_str());
    // The shared parent too when nothing else lives there (mkerneld removes
    // it with its last instance; a test that ended with instances running
    // must not leave CPUs fenced off by its exclusive cpuset).
    for (const char* h : {"cpuset", "memory"}) ::rmdir(("/sys/fs/cgroup/" + std::string(h) + "/mkernel").c_str());
  }
  json::object run_json(const std::string& args) {
    CliRun r = run(args + " --json");
    EXPECT_EQ(r.code, 0) << args << ": " << r.err;
    boost::system::error_code ec;
    json::value v = json::parse(r.out, ec);
    return !ec && v.is_object() ? v.as_object() : json::object{};
  }
  json::object instance(const std::string& name) {
    json::object doc = run_json("show " + name);
    return doc.contains("instance") ? doc.at("instance").as_object() : json::object{};
  }
  std::string a, b, kernel;
};

TEST_F(Lifecycle, TwoInstancesRunPingSurviveTheDaemonFailAloneAndLeaveNothing) {
  // Pool: both CPUs (the host shares; init warns).
  CliRun init = run("init --cpus 0-1 --memory 256M");
  ASSERT_EQ(init.code, 0) << init.err;
  EXPECT_NE((init.out + init.err).find("the host keeps none of its own"), std::string::npos) << init.out;
  ASSERT_EQ(run("create " + a + " --cpus 0 --memory 32M").code, 0);
  ASSERT_EQ(run("create " + b + " --cpus 1 --memory 32M").code, 0);

  // Refusals before anything runs.
  CliRun none = run("start " + a);
  EXPECT_EQ(none.code, 1);
  EXPECT_NE(none.err.find("no image loaded"), std::string::npos) << none.err;
  CliRun notexec = run("load " + a + " --kernel /etc/hostname");
  EXPECT_EQ(notexec.code, 1);
  EXPECT_NE(notexec.err.find("not a kernel image"), std::string::npos) << notexec.err;
  EXPECT_EQ(instance(a).at("state").as_string(), "empty");  // nothing changed
  CliRun notrun = run("ping " + a);
  EXPECT_EQ(notrun.code, 1);
  EXPECT_NE(notrun.err.find("not running"), std::string::npos) << notrun.err;

  // An image that exits before READY: start fails, nothing is left running.
  ASSERT_EQ(run("load " + a + " --kernel /bin/true").code, 0);
  CliRun early = run("start " + a + " --timeout 3000");
  EXPECT_EQ(early.code, 1);
  EXPECT_NE(early.err.find("before READY"), std::string::npos) << early.err;
  EXPECT_EQ(instance(a).at("state").as_string(), "loaded");

  // Load and start both.
  json::object la = run_json("load " + a + " --kernel " + kernel + " --init sleep 300");
  EXPECT_EQ(la.at("instance").as_object().at("image").as_object().at("sha256").as_string().size(), 64u);
  ASSERT_EQ(run("load " + b + " --kernel " + kernel).code, 0);
  json::object sa = run_json("start " + a);
  json::object sb = run_json("start " + b);
  ASSERT_TRUE(sa.contains("pid") && sb.contains("pid"));
  const pid_t pa = static_cast<pid_t>(sa.at("pid").as_int64());
  const pid_t pb = static_cast<pid_t>(sb.at("pid").as_int64());
  EXPECT_EQ(run("start " + a).code, 1);                        // already running
  EXPECT_EQ(run("load " + a + " --kernel " + kernel).code, 1);  // running: EBUSY
  EXPECT_EQ(run("delete " + a).code, 1);                        // running: EBUSY

  // Every thread of each instance, and of its tenants, on its own CPU only.
  for (const auto& l : allowed_lists(pa)) EXPECT_EQ(l, "0");
  for (const auto& l : allowed_lists(pb)) EXPECT_EQ(l, "1");
  std::vector<pid_t> tenants;
  for (int i = 0; i < 100 && (tenants = children(pa)).empty(); ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(tenants.size(), 1u) << "the init tenant of " << a;
  for (const auto& l : allowed_lists(tenants[0])) EXPECT_EQ(l, "0");
  const std::string pidns = fs::read_symlink("/proc/" + std::to_string(pa) + "/ns/pid").string();
  EXPECT_NE(pidns, fs::read_symlink("/proc/self/ns/pid").string());

  // Guarantees are listed per instance.
  json::object ia = instance(a);
  ASSERT_TRUE(ia.contains("runtime"));
  std::string guarantees = json::serialize(ia.at("runtime").as_object().at("guarantees"));
  EXPECT_NE(guarantees.find("affinity: cpus 0"), std::string::npos) << guarantees;
  EXPECT_NE(guarantees.find("pidns: yes"), std::string::npos) << guarantees;

  // Pings: host -> instance, and both ways between the instances.
  json::object ph = run_json("ping " + a + " --count 5");
  EXPECT_EQ(ph.at("done").as_int64(), 5);
  json::object pab = run_json("ping " + b + " --from " + a + " --count 20");
  EXPECT_EQ(pab.at("done").as_int64(), 20);
  EXPECT_GT(pab.at("p50_us").as_double(), 0.0);
  json::object pba = run_json("ping " + a + " --from " + b + " --count 20");
  EXPECT_EQ(pba.at("done").as_int64(), 20);
  CliRun self = run("ping " + a + " --from " + a);
  EXPECT_EQ(self.code, 1);

  // Console and top.
  json::object con = run_json("console " + a);
  EXPECT_NE(std::string(con.at("text").as_string()).find("mk-kernel: instance"), std::string::npos);
  json::object top = run_json("top --interval 100");
  ASSERT_EQ(top.at("instances").as_array().size(), 2u);
  EXPECT_EQ(top.at("instances").as_array()[0].as_object().at("state").as_string(), "active");

  // SIGKILL the daemon: the instances keep running; the next mkctl call
  // starts a daemon that re-adopts them, active with the same pids.
  pid_t d1 = daemon_pid();
  ASSERT_GT(d1, 0);
  ASSERT_EQ(::kill(d1, SIGKILL), 0);
  (void)exit_code(d1);
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(alive(pa));
  EXPECT_TRUE(alive(pb));
  EXPECT_TRUE(alive(tenants[0]));
  json::object after = run_json("show");
  EXPECT_NE(daemon_pid(), d1);
  for (const auto& v : after.at("instances").as_array()) {
    const auto& o = v.as_object();
    EXPECT_EQ(o.at("state").as_string(), "active") << json::serialize(o);
    const pid_t want = o.at("name").as_string() == a ? pa : pb;
    EXPECT_EQ(o.at("runtime").as_object().at("pid").as_int64(), want);
  }
  EXPECT_EQ(run_json("ping " + a + " --count 3").at("done").as_int64(), 3);          // host channel taken over
  EXPECT_EQ(run_json("ping " + b + " --from " + a).at("done").as_int64(), 10);      // peers untouched
  EXPECT_NE(std::string(run_json("console " + a).at("text").as_string()).find("re-adopted"), std::string::npos);

  // SIGKILL one image: failed within a second, the other still answers.
  ASSERT_EQ(::kill(pa, SIGKILL), 0);
  const auto t0 = std::chrono::steady_clock::now();
  std::string state;
  while (std::chrono::steady_clock::now() - t0 < 3s) {
    state = std::string(instance(a).at("state").as_string());
    if (state == "failed") break;
    std::this_thread::sleep_for(20ms);
  }
  const auto seen = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(state, "failed");
  EXPECT_LT(seen, 1s) << "failure noticed after " << std::chrono::duration<double>(seen).count() << " s";
  EXPECT_NE(std::string(instance(a).at("last_exit").as_string()).find("exited"), std::string::npos);
  EXPECT_EQ(run_json("ping " + b + " --count 3").at("done").as_int64(), 3);
  // The host closed the dead image's side of its channel to b: b's image
  // saw its peer go down (and says so on its console).
  std::string bcon;
  for (int i = 0; i < 100; ++i) {
    bcon = std::string(run_json("console " + b).at("text").as_string());
    if (bcon.find("' down: ") != std::string::npos) break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_NE(bcon.find("peer 1 '" + a + "' down: "), std::string::npos) << bcon;
  CliRun from_dead = run("ping " + b + " --from " + a);
  EXPECT_EQ(from_dead.code, 1);
  EXPECT_NE(from_dead.err.find("not running"), std::string::npos) << from_dead.err;

  // Stop + delete everything: nothing of either instance is left.
  CliRun stop = run("stop " + b);
  ASSERT_EQ(stop.code, 0) << stop.err;
  EXPECT_NE(stop.out.find("shut down over IPI"), std::string::npos) << stop.out;
  EXPECT_EQ(run("stop " + b).code, 1);  // not running any more
  ASSERT_EQ(run("delete " + a).code, 0);
  ASSERT_EQ(run("delete " + b).code, 0);
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(alive(pa));
  EXPECT_FALSE(alive(pb));
  EXPECT_FALSE(alive(tenants[0]));
  for (const char* h : {"cpuset", "memory"})
    for (const auto& n : {a, b}) EXPECT_FALSE(fs::exists("/sys/fs/cgroup/" + std::string(h) + "/mkernel/" + n)) << h << " " << n;
  EXPECT_FALSE(fs::exists(rt / "console" / (a + ".log")));
  EXPECT_FALSE(fs::exists(rt / "console" / (b + ".log")));
  EXPECT_EQ(memfd_links(daemon_pid(), "memfd:mk-"), "");
  // No process is left in the first instance's PID namespace.
  for (const auto& e : fs::directory_iterator("/proc")) {
    std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::error_code ec;
    if (fs::read_symlink(e.path() / "ns/pid", ec).string() == pidns && alive(std::stoi(name)))
      ADD_FAILURE() << "pid " << name << " is still in " << a << "'s pid namespace";
  }
}

TEST_F(Lifecycle, StopForceKillsAndTheInstanceCanStartAgain) {
  ASSERT_EQ(run("init --cpus 0-1 --memory 256M").code, 0);
  ASSERT_EQ(run("create " + a + " --cpus 1 --memory 16M").code, 0);
  CliRun baduser = run("load " + a + " --kernel " + kernel + " --user no-such-user-x");
  EXPECT_EQ(baduser.code, 2);
  EXPECT_NE(baduser.err.find("no user named 'no-such-user-x'"), std::string::npos) << baduser.err;
  // The image and its tenants run as the given uid:gid.
  ASSERT_EQ(run("load " + a + " --kernel " + kernel + " --user 65534:65534 --init sleep 300").code, 0);
  json::object s1 = run_json("start " + a);
  ASSERT_TRUE(s1.contains("pid"));
  const pid_t p1 = static_cast<pid_t>(s1.at("pid").as_int64());
  EXPECT_EQ(status_field(p1, std::to_string(p1), "Uid:"), "65534\t65534\t65534\t65534");
  EXPECT_EQ(status_field(p1, std::to_string(p1), "Gid:"), "65534\t65534\t65534\t65534");
  std::vector<pid_t> kids;
  for (int i = 0; i < 100 && (kids = children(p1)).empty(); ++i) std::this_thread::sleep_for(10ms);
  ASSERT_FALSE(kids.empty());
  EXPECT_EQ(status_field(kids[0], std::to_string(kids[0]), "Uid:"), "65534\t65534\t65534\t65534");
  CliRun stop = run("stop " + a + " --force");
  ASSERT_EQ(stop.code, 0) << stop.err;
  EXPECT_NE(stop.out.find("killed (--force)"), std::string::npos) << stop.out;
  EXPECT_EQ(instance(a).at("state").as_string(), "loaded");
  json::object s2 = run_json("start " + a);  // the same instance boots again
  ASSERT_TRUE(s2.contains("pid"));
  EXPECT_NE(s2.at("pid").as_int64(), s1.at("pid").as_int64());
  CliRun graceful = run("stop " + a + " --grace 100");
  ASSERT_EQ(graceful.code, 0) << graceful.err;
  EXPECT_EQ(instance(a).at("state").as_string(), "loaded");
  EXPECT_NE(std::string(instance(a).at("last_exit").as_string()).find("shut down over IPI"), std::string::npos);
  ASSERT_EQ(run("delete " + a).code, 0);
}

TEST_F(Lifecycle, ChangedImageIsRefusedAtStart) {
  ASSERT_EQ(run("init --cpus 0-1 --memory 256M").code, 0);
  ASSERT_EQ(run("create " + a + " --cpus 1 --memory 16M").code, 0);
  fs::path copy = dir / "mk-kernel";
  fs::copy_file(kernel, copy);
  ASSERT_EQ(run("load " + a + " --kernel " + copy.string()).code, 0);
  { std::ofstream(copy, std::ios::app) << "tampered"; }
  CliRun r = run("start " + a);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("reload"), std::string::npos) << r.err;
  EXPECT_EQ(instance(a).at("state").as_string(), "loaded");
}

TEST_F(Lifecycle, LifecycleVerbsNeedTheLiveMachine) {
  CliRun r = run("start x --topology " + std::string(MK_TEST_DATA) + "/topologies/Intel-RaptorLake-Corei7-1370P.xml");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--topology only plans"), std::string::npos) << r.err;
}

}  // namespace
