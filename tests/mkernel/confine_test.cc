// Tests for mkernel/confine.h: plans, confined spawns (affinity, mempolicy,
// no_new_privs, fd layout, namespaces when root) and child-step failures.
#include "mkernel/confine.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace mk {
namespace {

const Guarantee* find(const Guarantees& g, const std::string& name) {
  for (const auto& x : g)
    if (x.name == name) return &x;
  return nullptr;
}

uint32_t last_allowed_cpu() {
  cpu_set_t s;
  CPU_ZERO(&s);
  sched_getaffinity(0, sizeof s, &s);
  uint32_t last = 0;
  for (uint32_t i = 0; i < CPU_SETSIZE; ++i)
    if (CPU_ISSET(i, &s)) last = i;
  return last;
}

std::string self_link(const char* ns) {
  char buf[128] = {};
  std::string p = std::string("/proc/self/ns/") + ns;
  ssize_t n = ::readlink(p.c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

// Runs `script` under /bin/sh confined by `spec` (+ fd 0 /dev/null, fd 1/2 a
// pipe), returns its output and the spawn result's guarantees.
struct Run {
  std::string out;
  int status = -1;
  Guarantees guarantees;
  uint64_t clone_flags = 0;
};

Result<Run> run_confined(ConfineSpec spec, const std::string& script, const SpawnOptions& opts) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return errno_error("pipe");
  OwnedFd rd(out[0]), wr(out[1]);
  OwnedFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  spec.fds.push_back({devnull.get(), 0});
  spec.fds.push_back({wr.get(), 1});
  spec.fds.push_back({wr.get(), 2});
  MK_TRY_ASSIGN(ConfinePlan plan, make_confine_plan(spec));
  MK_TRY_ASSIGN(SpawnedProcess p, spawn_confined(plan, {"/bin/sh", "-c", script},
                                                 {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, opts));
  wr.reset();
  Run r;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(rd.get(), buf, sizeof buf)) > 0) r.out.append(buf, static_cast<std::size_t>(n));
  ::waitpid(p.pid, &r.status, 0);
  r.guarantees = p.guarantees;
  r.clone_flags = p.clone_flags;
  return r;
}

TEST(ConfinePlan, Validation) {
  ConfineSpec none;
  auto a = make_confine_plan(none);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().code(), EINVAL);

  ConfineSpec dup;
  dup.cpus = CpuSet::of({0});
  dup.fds = {{1, 3}, {2, 3}};
  auto b = make_confine_plan(dup);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code(), EINVAL);
  EXPECT_NE(std::string(b.error().detail()).find("fd 3"), std::string::npos);

  ConfineSpec closed;
  closed.cpus = CpuSet::of({0});
  closed.fds = {{900, 3}};
  auto c = make_confine_plan(closed);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code(), EBADF);

  ConfineSpec host;
  host.cpus = CpuSet::of({0});
  host.hostname = std::string(65, 'h');
  auto d = make_confine_plan(host);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code(), EINVAL);

  ConfineSpec many;
  many.cpus = CpuSet::of({0});
  for (int i = 0; i < static_cast<int>(kMaxPlanFds) + 1; ++i) many.fds.push_back({1, 10 + i});
  auto e = make_confine_plan(many);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code(), E2BIG);

  ConfineSpec node;
  node.cpus = CpuSet::of({0});
  node.nodes = {kMaxPlanNodes};
  auto f = make_confine_plan(node);
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code(), EINVAL);
}

TEST(SpawnConfined, AffinityPolicyFdsAndNamespaces) {
  const uint32_t cpu = last_allowed_cpu();
  OwnedFd boot(::memfd_create("mk-test-boot", MFD_CLOEXEC));
  OwnedFd region(::memfd_create("mk-test-r0", MFD_CLOEXEC));
  // A descriptor the parent leaks without CLOEXEC: the child must not get it.
  OwnedFd leak(::memfd_create("mk-test-leak", 0));
  ASSERT_TRUE(boot && region && leak);

  ConfineSpec spec;
  spec.cpus = CpuSet::of({cpu});
  spec.nodes = {0};
  spec.hostname = "mk-test-host";
  spec.fds = {{boot.get(), 3}, {region.get(), 4}};
  const std::string script =
      "cat /proc/self/status; ls -l /proc/self/fd/; "
      "echo pid=$(readlink /proc/self/ns/pid); echo mnt=$(readlink /proc/self/ns/mnt); "
      "echo uts=$(readlink /proc/self/ns/uts); echo ipc=$(readlink /proc/self/ns/ipc); "
      "echo host=$(cat /proc/sys/kernel/hostname); "
      "echo bind=$(grep -c 'bind:0' /proc/self/numa_maps); echo END";
  auto r = run_confined(spec, script, {});
  ASSERT_TRUE(r) << r.error().to_string();
  const std::string& o = r->out;
  ASSERT_NE(o.find("END"), std::string::npos) << o;
  EXPECT_TRUE(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0);
  EXPECT_NE(o.find("Cpus_allowed_list:\t" + std::to_string(cpu) + "\n"), std::string::npos) << o;
  EXPECT_NE(o.find("NoNewPrivs:\t1\n"), std::string::npos) << o;
  EXPECT_NE(o.find("Mems_allowed_list:\t0\n"), std::string::npos) << o;
  EXPECT_NE(o.find(" 3 -> /memfd:mk-test-boot"), std::string::npos) << o;
  EXPECT_NE(o.find(" 4 -> /memfd:mk-test-r0"), std::string::npos) << o;
  EXPECT_EQ(o.find("mk-test-leak"), std::string::npos) << o;
  EXPECT_EQ(o.find("bind=0\n"), std::string::npos) << "task policy not MPOL_BIND to node 0:\n" << o;

  const Guarantee* aff = find(r->guarantees, "affinity");
  ASSERT_NE(aff, nullptr);
  EXPECT_TRUE(aff->in_force);
  EXPECT_EQ(aff->detail, "cpus " + std::to_string(cpu));
  const Guarantee* pol = find(r->guarantees, "mempolicy");
  ASSERT_NE(pol, nullptr);
  EXPECT_EQ(pol->detail, "bind 0");
  const Guarantee* pidns = find(r->guarantees, "pidns");
  ASSERT_NE(pidns, nullptr);
  if (::geteuid() == 0) {
    EXPECT_TRUE(pidns->in_force) << pidns->detail;
    EXPECT_EQ(o.find("pid=" + self_link("pid") + "\n"), std::string::npos) << o;
    EXPECT_EQ(o.find("mnt=" + self_link("mnt") + "\n"), std::string::npos) << o;
    EXPECT_EQ(o.find("uts=" + self_link("uts") + "\n"), std::string::npos) << o;
    EXPECT_EQ(o.find("ipc=" + self_link("ipc") + "\n"), std::string::npos) << o;
    EXPECT_NE(o.find("host=mk-test-host\n"), std::string::npos) << o;
    // The child is PID 1 of its namespace and sees its own /proc.
    EXPECT_NE(o.find("Pid:\t1\n"), std::string::npos) << o;
    const Guarantee* net = find(r->guarantees, "netns");
    ASSERT_NE(net, nullptr);
    EXPECT_FALSE(net->in_force);
  } else {
    EXPECT_FALSE(pidns->in_force);
    EXPECT_EQ(pidns->detail, "no (not root)");
  }
}

TEST(SpawnConfined, WithoutNamespacesSaysSo) {
  ConfineSpec spec;
  spec.cpus = CpuSet::of({last_allowed_cpu()});
  spec.no_new_privs = false;
  auto r = run_confined(spec, "echo pid=$(readlink /proc/self/ns/pid); grep NoNewPrivs /proc/self/status",
                        {.namespaces = false});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->clone_flags, 0u);
  EXPECT_NE(r->out.find("pid=" + self_link("pid") + "\n"), std::string::npos) << r->out;
  EXPECT_NE(r->out.find("NoNewPrivs:\t0"), std::string::npos) << r->out;
  for (const char* n : {"pidns", "mntns", "utsns", "ipcns", "netns"}) {
    const Guarantee* g = find(r->guarantees, n);
    ASSERT_NE(g, nullptr) << n;
    EXPECT_FALSE(g->in_force);
    EXPECT_EQ(g->detail, "no (not requested)");
  }
  const Guarantee* mp = find(r->guarantees, "mempolicy");
  ASSERT_NE(mp, nullptr);
  EXPECT_FALSE(mp->in_force);
}

TEST(SpawnConfined, NetNamespaceWhenAsked) {
  if (::geteuid() != 0) GTEST_SKIP() << "network namespaces need root";
  ConfineSpec spec;
  spec.cpus = CpuSet::of({last_allowed_cpu()});
  auto r = run_confined(spec, "echo net=$(readlink /proc/self/ns/net)", {.net_namespace = true});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_NE(r->out.find("net=net:["), std::string::npos) << r->out;
  EXPECT_EQ(r->out.find("net=" + self_link("net") + "\n"), std::string::npos) << r->out;
  const Guarantee* g = find(r->guarantees, "netns");
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(g->in_force);
}

TEST(SpawnConfined, DropsToAConfiguredUid) {
  if (::geteuid() != 0) GTEST_SKIP() << "changing uid needs root";
  ConfineSpec spec;
  spec.cpus = CpuSet::of({last_allowed_cpu()});
  spec.uid = 65534;
  spec.gid = 65534;
  auto r = run_confined(spec, "grep -E '^(Uid|Gid|Groups):' /proc/self/status", {});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_NE(r->out.find("Uid:\t65534\t65534\t65534\t65534"), std::string::npos) << r->out;
  EXPECT_NE(r->out.find("Gid:\t65534\t65534\t65534\t65534"), std::string::npos) << r->out;
  // No supplementary groups left (the kernel prints "Groups:\t \n" or "Groups:\t\n").
  EXPECT_TRUE(r->out.find("Groups:\t \n") != std::string::npos ||
              r->out.find("Groups:\t\n") != std::string::npos)
      << r->out;
  const Guarantee* g = find(r->guarantees, "uid");
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(g->in_force);
  EXPECT_EQ(g->detail, "uid 65534 gid 65534");
}

// mkerneld runs Asio threads: the child path must not depend on the parent
// being single-threaded (glibc's setxid broadcast would hang a cloned child).
TEST(SpawnConfined, UidDropFromAMultiThreadedParent) {
  if (::geteuid() != 0) GTEST_SKIP() << "changing uid needs root";
  int hold[2];
  ASSERT_EQ(::pipe2(hold, O_CLOEXEC), 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([fd = hold[0]] {
      char c;
      while (::read(fd, &c, 1) < 0 && errno == EINTR) {
      }
    });
  ConfineSpec spec;
  spec.cpus = CpuSet::of({last_allowed_cpu()});
  spec.uid = 65534;
  spec.gid = 65534;
  auto r = run_confined(spec, "grep -E '^Uid:' /proc/self/status", {});
  ::close(hold[1]);
  for (auto& t : threads) t.join();
  ::close(hold[0]);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_NE(r->out.find("Uid:\t65534\t65534\t65534\t65534"), std::string::npos) << r->out;
}

TEST(SpawnConfined, MissingImageReportsExecveAndErrno) {
  ConfineSpec spec;
  spec.cpus = CpuSet::of({last_allowed_cpu()});
  auto plan = make_confine_plan(spec);
  ASSERT_TRUE(plan);
  auto p = spawn_confined(*plan, {"/nonexistent/mk-image"}, {}, {});
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code(), ENOENT);
  EXPECT_NE(std::string(p.error().detail()).find("step execve"), std::string::npos)
      << p.error().to_string();
  // The failed child was reaped.
  EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1);
}

TEST(SpawnConfined, ChildStepFailuresNameTheStep) {
  {
    ConfineSpec spec;  // only an impossible CPU: sched_setaffinity refuses
    spec.cpus = CpuSet::of({CpuSet::kMaxCpus - 1});
    auto plan = make_confine_plan(spec);
    ASSERT_TRUE(plan);
    auto p = spawn_confined(*plan, {"/bin/true"}, {}, {});
    ASSERT_FALSE(p);
    EXPECT_EQ(p.error().code(), EINVAL);
    EXPECT_NE(std::string(p.error().detail()).find("step sched_setaffinity"), std::string::npos)
        << p.error().to_string();
  }
  {
    ConfineSpec spec;  // a node that does not exist
    spec.cpus = CpuSet::of({last_allowed_cpu()});
    spec.nodes = {kMaxPlanNodes - 1};
    auto plan = make_confine_plan(spec);
    ASSERT_TRUE(plan);
    auto p = spawn_confined(*plan, {"/bin/true"}, {}, {});
    ASSERT_FALSE(p);
    EXPECT_EQ(p.error().code(), EINVAL);
    EXPECT_NE(std::string(p.error().detail()).find("step set_mempolicy"), std::string::npos)
        << p.error().to_string();
  }
  auto empty = spawn_confined(ConfinePlan{}, {}, {}, {});
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code(), EINVAL);
  EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1);
}

TEST(SpawnConfined, PrepareRunsBeforeTheChildAndItsErrorWins) {
  ConfineSpec spec;
  spec.cpus = CpuSet::of({last_allowed_cpu()});
  auto plan = make_confine_plan(spec);
  ASSERT_TRUE(plan);
  // The child is parked at the gate: none of its confinement steps has run
  // while prepare runs, so it still has no_new_privs off (the plan turns it
  // on) — whatever the scheduling.
  std::string seen;
  SpawnOptions opts;
  opts.namespaces = false;
  opts.prepare = [&](pid_t pid) -> Result<void> {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("NoNewPrivs:", 0) == 0) seen = line;
    return ok();
  };
  auto p = spawn_confined(*plan, {"/bin/true"}, {}, opts);
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_EQ(seen, "NoNewPrivs:\t0");
  int st = 0;
  ASSERT_EQ(::waitpid(p->pid, &st, 0), p->pid);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);

  pid_t prepared_pid = -1;
  opts.prepare = [&](pid_t pid) -> Result<void> {
    prepared_pid = pid;
    return MK_FAIL(EBUSY, "cgroup attach failed", "pid %d", static_cast<int>(pid));
  };
  auto f = spawn_confined(*plan, {"/bin/true"}, {}, opts);
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code(), EBUSY);
  EXPECT_STREQ(f.error().what(), "cgroup attach failed");
  EXPECT_GT(prepared_pid, 0);
  EXPECT_EQ(::kill(prepared_pid, 0), -1);  // killed and reaped
  EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1);
}

// The child shares the parent's memory until execve (CLONE_VM on
// x86_64/arm64): the parent must be free to write its own memory (and set
// errno) while the child waits at the gate and confines itself, and neither
// side may see the other's writes afterwards. Repeated, to catch a child
// stack released too early or a child running on the parent's stack.
TEST(SpawnConfined, ParentMemoryAndErrnoAreItsOwnAcrossSpawns) {
  ConfineSpec spec;
  spec.cpus = CpuSet::of({last_allowed_cpu()});
  std::vector<unsigned char> mine(4 << 20, 0);
  for (int i = 0; i < 20; ++i) {
    SpawnOptions opts;
    opts.namespaces = ::geteuid() == 0;
    opts.prepare = [&](pid_t) -> Result<void> {
      for (std::size_t off = 0; off < mine.size(); off += 4096) mine[off] = static_cast<unsigned char>(i + 1);
      errno = 4242;  // a failing libc call in the parent meanwhile
      return ok();
    };
    auto r = run_confined(spec, "echo ok-$((1+1))", opts);
    ASSERT_TRUE(r) << "spawn " << i << ": " << r.error().to_string();
    EXPECT_EQ(r->out, "ok-2\n") << "spawn " << i;
    EXPECT_TRUE(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0) << "spawn " << i;
  }
  for (std::size_t off = 0; off < mine.size(); off += 4096) ASSERT_EQ(mine[off], 20) << off;
  // And a child-side failure still reports the child's own errno, not the
  // parent's (4242 above).
  auto bad = spawn_confined(*make_confine_plan(spec), {"/nonexistent/mk-image"}, {}, {});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ENOENT);
}

TEST(SpawnConfined, PidfdReportsExit) {
  ConfineSpec spec;
  spec.cpus = CpuSet::of({last_allowed_cpu()});
  auto plan = make_confine_plan(spec);
  ASSERT_TRUE(plan);
  auto p = spawn_confined(*plan, {"/bin/sh", "-c", "exit 7"}, {}, {});
  ASSERT_TRUE(p) << p.error().to_string();
  ASSERT_TRUE(p->pidfd.valid());
  siginfo_t si{};
  ASSERT_EQ(::waitid(static_cast<idtype_t>(3) /* P_PIDFD */, static_cast<id_t>(p->pidfd.get()),
                     &si, WEXITED),
            0);
  EXPECT_EQ(si.si_pid, p->pid);
  EXPECT_EQ(si.si_status, 7);
}

}  // namespace
}  // namespace mk
