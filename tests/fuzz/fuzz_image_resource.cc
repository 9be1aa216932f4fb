// Fuzzes mk::image::serve_resource (kernel/image/resources.cc): the memory
// and device requests (kMsgMemoryAdd/Release, kMsgDeviceAdd/Release:
// ResourceMsg, decoded by device_of/parse_properties/c_field) a running
// mk-kernel image takes from the host, and the fd messages (ResourceFdMsg +
// SCM_RIGHTS) it reads for them from its handover socket
// (receive_resource_fd). One input is a sequence of requests served in
// order on one image state, each [type][fd mode][ResourceMsg bytes, zero
// padded]; the fd mode makes the harness queue, before the request, nothing,
// the matching fd message, a stray message then the matching one, or a
// matching one with two fds.
// Invariants, after every request: the reply's status is 0 or a negative
// errno, its detail is NUL-terminated, changed only on success, count the
// image's devices (device requests) or regions (memory); the console stays
// /devices[0]; the image's boot tree stays valid (emit_boot_tree accepts it:
// unique node names of 1..31 chars, at most 256 devices, property rules) as
// a live update will emit it. After the input: no fd leaked (every fd the
// image took is in its tree, which the harness closes).
// parse_properties is also called on the raw properties of each request:
// what it accepts has at most 32 keys of 1..31 valid chars, no '\n' in
// values, and re-joined as "k=v\n" lines parses to the same map.
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "fuzz_check.h"
#include "mk/abi/boot_tree_abi.h"
#include "mk/boot_tree.h"
#include "resources.h"

namespace {

namespace abi = mk::abi;

int open_fds() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  MK_FUZZ_CHECK(d != nullptr, "opendir /proc/self/fd: errno %d", errno);
  while (::readdir(d)) ++n;
  ::closedir(d);
  return n;
}

struct Fixture {
  int devnull = -1;
  int memfd = -1;
  std::unique_ptr<mk::sdk::Regions> regions;
  mk::sdk::Console con;
  Fixture() {
    devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    memfd = ::memfd_create("fuzz-region", MFD_CLOEXEC);
    MK_FUZZ_CHECK(devnull >= 0 && memfd >= 0 && ::ftruncate(memfd, 1 << 20) == 0, "fixture fds");
    con.set_fd(devnull);
  }
  mk::BootTree tree() const {
    mk::BootTree t;
    t.instance = {1, "fz"};
    t.cpus.push_back(mk::BootCpu{.os_index = 0});
    t.memory.push_back(mk::BootMemory{.index = 0, .size = 1 << 20, .fd = memfd});
    t.devices.push_back(mk::BootDevice{"console", mk::DeviceKind::kConsole, devnull, {}});
    return t;
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

void send_fd_msg(int sock, const abi::ResourceFdMsg& m, int nfds) {
  const int fds[2] = {fixture().devnull, fixture().devnull};
  iovec iov{const_cast<abi::ResourceFdMsg*>(&m), sizeof m};
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof fds)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (nfds > 0) {
    msg.msg_control = cbuf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  MK_FUZZ_CHECK(::sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)sizeof m, "sendmsg: errno %d", errno);
}

void check_properties(const abi::ResourceMsg& m) {
  auto p = mk::image::parse_properties(std::string_view(m.properties, sizeof m.properties));
  if (!p) {
    MK_FUZZ_CHECK(p.error().code() == EINVAL && p.error().detail()[0] != '\0', "properties: code %d",
                  p.error().code());
    return;
  }
  MK_FUZZ_CHECK(p->size() <= abi::kMaxDeviceProps, "%zu properties", p->size());
  std::string joined;
  for (const auto& [k, v] : *p) {
    MK_FUZZ_CHECK(!k.empty() && k.size() <= abi::kMaxPropKeyLen, "key of %zu chars", k.size());
    MK_FUZZ_CHECK(k.find_first_of("=\n") == std::string::npos && v.find('\n') == std::string::npos, "separator kept");
    MK_FUZZ_CHECK(v.find('\0') == std::string::npos, "NUL in a value");
    joined += k + "=" + v + "\n";
  }
  joined.push_back('\0');
  auto back = mk::image::parse_properties(joined);
  MK_FUZZ_CHECK(back && *back == *p, "properties did not round-trip");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Fixture& fx = fixture();
  if (!fx.regions) {
    const mk::BootTree t = fx.tree();
    auto r = mk::sdk::Regions::map(t.memory);
    MK_FUZZ_CHECK(r.has_value(), "Regions::map: %s", r.error().to_string().c_str());
    fx.regions = std::move(*r);
  }
  const int before = open_fds();
  int sv[2];
  MK_FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
  mk::BootTree tree = fx.tree();
  tree.handover_socket = sv[0];
  MK_FUZZ_CHECK(mk::emit_boot_tree(tree).has_value(), "the fixture's tree is invalid");
  mk::image::ResourceContext cx;
  cx.tree = &tree;
  cx.regions = fx.regions.get();
  cx.con = &fx.con;
  cx.fd_timeout = std::chrono::milliseconds(0);

  static const uint16_t kTypes[] = {abi::kMsgDeviceAdd, abi::kMsgDeviceRelease, abi::kMsgMemoryAdd,
                                    abi::kMsgMemoryRelease, abi::kMsgDeviceAdd, abi::kMsgDeviceAdd, 0x1001};
  size_t i = 0;
  for (int n = 0; i + 2 < size && n < 64; ++n) {
    const uint16_t type = kTypes[data[i] % (sizeof kTypes / sizeof kTypes[0])];
    const unsigned fd_mode = data[i + 1] % 4;
    i += 2;
    abi::ResourceMsg m{};
    const size_t take = std::min(sizeof m, size - i);
    std::memcpy(&m, data + i, take);
    i += take;
    check_properties(m);
    if (m.fd_sent && fd_mode != 0) {
      abi::ResourceFdMsg f{abi::kResourceFdMagic, m.op_id, m.index, m.kind};
      if (fd_mode == 2) {
        abi::ResourceFdMsg stray{abi::kResourceFdMagic, m.op_id + 1, m.index, m.kind};
        send_fd_msg(sv[1], stray, 1);
      }
      send_fd_msg(sv[1], f, fd_mode == 3 ? 2 : 1);
    }
    const size_t devices_before = tree.devices.size();
    const abi::ResourceReply r = mk::image::serve_resource(cx, type, m, mk::image::ResourceRefusal{});
    MK_FUZZ_CHECK(std::memchr(r.detail, '\0', sizeof r.detail) != nullptr, "detail not terminated");
    MK_FUZZ_CHECK(r.status <= 0, "status %d", r.status);
    MK_FUZZ_CHECK(r.status == 0 || (r.changed == 0 && r.detail[0] != '\0'), "refusal with changed or no detail");
    const bool memory = type == abi::kMsgMemoryAdd || type == abi::kMsgMemoryRelease;
    MK_FUZZ_CHECK(r.count == (memory ? fx.regions->count() : tree.devices.size()), "reply count %u", r.count);
    if (!memory && type != 0x1001 && r.status == 0) {
      const size_t expect = !r.changed ? devices_before
                            : type == abi::kMsgDeviceAdd ? devices_before + 1
                                                         : devices_before - 1;
      MK_FUZZ_CHECK(tree.devices.size() == expect, "%zu devices after, %zu before", tree.devices.size(),
                    devices_before);
    }
    if (r.status != 0) MK_FUZZ_CHECK(tree.devices.size() == devices_before, "a refused request changed the devices");
    MK_FUZZ_CHECK(!tree.devices.empty() && tree.devices[0].kind == mk::DeviceKind::kConsole &&
                      tree.devices[0].name == "console",
                  "the console is no longer /devices[0]");
    auto blob = mk::emit_boot_tree(tree);
    MK_FUZZ_CHECK(blob.has_value(), "the image's tree became invalid: %s", blob.error().to_string().c_str());
    // Drain what the request left on the socket (its fds close).
    char junk[64];
    while (::recv(sv[0], junk, sizeof junk, MSG_DONTWAIT) > 0) {
    }
  }
  // The fds the image holds are its devices' (the console's and region's
  // are the fixture's).
  for (size_t d = 1; d < tree.devices.size(); ++d)
    if (tree.devices[d].fd >= 0) ::close(tree.devices[d].fd);
  MK_FUZZ_CHECK(fx.regions->count() == 1, "%u regions", (unsigned)fx.regions->count());
  ::close(sv[0]);
  ::close(sv[1]);
  const int after = open_fds();
  MK_FUZZ_CHECK(after == before, "%d fds open before, %d after: an fd leaked", before, after);
  return 0;
}
