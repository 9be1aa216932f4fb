// `mkbench ipi`: mk::ipi round trips and throughput across two pinned
// processes, next to the baselines measured in the same run (ipi_bench.h).
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ipi/channel.h"
#include "ipi/message_types.h"
#include "ipi_bench.h"
#include "ipi_harness.h"

namespace mkbench {

namespace ipi {
namespace {

using namespace std::chrono_literals;
using mk::ipi::Channel;
using mk::ipi::ChannelConfig;
using mk::ipi::ChannelOptions;
using mk::ipi::InMessage;
using mk::ipi::WaitMode;

constexpr std::uint16_t kType = mk::ipi::type_in(mk::ipi::TypeRange::kUser, 0x100);
constexpr std::uint64_t kWarmup = 1000;

struct Results {
  Latency rtt[3];  // poll, adaptive, block
  Latency rtt_one_slot;  // poll, 48-byte payload: one slot per message
  Latency pingpong, eventfd, pipe, boost_mq;
  Throughput tput[3][2];  // [64 B, 1 KiB, 64 KiB][unbatched, batch 16]
  Throughput spsc;
};

constexpr std::size_t kSizes[3] = {64, 1024, 64 * 1024};
constexpr const char* kSizeNames[3] = {"64B", "1KiB", "64KiB"};
constexpr WaitMode kModes[3] = {WaitMode::kPoll, WaitMode::kAdaptive, WaitMode::kBlock};

// Polled hot path (WaitMode::kPoll): try_send, then spin on try_receive.
// This is the loop Channel::receive runs in poll mode, without its
// mk::Result<void> return value (whose default-constructed Error costs ~10 ns
// per call; see docs/ipi.md). The clock is read only every 2^16 empty polls.
bool polled_send(Channel& ch, std::span<const std::byte> p) {
  for (std::uint32_t i = 1;; ++i) {
    mk::ipi::Status s = ch.try_send(kType, p);
    if (s) return true;
    if (!s.again()) return false;
    cpu_relax();
  }
}
bool polled_receive(Channel& ch, InMessage& m, Clock::time_point give_up) {
  for (std::uint32_t i = 1;; ++i) {
    mk::ipi::Status s = ch.try_receive(m);
    if (s) return true;
    if (s.code() != EAGAIN && s.code() != EBADMSG) return false;
    if ((i & 0xffff) == 0 && Clock::now() > give_up) return false;
    cpu_relax();
  }
}

// Round trips: the parent sends and waits for the echo; the peer process
// echoes. Both sides use `mode`.
bool measure_rtt(const Cpus& c, WaitMode mode, std::uint64_t n, std::size_t bytes, Latency* out,
                 std::string* err) {
  ChannelOptions o;
  o.mode = mode;
  auto a = Channel::create(ChannelConfig{1024, 0}, o);
  if (!a) return *err = a.error().to_string(), false;
  auto fds = a->export_fds();
  if (!fds) return *err = fds.error().to_string(), false;
  const std::uint64_t total = n + kWarmup;
  pid_t pid = fork_pinned(c.b, [&] {
    auto b = Channel::attach(std::move(*fds), o);
    if (!b) return 2;
    InMessage m;
    const auto give_up = Clock::now() + 120s;
    for (std::uint64_t i = 0; i < total; ++i) {
      if (mode == WaitMode::kPoll) {
        if (!polled_receive(*b, m, give_up)) return 3;
        if (!polled_send(*b, m.payload)) return 4;
      } else {
        if (!b->receive(m, 10s)) return 3;
        if (!b->send(kType, m.payload, 10s)) return 4;
      }
    }
    return 0;
  });
  fds->memfd.reset();
  std::vector<std::int64_t> ns;
  ns.reserve(n);
  std::vector<std::byte> payload(bytes);
  InMessage m;
  for (std::uint64_t i = 0; i < total; ++i) {
    std::memcpy(payload.data(), &i, sizeof i);
    const auto give_up = Clock::now() + 10s;
    bool ok;
    mk::Result<void> r;  // constructed outside the timed region (it zeroes ~360 bytes)
    auto t0 = Clock::now();
    if (mode == WaitMode::kPoll) {
      ok = polled_send(*a, payload) && polled_receive(*a, m, give_up);
    } else {
      r = a->send(kType, payload, 10s);
      if (r) r = a->receive(m, 10s);
      ok = static_cast<bool>(r);
    }
    auto t1 = Clock::now();
    if (!ok) {
      reap(pid);
      return *err = std::string("round trip: ") + (r ? "polled send/receive failed" : r.error().to_string()),
             false;
    }
    std::uint64_t echo;
    std::memcpy(&echo, m.payload.data(), sizeof echo);
    if (m.payload.size() != bytes || echo != i) {
      reap(pid);
      return *err = "round trip: echo mismatch", false;
    }
    if (i >= kWarmup) ns.push_back(elapsed_ns(t0, t1));
  }
  if (reap(pid) != 0) return *err = "round trip: echo process failed", false;
  *out = summarize(ns);
  return true;
}

// One-way stream: the peer process produces `n` messages of `size` bytes as
// fast as the ring takes them (try_send); this process consumes on the polled
// hot path (try_receive), copying each payload out and checking its sequence
// number, and times first to last message.
bool measure_throughput(const Cpus& c, std::size_t size, std::uint32_t batch, std::uint64_t n,
                        Throughput* out, std::string* err) {
  ChannelOptions tx;
  tx.batch = batch;
  ChannelOptions rx;
  const std::uint64_t bulk = size > mk::ipi::abi::kMaxSpanPayload ? 8u << 20 : 0;
  auto a = Channel::create(ChannelConfig{1024, bulk}, rx);
  if (!a) return *err = a.error().to_string(), false;
  auto fds = a->export_fds();
  if (!fds) return *err = fds.error().to_string(), false;
  pid_t pid = fork_pinned(c.b, [&] {
    auto b = Channel::attach(std::move(*fds), tx);
    if (!b) return 2;
    std::vector<std::byte> buf(size, std::byte{0x5a});
    for (std::uint64_t i = 0; i < n; ++i) {
      std::memcpy(buf.data(), &i, sizeof i);
      for (;;) {
        mk::ipi::Status s = b->try_send(kType, buf);
        if (s) break;
        if (!s.again()) return 3;
        cpu_relax();
      }
    }
    b->flush();
    return 0;
  });
  fds->memfd.reset();
  std::vector<std::byte> sink(size);
  InMessage m;
  Clock::time_point first{};
  const auto give_up = Clock::now() + 60s;
  for (std::uint64_t i = 0; i < n; ++i) {
    if (!polled_receive(*a, m, give_up)) {
      reap(pid);
      return *err = "throughput: receive failed or timed out", false;
    }
    if (i == 0) first = Clock::now();
    std::memcpy(sink.data(), m.payload.data(), m.payload.size());
    std::uint64_t seq;
    std::memcpy(&seq, sink.data(), sizeof seq);
    if (m.payload.size() != size || seq != i) {
      reap(pid);
      return *err = "throughput: lost, reordered or resized message", false;
    }
  }
  const auto last = Clock::now();
  if (reap(pid) != 0) return *err = "throughput: producer process failed", false;
  const double secs = static_cast<double>(elapsed_ns(first, last)) / 1e9;
  out->n = n;
  out->msgs_per_s = static_cast<double>(n - 1) / secs;
  out->bytes_per_s = out->msgs_per_s * static_cast<double>(size);
  return true;
}

bool parse_cpus(const std::string& s, Cpus* c) {
  char* end = nullptr;
  long a = std::strtol(s.c_str(), &end, 10);
  if (end == s.c_str() || *end != ',') return false;
  const char* rest = end + 1;
  long b = std::strtol(rest, &end, 10);
  if (end == rest || *end != '\0' || a < 0 || b < 0 || a > 4095 || b > 4095) return false;
  c->a = static_cast<int>(a);
  c->b = static_cast<int>(b);
  return true;
}

void usage(FILE* f) {
  std::fprintf(f,
               "usage: mkbench ipi [--json] [--cpus A,B] [--quick] [--rtt-bytes N]\n"
               "  --cpus A,B  the two CPUs to pin the measuring and the peer side to (default 0,1)\n"
               "  --quick     a tenth of the iterations (smoke test, noisier figures)\n"
               "  --rtt-bytes payload of the mk::ipi round trips (default 64; 48 fits one slot)\n");
}

double ratio(double a, double b) { return b > 0 ? a / b : 0; }

void print_latency_json(const char* name, const Latency& l, bool comma) {
  std::printf("    \"%s\": {\"p50\": %.0f, \"p99\": %.0f, \"p999\": %.0f, \"mean\": %.0f, \"n\": %llu}%s\n",
              name, l.p50, l.p99, l.p999, l.mean, static_cast<unsigned long long>(l.n), comma ? "," : "");
}

void print_json(const Results& r, const Cpus& c, const std::string& cmd, std::size_t rtt_bytes) {
  std::printf("{\n  \"suite\": \"ipi\",\n  \"command\": \"%s\",\n  \"cpus\": [%d, %d],\n", cmd.c_str(), c.a, c.b);
  std::printf("  \"rtt_message_bytes\": %zu,\n  \"rtt_ns\": {\n", rtt_bytes);
  print_latency_json("ipi_poll", r.rtt[0], true);
  print_latency_json("ipi_adaptive", r.rtt[1], true);
  print_latency_json("ipi_block", r.rtt[2], true);
  print_latency_json("ipi_poll_48B_one_slot", r.rtt_one_slot, true);
  print_latency_json("cacheline_pingpong", r.pingpong, true);
  print_latency_json("eventfd_pingpong", r.eventfd, true);
  print_latency_json("pipe_pingpong", r.pipe, true);
  print_latency_json("boost_message_queue", r.boost_mq, false);
  std::printf("  },\n  \"throughput_msgs_per_s\": {\n");
  for (int s = 0; s < 3; ++s) {
    std::printf("    \"ipi_%s\": %.0f,\n    \"ipi_%s_batch16\": %.0f,\n", kSizeNames[s], r.tput[s][0].msgs_per_s,
                kSizeNames[s], r.tput[s][1].msgs_per_s);
  }
  std::printf("    \"boost_spsc_queue_64B_threads\": %.0f\n  },\n", r.spsc.msgs_per_s);
  std::printf("  \"throughput_bytes_per_s\": {\n");
  for (int s = 0; s < 3; ++s) {
    std::printf("    \"ipi_%s\": %.0f,\n    \"ipi_%s_batch16\": %.0f%s\n", kSizeNames[s], r.tput[s][0].bytes_per_s,
                kSizeNames[s], r.tput[s][1].bytes_per_s, s < 2 ? "," : "");
  }
  const double poll_pp = ratio(r.rtt[0].p50, r.pingpong.p50);
  const double block_ev = ratio(r.rtt[2].p50, r.eventfd.p50);
  const double tput_b = ratio(r.tput[0][1].msgs_per_s, r.spsc.msgs_per_s);
  const double tput_u = ratio(r.tput[0][0].msgs_per_s, r.spsc.msgs_per_s);
  std::printf("  },\n  \"ratios\": {\n");
  std::printf("    \"poll_rtt_vs_pingpong\": %.3f,\n", poll_pp);
  std::printf("    \"adaptive_rtt_vs_pingpong\": %.3f,\n", ratio(r.rtt[1].p50, r.pingpong.p50));
  std::printf("    \"poll_rtt_48B_one_slot_vs_pingpong\": %.3f,\n", ratio(r.rtt_one_slot.p50, r.pingpong.p50));
  std::printf("    \"block_rtt_vs_eventfd\": %.3f,\n", block_ev);
  std::printf("    \"block_rtt_vs_pipe\": %.3f,\n", ratio(r.rtt[2].p50, r.pipe.p50));
  std::printf("    \"poll_rtt_vs_boost_message_queue\": %.3f,\n", ratio(r.rtt[0].p50, r.boost_mq.p50));
  std::printf("    \"throughput_64B_vs_spsc\": %.3f,\n", tput_b);
  std::printf("    \"throughput_64B_unbatched_vs_spsc\": %.3f,\n", tput_u);
  std::printf("    \"basis\": \"round trips compare p50; throughput_64B_vs_spsc uses batch 16\"\n  },\n");
  std::printf("  \"goals\": {\n");
  std::printf("    \"poll_rtt_vs_pingpong\": {\"max\": 1.25, \"met\": %s},\n", poll_pp <= 1.25 ? "true" : "false");
  std::printf("    \"block_rtt_vs_eventfd\": {\"max\": 1.0, \"met\": %s},\n", block_ev <= 1.0 ? "true" : "false");
  std::printf("    \"throughput_64B_vs_spsc\": {\"min\": 1.0, \"met\": %s}\n  }\n}\n", tput_b >= 1.0 ? "true" : "false");
}

void print_table(const Results& r, const Cpus& c, const std::string& cmd, std::size_t rtt_bytes) {
  std::printf("mkbench ipi — CPUs %d,%d — `%s`\n\n", c.a, c.b, cmd.c_str());
  std::printf("round trip, %4zu-byte messages, two processes (ns)    p50       p99      p999\n", rtt_bytes);
  auto row = [](const char* name, const Latency& l) {
    std::printf("  %-50s %8.0f  %8.0f  %8.0f\n", name, l.p50, l.p99, l.p999);
  };
  row("mk::ipi poll", r.rtt[0]);
  row("mk::ipi adaptive", r.rtt[1]);
  row("mk::ipi block", r.rtt[2]);
  row("mk::ipi poll, 48-byte payload (one slot)", r.rtt_one_slot);
  row("baseline: raw cache-line ping-pong", r.pingpong);
  row("baseline: eventfd ping-pong", r.eventfd);
  row("baseline: pipe ping-pong", r.pipe);
  row("baseline: Boost.Interprocess message_queue", r.boost_mq);
  std::printf("\none-way throughput, two processes (messages/s)         unbatched    batch 16\n");
  for (int s = 0; s < 3; ++s) {
    std::printf("  mk::ipi %-42s %11.0f %11.0f\n", kSizeNames[s], r.tput[s][0].msgs_per_s, r.tput[s][1].msgs_per_s);
  }
  std::printf("  %-50s %11.0f\n", "baseline: Boost.Lockfree spsc_queue 64B (threads)", r.spsc.msgs_per_s);
  std::printf("\nratios (goal)\n");
  std::printf("  poll_rtt_vs_pingpong     %.2f  (<= 1.25; one-slot 48 B payload: %.2f)\n",
              ratio(r.rtt[0].p50, r.pingpong.p50), ratio(r.rtt_one_slot.p50, r.pingpong.p50));
  std::printf("  block_rtt_vs_eventfd     %.2f  (<= 1.0)\n", ratio(r.rtt[2].p50, r.eventfd.p50));
  std::printf("  throughput_64B_vs_spsc   %.2f  (>= 1.0, batch 16; unbatched %.2f)\n",
              ratio(r.tput[0][1].msgs_per_s, r.spsc.msgs_per_s), ratio(r.tput[0][0].msgs_per_s, r.spsc.msgs_per_s));
}

}  // namespace
}  // namespace ipi

int run_ipi(const Args& args) {
  using namespace ipi;
  Cpus cpus;
  Plan plan;
  std::size_t rtt_bytes = 64;
  std::string cmd = "mkbench ipi";
  if (args.json) cmd += " --json";
  for (std::size_t i = 0; i < args.rest.size(); ++i) {
    const std::string& a = args.rest[i];
    if (a == "--help" || a == "-h") {
      usage(stdout);
      return 0;
    } else if (a == "--cpus" && i + 1 < args.rest.size()) {
      if (!parse_cpus(args.rest[++i], &cpus)) {
        std::fprintf(stderr, "mkbench ipi: bad --cpus '%s': expected two CPU numbers like 0,1\n",
                     args.rest[i].c_str());
        return 2;
      }
      cmd += " --cpus " + args.rest[i];
    } else if (a == "--rtt-bytes" && i + 1 < args.rest.size()) {
      rtt_bytes = std::strtoul(args.rest[++i].c_str(), nullptr, 10);
      if (rtt_bytes < 8 || rtt_bytes > 4096) {
        std::fprintf(stderr, "mkbench ipi: --rtt-bytes must be in [8, 4096]\n");
        return 2;
      }
      cmd += " --rtt-bytes " + args.rest[i];
    } else if (a == "--quick") {
      plan.spin_rtt /= 10;
      plan.sleep_rtt /= 10;
      plan.small_msgs /= 10;
      plan.kib_msgs /= 10;
      plan.big_msgs /= 10;
      cmd += " --quick";
    } else {
      std::fprintf(stderr, "mkbench ipi: unknown option '%s'\n", a.c_str());
      usage(stderr);
      return 2;
    }
  }
  if (cpus.a == cpus.b) {
    std::fprintf(stderr, "mkbench ipi: --cpus needs two different CPUs (polling peers on one CPU only measure the scheduler)\n");
    return 2;
  }
  if (!pin_to(cpus.a)) {
    std::fprintf(stderr, "mkbench ipi: cannot pin to CPU %d: %s; pick CPUs from `nproc`/the cpuset\n", cpus.a,
                 std::strerror(errno));
    return 2;
  }

  Results r;
  std::string err;
  auto step = [&](const char* what, bool ok) {
    if (!ok) std::fprintf(stderr, "mkbench ipi: %s failed: %s\n", what, err.c_str());
    else if (!args.json) std::fprintf(stderr, "  measured %s\n", what);
    return ok;
  };
  bool ok = step("raw cache-line ping-pong", measure_cacheline_pingpong(cpus, plan.spin_rtt, &r.pingpong, &err)) &&
            step("ipi poll round trips", measure_rtt(cpus, WaitMode::kPoll, plan.spin_rtt, rtt_bytes, &r.rtt[0], &err)) &&
            step("ipi poll round trips, one slot",
                 measure_rtt(cpus, WaitMode::kPoll, plan.spin_rtt, 48, &r.rtt_one_slot, &err)) &&
            step("ipi adaptive round trips", measure_rtt(cpus, WaitMode::kAdaptive, plan.spin_rtt, rtt_bytes, &r.rtt[1], &err)) &&
            step("ipi block round trips", measure_rtt(cpus, WaitMode::kBlock, plan.sleep_rtt, rtt_bytes, &r.rtt[2], &err)) &&
            step("eventfd ping-pong", measure_eventfd_pingpong(cpus, plan.sleep_rtt, &r.eventfd, &err)) &&
            step("pipe ping-pong", measure_pipe_pingpong(cpus, plan.sleep_rtt, &r.pipe, &err)) &&
            step("Boost message_queue round trips", measure_boost_mq_rtt(cpus, plan.sleep_rtt, &r.boost_mq, &err)) &&
            step("Boost spsc_queue throughput", measure_spsc_throughput(cpus, plan.small_msgs, &r.spsc, &err));
  const std::uint64_t counts[3] = {plan.small_msgs, plan.kib_msgs, plan.big_msgs};
  for (int s = 0; ok && s < 3; ++s) {
    for (int b = 0; ok && b < 2; ++b) {
      ok = step(kSizeNames[s], measure_throughput(cpus, kSizes[s], b ? 16 : 1, counts[s], &r.tput[s][b], &err));
    }
  }
  if (!ok) return 1;
  if (args.json) print_json(r, cpus, cmd, rtt_bytes);
  else print_table(r, cpus, cmd, rtt_bytes);
  return 0;
}

}  // namespace mkbench
