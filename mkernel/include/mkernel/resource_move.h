// DOC: mk::resize_memory / mk::change_devices — adding and removing memory
// regions and devices of a running instance (`mkctl update NAME --memory
// LIST | --device SPEC...`, DESIGN.md §5 "resource hot-move", kerf's
// `update`).
//
// What this is: the host's side of the consent handshakes of
// mk/abi/control_messages.h steps 12-15, one region or device per request,
// all or nothing (the step runner of change_steps.h: on any failure the
// steps done are undone in reverse order).
//
// Memory. A region never changes size (its memfd is size-sealed) and the
// image names its allocations by region index, so a list changes at its
// end: the regions both lists share from the start stay; the rest of the
// current list is released (last first), then the rest of the new one added.
//   release  kMsgMemoryRelease: the image's consent (it refuses a region
//            with pages in use, e.g. region 0 holding the kv store, and its
//            only region); it unmaps the region and closes its fd. The host
//            keeps its own fd until every step succeeded, so an undo hands
//            the same memfd back.
//   cgroup   before adding, the memory cgroup's limit is raised to cover
//            both lists (regions + kInstanceOverheadBytes) and the cpuset's
//            mems widened to the new nodes; after the change it is set to
//            the new list (a refusal to lower it is a warning: the memory
//            was given up, the limit stays higher).
//   add      a RegionFd (memory_region.h: node-bound, size-sealed memfd)
//            is made, its fd sent on the image's handover socket
//            (ResourceFdMsg + SCM_RIGHTS), then kMsgMemoryAdd: the image
//            maps it as the next region and replies the fd number it keeps
//            it under; RuntimeRecord::region_fds records it for a restart.
// Devices. Kept devices stay in their order; new ones are added at the end
// first (so replacing the kv service's only listen device works), then the
// ones missing from the new list are released (last first).
//   add      file/listen/block: open_device() (devices.h), the fd sent as
//            for memory, then kMsgDeviceAdd with the node the device would
//            have in a boot tree (manifest.h device_node); net: the
//            interface is moved into the instance's network namespace
//            first (an instance started without a net device has none:
//            ENOTSUP).
//   release  kMsgDeviceRelease naming the device by kind and properties:
//            the image's consent (it refuses the console and the kv
//            service's last listen device), then a net interface is moved
//            back to the host's namespace.
// Afterwards the RunningInstance describes the new lists (later boot trees
// of a live update list them) and the result says what changed.
//
// A holder that is not running (run == nullptr) changes on paper only: the
// caller (mkerneld) validates first (plan_memory / check_device_change),
// persists the partition, and calls the opposite change if persisting fails.
//
// A host that dies mid-change leaves the image holding a list the state
// file may not: on restart, trim_released_regions (before adopt_instance,
// which would fail on a region fd the image closed) and reconcile_resources
// (after it) make the image match the state file again.
//
// Returns (resize_memory / change_devices): EINVAL (a list that cannot
// be, a property too long for ResourceMsg), ENOTSUP (no handover socket,
// no network namespace), the image's refusal (-ResourceReply::status with
// its detail: EBUSY, EINVAL), ETIMEDOUT / ECONNRESET / EPROTO of a request,
// what RegionFd::create, open_device, move_link and the cgroup writes return.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mk/result.h"
#include "mkernel/boot.h"
#include "mkernel/cpu_move.h"
#include "mkernel/instance.h"
#include "mkernel/partition.h"
#include "mkernel/pool.h"
#include "mkernel/sysroot.h"
#include "mkernel/topology.h"

namespace mk {

// The options of CPU moves serve memory and device moves too (per-request
// timeout, op id, on_step, fault injection by step name).
using ResourceChangeOptions = CpuChangeOptions;

struct ResourceChangeResult {
  std::vector<MemoryRegion> memory;  // the instance's regions after (resize_memory)
  std::vector<DeviceSpec> devices;   // its devices after (change_devices)
  std::vector<std::string> added;    // "region 1: 32 MiB on node 0", "listen:127.0.0.1:6380"
  std::vector<std::string> removed;
  std::vector<std::pair<std::string, double>> steps;  // name, ms
  double ms = 0;
  // The change stands but something after it did not go as asked (the
  // memory cgroup's limit could not be lowered).
  std::vector<std::string> warnings;
};

// `want` (mkctl update --memory: SIZE[@NODE] per region, in order) against
// instance `name` of the partition: a spec without @NODE keeps the node of
// the region at its place, or takes the node holding most of the instance's
// CPUs. Checks: at least one region, page-aligned sizes, nodes that exist,
// the pool's free memory per node (counting what this instance gives back).
// Returns the regions, or ENOENT (instance, node), EINVAL, ENOMEM.
Result<std::vector<MemoryRegion>> plan_memory(const Topology& topo, const Partition& part, std::string_view name,
                                              const std::vector<MemorySpec>& want);
// `want` (mkctl update --device: the whole list) for instance `name`: no
// device twice, net and block devices in the pool, none another instance's.
// Returns: ENOENT (instance; device not in the pool), EINVAL, EBUSY.
Result<void> check_device_change(const Partition& part, std::string_view name, const std::vector<DeviceSpec>& want);

// run == nullptr: on paper only. `current` is what the state file says the
// instance has (for a running one, what run->instance() says too).
Result<ResourceChangeResult> resize_memory(RunningInstance* run, std::string_view name,
                                           const std::vector<MemoryRegion>& current,
                                           const std::vector<MemoryRegion>& want, const ResourceChangeOptions& opts);
Result<ResourceChangeResult> change_devices(RunningInstance* run, std::string_view name,
                                            const std::vector<DeviceSpec>& current, const std::vector<DeviceSpec>& want,
                                            const ResourceChangeOptions& opts);

// Before adopting a running instance after a restart that interrupted a
// memory change: its record's trailing region fds that the image no longer
// holds as a memfd of the region's size (it released the region) are
// dropped from inst.runtime->region_fds and inst.memory. Returns how many.
// Errors: ESRCH (the image is gone), pidfd_open errno.
Result<std::size_t> trim_released_regions(Instance& inst, const SysRoot& root);

// After adopt_instance: make the image match the state file for what an
// interrupted change touched. Regions: indices >= memory.size() and <
// `regions_touched` are released (idempotent), regions of `memory` the
// host does not hold (trimmed) are made afresh and added. Devices: each of
// `devices_touched` is added when `devices` lists it, else released (both
// idempotent; a listen device the image still has is not reopened). Stops
// at the first failing step (calling again is safe).
Result<void> reconcile_resources(RunningInstance& run, const std::vector<MemoryRegion>& memory,
                                 std::size_t regions_touched, const std::vector<DeviceSpec>& devices,
                                 const std::vector<DeviceSpec>& devices_touched, const ResourceChangeOptions& opts);

}  // namespace mk
