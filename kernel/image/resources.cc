// resources: the image's memory regions and devices change (resources.h):
// the fd message on the handover socket, memory add/release, device
// add/release.
#include "resources.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "ipi/fd_passing.h"
#include "mk/abi/boot_tree_abi.h"
#include "mksdk/boot_info.h"

namespace mk::image {

namespace {

// A request's outcome before it becomes a reply.
struct Outcome {
  bool changed = false;
  int fd = -1;  // the fd the image holds the region / device under (-1: none)
  std::string node;  // the device's node name ("" for memory)
};

// Room for a few fds: a message with more than one is refused, and its
// extra fds must arrive (and be closed) rather than be cut off.

const char* type_name(std::uint16_t type) {
  switch (type) {
    case abi::kMsgMemoryAdd: return "memory add";
    case abi::kMsgMemoryRelease: return "memory release";
    case abi::kMsgDeviceAdd: return "device add";
    case abi::kMsgDeviceRelease: return "device release";
  }
  return "resource request";
}

bool is_memory(std::uint16_t type) { return type == abi::kMsgMemoryAdd || type == abi::kMsgMemoryRelease; }
bool is_add(std::uint16_t type) { return type == abi::kMsgMemoryAdd || type == abi::kMsgDeviceAdd; }

void set_detail(abi::ResourceReply* r, int errnum, const char* detail) {
  r->status = -errnum;
  const std::size_t n = std::min(std::strlen(detail), sizeof r->detail - 1);
  std::memcpy(r->detail, detail, n);
  r->detail[n] = '\0';
}

bool valid_key(std::string_view key) {
  if (key.empty() || key.size() > abi::kMaxPropKeyLen) return false;
  if (key == "compatible" || key == "name" || key == "phandle") return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '+' || c == '-';
  });
}

// A NUL-terminated field of a message, or nullopt when it holds no NUL.
std::optional<std::string_view> c_field(const char* p, std::size_t n) {
  const void* nul = std::memchr(p, '\0', n);
  if (!nul) return std::nullopt;
  return std::string_view(p, static_cast<std::size_t>(static_cast<const char*>(nul) - p));
}

// One received message: its payload bytes and fds (all owned).
struct FdMessage {
  std::size_t bytes = 0;
  abi::ResourceFdMsg msg{};
  std::vector<handover::OwnedFd> fds;
};

// ipi::recv_fds (SCM_RIGHTS, MSG_CMSG_CLOEXEC), with room for one byte more
// than a ResourceFdMsg: a longer payload is seen as such.
Result<FdMessage> recv_one(int sock) {
  FdMessage out;
  std::byte data[sizeof(abi::ResourceFdMsg) + 1];
  std::array<ipi::UniqueFd, ipi::kMaxFds> fds;
  MK_TRY_ASSIGN(ipi::RecvFdsResult got, ipi::recv_fds(sock, fds, data));
  for (std::size_t i = 0; i < got.nfds; ++i) out.fds.emplace_back(fds[i].release());
  out.bytes = got.nbytes;
  if (out.bytes >= sizeof out.msg) std::memcpy(&out.msg, data, sizeof out.msg);
  return out;
}

// ---- memory ----

Result<Outcome> add_memory(const ResourceContext& cx, const abi::ResourceMsg& m, handover::OwnedFd fd) {
  std::vector<BootMemory>& memory = cx.tree->memory;
  const std::size_t count = cx.regions->count();
  if (m.index < count && m.index < memory.size()) {
    const BootMemory& have = memory[m.index];
    if (have.size != m.size) {
      return MK_FAIL(EINVAL, "region held with another size",
                     "/memory@%x is held with %llu bytes, the request says %llu; the next region is @%zx", m.index,
                     static_cast<unsigned long long>(have.size), static_cast<unsigned long long>(m.size), count);
    }
    return Outcome{false, have.fd};  // held already: `fd` closes
  }
  if (m.index != count) {
    return MK_FAIL(EINVAL, "region index past the next one",
                   "/memory@%x asked; the image holds %zu region(s), so the next is /memory@%zx", m.index, count,
                   count);
  }
  if (!fd.valid()) {
    return MK_FAIL(EINVAL, "no memfd sent", "/memory@%x: a region comes with its memfd (fd_sent 1)", m.index);
  }
  const BootMemory region{m.index, m.size, m.numa, fd.get(), m.flags};
  MK_TRY(cx.regions->add(region));
  memory.push_back(region);
  return Outcome{true, fd.release()};  // open in the image from here on
}

Result<Outcome> release_memory(const ResourceContext& cx, const abi::ResourceMsg& m) {
  std::vector<BootMemory>& memory = cx.tree->memory;
  if (m.index >= cx.regions->count()) return Outcome{};  // not held
  if (auto r = cx.regions->remove_last(m.index); !r) {
    const std::optional<sdk::PageRange>* kv = cx.kv_range;
    if (r.error().code() == EBUSY && kv && *kv && (*kv)->region == m.index) {
      return MK_FAIL(EBUSY, "region in use", "/memory@%x holds the kv store (%llu pages): it stays while kv runs",
                     m.index, static_cast<unsigned long long>((*kv)->pages));
    }
    return r.error();
  }
  if (m.index < memory.size()) {
    if (memory[m.index].fd >= 0) ::close(memory[m.index].fd);
    memory.erase(memory.begin() + m.index);  // the last one
  }
  return Outcome{true, -1};
}

// ---- devices ----

bool has_all(const BootDevice& d, const std::map<std::string, std::string>& props) {
  for (const auto& [k, v] : props) {
    const auto it = d.properties.find(k);
    if (it == d.properties.end() || it->second != v) return false;
  }
  return true;
}

std::vector<BootDevice>::iterator find_device(std::vector<BootDevice>& devices, DeviceKind kind,
                                              const std::map<std::string, std::string>& props) {
  return std::find_if(devices.begin(), devices.end(),
                      [&](const BootDevice& d) { return d.kind == kind && has_all(d, props); });
}

bool carries_fd(DeviceKind k) { return k == DeviceKind::kFile || k == DeviceKind::kListen || k == DeviceKind::kBlock; }

// The kind and properties of a device request (console allowed: release
// refuses it with its own words).
Result<std::pair<DeviceKind, std::map<std::string, std::string>>> device_of(const abi::ResourceMsg& m) {
  if (m.kind > static_cast<std::uint32_t>(DeviceKind::kBlock)) {
    return MK_FAIL(EINVAL, "unknown device kind", "kind %u: net 1, file 2, listen 3, block 4", m.kind);
  }
  MK_TRY_ASSIGN(auto props, parse_properties(std::string_view(m.properties, sizeof m.properties)));
  const auto kind = static_cast<DeviceKind>(m.kind);
  if (props.empty() && kind != DeviceKind::kConsole) {
    return MK_FAIL(EINVAL, "no properties", "a %s device is named by its properties (path, address, port, ifname...)",
                   to_string(kind).data());
  }
  return std::pair{kind, std::move(props)};
}

// `base`, or base-2, base-3... whichever no device of `devices` has.
std::string unique_name(const std::vector<BootDevice>& devices, const std::string& base) {
  auto used = [&](const std::string& n) {
    return std::any_of(devices.begin(), devices.end(), [&](const BootDevice& d) { return d.name == n; });
  };
  if (!used(base)) return base;
  for (std::size_t i = 2;; ++i) {
    std::string n = base + "-" + std::to_string(i);
    if (!used(n)) return n;
  }
}

Result<Outcome> add_device(const ResourceContext& cx, const abi::ResourceMsg& m, handover::OwnedFd fd) {
  MK_TRY_ASSIGN(auto dev, device_of(m));
  auto& [kind, props] = dev;
  if (kind == DeviceKind::kConsole) {
    return MK_FAIL(EINVAL, "a console is not added", "the instance has its console from boot; add net 1, file 2, "
                                                     "listen 3 or block 4");
  }
  std::vector<BootDevice>& devices = cx.tree->devices;
  if (auto it = find_device(devices, kind, props); it != devices.end()) {
    return Outcome{false, it->fd, it->name};  // there already: `fd` closes
  }
  if (carries_fd(kind) && !fd.valid()) {
    return MK_FAIL(EINVAL, "no fd sent", "a %s device comes with its fd (fd_sent 1)", to_string(kind).data());
  }
  if (!carries_fd(kind) && fd.valid()) {
    return MK_FAIL(EINVAL, "an fd sent for a net device", "a net interface is moved into the namespace, not sent");
  }
  if (devices.size() >= abi::kMaxDevices) {
    return MK_FAIL(ENOSPC, "too many devices", "the image holds %zu devices, at most %u", devices.size(),
                   abi::kMaxDevices);
  }
  const auto name = c_field(m.name, sizeof m.name);
  if (!name) return MK_FAIL(EINVAL, "device name not terminated", "ResourceMsg::name holds no NUL");
  const std::string base = name->empty() ? std::string(to_string(kind)) : std::string(*name);
  if (!is_valid_boot_name(base)) {
    return MK_FAIL(EINVAL, "bad device name", "'%s': 1..31 chars of [A-Za-z0-9_.-]", base.c_str());
  }
  BootDevice d{unique_name(devices, base), kind, fd.get(), std::move(props)};
  KvService* kv = cx.kv ? cx.kv->get() : nullptr;
  if (kind == DeviceKind::kListen && kv) MK_TRY(kv->add_listener(d.fd));  // on error `fd` closes
  std::string node = d.name;
  // At `index` (1.. = after the console): the end for a new device; where it
  // was for a device an undone release puts back, so the tree's order stays
  // the host's (a live update names devices by their index). Past the end:
  // appended.
  const std::size_t at = m.index >= 1 && m.index <= devices.size() ? m.index : devices.size();
  devices.insert(devices.begin() + static_cast<std::ptrdiff_t>(at), std::move(d));
  return Outcome{true, fd.release(), std::move(node)};
}

Result<Outcome> release_device(const ResourceContext& cx, const abi::ResourceMsg& m) {
  MK_TRY_ASSIGN(auto dev, device_of(m));
  auto& [kind, props] = dev;
  if (kind == DeviceKind::kConsole) {
    return MK_FAIL(EINVAL, "the console is never released", "the image and its tenants write to it until they end");
  }
  std::vector<BootDevice>& devices = cx.tree->devices;
  const auto it = find_device(devices, kind, props);
  if (it == devices.end()) return Outcome{};  // not held
  KvService* kv = cx.kv ? cx.kv->get() : nullptr;
  if (kind == DeviceKind::kListen && kv && it->fd >= 0) {
    if (kv->listeners() <= 1) {
      return MK_FAIL(EBUSY, "the kv service's last listen device", "/devices/%s: add another first",
                     it->name.c_str());
    }
    MK_TRY(kv->remove_listener(it->fd));
  }
  if (it->fd >= 0) ::close(it->fd);
  std::string node = std::move(it->name);
  devices.erase(it);  // the others keep their order
  return Outcome{true, -1, std::move(node)};
}

}  // namespace

Result<std::map<std::string, std::string>> parse_properties(std::string_view text) {
  const auto nul = text.find('\0');
  if (nul == std::string_view::npos) {
    return MK_FAIL(EINVAL, "properties not terminated", "ResourceMsg::properties holds no NUL");
  }
  text = text.substr(0, nul);
  std::map<std::string, std::string> out;
  std::size_t line = 0;
  while (!text.empty()) {
    ++line;
    const auto nl = text.find('\n');
    const std::string_view l = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    const auto eq = l.find('=');
    if (eq == std::string_view::npos) {
      return MK_FAIL(EINVAL, "malformed properties", "line %zu '%.*s' is not key=value", line,
                     static_cast<int>(std::min<std::size_t>(l.size(), 40)), l.data());
    }
    const std::string_view key = l.substr(0, eq);
    if (!valid_key(key)) {
      return MK_FAIL(EINVAL, "malformed properties", "line %zu: key '%.*s' is not 1..31 of [A-Za-z0-9_.+-]", line,
                     static_cast<int>(std::min<std::size_t>(key.size(), 40)), key.data());
    }
    if (!out.emplace(std::string(key), std::string(l.substr(eq + 1))).second) {
      return MK_FAIL(EINVAL, "malformed properties", "line %zu: key '%.*s' given twice", line,
                     static_cast<int>(key.size()), key.data());
    }
    if (out.size() > abi::kMaxDeviceProps) {
      return MK_FAIL(EINVAL, "too many properties", "more than %u", abi::kMaxDeviceProps);
    }
  }
  return out;
}

Result<handover::OwnedFd> receive_resource_fd(int sock, const abi::ResourceMsg& m,
                                              std::chrono::milliseconds timeout, sdk::Console* con) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  unsigned dropped = 0;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    pollfd p{sock, POLLIN, 0};
    const int n = left.count() > 0 ? ::poll(&p, 1, static_cast<int>(left.count())) : 0;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("poll of the handover socket");
    if (n == 0) {
      return MK_FAIL(ETIMEDOUT, "no fd message",
                     "op %u index %u: no fd on the handover socket within %lld ms (%u other message(s) dropped)",
                     m.op_id, m.index, static_cast<long long>(timeout.count()), dropped);
    }
    MK_TRY_ASSIGN(FdMessage got, recv_one(sock));
    const bool ours = got.bytes == sizeof got.msg && got.msg.magic == abi::kResourceFdMagic &&
                      got.msg.op_id == m.op_id && got.msg.index == m.index;
    if (!ours) {
      ++dropped;  // the fds close with `got`
      if (got.bytes == sizeof got.msg) {
        con->print("mk-kernel: resource op %u: dropped a message on the handover socket (magic 0x%x, op %u, index "
                   "%u, %zu fd(s)): not this request's\n",
                   m.op_id, got.msg.magic, got.msg.op_id, got.msg.index, got.fds.size());
      } else {
        con->print("mk-kernel: resource op %u: dropped a message on the handover socket (%zu bytes, %zu fd(s)): "
                   "not a ResourceFdMsg\n",
                   m.op_id, got.bytes, got.fds.size());
      }
      continue;
    }
    if (got.msg.kind != m.kind) {
      return MK_FAIL(EPROTO, "fd message of another kind", "op %u: the fd message says kind %u, the request %u",
                     m.op_id, got.msg.kind, m.kind);
    }
    if (got.fds.size() != 1) {
      return MK_FAIL(EBADMSG, "fd message without exactly one fd", "op %u index %u: %zu fd(s)", m.op_id, m.index,
                     got.fds.size());
    }
    return std::move(got.fds.front());
  }
}

abi::ResourceReply serve_resource(const ResourceContext& cx, std::uint16_t type, const abi::ResourceMsg& m,
                                  const ResourceRefusal& no) {
  const std::uint64_t t0 = sdk::monotonic_ns();
  abi::ResourceReply r{};
  r.fd = -1;
  // The fd first, whatever comes next: left on the socket it would be
  // taken for the next request's.
  handover::OwnedFd fd;
  std::optional<Error> fd_error;
  if (m.fd_sent) {
    if (!cx.tree->handover_socket) {
      fd_error = MK_FAIL(EPROTO, "no handover socket", "the boot tree names no mkernel,handover-socket: no fd arrives");
    } else if (auto got = receive_resource_fd(*cx.tree->handover_socket, m, cx.fd_timeout, cx.con); got) {
      fd = std::move(*got);
    } else {
      fd_error = got.error();
    }
  }
  Result<Outcome> out = Outcome{};
  if (no.errnum != 0) {
    out = Error(no.errnum, no.detail);
  } else if (fd_error) {
    out = *fd_error;
  } else if (m.fd_sent && !is_add(type)) {
    out = MK_FAIL(EINVAL, "an fd sent with a release", "a release sends no fd (it was closed)");
  } else {
    switch (type) {
      case abi::kMsgMemoryAdd: out = add_memory(cx, m, std::move(fd)); break;
      case abi::kMsgMemoryRelease: out = release_memory(cx, m); break;
      case abi::kMsgDeviceAdd: out = add_device(cx, m, std::move(fd)); break;
      case abi::kMsgDeviceRelease: out = release_device(cx, m); break;
      default: out = MK_FAIL(EINVAL, "not a resource request", "type 0x%x", type); break;
    }
  }
  std::string node;
  if (out) {
    r.changed = out->changed ? 1 : 0;
    r.fd = out->fd;
    if (!out->node.empty()) node = " /devices/" + out->node;
  } else {
    // "what: detail" when it fits, else the detail alone (it says more).
    const std::string full = out.error().to_string();
    set_detail(&r, out.error().code(), full.size() < sizeof r.detail ? full.c_str() : out.error().message());
  }
  r.count = static_cast<std::uint32_t>(is_memory(type) ? cx.regions->count() : cx.tree->devices.size());
  r.image_ns = sdk::monotonic_ns() - t0;
  const char* what = type_name(type);
  const auto props = c_field(m.properties, sizeof m.properties);
  std::string about;
  if (is_memory(type)) {
    about = "/memory@" + std::to_string(m.index) + " (" + std::to_string(m.size >> 20) + " MiB)";
  } else {
    const auto kind = m.kind <= static_cast<std::uint32_t>(DeviceKind::kBlock)
                          ? std::string(to_string(static_cast<DeviceKind>(m.kind)))
                          : "kind " + std::to_string(m.kind);
    std::string p(props.value_or("?"));
    while (!p.empty() && p.back() == '\n') p.pop_back();
    std::replace(p.begin(), p.end(), '\n', ' ');
    about = kind + " {" + p + "}";
  }
  if (r.status != 0) {
    cx.con->print("mk-kernel: %s %s refused (op %u): %s\n", what, about.c_str(), m.op_id, r.detail);
  } else if (!r.changed) {
    cx.con->print("mk-kernel: %s %s: nothing to do, %s%s (op %u)\n", what, about.c_str(),
                  is_add(type) ? "held already" : "not held", node.c_str(), m.op_id);
  } else {
    const std::string fd = is_add(type) ? " fd " + std::to_string(r.fd) + "," : "";
    cx.con->print("mk-kernel: %s %s done (op %u):%s%s %u %s now\n", what, about.c_str(), m.op_id, node.c_str(),
                  fd.c_str(), r.count, is_memory(type) ? "region(s)" : "device(s)");
  }
  return r;
}

}  // namespace mk::image
