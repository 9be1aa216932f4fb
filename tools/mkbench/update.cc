// mkbench update: live-update blackout of the mk-kernel KV service against
// the SCM_RIGHTS + mmap floor and a cold restart (see update_bench.h).
//
// Rerun: mkbench update [--json] [--runs N] [--cold-runs N] [--sizes 16M,256M,1G]
//                       [--conns 10,1000] [--cpu N] [--image PATH]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "ipi/fd_passing.h"
#include "mk/abi/handoff.h"
#include "mk/units.h"
#include "mkernel/boot.h"
#include "mkernel/image.h"
#include "mkernel/live_update.h"
#include "bench_util.h"
#include "resp_client.h"
#include "update_bench.h"

namespace mkbench {

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr const char* kUpdateUsage =
    "usage: mkbench update [--json] [--runs N] [--cold-runs N] [--sizes 16M,256M,1G] [--conns 10,1000]\n"
    "                      [--cpu N] [--image PATH]\n"
    "       mkbench update --staged [--json] [--runs N] [--sizes 256M] [--conns 10,1000] [--cpus LIST] [--image PATH]\n";
constexpr double kGoalP99Ms = 1.0;
constexpr double kGoalFlatRatio = 1.2;
// Values that fill a 64 KiB block of the store exactly (its heap hands out
// power-of-two blocks; the entry header and key take the rest).
constexpr std::size_t kValueBytes = 64 * 1024 - 256;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

std::string size_text(uint64_t b) {
  char buf[32];
  if (b >= mk::kGiB && b % mk::kGiB == 0) std::snprintf(buf, sizeof buf, "%llu GiB", static_cast<unsigned long long>(b / mk::kGiB));
  else std::snprintf(buf, sizeof buf, "%llu MiB", static_cast<unsigned long long>(b / mk::kMiB));
  return buf;
}

// ---- the floor: SCM_RIGHTS + mmap in an already-running process ------------

// The child: per round, receive the memfd and then `conns` fds the way a
// successor does (mk::send_handoff's chunks), map the memfd, touch its
// first page, answer one byte, close everything.
[[noreturn]] void floor_child(int sock, std::size_t total, uint64_t bytes) {
  std::vector<mk::ipi::UniqueFd> got;
  std::vector<mk::ipi::UniqueFd> chunk(mk::ipi::kMaxFds);
  std::byte header[sizeof(mk::abi::HandoffChunk)];
  while (true) {
    got.clear();
    while (got.size() < total) {
      auto r = mk::ipi::recv_fds(sock, chunk, header);
      if (!r) ::_exit(0);
      for (std::size_t k = 0; k < r->nfds; ++k) got.push_back(std::move(chunk[k]));
    }
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, got.front().get(), 0);
    char ok = p != MAP_FAILED && static_cast<volatile char*>(p)[0] == 'x' ? 1 : 0;
    ::send(sock, &ok, 1, MSG_NOSIGNAL);
    if (p != MAP_FAILED) ::munmap(p, bytes);
  }
}

mk::Result<LatencyStats> measure_floor(const std::vector<int>& conns, int listen_fd, uint64_t bytes, long runs) {
  int memfd = ::memfd_create("mkbench-floor", MFD_CLOEXEC);
  if (memfd < 0 || ::ftruncate(memfd, static_cast<off_t>(bytes)) != 0) return mk::errno_error("memfd for the floor");
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  if (p == MAP_FAILED) return mk::errno_error("mmap for the floor");
  std::memset(p, 'x', bytes);  // populated, like a filled store
  ::munmap(p, bytes);
  std::vector<int> fds;
  fds.push_back(listen_fd);
  fds.insert(fds.end(), conns.begin(), conns.end());
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return mk::errno_error("socketpair");
  pid_t child = ::fork();
  if (child == 0) {
    ::close(sv[0]);
    floor_child(sv[1], 1 + fds.size(), bytes);
  }
  ::close(sv[1]);
  std::vector<double> ms;
  mk::Result<LatencyStats> out = LatencyStats{};
  for (long i = -1; i < runs; ++i) {
    auto t0 = Clock::now();
    char ok = 0;
    if (!mk::send_handoff(sv[0], memfd, fds) || ::recv(sv[0], &ok, 1, 0) != 1 || !ok) {
      out = MK_FAIL(EIO, "floor baseline failed", "round %ld", i + 1);
      break;
    }
    if (i >= 0) ms.push_back(ms_since(t0));
  }
  ::close(sv[0]);
  ::waitpid(child, nullptr, 0);
  ::close(memfd);
  if (!out) return out;
  return stats_of(ms);
}

// ---- the instance --------------------------------------------------------------

struct Case {
  uint64_t bytes = 0;
  uint64_t conns = 0;
  LatencyStats update, floor, cold;
  std::vector<double> blackout_ms;
  // Inside the blackout, medians: the freeze, transfer and restore phases as
  // the host saw them, and the images' own time for freeze and restore;
  // and "precopy" (before the freeze, outside the blackout).
  std::map<std::string, std::vector<double>> parts;
  uint64_t preserved_bytes = 0;
  uint32_t fds = 0;
  uint32_t precopied_fds = 0;  // of `fds`, sent before the freeze
  uint64_t blob_bytes = 0;
  uint64_t keys = 0;
};

struct Setup {
  mk::Topology topo;
  mk::BootRequest req;
  uint16_t port = 0;
  std::string dump_path;
};

mk::Result<std::unique_ptr<mk::RunningInstance>> boot(const Setup& s) {
  MK_TRY_ASSIGN(auto run, mk::boot_instance(s.topo, s.req));
  if (auto r = run->wait_ready(10s); !r) {
    run->kill();
    (void)run->release();
    return r.error();
  }
  return run;
}

void stop(std::unique_ptr<mk::RunningInstance>& run) {
  if (!run) return;
  if (!run->shutdown(500ms, 5s)) run->kill();
  (void)run->release();
  run.reset();
}

// Writes the store ~60% full: pipelined SETs of 64 KiB values, also saved
// as the dump file the cold restart replays.
mk::Result<uint64_t> fill(int fd, uint64_t region_bytes, const std::string& dump_path) {
  const uint64_t keys = std::max<uint64_t>(1, region_bytes * 6 / 10 / (64 * 1024));
  std::ofstream dump(dump_path, std::ios::binary | std::ios::trunc);
  std::string value(kValueBytes, 'v');
  for (uint64_t first = 0; first < keys; first += 32) {
    std::string batch;
    const uint64_t n = std::min<uint64_t>(32, keys - first);
    for (uint64_t k = first; k < first + n; ++k) {
      std::memcpy(value.data(), &k, sizeof k);  // distinct values
      batch += resp({"SET", "key:" + std::to_string(k), value});
    }
    dump << batch;
    if (!send_all(fd, batch) || !expect_replies(fd, "+OK\r\n", n))
      return MK_FAIL(EIO, "filling the store failed", "at key %llu", static_cast<unsigned long long>(first));
  }
  if (!dump) return MK_FAIL(EIO, "cannot write the dump file", "%s", dump_path.c_str());
  return keys;
}

mk::Result<void> run_case(Setup& s, Case& c, long runs, long cold_runs) {
  s.req.instance.memory = {{s.topo.main_node_of(s.req.instance.cpus), c.bytes}};
  MK_TRY_ASSIGN(auto run, boot(s));
  struct Guard {
    std::unique_ptr<mk::RunningInstance>& r;
    std::vector<int> fds;
    ~Guard() {
      for (int f : fds) ::close(f);
      stop(r);
    }
  } guard{run, {}};
  int loader = connect_to(s.port);
  if (loader < 0) return MK_FAIL(EIO, "cannot connect to the KV service", "127.0.0.1:%u", s.port);
  guard.fds.push_back(loader);
  MK_TRY_ASSIGN(c.keys, fill(loader, c.bytes, s.dump_path));
  MK_TRY_ASSIGN(std::vector<int> clients, connect_clients(s.port, c.conns));
  guard.fds.insert(guard.fds.end(), clients.begin(), clients.end());

  uint32_t id = 1;
  for (long i = -1; i < runs; ++i) {
    mk::UpdateRequest u;
    u.image = s.req.image;
    u.timeout = 10s;
    u.update_id = id++;
    mk::UpdateOutcome out = mk::live_update(run, s.topo, s.req.root, u);
    if (!run) return MK_FAIL(EIO, "the instance was lost in an update", "%s", out.cause ? out.cause->to_string().c_str() : "");
    if (!out.updated || !out.blackout_ms) {
      return MK_FAIL(EIO, "live update rolled back", "update %ld: %s; %s", i + 2,
                     out.cause ? out.cause->to_string().c_str() : "?", out.rollback.c_str());
    }
    const int probe = clients[static_cast<std::size_t>(i + 1) % clients.size()];
    if (!send_all(probe, resp({"PING"})) || !expect_replies(probe, "+PONG\r\n", 1))
      return MK_FAIL(EIO, "a client lost its connection", "after update %ld", i + 2);
    if (i < 0) continue;
    c.blackout_ms.push_back(*out.blackout_ms);
    for (const auto& p : out.phases) {
      if (p.phase != "freeze" && p.phase != "transfer" && p.phase != "restore" && p.phase != "precopy") continue;
      c.parts[p.phase].push_back(p.ms);
      if (p.image_ms) c.parts[p.phase + "_in_image"].push_back(*p.image_ms);
    }
    c.preserved_bytes = out.preserved_bytes;
    c.fds = out.fds;
    c.precopied_fds = out.precopied_fds;
    c.blob_bytes = out.blob_bytes;
  }
  const long got = get_length(loader, "key:0");
  if (got != static_cast<long>(kValueBytes))
    return MK_FAIL(EIO, "data lost across updates", "GET key:0 returned %ld bytes, expected %zu", got, kValueBytes);
  c.update = stats_of(c.blackout_ms);

  // Floor: the same kinds and number of fds + a populated memfd of this size.
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ::listen(lfd, 16);
  auto floor = measure_floor(clients, lfd, c.bytes, runs);
  ::close(lfd);
  if (!floor) return floor.error();
  c.floor = *floor;

  // Cold restart: stop, boot afresh (zeroed region), replay the dump,
  // reconnect every client.
  for (int f : guard.fds) ::close(f);
  guard.fds.clear();
  std::ifstream in(s.dump_path, std::ios::binary);
  const std::string dump((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<double> cold;
  for (long i = 0; i < cold_runs; ++i) {
    auto t0 = Clock::now();
    stop(run);
    MK_TRY_ASSIGN(run, boot(s));
    int fd = connect_to(s.port);
    if (fd < 0) return MK_FAIL(EIO, "cold restart: cannot connect", "run %ld", i + 1);
    guard.fds.push_back(fd);
    if (!send_all(fd, dump) || !expect_replies(fd, "+OK\r\n", c.keys))
      return MK_FAIL(EIO, "cold restart: reload failed", "run %ld", i + 1);
    MK_TRY_ASSIGN(std::vector<int> again, connect_clients(s.port, c.conns));
    cold.push_back(ms_since(t0));
    guard.fds.insert(guard.fds.end(), again.begin(), again.end());
    for (int f : guard.fds) ::close(f);
    guard.fds.clear();
  }
  c.cold = stats_of(cold);
  return mk::ok();
}

boost::json::object parts_json(const Case& c) {
  boost::json::object o;
  for (const auto& [name, v] : c.parts) o[name] = stats_of(v).p50_ms;
  return o;
}

// `criu check`: CRIU is measured only where it works.
std::string criu_status() {
  FILE* p = ::popen("criu check 2>&1; echo \"rc=$?\"", "r");
  if (!p) return "cannot run criu";
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  ::pclose(p);
  if (out.find("rc=127") != std::string::npos) return "not installed (apt-get install criu)";
  if (out.find("rc=0") != std::string::npos) return "works; dump + restore not measured yet";
  std::string first = out.substr(0, out.find('\n'));
  return "`criu check` fails on this kernel: " + first;
}

}  // namespace

int run_update(const Args& args) {
  for (std::size_t i = 0; i < args.rest.size(); ++i) {
    if (args.rest[i] != "--staged") continue;
    Args staged = args;
    staged.rest.erase(staged.rest.begin() + static_cast<long>(i));
    return run_update_staged(staged);
  }
  long runs = 50, cold_runs = 5, cpu = -1;
  std::vector<uint64_t> sizes = {16 * mk::kMiB, 256 * mk::kMiB, mk::kGiB}, conns = {10, 1000};
  std::string image = self_dir() + "/mk-kernel";
  for (std::size_t i = 0; i < args.rest.size(); ++i) {
    const std::string& a = args.rest[i];
    const bool has = i + 1 < args.rest.size();
    if (a == "--help" || a == "-h") {
      std::fputs(kUpdateUsage, stdout);
      return 0;
    } else if (a == "--runs" && has && parse_long_arg(args.rest[i + 1], 1, runs)) {
      ++i;
    } else if (a == "--cold-runs" && has && parse_long_arg(args.rest[i + 1], 0, cold_runs)) {
      ++i;
    } else if (a == "--cpu" && has && parse_long_arg(args.rest[i + 1], 0, cpu)) {
      ++i;
    } else if (a == "--sizes" && has && parse_list_arg(args.rest[i + 1], true, sizes)) {
      ++i;
    } else if (a == "--conns" && has && parse_list_arg(args.rest[i + 1], false, conns)) {
      ++i;
    } else if (a == "--image" && has) {
      image = args.rest[++i];
    } else {
      std::fprintf(stderr, "mkbench update: bad argument '%s'\n%s", a.c_str(), kUpdateUsage);
      return 2;
    }
  }
  if (::geteuid() != 0) {
    std::fprintf(stderr, "mkbench update: needs root (instance cgroups and namespaces); rerun with sudo\n");
    return 1;
  }
  raise_nofile();  // 1000 clients + the service's own fds, twice (the floor's receiver)
  auto info = mk::inspect_image(image);
  if (!info) {
    std::fprintf(stderr, "mkbench update: %s\n", info.error().to_string().c_str());
    return 1;
  }
  auto topo = mk::load_topology_live();
  if (!topo || topo->pus.empty()) {
    std::fprintf(stderr, "mkbench update: %s\n", topo ? "the live topology has no PUs" : topo.error().to_string().c_str());
    return 1;
  }
  if (cpu < 0) cpu = topo->pus.back().os_index;
  if (!topo->find_pu(static_cast<uint32_t>(cpu))) {
    std::fprintf(stderr, "mkbench update: cpu %ld is not a PU of this machine\n", cpu);
    return 2;
  }
  Setup s;
  s.topo = *topo;
  s.port = free_port();
  s.dump_path = "/tmp/mkbench-update-dump-" + std::to_string(::getpid());
  s.req.instance.id = 1;
  s.req.instance.name = "bench-update";
  s.req.instance.cpus = mk::CpuSet::of({static_cast<uint32_t>(cpu)});
  auto dev = mk::DeviceSpec::parse("listen:127.0.0.1:" + std::to_string(s.port));
  if (!dev) {
    std::fprintf(stderr, "mkbench update: %s\n", dev.error().to_string().c_str());
    return 1;
  }
  s.req.instance.devices = {*dev};
  s.req.image.path = info->path;
  s.req.image.cmdline = "--services=kv";
  s.req.root = mk::SysRoot();

  std::vector<Case> cases;
  for (uint64_t n : conns) {
    for (uint64_t b : sizes) {
      Case c;
      c.bytes = b;
      c.conns = n;
      if (!args.json) {
        std::fprintf(stderr, "mkbench update: %s, %llu connection(s)...\n", size_text(b).c_str(),
                     static_cast<unsigned long long>(n));
      }
      if (auto r = run_case(s, c, runs, cold_runs); !r) {
        std::fprintf(stderr, "mkbench update: %s with %llu connections: %s\n", size_text(b).c_str(),
                     static_cast<unsigned long long>(n), r.error().to_string().c_str());
        ::unlink(s.dump_path.c_str());
        return 1;
      }
      cases.push_back(std::move(c));
    }
  }
  ::unlink(s.dump_path.c_str());
  const std::string criu = criu_status();

  // Goals: p99 at the largest size and connection count; flatness per count.
  const Case* biggest = nullptr;
  for (const Case& c : cases)
    if (!biggest || c.bytes > biggest->bytes || (c.bytes == biggest->bytes && c.conns > biggest->conns)) biggest = &c;
  boost::json::array flat;
  bool flat_met = true;
  for (uint64_t n : conns) {
    const Case *lo = nullptr, *hi = nullptr;
    for (const Case& c : cases) {
      if (c.conns != n) continue;
      if (!lo || c.bytes < lo->bytes) lo = &c;
      if (!hi || c.bytes > hi->bytes) hi = &c;
    }
    const double ratio = lo && hi && lo->update.p50_ms > 0 ? hi->update.p50_ms / lo->update.p50_ms : 0;
    flat_met = flat_met && ratio <= kGoalFlatRatio;
    flat.push_back(boost::json::object{{"conns", n}, {"largest_over_smallest_p50", ratio}});
  }
  const bool p99_met = biggest && biggest->update.p99_ms <= kGoalP99Ms;
  std::string rerun = "mkbench update --runs " + std::to_string(runs) + " --cold-runs " + std::to_string(cold_runs) +
                      " --cpu " + std::to_string(cpu) + " --image " + info->path;

  if (args.json) {
    boost::json::array rows;
    for (const Case& c : cases) {
      rows.push_back(boost::json::object{{"memory_bytes", c.bytes},
                                         {"conns", c.conns},
                                         {"keys", c.keys},
                                         {"fds_handed_over", c.fds},
                                         {"fds_precopied", c.precopied_fds},
                                         {"blob_bytes", c.blob_bytes},
                                         {"preserved_bytes", c.preserved_bytes},
                                         {"update_blackout", to_json(c.update)},
                                         {"floor_scm_rights_mmap", to_json(c.floor)},
                                         {"cold_restart", to_json(c.cold)},
                                         {"blackout_parts_p50_ms", parts_json(c)},
                                         {"ratio_p50_vs_floor", c.floor.p50_ms > 0 ? c.update.p50_ms / c.floor.p50_ms : 0},
                                         {"ratio_p50_cold_vs_update",
                                          c.update.p50_ms > 0 ? c.cold.p50_ms / c.update.p50_ms : 0}});
    }
    boost::json::object doc{{"suite", "update"},
                            {"image", info->path},
                            {"image_sha256", info->sha256},
                            {"cpu", cpu},
                            {"runs", runs},
                            {"cold_runs", cold_runs},
                            {"cases", std::move(rows)},
                            {"criu", criu},
                            {"goal_p99_ms", kGoalP99Ms},
                            {"goal_p99_met", p99_met},
                            {"goal_flat_ratio", kGoalFlatRatio},
                            {"flatness", std::move(flat)},
                            {"goal_flat_met", flat_met},
                            {"rerun", rerun}};
    std::printf("%s\n", boost::json::serialize(doc).c_str());
    return 0;
  }
  std::printf("mkbench update: %s on cpu %ld, %ld updates per case (+1 warm-up), %ld cold restart(s)\n",
              info->path.c_str(), cpu, runs, cold_runs);
  std::printf("  %-8s %6s %5s | %-17s | %-17s | %7s | %-9s\n", "memory", "conns", "fds", "blackout p50/p99", "floor p50/p99",
              "x floor", "cold p50");
  for (const Case& c : cases) {
    std::printf("  %-8s %6llu %5u | %7.3f / %7.3f | %7.3f / %7.3f | %6.1fx | %7.1f ms\n", size_text(c.bytes).c_str(),
                static_cast<unsigned long long>(c.conns), c.fds, c.update.p50_ms, c.update.p99_ms, c.floor.p50_ms,
                c.floor.p99_ms, c.floor.p50_ms > 0 ? c.update.p50_ms / c.floor.p50_ms : 0, c.cold.p50_ms);
  }
  for (const Case& c : cases) {
    auto p50 = [&](const char* k) { return c.parts.count(k) ? stats_of(c.parts.at(k)).p50_ms : 0.0; };
    std::printf("  %-8s %6llu  blackout p50 parts: freeze %.3f (image %.3f) + transfer %.3f + restore %.3f (image %.3f)\n",
                size_text(c.bytes).c_str(), static_cast<unsigned long long>(c.conns), p50("freeze"),
                p50("freeze_in_image"), p50("transfer"), p50("restore"), p50("restore_in_image"));
    std::printf("  %-8s %6s  before it: precopy %.3f (image %.3f) sent %u of the %u fds\n", "", "", p50("precopy"),
                p50("precopy_in_image"), c.precopied_fds, c.fds);
  }
  std::printf("  (ms; blackout = freeze sent -> successor restored; floor = SCM_RIGHTS of the same fds + mmap of a\n"
              "   populated memfd of that size into a running process; cold = stop, boot, reload the dump, reconnect)\n");
  std::printf("  criu: %s\n", criu.c_str());
  if (biggest) {
    std::printf("  goal: p99 <= %.0f ms at %s + %llu connections: %s (p99 %.3f ms)\n", kGoalP99Ms,
                size_text(biggest->bytes).c_str(), static_cast<unsigned long long>(biggest->conns),
                p99_met ? "met" : "NOT met", biggest->update.p99_ms);
  }
  for (const auto& f : flat) {
    const auto& o = f.as_object();
    std::printf("  goal: flat in memory (largest/smallest p50 <= %.1f) with %lld connections: %.2f %s\n", kGoalFlatRatio,
                static_cast<long long>(o.at("conns").to_number<int64_t>()), o.at("largest_over_smallest_p50").to_number<double>(),
                o.at("largest_over_smallest_p50").to_number<double>() <= kGoalFlatRatio ? "met" : "NOT met");
  }
  std::printf("  rerun: %s\n", rerun.c_str());
  return 0;
}

}  // namespace mkbench
