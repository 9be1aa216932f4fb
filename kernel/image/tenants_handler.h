// The "tenants" handler of a live update: tenants keep running across it.
//
// Role in the handover flow: the first image is its tenants' parent; when it
// retires it execs the reaper (reaper.h), which stays their parent and writes
// each exit {pid, status} to the reaper pipe. At prepare this handler creates
// that pipe (pipe2 O_CLOEXEC; read end preserved as kReaperToken, write end
// kept for the reaper exec), or, in an image that already adopted its
// tenants, preserves the read end it was given. At freeze the image stops
// reaping (frozen(): exits stay with the kernel until the reaper or a
// cancel collects them) and writes subsystem "tenants" ("mkernel,tenants-v1"):
// property reaper (u32, 1 = a reaper pipe is in the session) and per tenant
// a child tenant@INDEX {pid u32, pgid u32, index u32, command string,
// reaper u32 (its exit comes through the pipe)}. The successor adopts each
// tenant (Tenants::adopt) and reads exits from the pipe.
//
// Returns: preserve: pipe2 errno, FilesHandler::add codes. retrieve:
// ENOENT/EPROTONOSUPPORT (find_compatible), EINVAL (malformed child, a
// tenant whose exits would not reach us), FilesHandler::take codes,
// Tenants::adopt codes.
#pragma once

#include "files_handler.h"
#include "handover/update.h"
#include "mksdk/tenants.h"

namespace mk::image {

class TenantsHandler final : public handover::Handler {
 public:
  TenantsHandler(sdk::Tenants* tenants, FilesHandler* files) : tenants_(tenants), files_(files) {}

  std::string_view name() const override { return "tenants"; }
  Result<void> preserve(handover::KhoBlob& blob) override;
  void cancel() override;
  Result<void> freeze(handover::KhoBlob& blob) override;
  void unfreeze() override { frozen_ = false; }
  Result<void> retrieve(const handover::KhoBlob& blob) override;
  Result<void> finish() override {
    retrieving_ = false;
    return {};
  }

  bool frozen() const { return frozen_; }
  // The write end of the pipe created at prepare (-1: none): the reaper's FD.
  int reaper_write_fd() const { return write_end_.get(); }
  // Staged update, old side, after a partial finish: the tenants are the
  // receiver's; the read end (its copy here) closes, the write end stays
  // (this image, still their parent, writes their exits to it).
  void handed_over();

 private:
  sdk::Tenants* tenants_;
  FilesHandler* files_;
  handover::OwnedFd read_end_;   // created here, or restored (successor)
  handover::OwnedFd write_end_;  // created here (old image only)
  bool created_ = false;         // read_end_/write_end_ made by this update's prepare
  bool preserved_ = false;
  bool frozen_ = false;
  bool retrieving_ = false;      // new side: between retrieve and finish
};

}  // namespace mk::image
