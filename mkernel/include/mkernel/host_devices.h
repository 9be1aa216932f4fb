// DOC: devices sysfs shows that hwloc does not.
//
// hwloc reports the I/O devices behind PCI (physical NICs, NVMe, disks), but
// an instance may also take a virtual interface (veth, macvlan, a bridge
// port) or a virtual disk. add_sysfs_devices() appends every interface of
// /sys/class/net (except the loopback) and every disk of /sys/block that the
// topology does not already list, with kind "net" / "block". Called for the
// live machine only; reads through the injectable SysRoot.
#pragma once

#include "mkernel/sysroot.h"
#include "mkernel/topology.h"

namespace mk {

void add_sysfs_devices(Topology& topo, const SysRoot& root);

}  // namespace mk
