// The parts of a staged live update (staged.h).
#include "staged.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

namespace mk::image {

namespace {

constexpr const char* kPeersCompatible = "mkernel,peers-v1";

bool carries_fd(DeviceKind k) { return k == DeviceKind::kFile || k == DeviceKind::kListen || k == DeviceKind::kBlock; }

// The incoming side walks an UpdateMachine normal -> prepared -> frozen with
// nothing to preserve (a receiver preserves no state of its own for this
// step), so that retrieve() is a legal transition (handover/update.h has no
// entry point for an incoming image), then retrieve -> finish. A failed
// retrieve is unwound with cancel(), which reaches each handler's cancel().
class Incoming final : public handover::Handler {
 public:
  explicit Incoming(handover::Handler* h) : h_(h) {}
  std::string_view name() const override { return h_->name(); }
  Result<void> preserve(handover::KhoBlob&) override { return {}; }
  void cancel() override { h_->cancel(); }
  Result<void> freeze(handover::KhoBlob&) override { return {}; }
  void unfreeze() override {}
  Result<void> retrieve(const handover::KhoBlob& blob) override { return h_->retrieve(blob); }
  Result<void> finish() override { return h_->finish(); }

 private:
  handover::Handler* h_;
};

}  // namespace

std::string part_names(std::uint32_t scope) {
  std::string out;
  for (const auto& [bit, name] : {std::pair{abi::kUpdateScopeTenants, "tenants"},
                                  std::pair{abi::kUpdateScopeServices, "services"},
                                  std::pair{abi::kUpdateScopePeers, "peers"}}) {
    if (!(scope & bit)) continue;
    if (!out.empty()) out += ',';
    out += name;
  }
  return out.empty() ? "none" : out;
}

Result<std::uint32_t> prepare_scope(std::uint32_t flags, std::uint32_t held) {
  if (held == 0) return MK_FAIL(EBUSY, "nothing to hand over", "the image holds no part (a parked successor)");
  const std::uint32_t asked = flags & abi::kUpdateScopeAll;
  if (asked == 0) return held;  // unscoped: everything the image holds
  if ((asked & held) != asked) {
    return MK_FAIL(ENOENT, "scope not held", "asked for %s, the image holds %s", part_names(asked).c_str(),
                   part_names(held).c_str());
  }
  return asked;
}

Result<void> build_outgoing(handover::UpdateMachine& m, const PartsContext& cx, std::uint32_t scope) {
  m = handover::UpdateMachine{};
  const bool services = scope & abi::kUpdateScopeServices;
  cx.files->set_devices(services);
  // Outgoing order: memory, tenants, kv, files (files last: its freeze
  // describes the session after the others added their fds).
  if (services) MK_TRY(m.add_handler(cx.memory));
  if (scope & abi::kUpdateScopeTenants) MK_TRY(m.add_handler(cx.tenants_h));
  if (services && cx.kv_h && *cx.kv) MK_TRY(m.add_handler(cx.kv_h));
  if (scope & (abi::kUpdateScopeServices | abi::kUpdateScopeTenants)) MK_TRY(m.add_handler(cx.files));
  return {};
}

handover::Subsystem peers_subsystem() {
  handover::Subsystem sub;
  sub.name = "peers";
  sub.compatible = kPeersCompatible;
  return sub;
}

bool has_peers(const BootTree& tree) {
  for (const auto& c : tree.ipi.channels) {
    if (c.peer_id != tree.ipi.host_id) return true;
  }
  return false;
}

std::uint32_t parts_in(const handover::KhoBlob& blob) {
  std::uint32_t parts = 0;
  if (handover::find_subsystem(blob, "tenants")) parts |= abi::kUpdateScopeTenants;
  // kv without memory is services too: the memory handler then refuses it.
  if (handover::find_subsystem(blob, "memory") || handover::find_subsystem(blob, "kv")) {
    parts |= abi::kUpdateScopeServices;
  }
  if (handover::find_subsystem(blob, "peers")) parts |= abi::kUpdateScopePeers;
  return parts;
}

void drop_parts(const PartsContext& cx, std::uint32_t scope) {
  cx.files->cancel();  // the session's dups close: the receiver holds its own
  cx.files->set_devices(true);
  if (scope & abi::kUpdateScopeTenants) {
    cx.tenants->forget();  // no SIGTERM at shutdown: they are the receiver's
    cx.tenants_h->handed_over();
  }
  if (scope & abi::kUpdateScopeServices) {
    if (*cx.kv) {
      (*cx.kv)->stop();  // closes its connection fds without shutdown(2)
      cx.kv->reset();
    }
    if (cx.kv_h) (void)cx.kv_h->finish();  // forgets the ids of this update
    if (*cx.kv_range) {
      (void)cx.regions->release(**cx.kv_range);  // the store is the receiver's
      cx.kv_range->reset();
    }
    for (auto& d : cx.tree->devices) {
      if (!carries_fd(d.kind) || d.fd < 0) continue;
      ::close(d.fd);
      d.fd = -1;  // a services part handed back installs its fd here again
    }
  }
}

Result<void> restore_parts(const PartsContext& cx, const handover::KhoBlob& blob,
                           std::vector<handover::OwnedFd> fds) {
  const std::uint32_t parts = parts_in(blob);
  const bool kv = handover::find_subsystem(blob, "kv") != nullptr;
  if (parts == 0) return MK_FAIL(EINVAL, "handover: the package carries no part", "no tenants, memory or peers subsystem");
  if (kv && !cx.kv_h) {
    return MK_FAIL(EINVAL, "the predecessor ran the kv service", "start the successor with --services=kv");
  }
  cx.files->set_devices(parts & abi::kUpdateScopeServices);
  cx.files->set_received(std::move(fds));
  // Incoming order: files first (restores the session the others take from).
  std::vector<std::unique_ptr<Incoming>> wrap;
  // (A peers-only package has no session.)
  if (parts & (abi::kUpdateScopeTenants | abi::kUpdateScopeServices)) wrap.push_back(std::make_unique<Incoming>(cx.files));
  if (parts & abi::kUpdateScopeServices) wrap.push_back(std::make_unique<Incoming>(cx.memory));
  if (parts & abi::kUpdateScopeTenants) wrap.push_back(std::make_unique<Incoming>(cx.tenants_h));
  if (kv) wrap.push_back(std::make_unique<Incoming>(cx.kv_h));
  auto done = [&](Result<void> r) {
    cx.files->set_devices(true);
    return r;
  };
  handover::UpdateMachine in;
  for (auto& w : wrap) MK_TRY(in.add_handler(w.get()));
  handover::KhoBlob scratch;
  MK_TRY(in.prepare(scratch));
  MK_TRY(in.freeze(scratch));
  if (auto r = in.retrieve(blob); !r) {
    (void)in.cancel();
    return done(r.error());
  }
  if (auto r = in.finish(); !r) {
    // Updated but not finished (e.g. a token nobody took): undo every retrieve.
    for (auto it = wrap.rbegin(); it != wrap.rend(); ++it) (*it)->cancel();
    return done(r.error());
  }
  return done({});
}

void ExitForwarder::poll(int write_fd) {
  if (!active_) return;
  for (;;) {
    int st = 0;
    const pid_t pid = ::waitpid(-1, &st, WNOHANG);
    if (pid > 0) {
      pending_.push_back(abi::TenantExitMsg{pid, st, 0, 0});
      continue;
    }
    if (pid < 0 && errno == EINTR) continue;
    break;  // none exited (0) or no children (ECHILD)
  }
  if (write_fd < 0) {
    pending_.clear();  // no pipe to relay to
    return;
  }
  const int fl = ::fcntl(write_fd, F_GETFL);
  if (fl >= 0 && !(fl & O_NONBLOCK)) (void)::fcntl(write_fd, F_SETFL, fl | O_NONBLOCK);  // never block the loop
  while (!pending_.empty()) {
    const abi::TenantExitMsg& m = pending_.front();
    const ssize_t w = ::write(write_fd, &m, sizeof m);  // < PIPE_BUF: atomic
    if (w == static_cast<ssize_t>(sizeof m) || (w < 0 && errno == EPIPE)) {
      pending_.pop_front();  // written, or nobody will ever read it
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    break;  // full (EAGAIN): the next poll
  }
}

}  // namespace mk::image
