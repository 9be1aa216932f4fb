// mksoak: a bounded random soak of the whole stack (issue #8): mkctl,
// mkerneld and mk-kernel instances serving KV, driven by random create /
// start / ping / update / staged update / resize / cpu move / stop / delete
// and daemon restarts, with injected faults (per-request --fault, and
// MKERNEL_FAULT=OP:STEP@1 given to a restarted daemon). After every
// operation the invariants must hold: no CPU owned twice, every running
// instance answers ping, the daemon's view matches the model, every key a
// running instance acknowledged reads back. At the end everything is
// stopped and deleted and the census (census.h) must equal the one taken
// before: no leaked process, memfd, cgroup or namespace.
//
//   mksoak [--minutes M | --seconds S] [--seed N] [--no-faults] [--json]
//
// Exit 0: no invariant broken and no unexpected failure; 1 otherwise (the
// seed and the last operations are printed to replay it); 2: bad usage.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "census.h"
#include "mk/cpu_set.h"
#include "mkernel/fault.h"
#include "run_cli.h"

namespace fs = std::filesystem;
namespace json = boost::json;
namespace po = boost::program_options;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

struct Inst {
  std::string name;
  uint16_t port = 0;
  bool running = false;
  std::map<std::string, std::string> keys;  // acknowledged by the running image
};

struct OpStats {
  int ok = 0, injected = 0, refused = 0, unexpected = 0;
};

// One KV round trip; "" on a broken connection.
std::string kv(uint16_t port, const std::vector<std::string>& args) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return "";
  }
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& s : args) out += "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n";
  std::string in;
  if (::send(fd, out.data(), out.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(out.size())) {
    char buf[512];
    for (;;) {
      const auto e = in.find("\r\n");
      if (e != std::string::npos) {
        if (in[0] != '$') {
          in = in.substr(0, e);
          break;
        }
        const long n = std::atol(in.c_str() + 1);
        if (n < 0) {
          in = "$nil";
          break;
        }
        if (in.size() >= e + 4 + static_cast<std::size_t>(n)) {
          in = "$" + in.substr(e + 2, static_cast<std::size_t>(n));
          break;
        }
      }
      ssize_t k = ::recv(fd, buf, sizeof buf, 0);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) {
        in.clear();
        break;
      }
      in.append(buf, static_cast<std::size_t>(k));
    }
  }
  ::close(fd);
  return in;
}

uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

class Soak {
 public:
  Soak(fs::path bin, fs::path rt, uint64_t seed, bool faults, bool verbose)
      : bin_(std::move(bin)), rt_(std::move(rt)), rng_(seed), seed_(seed), faults_(faults), verbose_(verbose) {
    cpus_ = std::max(1u, std::thread::hardware_concurrency());
  }

  int run(std::chrono::seconds budget, bool as_json);

 private:
  mk::soak::CliResult mkctl(const std::string& what, std::vector<std::string> args,
                            std::vector<std::string> env = {"MKERNEL_FAULT="}) {
    args.insert(args.begin(), (bin_ / "mkctl").string());
    env.push_back("MKERNEL_RUNTIME_DIR=" + rt_.string());
    auto r = mk::soak::run_cli(args, env, 120s);
    std::string line = what + ":";
    for (std::size_t i = 1; i < args.size(); ++i) line += " " + args[i];
    line += " -> " + std::to_string(r.code);
    if (r.code != 0) line += " (" + first_line(r.err) + ")";
    log(line);
    return r;
  }
  static std::string first_line(const std::string& s) {
    auto p = s.find('\n');
    return s.substr(0, p == std::string::npos ? std::min<std::size_t>(s.size(), 300) : std::min<std::size_t>(p, 300));
  }
  void log(const std::string& line) {
    if (verbose_) std::cerr << "mksoak: " << line << "\n";
    recent_.push_back(line);
    if (recent_.size() > 30) recent_.pop_front();
  }
  void violation(const std::string& what) {
    ++violations_;
    if (first_violation_.empty()) {
      first_violation_ = what;
      replay_ = std::vector<std::string>(recent_.begin(), recent_.end());
    }
    log("VIOLATION: " + what);
  }
  // An operation's result against what it may be: success, or a failure
  // that names an injected fault (when one was armed), or a refusal we
  // expect (exit 1 with one of `refusals`).
  void judge(const std::string& op, const mk::soak::CliResult& r, bool armed,
             const std::vector<std::string>& refusals = {}) {
    OpStats& s = stats_[op];
    if (r.code == 0) {
      ++s.ok;
      return;
    }
    // A per-request --fault corrupt-package is refused by the successor
    // (the update rolls back); every other injected fault names itself.
    const bool injected = r.err.find("fault injected") != std::string::npos ||
                          (armed && (r.err.find("rolled back") != std::string::npos ||
                                     r.err.find("--fault") != std::string::npos));
    if (r.code == 1 && (armed || daemon_armed_) && injected) {
      ++s.injected;
      return;
    }
    for (const auto& x : refusals) {
      if (r.code == 1 && r.err.find(x) != std::string::npos) {
        ++s.refused;
        return;
      }
    }
    ++s.unexpected;
    violation(op + " failed unexpectedly (exit " + std::to_string(r.code) + "): " + first_line(r.err + r.out));
  }

  pid_t daemon_pid() {
    int fd = ::open((rt_ / "mkerneld.lock").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    const bool held = ::flock(fd, LOCK_EX | LOCK_NB) != 0;
    ::close(fd);
    if (!held) return 0;
    std::ifstream f(rt_ / "mkerneld.lock");
    pid_t p = 0;
    f >> p;
    return p;
  }
  void kill_daemon() {
    pid_t d = daemon_pid();
    if (d > 0) ::kill(d, SIGKILL);
    for (int i = 0; i < 500 && daemon_pid() > 0; ++i) std::this_thread::sleep_for(10ms);
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
  }

  // The daemon's instances: name -> (state, cpus).
  std::map<std::string, std::pair<std::string, mk::CpuSet>> shown() {
    std::map<std::string, std::pair<std::string, mk::CpuSet>> m;
    auto r = mkctl("check", {"show", "--json"});
    boost::system::error_code ec;
    json::value v = json::parse(r.out, ec);
    if (r.code != 0 || ec || !v.is_object() || !v.as_object().contains("instances")) {
      violation("mkctl show --json failed (exit " + std::to_string(r.code) + "): " + first_line(r.err));
      return m;
    }
    for (const auto& iv : v.as_object().at("instances").as_array()) {
      const auto& o = iv.as_object();
      auto cpus = mk::CpuSet::parse(std::string(o.at("cpus").as_string()));
      m[std::string(o.at("name").as_string())] = {std::string(o.at("state").as_string()),
                                                   cpus ? *cpus : mk::CpuSet{}};
    }
    return m;
  }

  // After every operation: the invariants, and the model re-synced.
  void check() {
    ++checks_;
    auto m = shown();
    mk::CpuSet owned;
    for (const auto& [name, sc] : m) {
      if (!(owned & sc.second).empty())
        violation("CPU owned twice: " + name + " has " + sc.second.to_string() + ", others " + owned.to_string());
      owned = owned | sc.second;
    }
    for (auto it = insts_.begin(); it != insts_.end();) {
      auto f = m.find(it->name);
      if (f == m.end()) {
        it = insts_.erase(it);
        continue;
      }
      const bool active = f->second.first == "active";
      if (!active) it->keys.clear();  // a stopped image's store is gone
      it->running = active;
      if (active) {
        auto p = mkctl("check", {"ping", it->name, "--count", "2"});
        if (p.code != 0) violation("running instance " + it->name + " does not answer ping: " + first_line(p.err));
        for (const auto& [k, v] : it->keys) {
          std::string got = kv(it->port, {"GET", k});
          if (got != "$" + v) {
            violation("instance " + it->name + " lost key " + k + " (read '" + got + "', wrote '" + v + "')");
            break;
          }
        }
      }
      ++it;
    }
    for (const auto& [name, sc] : m) {
      bool known = false;
      for (const auto& i : insts_) known = known || i.name == name;
      if (!known) violation("the daemon shows an instance the soak never created: " + name);
    }
  }

  mk::CpuSet free_cpus() {
    mk::CpuSet all;
    for (uint32_t c = 0; c < cpus_; ++c) all.insert(c);
    for (const auto& [name, sc] : shown()) all = all - sc.second;
    return all;
  }
  template <class T>
  const T& pick(const std::vector<T>& v) {
    return v[std::uniform_int_distribution<std::size_t>(0, v.size() - 1)(rng_)];
  }
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }

  void op_create();
  void op_start(Inst& i);
  void op_update(Inst& i, bool staged);
  void op_resize(Inst& i);
  void op_cpu_move(Inst& from, Inst& to);
  void op_stop(Inst& i);
  void op_delete(Inst& i);
  void op_restart_daemon();
  void op_write(Inst& i);

  fs::path bin_, rt_;
  std::mt19937_64 rng_;
  uint64_t seed_;
  bool faults_, verbose_;
  uint32_t cpus_;
  std::vector<Inst> insts_;
  int next_name_ = 0;
  bool daemon_armed_ = false;  // the running daemon got MKERNEL_FAULT
  std::map<std::string, OpStats> stats_;
  int checks_ = 0, violations_ = 0;
  std::string first_violation_;
  std::vector<std::string> replay_;
  std::deque<std::string> recent_;
};

void Soak::op_create() {
  mk::CpuSet free = free_cpus();
  if (free.empty()) return;
  std::vector<uint32_t> f;
  for (uint32_t c : free) f.push_back(c);
  mk::CpuSet cpus;
  cpus.insert(pick(f));
  if (chance(0.3))
    for (uint32_t c : f) cpus.insert(c);
  Inst i;
  i.name = "soak" + std::to_string(next_name_++);
  i.port = free_port();
  auto r = mkctl("create", {"create", i.name, "--cpus", cpus.to_string(), "--memory", "32M", "--device",
                            "listen:127.0.0.1:" + std::to_string(i.port)});
  judge("create", r, false);
  if (r.code != 0) return;
  auto l = mkctl("load", {"load", i.name, "--kernel", (bin_ / "mk-kernel").string(), "--cmdline", "--services=kv",
                          "--init", "sh -c 'sleep 600 & wait'"});
  judge("load", l, false);
  insts_.push_back(i);
}

void Soak::op_start(Inst& i) {
  auto r = mkctl("start", {"start", i.name});
  judge("start", r, false);
  if (r.code == 0) op_write(i);
}

void Soak::op_write(Inst& i) {
  for (int k = 0; k < 3; ++k) {
    std::string key = "k" + std::to_string(std::uniform_int_distribution<int>(0, 99999)(rng_));
    std::string val = std::to_string(rng_());
    if (kv(i.port, {"SET", key, val}) == "+OK") {
      i.keys[key] = val;
    } else {
      violation("instance " + i.name + " did not acknowledge SET " + key);
      return;
    }
  }
  ++stats_["write"].ok;
}

void Soak::op_update(Inst& i, bool staged) {
  std::vector<std::string> args{"update", i.name};
  bool armed = false;
  if (staged) {
    args.push_back("--staged");
    if (faults_ && chance(0.3)) {
      static const std::vector<std::string> steps{"cpu", "boot", "tenants", "services", "retire"};
      args.insert(args.end(), {"--fault", "fail:" + pick(steps)});
      armed = true;
    }
  } else if (faults_ && chance(0.3)) {
    args.insert(args.end(), {"--fault", "corrupt-package"});
    armed = true;
  }
  auto r = mkctl(staged ? "staged" : "update", args);
  // A staged update needs a CPU to start the new image on.
  judge(staged ? "staged" : "update", r, armed, {"no CPU", "spare", "needs"});
}

void Soak::op_resize(Inst& i) {
  mk::CpuSet free = free_cpus();
  auto m = shown();
  if (!m.count(i.name)) return;
  mk::CpuSet mine = m[i.name].second;
  std::vector<uint32_t> options;
  for (uint32_t c : free | mine) options.push_back(c);
  if (options.empty()) return;
  mk::CpuSet want;
  for (uint32_t c : options)
    if (chance(0.5)) want.insert(c);
  if (want.empty()) want.insert(pick(options));
  if (want == mine) return;
  std::vector<std::string> args{"update", i.name, "--cpus", want.to_string()};
  bool armed = false;
  if (faults_ && i.running && chance(0.3)) {
    static const std::vector<std::string> steps{"release CPU", "add CPU", "cpuset"};
    args.insert(args.end(), {"--fault", "fail:" + pick(steps)});
    armed = true;
  }
  judge("resize", mkctl("resize", args), armed);
}

void Soak::op_cpu_move(Inst& from, Inst& to) {
  auto m = shown();
  if (!m.count(from.name) || !m.count(to.name) || m[from.name].second.count() < 2) return;
  std::vector<uint32_t> c;
  for (uint32_t x : m[from.name].second) c.push_back(x);
  std::vector<std::string> args{"cpu", "move", std::to_string(pick(c)), "--from", from.name, "--to", to.name};
  bool armed = false;
  if (faults_ && chance(0.3)) {
    args.insert(args.end(), {"--fault", "fail:add CPU"});
    armed = true;
  }
  judge("cpu-move", mkctl("cpu-move", args), armed);
}

void Soak::op_stop(Inst& i) {
  std::vector<std::string> args{"stop", i.name};
  if (chance(0.25)) args.push_back("--force");
  judge("stop", mkctl("stop", args), false);
}

void Soak::op_delete(Inst& i) { judge("delete", mkctl("delete", {"delete", i.name}), false); }

// SIGKILL the daemon; the next one (started by mkctl on demand, adopting
// the running instances) gets MKERNEL_FAULT=OP:STEP@1 when faults are on.
void Soak::op_restart_daemon() {
  kill_daemon();
  std::string spec;
  if (faults_ && mk::fault::compiled_in() && chance(0.6)) {
    const std::vector<mk::fault::Point> points(mk::fault::catalog().begin(), mk::fault::catalog().end());
    const mk::fault::Point p = pick(points);
    spec = std::string(p.op) + ":" + std::string(p.step) + "@1";
  }
  auto r = mkctl("restart", {"host", "status"}, {"MKERNEL_FAULT=" + spec});
  daemon_armed_ = !spec.empty();
  log("daemon restarted" + (spec.empty() ? std::string() : " with MKERNEL_FAULT=" + spec));
  judge("restart", r, false);
}

int Soak::run(std::chrono::seconds budget, bool as_json) {
  kill_daemon();
  const mk::soak::Census before = mk::soak::take_census(0);
  const auto t0 = Clock::now();
  auto init = mkctl("init", {"init", "--cpus", "0-" + std::to_string(cpus_ - 1), "--memory", "512M"});
  judge("init", init, false);
  int ops = 0;
  while (Clock::now() - t0 < budget && init.code == 0) {
    ++ops;
    std::vector<Inst*> all, running, stopped;
    for (auto& i : insts_) {
      all.push_back(&i);
      (i.running ? running : stopped).push_back(&i);
    }
    const int dice = std::uniform_int_distribution<int>(0, 99)(rng_);
    if (dice < 12 || all.empty()) {
      op_create();
    } else if (dice < 30 && !stopped.empty()) {
      op_start(*pick(stopped));
    } else if (dice < 40 && !running.empty()) {
      op_write(*pick(running));
    } else if (dice < 55 && !running.empty()) {
      op_update(*pick(running), false);
    } else if (dice < 63 && !running.empty()) {
      op_update(*pick(running), true);
    } else if (dice < 71) {
      op_resize(*pick(all));
    } else if (dice < 76 && running.size() >= 2) {
      Inst* a = pick(running);
      Inst* b = pick(running);
      if (a != b) op_cpu_move(*a, *b);
    } else if (dice < 86 && !running.empty()) {
      op_stop(*pick(running));
    } else if (dice < 93 && !stopped.empty()) {
      op_delete(*pick(stopped));
    } else {
      op_restart_daemon();
    }
    check();
  }
  // The end: a clean daemon, everything stopped and deleted, nothing left.
  kill_daemon();
  daemon_armed_ = false;
  for (auto& i : insts_) {
    if (i.running) judge("final stop", mkctl("final", {"stop", i.name}), false);
    judge("final delete", mkctl("final", {"delete", i.name}), false);
  }
  kill_daemon();
  std::this_thread::sleep_for(200ms);
  mk::soak::Census after = mk::soak::take_census(0);
  for (int i = 0; i < 50 && !(after == before); ++i) {  // exits finishing
    std::this_thread::sleep_for(100ms);
    after = mk::soak::take_census(0);
  }
  if (!(after == before)) violation("leak: census " + before.str() + " before, " + after.str() + " after");
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();

  if (as_json) {
    json::object o{{"seed", seed_},         {"seconds", secs},     {"operations", ops},
                   {"checks", checks_},     {"violations", violations_},
                   {"faults", faults_},     {"census_before", before.str()}, {"census_after", after.str()}};
    json::object per;
    for (const auto& [op, s] : stats_)
      per[op] = json::object{{"ok", s.ok}, {"injected", s.injected}, {"refused", s.refused}, {"unexpected", s.unexpected}};
    o["per_operation"] = per;
    if (!first_violation_.empty()) {
      o["first_violation"] = first_violation_;
      json::array rp;
      for (const auto& l : replay_) rp.push_back(json::string(l));
      o["before_it"] = rp;
    }
    std::cout << json::serialize(o) << "\n";
  } else {
    std::printf("mksoak: %d operations in %.0f s (seed %llu, faults %s), %d invariant checks, %d violations\n", ops,
                secs, static_cast<unsigned long long>(seed_), faults_ ? "on" : "off", checks_, violations_);
    std::printf("  %-14s %6s %9s %8s %11s\n", "operation", "ok", "injected", "refused", "unexpected");
    for (const auto& [op, s] : stats_)
      std::printf("  %-14s %6d %9d %8d %11d\n", op.c_str(), s.ok, s.injected, s.refused, s.unexpected);
    std::printf("  census before %s\n  census after  %s\n", before.str().c_str(), after.str().c_str());
    if (!first_violation_.empty()) {
      std::printf("first violation: %s\nthe operations before it:\n", first_violation_.c_str());
      for (const auto& l : replay_) std::printf("  %s\n", l.c_str());
      std::printf("replay: mksoak --seed %llu\n", static_cast<unsigned long long>(seed_));
    }
  }
  return violations_ == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description opts("mksoak options");
  opts.add_options()("help,h", "this help")("minutes", po::value<double>(), "run this long (default 2)")(
      "seconds", po::value<double>(), "run this long, in seconds")("seed", po::value<std::string>(),
                                                                    "random seed (default: from the clock; printed)")(
      "no-faults", "inject no faults")("runtime-dir", po::value<std::string>(),
                                        "state directory (default: a new one under /tmp, removed at the end)")(
      "verbose,v", "log every operation to stderr")("json", "one JSON summary on stdout");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, opts), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << "mksoak: " << e.what() << " (mksoak --help)\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << "usage: mksoak [--minutes M | --seconds S] [--seed N] [--no-faults] [--json]\n\n"
                 "Random create/start/ping/update/staged/resize/cpu move/stop/delete and daemon\n"
                 "restarts against mkctl, mkerneld and mk-kernel (next to mksoak), with injected\n"
                 "faults; checks the invariants after every operation and leaks at the end.\n"
                 "Needs root (cgroups, namespaces). Exit 0: all held; 1: a violation; 2: usage.\n\n"
              << opts;
    return 0;
  }
  if (vm.count("minutes") && vm.count("seconds")) {
    std::cerr << "mksoak: give --minutes or --seconds, not both\n";
    return 2;
  }
  double secs = vm.count("seconds") ? vm["seconds"].as<double>() : 60 * (vm.count("minutes") ? vm["minutes"].as<double>() : 2.0);
  if (!(secs >= 1 && secs <= 7 * 24 * 3600)) {
    std::cerr << "mksoak: the duration must be between 1 second and 7 days\n";
    return 2;
  }
  if (::geteuid() != 0) {
    std::cerr << "mksoak: needs root (instances use cgroups and namespaces)\n";
    return 2;
  }
  const fs::path bin = fs::canonical("/proc/self/exe").parent_path();
  for (const char* b : {"mkctl", "mkerneld", "mk-kernel"}) {
    if (!fs::exists(bin / b)) {
      std::cerr << "mksoak: " << (bin / b).string() << " is missing (build mkctl, mkerneld and mk-kernel)\n";
      return 2;
    }
  }
  uint64_t seed = static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  if (vm.count("seed")) {
    const std::string s = vm["seed"].as<std::string>();
    char* end = nullptr;
    errno = 0;
    seed = std::strtoull(s.c_str(), &end, 10);
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos || errno == ERANGE) {
      std::cerr << "mksoak: --seed: '" << s << "' is not a whole number from 0 to 18446744073709551615\n";
      return 2;
    }
  }
  fs::path rt;
  bool own_rt = false;
  if (vm.count("runtime-dir")) {
    rt = vm["runtime-dir"].as<std::string>();
  } else {
    char tmpl[] = "/tmp/mksoak.XXXXXX";
    if (!::mkdtemp(tmpl)) {
      std::perror("mksoak: mkdtemp");
      return 1;
    }
    rt = tmpl;
    own_rt = true;
  }
  Soak soak(bin, rt, seed, !vm.count("no-faults"), vm.count("verbose") > 0);
  const int rc = soak.run(std::chrono::seconds(static_cast<long>(secs)), vm.count("json") > 0);
  if (own_rt && rc == 0) fs::remove_all(rt);
  if (rc != 0) std::cerr << "mksoak: violations; runtime dir kept: " << rt.string() << "\n";
  return rc;
}
