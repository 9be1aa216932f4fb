// DOC: ABI contract of the boot tree and the pool tree — the FDT schemas
// "mkernel,boot-tree-v1" and "mkernel,pool-v1" (docs/boot-tree.md).
//
// What this is: every node name, property name, compatible string and limit
// that the host (writer) and an instance image (reader) must agree on. The
// in-memory structs live in mk/boot_tree.h and mk/pool_tree.h; this header
// holds only what is visible in the blob.
//
// Contract rules:
//   1. The schemas are closed: a reader rejects unknown nodes and properties.
//      Any change to a name, a cell size, a limit that tightens, or a new
//      node/property bumps the compatible string ("-v2") and the `version`
//      property together; a v1 reader refuses v2 with EPROTONOSUPPORT.
//   2. Cells are big-endian as FDT requires: "u32" is one cell, "u64" two
//      cells (high word first), "s32" is a u32 cell holding a two's-complement
//      value (-1 = none). Strings are NUL-terminated, with no interior NUL.
//   3. Unit addresses (cpu@N, memory@N, channel@N) are lowercase hex without
//      leading zeros, as the devicetree specification writes them, and must
//      match the value they name.
//   4. tests/common/boot_tree_golden_test.cc pins the v1 byte layout.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mk::abi {

// ---- Common to both trees -------------------------------------------------
// 2 MiB: an 8192-CPU tree (~1.1 MB) plus every channel still fits.
inline constexpr std::size_t kMaxTreeBytes = std::size_t{2} << 20;
inline constexpr char kPropCompatible[] = "compatible";
inline constexpr char kPropVersion[] = "version";  // u32
inline constexpr char kPropDeviceType[] = "device_type";
inline constexpr char kPropNumaNode[] = "numa-node-id";  // u32
inline constexpr char kPropSize[] = "size";              // u64
inline constexpr char kNodeMemory[] = "memory";          // memory@N
inline constexpr char kDeviceTypeMemory[] = "memory";

// ---- Boot tree ("mkernel,boot-tree-v1") -------------------------------------
inline constexpr char kBootTreeCompatible[] = "mkernel,boot-tree-v1";
inline constexpr uint32_t kBootTreeVersion = 1;

// /chosen
inline constexpr char kNodeChosen[] = "chosen";
inline constexpr char kPropBootargs[] = "bootargs";                     // string, required
inline constexpr char kPropInstanceId[] = "mkernel,instance-id";        // u32, required
inline constexpr char kPropInstanceName[] = "mkernel,instance-name";    // string, required
inline constexpr char kPropInit[] = "mkernel,init";                     // string, optional
inline constexpr char kPropHandoverFd[] = "mkernel,handover-fd";        // s32, with size
inline constexpr char kPropHandoverSize[] = "mkernel,handover-size";    // u64, with fd
inline constexpr char kPropHandoverSocket[] = "mkernel,handover-socket";  // s32, optional
inline constexpr char kPropHandoverSocketHost[] = "mkernel,handover-socket-host";  // s32, with the socket
inline constexpr char kPropParked[] = "mkernel,parked";  // u32 = 1, with the socket

// /cpus and /cpus/cpu@N
inline constexpr char kNodeCpus[] = "cpus";
inline constexpr char kNodeCpu[] = "cpu";
inline constexpr char kPropAddressCells[] = "#address-cells";  // u32 = 1
inline constexpr char kPropSizeCells[] = "#size-cells";        // u32 = 0
inline constexpr char kDeviceTypeCpu[] = "cpu";
inline constexpr char kPropReg[] = "reg";                      // u32 OS index
inline constexpr char kPropCore[] = "core";                    // u32
inline constexpr char kPropPackage[] = "package";              // u32
inline constexpr char kPropCpuKind[] = "mkernel,cpu-kind";     // s32
inline constexpr char kPropEfficiency[] = "mkernel,efficiency";  // s32

// /memory@N (plus kPropDeviceType, kPropSize, kPropNumaNode)
inline constexpr char kPropFd[] = "mkernel,fd";        // s32
inline constexpr char kPropFlags[] = "mkernel,flags";  // u32 bit mask
inline constexpr uint32_t kMemoryFlagHugetlb = 1u << 0;
inline constexpr uint32_t kMemoryFlagsKnown = kMemoryFlagHugetlb;

// /ipi and /ipi/channel@PEER
inline constexpr char kNodeIpi[] = "ipi";
inline constexpr char kNodeChannel[] = "channel";
inline constexpr char kPropHostId[] = "mkernel,host-id";  // u32
inline constexpr char kPropPeerId[] = "peer-id";          // u32
inline constexpr char kPropPeerName[] = "peer-name";      // string
inline constexpr char kPropRingSize[] = "ring-size";      // u32 bytes
inline constexpr char kPropRole[] = "mkernel,role";       // "bidir" | "tx" | "rx"
inline constexpr char kPropSide[] = "mkernel,side";       // "a" | "b" (optional, default "b")

// /devices/NAME
inline constexpr char kNodeDevices[] = "devices";
inline constexpr char kDeviceCompatiblePrefix[] = "mkernel,device-";  // + kind

// ---- Pool tree ("mkernel,pool-v1") ----------------------------------------
inline constexpr char kPoolTreeCompatible[] = "mkernel,pool-v1";
inline constexpr uint32_t kPoolTreeVersion = 1;
inline constexpr char kPropPoolCpus[] = "mkernel,cpus";        // u32 array, ascending
inline constexpr char kPropPoolDevices[] = "mkernel,devices";  // string list

// ---- Limits (both writer and reader enforce them) --------------------------
inline constexpr uint32_t kMinInstanceId = 1;
inline constexpr uint32_t kMaxInstanceId = 511;  // ids 1..511; the host is 0
inline constexpr std::size_t kMaxNameLen = 63;   // [A-Za-z0-9_.-]{1,63}
inline constexpr std::size_t kMaxCmdlineLen = 4096;  // bootargs, init
inline constexpr uint32_t kMaxCpuIndex = 8192;   // OS index, core, package < this
inline constexpr uint32_t kMaxNumaNodes = 1024;  // numa-node-id < this
inline constexpr int32_t kMaxCpuKinds = 64;      // kind, efficiency in -1..63
inline constexpr int32_t kMaxFd = 65535;         // fds 0..65535 (-1 where optional)
inline constexpr uint64_t kMaxHandoverBytes = uint64_t{64} << 20;  // 64 MiB
inline constexpr uint32_t kMaxMemoryRegions = 256;  // memory@0..memory@ff
inline constexpr uint64_t kPageSize = 4096;         // region sizes are multiples
inline constexpr uint64_t kMaxMemoryBytes = uint64_t{1} << 62;
inline constexpr uint32_t kMaxChannels = 511;        // one per peer 0..511
inline constexpr uint32_t kRingAlign = 64;           // ring-size multiple (a cache line)
inline constexpr uint32_t kMaxRingBytes = uint32_t{1} << 30;
inline constexpr uint32_t kMaxDevices = 256;
inline constexpr uint32_t kMaxDeviceProps = 32;      // string properties per device
inline constexpr std::size_t kMaxPropKeyLen = 31;    // devicetree property name limit
inline constexpr std::size_t kMaxPropValueLen = 4096;
inline constexpr uint32_t kMaxPoolDevices = 1024;
inline constexpr std::size_t kMaxPoolDeviceNameLen = 255;

}  // namespace mk::abi
