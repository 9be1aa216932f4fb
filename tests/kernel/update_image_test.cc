// Live update of mk-kernel, end to end: the harness plays the host (boot a
// parked successor on the same region, prepare, freeze, copy the package and
// its fds out of the old image with pidfd_getfd, send them on the handover
// socket, kMsgHandover, finish), and the rollbacks (cancel from prepared /
// frozen, refusals, fault flags). docs/sdk.md "Live update".
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <optional>
#include <span>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "handover/kho_blob.h"
#include "host_harness.h"
#include "mk/abi/handoff.h"
#include "mksdk/boot_info.h"
#include "resp_client.h"

namespace mk::test {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<ImageRun> launch_old(std::vector<std::string> args, bool listen, std::string init = "") {
  LaunchSpec spec;
  spec.args = std::move(args);
  spec.listen_device = listen;
  spec.init = std::move(init);
  auto r = ImageRun::launch(spec);
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().to_string());
  if (!r) return nullptr;
  EXPECT_TRUE((*r)->wait_ready()) << (*r)->stderr_text() << (*r)->console();
  return std::move(*r);
}

std::unique_ptr<ImageRun> launch_successor(const ImageRun& old, std::vector<std::string> args, bool listen) {
  LaunchSpec spec;
  spec.args = std::move(args);
  spec.listen_device = listen;
  spec.successor = true;
  spec.region_fd = old.region_fd();
  auto r = ImageRun::launch(spec);
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().to_string());
  return r ? std::move(*r) : nullptr;
}

std::string detail(const abi::UpdateReply& r) {
  return std::string(r.detail, strnlen(r.detail, sizeof r.detail));
}

void expect_step_ok(ImageRun& run, std::uint16_t type) {
  auto r = run.step(type);
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->status, 0) << detail(*r) << run.console();
}

// prepare + freeze of `old`; the package and fds copied out.
Handoff freeze_and_fetch(ImageRun& old) {
  expect_step_ok(old, abi::kMsgUpdatePrepare);
  auto fr = old.step(abi::kMsgUpdateFreeze);
  EXPECT_TRUE(fr.has_value());
  if (!fr) return {};
  EXPECT_EQ(fr->status, 0) << detail(*fr) << old.console();
  EXPECT_GE(fr->fd, 0);
  auto h = fetch_handoff(old.pid(), fr->fd);
  EXPECT_TRUE(h.has_value()) << (h ? "" : h.error().to_string());
  return h ? std::move(*h) : Handoff{};
}

Result<abi::UpdateReply> hand_over(ImageRun& succ, const Handoff& h, std::chrono::milliseconds timeout = 30s) {
  MK_TRY(send_handoff(succ.handover_fd(), h.package, h.fds));
  return succ.request<abi::HandoverMsg, abi::UpdateReply>(
      abi::kMsgHandover, abi::HandoverMsg{1, static_cast<std::uint32_t>(h.fds.size())}, timeout);
}

void shutdown(ImageRun& run) {
  auto rep = run.request<abi::ShutdownMsg, abi::ShutdownReply>(abi::kMsgShutdown, abi::ShutdownMsg{2000, 0});
  ASSERT_TRUE(rep.has_value()) << rep.error().to_string();
  auto st = run.wait_exit();
  ASSERT_TRUE(st.has_value() && WIFEXITED(*st));
  EXPECT_EQ(WEXITSTATUS(*st), 0) << run.stderr_text() << run.console();
}

bool alive(pid_t pid) { return ::kill(pid, 0) == 0; }

std::string cmdline_of(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/cmdline");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  for (auto& c : s) c = c ? c : ' ';
  return s;
}

TEST(MkKernelUpdate, KvConnectionAndDataSurviveTheUpdate) {
  auto old = launch_old({"--services=kv"}, true);
  ASSERT_TRUE(old);
  Client c(old->listen_port());
  ASSERT_TRUE(c.ok());
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(c.cmd({"SET", "k" + std::to_string(i), "v" + std::to_string(i)}), "+OK");
  }
  ASSERT_EQ(c.cmd({"LPUSH", "l", "a", "b"}), ":2");
  auto succ = launch_successor(*old, {"--services=kv"}, true);
  ASSERT_TRUE(succ && succ->wait_ready()) << (succ ? succ->stderr_text() + succ->console() : "");
  EXPECT_EQ(succ->ready()->tenants, 0u);
  // Parked: it answers pings but refuses update steps.
  auto parked = succ->step(abi::kMsgUpdatePrepare);
  ASSERT_TRUE(parked.has_value());
  EXPECT_EQ(parked->status, -EBUSY) << detail(*parked);

  expect_step_ok(*old, abi::kMsgUpdatePrepare);
  // Half a request, read by the old image before the freeze: it travels in
  // the connection's pending input.
  const std::string req = sdk::resp::encode_command({"GET", "k7"});
  c.send_raw(req.substr(0, 9));
  std::this_thread::sleep_for(200ms);
  auto fr = old->step(abi::kMsgUpdateFreeze);
  ASSERT_TRUE(fr.has_value());
  ASSERT_EQ(fr->status, 0) << detail(*fr) << old->console();
  auto h = fetch_handoff(old->pid(), fr->fd);
  ASSERT_TRUE(h.has_value()) << h.error().to_string();
  EXPECT_EQ(h->fds.size(), 2u);  // the listen socket, the client connection
  // The package is sealed.
  EXPECT_EQ(::fcntl(h->package, F_GET_SEALS) & (F_SEAL_WRITE | F_SEAL_SEAL), F_SEAL_WRITE | F_SEAL_SEAL);

  auto rep = hand_over(*succ, *h);
  ASSERT_TRUE(rep.has_value()) << rep.error().to_string();
  ASSERT_EQ(rep->status, 0) << detail(*rep) << succ->console();
  expect_step_ok(*old, abi::kMsgUpdateFinish);
  auto st = old->wait_exit(10s);
  ASSERT_TRUE(st.has_value() && WIFEXITED(*st)) << old->console();
  EXPECT_EQ(WEXITSTATUS(*st), 0);

  // The same connection: the rest of the request, then everything reads back.
  c.send_raw(req.substr(9));
  EXPECT_EQ(c.reply(), "$v7");
  for (int i = 0; i < 200; ++i) ASSERT_EQ(c.cmd({"GET", "k" + std::to_string(i)}), "$v" + std::to_string(i));
  EXPECT_EQ(c.cmd({"LRANGE", "l", "0", "-1"}), "*2[$b,$a]");
  EXPECT_EQ(c.cmd({"SET", "after", "1"}), "+OK");
  // The listen socket too.
  Client d(succ->listen_port() ? succ->listen_port() : old->listen_port());
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.cmd({"DBSIZE"}), ":202");
  EXPECT_NE(succ->console().find("restored the store in /memory@0 (201 keys) and 1 connections"), std::string::npos)
      << succ->console();
  // A second handover is refused: it is not parked any more.
  auto again = succ->request<abi::HandoverMsg, abi::UpdateReply>(abi::kMsgHandover, abi::HandoverMsg{2, 0});
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->status, -EALREADY);
  shutdown(*succ);
}

TEST(MkKernelUpdate, TheSuccessorCanBeUpdatedInTurn) {
  auto a = launch_old({"--services=kv"}, true);
  ASSERT_TRUE(a);
  Client c(a->listen_port());
  ASSERT_EQ(c.cmd({"SET", "gen", "1"}), "+OK");
  auto b = launch_successor(*a, {"--services=kv"}, true);
  ASSERT_TRUE(b && b->wait_ready());
  {
    Handoff h = freeze_and_fetch(*a);
    auto rep = hand_over(*b, h);
    ASSERT_TRUE(rep.has_value() && rep->status == 0) << (rep ? detail(*rep) : rep.error().to_string());
    expect_step_ok(*a, abi::kMsgUpdateFinish);
    ASSERT_TRUE(a->wait_exit(10s).has_value());
  }
  ASSERT_EQ(c.cmd({"INCR", "gen"}), ":2");
  auto c2 = launch_successor(*b, {"--services=kv"}, true);
  ASSERT_TRUE(c2 && c2->wait_ready());
  {
    Handoff h = freeze_and_fetch(*b);
    auto rep = hand_over(*c2, h);
    ASSERT_TRUE(rep.has_value() && rep->status == 0) << (rep ? detail(*rep) : rep.error().to_string());
    expect_step_ok(*b, abi::kMsgUpdateFinish);
    ASSERT_TRUE(b->wait_exit(10s).has_value());
  }
  EXPECT_EQ(c.cmd({"INCR", "gen"}), ":3");
  shutdown(*c2);
}

TEST(MkKernelUpdate, CancelFromPreparedAndFrozenKeepsServing) {
  auto old = launch_old({"--services=kv"}, true);
  ASSERT_TRUE(old);
  Client c(old->listen_port());
  ASSERT_EQ(c.cmd({"SET", "x", "1"}), "+OK");
  // Cancel from normal: nothing to do.
  expect_step_ok(*old, abi::kMsgUpdateCancel);
  // Finish without a freeze: refused.
  auto fin = old->step(abi::kMsgUpdateFinish);
  ASSERT_TRUE(fin.has_value());
  EXPECT_EQ(fin->status, -EINVAL) << detail(*fin);
  // Freeze without a prepare: refused.
  auto fz = old->step(abi::kMsgUpdateFreeze);
  ASSERT_TRUE(fz.has_value());
  EXPECT_EQ(fz->status, -EINVAL) << detail(*fz);
  EXPECT_NE(detail(*fz).find("kMsgUpdatePrepare first"), std::string::npos) << "[" << detail(*fz) << "]";

  expect_step_ok(*old, abi::kMsgUpdatePrepare);
  EXPECT_EQ(c.cmd({"INCR", "x"}), ":2");  // prepared: still serving
  expect_step_ok(*old, abi::kMsgUpdateCancel);
  EXPECT_EQ(c.cmd({"INCR", "x"}), ":3");

  expect_step_ok(*old, abi::kMsgUpdatePrepare);
  auto fr = old->step(abi::kMsgUpdateFreeze);
  ASSERT_TRUE(fr.has_value());
  ASSERT_EQ(fr->status, 0) << detail(*fr);
  // Frozen: a request waits (nothing is lost), then the cancel unfreezes.
  c.send_raw(sdk::resp::encode_command({"INCR", "x"}));
  std::this_thread::sleep_for(200ms);
  expect_step_ok(*old, abi::kMsgUpdateCancel);
  EXPECT_EQ(c.reply(), ":4");
  Client d(old->listen_port());
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.cmd({"GET", "x"}), "$4");
  // And a full update still works after the cancels.
  auto succ = launch_successor(*old, {"--services=kv"}, true);
  ASSERT_TRUE(succ && succ->wait_ready());
  Handoff h = freeze_and_fetch(*old);
  EXPECT_EQ(h.fds.size(), 3u);  // listen + two connections
  auto rep = hand_over(*succ, h);
  ASSERT_TRUE(rep.has_value() && rep->status == 0) << (rep ? detail(*rep) : rep.error().to_string());
  expect_step_ok(*old, abi::kMsgUpdateFinish);
  EXPECT_EQ(c.cmd({"INCR", "x"}), ":5");
  EXPECT_EQ(d.cmd({"INCR", "x"}), ":6");
  shutdown(*succ);
}

TEST(MkKernelUpdate, AFreezeWithTooMuchPendingOutputFailsAndKeepsServing) {
  auto old = launch_old({"--services=kv"}, true);
  ASSERT_TRUE(old);
  // An idle connection first (a lower fd: the freeze adds it to the session
  // before it meets the backed-up one, and must take it out again).
  Client idle(old->listen_port());
  ASSERT_EQ(idle.cmd({"PING"}), "+PONG");
  Client c(old->listen_port(), 65536);  // small enough to back up 15 MiB, big enough to drain in time
  ASSERT_TRUE(c.ok());
  const std::string big(5 << 20, 'Z');
  ASSERT_EQ(c.cmd({"SET", "big", big}), "+OK");
  expect_step_ok(*old, abi::kMsgUpdatePrepare);
  // One 15 MiB reply the client does not read yet: whatever the socket
  // buffers take, over the 8 MiB an update carries stays pending.
  c.send_raw(sdk::resp::encode_command({"MGET", "big", "big", "big"}));
  std::this_thread::sleep_for(300ms);
  auto fr = old->step(abi::kMsgUpdateFreeze);
  ASSERT_TRUE(fr.has_value());
  EXPECT_EQ(fr->status, -E2BIG) << detail(*fr);
  EXPECT_NE(detail(*fr).find("too much pending data"), std::string::npos) << detail(*fr);
  EXPECT_EQ(fr->fd, -1);
  // Still prepared and serving: the reply drains, the connection carries on.
  EXPECT_EQ(c.reply(), "*3[$" + big + ",$" + big + ",$" + big + "]");
  EXPECT_EQ(c.cmd({"PING"}), "+PONG");
  // Drained: the same freeze goes through now; cancel back to normal.
  auto fr2 = old->step(abi::kMsgUpdateFreeze);
  ASSERT_TRUE(fr2.has_value());
  EXPECT_EQ(fr2->status, 0) << detail(*fr2);
  expect_step_ok(*old, abi::kMsgUpdateCancel);
  EXPECT_EQ(c.cmd({"DBSIZE"}), ":1");
  EXPECT_EQ(idle.cmd({"PING"}), "+PONG");
  shutdown(*old);
}

// Builds a package with the same fd table as `h` and another blob.
Result<int> repackage(const Handoff& h, const std::vector<std::uint8_t>& blob) {
  abi::HandoffHeader hdr{};
  if (::pread(h.package, &hdr, sizeof hdr, 0) != static_cast<ssize_t>(sizeof hdr)) return errno_error("pread");
  std::vector<std::uint8_t> head(abi::handoff_blob_offset(hdr.fd_count));
  if (::pread(h.package, head.data(), head.size(), 0) != static_cast<ssize_t>(head.size())) return errno_error("pread");
  hdr.blob_bytes = blob.size();
  std::memcpy(head.data(), &hdr, sizeof hdr);
  int fd = ::memfd_create("test-package", MFD_CLOEXEC);
  if (fd < 0) return errno_error("memfd_create");
  if (::write(fd, head.data(), head.size()) != static_cast<ssize_t>(head.size()) ||
      ::write(fd, blob.data(), blob.size()) != static_cast<ssize_t>(blob.size())) {
    ::close(fd);
    return errno_error("write");
  }
  return fd;
}

std::vector<std::uint8_t> blob_of(const Handoff& h) {
  abi::HandoffHeader hdr{};
  EXPECT_EQ(::pread(h.package, &hdr, sizeof hdr, 0), static_cast<ssize_t>(sizeof hdr));
  std::vector<std::uint8_t> blob(hdr.blob_bytes);
  EXPECT_EQ(::pread(h.package, blob.data(), blob.size(), static_cast<off_t>(abi::handoff_blob_offset(hdr.fd_count))),
            static_cast<ssize_t>(blob.size()));
  return blob;
}

// A refused handover leaves the old image frozen; its cancel brings it back.
void refuse_then_cancel(ImageRun& old, ImageRun& succ, Client& c, const Handoff& h, int package, int want_status,
                        const std::string& want_detail) {
  ASSERT_TRUE(send_handoff(succ.handover_fd(), package, h.fds).has_value());
  auto rep = succ.request<abi::HandoverMsg, abi::UpdateReply>(
      abi::kMsgHandover, abi::HandoverMsg{1, static_cast<std::uint32_t>(h.fds.size())});
  ASSERT_TRUE(rep.has_value()) << rep.error().to_string();
  EXPECT_EQ(rep->status, want_status) << detail(*rep);
  EXPECT_NE(detail(*rep).find(want_detail), std::string::npos) << detail(*rep);
  // Still parked (the host kills it); the old image unfreezes.
  EXPECT_TRUE(alive(succ.pid()));
  expect_step_ok(old, abi::kMsgUpdateCancel);
  EXPECT_EQ(c.cmd({"GET", "x"}), "$1");
}

TEST(MkKernelUpdate, ACorruptPackageIsRefused) {
  auto old = launch_old({"--services=kv"}, true);
  ASSERT_TRUE(old);
  Client c(old->listen_port());
  ASSERT_EQ(c.cmd({"SET", "x", "1"}), "+OK");
  auto succ = launch_successor(*old, {"--services=kv"}, true);
  ASSERT_TRUE(succ && succ->wait_ready());
  Handoff h = freeze_and_fetch(*old);
  std::vector<std::uint8_t> blob = blob_of(h);
  for (std::size_t i = 40; i < blob.size(); i += 13) blob[i] ^= 0x5a;
  auto bad = repackage(h, blob);
  ASSERT_TRUE(bad.has_value());
  refuse_then_cancel(*old, *succ, c, h, *bad, -EBADMSG, "");
  ::close(*bad);
}

// Prepare with kUpdateFlagPrecopy, copy the pre-copy package out of `old`,
// send it to `succ` and have it staged (kMsgUpdatePrecopy).
Handoff prepare_and_stage(ImageRun& old, ImageRun& succ) {
  auto pr = old.step(abi::kMsgUpdatePrepare, 1, 30s, abi::kUpdateFlagPrecopy);
  EXPECT_TRUE(pr.has_value() && pr->status == 0 && pr->fd >= 0) << (pr ? detail(*pr) : pr.error().to_string());
  if (!pr || pr->fd < 0) return {};
  auto pre = fetch_handoff(old.pid(), pr->fd);
  EXPECT_TRUE(pre.has_value()) << (pre ? "" : pre.error().to_string());
  if (!pre) return {};
  EXPECT_TRUE(send_handoff(succ.handover_fd(), pre->package, pre->fds).has_value());
  auto staged = succ.request<abi::HandoverMsg, abi::UpdateReply>(
      abi::kMsgUpdatePrecopy, abi::HandoverMsg{1, static_cast<std::uint32_t>(pre->fds.size())});
  EXPECT_TRUE(staged.has_value() && staged->status == 0) << (staged ? detail(*staged) : "") << succ.console();
  return std::move(*pre);
}

// Pre-copy (kUpdateFlagPrecopy): prepare replies with a package of what it
// preserved; the successor stages it; the freeze package carries only the
// connection accepted since; the client of each keeps its connection.
TEST(MkKernelUpdate, PreCopyThenFreezeHandsOverOnlyTheDelta) {
  auto old = launch_old({"--services=kv"}, true);
  ASSERT_TRUE(old);
  Client early(old->listen_port());
  ASSERT_EQ(early.cmd({"SET", "x", "1"}), "+OK");
  auto succ = launch_successor(*old, {"--services=kv"}, true);
  ASSERT_TRUE(succ && succ->wait_ready());
  // Not for an image that is not parked.
  auto wrong = old->request<abi::HandoverMsg, abi::UpdateReply>(abi::kMsgUpdatePrecopy, abi::HandoverMsg{1, 0});
  ASSERT_TRUE(wrong.has_value());
  EXPECT_EQ(wrong->status, -EALREADY) << detail(*wrong);
  Handoff pre = prepare_and_stage(*old, *succ);
  EXPECT_EQ(pre.fds.size(), 2u);  // the listen socket and `early`
  // Twice: refused, the first stays staged.
  auto twice = succ->request<abi::HandoverMsg, abi::UpdateReply>(abi::kMsgUpdatePrecopy, abi::HandoverMsg{1, 0});
  ASSERT_TRUE(twice.has_value());
  EXPECT_EQ(twice->status, -EALREADY) << detail(*twice);
  // Still serving; a client arrives between pre-copy and freeze.
  EXPECT_EQ(early.cmd({"INCR", "x"}), ":2");
  Client late(old->listen_port());
  ASSERT_EQ(late.cmd({"SET", "y", "late"}), "+OK");
  auto fr = old->step(abi::kMsgUpdateFreeze);
  ASSERT_TRUE(fr.has_value());
  ASSERT_EQ(fr->status, 0) << detail(*fr);
  auto h = fetch_handoff(old->pid(), fr->fd);
  ASSERT_TRUE(h.has_value()) << h.error().to_string();
  EXPECT_EQ(h->fds.size(), 1u);  // `late` only
  auto rep = hand_over(*succ, *h);
  ASSERT_TRUE(rep.has_value()) << rep.error().to_string();
  ASSERT_EQ(rep->status, 0) << detail(*rep) << succ->console();
  expect_step_ok(*old, abi::kMsgUpdateFinish);
  EXPECT_EQ(early.cmd({"GET", "y"}), "$late");
  EXPECT_EQ(late.cmd({"INCR", "x"}), ":3");
  EXPECT_NE(succ->console().find("2 connections (1 pre-copied)"), std::string::npos) << succ->console();
  shutdown(*succ);
}

// A freeze package that repeats a pre-copied token is refused; the old
// image is cancelled back into service.
TEST(MkKernelUpdate, ATokenBothPreCopiedAndInTheFreezePackageIsRefused) {
  auto old = launch_old({"--services=kv"}, true);
  ASSERT_TRUE(old);
  Client c(old->listen_port());
  ASSERT_EQ(c.cmd({"SET", "x", "1"}), "+OK");
  auto succ = launch_successor(*old, {"--services=kv"}, true);
  ASSERT_TRUE(succ && succ->wait_ready());
  Handoff pre_h = prepare_and_stage(*old, *succ);
  const Handoff* pre = &pre_h;
  auto fr = old->step(abi::kMsgUpdateFreeze);
  ASSERT_TRUE(fr.has_value() && fr->status == 0);
  // Hand over the pre-copy's package again as the freeze's: every token twice.
  Handoff again;
  again.package = ::dup(pre->package);
  for (int f : pre->fds) again.fds.push_back(::dup(f));
  auto parsed = handover::parse_kho_blob(blob_of(*pre));
  ASSERT_TRUE(parsed.has_value());
  auto frozen = handover::parse_kho_blob(blob_of(*fetch_handoff(old->pid(), fr->fd)));
  ASSERT_TRUE(frozen.has_value());
  for (auto& s : frozen->subsystems) {
    if (s.name != "mk-kernel") parsed->subsystems.push_back(s);  // memory, tenants, kv of the freeze
  }
  auto bytes = handover::emit_kho_blob(*parsed);
  ASSERT_TRUE(bytes.has_value());
  auto pkg = repackage(again, *bytes);
  ASSERT_TRUE(pkg.has_value());
  ASSERT_TRUE(send_handoff(succ->handover_fd(), *pkg, again.fds).has_value());
  auto rep = succ->request<abi::HandoverMsg, abi::UpdateReply>(
      abi::kMsgHandover, abi::HandoverMsg{1, static_cast<std::uint32_t>(again.fds.size())});
  ASSERT_TRUE(rep.has_value());
  EXPECT_EQ(rep->status, -EINVAL) << detail(*rep);
  EXPECT_NE(detail(*rep).find("token sent twice"), std::string::npos) << detail(*rep);
  ::close(*pkg);
  expect_step_ok(*old, abi::kMsgUpdateCancel);
  EXPECT_EQ(c.cmd({"INCR", "x"}), ":2");
  shutdown(*old);
}

TEST(MkKernelUpdate, ANewerKvSchemaIsRefused) {
  auto old = launch_old({"--services=kv"}, true);
  ASSERT_TRUE(old);
  Client c(old->listen_port());
  ASSERT_EQ(c.cmd({"SET", "x", "1"}), "+OK");
  auto succ = launch_successor(*old, {"--services=kv"}, true);
  ASSERT_TRUE(succ && succ->wait_ready());
  Handoff h = freeze_and_fetch(*old);
  auto parsed = handover::parse_kho_blob(blob_of(h));
  ASSERT_TRUE(parsed.has_value()) << parsed.error().to_string();
  bool found = false;
  for (auto& s : parsed->subsystems) {
    if (s.name == "kv") {
      EXPECT_EQ(s.compatible, "mkernel,kv-v2");
      s.compatible = "mkernel,kv-v3";
      found = true;
    }
  }
  ASSERT_TRUE(found);
  auto bytes = handover::emit_kho_blob(*parsed);
  ASSERT_TRUE(bytes.has_value());
  auto pkg = repackage(h, *bytes);
  ASSERT_TRUE(pkg.has_value());
  refuse_then_cancel(*old, *succ, c, h, *pkg, -EPROTONOSUPPORT, "kv");
  ::close(*pkg);
}

// Each handler's refusal on the successor, from a blob changed in transit;
// the old image is cancelled back into service every time.
struct BlobCase {
  const char* name;
  void (*mutate)(handover::KhoBlob&);
  int status;
  const char* detail;
};

handover::Subsystem* sub(handover::KhoBlob& b, std::string_view name) {
  for (auto& s : b.subsystems) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

class BlobRefusal : public ::testing::TestWithParam<BlobCase> {};

TEST_P(BlobRefusal, TheSuccessorRefusesAndTheOldImageResumes) {
  auto old = launch_old({"--services=kv"}, true, "sleep 1000");
  ASSERT_TRUE(old);
  Client c(old->listen_port());
  ASSERT_EQ(c.cmd({"SET", "x", "1"}), "+OK");
  auto succ = launch_successor(*old, {"--services=kv"}, true);
  ASSERT_TRUE(succ && succ->wait_ready());
  Handoff h = freeze_and_fetch(*old);
  auto parsed = handover::parse_kho_blob(blob_of(h));
  ASSERT_TRUE(parsed.has_value());
  GetParam().mutate(*parsed);
  auto bytes = handover::emit_kho_blob(*parsed);
  ASSERT_TRUE(bytes.has_value()) << bytes.error().to_string();
  auto pkg = repackage(h, *bytes);
  ASSERT_TRUE(pkg.has_value());
  refuse_then_cancel(*old, *succ, c, h, *pkg, GetParam().status, GetParam().detail);
  ::close(*pkg);
  EXPECT_EQ(old->serve_until([&] { return false; }, 100ms), false);
  EXPECT_TRUE(old->tenant_exits().empty());  // the tenant is still the old image's
  shutdown(*old);
  EXPECT_EQ(old->tenant_exits().size(), 1u);  // reaped again after the cancel
}

INSTANTIATE_TEST_SUITE_P(
    Handlers, BlobRefusal,
    ::testing::Values(
        BlobCase{"FilesV2", [](handover::KhoBlob& b) { sub(b, "mk-kernel")->compatible = "mkernel,files-v2"; },
                 -EPROTONOSUPPORT, "files"},
        BlobCase{"NoMemory", [](handover::KhoBlob& b) { std::erase_if(b.subsystems, [](auto& s) { return s.name == "memory"; }); },
                 -ENOENT, "memory"},
        BlobCase{"MemoryOutsideTheRegion",
                 [](handover::KhoBlob& b) {
                   sub(b, "memory")->children.front().properties[2] = handover::KhoProperty::u64("pages", 1u << 20);
                 },
                 -EINVAL, "reserve"},
        BlobCase{"TenantsV9", [](handover::KhoBlob& b) { sub(b, "tenants")->compatible = "mkernel,tenants-v9"; },
                 -EPROTONOSUPPORT, "tenants"},
        BlobCase{"TenantNotThroughTheReaper",
                 [](handover::KhoBlob& b) {
                   for (auto& p : sub(b, "tenants")->children.front().properties) {
                     if (p.name == "reaper") p = handover::KhoProperty::u32("reaper", 0);
                   }
                 },
                 -EINVAL, "would not reach"},
        BlobCase{"KvNoIds",
                 [](handover::KhoBlob& b) {
                   std::erase_if(sub(b, "kv")->properties, [](auto& p) { return p.name == "ids"; });
                 },
                 -EINVAL, "/kv/ids"},
        BlobCase{"KvIdsNotU32s",
                 [](handover::KhoBlob& b) {
                   for (auto& p : sub(b, "kv")->properties) {
                     if (p.name == "ids") p.value.push_back(7);
                   }
                 },
                 -EINVAL, "/kv/ids"},
        BlobCase{"KvIdTwice",
                 [](handover::KhoBlob& b) {
                   for (auto& p : sub(b, "kv")->properties) {
                     if (p.name == "ids") p.value.insert(p.value.end(), p.value.begin(), p.value.end());
                   }
                 },
                 -EINVAL, "kv id listed twice"},
        BlobCase{"KvRecordForAnIdNotListed",
                 [](handover::KhoBlob& b) {
                   const std::uint8_t nothing[1] = {0};
                   sub(b, "kv")->children.push_back(handover::KhoNode{
                       "conn@fffe",
                       {handover::KhoProperty::u32("id", 0xfffe),
                        handover::KhoProperty::bytes("in", std::span<const std::uint8_t>(nothing, 0)),
                        handover::KhoProperty::bytes("out", std::span<const std::uint8_t>(nothing, 0)),
                        handover::KhoProperty::u32("closing", 1)},
                       {}});
                 },
                 -EINVAL, "for an id not listed"},
        BlobCase{"KvLiveIdWithoutItsFd",
                 [](handover::KhoBlob& b) {
                   for (auto& p : sub(b, "kv")->properties) {
                     if (p.name == "ids") p.value.insert(p.value.end(), {0x00, 0x00, 0xff, 0xfe});
                   }
                 },
                 -ENOENT, "session 'mk-kernel'"},
        BlobCase{"KvStoreElsewhere",
                 [](handover::KhoBlob& b) { sub(b, "kv")->properties[2] = handover::KhoProperty::u64("bytes", 4096); },
                 -EINVAL, "not where"}),
    [](const ::testing::TestParamInfo<BlobCase>& i) { return std::string(i.param.name); });

TEST(MkKernelUpdate, ASuccessorWithoutKvRefusesAKvBlob) {
  auto old = launch_old({"--services=kv"}, true);
  ASSERT_TRUE(old);
  Client c(old->listen_port());
  ASSERT_EQ(c.cmd({"SET", "x", "1"}), "+OK");
  auto succ = launch_successor(*old, {}, true);
  ASSERT_TRUE(succ && succ->wait_ready());
  Handoff h = freeze_and_fetch(*old);
  refuse_then_cancel(*old, *succ, c, h, h.package, -EINVAL, "--services=kv");
}

TEST(MkKernelUpdate, ADeviceThatCannotTravelRefusesThePrepareEveryTime) {
  LaunchSpec spec;
  spec.init = "sleep 1000";      // the tenants handler adds the reaper pipe first
  spec.file_device = "/tmp";  // a directory: not preservable
  auto r = ImageRun::launch(spec);
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  auto old = std::move(*r);
  ASSERT_TRUE(old->wait_ready()) << old->stderr_text() << old->console();
  for (int i = 0; i < 2; ++i) {  // nothing stale from the first refusal
    auto rep = old->step(abi::kMsgUpdatePrepare);
    ASSERT_TRUE(rep.has_value());
    EXPECT_EQ(rep->status, -ENOENT) << i << ": " << detail(*rep);
    EXPECT_NE(detail(*rep).find("/devices/f"), std::string::npos) << detail(*rep);
  }
  auto fz = old->step(abi::kMsgUpdateFreeze);  // still normal
  ASSERT_TRUE(fz.has_value());
  EXPECT_EQ(fz->status, -EINVAL);
  shutdown(*old);
  EXPECT_EQ(old->tenant_exits().size(), 1u);
}

TEST(MkKernelUpdate, AnImageWithoutUpdateSupportSaysSo) {
  LaunchSpec spec;
  spec.image = "mk-hello";
  auto r = ImageRun::launch(spec);
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE((*r)->wait_ready());
  auto rep = (*r)->step(abi::kMsgUpdatePrepare);
  ASSERT_TRUE(rep.has_value());
  EXPECT_EQ(rep->status, -EOPNOTSUPP);
  EXPECT_EQ(detail(*rep), "this image does not support live update");
  auto ho = (*r)->request<abi::HandoverMsg, abi::UpdateReply>(abi::kMsgHandover, abi::HandoverMsg{1, 0});
  ASSERT_TRUE(ho.has_value());
  EXPECT_EQ(ho->status, -EOPNOTSUPP);
}

TEST(MkKernelUpdate, AnFdCountMismatchIsRefused) {
  auto old = launch_old({"--services=kv"}, true);
  ASSERT_TRUE(old);
  Client c(old->listen_port());
  ASSERT_EQ(c.cmd({"SET", "x", "1"}), "+OK");
  auto succ = launch_successor(*old, {"--services=kv"}, true);
  ASSERT_TRUE(succ && succ->wait_ready());
  Handoff h = freeze_and_fetch(*old);
  ASSERT_EQ(h.fds.size(), 2u);
  // One fd fewer than the package lists (and announced so).
  std::vector<int> fewer = {h.fds[0]};
  ASSERT_TRUE(send_handoff(succ->handover_fd(), h.package, fewer).has_value());
  auto rep = succ->request<abi::HandoverMsg, abi::UpdateReply>(abi::kMsgHandover, abi::HandoverMsg{1, 1});
  ASSERT_TRUE(rep.has_value());
  EXPECT_EQ(rep->status, -EPROTO) << detail(*rep);
  EXPECT_NE(detail(*rep).find("fd count mismatch"), std::string::npos) << detail(*rep);
  expect_step_ok(*old, abi::kMsgUpdateCancel);
  EXPECT_EQ(c.cmd({"GET", "x"}), "$1");
}

TEST(MkKernelUpdate, ATenantSurvivesAndIsReportedByTheSuccessor) {
  auto old = launch_old({}, false, "sleep 1000");
  ASSERT_TRUE(old);
  std::vector<pid_t> kids;
  ASSERT_TRUE(old->serve_until([&] { return !(kids = children_of(old->pid())).empty(); }, 5s));
  const pid_t tenant = kids.front();
  auto succ = launch_successor(*old, {}, false);
  ASSERT_TRUE(succ && succ->wait_ready());
  Handoff h = freeze_and_fetch(*old);
  EXPECT_EQ(h.fds.size(), 1u);  // the reaper pipe's read end
  auto rep = hand_over(*succ, h);
  ASSERT_TRUE(rep.has_value() && rep->status == 0) << (rep ? detail(*rep) : rep.error().to_string()) << succ->console();
  expect_step_ok(*old, abi::kMsgUpdateFinish);
  // The old image became the reaper (same pid, still the tenant's parent).
  ASSERT_TRUE(old->serve_until([&] { return cmdline_of(old->pid()).find("--reaper=") != std::string::npos; }, 5s))
      << cmdline_of(old->pid()) << old->console();
  EXPECT_TRUE(alive(tenant));
  auto st = succ->request<abi::StatsMsg, abi::StatsMsg>(abi::kMsgStats, abi::StatsMsg{});
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->tenants_running, 1u);
  ::kill(-tenant, SIGKILL);
  ASSERT_TRUE(succ->serve_until([&] { return !succ->tenant_exits().empty(); }, 10s)) << succ->console();
  EXPECT_EQ(succ->tenant_exits()[0].pid, tenant);
  EXPECT_TRUE(WIFSIGNALED(succ->tenant_exits()[0].status));
  EXPECT_EQ(WTERMSIG(succ->tenant_exits()[0].status), SIGKILL);
  EXPECT_EQ(succ->tenant_exits()[0].index, 0u);
  // No children left and not PID 1: the reaper exits 0.
  auto rst = old->wait_exit(10s);
  ASSERT_TRUE(rst.has_value() && WIFEXITED(*rst));
  EXPECT_EQ(WEXITSTATUS(*rst), 0);
  shutdown(*succ);
}

TEST(MkKernelUpdate, TheSuccessorsShutdownEndsAdoptedTenants) {
  auto old = launch_old({}, false, "sleep 1000");
  ASSERT_TRUE(old);
  std::vector<pid_t> kids;
  ASSERT_TRUE(old->serve_until([&] { return !(kids = children_of(old->pid())).empty(); }, 5s));
  const pid_t tenant = kids.front();
  auto succ = launch_successor(*old, {}, false);
  ASSERT_TRUE(succ && succ->wait_ready());
  Handoff h = freeze_and_fetch(*old);
  auto rep = hand_over(*succ, h);
  ASSERT_TRUE(rep.has_value() && rep->status == 0);
  expect_step_ok(*old, abi::kMsgUpdateFinish);
  ASSERT_TRUE(old->serve_until([&] { return cmdline_of(old->pid()).find("--reaper=") != std::string::npos; }, 5s));
  auto sd = succ->request<abi::ShutdownMsg, abi::ShutdownReply>(abi::kMsgShutdown, abi::ShutdownMsg{2000, 0});
  ASSERT_TRUE(sd.has_value());
  EXPECT_EQ(sd->status, 0);
  EXPECT_EQ(sd->tenants_killed, 0u);  // sh ends on SIGTERM
  ASSERT_TRUE(succ->serve_until([&] { return !succ->tenant_exits().empty(); }, 5s));
  EXPECT_EQ(succ->tenant_exits()[0].pid, tenant);
  EXPECT_TRUE(WIFSIGNALED(succ->tenant_exits()[0].status));
  EXPECT_EQ(WTERMSIG(succ->tenant_exits()[0].status), SIGTERM);
  auto st = succ->wait_exit();
  ASSERT_TRUE(st.has_value() && WIFEXITED(*st));
  EXPECT_EQ(WEXITSTATUS(*st), 0);
  auto rst = old->wait_exit(10s);
  ASSERT_TRUE(rst.has_value() && WIFEXITED(*rst));
  EXPECT_FALSE(alive(tenant));
}

abi::PingPeerReply ping_peer(ImageRun& run, std::uint32_t count) {
  auto r = run.request<abi::PingPeerMsg, abi::PingPeerReply>(abi::kMsgPingPeer, abi::PingPeerMsg{kPeerId, count, 64, 0});
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().to_string());
  return r ? *r : abi::PingPeerReply{-EIO, 0, 0, 0, 0, 0};
}

TEST(MkKernelUpdate, PeerChannelIsDetachedAndTakenOverWithoutLosingMessages) {
  LaunchSpec spec;
  spec.peer_channel = true;
  auto r = ImageRun::launch(spec);
  ASSERT_TRUE(r.has_value());
  auto old = std::move(*r);
  ASSERT_TRUE(old->wait_ready());
  EXPECT_EQ(ping_peer(*old, 20).done, 20u);
  // Frozen: the peer side is detached (PingPeer says so); cancel re-attaches.
  Handoff h0 = freeze_and_fetch(*old);
  EXPECT_EQ(ping_peer(*old, 1).status, -ESHUTDOWN);
  expect_step_ok(*old, abi::kMsgUpdateCancel);
  EXPECT_EQ(ping_peer(*old, 20).done, 20u);

  LaunchSpec ss;
  ss.peer_channel = true;
  ss.peer_from = old.get();
  ss.successor = true;
  ss.region_fd = old->region_fd();
  auto s = ImageRun::launch(ss);
  ASSERT_TRUE(s.has_value()) << s.error().to_string();
  auto succ = std::move(*s);
  ASSERT_TRUE(succ->wait_ready());
  EXPECT_EQ(ping_peer(*succ, 1).status, -ESHUTDOWN);  // parked: not attached yet
  Handoff h = freeze_and_fetch(*old);
  // The peer (played by the harness, in the old run's endpoint) pings while
  // nobody holds the image's side: the message waits in the ring.
  const std::string payload = "left in the ring";
  std::optional<std::string> echoed;
  ASSERT_TRUE(old->ep()
                  .request_async(kPeerId, abi::kMsgPing, std::as_bytes(std::span(payload)), 30s,
                                 [&](Result<std::span<const std::byte>> rep) {
                                   if (rep) echoed = std::string(reinterpret_cast<const char*>(rep->data()), rep->size());
                                 })
                  .has_value());
  auto rep = hand_over(*succ, h);
  ASSERT_TRUE(rep.has_value() && rep->status == 0) << (rep ? detail(*rep) : rep.error().to_string());
  expect_step_ok(*old, abi::kMsgUpdateFinish);
  ASSERT_TRUE(old->wait_exit(10s).has_value());
  // The successor took the side over and answered the ping left in the ring.
  ASSERT_TRUE(old->serve_until([&] { return echoed.has_value(); }, 10s));
  EXPECT_EQ(*echoed, payload);
  // Its own pings to the peer: the harness's end lives in the old run's
  // endpoint, served by a thread meanwhile.
  std::atomic<bool> stop{false};
  std::thread peer([&] {
    while (!stop) old->ep().dispatch(5ms);
  });
  const auto pr = ping_peer(*succ, 20);
  stop = true;
  peer.join();
  EXPECT_EQ(pr.status, 0);
  EXPECT_EQ(pr.done, 20u);
  shutdown(*succ);
}

// ---- fault flags ----

TEST(MkKernelUpdate, FaultExitAtBoot) {
  auto old = launch_old({}, false);
  ASSERT_TRUE(old);
  auto succ = launch_successor(*old, {"--fault=exit-at-boot"}, false);
  ASSERT_TRUE(succ);
  auto st = succ->wait_exit();
  ASSERT_TRUE(st.has_value() && WIFEXITED(*st));
  EXPECT_EQ(WEXITSTATUS(*st), 1);
  EXPECT_FALSE(succ->ready().has_value());
  // Without a handover socket the flag does nothing.
  auto plain = launch_old({"--fault=exit-at-boot"}, false);
  ASSERT_TRUE(plain && plain->ready().has_value());
  shutdown(*plain);
  shutdown(*old);
}

TEST(MkKernelUpdate, FaultRefuseAndHangAtHandover) {
  auto old = launch_old({}, false);
  ASSERT_TRUE(old);
  auto refuse = launch_successor(*old, {"--fault=refuse-handover"}, false);
  ASSERT_TRUE(refuse && refuse->wait_ready());
  Handoff h = freeze_and_fetch(*old);
  auto rep = hand_over(*refuse, h);
  ASSERT_TRUE(rep.has_value());
  EXPECT_EQ(rep->status, -EPROTONOSUPPORT);
  EXPECT_EQ(detail(*rep), "refused by --fault");
  auto hang = launch_successor(*old, {"--fault=hang-at-handover"}, false);
  ASSERT_TRUE(hang && hang->wait_ready());
  auto none = hand_over(*hang, h, 1s);
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().code(), ETIMEDOUT);
  EXPECT_TRUE(alive(hang->pid()));
  expect_step_ok(*old, abi::kMsgUpdateCancel);
  shutdown(*old);
}

TEST(MkKernelUpdate, FaultDieInPrepare) {
  auto old = launch_old({"--fault=die-in-prepare"}, false);
  ASSERT_TRUE(old);
  auto r = old->step(abi::kMsgUpdatePrepare, 1, 3s);
  EXPECT_FALSE(r.has_value());
  auto st = old->wait_exit(10s);
  ASSERT_TRUE(st.has_value() && WIFEXITED(*st));
  EXPECT_EQ(WEXITSTATUS(*st), 1);
}

TEST(MkKernelUpdate, UnknownFaultIsAUsageError) {
  LaunchSpec spec;
  spec.args = {"--fault=explode"};
  auto run = ImageRun::launch(spec);
  ASSERT_TRUE(run.has_value());
  auto st = (*run)->wait_exit();
  ASSERT_TRUE(st.has_value() && WIFEXITED(*st));
  EXPECT_EQ(WEXITSTATUS(*st), sdk::exit_code::kUsage);
}

// ---- reaper mode alone ----

TEST(MkKernelReaper, ReportsEveryChildThenExits) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  const std::string image = std::string(MK_BIN_DIR) + "/mk-kernel";
  pid_t reaper = ::fork();
  ASSERT_GE(reaper, 0);
  if (reaper == 0) {
    // Two children that the exec'ed reaper inherits.
    if (::fork() == 0) ::_exit(7);
    if (::fork() == 0) {
      ::usleep(200'000);
      ::raise(SIGTERM);
      ::_exit(0);
    }
    ::dup2(p[1], 9);  // no CLOEXEC on 9
    std::string arg = "--reaper=9";
    char* argv[] = {const_cast<char*>("mk-kernel"), arg.data(), nullptr};
    ::execv(image.c_str(), argv);
    ::_exit(127);
  }
  ::close(p[1]);
  std::vector<abi::TenantExitMsg> recs;
  abi::TenantExitMsg m{};
  while (::read(p[0], &m, sizeof m) == static_cast<ssize_t>(sizeof m)) recs.push_back(m);
  ::close(p[0]);
  int st = 0;
  ASSERT_EQ(::waitpid(reaper, &st, 0), reaper);
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0);
  ASSERT_EQ(recs.size(), 2u);
  int exited7 = 0, termed = 0;
  for (const auto& r : recs) {
    EXPECT_EQ(r.index, 0u);
    exited7 += WIFEXITED(r.status) && WEXITSTATUS(r.status) == 7;
    termed += WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGTERM;
  }
  EXPECT_EQ(exited7, 1);
  EXPECT_EQ(termed, 1);
}

TEST(MkKernelReaper, ABadFdIsRefused) {
  const std::string image = std::string(MK_BIN_DIR) + "/mk-kernel";
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(40);
    char* argv[] = {const_cast<char*>("mk-kernel"), const_cast<char*>("--reaper=40"), nullptr};
    ::execv(image.c_str(), argv);
    ::_exit(127);
  }
  int st = 0;
  ASSERT_EQ(::waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 2);
}

}  // namespace
}  // namespace mk::test
