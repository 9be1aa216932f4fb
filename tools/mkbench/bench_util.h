// DOC: helpers every mkbench suite shares: latency statistics over a sample
// (median, p99, min, max) and their JSON form, strict integer arguments,
// and the directory of the running executable (where mk-kernel is built).
#pragma once

#include <boost/json.hpp>
#include <string>
#include <vector>

namespace mkbench {

struct LatencyStats {
  double p50_ms = 0, p99_ms = 0, min_ms = 0, max_ms = 0;
};

// Sorted-sample statistics; all zero for an empty sample.
LatencyStats stats_of(std::vector<double> ms);
boost::json::object to_json(const LatencyStats& s);

// A decimal integer in [min, INT_MAX]; false on anything else.
bool parse_long_arg(const std::string& s, long min, long& out);

// The directory of /proc/self/exe ("." if unreadable).
std::string self_dir();
// "16M,256M,1G" (sizes: each >= 4 MiB, page multiple) or "10,1000" (counts
// 1..10000) into `out`. False on anything else.
bool parse_list_arg(const std::string& s, bool sizes, std::vector<uint64_t>& out);
// The soft RLIMIT_NOFILE up to the hard one (benchmarks with 1000 clients).
void raise_nofile();

}  // namespace mkbench
