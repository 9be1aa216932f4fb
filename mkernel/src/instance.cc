// Instance records: state names, device specs, name rules (see instance.h).
#include "mkernel/instance.h"

#include <arpa/inet.h>

#include <cctype>
#include <charconv>

namespace mk {

const char* to_string(InstanceState s) {
  switch (s) {
    case InstanceState::Empty: return "empty";
    case InstanceState::Loaded: return "loaded";
    case InstanceState::Active: return "active";
    case InstanceState::Stopping: return "stopping";
    case InstanceState::Failed: return "failed";
  }
  return "?";
}

Result<InstanceState> parse_instance_state(std::string_view s) {
  for (InstanceState st : {InstanceState::Empty, InstanceState::Loaded, InstanceState::Active,
                           InstanceState::Stopping, InstanceState::Failed}) {
    if (s == to_string(st)) return st;
  }
  return MK_FAIL(EINVAL, "bad instance state", "'%.*s' is not an instance state",
                 static_cast<int>(s.size()), s.data());
}

namespace {

constexpr const char* kDeviceForms =
    "net:IFNAME, block:NAME, file:PATH[:ro] or listen:ADDR:PORT";

bool valid_ifname(std::string_view s) {
  // Linux IFNAMSIZ is 16 including the NUL; no '/', ':' or whitespace.
  if (s.empty() || s.size() > 15) return false;
  for (char c : s)
    if (c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c))) return false;
  return true;
}

Result<DeviceSpec> fail_spec(std::string_view text, const char* why) {
  return MK_FAIL(EINVAL, "bad device spec", "'%.*s': %s (accepted forms: %s)",
                 static_cast<int>(text.size()), text.data(), why, kDeviceForms);
}

}  // namespace

Result<DeviceSpec> DeviceSpec::parse(std::string_view text) {
  // A NUL would end the name or path the kernel sees (open, ioctl) before
  // the one key() compares: "file:/a\0x" would open /a unclaimed.
  if (text.find('\0') != std::string_view::npos) return fail_spec(text, "contains a NUL byte");
  std::size_t colon = text.find(':');
  if (colon == std::string_view::npos) return fail_spec(text, "missing KIND: prefix");
  std::string_view kind = text.substr(0, colon), rest = text.substr(colon + 1);
  DeviceSpec d;
  if (kind == "net" || kind == "block") {
    d.kind = kind == "net" ? DeviceKind::kNet : DeviceKind::kBlock;
    if (!valid_ifname(rest)) return fail_spec(text, "device name must be 1-15 characters without '/', ':' or spaces");
    d.target = rest;
    return d;
  }
  if (kind == "file") {
    d.kind = DeviceKind::kFile;
    if (rest.size() >= 3 && rest.substr(rest.size() - 3) == ":ro") {
      d.read_only = true;
      rest.remove_suffix(3);
    }
    if (rest.empty() || rest.front() != '/') return fail_spec(text, "file path must be absolute");
    if (rest.size() > 4095) return fail_spec(text, "path longer than PATH_MAX");
    d.target = rest;
    return d;
  }
  if (kind == "listen") {
    d.kind = DeviceKind::kListen;
    std::size_t pc = rest.rfind(':');
    if (pc == std::string_view::npos) return fail_spec(text, "missing :PORT");
    std::string_view addr = rest.substr(0, pc), port = rest.substr(pc + 1);
    if (addr.size() >= 2 && addr.front() == '[' && addr.back() == ']') addr = addr.substr(1, addr.size() - 2);
    unsigned p = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (port.empty() || ec != std::errc() || end != port.data() + port.size() || p == 0 || p > 65535)
      return fail_spec(text, "port must be 1-65535");
    std::string a(addr);
    unsigned char buf[16];
    if (inet_pton(AF_INET, a.c_str(), buf) != 1 && inet_pton(AF_INET6, a.c_str(), buf) != 1)
      return fail_spec(text, "address must be a numeric IPv4 or IPv6 address");
    d.target = a;
    d.port = static_cast<uint16_t>(p);
    return d;
  }
  return fail_spec(text, "unknown device kind");
}

std::string DeviceSpec::to_string() const {
  std::string s(mk::to_string(kind));
  s += ':';
  if (kind == DeviceKind::kListen) {
    bool v6 = target.find(':') != std::string::npos;
    s += v6 ? "[" + target + "]" : target;
    s += ':' + std::to_string(port);
  } else {
    s += target;
    if (read_only) s += ":ro";
  }
  return s;
}

std::string DeviceSpec::key() const {
  // A file is the same device whatever its access mode.
  if (kind == DeviceKind::kFile) return "file:" + target;
  DeviceSpec k = *this;
  k.read_only = false;
  return k.to_string();
}

uint64_t Instance::memory_bytes() const {
  uint64_t n = 0;
  for (const auto& r : memory) n += r.bytes;
  return n;
}

uint64_t Instance::memory_on(uint32_t node) const {
  uint64_t n = 0;
  for (const auto& r : memory)
    if (r.node == node) n += r.bytes;
  return n;
}

Result<void> validate_instance_name(std::string_view name) {
  if (name.empty())
    return MK_FAIL(EINVAL, "bad instance name", "an instance name cannot be empty");
  if (name.size() > kMaxNameLength)
    return MK_FAIL(EINVAL, "bad instance name", "'%.*s' is longer than %zu characters",
                   static_cast<int>(name.size()), name.data(), kMaxNameLength);
  if (!std::isalnum(static_cast<unsigned char>(name.front())))
    return MK_FAIL(EINVAL, "bad instance name", "'%.*s' must start with a letter or digit",
                   static_cast<int>(name.size()), name.data());
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
      return MK_FAIL(EINVAL, "bad instance name",
                     "'%.*s' contains '%c'; use letters, digits, '-', '_' or '.'",
                     static_cast<int>(name.size()), name.data(), c);
  }
  return ok();
}

}  // namespace mk
