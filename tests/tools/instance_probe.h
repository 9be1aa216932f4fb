// Probes of a running instance for the end-to-end tests: a blocking RESP
// client for the KV service, and the threads of the instance's cgroup with
// their allowed CPUs (what "tenants follow" and "no CPU in two instances"
// are checked against).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace {

inline std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

inline std::string status_field(const fs::path& status, const std::string& key) {
  std::ifstream f(status);
  for (std::string line; std::getline(f, line);)
    if (line.rfind(key + ":", 0) == 0) return line.substr(line.find_first_not_of(" \t", key.size() + 1));
  return "";
}

// One RESP round trip on a connected socket ("+OK", "$value", ...).
inline std::string resp(int fd, const std::vector<std::string>& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  if (::send(fd, out.data(), out.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(out.size())) return "<send>";
  std::string in;
  char buf[512];
  for (;;) {
    const std::size_t e = in.find("\r\n");
    if (e != std::string::npos) {
      if (in[0] != '$') return in.substr(0, e);
      const long n = std::atol(in.c_str() + 1);
      if (n < 0) return "$nil";
      if (in.size() >= e + 2 + static_cast<std::size_t>(n) + 2) return "$" + in.substr(e + 2, static_cast<std::size_t>(n));
    }
    const ssize_t k = ::recv(fd, buf, sizeof buf, 0);
    if (k <= 0) return "<eof>";
    in.append(buf, static_cast<std::size_t>(k));
  }
}

// Running (not a zombie, not gone).
inline bool process_alive(pid_t pid) {
  const std::string state = status_field("/proc/" + std::to_string(pid) + "/status", "State");
  return !state.empty() && state[0] != 'Z';
}

// A connection to the KV service on 127.0.0.1:port (retried for 2 s while
// the instance starts), with a 10 s receive timeout; -1 when it never answers.
inline int connect_kv(uint16_t port) {
  for (int i = 0; i < 100; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      timeval tv{10, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      return fd;
    }
    ::close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

// Every thread of cgroup `dir` (its v1 `tasks`): tid -> {comm, Cpus_allowed_list}.
inline std::map<pid_t, std::pair<std::string, std::string>> cgroup_threads(const std::filesystem::path& dir) {
  std::map<pid_t, std::pair<std::string, std::string>> out;
  std::ifstream f(dir / "tasks");
  for (pid_t t; f >> t;) {
    const std::filesystem::path task = std::filesystem::path("/proc") / std::to_string(t);
    const std::string allowed = status_field(task / "status", "Cpus_allowed_list");
    if (allowed.empty()) continue;  // exited meanwhile
    std::ifstream c(task / "comm");
    std::string comm;
    std::getline(c, comm);
    out[t] = {comm, allowed};
  }
  return out;
}

}  // namespace
