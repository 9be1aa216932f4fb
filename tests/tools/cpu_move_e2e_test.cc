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
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <map>
#include <thread>

#include "daemon_fixture.h"

namespace {

using namespace std::chrono_literals;

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string status_field(const fs::path& status, const std::string& key) {
  std::ifstream f(status);
  for (std::string line; std::getline(f, line);)
    if (line.rfind(key + ":", 0) == 0) return line.substr(line.find_first_not_of(" \t", key.size() + 1));
  return "";
}

// One RESP round trip on a connected socket ("+OK", "$value", ...).
std::string resp(int fd, const std::vector<std::string>& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  if (::send(fd, out.data(), out.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(out.size())) return "<send>";
  std::string in;
  char buf[512];
  for (;;) {
    const std::size_t e = in.find("\r\n");
    if (e != std::string::npos) {
      if (in[0] != '$') return in.substr(0, e);
      const long n = std::atol(in.c_str() + 1);
      if (n < 0) return "$nil";
      if (in.size() >= e + 2 + static_cast<std::size_t>(n) + 2) return "$" + in.substr(e + 2, static_cast<std::size_t>(n));
    }
    const ssize_t k = ::recv(fd, buf, sizeof buf, 0);
    if (k <= 0) return "<eof>";
    in.append(buf, static_cast<std::size_t>(k));
  }
}

class CpuMove : public Daemon {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (cgroups, namespaces)";
    if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs CPUs 0 and 1";
    Daemon::SetUp();
    name = "cm-" + std::to_string(::getpid());
    kernel = std::string(MK_BIN_DIR) + "/mk-kernel";
  }
  void TearDown() override {
    if (::geteuid() != 0 || std::thread::hardware_concurrency() < 2) return;
    if (client >= 0) ::close(client);
    Daemon::TearDown();
    for (const std::string& n : {name, name + "-b"}) {
      for (const char* h : {"cpuset", "memory"}) ::rmdir(("/sys/fs/cgroup/" + std::string(h) + "/mkernel/" + n).c_str());
    }
    for (const char* h : {"cpuset", "memory"}) ::rmdir(("/sys/fs/cgroup/" + std::string(h) + "/mkernel").c_str());
  }
  json::object run_json(const std::string& args, int want = 0) {
    CliRun r = run(args + " --json");
    EXPECT_EQ(r.code, want) << args << ": " << r.err << r.out;
    boost::system::error_code ec;
    json::value v = json::parse(r.out, ec);
    return !ec && v.is_object() ? v.as_object() : json::object{};
  }
  std::string cpus_of(const std::string& n) {
    json::object doc = run_json("show " + n);
    if (!doc.contains("instance")) return "?";
    return std::string(doc.at("instance").as_object().at("cpus").as_string());
  }
  fs::path cgroup(const std::string& n) { return fs::path("/sys/fs/cgroup/cpuset/mkernel") / n; }
  // Every thread of the instance's cgroup: tid -> {comm, Cpus_allowed_list}.
  std::map<pid_t, std::pair<std::string, std::string>> threads() {
    std::map<pid_t, std::pair<std::string, std::string>> out;
    std::ifstream f(cgroup(name) / "tasks");
    for (pid_t t; f >> t;) {
      const fs::path task = fs::path("/proc") / std::to_string(t);
      const std::string allowed = status_field(task / "status", "Cpus_allowed_list");
      if (allowed.empty()) continue;  // exited meanwhile
      out[t] = {trim(slurp(task / "comm")), allowed};
    }
    return out;
  }
  // The instance runs on `cpus`: its cpuset, one loop per CPU pinned there,
  // every other thread (image, kv service, tenants) allowed exactly `cpus`
  // (the kv thread: one of them).
  void expect_on(const std::string& cpus, const std::vector<uint32_t>& loops, const std::string& where) {
    EXPECT_EQ(trim(slurp(cgroup(name) / "cpuset.cpus")), cpus) << where;
    std::vector<uint32_t> seen;
    int tenants = 0;
    for (const auto& [tid, t] : threads()) {
      const auto& [comm, allowed] = t;
      if (comm.rfind("mk-cpu", 0) == 0) {
        seen.push_back(static_cast<uint32_t>(std::stoul(comm.substr(6))));
        EXPECT_EQ(allowed, comm.substr(6)) << where << ": loop thread " << tid << " not pinned to its CPU";
      } else if (comm == "mk-kv") {
        EXPECT_NE(cpus.find(allowed), std::string::npos) << where << ": kv thread on " << allowed;
      } else {
        EXPECT_EQ(allowed, cpus) << where << ": thread " << tid << " (" << comm << ") does not follow";
        tenants += comm == "sleep";
      }
    }
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(seen, loops) << where << ": per-CPU loops";
    EXPECT_EQ(tenants, 2) << where << ": both sleep tenants (children of the sh tenant) in the cgroup";
  }
  // KV instance on CPUs 0-1 with a tenant that has children, started, a
  // client connected with 20 keys set.
  void start_kv(const std::string& cmdline = "--services=kv") {
    port = free_port();
    ASSERT_NE(port, 0);
    ASSERT_EQ(run("init --cpus 0-1 --memory 256M").code, 0);
    CliRun c = run("create " + name + " --cpus 0-1 --memory 64M --device listen:127.0.0.1:" + std::to_string(port));
    ASSERT_EQ(c.code, 0) << c.err;
    CliRun l = run("load " + name + " --kernel " + kernel + " --cmdline '" + cmdline +
                   "' --init 'sh -c \"sleep 300 & sleep 300 & wait\"'");
    ASSERT_EQ(l.code, 0) << l.err;
    CliRun s = run("start " + name);
    ASSERT_EQ(s.code, 0) << s.err;
    for (int i = 0; i < 100 && client < 0; ++i) {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(port);
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
        client = fd;
        timeval tv{10, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      } else {
        ::close(fd);
        std::this_thread::sleep_for(20ms);
      }
    }
    ASSERT_GE(client, 0);
    for (int k = 0; k < 20; ++k) ASSERT_EQ(resp(client, {"SET", "k" + std::to_string(k), "v" + std::to_string(k)}), "+OK");
    // The tenants are up once both sleeps are in the cgroup.
    for (int i = 0; i < 100; ++i) {
      int n = 0;
      for (const auto& [tid, t] : threads()) n += t.first == "sleep";
      if (n == 2) break;
      std::this_thread::sleep_for(20ms);
    }
  }
  void expect_keys(const std::string& where) {
    for (int k = 0; k < 20; ++k)
      ASSERT_EQ(resp(client, {"GET", "k" + std::to_string(k)}), "$v" + std::to_string(k)) << where;
  }
  std::string name, kernel;
  uint16_t port = 0;
  int client = -1;
};

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
