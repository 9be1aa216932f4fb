// CPU moves of a running mk-kernel, end to end (docs/sdk.md "Moving CPUs";
// kernel/image/cpus.h): the harness plays the host on a 2-CPU instance and
// checks the REAL threads afterwards, as the host does: every task's
// Cpus_allowed_list in /proc/<pid>/task/*/status, the per-CPU loops told
// apart by their name (mk-cpu<N>) and the kv service by its (mk-kv).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "cpus.h"
#include "host_harness.h"
#include "mksdk/tenants.h"
#include "resp_client.h"

namespace mk::test {
namespace {

using namespace std::chrono_literals;

std::string detail(const abi::CpuReply& r) { return std::string(r.detail, strnlen(r.detail, sizeof r.detail)); }

// The instance's two CPUs (the first two this process may use), or none.
std::vector<std::uint32_t> two_cpus() {
  auto all = allowed_cpus();
  if (all.size() < 2) return {};
  return {all[0], all[1]};
}

// Cpus_allowed_list spelling of a CPU set.
std::string list(const std::vector<std::uint32_t>& cpus) {
  if (cpus.size() == 1) return std::to_string(cpus[0]);
  if (cpus.size() == 2 && cpus[1] == cpus[0] + 1) return std::to_string(cpus[0]) + "-" + std::to_string(cpus[1]);
  std::string s;
  for (auto c : cpus) s += (s.empty() ? "" : ",") + std::to_string(c);
  return s;
}

std::vector<pid_t> descendants(pid_t pid) {
  std::vector<pid_t> out;
  for (pid_t c : children_of(pid)) {
    out.push_back(c);
    for (pid_t d : descendants(c)) out.push_back(d);
  }
  return out;
}

// What the host checks after a move: the image's loops (name -> cpus), its
// kv thread, every other image thread's and every tenant thread's cpus.
struct Placement {
  std::map<std::string, std::string> loops;  // "mk-cpu1" -> "1"
  std::string kv;                            // the mk-kv thread's cpus ("" none)
  std::vector<std::string> others;           // other image threads
  std::vector<std::string> tenants;          // every thread of every descendant
};

Placement placement(pid_t image) {
  Placement p;
  for (const auto& t : tasks_of(image)) {
    if (t.comm.rfind("mk-cpu", 0) == 0) {
      p.loops[t.comm] = t.cpus;
    } else if (t.comm == "mk-kv") {
      p.kv = t.cpus;
    } else {
      p.others.push_back(t.cpus);
    }
  }
  for (pid_t d : descendants(image)) {
    for (const auto& c : cpus_allowed_of_tasks(d)) p.tenants.push_back(c);
  }
  return p;
}

// Every entry of `v` equals `want` (and there is one at least).
::testing::AssertionResult all_on(const std::vector<std::string>& v, const std::string& want) {
  if (v.empty()) return ::testing::AssertionFailure() << "no threads";
  for (const auto& c : v) {
    if (c != want) return ::testing::AssertionFailure() << "a thread on '" << c << "', want '" << want << "'";
  }
  return ::testing::AssertionSuccess();
}

std::map<std::string, std::string> loops_on(const std::vector<std::uint32_t>& cpus) {
  std::map<std::string, std::string> m;
  for (auto c : cpus) m["mk-cpu" + std::to_string(c)] = std::to_string(c);
  return m;
}

std::unique_ptr<ImageRun> launch_on(const std::vector<std::uint32_t>& cpus, LaunchSpec spec) {
  spec.cpus = cpus;
  auto r = ImageRun::launch(spec);
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().to_string());
  if (!r) return nullptr;
  EXPECT_TRUE((*r)->wait_ready()) << (*r)->stderr_text() << (*r)->console();
  return std::move(*r);
}

bool runs_reaper(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/cmdline");
  const std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return s.find("--reaper=") != std::string::npos;
}

std::uint32_t stats_cpus(ImageRun& run) {
  auto st = run.request<abi::StatsMsg, abi::StatsMsg>(abi::kMsgStats, abi::StatsMsg{});
  EXPECT_TRUE(st.has_value());
  return st ? st->cpus : 0;
}

void shutdown(ImageRun& run) {
  auto rep = run.request<abi::ShutdownMsg, abi::ShutdownReply>(abi::kMsgShutdown, abi::ShutdownMsg{500, 0});
  ASSERT_TRUE(rep.has_value()) << rep.error().to_string();
  auto st = run.wait_exit();
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << run.stderr_text() << run.console();
}

// A tenant with descendants and threads: sh -> {mk-threads-tenant (4
// threads), sh -> sleep}.
const std::string kTenantTree =
    std::string(MK_BIN_DIR) + "/mk-threads-tenant 3 & sh -c 'sleep 100 & wait' & wait";

bool tenant_tree_up(pid_t image) {
  const auto d = descendants(image);
  std::size_t tasks = 0;
  for (pid_t p : d) tasks += cpus_allowed_of_tasks(p).size();
  return d.size() >= 4 && tasks >= 7;  // 4 processes, 4 + 1 + 1 + 1 threads
}

TEST(MkKernelCpus, ReleaseRepinsTenantsAndTheirChildrenAndAddBringsThemBack) {
  const auto cpus = two_cpus();
  if (cpus.empty()) GTEST_SKIP() << "needs 2 CPUs";
  const std::uint32_t a = cpus[0], b = cpus[1];
  auto run = launch_on(cpus, LaunchSpec{.init = kTenantTree});
  ASSERT_TRUE(run);
  ASSERT_TRUE(run->serve_until([&] { return tenant_tree_up(run->pid()); }, 10s)) << run->console();
  Placement p = placement(run->pid());
  EXPECT_EQ(p.loops, loops_on({a, b}));
  EXPECT_TRUE(all_on(p.tenants, list({a, b})));
  EXPECT_EQ(stats_cpus(*run), 2u);

  // Release b: the loop there ends; every other thread follows the set.
  auto r = run->cpu_request(abi::kMsgCpuRelease, b);
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->status, 0) << detail(*r) << run->console();
  EXPECT_EQ(r->changed, 1u);
  EXPECT_EQ(r->cpus, 1u);
  p = placement(run->pid());
  EXPECT_EQ(p.loops, loops_on({a}));
  EXPECT_TRUE(all_on(p.others, list({a})));
  EXPECT_TRUE(all_on(p.tenants, list({a})));
  EXPECT_GE(r->threads_pinned, p.others.size() + p.tenants.size());
  EXPECT_EQ(stats_cpus(*run), 1u);

  // The last CPU stays: refused, nothing changed.
  r = run->cpu_request(abi::kMsgCpuRelease, a);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, -EBUSY);
  EXPECT_NE(detail(*r).find("last CPU"), std::string::npos) << detail(*r);
  EXPECT_EQ(r->changed, 0u);
  EXPECT_EQ(r->cpus, 1u);
  Placement q = placement(run->pid());
  EXPECT_EQ(q.loops, loops_on({a}));
  EXPECT_TRUE(all_on(q.others, list({a})));
  EXPECT_TRUE(all_on(q.tenants, list({a})));

  // A CPU not held: nothing to do (a restarted host re-sends requests).
  r = run->cpu_request(abi::kMsgCpuRelease, b);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 0);
  EXPECT_EQ(r->changed, 0u);
  EXPECT_EQ(r->cpus, 1u);

  // Add b back: a loop there again, the others on both.
  r = run->cpu_request(abi::kMsgCpuAdd, b);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 0) << detail(*r);
  EXPECT_EQ(r->changed, 1u);
  EXPECT_EQ(r->cpus, 2u);
  p = placement(run->pid());
  EXPECT_EQ(p.loops, loops_on({a, b}));
  EXPECT_TRUE(all_on(p.others, list({a, b})));
  EXPECT_TRUE(all_on(p.tenants, list({a, b})));
  EXPECT_EQ(stats_cpus(*run), 2u);

  // A CPU held already: nothing to do.
  r = run->cpu_request(abi::kMsgCpuAdd, b);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 0);
  EXPECT_EQ(r->changed, 0u);
  EXPECT_EQ(r->cpus, 2u);

  // A CPU the kernel refuses (none such here: as if the host had not
  // granted it), or one beyond any CPU set: -EINVAL, everything as before.
  for (std::uint32_t bad : {1000u, 9000u}) {
    r = run->cpu_request(abi::kMsgCpuAdd, bad);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, -EINVAL) << bad;
    EXPECT_EQ(r->changed, 0u);
    EXPECT_EQ(r->cpus, 2u);
    EXPECT_NE(detail(*r).find(bad == 1000 ? "the host must grant it" : "no such CPU"), std::string::npos)
        << detail(*r);
    q = placement(run->pid());
    EXPECT_EQ(q.loops, loops_on({a, b}));
    EXPECT_TRUE(all_on(q.others, list({a, b})));
    EXPECT_TRUE(all_on(q.tenants, list({a, b})));
  }
  EXPECT_EQ(stats_cpus(*run), 2u);

  const std::string con = run->console();
  EXPECT_NE(con.find("cpu " + std::to_string(b) + " released"), std::string::npos) << con;
  EXPECT_NE(con.find("cpu " + std::to_string(b) + " added"), std::string::npos) << con;
  EXPECT_NE(con.find("cpu " + std::to_string(a) + " release refused"), std::string::npos) << con;
  shutdown(*run);
}

TEST(MkKernelCpus, RefusedDuringALiveUpdateAndWhileParked) {
  const auto cpus = two_cpus();
  if (cpus.empty()) GTEST_SKIP() << "needs 2 CPUs";
  auto run = launch_on(cpus, LaunchSpec{.init = "sleep 100"});
  ASSERT_TRUE(run);
  auto prep = run->step(abi::kMsgUpdatePrepare);
  ASSERT_TRUE(prep.has_value());
  ASSERT_EQ(prep->status, 0) << run->console();
  for (std::uint16_t type : {abi::kMsgCpuRelease, abi::kMsgCpuAdd}) {
    auto r = run->cpu_request(type, type == abi::kMsgCpuRelease ? cpus[1] : 1000);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, -EBUSY);
    EXPECT_NE(detail(*r).find("live update"), std::string::npos) << detail(*r);
    EXPECT_EQ(r->cpus, 2u);
  }
  Placement p = placement(run->pid());
  EXPECT_EQ(p.loops, loops_on(cpus));
  EXPECT_TRUE(all_on(p.tenants, list(cpus)));
  auto cancel = run->step(abi::kMsgUpdateCancel);
  ASSERT_TRUE(cancel.has_value());
  ASSERT_EQ(cancel->status, 0);
  auto r = run->cpu_request(abi::kMsgCpuRelease, cpus[1]);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 0) << detail(*r);
  EXPECT_EQ(r->changed, 1u);
  EXPECT_TRUE(all_on(placement(run->pid()).tenants, list({cpus[0]})));
  shutdown(*run);

  // A parked successor (no handover yet) keeps what it was booted with.
  auto succ = launch_on(cpus, LaunchSpec{.successor = true});
  ASSERT_TRUE(succ);
  r = succ->cpu_request(abi::kMsgCpuRelease, cpus[1]);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, -EBUSY);
  EXPECT_NE(detail(*r).find("parked"), std::string::npos) << detail(*r);
  EXPECT_EQ(placement(succ->pid()).loops, loops_on(cpus));
}

TEST(MkKernelCpus, FaultFlagRefusesEveryRelease) {
  const auto cpus = two_cpus();
  if (cpus.empty()) GTEST_SKIP() << "needs 2 CPUs";
  auto run = launch_on(cpus, LaunchSpec{.args = {"--fault=refuse-cpu-release"}, .init = "sleep 100"});
  ASSERT_TRUE(run);
  auto r = run->cpu_request(abi::kMsgCpuRelease, cpus[1]);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, -EPERM);
  EXPECT_EQ(detail(*r), "refused by --fault");
  EXPECT_EQ(r->cpus, 2u);
  Placement p = placement(run->pid());
  EXPECT_EQ(p.loops, loops_on(cpus));
  EXPECT_TRUE(all_on(p.tenants, list(cpus)));
  r = run->cpu_request(abi::kMsgCpuAdd, cpus[1]);  // adds are served
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 0);
  EXPECT_EQ(r->changed, 0u);
  shutdown(*run);
}

TEST(MkKernelCpus, KvThreadMovesWhenItsCpuIsReleasedAndStillServes) {
  const auto cpus = two_cpus();
  if (cpus.empty()) GTEST_SKIP() << "needs 2 CPUs";
  const std::uint32_t a = cpus[0], b = cpus[1];
  auto run = launch_on(cpus, LaunchSpec{.args = {"--services=kv"}, .listen_device = true});
  ASSERT_TRUE(run);
  Client c(run->listen_port());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c.cmd({"SET", "k", "v"}), "+OK");
  EXPECT_EQ(placement(run->pid()).kv, std::to_string(a));  // the first CPU

  auto r = run->cpu_request(abi::kMsgCpuRelease, a);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 0) << detail(*r) << run->console();
  EXPECT_EQ(r->changed, 1u);
  Placement p = placement(run->pid());
  EXPECT_EQ(p.kv, std::to_string(b));
  EXPECT_EQ(p.loops, loops_on({b}));
  EXPECT_TRUE(all_on(p.others, list({b})));
  EXPECT_EQ(c.cmd({"GET", "k"}), "$v");  // the same connection
  Client c2(run->listen_port());
  ASSERT_TRUE(c2.ok());
  EXPECT_EQ(c2.cmd({"INCR", "n"}), ":1");

  // Adding a back leaves the kv thread where it is.
  r = run->cpu_request(abi::kMsgCpuAdd, a);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 0) << detail(*r);
  p = placement(run->pid());
  EXPECT_EQ(p.kv, std::to_string(b));
  EXPECT_EQ(p.loops, loops_on({a, b}));
  EXPECT_EQ(c.cmd({"GET", "k"}), "$v");
  shutdown(*run);
}

TEST(MkKernelCpus, MalformedRequestsAndImagesWithoutTheService) {
  auto run = launch_on({instance_cpu()}, LaunchSpec{});
  ASSERT_TRUE(run);
  // A payload of the wrong size: EBADMSG from the endpoint, nothing done.
  std::vector<std::byte> small(4), in(sizeof(abi::CpuReply));
  auto n = run->ep().request(kInstanceId, abi::kMsgCpuRelease, small, in, 30s);
  ASSERT_FALSE(n.has_value());
  EXPECT_EQ(n.error().code(), EBADMSG);
  EXPECT_EQ(stats_cpus(*run), 1u);
  shutdown(*run);

  // mk-hello sets no HostServices::cpu: HostLink answers -EOPNOTSUPP.
  auto hello = launch_on({instance_cpu()}, LaunchSpec{.image = "mk-hello"});
  ASSERT_TRUE(hello);
  for (std::uint16_t type : {abi::kMsgCpuRelease, abi::kMsgCpuAdd}) {
    auto r = hello->cpu_request(type, instance_cpu());
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    EXPECT_EQ(r->status, -EOPNOTSUPP);
    EXPECT_NE(detail(*r).find("does not move CPUs"), std::string::npos) << detail(*r);
  }
}

// After a live update whose old image was its tenant's parent: the old
// image is now that tenant's reaper; the successor's CPU moves re-pin the
// adopted tenant and the reaper too (both are the instance's).
TEST(MkKernelCpus, AfterALiveUpdateTheAdoptedTenantAndTheReaperFollow) {
  const auto cpus = two_cpus();
  if (cpus.empty()) GTEST_SKIP() << "needs 2 CPUs";
  auto old = launch_on(cpus, LaunchSpec{.init = "sleep 1000"});
  ASSERT_TRUE(old);
  std::vector<pid_t> kids;
  ASSERT_TRUE(old->serve_until([&] { return !(kids = children_of(old->pid())).empty(); }, 5s));
  const pid_t tenant = kids.front();
  LaunchSpec ss{.successor = true};
  ss.region_fd = old->region_fd();
  auto succ = launch_on(cpus, ss);
  ASSERT_TRUE(succ);
  auto prep = old->step(abi::kMsgUpdatePrepare);
  ASSERT_TRUE(prep.has_value() && prep->status == 0) << old->console();
  auto fr = old->step(abi::kMsgUpdateFreeze);
  ASSERT_TRUE(fr.has_value() && fr->status == 0) << old->console();
  auto h = fetch_handoff(old->pid(), fr->fd);
  ASSERT_TRUE(h.has_value()) << h.error().to_string();
  ASSERT_TRUE(send_handoff(succ->handover_fd(), h->package, h->fds).has_value());
  auto ho = succ->request<abi::HandoverMsg, abi::UpdateReply>(
      abi::kMsgHandover, abi::HandoverMsg{1, static_cast<std::uint32_t>(h->fds.size())});
  ASSERT_TRUE(ho.has_value() && ho->status == 0) << succ->console();
  auto fin = old->step(abi::kMsgUpdateFinish);
  ASSERT_TRUE(fin.has_value() && fin->status == 0) << old->console();
  const pid_t reaper = old->pid();  // same pid, exec'ed into the reaper
  ASSERT_TRUE(old->serve_until([&] { return runs_reaper(reaper); }, 5s)) << old->console();

  auto r = succ->cpu_request(abi::kMsgCpuRelease, cpus[1]);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 0) << detail(*r) << succ->console();
  EXPECT_EQ(r->changed, 1u);
  EXPECT_TRUE(all_on(cpus_allowed_of_tasks(tenant), list({cpus[0]})));
  EXPECT_TRUE(all_on(cpus_allowed_of_tasks(reaper), list({cpus[0]})));
  EXPECT_TRUE(all_on(placement(succ->pid()).others, list({cpus[0]})));
  r = succ->cpu_request(abi::kMsgCpuAdd, cpus[1]);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 0) << detail(*r);
  EXPECT_TRUE(all_on(cpus_allowed_of_tasks(tenant), list(cpus)));
  EXPECT_TRUE(all_on(cpus_allowed_of_tasks(reaper), list(cpus)));
  shutdown(*succ);  // ends the adopted tenant; the reaper then exits
  auto st = old->wait_exit(10s);
  ASSERT_TRUE(st.has_value());
}

// Which processes follow the CPU set: the tenants and all their
// descendants, nothing else (cpus.h).
TEST(CpuMoves, TenantProcessesAreTheTenantsAndAllTheirDescendants) {
  sdk::Tenants t;
  auto idx = t.start("sleep 100 & sh -c 'sleep 100 & wait' & wait", -1);
  ASSERT_TRUE(idx.has_value()) << idx.error().to_string();
  const pid_t root = t.pids().at(0);
  std::vector<pid_t> want;
  for (int i = 0; i < 500; ++i) {
    want = descendants(root);
    if (want.size() >= 3) break;
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(want.size(), 3u);  // sleep, sh, sleep
  want.push_back(root);
  auto got = image::tenant_processes(t);
  std::sort(got.begin(), got.end());
  std::sort(want.begin(), want.end());
  EXPECT_EQ(got, want);  // not this process, not PID 1 (no reaper there)
  (void)t.stop(100ms);
  EXPECT_TRUE(image::tenant_processes(t).empty());
}

}  // namespace
}  // namespace mk::test
