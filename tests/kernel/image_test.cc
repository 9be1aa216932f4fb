// mk-kernel (and the hello example) driven end to end by a host harness.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include <gtest/gtest.h>

#include "host_harness.h"
#include "mksdk/boot_info.h"

namespace mk::test {
namespace {

using namespace std::chrono_literals;
namespace ec = mk::sdk::exit_code;

std::unique_ptr<ImageRun> launch(const LaunchSpec& spec) {
  auto r = ImageRun::launch(spec);
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().to_string());
  return r ? std::move(*r) : nullptr;
}

std::string cpu_text() { return std::to_string(instance_cpu()); }

// Sends Shutdown, expects status 0 and an exit code of 0.
void shutdown_ok(ImageRun& run, std::uint32_t* killed = nullptr) {
  auto rep = run.request<abi::ShutdownMsg, abi::ShutdownReply>(abi::kMsgShutdown, abi::ShutdownMsg{2000, 0});
  ASSERT_TRUE(rep.has_value()) << rep.error().to_string();
  EXPECT_EQ(rep->status, 0);
  if (killed) *killed = rep->tenants_killed;
  auto st = run.wait_exit();
  ASSERT_TRUE(st.has_value()) << "image did not exit after shutdown";
  ASSERT_TRUE(WIFEXITED(*st)) << "status 0x" << std::hex << *st;
  EXPECT_EQ(WEXITSTATUS(*st), ec::kOk) << run.stderr_text();
}

TEST(MkKernel, BootsReportsReadyAndShutsDown) {
  auto run = launch({});
  ASSERT_TRUE(run);
  ASSERT_TRUE(run->wait_ready()) << run->stderr_text() << run->console();
  EXPECT_EQ(run->ready()->version, abi::kControlVersion);
  EXPECT_EQ(run->ready()->instance_id, kInstanceId);
  EXPECT_EQ(run->ready()->cpu_count, 1u);
  EXPECT_EQ(run->ready()->tenants, 0u);
  EXPECT_GT(run->ready()->boot_ns, 0u);
  shutdown_ok(*run);
  const std::string con = run->console();
  EXPECT_NE(con.find("instance 7 't7'"), std::string::npos) << con;
  EXPECT_NE(con.find("ready in"), std::string::npos) << con;
}

TEST(MkKernel, PingEchoesPayloads) {
  auto run = launch({});
  ASSERT_TRUE(run && run->wait_ready());
  for (std::size_t size : {0ul, 40ul, 1000ul, 3000ul}) {
    std::vector<std::byte> out(size), in(size + 16);
    for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<std::byte>(i * 7 + 1);
    auto n = run->ep().request(kInstanceId, abi::kMsgPing, out, in, 30s);
    ASSERT_TRUE(n.has_value()) << n.error().to_string();
    ASSERT_EQ(*n, size);
    if (size > 0) {
      EXPECT_EQ(std::memcmp(out.data(), in.data(), size), 0);
    }
  }
  shutdown_ok(*run);
}

TEST(MkKernel, StatsAreSane) {
  auto run = launch({});
  ASSERT_TRUE(run && run->wait_ready());
  abi::StatsMsg s{};
  // The loops tick every 10 ms; poll (no timing assertion) until they counted.
  ASSERT_TRUE(run->serve_until([&] {
    auto r = run->request<std::uint32_t, abi::StatsMsg>(abi::kMsgStats, 0u);
    if (!r) return false;
    s = *r;
    return s.loop_iterations > 0;
  }));
  EXPECT_EQ(s.cpus, 1u);
  EXPECT_EQ(s.memory_bytes, kRegionBytes);
  EXPECT_LE(s.memory_used_bytes, s.memory_bytes);
  EXPECT_EQ(s.tenants_running, 0u);
  EXPECT_GE(s.ipi_rx, 1u);
  EXPECT_GE(s.ipi_tx, 2u);  // READY + this reply
  EXPECT_GT(s.uptime_ns, 0u);
  shutdown_ok(*run);
}

TEST(MkKernel, TenantAndEveryThreadRunOnTheInstanceCpu) {
  auto run = launch({.init = "sleep 30"});
  ASSERT_TRUE(run && run->wait_ready()) << run->stderr_text();
  EXPECT_EQ(run->ready()->tenants, 1u);
  std::vector<pid_t> kids;
  ASSERT_TRUE(run->serve_until([&] { return !(kids = children_of(run->pid())).empty(); }));
  ASSERT_EQ(kids.size(), 1u);
  const pid_t tenant = kids[0];
  auto image_tasks = cpus_allowed_of_tasks(run->pid());
  ASSERT_GE(image_tasks.size(), 2u);  // main and one per-CPU loop
  for (const auto& c : image_tasks) EXPECT_EQ(c, cpu_text());
  auto tenant_tasks = cpus_allowed_of_tasks(tenant);
  ASSERT_FALSE(tenant_tasks.empty());
  for (const auto& c : tenant_tasks) EXPECT_EQ(c, cpu_text());
  auto s = run->request<std::uint32_t, abi::StatsMsg>(abi::kMsgStats, 0u);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->tenants_running, 1u);

  std::uint32_t killed = 99;
  shutdown_ok(*run, &killed);
  EXPECT_EQ(killed, 0u);  // sleep dies of SIGTERM within the grace
  EXPECT_NE(::kill(tenant, 0), 0);  // gone (and reaped by the image)
  EXPECT_EQ(errno, ESRCH);
  ASSERT_EQ(run->tenant_exits().size(), 1u);
  EXPECT_EQ(run->tenant_exits()[0].pid, tenant);
  EXPECT_EQ(run->tenant_exits()[0].index, 0u);
  EXPECT_TRUE(WIFSIGNALED(run->tenant_exits()[0].status));
}

TEST(MkKernel, TenantIgnoringSigtermIsKilledAfterGrace) {
  auto run = launch({.init = "trap '' TERM; while :; do sleep 1; done"});
  ASSERT_TRUE(run && run->wait_ready());
  std::vector<pid_t> kids;
  ASSERT_TRUE(run->serve_until([&] { return !(kids = children_of(run->pid())).empty(); }));
  // Give sh time to install the trap before asking (shutdown with grace 2 s).
  ASSERT_TRUE(run->serve_until([&] {
    std::ifstream f("/proc/" + std::to_string(kids[0]) + "/status");
    std::string line;
    while (std::getline(f, line)) {
      if (line.rfind("SigIgn:", 0) == 0) return line.find("4000") != std::string::npos;  // bit 15
    }
    return false;
  }));
  std::uint32_t killed = 0;
  shutdown_ok(*run, &killed);
  EXPECT_EQ(killed, 1u);
  EXPECT_NE(::kill(kids[0], 0), 0);
}

TEST(MkKernel, TenantExitIsReported) {
  auto run = launch({.init = "exit 3"});
  ASSERT_TRUE(run && run->wait_ready());
  ASSERT_TRUE(run->serve_until([&] { return !run->tenant_exits().empty(); }));
  const auto& e = run->tenant_exits()[0];
  EXPECT_EQ(e.index, 0u);
  EXPECT_GT(e.pid, 0);
  ASSERT_TRUE(WIFEXITED(e.status));
  EXPECT_EQ(WEXITSTATUS(e.status), 3);
  shutdown_ok(*run);
  EXPECT_EQ(run->tenant_exits().size(), 1u);
}

TEST(MkKernel, InitOptionOverridesTheTree) {
  auto run = launch({.args = {"--init=exit 5"}, .init = "sleep 30"});
  ASSERT_TRUE(run && run->wait_ready());
  ASSERT_TRUE(run->serve_until([&] { return !run->tenant_exits().empty(); }));
  EXPECT_EQ(WEXITSTATUS(run->tenant_exits()[0].status), 5);
  shutdown_ok(*run);
}

TEST(MkKernel, CorruptTreeExitsWithBadBootTree) {
  auto run = launch({.corrupt_tree = true});
  ASSERT_TRUE(run);
  auto st = run->wait_exit();
  ASSERT_TRUE(st.has_value());
  ASSERT_TRUE(WIFEXITED(*st));
  EXPECT_EQ(WEXITSTATUS(*st), ec::kBadBootTree);
  EXPECT_NE(run->stderr_text().find("boot failed"), std::string::npos) << run->stderr_text();
  EXPECT_FALSE(run->ready().has_value());
}

TEST(MkKernel, MissingChannelFdExitsWithMissingResource) {
  auto run = launch({.omit_channel_eventfds = true});
  ASSERT_TRUE(run);
  auto st = run->wait_exit();
  ASSERT_TRUE(st.has_value());
  ASSERT_TRUE(WIFEXITED(*st));
  EXPECT_EQ(WEXITSTATUS(*st), ec::kMissingResource);
  // The console is known by then: the message goes there.
  EXPECT_NE(run->console().find("channel /ipi/channel@0 lists fd 7"), std::string::npos) << run->console();
}

TEST(MkKernel, NoHostChannelExitsWithHostLink) {
  auto run = launch({.no_host_channel = true});
  ASSERT_TRUE(run);
  auto st = run->wait_exit();
  ASSERT_TRUE(st.has_value() && WIFEXITED(*st));
  EXPECT_EQ(WEXITSTATUS(*st), ec::kHostLink);
  EXPECT_NE(run->console().find("no host channel"), std::string::npos) << run->console();
  EXPECT_FALSE(run->ready().has_value());
}

TEST(MkKernel, BadArgumentExitsWithUsage) {
  auto run = launch({.args = {"--bogus"}});
  ASSERT_TRUE(run);
  auto st = run->wait_exit();
  ASSERT_TRUE(st.has_value() && WIFEXITED(*st));
  EXPECT_EQ(WEXITSTATUS(*st), ec::kUsage);
  EXPECT_NE(run->stderr_text().find("bad argument '--bogus'"), std::string::npos);
}

TEST(MkKernel, HostClosingTheChannelStopsTheImage) {
  auto run = launch({.init = "sleep 30"});
  ASSERT_TRUE(run && run->wait_ready());
  std::vector<pid_t> kids;
  ASSERT_TRUE(run->serve_until([&] { return !(kids = children_of(run->pid())).empty(); }));
  run->close_host();
  auto st = run->wait_exit();
  ASSERT_TRUE(st.has_value());
  ASSERT_TRUE(WIFEXITED(*st));
  EXPECT_EQ(WEXITSTATUS(*st), ec::kHostDown);
  EXPECT_NE(::kill(kids[0], 0), 0);
  EXPECT_NE(run->console().find("host gone"), std::string::npos) << run->console();
}

TEST(MkKernel, HostProcessDyingLeavesTheImageRunning) {
  // Instances outlive mkerneld: an intermediate process plays the host,
  // launches the image and is then SIGKILLed without closing anything. The
  // image and its tenant must keep running (a restarted host takes the
  // channel over; mkernel_boot_test covers that). This process is a
  // subreaper so it can reap the orphans.
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  pid_t host = ::fork();
  ASSERT_GE(host, 0);
  if (host == 0) {
    ::close(p[0]);
    auto r = ImageRun::launch({.init = "sleep 30"});
    pid_t img = -1;
    if (r && (*r)->wait_ready()) img = (*r)->pid();
    (void)!::write(p[1], &img, sizeof img);
    ::pause();  // until SIGKILL: the image and its endpoint are never closed
    ::_exit(0);
  }
  ::close(p[1]);
  pid_t img = -1;
  ASSERT_EQ(::read(p[0], &img, sizeof img), static_cast<ssize_t>(sizeof img));
  ::close(p[0]);
  ASSERT_GT(img, 0);
  ::kill(host, SIGKILL);
  int st = 0;
  ASSERT_EQ(::waitpid(host, &st, 0), host);
  // Longer than the endpoint's liveness interval (100 ms) several times over.
  ::usleep(600'000);
  EXPECT_EQ(::waitpid(img, &st, WNOHANG), 0) << "image exited after its host died";
  const std::vector<pid_t> kids = children_of(img);
  EXPECT_FALSE(kids.empty()) << "the tenant is gone";
  ::kill(img, SIGKILL);
  ASSERT_EQ(::waitpid(img, &st, 0), img);
  EXPECT_TRUE(WIFSIGNALED(st));
  for (pid_t k : kids) {  // orphaned to us (subreaper)
    ::kill(k, SIGKILL);
    (void)::waitpid(k, &st, 0);
  }
  ::prctl(PR_SET_CHILD_SUBREAPER, 0);
}

TEST(MkKernel, PingPeerWithoutChannelIsEnoent) {
  auto run = launch({});
  ASSERT_TRUE(run && run->wait_ready());
  auto rep = run->request<abi::PingPeerMsg, abi::PingPeerReply>(abi::kMsgPingPeer, abi::PingPeerMsg{3, 10, 16, 0});
  ASSERT_TRUE(rep.has_value()) << rep.error().to_string();
  EXPECT_EQ(rep->status, -ENOENT);
  EXPECT_EQ(rep->done, 0u);
  shutdown_ok(*run);
}

TEST(MkKernel, PingPeerMeasuresRoundTrips) {
  // The harness plays peer 9 on a second channel and echoes the image's pings.
  auto run = launch({.peer_channel = true});
  ASSERT_TRUE(run && run->wait_ready()) << run->stderr_text();
  auto rep = run->request<abi::PingPeerMsg, abi::PingPeerReply>(abi::kMsgPingPeer,
                                                                abi::PingPeerMsg{kPeerId, 50, 64, 0});
  ASSERT_TRUE(rep.has_value()) << rep.error().to_string();
  EXPECT_EQ(rep->status, 0);
  EXPECT_EQ(rep->done, 50u);
  EXPECT_GT(rep->min_ns, 0u);
  EXPECT_LE(rep->min_ns, rep->p50_ns);
  EXPECT_LE(rep->p50_ns, rep->p99_ns);
  EXPECT_LE(rep->p99_ns, rep->max_ns);
  auto bad = run->request<abi::PingPeerMsg, abi::PingPeerReply>(abi::kMsgPingPeer,
                                                                abi::PingPeerMsg{kPeerId, 0, 64, 0});
  ASSERT_TRUE(bad.has_value());
  EXPECT_EQ(bad->status, -EINVAL);
  shutdown_ok(*run);
}

TEST(HelloExample, BootsPingsAndShutsDown) {
  auto run = launch({.image = "mk-hello"});
  ASSERT_TRUE(run && run->wait_ready()) << run->stderr_text();
  EXPECT_EQ(run->ready()->instance_id, kInstanceId);
  std::vector<std::byte> out(24, std::byte{0x42}), in(64);
  auto n = run->ep().request(kInstanceId, abi::kMsgPing, out, in, 30s);
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(*n, out.size());
  shutdown_ok(*run);
  EXPECT_NE(run->console().find("hello from instance 7"), std::string::npos) << run->console();
}

}  // namespace
}  // namespace mk::test
