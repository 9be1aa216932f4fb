// Helpers of the end-to-end tests that drive a real mk-kernel KV instance
// through the library (live_update, staged_update): a RESP client, the
// tenant below an image, /proc readers.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace mk {
namespace {

inline std::string encode(const std::vector<std::string>& args) {
  std::string s = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) s += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return s;
}

// A RESP client for the simple replies the tests use (+, -, :, $).
class Client {
 public:
  explicit Client(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  }
  ~Client() { ::close(fd_); }
  bool ok() const { return ok_; }
  // "+OK", "$value", "$nil", ":1", "-ERR ...", "EOF", "TIMEOUT".
  std::string cmd(const std::vector<std::string>& args) {
    if (!send(args)) return "EOF";
    return reply(10000);
  }
  bool send(const std::vector<std::string>& args) { return send_raw(encode(args)); }
  bool send_raw(const std::string& out) {
    return ::send(fd_, out.data(), out.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(out.size());
  }
  std::string reply(int timeout_ms) {
    for (;;) {
      if (auto r = parse()) return *r;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, timeout_ms) <= 0) return "TIMEOUT";
      char tmp[4096];
      ssize_t n = ::read(fd_, tmp, sizeof tmp);
      if (n <= 0) return "EOF";
      buf_.append(tmp, static_cast<std::size_t>(n));
    }
  }

 private:
  std::optional<std::string> parse() {
    const std::size_t nl = buf_.find("\r\n");
    if (nl == std::string::npos) return std::nullopt;
    const char t = buf_[0];
    std::string line = buf_.substr(1, nl - 1);
    if (t == '$') {
      long n = std::stol(line);
      if (n < 0) {
        buf_.erase(0, nl + 2);
        return std::string("$nil");
      }
      if (buf_.size() < nl + 2 + static_cast<std::size_t>(n) + 2) return std::nullopt;
      std::string v = buf_.substr(nl + 2, static_cast<std::size_t>(n));
      buf_.erase(0, nl + 2 + static_cast<std::size_t>(n) + 2);
      return "$" + v;
    }
    buf_.erase(0, nl + 2);
    return std::string(1, t) + line;
  }
  int fd_ = -1;
  bool ok_ = false;
  std::string buf_;
};

inline uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  ::close(fd);
  return ntohs(sa.sin_port);
}

inline std::string ns_link(pid_t pid, const char* ns) {
  char buf[128] = {};
  std::string p = "/proc/" + std::to_string(pid) + "/ns/" + ns;
  ssize_t n = ::readlink(p.c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string("?");
}

inline std::string file_text(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

inline std::string status_line(pid_t pid, const char* key) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind(key, 0) == 0) return line.substr(line.find_first_not_of(" \t", std::strlen(key)));
  return "?";
}

inline std::string drain(int fd) {
  std::string s;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) s.append(buf, static_cast<std::size_t>(n));
  return s;
}

// The tenant: the `sleep` below the image (host pid), once it runs.
inline pid_t find_tenant_once(pid_t parent, int depth) {
  std::string kids = file_text("/proc/" + std::to_string(parent) + "/task/" + std::to_string(parent) + "/children");
  std::istringstream in(kids);
  for (pid_t p; in >> p;) {
    std::string comm = file_text("/proc/" + std::to_string(p) + "/comm");
    if (comm.rfind("sleep", 0) == 0) return p;
    if (depth > 0) {
      if (pid_t q = find_tenant_once(p, depth - 1); q > 0) return q;
    }
  }
  return -1;
}

inline pid_t find_tenant(pid_t image) {
  for (int i = 0; i < 200; ++i) {
    if (pid_t p = find_tenant_once(image, 1); p > 0) return p;
    ::usleep(10'000);
  }
  return -1;
}

inline bool alive(pid_t pid) {
  std::string st = file_text("/proc/" + std::to_string(pid) + "/stat");
  if (st.empty()) return false;
  std::size_t rp = st.rfind(')');
  return rp != std::string::npos && rp + 2 < st.size() && st[rp + 2] != 'Z';
}

}  // namespace
}  // namespace mk
