// Fuzzes mkerneld::load_last_update / last_update_from_json
// (tools/mkerneld/update_state.cc): <runtime dir>/last-update/NAME.json,
// which `mkctl show` reports and which a crash, a full disk or a hand edit
// can leave in any shape. The input is written to the file and loaded as the
// daemon does. Invariants: a refusal is EBADMSG with a message; an accepted
// record has a YYYY-MM-DDTHH:MM:SSZ `when`, a known outcome, a finite
// non-negative blackout and strings within their limits; its JSON parses
// back to an equal JSON (canonical after one round); its text is one line.
// Also parse_update_state on the input: only the four state names.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "update_state.h"

namespace json = boost::json;

namespace {

char g_dir[] = "/tmp/mk-fuzz-last-update.XXXXXX";  // plain storage: still valid in the atexit handler

const std::string& dir() {
  static const std::string d = [] {
    MK_FUZZ_CHECK(::mkdtemp(g_dir) != nullptr, "mkdtemp: errno %d", errno);
    const std::string s = g_dir;
    MK_FUZZ_CHECK(::mkdir((s + "/last-update").c_str(), 0700) == 0, "mkdir: errno %d", errno);
    std::atexit(+[] {  // at the end of a run (a crash leaves it for the input's reproduction)
      ::unlink(mkerneld::last_update_path(g_dir, "fz").c_str());
      ::rmdir((std::string(g_dir) + "/last-update").c_str());
      ::rmdir(g_dir);
    });
    return s;
  }();
  return d;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto st = mkerneld::parse_update_state(text))
    MK_FUZZ_CHECK(text == mkerneld::to_string(*st), "state '%s' is not its own name", mkerneld::to_string(*st));

  const std::string path = mkerneld::last_update_path(dir(), "fz");
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  MK_FUZZ_CHECK(fd >= 0, "open %s: errno %d", path.c_str(), errno);
  MK_FUZZ_CHECK(size == 0 || ::write(fd, data, size) == static_cast<ssize_t>(size), "short write");
  ::close(fd);

  auto r = mkerneld::load_last_update(dir(), "fz");
  if (!r) {
    MK_FUZZ_CHECK(r.error().code() == EBADMSG, "code %d: %s", r.error().code(), r.error().to_string().c_str());
    MK_FUZZ_CHECK(!r.error().to_string().empty(), "empty error");
    return 0;
  }
  MK_FUZZ_CHECK(r->has_value(), "an existing file loaded as no record");
  const mkerneld::LastUpdate& u = **r;
  MK_FUZZ_CHECK(u.when.size() == 20 && u.when[10] == 'T' && u.when[19] == 'Z', "when '%s'", u.when.c_str());
  MK_FUZZ_CHECK(u.outcome == "updated" || u.outcome == "rolled back" || u.outcome == "failed", "outcome");
  MK_FUZZ_CHECK(!u.blackout_ms || (*u.blackout_ms >= 0 && std::isfinite(*u.blackout_ms)), "blackout");
  MK_FUZZ_CHECK(u.kernel.size() <= 4096 && u.cause.size() <= 4096 && u.rollback.size() <= 4096, "string limits");

  const std::string once = json::serialize(mkerneld::last_update_to_json(u));
  boost::system::error_code ec;
  const json::value v = json::parse(once, ec);
  MK_FUZZ_CHECK(!ec, "re-serialized record is not JSON:\n%s", once.c_str());
  auto back = mkerneld::last_update_from_json(v);
  MK_FUZZ_CHECK(back.has_value(), "re-serialized record rejected: %s\n%s", back.error().to_string().c_str(),
                once.c_str());
  MK_FUZZ_CHECK(back->when == u.when && back->update_id == u.update_id && back->kernel == u.kernel &&
                    back->outcome == u.outcome && back->blackout_ms == u.blackout_ms,
                "round trip changed the record:\n%s", once.c_str());
  MK_FUZZ_CHECK(json::serialize(mkerneld::last_update_to_json(*back)) == once, "not canonical:\n%s", once.c_str());
  (void)mkerneld::last_update_text(u);
  return 0;
}
