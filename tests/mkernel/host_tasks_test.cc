// Tests for mkernel/host_tasks.h: which tasks of a fake /proc are moved off
// an instance's CPUs (host processes and threads, unbound kernel threads)
// and which are left (per-CPU kernel threads, an instance's cgroup or pid,
// tasks pinned to instance CPUs), with a faked sched_setaffinity that
// writes the fake status file; and giving the affinities back.
#include "mkernel/host_tasks.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace fs = std::filesystem;

namespace mk {
namespace {

class FakeProc {
 public:
  explicit FakeProc(const std::string& name) {
    dir_ = fs::path(::testing::TempDir()) / ("mk_tasks_" + std::to_string(::getpid()) + "_" + name);
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "proc");
  }
  ~FakeProc() { fs::remove_all(dir_); }
  SysRoot root() const { return SysRoot(dir_.string()); }
  // One thread: /proc/PID/task/TID.
  void task(pid_t pid, pid_t tid, const std::string& comm, uint64_t flags, const std::string& allowed,
            const std::string& cgroup = "5:cpuset:/\n0::/system.slice\n", uint64_t start = 1000) const {
    const std::string d = "/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid);
    write(d + "/stat", std::to_string(tid) + " (" + comm + ") S 1 1 1 0 -1 " + std::to_string(flags) +
                           " 0 0 0 0 0 0 0 0 20 0 1 0 " + std::to_string(start) + " 0 0\n");
    write(d + "/status", "Name:\t" + comm + "\nCpus_allowed:\tf\nCpus_allowed_list:\t" + allowed + "\n");
    write(d + "/cgroup", cgroup);
  }
  void write(const std::string& abs, const std::string& content) const {
    fs::path p = dir_ / abs.substr(1);
    fs::create_directories(p.parent_path());
    std::ofstream(p) << content;
  }
  std::string allowed(pid_t pid, pid_t tid) const {
    std::ifstream in(dir_ / ("proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/status"));
    for (std::string line; std::getline(in, line);)
      if (line.rfind("Cpus_allowed_list:\t", 0) == 0) return line.substr(19);
    return "?";
  }

 private:
  fs::path dir_;
};

constexpr uint64_t kUser = 0x400100;
constexpr uint64_t kKthread = 0x00208040;           // PF_KTHREAD | ...
constexpr uint64_t kPerCpuKthread = 0x04208040;     // + PF_NO_SETAFFINITY

// A faked sched_setaffinity: records calls; kernel threads get EINVAL, tid
// 400 "exited" (ESRCH), others succeed and the fake status follows.
struct FakeSet {
  const FakeProc* p;
  std::map<pid_t, pid_t> leader;  // tid -> pid
  std::vector<std::pair<pid_t, std::string>> calls;
  int operator()(pid_t tid, const CpuSet& cpus) {
    calls.emplace_back(tid, cpus.to_string());
    if (tid == 2) return EINVAL;
    if (tid == 400) return ESRCH;
    const pid_t pid = leader.count(tid) ? leader[tid] : tid;
    p->write("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/status",
             "Cpus_allowed_list:\t" + cpus.to_string() + "\n");
    return 0;
  }
};

void make_tasks(const FakeProc& p) {
  p.task(1, 1, "systemd", kUser, "0-3");
  p.task(2, 2, "kthreadd", kKthread, "0-3");
  p.task(20, 20, "ksoftirqd/1", kPerCpuKthread, "1");
  p.task(21, 21, "kworker/1:0", kKthread, "1");  // bound to one CPU
  p.task(100, 100, "mk-kernel", kUser, "1", "5:cpuset:/mkernel/db\n");
  p.task(110, 110, "tenant", kUser, "0-3", "0::/mkernel/db/tenants\n");
  p.task(200, 200, "app", kUser, "0-3");
  p.task(200, 201, "app worker", kUser, "1");  // pinned to cpu 1 by its owner
  p.task(200, 202, "app io", kUser, "1-3");
  p.task(300, 300, "sshd", kUser, "2-3");
  p.task(400, 400, "short-lived", kUser, "0-3");
  p.task(500, 500, "other-inst", kUser, "0-3");  // an instance without a cgroup
}

TEST(HostTasks, EvictsMovableAndLeavesTheRest) {
  FakeProc p("evict");
  make_tasks(p);
  FakeSet fake{&p, {{201, 200}, {202, 200}}, {}};
  EvictOptions o;
  o.instance_cpus = CpuSet::of({1});
  o.reserved = CpuSet::of({1, 2});
  o.instance_pids = {500};
  o.set_affinity = std::ref(fake);
  auto r = evict_host_tasks(p.root(), o);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->scanned, 12u);
  // On cpu 1 and not an instance's: systemd, kthreadd, app, app io
  // (short-lived exited meanwhile).
  EXPECT_EQ(r->on_cpus, 4u);
  EXPECT_EQ(r->per_cpu_kthreads, 2u);
  EXPECT_EQ(r->confined, 1u);  // app worker
  ASSERT_EQ(r->moved.size(), 3u);
  EXPECT_EQ(r->moved[0].tid, 1);
  EXPECT_EQ(r->moved[0].original.to_string(), "0-3");
  EXPECT_EQ(r->moved[0].now.to_string(), "0,3");  // off every instance's cpus
  EXPECT_EQ(r->moved[2].tid, 202);
  EXPECT_EQ(r->moved[2].now.to_string(), "3");
  ASSERT_EQ(r->failed.size(), 1u);
  EXPECT_EQ(r->failed[0].first, 2);
  EXPECT_EQ(r->failed[0].second, "kthreadd: Invalid argument");
  EXPECT_EQ(p.allowed(1, 1), "0,3");
  EXPECT_EQ(p.allowed(200, 201), "1");
  EXPECT_EQ(p.allowed(300, 300), "2-3");
  Guarantee g = r->guarantee();
  EXPECT_EQ(g.name, "host tasks");
  EXPECT_FALSE(g.in_force);
  EXPECT_EQ(g.detail, "3 of 4 host tasks moved off cpus 1 (12 scanned; 2 per-cpu kernel threads left; "
                      "1 pinned to instance cpus left); 1 could not move: 2 (kthreadd: Invalid argument)");
}

TEST(HostTasks, RestoredWhenTheInstanceStops) {
  FakeProc p("restore");
  make_tasks(p);
  FakeSet fake{&p, {{201, 200}, {202, 200}}, {}};
  EvictOptions o;
  o.instance_cpus = CpuSet::of({1});
  o.reserved = CpuSet::of({1, 2});
  o.instance_pids = {500};
  o.set_affinity = std::ref(fake);
  auto r = evict_host_tasks(p.root(), o);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->moved.size(), 3u);
  // systemd was re-pinned by someone since; app (200) restarted with the
  // same pid (another start time): both left alone.
  p.write("/proc/1/task/1/status", "Cpus_allowed_list:\t0\n");
  p.task(200, 200, "app", kUser, "0,3", "0::/\n", 2000);
  fake.calls.clear();
  // The instance on cpu 2 still runs: cpu 2 stays off.
  RestoreReport back = restore_host_tasks(p.root(), r->moved, CpuSet::of({2}), std::ref(fake));
  EXPECT_EQ(back.restored, 1u);
  EXPECT_EQ(back.skipped, 2u);
  ASSERT_EQ(fake.calls.size(), 1u);
  EXPECT_EQ(fake.calls[0], (std::pair<pid_t, std::string>{202, "1,3"}));
  EXPECT_EQ(p.allowed(200, 202), "1,3");
  EXPECT_EQ(p.allowed(1, 1), "0");
}

TEST(HostTasks, NotRequestedAndNoProc) {
  Guarantee g = host_tasks_not_requested();
  EXPECT_FALSE(g.in_force);
  EXPECT_NE(g.detail.find("--evict-host-tasks"), std::string::npos);
  EvictOptions o;
  o.instance_cpus = CpuSet::of({1});
  auto r = evict_host_tasks(SysRoot("/nonexistent-mk-root"), o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ENOENT);
}

// The live /proc, with a setaffinity that only records: the per-CPU kernel
// threads of the last CPU are recognised and this test's own process is
// among the movable tasks (it runs on every CPU).
TEST(HostTasks, LiveProcDryRun) {
  const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
  if (online < 2) GTEST_SKIP() << "needs 2 CPUs";
  std::vector<pid_t> asked;
  EvictOptions o;
  o.instance_cpus = CpuSet::of({static_cast<uint32_t>(online - 1)});
  o.reserved = o.instance_cpus;
  o.set_affinity = [&](pid_t tid, const CpuSet& cpus) {
    EXPECT_FALSE(cpus.contains(static_cast<uint32_t>(online - 1)));
    asked.push_back(tid);
    return 0;
  };
  auto r = evict_host_tasks(SysRoot("/"), o);
  ASSERT_TRUE(r) << r.error().to_string();
  std::printf("live dry run: %s\n", to_line(r->guarantee()).c_str());
  EXPECT_GT(r->scanned, 10u);
  EXPECT_GE(r->per_cpu_kthreads, 1u);  // ksoftirqd/N, migration/N, cpuhp/N
  cpu_set_t mine;
  ASSERT_EQ(::sched_getaffinity(0, sizeof mine, &mine), 0);
  if (CPU_ISSET(online - 1, &mine) && CPU_COUNT(&mine) > 1) {
    EXPECT_NE(std::find(asked.begin(), asked.end(), ::gettid()), asked.end());
  }
}

}  // namespace
}  // namespace mk
