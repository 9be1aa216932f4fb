// Connecting to mkerneld, auto-starting it (see daemon_client.h).
#include "daemon_client.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "state_store.h"

namespace mk::tools {

namespace {

constexpr int kReadyTimeoutMs = 30'000;     // hwloc on a big machine takes a while
constexpr int kResponseTimeoutMs = 120'000;  // a wedged daemon must not hang mkctl forever
constexpr int kRaceWaitMs = 10'000;         // the winner of an auto-start race loads its state

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// Connects to the socket. ENOTCONN means "no daemon is listening there".
Result<Fd> connect_socket(const std::string& dir) {
  std::string path = control_socket_path(dir);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path)
    return MK_FAIL(ENAMETOOLONG, "runtime directory path too long",
                   "%s: a socket path has at most %zu bytes (set MKERNEL_RUNTIME_DIR to a shorter path)",
                   path.c_str(), sizeof addr.sun_path - 1);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return errno_error("cannot create a socket");
  while (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno == EINTR) continue;
    int e = errno;
    if (e == ENOENT || e == ECONNREFUSED) return MK_FAIL(ENOTCONN, "mkerneld is not running", "no daemon serves %s", dir.c_str());
    return Error(e, "cannot connect to mkerneld").set_detail("%s: %s", path.c_str(), strerror(e));
  }
  return fd;
}

Result<void> send_all(int fd, const std::string& data) {
  std::size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      return Error(e, "cannot send to mkerneld").set_detail("%s", strerror(e));
    }
    off += static_cast<std::size_t>(n);
  }
  return ok();
}

// Reads until '\n' (returned without it) or EOF, waiting at most timeout_ms
// for each chunk.
// One line from `fd` (without its newline). Bytes read past the newline
// stay in `pending` for the next call (progress frames and the response can
// arrive in one read).
Result<std::string> read_line(int fd, std::size_t max, int timeout_ms, bool eof_ok, std::string& pending) {
  char buf[65536];
  while (true) {
    if (auto nl = pending.find('\n'); nl != std::string::npos) {
      std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      return line;
    }
    if (pending.size() > max) return MK_FAIL(EMSGSIZE, "mkerneld answer too large", "over %zu bytes", max);
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno_error("cannot wait for mkerneld");
    if (r == 0) return MK_FAIL(ETIMEDOUT, "mkerneld did not answer", "no answer within %d s", timeout_ms / 1000);
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      return Error(e, "cannot read from mkerneld").set_detail("%s", strerror(e));
    }
    if (n == 0) {
      if (eof_ok) return std::exchange(pending, {});
      return MK_FAIL(ECONNRESET, "mkerneld closed the connection", "no complete answer (it may have died; see its log)");
    }
    pending.append(buf, static_cast<std::size_t>(n));
  }
}

Result<std::string> read_line(int fd, std::size_t max, int timeout_ms, bool eof_ok) {
  std::string pending;
  return read_line(fd, max, timeout_ms, eof_ok, pending);
}

bool executable(const std::string& p) { return ::access(p.c_str(), X_OK) == 0; }

}  // namespace

std::string mkerneld_path() {
  if (const char* e = std::getenv("MKERNEL_MKERNELD"); e && *e) return e;
  char exe[4096];
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return "mkerneld";
  std::string self(exe, static_cast<std::size_t>(n));
  return self.substr(0, self.find_last_of('/') + 1) + "mkerneld";
}

Result<void> start_daemon(const std::string& dir) {
  MK_TRY(make_runtime_dir(dir));
  std::string bin = mkerneld_path();
  if (!executable(bin))
    return MK_FAIL(ENOENT, "cannot find mkerneld", "%s is not an executable (install mkerneld next to mkctl or set MKERNEL_MKERNELD)",
                   bin.c_str());
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return errno_error("cannot create a pipe");
  Fd rd(pipefd[0]);
  // Above the standard fds so the child's dup2s cannot clobber them.
  Fd wr(::fcntl(pipefd[1], F_DUPFD_CLOEXEC, 10));
  ::close(pipefd[1]);
  std::string log = daemon_log_path(dir);
  Fd logfd(::open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600));
  if (logfd.get() < 0 && (errno == EROFS || errno == ENOSPC || errno == EDQUOT)) {
    // A read-only or full runtime directory: the daemon itself says so
    // clearly (through the ready fd) and refuses to start; its log is lost.
    logfd = Fd(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  }
  if (logfd.get() < 0) {
    int e = errno;
    return Error(e, "cannot open the mkerneld log").set_detail("%s: %s", log.c_str(), strerror(e));
  }
  Fd hi_log(::fcntl(logfd.get(), F_DUPFD_CLOEXEC, 10));
  Fd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (wr.get() < 0 || hi_log.get() < 0 || devnull.get() < 0) return errno_error("cannot prepare mkerneld's fds");
  Fd hi_null(::fcntl(devnull.get(), F_DUPFD_CLOEXEC, 10));
  // Everything the child needs is built before fork: no allocation after it.
  std::string dir_arg = dir;
  const char* argv[] = {bin.c_str(), "--runtime-dir", dir_arg.c_str(), "--ready-fd", "3", nullptr};
  pid_t pid = ::fork();
  if (pid < 0) return errno_error("cannot fork mkerneld");
  if (pid == 0) {
    ::setsid();
    ::dup2(hi_null.get(), 0);
    ::dup2(hi_log.get(), 1);
    ::dup2(hi_log.get(), 2);
    ::dup2(wr.get(), 3);  // dup2 clears FD_CLOEXEC on fd 3
    ::execv(bin.c_str(), const_cast<char* const*>(argv));
    const char msg[] = "error: cannot execute mkerneld\n";
    ssize_t ignored = ::write(3, msg, sizeof msg - 1);
    (void)ignored;
    ::_exit(127);
  }
  wr = Fd();  // only the child holds the write end now: EOF means it is done talking
  auto said = read_line(rd.get(), 4096, kReadyTimeoutMs, /*eof_ok=*/true);
  if (said && *said == "ready") return ok();  // it serves; it outlives us
  int st = 0;
  if (!said) {
    // Neither ready nor dead: leave it be (it may still come up) and say so.
    return MK_FAIL(ETIMEDOUT, "mkerneld did not become ready", "pid %d, runtime directory %s; see %s", pid,
                   dir.c_str(), log.c_str());
  }
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(st) && WEXITSTATUS(st) == kExitAlreadyRunning) return MK_FAIL(EALREADY, "mkerneld already running", "%s", dir.c_str());
  // The daemon says "error: ERRNO what: detail" (see mkerneld main.cc).
  std::string why = *said;
  int code = WIFEXITED(st) && WEXITSTATUS(st) == 127 ? ENOENT : EIO;
  if (why.rfind("error: ", 0) == 0) {
    why.erase(0, 7);
    char* end = nullptr;
    long n = std::strtol(why.c_str(), &end, 10);
    if (end != why.c_str() && *end == ' ' && n > 0 && n < 4096) {
      code = static_cast<int>(n);
      why.erase(0, static_cast<std::size_t>(end - why.c_str()) + 1);
    }
  }
  if (why.empty()) why = "it exited without saying why";
  return MK_FAIL(code, "mkerneld failed to start", "%s (log: %s)", why.c_str(), log.c_str());
}

Result<rpc::Response> call_daemon(const std::string& dir, const rpc::Action& action, AutoStart autostart,
                                  const std::function<void(const boost::json::object&)>& on_progress) {
  auto conn = connect_socket(dir);
  if (!conn && conn.error().code() == ENOTCONN && autostart == AutoStart::Yes) {
    auto started = start_daemon(dir);
    if (!started && started.error().code() != EALREADY) return started.error();
    // Started (or another client's daemon won the race): connect, giving the
    // winner time to load its state and listen.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kRaceWaitMs);
    while (!(conn = connect_socket(dir)) && conn.error().code() == ENOTCONN &&
           std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!conn) return conn.error();
  MK_TRY(send_all(conn->get(), rpc::encode_request(action) + "\n"));
  std::string pending;
  std::string line;
  while (true) {
    MK_TRY_ASSIGN(line, read_line(conn->get(), rpc::kMaxResponseBytes, kResponseTimeoutMs, false, pending));
    auto frame = rpc::parse_progress(line);
    if (!frame) break;  // not a progress frame: the response
    if (on_progress) on_progress(*frame);
  }
  MK_TRY_ASSIGN(rpc::Response r, rpc::parse_response(line));
  if (r.ok && std::holds_alternative<rpc::HostStopAction>(action)) {
    // The daemon closes this connection only after it removed its socket and
    // released its lock: wait for that, so a following call can start anew.
    MK_TRY(read_line(conn->get(), 4096, kResponseTimeoutMs, /*eof_ok=*/true, pending));
  }
  return r;
}

}  // namespace mk::tools
