// Shared mkbench helpers (see bench_util.h).
#include "bench_util.h"

#include <sys/resource.h>

#include "mk/units.h"

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

// "16M,256M,1G" / "10,1000".
bool parse_list_arg(const std::string& s, bool sizes, std::vector<uint64_t>& out) {
  out.clear();
  std::size_t pos = 0;
  while (pos <= s.size()) {
    std::size_t comma = s.find(',', pos);
    std::string one = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (sizes) {
      auto v = mk::parse_size(one);
      if (!v || *v < 4 * mk::kMiB || *v % 4096) return false;
      out.push_back(*v);
    } else {
      long v = 0;
      if (!parse_long_arg(one, 1, v) || v > 10000) return false;
      out.push_back(static_cast<uint64_t>(v));
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return !out.empty();
}

void raise_nofile() {
  rlimit nofile{};
  ::getrlimit(RLIMIT_NOFILE, &nofile);
  nofile.rlim_cur = nofile.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &nofile);
}

}  // namespace mkbench
