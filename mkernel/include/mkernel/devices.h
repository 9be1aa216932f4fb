// DOC: host-side device fds of an instance (DESIGN.md §2 "Devices").
//
// What this is: the host opens or prepares each --device of an instance
// before it boots, so the image receives ready-to-use fds (manifest.h lists
// their numbers in the boot tree) and never needs privileges of its own:
//   file:PATH[:ro]    open(O_RDONLY or O_RDWR, O_CLOEXEC)
//   block:NAME        open(/dev/NAME, O_RDWR|O_EXCL): the kernel's exclusive
//                     open, EBUSY while mounted or held elsewhere (EPERM
//                     for a mounted disk on 6.8+ without BLK_DEV_WRITE_MOUNTED)
//   listen:ADDR:PORT  a blocking TCP socket, SO_REUSEADDR, bound, listen(128)
//   net:IFNAME        no fd: the interface is moved into the instance's
//                     network namespace (rtnetlink RTM_NEWLINK with
//                     IFLA_NET_NS_FD) and moved back on stop.
//
// Place in the boot flow: `start`, before make_confine_plan() (the fds go into
// its fd map) for file/listen; right after spawn_confined() (which made the
// netns) for net, via open_netns(pid). On `stop`, return_link() before the
// instance's last process exits: when a network namespace dies, a physical
// interface falls back to the initial namespace by itself but a virtual one
// (veth) is destroyed with it.
//
// Happy path: 1. open_device(spec) per file/listen spec; 2. spawn;
// 3. move_link(ifname, netns) per net spec; 4. ... 5. return_link(ifname,
// netns, host_netns) on stop.
//
// Unhappy paths: 1. file missing / not permitted: the errno naming the path;
// 2. address in use: EADDRINUSE naming addr:port; 3. interface unknown:
// ENODEV naming it (nothing moved); 4. kernel refuses the move (EBUSY,
// EPERM, EEXIST when the namespace already has that name): its errno.
//
// Returns: open_device: EINVAL (net/console spec, bad address or block name),
// errno of open/socket/bind/listen (ENOENT, EACCES, EBUSY, EADDRINUSE,
// EADDRNOTAVAIL).
// open_netns: ESRCH/ENOENT/EACCES. move_link/return_link: ENODEV, EPERM,
// EEXIST, EINVAL and other rtnetlink errors.
#pragma once

#include <sys/types.h>

#include <string_view>

#include "mk/result.h"
#include "mkernel/instance.h"
#include "mkernel/owned_fd.h"

namespace mk {

// file, block and listen specs; the fd is O_CLOEXEC (the fd map dup2()s it).
Result<OwnedFd> open_device(const DeviceSpec& spec);

// The network namespace of `pid` (/proc/PID/ns/net), for move_link.
Result<OwnedFd> open_netns(pid_t pid);
// The calling thread's network namespace (the host's, for return_link).
Result<OwnedFd> open_current_netns();

// Moves host interface `ifname` (in the caller's namespace) into `netns_fd`.
Result<void> move_link(std::string_view ifname, int netns_fd);
// Moves `ifname` from inside `from_netns_fd` into `to_netns_fd`.
Result<void> return_link(std::string_view ifname, int from_netns_fd, int to_netns_fd);

}  // namespace mk
