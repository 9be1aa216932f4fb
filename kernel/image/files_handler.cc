// The files handler: the "mk-kernel" session of preserved fds (files_handler.h).
#include "files_handler.h"

#include <unistd.h>

#include <algorithm>

namespace mk::image {

using handover::KhoBlob;
using handover::OwnedFd;

namespace {

bool carries_fd(DeviceKind k) { return k == DeviceKind::kFile || k == DeviceKind::kListen || k == DeviceKind::kBlock; }

}  // namespace

FilesHandler::~FilesHandler() = default;

Result<handover::Session*> FilesHandler::session() {
  if (session_) return session_;
  registry_ = std::make_unique<handover::SessionRegistry>();
  MK_TRY_ASSIGN(session_, registry_->create(kSessionName));
  return session_;
}

Result<void> FilesHandler::add(int fd, std::uint64_t token) {
  MK_TRY_ASSIGN(handover::Session * s, session());
  if (staged_ && staged_->contains(token)) {
    return MK_FAIL(EEXIST, "token already preserved", "token 0x%llx was pre-copied",
                   static_cast<unsigned long long>(token));
  }
  return s->preserve(fd, token);
}

namespace {

// A Session keeps retrieved tokens (preserving one again is EEXIST), so a
// drop rebuilds it with every other held fd (their dups move over).
void drop_from(std::unique_ptr<handover::SessionRegistry>& registry, handover::Session*& session,
               const std::vector<std::uint64_t>& tokens) {
  if (!session || tokens.empty()) return;
  auto next = std::make_unique<handover::SessionRegistry>();
  auto fresh = next->create(kSessionName);
  if (!fresh) return;  // cannot happen for a fixed valid name
  for (const auto& f : session->files()) {
    auto fd = session->retrieve(f.token);  // the dropped ones close here
    if (!fd || std::find(tokens.begin(), tokens.end(), f.token) != tokens.end()) continue;
    (void)(*fresh)->preserve(fd->get(), f.token);  // same fd, same checks as when it was added
  }
  registry = std::move(next);
  session = *fresh;
}

}  // namespace

void FilesHandler::drop(const std::vector<std::uint64_t>& tokens) {
  drop_from(registry_, session_, tokens);
  drop_from(staged_registry_, staged_, tokens);
}

Result<handover::Subsystem> FilesHandler::precopy_subsystem() {
  MK_TRY_ASSIGN(handover::Session * s, session());
  return s->describe();
}

void FilesHandler::commit_precopy() {
  staged_registry_ = std::move(registry_);
  staged_ = session_;
  session_ = nullptr;  // the next add() starts the delta session
}

std::vector<std::uint64_t> FilesHandler::staged_tokens(std::uint64_t prefix) const {
  std::vector<std::uint64_t> out;
  if (!staged_) return out;
  for (const auto& f : staged_->files()) {
    if ((f.token >> 32) == (prefix >> 32)) out.push_back(f.token);
  }
  return out;
}

Result<void> FilesHandler::preserve(KhoBlob&) {
  spent_.reset();
  for (std::size_t i = 0; devices_ && i < tree_->devices.size(); ++i) {
    const BootDevice& d = tree_->devices[i];
    if (!carries_fd(d.kind) || d.fd < 0) continue;
    if (auto r = add(d.fd, kDeviceToken | i); !r) {
      // Not cancelled by the machine (its own preserve failed): drop what
      // this call added so a later prepare starts clean.
      std::vector<std::uint64_t> added;
      for (std::size_t j = 0; j < i; ++j) added.push_back(kDeviceToken | j);
      drop(added);
      return MK_FAIL(r.error().code(), "cannot preserve a device", "/devices/%s (fd %d): %s", d.name.c_str(), d.fd,
                     r.error().message());
    }
  }
  return {};
}

void FilesHandler::cancel() {
  session_ = nullptr;
  registry_.reset();  // closes every dup
  staged_ = nullptr;
  staged_registry_.reset();
  for (std::size_t i : installed_) {
    if (tree_->devices[i].fd >= 0) ::close(tree_->devices[i].fd);
    tree_->devices[i].fd = -1;
  }
  installed_.clear();
  received_.clear();
}

Result<void> FilesHandler::freeze(KhoBlob& blob) {
  MK_TRY_ASSIGN(handover::Session * s, session());
  MK_TRY_ASSIGN(handover::Subsystem sub, s->describe());
  blob.subsystems.push_back(std::move(sub));
  return {};
}

std::vector<int> FilesHandler::transfer_fds() const {
  return session_ ? session_->transfer_fds() : std::vector<int>{};
}

Result<void> FilesHandler::install_devices(handover::Session& s) {
  for (const auto& f : s.files()) {
    if ((f.token >> 32) != (kDeviceToken >> 32)) continue;
    const std::uint64_t i = f.token & 0xffff'ffffull;
    if (i >= tree_->devices.size() || !carries_fd(tree_->devices[i].kind) || tree_->devices[i].fd >= 0) {
      return MK_FAIL(EINVAL, "handover: device token names no device waiting for its fd",
                     "token 0x%llx: the boot tree has %zu devices; file/listen/block devices must say fd -1",
                     static_cast<unsigned long long>(f.token), tree_->devices.size());
    }
    MK_TRY_ASSIGN(OwnedFd fd, s.retrieve(f.token));
    tree_->devices[i].fd = fd.release();
    installed_.push_back(i);
  }
  return {};
}

Result<void> FilesHandler::stage(const KhoBlob& blob, std::vector<OwnedFd> fds) {
  if (staged_) return MK_FAIL(EALREADY, "handover: pre-copy staged already", "one kMsgUpdatePrecopy per update");
  MK_TRY_ASSIGN(const handover::Subsystem* sub,
                handover::find_compatible(blob, kSessionName, handover::kFilesCompatiblePrefix, handover::kFilesVersion));
  MK_TRY_ASSIGN(handover::Session restored, handover::Session::restore(*sub, std::move(fds)));
  auto registry = std::make_unique<handover::SessionRegistry>();
  MK_TRY_ASSIGN(handover::Session * s, registry->adopt(std::move(restored)));
  staged_registry_ = std::move(registry);
  staged_ = s;
  return install_devices(*s);  // on error the caller cancels (closes what was installed)
}

Result<void> FilesHandler::retrieve(const KhoBlob& blob) {
  MK_TRY_ASSIGN(const handover::Subsystem* sub,
                handover::find_compatible(blob, kSessionName, handover::kFilesCompatiblePrefix, handover::kFilesVersion));
  MK_TRY_ASSIGN(handover::Session restored, handover::Session::restore(*sub, std::move(received_)));
  received_.clear();
  if (staged_) {
    for (const auto& f : restored.files()) {
      if (staged_->knows(f.token)) {
        return MK_FAIL(EINVAL, "handover: token sent twice",
                       "token 0x%llx is both pre-copied and in the freeze package",
                       static_cast<unsigned long long>(f.token));
      }
    }
  }
  registry_ = std::make_unique<handover::SessionRegistry>();
  MK_TRY_ASSIGN(session_, registry_->adopt(std::move(restored)));
  MK_TRY(install_devices(*session_));
  for (const auto& d : tree_->devices) {
    if (devices_ && carries_fd(d.kind) && d.fd < 0) {
      return MK_FAIL(ENOENT, "handover: a device got no fd", "/devices/%s is not in the package's session",
                     d.name.c_str());
    }
  }
  return {};
}

namespace {

bool holds(const handover::Session* s, std::uint64_t token) { return s && s->contains(token); }

}  // namespace

Result<OwnedFd> FilesHandler::take(std::uint64_t token) {
  if (!session_ && !staged_) {
    return MK_FAIL(ENOENT, "no restored session", "token 0x%llx", static_cast<unsigned long long>(token));
  }
  if (staged_ && (!session_ || (!holds(session_, token) && holds(staged_, token)))) return staged_->retrieve(token);
  return session_->retrieve(token);
}

bool FilesHandler::has(std::uint64_t token) const { return holds(session_, token) || holds(staged_, token); }

Result<void> FilesHandler::finish() {
  if (session_) MK_TRY(session_->finish());
  if (staged_) MK_TRY(staged_->finish());
  installed_.clear();  // the devices' fds belong to the image now
  session_ = nullptr;
  registry_.reset();
  staged_ = nullptr;
  // Every staged entry was taken (finish checked): what is left is a map of
  // spent entries, freed at the next update rather than inside this one's
  // blackout (a thousand connections: tens of microseconds of frees).
  spent_ = std::move(staged_registry_);
  return {};
}

}  // namespace mk::image
