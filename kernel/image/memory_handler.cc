// The memory handler: preserved-memory map and allocator state (memory_handler.h).
#include "memory_handler.h"

#include <cstdio>

namespace mk::image {

using handover::KhoBlob;
using handover::KhoNode;
using handover::KhoProperty;

namespace {
constexpr const char* kPrefix = "mkernel,memory-v";
constexpr const char* kCompatible = "mkernel,memory-v1";
}  // namespace

Result<void> MemoryHandler::preserve(KhoBlob&) {
  // Nothing is recorded yet (the allocator changes until the freeze); an
  // instance without regions cannot be updated.
  if (!regions_ || regions_->count() == 0) {
    return MK_FAIL(EINVAL, "no memory regions mapped", "the image has no page allocator to hand over");
  }
  return {};
}

Result<void> MemoryHandler::freeze(KhoBlob& blob) {
  blob.memory.clear();
  if (*store_) {
    const sdk::PageRange& r = **store_;
    blob.memory.push_back(handover::PreservedRange{r.region, r.offset, r.pages * sdk::kPageSize});
  }
  handover::Subsystem sub;
  sub.name = "memory";
  sub.compatible = kCompatible;
  std::size_t n = 0;
  for (const auto& a : regions_->live()) {
    char name[32];
    std::snprintf(name, sizeof name, "alloc@%zx", n++);
    sub.children.push_back(KhoNode{name,
                                   {KhoProperty::u32("region", a.region), KhoProperty::u64("offset", a.offset),
                                    KhoProperty::u64("pages", a.pages)},
                                   {}});
  }
  blob.subsystems.push_back(std::move(sub));
  return {};
}

Result<void> MemoryHandler::retrieve(const KhoBlob& blob) {
  MK_TRY_ASSIGN(const handover::Subsystem* sub, handover::find_compatible(blob, "memory", kPrefix, 1));
  const std::uint64_t regions = regions_->count();
  for (const auto& r : blob.memory) {
    if (r.region >= regions) {
      return MK_FAIL(EINVAL, "handover: preserved memory in an unknown region",
                     "region %u, this instance has %llu", r.region, static_cast<unsigned long long>(regions));
    }
  }
  for (const auto& c : sub->children) {
    std::optional<std::uint32_t> region;
    std::optional<std::uint64_t> offset, pages;
    for (const auto& p : c.properties) {
      if (p.name == "region") {
        MK_TRY_ASSIGN(region, p.as_u32());
      } else if (p.name == "offset") {
        MK_TRY_ASSIGN(offset, p.as_u64());
      } else if (p.name == "pages") {
        MK_TRY_ASSIGN(pages, p.as_u64());
      }
    }
    if (!region || !offset || !pages) {
      return MK_FAIL(EINVAL, "handover: bad memory allocation record", "/memory/%s lacks region, offset or pages",
                     c.name.c_str());
    }
    const sdk::PageRange range{*region, *offset, *pages};
    if (auto r = regions_->reserve(range); !r) {
      return MK_FAIL(r.error().code(), "handover: cannot reserve the predecessor's allocation", "/memory/%s: %s",
                     c.name.c_str(), r.error().message());
    }
    reserved_.push_back(range);
  }
  return {};
}

void MemoryHandler::cancel() {
  for (const auto& r : reserved_) (void)regions_->release(r);
  reserved_.clear();
}

Result<void> MemoryHandler::finish() {
  reserved_.clear();  // the allocations are this image's from here on
  return {};
}

}  // namespace mk::image
