// Sample boot and pool trees shared by the boot-tree tests, the golden-blob
// test and the fuzz seed generator (tests/fuzz/seedgen.cc). Changing a
// sample changes the golden blobs in tests/common/golden/ on purpose.
#pragma once

#include "mk/boot_tree.h"
#include "mk/pool_tree.h"
#include "mk/units.h"

namespace mk::samples {

// The smallest valid tree: one CPU, one region, no channels, no devices,
// no handover, empty bootargs and init.
inline BootTree minimal_tree() {
  BootTree t;
  t.instance = {1, "a"};
  t.cpus.push_back(BootCpu{.os_index = 0});
  t.memory.push_back(BootMemory{.index = 0, .size = 4096, .fd = 4});
  return t;
}

// A tree that uses every node and property: a hybrid (P/E) instance on two
// NUMA nodes with a handover blob, channels in each role and every kind of
// device.
inline BootTree full_tree() {
  BootTree t;
  t.instance = {7, "web-frontend.v2"};
  t.bootargs = "loglevel=7 mk.poll_budget=200 quiet";
  t.init = "/usr/bin/nginx -g 'daemon off;'";
  t.handover = HandoverRef{.fd = 9, .size = 20480};
  for (uint32_t cpu = 4; cpu < 12; ++cpu) {  // P cores with SMT siblings
    t.cpus.push_back(BootCpu{.os_index = cpu, .core = cpu / 2, .package = 0, .numa = 0, .kind = 1,
                             .efficiency = 1});
  }
  for (uint32_t cpu = 16; cpu < 20; ++cpu) {  // E cores
    t.cpus.push_back(BootCpu{.os_index = cpu, .core = cpu - 8, .package = 0, .numa = 1, .kind = 0,
                             .efficiency = 0});
  }
  t.cpus.push_back(BootCpu{.os_index = 8191, .core = 8191, .package = 8191, .numa = 1023});
  t.memory.push_back(BootMemory{.index = 0, .size = 2 * kGiB, .numa = 0, .fd = 4, .flags = 0});
  t.memory.push_back(BootMemory{.index = 1, .size = 512 * kMiB, .numa = 1, .fd = 5,
                                .flags = abi::kMemoryFlagHugetlb});
  t.memory.push_back(BootMemory{.index = 0x1a, .size = 64 * kKiB, .numa = 1, .fd = 6});
  t.ipi.host_id = 0;
  t.ipi.channels.push_back(IpiChannel{0, "host", 10, 262144, ChannelRole::kBidirectional});
  t.ipi.channels.push_back(IpiChannel{3, "db", 11, 65536, ChannelRole::kTx});
  t.ipi.channels.push_back(IpiChannel{511, "metrics_sink", 12, 4096, ChannelRole::kRx});
  t.devices.push_back(BootDevice{"console", DeviceKind::kConsole, 1, {}});
  t.devices.push_back(BootDevice{"eth0", DeviceKind::kNet, -1, {{"ifname", "veth-web0"}}});
  t.devices.push_back(
      BootDevice{"data", DeviceKind::kFile, 13, {{"path", "/srv/web/data.img"}, {"ro", ""}}});
  t.devices.push_back(
      BootDevice{"http", DeviceKind::kListen, 14, {{"address", "0.0.0.0"}, {"port", "8080"}}});
  t.devices.push_back(BootDevice{"disk0", DeviceKind::kBlock, 15, {{"path", "/dev/nvme0n1p3"}}});
  return t;
}

inline PoolTree full_pool() {
  PoolTree p;
  p.cpus = CpuSet::range(1, 19) | CpuSet::of({64, 8191});
  p.memory = {{0, 16 * kGiB}, {1, 8 * kGiB + 12345}, {1023, 4096}};
  p.devices = {"eth1", "nvme0n1", "0000:3b:00.0", "/dev/sdb"};
  return p;
}

}  // namespace mk::samples
