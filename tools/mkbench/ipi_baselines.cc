// Baselines of `mkbench ipi`: what the hardware and the kernel give without
// mk::ipi, measured on the same pinned CPUs in the same run. Boost appears
// here (tools/ only, header-only) and nowhere in the ipi library.
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/interprocess/ipc/message_queue.hpp>
#include <boost/lockfree/spsc_queue.hpp>
#include <cerrno>
#include <cstring>
#include <thread>

#include "ipi_harness.h"

namespace mkbench::ipi {

namespace {

constexpr std::uint64_t kWarmup = 1000;
using Msg64 = std::array<std::byte, 64>;

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

bool full_write(int fd, const void* p, std::size_t n) {
  return ::write(fd, p, n) == static_cast<ssize_t>(n);
}
bool full_read(int fd, void* p, std::size_t n) {
  std::size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, static_cast<char*>(p) + got, n - got);
    if (r <= 0) return false;
    got += static_cast<std::size_t>(r);
  }
  return true;
}

}  // namespace

bool pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return ::sched_setaffinity(0, sizeof set, &set) == 0;
}

pid_t fork_pinned(int cpu, const std::function<int()>& fn) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int rc = pin_to(cpu) ? fn() : 90;
    ::_exit(rc);
  }
  return pid;
}

int reap(pid_t pid) {
  int st = 0;
  if (::waitpid(pid, &st, 0) != pid) return -1;
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
}

void* shared_alloc(std::size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void shared_free(void* p, std::size_t bytes) { ::munmap(p, bytes); }

Latency summarize(std::vector<std::int64_t>& ns) {
  Latency l;
  if (ns.empty()) return l;
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) {
    std::size_t i = static_cast<std::size_t>(q * static_cast<double>(ns.size() - 1));
    return static_cast<double>(ns[i]);
  };
  l.p50 = at(0.50);
  l.p99 = at(0.99);
  l.p999 = at(0.999);
  double sum = 0;
  for (auto v : ns) sum += static_cast<double>(v);
  l.mean = sum / static_cast<double>(ns.size());
  l.n = ns.size();
  return l;
}

// One cache line bounced between the two CPUs: the parent stores an odd
// value, the child answers with the next even one. Two line transfers per
// round trip and nothing else: the physical limit for any shared-memory IPC.
bool measure_cacheline_pingpong(const Cpus& c, std::uint64_t n, Latency* out, std::string* err) {
  auto* line = static_cast<std::atomic<std::uint64_t>*>(shared_alloc(4096));
  if (!line) return *err = errno_text("mmap"), false;
  line->store(0);
  const std::uint64_t total = n + kWarmup;
  pid_t pid = fork_pinned(c.b, [&] {
    for (std::uint64_t i = 0; i < total; ++i) {
      while (line->load(std::memory_order_acquire) != 2 * i + 1) cpu_relax();
      line->store(2 * i + 2, std::memory_order_release);
    }
    return 0;
  });
  std::vector<std::int64_t> ns;
  ns.reserve(n);
  for (std::uint64_t i = 0; i < total; ++i) {
    auto t0 = Clock::now();
    line->store(2 * i + 1, std::memory_order_release);
    while (line->load(std::memory_order_acquire) != 2 * i + 2) cpu_relax();
    auto t1 = Clock::now();
    if (i >= kWarmup) ns.push_back(elapsed_ns(t0, t1));
  }
  const int rc = reap(pid);
  shared_free(line, 4096);
  if (rc != 0) return *err = "cache-line ping-pong child failed", false;
  *out = summarize(ns);
  return true;
}

// Two eventfds, blocking reads: each round trip is two sleeps and two wakes.
bool measure_eventfd_pingpong(const Cpus& c, std::uint64_t n, Latency* out, std::string* err) {
  int to_child = ::eventfd(0, EFD_CLOEXEC), to_parent = ::eventfd(0, EFD_CLOEXEC);
  if (to_child < 0 || to_parent < 0) return *err = errno_text("eventfd"), false;
  const std::uint64_t total = n + kWarmup;
  pid_t pid = fork_pinned(c.b, [&] {
    std::uint64_t v;
    for (std::uint64_t i = 0; i < total; ++i) {
      if (!full_read(to_child, &v, 8) || !full_write(to_parent, &v, 8)) return 1;
    }
    return 0;
  });
  std::vector<std::int64_t> ns;
  ns.reserve(n);
  bool ok = true;
  for (std::uint64_t i = 0; i < total && ok; ++i) {
    std::uint64_t v = 1;
    auto t0 = Clock::now();
    ok = full_write(to_child, &v, 8) && full_read(to_parent, &v, 8);
    auto t1 = Clock::now();
    if (i >= kWarmup) ns.push_back(elapsed_ns(t0, t1));
  }
  const int rc = reap(pid);
  ::close(to_child);
  ::close(to_parent);
  if (!ok || rc != 0) return *err = "eventfd ping-pong failed", false;
  *out = summarize(ns);
  return true;
}

// Two pipes, 64-byte messages.
bool measure_pipe_pingpong(const Cpus& c, std::uint64_t n, Latency* out, std::string* err) {
  int p1[2], p2[2];
  if (::pipe2(p1, O_CLOEXEC) != 0 || ::pipe2(p2, O_CLOEXEC) != 0) return *err = errno_text("pipe"), false;
  const std::uint64_t total = n + kWarmup;
  pid_t pid = fork_pinned(c.b, [&] {
    Msg64 m{};
    for (std::uint64_t i = 0; i < total; ++i) {
      if (!full_read(p1[0], m.data(), m.size()) || !full_write(p2[1], m.data(), m.size())) return 1;
    }
    return 0;
  });
  std::vector<std::int64_t> ns;
  ns.reserve(n);
  Msg64 m{};
  bool ok = true;
  for (std::uint64_t i = 0; i < total && ok; ++i) {
    auto t0 = Clock::now();
    ok = full_write(p1[1], m.data(), m.size()) && full_read(p2[0], m.data(), m.size());
    auto t1 = Clock::now();
    if (i >= kWarmup) ns.push_back(elapsed_ns(t0, t1));
  }
  const int rc = reap(pid);
  for (int fd : {p1[0], p1[1], p2[0], p2[1]}) ::close(fd);
  if (!ok || rc != 0) return *err = "pipe ping-pong failed", false;
  *out = summarize(ns);
  return true;
}

// Boost.Interprocess message_queue (process-shared mutex + condition
// variables in POSIX shared memory), 64-byte messages, two queues.
bool measure_boost_mq_rtt(const Cpus& c, std::uint64_t n, Latency* out, std::string* err) {
  namespace bip = boost::interprocess;
  const std::string base = "mkbench-ipi-" + std::to_string(::getpid());
  const std::string q1 = base + "-a", q2 = base + "-b";
  const std::uint64_t total = n + kWarmup;
  try {
    bip::message_queue::remove(q1.c_str());
    bip::message_queue::remove(q2.c_str());
    bip::message_queue to_child(bip::create_only, q1.c_str(), 64, 64);
    bip::message_queue to_parent(bip::create_only, q2.c_str(), 64, 64);
    pid_t pid = fork_pinned(c.b, [&] {
      try {
        Msg64 m{};
        std::size_t got;
        unsigned prio;
        for (std::uint64_t i = 0; i < total; ++i) {
          to_child.receive(m.data(), m.size(), got, prio);
          to_parent.send(m.data(), m.size(), 0);
        }
        return 0;
      } catch (const std::exception&) {
        return 1;
      }
    });
    std::vector<std::int64_t> ns;
    ns.reserve(n);
    Msg64 m{};
    std::size_t got;
    unsigned prio;
    for (std::uint64_t i = 0; i < total; ++i) {
      auto t0 = Clock::now();
      to_child.send(m.data(), m.size(), 0);
      to_parent.receive(m.data(), m.size(), got, prio);
      auto t1 = Clock::now();
      if (i >= kWarmup) ns.push_back(elapsed_ns(t0, t1));
    }
    const int rc = reap(pid);
    bip::message_queue::remove(q1.c_str());
    bip::message_queue::remove(q2.c_str());
    if (rc != 0) return *err = "message_queue child failed", false;
    *out = summarize(ns);
    return true;
  } catch (const std::exception& e) {
    bip::message_queue::remove(q1.c_str());
    bip::message_queue::remove(q2.c_str());
    *err = std::string("boost message_queue: ") + e.what();
    return false;
  }
}

// Boost.Lockfree spsc_queue, 64-byte elements, two pinned threads of one
// process (it cannot cross processes). Throughput seen by the consumer.
bool measure_spsc_throughput(const Cpus& c, std::uint64_t n, Throughput* out, std::string* err) {
  auto q = std::make_unique<boost::lockfree::spsc_queue<Msg64, boost::lockfree::capacity<1024>>>();
  std::atomic<bool> pinned_ok{true};
  std::thread producer([&] {
    if (!pin_to(c.b)) pinned_ok = false;
    Msg64 m{};
    for (std::uint64_t i = 0; i < n; ++i) {
      std::memcpy(m.data(), &i, sizeof i);
      while (!q->push(m)) cpu_relax();
    }
  });
  if (!pin_to(c.a)) pinned_ok = false;
  Msg64 m{};
  std::uint64_t got = 0, check = 0;
  Clock::time_point first{}, last{};
  while (got < n) {
    if (q->pop(m)) {
      if (got == 0) first = Clock::now();
      std::uint64_t v;
      std::memcpy(&v, m.data(), sizeof v);
      check += v;
      ++got;
    } else {
      cpu_relax();
    }
  }
  last = Clock::now();
  producer.join();
  if (!pinned_ok) return *err = errno_text("sched_setaffinity"), false;
  if (check != n * (n - 1) / 2) return *err = "spsc_queue lost or reordered messages", false;
  const double secs = static_cast<double>(elapsed_ns(first, last)) / 1e9;
  out->n = n;
  out->msgs_per_s = static_cast<double>(n - 1) / secs;
  out->bytes_per_s = out->msgs_per_s * 64;
  return true;
}

}  // namespace mkbench::ipi
