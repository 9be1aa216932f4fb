// Planner policies: pe-split, per-numa, even (see planner.h).
#include "mkernel/planner.h"

#include <algorithm>
#include <map>

#include "mkernel/placement.h"

namespace mk {

const char* to_string(PlanPolicy p) {
  switch (p) {
    case PlanPolicy::PeSplit: return "pe-split";
    case PlanPolicy::PerNuma: return "per-numa";
    case PlanPolicy::Even: return "even";
  }
  return "?";
}

Result<PlanPolicy> parse_plan_policy(std::string_view t) {
  if (t == "pe-split") return PlanPolicy::PeSplit;
  if (t == "per-numa") return PlanPolicy::PerNuma;
  if (t == "even") return PlanPolicy::Even;
  return MK_FAIL(EINVAL, "bad policy", "'%.*s' is not a policy; use pe-split, per-numa or even",
                 static_cast<int>(t.size()), t.data());
}

Result<std::vector<CpuSet>> parse_kinds_override(std::string_view text) {
  std::vector<CpuSet> kinds;
  CpuSet seen;
  while (true) {
    std::size_t colon = text.find(':');
    std::string_view part = text.substr(0, colon);
    auto s = CpuSet::parse(part);
    if (!s) {
      return MK_FAIL(EINVAL, "bad --kinds", "'%.*s': %s (expected CPULIST:CPULIST, most efficient first, e.g. 0:1)",
                     static_cast<int>(part.size()), part.data(), s.error().message());
    }
    if (s->intersects(seen)) {
      return MK_FAIL(EINVAL, "bad --kinds", "cpu %s is listed in two kinds", (*s & seen).to_string().c_str());
    }
    seen |= *s;
    kinds.push_back(*s);
    if (colon == std::string_view::npos) break;
    text = text.substr(colon + 1);
  }
  if (kinds.size() < 2) return MK_FAIL(EINVAL, "bad --kinds", "declare at least two kinds, e.g. 0:1");
  return kinds;
}

Result<void> override_kinds(Topology& topo, const std::vector<CpuSet>& kinds) {
  CpuSet all = topo.all_pus();
  for (const auto& k : kinds) {
    if (!k.is_subset_of(all)) {
      return MK_FAIL(ENOENT, "cpu does not exist", "--kinds names cpu %s, which this machine does not have (cpus: %s)",
                     (k - all).to_string().c_str(), all.to_string().c_str());
    }
  }
  topo.kinds.clear();
  for (auto& pu : topo.pus) pu.kind = -1;
  for (std::size_t i = 0; i < kinds.size(); ++i) {
    CpuKind k;
    k.index = static_cast<uint32_t>(i);
    k.efficiency = static_cast<int32_t>(i);
    k.pus = kinds[i];
    k.infos.push_back({"Source", "declared with --kinds"});
    topo.kinds.push_back(k);
    for (uint32_t c : kinds[i])
      for (auto& pu : topo.pus)
        if (pu.os_index == c) pu.kind = static_cast<int32_t>(i);
  }
  return ok();
}

namespace {

// Whole cores of `free`, in topology order (node, L3, core index).
std::vector<CpuSet> cores_in_order(const Topology& topo, const CpuSet& free) {
  std::map<std::tuple<int32_t, int32_t, uint32_t>, CpuSet> m;
  for (uint32_t c : free) {
    const Pu* pu = topo.find_pu(c);
    if (pu) m[{pu->numa, pu->l3, pu->core}].insert(c);
  }
  std::vector<CpuSet> out;
  for (auto& [k, s] : m) out.push_back(std::move(s));
  return out;
}

Result<std::vector<CpuSet>> split_even(const Topology& topo, const CpuSet& free, uint32_t n) {
  if (free.count() < n) {
    return MK_FAIL(ENOSPC, "not enough free cpus", "%u instances need at least %u cpus; the pool has %zu free",
                   n, n, free.count());
  }
  std::size_t per = free.count() / n;
  std::vector<CpuSet> parts(n);
  std::vector<CpuSet> cores = cores_in_order(topo, free);
  std::size_t part = 0;
  // Fill part by part with whole cores; a core that would overflow a part is
  // split only when the part cannot be completed otherwise.
  for (const CpuSet& core : cores) {
    for (uint32_t c : core) {
      if (part >= n) break;
      parts[part].insert(c);
      if (parts[part].count() == per) ++part;
    }
  }
  return parts;
}

}  // namespace

Result<Plan> make_plan(const Topology& topo_in, const Partition& part, const PlanRequest& req) {
  if (!part.has_pool) {
    return MK_FAIL(ENOENT, "no pool", "the pool is not set; run mkctl init first");
  }
  Topology topo = topo_in;
  if (!req.kinds_override.empty()) MK_TRY(override_kinds(topo, req.kinds_override));
  if (req.instances && (*req.instances == 0 || *req.instances > kMaxInstanceId)) {
    return MK_FAIL(EINVAL, "bad instance count", "--instances must be 1..%u", kMaxInstanceId);
  }
  CpuSet free = part.free_cpus();
  std::vector<std::pair<std::string, CpuSet>> groups;  // name, cpus
  std::string prefix = req.name_prefix;

  switch (req.policy) {
    case PlanPolicy::PeSplit: {
      if (topo.kinds.size() < 2) {
        return MK_FAIL(ENOENT, "no cpu kinds",
                       "this machine reports %zu CPU kind(s); pe-split needs two or more (declare them with --kinds, e.g. --kinds 0:1)",
                       topo.kinds.size());
      }
      if (req.instances && *req.instances != topo.kinds.size()) {
        return MK_FAIL(EINVAL, "bad instance count", "pe-split makes one instance per CPU kind: this machine has %zu kinds, not %u",
                       topo.kinds.size(), *req.instances);
      }
      for (const auto& k : topo.kinds) {
        std::string name;
        if (topo.kinds.size() == 2) name = k.index == 0 ? "ecores" : "pcores";
        else name = "kind" + std::to_string(k.index);
        groups.push_back({prefix.empty() ? name : prefix + std::to_string(k.index), k.pus & free});
      }
      break;
    }
    case PlanPolicy::PerNuma: {
      // Group by each PU's home node: on KNL SNC-4 a PU is local to a DRAM and
      // an MCDRAM node, and must not be planned twice.
      for (const auto& n : topo.numa_nodes) {
        CpuSet c;
        for (uint32_t cpu : free)
          if (const Pu* pu = topo.find_pu(cpu); pu && pu->numa == static_cast<int32_t>(n.os_index)) c.insert(cpu);
        if (c.empty()) continue;
        groups.push_back({(prefix.empty() ? "node" : prefix) + std::to_string(n.os_index), c});
      }
      if (req.instances) {
        if (*req.instances > groups.size()) {
          return MK_FAIL(EINVAL, "bad instance count", "per-numa: %u instances asked, but only %zu NUMA node(s) have free pool cpus",
                         *req.instances, groups.size());
        }
        groups.resize(*req.instances);
      }
      break;
    }
    case PlanPolicy::Even: {
      if (!req.instances) return MK_FAIL(EINVAL, "bad instance count", "even needs --instances N");
      MK_TRY_ASSIGN(auto parts, split_even(topo, free, *req.instances));
      for (std::size_t i = 0; i < parts.size(); ++i)
        groups.push_back({(prefix.empty() ? "part" : prefix) + std::to_string(i), std::move(parts[i])});
      break;
    }
  }

  // Memory: equal share of each node's free pool memory among the instances
  // whose main node it is, unless a fixed size is given.
  std::map<uint32_t, uint32_t> per_node;
  std::vector<uint32_t> nodes;
  for (const auto& g : groups) {
    if (g.second.empty()) {
      return MK_FAIL(ENOSPC, "no free cpus", "instance '%s' would get no CPU: its CPUs are all taken", g.first.c_str());
    }
    nodes.push_back(topo.main_node_of(g.second));
    ++per_node[nodes.back()];
  }

  Plan plan{req.policy, {}, {}};
  Partition scratch = part;
  for (std::size_t i = 0; i < groups.size(); ++i) {
    CreateRequest cr;
    cr.name = groups[i].first;
    cr.cpus = groups[i].second;
    uint64_t mem = req.memory_per_instance.value_or(0);
    if (!req.memory_per_instance && part.pool.memory_on(nodes[i]) == 0) {
      // The pool has no memory on this node (e.g. a recorded topology without
      // memory sizes): plan CPUs only, and say so.
      cr.allow_no_memory = true;
      plan.warnings.push_back("the pool has no memory on NUMA node " + std::to_string(nodes[i]) + ": instance '" +
                              cr.name + "' gets none (give --memory SIZE, or mkctl init --memory SIZE@" +
                              std::to_string(nodes[i]) + ")");
      mem = 0;
    } else if (!req.memory_per_instance) {
      mem = part.free_memory_on(nodes[i]) / per_node[nodes[i]];
      mem -= mem % kPoolMemoryGranule;
      if (mem == 0) {
        return MK_FAIL(ENOMEM, "not enough pool memory", "node %u has too little free pool memory for %u instance(s); give --memory",
                       nodes[i], per_node[nodes[i]]);
      }
    }
    if (mem) cr.memory.push_back({mem, nodes[i]});
    MK_TRY_ASSIGN(CreatePlan cp, plan_create(topo, scratch, cr));
    scratch.add(cp.instance);
    plan.instances.push_back(std::move(cp));
  }
  CpuSet left = scratch.free_cpus();
  if (!left.empty()) plan.warnings.push_back("cpus " + left.to_string() + " stay free in the pool");
  // SMT warnings are computed against the final partition, so each instance
  // sees its later neighbours too.
  for (auto& ip : plan.instances) ip.warnings = placement_warnings(topo, scratch, ip.instance);
  return plan;
}

}  // namespace mk
