// Instance -> BootTree (see manifest.h).
#include "mkernel/manifest.h"

#include <algorithm>

#include "mk/abi/control_messages.h"
#include "mkernel/boot_cpu.h"

namespace mk {

Result<BootTree> make_boot_tree(const Topology& topo, const Instance& inst, const BootOptions& opts) {
  BootTree t;
  t.instance = {inst.id, inst.name};
  t.bootargs = opts.bootargs;
  t.init = opts.init;
  for (uint32_t c : inst.cpus) {
    std::optional<BootCpu> b = boot_cpu_of(topo, c);
    if (!b) return MK_FAIL(EINVAL, "cpu not in topology", "instance '%s': cpu %u is not on this machine",
                           inst.name.c_str(), c);
    t.cpus.push_back(*b);
  }
  int fd = kFirstResourceFd;
  for (std::size_t i = 0; i < inst.memory.size(); ++i) {
    BootMemory m;
    m.index = static_cast<uint32_t>(i);
    m.size = inst.memory[i].bytes;
    m.numa = inst.memory[i].node;
    m.fd = fd++;
    t.memory.push_back(m);
  }
  BootDevice console;
  console.name = "console";
  console.kind = DeviceKind::kConsole;
  console.fd = fd++;
  t.devices.push_back(console);
  for (std::size_t i = 0; i < inst.devices.size(); ++i) {
    if (inst.devices[i].kind == DeviceKind::kConsole) continue;  // implicit, added above
    BootDevice b = device_node(inst.devices, i);
    if (b.kind != DeviceKind::kNet && opts.device_fds) b.fd = fd++;
    t.devices.push_back(std::move(b));
  }
  t.ipi.host_id = abi::kHostId;
  if (opts.host_channel) {
    t.ipi.channels.push_back(IpiChannel{abi::kHostId, "host", fd, opts.host_ring_slots * 64u,
                                        ChannelRole::kBidirectional});
    fd += 3;
  }
  for (const auto& pc : opts.peers) {
    IpiChannel ch{pc.peer_id, pc.peer_name, fd, pc.ring_slots * 64u, ChannelRole::kBidirectional};
    ch.side = pc.side;
    t.ipi.channels.push_back(std::move(ch));
    fd += 3;
  }
  if (opts.console_host_fd) t.devices.front().properties["host-fd"] = std::to_string(fd++);
  if (opts.handover_socket) {
    t.handover_socket = fd++;
    t.handover_socket_host = fd++;
  }
  t.parked = opts.parked && opts.handover_socket;
  MK_TRY(validate_boot_tree(t));
  return t;
}

BootDevice device_node(const std::vector<DeviceSpec>& devices, std::size_t i) {
  int seq = 0;  // file and listen devices before this one
  for (std::size_t j = 0; j < i; ++j)
    seq += devices[j].kind == DeviceKind::kFile || devices[j].kind == DeviceKind::kListen;
  const DeviceSpec& d = devices.at(i);
  BootDevice b;
  b.kind = d.kind;
  switch (d.kind) {
    case DeviceKind::kNet:
      b.name = d.target;
      b.properties["ifname"] = d.target;
      break;
    case DeviceKind::kBlock:
      b.name = d.target;
      b.properties["path"] = "/dev/" + d.target;
      break;
    case DeviceKind::kFile:
      b.name = "file" + std::to_string(seq);
      b.properties["path"] = d.target;
      b.properties["ro"] = d.read_only ? "1" : "0";
      break;
    case DeviceKind::kListen:
      b.name = "listen" + std::to_string(seq);
      b.properties["address"] = d.target;
      b.properties["port"] = std::to_string(d.port);
      break;
    case DeviceKind::kConsole:
      b.name = "console";
      break;
  }
  return b;
}

int first_channel_fd(const BootTree& tree) {
  int fd = kFirstResourceFd;
  for (const auto& m : tree.memory) fd = std::max(fd, m.fd + 1);
  for (const auto& d : tree.devices) fd = std::max(fd, d.fd + 1);
  return fd;
}

}  // namespace mk
