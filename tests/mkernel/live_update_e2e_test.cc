// live_update() end to end with the real mk-kernel: an instance serving the
// KV service on a listen device with a `sleep` tenant is updated in place
// while a TCP client stays connected; then every fault the image and the
// host can inject, each ending with the instance serving every key; an
// interrupted update finished by abort_update() from a "restarted host";
// two updates in a row and the adoption of the result.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>
#include <string>
#include <vector>

#include "mk/units.h"
#include "mkernel/live_update.h"
#include "free_cpus.h"
#include "kv_e2e_util.h"

namespace mk {
namespace {

using namespace std::chrono_literals;

class LiveUpdate : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = load_topology_live();
    ASSERT_TRUE(t) << t.error().to_string();
    topo = *t;
    port = free_port();
    req.instance.id = 12;
    req.instance.name = "lu-e2e-" + std::to_string(::getpid());
    cpus = test::free_cpus(topo);
    req.instance.cpus = CpuSet::of({cpus.empty() ? topo.pus.back().os_index : cpus.front()});
    req.instance.memory = {{topo.numa_nodes.front().os_index, 16 * kMiB}};
    req.instance.devices = {*DeviceSpec::parse("listen:127.0.0.1:" + std::to_string(port))};
    req.image.path = std::string(MK_BIN_DIR) + "/mk-kernel";
    req.image.cmdline = "--services=kv";
    req.image.init = "sleep 1000";
    req.root = SysRoot();
  }
  void TearDown() override {
    if (run) {
      run->kill();
      (void)run->release();
    }
  }

  void boot() {
    auto r = boot_instance(topo, req);
    ASSERT_TRUE(r) << r.error().to_string();
    run = std::move(*r);
    auto ready = run->wait_ready(10s);
    ASSERT_TRUE(ready) << ready.error().to_string() << "\nconsole: " << drain(run->console_fd());
  }

  void write_keys(Client& c, int n, const std::string& prefix = "k") {
    for (int i = 0; i < n; ++i) {
      ASSERT_EQ(c.cmd({"SET", prefix + std::to_string(i), "v" + std::to_string(i)}), "+OK");
    }
  }
  void expect_keys(Client& c, int n, const std::string& prefix = "k") {
    for (int i = 0; i < n; ++i)
      ASSERT_EQ(c.cmd({"GET", prefix + std::to_string(i)}), "$v" + std::to_string(i)) << "key " << prefix << i;
  }

  UpdateRequest update_request(const std::string& cmdline = "--services=kv") {
    UpdateRequest u;
    u.image.path = req.image.path;
    u.image.cmdline = cmdline;
    u.timeout = 5s;
    u.on_phase = [this](std::string_view p, double ms) { phases[std::string(p)] = ms; };
    u.on_state = [this](std::string_view st) { states.emplace_back(st); };
    u.on_wait = [this] { ++waits; };
    return u;
  }

  // The instance serves: ping, and a connection reads back every key.
  void expect_serving(int keys) {
    ASSERT_TRUE(run) << "no instance left";
    ASSERT_TRUE(run->ping(64, 2s)) << drain(run->console_fd());
    Client c(port);
    ASSERT_TRUE(c.ok());
    expect_keys(c, keys);
  }

  Topology topo;
  std::vector<uint32_t> cpus;  // free ones, highest first
  BootRequest req;
  uint16_t port = 0;
  std::unique_ptr<RunningInstance> run;
  std::map<std::string, double> phases;
  std::vector<std::string> states;  // UpdateRequest::on_state
  int waits = 0;                    // UpdateRequest::on_wait calls
};

TEST_F(LiveUpdate, InPlaceKeepsTheConnectionTheKeysTheTenantAndTheNamespaces) {
  boot();
  Client c(port);
  ASSERT_TRUE(c.ok());
  write_keys(c, 200);
  const pid_t old_pid = run->pid();
  const pid_t tenant = find_tenant(old_pid);
  ASSERT_GT(tenant, 0);
  std::map<std::string, std::string> ns;
  for (const char* n : {"pid", "mnt", "uts", "ipc", "net"}) ns[n] = ns_link(old_pid, n);
  const std::string cgroup = file_text("/proc/" + std::to_string(old_pid) + "/cgroup");
  RuntimeRecord successor;
  auto u = update_request();
  u.update_id = 41;
  u.on_successor = [&](const RuntimeRecord& r) { successor = r; };
  // The host leaves the instance's CPUs during the blackout, and comes back.
  cpu_set_t before, during, after;
  CPU_ZERO(&during);
  ASSERT_EQ(::sched_getaffinity(0, sizeof before, &before), 0);
  u.after_freeze = [&] { (void)::sched_getaffinity(0, sizeof during, &during); };
  UpdateOutcome out = live_update(run, topo, req.root, u);
  ASSERT_EQ(::sched_getaffinity(0, sizeof after, &after), 0);
  EXPECT_TRUE(CPU_EQUAL(&before, &after));
  cpu_set_t elsewhere = before;
  for (uint32_t c : req.instance.cpus.to_vector()) CPU_CLR(c, &elsewhere);
  if (CPU_COUNT(&elsewhere) > 0) {  // else it has nowhere to go (and does not spin)
    for (uint32_t c : req.instance.cpus.to_vector()) EXPECT_FALSE(CPU_ISSET(c, &during)) << "cpu " << c;
  }
  ASSERT_TRUE(out.updated) << (out.cause ? out.cause->to_string() : "") << " / " << out.rollback
                           << "\nconsole: " << (run ? drain(run->console_fd()) : "");
  ASSERT_TRUE(run);
  EXPECT_FALSE(out.cause);
  EXPECT_EQ(out.rollback, "");
  EXPECT_EQ(states, (std::vector<std::string>{"prepared", "frozen", "updated", "normal"}));
  // Phases and blackout.
  for (const char* p : {"boot", "prepare", "precopy", "freeze", "transfer", "restore", "finish"}) {
    EXPECT_TRUE(phases.count(p)) << p;
  }
  EXPECT_EQ(out.phases.size(), 7u);
  // The listen socket and the client's connection went ahead of the freeze.
  EXPECT_GE(out.precopied_fds, 2u);
  ASSERT_TRUE(out.blackout_ms);
  EXPECT_GT(*out.blackout_ms, 0.0);
  EXPECT_LT(*out.blackout_ms, 5000.0);
  EXPECT_GE(*out.blackout_ms, phases["freeze"] + phases["transfer"]);
  EXPECT_GE(out.fds, 2u);  // the listen socket and the client's connection at least
  EXPECT_GT(out.blob_bytes, 0u);
  EXPECT_GE(out.preserved_bytes, 16 * kMiB);  // the KV store: all of /memory@0
  // The successor is the instance now, our child, in the same namespaces,
  // cgroup and CPUs; the old image (PID 1 there) stays as the reaper.
  EXPECT_NE(run->pid(), old_pid);
  EXPECT_EQ(run->pid(), successor.pid);
  EXPECT_EQ(run->record().pid, successor.pid);
  EXPECT_TRUE(run->is_child());
  for (const auto& [n, link] : ns) EXPECT_EQ(ns_link(run->pid(), n.c_str()), link) << n;
  EXPECT_EQ(file_text("/proc/" + std::to_string(run->pid()) + "/cgroup"), cgroup);
  EXPECT_EQ(status_line(run->pid(), "Cpus_allowed_list:"), req.instance.cpus.to_string());
  if (::geteuid() == 0) {
    EXPECT_EQ(run->ns_init_pid(), old_pid);
    EXPECT_EQ(run->record().ns_init_pid, old_pid);
    EXPECT_NE(file_text("/proc/" + std::to_string(old_pid) + "/cmdline").find("--reaper"), std::string::npos);
  }
  // The same connection reads every key back and writes more.
  expect_keys(c, 200);
  ASSERT_EQ(c.cmd({"SET", "after", "update"}), "+OK");
  // The tenant kept its pid and runs.
  EXPECT_TRUE(alive(tenant));
  auto st = run->stats(2s);
  ASSERT_TRUE(st) << st.error().to_string();
  EXPECT_EQ(st->tenants_running, 1u);
  expect_serving(200);
  // stop leaves nothing behind: image, reaper, tenant.
  auto bye = run->shutdown(500ms, 5s);
  ASSERT_TRUE(bye) << bye.error().to_string();
  EXPECT_FALSE(alive(old_pid));
  EXPECT_FALSE(alive(tenant));
  auto rel = run->release();
  EXPECT_TRUE(rel) << rel.error().to_string();
  run.reset();
}

// Pre-copy: what happens between prepare and freeze is not lost. The
// connections were sent ahead; one closes, one quits, one sends half a
// request, one is new, in that window.
TEST_F(LiveUpdate, ConnectionsThatChangeBetweenPreCopyAndFreezeAreHandedOverAsTheyAre) {
  boot();
  Client kept(port), quits(port), half(port);
  auto closed = std::make_unique<Client>(port);
  for (Client* c : {&kept, closed.get(), &quits, &half}) ASSERT_TRUE(c->ok());
  write_keys(kept, 10);
  for (Client* c : {closed.get(), &quits, &half}) ASSERT_EQ(c->cmd({"PING"}), "+PONG");
  std::unique_ptr<Client> fresh;
  std::string quit_reply, quit_eof;
  auto u = update_request();
  u.after_precopy = [&] {
    closed = std::make_unique<Client>(port);  // one goes away (the successor holds a dup), one comes
    quit_reply = quits.cmd({"QUIT"});
    // The old image shut the socket down: the client sees the end now,
    // though the successor (and the host) still hold a dup of it.
    quit_eof = quits.reply(2000);
    ASSERT_TRUE(half.send_raw("*3\r\n$3\r\nSET\r\n$4\r\nhalf"));
    fresh = std::make_unique<Client>(port);
    ASSERT_TRUE(fresh->ok());
    ASSERT_EQ(fresh->cmd({"SET", "fresh", "yes"}), "+OK");
  };
  UpdateOutcome out = live_update(run, topo, req.root, u);
  ASSERT_TRUE(out.updated) << (out.cause ? out.cause->to_string() : "") << " / " << out.rollback
                           << "\nconsole: " << (run ? drain(run->console_fd()) : "");
  EXPECT_TRUE(phases.count("precopy"));
  EXPECT_GE(out.precopied_fds, 5u);  // listen + the four connections
  EXPECT_EQ(quit_reply, "+OK");
  EXPECT_EQ(quit_eof, "EOF");
  expect_keys(kept, 10);
  ASSERT_TRUE(half.send_raw("\r\n$4\r\ndone\r\n"));  // the rest of SET half done
  EXPECT_EQ(half.reply(5000), "+OK");
  EXPECT_EQ(kept.cmd({"GET", "half"}), "$done");
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->cmd({"GET", "fresh"}), "$yes");
  EXPECT_EQ(closed->cmd({"PING"}), "+PONG");  // the reconnected client
  const std::string console = drain(run->console_fd());
  EXPECT_NE(console.find("pre-copy 1 staged"), std::string::npos) << console;
  // The old image's 4 connections were staged (kept, closed, quits, half).
  EXPECT_NE(console.find("connections (4 pre-copied)"), std::string::npos) << console;
}

TEST_F(LiveUpdate, TwiceInARowThenAdoptedByARestartedHost) {
  boot();
  Client c(port);
  ASSERT_TRUE(c.ok());
  write_keys(c, 50);
  const pid_t first = run->pid();
  const pid_t tenant = find_tenant(first);
  UpdateOutcome one = live_update(run, topo, req.root, update_request());
  ASSERT_TRUE(one.updated) << (one.cause ? one.cause->to_string() : "") << " " << one.rollback;
  const pid_t second = run->pid();
  auto u2 = update_request();
  u2.update_id = 2;
  UpdateOutcome two = live_update(run, topo, req.root, u2);
  ASSERT_TRUE(two.updated) << (two.cause ? two.cause->to_string() : "") << " " << two.rollback
                           << "\nconsole: " << (run ? drain(run->console_fd()) : "");
  // The second old image was not PID 1: it exited (and was reaped).
  EXPECT_FALSE(alive(second));
  EXPECT_NE(run->pid(), second);
  if (::geteuid() == 0) {
    EXPECT_EQ(run->ns_init_pid(), first);
  }
  expect_keys(c, 50);
  EXPECT_TRUE(alive(tenant));

  // A restarted host takes the successor back from its record.
  Instance inst = req.instance;
  inst.runtime = run->record();
  const pid_t image = run->pid();
  run->detach();
  run.reset();
  auto back = adopt_instance(inst, req.root);
  ASSERT_TRUE(back) << back.error().to_string();
  run = std::move(*back);
  EXPECT_EQ(run->pid(), image);
  if (::geteuid() == 0) {
    EXPECT_EQ(run->ns_init_pid(), first);
  }
  expect_serving(50);
  expect_keys(c, 50);
  // The adopted instance (not our child) is updated once more.
  auto u3 = update_request();
  u3.update_id = 3;
  UpdateOutcome three = live_update(run, topo, req.root, u3);
  ASSERT_TRUE(three.updated) << (three.cause ? three.cause->to_string() : "") << " " << three.rollback;
  EXPECT_TRUE(run->is_child());
  if (::geteuid() == 0) {
    EXPECT_EQ(run->ns_init_pid(), first);
  }
  expect_keys(c, 50);
  EXPECT_TRUE(alive(tenant));
  int ws = 0;
  // This test process is still the parent of the adopted image, which
  // exited at finish (a real restarted host is not its parent): reap it as
  // its parent would, or the dying namespace init waits for that zombie.
  EXPECT_EQ(::waitpid(image, &ws, 0), image);
  auto bye = run->shutdown(500ms, 5s);
  ASSERT_TRUE(bye) << bye.error().to_string();
  EXPECT_FALSE(alive(first));
  EXPECT_FALSE(alive(tenant));
  EXPECT_TRUE(run->release());
  run.reset();
  ::waitpid(first, &ws, 0);
}

TEST_F(LiveUpdate, AnAdoptedUpdatedInstanceStopsCleanly) {
  boot();
  const pid_t first = run->pid();
  const pid_t tenant = find_tenant(first);
  UpdateOutcome one = live_update(run, topo, req.root, update_request());
  ASSERT_TRUE(one.updated) << (one.cause ? one.cause->to_string() : "") << " " << one.rollback;
  Instance inst = req.instance;
  inst.runtime = run->record();
  const pid_t image = run->pid();
  run->detach();
  run.reset();
  auto back = adopt_instance(inst, req.root);
  ASSERT_TRUE(back) << back.error().to_string();
  run = std::move(*back);
  if (::geteuid() == 0) {
    EXPECT_EQ(run->ns_init_pid(), first);
  }
  expect_serving(0);
  int ws = 0;
  // This test process is still the image's parent (a real restarted host
  // is not): reap it as its parent would, or the dying namespace init
  // waits for that zombie.
  std::thread parent([&] { ::waitpid(image, &ws, 0); });
  const auto t0 = std::chrono::steady_clock::now();
  auto bye = run->shutdown(500ms, 5s);
  parent.join();
  ASSERT_TRUE(bye) << bye.error().to_string();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  EXPECT_FALSE(alive(first));
  EXPECT_FALSE(alive(tenant));
  EXPECT_TRUE(run->release());
  run.reset();
  ::waitpid(first, &ws, 0);
}

TEST_F(LiveUpdate, ChannelsToOtherInstancesCarryOnAfterTheUpdate) {
  // Two instances with a channel (the host made it; "a" takes side A),
  // each updated in turn with the same side: they ping each other after.
  if (cpus.size() < 2) GTEST_SKIP() << "needs two CPUs no other instance holds";
  auto ch = ipi::Channel::create(ipi::ChannelConfig{kHostRingSlots, 256 * 1024});
  ASSERT_TRUE(ch) << ch.error().to_string();
  auto fds = ch->export_fds();
  ASSERT_TRUE(fds);
  ch->detach();
  BootRequest ra = req, rb = req;
  ra.instance.id = 20;
  ra.instance.name = "lu-a-" + std::to_string(::getpid());
  ra.instance.cpus = CpuSet::of({cpus[1]});
  ra.instance.devices.clear();
  ra.image.cmdline = "";
  rb.instance.id = 21;
  rb.instance.name = "lu-b-" + std::to_string(::getpid());
  rb.instance.devices.clear();
  rb.image.cmdline = "";
  const PeerChannelFds to_b{21, rb.instance.name, 0, fds->memfd.get(), {fds->eventfd[0].get(), fds->eventfd[1].get()}};
  const PeerChannelFds to_a{20, ra.instance.name, 1, fds->memfd.get(), {fds->eventfd[0].get(), fds->eventfd[1].get()}};
  ra.peers = {to_b};
  rb.peers = {to_a};
  auto a = boot_instance(topo, ra);
  ASSERT_TRUE(a) << a.error().to_string();
  ASSERT_TRUE((*a)->wait_ready(10s));
  auto b = boot_instance(topo, rb);
  ASSERT_TRUE(b) << b.error().to_string();
  ASSERT_TRUE((*b)->wait_ready(10s));
  std::unique_ptr<RunningInstance> ia = std::move(*a), ib = std::move(*b);
  auto ping = [](RunningInstance& from, uint32_t to) {
    auto r = from.ping_peer(to, 10, 64, 5s);
    EXPECT_TRUE(r) << r.error().to_string();
    if (r) {
      EXPECT_EQ(r->status, 0);
      EXPECT_EQ(r->done, 10u);
    }
  };
  ping(*ia, 21);
  ping(*ib, 20);
  UpdateRequest ub = update_request("");
  ub.peers = {to_a};
  UpdateOutcome ob = live_update(ib, topo, req.root, ub);
  ASSERT_TRUE(ob.updated) << (ob.cause ? ob.cause->to_string() : "") << " " << ob.rollback;
  ASSERT_EQ(ib->record().peers.size(), 1u);
  EXPECT_EQ(ib->record().peers[0].side, 1);
  ping(*ia, 21);
  ping(*ib, 20);
  UpdateRequest ua = update_request("");
  ua.peers = {to_b};
  UpdateOutcome oa = live_update(ia, topo, req.root, ua);
  ASSERT_TRUE(oa.updated) << (oa.cause ? oa.cause->to_string() : "") << " " << oa.rollback;
  ping(*ia, 21);
  ping(*ib, 20);
  for (auto* r : {&ia, &ib}) {
    ASSERT_TRUE((*r)->shutdown(500ms, 5s));
    EXPECT_TRUE((*r)->release());
  }
}

struct FaultCase {
  const char* name;
  const char* successor_cmdline;
  bool corrupt;
  int code;  // the cause's errno
};

class LiveUpdateFault : public LiveUpdate, public ::testing::WithParamInterface<FaultCase> {};

TEST_P(LiveUpdateFault, RollsBackToTheOldImageWithEveryKey) {
  const FaultCase& f = GetParam();
  boot();
  Client c(port);
  ASSERT_TRUE(c.ok());
  write_keys(c, 100);
  const pid_t old_pid = run->pid();
  const pid_t tenant = find_tenant(old_pid);
  auto u = update_request(f.successor_cmdline);
  u.timeout = 2s;
  u.corrupt_package = f.corrupt;
  RuntimeRecord successor;
  u.on_successor = [&](const RuntimeRecord& r) { successor = r; };
  UpdateOutcome out = live_update(run, topo, req.root, u);
  EXPECT_FALSE(out.updated);
  ASSERT_TRUE(out.cause);
  EXPECT_EQ(out.cause->code(), f.code) << out.cause->to_string();
  EXPECT_NE(out.rollback, "");
  ASSERT_FALSE(states.empty());
  EXPECT_EQ(states.back(), "normal");
  if (f.code == ETIMEDOUT) {
    // A restore that hangs until the timeout: the caller's wait hook runs
    // (the daemon answers `mkctl show` from it), and the state is "frozen".
    EXPECT_GT(waits, 0);
    EXPECT_NE(std::find(states.begin(), states.end(), "frozen"), states.end());
  }
  ASSERT_TRUE(run);
  EXPECT_EQ(run->pid(), old_pid) << out.rollback;
  EXPECT_EQ(run->ns_init_pid(), -1);
  if (successor.pid > 0) {
    EXPECT_FALSE(alive(successor.pid));
  }
  // Untouched or unfrozen: the same connection, every key, the tenant.
  expect_keys(c, 100);
  ASSERT_EQ(c.cmd({"SET", "k100", "v100"}), "+OK");
  EXPECT_TRUE(alive(tenant));
  expect_serving(101);
  // And the instance can still be updated.
  UpdateOutcome again = live_update(run, topo, req.root, update_request());
  EXPECT_TRUE(again.updated) << (again.cause ? again.cause->to_string() : "") << " " << again.rollback;
  expect_keys(c, 101);
}

INSTANTIATE_TEST_SUITE_P(
    Faults, LiveUpdateFault,
    ::testing::Values(FaultCase{"ExitAtBoot", "--services=kv --fault=exit-at-boot", false, ECHILD},
                      FaultCase{"HangAtHandover", "--services=kv --fault=hang-at-handover", false, ETIMEDOUT},
                      FaultCase{"RefuseHandover", "--services=kv --fault=refuse-handover", false, EPROTONOSUPPORT},
                      FaultCase{"CorruptPackage", "--services=kv", true, EBADMSG}),
    [](const ::testing::TestParamInfo<FaultCase>& i) { return std::string(i.param.name); });

TEST_F(LiveUpdate, OldImageDyingInPrepareIsBootedAgainOnTheSameRegions) {
  req.image.cmdline = "--services=kv --fault=die-in-prepare";
  boot();
  {
    Client c(port);
    ASSERT_TRUE(c.ok());
    write_keys(c, 100);
  }
  const pid_t old_pid = run->pid();
  const auto t0 = std::chrono::steady_clock::now();
  UpdateOutcome out = live_update(run, topo, req.root, update_request());
  // Noticed when it died (the namespace's end took the parked successor,
  // which the host reaps at once), not at the 5 s step timeout.
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  EXPECT_FALSE(out.updated);
  ASSERT_TRUE(out.cause);
  EXPECT_EQ(out.cause->code(), ECONNRESET) << out.cause->to_string();
  EXPECT_NE(out.rollback.find("booted again"), std::string::npos) << out.rollback;
  ASSERT_TRUE(run) << out.rollback;
  EXPECT_NE(run->pid(), old_pid);
  EXPECT_TRUE(phases.count("rollback"));
  // The store lives in the region the host kept: every key is there.
  expect_serving(100);
  auto st = run->stats(2s);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->tenants_running, 1u);  // the init was started again
}

TEST_F(LiveUpdate, OldImageDyingAfterTheTransferIsBootedAgainFromTheHeldPackage) {
  // The host holds the package and every fd once the transfer is done: the
  // old image killed right then, and the successor refusing the (corrupted)
  // package, leave the host to boot the old kernel again and restore it
  // from what it holds: the same TCP connection keeps working.
  boot();
  Client c(port);
  ASSERT_TRUE(c.ok());
  write_keys(c, 100);
  const pid_t old_pid = run->pid();
  const int old_pidfd = run->pidfd();
  auto u = update_request();
  u.corrupt_package = true;
  u.on_phase = [&](std::string_view p, double ms) {
    phases[std::string(p)] = ms;
    if (p == "transfer") ::syscall(SYS_pidfd_send_signal, old_pidfd, SIGKILL, nullptr, 0);
  };
  UpdateOutcome out = live_update(run, topo, req.root, u);
  EXPECT_FALSE(out.updated);
  ASSERT_TRUE(out.cause);
  EXPECT_NE(out.rollback.find("restored from the held package"), std::string::npos) << out.rollback;
  ASSERT_TRUE(run) << out.rollback;
  EXPECT_NE(run->pid(), old_pid);
  EXPECT_FALSE(alive(old_pid));
  // Its own, new PID namespace (the old one died with its PID 1).
  if (::geteuid() == 0) {
    EXPECT_NE(ns_link(run->pid(), "pid"), ns_link(::getpid(), "pid"));
  }
  expect_keys(c, 100);
  ASSERT_EQ(c.cmd({"SET", "k100", "v100"}), "+OK");
  expect_serving(101);
}

TEST_F(LiveUpdate, AfterAnUpdateTheImageBootedAgainJoinsTheReapersNamespaces) {
  // Second update: the old image (the first successor) is not PID 1; killed
  // after the transfer, the namespace lives on in the reaper, so the image
  // booted again joins it and the tenant keeps running.
  if (::geteuid() != 0) GTEST_SKIP() << "needs a PID namespace (root)";
  boot();
  Client c(port);
  ASSERT_TRUE(c.ok());
  write_keys(c, 100);
  const pid_t first = run->pid();
  const pid_t tenant = find_tenant(first);
  const std::string pidns = ns_link(first, "pid");
  UpdateOutcome one = live_update(run, topo, req.root, update_request());
  ASSERT_TRUE(one.updated) << (one.cause ? one.cause->to_string() : "") << " " << one.rollback;
  const pid_t second = run->pid();
  const int second_pidfd = run->pidfd();
  auto u = update_request();
  u.update_id = 2;
  u.corrupt_package = true;
  u.on_phase = [&](std::string_view p, double) {
    if (p == "transfer") ::syscall(SYS_pidfd_send_signal, second_pidfd, SIGKILL, nullptr, 0);
  };
  UpdateOutcome two = live_update(run, topo, req.root, u);
  EXPECT_FALSE(two.updated);
  EXPECT_NE(two.rollback.find("restored from the held package"), std::string::npos) << two.rollback;
  ASSERT_TRUE(run) << two.rollback;
  EXPECT_NE(run->pid(), second);
  EXPECT_EQ(ns_link(run->pid(), "pid"), pidns);
  EXPECT_EQ(run->ns_init_pid(), first);
  EXPECT_TRUE(alive(tenant));
  expect_keys(c, 100);
  expect_serving(100);
  auto bye = run->shutdown(500ms, 5s);
  ASSERT_TRUE(bye) << bye.error().to_string();
  EXPECT_FALSE(alive(first));
  EXPECT_FALSE(alive(tenant));
}

TEST_F(LiveUpdate, ASuccessorThatCannotStartLeavesTheOldImageUntouched) {
  boot();
  Client c(port);
  ASSERT_TRUE(c.ok());
  write_keys(c, 10);
  const pid_t old_pid = run->pid();
  auto u = update_request();
  u.image.path = "/nonexistent/mk-kernel";
  UpdateOutcome out = live_update(run, topo, req.root, u);
  EXPECT_FALSE(out.updated);
  ASSERT_TRUE(out.cause);
  EXPECT_EQ(out.cause->code(), ENOENT) << out.cause->to_string();
  EXPECT_EQ(run->pid(), old_pid);
  EXPECT_TRUE(out.phases.empty());
  expect_keys(c, 10);
  expect_serving(10);
}

// The body of the unprivileged test, run in a child as nobody: "" or what
// went wrong.
std::string update_without_privileges(const Topology& topo, BootRequest req) {
  req.use_cgroups = false;  // cgroups and namespaces need root
  auto booted = boot_instance(topo, req);
  if (!booted) return "boot: " + booted.error().to_string();
  std::unique_ptr<RunningInstance> cur = std::move(*booted);
  if (auto r = cur->wait_ready(10s); !r) return "ready: " + r.error().to_string();
  const pid_t old_pid = cur->pid();
  const std::string pidns = ns_link(old_pid, "pid");
  if (pidns != ns_link(::getpid(), "pid")) return "the image got a PID namespace without root";
  {
    Client c(req.instance.devices.empty() ? 0 : req.instance.devices[0].port);
    if (!c.ok() || c.cmd({"SET", "a", "1"}) != "+OK") return "kv before the update";
    UpdateRequest u;
    u.image = req.image;
    u.timeout = 5s;
    UpdateOutcome out = live_update(cur, topo, req.root, u);
    if (!out.updated) return "update: " + (out.cause ? out.cause->to_string() : std::string("?")) + " / " + out.rollback;
    if (cur->pid() == old_pid) return "the old image still runs the instance";
    if (ns_link(cur->pid(), "pid") != pidns) return "the successor is in another PID namespace";
    // Its tenant is its child: the old image stays as the reaper.
    if (cur->ns_init_pid() != old_pid) return "the reaper is not tracked: ns_init_pid " + std::to_string(cur->ns_init_pid());
    if (c.cmd({"GET", "a"}) != "$1") return "the connection lost the key";
  }
  auto bye = cur->shutdown(500ms, 5s);
  if (!bye) return "shutdown: " + bye.error().to_string();
  if (alive(old_pid)) return "the reaper outlived the instance";
  return "";
}

TEST_F(LiveUpdate, WithoutPrivilegesTheSuccessorIsSpawnedWithoutNamespacesAndTheReaperIsTracked) {
  if (::geteuid() != 0) GTEST_SKIP() << "drops to nobody from root";
  if (::access(req.image.path.c_str(), X_OK) != 0) GTEST_SKIP() << "mk-kernel not found";
  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(out[0]);
    std::string why;
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) {
      why = "cannot become nobody";
    } else {
      why = update_without_privileges(topo, req);
    }
    (void)!::write(out[1], why.data(), why.size());
    ::_exit(why.empty() ? 0 : 1);
  }
  ::close(out[1]);
  std::string why;
  char buf[512];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;) why.append(buf, static_cast<std::size_t>(n));
  ::close(out[0]);
  int ws = 0;
  ASSERT_EQ(::waitpid(child, &ws, 0), child);
  EXPECT_TRUE(WIFEXITED(ws) && WEXITSTATUS(ws) == 0) << why;
  EXPECT_EQ(why, "");
}

TEST_F(LiveUpdate, AbortUpdateFromARestartedHostUnfreezesTheOldImage) {
  boot();
  Client c(port);
  ASSERT_TRUE(c.ok());
  write_keys(c, 100);
  const pid_t old_pid = run->pid();
  Instance inst = req.instance;
  inst.runtime = run->record();
  inst.image = LoadedImage{req.image.path, "", 0, "", req.image.cmdline, req.image.init, {}, {}};
  run->detach();
  run.reset();
  int rec_pipe[2];
  ASSERT_EQ(::pipe(rec_pipe), 0);
  pid_t host = ::fork();
  ASSERT_GE(host, 0);
  if (host == 0) {
    // The first host: takes the instance, updates, dies right after the freeze.
    ::close(rec_pipe[0]);
    auto mine = adopt_instance(inst, SysRoot());
    if (!mine) ::_exit(10);
    std::unique_ptr<RunningInstance> cur = std::move(*mine);
    UpdateRequest u;
    u.image = req.image;
    u.timeout = 5s;
    u.update_id = 77;
    u.on_successor = [&](const RuntimeRecord& r) {
      int64_t v[2] = {r.pid, static_cast<int64_t>(r.start_time)};
      (void)!::write(rec_pipe[1], v, sizeof v);
    };
    u.after_freeze = [] { ::_exit(0); };
    (void)live_update(cur, topo, SysRoot(), u);
    ::_exit(11);
  }
  ::close(rec_pipe[1]);
  int ws = 0;
  ASSERT_EQ(::waitpid(host, &ws, 0), host);
  ASSERT_TRUE(WIFEXITED(ws));
  ASSERT_EQ(WEXITSTATUS(ws), 0) << "the first host did not reach the freeze";
  int64_t v[2] = {};
  ASSERT_EQ(::read(rec_pipe[0], v, sizeof v), static_cast<ssize_t>(sizeof v));
  ::close(rec_pipe[0]);
  RuntimeRecord successor;
  successor.pid = static_cast<int32_t>(v[0]);
  successor.start_time = static_cast<uint64_t>(v[1]);
  EXPECT_TRUE(alive(successor.pid)) << "the successor should outlive the dead host";
  // Frozen: the service holds a request until it resumes.
  ASSERT_TRUE(c.send({"GET", "k7"}));
  EXPECT_EQ(c.reply(300), "TIMEOUT");
  // The restarted host.
  auto back = adopt_instance(inst, req.root);
  ASSERT_TRUE(back) << back.error().to_string();
  run = std::move(*back);
  auto ab = abort_update(*run, successor, 5s, 77);
  ASSERT_TRUE(ab) << ab.error().to_string();
  EXPECT_FALSE(alive(successor.pid));
  EXPECT_EQ(run->pid(), old_pid);
  EXPECT_EQ(c.reply(5000), "$v7");  // answered once unfrozen
  expect_keys(c, 100);
  ASSERT_EQ(c.cmd({"SET", "k100", "v100"}), "+OK");
  expect_serving(101);
  // Aborting again (nothing frozen any more) is harmless.
  EXPECT_TRUE(abort_update(*run, successor, 2s, 77));
  auto bye = run->shutdown(500ms, 5s);
  ASSERT_TRUE(bye) << bye.error().to_string();
  EXPECT_TRUE(run->release());
  run.reset();
  ::waitpid(old_pid, &ws, 0);
}

}  // namespace
}  // namespace mk
