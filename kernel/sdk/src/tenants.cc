// tenants: spawn `/bin/sh -c CMD` in its own process group, reap, stop.
#include "mksdk/tenants.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>

#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "mk/abi/control_messages.h"

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
  std::uint32_t index = 0;  // after every index in use (adopted tenants keep theirs)
  for (const auto& t : all_) index = std::max(index, t.index + 1);
  all_.push_back(Tenant{pid, index, true, pid, command, false});
  return index;
}

Result<void> Tenants::adopt(pid_t pid, pid_t pgid, std::uint32_t index, const std::string& command) {
  if (pid <= 0 || pgid <= 0) return MK_FAIL(EINVAL, "bad tenant to adopt", "pid %d pgid %d", pid, pgid);
  for (const auto& t : all_) {
    if (t.pid == pid || t.index == index) {
      return MK_FAIL(EEXIST, "tenant already known", "pid %d / index %u is already a tenant", pid, index);
    }
  }
  all_.push_back(Tenant{pid, index, true, pgid, command, true});
  return {};
}

Result<void> Tenants::set_reaper_fd(int fd) {
  if (fd < 0) {  // forget it (the owner closes it)
    reaper_fd_ = -1;
    reaper_buf_.clear();
    return {};
  }
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0) return MK_FAIL(EBADF, "reaper pipe not open", "fd %d", fd);
  if (::fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) return errno_error("fcntl(O_NONBLOCK) on the reaper pipe");
  reaper_fd_ = fd;
  return {};
}

void Tenants::forget() {
  all_.clear();
  reaper_fd_ = -1;
  reaper_buf_.clear();
}

void Tenants::read_reaper(std::vector<TenantExit>* out) {
  if (reaper_fd_ < 0) return;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(reaper_fd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EAGAIN (nothing more) or EOF (no reaper any more)
    reaper_buf_.append(buf, static_cast<std::size_t>(n));
  }
  constexpr std::size_t kRec = sizeof(abi::TenantExitMsg);
  std::size_t off = 0;
  for (; off + kRec <= reaper_buf_.size(); off += kRec) {
    abi::TenantExitMsg m{};
    std::memcpy(&m, reaper_buf_.data() + off, kRec);
    for (auto& t : all_) {
      // Records of processes that are not our tenants (orphans reparented
      // to a reaper that is PID 1) are dropped.
      if (t.adopted && t.running && t.pid == m.pid) {
        t.running = false;
        out->push_back(TenantExit{t.pid, m.status, t.index});
      }
    }
  }
  reaper_buf_.erase(0, off);
}

std::vector<TenantExit> Tenants::reap() {
  std::vector<TenantExit> out;
  read_reaper(&out);
  for (auto& t : all_) {
    if (!t.running || t.adopted) continue;
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
    if (t.running) ::kill(-t.pgid, SIGTERM);
  }
  auto wait_adopted = [&](std::chrono::steady_clock::time_point until) {
    for (;;) {
      read_reaper(&res.exits);
      bool all_done = true;
      for (auto& t : all_) {
        if (t.running && (t.adopted || !exited(t.pid))) all_done = false;
      }
      if (all_done || std::chrono::steady_clock::now() >= until) return;
      timespec ts{0, 5'000'000};
      ::nanosleep(&ts, nullptr);
    }
  };
  wait_adopted(std::chrono::steady_clock::now() + grace);
  bool any_adopted = false;
  for (auto& t : all_) {
    if (!t.running || !t.adopted) continue;
    // Not our child: no zombie holds the group id; the reaper reaps it.
    ++res.killed;
    ::kill(-t.pgid, SIGKILL);
    any_adopted = true;
  }
  if (any_adopted) {
    wait_adopted(std::chrono::steady_clock::now() + std::chrono::seconds(1));
    for (auto& t : all_) {
      if (!t.running || !t.adopted) continue;
      t.running = false;  // no record from the reaper: report the SIGKILL we sent
      res.exits.push_back(TenantExit{t.pid, SIGKILL, t.index});
    }
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
    if (!t.running || t.adopted) continue;  // adopted: not ours to end or reap here
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

std::vector<Tenants::Info> Tenants::running_tenants() const {
  std::vector<Info> out;
  for (const auto& t : all_) {
    if (t.running) out.push_back(Info{t.pid, t.pgid, t.index, t.command, t.adopted});
  }
  return out;
}

std::vector<pid_t> Tenants::pids() const {
  std::vector<pid_t> out;
  for (const auto& t : all_) {
    if (t.running) out.push_back(t.pid);
  }
  return out;
}

}  // namespace mk::sdk
