// CPU placement for count-only requests (see placement.h).
#include "mkernel/placement.h"

#include <algorithm>
#include <map>
#include <tuple>

namespace mk {

namespace {

// Cores touched by `domain`, each with the candidate PUs it has in `domain`.
struct CoreSlice {
  uint32_t core;
  CpuSet free;   // candidate PUs of this core inside the domain
  bool whole;    // every PU of the core is a candidate
};

std::vector<CoreSlice> slices(const Topology& topo, const CpuSet& domain) {
  std::map<uint32_t, CpuSet> by_core;
  for (uint32_t c : domain) {
    const Pu* pu = topo.find_pu(c);
    if (pu) by_core[pu->core].insert(c);
  }
  std::vector<CoreSlice> out;
  for (auto& [core, free] : by_core) {
    bool whole = core < topo.cores.size() && topo.cores[core].pus == free;
    out.push_back({core, free, whole});
  }
  return out;
}

std::size_t whole_core_pus(const std::vector<CoreSlice>& s) {
  std::size_t n = 0;
  for (const auto& c : s)
    if (c.whole) n += c.free.count();
  return n;
}

CpuSet pick_compact(const std::vector<CoreSlice>& cores, uint32_t count) {
  CpuSet out;
  uint32_t need = count;
  // 1. Whole cores that fit entirely.
  for (const auto& c : cores) {
    if (need == 0) break;
    if (c.whole && c.free.count() <= need) {
      out |= c.free;
      need -= static_cast<uint32_t>(c.free.count());
    }
  }
  // 2. Leftovers of already split cores, 3. then split a whole core.
  for (bool whole_pass : {false, true}) {
    for (const auto& c : cores) {
      if (need == 0) break;
      if (c.whole != whole_pass) continue;
      for (uint32_t pu : c.free) {
        if (need == 0) break;
        if (out.contains(pu)) continue;
        out.insert(pu);
        --need;
      }
    }
  }
  return out;
}

CpuSet pick_spread(const Topology& topo, const CpuSet& candidates, uint32_t count) {
  // Group cores by (numa, l3) so the round-robin alternates caches and nodes.
  std::map<std::pair<int32_t, int32_t>, std::vector<CoreSlice>> groups;
  for (auto& s : slices(topo, candidates)) {
    uint32_t first = static_cast<uint32_t>(s.free.first());
    const Pu* pu = topo.find_pu(first);
    groups[{pu ? pu->l3 : -1, pu ? pu->numa : -1}].push_back(std::move(s));
  }
  // Order groups so consecutive picks land on different NUMA nodes first.
  std::vector<std::vector<CoreSlice>*> order;
  std::map<int32_t, std::vector<std::vector<CoreSlice>*>> by_numa;
  for (auto& [key, v] : groups) by_numa[key.second].push_back(&v);
  for (std::size_t i = 0;; ++i) {
    bool any = false;
    for (auto& [numa, vs] : by_numa)
      if (i < vs.size()) {
        order.push_back(vs[i]);
        any = true;
      }
    if (!any) break;
  }
  // Cores interleaved across groups: core 0 of each group, then core 1, ...
  std::vector<const CpuSet*> cores;
  for (std::size_t k = 0;; ++k) {
    bool any = false;
    for (auto* g : order)
      if (k < g->size()) {
        cores.push_back(&(*g)[k].free);
        any = true;
      }
    if (!any) break;
  }
  // Round r takes the r-th candidate PU of every core, so SMT siblings are
  // only used once every core gave one.
  CpuSet out;
  uint32_t need = count;
  for (std::size_t round = 0; need > 0; ++round) {
    bool progressed = false;
    for (const CpuSet* f : cores) {
      if (need == 0) break;
      int pu = f->first();
      for (std::size_t r = 0; r < round && pu >= 0; ++r) pu = f->next(pu);
      if (pu < 0) continue;
      out.insert(static_cast<uint32_t>(pu));
      --need;
      progressed = true;
    }
    if (!progressed) break;
  }
  return out;
}

}  // namespace

Result<CpuSet> place_cpus(const Topology& topo, const CpuSet& candidates, uint32_t count, bool spread) {
  if (count == 0) return MK_FAIL(EINVAL, "bad cpu count", "--cpu-count must be at least 1");
  if (candidates.count() < count) {
    return MK_FAIL(ENOSPC, "not enough free cpus", "%u cpu(s) asked, %zu free%s%s", count,
                   candidates.count(), candidates.empty() ? "" : ": ",
                   candidates.to_string().c_str());
  }
  if (spread) return pick_spread(topo, candidates, count);

  // Domains from the tightest level to the loosest.
  std::vector<std::vector<CpuSet>> levels;
  std::vector<CpuSet> l3s, nodes;
  for (const auto& g : topo.l3_groups) l3s.push_back(g.pus & candidates);
  for (const auto& n : topo.numa_nodes) nodes.push_back(n.pus & candidates);
  levels.push_back(std::move(l3s));
  levels.push_back(std::move(nodes));
  levels.push_back({candidates});

  for (const auto& domains : levels) {
    const CpuSet* best = nullptr;
    std::vector<CoreSlice> best_slices;
    std::tuple<bool, std::size_t, int> best_key{};
    for (const auto& d : domains) {
      if (d.count() < count) continue;
      auto s = slices(topo, d);
      // Key: (cannot use whole cores only, free count, first cpu) — smaller wins.
      std::tuple<bool, std::size_t, int> key{whole_core_pus(s) < count, d.count(), d.first()};
      if (!best || key < best_key) {
        best = &d;
        best_key = key;
        best_slices = std::move(s);
      }
    }
    if (best) return pick_compact(best_slices, count);
  }
  // Unreachable: the last level is the candidate set itself, which fits.
  return MK_FAIL(ENOSPC, "not enough free cpus", "no placement for %u cpu(s)", count);
}

}  // namespace mk
