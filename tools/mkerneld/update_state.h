// DOC: mkerneld's live-update status of an instance (issue #5): where an
// update is in the state machine and how the last one ended.
//
// What this is: the values `mkctl show` reports under "update" and their
// forms — JSON, one line of text, and the file that keeps the last update
// across daemon restarts.
//   state   normal → prepared → frozen → updated → normal, as
//           mk::UpdateRequest::on_state reports it (a cancel goes back to
//           normal from prepared or frozen);
//   last    when the last update ended (ISO-8601 UTC), its id, the kernel
//           it tried, its outcome ("updated", "rolled back", or "failed":
//           the instance could not be kept running), the blackout if the
//           freeze was reached, and why it rolled back.
// Files: <runtime dir>/last-update/NAME.json, written atomically once an
// update ended (never inside it) and removed with the instance. The
// partition's state file stays as it is: its Instance record belongs to
// mkernel/ (see the issue #5 notes in docs/daemon.md).
// Unhappy paths: a file that is not valid JSON of this shape is EBADMSG
// naming the field (the daemon then moves it aside and shows no last
// update); a write that fails returns the errno of the step.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "mk/result.h"

namespace mkerneld {

enum class UpdateState { Normal, Prepared, Frozen, Updated };

const char* to_string(UpdateState s);
// The names on_state passes; nullopt for anything else.
std::optional<UpdateState> parse_update_state(std::string_view s);

struct LastUpdate {
  std::string when;     // ISO-8601 UTC, second resolution: "2026-11-30T18:40:12Z"
  uint32_t update_id = 0;
  std::string kernel;   // the image the update tried
  std::string outcome;  // "updated" | "rolled back" | "failed"
  std::optional<double> blackout_ms;
  std::string cause;     // why it did not update ("" when updated)
  std::string rollback;  // how it rolled back ("" when updated)
};

// The current wall-clock time in LastUpdate::when's form.
std::string utc_now_iso8601();

boost::json::object last_update_to_json(const LastUpdate& u);
// Returns: EBADMSG naming the field that is missing, of the wrong type or
// out of range (unknown outcome, a `when` that is not ...Z, a negative
// blackout).
mk::Result<LastUpdate> last_update_from_json(const boost::json::value& v);
// One line without a newline, e.g.
//   "2026-11-30T18:40:12Z updated, blackout 0.812 ms (update 3, /usr/lib/mk-kernel)"
//   "2026-11-30T18:40:15Z rolled back, blackout 3001.2 ms (update 4, ...): CAUSE; ROLLBACK"
std::string last_update_text(const LastUpdate& u);

// <dir>/last-update/NAME.json.
std::string last_update_path(const std::string& dir, const std::string& name);
mk::Result<void> save_last_update(const std::string& dir, const std::string& name, const LastUpdate& u);
// nullopt when there is no file. Returns: EBADMSG (see last_update_from_json,
// or not JSON at all), the errno of a read that failed.
mk::Result<std::optional<LastUpdate>> load_last_update(const std::string& dir, const std::string& name);

}  // namespace mkerneld
