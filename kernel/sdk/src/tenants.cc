// tenants: spawn `/bin/sh -c CMD` in its own process group, reap, stop.
#include "mksdk/tenants.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>

#include <cstring>

extern char** environ;

namespace mk::sdk {

Result<std::uint32_t> Tenants::start(const std::string& command, int out_fd) {
  if (command.empty()) return MK_FAIL(EINVAL, "empty tenant command", "init is empty");
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  ::posix_spawn_file_actions_init(&fa);
  ::posix_spawnattr_init(&attr);
  ::posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (out_fd >= 0) {
    ::posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    ::posix_spawn_file_actions_adddup2(&fa, out_fd, 2);
  } else {
    ::posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    ::posix_spawn_file_actions_adddup2(&fa, 1, 2);
  }
  // Own process group (stop() signals the whole group); default dispositions
  // for what the image ignores (SIGPIPE); an empty signal mask.
  sigset_t def, mask;
  sigemptyset(&def);
  sigaddset(&def, SIGPIPE);
  sigaddset(&def, SIGTERM);
  sigaddset(&def, SIGINT);
  sigaddset(&def, SIGHUP);
  sigemptyset(&mask);
  ::posix_spawnattr_setsigdefault(&attr, &def);
  ::posix_spawnattr_setsigmask(&attr, &mask);
  ::posix_spawnattr_setpgroup(&attr, 0);
  ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  std::string arg0 = "sh", arg1 = "-c", arg2 = command;
  char* argv[] = {arg0.data(), arg1.data(), arg2.data(), nullptr};
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, environ);
  ::posix_spawn_file_actions_destroy(&fa);
  ::posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return MK_FAIL(rc, "starting a tenant", "posix_spawn /bin/sh -c '%s': %s", command.c_str(), std::strerror(rc));
  }
  const auto index = static_cast<std::uint32_t>(all_.size());
  all_.push_back(Tenant{pid, index, true});
  return index;
}

std::vector<TenantExit> Tenants::reap() {
  std::vector<TenantExit> out;
  for (auto& t : all_) {
    if (!t.running) continue;
    int status = 0;
    pid_t r = ::waitpid(t.pid, &status, WNOHANG);
    if (r == t.pid || (r < 0 && errno == ECHILD)) {
      t.running = false;
      out.push_back(TenantExit{t.pid, r == t.pid ? status : 0, t.index});
    }
  }
  return out;
}

namespace {

// True once `pid` has exited; leaves it a zombie (WNOWAIT) so its process
// group id cannot be reused before we signal the group a last time.
bool exited(pid_t pid) {
  siginfo_t si{};
  if (::waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED | WNOHANG | WNOWAIT) != 0) return true;
  return si.si_pid == pid;
}

}  // namespace

Tenants::StopResult Tenants::stop(std::chrono::milliseconds grace) {
  StopResult res;
  for (auto& t : all_) {
    if (t.running) ::kill(-t.pid, SIGTERM);
  }
  const auto deadline = std::chrono::steady_clock::now() + grace;
  for (;;) {
    bool all_done = true;
    for (auto& t : all_) {
      if (t.running && !exited(t.pid)) all_done = false;
    }
    if (all_done || std::chrono::steady_clock::now() >= deadline) break;
    timespec ts{0, 5'000'000};
    ::nanosleep(&ts, nullptr);
  }
  for (auto& t : all_) {
    if (!t.running) continue;
    if (!exited(t.pid)) ++res.killed;
    // The leader is unreaped, so the group id is still ours: end stragglers
    // (children the tenant left behind) together with a leader that ignored
    // SIGTERM.
    ::kill(-t.pid, SIGKILL);
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(t.pid, &status, 0);
    } while (r < 0 && errno == EINTR);
    t.running = false;
    res.exits.push_back(TenantExit{t.pid, r == t.pid ? status : 0, t.index});
  }
  return res;
}

Tenants::~Tenants() {
  for (auto& t : all_) {
    if (!t.running) continue;
    ::kill(-t.pid, SIGKILL);
    int status;
    while (::waitpid(t.pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

std::uint32_t Tenants::running() const {
  std::uint32_t n = 0;
  for (const auto& t : all_) n += t.running ? 1 : 0;
  return n;
}

std::vector<pid_t> Tenants::pids() const {
  std::vector<pid_t> out;
  for (const auto& t : all_) {
    if (t.running) out.push_back(t.pid);
  }
  return out;
}

}  // namespace mk::sdk
