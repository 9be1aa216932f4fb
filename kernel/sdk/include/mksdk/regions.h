// DOC: mk::sdk::Regions — the instance's memory regions and a page allocator.
//
// What this is: every /memory@N of the boot tree is a memfd the host sized
// (and bound to its NUMA node). Regions maps each one MAP_SHARED and hands
// out 4 KiB pages from them with a first-fit bitmap allocator. Allocations
// are named by (region index, byte offset, page count) — offsets, never
// pointers — so that a later live update can hand the allocation state to
// the next image, which maps the same memfds at other addresses.
//
// Place in the boot flow: after PerCpu::start, before Devices/Tenants.
//
// Happy path:
//   1. auto r = Regions::map(tree.memory);   fstat + mmap of each region;
//   2. auto p = r->alloc(pages);  r->at(*p) -> bytes;  r->release(*p);
//   3. r->used_bytes() / r->total_bytes() feed StatsMsg;
//   4. destruction unmaps (the memfds stay with the host).
// Unhappy paths:
//   1. No regions, or a region size not a multiple of 4096: EINVAL.
//   2. The memfd is smaller than the tree says: EINVAL (mapping it would
//      SIGBUS on first touch past its end). fstat/mmap errno otherwise.
//      Regions already mapped are unmapped; nothing is left behind.
//   3. alloc(0): EINVAL; no run of free pages long enough: ENOMEM.
//   4. release() of a range that is not exactly a live allocation's: EINVAL.
//   5. reserve() (a live update's successor marking the allocations its
//      predecessor handed over, listed by live()): a range outside a region
//      or of 0 pages: EINVAL; overlapping a live allocation: EBUSY.
//
// Thread safety: all members may be called from any thread (one mutex).
//
// Returns:
//   map:     EINVAL, fstat/mmap errno.
//   alloc:   EINVAL, ENOMEM.
//   release: EINVAL.
//   reserve: EINVAL, EBUSY.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "mk/boot_tree.h"
#include "mk/result.h"

namespace mk::sdk {

inline constexpr std::uint64_t kPageSize = 4096;

struct PageRange {
  std::uint32_t region = 0;  // index into the tree's memory list
  std::uint64_t offset = 0;  // bytes from the start of the region
  std::uint64_t pages = 0;
  bool operator==(const PageRange&) const = default;
};

class Regions {
 public:
  static Result<std::unique_ptr<Regions>> map(std::span<const BootMemory> memory);
  ~Regions();
  Regions(const Regions&) = delete;
  Regions& operator=(const Regions&) = delete;

  Result<PageRange> alloc(std::uint64_t pages);
  Result<void> release(const PageRange& range);
  // Marks exactly `range` allocated (a live allocation afterwards, as if
  // alloc() had returned it). For a live update's successor: the
  // predecessor's allocations (live()) are reserved before anything else
  // allocates. Returns: EINVAL (0 pages, unknown region, unaligned or past
  // the end), EBUSY (overlaps a live allocation).
  Result<void> reserve(const PageRange& range);
  // A region added while running (mkctl update NAME --memory): maps `m` as
  // the next region. Returns: EINVAL (m.index is not count(), a bad size, a
  // memfd smaller than m.size), fstat/mmap errno. Nothing changes on error.
  Result<void> add(const BootMemory& m);
  // The image's consent to give region `index` up: only the last region
  // (indices of allocations never shift), never the only one, and only
  // when nothing in it is allocated. Unmaps it. Returns: EINVAL (not the
  // last region), EBUSY (the only region; pages in use, counted).
  Result<void> remove_last(std::uint32_t index);
  // The live allocations, sorted by (region, offset).
  std::vector<PageRange> live() const;
  // Address of an allocation in this process (valid until destruction).
  std::byte* at(const PageRange& range) const;

  std::size_t count() const {
    std::lock_guard g(mu_);
    return regions_.size();
  }
  std::uint64_t total_bytes() const;
  std::uint64_t used_bytes() const;

 private:
  struct Region {
    std::byte* base = nullptr;
    std::uint64_t size = 0;
    std::vector<std::uint64_t> bitmap;  // 1 = page in use
  };
  Regions() = default;
  bool find_run(const Region& r, std::uint64_t pages, std::uint64_t* first) const;
  static void mark(Region& r, std::uint64_t first, std::uint64_t pages, bool used);
  std::uint64_t total_bytes_locked() const;  // mu_ held

  mutable std::mutex mu_;
  std::vector<Region> regions_;
  std::map<std::pair<std::uint32_t, std::uint64_t>, std::uint64_t> live_;  // (region, offset) -> pages
  std::uint64_t used_pages_ = 0;
};

}  // namespace mk::sdk
