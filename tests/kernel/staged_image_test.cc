// Staged live update of mk-kernel (DESIGN.md §5 "staged update by core
// migration", kernel/image/staged.h): the harness plays the host of
// mkernel/src/staged_update.cc with a real old image (kv service, a listen
// device, a tenant) and a real parked successor: one scoped step per part
// (prepare with the scope bits, pre-copy for services, freeze, package out
// with pidfd_getfd, kMsgHandover, finish with kUpdateFlagPartial), parts
// handed back, refusals, a cancelled receiver, the final retire.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "host_harness.h"
#include "resp_client.h"

namespace mk::test {
namespace {

using namespace std::chrono_literals;

constexpr std::uint32_t kTenants = abi::kUpdateScopeTenants;
constexpr std::uint32_t kServices = abi::kUpdateScopeServices;
constexpr std::uint32_t kPeers = abi::kUpdateScopePeers;

std::string detail(const abi::UpdateReply& r) { return std::string(r.detail, strnlen(r.detail, sizeof r.detail)); }

bool alive(pid_t pid) { return ::kill(pid, 0) == 0; }

std::string cmdline_of(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/cmdline");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  for (auto& c : s) c = c ? c : ' ';
  return s;
}

std::unique_ptr<ImageRun> launch_old(bool kv, std::string init, std::vector<std::uint32_t> cpus = {}) {
  LaunchSpec spec;
  if (kv) spec.args = {"--services=kv"};
  spec.listen_device = kv;
  spec.init = std::move(init);
  spec.handover_socket = true;  // parts may come back to it
  spec.cpus = std::move(cpus);
  auto r = ImageRun::launch(spec);
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().to_string());
  if (!r) return nullptr;
  EXPECT_TRUE((*r)->wait_ready()) << (*r)->stderr_text() << (*r)->console();
  return std::move(*r);
}

std::unique_ptr<ImageRun> launch_new(const ImageRun& old, bool kv) {
  LaunchSpec spec;
  if (kv) spec.args = {"--services=kv"};
  spec.listen_device = kv;
  spec.successor = true;
  spec.region_fd = old.region_fd();
  auto r = ImageRun::launch(spec);
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().to_string());
  if (!r) return nullptr;
  EXPECT_TRUE((*r)->wait_ready()) << (*r)->stderr_text() << (*r)->console();
  return std::move(*r);
}

Result<abi::UpdateReply> deliver(ImageRun& to, const Handoff& h, std::uint16_t type) {
  MK_TRY(send_handoff(to.handover_fd(), h.package, h.fds));
  return to.request<abi::HandoverMsg, abi::UpdateReply>(type,
                                                        abi::HandoverMsg{1, static_cast<std::uint32_t>(h.fds.size())});
}

// Expects status 0 of a step; returns the reply (fd -1 on failure).
abi::UpdateReply ok_step(ImageRun& run, std::uint16_t type, std::uint32_t flags) {
  auto r = run.step(type, 1, 30s, flags);
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().to_string());
  if (!r) return abi::UpdateReply{-EIO, -1, 0, {}};
  EXPECT_EQ(r->status, 0) << "step 0x" << std::hex << type << std::dec << " flags 0x" << std::hex << flags << ": "
                          << detail(*r) << run.console();
  return *r;
}

int step_status(ImageRun& run, std::uint16_t type, std::uint32_t flags, std::string* why = nullptr) {
  auto r = run.step(type, 1, 30s, flags);
  EXPECT_TRUE(r.has_value());
  if (!r) return -EIO;
  if (why) *why = detail(*r);
  return r->status;
}

// One part from `from` to `to`, as staged_update.cc's hand_over does it:
// prepare (with pre-copy for services), freeze, copy out, kMsgHandover,
// finish with kUpdateFlagPartial. Returns the freeze package's fd count.
std::size_t move_part(ImageRun& from, ImageRun& to, std::uint32_t scope) {
  const std::uint32_t flags = scope | (scope == kServices ? abi::kUpdateFlagPrecopy : 0);
  const abi::UpdateReply pr = ok_step(from, abi::kMsgUpdatePrepare, flags);
  if (scope == kServices) {
    EXPECT_GE(pr.fd, 0);
    if (pr.fd < 0) return 0;
    auto pre = fetch_handoff(from.pid(), pr.fd);
    EXPECT_TRUE(pre.has_value()) << (pre ? "" : pre.error().to_string());
    if (!pre) return 0;
    auto st = deliver(to, *pre, abi::kMsgUpdatePrecopy);
    EXPECT_TRUE(st.has_value() && st->status == 0) << (st ? detail(*st) : st.error().to_string()) << to.console();
  } else {
    EXPECT_EQ(pr.fd, -1);
  }
  const abi::UpdateReply fr = ok_step(from, abi::kMsgUpdateFreeze, 0);
  EXPECT_GE(fr.fd, 0);
  if (fr.fd < 0) return 0;
  auto h = fetch_handoff(from.pid(), fr.fd);
  EXPECT_TRUE(h.has_value()) << (h ? "" : h.error().to_string());
  if (!h) return 0;
  auto rep = deliver(to, *h, abi::kMsgHandover);
  EXPECT_TRUE(rep.has_value() && rep->status == 0) << (rep ? detail(*rep) : rep.error().to_string()) << to.console();
  ok_step(from, abi::kMsgUpdateFinish, abi::kUpdateFlagPartial);
  return h->fds.size();
}

abi::StatsMsg stats(ImageRun& run) {
  auto st = run.request<abi::StatsMsg, abi::StatsMsg>(abi::kMsgStats, abi::StatsMsg{});
  EXPECT_TRUE(st.has_value());
  return st ? *st : abi::StatsMsg{};
}

// The whole staged flow: tenants, then services (pre-copy); after each step
// the old image serves what it kept; services handed back and forth; a
// tenant's exit reaches the new image through the reaper pipe while the
// old image lives; the last finish retires the old image.
TEST(MkKernelStaged, PartsMoveOneStepAtATimeAndTheOldImageServesTheRest) {
  const std::vector<std::uint32_t> all = allowed_cpus();
  auto old = launch_old(true, "sleep 1000", all.size() >= 2 ? std::vector<std::uint32_t>{all[0], all[1]}
                                                               : std::vector<std::uint32_t>{});
  ASSERT_TRUE(old);
  Client c(old->listen_port());
  ASSERT_TRUE(c.ok());
  for (int i = 0; i < 50; ++i) ASSERT_EQ(c.cmd({"SET", "k" + std::to_string(i), "v" + std::to_string(i)}), "+OK");
  std::vector<pid_t> kids;
  ASSERT_TRUE(old->serve_until([&] { return !(kids = children_of(old->pid())).empty(); }, 5s));
  const pid_t tenant = kids.front();
  auto succ = launch_new(*old, true);
  ASSERT_TRUE(succ);

  // A parked successor holds nothing: a scoped prepare is refused.
  EXPECT_EQ(step_status(*succ, abi::kMsgUpdatePrepare, kTenants), -EBUSY);

  // 1. tenants: the reaper pipe only (no device, no connection).
  EXPECT_EQ(move_part(*old, *succ, kTenants), 1u);
  EXPECT_TRUE(alive(old->pid())) << old->console();
  EXPECT_EQ(cmdline_of(old->pid()).find("--reaper="), std::string::npos);
  EXPECT_EQ(c.cmd({"GET", "k7"}), "$v7");  // kv still the old image's, same connection
  EXPECT_EQ(c.cmd({"SET", "during", "old"}), "+OK");
  EXPECT_EQ(stats(*old).tenants_running, 0u);
  EXPECT_EQ(stats(*succ).tenants_running, 1u);
  EXPECT_TRUE(alive(tenant));
  // Re-pinned to the successor's CPU (the old image runs on two).
  for (const auto& cpus : cpus_allowed_of_tasks(tenant)) EXPECT_EQ(cpus, std::to_string(instance_cpu()));
  EXPECT_NE(old->console().find("tenants handed over; holding services,peers"), std::string::npos) << old->console();
  // Back to normal: a CPU move is accepted between steps (and the new
  // image, no longer parked, accepts them too).
  if (all.size() >= 2) {
    auto rel = old->cpu_request(abi::kMsgCpuRelease, all[1]);
    ASSERT_TRUE(rel.has_value());
    EXPECT_EQ(rel->status, 0) << rel->detail;
    EXPECT_EQ(rel->changed, 1u);
    auto add = old->cpu_request(abi::kMsgCpuAdd, all[1]);
    ASSERT_TRUE(add.has_value());
    EXPECT_EQ(add->status, 0) << add->detail;
    EXPECT_EQ(add->changed, 1u);
  }
  auto held = succ->cpu_request(abi::kMsgCpuAdd, instance_cpu());
  ASSERT_TRUE(held.has_value());
  EXPECT_EQ(held->status, 0) << held->detail;

  // Parts not held: refused, nothing changes.
  std::string why;
  EXPECT_EQ(step_status(*old, abi::kMsgUpdatePrepare, kTenants, &why), -ENOENT);
  EXPECT_NE(why.find("scope not held"), std::string::npos) << why;
  EXPECT_EQ(step_status(*succ, abi::kMsgUpdatePrepare, kServices), -ENOENT);
  EXPECT_EQ(c.cmd({"GET", "during"}), "$old");

  // 2. services, with pre-copy: the same connection is the successor's.
  move_part(*old, *succ, kServices);
  EXPECT_EQ(c.cmd({"GET", "k7"}), "$v7");
  EXPECT_EQ(c.cmd({"SET", "after", "new"}), "+OK");
  EXPECT_EQ(c.cmd({"DBSIZE"}), ":52");
  EXPECT_NE(succ->console().find("restored the store in /memory@0 (51 keys)"), std::string::npos) << succ->console();
  EXPECT_TRUE(alive(old->pid()));
  EXPECT_EQ(stats(*old).memory_used_bytes, 0u);  // the store is not the old image's any more

  // An image handing a part over (frozen) receives nothing; its cancel
  // resumes that part.
  {
    const abi::UpdateReply pr = ok_step(*succ, abi::kMsgUpdatePrepare, kTenants);
    EXPECT_EQ(pr.fd, -1);
    const abi::UpdateReply fr = ok_step(*succ, abi::kMsgUpdateFreeze, 0);
    auto h = fetch_handoff(succ->pid(), fr.fd);
    ASSERT_TRUE(h.has_value());
    auto self = deliver(*succ, *h, abi::kMsgHandover);
    ASSERT_TRUE(self.has_value());
    EXPECT_EQ(self->status, -EALREADY) << detail(*self);
    ok_step(*succ, abi::kMsgUpdateCancel, 0);
    EXPECT_EQ(stats(*succ).tenants_running, 1u);
  }

  // 3. services handed back (an abort): the old image answers again on
  // the same connection, keys intact; then forward again.
  move_part(*succ, *old, kServices);
  EXPECT_EQ(c.cmd({"GET", "after"}), "$new");
  EXPECT_EQ(c.cmd({"SET", "back", "old"}), "+OK");
  EXPECT_NE(old->console().find("restored the store in /memory@0"), std::string::npos) << old->console();
  EXPECT_EQ(stats(*succ).memory_used_bytes, 0u);
  EXPECT_GT(stats(*old).memory_used_bytes, 0u);
  move_part(*old, *succ, kServices);
  EXPECT_EQ(c.cmd({"GET", "back"}), "$old");
  EXPECT_EQ(c.cmd({"DBSIZE"}), ":53");

  // The tenant's exit: the old image (alive, its parent) reaps it and
  // writes the record to the reaper pipe; the successor reports it.
  ::kill(-tenant, SIGKILL);
  ASSERT_TRUE(succ->serve_until([&] { return !succ->tenant_exits().empty(); }, 10s)) << succ->console();
  EXPECT_EQ(succ->tenant_exits()[0].pid, tenant);
  EXPECT_TRUE(WIFSIGNALED(succ->tenant_exits()[0].status));
  EXPECT_EQ(WTERMSIG(succ->tenant_exits()[0].status), SIGKILL);
  EXPECT_TRUE(old->tenant_exits().empty());
  EXPECT_TRUE(alive(old->pid()));
  EXPECT_EQ(cmdline_of(old->pid()).find("--reaper="), std::string::npos);

  // 4. no peer channel: nothing left to move; the last finish (no flag)
  // retires the old image.
  ok_step(*old, abi::kMsgUpdateFinish, 0);
  auto st = old->wait_exit(10s);
  ASSERT_TRUE(st.has_value() && WIFEXITED(*st)) << old->console();
  EXPECT_EQ(WEXITSTATUS(*st), 0);
  EXPECT_EQ(c.cmd({"GET", "k1"}), "$v1");
  auto sd = succ->request<abi::ShutdownMsg, abi::ShutdownReply>(abi::kMsgShutdown, abi::ShutdownMsg{2000, 0});
  ASSERT_TRUE(sd.has_value());
  ASSERT_TRUE(succ->wait_exit().has_value());
}

// A tenant still running when the old image retires: the reaper it execs
// keeps relaying its exit; the old image never SIGTERMs a tenant it
// handed over (its shutdown-free retire, and the successor's shutdown
// ends it).
TEST(MkKernelStaged, TheOldImageRetiresAsTheReaperOfTenantsItHandedOver) {
  auto old = launch_old(false, "sleep 1000");
  ASSERT_TRUE(old);
  std::vector<pid_t> kids;
  ASSERT_TRUE(old->serve_until([&] { return !(kids = children_of(old->pid())).empty(); }, 5s));
  const pid_t tenant = kids.front();
  auto succ = launch_new(*old, false);
  ASSERT_TRUE(succ);
  move_part(*old, *succ, kTenants);
  // Not everything moved: a retiring finish is refused.
  std::string why;
  EXPECT_EQ(step_status(*old, abi::kMsgUpdateFinish, 0, &why), -EINVAL);
  EXPECT_NE(why.find("holds services"), std::string::npos) << why;
  move_part(*old, *succ, kServices);  // no kv: the memory map only
  ok_step(*old, abi::kMsgUpdateFinish, 0);
  ASSERT_TRUE(old->serve_until([&] { return cmdline_of(old->pid()).find("--reaper=") != std::string::npos; }, 5s))
      << cmdline_of(old->pid()) << old->console();
  EXPECT_TRUE(alive(tenant));
  ::kill(-tenant, SIGKILL);
  ASSERT_TRUE(succ->serve_until([&] { return !succ->tenant_exits().empty(); }, 10s)) << succ->console();
  EXPECT_EQ(succ->tenant_exits()[0].pid, tenant);
  auto rst = old->wait_exit(10s);
  ASSERT_TRUE(rst.has_value() && WIFEXITED(*rst));
  EXPECT_EQ(WEXITSTATUS(*rst), 0);
  auto sd = succ->request<abi::ShutdownMsg, abi::ShutdownReply>(abi::kMsgShutdown, abi::ShutdownMsg{2000, 0});
  ASSERT_TRUE(sd.has_value());
  ASSERT_TRUE(succ->wait_exit().has_value());
}

// Tenants handed back: the old image adopts them again (through its own
// reaper pipe) and reports their exits to the host; the successor forgot
// them (its shutdown leaves them running).
TEST(MkKernelStaged, TenantsHandedBackAreReportedByTheOldImageAgain) {
  auto old = launch_old(false, "sleep 1000");
  ASSERT_TRUE(old);
  std::vector<pid_t> kids;
  ASSERT_TRUE(old->serve_until([&] { return !(kids = children_of(old->pid())).empty(); }, 5s));
  const pid_t tenant = kids.front();
  auto succ = launch_new(*old, false);
  ASSERT_TRUE(succ);
  move_part(*old, *succ, kTenants);
  // Receiving what it holds already: -EEXIST.
  {
    ok_step(*old, abi::kMsgUpdatePrepare, kServices);
    const abi::UpdateReply fr = ok_step(*old, abi::kMsgUpdateFreeze, 0);
    auto h = fetch_handoff(old->pid(), fr.fd);
    ASSERT_TRUE(h.has_value());
    ok_step(*old, abi::kMsgUpdateCancel, 0);
    // The old image still holds the services that package carries.
    auto again = deliver(*old, *h, abi::kMsgHandover);
    ASSERT_TRUE(again.has_value());
    EXPECT_EQ(again->status, -EEXIST) << detail(*again);
  }
  move_part(*succ, *old, kTenants);
  EXPECT_EQ(stats(*old).tenants_running, 1u);
  EXPECT_EQ(stats(*succ).tenants_running, 0u);
  auto sd = succ->request<abi::ShutdownMsg, abi::ShutdownReply>(abi::kMsgShutdown, abi::ShutdownMsg{500, 0});
  ASSERT_TRUE(sd.has_value());
  EXPECT_EQ(sd->tenants_killed, 0u);
  ASSERT_TRUE(succ->wait_exit().has_value());
  EXPECT_TRUE(alive(tenant));
  ::kill(-tenant, SIGKILL);
  ASSERT_TRUE(old->serve_until([&] { return !old->tenant_exits().empty(); }, 10s)) << old->console();
  EXPECT_EQ(old->tenant_exits()[0].pid, tenant);
  EXPECT_EQ(old->tenant_exits()[0].index, 0u);
}

// The receiver staged a pre-copy, the host's step then failed: cancel on
// both sides. The receiver drops the staged connections without shutting
// them down (the old image keeps serving them), and a later step works.
TEST(MkKernelStaged, CancelOnAReceiverDropsTheStagedPreCopy) {
  auto old = launch_old(true, "");
  ASSERT_TRUE(old);
  Client c(old->listen_port());
  ASSERT_EQ(c.cmd({"SET", "x", "1"}), "+OK");
  auto succ = launch_new(*old, true);
  ASSERT_TRUE(succ);
  const abi::UpdateReply pr = ok_step(*old, abi::kMsgUpdatePrepare, kServices | abi::kUpdateFlagPrecopy);
  ASSERT_GE(pr.fd, 0);
  auto pre = fetch_handoff(old->pid(), pr.fd);
  ASSERT_TRUE(pre.has_value());
  auto st = deliver(*succ, *pre, abi::kMsgUpdatePrecopy);
  ASSERT_TRUE(st.has_value() && st->status == 0) << (st ? detail(*st) : "");
  // The step fails (say, the freeze): both cancel.
  ok_step(*old, abi::kMsgUpdateCancel, 0);
  ok_step(*succ, abi::kMsgUpdateCancel, 0);  // parked, yet it accepts this
  EXPECT_NE(succ->console().find("staged pre-copy is dropped"), std::string::npos) << succ->console();
  EXPECT_EQ(c.cmd({"INCR", "x"}), ":2");  // not shut down by the receiver's drop
  // Still parked: CPU moves and update steps are refused as before.
  auto cpu = succ->cpu_request(abi::kMsgCpuAdd, instance_cpu());
  ASSERT_TRUE(cpu.has_value());
  EXPECT_EQ(cpu->status, -EBUSY);
  // The step again, now through.
  move_part(*old, *succ, kServices);
  EXPECT_EQ(c.cmd({"INCR", "x"}), ":3");
  EXPECT_NE(succ->console().find("restored the store"), std::string::npos) << succ->console();
}

abi::PingPeerReply ping_peer(ImageRun& run, std::uint32_t count) {
  auto r = run.request<abi::PingPeerMsg, abi::PingPeerReply>(abi::kMsgPingPeer, abi::PingPeerMsg{kPeerId, count, 64, 0});
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().to_string());
  return r ? *r : abi::PingPeerReply{-EIO, 0, 0, 0, 0, 0};
}

// The peers step alone: the old image detaches its side and stays
// detached after the partial finish; the successor attaches its side.
TEST(MkKernelStaged, ThePeersStepMovesThePeerChannelSideOnly) {
  LaunchSpec spec;
  spec.peer_channel = true;
  spec.handover_socket = true;
  spec.init = "sleep 1000";
  auto r = ImageRun::launch(spec);
  ASSERT_TRUE(r.has_value());
  auto old = std::move(*r);
  ASSERT_TRUE(old->wait_ready());
  EXPECT_EQ(ping_peer(*old, 5).done, 5u);
  LaunchSpec ss;
  ss.peer_channel = true;
  ss.peer_from = old.get();
  ss.successor = true;
  ss.region_fd = old->region_fd();
  auto s = ImageRun::launch(ss);
  ASSERT_TRUE(s.has_value()) << s.error().to_string();
  auto succ = std::move(*s);
  ASSERT_TRUE(succ->wait_ready());
  EXPECT_EQ(move_part(*old, *succ, kPeers), 0u);
  EXPECT_EQ(ping_peer(*old, 1).status, -ESHUTDOWN);  // detached, and stays so
  EXPECT_EQ(stats(*old).tenants_running, 1u);        // the rest is still the old image's
  std::atomic<bool> stop{false};
  std::thread peer([&] {
    while (!stop) old->ep().dispatch(5ms);
  });
  const auto pr = ping_peer(*succ, 10);
  stop = true;
  peer.join();
  EXPECT_EQ(pr.status, 0);
  EXPECT_EQ(pr.done, 10u);
  // With a peer channel, a retiring finish needs the peers moved: here the
  // tenants and services are still held.
  EXPECT_EQ(step_status(*old, abi::kMsgUpdateFinish, 0), -EINVAL);
  // Peers back to the old image.
  move_part(*succ, *old, kPeers);
  EXPECT_EQ(ping_peer(*succ, 1).status, -ESHUTDOWN);
  EXPECT_EQ(ping_peer(*old, 5).done, 5u);
}

}  // namespace
}  // namespace mk::test
