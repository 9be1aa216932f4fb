// The host's side of an in-place live update (see live_update.h).
#include "mkernel/live_update.h"
#include "mkernel/fault.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include "handover/kho_blob.h"
#include "ipi/fd_passing.h"
#include "mkernel/process_identity.h"
#include "update_access.h"
#include "update_step.h"

namespace mk {

namespace {

using update_step::Clock;
using update_step::getfd;
using update_step::HostOffInstance;
using update_step::is_namespace_init;
using update_step::ms_since;
using update_step::old_step;
using update_step::pidfd_gone;
using update_step::runs_reaper;
using update_step::step;

// Runs `f` unless MKERNEL_FAULT fails the update step `name` first
// (mkernel/fault.h): the injected error takes the step's own failure path.
template <class F>
auto at_point(std::string_view name, F&& f) -> decltype(f()) {
  if (auto p = fault::point("update", name); !p) return p.error();
  return f();
}

uint64_t preserved_bytes_of(std::span<const uint8_t> blob, Error* why) {
  auto parsed = handover::parse_kho_blob(blob);
  if (!parsed) {
    *why = parsed.error();
    return 0;
  }
  uint64_t n = 0;
  for (const auto& r : parsed->memory) n += r.length;
  return n;
}

}  // namespace

namespace {

// One update in progress: what the host holds between the steps.
struct Update {
  std::unique_ptr<RunningInstance>& current;
  const Topology& topo;
  const SysRoot& root;
  const UpdateRequest& req;
  UpdateOutcome out;
  OwnedFd console_write;  // a copy of the console pipe's write end
  std::optional<Successor> next;
  std::optional<HandoffPackage> pkg;  // once the freeze completed
  OwnedFd pkg_fd;                     // the old image's package memfd (copied)
  std::vector<OwnedFd> held;          // the fds it lists (copied)
  // The pre-copy (prepare's package, kUpdateFlagPrecopy) and its fds.
  std::optional<HandoffPackage> pre;
  OwnedFd pre_fd;
  std::vector<OwnedFd> pre_held;
  UpdateAccess::Init init;            // the reaper, between two handles
  Clock::time_point freeze_sent{};
  bool in_blackout = false;  // freeze sent, restore not answered yet
  bool spin = false;         // the host waits for blackout replies spinning
  std::size_t reported = 0;  // out.phases already given to on_phase

  ~Update() {
    // Nothing took the reaper (the instance could not be kept running).
    if (init) {
      (void)::syscall(SYS_pidfd_send_signal, init.pidfd.get(), SIGKILL, nullptr, 0);
      (void)pidfd_gone(init.pidfd.get(), 5000);  // bounded (see RunningInstance::kill)
      if (init.child) {
        int st = 0;
        while (::waitpid(init.pid, &st, WNOHANG) < 0 && errno == EINTR) {
        }
      }
    }
  }

  void phase(const char* name, Clock::time_point t0, std::optional<uint64_t> image_ns = std::nullopt) {
    const double ms = ms_since(t0);
    std::optional<double> image_ms;
    if (image_ns) image_ms = static_cast<double>(*image_ns) / 1e6;
    out.phases.push_back({name, ms, image_ms});
    // Inside the blackout the progress callback (a write to the client's
    // socket in mkerneld) waits until the successor answered.
    if (!in_blackout) report();
  }

  void set_state(std::string_view st) {
    if (req.on_state) req.on_state(st);
  }

  // Between dispatches of a step started at `t0`: the caller's on_wait
  // once the step took wait_hook_after (see UpdateRequest).
  std::function<void()> waiter(Clock::time_point t0, bool watch_successor) {
    return [this, t0, watch_successor] {
      if (watch_successor) (void)successor_gone();
      if (req.on_wait && Clock::now() - t0 >= req.wait_hook_after) req.on_wait();
    };
  }

  void report() {
    for (; reported < out.phases.size(); ++reported) {
      if (req.on_phase) req.on_phase(out.phases[reported].phase, out.phases[reported].ms);
    }
  }

  bool old_alive() const { return current && !current->exited() && !pidfd_gone(current->pidfd(), 0); }

  // While the old image works on a step: reap the successor the moment it
  // exits. It is our child; unreaped, it would keep a dying PID 1 of the
  // namespace (the old image) from finishing its exit, and so the step from
  // failing before its timeout.
  bool successor_gone() {
    if (!next || !next->run) return false;
    if (!next->run->exited()) (void)next->run->wait_exit(std::chrono::milliseconds(0));
    return next->run->exited();
  }

  // A request to the old image while the successor is parked; a successor
  // that died meanwhile fails the step too.
  Result<abi::UpdateReply> old_request(uint16_t type, const char* name, uint32_t flags = 0) {
    auto r = old_step(*current, type, name, req.update_id, req.timeout, waiter(Clock::now(), true), flags,
                      type == abi::kMsgUpdateFreeze && spin);
    if (r && successor_gone()) {
      return MK_FAIL(ECHILD, "successor exited", "the parked successor exited during %s", name);
    }
    return r;
  }

  void kill_successor() {
    if (next && next->run) {
      next->run->kill();
      next.reset();
    }
  }

  // Copies a package the old image wrote, and every fd it lists, out of
  // it: the package's memfd into `pkg_out`, the fds into `fds_out`.
  Result<HandoffPackage> take_package(int fd_in_old, OwnedFd& pkg_out, std::vector<OwnedFd>& fds_out) {
    RunningInstance& old = *current;
    MK_TRY_ASSIGN(pkg_out, getfd(old.pidfd(), fd_in_old, "handoff package"));
    MK_TRY_ASSIGN(HandoffPackage p, read_handoff_package(pkg_out.get(), req.update_id));
    for (int32_t src : p.source_fds) {
      MK_TRY_ASSIGN(OwnedFd f, getfd(old.pidfd(), src, "preserved fd"));
      fds_out.push_back(std::move(f));
    }
    return p;
  }

  // Sends the pre-copy package and its fds to a parked image and asks it to
  // stage them (kMsgUpdatePrecopy).
  Result<abi::UpdateReply> send_precopy(Successor& s) {
    std::vector<int> fds;
    for (const auto& f : pre_held) fds.push_back(f.get());
    MK_TRY(send_handoff(s.run->handover_socket(), pre_fd.get(), fds));
    abi::HandoverMsg m{req.update_id, static_cast<uint32_t>(fds.size())};
    return step(*s.run, abi::kMsgUpdatePrecopy, "pre-copy", &m, sizeof m, req.timeout, waiter(Clock::now(), false));
  }

  // Hands the package and fds to a parked image and asks it to restore.
  // The request goes first: the successor wakes up (tens of microseconds
  // on a guest) while the package and fds are being sent. A send that
  // fails shuts the socket down, so the successor's receive fails at once
  // and the step ends with its refusal; the send's error is returned.
  Result<abi::UpdateReply> hand_over(Successor& s, int package_fd) {
    std::vector<int> fds;
    for (const auto& f : held) fds.push_back(f.get());
    abi::HandoverMsg m{req.update_id, static_cast<uint32_t>(fds.size())};
    Result<void> sent = ok();
    auto send = [&] {
      sent = send_handoff(s.run->handover_socket(), package_fd, fds);
      if (!sent) (void)::shutdown(s.run->handover_socket(), SHUT_RDWR);
    };
    auto r = step(*s.run, abi::kMsgHandover, "handover", &m, sizeof m, req.timeout, waiter(Clock::now(), false), spin,
                  send);
    if (!sent) return sent.error();
    return r;
  }

  // The successor (or the image booted again) takes the instance over,
  // with the reaper held in `init`, if any.
  void install(Successor& s) {
    RunningInstance& nu = *s.run;
    UpdateAccess::give_ns_init(nu, std::move(init));
    UpdateAccess::move_resources(*current, nu);
    current = std::move(s.run);
  }

  // Unhappy paths 2-4 (live_update.h): the successor goes, the old image is
  // unfrozen; if it is gone, the old kernel is booted again.
  void roll_back(Error cause) {
    in_blackout = false;
    spin = false;
    report();
    const auto t0 = Clock::now();
    out.cause = cause;
    kill_successor();
    if (old_alive()) {
      auto c = old_step(*current, abi::kMsgUpdateCancel, "cancel", req.update_id, req.timeout,
                        waiter(Clock::now(), false));
      if (c) {
        out.rollback = pkg ? "successor killed; old image unfrozen (cancel)" : "successor killed; update cancelled";
        phase("rollback", t0);
        return;
      }
      if (old_alive()) {
        // It neither resumed nor died: it cannot be trusted with the
        // instance any longer (its reaper, if any, stays).
        init = UpdateAccess::take_ns_init(*current);
        current->kill();
      }
      out.rollback = std::string("old image did not take the cancel (") + c.error().to_string() + "); ";
    } else {
      out.rollback = "old image gone; ";
    }
    reboot_old(t0);
  }

  void reboot_old(Clock::time_point t0) {
    RunningInstance& old = *current;
    // Reap it (our child) or see it gone; the reaper, if there is one,
    // keeps the namespaces alive: the image booted again joins them.
    if (!init) init = UpdateAccess::take_ns_init(old);
    if (!old.exited()) {
      if (old.is_child()) {
        (void)old.wait_exit(std::chrono::milliseconds(1000));
      } else {
        UpdateAccess::set_reaped(old);
      }
    }
    SuccessorRequest sr;
    sr.image = old.image();
    sr.peers = req.peers;
    sr.root = root;
    sr.console_write_fd = console_write.get();
    if (init && !pidfd_gone(init.pidfd.get(), 0)) {
      sr.ns_pidfd = init.pidfd.get();
      sr.ns_pid = init.pid;
    }
    sr.parked = pkg.has_value();
    auto s = boot_successor(topo, old, sr);
    Result<abi::UpdateReply> done = s ? Result<abi::UpdateReply>(abi::UpdateReply{}) : Result<abi::UpdateReply>(s.error());
    if (s) {
      auto ready = s->run->wait_ready(req.timeout);
      if (!ready) {
        done = ready.error();
      } else if (pkg) {
        // The freeze package holds only what changed since the pre-copy.
        if (pre) done = send_precopy(*s);
        if (done) done = hand_over(*s, pkg_fd.get());
      }
    }
    if (!done) {
      if (s) s->run->kill();
      out.rollback += std::string("booting the old image again failed: ") + done.error().to_string();
      phase("rollback", t0);
      current.reset();  // nothing runs: the caller marks the instance failed
      return;
    }
    out.rollback += pkg ? "old image booted again and restored from the held package"
                        : "old image booted again on the same regions (nothing was frozen)";
    install(*s);
    phase("rollback", t0);
  }

  void run() {
    if (!current) {
      out.cause = MK_FAIL(EINVAL, "nothing to update", "no running image");
      return;
    }
    RunningInstance& old = *current;
    // The console pipe's write end, from where the manifest put it.
    auto cw = getfd(old.pidfd(), console_fd_of(old.instance(), old.record()), "console write end");
    if (!cw) {
      out.cause = cw.error();
      out.rollback = "nothing started";
      return;
    }
    console_write = std::move(*cw);

    // 1. boot the successor, parked, in the instance's namespaces.
    auto t0 = Clock::now();
    SuccessorRequest sr;
    sr.image = req.image;
    sr.peers = req.peers;
    sr.root = root;
    sr.console_write_fd = console_write.get();
    sr.ns_pidfd = old.pidfd();
    sr.ns_pid = old.pid();
    auto s = at_point("boot", [&] { return boot_successor(topo, old, sr); });
    if (!s) {
      out.cause = s.error();
      out.rollback = "successor did not start; old image untouched";
      return;
    }
    next = std::move(*s);
    auto ready = at_point("ready", [&] { return next->run->wait_ready(req.timeout); });
    if (!ready) {
      out.cause = ready.error();
      kill_successor();
      out.rollback = "successor failed to boot and was killed; old image untouched";
      return;
    }
    phase("boot", t0);
    if (req.on_successor) req.on_successor(next->run->record());

    // 2. prepare.
    t0 = Clock::now();
    auto pr = at_point("prepare", [&] { return old_request(abi::kMsgUpdatePrepare, "prepare", abi::kUpdateFlagPrecopy); });
    if (!pr) {
      roll_back(pr.error());
      return;
    }
    phase("prepare", t0, pr->image_ns);
    set_state("prepared");

    // 2b. pre-copy: what prepare preserved goes to the successor now,
    // outside the blackout (an old image without anything to send says -1).
    if (pr->fd >= 0) {
      t0 = Clock::now();
      auto p = at_point("precopy", [&] { return take_package(pr->fd, pre_fd, pre_held); });
      if (!p) {
        roll_back(p.error());
        return;
      }
      pre = std::move(*p);
      auto staged = send_precopy(*next);
      if (!staged) {
        roll_back(staged.error());
        return;
      }
      phase("precopy", t0, staged->image_ns);
      if (req.after_precopy) req.after_precopy();
    }

    // 3. freeze: the blackout starts now (the host off the instance's CPUs
    // until the successor answered).
    std::optional<HostOffInstance> away(std::in_place, current->instance().cpus);
    spin = away->active();
    t0 = freeze_sent = Clock::now();
    in_blackout = true;
    set_state("frozen");
    auto fr = at_point("freeze", [&] { return old_request(abi::kMsgUpdateFreeze, "freeze"); });
    if (!fr) {
      roll_back(fr.error());
      return;
    }
    if (req.after_freeze) req.after_freeze();
    phase("freeze", t0, fr->image_ns);

    // 4. transfer: the host takes the package and every fd it lists.
    t0 = Clock::now();
    if (auto r = at_point("transfer", [&] { return transfer(fr->fd); }); !r) {
      roll_back(r.error());
      return;
    }
    phase("transfer", t0);

    // 5. restore.
    t0 = Clock::now();
    OwnedFd corrupt;
    int send_fd = pkg_fd.get();
    if (req.corrupt_package) {
      auto c = corrupted_package_copy(*pkg);
      if (!c) {
        roll_back(c.error());
        return;
      }
      corrupt = std::move(*c);
      send_fd = corrupt.get();
    }
    auto restored = at_point("restore", [&] { return hand_over(*next, send_fd); });
    if (!restored) {
      roll_back(restored.error());
      return;
    }
    out.blackout_ms = ms_since(freeze_sent);
    in_blackout = false;
    spin = false;
    away.reset();
    set_state("updated");
    phase("restore", t0, restored->image_ns);

    // 6. finish: the old image exits or stays as the reaper.
    t0 = Clock::now();
    if (!finish()) return;
    phase("finish", t0);
    out.updated = true;
  }

  Result<void> transfer(int fd_in_old) {
    MK_TRY_ASSIGN(HandoffPackage p, take_package(fd_in_old, pkg_fd, held));
    Error bad;
    out.preserved_bytes = preserved_bytes_of(p.blob(), &bad);
    if (bad.code() != 0) {
      return Error(bad.code(), "the old image wrote a bad handover blob").set_detail("%s", bad.message());
    }
    out.fds = p.header.fd_count + (pre ? pre->header.fd_count : 0);
    out.precopied_fds = pre ? pre->header.fd_count : 0;
    out.blob_bytes = p.header.blob_bytes;
    pkg = std::move(p);
    return ok();
  }

  // False: the successor did not survive the old image (rolled back).
  bool finish() {
    RunningInstance& old = *current;
    const bool pid1 = is_namespace_init(old.pid());
    init = UpdateAccess::take_ns_init(old);  // an earlier reaper stays the init
    // The image replies, then exits or execs the reaper; a lost reply is
    // not a failure (the successor serves already): what it becomes counts.
    const auto f0 = Clock::now();
    (void)old_step(old, abi::kMsgUpdateFinish, "finish", req.update_id, req.timeout, waiter(f0, false));
    const auto end = Clock::now() + req.timeout;
    const auto wait = waiter(f0, false);
    bool gone = false, reaper = false;
    while (Clock::now() < end) {
      if (pidfd_gone(old.pidfd(), 0)) {
        gone = true;
        break;
      }
      if (runs_reaper(old.pid())) {
        reaper = true;
        break;
      }
      if (successor_gone()) break;  // checked below
      wait();
      ::usleep(2000);
    }
    if (gone) {
      if (old.is_child()) (void)old.wait_exit(std::chrono::milliseconds(1000));
    } else if ((reaper || pid1) && !init) {
      // PID 1 of the namespace must stay (its end would take the successor
      // and the tenants with it), reaper or not; so does the reaper the
      // tenants were left to.
      init = UpdateAccess::old_as_init(old);
    } else {
      // Neither exited nor needed: everything it had is handed over.
      old.kill();
    }
    if (successor_gone()) {
      // E.g. PID 1 of the namespace exited instead of becoming the reaper,
      // and the namespace took the successor with it.
      const auto t1 = Clock::now();
      out.cause = MK_FAIL(ESRCH, "successor died at finish",
                          "the successor (pid %d) ended when the old image (pid %d) %s", next->run->pid(),
                          old.pid(), gone ? "exited" : "was stopped");
      kill_successor();
      out.rollback = "successor gone after finish; ";
      reboot_old(t1);
      return false;
    }
    install(*next);
    next.reset();
    return true;
  }
};

}  // namespace

UpdateOutcome live_update(std::unique_ptr<RunningInstance>& current, const Topology& topo, const SysRoot& root,
                          const UpdateRequest& req) {
  Update u{current, topo, root, req};
  u.run();
  u.set_state("normal");  // updated, rolled back, or never left normal
  return std::move(u.out);
}

Result<void> abort_update(RunningInstance& old, const RuntimeRecord& successor, std::chrono::milliseconds timeout,
                          uint32_t update_id) {
  if (successor.pid > 0) {
    auto fd = open_identity(SysRoot(), {successor.pid, successor.start_time});
    if (fd) {
      if (::syscall(SYS_pidfd_send_signal, fd->get(), SIGKILL, nullptr, 0) != 0 && errno != ESRCH)
        return errno_error("cannot kill the successor of an interrupted update");
      if (!pidfd_gone(fd->get(), static_cast<int>(timeout.count())))
        return MK_FAIL(ETIMEDOUT, "successor did not die", "pid %d still runs %lld ms after SIGKILL",
                       successor.pid, static_cast<long long>(timeout.count()));
    } else if (fd.error().code() != ESRCH) {
      return fd.error();
    }
  }
  MK_TRY(old_step(old, abi::kMsgUpdateCancel, "cancel", update_id, timeout));
  return ok();
}

}  // namespace mk
