// BootTree: schema rules (validate) and the writer (emit); the reader lives
// in boot_tree_parse.cc. See mk/boot_tree.h and docs/boot-tree.md.
#include "mk/boot_tree.h"

#include <set>

#include "boot_tree_internal.h"
#include "mk/fdt_io.h"

namespace mk {

using namespace abi;

namespace {

using bt::kWhat;

Error invalid(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
Error invalid(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  Error e = Error(EINVAL, kWhat);
  e.vset_detail(fmt, ap);
  va_end(ap);
  return e;
}

bool fd_ok(int32_t fd, bool optional) { return (optional && fd == -1) || (fd >= 0 && fd <= kMaxFd); }

Result<void> check_text(const char* path, const char* prop, const std::string& s) {
  if (s.size() > kMaxCmdlineLen) {
    return invalid("%s: '%s' is %zu bytes, at most %zu allowed", path, prop, s.size(), kMaxCmdlineLen);
  }
  if (s.find('\0') != std::string::npos) return invalid("%s: '%s' contains a NUL byte", path, prop);
  return ok();
}

Result<void> check_name(const std::string& path, const char* prop, const std::string& name) {
  if (!is_valid_boot_name(name)) {
    return invalid("%s: '%s' '%s' is not a valid name (1..63 chars of [A-Za-z0-9_.-])", path.c_str(),
                   prop, fdt::printable(name).c_str());
  }
  return ok();
}

Result<void> validate_chosen(const BootTree& t) {
  const char* p = "/chosen";
  if (t.instance.id < kMinInstanceId || t.instance.id > kMaxInstanceId) {
    return invalid("%s: '%s' is %u, expected %u..%u", p, kPropInstanceId, t.instance.id,
                   kMinInstanceId, kMaxInstanceId);
  }
  MK_TRY(check_name(p, kPropInstanceName, t.instance.name));
  MK_TRY(check_text(p, kPropBootargs, t.bootargs));
  MK_TRY(check_text(p, kPropInit, t.init));
  if (t.handover) {
    if (!fd_ok(t.handover->fd, false)) {
      return invalid("%s: '%s' is %d, expected 0..%d", p, kPropHandoverFd, t.handover->fd, kMaxFd);
    }
    if (t.handover->size == 0 || t.handover->size > kMaxHandoverBytes) {
      return invalid("%s: '%s' is %llu, expected 1..%llu", p, kPropHandoverSize,
                     static_cast<unsigned long long>(t.handover->size),
                     static_cast<unsigned long long>(kMaxHandoverBytes));
    }
  }
  if (t.handover_socket && !fd_ok(*t.handover_socket, false)) {
    return invalid("%s: '%s' is %d, expected 0..%d", p, kPropHandoverSocket, *t.handover_socket, kMaxFd);
  }
  if (t.handover_socket_host) {
    if (!t.handover_socket) return invalid("%s: '%s' without '%s'", p, kPropHandoverSocketHost, kPropHandoverSocket);
    if (!fd_ok(*t.handover_socket_host, false)) {
      return invalid("%s: '%s' is %d, expected 0..%d", p, kPropHandoverSocketHost, *t.handover_socket_host, kMaxFd);
    }
    if (*t.handover_socket_host == *t.handover_socket) {
      return invalid("%s: '%s' and '%s' are both fd %d", p, kPropHandoverSocket, kPropHandoverSocketHost,
                     *t.handover_socket);
    }
  }
  if (t.parked && !t.handover_socket) return invalid("%s: '%s' without '%s'", p, kPropParked, kPropHandoverSocket);
  return ok();
}

Result<void> validate_cpus(const BootTree& t) {
  if (t.cpus.empty()) return invalid("/cpus: no CPUs, expected at least one");
  std::vector<bool> seen(kMaxCpuIndex, false);
  for (const BootCpu& c : t.cpus) {
    if (c.os_index >= kMaxCpuIndex) {
      return invalid("/cpus: CPU %u is out of range, expected < %u", c.os_index, kMaxCpuIndex);
    }
    std::string path = "/cpus/" + fdt::unit_name(kNodeCpu, c.os_index);
    if (seen[c.os_index]) return invalid("%s: duplicate CPU %u", path.c_str(), c.os_index);
    seen[c.os_index] = true;
    auto range = [&](const char* prop, uint32_t v, uint32_t limit) -> Result<void> {
      if (v >= limit) return invalid("%s: '%s' is %u, expected < %u", path.c_str(), prop, v, limit);
      return ok();
    };
    MK_TRY(range(kPropCore, c.core, kMaxCpuIndex));
    MK_TRY(range(kPropPackage, c.package, kMaxCpuIndex));
    MK_TRY(range(kPropNumaNode, c.numa, kMaxNumaNodes));
    for (auto [prop, v] : {std::pair{kPropCpuKind, c.kind}, std::pair{kPropEfficiency, c.efficiency}}) {
      if (v < -1 || v >= kMaxCpuKinds) {
        return invalid("%s: '%s' is %d, expected -1..%d", path.c_str(), prop, v, kMaxCpuKinds - 1);
      }
    }
  }
  return ok();
}

Result<void> validate_memory(const BootTree& t) {
  if (t.memory.empty()) return invalid("/: no memory@N regions, expected at least one");
  std::vector<bool> seen(kMaxMemoryRegions, false);
  for (const BootMemory& m : t.memory) {
    if (m.index >= kMaxMemoryRegions) {
      return invalid("/: memory region index %u is out of range, expected < %u", m.index,
                     kMaxMemoryRegions);
    }
    std::string path = "/" + fdt::unit_name(kNodeMemory, m.index);
    const char* p = path.c_str();
    if (seen[m.index]) return invalid("%s: duplicate memory region %u", p, m.index);
    seen[m.index] = true;
    if (m.size == 0 || m.size % kPageSize != 0 || m.size > kMaxMemoryBytes) {
      return invalid("%s: '%s' is %llu, expected a non-zero multiple of %llu up to 2^62", p, kPropSize,
                     static_cast<unsigned long long>(m.size), static_cast<unsigned long long>(kPageSize));
    }
    if (m.numa >= kMaxNumaNodes) {
      return invalid("%s: '%s' is %u, expected < %u", p, kPropNumaNode, m.numa, kMaxNumaNodes);
    }
    if (!fd_ok(m.fd, false)) return invalid("%s: '%s' is %d, expected 0..%d", p, kPropFd, m.fd, kMaxFd);
    if (m.flags & ~kMemoryFlagsKnown) {
      return invalid("%s: '%s' is 0x%x, unknown bits 0x%x", p, kPropFlags, m.flags,
                     m.flags & ~kMemoryFlagsKnown);
    }
  }
  return ok();
}

Result<void> validate_ipi(const BootTree& t) {
  const IpiInfo& ipi = t.ipi;
  if (ipi.host_id > kMaxInstanceId || ipi.host_id == t.instance.id) {
    return invalid("/ipi: '%s' is %u, expected 0..%u and not the instance's own id", kPropHostId,
                   ipi.host_id, kMaxInstanceId);
  }
  if (ipi.channels.size() > kMaxChannels) {
    return invalid("/ipi: %zu channels, at most %u allowed", ipi.channels.size(), kMaxChannels);
  }
  std::vector<bool> seen(kMaxInstanceId + 1, false);
  for (const IpiChannel& c : ipi.channels) {
    if (c.peer_id > kMaxInstanceId || c.peer_id == t.instance.id) {
      return invalid("/ipi: channel peer %u is out of range, expected 0..%u and not the instance's own id",
                     c.peer_id, kMaxInstanceId);
    }
    std::string path = "/ipi/" + fdt::unit_name(kNodeChannel, c.peer_id);
    const char* p = path.c_str();
    if (seen[c.peer_id]) return invalid("%s: duplicate channel to peer %u", p, c.peer_id);
    seen[c.peer_id] = true;
    MK_TRY(check_name(path, kPropPeerName, c.peer_name));
    if (!fd_ok(c.fd, false)) return invalid("%s: '%s' is %d, expected 0..%d", p, kPropFd, c.fd, kMaxFd);
    if (c.ring_size < kRingAlign || c.ring_size > kMaxRingBytes || c.ring_size % kRingAlign) {
      return invalid("%s: '%s' is %u, expected a multiple of %u in %u..%u", p, kPropRingSize,
                     c.ring_size, kRingAlign, kRingAlign, kMaxRingBytes);
    }
    if (to_string(c.role).empty()) {
      return invalid("%s: '%s' has unknown value %u", p, kPropRole, static_cast<unsigned>(c.role));
    }
    if (c.side > 1) return invalid("%s: '%s' is %u, expected 0 (a) or 1 (b)", p, kPropSide, unsigned{c.side});
    if (c.side == 0 && c.peer_id == ipi.host_id) {
      return invalid("%s: the host channel's side is the host's to create; the instance is side b", p);
    }
  }
  return ok();
}

Result<void> validate_devices(const BootTree& t) {
  if (t.devices.size() > kMaxDevices) {
    return invalid("/devices: %zu devices, at most %u allowed", t.devices.size(), kMaxDevices);
  }
  std::set<std::string_view> seen;
  for (const BootDevice& d : t.devices) {
    if (!is_valid_boot_name(d.name)) {
      return invalid("/devices: device name '%s' is not valid (1..63 chars of [A-Za-z0-9_.-])",
                     fdt::printable(d.name).c_str());
    }
    std::string path = "/devices/" + d.name;
    const char* p = path.c_str();
    if (!seen.insert(d.name).second) return invalid("%s: duplicate device", p);
    if (to_string(d.kind).empty()) {
      return invalid("%s: unknown device kind %u", p, static_cast<unsigned>(d.kind));
    }
    if (!fd_ok(d.fd, true)) return invalid("%s: '%s' is %d, expected -1..%d", p, kPropFd, d.fd, kMaxFd);
    if (d.properties.size() > kMaxDeviceProps) {
      return invalid("%s: %zu properties, at most %u allowed", p, d.properties.size(), kMaxDeviceProps);
    }
    for (const auto& [key, value] : d.properties) {
      if (!bt::is_valid_prop_key(key)) {
        return invalid("%s: property name '%s' is not allowed (1..31 chars of [A-Za-z0-9_.+-], not "
                       "compatible/name/phandle)",
                       p, fdt::printable(key).c_str());
      }
      if (value.size() > kMaxPropValueLen || value.find('\0') != std::string::npos) {
        return invalid("%s: '%s' is %zu bytes or holds a NUL, at most %zu bytes of text allowed", p,
                       key.c_str(), value.size(), kMaxPropValueLen);
      }
    }
  }
  return ok();
}

}  // namespace

namespace bt {

bool is_valid_prop_key(std::string_view key) noexcept {
  if (key.empty() || key.size() > kMaxPropKeyLen) return false;
  if (key == "compatible" || key == "name" || key == "phandle") return false;
  for (char c : key) {
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && c != '_' && c != '.' && c != '+' && c != '-') return false;
  }
  return true;
}

}  // namespace bt

bool is_valid_boot_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > kMaxNameLen) return false;
  for (char c : name) {
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && c != '_' && c != '.' && c != '-') return false;
  }
  return true;
}

std::string_view to_string(ChannelRole role) noexcept {
  switch (role) {
    case ChannelRole::kBidirectional: return "bidir";
    case ChannelRole::kTx: return "tx";
    case ChannelRole::kRx: return "rx";
  }
  return {};
}

std::optional<ChannelRole> parse_channel_role(std::string_view text) noexcept {
  for (ChannelRole r : {ChannelRole::kBidirectional, ChannelRole::kTx, ChannelRole::kRx})
    if (text == to_string(r)) return r;
  return std::nullopt;
}

std::string_view to_string(DeviceKind kind) noexcept {
  switch (kind) {
    case DeviceKind::kConsole: return "console";
    case DeviceKind::kNet: return "net";
    case DeviceKind::kFile: return "file";
    case DeviceKind::kListen: return "listen";
    case DeviceKind::kBlock: return "block";
  }
  return {};
}

std::optional<DeviceKind> parse_device_kind(std::string_view text) noexcept {
  for (DeviceKind k : {DeviceKind::kConsole, DeviceKind::kNet, DeviceKind::kFile, DeviceKind::kListen,
                       DeviceKind::kBlock})
    if (text == to_string(k)) return k;
  return std::nullopt;
}

Result<void> validate_boot_tree(const BootTree& t) {
  if (t.version != kBootTreeVersion) {
    return invalid("/: 'version' is %u, this codec writes %u", t.version, kBootTreeVersion);
  }
  MK_TRY(validate_chosen(t));
  MK_TRY(validate_cpus(t));
  MK_TRY(validate_memory(t));
  MK_TRY(validate_ipi(t));
  MK_TRY(validate_devices(t));
  return ok();
}

Result<std::vector<uint8_t>> emit_boot_tree(const BootTree& t) {
  MK_TRY(validate_boot_tree(t));
  MK_TRY_ASSIGN(fdt::Writer w, fdt::Writer::create(kMaxTreeBytes, kWhat));
  MK_TRY(w.prop_string(kPropCompatible, kBootTreeCompatible));
  MK_TRY(w.prop_u32(kPropVersion, t.version));

  MK_TRY(w.begin_node(kNodeChosen));
  MK_TRY(w.prop_string(kPropBootargs, t.bootargs));
  MK_TRY(w.prop_u32(kPropInstanceId, t.instance.id));
  MK_TRY(w.prop_string(kPropInstanceName, t.instance.name));
  if (!t.init.empty()) MK_TRY(w.prop_string(kPropInit, t.init));
  if (t.handover) {
    MK_TRY(w.prop_s32(kPropHandoverFd, t.handover->fd));
    MK_TRY(w.prop_u64(kPropHandoverSize, t.handover->size));
  }
  if (t.handover_socket) MK_TRY(w.prop_s32(kPropHandoverSocket, *t.handover_socket));
  if (t.handover_socket_host) MK_TRY(w.prop_s32(kPropHandoverSocketHost, *t.handover_socket_host));
  if (t.parked) MK_TRY(w.prop_u32(kPropParked, 1));
  MK_TRY(w.end_node());

  MK_TRY(w.begin_node(kNodeCpus));
  MK_TRY(w.prop_u32(kPropAddressCells, 1));
  MK_TRY(w.prop_u32(kPropSizeCells, 0));
  for (const BootCpu& c : t.cpus) {
    MK_TRY(w.begin_node(fdt::unit_name(kNodeCpu, c.os_index).c_str()));
    MK_TRY(w.prop_string(kPropDeviceType, kDeviceTypeCpu));
    MK_TRY(w.prop_u32(kPropReg, c.os_index));
    MK_TRY(w.prop_u32(kPropCore, c.core));
    MK_TRY(w.prop_u32(kPropPackage, c.package));
    MK_TRY(w.prop_u32(kPropNumaNode, c.numa));
    MK_TRY(w.prop_s32(kPropCpuKind, c.kind));
    MK_TRY(w.prop_s32(kPropEfficiency, c.efficiency));
    MK_TRY(w.end_node());
  }
  MK_TRY(w.end_node());

  for (const BootMemory& m : t.memory) {
    MK_TRY(w.begin_node(fdt::unit_name(kNodeMemory, m.index).c_str()));
    MK_TRY(w.prop_string(kPropDeviceType, kDeviceTypeMemory));
    MK_TRY(w.prop_u64(kPropSize, m.size));
    MK_TRY(w.prop_u32(kPropNumaNode, m.numa));
    MK_TRY(w.prop_s32(kPropFd, m.fd));
    MK_TRY(w.prop_u32(kPropFlags, m.flags));
    MK_TRY(w.end_node());
  }

  MK_TRY(w.begin_node(kNodeIpi));
  MK_TRY(w.prop_u32(kPropHostId, t.ipi.host_id));
  for (const IpiChannel& c : t.ipi.channels) {
    MK_TRY(w.begin_node(fdt::unit_name(kNodeChannel, c.peer_id).c_str()));
    MK_TRY(w.prop_u32(kPropPeerId, c.peer_id));
    MK_TRY(w.prop_string(kPropPeerName, c.peer_name));
    MK_TRY(w.prop_s32(kPropFd, c.fd));
    MK_TRY(w.prop_u32(kPropRingSize, c.ring_size));
    MK_TRY(w.prop_string(kPropRole, to_string(c.role)));
    if (c.side == 0) MK_TRY(w.prop_string(kPropSide, "a"));  // "b" is the default
    MK_TRY(w.end_node());
  }
  MK_TRY(w.end_node());

  MK_TRY(w.begin_node(kNodeDevices));
  for (const BootDevice& d : t.devices) {
    MK_TRY(w.begin_node(d.name.c_str()));
    MK_TRY(w.prop_string(kPropCompatible, std::string(kDeviceCompatiblePrefix) +
                                              std::string(to_string(d.kind))));
    MK_TRY(w.prop_s32(kPropFd, d.fd));
    for (const auto& [key, value] : d.properties) MK_TRY(w.prop_string(key.c_str(), value));
    MK_TRY(w.end_node());
  }
  MK_TRY(w.end_node());
  return w.finish();
}

}  // namespace mk
