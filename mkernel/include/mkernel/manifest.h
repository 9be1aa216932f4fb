// DOC: mk::make_boot_tree — from a committed instance to its boot tree.
//
// What this is: step 1 of the boot protocol (DESIGN.md §3): the host turns
// an Instance (CPUs, memory regions, devices) and the topology into the
// BootTree the image will receive on fd 3 (mk/boot_tree.h is the codec;
// docs/boot-tree.md the schema). `mkctl show NAME --dtb FILE` writes the
// same tree, so what a user inspects is what an image gets.
//
// File-descriptor layout of an image (the process backend follows it):
//   fd 3                       the sealed boot-tree memfd
//   fd 4 .. 4+M-1              the M memory regions, in the order of /memory@N
//   next                       the console (always present)
//   next, one each             file and listen devices, in --device order
//   net devices                no fd (-1): the interface is in the instance's
//                              network namespace, named by its ifname property
//   next, three each           IPI channels: the memfd F (the tree's
//                              mkernel,fd), F+1 and F+2 its two doorbell
//                              eventfds (ipi::ChannelFds order); the host
//                              channel (peer 0) first, then one per peer
//                              instance (BootOptions::peers, in that order)
//   last                       the console's host end (the console device's
//                              `host-fd` property): the pipe's read end, which
//                              the image holds and never reads, so that the
//                              console outlives a host restart (the restarted
//                              mkerneld takes it back with pidfd_getfd)
//   after it                   its end of the handover socket (/chosen
//                              `mkernel,handover-socket`), on which the host
//                              sends handoff packages (live updates, staged
//                              steps), then a copy of the host's end of it
//                              (`mkernel,handover-socket-host`), held and never
//                              used, for a restarted host to take back
//   a parked successor         (`mkernel,parked`) gets its file/listen/block
//                              devices in the handoff package, so they are
//                              listed with fd -1 and take no number
//                              (BootOptions::device_fds)
//
// Returns: EINVAL if the instance cannot be described (e.g. a CPU the
// topology does not know), or what validate_boot_tree() reports.
#pragma once

#include <string>
#include <vector>

#include "mk/boot_tree.h"
#include "mk/result.h"
#include "mkernel/instance.h"
#include "mkernel/topology.h"

namespace mk {

inline constexpr int kBootTreeFd = 3;
inline constexpr int kFirstResourceFd = 4;

inline constexpr uint32_t kHostRingSlots = 256;  // slots per direction, host channel

// A channel to another instance (the host created the region; see
// docs/boot-tree.md `mkernel,side`).
struct PeerChannelSpec {
  uint32_t peer_id = 0;
  std::string peer_name;
  uint8_t side = 1;  // 0: this instance takes over side A, 1: attaches as B
  uint32_t ring_slots = kHostRingSlots;
};

struct BootOptions {
  std::string bootargs;  // the image's command line (mkctl load --cmdline)
  std::string init;      // the tenant command (mkctl load --init)
  bool host_channel = true;  // /ipi/channel@0 (every booted image has one)
  uint32_t host_ring_slots = kHostRingSlots;
  std::vector<PeerChannelSpec> peers;
  bool console_host_fd = true;  // hand the image the console's read end too
  bool device_fds = true;       // false: file/listen/block devices get fd -1
  // /chosen handover socket and the copy of the host's end (every image:
  // a staged update hands state to a running image too).
  bool handover_socket = true;
  bool parked = false;           // a live update's successor: /chosen mkernel,parked
};

// The console device's fd number in every image's layout (it follows the
// memory regions, whatever the options).
inline int console_fd_of(const Instance& inst) {
  return kFirstResourceFd + static_cast<int>(inst.memory.size());
}
// Where a running image holds it: its record's (an image that gained
// regions after boot keeps the number it booted with), else as above.
inline int console_fd_of(const Instance& inst, const RuntimeRecord& rec) {
  return rec.console_fd >= 0 ? rec.console_fd : console_fd_of(inst);
}

// The fd number of the first IPI channel in `tree` (after every other fd).
int first_channel_fd(const BootTree& tree);

Result<BootTree> make_boot_tree(const Topology& topo, const Instance& inst, const BootOptions& opts);

// The /devices node of devices[i] as make_boot_tree writes it (name,
// kind, properties; fd -1): file and listen devices are named by their
// place among the file and listen devices before them ("file0",
// "listen1"), block and net devices by their target. A device added to a
// running instance (resource_move.h) gets the node it would have at boot.
BootDevice device_node(const std::vector<DeviceSpec>& devices, std::size_t i);

}  // namespace mk
