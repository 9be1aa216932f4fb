// DOC: mk::BootTree — an instance's boot tree, and its FDT codec.
//
// What this is: the single source of truth an instance image gets about what
// it owns (DESIGN.md §3): its id and name, command line and init, the CPUs it
// may run on, its memory regions, its IPI channels, its devices and, during a
// live update, the handover blob. The host writes it with emit_boot_tree()
// into a sealed memfd (fd 3 of the image); the image reads it back with
// parse_boot_tree(). The blob schema ("mkernel,boot-tree-v1") is specified
// in docs/boot-tree.md and its names and limits in mk/abi/boot_tree_abi.h.
//
// The blob is untrusted input for the image: parse_boot_tree() checks the
// FDT structure (libfdt fdt_check_full), the compatible string and version,
// every node and property (presence, size, encoding, range), and rejects
// unknown nodes/properties and duplicates. It never crashes on any input and
// costs at most O(n log n) in the blob size, which is capped at 2 MiB.
//
// Happy path:
//   1. mkernel fills a BootTree from the instance's committed resources.
//   2. emit_boot_tree() validates it (validate_boot_tree) and writes the FDT.
//   3. The host seals the blob in a memfd and passes it as fd 3 to the image.
//   4. The image calls parse_boot_tree() on the memfd contents and gets back
//      a BootTree equal to the one emitted.
// Unhappy paths:
//   1. The host builds an invalid tree (bad name, duplicate CPU, fd out of
//      range...): emit fails with EINVAL and nothing is written; the boot
//      step fails before any process is started.
//   2. The tree would exceed the 2 MiB cap: emit fails with E2BIG.
//   3. The image receives a corrupt, truncated or foreign blob: parse fails
//      with EBADMSG (not an FDT), EPROTONOSUPPORT (another schema/version) or
//      EINVAL (schema violation, detail names the node and property); the
//      image must exit without touching any resource and the host marks the
//      instance Failed.
//
// Returns:
//   emit_boot_tree:     EINVAL (validate_boot_tree failed), E2BIG (blob would
//                       exceed abi::kMaxTreeBytes).
//   parse_boot_tree:    E2BIG (blob larger than abi::kMaxTreeBytes), EBADMSG
//                       (not a well-formed FDT: bad magic, truncated, corrupt
//                       structure, blob size != FDT total size),
//                       EPROTONOSUPPORT (FDT format version, compatible string
//                       or `version` property not supported), EINVAL (missing,
//                       unknown, duplicate, wrongly sized or out-of-range
//                       node or property; memory reservation entries).
//   validate_boot_tree: EINVAL (detail names the offending node/property).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mk/abi/boot_tree_abi.h"
#include "mk/result.h"

namespace mk {

struct InstanceInfo {
  uint32_t id = 0;   // 1..511
  std::string name;  // 1..63 chars of [A-Za-z0-9_.-]
  bool operator==(const InstanceInfo&) const = default;
};

// The KHO-style handover blob of a live update, passed as an fd.
struct HandoverRef {
  int32_t fd = -1;    // 0..65535
  uint64_t size = 0;  // 1..abi::kMaxHandoverBytes
  bool operator==(const HandoverRef&) const = default;
};

struct BootCpu {
  uint32_t os_index = 0;  // < 8192; unique in the tree
  uint32_t core = 0;      // < 8192
  uint32_t package = 0;   // < 8192
  uint32_t numa = 0;      // < 1024
  int32_t kind = -1;        // hwloc CPU kind index, -1 = none; -1..63
  int32_t efficiency = -1;  // hwloc efficiency rank, -1 = unknown; -1..63
  bool operator==(const BootCpu&) const = default;
};

struct BootMemory {
  uint32_t index = 0;  // N of /memory@N, < 256, unique
  uint64_t size = 0;   // bytes, multiple of 4096, > 0, <= 2^62
  uint32_t numa = 0;   // < 1024
  int32_t fd = -1;     // the region's memfd, 0..65535
  uint32_t flags = 0;  // abi::kMemoryFlag* bits only
  bool operator==(const BootMemory&) const = default;
};

enum class ChannelRole : uint8_t { kBidirectional, kTx, kRx };
std::string_view to_string(ChannelRole role) noexcept;  // "bidir" | "tx" | "rx"
std::optional<ChannelRole> parse_channel_role(std::string_view text) noexcept;

struct IpiChannel {
  uint32_t peer_id = 0;    // 0..511 (0 = host), != instance id, unique
  std::string peer_name;   // name rules as InstanceInfo::name
  int32_t fd = -1;         // the channel memfd, 0..65535
  uint32_t ring_size = 0;  // bytes per ring, multiple of 64, 64..2^30
  ChannelRole role = ChannelRole::kBidirectional;
  // Which side of the ipi region this instance takes: 1 (B, attach; the
  // default, and always for the host channel) or 0 (A: the host created the
  // region for a pair of instances and this one takes over side A).
  uint8_t side = 1;
  bool operator==(const IpiChannel&) const = default;
};

struct IpiInfo {
  uint32_t host_id = 0;  // 0..511, != instance id
  std::vector<IpiChannel> channels;  // at most 511
  bool operator==(const IpiInfo&) const = default;
};

enum class DeviceKind : uint8_t { kConsole, kNet, kFile, kListen, kBlock };
std::string_view to_string(DeviceKind kind) noexcept;  // "console", "net", ...
std::optional<DeviceKind> parse_device_kind(std::string_view text) noexcept;

struct BootDevice {
  std::string name;  // node name under /devices; name rules, unique
  DeviceKind kind = DeviceKind::kConsole;
  int32_t fd = -1;   // -1 (none, e.g. a net interface by name) or 0..65535
  // String properties (path, ro, address, port, ifname, ...): at most 32;
  // keys 1..31 chars of [A-Za-z0-9_.+-] other than "compatible", "name",
  // "phandle"; values up to 4096 bytes without NUL.
  std::map<std::string, std::string> properties;
  bool operator==(const BootDevice&) const = default;
};

struct BootTree {
  uint32_t version = abi::kBootTreeVersion;
  InstanceInfo instance;
  std::string bootargs;  // image command line, may be empty; <= 4096 bytes
  std::string init;      // tenant command line, empty = none; <= 4096 bytes
  std::optional<HandoverRef> handover;
  // The AF_UNIX SOCK_SEQPACKET end on which the host sends handoff packages
  // and preserved fds (mk/abi/handoff.h): a live update's successor
  // receives the old image's state on it, a running image what a staged
  // update hands back to it.
  std::optional<int32_t> handover_socket;  // 0..65535
  // A copy of the host's end of that socket, which the image only keeps
  // open: a restarted host takes its end back from here (pidfd_getfd).
  // Only with handover_socket; never the same fd.
  std::optional<int32_t> handover_socket_host;  // 0..65535
  // A live update's successor: boot parked (send READY, then wait for
  // kMsgHandover before serving anything). Only with handover_socket.
  bool parked = false;
  std::vector<BootCpu> cpus;        // at least one
  std::vector<BootMemory> memory;   // at least one
  IpiInfo ipi;
  std::vector<BootDevice> devices;  // may be empty
  bool operator==(const BootTree&) const = default;
};

// Checks every rule of the schema on an in-memory tree (what emit enforces
// and what parse guarantees). Returns: EINVAL.
Result<void> validate_boot_tree(const BootTree& tree);

// Validates and serializes. Returns: EINVAL, E2BIG.
Result<std::vector<uint8_t>> emit_boot_tree(const BootTree& tree);

// Parses an untrusted blob (exactly the FDT, no trailing bytes).
// Returns: E2BIG, EBADMSG, EPROTONOSUPPORT, EINVAL.
Result<BootTree> parse_boot_tree(std::span<const uint8_t> blob);

// True when `name` follows the instance/peer/device name rules.
bool is_valid_boot_name(std::string_view name) noexcept;

}  // namespace mk
