// pidfd-based process watching (see supervisor.h).
#include "supervisor.h"

#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/posix/descriptor_base.hpp>
#include <cstdio>
#include <string>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace mkerneld {

namespace {

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

}  // namespace

Supervisor::~Supervisor() = default;  // closing the descriptors cancels the waits

mk::Result<void> Supervisor::adopt(const ProcessIdentity& who) {
  if (watched_.count(who.pid)) return MK_FAIL(EEXIST, "already watched", "pid %d", who.pid);
  int fd = pidfd_open(who.pid);
  if (fd < 0) {
    int e = errno;
    if (e == ESRCH) return MK_FAIL(ESRCH, "process is gone", "pid %d has exited", who.pid);
    return mk::Error(e, "cannot open a pidfd").set_detail("pid %d: %s", who.pid, strerror(e));
  }
  auto sd = std::make_unique<boost::asio::posix::stream_descriptor>(io_, fd);
  // The pidfd now pins the process it names; check that it is ours.
  auto now = read_identity(root_, who.pid);
  if (!now) return now.error();  // sd closes the pidfd
  if (now->start_time != who.start_time) {
    return MK_FAIL(ESRCH, "pid was recycled", "pid %d started at tick %llu, the instance at %llu: not the instance",
                   who.pid, static_cast<unsigned long long>(now->start_time),
                   static_cast<unsigned long long>(who.start_time));
  }
  watched_[who.pid] = Watch{who, std::move(sd)};
  arm(who.pid);
  return mk::ok();
}

bool Supervisor::release(pid_t pid) { return watched_.erase(pid) != 0; }

void Supervisor::arm(pid_t pid) {
  auto it = watched_.find(pid);
  // The ProcessIdentity travels with the handler: after release() (and
  // perhaps a new adopt of a recycled pid) a stale completion must not report.
  ProcessIdentity who = it->second.who;
  it->second.fd->async_wait(boost::asio::posix::descriptor_base::wait_read,
                            [this, who](const boost::system::error_code& ec) {
                              if (ec) return;  // cancelled: released or shutting down
                              auto w = watched_.find(who.pid);
                              if (w == watched_.end() || !(w->second.who == who)) return;
                              exited(who.pid);
                            });
}

void Supervisor::exited(pid_t pid) {
  auto it = watched_.find(pid);
  ProcessExit ex;
  ex.who = it->second.who;
  siginfo_t info{};
  // Reaps it when it is our child; ECHILD for an adopted process.
  if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(it->second.fd->native_handle()), &info,
               WEXITED | WNOHANG) == 0 &&
      info.si_pid != 0) {
    ex.have_status = true;
    ex.code = info.si_code;
    ex.status = info.si_status;
  }
  watched_.erase(it);
  if (on_exit_) on_exit_(ex);
}

}  // namespace mkerneld
