// The "kv" handler of a live update: the KV service's store and connections.
//
// Role in the handover flow: on the old image, freeze pauses the service at
// a request boundary (KvService::pause), adds every client connection to the
// session (kConnToken | connection id, the id being its fd number in this
// image) and writes subsystem "kv" ("mkernel,kv-v1"): properties region
// (u32), offset (u64), bytes (u64) of the store, and per connection a child
// conn@ID {token u64, in bytes, out bytes, closing u32} with its unparsed
// input and unwritten replies (each at most KvService::kMaxHandoverBytes).
// unfreeze (a cancelled update) drops those session entries and resumes the
// same service. On the successor, retrieve checks the store's place (region
// 0, offset 0, all of it, reserved by the memory handler), attaches the
// store (never formats: no store is a refusal), takes the connections' fds
// and starts the service on the listen devices with them.
//
// Returns: freeze: E2BIG (a connection's buffers are over the cap; retry
// when it drained), FilesHandler::add codes. retrieve: ENOENT/
// EPROTONOSUPPORT (find_compatible), EINVAL (malformed record, store not at
// region 0 offset 0 over the whole region, not reserved, buffers over the
// cap), ENOENT (no store in /memory@0), KvStore::attach codes,
// FilesHandler::take codes, KvService::start codes.
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

 private:
  KvContext ctx_;
  FilesHandler* files_;
  std::vector<std::uint64_t> tokens_;  // old side: connections in the session
  bool started_ = false;               // new side: retrieve started the service
};

}  // namespace mk::image
