// Shared helpers for the ipi tests: fork a child that runs a lambda, scale
// work down under sanitizers, deterministic payload patterns.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <vector>

namespace mk::ipi::test {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

// Work factor: full size normally, 1/10 under sanitizers (same behaviour checked).
inline std::uint64_t scaled(std::uint64_t n) { return kSanitized ? n / 10 : n; }

// Forks; the child runs fn and _exit()s with its return value (never returns
// into gtest). Returns the child's pid to the parent.
inline pid_t fork_child(const std::function<int()>& fn) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int rc = 99;
    rc = fn();
    ::_exit(rc);
  }
  return pid;
}

// Waits for pid; returns its exit code, or 128+signal.
inline int wait_child(pid_t pid) {
  int st = 0;
  if (::waitpid(pid, &st, 0) != pid) return -1;
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}

inline std::uint64_t splitmix(std::uint64_t& s) {
  std::uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Deterministic content for message number `seq` of `len` bytes.
inline void fill_pattern(std::byte* p, std::size_t len, std::uint64_t seq) {
  std::uint64_t s = seq * 0x100000001b3ULL + len;
  std::size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    std::uint64_t v = splitmix(s);
    __builtin_memcpy(p + i, &v, 8);
  }
  if (i < len) {
    std::uint64_t v = splitmix(s);
    __builtin_memcpy(p + i, &v, len - i);
  }
}

inline bool check_pattern(const std::byte* p, std::size_t len, std::uint64_t seq) {
  std::vector<std::byte> want(len);
  fill_pattern(want.data(), len, seq);
  return len == 0 || __builtin_memcmp(p, want.data(), len) == 0;
}

}  // namespace mk::ipi::test
