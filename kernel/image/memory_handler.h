// The "memory" handler of a live update: which pages of the instance's
// regions survive, and the page allocator's state.
//
// Role in the handover flow: on the old image, at freeze (allocations may
// change while prepared), it sets the blob's preserved-memory map to the KV
// store's pages of region 0 (when the store runs) and writes subsystem
// "memory" ("mkernel,memory-v1"): one child alloc@N {region u32, offset u64,
// pages u64} per live allocation of the page allocator. On the successor,
// retrieve checks that every preserved range lies inside its regions and
// reserves every listed allocation (Regions::reserve), so nothing it
// allocates later overlaps the predecessor's data; cancel releases them.
//
// Returns (retrieve): ENOENT/EPROTONOSUPPORT (find_compatible), EINVAL (a
// malformed child, a range outside the regions), Regions::reserve codes.
#pragma once

#include <optional>
#include <vector>

#include "handover/update.h"
#include "mksdk/regions.h"

namespace mk::image {

class MemoryHandler final : public handover::Handler {
 public:
  // `store` (may be null): the KV store's allocation, when the service runs.
  MemoryHandler(sdk::Regions* regions, const std::optional<sdk::PageRange>* store)
      : regions_(regions), store_(store) {}

  std::string_view name() const override { return "memory"; }
  Result<void> preserve(handover::KhoBlob&) override;
  // Old side: nothing was recorded. New side: releases what retrieve reserved.
  void cancel() override;
  Result<void> freeze(handover::KhoBlob& blob) override;
  void unfreeze() override {}
  Result<void> retrieve(const handover::KhoBlob& blob) override;
  Result<void> finish() override;

 private:
  sdk::Regions* regions_;
  const std::optional<sdk::PageRange>* store_;
  std::vector<sdk::PageRange> reserved_;  // new side, until finish
};

}  // namespace mk::image
