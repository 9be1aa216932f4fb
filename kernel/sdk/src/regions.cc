// regions: map the instance's memfds, first-fit page allocator over them.
#include "mksdk/regions.h"

#include <algorithm>

#include <sys/mman.h>
#include <sys/stat.h>

namespace mk::sdk {

namespace {

// Checks and maps one region. Returns: EINVAL, fstat/mmap errno.
Result<std::byte*> map_region(const BootMemory& m) {
  if (m.size == 0 || m.size % kPageSize != 0) {
    return MK_FAIL(EINVAL, "bad region size", "/memory@%x: %llu bytes", m.index,
                   static_cast<unsigned long long>(m.size));
  }
  struct stat st {};
  if (::fstat(m.fd, &st) != 0) return errno_error("fstat of a memory region");
  if (static_cast<std::uint64_t>(st.st_size) < m.size) {
    return MK_FAIL(EINVAL, "memory region smaller than the tree says",
                   "/memory@%x: memfd %d holds %lld bytes, the tree says %llu", m.index, m.fd,
                   static_cast<long long>(st.st_size), static_cast<unsigned long long>(m.size));
  }
  void* p = ::mmap(nullptr, m.size, PROT_READ | PROT_WRITE, MAP_SHARED, m.fd, 0);
  if (p == MAP_FAILED) return errno_error("mmap of a memory region");
  return static_cast<std::byte*>(p);
}

}  // namespace

Result<std::unique_ptr<Regions>> Regions::map(std::span<const BootMemory> memory) {
  if (memory.empty()) return MK_FAIL(EINVAL, "no memory regions", "the boot tree lists no /memory@N");
  std::unique_ptr<Regions> self(new Regions());  // unmaps what is mapped on any error
  for (const auto& m : memory) {
    MK_TRY_ASSIGN(std::byte* base, map_region(m));
    Region r;
    r.base = base;
    r.size = m.size;
    r.bitmap.assign((m.size / kPageSize + 63) / 64, 0);
    self->regions_.push_back(std::move(r));
  }
  return self;
}

Result<void> Regions::add(const BootMemory& m) {
  std::lock_guard<std::mutex> lock(mu_);
  if (m.index != regions_.size()) {
    return MK_FAIL(EINVAL, "a region is added after the last one", "/memory@%x given, the next is /memory@%zx",
                   m.index, regions_.size());
  }
  MK_TRY_ASSIGN(std::byte* base, map_region(m));
  Region r;
  r.base = base;
  r.size = m.size;
  r.bitmap.assign((m.size / kPageSize + 63) / 64, 0);
  regions_.push_back(std::move(r));
  return ok();
}

Result<void> Regions::remove_last(std::uint32_t index) {
  std::lock_guard<std::mutex> lock(mu_);
  if (regions_.empty() || index != regions_.size() - 1) {
    return MK_FAIL(EINVAL, "only the last region can go", "/memory@%x asked, the last is /memory@%zx", index,
                   regions_.size() - 1);
  }
  if (regions_.size() == 1) return MK_FAIL(EBUSY, "the instance's only region", "/memory@0 stays");
  std::uint64_t pages = 0;
  for (const auto& [key, n] : live_) {
    if (key.first == index) pages += n;
  }
  if (pages > 0) {
    return MK_FAIL(EBUSY, "the region is in use", "/memory@%x: %llu page(s) allocated", index,
                   static_cast<unsigned long long>(pages));
  }
  ::munmap(regions_.back().base, regions_.back().size);
  regions_.pop_back();
  return ok();
}

Regions::~Regions() {
  for (auto& r : regions_) ::munmap(r.base, r.size);
}

bool Regions::find_run(const Region& r, std::uint64_t pages, std::uint64_t* first) const {
  const std::uint64_t total = r.size / kPageSize;
  std::uint64_t run = 0;
  for (std::uint64_t i = 0; i < total; ++i) {
    const std::uint64_t word = r.bitmap[i / 64];
    if (word == ~0ull && i % 64 == 0) {  // skip a full word at once
      run = 0;
      i += 63;
      continue;
    }
    if (word & (1ull << (i % 64))) {
      run = 0;
    } else if (++run == pages) {
      *first = i + 1 - pages;
      return true;
    }
  }
  return false;
}

namespace {

// The bits of word `w` that fall in pages [first, end).
std::uint64_t word_mask(std::uint64_t w, std::uint64_t first, std::uint64_t end) {
  const std::uint64_t lo = std::max(first, w * 64) - w * 64;
  const std::uint64_t hi = std::min(end, w * 64 + 64) - w * 64;  // 1..64
  const std::uint64_t upto = hi == 64 ? ~0ull : (1ull << hi) - 1;
  return upto & ~((1ull << lo) - 1);
}

}  // namespace

// A word at a time: a successor reserves its predecessor's 1 GiB store
// (262144 pages) inside the update's blackout.
void Regions::mark(Region& r, std::uint64_t first, std::uint64_t pages, bool used) {
  const std::uint64_t end = first + pages;
  for (std::uint64_t w = first / 64; w * 64 < end; ++w) {
    const std::uint64_t m = word_mask(w, first, end);
    if (used) {
      r.bitmap[w] |= m;
    } else {
      r.bitmap[w] &= ~m;
    }
  }
}

Result<PageRange> Regions::alloc(std::uint64_t pages) {
  if (pages == 0) return MK_FAIL(EINVAL, "zero-page allocation", "alloc(0)");
  std::lock_guard g(mu_);
  for (std::uint32_t i = 0; i < regions_.size(); ++i) {
    std::uint64_t first = 0;
    if (pages > regions_[i].size / kPageSize || !find_run(regions_[i], pages, &first)) continue;
    mark(regions_[i], first, pages, true);
    used_pages_ += pages;
    PageRange range{i, first * kPageSize, pages};
    live_[{i, range.offset}] = pages;
    return range;
  }
  return MK_FAIL(ENOMEM, "instance memory exhausted", "no run of %llu free pages (%llu of %llu pages used)",
                 static_cast<unsigned long long>(pages), static_cast<unsigned long long>(used_pages_),
                 static_cast<unsigned long long>(total_bytes_locked() / kPageSize));
}

Result<void> Regions::release(const PageRange& range) {
  std::lock_guard g(mu_);
  auto it = live_.find({range.region, range.offset});
  if (it == live_.end() || it->second != range.pages) {
    return MK_FAIL(EINVAL, "not a live allocation", "region %u offset %llu pages %llu", range.region,
                   static_cast<unsigned long long>(range.offset), static_cast<unsigned long long>(range.pages));
  }
  mark(regions_[range.region], range.offset / kPageSize, range.pages, false);
  used_pages_ -= range.pages;
  live_.erase(it);
  return {};
}

Result<void> Regions::reserve(const PageRange& range) {
  std::lock_guard g(mu_);
  if (range.pages == 0 || range.region >= regions_.size() || range.offset % kPageSize != 0) {
    return MK_FAIL(EINVAL, "bad page range to reserve", "region %u offset %llu pages %llu (%zu regions)",
                   range.region, static_cast<unsigned long long>(range.offset),
                   static_cast<unsigned long long>(range.pages), regions_.size());
  }
  Region& r = regions_[range.region];
  const std::uint64_t total = r.size / kPageSize, first = range.offset / kPageSize;
  if (first >= total || range.pages > total - first) {
    return MK_FAIL(EINVAL, "page range past the region's end", "region %u offset %llu pages %llu: the region has %llu pages",
                   range.region, static_cast<unsigned long long>(range.offset),
                   static_cast<unsigned long long>(range.pages), static_cast<unsigned long long>(total));
  }
  const std::uint64_t end = first + range.pages;
  for (std::uint64_t w = first / 64; w * 64 < end; ++w) {
    if (const std::uint64_t busy = r.bitmap[w] & word_mask(w, first, end)) {
      return MK_FAIL(EBUSY, "page range already allocated", "region %u page %llu is in use", range.region,
                     static_cast<unsigned long long>(w * 64 + static_cast<unsigned>(__builtin_ctzll(busy))));
    }
  }
  mark(r, first, range.pages, true);
  used_pages_ += range.pages;
  live_[{range.region, range.offset}] = range.pages;
  return {};
}

std::vector<PageRange> Regions::live() const {
  std::lock_guard g(mu_);
  std::vector<PageRange> out;
  for (const auto& [k, pages] : live_) out.push_back(PageRange{k.first, k.second, pages});
  return out;
}

std::byte* Regions::at(const PageRange& range) const {
  std::lock_guard g(mu_);  // add() may grow the list
  return regions_.at(range.region).base + range.offset;
}

std::uint64_t Regions::total_bytes() const {
  std::lock_guard g(mu_);  // add()/remove_last() change the list
  return total_bytes_locked();
}

std::uint64_t Regions::total_bytes_locked() const {
  std::uint64_t n = 0;
  for (const auto& r : regions_) n += r.size;
  return n;
}

std::uint64_t Regions::used_bytes() const {
  std::lock_guard g(mu_);
  return used_pages_ * kPageSize;
}

}  // namespace mk::sdk
