// The live-update status values, their JSON, text and file (see update_state.h).
#include "update_state.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "state_store.h"

namespace mkerneld {

namespace json = boost::json;

const char* to_string(UpdateState s) {
  switch (s) {
    case UpdateState::Normal: return "normal";
    case UpdateState::Prepared: return "prepared";
    case UpdateState::Frozen: return "frozen";
    case UpdateState::Updated: return "updated";
  }
  return "normal";
}

std::optional<UpdateState> parse_update_state(std::string_view s) {
  for (UpdateState st : {UpdateState::Normal, UpdateState::Prepared, UpdateState::Frozen, UpdateState::Updated})
    if (s == to_string(st)) return st;
  return std::nullopt;
}

std::string utc_now_iso8601() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

json::object last_update_to_json(const LastUpdate& u) {
  json::object o{{"when", u.when}, {"update_id", u.update_id}, {"kernel", u.kernel}, {"outcome", u.outcome}};
  o["blackout_ms"] = u.blackout_ms ? json::value(*u.blackout_ms) : json::value(nullptr);
  if (u.outcome != "updated") {
    o["cause"] = u.cause;
    o["rollback"] = u.rollback;
  }
  return o;
}

namespace {

mk::Error bad_last_update(const char* field, const char* why) {
  return MK_FAIL(EBADMSG, "bad last-update record", "%s: %s", field, why);
}

mk::Result<std::string> string_field(const json::object& o, const char* key, std::size_t max, bool required) {
  const json::value* v = o.if_contains(key);
  if (!v) {
    if (required) return bad_last_update(key, "missing");
    return std::string();
  }
  if (!v->is_string()) return bad_last_update(key, "expected a string");
  if (v->get_string().size() > max) return bad_last_update(key, "too long");
  return std::string(v->get_string());
}

bool iso8601_utc(const std::string& s) {
  // YYYY-MM-DDTHH:MM:SSZ
  static const char* shape = "dddd-dd-ddTdd:dd:ddZ";
  if (s.size() != std::strlen(shape)) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i]) return false;
  }
  return true;
}

}  // namespace

mk::Result<LastUpdate> last_update_from_json(const json::value& v) {
  if (!v.is_object()) return bad_last_update("(top)", "expected an object");
  const json::object& o = v.get_object();
  LastUpdate u;
  MK_TRY_ASSIGN(u.when, string_field(o, "when", 64, true));
  if (!iso8601_utc(u.when)) return bad_last_update("when", "expected YYYY-MM-DDTHH:MM:SSZ");
  const json::value* id = o.if_contains("update_id");
  if (!id) return bad_last_update("update_id", "missing");
  if (!(id->is_int64() && id->get_int64() >= 0 && id->get_int64() <= UINT32_MAX) &&
      !(id->is_uint64() && id->get_uint64() <= UINT32_MAX))
    return bad_last_update("update_id", "expected an integer 0..4294967295");
  u.update_id = static_cast<uint32_t>(id->is_int64() ? id->get_int64() : static_cast<int64_t>(id->get_uint64()));
  MK_TRY_ASSIGN(u.kernel, string_field(o, "kernel", 4096, true));
  MK_TRY_ASSIGN(u.outcome, string_field(o, "outcome", 32, true));
  if (u.outcome != "updated" && u.outcome != "rolled back" && u.outcome != "failed")
    return bad_last_update("outcome", "expected \"updated\", \"rolled back\" or \"failed\"");
  if (const json::value* b = o.if_contains("blackout_ms"); b && !b->is_null()) {
    if (!b->is_number()) return bad_last_update("blackout_ms", "expected a number or null");
    const double ms = b->to_number<double>();
    if (!(ms >= 0) || !std::isfinite(ms)) return bad_last_update("blackout_ms", "expected a non-negative number");
    u.blackout_ms = ms;
  }
  MK_TRY_ASSIGN(u.cause, string_field(o, "cause", 4096, false));
  MK_TRY_ASSIGN(u.rollback, string_field(o, "rollback", 4096, false));
  return u;
}

std::string last_update_text(const LastUpdate& u) {
  std::string s = u.when + " " + u.outcome;
  if (u.blackout_ms) {
    char b[64];
    std::snprintf(b, sizeof b, ", blackout %.3f ms", *u.blackout_ms);
    s += b;
  }
  s += " (update " + std::to_string(u.update_id) + ", " + u.kernel + ")";
  if (!u.cause.empty()) s += ": " + u.cause;
  if (!u.rollback.empty()) s += "; " + u.rollback;
  return s;
}

std::string last_update_path(const std::string& dir, const std::string& name) {
  return dir + "/last-update/" + name + ".json";
}

mk::Result<void> save_last_update(const std::string& dir, const std::string& name, const LastUpdate& u) {
  const std::string sub = dir + "/last-update";
  if (::mkdir(sub.c_str(), 0700) != 0 && errno != EEXIST) {
    int e = errno;
    return mk::Error(e, "cannot create the last-update directory").set_detail("%s: %s", sub.c_str(), strerror(e));
  }
  return mk::tools::write_file_atomic(last_update_path(dir, name), json::serialize(last_update_to_json(u)) + "\n");
}

mk::Result<std::optional<LastUpdate>> load_last_update(const std::string& dir, const std::string& name) {
  const std::string path = last_update_path(dir, name);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<LastUpdate>();
    int e = errno;
    return mk::Error(e, "cannot read the last-update record").set_detail("%s: %s", path.c_str(), strerror(e));
  }
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      return mk::Error(e, "cannot read the last-update record").set_detail("%s: %s", path.c_str(), strerror(e));
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > 64 * 1024) {
      ::close(fd);
      return MK_FAIL(EBADMSG, "bad last-update record", "%s: over 64 KiB", path.c_str());
    }
  }
  ::close(fd);
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) return MK_FAIL(EBADMSG, "bad last-update record", "%s: not JSON (%s)", path.c_str(), ec.message().c_str());
  auto u = last_update_from_json(v);
  if (!u) return mk::Error(u.error().code(), u.error().what()).set_detail("%s: %s", path.c_str(), u.error().message());
  return std::optional<LastUpdate>(std::move(*u));
}

}  // namespace mkerneld
