// The reaper (reaper.h): waitpid loop writing exit records to the pipe.
#include "reaper.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "mk/abi/control_messages.h"

namespace mk::image {

int run_reaper(int fd) {
  ::signal(SIGPIPE, SIG_IGN);
  if (fd < 3 || ::fcntl(fd, F_GETFD) < 0) {
    std::fprintf(stderr, "mk-kernel --reaper: fd %d is not an open pipe end\n", fd);
    return 2;
  }
  // Only FD (and 0-2) stay: nothing of the old image is held any longer.
  if (fd > 3) ::syscall(SYS_close_range, 3u, static_cast<unsigned>(fd - 1), 0u);
  ::syscall(SYS_close_range, static_cast<unsigned>(fd + 1), ~0u, 0u);
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl >= 0) (void)::fcntl(fd, F_SETFL, fl | O_NONBLOCK);  // a full pipe drops, never blocks us
  // SIGCHLD blocked: sigsuspend below wakes on it without a race.
  sigset_t chld, old;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &chld, &old);
  struct sigaction sa {};
  sa.sa_handler = [](int) {};
  ::sigaction(SIGCHLD, &sa, nullptr);
  for (;;) {
    int st = 0;
    pid_t pid = ::waitpid(-1, &st, WNOHANG);
    if (pid > 0) {
      const abi::TenantExitMsg m{pid, st, 0, 0};
      ssize_t w;
      do {
        w = ::write(fd, &m, sizeof m);  // < PIPE_BUF: atomic
      } while (w < 0 && errno == EINTR);
      continue;  // EPIPE (no reader) / EAGAIN (full): the record is dropped
    }
    if (pid < 0 && errno == EINTR) continue;
    if (pid < 0 && errno == ECHILD && ::getpid() != 1) return 0;
    // Children still running (pid == 0), or PID 1 with none left (orphans
    // may still be reparented to us): wait for the next SIGCHLD.
    sigset_t wait_mask = old;
    sigdelset(&wait_mask, SIGCHLD);
    ::sigsuspend(&wait_mask);
  }
}

}  // namespace mk::image
