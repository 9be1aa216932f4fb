// DOC: mk::soak::Census — what a failed boot, stop or update could leak,
// counted over the whole machine: processes running mk-kernel, distinct
// memfds held by any process, instance cgroups, namespaces (of instance
// processes, or held open as an fd by any process), and the
// daemon's open fds. Two censuses around an injected failure must be equal
// (tests/faults), and one after a soak must equal the one before (mksoak).
#pragma once

#include <sys/types.h>

#include <string>

namespace mk::soak {

struct Census {
  int images = 0;      // processes whose executable is .../mk-kernel
  int memfds = 0;      // distinct memfds held by any process
  int cgroups = 0;     // instance cgroups under {cpuset,memory}/mkernel
  int namespaces = 0;  // distinct namespaces of instance processes, and held as fds by any process
  int daemon_fds = 0;  // open fds of `daemon` (0 when none given)

  bool operator==(const Census&) const = default;
  std::string str() const;
};

// Reads /proc and /sys/fs/cgroup now; `daemon` <= 0: no daemon fds counted.
Census take_census(pid_t daemon);

}  // namespace mk::soak
