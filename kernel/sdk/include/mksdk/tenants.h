// DOC: mk::sdk::Tenants — the instance's tenant processes (init=/--init).
//
// What this is: the workload an instance runs. Each tenant is a command
// line run as `/bin/sh -c CMD` with posix_spawn, in its own process group,
// stdin from /dev/null, stdout and stderr to the console. It inherits the
// image's confinement (CPU affinity, memory policy, namespaces), because it
// is spawned from the image's main thread after that thread was confined to
// the instance's CPUs. The image supervises it: reap() collects exits
// without blocking (each is reported to the host as a TenantExitMsg), stop()
// ends them on shutdown: SIGTERM to the group, then SIGKILL after the grace
// period.
//
// Place in the boot flow: after devices, before HostLink::send_ready
// (ReadyMsg::tenants counts them); reap() runs in the image's serve loop;
// stop() in the Shutdown handler and on host-down.
//
// Happy path:
//   1. tenants.start("my-server --port 80", console_fd) -> index;
//   2. loop: for (auto& e : tenants.reap()) report(e);
//   3. tenants.stop(grace) -> {exits, killed}: SIGTERM, wait, SIGKILL.
// Unhappy paths:
//   1. Empty command: EINVAL. posix_spawn fails (EAGAIN, ENOMEM, ENOENT for
//      /bin/sh): that errno; nothing was started.
//   2. The command itself fails (exit 127: not found): reported like any
//      other exit, through reap().
//   3. A tenant ignores SIGTERM: SIGKILL after the grace period; counted in
//      StopResult::killed.
//   4. A tenant's children outlive it: the group SIGKILL at stop() ends
//      them; before that they are the tenant's business.
//
// Adopted tenants (live update, docs/sdk.md "Live update"): a successor
// image is not its tenants' parent (the previous image, or the reaper it
// became, is). adopt() records such a tenant; its exit is not seen by
// waitpid but read from the reaper pipe (set_reaper_fd: records of
// abi::TenantExitMsg {pid, status}, written by `mk-kernel --reaper=FD`).
// reap() reads that pipe without blocking; stop() SIGTERMs an adopted
// tenant's process group, waits for its record until the grace period
// ends, then SIGKILLs the group and waits (up to 1 s more) for the record;
// a record that never comes is reported with status SIGKILL.
//
// Staged update: forget() drops every tenant without signalling it (they
// now belong to another image).
//
// Returns:
//   start: EINVAL, posix_spawn errno.
//   adopt: EINVAL (pid or pgid <= 0), EEXIST (pid or index already known).
//   set_reaper_fd: EBADF (not open), fcntl errno.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "mk/result.h"

namespace mk::sdk {

struct TenantExit {
  pid_t pid = 0;
  int status = 0;          // waitpid() status
  std::uint32_t index = 0; // order of start
};

class Tenants {
 public:
  Tenants() = default;
  ~Tenants();  // SIGKILLs and reaps whatever is still running
  Tenants(const Tenants&) = delete;
  Tenants& operator=(const Tenants&) = delete;

  // Starts `/bin/sh -c command`; stdout/stderr go to `out_fd` (-1: /dev/null).
  Result<std::uint32_t> start(const std::string& command, int out_fd);

  // A tenant started by a previous image (see above). `pgid` is its process
  // group (its own pid for tenants mk-kernel starts).
  Result<void> adopt(pid_t pid, pid_t pgid, std::uint32_t index, const std::string& command);
  // The reaper pipe's read end (made non-blocking; the caller keeps owning
  // it); -1 forgets it.
  Result<void> set_reaper_fd(int fd);
  int reaper_fd() const { return reaper_fd_; }
  // A staged live update handed the tenants to another image: forget every
  // tenant (and the reaper pipe) without signalling or reaping any; stop()
  // and the destructor no longer touch them. The caller, still their parent,
  // relays their exits (kernel/image/staged.h).
  void forget();

  // Non-blocking: the tenants that exited since the last call.
  std::vector<TenantExit> reap();

  struct StopResult {
    std::vector<TenantExit> exits;
    std::uint32_t killed = 0;  // needed SIGKILL
  };
  StopResult stop(std::chrono::milliseconds grace);

  std::uint32_t running() const;
  std::uint32_t started() const { return static_cast<std::uint32_t>(all_.size()); }
  std::vector<pid_t> pids() const;  // running tenants

  struct Info {
    pid_t pid = 0;
    pid_t pgid = 0;
    std::uint32_t index = 0;
    std::string command;
    bool adopted = false;  // exits come through the reaper pipe
  };
  std::vector<Info> running_tenants() const;

 private:
  struct Tenant {
    pid_t pid = 0;
    std::uint32_t index = 0;
    bool running = true;
    pid_t pgid = 0;
    std::string command;
    bool adopted = false;
  };
  // Reads every complete record from the reaper pipe; marks adopted
  // tenants exited and appends them to `out`.
  void read_reaper(std::vector<TenantExit>* out);
  std::vector<Tenant> all_;
  int reaper_fd_ = -1;
  std::string reaper_buf_;  // a partial record
};

}  // namespace mk::sdk
