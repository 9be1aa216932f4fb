// The mkerneld end-to-end fixture: the real mkctl and mkerneld binaries
// against a private runtime directory per test. The test process is a child
// subreaper, so every daemon mkctl starts (and every instance a killed daemon
// leaves) becomes our child; TearDown kills and reaps them all.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

struct CliRun {
  int code;
  std::string out, err;
};

// A loopback TCP port nobody listens on right now (for listen: devices).
inline uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class Daemon : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    dir = fs::path("/tmp") / ("mk-d-" + std::to_string(::getpid()) + "-" +
                              ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
    rt = dir / "rt";
  }
  void TearDown() override {
    pid_t pid = daemon_pid();
    if (pid > 0 && ::kill(pid, SIGKILL) == 0) ::waitpid(pid, nullptr, 0);
    // As subreaper we are the parent of every orphan a test left (daemons
    // started by mkctl, a daemon still starting after a failed assertion,
    // images and live-update successors whose daemon was killed): kill them
    // all, then reap whatever exits, in rounds (a killed PID 1 of an
    // instance's PID namespace finishes exiting only once every zombie in
    // its namespace is reaped, and those may be our children too: never
    // block on one pid).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      bool any = false;
      for (const auto& e : fs::directory_iterator("/proc")) {
        std::string name = e.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        std::string stat = slurp(e.path() / "stat");
        std::size_t close = stat.rfind(')');
        if (close == std::string::npos) continue;
        int ppid = 0;
        if (std::sscanf(stat.c_str() + close + 1, " %*c %d", &ppid) == 1 && ppid == ::getpid()) {
          any = true;
          ::kill(static_cast<pid_t>(std::stoi(name)), SIGKILL);
        }
      }
      while (::waitpid(-1, nullptr, WNOHANG) > 0) {
      }
      if (!any) break;
      ::usleep(10000);
    }
    fs::remove_all(dir);
  }

  CliRun run(const std::string& args) {
    std::string out = (dir / "out").string(), err = (dir / "err").string();
    std::string cmd = "MKERNEL_RUNTIME_DIR='" + rt.string() + "' " + std::string(MK_BIN_DIR) + "/mkctl " + args +
                      " >" + out + " 2>" + err;
    int st = std::system(cmd.c_str());
    return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, slurp(out), slurp(err)};
  }
  int run_script(const std::string& text) {
    std::ofstream(dir / "script.sh") << text;
    int st = std::system(("bash " + (dir / "script.sh").string()).c_str());
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  }
  // The pid of the daemon that owns rt, 0 when none does.
  pid_t daemon_pid() {
    int fd = ::open((rt / "mkerneld.lock").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    bool held = ::flock(fd, LOCK_EX | LOCK_NB) != 0;
    ::close(fd);
    if (!held) return 0;
    return static_cast<pid_t>(std::atoi(slurp(rt / "mkerneld.lock").c_str()));
  }
  // Runs mkerneld directly (not through mkctl); returns its pid.
  pid_t spawn_daemon(const std::string& env = "") {
    std::string cmd = "exec env " + env + " " + std::string(MK_BIN_DIR) + "/mkerneld --runtime-dir '" +
                      rt.string() + "' >>'" + (dir / "direct.log").string() + "' 2>&1";
    pid_t pid = ::fork();
    if (pid == 0) {
      ::execl("/bin/sh", "sh", "-c", cmd.c_str(), nullptr);
      ::_exit(127);
    }
    return pid;
  }
  static int exit_code(pid_t pid) {
    int st = 0;
    if (::waitpid(pid, &st, 0) != pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  int connect_socket() {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::string p = (rt / "control.sock").string();
    std::memcpy(a.sun_path, p.c_str(), p.size() + 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }
  static std::string read_line(int fd) {
    std::string s;
    char c;
    while (::read(fd, &c, 1) == 1 && c != '\n') s += c;
    return s;
  }
  // Sends raw bytes on a fresh connection and returns the first response line.
  json::object raw(const std::string& bytes) {
    int fd = connect_socket();
    EXPECT_GE(fd, 0);
    std::size_t off = 0;
    while (off < bytes.size()) {
      ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;  // the daemon may close after refusing an oversize line
      off += static_cast<std::size_t>(n);
    }
    std::string line = read_line(fd);
    ::close(fd);
    boost::system::error_code ec;
    json::value v = json::parse(line, ec);
    EXPECT_FALSE(ec) << "not JSON: " << line;
    return v.is_object() ? v.as_object() : json::object{};
  }
  fs::path dir, rt;
};

}  // namespace
