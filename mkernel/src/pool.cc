// Pool: defaults, validation against topology and existing instances (see pool.h).
#include "mkernel/pool.h"

#include <algorithm>
#include <charconv>
#include <cinttypes>
#include <map>
#include <sstream>

#include "mk/units.h"

namespace mk {

Result<MemorySpec> MemorySpec::parse(std::string_view text) {
  MemorySpec m;
  std::string_view size = text;
  if (std::size_t at = text.find('@'); at != std::string_view::npos) {
    size = text.substr(0, at);
    std::string_view node = text.substr(at + 1);
    uint32_t n = 0;
    auto [p, ec] = std::from_chars(node.data(), node.data() + node.size(), n);
    if (node.empty() || ec != std::errc() || p != node.data() + node.size() || n > 4095) {
      return MK_FAIL(EINVAL, "bad memory spec", "'%.*s': node after '@' must be a NUMA node number (e.g. 2G@0)",
                     static_cast<int>(text.size()), text.data());
    }
    m.node = n;
  }
  MK_TRY_ASSIGN(m.bytes, parse_size(size));
  if (m.bytes == 0)
    return MK_FAIL(EINVAL, "bad memory spec", "'%.*s': size must be above zero",
                   static_cast<int>(text.size()), text.data());
  return m;
}

uint64_t Pool::memory_on(uint32_t node) const {
  for (const auto& r : memory)
    if (r.node == node) return r.bytes;
  return 0;
}

uint64_t Pool::total_memory() const {
  uint64_t n = 0;
  for (const auto& r : memory) n += r.bytes;
  return n;
}

bool Pool::has_device(std::string_view name) const {
  return std::find(devices.begin(), devices.end(), name) != devices.end();
}

std::vector<MemoryRegion> split_memory(uint64_t bytes, const std::vector<uint32_t>& nodes) {
  std::vector<MemoryRegion> out;
  if (nodes.empty()) return out;
  uint64_t pages = bytes / kPageSize, per = pages / nodes.size();
  uint64_t extra = pages - per * nodes.size();
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    uint64_t p = per + (i == 0 ? extra : 0);
    if (p) out.push_back({nodes[i], p * kPageSize});
  }
  return out;
}

namespace {

// Parses "Node 0 MemFree:  123456 kB" style or "MemAvailable:  123 kB" lines.
std::optional<uint64_t> find_kb(const std::string& text, std::string_view key) {
  std::size_t pos = text.find(key);
  if (pos == std::string::npos) return std::nullopt;
  pos += key.size();
  while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\t')) ++pos;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data() + pos, text.data() + text.size(), v);
  if (ec != std::errc()) return std::nullopt;
  (void)p;
  return v * 1024;
}

void add_memory(std::map<uint32_t, uint64_t>& m, uint32_t node, uint64_t bytes) { m[node] += bytes; }

}  // namespace

Result<std::vector<MemoryRegion>> available_memory(const Topology& topo, const SysRoot& root) {
  std::vector<MemoryRegion> out;
  if (!topo.is_live) {
    for (const auto& n : topo.numa_nodes)
      out.push_back({n.os_index, n.memory_bytes ? n.memory_bytes : kUnknownMemory});
    return out;
  }
  for (const auto& n : topo.numa_nodes) {
    std::string file = "/sys/devices/system/node/node" + std::to_string(n.os_index) + "/meminfo";
    auto text = root.read_file(file);
    std::optional<uint64_t> free;
    if (text) free = find_kb(*text, "MemFree:");
    if (!free && topo.numa_nodes.size() == 1) {
      // No per-node file (kernel without NUMA): the whole machine is node 0.
      MK_TRY_ASSIGN(std::string mi, root.read_file("/proc/meminfo"));
      free = find_kb(mi, "MemAvailable:");
    }
    if (!free) {
      return MK_FAIL(EIO, "cannot read free memory", "no MemFree in %s (node %u)",
                     root.path(file).c_str(), n.os_index);
    }
    out.push_back({n.os_index, *free});
  }
  return out;
}

namespace {

uint64_t available_on(const std::vector<MemoryRegion>& avail, uint32_t node) {
  for (const auto& r : avail)
    if (r.node == node) return r.bytes;
  return 0;
}

std::string known_devices(const Topology& topo) {
  std::string s;
  for (const auto& d : topo.devices) {
    if (d.kind != "net" && d.kind != "block") continue;
    if (!s.empty()) s += ", ";
    s += d.name;
  }
  return s.empty() ? "none" : s;
}

}  // namespace

Result<PoolDecision> make_pool(const Topology& topo, const PoolRequest& req,
                               const std::vector<MemoryRegion>& available,
                               const std::vector<Instance>& existing) {
  PoolDecision d;
  CpuSet all = topo.all_pus();

  // 1. CPUs.
  if (req.cpus) {
    CpuSet missing = *req.cpus - all;
    if (!missing.empty()) {
      return MK_FAIL(ENOENT, "cpu does not exist", "cpu %s does not exist on this machine (cpus: %s)",
                     missing.to_string().c_str(), all.to_string().c_str());
    }
    if (req.cpus->empty()) return MK_FAIL(EINVAL, "empty pool", "the pool needs at least one CPU");
    d.pool.cpus = *req.cpus;
  } else {
    d.pool.cpus = all;
    if (all.count() > 1) d.pool.cpus.erase(static_cast<uint32_t>(all.first()));
  }
  if (d.pool.cpus == all) {
    d.warnings.push_back("the pool takes every CPU (" + all.to_string() +
                         "): the host keeps none of its own and shares CPUs with instances");
  }

  // 2. Memory per node.
  std::map<uint32_t, uint64_t> mem;
  if (req.memory.empty()) {
    for (const auto& a : available) {
      if (a.bytes == kUnknownMemory) {
        d.warnings.push_back("the topology gives no memory size for NUMA node " + std::to_string(a.node) +
                             ": the pool takes none there; give --memory SIZE@" + std::to_string(a.node));
        continue;
      }
      uint64_t share = a.bytes / 100 * kDefaultPoolMemoryPercent;
      share -= share % kPoolMemoryGranule;
      if (share) add_memory(mem, a.node, share);
    }
  } else {
    for (const auto& m : req.memory) {
      if (m.bytes % kPageSize) {
        return MK_FAIL(EINVAL, "memory not page aligned", "%s is not a multiple of the %" PRIu64
                       "-byte page size; use %s", format_size(m.bytes).c_str(), kPageSize,
                       format_size((m.bytes / kPageSize + 1) * kPageSize).c_str());
      }
      if (m.node) {
        if (!topo.find_numa(*m.node)) {
          return MK_FAIL(ENOENT, "no such NUMA node", "NUMA node %u does not exist (this machine has %zu node(s))",
                         *m.node, topo.numa_nodes.size());
        }
        add_memory(mem, *m.node, m.bytes);
      } else {
        std::vector<uint32_t> nodes = topo.nodes_of(d.pool.cpus);
        if (nodes.empty())
          for (const auto& n : topo.numa_nodes) nodes.push_back(n.os_index);
        for (const auto& r : split_memory(m.bytes, nodes)) add_memory(mem, r.node, r.bytes);
      }
    }
  }
  for (const auto& [node, bytes] : mem) {
    uint64_t avail = available_on(available, node);
    if (avail == kUnknownMemory) {
      d.warnings.push_back("the topology gives no memory size for NUMA node " + std::to_string(node) + ": " +
                           format_size(bytes) + " accepted unchecked");
    } else if (bytes > avail) {
      return MK_FAIL(ENOMEM, "not enough memory", "node %u can give %s to the pool, %s was asked",
                     node, format_size(avail).c_str(), format_size(bytes).c_str());
    }
    d.pool.memory.push_back({node, bytes});
  }

  // 3. Devices.
  for (const auto& name : req.devices) {
    bool found = std::any_of(topo.devices.begin(), topo.devices.end(),
                             [&](const IoDevice& dev) { return dev.name == name; });
    if (!found) {
      return MK_FAIL(ENOENT, "no such device", "device '%s' is not on this machine (known: %s)",
                     name.c_str(), known_devices(topo).c_str());
    }
    if (d.pool.has_device(name))
      return MK_FAIL(EINVAL, "duplicate device", "device '%s' is listed twice", name.c_str());
    d.pool.devices.push_back(name);
  }

  // 4. Existing instances must still fit.
  std::map<uint32_t, uint64_t> used;
  for (const auto& inst : existing) {
    CpuSet outside = inst.cpus - d.pool.cpus;
    if (!outside.empty()) {
      return MK_FAIL(EBUSY, "pool would drop an instance's cpus",
                     "instance '%s' owns cpu %s, which the new pool leaves out; delete it first or keep its cpus",
                     inst.name.c_str(), outside.to_string().c_str());
    }
    for (const auto& r : inst.memory) used[r.node] += r.bytes;
    for (const auto& dev : inst.devices) {
      if ((dev.kind == DeviceKind::kNet || dev.kind == DeviceKind::kBlock) && !d.pool.has_device(dev.target)) {
        return MK_FAIL(EBUSY, "pool would drop an instance's device",
                       "instance '%s' holds device %s, which the new pool leaves out",
                       inst.name.c_str(), dev.to_string().c_str());
      }
    }
  }
  for (const auto& [node, bytes] : used) {
    if (bytes > d.pool.memory_on(node)) {
      return MK_FAIL(EBUSY, "pool too small for instances",
                     "instances use %s on node %u but the new pool gives it only %s",
                     format_size(bytes).c_str(), node, format_size(d.pool.memory_on(node)).c_str());
    }
  }
  return d;
}

}  // namespace mk
