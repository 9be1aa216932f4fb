// pidfd-based process watching (see supervisor.h).
#include "supervisor.h"

#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/posix/descriptor_base.hpp>
#include <charconv>
#include <cstdio>
#include <string>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace mkerneld {

namespace {

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

}  // namespace

mk::Result<ProcessIdentity> read_identity(const mk::SysRoot& root, pid_t pid) {
  if (pid <= 0) return MK_FAIL(ESRCH, "no such process", "pid %d", pid);
  std::string path = "/proc/" + std::to_string(pid) + "/stat";
  auto text = root.read_file(path, 4096);
  if (!text) {
    if (text.error().code() == ENOENT) return MK_FAIL(ESRCH, "no such process", "pid %d", pid);
    return text.error();
  }
  // "PID (COMM) STATE ..." — COMM may hold spaces and parentheses, so fields
  // are counted from the last ')': STATE is field 3, starttime field 22.
  std::size_t close = text->rfind(')');
  if (close == std::string::npos) return MK_FAIL(EBADMSG, "unparsable /proc stat", "%s: no ')'", path.c_str());
  const char* p = text->data() + close + 1;
  const char* end = text->data() + text->size();
  for (int field = 3; field <= 22; ++field) {
    while (p < end && *p == ' ') ++p;
    const char* start = p;
    while (p < end && *p != ' ' && *p != '\n') ++p;
    if (start == p) return MK_FAIL(EBADMSG, "unparsable /proc stat", "%s: %d fields", path.c_str(), field - 1);
    if (field == 22) {
      uint64_t t = 0;
      auto [q, ec] = std::from_chars(start, p, t);
      if (ec != std::errc() || q != p) return MK_FAIL(EBADMSG, "unparsable /proc stat", "%s: starttime", path.c_str());
      return ProcessIdentity{pid, t};
    }
  }
  return MK_FAIL(EBADMSG, "unparsable /proc stat", "%s", path.c_str());
}

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
