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
  return s->preserve(fd, token);
}

void FilesHandler::drop(const std::vector<std::uint64_t>& tokens) {
  if (!session_ || tokens.empty()) return;
  // A Session keeps retrieved tokens (preserving one again is EEXIST), so
  // the session is rebuilt with every other held fd (their dups move over).
  auto next = std::make_unique<handover::SessionRegistry>();
  auto fresh = next->create(kSessionName);
  if (!fresh) return;  // cannot happen for a fixed valid name
  for (const auto& f : session_->files()) {
    auto fd = session_->retrieve(f.token);  // the dropped ones close here
    if (!fd || std::find(tokens.begin(), tokens.end(), f.token) != tokens.end()) continue;
    (void)(*fresh)->preserve(fd->get(), f.token);  // same fd, same checks as when it was added
  }
  registry_ = std::move(next);
  session_ = *fresh;
}

Result<void> FilesHandler::preserve(KhoBlob&) {
  for (std::size_t i = 0; i < tree_->devices.size(); ++i) {
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

Result<void> FilesHandler::retrieve(const KhoBlob& blob) {
  MK_TRY_ASSIGN(const handover::Subsystem* sub,
                handover::find_compatible(blob, kSessionName, handover::kFilesCompatiblePrefix, handover::kFilesVersion));
  MK_TRY_ASSIGN(handover::Session restored, handover::Session::restore(*sub, std::move(received_)));
  received_.clear();
  registry_ = std::make_unique<handover::SessionRegistry>();
  MK_TRY_ASSIGN(session_, registry_->adopt(std::move(restored)));
  for (const auto& f : session_->files()) {
    if ((f.token >> 32) != (kDeviceToken >> 32)) continue;
    const std::uint64_t i = f.token & 0xffff'ffffull;
    if (i >= tree_->devices.size() || !carries_fd(tree_->devices[i].kind) || tree_->devices[i].fd >= 0) {
      return MK_FAIL(EINVAL, "handover: device token names no device waiting for its fd",
                     "token 0x%llx: the boot tree has %zu devices; file/listen/block devices must say fd -1",
                     static_cast<unsigned long long>(f.token), tree_->devices.size());
    }
    MK_TRY_ASSIGN(OwnedFd fd, session_->retrieve(f.token));
    tree_->devices[i].fd = fd.release();
    installed_.push_back(i);
  }
  for (const auto& d : tree_->devices) {
    if (carries_fd(d.kind) && d.fd < 0) {
      return MK_FAIL(ENOENT, "handover: a device got no fd", "/devices/%s is not in the package's session",
                     d.name.c_str());
    }
  }
  return {};
}

Result<OwnedFd> FilesHandler::take(std::uint64_t token) {
  if (!session_) return MK_FAIL(ENOENT, "no restored session", "token 0x%llx", static_cast<unsigned long long>(token));
  return session_->retrieve(token);
}

bool FilesHandler::has(std::uint64_t token) const {
  if (!session_) return false;
  for (const auto& f : session_->files()) {
    if (f.token == token) return true;
  }
  return false;
}

Result<void> FilesHandler::finish() {
  if (!session_) return {};
  MK_TRY(session_->finish());
  installed_.clear();  // the devices' fds belong to the image now
  session_ = nullptr;
  registry_.reset();
  return {};
}

}  // namespace mk::image
