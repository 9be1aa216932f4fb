// The host's side of a staged live update by core migration (see
// staged_update.h): the new image on CPUs of its own, the instance's parts
// handed over one step at a time, the CPUs following, the old image retired.
#include "mkernel/staged_update.h"
#include "mkernel/fault.h"

#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "handover/kho_blob.h"
#include "mkernel/cpu_move.h"
#include "mkernel/handoff_package.h"
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

struct Part {
  uint32_t scope;
  const char* name;
};
constexpr Part kParts[] = {{abi::kUpdateScopeTenants, "tenants"},
                           {abi::kUpdateScopeServices, "services"},
                           {abi::kUpdateScopePeers, "peers"}};

// A package as the host copied it out of the image that wrote it, with
// every fd it lists.
struct Copied {
  OwnedFd memfd;
  std::vector<OwnedFd> fds;
  std::optional<HandoffPackage> pkg;
  explicit operator bool() const { return pkg.has_value(); }
};

// One part that moved: what the host keeps until the update ends (if the
// new image dies, the old one is restored from these).
struct Moved {
  Part part;
  Copied pre;    // the pre-copy (services), if there was one
  Copied whole;  // the freeze's package
};

class Staged {
 public:
  Staged(std::unique_ptr<RunningInstance>& current, const Topology& topo, const SysRoot& root,
         const StagedRequest& req)
      : old_(current), topo_(topo), root_(root), req_(req) {}

  StagedOutcome out;

  void run() {
    const auto t0 = Clock::now();
    if (!old_) {
      out.cause = MK_FAIL(EINVAL, "nothing to update", "no running image");
      return;
    }
    old_cpus_ = old_->instance().cpus;
    if (auto r = all_steps(); !r) {
      abort(r.error());
    } else {
      out.updated = true;
    }
    out.total_ms = ms_since(t0);
  }

 private:
  // ---- the forward path ----

  Result<void> all_steps() {
    MK_TRY(do_step("cpu", [&](StagedStep& s) { return take_cpus(s); }));
    MK_TRY(do_step("boot", [&](StagedStep& s) { return boot(s); }));
    for (const Part& p : kParts) {
      if (p.scope == abi::kUpdateScopePeers && req_.peers.empty()) continue;  // nothing to move
      MK_TRY(do_step(p.name, [&](StagedStep& s) { return move_part(p, s); }));
    }
    // The old image's CPUs but its last follow as it drains.
    while (old_cpus_.count() > 1) {
      const uint32_t c = static_cast<uint32_t>(old_cpus_.first());
      MK_TRY(do_step("cpu " + std::to_string(c), [&](StagedStep& s) { return move_cpu_to_new(c, s); }));
    }
    MK_TRY(do_step("retire", [&](StagedStep& s) { return retire(s); }));
    return ok();
  }

  // Runs one step: injection, timing, the CPU check, progress, the test hook.
  template <class F>
  Result<void> do_step(const std::string& name, F&& body) {
    if (req_.abort_requested && req_.abort_requested())
      return MK_FAIL(ECANCELED, "staged update aborted", "on request, before step %s", name.c_str());
    if (req_.inject) MK_TRY(req_.inject(name));
    MK_TRY(fault::point("staged", name));
    // The new image must still be there to take anything (a dead one would
    // let the old image retire with nothing serving the instance).
    if (new_ && (new_->exited() || pidfd_gone(new_->pidfd(), 0))) {
      if (new_->is_child()) (void)new_->wait_exit(std::chrono::milliseconds(0));
      return MK_FAIL(ECHILD, "the new image died", "pid %d, before step %s", new_->pid(), name.c_str());
    }
    StagedStep s;
    s.name = name;
    const auto t0 = Clock::now();
    MK_TRY(body(s));
    s.ms = ms_since(t0);
    finish_step(s);
    if (req_.after_step) req_.after_step(name);
    return ok();
  }

  // A restarted host's abort: the state a dead one journaled.
 public:
  void resume_abort(std::unique_ptr<RunningInstance> next, const StagedProgress& at) {
    const auto t0 = Clock::now();
    new_ = std::move(next);
    old_cpus_ = at.old_cpus;
    new_cpus_ = at.new_cpus;
    spare_added_ = at.spare_cpus;
    taken_ = at.taken_cpu;
    cpus_moved_ = at.cpus_moved;
    for (const Part& p : kParts) {
      if (at.parts & p.scope) moved_.push_back(Moved{p, {}, {}});
    }
    abort(MK_FAIL(ECANCELED, "staged update interrupted", "the host was restarted during it"));
    out.total_ms = ms_since(t0);
  }


 private:
  StagedProgress progress() const {
    StagedProgress p;
    p.old_cpus = old_cpus_;
    p.new_cpus = new_cpus_;
    p.spare_cpus = spare_added_;
    p.taken_cpu = taken_;
    p.cpus_moved = cpus_moved_;
    for (const Moved& m : moved_) p.parts |= m.part.scope;
    p.retired = retired_;
    return p;
  }

  void finish_step(StagedStep& s) {
    s.old_cpus = old_cpus_;
    s.new_cpus = new_cpus_;
    s.check = check_ownership();
    if (s.blackout_ms && (!out.max_blackout_ms || *s.blackout_ms > *out.max_blackout_ms))
      out.max_blackout_ms = s.blackout_ms;
    if (req_.on_step) req_.on_step(s);
    if (req_.on_progress) req_.on_progress(progress());
    out.steps.push_back(std::move(s));
  }

  CpuHolder holder(RunningInstance& r, const CpuSet& cpus) const {
    return CpuHolder{r.instance().id, r.instance().name, cpus, &r.endpoint(), nullptr, {r.pid()}};
  }

  CpuChangeOptions cpu_opts() const {
    CpuChangeOptions o;
    o.timeout = req_.timeout;
    o.op_id = req_.update_id;
    return o;
  }

  // 1. The new image's CPUs: spare ones (the cgroup grows by them), or the
  // old image's last CPU, given up with its consent.
  Result<void> take_cpus(StagedStep& s) {
    if (!req_.spare_cpus.empty()) {
      if (req_.spare_cpus.intersects(old_cpus_))
        return MK_FAIL(EINVAL, "bad spare CPUs", "%s overlaps the instance's CPUs %s",
                       req_.spare_cpus.to_string().c_str(), old_cpus_.to_string().c_str());
      if (InstanceCgroup* cg = old_->cgroup()) MK_TRY(cg->set_cpus(old_cpus_ | req_.spare_cpus));
      spare_added_ = req_.spare_cpus;
      new_cpus_ = req_.spare_cpus;
      s.moved = "spare CPUs " + new_cpus_.to_string() + " for the new image";
      return ok();
    }
    if (old_cpus_.count() < 2)
      return MK_FAIL(EBUSY, "no CPU for the new image",
                     "'%s' runs on CPU %s alone and no spare CPU was given: give --spare-cpus LIST (free pool CPUs) "
                     "or grow it first (mkctl update %s --cpus LIST)",
                     old_->instance().name.c_str(), old_cpus_.to_string().c_str(), old_->instance().name.c_str());
    const uint32_t x = static_cast<uint32_t>(old_cpus_.last());
    CpuSet keep = old_cpus_;
    keep.erase(x);
    MK_TRY(resize_cpus(topo_, root_, holder(*old_, old_cpus_), keep, cpu_opts()));
    old_cpus_ = keep;
    taken_ = x;
    new_cpus_ = CpuSet::of({x});
    s.moved = "CPU " + std::to_string(x) + " from the old image";
    return ok();
  }

  // 2. The new image, parked on its CPUs in the instance's namespaces.
  Result<void> boot(StagedStep& s) {
    RunningInstance& old = *old_;
    MK_TRY_ASSIGN(console_write_, getfd(old.pidfd(), console_fd_of(old.instance(), old.record()), "console write end"));
    SuccessorRequest sr;
    sr.image = req_.image;
    sr.peers = req_.peers;
    sr.root = root_;
    sr.console_write_fd = console_write_.get();
    sr.ns_pidfd = old.pidfd();
    sr.ns_pid = old.pid();
    sr.cpus = new_cpus_;
    MK_TRY_ASSIGN(Successor next, boot_successor(topo_, old, sr));
    new_ = std::move(next.run);
    if (auto ready = new_->wait_ready(req_.timeout); !ready) {
      kill_new();
      return ready.error();
    }
    if (req_.on_new_image) req_.on_new_image(new_->record());
    s.moved = "new image pid " + std::to_string(new_->pid()) + " on CPUs " + new_cpus_.to_string();
    return ok();
  }

  // 3-5. One part, old -> new.
  Result<void> move_part(const Part& p, StagedStep& s) {
    Moved m{p, {}, {}};
    MK_TRY_ASSIGN(double blackout, hand_over(*old_, *new_, p, m));
    s.blackout_ms = blackout;
    s.moved = describe(p, m);
    moved_.push_back(std::move(m));
    return ok();
  }

  // 6. One of the old image's CPUs to the new one.
  Result<void> move_cpu_to_new(uint32_t c, StagedStep& s) {
    CpuSet keep = old_cpus_;
    keep.erase(c);
    MK_TRY(resize_cpus(topo_, root_, holder(*old_, old_cpus_), keep, cpu_opts()));
    old_cpus_ = keep;
    CpuSet grown = new_cpus_;
    grown.insert(c);
    if (auto r = resize_cpus(topo_, root_, holder(*new_, new_cpus_), grown, cpu_opts()); !r) {
      old_cpus_.insert(c);  // the undo below gives it back
      (void)resize_cpus(topo_, root_, holder(*old_, keep), old_cpus_, cpu_opts());
      return r.error();
    }
    new_cpus_ = grown;
    cpus_moved_.push_back(c);
    s.moved = "CPU " + std::to_string(c);
    return ok();
  }

  // 7. The old image retires (exits, or stays as the reaper when it is PID
  // 1 of the namespace), the new one takes the instance and the last CPU;
  // spare CPUs go back.
  Result<void> retire(StagedStep& s) {
    // The last point of return: the new image must answer before the old
    // one is told to go (a dying image may not show as exited yet).
    if (auto alive = new_->ping(0, req_.timeout); !alive)
      return Error(ECHILD, "the new image does not answer").set_detail("pid %d, before retiring the old image: %s",
                                                                       new_->pid(), alive.error().message());
    RunningInstance& old = *old_;
    const bool pid1 = is_namespace_init(old.pid());
    UpdateAccess::Init init = UpdateAccess::take_ns_init(old);
    const auto f0 = Clock::now();
    if (auto f = old_step(old, abi::kMsgUpdateFinish, "finish", req_.update_id, req_.timeout, waiter(f0)); !f) {
      UpdateAccess::give_ns_init(old, std::move(init));
      return f.error();
    }
    const auto end = Clock::now() + req_.timeout;
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
      ::usleep(2000);
    }
    if (gone) {
      if (old.is_child()) (void)old.wait_exit(std::chrono::milliseconds(1000));
    } else if ((reaper || pid1) && !init) {
      init = UpdateAccess::old_as_init(old);
    } else {
      old.kill();
    }
    // Past this point the update is done: the new image holds everything.
    retired_ = true;
    const pid_t old_pid = old.pid() > 0 ? old.pid() : (init ? init.pid : 0);
    UpdateAccess::give_ns_init(*new_, std::move(init));
    UpdateAccess::move_resources(old, *new_);
    old_ = std::move(new_);
    const CpuSet last = old_cpus_;
    old_cpus_ = CpuSet();
    CpuSet all = new_cpus_ | last;
    if (auto r = resize_cpus(topo_, root_, holder(*old_, new_cpus_), all, cpu_opts()); !r) {
      warn("the old image's last CPU " + last.to_string() + " did not reach the new one: " + r.error().to_string());
    } else {
      new_cpus_ = all;
    }
    if (!spare_added_.empty()) {
      const CpuSet final_cpus = new_cpus_ - spare_added_;
      if (auto r = resize_cpus(topo_, root_, holder(*old_, new_cpus_), final_cpus, cpu_opts()); !r) {
        warn("the spare CPUs " + spare_added_.to_string() + " could not be given back: " + r.error().to_string());
      } else {
        new_cpus_ = final_cpus;
        if (InstanceCgroup* cg = old_->cgroup(); cg) {
          if (auto c = cg->set_cpus(new_cpus_); !c) warn("cpuset: " + c.error().to_string());
        }
      }
    }
    old_->set_cpus(new_cpus_);
    s.moved = "old image " + std::string(gone ? "exited" : "stays as the reaper") + " (pid " +
              std::to_string(old_pid) + "), CPUs " + last.to_string() + " to the new image";
    return ok();
  }

  // ---- one handover of a part (either way) ----

  std::function<void()> waiter(Clock::time_point t0) const {
    return [this, t0] {
      if (req_.on_wait && Clock::now() - t0 >= std::chrono::milliseconds(20)) req_.on_wait();
    };
  }

  Result<Copied> copy_package(RunningInstance& from, int fd_in_image) {
    Copied c;
    MK_TRY_ASSIGN(c.memfd, getfd(from.pidfd(), fd_in_image, "handoff package"));
    MK_TRY_ASSIGN(HandoffPackage p, read_handoff_package(c.memfd.get(), req_.update_id));
    if (auto b = handover::parse_kho_blob(p.blob()); !b) {
      return Error(b.error().code(), "the image wrote a bad handover blob").set_detail("%s", b.error().message());
    }
    for (int32_t src : p.source_fds) {
      MK_TRY_ASSIGN(OwnedFd f, getfd(from.pidfd(), src, "preserved fd"));
      c.fds.push_back(std::move(f));
    }
    c.pkg = std::move(p);
    return c;
  }

  // Sends a copied package to `to` and asks it to stage (pre-copy) or
  // restore it. The package goes first (unlike the in-place update, which
  // sends the request first to overlap the successor's wake-up): the
  // receiver keeps its socket across steps, and a package sent after a
  // request it refused at once would be taken for the next step's.
  Result<abi::UpdateReply> deliver(RunningInstance& to, const Copied& c, uint16_t type, const char* name, bool spin) {
    if (to.handover_socket() < 0)
      return MK_FAIL(ENOTCONN, "no handover socket", "the image (pid %d) was booted without one", to.pid());
    std::vector<int> fds;
    for (const auto& f : c.fds) fds.push_back(f.get());
    abi::HandoverMsg m{req_.update_id, static_cast<uint32_t>(fds.size())};
    MK_TRY(send_handoff(to.handover_socket(), c.memfd.get(), fds));
    return step(to, type, name, &m, sizeof m, req_.timeout, waiter(Clock::now()), spin);
  }

  // The step in flight failed: the sender resumes the part, the receiver
  // drops what it staged of it.
  void cancel_both(RunningInstance& from, RunningInstance& to) {
    (void)old_step(from, abi::kMsgUpdateCancel, "cancel", req_.update_id, req_.timeout);
    if (!to.exited()) (void)old_step(to, abi::kMsgUpdateCancel, "cancel", req_.update_id, req_.timeout);
  }

  // prepare (+ pre-copy) -> freeze -> copy -> restore -> finish (partial).
  // Returns the blackout (freeze sent -> restore answered).
  Result<double> hand_over(RunningInstance& from, RunningInstance& to, const Part& p, Moved& m) {
    uint32_t flags = p.scope;
    if (p.scope == abi::kUpdateScopeServices) flags |= abi::kUpdateFlagPrecopy;
    MK_TRY_ASSIGN(abi::UpdateReply pr,
                  old_step(from, abi::kMsgUpdatePrepare, "prepare", req_.update_id, req_.timeout, waiter(Clock::now()),
                           flags));
    auto failed = [&](const Error& e) -> Error {
      cancel_both(from, to);
      return e;
    };
    if (pr.fd >= 0) {
      auto c = copy_package(from, pr.fd);
      if (!c) return failed(c.error());
      m.pre = std::move(*c);
      if (auto r = deliver(to, m.pre, abi::kMsgUpdatePrecopy, "pre-copy", false); !r) return failed(r.error());
    }
    std::optional<HostOffInstance> away(std::in_place, old_cpus_ | new_cpus_);
    const bool spin = away->active();
    const auto frozen = Clock::now();
    auto fr = old_step(from, abi::kMsgUpdateFreeze, "freeze", req_.update_id, req_.timeout, {}, 0, spin);
    if (!fr) return failed(fr.error());
    auto c = copy_package(from, fr->fd);
    if (!c) return failed(c.error());
    m.whole = std::move(*c);
    if (auto r = deliver(to, m.whole, abi::kMsgHandover, "handover", spin); !r) return failed(r.error());
    const double blackout = ms_since(frozen);
    away.reset();
    // The part is the receiver's now; the sender drops it and goes on.
    if (auto f = old_step(from, abi::kMsgUpdateFinish, "finish", req_.update_id, req_.timeout, waiter(Clock::now()),
                          abi::kUpdateFlagPartial);
        !f) {
      warn(std::string(p.name) + ": the sender did not finish its side: " + f.error().to_string());
    }
    return blackout;
  }

  std::string describe(const Part& p, const Moved& m) const {
    const uint32_t fds = (m.pre ? m.pre.pkg->header.fd_count : 0) + (m.whole ? m.whole.pkg->header.fd_count : 0);
    return std::string(p.name) + " (" + std::to_string(fds) + " fd(s), blob " +
           std::to_string(m.whole ? m.whole.pkg->header.blob_bytes : 0) + " bytes)";
  }

  // ---- checks, warnings ----

  // No CPU in both images: their CPU sets are disjoint, every thread of
  // each image runs within its own, and the tenants' threads within the
  // CPUs of the image that holds them.
  std::string check_ownership() {
    std::string bad;
    if (old_cpus_.intersects(new_cpus_)) bad += "CPU sets overlap: " + (old_cpus_ & new_cpus_).to_string() + "; ";
    auto check = [&](RunningInstance* r, const CpuSet& cpus, const char* who) {
      if (!r || r->exited() || cpus.empty()) return;
      CpuHolder h = holder(*r, cpus);
      auto strays = threads_not_following(root_, h, cpus, nullptr);
      if (!strays) return;
      for (const auto& t : *strays) {
        if (t.allowed.is_subset_of(cpus)) continue;  // a pinned thread within its image's CPUs
        bad += std::string(who) + " thread " + std::to_string(t.tid) + " (" + t.comm + ") on " +
               t.allowed.to_string() + "; ";
      }
    };
    if (!retired_) check(old_.get(), old_cpus_, "old image");
    check(retired_ ? old_.get() : new_.get(), new_cpus_, "new image");
    return bad;
  }

  void warn(const std::string& w) { out.warnings.push_back(w); }

  // ---- abort: everything back to the old image ----

  void abort(Error cause) {
    out.cause = cause;
    if (retired_) return;  // (retire never fails after this point)
    const auto t0 = Clock::now();
    std::string how;
    const bool new_alive = new_ && !new_->exited() && !pidfd_gone(new_->pidfd(), 0);
    // CPUs the new image received, back.
    for (auto it = cpus_moved_.rbegin(); it != cpus_moved_.rend(); ++it) {
      const uint32_t c = *it;
      CpuSet smaller = new_cpus_;
      smaller.erase(c);
      if (new_alive) (void)resize_cpus(topo_, root_, holder(*new_, new_cpus_), smaller, cpu_opts());
      new_cpus_ = smaller;
      CpuSet grown = old_cpus_;
      grown.insert(c);
      if (auto r = resize_cpus(topo_, root_, holder(*old_, old_cpus_), grown, cpu_opts()); r) old_cpus_ = grown;
      else how += "CPU " + std::to_string(c) + " not returned: " + r.error().to_string() + "; ";
    }
    // Parts, newest first: handed back by the new image, or restored from
    // the packages the host holds when it is gone (or cannot hand back).
    for (auto it = moved_.rbegin(); it != moved_.rend(); ++it) {
      Moved back{it->part, {}, {}};
      const auto ta = Clock::now();
      if (new_alive) {
        if (auto r = hand_over(*new_, *old_, it->part, back); r) {
          abort_step(std::string("abort: ") + it->part.name, "handed back", r.value(), ms_since(ta));
          continue;
        } else {
          how += std::string(it->part.name) + ": the new image did not hand it back (" + r.error().to_string() +
                 "), restored from the held package; ";
        }
      }
      if (auto r = restore_held(*it); r) {
        abort_step(std::string("abort: ") + it->part.name, "restored from the package the host held", std::nullopt,
                   ms_since(ta));
      } else {
        how += std::string(it->part.name) + " LOST: " + r.error().to_string() + "; ";
      }
    }
    kill_new();
    if (taken_) {
      CpuSet grown = old_cpus_;
      grown.insert(*taken_);
      if (auto r = resize_cpus(topo_, root_, holder(*old_, old_cpus_), grown, cpu_opts()); r) old_cpus_ = grown;
      else how += "CPU " + std::to_string(*taken_) + " not returned: " + r.error().to_string() + "; ";
    }
    if (!spare_added_.empty()) {
      if (InstanceCgroup* cg = old_->cgroup(); cg) {
        if (auto c = cg->set_cpus(old_cpus_); !c) how += "cpuset not shrunk back: " + c.error().to_string() + "; ";
      }
    }
    new_cpus_ = CpuSet();
    out.rollback = how.empty() ? "everything back with the old image (pid " + std::to_string(old_->pid()) +
                                     ") on CPUs " + old_cpus_.to_string() + "; the new image was killed"
                               : how + "the new image was killed";
    abort_step("abort: done", out.rollback, std::nullopt, ms_since(t0));
  }

  void abort_step(const std::string& name, const std::string& what, std::optional<double> blackout,
                  double ms = 0) {
    StagedStep s;
    s.name = name;
    s.moved = what;
    s.ms = ms;
    s.blackout_ms = blackout;
    finish_step(s);
  }

  Result<void> restore_held(const Moved& m) {
    if (m.pre) MK_TRY(deliver(*old_, m.pre, abi::kMsgUpdatePrecopy, "pre-copy (held)", false));
    if (!m.whole) return MK_FAIL(ENOENT, "no package held", "part %s", m.part.name);
    MK_TRY(deliver(*old_, m.whole, abi::kMsgHandover, "handover (held)", false));
    return ok();
  }

  void kill_new() {
    if (new_) {
      new_->kill();
      new_.reset();
    }
  }

  std::unique_ptr<RunningInstance>& old_;  // the instance's handle: the old image until retire, then the new
  std::unique_ptr<RunningInstance> new_;
  const Topology& topo_;
  const SysRoot& root_;
  const StagedRequest& req_;
  OwnedFd console_write_;
  CpuSet old_cpus_, new_cpus_, spare_added_;
  std::optional<uint32_t> taken_;
  std::vector<uint32_t> cpus_moved_;
  std::vector<Moved> moved_;
  bool retired_ = false;

};

}  // namespace

StagedOutcome staged_update(std::unique_ptr<RunningInstance>& current, const Topology& topo, const SysRoot& root,
                            const StagedRequest& req) {
  Staged s(current, topo, root, req);
  s.run();
  return std::move(s.out);
}

StagedOutcome abort_staged_update(std::unique_ptr<RunningInstance>& old, std::unique_ptr<RunningInstance> next,
                                  const StagedProgress& at, const Topology& topo, const SysRoot& root,
                                  const StagedRequest& req) {
  Staged s(old, topo, root, req);
  if (!old) {
    s.out.cause = MK_FAIL(EINVAL, "nothing to abort onto", "the old image is gone");
    return std::move(s.out);
  }
  s.resume_abort(std::move(next), at);
  return std::move(s.out);
}

}  // namespace mk
