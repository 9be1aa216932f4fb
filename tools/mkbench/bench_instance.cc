// Instances for the in-instance mkbench suites (see bench_instance.h).
#include "bench_instance.h"

#include <sched.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "bench_util.h"
#include "mkernel/image.h"

namespace mkbench {

using namespace std::chrono_literals;

mk::Result<std::unique_ptr<mk::RunningInstance>> boot_ready(const mk::Topology& topo, const mk::BootRequest& req) {
  MK_TRY_ASSIGN(auto run, mk::boot_instance(topo, req));
  if (auto r = run->wait_ready(10s); !r) {
    run->kill();
    (void)run->release();
    return r.error();
  }
  return run;
}

void stop_instance(std::unique_ptr<mk::RunningInstance>& run) {
  if (!run) return;
  if (!run->shutdown(500ms, 5s)) run->kill();
  (void)run->release();
  run.reset();
}

mk::Result<boost::json::object> wait_result_file(const std::string& path, std::chrono::milliseconds timeout) {
  auto give_up = std::chrono::steady_clock::now() + timeout;
  while (::access(path.c_str(), R_OK) != 0) {
    if (std::chrono::steady_clock::now() > give_up)
      return MK_FAIL(ETIMEDOUT, "waiting for a tenant's result", "%s did not appear within %lld ms", path.c_str(),
                     static_cast<long long>(timeout.count()));
    std::this_thread::sleep_for(20ms);
  }
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  boost::system::error_code ec;
  auto v = boost::json::parse(ss.str(), ec);
  if (ec || !v.is_object()) return MK_FAIL(EPROTO, "reading a tenant's result", "%s is not a JSON object", path.c_str());
  return v.as_object();
}

bool write_result_file(const std::string& path, const boost::json::object& doc) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << boost::json::serialize(doc) << "\n";
    if (!out.flush()) return false;
  }
  return ::rename(tmp.c_str(), path.c_str()) == 0;
}

double proc_cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return -1;
  auto rp = line.rfind(')');  // comm may hold blanks
  if (rp == std::string::npos) return -1;
  std::istringstream rest(line.substr(rp + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  // Fields after comm start at 3 (state); utime is 14, stime 15.
  for (int f = 3; f <= 15 && rest >> field; ++f) {
    if (f == 14) utime = std::stoull(field);
    if (f == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  if (rank > 0) --rank;
  return sorted[std::min(rank, sorted.size() - 1)];
}

mk::Result<std::string> scratch_dir(const std::string& tag) {
  std::string dir = "/tmp/mkbench-" + tag + "-" + std::to_string(::getpid());
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (!std::filesystem::create_directories(dir, ec) || ec)
    return MK_FAIL(EIO, "creating a scratch directory", "%s: %s", dir.c_str(), ec.message().c_str());
  return dir;
}

std::optional<InstanceBenchSetup> setup_instance_bench(const char* suite, const std::string& image, int* code) {
  *code = 1;
  if (::geteuid() != 0) {
    std::fprintf(stderr, "mkbench %s: needs root (each instance gets cgroups); rerun with sudo\n", suite);
    return std::nullopt;
  }
  auto info = mk::inspect_image(image);
  if (!info) {
    std::fprintf(stderr, "mkbench %s: %s\n", suite, info.error().to_string().c_str());
    return std::nullopt;
  }
  auto dir = scratch_dir(suite);
  if (!dir) {
    std::fprintf(stderr, "mkbench %s: %s\n", suite, dir.error().to_string().c_str());
    return std::nullopt;
  }
  *code = 0;
  return InstanceBenchSetup{*dir, self_dir() + "/mkbench", info->path};
}

void remove_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

namespace {

unsigned long long ticks_since_boot() {
  std::ifstream in("/proc/uptime");
  double up = 0;
  in >> up;
  return static_cast<unsigned long long>(up * static_cast<double>(::sysconf(_SC_CLK_TCK)));
}

std::string slurp_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Tasks started at or after `since` (ticks), allowed exactly on `narrowed`,
// outside instance cgroups: allowed on `all` again.
void widen_children(unsigned long long since, const mk::CpuSet& narrowed, const mk::CpuSet& all) {
  std::error_code ec;
  for (const auto& p : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string pid = p.path().filename();
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    for (const auto& t : std::filesystem::directory_iterator(p.path() / "task", ec)) {
      const std::string dir = t.path().string(), tid = t.path().filename();
      std::string stat = slurp_file(dir + "/stat");
      auto rp = stat.rfind(')');
      if (rp == std::string::npos) continue;
      std::istringstream rest(stat.substr(rp + 2));
      std::string f;
      unsigned long long start = 0;
      for (int i = 3; i <= 22 && rest >> f; ++i)
        if (i == 22) start = std::stoull(f);
      if (start < since) continue;
      std::string status = slurp_file(dir + "/status");
      auto at = status.find("Cpus_allowed_list:");
      if (at == std::string::npos) continue;
      auto eol = status.find('\n', at);
      std::string list = status.substr(at + 18, eol == std::string::npos ? std::string::npos : eol - at - 18);
      list.erase(0, list.find_first_not_of(" \t"));
      auto allowed = mk::CpuSet::parse(list);
      if (!allowed || !(*allowed == narrowed)) continue;
      if (slurp_file(dir + "/cgroup").find("/mkernel/") != std::string::npos) continue;
      (void)mk::sched_set_affinity(static_cast<pid_t>(std::stol(tid)), all);
    }
  }
}

}  // namespace

HostEnforcement::HostEnforcement(const mk::CpuSet& cpus, const mk::CpuSet& all)
    : cpus_(cpus), irq_(mk::SysRoot(), "") {
  for (uint32_t c : all)
    if (!cpus_.contains(c)) host_.insert(c);
}

std::vector<mk::Guarantee> HostEnforcement::apply() {
  std::vector<mk::Guarantee> out;
  mk::EvictOptions eo;
  eo.instance_cpus = cpus_;
  eo.reserved = cpus_;
  applied_ticks_ = ticks_since_boot();
  evicted_ = true;
  auto ev = mk::evict_host_tasks(mk::SysRoot(), eo);
  if (ev) {
    moved_ = ev->moved;
    out.push_back(ev->guarantee());
  } else {
    out.push_back({"host tasks", false, "not moved: " + ev.error().to_string()});
  }
  if (auto r = irq_.apply(cpus_, host_); r) {
    steered_ = true;
    out.push_back(irq_.report(cpus_).guarantee());
  } else {
    out.push_back({"irq steering", false, "not applied: " + r.error().to_string()});
  }
  return out;
}

void HostEnforcement::restore() {
  if (!moved_.empty()) mk::restore_host_tasks(mk::SysRoot(), moved_, mk::CpuSet());
  moved_.clear();
  if (evicted_ && !host_.empty()) widen_children(applied_ticks_, host_, host_ | cpus_);
  evicted_ = false;
  if (steered_) (void)irq_.apply(mk::CpuSet(), host_);
  steered_ = false;
}

std::string sh_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace mkbench
