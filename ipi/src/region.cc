// Region: create / attach-and-probe the shared memfd of one channel.
#include "ipi/region.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cstring>

#include "shm_atomic.h"

namespace mk::ipi {

namespace {

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kHeaderBlock = kPage;  // header gets its own page

std::uint64_t page_up(std::uint64_t v) { return (v + kPage - 1) & ~(kPage - 1); }

}  // namespace

Result<RegionLayout> compute_layout(const ChannelConfig& cfg) {
  if (cfg.slot_count < abi::kMinSlots || cfg.slot_count > abi::kMaxSlots ||
      !std::has_single_bit(cfg.slot_count)) {
    return MK_FAIL(EINVAL, "bad ipi ring size",
                   "slot count %u must be a power of two in [%u, %u]", cfg.slot_count,
                   abi::kMinSlots, abi::kMaxSlots);
  }
  if (cfg.bulk_size % abi::kBulkAlign != 0 || cfg.bulk_size > abi::kMaxBulkSize) {
    return MK_FAIL(EINVAL, "bad ipi bulk size",
                   "bulk size %llu must be a multiple of %llu and at most %llu bytes",
                   static_cast<unsigned long long>(cfg.bulk_size),
                   static_cast<unsigned long long>(abi::kBulkAlign),
                   static_cast<unsigned long long>(abi::kMaxBulkSize));
  }
  RegionLayout l{};
  l.direction_size = page_up(sizeof(abi::DirectionControl) +
                             std::uint64_t{cfg.slot_count} * abi::kSlotSize + cfg.bulk_size);
  l.dir_offset[0] = kHeaderBlock;
  l.dir_offset[1] = kHeaderBlock + l.direction_size;
  l.total_size = kHeaderBlock + 2 * l.direction_size;
  return l;
}

Region::~Region() {
  if (base_) ::munmap(base_, size_);
}

RingView Region::ring(std::uint32_t dir) const {
  std::byte* d = base_ + dir_offset_[dir];
  RingView v;
  v.control = reinterpret_cast<abi::DirectionControl*>(d);
  v.slots = d + sizeof(abi::DirectionControl);
  v.slot_count = slot_count_;
  v.bulk_size = bulk_size_;
  v.bulk = bulk_size_ ? v.slots + std::uint64_t{slot_count_} * abi::kSlotSize : nullptr;
  return v;
}

abi::DoorbellLine* Region::doorbell(std::uint32_t dir) const {
  return &reinterpret_cast<abi::DirectionControl*>(base_ + dir_offset_[dir])->doorbell;
}

RegionFds Region::fds() const {
  RegionFds f;
  f.memfd = memfd_.get();
  f.eventfd[0] = efd_[0].get();
  f.eventfd[1] = efd_[1].get();
  return f;
}

Result<std::shared_ptr<Region>> Region::create(const ChannelConfig& cfg) {
  MK_TRY_ASSIGN(RegionLayout l, compute_layout(cfg));
  std::shared_ptr<Region> r(new Region());
  r->memfd_.reset(::memfd_create("mk-ipi-channel", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!r->memfd_.valid()) return errno_error("memfd_create for ipi channel");
  if (::ftruncate(r->memfd_.get(), static_cast<off_t>(l.total_size)) != 0) {
    return errno_error("ftruncate of ipi channel memfd");
  }
  // A peer must never be able to shrink the file under our mapping (SIGBUS).
  if (::fcntl(r->memfd_.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return errno_error("sealing ipi channel memfd");
  }
  for (auto& e : r->efd_) {
    e.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!e.valid()) return errno_error("eventfd for ipi doorbell");
  }
  void* p = ::mmap(nullptr, l.total_size, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd_.get(), 0);
  if (p == MAP_FAILED) return errno_error("mmap of ipi channel");
  r->base_ = static_cast<std::byte*>(p);
  r->size_ = l.total_size;
  r->slot_count_ = cfg.slot_count;
  r->bulk_size_ = cfg.bulk_size;
  r->dir_offset_[0] = l.dir_offset[0];
  r->dir_offset_[1] = l.dir_offset[1];

  // Fresh memfd pages are zero; fill in the header and lap -1 of each ring.
  abi::RegionHeader h{};
  h.magic = abi::kMagic;
  std::memcpy(h.compatible, abi::kCompatible, sizeof h.compatible);
  h.version = abi::kVersion;
  h.header_size = sizeof(abi::RegionHeader);
  h.slot_size = abi::kSlotSize;
  h.slot_count = cfg.slot_count;
  h.bulk_size = cfg.bulk_size;
  h.direction_size = l.direction_size;
  h.total_size = l.total_size;
  h.dir_offset[0] = l.dir_offset[0];
  h.dir_offset[1] = l.dir_offset[1];
  h.pid[0] = static_cast<std::int32_t>(::getpid());
  h.side_state[0] = abi::kSideAttached;
  std::memcpy(r->base_, &h, sizeof h);
  init_ring(r->ring(0));
  init_ring(r->ring(1));
  return r;
}

Result<std::shared_ptr<Region>> Region::open(UniqueFd memfd, UniqueFd efd_ab, UniqueFd efd_ba) {
  struct stat st {};
  if (!memfd.valid() || ::fstat(memfd.get(), &st) != 0) {
    return MK_FAIL(EBADF, "bad ipi channel fd", "memfd %d is not an open file", memfd.get());
  }
  for (const UniqueFd* e : {&efd_ab, &efd_ba}) {
    if (!e->valid() || ::fcntl(e->get(), F_GETFD) < 0) {
      return MK_FAIL(EBADF, "bad ipi doorbell fd", "eventfd %d is not open", e->get());
    }
  }
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size < kHeaderBlock) {
    return MK_FAIL(EINVAL, "ipi region too small", "memfd is %llu bytes, a header needs %llu",
                   static_cast<unsigned long long>(size), static_cast<unsigned long long>(kHeaderBlock));
  }
  const int seals = ::fcntl(memfd.get(), F_GET_SEALS);
  if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
    return MK_FAIL(EPERM, "ipi region not sealed",
                   "the channel memfd must carry F_SEAL_SHRINK so the peer cannot truncate it");
  }
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd.get(), 0);
  if (p == MAP_FAILED) return errno_error("mmap of ipi channel");
  std::shared_ptr<Region> r(new Region());
  r->base_ = static_cast<std::byte*>(p);
  r->size_ = size;  // unmapped by ~Region on every error below

  // Probe once: copy the header out, check the copy, derive geometry locally.
  abi::RegionHeader h;
  std::memcpy(&h, r->base_, sizeof h);
  if (h.magic != abi::kMagic || std::memcmp(h.compatible, abi::kCompatible, sizeof h.compatible) != 0) {
    return MK_FAIL(EPROTO, "not an ipi channel", "magic/compatible is not \"%s\"", abi::kCompatible);
  }
  if (h.version != abi::kVersion) {
    return MK_FAIL(EPROTONOSUPPORT, "ipi ABI version mismatch", "region is v%u, this build speaks v%u",
                   h.version, abi::kVersion);
  }
  ChannelConfig cfg{h.slot_count, h.bulk_size};
  auto l = compute_layout(cfg);
  if (!l || h.header_size != sizeof(abi::RegionHeader) || h.slot_size != abi::kSlotSize ||
      h.direction_size != l->direction_size || h.total_size != l->total_size ||
      h.dir_offset[0] != l->dir_offset[0] || h.dir_offset[1] != l->dir_offset[1] ||
      l->total_size != size) {
    return MK_FAIL(EBADMSG, "inconsistent ipi region header",
                   "slots %u, bulk %llu, total %llu vs memfd size %llu", h.slot_count,
                   static_cast<unsigned long long>(h.bulk_size),
                   static_cast<unsigned long long>(h.total_size),
                   static_cast<unsigned long long>(size));
  }
  r->slot_count_ = h.slot_count;
  r->bulk_size_ = h.bulk_size;
  r->dir_offset_[0] = l->dir_offset[0];
  r->dir_offset_[1] = l->dir_offset[1];
  r->memfd_ = std::move(memfd);
  r->efd_[0] = std::move(efd_ab);
  r->efd_[1] = std::move(efd_ba);
  return r;
}

Result<std::shared_ptr<Region>> Region::attach(UniqueFd memfd, UniqueFd efd_ab, UniqueFd efd_ba) {
  MK_TRY_ASSIGN(auto r, open(std::move(memfd), std::move(efd_ab), std::move(efd_ba)));
  auto* hdr = r->header();
  if (!detail::shm_cas<std::uint32_t>(&hdr->side_state[1], abi::kSideUnattached, abi::kSideAttached,
                                      std::memory_order_acq_rel)) {
    return MK_FAIL(EBUSY, "ipi channel already attached", "side B of this channel is taken");
  }
  detail::shm_store<std::int32_t>(&hdr->pid[1], static_cast<std::int32_t>(::getpid()),
                                  std::memory_order_relaxed);
  return r;
}

}  // namespace mk::ipi
