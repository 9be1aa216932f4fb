// The hwloc topology handle the two hwloc users of mkernel share:
// topology.cc (discovery into mk::Topology) and picture.cc (the same source
// loaded again and annotated for lstopo). Internal: only those two include
// hwloc.h.
#pragma once

#include <hwloc.h>

namespace mk {

// Owns an hwloc topology handle so every exit path of a load destroys it.
class HwlocHandle {
 public:
  HwlocHandle() = default;
  ~HwlocHandle() {
    if (t_) hwloc_topology_destroy(t_);
  }
  HwlocHandle(const HwlocHandle&) = delete;
  HwlocHandle& operator=(const HwlocHandle&) = delete;

  hwloc_topology_t* out() { return &t_; }
  hwloc_topology_t get() const { return t_; }

 private:
  hwloc_topology_t t_ = nullptr;
};

}  // namespace mk
