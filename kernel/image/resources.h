// DOC: the image's memory regions and devices change — mk-kernel's side of
// a memory or device move.
//
// What this is: what the image does when the host adds or takes back a
// memory region or a device of a running instance (`mkctl update NAME
// --memory LIST | --device SPEC...`; mk/abi/control_messages.h steps
// 12-15, docs/sdk.md "Moving memory and devices"). One region or device per
// request, each idempotent (a restarted host re-sends them). main.cc's
// HostServices::resource calls serve_resource with its own refusals
// (parked successor, live or staged update in progress, a staged pre-copy).
//
// The fd of an add (a region's memfd; a file, listen or block device's fd)
// comes first, on the image's handover socket (/chosen
// mkernel,handover-socket): one SOCK_SEQPACKET message, a ResourceFdMsg
// (kResourceFdMagic, the request's op_id and index) with exactly one fd
// (SCM_RIGHTS). When ResourceMsg::fd_sent is 1 that message is read before
// anything else, even for a request that is then refused, so that it is
// never taken for the next request's. Messages of other requests (op_id or
// index not the request's: a request that timed out) and messages that are
// no ResourceFdMsg are dropped, their fds closed, and reading goes on until
// the timeout (1 s).
//
// Memory add (kMsgMemoryAdd, happy path):
//   1. index < regions held with the same size: 0, changed 0, fd = the fd
//      the image holds it under (the one received is closed);
//   2. index == regions held: Regions::add maps the memfd (fstat: at least
//      `size` bytes) as /memory@index; it joins tree.memory and stays open
//      in the image; reply changed 1, fd = its number, count = regions.
// Memory release (kMsgMemoryRelease):
//   1. index >= regions held: 0, changed 0;
//   2. Regions::remove_last(index) unmaps it (only the last region, never
//      the only one, none with pages allocated); its fd is closed and it
//      leaves tree.memory; reply changed 1.
// Device add (kMsgDeviceAdd):
//   1. properties ("key=value\n" lines) and kind (net, file, listen, block)
//      parsed; a device of that kind whose properties include all of them
//      is there already: 0, changed 0, fd = its fd (the received one closed);
//   2. a node {name (ResourceMsg::name, or the kind's name; "-2", "-3"...
//      appended until unique), kind, fd (-1 for net), properties} is
//      inserted into tree.devices at ResourceMsg::index (1..count: the end
//      for a new device, its old place for one an undone release puts
//      back; any other index: appended); a listen device is served by the kv
//      service at once (KvService::add_listener) when it runs; reply
//      changed 1, fd, count = devices.
// Device release (kMsgDeviceRelease):
//   1. the first device of that kind whose properties include all of the
//      message's; none: 0, changed 0;
//   2. a listen device leaves the kv service (KvService::remove_listener;
//      the connections accepted on it stay), its fd is closed (a net
//      device has none) and the node leaves tree.devices (the others keep
//      their order, as the host counts them); reply changed 1.
// Unhappy paths (nothing changes; status -errno, detail says why):
//   1. the caller's refusal (ResourceRefusal, e.g. -EBUSY while parked);
//   2. the fd: -ETIMEDOUT (no message of this request within the timeout),
//      -EBADMSG (no fd or more than one in it), -EPROTO (fd_sent but the
//      tree names no handover socket, or the kind differs), recvmsg errno;
//      an add of a kind that comes with an fd whose fd was not sent, or a
//      request that sends one it does not need: -EINVAL;
//   3. memory add: index past the next region, or a region held with
//      another size: -EINVAL; Regions::add codes (-EINVAL: memfd smaller
//      than `size`, bad size; mmap errno);
//   4. memory release: not the last region -EINVAL; the only region or
//      pages in use -EBUSY (the detail counts them, and names the kv store
//      when it is what holds them);
//   5. device add: malformed properties, none, a kind that is not net,
//      file, listen or block, a bad name: -EINVAL; 256 devices: -ENOSPC;
//      KvService::add_listener codes;
//   6. device release: the console -EINVAL (never released); the kv
//      service's last listen device -EBUSY ("add another first").
//
// Thread safety: from the image's main thread only (the one serving the
// host link), like every HostServices callback.
//
// Returns: serve_resource: the reply (status 0 or -errno, changed, fd,
// count, image_ns, detail). receive_resource_fd: the fd, or the codes of
// unhappy path 2. parse_properties: EINVAL.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "handover/session.h"
#include "kv_service.h"
#include "mk/abi/control_messages.h"
#include "mk/boot_tree.h"
#include "mk/result.h"
#include "mksdk/devices.h"
#include "mksdk/regions.h"

namespace mk::image {

struct ResourceContext {
  BootTree* tree = nullptr;  // tree->memory, tree->devices: what the image holds; handover_socket
  sdk::Regions* regions = nullptr;
  std::unique_ptr<KvService>* kv = nullptr;                 // may hold null (no kv service)
  const std::optional<sdk::PageRange>* kv_range = nullptr;  // the kv store's allocation, if any
  sdk::Console* con = nullptr;                              // serve_resource's one line per request
  std::chrono::milliseconds fd_timeout{1000};               // for the fd message of an add
};

// The caller's own reason to refuse a request before anything changes
// (errnum 0: none), e.g. -EBUSY during a live update.
struct ResourceRefusal {
  int errnum = 0;
  const char* detail = "";
};

// kMsgMemoryAdd / kMsgMemoryRelease / kMsgDeviceAdd / kMsgDeviceRelease
// (`type`): the fd read first when m.fd_sent; refused with `no` when given;
// else the request; image_ns set; one console line either way.
abi::ResourceReply serve_resource(const ResourceContext& cx, std::uint16_t type, const abi::ResourceMsg& m,
                                  const ResourceRefusal& no);

// The fd message of request `m` on handover socket `sock` (see above).
Result<handover::OwnedFd> receive_resource_fd(int sock, const abi::ResourceMsg& m,
                                              std::chrono::milliseconds timeout, sdk::Console* con);

// ResourceMsg::properties: "key=value\n" lines (the last '\n' optional),
// keys as the boot tree's (1..31 of [A-Za-z0-9_.+-], not compatible, name
// or phandle), each once, at most 32; values without '\n'. `text` must hold
// a NUL. Returns: EINVAL (the detail names the line).
Result<std::map<std::string, std::string>> parse_properties(std::string_view text);

}  // namespace mk::image
