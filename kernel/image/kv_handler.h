// The "kv" handler of a live update: the KV service's store and connections.
//
// Role in the handover flow (docs/sdk.md "Live update", docs/handover.md):
//   old image, prepare (preserve): the service is paused for a moment to
//     list its connections, resumed, and each connection's socket is added
//     to the session under kConnToken | connection id (the per-service
//     serial, never the fd number). With pre-copy these travel to the
//     successor before the freeze.
//   old image, freeze: the service is paused at a request boundary;
//     connections accepted since prepare are added to the session; the
//     subsystem "kv" ("mkernel,kv-v2") records the store's place (region
//     u32, offset u64, bytes u64), `ids` (every live connection id, u32
//     big-endian each) and, only for a connection with unparsed input,
//     unwritten replies or a pending close, a child conn@ID {id u32, in
//     bytes, out bytes, closing u32} (buffers at most kMaxHandoverBytes).
//   old image, unfreeze (cancelled): the freeze's adds are dropped and the
//     same service resumes; cancel forgets the rest (the files handler
//     drops the session).
//   successor, stage (kMsgUpdatePrecopy): takes the pre-copied connections
//     and stages the service (KvService::stage: registered, thread parked).
//   successor, retrieve: checks the store's place (region 0, offset 0, all
//     of it, reserved by the memory handler), attaches it (never formats),
//     then begins the staged service with the live ids, the connections
//     added since and the buffers, or starts one from the package alone.
//
// Returns: preserve: EINVAL (no service), FilesHandler::add codes except
// for a connection that cannot be added yet (left to freeze). freeze:
// E2BIG (a connection's buffers are over the cap; retry when it drained),
// FilesHandler::add codes. stage: FilesHandler::take codes, KvService::stage
// codes, ENOENT (no listen device fd). retrieve: ENOENT/EPROTONOSUPPORT
// (find_compatible), EINVAL (malformed record, an id listed twice or a
// record for an id not listed, store not at region 0 offset 0 over the
// whole region, not reserved, buffers over the cap), ENOENT (no store in
// /memory@0), KvStore::attach codes, FilesHandler::take codes,
// KvService::start/begin codes.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "files_handler.h"
#include "handover/update.h"
#include "kv_service.h"
#include "mksdk/devices.h"
#include "mksdk/regions.h"

namespace mk::image {

struct KvContext {
  std::unique_ptr<KvService>* service = nullptr;
  std::optional<sdk::PageRange>* store = nullptr;  // the store's allocation
  sdk::Regions* regions = nullptr;
  const BootTree* tree = nullptr;
  sdk::Console* con = nullptr;
};

class KvHandler final : public handover::Handler {
 public:
  KvHandler(KvContext ctx, FilesHandler* files) : ctx_(ctx), files_(files) {}

  std::string_view name() const override { return "kv"; }
  Result<void> preserve(handover::KhoBlob& blob) override;
  void cancel() override;
  Result<void> freeze(handover::KhoBlob& blob) override;
  void unfreeze() override;
  Result<void> retrieve(const handover::KhoBlob& blob) override;
  Result<void> finish() override;

  // Successor, after FilesHandler::stage: stage the service with the
  // pre-copied connections (nothing to do if none were sent).
  Result<void> stage();

 private:
  std::vector<int> listen_fds() const;
  KvContext ctx_;
  FilesHandler* files_;
  std::vector<std::uint32_t> precopied_;  // old side: ids preserve added (sorted)
  std::vector<std::uint64_t> added_;   // old side: tokens the freeze added
  std::unique_ptr<KvService> staged_;  // new side: stage() .. retrieve()
  std::vector<std::uint32_t> staged_ids_;  // sorted
  bool started_ = false;               // new side: retrieve started the service
};

}  // namespace mk::image
