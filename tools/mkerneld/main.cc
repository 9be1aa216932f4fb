// mkerneld: the host daemon (DESIGN.md §1 "host", issue #4). Owns the live
// machine's partition for one runtime directory and serves mkctl over
// <dir>/control.sock (docs/daemon.md). Thin on purpose: a linear recipe of
// named steps; the work lives in controller.cc, server.cc, supervisor.cc.
//
//   mkerneld [--runtime-dir DIR] [--ready-fd N] [--max-instances N]
//            [--max-channels-per-instance N] [--max-handoff-fds N]
//            [--max-handoff-blob BYTES] [--max-console-log BYTES]
//   (limits: daemon_limits.h; DIR/limits.json is read first, options win)
//
// Exit codes: 0 stopped cleanly (SIGTERM, SIGINT, mkctl host stop);
// 1 could not start (message on stderr and on the ready fd);
// 3 (kExitAlreadyRunning) another mkerneld owns DIR.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/statvfs.h>
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
#include "daemon_limits.h"
#include "mkernel/fault.h"
#include "mkernel/handoff_package.h"
#include "sd_notify.h"
#include "server.h"
#include "state_store.h"

namespace {

struct Options {
  std::string dir;
  int ready_fd = -1;
  std::vector<std::pair<std::string, std::string>> limits;  // (limits.json key, value) from options
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

// "" when the arguments are good, "help" for --help, else what is wrong.
std::string parse_args(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--help" || a == "-h") {
      return "help";
    } else if (a == "--runtime-dir" || a == "--ready-fd" || a.rfind("--max-", 0) == 0) {
      if (!has_value) return a + " needs a value";
      const std::string v = argv[++i];
      if (a == "--runtime-dir") {
        if (v.empty()) return "--runtime-dir: an empty path";
        o.dir = v;
      } else if (a == "--ready-fd") {
        char* end = nullptr;
        errno = 0;
        long fd = std::strtol(v.c_str(), &end, 10);
        if (v.empty() || *end || errno || fd < 0 || fd > 65535) return "--ready-fd: '" + v + "' is not an fd number";
        if (::fcntl(static_cast<int>(fd), F_GETFD) < 0) return "--ready-fd: fd " + v + " is not open";
        o.ready_fd = static_cast<int>(fd);
      } else {
        std::string key = a.substr(2);
        for (char& c : key)
          if (c == '-') c = '_';
        o.limits.emplace_back(key, v);
      }
    } else {
      return "unknown argument '" + a + "'";
    }
  }
  if (o.dir.empty()) o.dir = mk::tools::runtime_dir();
  if (o.dir[0] != '/') {  // we chdir("/") below
    char cwd[4096];
    if (::getcwd(cwd, sizeof cwd)) o.dir = std::string(cwd) + "/" + o.dir;
  }
  return "";
}

// The runtime directory must be writable: the daemon saves its state there
// after every change. Refused at start rather than on the first change.
mk::Result<void> check_writable(const std::string& dir) {
  struct statvfs vfs{};
  if (::statvfs(dir.c_str(), &vfs) == 0 && (vfs.f_flag & ST_RDONLY))
    return MK_FAIL(EROFS, "runtime directory is read-only",
                   "%s is on a read-only file system (EROFS): mkerneld keeps its state and journals there; remount "
                   "it read-write or set MKERNEL_RUNTIME_DIR to a writable directory",
                   dir.c_str());
  if (::access(dir.c_str(), W_OK) != 0) {
    int e = errno;
    return mk::Error(e, "runtime directory is not writable")
        .set_detail("%s: %s: mkerneld keeps its state and journals there; fix its permissions or set "
                    "MKERNEL_RUNTIME_DIR to a writable directory",
                    dir.c_str(), strerror(e));
  }
  return mk::ok();
}

// The pid of the daemon holding the lock on `fd`: its POSIX record lock
// names it (F_GETLK), set right after its flock; the pid it wrote in the
// file otherwise. Waits up to 2 s for a winner that just took the flock.
std::string lock_owner(int fd) {
  std::string last = "unknown";
  for (int i = 0; i < 200; ++i) {
    struct flock fl{};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (::fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK && fl.l_pid > 0) return std::to_string(fl.l_pid);
    char pid[32] = {};
    ssize_t n = ::pread(fd, pid, sizeof pid - 1, 0);
    std::string who = n > 0 ? std::string(pid, static_cast<std::size_t>(n)) : "";
    while (!who.empty() && (who.back() == '\n' || who.back() == ' ')) who.pop_back();
    if (!who.empty()) last = who;
    ::usleep(10000);
  }
  return last;
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
    if (e == EWOULDBLOCK) {
      std::string who = lock_owner(fd);
      ::close(fd);
      return MK_FAIL(EALREADY, "mkerneld already running", "pid %s owns %s (stop it with mkctl host stop)",
                     who.c_str(), dir.c_str());
    }
    ::close(fd);
    return mk::Error(e, "cannot lock the runtime directory").set_detail("%s: %s", path.c_str(), strerror(e));
  }
  // A record lock too, only so that a second daemon learns our pid at once
  // (F_GETLK), even before the pid below is written.
  struct flock fl{};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (::fcntl(fd, F_SETLK, &fl) != 0) mkerneld::log("record lock on %s: %s", path.c_str(), strerror(errno));
  // Written in place, then cut to length: never an empty file in between.
  std::string me = std::to_string(::getpid()) + "\n";
  if (::pwrite(fd, me.data(), me.size(), 0) != static_cast<ssize_t>(me.size()) ||
      ::ftruncate(fd, static_cast<off_t>(me.size())) != 0)
    mkerneld::log("cannot record our pid in %s: %s", path.c_str(), strerror(errno));
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (const std::string bad = parse_args(argc, argv, o); !bad.empty()) {
    if (bad != "help") std::fprintf(stderr, "mkerneld: %s\n", bad.c_str());
    std::fprintf(bad == "help" ? stdout : stderr, "usage: mkerneld [--runtime-dir DIR] [--ready-fd N] [--max-instances N]\n"
                         "         [--max-channels-per-instance N] [--max-handoff-fds N]\n"
                         "         [--max-handoff-blob BYTES] [--max-console-log BYTES]\n"
                         "  normally started by mkctl or systemd (systemd/mkerneld.service);\n"
                         "  limits also come from DIR/limits.json (docs/daemon.md, Limits)\n");
    return bad == "help" ? 0 : 2;
  }
  std::signal(SIGPIPE, SIG_IGN);
  if (::chdir("/") != 0) mkerneld::log("chdir /: %s", strerror(errno));

  // 1. The runtime directory, and our exclusive claim on it.
  if (auto d = mk::tools::make_runtime_dir(o.dir); !d) return fail_start(o, d.error());
  auto lock = take_daemon_lock(o.dir);
  if (!lock) {
    // Read-only: say so rather than "cannot open the daemon lock".
    if (lock.error().code() != EALREADY)
      if (auto w = check_writable(o.dir); !w) return fail_start(o, w.error());
    return fail_start(o, lock.error(), lock.error().code() == EALREADY ? mk::tools::kExitAlreadyRunning : 1);
  }
  if (auto w = check_writable(o.dir); !w) return fail_start(o, w.error());

  // The fault-injection switch (mkernel/fault.h): a bad spec, or one this
  // build cannot honour, stops the start rather than being ignored.
  if (const char* f = std::getenv("MKERNEL_FAULT"); f && *f) {
    if (auto v = mk::fault::validate(f); !v) return fail_start(o, v.error());
    mkerneld::log("fault injection on: MKERNEL_FAULT=%s", f);
  }

  // Limits: defaults, DIR/limits.json, then our options.
  auto limits = mkerneld::load_limits_file(o.dir, mkerneld::Limits{});
  if (!limits) return fail_start(o, limits.error());
  for (const auto& [key, value] : o.limits) {
    std::string option = "--" + key;
    for (char& c : option)
      if (c == '_') c = '-';
    if (auto s = mkerneld::set_limit(*limits, key, value, option); !s) return fail_start(o, s.error());
    limits->source = "options";
  }
  mk::HandoffLimits hl{limits->max_handoff_fds, limits->max_handoff_blob,
                       "mkerneld --max-handoff-fds N or \"max_handoff_fds\" in limits.json",
                       "mkerneld --max-handoff-blob BYTES or \"max_handoff_blob\" in limits.json"};
  if (auto s = mk::set_handoff_limits(hl); !s) return fail_start(o, s.error());

  try {
    // 2. The partition: topology + state file (corrupt → refuse, untouched),
    //    and every instance the state says runs, re-adopted.
    boost::asio::io_context io;
    auto controller = mkerneld::Controller::create(o.dir, mk::SysRoot::from_env(), io, *limits);
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
