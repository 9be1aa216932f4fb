// DOC: mkerneld::Limits — the daemon's configurable limits (issue #8).
//
// What this is: the bounds mkerneld enforces on what its clients and its
// instances may make it hold: instances in the partition, IPI channels to
// other instances per instance, preserved fds and blob size of a live
// update's handoff package, and the console log kept per instance.
//
// Where they come from, later ones winning:
//   1. the defaults below (docs/daemon.md, "Limits");
//   2. <runtime dir>/limits.json, when it exists: one JSON object whose keys
//      are the names below, each optional (read once at start; a file that
//      does not parse, has an unknown key or a value out of range refuses
//      the start, EINVAL naming the file and the key; it is never changed);
//   3. mkerneld's options --max-instances N, --max-channels-per-instance N,
//      --max-handoff-fds N, --max-handoff-blob BYTES, --max-console-log BYTES.
// `mkctl host status --json` shows them under "limits" (with "source").
#pragma once

#include <cstdint>
#include <string>

#include <boost/json.hpp>

#include "mk/result.h"

namespace mkerneld {

struct Limits {
  uint32_t max_instances = 64;             // instances in the partition (create, plan --apply)
  uint32_t max_channels_per_instance = 63;  // IPI channels to other instances an instance gets at start
  uint32_t max_handoff_fds = 65536;         // preserved fds in one handoff package (live update; the ABI cap)
  uint64_t max_handoff_blob = 16ull << 20;  // bytes of the handover blob in one handoff package (the ABI cap)
  uint64_t max_console_log = 2ull << 20;    // bytes of NAME.log + NAME.log.1 per instance
  std::string source = "defaults";          // "defaults", "limits.json", "options" (what set the last one)

  boost::json::object to_json() const;
};

// Bounds of each limit (inclusive).
inline constexpr uint64_t kMinConsoleLog = 8192;

// Reads <dir>/limits.json over `base` (a missing file: `base` unchanged).
// Returns: EINVAL naming the file and the key (not JSON, not an object,
// unknown key, not a number, out of range); errno of reading it.
mk::Result<Limits> load_limits_file(const std::string& dir, Limits base);
// Sets limit `key` (a key of limits.json) from an option's text value.
// Returns: EINVAL naming the option (not a number, out of range).
mk::Result<void> set_limit(Limits& l, const std::string& key, const std::string& value, const std::string& origin);

}  // namespace mkerneld
