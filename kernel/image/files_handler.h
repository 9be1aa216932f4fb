// The "files" handler of a live update: one handover::Session named
// "mk-kernel" holding every fd the image hands over.
//
// Role in the handover flow (docs/sdk.md "Live update"): on the old image it
// is the last handler. Others add their fds while they preserve/freeze
// (add()); its own preserve adds the boot tree's file/listen/block devices
// (token kDeviceToken | device index), its freeze writes the session's
// "mkernel,files-v1" subtree into the blob; transfer_fds() is the package's
// fd order. On the successor it is the first handler: retrieve restores the
// session from the subtree and the received fds and installs each device fd
// into the boot tree (whose file/listen/block devices say fd = -1); the
// other handlers then take their tokens (take()); finish() closes the
// session, refusing (EBUSY) if a token was never taken.
//
// Pre-copy (kUpdateFlagPrecopy, mk/abi/control_messages.h): after prepare
// the old image sends what the session holds so far ahead of the freeze
// (precopy_subsystem/precopy_fds, then commit_precopy(), which sets those
// entries aside); freeze then describes only the entries added since. The
// successor stages the pre-copy (stage(): restores it as a second session
// and installs its device fds) and at retrieve restores the freeze's delta
// next to it; take() and finish() cover both. A token in both is refused.
//
// Staged update (kernel/image/staged.h): set_devices(false) leaves the
// devices out (a tenants-only step): preserve adds none and retrieve does
// not require each device to get its fd.
//
// Tokens: kDeviceToken | tree device index, kConnToken | connection id,
// kReaperToken (the reaper pipe's read end).
//
// Returns (beyond the handover::Handler contract):
//   add:  Session::preserve codes (EBADF, ENOENT, EEXIST, EMFILE).
//   take: ENOENT (no restored session / unknown token), EALREADY.
//   retrieve: ENOENT (no "mk-kernel" subsystem), EPROTONOSUPPORT (not
//         files-v1), Session::restore codes, EINVAL (a device token naming
//         no file/listen/block device waiting for its fd, a token both
//         staged and in the delta), ENOENT (such a device got no fd).
//   stage: as retrieve, without the "every device has its fd" check;
//         EALREADY (staged already).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "handover/session.h"
#include "handover/update.h"
#include "mk/boot_tree.h"

namespace mk::image {

inline constexpr std::uint64_t kDeviceToken = 0x1'0000'0000ull;
inline constexpr std::uint64_t kConnToken = 0x2'0000'0000ull;
inline constexpr std::uint64_t kReaperToken = 0x3'0000'0000ull;
inline constexpr const char* kSessionName = "mk-kernel";

class FilesHandler final : public handover::Handler {
 public:
  explicit FilesHandler(BootTree* tree) : tree_(tree) {}
  ~FilesHandler() override;

  std::string_view name() const override { return "files"; }
  Result<void> preserve(handover::KhoBlob& blob) override;
  void cancel() override;
  Result<void> freeze(handover::KhoBlob& blob) override;
  void unfreeze() override {}
  Result<void> retrieve(const handover::KhoBlob& blob) override;
  Result<void> finish() override;

  // Old side: hold a dup of `fd` under `token` (the session is created on
  // the first add of an update).
  Result<void> add(int fd, std::uint64_t token);
  // Old side: forget what add() held under `tokens` (a failed or cancelled
  // step); their dups close and the tokens can be added again.
  void drop(const std::vector<std::uint64_t>& tokens);
  // The held fds in package order (valid after freeze).
  std::vector<int> transfer_fds() const;
  // Old side, after prepare: the session so far, as the pre-copy package's
  // "mk-kernel" subtree (its fds: transfer_fds()); once that package is
  // written, commit_precopy() sets these entries aside (freeze describes
  // only later adds; has()/drop()/cancel() still cover them).
  Result<handover::Subsystem> precopy_subsystem();
  void commit_precopy();

  // Whether this update's session carries the devices (default true).
  void set_devices(bool on) { devices_ = on; }
  // New side, before retrieve: the fds received with the package (index order).
  void set_received(std::vector<handover::OwnedFd> fds) { received_ = std::move(fds); }
  // New side, at kMsgUpdatePrecopy: restore the pre-copied session from
  // `blob` and `fds` and install the device fds it holds.
  Result<void> stage(const handover::KhoBlob& blob, std::vector<handover::OwnedFd> fds);
  bool staged() const { return staged_ != nullptr; }
  // New side: the staged tokens under `prefix` (the high 32 bits), not taken yet.
  std::vector<std::uint64_t> staged_tokens(std::uint64_t prefix) const;
  // New side: the fd preserved under `token` (once).
  Result<handover::OwnedFd> take(std::uint64_t token);
  bool has(std::uint64_t token) const;

 private:
  Result<handover::Session*> session();
  Result<void> install_devices(handover::Session& s);
  BootTree* tree_;
  std::unique_ptr<handover::SessionRegistry> registry_;
  handover::Session* session_ = nullptr;
  // Pre-copy: old side, the entries sent ahead; new side, the staged ones.
  std::unique_ptr<handover::SessionRegistry> staged_registry_;
  handover::Session* staged_ = nullptr;
  std::unique_ptr<handover::SessionRegistry> spent_;  // finished staged session, freed at the next preserve
  std::vector<handover::OwnedFd> received_;
  std::vector<std::size_t> installed_;  // new side: device indexes given an fd
  bool devices_ = true;
};

}  // namespace mk::image
