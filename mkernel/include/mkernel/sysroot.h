// DOC: mk::SysRoot — the one injectable root for /sys, /proc and cgroup paths.
//
// What this is: every read of kernel-provided files (free memory per node,
// later cgroups, IRQ affinities, task lists) goes through a SysRoot so the
// tests can point it at a fake tree under a temporary directory. The default
// root is "/", the live machine; MKERNEL_SYSROOT overrides it for a whole
// process (used by integration tests of the CLI).
//
// Returns (read_file): ENOENT/EACCES/EIO from open/read, naming the path.
#pragma once

#include <string>
#include <string_view>

#include "mk/result.h"

namespace mk {

class SysRoot {
 public:
  SysRoot() = default;
  explicit SysRoot(std::string root) : root_(std::move(root)) {}
  // "/" unless MKERNEL_SYSROOT is set in the environment.
  static SysRoot from_env();

  const std::string& root() const { return root_; }
  // Maps an absolute path such as "/proc/meminfo" under the root.
  std::string path(std::string_view abs) const;
  Result<std::string> read_file(std::string_view abs, std::size_t max_bytes = 1 << 20) const;
  bool exists(std::string_view abs) const;

 private:
  std::string root_ = "/";
};

}  // namespace mk
