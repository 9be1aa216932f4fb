// DOC: mk::Instance and mk::DeviceSpec — what one partition owns.
//
// What this is: the record the registry keeps for each instance: a unique id
// (1..511, as the multikernel kernel interface numbers them) and name, its
// exclusive CPUs, its memory regions (one per NUMA node it uses at create;
// `mkctl update --memory` adds and releases regions at the end), its
// exclusive devices, and its lifecycle state. It is produced by validation
// (partition.h) and stored in the runtime state; the boot flow (issue #4)
// turns it into a boot tree.
//
// Lifecycle states follow the multikernel kernel interface:
//   empty (created, nothing loaded) -> loaded -> active -> stopping -> loaded,
//   and failed from any running state.
//
// Device specs are what users type after --device:
//   net:IFNAME           a host network interface, moved into the instance
//   block:NAME           a block device hwloc/sysfs reports (e.g. nvme0n1)
//   file:PATH[:ro]       a file the host opens and passes as an fd
//   listen:ADDR:PORT     a listening TCP socket the host creates and passes
// Two instances never hold the same device (same exclusivity key).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mk/boot_tree.h"
#include "mk/cpu_set.h"
#include "mk/result.h"

namespace mk {

inline constexpr uint32_t kMinInstanceId = 1;
inline constexpr uint32_t kMaxInstanceId = 511;
inline constexpr std::size_t kMaxNameLength = 63;
inline constexpr uint64_t kPageSize = 4096;

enum class InstanceState { Empty, Loaded, Active, Stopping, Failed };
const char* to_string(InstanceState s);
Result<InstanceState> parse_instance_state(std::string_view s);

// Device kinds are the boot tree's (mk/boot_tree.h): console, net, file,
// listen, block. The console is implicit: every instance has one.

struct DeviceSpec {
  DeviceKind kind = DeviceKind::kFile;
  std::string target;      // ifname, block name, file path, or listen address
  uint16_t port = 0;       // listen only
  bool read_only = false;  // file only

  // Parses "net:eth1", "file:/srv/data:ro", "listen:127.0.0.1:6379",
  // "listen:[::1]:6379", "block:nvme0n1".
  // Returns: EINVAL naming the malformed part and the accepted forms.
  static Result<DeviceSpec> parse(std::string_view text);
  std::string to_string() const;  // the parse() form
  // Two specs with the same key are the same device.
  std::string key() const;
  bool operator==(const DeviceSpec&) const = default;
};

struct MemoryRegion {
  uint32_t node = 0;   // NUMA node OS index
  uint64_t bytes = 0;  // page aligned
  bool operator==(const MemoryRegion&) const = default;
};

// What `mkctl load` recorded (mkernel/image.h validates it).
struct LoadedImage {
  std::string path;     // absolute, symlinks resolved
  std::string sha256;   // of the file at load; start refuses a changed file
  uint64_t size = 0;
  std::string machine;  // e.g. "x86_64"
  std::string cmdline;  // argv[1..] of the image, split on blanks
  std::string init;     // tenant command, "" = none
  std::optional<uint32_t> uid;  // the image and its tenants run as uid:gid
  std::optional<uint32_t> gid;  // (none: as the host, root)
  bool operator==(const LoadedImage&) const = default;
};

// A channel between two instances, as one of them holds it.
struct PeerChannelRecord {
  uint32_t peer_id = 0;
  int32_t fd = -1;   // the memfd's fd number in the image (+1, +2 eventfds)
  uint8_t side = 1;  // 0 = A, 1 = B
  bool operator==(const PeerChannelRecord&) const = default;
};

// What a running instance is, so that a restarted mkerneld can re-adopt it:
// the image process (pid + start time, mkernel/process_identity.h) and the
// fd numbers, in that process, of everything the host takes back with
// pidfd_getfd (its side of the host channel, the console's read end, the
// memory regions). Present while the instance is active or stopping.
struct RuntimeRecord {
  int32_t pid = 0;
  uint64_t start_time = 0;       // /proc/PID/stat field 22
  int64_t started_unix_ms = 0;   // wall clock when the image was spawned
  int32_t host_channel_fd = -1;  // memfd; +1, +2 the eventfds
  int32_t console_host_fd = -1;  // the console pipe's read end
  // The console's write end in the image (its /devices/console fd; -1: an
  // older record, then manifest.h console_fd_of). Recorded because regions
  // added after boot (`mkctl update --memory`) no longer say where it is.
  int32_t console_fd = -1;
  int32_t handover_host_fd = -1; // the copy of the host's end of the handover socket (-1: none)
  std::vector<int32_t> region_fds;
  std::vector<PeerChannelRecord> peers;
  std::vector<std::string> guarantees;  // "name: detail" (+ " [not in force]")
  // After a live update (mkernel/live_update.h): the earlier image that
  // exec'd the reaper and stays as the tenants' parent — PID 1 of the
  // instance's PID namespace (or, without one, the parent the tenants keep).
  // 0 = none: the image itself is the init, or there is no such process.
  // Ended (SIGKILL) after the image by kill()/shutdown()/release().
  int32_t ns_init_pid = 0;
  uint64_t ns_init_start_time = 0;
  bool operator==(const RuntimeRecord&) const = default;
};

struct Instance {
  uint32_t id = 0;
  std::string name;
  CpuSet cpus;
  std::vector<MemoryRegion> memory;
  std::vector<DeviceSpec> devices;
  InstanceState state = InstanceState::Empty;
  std::optional<LoadedImage> image;      // loaded / active / stopping / failed
  std::optional<RuntimeRecord> runtime;  // active / stopping
  std::string last_exit;                 // why it last stopped or failed

  uint64_t memory_bytes() const;
  uint64_t memory_on(uint32_t node) const;
};

// Names: 1..63 characters of [A-Za-z0-9_.-], starting with a letter or digit
// (they become cgroup and file names). Returns: EINVAL saying which rule.
Result<void> validate_instance_name(std::string_view name);

}  // namespace mk
