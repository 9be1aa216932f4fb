// Shared mkbench helpers (see bench_util.h).
#include "bench_util.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>

namespace mkbench {

LatencyStats stats_of(std::vector<double> ms) {
  if (ms.empty()) return {};
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms[std::min(ms.size() - 1, ms.size() * 99 / 100)], ms.front(), ms.back()};
}

boost::json::object to_json(const LatencyStats& s) {
  return {{"p50_ms", s.p50_ms}, {"p99_ms", s.p99_ms}, {"min_ms", s.min_ms}, {"max_ms", s.max_ms}};
}

bool parse_long_arg(const std::string& s, long min, long& out) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(s.c_str(), &end, 10);
  if (errno || end == s.c_str() || *end || v < min || v > INT_MAX) return false;
  out = v;
  return true;
}

std::string self_dir() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string p(buf, static_cast<std::size_t>(n));
  auto slash = p.rfind('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

}  // namespace mkbench
