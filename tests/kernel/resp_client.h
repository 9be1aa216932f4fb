// A blocking RESP2 test client (kv_image_test.cc, update_image_test.cc).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "mksdk/resp.h"

namespace mk::test {

// Parses one RESP2 reply at buf[*pos]; returns a flat text form ("+OK",
// "-ERR x", ":5", "$v", "$nil", "*2[$a,$b]") or nullopt if incomplete.
inline std::optional<std::string> parse_reply(const std::string& buf, std::size_t* pos) {
  const std::size_t nl = buf.find("\r\n", *pos);
  if (nl == std::string::npos) return std::nullopt;
  const char t = buf[*pos];
  const std::string line = buf.substr(*pos + 1, nl - *pos - 1);
  std::size_t p = nl + 2;
  if (t == '+' || t == '-' || t == ':') {
    *pos = p;
    return std::string(1, t) + line;
  }
  const long long n = std::stoll(line);
  if (t == '$') {
    if (n < 0) {
      *pos = p;
      return std::string("$nil");
    }
    if (buf.size() < p + static_cast<std::size_t>(n) + 2) return std::nullopt;
    *pos = p + static_cast<std::size_t>(n) + 2;
    return "$" + buf.substr(p, static_cast<std::size_t>(n));
  }
  if (t == '*') {
    std::string out = "*" + line + "[";
    for (long long i = 0; i < n; ++i) {
      auto e = parse_reply(buf, &p);
      if (!e) return std::nullopt;
      out += (i ? "," : "") + *e;
    }
    *pos = p;
    return out + "]";
  }
  return "?" + line;
}

class Client {
 public:
  // rcvbuf > 0: a small receive buffer (replies back up in the server).
  explicit Client(std::uint16_t port, int rcvbuf = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (rcvbuf > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  }
  ~Client() { ::close(fd_); }
  bool ok() const { return ok_; }
  void send_raw(const std::string& s) {
    std::size_t off = 0;
    while (off < s.size()) {
      ssize_t n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += static_cast<std::size_t>(n);
    }
  }
  // Next reply; "EOF" when the server closed, "TIMEOUT" after 10 s.
  std::string reply() {
    for (;;) {
      std::size_t pos = pos_;
      // A failed parse of a big partial reply costs its size: try again only
      // once the buffer grew by half, or nothing more is there to read
      // (amortized linear for 15 MiB replies).
      pollfd now{fd_, POLLIN, 0};
      const bool more = ::poll(&now, 1, 0) > 0;
      if (pos < buf_.size() && (buf_.size() >= retry_at_ || !more)) {
        if (auto r = parse_reply(buf_, &pos)) {
          pos_ = pos;
          retry_at_ = 0;
          return *r;
        }
        retry_at_ = buf_.size() + (buf_.size() - pos_) / 2;
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 10000) <= 0) return "TIMEOUT";
      char tmp[65536];
      ssize_t n = ::read(fd_, tmp, sizeof tmp);
      if (n <= 0) return "EOF";
      buf_.append(tmp, static_cast<std::size_t>(n));
    }
  }
  std::string cmd(std::initializer_list<std::string_view> args) {
    send_raw(sdk::resp::encode_command(args));
    return reply();
  }

 private:
  int fd_ = -1;
  bool ok_ = false;
  std::string buf_;
  std::size_t pos_ = 0;
  std::size_t retry_at_ = 0;
};

}  // namespace mk::test
