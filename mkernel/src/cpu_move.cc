// CPU moves between running instances and resizes of one (see cpu_move.h):
// the checks against the partition, the image requests of the consent
// handshake, the cgroup writes, all or nothing with the undo in reverse
// order, and the read-back of where the instance's threads may run.
#include "mkernel/cpu_move.h"

#include <dirent.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "change_steps.h"
#include "mkernel/boot_cpu.h"

namespace mk {
namespace {

using change::Clock;
using change::ms_since;

std::string release_step(uint32_t cpu, const std::string& name) {
  return "release CPU " + std::to_string(cpu) + " from " + name;
}
std::string add_step(uint32_t cpu, const std::string& name) {
  return "add CPU " + std::to_string(cpu) + " to " + name;
}
std::string cpuset_step(const std::string& name) { return "cpuset of " + name; }

std::string or_none(const CpuSet& s) { return s.empty() ? std::string("none") : s.to_string(); }

Result<abi::CpuMsg> cpu_msg(const Topology& topo, uint32_t cpu, uint32_t op_id) {
  std::optional<BootCpu> b = boot_cpu_of(topo, cpu);
  if (!b)
    return MK_FAIL(ENOENT, "no such cpu", "cpu %u is not on this machine (%s)", cpu, topo.source.c_str());
  abi::CpuMsg m{};
  m.op_id = op_id;
  m.os_index = b->os_index;
  m.core = b->core;
  m.package = b->package;
  m.numa = b->numa;
  m.kind = b->kind;
  m.efficiency = b->efficiency;
  m.reserved = 0;
  return m;
}

// One image request of the handshake. *unknown: it failed without the
// image's answer (a timeout), so it may have taken effect all the same.
Result<void> cpu_request(const CpuHolder& h, uint16_t type, const abi::CpuMsg& m,
                         std::chrono::milliseconds timeout, bool* unknown) {
  const char* msg = type == abi::kMsgCpuRelease ? "kMsgCpuRelease" : "kMsgCpuAdd";
  // One byte more than a reply: a longer one is a protocol error, not a cut.
  alignas(abi::CpuReply) std::byte buf[sizeof(abi::CpuReply) + 1];
  auto n = h.ep->request(h.id, type, std::as_bytes(std::span<const abi::CpuMsg, 1>(&m, 1)), buf, timeout);
  if (!n) {
    *unknown = n.error().code() == ETIMEDOUT;
    int code = n.error().code() == EMSGSIZE ? EPROTO : n.error().code();
    return Error(code, "cpu request failed")
        .set_detail("%s for cpu %u to '%s': %s", msg, m.os_index, h.name.c_str(), n.error().message());
  }
  if (*n != sizeof(abi::CpuReply))
    return MK_FAIL(EPROTO, "bad cpu reply", "%s for cpu %u: '%s' answered %zu bytes, expected %zu", msg,
                   m.os_index, h.name.c_str(), *n, sizeof(abi::CpuReply));
  abi::CpuReply r;
  std::memcpy(&r, buf, sizeof r);
  r.detail[sizeof r.detail - 1] = '\0';
  if (r.status > 0)
    return MK_FAIL(EPROTO, "bad cpu reply", "%s for cpu %u: '%s' answered status %d", msg, m.os_index,
                   h.name.c_str(), r.status);
  if (r.status < 0) {
    return Error(-r.status, "the image refused")
        .set_detail("'%s' refused %s for cpu %u: %s: %s", h.name.c_str(), msg, m.os_index,
                    std::strerror(-r.status), r.detail[0] ? r.detail : "no detail");
  }
  return ok();
}

using change::Step;
using change::StepFn;

StepFn request_fn(const CpuHolder& h, uint16_t type, const abi::CpuMsg& m, std::chrono::milliseconds timeout) {
  return [&h, type, m, timeout](bool* unknown) { return cpu_request(h, type, m, timeout, unknown); };
}

StepFn cpuset_fn(const CpuHolder& h, CpuSet cpus) {
  return [&h, cpus](bool*) { return h.cgroup->set_cpus(cpus); };
}

// release CPU N from h, undone by adding it back.
Step release_of(const CpuHolder& h, const abi::CpuMsg& m, const CpuChangeOptions& o) {
  return {release_step(m.os_index, h.name), request_fn(h, abi::kMsgCpuRelease, m, o.timeout),
          "undo: " + add_step(m.os_index, h.name), request_fn(h, abi::kMsgCpuAdd, m, o.timeout)};
}
Step add_of(const CpuHolder& h, const abi::CpuMsg& m, const CpuChangeOptions& o) {
  return {add_step(m.os_index, h.name), request_fn(h, abi::kMsgCpuAdd, m, o.timeout),
          "undo: " + release_step(m.os_index, h.name), request_fn(h, abi::kMsgCpuRelease, m, o.timeout)};
}
Step cpuset_of(const CpuHolder& h, const CpuSet& to, const CpuSet& back) {
  return {cpuset_step(h.name), cpuset_fn(h, to), "undo: " + cpuset_step(h.name), cpuset_fn(h, back)};
}

// After a change: where the threads of a running holder may run.
void check_threads(const SysRoot& root, const CpuHolder& h, const CpuSet& cpus, CpuChangeResult& res) {
  if (!h.ep) return;
  uint32_t checked = 0;
  auto stray = threads_not_following(root, h, cpus, &checked);
  res.threads_checked += checked;
  if (!stray) {
    res.warnings.push_back("threads of '" + h.name + "' not checked: " + stray.error().to_string());
    return;
  }
  res.not_following.insert(res.not_following.end(), stray->begin(), stray->end());
}

bool vanished(int code) { return code == ENOENT || code == ESRCH; }

bool is_loop_comm(const std::string& comm) {
  if (comm == "mk-kv") return true;
  if (comm.size() <= 6 || comm.compare(0, 6, "mk-cpu") != 0) return false;
  return std::all_of(comm.begin() + 6, comm.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Task ids of /proc/<pid>/task, ascending; empty when the process is gone.
Result<std::vector<pid_t>> task_ids(const SysRoot& root, pid_t pid) {
  const std::string dir = root.path("/proc/" + std::to_string(pid) + "/task");
  DIR* d = ::opendir(dir.c_str());
  if (!d) {
    int e = errno;
    if (vanished(e)) return std::vector<pid_t>{};
    return MK_FAIL(e, "cannot list threads", "%s: %s", dir.c_str(), std::strerror(e));
  }
  std::vector<pid_t> out;
  while (const dirent* ent = ::readdir(d)) {
    char* end = nullptr;
    long v = std::strtol(ent->d_name, &end, 10);
    if (end != ent->d_name && *end == '\0' && v > 0) out.push_back(static_cast<pid_t>(v));
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

// Cpus_allowed_list of a status file's text.
Result<CpuSet> allowed_of(const std::string& status, const std::string& path) {
  static constexpr std::string_view kKey = "Cpus_allowed_list:";
  std::size_t p = status.find(kKey);
  if (p == std::string::npos || (p > 0 && status[p - 1] != '\n'))
    return MK_FAIL(EPROTO, "no Cpus_allowed_list", "%s has no Cpus_allowed_list line", path.c_str());
  p += kKey.size();
  std::size_t e = status.find('\n', p);
  std::string v = status.substr(p, e == std::string::npos ? std::string::npos : e - p);
  v.erase(0, v.find_first_not_of(" \t"));
  auto s = CpuSet::parse(v);
  if (!s)
    return Error(s.error().code(), "bad Cpus_allowed_list").set_detail("%s: %s", path.c_str(), s.error().message());
  return *s;
}

}  // namespace

Result<void> check_cpu_move(const Topology& topo, const Partition& part, uint32_t cpu, std::string_view from,
                            std::string_view to) {
  const Instance* f = part.find(from);
  if (!f) return MK_FAIL(ENOENT, "no such instance", "no instance '%.*s' to take cpu %u from",
                         static_cast<int>(from.size()), from.data(), cpu);
  const Instance* t = part.find(to);
  if (!t) return MK_FAIL(ENOENT, "no such instance", "no instance '%.*s' to give cpu %u to",
                         static_cast<int>(to.size()), to.data(), cpu);
  if (f == t)
    return MK_FAIL(EINVAL, "same instance", "cpu %u: '%s' is both the source and the target of the move", cpu,
                   f->name.c_str());
  if (!topo.find_pu(cpu))
    return MK_FAIL(ENOENT, "no such cpu", "cpu %u is not on this machine (%s)", cpu, topo.source.c_str());
  if (!f->cpus.contains(cpu)) {
    const Instance* o = part.owner_of_cpu(cpu);
    return MK_FAIL(EINVAL, "cpu not owned", "cpu %u is not '%s''s (cpus %s); it is %s", cpu, f->name.c_str(),
                   f->cpus.to_string().c_str(),
                   o ? ("instance '" + o->name + "''s").c_str()
                     : (part.pool.cpus.contains(cpu) ? "free in the pool" : "the host's, outside the pool"));
  }
  if (f->cpus.count() == 1)
    return MK_FAIL(EBUSY, "last cpu", "cpu %u is the last cpu of '%s': an instance keeps at least one", cpu,
                   f->name.c_str());
  return ok();
}

Result<void> check_cpu_resize(const Topology& topo, const Partition& part, std::string_view name,
                              const CpuSet& cpus) {
  const Instance* inst = part.find(name);
  if (!inst) return MK_FAIL(ENOENT, "no such instance", "no instance '%.*s' to resize",
                            static_cast<int>(name.size()), name.data());
  if (cpus.empty()) return MK_FAIL(EINVAL, "empty cpu set", "'%s' needs at least one cpu", inst->name.c_str());
  for (uint32_t c : cpus) {
    if (!topo.find_pu(c))
      return MK_FAIL(ENOENT, "no such cpu", "cpu %u is not on this machine (%s)", c, topo.source.c_str());
    if (!part.has_pool || !part.pool.cpus.contains(c))
      return MK_FAIL(EINVAL, "cpu outside the pool", "cpu %u is the host's, not in the pool (pool cpus %s)", c,
                     or_none(part.pool.cpus).c_str());
    const Instance* o = part.owner_of_cpu(c);
    if (o && o != inst)
      return MK_FAIL(EBUSY, "cpu already owned",
                     "cpu %u already belongs to instance '%s' (cpus %s); free pool cpus: %s",
                     c, o->name.c_str(), o->cpus.to_string().c_str(), or_none(part.free_cpus()).c_str());
  }
  return ok();
}

Result<CpuChangeResult> move_cpu(const Topology& topo, const SysRoot& root, const CpuHolder& from,
                                 const CpuHolder& to, uint32_t cpu, const CpuChangeOptions& opts) {
  const auto t0 = Clock::now();
  if (from.id == to.id || from.name == to.name)
    return MK_FAIL(EINVAL, "same instance", "cpu %u: '%s' is both the source and the target of the move", cpu,
                   from.name.c_str());
  if (!from.cpus.contains(cpu) || to.cpus.contains(cpu))
    return MK_FAIL(EINVAL, "cpu not owned", "cpu %u: '%s' has cpus %s, '%s' has %s", cpu, from.name.c_str(),
                   or_none(from.cpus).c_str(), to.name.c_str(), or_none(to.cpus).c_str());
  if (from.cpus.count() == 1)
    return MK_FAIL(EBUSY, "last cpu", "cpu %u is the last cpu of '%s': an instance keeps at least one", cpu,
                   from.name.c_str());
  MK_TRY_ASSIGN(abi::CpuMsg m, cpu_msg(topo, cpu, opts.op_id));

  CpuChangeResult res;
  res.from_cpus = from.cpus - CpuSet::of({cpu});
  res.cpus = to.cpus | CpuSet::of({cpu});
  // The loser lets go (consent, then its cpuset) before the gainer's cpuset
  // grows: no CPU is ever in both.
  std::vector<Step> steps;
  if (from.ep) {
    steps.push_back(release_of(from, m, opts));
    if (from.cgroup) steps.push_back(cpuset_of(from, res.from_cpus, from.cpus));
  }
  if (to.ep) {
    if (to.cgroup) steps.push_back(cpuset_of(to, res.cpus, to.cpus));
    steps.push_back(add_of(to, m, opts));
  }
  const std::string before = from.name + " keeps " + from.cpus.to_string() + ", " + to.name + " keeps " +
                             or_none(to.cpus);
  change::Runner run(opts, res.steps);
  MK_TRY(run.all_or_nothing(steps, "cpu move failed", before, "reconcile_cpus"));
  check_threads(root, from, res.from_cpus, res);
  check_threads(root, to, res.cpus, res);
  res.ms = ms_since(t0);
  return res;
}

Result<CpuChangeResult> resize_cpus(const Topology& topo, const SysRoot& root, const CpuHolder& target,
                                    const CpuSet& cpus, const CpuChangeOptions& opts) {
  const auto t0 = Clock::now();
  if (cpus.empty())
    return MK_FAIL(EINVAL, "empty cpu set", "'%s' needs at least one cpu", target.name.c_str());
  const CpuSet leaving = target.cpus - cpus;
  const CpuSet coming = cpus - target.cpus;
  std::vector<abi::CpuMsg> out, in;
  for (uint32_t c : leaving) {
    MK_TRY_ASSIGN(abi::CpuMsg m, cpu_msg(topo, c, opts.op_id));
    out.push_back(m);
  }
  for (uint32_t c : coming) {
    MK_TRY_ASSIGN(abi::CpuMsg m, cpu_msg(topo, c, opts.op_id));
    in.push_back(m);
  }
  CpuChangeResult res;
  res.cpus = cpus;
  std::vector<Step> steps;
  if (target.ep && !(leaving.empty() && coming.empty())) {
    if (!target.cpus.intersects(cpus)) {
      // Releasing first would take the image's last CPU: grow, add, release,
      // then shrink to the new set.
      const CpuSet both = target.cpus | cpus;
      if (target.cgroup) steps.push_back(cpuset_of(target, both, target.cpus));
      for (const auto& m : in) steps.push_back(add_of(target, m, opts));
      for (const auto& m : out) steps.push_back(release_of(target, m, opts));
      if (target.cgroup) steps.push_back(cpuset_of(target, cpus, both));
    } else {
      for (const auto& m : out) steps.push_back(release_of(target, m, opts));
      if (target.cgroup) steps.push_back(cpuset_of(target, cpus, target.cpus));
      for (const auto& m : in) steps.push_back(add_of(target, m, opts));
    }
  }
  change::Runner run(opts, res.steps);
  MK_TRY(run.all_or_nothing(steps, "cpu resize failed", target.name + " keeps " + target.cpus.to_string(),
                            "reconcile_cpus"));
  check_threads(root, target, cpus, res);
  res.ms = ms_since(t0);
  return res;
}

Result<std::vector<StrayThread>> threads_not_following(const SysRoot& root, const CpuHolder& holder,
                                                       const CpuSet& cpus, uint32_t* checked) {
  std::vector<pid_t> pids = holder.pids;
  if (holder.cgroup && !(holder.cgroup->cpuset_dir().empty() && holder.cgroup->memory_dir().empty())) {
    MK_TRY_ASSIGN(pids, holder.cgroup->pids());
  }
  std::vector<StrayThread> out;
  std::set<pid_t> seen;
  uint32_t n = 0;
  for (pid_t pid : pids) {
    MK_TRY_ASSIGN(std::vector<pid_t> tids, task_ids(root, pid));
    for (pid_t tid : tids) {
      if (!seen.insert(tid).second) continue;
      const std::string dir = "/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid);
      auto status = root.read_file(dir + "/status");
      auto comm = status ? root.read_file(dir + "/comm") : status;
      if (!comm) {
        if (vanished(comm.error().code())) continue;  // the thread ended meanwhile
        return comm.error();
      }
      MK_TRY_ASSIGN(CpuSet allowed, allowed_of(*status, root.path(dir + "/status")));
      std::string name = *comm;
      while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
      ++n;
      bool follows = is_loop_comm(name) ? !allowed.empty() && allowed.is_subset_of(cpus) : allowed == cpus;
      if (!follows) out.push_back({tid, name, allowed});
    }
  }
  if (checked) *checked = n;
  return out;
}

Result<void> reconcile_cpus(const Topology& topo, const SysRoot& root, const CpuHolder& holder, const CpuSet& cpus,
                            const CpuSet& touched, const CpuChangeOptions& opts) {
  (void)root;
  if (!holder.ep) return ok();
  if (cpus.empty())
    return MK_FAIL(EINVAL, "empty cpu set", "'%s' needs at least one cpu", holder.name.c_str());
  std::vector<Step> steps;
  for (uint32_t c : touched - cpus) {
    MK_TRY_ASSIGN(abi::CpuMsg m, cpu_msg(topo, c, opts.op_id));
    steps.push_back(release_of(holder, m, opts));
  }
  if (holder.cgroup) steps.push_back(cpuset_of(holder, cpus, cpus));
  for (uint32_t c : touched & cpus) {
    MK_TRY_ASSIGN(abi::CpuMsg m, cpu_msg(topo, c, opts.op_id));
    steps.push_back(add_of(holder, m, opts));
  }
  CpuChangeResult res;
  change::Runner run(opts, res.steps);
  for (std::size_t i = 0; i < steps.size(); ++i) {
    bool unknown = false;
    auto r = run.step(steps[i].name, steps[i].run, &unknown);
    if (!r) {
      return Error(r.error().code(), "cpu reconcile failed")
          .set_detail("%s failed after %zu of %zu steps (the rest not attempted; reconciling again is safe; "
                      "'%s' should own %s): %s",
                      steps[i].name.c_str(), i, steps.size(), holder.name.c_str(), cpus.to_string().c_str(),
                      r.error().message());
    }
  }
  return ok();
}

}  // namespace mk
