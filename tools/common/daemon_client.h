// DOC: mk::tools::call_daemon — mkctl's side of the control socket.
//
// What this is: how a client reaches the mkerneld of a runtime directory:
// connect to <dir>/control.sock, send one rpc::Action as one line, read one
// rpc::Response line. When no daemon is running it starts one (the embedded
// default, DESIGN.md §7) and waits until the daemon says it is serving.
//
// Files of a runtime directory that belong to the daemon:
//   mkerneld.lock   flock(2) held by the running daemon for its whole life;
//                   holds its pid as text (for messages and for tests)
//   control.sock    the control socket, mode 0600
//   mkerneld.log    stderr of an auto-started daemon (appended)
//
// Auto-start (start_daemon):
//   1. find the binary: $MKERNEL_MKERNELD, else `mkerneld` next to the
//      running executable (mkctl and mkerneld install side by side);
//   2. fork; the child leaves mkctl's session (setsid), points stdin at
//      /dev/null and stdout/stderr at mkerneld.log, and execs
//      `mkerneld --runtime-dir DIR --ready-fd 3`;
//   3. mkerneld writes "ready\n" to fd 3 once it listens, or
//      "error: MESSAGE\n" and exits non-zero when it cannot start (a corrupt
//      state file, an unusable directory);
//   4. on "ready" the client connects; the daemon outlives the client.
// Unhappy paths (call_daemon Returns):
//   ENOTCONN   no daemon and auto-start not asked for (host stop);
//   ENOENT     the mkerneld binary was not found (message names the path);
//   the daemon's own error (e.g. EBADMSG "corrupt state file") when it
//              refused to start: the message is the daemon's;
//   ETIMEDOUT  the daemon neither became ready nor answered in time;
//   EACCES     the socket refused us (another user's runtime directory);
//   EPIPE/ECONNRESET/EBADMSG  the daemon died mid-request or answered garbage.
// Two clients racing to auto-start are fine: the loser's mkerneld exits with
// kExitAlreadyRunning and that client connects to the winner.
#pragma once

#include <functional>
#include <string>

#include "mk/result.h"
#include "rpc_protocol.h"

namespace mk::tools {

// mkerneld's exit code when another daemon already owns the runtime directory.
inline constexpr int kExitAlreadyRunning = 3;

inline std::string control_socket_path(const std::string& dir) { return dir + "/control.sock"; }
inline std::string daemon_lock_path(const std::string& dir) { return dir + "/mkerneld.lock"; }
inline std::string daemon_log_path(const std::string& dir) { return dir + "/mkerneld.log"; }

// $MKERNEL_MKERNELD, else "mkerneld" in the directory of /proc/self/exe.
std::string mkerneld_path();

enum class AutoStart { No, Yes };

// Sends `action` to the daemon of `dir` and returns its response (which may
// itself be a failure: the daemon's refusal). An error here is about reaching
// the daemon, see the DOC block. Progress frames the daemon sends before the
// response (rpc::encode_progress; `update` sends one per phase) go to
// `on_progress` as they arrive.
Result<rpc::Response> call_daemon(const std::string& dir, const rpc::Action& action, AutoStart autostart,
                                  const std::function<void(const boost::json::object&)>& on_progress = {});

// Starts mkerneld for `dir` and waits until it serves. EALREADY when another
// daemon won the directory meanwhile (then just connect).
Result<void> start_daemon(const std::string& dir);

}  // namespace mk::tools
