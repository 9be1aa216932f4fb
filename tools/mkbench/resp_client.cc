// A minimal blocking RESP client for the KV benchmarks (resp_client.h).
#include "resp_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <thread>

namespace mkbench {

using namespace std::chrono_literals;

std::string resp(std::initializer_list<std::string_view> args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (auto a : args) {
    out += "$" + std::to_string(a.size()) + "\r\n";
    out.append(a);
    out += "\r\n";
  }
  return out;
}

bool send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// Reads until `count` occurrences of `token` were seen (replies to pipelined
// commands that all answer `token`). False on EOF/error or any other reply.
bool expect_replies(int fd, std::string_view token, std::size_t count) {
  std::string buf;
  std::size_t seen = 0;
  char tmp[65536];
  while (seen < count) {
    ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    buf.append(tmp, static_cast<std::size_t>(n));
    std::size_t pos = 0;
    while (buf.size() - pos >= token.size() && seen < count) {
      if (buf.compare(pos, token.size(), token) != 0) return false;
      pos += token.size();
      ++seen;
    }
    buf.erase(0, pos);
  }
  return buf.empty();
}

// GET key: the bulk string's length, or -1.
long get_length(int fd, const std::string& key) {
  if (!send_all(fd, resp({"GET", key}))) return -1;
  std::string buf;
  char tmp[65536];
  long want = -2;
  while (true) {
    ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    buf.append(tmp, static_cast<std::size_t>(n));
    if (want == -2) {
      auto crlf = buf.find("\r\n");
      if (crlf == std::string::npos) continue;
      if (buf[0] != '$') return -1;
      want = std::atol(buf.c_str() + 1);
      if (want < 0) return -1;
      buf.erase(0, crlf + 2);
    }
    if (buf.size() >= static_cast<std::size_t>(want) + 2) return want;
  }
}

int connect_to(uint16_t port) {
  for (int attempt = 0; attempt < 200; ++attempt) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      timeval tv{10, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      return fd;
    }
    ::close(fd);
    std::this_thread::sleep_for(10ms);
  }
  return -1;
}

uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  uint16_t port = 0;
  if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0) ::close(fd);
  return port;
}

mk::Result<std::vector<int>> connect_clients(uint16_t port, uint64_t n) {
  std::vector<int> fds;
  for (uint64_t i = 0; i < n; ++i) {
    int fd = connect_to(port);
    if (fd < 0 || !send_all(fd, resp({"PING"})) || !expect_replies(fd, "+PONG\r\n", 1)) {
      if (fd >= 0) ::close(fd);
      for (int f : fds) ::close(f);
      return MK_FAIL(EIO, "client connection failed", "client %llu of %llu", static_cast<unsigned long long>(i + 1),
                     static_cast<unsigned long long>(n));
    }
    fds.push_back(fd);
  }
  return fds;
}

}  // namespace mkbench
