// DOC: the parts of a staged live update, mk-kernel's side (DESIGN.md §5
// "staged update by core migration"; mk/abi/control_messages.h "Staged
// update"; docs/sdk.md "Live update").
//
// What this is: an image holds up to three parts (a bitmask of the scope
// bits): tenants (the tenants handler, the reaper pipe), services (kv,
// memory, the file/listen/block devices and the client connections) and
// peers (the peer channel sides). A normally booted image holds all of
// them, a parked successor none. Each update step moves some of them:
//
// Sending side (kMsgUpdatePrepare with scope bits S; 0 = every part held,
// the in-place update of before):
//   1. prepare_scope refuses a part the image does not hold (-ENOENT) or an
//      image that holds nothing (-EBUSY);
//   2. build_outgoing registers only the handlers of S with a fresh
//      UpdateMachine (memory, tenants, kv, files; the files handler carries
//      the devices only with services);
//   3. the freeze (main.cc) detaches the peer sides only with peers and
//      adds subsystem "peers" ("mkernel,peers-v1") so the receiver attaches
//      its sides; an unscoped handover always carries it when peers are held;
//   4. kMsgUpdateFinish without kUpdateFlagPartial retires the image when
//      frozen (the in-place update) or when it holds nothing any more (a
//      staged update's last step; peers count as nothing without a peer
//      channel, since the host skips that step then);
//   5. kMsgUpdateFinish with kUpdateFlagPartial: drop_parts forgets what
//      moved (tenants without a signal: the image stays their parent and
//      relays their exits with ExitForwarder; services: the kv thread stops
//      without shutdown(2) of the clients, the device and connection fds
//      close, the store's pages are released) and the image serves the rest.
// Receiving side (kMsgHandover, parked or serving earlier parts):
//   1. parts_in(blob): tenants if "tenants", services if "memory" (or "kv"), peers if
//      "peers"; a part already held is refused (-EEXIST);
//   2. restore_parts: the files handler first (with devices only for
//      services), then memory, tenants, kv for the subsystems present; a
//      failure undoes every retrieve;
//   3. the caller attaches the peers when carried and re-pins arrived
//      tenants to its CPUs (cpus.h repin_to).
// Unhappy paths: a refused prepare changes nothing; a failed restore leaves
// the receiver holding what it held before (the host cancels both sides).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "files_handler.h"
#include "handover/kho_blob.h"
#include "handover/update.h"
#include "kv_handler.h"
#include "kv_service.h"
#include "memory_handler.h"
#include "mk/abi/control_messages.h"
#include "mksdk/devices.h"
#include "mksdk/regions.h"
#include "mksdk/tenants.h"
#include "tenants_handler.h"

namespace mk::image {

inline constexpr std::uint32_t kAllParts = abi::kUpdateScopeAll;

// What the part functions work on (all owned by the image).
struct PartsContext {
  BootTree* tree = nullptr;
  sdk::Regions* regions = nullptr;
  std::unique_ptr<KvService>* kv = nullptr;
  std::optional<sdk::PageRange>* kv_range = nullptr;
  sdk::Tenants* tenants = nullptr;
  FilesHandler* files = nullptr;
  MemoryHandler* memory = nullptr;
  TenantsHandler* tenants_h = nullptr;
  KvHandler* kv_h = nullptr;  // null without --services=kv
  sdk::Console* con = nullptr;
};

// "tenants,services,peers" (the parts of `scope`), "none" when empty.
std::string part_names(std::uint32_t scope);

// The scope a prepare with `flags` moves, given the parts `held`.
// Returns: EBUSY (nothing held), ENOENT (a part of the scope not held).
Result<std::uint32_t> prepare_scope(std::uint32_t flags, std::uint32_t held);

// A fresh machine with the handlers of `scope` in the outgoing order.
Result<void> build_outgoing(handover::UpdateMachine& m, const PartsContext& cx, std::uint32_t scope);

// Subsystem "peers": the receiver attaches its peer channel sides.
handover::Subsystem peers_subsystem();

// Whether the tree lists a channel to another instance (peers to move).
bool has_peers(const BootTree& tree);

// The parts a handover blob carries.
std::uint32_t parts_in(const handover::KhoBlob& blob);

// Old side, kMsgUpdateFinish with kUpdateFlagPartial: forget `scope`.
void drop_parts(const PartsContext& cx, std::uint32_t scope);

// New side: the handlers of the parts the blob carries retrieve and finish
// (files first, with `fds`). All or nothing.
Result<void> restore_parts(const PartsContext& cx, const handover::KhoBlob& blob,
                           std::vector<handover::OwnedFd> fds);

// After the tenants moved away while this image is still their parent:
// every child it reaps (waitpid(-1), never blocking) becomes an
// abi::TenantExitMsg record on the reaper pipe's write end, as the reaper
// writes it (reaper.h). A record the pipe cannot take now is kept and
// written on a later poll, never dropped.
class ExitForwarder {
 public:
  void start() { active_ = true; }
  bool active() const { return active_; }
  // From the serve loop: reap and write (non-blocking).
  void poll(int write_fd);

 private:
  bool active_ = false;
  std::deque<abi::TenantExitMsg> pending_;
};

}  // namespace mk::image
