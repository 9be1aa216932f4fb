// DOC: mkerneld::Supervisor — watching instance processes without mistaking
// a recycled pid for one of them.
//
// What this is: the host's eyes on the processes it started (an instance's
// root process, DESIGN.md §3). Instances outlive mkerneld, so a restarted
// daemon re-adopts them from its persisted state, where each is recorded as
// a ProcessIdentity: pid + start time (field 22 of /proc/PID/stat, clock
// ticks since boot). A pid alone is not an identity: after the instance dies
// the kernel may hand the same pid to an unrelated process.
//
// Happy path:
//   1. when it starts a process the host records read_identity(pid);
//   2. adopt(identity) opens a pidfd (pidfd_open) and only then re-reads the
//      start time: the pidfd pins *that* process, so a match proves the fd
//      refers to the instance and not to a successor with the same pid;
//   3. the pidfd is watched in the Asio loop (posix::stream_descriptor);
//      it becomes readable when the process exits, and the ExitFn runs
//      within one loop turn (well under 100 ms);
//   4. the exit status is collected (waitid P_PIDFD) when the process is the
//      daemon's own child; an adopted process of a previous daemon is not,
//      and is reported without a status.
// Unhappy paths (adopt Returns):
//   ESRCH   the process is gone, or the pid now belongs to another process
//           (start time differs): nothing is watched;
//   EEXIST  that pid is already watched;
//   EBADMSG /proc/PID/stat is unparsable;
//   other   errno of pidfd_open (ENOSYS before Linux 5.3, EMFILE).
// release(pid) stops watching without touching the process (host stop).
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>

#include "mk/result.h"
#include "mkernel/process_identity.h"
#include "mkernel/sysroot.h"

namespace mkerneld {

using mk::ProcessIdentity;
using mk::read_identity;

struct ProcessExit {
  ProcessIdentity who;
  bool have_status = false;  // true when it was our child and was reaped
  int code = 0;              // siginfo si_code: CLD_EXITED, CLD_KILLED, CLD_DUMPED
  int status = 0;            // exit status or signal number
};

class Supervisor {
 public:
  using ExitFn = std::function<void(const ProcessExit&)>;

  Supervisor(boost::asio::io_context& io, mk::SysRoot root, ExitFn on_exit)
      : io_(io), root_(std::move(root)), on_exit_(std::move(on_exit)) {}
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;
  ~Supervisor();

  mk::Result<void> adopt(const ProcessIdentity& who);
  // Stops watching `pid` (its pidfd is closed; the process is untouched).
  // Returns false when it was not watched.
  bool release(pid_t pid);
  bool watching(pid_t pid) const { return watched_.count(pid) != 0; }
  std::size_t size() const { return watched_.size(); }

 private:
  struct Watch {
    ProcessIdentity who;
    std::unique_ptr<boost::asio::posix::stream_descriptor> fd;
  };
  void arm(pid_t pid);
  void exited(pid_t pid);

  boost::asio::io_context& io_;
  mk::SysRoot root_;
  ExitFn on_exit_;
  std::map<pid_t, Watch> watched_;
};

}  // namespace mkerneld
