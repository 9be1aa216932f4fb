// mkerneld: the host daemon (DESIGN.md §1 "host", issue #4). Owns the live
// machine's partition for one runtime directory and serves mkctl over
// <dir>/control.sock (docs/daemon.md). Thin on purpose: a linear recipe of
// named steps; the work lives in controller.cc, server.cc, supervisor.cc.
//
//   mkerneld [--runtime-dir DIR] [--ready-fd N]
//
// Exit codes: 0 stopped cleanly (SIGTERM, SIGINT, mkctl host stop);
// 1 could not start (message on stderr and on the ready fd);
// 3 (kExitAlreadyRunning) another mkerneld owns DIR.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "controller.h"
#include "daemon_client.h"
#include "sd_notify.h"
#include "server.h"
#include "state_store.h"

namespace {

struct Options {
  std::string dir;
  int ready_fd = -1;
};

// Tells the mkctl that started us whether we serve (daemon_client.h).
void report(int fd, const std::string& line) {
  if (fd < 0) return;
  std::string l = line + "\n";
  ssize_t ignored = ::write(fd, l.data(), l.size());
  (void)ignored;
  ::close(fd);
}

int fail_start(const Options& o, const mk::Error& e, int code = 1) {
  mkerneld::log("cannot start for %s: %s", o.dir.c_str(), e.to_string().c_str());
  report(o.ready_fd, "error: " + std::to_string(e.code()) + " " + e.to_string());
  return code;
}

bool parse_args(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--runtime-dir" && i + 1 < argc) {
      o.dir = argv[++i];
    } else if (a == "--ready-fd" && i + 1 < argc) {
      char* end = nullptr;
      long fd = std::strtol(argv[++i], &end, 10);
      if (*end || fd < 0 || fd > 65535) return false;
      o.ready_fd = static_cast<int>(fd);
    } else {
      return false;
    }
  }
  if (o.dir.empty()) o.dir = mk::tools::runtime_dir();
  if (o.dir[0] != '/') {  // we chdir("/") below
    char cwd[4096];
    if (::getcwd(cwd, sizeof cwd)) o.dir = std::string(cwd) + "/" + o.dir;
  }
  return true;
}

// One daemon per runtime directory: an exclusive flock held for life, with
// our pid inside for the message a second daemon prints.
mk::Result<int> take_daemon_lock(const std::string& dir) {
  std::string path = mk::tools::daemon_lock_path(dir);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    int e = errno;
    return mk::Error(e, "cannot open the daemon lock").set_detail("%s: %s", path.c_str(), strerror(e));
  }
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    int e = errno;
    char pid[32] = {};
    ssize_t n = ::pread(fd, pid, sizeof pid - 1, 0);
    ::close(fd);
    if (e == EWOULDBLOCK) {
      std::string who = n > 0 ? std::string(pid, static_cast<std::size_t>(n)) : "unknown";
      while (!who.empty() && (who.back() == '\n' || who.back() == ' ')) who.pop_back();
      return MK_FAIL(EALREADY, "mkerneld already running", "pid %s owns %s (stop it with mkctl host stop)",
                     who.c_str(), dir.c_str());
    }
    return mk::Error(e, "cannot lock the runtime directory").set_detail("%s: %s", path.c_str(), strerror(e));
  }
  std::string me = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, me.data(), me.size(), 0) != static_cast<ssize_t>(me.size()))
    mkerneld::log("cannot record our pid in %s: %s", path.c_str(), strerror(errno));
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse_args(argc, argv, o)) {
    std::fprintf(stderr, "usage: mkerneld [--runtime-dir DIR] [--ready-fd N]\n"
                         "  normally started by mkctl or systemd (systemd/mkerneld.service)\n");
    return 2;
  }
  std::signal(SIGPIPE, SIG_IGN);
  if (::chdir("/") != 0) mkerneld::log("chdir /: %s", strerror(errno));

  // 1. The runtime directory, and our exclusive claim on it.
  if (auto d = mk::tools::make_runtime_dir(o.dir); !d) return fail_start(o, d.error());
  auto lock = take_daemon_lock(o.dir);
  if (!lock) return fail_start(o, lock.error(), lock.error().code() == EALREADY ? mk::tools::kExitAlreadyRunning : 1);

  try {
    // 2. The partition: topology + state file (corrupt → refuse, untouched),
    //    and every instance the state says runs, re-adopted.
    boost::asio::io_context io;
    auto controller = mkerneld::Controller::create(o.dir, mk::SysRoot::from_env(), io);
    if (!controller) return fail_start(o, controller.error());

    // 3. The control socket.
    auto server = mkerneld::Server::create(io, mk::tools::control_socket_path(o.dir), **controller,
                                           [&io] { io.stop(); });
    if (!server) return fail_start(o, server.error());
    boost::asio::signal_set signals(io, SIGTERM, SIGINT);
    signals.async_wait([&io](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      mkerneld::log("signal %d: stopping", sig);
      io.stop();
    });
    (*server)->start();

    // 4. Ready: tell whoever started us.
    mkerneld::log("serving %s (%zu instance(s), %zu running)", o.dir.c_str(),
                  (*controller)->partition().instances.size(), (*controller)->running());
    report(o.ready_fd, "ready");
    if (auto n = mkerneld::sd_notify("READY=1"); !n) mkerneld::log("%s", n.error().to_string().c_str());

    // 5. Serve until SIGTERM/SIGINT or host stop. A handler that throws
    //    (allocation failure) is logged and the loop goes on.
    while (true) {
      try {
        io.run();
        break;
      } catch (const std::exception& e) {
        mkerneld::log("internal error: %s", e.what());
      }
    }

    // 6. Leave: no socket behind, the directory free for a successor, then
    //    close the clients so `host stop` returns only
    //    once a new daemon can start. Instances are not touched: the
    //    controller detaches them (their channel sides stay attached).
    if (auto n = mkerneld::sd_notify("STOPPING=1"); !n) mkerneld::log("%s", n.error().to_string().c_str());
    (*server)->close();
    ::close(*lock);
    mkerneld::log("stopped");
    server->reset();  // closes the host-stop client's connection: its EOF
  } catch (const std::exception& e) {
    return fail_start(o, MK_FAIL(EIO, "internal error", "%s", e.what()));
  }
  return 0;
}
