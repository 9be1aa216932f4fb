// The daemon's limits: defaults, limits.json, options (see daemon_limits.h).
#include "daemon_limits.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include "mk/abi/handoff.h"

namespace mkerneld {

namespace json = boost::json;

namespace {

struct Bound {
  const char* key;
  uint64_t min, max;
};
// Each key, its range.
constexpr Bound kBounds[] = {
    {"max_instances", 1, 511},
    {"max_channels_per_instance", 0, 511},
    {"max_handoff_fds", 0, mk::abi::kMaxHandoffFds},
    {"max_handoff_blob", 1, mk::abi::kMaxHandoffBlobBytes},
    {"max_console_log", kMinConsoleLog, 1ull << 40},
};

const Bound* bound_of(const std::string& key) {
  for (const auto& b : kBounds)
    if (key == b.key) return &b;
  return nullptr;
}

void assign(Limits& l, const std::string& key, uint64_t v) {
  if (key == "max_instances") l.max_instances = static_cast<uint32_t>(v);
  else if (key == "max_channels_per_instance") l.max_channels_per_instance = static_cast<uint32_t>(v);
  else if (key == "max_handoff_fds") l.max_handoff_fds = static_cast<uint32_t>(v);
  else if (key == "max_handoff_blob") l.max_handoff_blob = v;
  else if (key == "max_console_log") l.max_console_log = v;
}

mk::Result<void> check(const Bound& b, uint64_t v, const std::string& where) {
  if (v < b.min || v > b.max)
    return MK_FAIL(EINVAL, "bad limit", "%s: %llu is out of range %llu..%llu", where.c_str(),
                   static_cast<unsigned long long>(v), static_cast<unsigned long long>(b.min),
                   static_cast<unsigned long long>(b.max));
  return mk::ok();
}

}  // namespace

json::object Limits::to_json() const {
  return {{"max_instances", max_instances},
          {"max_channels_per_instance", max_channels_per_instance},
          {"max_handoff_fds", max_handoff_fds},
          {"max_handoff_blob", max_handoff_blob},
          {"max_console_log", max_console_log},
          {"source", source}};
}

mk::Result<void> set_limit(Limits& l, const std::string& key, const std::string& value, const std::string& origin) {
  const Bound* b = bound_of(key);
  if (!b) return MK_FAIL(EINVAL, "bad limit", "%s: unknown limit", origin.c_str());
  errno = 0;
  char* end = nullptr;
  unsigned long long v = std::strtoull(value.c_str(), &end, 10);
  if (value.empty() || value[0] == '-' || *end || errno == ERANGE)
    return MK_FAIL(EINVAL, "bad limit", "%s: '%s' is not a non-negative integer", origin.c_str(), value.c_str());
  MK_TRY(check(*b, v, origin));
  assign(l, key, v);
  return mk::ok();
}

mk::Result<Limits> load_limits_file(const std::string& dir, Limits base) {
  const std::string path = dir + "/limits.json";
  if (::access(path.c_str(), F_OK) != 0 && errno == ENOENT) return base;
  std::ifstream in(path);
  if (!in) {
    int e = errno ? errno : EIO;
    return mk::Error(e, "cannot read the limits file").set_detail("%s: %s", path.c_str(), strerror(e));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string fix = "fix or remove it (keys and defaults: docs/daemon.md, Limits)";
  boost::system::error_code ec;
  json::value v = json::parse(ss.str(), ec);
  if (ec) return MK_FAIL(EINVAL, "bad limits file", "%s: not JSON (%s); %s", path.c_str(), ec.message().c_str(), fix.c_str());
  if (!v.is_object()) return MK_FAIL(EINVAL, "bad limits file", "%s: not a JSON object; %s", path.c_str(), fix.c_str());
  for (const auto& [k, val] : v.get_object()) {
    const std::string key(k);
    const Bound* b = bound_of(key);
    if (!b) return MK_FAIL(EINVAL, "bad limits file", "%s: unknown key '%s'; %s", path.c_str(), key.c_str(), fix.c_str());
    if (!val.is_uint64() && !(val.is_int64() && val.get_int64() >= 0))
      return MK_FAIL(EINVAL, "bad limits file", "%s: %s: expected a non-negative integer; %s", path.c_str(),
                     key.c_str(), fix.c_str());
    const uint64_t n = val.is_uint64() ? val.get_uint64() : static_cast<uint64_t>(val.get_int64());
    if (auto c = check(*b, n, path + ": " + key); !c)
      return MK_FAIL(EINVAL, "bad limits file", "%s; %s", c.error().message(), fix.c_str());
    assign(base, key, n);
    base.source = "limits.json";
  }
  return base;
}

}  // namespace mkerneld
