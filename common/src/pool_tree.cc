// PoolTree: rules, writer and reader of "mkernel,pool-v1" (see mk/pool_tree.h).
#include "mk/pool_tree.h"

#include <optional>
#include <set>

#include "mk/fdt_io.h"

namespace mk {

using namespace abi;

namespace {

constexpr const char* kWhat = "bad pool tree";
constexpr std::size_t kMaxRootChildren = kMaxNumaNodes;

Error invalid(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
Error invalid(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  Error e = Error(EINVAL, kWhat);
  e.vset_detail(fmt, ap);
  va_end(ap);
  return e;
}

bool is_valid_device_name(const std::string& name) {
  if (name.empty() || name.size() > kMaxPoolDeviceNameLen) return false;
  for (char c : name)
    if (c <= ' ' || c >= 0x7f || c == ',') return false;
  return true;
}

Result<PoolMemory> parse_memory(const fdt::Tree& t, const fdt::Child& c, uint32_t node) {
  MK_TRY_ASSIGN(fdt::Node n, fdt::Node::read_leaf(t, c.offset, "/" + std::string(c.name), 16));
  MK_TRY(n.expect_only({kPropDeviceType, kPropNumaNode, kPropSize}));
  MK_TRY_ASSIGN(std::string type, n.str(kPropDeviceType));
  if (type != kDeviceTypeMemory) {
    return n.bad("'%s' is '%s', expected '%s'", kPropDeviceType, fdt::printable(type).c_str(),
                 kDeviceTypeMemory);
  }
  PoolMemory m;
  MK_TRY_ASSIGN(m.node, n.u32(kPropNumaNode));
  if (m.node != node) return n.bad("unit address does not match '%s' (%u)", kPropNumaNode, m.node);
  MK_TRY_ASSIGN(m.bytes, n.u64(kPropSize));
  return m;
}

}  // namespace

Result<void> validate_pool_tree(const PoolTree& p) {
  if (p.cpus.last() >= static_cast<int>(kMaxCpuIndex)) {
    return invalid("/: CPU %d is out of range, expected < %u", p.cpus.last(), kMaxCpuIndex);
  }
  if (p.memory.size() > kMaxNumaNodes) {
    return invalid("/: %zu memory entries, at most %u allowed", p.memory.size(), kMaxNumaNodes);
  }
  std::vector<bool> seen(kMaxNumaNodes, false);
  for (const PoolMemory& m : p.memory) {
    if (m.node >= kMaxNumaNodes) {
      return invalid("/: memory NUMA node %u is out of range, expected < %u", m.node, kMaxNumaNodes);
    }
    std::string path = "/" + fdt::unit_name(kNodeMemory, m.node);
    if (seen[m.node]) return invalid("%s: duplicate NUMA node %u", path.c_str(), m.node);
    seen[m.node] = true;
    if (m.bytes == 0 || m.bytes > kMaxMemoryBytes) {
      return invalid("%s: '%s' is %llu, expected 1..2^62", path.c_str(), kPropSize,
                     static_cast<unsigned long long>(m.bytes));
    }
  }
  if (p.devices.size() > kMaxPoolDevices) {
    return invalid("/: %zu devices, at most %u allowed", p.devices.size(), kMaxPoolDevices);
  }
  std::set<std::string_view> names;
  for (const std::string& d : p.devices) {
    if (!is_valid_device_name(d)) {
      return invalid("/: device name '%s' is not valid (1..255 printable characters, no space or ',')",
                     fdt::printable(d).c_str());
    }
    if (!names.insert(d).second) return invalid("/: duplicate device '%s'", d.c_str());
  }
  return ok();
}

Result<std::vector<uint8_t>> emit_pool_tree(const PoolTree& p) {
  MK_TRY(validate_pool_tree(p));
  MK_TRY_ASSIGN(fdt::Writer w, fdt::Writer::create(kMaxTreeBytes, kWhat));
  MK_TRY(w.prop_string(kPropCompatible, kPoolTreeCompatible));
  MK_TRY(w.prop_u32(kPropVersion, kPoolTreeVersion));
  std::vector<uint32_t> cpus = p.cpus.to_vector();
  MK_TRY(w.prop_u32_array(kPropPoolCpus, cpus));
  MK_TRY(w.prop_string_list(kPropPoolDevices, p.devices));
  for (const PoolMemory& m : p.memory) {
    MK_TRY(w.begin_node(fdt::unit_name(kNodeMemory, m.node).c_str()));
    MK_TRY(w.prop_string(kPropDeviceType, kDeviceTypeMemory));
    MK_TRY(w.prop_u32(kPropNumaNode, m.node));
    MK_TRY(w.prop_u64(kPropSize, m.bytes));
    MK_TRY(w.end_node());
  }
  return w.finish();
}

Result<PoolTree> parse_pool_tree(std::span<const uint8_t> blob) {
  MK_TRY_ASSIGN(fdt::Tree t, fdt::Tree::open(blob, kMaxTreeBytes, kWhat));
  MK_TRY_ASSIGN(fdt::Node root, fdt::Node::read(t, 0, "", 16));
  MK_TRY(fdt::expect_schema(root, kPoolTreeCompatible, kPoolTreeVersion));
  MK_TRY(root.expect_only({kPropCompatible, kPropVersion, kPropPoolCpus, kPropPoolDevices}));
  MK_TRY(root.read_children(kMaxRootChildren));

  PoolTree out;
  MK_TRY_ASSIGN(std::vector<uint32_t> cpus, root.u32_array(kPropPoolCpus, kMaxCpuIndex));
  for (std::size_t i = 0; i < cpus.size(); ++i) {
    if (cpus[i] >= kMaxCpuIndex) {
      return root.bad("'%s' holds CPU %u, expected < %u", kPropPoolCpus, cpus[i], kMaxCpuIndex);
    }
    // Strictly ascending: one canonical encoding, and no duplicates.
    if (i > 0 && cpus[i] <= cpus[i - 1]) {
      return root.bad("'%s' is not strictly ascending at CPU %u", kPropPoolCpus, cpus[i]);
    }
    out.cpus.insert(cpus[i]);
  }
  MK_TRY_ASSIGN(out.devices, root.string_list(kPropPoolDevices, kMaxPoolDevices));
  for (const fdt::Child& c : root.children()) {
    std::optional<uint32_t> node = fdt::parse_unit_name(c.name, kNodeMemory);
    if (!node) return root.bad("unknown node '%s'", fdt::printable(c.name).c_str());
    MK_TRY_ASSIGN(PoolMemory m, parse_memory(t, c, *node));
    out.memory.push_back(m);
  }
  MK_TRY(validate_pool_tree(out));
  return out;
}

}  // namespace mk
