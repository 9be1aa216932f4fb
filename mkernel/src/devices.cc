// Host-side device fds and network interface moves (see devices.h).
#include "mkernel/devices.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <thread>

namespace mk {
namespace {

Result<OwnedFd> open_file(const DeviceSpec& spec) {
  int flags = (spec.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY;
  OwnedFd fd(::open(spec.target.c_str(), flags));
  if (!fd) {
    int e = errno;
    return MK_FAIL(e, "cannot open file device", "%s (%s): %s", spec.target.c_str(),
                   spec.read_only ? "read-only" : "read-write", std::strerror(e));
  }
  return fd;
}

// O_EXCL on a block device is the kernel's exclusive open: it fails with
// EBUSY while the disk (or a partition of it) is mounted or held by another
// exclusive opener, and keeps the host from mounting it while the instance
// holds it.
Result<OwnedFd> open_block(const DeviceSpec& spec) {
  if (spec.target.empty() || spec.target.find('/') != std::string::npos)
    return MK_FAIL(EINVAL, "bad block device", "'%s' (a name under /dev, e.g. nvme0n1)",
                   spec.target.c_str());
  std::string path = "/dev/" + spec.target;
  OwnedFd fd(::open(path.c_str(), O_RDWR | O_EXCL | O_CLOEXEC | O_NOCTTY));
  if (!fd) {
    int e = errno;
    return MK_FAIL(e, "cannot open block device", "%s (exclusive, read-write): %s", path.c_str(),
                   std::strerror(e));
  }
  return fd;
}

Result<OwnedFd> open_listen(const DeviceSpec& spec) {
  // DeviceSpec keeps "[::1]" bracketed or bare; accept both.
  std::string addr = spec.target;
  if (addr.size() >= 2 && addr.front() == '[' && addr.back() == ']')
    addr = addr.substr(1, addr.size() - 2);
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (::inet_pton(AF_INET, addr.c_str(), &v4->sin_addr) == 1) {
    family = AF_INET;
    v4->sin_family = AF_INET;
    v4->sin_port = htons(spec.port);
    len = sizeof *v4;
  } else if (::inet_pton(AF_INET6, addr.c_str(), &v6->sin6_addr) == 1) {
    family = AF_INET6;
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(spec.port);
    len = sizeof *v6;
  } else {
    return MK_FAIL(EINVAL, "bad listen address", "'%s' is not a numeric IPv4/IPv6 address",
                   spec.target.c_str());
  }
  // Blocking (no SOCK_NONBLOCK): the image chooses its own mode.
  OwnedFd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error("cannot create listen socket");
  int one = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
    return errno_error("setsockopt SO_REUSEADDR failed");
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    int e = errno;
    return MK_FAIL(e, "cannot bind listen device", "%s:%u: %s", spec.target.c_str(),
                   static_cast<unsigned>(spec.port), std::strerror(e));
  }
  if (::listen(fd.get(), 128) != 0) {
    int e = errno;
    return MK_FAIL(e, "cannot listen", "%s:%u: %s", spec.target.c_str(),
                   static_cast<unsigned>(spec.port), std::strerror(e));
  }
  return fd;
}

// A NETLINK_ROUTE socket created in `netns_fd` (-1: the caller's namespace).
// A socket stays in the namespace it was created in, so a short-lived thread
// enters the namespace, creates it and exits; the caller's thread never moves.
Result<OwnedFd> rtnl_socket_in(int netns_fd) {
  int fd = -1, err = 0;
  auto make = [&] {
    if (netns_fd >= 0 && ::setns(netns_fd, CLONE_NEWNET) != 0) {
      err = errno;
      return;
    }
    fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) err = errno;
  };
  if (netns_fd < 0) {
    make();
  } else {
    std::thread t(make);
    t.join();
  }
  if (fd < 0)
    return MK_FAIL(err, "cannot open rtnetlink", "%s", std::strerror(err));
  return OwnedFd(fd);
}

// RTM_NEWLINK {ifname} IFLA_NET_NS_FD=to on `sock`, waiting for the ack.
Result<void> rtnl_move(int sock, std::string_view ifname, int to_netns_fd) {
  struct {
    nlmsghdr nh;
    ifinfomsg ifi;
    char attrs[64];
  } req{};
  req.nh.nlmsg_type = RTM_NEWLINK;
  req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  req.nh.nlmsg_seq = 1;
  req.ifi.ifi_family = AF_UNSPEC;
  req.ifi.ifi_index = 0;  // looked up by IFLA_IFNAME in the socket's namespace
  std::size_t off = NLMSG_LENGTH(sizeof(ifinfomsg));
  auto put = [&](uint16_t type, const void* data, std::size_t n) {
    auto* rta = reinterpret_cast<rtattr*>(reinterpret_cast<char*>(&req) + NLMSG_ALIGN(off));
    rta->rta_type = type;
    rta->rta_len = static_cast<uint16_t>(RTA_LENGTH(n));
    std::memcpy(RTA_DATA(rta), data, n);
    off = NLMSG_ALIGN(off) + RTA_ALIGN(rta->rta_len);
  };
  char name[IFNAMSIZ] = {};
  std::memcpy(name, ifname.data(), ifname.size());
  put(IFLA_IFNAME, name, ifname.size() + 1);
  uint32_t nsfd = static_cast<uint32_t>(to_netns_fd);
  put(IFLA_NET_NS_FD, &nsfd, sizeof nsfd);
  req.nh.nlmsg_len = static_cast<uint32_t>(off);

  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(sock, &req, req.nh.nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel),
               sizeof kernel) < 0)
    return errno_error("rtnetlink send failed");
  alignas(nlmsghdr) char buf[8192];
  while (true) {
    ssize_t n = ::recv(sock, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("rtnetlink receive failed");
    }
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, static_cast<unsigned>(n));
         h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type != NLMSG_ERROR) continue;
      const auto* err = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
      if (err->error == 0) return ok();
      int e = -err->error;
      return MK_FAIL(e, "cannot move interface", "%.*s: %s", static_cast<int>(ifname.size()),
                     ifname.data(), std::strerror(e));
    }
  }
}

Result<void> check_ifname(std::string_view ifname) {
  if (ifname.empty() || ifname.size() >= IFNAMSIZ || ifname.find('/') != std::string_view::npos)
    return MK_FAIL(EINVAL, "bad interface name", "'%.*s' (1..15 characters, no '/')",
                   static_cast<int>(ifname.size()), ifname.data());
  return ok();
}

}  // namespace

Result<OwnedFd> open_device(const DeviceSpec& spec) {
  switch (spec.kind) {
    case DeviceKind::kFile: return open_file(spec);
    case DeviceKind::kListen: return open_listen(spec);
    case DeviceKind::kBlock: return open_block(spec);
    default: break;
  }
  return MK_FAIL(EINVAL, "device has no host fd", "%s: only file, block and listen devices are opened",
                 spec.to_string().c_str());
}

Result<OwnedFd> open_netns(pid_t pid) {
  std::string p = "/proc/" + std::to_string(pid) + "/ns/net";
  OwnedFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    int e = errno;
    return MK_FAIL(e, "cannot open network namespace", "%s: %s", p.c_str(), std::strerror(e));
  }
  return fd;
}

Result<OwnedFd> open_current_netns() {
  OwnedFd fd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!fd) return errno_error("cannot open /proc/thread-self/ns/net");
  return fd;
}

Result<void> move_link(std::string_view ifname, int netns_fd) {
  MK_TRY(check_ifname(ifname));
  MK_TRY_ASSIGN(OwnedFd sock, rtnl_socket_in(-1));
  return rtnl_move(sock.get(), ifname, netns_fd);
}

Result<void> return_link(std::string_view ifname, int from_netns_fd, int to_netns_fd) {
  MK_TRY(check_ifname(ifname));
  MK_TRY_ASSIGN(OwnedFd sock, rtnl_socket_in(from_netns_fd));
  return rtnl_move(sock.get(), ifname, to_netns_fd);
}

}  // namespace mk
