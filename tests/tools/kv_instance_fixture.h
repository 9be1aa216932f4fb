// The fixture of the end-to-end tests that change a running KV instance
// (CPU moves, staged updates): a KV instance on CPUs 0-1 with a tenant that
// has children, a client connected with keys set, and the checks of where
// every thread of the instance may run. Needs root and CPUs 0 and 1.
#pragma once

#include <algorithm>
#include <chrono>
#include <thread>

#include "daemon_fixture.h"
#include "instance_probe.h"

namespace {

using namespace std::chrono_literals;

class KvInstance : public Daemon {
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
  std::map<pid_t, std::pair<std::string, std::string>> threads() { return cgroup_threads(cgroup(name)); }
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
  void start_kv(const std::string& cmdline = "--services=kv", const std::string& cpus = "0-1") {
    port = free_port();
    ASSERT_NE(port, 0);
    ASSERT_EQ(run("init --cpus 0-1 --memory 256M").code, 0);
    CliRun c = run("create " + name + " --cpus " + cpus + " --memory 64M --device listen:127.0.0.1:" +
                   std::to_string(port));
    ASSERT_EQ(c.code, 0) << c.err;
    CliRun l = run("load " + name + " --kernel " + kernel + " --cmdline '" + cmdline +
                   "' --init 'sh -c \"sleep 300 & sleep 300 & wait\"'");
    ASSERT_EQ(l.code, 0) << l.err;
    CliRun s = run("start " + name);
    ASSERT_EQ(s.code, 0) << s.err;
    client = connect_kv(port);
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
  pid_t image_pid() {
    json::object doc = run_json("show " + name);
    if (!doc.contains("instance")) return 0;
    const json::object& i = doc.at("instance").as_object();
    return i.contains("runtime") ? static_cast<pid_t>(i.at("runtime").as_object().at("pid").as_int64()) : 0;
  }
  // The tenant's two children (comm "sleep"), by pid.
  std::vector<pid_t> sleepers() {
    std::vector<pid_t> out;
    for (const auto& [tid, t] : threads())
      if (t.first == "sleep") out.push_back(tid);
    return out;
  }
  void expect_keys(const std::string& where) {
    for (int k = 0; k < 20; ++k)
      ASSERT_EQ(resp(client, {"GET", "k" + std::to_string(k)}), "$v" + std::to_string(k)) << where;
  }
  std::string name, kernel;
  uint16_t port = 0;
  int client = -1;
};

}  // namespace
