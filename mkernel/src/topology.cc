// Topology: the hwloc seam (see mkernel/topology.h). With picture.cc (which
// annotates a topology for lstopo) the only file that includes hwloc.h;
// everything it learns is copied into plain
// mk::Topology values and the hwloc handle is destroyed before returning.
#include "mkernel/topology.h"


#include <fcntl.h>
#include <hwloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "hwloc_handle.h"

namespace mk {
namespace {

// Owns one hwloc bitmap (the cpukinds API fills a caller-allocated one).
class HwlocBitmap {
 public:
  HwlocBitmap() : b_(hwloc_bitmap_alloc()) {}
  ~HwlocBitmap() { hwloc_bitmap_free(b_); }
  HwlocBitmap(const HwlocBitmap&) = delete;
  HwlocBitmap& operator=(const HwlocBitmap&) = delete;

  hwloc_bitmap_t get() const { return b_; }

 private:
  hwloc_bitmap_t b_;
};

// hwloc bitmaps can be infinite or reach past CpuSet's range; check_pus()
// rejects such topologies up front, and the bound here only keeps a bitmap
// hwloc hands out later (a kind's set) from ever making insert() misbehave.
CpuSet to_cpu_set(hwloc_const_bitmap_t set) {
  CpuSet out;
  if (!set) return out;
  for (int i = hwloc_bitmap_first(set); i >= 0 && static_cast<uint32_t>(i) < CpuSet::kMaxCpus;
       i = hwloc_bitmap_next(set, i)) {
    out.insert(static_cast<uint32_t>(i));
  }
  return out;
}

// Objects hwloc could not number (e.g. a package on some ARM firmware) carry
// HWLOC_UNKNOWN_INDEX; their logical index is the best stable stand-in.
uint32_t os_index_of(hwloc_obj_t obj) {
  return obj->os_index == HWLOC_UNKNOWN_INDEX ? obj->logical_index : obj->os_index;
}

// hwloc copies CPUID strings verbatim, and x86 pads the brand string with
// blanks ("AMD EPYC 9654 96-Core Processor                ").
std::string trim(const char* s) {
  if (!s) return {};
  std::string out = s;
  auto not_space = [](unsigned char c) { return c != ' ' && c != '\t' && c != '\n'; };
  out.erase(std::find_if(out.rbegin(), out.rend(), not_space).base(), out.end());
  out.erase(out.begin(), std::find_if(out.begin(), out.end(), not_space));
  return out;
}

std::string info_of(hwloc_obj_t obj, const char* name) {
  return trim(hwloc_obj_get_info_by_name(obj, name));
}

void append_word(std::string& out, const std::string& word) {
  if (word.empty()) return;
  if (!out.empty()) out += ' ';
  out += word;
}

// Ordinary memory is what a PU's default allocations come from; MCDRAM, HBM,
// NVM, GPU memory, ... are opt-in tiers that share the PU's locality.
bool is_ordinary_memory(const NumaNode& n) { return n.subtype.empty() || n.subtype == "DRAM"; }

// The home node among those `holds` accepts: the lowest-numbered ordinary
// one, else the lowest-numbered at all (nodes are sorted by OS index), -1 if
// none. On KNL SNC4 a quadrant's PUs lie in both its DRAM and its MCDRAM
// node's cpuset; picking by cpuset alone would make the answer depend on
// hwloc's attach order.
template <class Pred>
int32_t home_numa(const std::vector<NumaNode>& nodes, Pred holds) {
  int32_t fallback = -1;
  for (const NumaNode& n : nodes) {
    if (!holds(n)) continue;
    if (is_ordinary_memory(n)) return static_cast<int32_t>(n.os_index);
    if (fallback < 0) fallback = static_cast<int32_t>(n.os_index);
  }
  return fallback;
}

// GPU-runtime discovery plugins. They add only coprocessor handles
// (opencl0d0, cuda0, :0.0) that no instance can be given, and they start
// whole vendor runtimes inside the caller (seconds and extra threads with
// CUDA; the GL one connects to an X server). The Linux backend still reports
// DRM GPUs (card0, renderD128) on its own.
constexpr const char* kSkippedComponents[] = {"opencl", "gl", "cuda", "nvml", "rsmi", "levelzero"};

// Every loader turns on I/O discovery the same way: "important" devices only
// (NICs, disks, GPUs, accelerators and their OS handles), no bridges or
// chipset functions that nothing can be assigned from.
Result<void> configure(hwloc_topology_t t) {
  if (hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_IMPORTANT) != 0) {
    return MK_FAIL(EIO, "hwloc configuration failed",
                   "hwloc_topology_set_io_types_filter: %s; is libhwloc >= 2.0 installed?",
                   std::strerror(errno));
  }
  for (const char* name : kSkippedComponents) {
    // Only an optimisation: when it fails the plugin runs and adds a few
    // coprocessor devices, which is still a correct topology.
    (void)hwloc_topology_set_components(t, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, name);
  }
  return ok();
}

// Rejects what mk::Topology cannot represent before anything is copied.
Result<void> check_pus(hwloc_topology_t t, const std::string& source) {
  int n = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PU);
  if (n <= 0) {
    return MK_FAIL(EINVAL, "topology has no PUs",
                   "%s: hwloc found no processing units; give a complete hwloc XML export "
                   "(lstopo --of xml FILE)",
                   source.c_str());
  }
  hwloc_const_cpuset_t all = hwloc_topology_get_complete_cpuset(t);
  int last = hwloc_bitmap_last(all);  // -1 for an infinite set
  if (last < 0 || static_cast<uint32_t>(last) >= CpuSet::kMaxCpus) {
    return MK_FAIL(EINVAL, "PU index out of range",
                   "%s: highest PU index %d is not below %u (Linux NR_CPUS maximum); "
                   "the file is corrupt or not from a Linux machine",
                   source.c_str(), last, CpuSet::kMaxCpus);
  }
  return ok();
}

void fill_packages(hwloc_topology_t t, Topology& topo) {
  int n = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PACKAGE);
  for (int i = 0; i < n; ++i) {
    hwloc_obj_t obj = hwloc_get_obj_by_type(t, HWLOC_OBJ_PACKAGE, static_cast<unsigned>(i));
    topo.packages.push_back({os_index_of(obj), info_of(obj, "CPUModel"), to_cpu_set(obj->cpuset)});
  }
  if (topo.packages.empty()) {
    // hwloc omits packages when the platform does not report sockets (some
    // VMs and ARM boards). One package holding every PU keeps the invariant
    // that each PU has a package, which placement and the boot tree rely on.
    topo.packages.push_back({0, "", to_cpu_set(hwloc_topology_get_topology_cpuset(t))});
  }
}

void fill_numa_nodes(hwloc_topology_t t, Topology& topo) {
  int n = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE);
  for (int i = 0; i < n; ++i) {
    hwloc_obj_t obj = hwloc_get_obj_by_type(t, HWLOC_OBJ_NUMANODE, static_cast<unsigned>(i));
    NumaNode node;
    node.os_index = os_index_of(obj);
    node.memory_bytes = obj->attr ? obj->attr->numanode.local_memory : 0;
    node.subtype = obj->subtype ? obj->subtype : "";
    // A memory-only node (CXL, or one a file describes so) may have an empty
    // cpuset: it is still listed, with no PUs.
    node.local_pus = to_cpu_set(obj->cpuset);
    topo.numa_nodes.push_back(std::move(node));
  }
  // Users and the CLI name nodes by OS index; hwloc's logical order
  // interleaves them on KNL (P#0, P#7, P#1, P#4, ...).
  std::sort(topo.numa_nodes.begin(), topo.numa_nodes.end(),
            [](const NumaNode& a, const NumaNode& b) { return a.os_index < b.os_index; });
  // hwloc gives a KNL quadrant's DRAM and MCDRAM nodes the same cpuset; a
  // node's own PUs are those it is home to, so per-node planning never hands
  // one PU to two nodes and MCDRAM nodes come out CPU-less, as Linux shows them.
  for (uint32_t cpu : to_cpu_set(hwloc_topology_get_topology_cpuset(t))) {
    int32_t home = home_numa(topo.numa_nodes, [&](const NumaNode& nn) { return nn.local_pus.contains(cpu); });
    for (NumaNode& nn : topo.numa_nodes) {
      if (static_cast<int32_t>(nn.os_index) == home) nn.pus.insert(cpu);
    }
  }
}

void fill_l3_groups(hwloc_topology_t t, Topology& topo) {
  int n = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_L3CACHE);
  for (int i = 0; i < n; ++i) {
    hwloc_obj_t obj = hwloc_get_obj_by_type(t, HWLOC_OBJ_L3CACHE, static_cast<unsigned>(i));
    topo.l3_groups.push_back({static_cast<uint32_t>(i), obj->attr ? obj->attr->cache.size : 0,
                              obj->subtype ? obj->subtype : "", to_cpu_set(obj->cpuset)});
  }
}

uint32_t package_of(const Topology& topo, uint32_t cpu) {
  for (const Package& p : topo.packages) {
    if (p.pus.contains(cpu)) return p.os_index;
  }
  return topo.packages.front().os_index;  // unreachable: packages cover every PU
}

void fill_cores(hwloc_topology_t t, Topology& topo) {
  CpuSet covered;
  int n = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE);
  for (int i = 0; i < n; ++i) {
    hwloc_obj_t obj = hwloc_get_obj_by_type(t, HWLOC_OBJ_CORE, static_cast<unsigned>(i));
    CpuSet pus = to_cpu_set(obj->cpuset);
    if (pus.empty()) continue;  // a core whose PUs were all filtered out
    covered |= pus;
    topo.cores.push_back({static_cast<uint32_t>(topo.cores.size()), os_index_of(obj), 0, -1,
                          std::move(pus)});
  }
  // Platforms that report no cores (some VMs, POWER in some modes) give bare
  // PUs; each becomes its own core so "whole cores first" placement and SMT
  // warnings see no siblings rather than a missing core.
  int npu = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PU);
  for (int i = 0; i < npu; ++i) {
    hwloc_obj_t pu = hwloc_get_obj_by_type(t, HWLOC_OBJ_PU, static_cast<unsigned>(i));
    if (covered.contains(pu->os_index)) continue;
    topo.cores.push_back({static_cast<uint32_t>(topo.cores.size()), pu->os_index, 0, -1,
                          CpuSet::of({pu->os_index})});
  }
  for (Core& c : topo.cores) {
    uint32_t first = static_cast<uint32_t>(c.pus.first());
    c.package = package_of(topo, first);
    c.numa = home_numa(topo.numa_nodes, [&](const NumaNode& nn) { return nn.pus.contains(first); });
  }
}

Result<void> fill_kinds(hwloc_topology_t t, Topology& topo) {
  int n = hwloc_cpukinds_get_nr(t, 0);
  if (n < 0) {
    return MK_FAIL(EIO, "hwloc cpukinds query failed", "%s: hwloc_cpukinds_get_nr: %s",
                   topo.source.c_str(), std::strerror(errno));
  }
  HwlocBitmap set;
  for (int i = 0; i < n; ++i) {
    int efficiency = -1;
    unsigned nr_infos = 0;
    struct hwloc_info_s* infos = nullptr;
    if (hwloc_cpukinds_get_info(t, static_cast<unsigned>(i), set.get(), &efficiency, &nr_infos,
                                &infos, 0) != 0) {
      return MK_FAIL(EIO, "hwloc cpukinds query failed", "%s: hwloc_cpukinds_get_info(%d): %s",
                     topo.source.c_str(), i, std::strerror(errno));
    }
    CpuKind kind;
    kind.index = static_cast<uint32_t>(i);
    kind.efficiency = efficiency;  // hwloc's rank; -1 when it could not rank
    kind.pus = to_cpu_set(set.get());
    for (unsigned j = 0; j < nr_infos; ++j) {
      std::string name = infos[j].name ? infos[j].name : "";
      std::string value = trim(infos[j].value);
      if (name == "CoreType") kind.core_type = value;
      if (name == "FrequencyMaxMHz") {
        // Not a number (a hand-edited file) reads as "absent", not as an error:
        // the frequency is informative, nothing validates against it.
        char* end = nullptr;
        unsigned long mhz = std::strtoul(value.c_str(), &end, 10);
        if (end != value.c_str() && *end == '\0' && mhz <= UINT32_MAX) {
          kind.frequency_max_mhz = static_cast<uint32_t>(mhz);
        }
      }
      kind.infos.emplace_back(std::move(name), std::move(value));
    }
    topo.kinds.push_back(std::move(kind));
  }
  return ok();
}

void fill_pus(hwloc_topology_t t, Topology& topo) {
  // Lookup tables by OS index, so 384 PUs × 24 L3s costs one pass each.
  std::size_t span = static_cast<std::size_t>(hwloc_bitmap_last(hwloc_topology_get_complete_cpuset(t))) + 1;
  std::vector<int32_t> core_of(span, -1), kind_of(span, -1), l3_of(span, -1);
  for (const Core& c : topo.cores) {
    for (uint32_t cpu : c.pus) core_of[cpu] = static_cast<int32_t>(c.index);
  }
  for (const CpuKind& k : topo.kinds) {
    for (uint32_t cpu : k.pus) {
      if (cpu < span) kind_of[cpu] = static_cast<int32_t>(k.index);
    }
  }
  for (const CacheGroup& g : topo.l3_groups) {
    for (uint32_t cpu : g.pus) l3_of[cpu] = static_cast<int32_t>(g.index);
  }
  int n = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PU);
  for (int i = 0; i < n; ++i) {
    uint32_t cpu = hwloc_get_obj_by_type(t, HWLOC_OBJ_PU, static_cast<unsigned>(i))->os_index;
    Pu pu;
    pu.os_index = cpu;
    pu.core = static_cast<uint32_t>(core_of[cpu]);  // fill_cores covered every PU
    pu.package = package_of(topo, cpu);
    pu.numa = home_numa(topo.numa_nodes, [&](const NumaNode& nn) { return nn.pus.contains(cpu); });
    pu.kind = kind_of[cpu];
    pu.l3 = l3_of[cpu];
    topo.pus.push_back(pu);
  }
  std::sort(topo.pus.begin(), topo.pus.end(),
            [](const Pu& a, const Pu& b) { return a.os_index < b.os_index; });
}

std::string pci_busid(const hwloc_obj_attr_u::hwloc_pcidev_attr_s& pci) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04x:%02x:%02x.%01x", pci.domain, pci.bus, pci.dev, pci.func);
  return buf;
}

std::string pci_vendor_device(const hwloc_obj_attr_u::hwloc_pcidev_attr_s& pci) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04x:%04x", pci.vendor_id, pci.device_id);
  return buf;
}

// PCI base class names (PCI Code and ID Assignment spec), for devices that
// carry no PCIVendor/PCIDevice names (hwloc fills those only with pciaccess).
const char* pci_class_name(unsigned class_id) {
  static const char* const kNames[] = {
      "Unclassified", "Storage",   "Network",       "Display",   "Multimedia",
      "Memory",       "Bridge",    "Communication", "System",    "Input",
      "Docking",      "Processor", "SerialBus",     "Wireless",  "Intelligent",
      "Satellite",    "Crypto",    "SignalProcessing", "Accelerator", "Instrumentation"};
  unsigned base = class_id >> 8;
  return base < std::size(kNames) ? kNames[base] : "Other";
}

const char* osdev_kind(hwloc_obj_osdev_type_t type) {
  switch (type) {
    case HWLOC_OBJ_OSDEV_BLOCK: return "block";
    case HWLOC_OBJ_OSDEV_GPU: return "gpu";
    case HWLOC_OBJ_OSDEV_NETWORK: return "net";
    case HWLOC_OBJ_OSDEV_OPENFABRICS: return "openfabrics";
    case HWLOC_OBJ_OSDEV_DMA: return "dma";
    case HWLOC_OBJ_OSDEV_COPROC: return "coproc";
  }
  return "other";
}

// I/O objects hang off a CPU-side object (machine, package, group) whose
// nodeset says which memory is local to the device.
int32_t device_numa(hwloc_topology_t t, const Topology& topo, hwloc_obj_t obj) {
  hwloc_obj_t anchor = hwloc_get_non_io_ancestor_obj(t, obj);
  if (!anchor || !anchor->nodeset) return -1;
  return home_numa(topo.numa_nodes, [&](const NumaNode& nn) {
    return hwloc_bitmap_isset(anchor->nodeset, nn.os_index) != 0;
  });
}

void fill_devices(hwloc_topology_t t, Topology& topo) {
  for (hwloc_obj_t obj = nullptr; (obj = hwloc_get_next_pcidev(t, obj)) != nullptr;) {
    const auto& pci = obj->attr->pcidev;
    IoDevice d;
    d.kind = "pci";
    d.pci_busid = pci_busid(pci);
    d.name = d.pci_busid;
    d.vendor_device = pci_vendor_device(pci);
    append_word(d.description, info_of(obj, "PCIVendor"));
    append_word(d.description, info_of(obj, "PCIDevice"));
    if (d.description.empty()) {
      char buf[48];
      std::snprintf(buf, sizeof buf, "%s (class %04x)", pci_class_name(pci.class_id), pci.class_id);
      d.description = buf;
    }
    d.numa = device_numa(t, topo, obj);
    topo.devices.push_back(std::move(d));
  }
  for (hwloc_obj_t obj = nullptr; (obj = hwloc_get_next_osdev(t, obj)) != nullptr;) {
    IoDevice d;
    d.kind = osdev_kind(obj->attr->osdev.type);
    d.name = obj->name ? obj->name : "";
    // The nearest PCI ancestor is the function the OS device lives on (a NIC
    // port, an NVMe controller); virtual devices have none.
    for (hwloc_obj_t p = obj->parent; p && hwloc_obj_type_is_io(p->type); p = p->parent) {
      if (p->type == HWLOC_OBJ_PCI_DEVICE) {
        d.pci_busid = pci_busid(p->attr->pcidev);
        d.vendor_device = pci_vendor_device(p->attr->pcidev);
        break;
      }
    }
    append_word(d.description, obj->subtype ? obj->subtype : "");
    for (const char* key : {"Vendor", "Model", "GPUVendor", "GPUModel"}) {
      append_word(d.description, info_of(obj, key));
    }
    d.numa = device_numa(t, topo, obj);
    topo.devices.push_back(std::move(d));
  }
}

// The linear recipe every loader ends with: validate, then copy each object
// class (order matters: cores need packages and NUMA nodes, PUs need all).
Result<Topology> extract(hwloc_topology_t t, std::string source, bool is_live) {
  MK_TRY(check_pus(t, source));
  Topology topo;
  topo.source = std::move(source);
  topo.is_live = is_live;
  fill_packages(t, topo);
  fill_numa_nodes(t, topo);
  fill_l3_groups(t, topo);
  fill_cores(t, topo);
  MK_TRY(fill_kinds(t, topo));
  fill_pus(t, topo);
  fill_devices(t, topo);
  topo.machine_model = info_of(hwloc_get_root_obj(t), "DMIProductName");
  if (topo.machine_model.empty()) topo.machine_model = topo.packages.front().model;
  return topo;
}

// hwloc's own failure for a missing file is a bare EINVAL-ish load error;
// checking first lets the user see which path and why.
Result<void> check_readable(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return MK_FAIL(e, "cannot read topology file",
                   "'%s': %s; give the path of an hwloc XML export (lstopo --of xml FILE)",
                   path.c_str(), std::strerror(e));
  }
  struct stat st{};
  int rc = ::fstat(fd, &st);
  ::close(fd);
  if (rc == 0 && S_ISDIR(st.st_mode)) {
    return MK_FAIL(EISDIR, "cannot read topology file",
                   "'%s' is a directory; give the path of an hwloc XML export file", path.c_str());
  }
  return ok();
}

}  // namespace

Result<Topology> load_topology_live() {
  HwlocHandle h;
  if (hwloc_topology_init(h.out()) != 0) {
    return MK_FAIL(EIO, "hwloc init failed", "hwloc_topology_init: %s", std::strerror(errno));
  }
  MK_TRY(configure(h.get()));
  if (hwloc_topology_load(h.get()) != 0) {
    return MK_FAIL(EIO, "hwloc load failed",
                   "hwloc_topology_load on the live machine: %s; is /sys mounted?",
                   std::strerror(errno));
  }
  return extract(h.get(), "live", true);
}

Result<Topology> load_topology_xml(const std::string& path) {
  MK_TRY(check_readable(path));
  HwlocHandle h;
  if (hwloc_topology_init(h.out()) != 0) {
    return MK_FAIL(EIO, "hwloc init failed", "hwloc_topology_init: %s", std::strerror(errno));
  }
  MK_TRY(configure(h.get()));
  // hwloc 2.9 already parses the file in set_xml() (the XML backend is
  // built in), and builds the tree in load(); a rejection can come from either.
  // The result is "not this system", so binding is impossible: plan only.
  if (hwloc_topology_set_xml(h.get(), path.c_str()) != 0 || hwloc_topology_load(h.get()) != 0) {
    return MK_FAIL(EINVAL, "hwloc rejected topology file",
                   "'%s' is not a valid hwloc 2.x XML topology (hwloc: %s); export one with "
                   "lstopo --of xml FILE",
                   path.c_str(), std::strerror(errno));
  }
  return extract(h.get(), path, false);
}

std::vector<uint32_t> Topology::nodes_of(const CpuSet& cpus) const {
  std::vector<uint32_t> nodes;
  for (uint32_t c : cpus) {
    const Pu* pu = find_pu(c);
    if (pu && pu->numa >= 0) nodes.push_back(static_cast<uint32_t>(pu->numa));
  }
  std::sort(nodes.begin(), nodes.end());
  nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
  return nodes;
}

uint32_t Topology::main_node_of(const CpuSet& cpus) const {
  std::map<uint32_t, std::size_t> count;
  for (uint32_t c : cpus)
    if (const Pu* pu = find_pu(c); pu && pu->numa >= 0) ++count[static_cast<uint32_t>(pu->numa)];
  uint32_t node = numa_nodes.empty() ? 0 : numa_nodes.front().os_index;
  std::size_t best = 0;
  for (auto [n, k] : count)
    if (k > best) best = k, node = n;
  return node;
}

CpuSet Topology::all_pus() const {
  CpuSet out;
  for (const Pu& p : pus) out.insert(p.os_index);
  return out;
}

const Pu* Topology::find_pu(uint32_t os_index) const {
  auto it = std::lower_bound(pus.begin(), pus.end(), os_index,
                             [](const Pu& p, uint32_t v) { return p.os_index < v; });
  return it != pus.end() && it->os_index == os_index ? &*it : nullptr;
}

const NumaNode* Topology::find_numa(uint32_t os_index) const {
  for (const NumaNode& n : numa_nodes) {
    if (n.os_index == os_index) return &n;
  }
  return nullptr;
}

uint64_t Topology::total_memory() const {
  uint64_t sum = 0;
  for (const NumaNode& n : numa_nodes) sum += n.memory_bytes;
  return sum;
}

}  // namespace mk
