// DOC: Region — the shared memfd of one channel, created or probed.
//
// What this is: the owner of one channel's shared memory: a sealed memfd laid
// out as abi/ring_layout.h describes, mapped MAP_SHARED, plus one eventfd per
// direction (the eventfd view of that direction's doorbell). create() builds
// and initialises a fresh region (side A); attach() maps a region received
// from a peer (side B) and probes it once: magic, compatible string, version,
// geometry and size are checked against a layout recomputed locally, and the
// geometry used afterwards is that local copy, never the shared header.
//
// Place in the IPI flow: Channel::create/attach -> Region -> RingView for
// ring.h and DoorbellLine for doorbell.h. The memfd and eventfds travel to the
// peer by fork inheritance or SCM_RIGHTS (fd_passing.h).
//
// Happy path:
//   1. Region::create(cfg)            memfd_create, ftruncate, seal size, mmap,
//                                     header + slots initialised, eventfds.
//   2. fds travel to the peer.
//   3. Region::attach(memfd, efd0, efd1)  fstat, seals, mmap, probe, mark B attached.
//   4. Both sides use ring(dir) / doorbell(dir); last owner unmaps.
// Unhappy paths (attach returns, nothing left mapped):
//   1. EINVAL: bad config (slot count not a power of two in [64, 2^20], bulk
//      size not a multiple of 64 or > 4 GiB) or region smaller than a header.
//   2. EBADF: an fd is not open. EPERM: the memfd is not sealed against
//      shrinking (a peer could otherwise SIGBUS us by truncating it).
//   3. EPROTO: magic or compatible string wrong (not an mk-ipi region).
//      EPROTONOSUPPORT: another ABI version.
//   4. EBADMSG: geometry or size inconsistent with the header.
//   5. EBUSY: side B already attached (attach only; open() claims nothing).
//   6. create(): memfd/ftruncate/mmap/eventfd errno (ENOMEM, EMFILE, ...).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "ipi/abi/ring_layout.h"
#include "ipi/ring.h"
#include "ipi/unique_fd.h"
#include "mk/result.h"

namespace mk::ipi {

struct ChannelConfig {
  std::uint32_t slot_count = 1024;      // per direction; power of two
  std::uint64_t bulk_size = 1u << 20;   // per direction; 0 = no by-reference messages
};

// Borrowed view of a region's descriptors (for SCM_RIGHTS or exec).
struct RegionFds {
  int memfd = -1;
  int eventfd[2] = {-1, -1};  // eventfd[d]: doorbell view of direction d's consumer
};

class Region {
 public:
  static Result<std::shared_ptr<Region>> create(const ChannelConfig& cfg);
  // Maps and probes a received region and claims side B (EBUSY if taken).
  static Result<std::shared_ptr<Region>> attach(UniqueFd memfd, UniqueFd efd_ab, UniqueFd efd_ba);
  // Maps and probes like attach() (same codes except EBUSY) but claims no
  // side and writes nothing: for Channel::take_over.
  static Result<std::shared_ptr<Region>> open(UniqueFd memfd, UniqueFd efd_ab, UniqueFd efd_ba);

  ~Region();
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  RingView ring(std::uint32_t dir) const;
  abi::DoorbellLine* doorbell(std::uint32_t dir) const;
  abi::RegionHeader* header() const { return reinterpret_cast<abi::RegionHeader*>(base_); }
  RegionFds fds() const;
  int eventfd(std::uint32_t dir) const { return efd_[dir].get(); }

  std::byte* base() const { return base_; }
  std::size_t size() const { return size_; }
  std::uint32_t slot_count() const { return slot_count_; }
  std::uint64_t bulk_size() const { return bulk_size_; }

 private:
  Region() = default;

  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
  std::uint32_t slot_count_ = 0;
  std::uint64_t bulk_size_ = 0;
  std::uint64_t dir_offset_[2] = {0, 0};
  UniqueFd memfd_;
  UniqueFd efd_[2];
};

// Layout arithmetic shared by create and the attach probe.
struct RegionLayout {
  std::uint64_t direction_size;
  std::uint64_t dir_offset[2];
  std::uint64_t total_size;
};
Result<RegionLayout> compute_layout(const ChannelConfig& cfg);

}  // namespace mk::ipi
