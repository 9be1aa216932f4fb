// DOC: mk::Guarantee — one line of "which confinement is in force".
//
// What this is: the process backend confines an instance with several
// independent mechanisms (cpuset cgroup, affinity, memory policy, memory
// cgroup, namespaces, no_new_privs, uid). Each may be unavailable on a given
// host (no writable cgroup, not root, no hugetlb pages), and the instance
// still runs. Every building block (cgroup.h, confine.h, memory_region.h)
// reports what it achieved as Guarantees; the boot recipe concatenates them
// and `mkctl show` prints them as "name: detail" (e.g. "cpuset: v1 exclusive",
// "memory cgroup: no (not writable)").
#pragma once

#include <string>
#include <vector>

namespace mk {

struct Guarantee {
  std::string name;     // "cpuset", "memory cgroup", "affinity", "pidns", ...
  bool in_force = false;
  std::string detail;   // human text, says why when not in force
  bool operator==(const Guarantee&) const = default;
};

using Guarantees = std::vector<Guarantee>;

// "name: detail", plus " [not in force]": how RuntimeRecord::guarantees
// and `mkctl show` keep it.
inline std::string to_line(const Guarantee& g) {
  return g.name + ": " + g.detail + (g.in_force ? "" : " [not in force]");
}

}  // namespace mk
