// Fuzzes mkerneld::load_limits_file (tools/mkerneld/daemon_limits.cc): the
// operator's DIR/limits.json, read once at start. The input is written to
// the file and loaded. Invariants: a refusal is EINVAL with a message; what
// is accepted lies within each limit's documented range, and its JSON form
// (to_json without "source") written back as limits.json loads to the same
// values.
#include <fcntl.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "daemon_limits.h"
#include "fuzz_check.h"
#include "mk/abi/handoff.h"

namespace {

char g_dir[] = "/tmp/mk-fuzz-limits.XXXXXX";  // plain storage: still valid in the atexit handler

const std::string& dir() {
  static const std::string d = [] {
    MK_FUZZ_CHECK(::mkdtemp(g_dir) != nullptr, "mkdtemp: errno %d", errno);
    std::atexit(+[] {
      ::unlink((std::string(g_dir) + "/limits.json").c_str());
      ::rmdir(g_dir);
    });
    return std::string(g_dir);
  }();
  return d;
}

void write_file(const std::string& path, const void* data, size_t size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  MK_FUZZ_CHECK(fd >= 0, "open %s: errno %d", path.c_str(), errno);
  MK_FUZZ_CHECK(size == 0 || ::write(fd, data, size) == static_cast<ssize_t>(size), "short write");
  ::close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string file = dir() + "/limits.json";
  write_file(file, data, size);
  auto r = mkerneld::load_limits_file(dir(), mkerneld::Limits{});
  if (!r) {
    MK_FUZZ_CHECK(r.error().code() == EINVAL, "code %d: %s", r.error().code(), r.error().to_string().c_str());
    MK_FUZZ_CHECK(!r.error().to_string().empty(), "empty error");
    return 0;
  }
  const mkerneld::Limits& l = *r;
  MK_FUZZ_CHECK(l.max_instances >= 1 && l.max_instances <= 511, "max_instances %u", l.max_instances);
  MK_FUZZ_CHECK(l.max_channels_per_instance <= 511, "max_channels_per_instance %u", l.max_channels_per_instance);
  MK_FUZZ_CHECK(l.max_handoff_fds <= mk::abi::kMaxHandoffFds, "max_handoff_fds %u", l.max_handoff_fds);
  MK_FUZZ_CHECK(l.max_handoff_blob >= 1 && l.max_handoff_blob <= mk::abi::kMaxHandoffBlobBytes,
                "max_handoff_blob %llu", static_cast<unsigned long long>(l.max_handoff_blob));
  MK_FUZZ_CHECK(l.max_console_log >= mkerneld::kMinConsoleLog, "max_console_log %llu",
                static_cast<unsigned long long>(l.max_console_log));
  // Round trip through the JSON form mkctl host status shows.
  boost::json::object o = l.to_json();
  o.erase("source");
  const std::string again = boost::json::serialize(o);
  write_file(file, again.data(), again.size());
  auto r2 = mkerneld::load_limits_file(dir(), mkerneld::Limits{});
  MK_FUZZ_CHECK(r2.has_value(), "its own JSON form refused: %s (%s)", again.c_str(),
                r2 ? "" : r2.error().to_string().c_str());
  MK_FUZZ_CHECK(r2->max_instances == l.max_instances && r2->max_channels_per_instance == l.max_channels_per_instance &&
                    r2->max_handoff_fds == l.max_handoff_fds && r2->max_handoff_blob == l.max_handoff_blob &&
                    r2->max_console_log == l.max_console_log,
                "round trip changed a limit: %s", again.c_str());
  return 0;
}
