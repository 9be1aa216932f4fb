// Sealed, node-bound memfd regions (see memory_region.h). The libnuma seam.
#include "mkernel/memory_region.h"

#include <fcntl.h>
#include <numa.h>
#include <numaif.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace mk {
namespace {

constexpr uint64_t kHugePage = 2ull << 20;

bool node_has_memory(uint32_t node) {
  if (numa_available() < 0) return node == 0;
  if (static_cast<int>(node) > numa_max_node()) return false;
  return numa_bitmask_isbitset(numa_nodes_ptr, node) != 0 && numa_node_size64(node, nullptr) > 0;
}

struct Mapping {
  void* p = MAP_FAILED;
  uint64_t len = 0;
  ~Mapping() {
    if (p != MAP_FAILED) ::munmap(p, len);
  }
};

// One attempt with or without MFD_HUGETLB; everything but the seals.
Result<OwnedFd> make_bound_memfd(const std::string& name, uint32_t node, uint64_t bytes,
                                 bool hugetlb, bool prefault, bool& bound) {
  unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING | (hugetlb ? MFD_HUGETLB : 0u);
  OwnedFd fd(::memfd_create(name.c_str(), flags));
  if (!fd) {
    int e = errno;
    return MK_FAIL(e, "memfd_create failed", "region '%s'%s: %s", name.c_str(),
                   hugetlb ? " (hugetlb)" : "", std::strerror(e));
  }
  if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) {
    int e = errno;
    return MK_FAIL(e, "cannot size region", "region '%s' to %llu bytes: %s", name.c_str(),
                   static_cast<unsigned long long>(bytes), std::strerror(e));
  }
  Mapping m;
  m.len = bytes;
  m.p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (m.p == MAP_FAILED) {
    int e = errno;
    return MK_FAIL(e, "cannot map region", "region '%s' (%llu bytes): %s", name.c_str(),
                   static_cast<unsigned long long>(bytes), std::strerror(e));
  }
  bound = false;
  if (numa_available() >= 0) {
    // Before the first touch: the policy lands on the memfd's shared policy,
    // so the image's own mapping later allocates from the same node.
    unsigned long mask[16] = {};
    mask[node / 64] |= 1ul << (node % 64);
    if (::mbind(m.p, bytes, MPOL_BIND, mask, sizeof mask * 8, 0) != 0) {
      int e = errno;
      return MK_FAIL(e, "mbind failed", "region '%s' to node %u: %s", name.c_str(), node,
                     std::strerror(e));
    }
    bound = true;
  }
  if (prefault && ::madvise(m.p, bytes, MADV_POPULATE_WRITE) != 0) {
    int e = errno;
    return MK_FAIL(e == EFAULT ? ENOMEM : e, "cannot populate region",
                   "region '%s' (%llu bytes on node %u%s): %s", name.c_str(),
                   static_cast<unsigned long long>(bytes), node, hugetlb ? ", hugetlb" : "",
                   std::strerror(e));
  }
  return fd;
}

}  // namespace

std::string numa_memory_nodes() {
  if (numa_available() < 0) return "0";
  std::string out;
  for (int n = 0; n <= numa_max_node(); ++n) {
    if (!numa_bitmask_isbitset(numa_nodes_ptr, static_cast<unsigned>(n))) continue;
    if (!out.empty()) out += ",";
    out += std::to_string(n);
  }
  return out;
}

Result<RegionFd> RegionFd::create(std::string_view name, uint32_t node, uint64_t bytes,
                                  const Options& opts) {
  std::string n(name.empty() ? "mk-region" : name);
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  if (bytes == 0) return MK_FAIL(EINVAL, "bad region size", "region '%s' has size 0", n.c_str());
  if (bytes % page != 0)
    return MK_FAIL(EINVAL, "bad region size", "region '%s': %llu bytes is not a multiple of %llu",
                   n.c_str(), static_cast<unsigned long long>(bytes),
                   static_cast<unsigned long long>(page));
  if (opts.require_hugetlb && bytes % kHugePage != 0)
    return MK_FAIL(EINVAL, "bad region size",
                   "region '%s': %llu bytes is not a multiple of the 2 MiB huge page", n.c_str(),
                   static_cast<unsigned long long>(bytes));
  if (node >= 1024 || !node_has_memory(node))
    return MK_FAIL(EINVAL, "bad numa node", "region '%s': node %u has no memory (nodes: %s)",
                   n.c_str(), node, numa_memory_nodes().c_str());

  RegionFd r;
  r.size_ = bytes;
  r.node_ = node;
  bool bound = false;
  if (opts.hugetlb) {
    if (bytes % kHugePage != 0) {
      r.note_ = "hugetlb: size not a multiple of 2 MiB, using normal pages";
    } else {
      auto h = make_bound_memfd(n, node, bytes, true, true, bound);
      if (h) {
        r.fd_ = std::move(h).value();
        r.hugetlb_ = true;
        r.prefaulted_ = true;
      } else {
        if (opts.require_hugetlb) return h.error();
        r.note_ = std::string("hugetlb unavailable (") + h.error().message() +
                  "), using normal pages";
      }
    }
  }
  if (!r.fd_) {
    MK_TRY_ASSIGN(r.fd_, make_bound_memfd(n, node, bytes, false, opts.prefault, bound));
    r.prefaulted_ = opts.prefault;
  }
  r.bound_ = bound;
  if (::fcntl(r.fd_.get(), F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0) {
    int e = errno;
    return MK_FAIL(e, "cannot seal region", "region '%s': %s", n.c_str(), std::strerror(e));
  }
  return r;
}

Guarantee RegionFd::guarantee() const {
  char buf[200];
  std::snprintf(buf, sizeof buf, "node %u, %llu bytes, size-sealed, %s, %s pages, %s", node_,
                static_cast<unsigned long long>(size_), bound_ ? "mbind" : "no mbind (no NUMA)",
                hugetlb_ ? "2 MiB" : "4 KiB",
                prefaulted_ ? "pre-faulted by the host" : "faulted on first touch");
  std::string detail = buf;
  if (!note_.empty()) detail += "; " + note_;
  return {"memory region", bound_, detail};
}

Result<int> numa_node_of(const void* addr) {
  int node = -1;
  if (::get_mempolicy(&node, nullptr, 0, const_cast<void*>(addr), MPOL_F_NODE | MPOL_F_ADDR) != 0) {
    int e = errno;
    return MK_FAIL(e, "get_mempolicy failed", "address %p: %s", addr, std::strerror(e));
  }
  return node;
}

}  // namespace mk
