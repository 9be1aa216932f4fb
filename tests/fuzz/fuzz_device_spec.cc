// Fuzzes mk::DeviceSpec::parse (mkernel/src/instance.cc): `mkctl create/init/
// update --device SPEC`, the "devices" of a control request, of the state
// file and of the daemon's resource-move journal all go through it.
// Invariants: a refusal is EINVAL with a detail; an accepted spec is within
// the documented forms (net/block: 1-15 chars without '/', ':' or
// whitespace; file: an absolute path of at most 4095 bytes; listen: a
// numeric IPv4/IPv6 address and a port 1-65535); no accepted name or path
// holds a NUL byte (the kernel would see a shorter one than the key names);
// to_string() parses back to an equal spec, is canonical, and key() does not
// depend on a file's :ro.
#include <arpa/inet.h>

#include <cctype>
#include <cerrno>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "mkernel/instance.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto r = mk::DeviceSpec::parse(text);
  if (!r) {
    MK_FUZZ_CHECK(r.error().code() == EINVAL, "code %d", r.error().code());
    MK_FUZZ_CHECK(r.error().detail()[0] != '\0', "empty detail");
    return 0;
  }
  const mk::DeviceSpec& d = *r;
  MK_FUZZ_CHECK(d.target.find('\0') == std::string::npos, "accepted a target with a NUL byte");
  switch (d.kind) {
    case mk::DeviceKind::kNet:
    case mk::DeviceKind::kBlock:
      MK_FUZZ_CHECK(!d.target.empty() && d.target.size() <= 15, "name of %zu bytes", d.target.size());
      for (char c : d.target)
        MK_FUZZ_CHECK(c != '/' && c != ':' && !std::isspace(static_cast<unsigned char>(c)), "bad char in name");
      MK_FUZZ_CHECK(d.port == 0 && !d.read_only, "net/block with port or :ro");
      break;
    case mk::DeviceKind::kFile:
      MK_FUZZ_CHECK(!d.target.empty() && d.target.front() == '/' && d.target.size() <= 4095, "file path");
      MK_FUZZ_CHECK(d.port == 0, "file with a port");
      break;
    case mk::DeviceKind::kListen: {
      MK_FUZZ_CHECK(d.port >= 1, "port 0");
      unsigned char buf[16];
      MK_FUZZ_CHECK(inet_pton(AF_INET, d.target.c_str(), buf) == 1 || inet_pton(AF_INET6, d.target.c_str(), buf) == 1,
                    "address '%s' not numeric", d.target.c_str());
      MK_FUZZ_CHECK(!d.read_only, "listen with :ro");
      break;
    }
    default:
      MK_FUZZ_CHECK(false, "accepted kind %d", static_cast<int>(d.kind));
  }
  const std::string canon = d.to_string();
  auto back = mk::DeviceSpec::parse(canon);
  MK_FUZZ_CHECK(back.has_value(), "canonical '%s' rejected: %s", canon.c_str(), back.error().to_string().c_str());
  MK_FUZZ_CHECK(*back == d, "'%s' did not round-trip", canon.c_str());
  MK_FUZZ_CHECK(back->to_string() == canon, "canonical form of '%s' unstable", canon.c_str());
  mk::DeviceSpec rw = d;
  rw.read_only = !rw.read_only;
  if (d.kind == mk::DeviceKind::kFile) MK_FUZZ_CHECK(rw.key() == d.key(), "key depends on :ro");
  return 0;
}
