// Private helpers of the IPI suite: CPU pinning, forked pinned peers, shared
// anonymous memory and latency statistics. Used by ipi.cc and
// ipi_baselines.cc only.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace mkbench::ipi {

using Clock = std::chrono::steady_clock;

struct Cpus {
  int a = 0;  // the measuring side (parent process / main thread)
  int b = 1;  // the peer
};

struct Latency {
  double p50 = 0, p99 = 0, p999 = 0, mean = 0;  // nanoseconds
  std::uint64_t n = 0;
};

struct Throughput {
  double msgs_per_s = 0;
  double bytes_per_s = 0;
  std::uint64_t n = 0;
};

// Iteration counts; --quick divides them by 10.
struct Plan {
  std::uint64_t spin_rtt = 200'000;    // poll/adaptive/raw ping-pong round trips
  std::uint64_t sleep_rtt = 10'000;    // block/eventfd/pipe/message_queue round trips
  std::uint64_t small_msgs = 2'000'000;
  std::uint64_t kib_msgs = 500'000;
  std::uint64_t big_msgs = 40'000;
};

// Pins the calling thread. Returns false (errno set) if the CPU is not usable.
bool pin_to(int cpu);

// Forks a child pinned to `cpu` that runs fn and _exit()s with its result.
pid_t fork_pinned(int cpu, const std::function<int()>& fn);
// Waits for the child; returns its exit code (128 + signal when killed).
int reap(pid_t pid);

// Shared anonymous memory (survives fork, shared with the child).
void* shared_alloc(std::size_t bytes);
void shared_free(void* p, std::size_t bytes);

Latency summarize(std::vector<std::int64_t>& ns);

inline std::int64_t elapsed_ns(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count();
}

inline void cpu_relax() { __builtin_ia32_pause(); }

// Baselines (ipi_baselines.cc). Each returns false and fills `err` on failure.
bool measure_cacheline_pingpong(const Cpus& c, std::uint64_t n, Latency* out, std::string* err);
bool measure_eventfd_pingpong(const Cpus& c, std::uint64_t n, Latency* out, std::string* err);
bool measure_pipe_pingpong(const Cpus& c, std::uint64_t n, Latency* out, std::string* err);
bool measure_boost_mq_rtt(const Cpus& c, std::uint64_t n, Latency* out, std::string* err);
bool measure_spsc_throughput(const Cpus& c, std::uint64_t n, Throughput* out, std::string* err);

}  // namespace mkbench::ipi
