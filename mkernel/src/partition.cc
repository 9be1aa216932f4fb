// Partition registry and the create-time validation rules (see partition.h).
#include "mkernel/partition.h"

#include <algorithm>
#include <charconv>
#include <cinttypes>
#include <map>
#include <set>

#include "mk/units.h"
#include "mkernel/placement.h"

namespace mk {

// ---- Partition -------------------------------------------------------------

const Instance* Partition::find(std::string_view name) const {
  for (const auto& i : instances)
    if (i.name == name) return &i;
  return nullptr;
}

Instance* Partition::find(std::string_view name) {
  for (auto& i : instances)
    if (i.name == name) return &i;
  return nullptr;
}

const Instance* Partition::find_id(uint32_t id) const {
  for (const auto& i : instances)
    if (i.id == id) return &i;
  return nullptr;
}

const Instance* Partition::owner_of_cpu(uint32_t cpu) const {
  for (const auto& i : instances)
    if (i.cpus.contains(cpu)) return &i;
  return nullptr;
}

CpuSet Partition::used_cpus() const {
  CpuSet s;
  for (const auto& i : instances) s |= i.cpus;
  return s;
}

CpuSet Partition::free_cpus() const { return pool.cpus - used_cpus(); }

uint64_t Partition::used_memory_on(uint32_t node) const {
  uint64_t n = 0;
  for (const auto& i : instances) n += i.memory_on(node);
  return n;
}

uint64_t Partition::free_memory_on(uint32_t node) const {
  uint64_t used = used_memory_on(node), have = pool.memory_on(node);
  return have > used ? have - used : 0;
}

void Partition::add(Instance inst) {
  auto pos = std::lower_bound(instances.begin(), instances.end(), inst.id,
                              [](const Instance& a, uint32_t id) { return a.id < id; });
  instances.insert(pos, std::move(inst));
}

bool Partition::remove(std::string_view name) {
  auto it = std::find_if(instances.begin(), instances.end(), [&](const Instance& i) { return i.name == name; });
  if (it == instances.end()) return false;
  instances.erase(it);
  return true;
}

// ---- Kinds -----------------------------------------------------------------

Result<KindSelector> KindSelector::parse(std::string_view text) {
  KindSelector k;
  if (text == "performance" || text == "p" || text == "P") {
    k.by = By::Performance;
    return k;
  }
  if (text == "efficiency" || text == "e" || text == "E") {
    k.by = By::Efficiency;
    return k;
  }
  uint32_t idx = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), idx);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size() || idx > 63) {
    return MK_FAIL(EINVAL, "bad cpu kind", "'%.*s': use performance, efficiency or a kind index (see mkctl topology)",
                   static_cast<int>(text.size()), text.data());
  }
  k.index = idx;
  return k;
}

Result<uint32_t> resolve_kind(const Topology& topo, const KindSelector& sel) {
  if (topo.kinds.empty()) {
    return MK_FAIL(ENOENT, "no cpu kinds", "this machine reports no CPU kinds (all cores are alike); drop --kind");
  }
  switch (sel.by) {
    case KindSelector::By::Efficiency: return 0u;  // hwloc: kind 0 is the most efficient
    case KindSelector::By::Performance: return static_cast<uint32_t>(topo.kinds.size() - 1);
    case KindSelector::By::Index:
      if (sel.index >= topo.kinds.size()) {
        return MK_FAIL(ENOENT, "no such cpu kind", "kind %u does not exist; this machine has kinds 0-%zu",
                       sel.index, topo.kinds.size() - 1);
      }
      return sel.index;
  }
  return MK_FAIL(EINVAL, "bad cpu kind", "unknown selector");
}

// ---- Validation ------------------------------------------------------------

namespace {

Result<void> check_name_and_id(const Partition& part, const CreateRequest& req, uint32_t& id) {
  MK_TRY(validate_instance_name(req.name));
  if (const Instance* other = part.find(req.name)) {
    return MK_FAIL(EEXIST, "instance name taken", "an instance named '%s' already exists (id %u); pick another name",
                   req.name.c_str(), other->id);
  }
  if (req.id) {
    if (*req.id < kMinInstanceId || *req.id > kMaxInstanceId) {
      return MK_FAIL(ERANGE, "instance id out of range", "id %u is outside %u..%u (0 is the host)", *req.id,
                     kMinInstanceId, kMaxInstanceId);
    }
    if (const Instance* other = part.find_id(*req.id)) {
      return MK_FAIL(EEXIST, "instance id taken", "id %u already belongs to instance '%s'", *req.id,
                     other->name.c_str());
    }
    id = *req.id;
    return ok();
  }
  for (uint32_t i = kMinInstanceId; i <= kMaxInstanceId; ++i) {
    if (!part.find_id(i)) {
      id = i;
      return ok();
    }
  }
  return MK_FAIL(ENOSPC, "no free instance id", "all %u instance ids are in use; delete an instance first",
                 kMaxInstanceId);
}

Result<void> check_cpus(const Topology& topo, const Partition& part, const CpuSet& cpus) {
  if (cpus.empty()) return MK_FAIL(EINVAL, "no cpus", "an instance needs at least one CPU");
  CpuSet all = topo.all_pus();
  CpuSet free = part.free_cpus();
  for (uint32_t c : cpus) {
    if (!all.contains(c)) {
      return MK_FAIL(ENOENT, "cpu does not exist", "cpu %u does not exist on this machine (cpus: %s)", c,
                     all.to_string().c_str());
    }
    if (!part.pool.cpus.contains(c)) {
      return MK_FAIL(EACCES, "cpu belongs to the host",
                     "cpu %u is the host's, not in the pool (pool cpus: %s); widen the pool with mkctl init --cpus",
                     c, part.pool.cpus.to_string().c_str());
    }
    if (const Instance* o = part.owner_of_cpu(c)) {
      return MK_FAIL(EBUSY, "cpu already owned", "cpu %u already belongs to instance '%s' (cpus %s); free pool cpus: %s",
                     c, o->name.c_str(), o->cpus.to_string().c_str(),
                     free.empty() ? "none" : free.to_string().c_str());
    }
  }
  return ok();
}

Result<CpuSet> choose_cpus(const Topology& topo, const Partition& part, const CreateRequest& req) {
  if (req.cpus) {
    if (req.cpu_count || req.kind || req.numa || req.spread) {
      return MK_FAIL(EINVAL, "conflicting options",
                     "--cpus names the CPUs; --cpu-count, --kind, --numa and --spread only go with --cpu-count");
    }
    MK_TRY(check_cpus(topo, part, *req.cpus));
    return *req.cpus;
  }
  if (req.cpu_count == 0) {
    return MK_FAIL(EINVAL, "no cpus", "give --cpus LIST or --cpu-count N");
  }
  CpuSet candidates = part.free_cpus();
  std::string filter;
  if (req.kind) {
    MK_TRY_ASSIGN(uint32_t k, resolve_kind(topo, *req.kind));
    candidates = candidates & topo.kinds[k].pus;
    filter += " of kind " + std::to_string(k);
  }
  if (req.numa) {
    const NumaNode* n = topo.find_numa(*req.numa);
    if (!n) {
      return MK_FAIL(ENOENT, "no such NUMA node", "NUMA node %u does not exist (this machine has %zu node(s))",
                     *req.numa, topo.numa_nodes.size());
    }
    candidates = candidates & n->pus;
    filter += " on NUMA node " + std::to_string(*req.numa);
  }
  auto placed = place_cpus(topo, candidates, req.cpu_count, req.spread);
  if (!placed) {
    return MK_FAIL(ENOSPC, "not enough free cpus", "%u cpu(s)%s asked, %zu free%s%s", req.cpu_count,
                   filter.c_str(), candidates.count(), candidates.empty() ? "" : ": ",
                   candidates.to_string().c_str());
  }
  return *placed;
}

Result<std::vector<MemoryRegion>> choose_memory(const Topology& topo, const Partition& part,
                                                const CreateRequest& req, const CpuSet& cpus) {
  if (req.memory.empty()) {
    if (req.allow_no_memory) return std::vector<MemoryRegion>{};
    return MK_FAIL(EINVAL, "no memory", "give --memory SIZE (e.g. 512M)");
  }
  std::map<uint32_t, uint64_t> want;
  for (const auto& m : req.memory) {
    if (m.bytes % kPageSize) {
      return MK_FAIL(EINVAL, "memory not page aligned", "%s is not a multiple of the %" PRIu64 "-byte page; use %s",
                     format_size(m.bytes).c_str(), kPageSize,
                     format_size((m.bytes / kPageSize + 1) * kPageSize).c_str());
    }
    uint32_t node;
    if (m.node) {
      node = *m.node;
    } else if (req.numa) {
      node = *req.numa;
    } else {
      node = topo.main_node_of(cpus);  // the node holding most of its CPUs
    }
    if (!topo.find_numa(node)) {
      return MK_FAIL(ENOENT, "no such NUMA node", "NUMA node %u does not exist (this machine has %zu node(s))", node,
                     topo.numa_nodes.size());
    }
    want[node] += m.bytes;
  }
  std::vector<MemoryRegion> out;
  for (auto [node, bytes] : want) {
    uint64_t free = part.free_memory_on(node);
    if (bytes > free) {
      return MK_FAIL(ENOMEM, "not enough pool memory",
                     "%s asked on node %u but the pool has %s free there (of %s); shrink --memory or grow the pool",
                     format_size(bytes).c_str(), node, format_size(free).c_str(),
                     format_size(part.pool.memory_on(node)).c_str());
    }
    out.push_back({node, bytes});
  }
  return out;
}

Result<void> check_devices(const Partition& part, const CreateRequest& req) {
  std::set<std::string> seen;
  for (const auto& d : req.devices) {
    if (!seen.insert(d.key()).second) {
      return MK_FAIL(EINVAL, "duplicate device", "device %s is given twice", d.to_string().c_str());
    }
    if ((d.kind == DeviceKind::kNet || d.kind == DeviceKind::kBlock) && !part.pool.has_device(d.target)) {
      std::string pool_devs;
      for (const auto& p : part.pool.devices) pool_devs += (pool_devs.empty() ? "" : ", ") + p;
      return MK_FAIL(ENOENT, "device not in pool", "device '%s' is not in the pool (pool devices: %s); add it with mkctl init --devices",
                     d.target.c_str(), pool_devs.empty() ? "none" : pool_devs.c_str());
    }
    for (const auto& inst : part.instances) {
      for (const auto& od : inst.devices) {
        if (od.key() == d.key()) {
          return MK_FAIL(EBUSY, "device already owned", "device %s already belongs to instance '%s'",
                         d.to_string().c_str(), inst.name.c_str());
        }
      }
    }
  }
  return ok();
}

}  // namespace

std::vector<std::string> placement_warnings(const Topology& topo, const Partition& part, const Instance& inst) {
  std::vector<std::string> w;
  std::set<uint32_t> cores;
  for (uint32_t c : inst.cpus)
    if (const Pu* pu = topo.find_pu(c)) cores.insert(pu->core);
  for (uint32_t core : cores) {
    if (core >= topo.cores.size()) continue;
    CpuSet others = topo.cores[core].pus - inst.cpus;
    for (uint32_t sib : others) {
      const Instance* o = part.owner_of_cpu(sib);
      if (o && o->name == inst.name) continue;
      if (o) {
        w.push_back("cpu " + (topo.cores[core].pus & inst.cpus).to_string() + " shares a core with cpu " +
                    std::to_string(sib) + " of instance '" + o->name + "' (SMT siblings)");
      } else if (!part.pool.cpus.contains(sib)) {
        w.push_back("cpu " + (topo.cores[core].pus & inst.cpus).to_string() + " shares a core with host cpu " +
                    std::to_string(sib) + " (SMT siblings)");
      }
    }
  }
  auto nodes = topo.nodes_of(inst.cpus);
  if (nodes.size() > 1) {
    std::string list;
    for (uint32_t n : nodes) list += (list.empty() ? "" : ",") + std::to_string(n);
    w.push_back("cpus " + inst.cpus.to_string() + " span NUMA nodes " + list);
  }
  for (const auto& r : inst.memory) {
    if (!nodes.empty() && std::find(nodes.begin(), nodes.end(), r.node) == nodes.end()) {
      w.push_back("memory on NUMA node " + std::to_string(r.node) + " is remote to every cpu of the instance");
    }
  }
  return w;
}

Result<CreatePlan> plan_create(const Topology& topo, const Partition& part, const CreateRequest& req) {
  if (!part.has_pool) {
    return MK_FAIL(ENOENT, "no pool", "the pool is not set; run mkctl init first (e.g. mkctl init --cpus 1-3 --memory 1G)");
  }
  CreatePlan plan;
  Instance& inst = plan.instance;
  MK_TRY(check_name_and_id(part, req, inst.id));
  inst.name = req.name;
  MK_TRY_ASSIGN(inst.cpus, choose_cpus(topo, part, req));
  MK_TRY_ASSIGN(inst.memory, choose_memory(topo, part, req, inst.cpus));
  MK_TRY(check_devices(part, req));
  inst.devices = req.devices;
  inst.state = InstanceState::Empty;
  plan.warnings = placement_warnings(topo, part, inst);
  return plan;
}

}  // namespace mk
