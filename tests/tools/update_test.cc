// Live update end to end through mkctl and mkerneld (issue #5): a KV instance
// with a tenant is updated in place while a client stays connected; every key
// reads back on the same connection, the tenant keeps its pid, the new image
// runs on the same CPUs. Each fault (new image exits at boot, refuses the
// blob, hangs, gets a corrupt package; the old image dies in prepare; the
// daemon is killed between freeze and ready) ends with the instance running
// and every key present. A real Redis client (redis-benchmark) sees no error
// while the instance is updated under it. Needs root; SERIAL (live cgroups,
// both CPUs).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <chrono>
#include <thread>

#include "daemon_fixture.h"

namespace {

using namespace std::chrono_literals;

// A blocking RESP client: one command, one reply in a flat text form
// ("+OK", "-ERR ...", ":3", "$value", "$nil").
class Client {
 public:
  explicit Client(uint16_t port) {
    for (int i = 0; i < 100 && fd_ < 0; ++i) {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(port);
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
        fd_ = fd;
        timeval tv{10, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      } else {
        ::close(fd);
        std::this_thread::sleep_for(20ms);
      }
    }
  }
  ~Client() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool connected() const { return fd_ >= 0; }
  std::string cmd(std::initializer_list<std::string> args) {
    std::string out = "*" + std::to_string(args.size()) + "\r\n";
    for (const auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
    if (::send(fd_, out.data(), out.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(out.size())) return "<send failed>";
    return reply();
  }

 private:
  bool fill(std::size_t n) {
    char tmp[4096];
    while (buf_.size() < n) {
      ssize_t k = ::recv(fd_, tmp, sizeof tmp, 0);
      if (k <= 0) return false;
      buf_.append(tmp, static_cast<std::size_t>(k));
    }
    return true;
  }
  std::string line() {
    while (buf_.find("\r\n") == std::string::npos) {
      std::size_t want = buf_.size() + 1;
      if (!fill(want)) return "<eof>";
    }
    std::size_t e = buf_.find("\r\n");
    std::string l = buf_.substr(0, e);
    buf_.erase(0, e + 2);
    return l;
  }
  std::string reply() {
    std::string l = line();
    if (l.empty() || l[0] != '$') return l;
    long n = std::atol(l.c_str() + 1);
    if (n < 0) return "$nil";
    if (!fill(static_cast<std::size_t>(n) + 2)) return "<eof>";
    std::string v = "$" + buf_.substr(0, static_cast<std::size_t>(n));
    buf_.erase(0, static_cast<std::size_t>(n) + 2);
    return v;
  }
  int fd_ = -1;
  std::string buf_;
};

bool alive(pid_t pid) {
  std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
  std::size_t close = stat.rfind(')');
  return close != std::string::npos && stat[close + 2] != 'Z';
}

std::string comm(pid_t pid) {
  std::string c = slurp("/proc/" + std::to_string(pid) + "/comm");
  while (!c.empty() && c.back() == '\n') c.pop_back();
  return c;
}

std::string cpus_allowed(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("Cpus_allowed_list:", 0) == 0) return line.substr(line.find_first_not_of(" \t", 18));
  return "";
}

class Update : public Daemon {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (cgroups, namespaces)";
    Daemon::SetUp();
    name = "up-" + std::to_string(::getpid());
    kernel = std::string(MK_BIN_DIR) + "/mk-kernel";
    port = free_port();
    ASSERT_NE(port, 0);
  }
  void TearDown() override {
    if (::geteuid() != 0) return;
    Daemon::TearDown();
    for (const char* h : {"cpuset", "memory"}) {
      ::rmdir(("/sys/fs/cgroup/" + std::string(h) + "/mkernel/" + name).c_str());
      ::rmdir(("/sys/fs/cgroup/" + std::string(h) + "/mkernel").c_str());  // when nothing else lives there
    }
  }
  json::object run_json(const std::string& args, int want = 0) {
    CliRun r = run(args + " --json");
    EXPECT_EQ(r.code, want) << args << ": " << r.err << r.out;
    boost::system::error_code ec;
    json::value v = json::parse(r.out, ec);
    return !ec && v.is_object() ? v.as_object() : json::object{};
  }
  json::object instance() {
    json::object doc = run_json("show " + name);
    return doc.contains("instance") ? doc.at("instance").as_object() : json::object{};
  }
  pid_t image_pid() {
    json::object i = instance();
    if (!i.contains("runtime")) return 0;
    return static_cast<pid_t>(i.at("runtime").as_object().at("pid").as_int64());
  }
  // The KV instance on CPU 1 with a tenant, started.
  void start_kv(const std::string& init = "sleep 300") {
    ASSERT_EQ(run("init --cpus 0-1 --memory 256M").code, 0);
    CliRun c = run("create " + name + " --cpus 1 --memory 64M --device listen:127.0.0.1:" + std::to_string(port));
    ASSERT_EQ(c.code, 0) << c.err;
    CliRun l = run("load " + name + " --kernel " + kernel + " --cmdline --services=kv" +
                   (init.empty() ? "" : " --init '" + init + "'"));
    ASSERT_EQ(l.code, 0) << l.err;
    CliRun s = run("start " + name);
    ASSERT_EQ(s.code, 0) << s.err;
  }
  // Pids of the instance's cgroup whose comm is `what` (waits up to 2 s
  // for one: a tenant just started may still be the shell that execs it).
  std::vector<pid_t> in_cgroup(const std::string& what) {
    std::vector<pid_t> out;
    for (int i = 0; i < 100 && out.empty(); ++i) {
      if (i) std::this_thread::sleep_for(20ms);
      std::ifstream f("/sys/fs/cgroup/cpuset/mkernel/" + name + "/tasks");
      for (pid_t p; f >> p;)
        if (comm(p) == what) out.push_back(p);
    }
    return out;
  }
  void expect_keys(Client& c, int n, const std::string& where) {
    for (int k = 0; k < n; ++k) ASSERT_EQ(c.cmd({"GET", "k" + std::to_string(k)}), "$v" + std::to_string(k)) << where;
  }
  std::string name, kernel;
  uint16_t port = 0;
};

TEST_F(Update, ClientsKeysAndTenantSurviveUpdatesOnTheSameCpus) {
  start_kv();
  Client c(port);
  ASSERT_TRUE(c.connected());
  for (int k = 0; k < 100; ++k) ASSERT_EQ(c.cmd({"SET", "k" + std::to_string(k), "v" + std::to_string(k)}), "+OK");
  const std::vector<pid_t> tenants = in_cgroup("sleep");
  ASSERT_EQ(tenants.size(), 1u);
  const pid_t first = image_pid();

  // Refusals: no such instance, not running, bad kernel; nothing changes.
  EXPECT_NE(run("update nope").err.find("no such instance"), std::string::npos);
  CliRun bad = run("update " + name + " --kernel /etc/hostname");
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.err.find("not a kernel image"), std::string::npos) << bad.err;
  EXPECT_EQ(image_pid(), first);
  EXPECT_EQ(run("update " + name + " --timeout 0").code, 2);

  // Update 1, human output: phases as they happen, then the blackout.
  CliRun u1 = run("update " + name);
  ASSERT_EQ(u1.code, 0) << u1.err << u1.out;
  for (const char* phase : {"boot", "prepare", "freeze", "transfer", "restore", "finish"})
    EXPECT_NE(u1.out.find(std::string("  ") + phase), std::string::npos) << phase << " missing from:\n" << u1.out;
  EXPECT_NE(u1.out.find("blackout"), std::string::npos) << u1.out;
  const pid_t second = image_pid();
  EXPECT_NE(second, first);
  expect_keys(c, 100, "after update 1, same connection");
  EXPECT_EQ(c.cmd({"SET", "k100", "v100"}), "+OK");
  EXPECT_EQ(in_cgroup("sleep"), tenants);  // the tenant kept its pid
  EXPECT_TRUE(alive(tenants[0]));
  EXPECT_EQ(cpus_allowed(second), "1");
  EXPECT_EQ(cpus_allowed(tenants[0]), "1");
  EXPECT_EQ(instance().at("state").as_string(), "active");

  // Update 2, --json: phase timings and the blackout.
  json::object u2 = run_json("update " + name);
  ASSERT_TRUE(u2.contains("updated")) << json::serialize(u2);
  EXPECT_TRUE(u2.at("updated").as_bool());
  EXPECT_EQ(u2.at("old_pid").as_int64(), second);
  EXPECT_GT(u2.at("blackout_ms").to_number<double>(), 0.0);
  EXPECT_GE(u2.at("phases").as_array().size(), 6u);
  EXPECT_GE(u2.at("fds").as_int64(), 2);  // the listen socket and our connection at least
  EXPECT_GT(u2.at("preserved_bytes").as_int64(), 0);
  const pid_t third = image_pid();
  EXPECT_NE(third, second);
  EXPECT_FALSE(alive(second));  // the second image was not the namespace's init: it exited
  expect_keys(c, 101, "after update 2, same connection");
  EXPECT_EQ(in_cgroup("sleep"), tenants);
  EXPECT_TRUE(fs::is_empty(rt / "update") || !fs::exists(rt / "update"));  // no journal left

  // The tenant is still supervised: stop ends it and leaves nothing.
  CliRun stop = run("stop " + name);
  ASSERT_EQ(stop.code, 0) << stop.err;
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(alive(tenants[0]));
  EXPECT_FALSE(alive(third));
  ASSERT_EQ(run("delete " + name).code, 0);
  EXPECT_FALSE(fs::exists("/sys/fs/cgroup/cpuset/mkernel/" + name));
}

TEST_F(Update, EveryFaultRollsBackWithEveryKeyPresent) {
  start_kv();
  Client c(port);
  ASSERT_TRUE(c.connected());
  for (int k = 0; k < 50; ++k) ASSERT_EQ(c.cmd({"SET", "k" + std::to_string(k), "v" + std::to_string(k)}), "+OK");
  const std::vector<pid_t> tenants = in_cgroup("sleep");
  ASSERT_EQ(tenants.size(), 1u);
  pid_t pid = image_pid();

  const std::vector<std::string> faults = {
      "--cmdline '--services=kv --fault=exit-at-boot'",
      "--cmdline '--services=kv --fault=refuse-handover'",
      "--cmdline '--services=kv --fault=hang-at-handover' --timeout 1",
      "--fault corrupt-package",
  };
  for (const std::string& args : faults) {
    CliRun r = run("update " + name + " " + args);
    EXPECT_EQ(r.code, 1) << args << "\n" << r.out << r.err;
    EXPECT_NE(r.err.find("rolled back"), std::string::npos) << args << ": " << r.err;
    EXPECT_EQ(image_pid(), pid) << args << ": the old image must run on";
    EXPECT_EQ(instance().at("state").as_string(), "active") << args;
    expect_keys(c, 50, args);  // the same connection, served by the unfrozen old image
    EXPECT_EQ(in_cgroup("sleep"), tenants) << args;
  }

  // The daemon dies between freeze and ready: its restart rolls back.
  CliRun dead = run("update " + name + " --fault host-exit-after-freeze");
  EXPECT_EQ(dead.code, 1) << dead.out << dead.err;
  json::object i = instance();  // starts a new daemon, which re-adopts and rolls back
  EXPECT_EQ(i.at("state").as_string(), "active");
  EXPECT_EQ(image_pid(), pid);
  expect_keys(c, 50, "after a daemon killed mid-update");
  EXPECT_FALSE(fs::exists(rt / "update" / (name + ".json")));
  EXPECT_NE(slurp(rt / "mkerneld.log").find("rolled back"), std::string::npos);

  // The old image dies in prepare: the instance comes back with every key
  // (the host holds its memory). Its client connections die with it.
  ASSERT_EQ(run("update " + name + " --cmdline '--services=kv --fault=die-in-prepare'").code, 0);
  pid = image_pid();
  CliRun died = run("update " + name + " --cmdline --services=kv");
  EXPECT_EQ(died.code, 1) << died.out << died.err;
  EXPECT_NE(died.err.find("rolled back"), std::string::npos) << died.err;
  EXPECT_EQ(instance().at("state").as_string(), "active");
  EXPECT_NE(image_pid(), pid);
  Client again(port);
  ASSERT_TRUE(again.connected());
  expect_keys(again, 50, "after the old image died in prepare");
}

TEST_F(Update, RedisBenchmarkSeesNoErrorWhileTheInstanceIsUpdated) {
  if (std::system("command -v redis-benchmark >/dev/null") != 0) GTEST_SKIP() << "redis-benchmark not installed";
  start_kv("");
  Client c(port);
  ASSERT_TRUE(c.connected());
  for (int k = 0; k < 20; ++k) ASSERT_EQ(c.cmd({"SET", "k" + std::to_string(k), "v" + std::to_string(k)}), "+OK");
  const std::string out = (dir / "bench.out").string();
  const std::string cmd = "redis-benchmark -p " + std::to_string(port) +
                          " -t set,get,incr -n 20000 -c 20 -q >" + out + " 2>&1";
  pid_t bench = ::fork();
  if (bench == 0) {
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), nullptr);
    ::_exit(127);
  }
  int updates = 0;
  for (; updates < 5; ++updates) {
    CliRun u = run("update " + name);
    ASSERT_EQ(u.code, 0) << u.err;
  }
  EXPECT_EQ(exit_code(bench), 0);
  const std::string text = slurp(out);
  for (const char* t : {"SET:", "GET:", "INCR:"}) EXPECT_NE(text.find(t), std::string::npos) << text;
  EXPECT_EQ(text.find("rror"), std::string::npos) << text;
  expect_keys(c, 20, "after updates under redis-benchmark");
}

}  // namespace
