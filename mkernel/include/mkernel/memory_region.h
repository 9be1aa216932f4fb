// DOC: mk::RegionFd — one instance memory region: a sealed memfd bound to a
// NUMA node (the libnuma seam: only memory_region.cc includes numa.h/numaif.h).
//
// What this is: the process backend's "physical memory" of an instance
// (DESIGN.md §2). Each mk::MemoryRegion {node, bytes} of an Instance becomes a
// RegionFd: a memfd of exactly `bytes`, its shared memory policy bound to
// `node` with mbind(MPOL_BIND) before any page is touched, then sealed
// against growing, shrinking and further sealing. By default no page is
// allocated here: pages fault in when the image first touches them, on the
// node (the memfd's shared policy) and charged to the image's memory cgroup.
// Pre-faulting by the host is an option (opts.prefault). The
// image receives the fd (fd 4.. in manifest.h order) and maps it; it can
// never get a larger or smaller region, and never another instance's fd.
//
// Place in the boot flow: `start`, before the boot tree is written (the tree
// lists each region's fd number) and before spawn_confined(), which dup2()s
// fd() to its slot. The host keeps the RegionFd for the instance's lifetime
// (and preserves it across a live update).
//
// Happy path:
//   1. create(name, node, bytes, opts) checks node and size, then
//      memfd_create(MFD_CLOEXEC|MFD_ALLOW_SEALING[|MFD_HUGETLB]).
//   2. ftruncate(bytes); mmap shared; mbind(MPOL_BIND, {node}) — the policy
//      is the memfd's shared policy, so every later mapping (the image's)
//      allocates on the node too.
//   3. opts.prefault (and always for hugetlb): MADV_POPULATE_WRITE (an error,
//      not a SIGBUS, when the node or the hugetlb pool runs out), charged to
//      the HOST's memory cgroup. Off by default: populating 64 MiB costs
//      ~30-45 ms of zeroing plus ~7 ms of page-table teardown at munmap on a
//      2-CPU VM, against a 5 ms start budget. The host mapping is dropped.
//   4. F_ADD_SEALS F_SEAL_GROW|F_SEAL_SHRINK|F_SEAL_SEAL.
//
// Unhappy paths:
//   1. bytes 0 or not a multiple of the page size (2 MiB for hugetlb): EINVAL.
//   2. node not a NUMA node with memory: EINVAL naming it and the valid nodes.
//   3. hugetlb asked but unavailable (memfd refuses, or the pool cannot hold
//      the region): falls back to normal pages; hugetlb() is false and note()
//      says why. opts.require_hugetlb turns this into the error.
//   4. pre-faulting fails (node out of memory): ENOMEM, nothing left behind.
//      Without pre-faulting the same shortage shows up later, as the image's
//      fault failing (SIGBUS / OOM kill inside its cgroup), not at create.
//
// Returns (create): EINVAL as above, ENOMEM/ENOSPC (no memory on the node),
// EMFILE/ENFILE (memfd_create), errno of ftruncate/mmap/mbind/fcntl.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "mk/result.h"
#include "mkernel/guarantee.h"
#include "mkernel/owned_fd.h"

namespace mk {

class RegionFd {
 public:
  struct Options {
    bool hugetlb = false;          // 2 MiB pages when available
    bool require_hugetlb = false;  // no fallback to normal pages
    // Populate now, on the node, charged to the host. Default off: lazy
    // faults obey the same node binding and charge the instance's cgroup.
    bool prefault = false;
  };

  static Result<RegionFd> create(std::string_view name, uint32_t node, uint64_t bytes,
                                 const Options& opts);

  int fd() const { return fd_.get(); }
  uint64_t size() const { return size_; }
  uint32_t node() const { return node_; }
  bool hugetlb() const { return hugetlb_; }
  bool bound() const { return bound_; }     // mbind applied (false without NUMA support)
  bool prefaulted() const { return prefaulted_; }  // populated by create()
  const std::string& note() const { return note_; }  // fallback explanation, "" if none
  // {"memory region", in_force, "node 0, 67108864 bytes, size-sealed, mbind,
  //  4 KiB pages, faulted on first touch"}.
  Guarantee guarantee() const;
  OwnedFd release_fd() { return std::move(fd_); }

 private:
  RegionFd() = default;
  OwnedFd fd_;
  uint64_t size_ = 0;
  uint32_t node_ = 0;
  bool hugetlb_ = false;
  bool bound_ = false;
  bool prefaulted_ = false;
  std::string note_;
};

// The NUMA node backing the page at `addr` (get_mempolicy MPOL_F_NODE |
// MPOL_F_ADDR); the page must be present. Returns: EFAULT/EINVAL of the call.
Result<int> numa_node_of(const void* addr);

// Nodes with memory, as a cpu-list style string ("0", "0-1"), for messages.
std::string numa_memory_nodes();

}  // namespace mk
