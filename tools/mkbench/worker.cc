// mkbench __worker: the tenants of `mkbench isolation` and `mkbench
// pe-split` (see worker.h).
#include "worker.h"

#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bench_instance.h"
#include "bench_util.h"
#include "mk/units.h"

namespace mkbench {

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kWorkerUsage =
    "usage: mkbench __worker probe|hog|compute|memory|cmd [--out FILE] [--seconds S] [--period-us N]\n"
    "                        [--bytes SIZE] [--threads N] [--cmd CMD]\n";

struct Opts {
  std::string mode, out, cmd;
  double seconds = 1.0;
  long period_us = 200;
  uint64_t bytes = 64 * mk::kMiB;
  long threads = 1;
};

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double cpu_seconds(int who) {
  rusage ru{};
  ::getrusage(who, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

int64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// Wake-up lateness of an absolute periodic timer; the first 50 ms are warm-up.
// Timer slack 1 ns: the kernel's default 50 µs slack would be in every sample.
boost::json::object probe(const Opts& o) {
  ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  const int64_t period = o.period_us * 1000;
  const int64_t start = now_ns(), warm_end = start + 50'000'000,
                end = warm_end + static_cast<int64_t>(o.seconds * 1e9);
  boost::json::array lat;
  lat.reserve(static_cast<std::size_t>(o.seconds * 1e6 / static_cast<double>(o.period_us)) + 16);
  int64_t target = start + period;
  while (target < end) {
    timespec ts{static_cast<time_t>(target / 1'000'000'000), static_cast<long>(target % 1'000'000'000)};
    while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
    }
    int64_t now = now_ns();
    if (target >= warm_end) lat.push_back(static_cast<double>(now - target) / 1e3);
    target += period;
    // A wake-up later than a whole period skips the missed ticks (the
    // lateness above already counts it); the probe stays periodic.
    if (now > target) target += ((now - target) / period + 1) * period;
  }
  return {{"ops", lat.size()}, {"throughput", 0.0}, {"throughput_unit", "wake-ups"}, {"lat_us", std::move(lat)}};
}

// One op of integer work: 2^18 steps of xorshift64*, multiply and popcount.
uint64_t compute_op(uint64_t x) {
  uint64_t acc = 0;
  for (int i = 0; i < (1 << 18); ++i) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    acc += static_cast<uint64_t>(__builtin_popcountll(x * 0x2545F4914F6CDD1DULL));
  }
  return acc ^ x;
}

// One read-modify-write pass over `n` words.
uint64_t memory_op(volatile uint64_t* buf, std::size_t n) {
  uint64_t sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    uint64_t v = buf[i];
    buf[i] = v + 1;
    sum += v;
  }
  return sum;
}

// Ops for `seconds`; wall and CPU time (self + children) of the timed part only.
template <class Op>
boost::json::object timed_ops(double seconds, Op&& op, double work_per_op, const char* unit) {
  boost::json::array lat;
  const double cpu0 = cpu_seconds(RUSAGE_SELF) + cpu_seconds(RUSAGE_CHILDREN);
  auto t0 = Clock::now(), end = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  uint64_t ops = 0;
  do {
    auto a = Clock::now();
    op();
    lat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - a).count());
    ++ops;
  } while (Clock::now() < end);
  double wall = secs(Clock::now() - t0);
  return {{"ops", ops}, {"wall_s", wall}, {"throughput", static_cast<double>(ops) * work_per_op / wall},
          {"throughput_unit", unit}, {"lat_us", std::move(lat)},
          {"cpu_s", cpu_seconds(RUSAGE_SELF) + cpu_seconds(RUSAGE_CHILDREN) - cpu0}};
}

std::atomic<uint64_t> g_sink{0};

void hog(const Opts& o) {
  auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds));
  std::vector<std::thread> ts;
  for (long t = 0; t < o.threads; ++t) {
    ts.emplace_back([&o, end, t] {
      std::size_t n = o.bytes / static_cast<uint64_t>(o.threads) / sizeof(uint64_t);
      std::vector<uint64_t> buf(n, static_cast<uint64_t>(t));
      uint64_t s = 0;
      while (Clock::now() < end) s += memory_op(buf.data(), n) + compute_op(s | 1) ;
      g_sink += s;
    });
  }
  for (auto& t : ts) t.join();
}

int run_cmd_once(const std::string& cmd) {
  int st = std::system(cmd.c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

}  // namespace

int run_worker(const Args& args) {
  Opts o;
  const auto& r = args.rest;
  if (r.empty()) {
    std::fputs(kWorkerUsage, stderr);
    return 2;
  }
  o.mode = r[0];
  for (std::size_t i = 1; i < r.size(); ++i) {
    bool has = i + 1 < r.size();
    const std::string& a = r[i];
    if (a == "--out" && has) o.out = r[++i];
    else if (a == "--seconds" && has) o.seconds = std::atof(r[++i].c_str());
    else if (a == "--period-us" && has && parse_long_arg(r[i + 1], 10, o.period_us)) ++i;
    else if (a == "--threads" && has && parse_long_arg(r[i + 1], 1, o.threads)) ++i;
    else if (a == "--cmd" && has) o.cmd = r[++i];
    else if (a == "--bytes" && has) {
      auto v = mk::parse_size(r[++i]);
      if (!v || *v < mk::kMiB) {
        std::fputs(kWorkerUsage, stderr);
        return 2;
      }
      o.bytes = *v;
    } else {
      std::fputs(kWorkerUsage, stderr);
      return 2;
    }
  }
  if (!(o.seconds > 0) || (o.mode != "hog" && o.out.empty())) {
    std::fputs(kWorkerUsage, stderr);
    return 2;
  }
  auto t0 = Clock::now();
  boost::json::object doc;
  if (o.mode == "probe") {
    doc = probe(o);
  } else if (o.mode == "hog") {
    hog(o);
    doc = {{"ops", 0}};
  } else if (o.mode == "compute") {
    uint64_t x = 88172645463325252ULL;
    doc = timed_ops(o.seconds, [&] { x = compute_op(x) | 1; }, 1.0, "ops/s");
    g_sink += x;
  } else if (o.mode == "memory") {
    std::vector<uint64_t> buf(o.bytes / sizeof(uint64_t), 1);
    memory_op(buf.data(), buf.size());  // faulted in before the clock starts
    doc = timed_ops(o.seconds, [&] { g_sink += memory_op(buf.data(), buf.size()); },
                    static_cast<double>(o.bytes) / static_cast<double>(mk::kMiB), "MiB/s");
  } else if (o.mode == "cmd") {
    if (o.cmd.empty()) {
      std::fputs(kWorkerUsage, stderr);
      return 2;
    }
    int failed = 0;
    doc = timed_ops(o.seconds, [&] { if (int rc = run_cmd_once(o.cmd)) failed = rc; }, 1.0, "runs/s");
    if (failed) doc = {{"error", "the command exited with status " + std::to_string(failed) + ": " + o.cmd}};
  } else {
    std::fprintf(stderr, "mkbench __worker: unknown mode '%s'\n", o.mode.c_str());
    return 2;
  }
  doc["mode"] = o.mode;
  if (!doc.contains("wall_s")) doc["wall_s"] = secs(Clock::now() - t0);
  if (!doc.contains("cpu_s")) doc["cpu_s"] = cpu_seconds(RUSAGE_SELF) + cpu_seconds(RUSAGE_CHILDREN);
  if (o.out.empty()) return 0;
  if (!write_result_file(o.out, doc)) {
    std::fprintf(stderr, "mkbench __worker: cannot write %s\n", o.out.c_str());
    return 1;
  }
  return doc.contains("error") ? 1 : 0;
}

}  // namespace mkbench
