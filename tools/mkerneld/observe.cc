// Observing running instances: ping (host or instance to instance), console,
// top (see controller.h).
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "controller.h"
#include "json_codec.h"
#include "partition_actions.h"
#include "server.h"

namespace mkerneld {

namespace rpc = mk::tools::rpc;
namespace json = boost::json;
using mk::Instance;
using mk::InstanceState;

namespace {

mk::Error not_running(const mk::Partition& part, const std::string& name) {
  const Instance* i = part.find(name);
  if (!i) {
    return MK_FAIL(ENOENT, "no such instance", "'%s' (instances: %s)", name.c_str(),
                   mk::tools::instance_names(part).c_str());
  }
  return MK_FAIL(EINVAL, "instance is not running", "'%s' is %s%s%s", name.c_str(), to_string(i->state),
                 i->last_exit.empty() ? "" : ": ", i->last_exit.c_str());
}

struct Summary {
  double min_us = 0, p50_us = 0, p99_us = 0, max_us = 0;
};

Summary summarize(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  auto at = [&](double q) { return us[std::min(us.size() - 1, static_cast<std::size_t>(q * static_cast<double>(us.size() - 1) + 0.5))]; };
  return {us.front(), at(0.5), at(0.99), us.back()};
}

// Busy and total jiffies per CPU from /proc/stat.
struct CpuTimes {
  uint64_t busy = 0, total = 0;
};
std::map<uint32_t, CpuTimes> read_cpu_times(const mk::SysRoot& root) {
  std::map<uint32_t, CpuTimes> out;
  auto text = root.read_file("/proc/stat", 1 << 20);
  if (!text) return out;
  std::istringstream in(*text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("cpu", 0) != 0 || line.size() < 4 || !std::isdigit(static_cast<unsigned char>(line[3]))) continue;
    std::istringstream ls(line.substr(3));
    uint32_t cpu = 0;
    uint64_t v[10] = {};
    ls >> cpu;
    for (auto& x : v) ls >> x;
    // user nice system idle iowait irq softirq steal (guest is inside user)
    uint64_t idle = v[3] + v[4];
    uint64_t total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
    out[cpu] = {total - idle, total};
  }
  return out;
}

}  // namespace

rpc::Response Controller::ping(const rpc::PingAction& a) {
  auto target = live_.find(a.name);
  if (target == live_.end()) return rpc::Response::failure(not_running(part_, a.name));
  const uint32_t target_id = target->second.run->instance().id;
  json::object doc{{"name", a.name}, {"count", a.count}, {"size", a.size}};
  Summary s;
  uint32_t done = 0;
  std::string from = "host";
  if (!a.from) {
    std::vector<double> us;
    for (uint32_t i = 0; i < a.count; ++i) {
      auto rtt = target->second.run->ping(a.size, std::chrono::milliseconds(1000));
      if (!rtt) return rpc::Response::failure(rtt.error(), std::to_string(i) + " round trip(s) completed first");
      us.push_back(static_cast<double>(rtt->count()) / 1000.0);
    }
    done = a.count;
    s = summarize(std::move(us));
  } else {
    from = *a.from;
    if (*a.from == a.name)
      return rpc::Response::failure(MK_FAIL(EINVAL, "bad ping", "--from names the target itself ('%s')", a.name.c_str()));
    auto src = live_.find(*a.from);
    if (src == live_.end()) return rpc::Response::failure(not_running(part_, *a.from));
    const auto timeout = std::chrono::milliseconds(2000 + a.count / 10);
    auto r = src->second.run->ping_peer(target_id, a.count, a.size, timeout);
    if (!r) return rpc::Response::failure(r.error());
    if (r->status < 0) {
      const int e = -r->status;
      std::string hint;
      if (e == ENOENT)
        hint = "channels are made when the first of two instances starts; one of them was restarted while the "
               "other ran: restart both to connect them";
      return rpc::Response::failure(MK_FAIL(e, "ping between instances failed", "%s -> %s: %s after %u round trip(s)",
                                            a.from->c_str(), a.name.c_str(), std::strerror(e), r->done),
                                    hint);
    }
    done = r->done;
    s = {static_cast<double>(r->min_ns) / 1000.0, static_cast<double>(r->p50_ns) / 1000.0,
         static_cast<double>(r->p99_ns) / 1000.0, static_cast<double>(r->max_ns) / 1000.0};
  }
  doc["from"] = from;
  doc["done"] = done;
  doc["min_us"] = s.min_us;
  doc["p50_us"] = s.p50_us;
  doc["p99_us"] = s.p99_us;
  doc["max_us"] = s.max_us;
  char text[512];
  std::snprintf(text, sizeof text,
                "%s -> %s: %u round trip(s) of %u bytes over IPI: min %.1f us, p50 %.1f us, p99 %.1f us, max %.1f us\n",
                from.c_str(), a.name.c_str(), done, a.size, s.min_us, s.p50_us, s.p99_us, s.max_us);
  return rpc::Response::success(std::move(doc), text);
}

rpc::Response Controller::console(const rpc::ConsoleAction& a) {
  const Instance* inst = part_.find(a.name);
  if (!inst) return rpc::Response::failure(not_running(part_, a.name));
  // Fresh, except during the instance's own update (its image is being
  // replaced: the update drained it before it began, and watches it again
  // once it returned).
  if (auto it = live_.find(a.name); it != live_.end() && updating_ != a.name) drain_console(it->second);
  const std::string path = console_path(a.name);
  auto text = mk::read_console(path);
  std::string body;
  if (text) body = std::move(*text);
  else if (text.error().code() != ENOENT) return rpc::Response::failure(text.error());
  return rpc::Response::success({{"name", a.name}, {"path", path}, {"state", to_string(inst->state)}, {"text", body}},
                                body);
}

rpc::Response Controller::top(const rpc::TopAction& a) {
  struct Sample {
    std::optional<mk::abi::StatsMsg> stats;
  };
  std::map<std::string, Sample> before, after;
  auto sample = [&](std::map<std::string, Sample>& into) {
    for (auto& [name, live] : live_) {
      auto st = live.run->stats(std::chrono::milliseconds(500));
      into[name].stats = st ? std::optional(*st) : std::nullopt;
    }
  };
  auto cpu0 = read_cpu_times(sysroot_);
  sample(before);
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(a.interval_ms));
  auto cpu1 = read_cpu_times(sysroot_);
  sample(after);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  json::array rows;
  std::string text;
  char line[512];
  std::snprintf(line, sizeof line, "%-16s %-9s %-8s %-12s %7s %10s %21s %s\n", "NAME", "STATE", "PID", "CPUS", "CPU%",
                "IPI msg/s", "REGION MEM USED", "TENANTS");
  text += line;
  for (const Instance& inst : part_.instances) {
    json::object row{{"name", inst.name}, {"state", to_string(inst.state)}, {"cpus", inst.cpus.to_string()}};
    std::string pid = "-", cpu = "-", rate = "-", mem = "-", tenants = "-";
    auto lit = live_.find(inst.name);
    if (lit != live_.end()) {
      row["pid"] = lit->second.run->pid();
      pid = std::to_string(lit->second.run->pid());
      uint64_t busy = 0, total = 0;
      for (uint32_t c : inst.cpus) {
        auto b = cpu0.find(c), e = cpu1.find(c);
        if (b == cpu0.end() || e == cpu1.end()) continue;
        busy += e->second.busy - b->second.busy;
        total += e->second.total - b->second.total;
      }
      if (total > 0) {
        double pct = 100.0 * static_cast<double>(busy) / static_cast<double>(total);
        row["cpu_percent"] = pct;
        char b[32];
        std::snprintf(b, sizeof b, "%.1f", pct);
        cpu = b;
      }
      const auto& s0 = before[inst.name].stats;
      const auto& s1 = after[inst.name].stats;
      if (s0 && s1) {
        double msgs = static_cast<double>((s1->ipi_rx + s1->ipi_tx) - (s0->ipi_rx + s0->ipi_tx)) / secs;
        row["ipi_msgs_per_s"] = msgs;
        row["memory_used_bytes"] = s1->memory_used_bytes;
        row["memory_bytes"] = s1->memory_bytes;
        row["tenants_running"] = s1->tenants_running;
        char b[64];
        std::snprintf(b, sizeof b, "%.0f", msgs);
        rate = b;
        std::snprintf(b, sizeof b, "%llu/%llu MiB", static_cast<unsigned long long>(s1->memory_used_bytes >> 20),
                      static_cast<unsigned long long>(s1->memory_bytes >> 20));
        mem = b;
        tenants = std::to_string(s1->tenants_running);
      }
    }
    std::snprintf(line, sizeof line, "%-16s %-9s %-8s %-12s %7s %10s %21s %s\n", inst.name.c_str(),
                  to_string(inst.state), pid.c_str(), inst.cpus.to_string().c_str(), cpu.c_str(), rate.c_str(),
                  mem.c_str(), tenants.c_str());
    text += line;
    rows.push_back(std::move(row));
  }
  return rpc::Response::success({{"interval_ms", a.interval_ms}, {"instances", std::move(rows)}}, text);
}

}  // namespace mkerneld
