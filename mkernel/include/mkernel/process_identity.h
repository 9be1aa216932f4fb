// DOC: mk::ProcessIdentity — naming a process so that a recycled pid is never
// mistaken for it.
//
// What this is: how the host records an instance's image process across its
// own restarts (DESIGN.md §1: instances outlive mkerneld). A pid alone is not
// an identity: after the process dies the kernel may hand the same pid to an
// unrelated one. pid + start time (field 22 of /proc/PID/stat, clock ticks
// since boot) is.
//
// Happy path:
//   1. when the host starts a process it records read_identity(pid);
//   2. a restarted host calls open_identity(identity): pidfd_open first, then
//      the start time is read again — the pidfd pins *that* process, so a
//      match proves the fd refers to the recorded process and not to a
//      successor with the same pid.
// Unhappy paths (Returns):
//   ESRCH   the process is gone, or the pid belongs to another process now;
//   EBADMSG /proc/PID/stat is unparsable;
//   other   errno of pidfd_open (ENOSYS before Linux 5.3, EMFILE).
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "mk/result.h"
#include "mkernel/owned_fd.h"
#include "mkernel/sysroot.h"

namespace mk {

struct ProcessIdentity {
  pid_t pid = 0;
  uint64_t start_time = 0;  // /proc/PID/stat field 22, clock ticks after boot
  bool operator==(const ProcessIdentity&) const = default;
};

// Reads the identity of a live pid through `root` (/proc/PID/stat).
Result<ProcessIdentity> read_identity(const SysRoot& root, pid_t pid);

// A pidfd on exactly the recorded process (see above).
Result<OwnedFd> open_identity(const SysRoot& root, const ProcessIdentity& who);

}  // namespace mk
