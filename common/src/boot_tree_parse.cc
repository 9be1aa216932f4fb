// BootTree reader: untrusted FDT -> BootTree (see mk/boot_tree.h).
//
// The recipe: open and probe the blob once (fdt_io Tree::open), check the
// root's schema, sort the root's children into the known nodes, decode each
// node strictly (every property known, present, of the right size and
// encoding; unit addresses canonical and matching), then run the same
// validate_boot_tree() that emit uses, so anything accepted here re-emits
// and parses back to an equal value (the fuzz_boot_tree invariant).
#include <optional>

#include "boot_tree_internal.h"
#include "mk/fdt_io.h"
#include "mk/boot_tree.h"

namespace mk {

using namespace abi;
using fdt::Node;
using fdt::Tree;

namespace {

// Children per node: chosen, cpus, ipi, devices + memory regions at the root.
constexpr std::size_t kMaxRootChildren = 4 + kMaxMemoryRegions;
// Property bound for Node::read: generous enough that expect_only() gives the
// precise error, small enough to bound the work on a hostile blob.
constexpr std::size_t kMaxProps = 16;

Result<void> expect_device_type(const Node& n, const char* expected) {
  MK_TRY_ASSIGN(std::string type, n.str(kPropDeviceType));
  if (type != expected) {
    return n.bad("'%s' is '%s', expected '%s'", kPropDeviceType, fdt::printable(type).c_str(), expected);
  }
  return ok();
}

Result<void> parse_chosen(const Tree& t, int offset, BootTree& out) {
  MK_TRY_ASSIGN(Node n, Node::read_leaf(t, offset, "/chosen", kMaxProps));
  MK_TRY(n.expect_only({kPropBootargs, kPropInstanceId, kPropInstanceName, kPropInit, kPropHandoverFd,
                        kPropHandoverSize, kPropHandoverSocket, kPropHandoverSocketHost, kPropParked}));
    MK_TRY_ASSIGN(out.bootargs, n.str(kPropBootargs));
  MK_TRY_ASSIGN(out.instance.id, n.u32(kPropInstanceId));
  MK_TRY_ASSIGN(out.instance.name, n.str(kPropInstanceName));
  MK_TRY_ASSIGN(std::optional<std::string> init, n.opt_str(kPropInit));
  out.init = init.value_or("");
  bool has_fd = n.find(kPropHandoverFd) != nullptr, has_size = n.find(kPropHandoverSize) != nullptr;
  if (has_fd != has_size) {
    return n.bad("'%s' given without '%s'", has_fd ? kPropHandoverFd : kPropHandoverSize,
                 has_fd ? kPropHandoverSize : kPropHandoverFd);
  }
  if (has_fd) {
    HandoverRef h;
    MK_TRY_ASSIGN(h.fd, n.s32(kPropHandoverFd));
    MK_TRY_ASSIGN(h.size, n.u64(kPropHandoverSize));
    out.handover = h;
  }
  if (n.find(kPropHandoverSocket) != nullptr) {
    MK_TRY_ASSIGN(out.handover_socket, n.s32(kPropHandoverSocket));  // range: validate_boot_tree
  }
  if (n.find(kPropHandoverSocketHost) != nullptr) {
    MK_TRY_ASSIGN(out.handover_socket_host, n.s32(kPropHandoverSocketHost));
  }
  if (n.find(kPropParked) != nullptr) {
    MK_TRY_ASSIGN(uint32_t parked, n.u32(kPropParked));
    if (parked != 1) return n.bad("'%s' is %u, expected 1", kPropParked, parked);
    out.parked = true;
  }
  return ok();
}

Result<BootCpu> parse_cpu(const Tree& t, const fdt::Child& c, uint32_t unit) {
  MK_TRY_ASSIGN(Node n, Node::read_leaf(t, c.offset, "/cpus/" + std::string(c.name), kMaxProps));
  MK_TRY(n.expect_only({kPropDeviceType, kPropReg, kPropCore, kPropPackage, kPropNumaNode, kPropCpuKind,
                        kPropEfficiency}));
    MK_TRY(expect_device_type(n, kDeviceTypeCpu));
  BootCpu cpu;
  MK_TRY_ASSIGN(cpu.os_index, n.u32(kPropReg));
  if (cpu.os_index != unit) {
    return n.bad("unit address does not match '%s' (%u)", kPropReg, cpu.os_index);
  }
  MK_TRY_ASSIGN(cpu.core, n.u32(kPropCore));
  MK_TRY_ASSIGN(cpu.package, n.u32(kPropPackage));
  MK_TRY_ASSIGN(cpu.numa, n.u32(kPropNumaNode));
  MK_TRY_ASSIGN(cpu.kind, n.s32(kPropCpuKind));
  MK_TRY_ASSIGN(cpu.efficiency, n.s32(kPropEfficiency));
  return cpu;
}

Result<void> parse_cpus(const Tree& t, int offset, BootTree& out) {
  MK_TRY_ASSIGN(Node n, Node::read(t, offset, "/cpus", kMaxProps));
  MK_TRY(n.read_children(kMaxCpuIndex));
  MK_TRY(n.expect_only({kPropAddressCells, kPropSizeCells}));
  MK_TRY_ASSIGN(uint32_t acells, n.u32(kPropAddressCells));
  MK_TRY_ASSIGN(uint32_t scells, n.u32(kPropSizeCells));
  if (acells != 1 || scells != 0) {
    return n.bad("'#address-cells' and '#size-cells' are %u and %u, expected 1 and 0", acells, scells);
  }
  out.cpus.reserve(n.children().size());
  for (const fdt::Child& c : n.children()) {
    std::optional<uint32_t> unit = fdt::parse_unit_name(c.name, kNodeCpu);
    if (!unit) return n.bad("unexpected node '%s' (expected cpu@N, N in lowercase hex)",
                            fdt::printable(c.name).c_str());
    MK_TRY_ASSIGN(BootCpu cpu, parse_cpu(t, c, *unit));
    out.cpus.push_back(cpu);
  }
  return ok();
}

Result<BootMemory> parse_memory(const Tree& t, const fdt::Child& c, uint32_t index) {
  MK_TRY_ASSIGN(Node n, Node::read_leaf(t, c.offset, "/" + std::string(c.name), kMaxProps));
  MK_TRY(n.expect_only({kPropDeviceType, kPropSize, kPropNumaNode, kPropFd, kPropFlags}));
    MK_TRY(expect_device_type(n, kDeviceTypeMemory));
  BootMemory m;
  m.index = index;
  MK_TRY_ASSIGN(m.size, n.u64(kPropSize));
  MK_TRY_ASSIGN(m.numa, n.u32(kPropNumaNode));
  MK_TRY_ASSIGN(m.fd, n.s32(kPropFd));
  MK_TRY_ASSIGN(m.flags, n.u32(kPropFlags));
  return m;
}

Result<IpiChannel> parse_channel(const Tree& t, const fdt::Child& c, uint32_t unit) {
  MK_TRY_ASSIGN(Node n, Node::read_leaf(t, c.offset, "/ipi/" + std::string(c.name), kMaxProps));
  MK_TRY(n.expect_only({kPropPeerId, kPropPeerName, kPropFd, kPropRingSize, kPropRole, kPropSide}));
    IpiChannel ch;
  MK_TRY_ASSIGN(ch.peer_id, n.u32(kPropPeerId));
  if (ch.peer_id != unit) return n.bad("unit address does not match '%s' (%u)", kPropPeerId, ch.peer_id);
  MK_TRY_ASSIGN(ch.peer_name, n.str(kPropPeerName));
  MK_TRY_ASSIGN(ch.fd, n.s32(kPropFd));
  MK_TRY_ASSIGN(ch.ring_size, n.u32(kPropRingSize));
  MK_TRY_ASSIGN(std::string role, n.str(kPropRole));
  std::optional<ChannelRole> r = parse_channel_role(role);
  if (!r) {
    return n.bad("'%s' is '%s', expected bidir, tx or rx", kPropRole, fdt::printable(role).c_str());
  }
  ch.role = *r;
  MK_TRY_ASSIGN(std::optional<std::string> side, n.opt_str(kPropSide));
  if (side && *side != "a" && *side != "b") {
    return n.bad("'%s' is '%s', expected a or b", kPropSide, fdt::printable(*side).c_str());
  }
  ch.side = side && *side == "a" ? 0 : 1;
  return ch;
}

Result<void> parse_ipi(const Tree& t, int offset, BootTree& out) {
  MK_TRY_ASSIGN(Node n, Node::read(t, offset, "/ipi", kMaxProps));
  MK_TRY(n.read_children(kMaxChannels));
  MK_TRY(n.expect_only({kPropHostId}));
  MK_TRY_ASSIGN(out.ipi.host_id, n.u32(kPropHostId));
  for (const fdt::Child& c : n.children()) {
    std::optional<uint32_t> unit = fdt::parse_unit_name(c.name, kNodeChannel);
    if (!unit) return n.bad("unexpected node '%s' (expected channel@PEER, PEER in lowercase hex)",
                            fdt::printable(c.name).c_str());
    MK_TRY_ASSIGN(IpiChannel ch, parse_channel(t, c, *unit));
    out.ipi.channels.push_back(std::move(ch));
  }
  return ok();
}

Result<BootDevice> parse_device(const Tree& t, const fdt::Child& c) {
  MK_TRY_ASSIGN(Node n, Node::read_leaf(t, c.offset, "/devices/" + std::string(c.name), kMaxDeviceProps + 2));
    BootDevice d;
  d.name = std::string(c.name);
  MK_TRY_ASSIGN(std::string compat, n.str(kPropCompatible));
  std::string_view prefix = kDeviceCompatiblePrefix;
  std::optional<DeviceKind> kind;
  if (std::string_view(compat).substr(0, prefix.size()) == prefix) {
    kind = parse_device_kind(std::string_view(compat).substr(prefix.size()));
  }
  if (!kind) {
    return n.bad("'compatible' is '%s', expected mkernel,device-{console,net,file,listen,block}",
                 fdt::printable(compat).c_str());
  }
  d.kind = *kind;
  MK_TRY_ASSIGN(d.fd, n.s32(kPropFd));
  for (const fdt::Prop& p : n.props()) {
    if (p.name == kPropCompatible || p.name == kPropFd) continue;
    if (!bt::is_valid_prop_key(p.name)) return n.bad("unknown property '%s'", fdt::printable(p.name).c_str());
    MK_TRY_ASSIGN(std::string value, n.decode_str(p));
    d.properties.emplace(std::string(p.name), std::move(value));
  }
  return d;
}

Result<void> parse_devices(const Tree& t, int offset, BootTree& out) {
  MK_TRY_ASSIGN(Node n, Node::read(t, offset, "/devices", kMaxProps));
  MK_TRY(n.read_children(kMaxDevices));
  MK_TRY(n.expect_only({}));
  for (const fdt::Child& c : n.children()) {
    if (!is_valid_boot_name(c.name)) {
      return n.bad("device node name '%s' is not valid (1..63 chars of [A-Za-z0-9_.-])",
                   fdt::printable(c.name).c_str());
    }
    MK_TRY_ASSIGN(BootDevice d, parse_device(t, c));
    out.devices.push_back(std::move(d));
  }
  return ok();
}

}  // namespace

Result<BootTree> parse_boot_tree(std::span<const uint8_t> blob) {
  MK_TRY_ASSIGN(Tree t, Tree::open(blob, kMaxTreeBytes, bt::kWhat));
  MK_TRY_ASSIGN(Node root, Node::read(t, 0, "", kMaxProps));
  MK_TRY(fdt::expect_schema(root, kBootTreeCompatible, kBootTreeVersion));
  MK_TRY(root.expect_only({kPropCompatible, kPropVersion}));
  MK_TRY(root.read_children(kMaxRootChildren));

  BootTree out;
  out.version = kBootTreeVersion;
  std::optional<int> chosen, cpus, ipi, devices;
  std::vector<std::pair<fdt::Child, uint32_t>> memory;
  for (const fdt::Child& c : root.children()) {
    // Duplicate names were rejected by read_children, so each slot fills once.
    if (c.name == kNodeChosen) chosen = c.offset;
    else if (c.name == kNodeCpus) cpus = c.offset;
    else if (c.name == kNodeIpi) ipi = c.offset;
    else if (c.name == kNodeDevices) devices = c.offset;
    else if (auto index = fdt::parse_unit_name(c.name, kNodeMemory)) memory.emplace_back(c, *index);
    else return root.bad("unknown node '%s'", fdt::printable(c.name).c_str());
  }
  for (auto [node, name] : {std::pair{&chosen, kNodeChosen}, std::pair{&cpus, kNodeCpus},
                            std::pair{&ipi, kNodeIpi}, std::pair{&devices, kNodeDevices}}) {
    if (!*node) return root.bad("missing required node '/%s'", name);
  }
  MK_TRY(parse_chosen(t, *chosen, out));
  MK_TRY(parse_cpus(t, *cpus, out));
  for (const auto& [c, index] : memory) {
    MK_TRY_ASSIGN(BootMemory m, parse_memory(t, c, index));
    out.memory.push_back(m);
  }
  MK_TRY(parse_ipi(t, *ipi, out));
  MK_TRY(parse_devices(t, *devices, out));
  MK_TRY(validate_boot_tree(out));
  return out;
}

}  // namespace mk
