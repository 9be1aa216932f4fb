// DOC: mk::tools::rpc — the control protocol between mkctl and mkerneld.
//
// What this is: the one closed set of things a client may ask the host daemon
// (the Action variant, Firecracker's VmmAction), their JSON wire form, and the
// response envelope. Everything that crosses the control socket is encoded
// and validated here and nowhere else: the daemon never looks at raw JSON.
//
// Wire form (one UTF-8 JSON object per line, '\n' terminated, at most
// kMaxRequestBytes per request):
//   request   {"action": "create", "name": "web", "cpus": "4-7", ...}
//   success   {"ok": true, "result": {...}, "text": "created 'web' ..."}
//   failure   {"ok": false, "error": {"errno": 16, "error": "instance is running",
//                                     "message": "...", "hint": "..."}}
// `result` is exactly the document `mkctl VERB --json` prints; `text` is the
// human rendering, produced next to the data so that every client prints the
// same words whether the work ran in mkerneld or locally (--topology).
//
// Lifecycle of one request:
//   1. the client builds an Action and sends encode_request(action);
//   2. the server reads one line and calls parse_request(line): strict — an
//      unknown action, an unknown field, a missing field or a wrong type is
//      an error naming the field, never a crash and never a partial action;
//   3. the controller executes the Action and builds a Response;
//   4. the server sends encode_response(response); the client decodes it
//      with parse_response().
// Unhappy paths (parse_request/parse_response Returns):
//   EMSGSIZE  the line is longer than kMaxRequestBytes (requests);
//   EBADMSG   not JSON, not an object, or a malformed envelope;
//   EOPNOTSUPP unknown action;
//   EINVAL    unknown field, missing field, wrong type, or a value its parser
//             refuses (cpu list, size, device spec, policy, ...).
#pragma once

#include <boost/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "mk/result.h"
#include "mkernel/partition.h"
#include "mkernel/planner.h"
#include "mkernel/pool.h"

namespace mk::tools::rpc {

inline constexpr std::size_t kMaxRequestBytes = std::size_t{1} << 20;
// Responses carry whole partitions (show); bounded so a confused peer cannot
// make a client allocate without limit.
inline constexpr std::size_t kMaxResponseBytes = std::size_t{64} << 20;

// Set the pool (mkctl init).
struct InitAction {
  PoolRequest request;
};
// Allocate an instance (mkctl create).
struct CreateAction {
  CreateRequest request;
};
// Free an instance (mkctl delete).
struct DeleteAction {
  std::string name;
};
// The pool and every instance, or one (mkctl show).
struct ShowAction {
  std::optional<std::string> name;
};
// Propose instances for a policy; apply = create them (mkctl plan).
struct PlanAction {
  PlanRequest request;
  bool apply = false;
};
// The daemon's pid, runtime directory and uptime (mkctl host status).
struct HostStatusAction {};
// Stop the daemon; instances keep running (mkctl host stop).
struct HostStopAction {};
// Record a kernel image for an instance (mkctl load): validated and hashed.
struct LoadAction {
  std::string name;
  std::string kernel;   // path as the user gave it (the daemon resolves it)
  std::string cmdline;  // <= 4096 bytes
  std::string init;     // <= 4096 bytes
  std::optional<uint32_t> uid;  // run the image as this uid (and gid)
  std::optional<uint32_t> gid;
};
// Boot the loaded image and wait for READY (mkctl start).
struct StartAction {
  std::string name;
  uint32_t timeout_ms = 10000;  // 1..600000
  // Isolation extras (docs/isolation.md), all off by default:
  bool steer_irqs = false;        // IRQ affinities off its CPUs, restored at stop
  bool evict_host_tasks = false;  // move the host's other tasks off its CPUs
  bool exclusive_memory = false;  // v1 cpuset.mem_exclusive on its nodes
};
// Shut down over IPI; force = SIGKILL at once (mkctl stop).
struct StopAction {
  std::string name;
  bool force = false;
  uint32_t grace_ms = 2000;     // tenants' SIGTERM -> SIGKILL, 0..600000
  uint32_t timeout_ms = 5000;   // reply + exit, then SIGKILL; 1..600000
};
// IPI round trips host -> NAME, or FROM -> NAME over their channel (mkctl ping).
struct PingAction {
  std::string name;
  std::optional<std::string> from;
  uint32_t count = 10;  // 1..100000
  uint32_t size = 64;   // payload bytes, 0..4096
};
// The console log (mkctl console; -f follows the file client-side).
struct ConsoleAction {
  std::string name;
};
// Live update in place (mkctl update): pre-boot the successor, hand over,
// roll back on any failure. kernel/cmdline empty = the loaded image's path
// (read again: a rebuilt file is the new kernel) and command line.
struct UpdateAction {
  std::string name;
  std::string kernel;
  std::optional<std::string> cmdline;
  uint32_t timeout_ms = 10000;  // per step, 1..600000
  // Fault injection for tests (docs/handover.md): "" | "corrupt-package" |
  // "host-exit-after-freeze"; staged: "fail:STEP" | "host-exit-after:STEP".
  std::string fault;
  // Staged update by core migration (mkctl update --staged): the new image
  // on spare_cpus (free pool CPUs) or on a CPU taken from the old image.
  bool staged = false;
  std::optional<CpuSet> spare_cpus;  // staged only
};
// Abort the staged update running on NAME (mkctl update --abort NAME): it
// stops at the next step and returns everything to the old image.
struct UpdateAbortAction {
  std::string name;
};
// Per-instance CPU use, IPI rate, memory and state over one interval (mkctl top).
struct TopAction {
  uint32_t interval_ms = 500;  // 50..10000
};
// Fault injection of the CPU moves (tests, docs/cli.md): "" |
// "fail:STEP" (the first step whose name contains STEP fails, e.g.
// "fail:add CPU") | "host-exit-after:STEP" (mkerneld SIGKILLs itself after
// that step; its restart puts every CPU back where the state file says).
// At most 200 bytes.
// Hand one CPU from a running (or stopped) instance to another (mkctl cpu
// move), with the losing image's consent.
struct CpuMoveAction {
  uint32_t cpu = 0;
  std::string from;
  std::string to;
  uint32_t timeout_ms = 5000;  // per image request, 1..600000
  std::string fault;
};
// Grow or shrink an instance's CPUs (mkctl update NAME --cpus LIST).
struct ResizeAction {
  std::string name;
  CpuSet cpus;
  uint32_t timeout_ms = 5000;  // per image request, 1..600000
  std::string fault;
};

// Add or remove memory regions or devices of an instance, running or not
// (mkctl update NAME --memory LIST | --device SPEC...): exactly one of the
// two lists, each the instance's whole list after the change.
struct ResourcesAction {
  std::string name;
  std::optional<std::vector<MemorySpec>> memory;
  std::optional<std::vector<DeviceSpec>> devices;  // may be empty: no device but the console
  uint32_t timeout_ms = 5000;  // per image request, 1..600000
  std::string fault;           // fail:STEP | host-exit-after:STEP, as for resize
};

using Action = std::variant<InitAction, CreateAction, DeleteAction, ShowAction, PlanAction, HostStatusAction,
                            HostStopAction, LoadAction, StartAction, StopAction, PingAction, ConsoleAction,
                            TopAction, UpdateAction, CpuMoveAction, ResizeAction, UpdateAbortAction,
                            ResourcesAction>;

// The wire name of an action ("init", "create", ..., "host-stop", "load", ...,
// "cpu-move", "resize", "update-abort").
const char* action_name(const Action& a);
// True for actions that change the partition (they take the state lock for
// writing when run locally and are persisted by the daemon).
bool changes_partition(const Action& a);
// True for the lifecycle actions (load ... top): only mkerneld runs them;
// there is no local (--topology) form.
bool is_lifecycle(const Action& a);

// An error as it crosses the socket: the fields of mk::Error plus a hint.
struct WireError {
  int errnum = 0;
  std::string error;    // failure class (mk::Error::what)
  std::string message;  // specifics (mk::Error::message)
  std::string hint;     // what to do, may be empty

  static WireError from(const Error& e, std::string hint = "");
  // "error: message", or "error" when there are no specifics (as Error::to_string).
  std::string to_string() const;
};

struct Response {
  bool ok = false;
  boost::json::object result;  // ok: the --json document
  std::string text;            // ok: the human rendering
  WireError error;             // !ok

  static Response success(boost::json::object result, std::string text);
  static Response failure(const Error& e, std::string hint = "");
};

// Encoding never fails; the result has no trailing newline.
std::string encode_request(const Action& a);
std::string encode_response(const Response& r);

Result<Action> parse_request(std::string_view line);

// Progress frames: lines a long action (update) sends before its response,
// {"progress": {...}}. parse_progress: the inner object, or nullopt when
// the line is not a progress frame (then it is the response).
std::string encode_progress(const boost::json::object& progress);
std::optional<boost::json::object> parse_progress(std::string_view line);
Result<Response> parse_response(std::string_view line);

}  // namespace mk::tools::rpc
