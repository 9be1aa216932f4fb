// Internals shared by the two live-update modes (live_update.cc in place,
// staged_update.cc by core migration): moving an instance's resources and
// its namespace init from one image's handle to another's, and the process
// checks both need.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <string>

#include "mk/result.h"
#include "mkernel/boot.h"
#include "mkernel/owned_fd.h"

namespace mk {

// The update modes' access to the handles' internals: moving the instance's
// resources from the old image's handle to the successor's.
struct UpdateAccess {
  // The reaper a handle ends after its image (RuntimeRecord::ns_init_pid),
  // while it moves from one handle to the next.
  struct Init {
    OwnedFd pidfd;
    pid_t pid = -1;
    bool child = false;
    int32_t rec_pid = 0;
    uint64_t rec_start = 0;
    explicit operator bool() const { return pid > 0 && pidfd; }
  };

  static Init take_ns_init(RunningInstance& r) {
    Init i;
    if (r.ns_init_pid_ <= 0 || !r.ns_init_pidfd_) return i;
    i.pidfd = std::move(r.ns_init_pidfd_);
    i.pid = r.ns_init_pid_;
    i.child = r.ns_init_child_;
    i.rec_pid = r.record_.ns_init_pid;
    i.rec_start = r.record_.ns_init_start_time;
    r.ns_init_pid_ = -1;
    r.record_.ns_init_pid = 0;
    r.record_.ns_init_start_time = 0;
    return i;
  }

  // The old image itself stays (as the reaper, PID 1 of the namespace).
  static Init old_as_init(RunningInstance& old) {
    Init i;
    i.pidfd = std::move(old.pidfd_);
    i.pid = old.pid_;
    i.child = old.child_;
    i.rec_pid = old.record_.pid;
    i.rec_start = old.record_.start_time;
    old.pid_ = -1;
    old.reaped_ = true;
    return i;
  }

  static void give_ns_init(RunningInstance& to, Init&& i) {
    if (!i) return;
    to.ns_init_pidfd_ = std::move(i.pidfd);
    to.ns_init_pid_ = i.pid;
    to.ns_init_child_ = i.child;
    to.record_.ns_init_pid = i.rec_pid;
    to.record_.ns_init_start_time = i.rec_start;
    i.pid = -1;
  }

  // Cgroup, regions, network namespace, console read end: `to` owns them
  // from now on; `from` is left inert (its process is gone or is the
  // reaper; its host channel is closed).
  static void move_resources(RunningInstance& from, RunningInstance& to) {
    to.cgroup_ = std::move(from.cgroup_);
    from.cgroup_.reset();
    to.regions_ = std::move(from.regions_);
    from.regions_.clear();
    to.adopted_regions_ = std::move(from.adopted_regions_);
    from.adopted_regions_.clear();
    to.netns_ = std::move(from.netns_);
    // Guarantee lines the new image does not state itself (the host's
    // isolation lines: irq steering, host tasks, memory nodes) stay true.
    for (const std::string& line : from.record_.guarantees) {
      const std::string name = line.substr(0, line.find(':'));
      const bool stated = std::any_of(to.record_.guarantees.begin(), to.record_.guarantees.end(),
                                      [&](const std::string& l) { return l.rfind(name + ":", 0) == 0; });
      if (!stated) to.record_.guarantees.push_back(line);
    }
    to.console_.reset(from.console_.release());
    from.ep_.reset();
    from.pid_ = -1;
    from.reaped_ = true;
    from.pidfd_.reset();
  }

  static void set_reaped(RunningInstance& r) { r.reaped_ = true; }
};

namespace update_step {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0);
// True when the process behind `pidfd` ended within `timeout_ms`.
bool pidfd_gone(int pidfd, int timeout_ms);
// A copy of fd `target` of the process behind `pidfd` (pidfd_getfd).
// Returns: its errno (EPERM, EBADF) with `what` named.
Result<OwnedFd> getfd(int pidfd, int target, const char* what);
// PID 1 of its (innermost) PID namespace? /proc/PID/status NSpid.
bool is_namespace_init(pid_t pid);
// Runs the image's reaper (its cmdline has --reaper)?
bool runs_reaper(pid_t pid);

}  // namespace update_step
}  // namespace mk
