// DOC: mkctl's per-call context — global options, topology, state, output.
//
// What this is: what every verb shares. A verb (commands/<verb>.cc) parses
// its own options with Boost.Program_options (add_global_options() adds
// --json and --topology to each), asks the context for the topology and the
// state store, does its work through the mkernel library, and reports with
// emit() / fail(). Output is human text by default and one JSON document
// with --json (errors too: {"error": {...}} on stdout, message on stderr).
//
// Exit codes: 0 success, 1 the operation was refused or failed, 2 bad
// command line (message says what was wrong and points at --help).
#pragma once

#include <boost/json.hpp>
#include <boost/program_options.hpp>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "mk/result.h"
#include "mkernel/topology.h"
#include "rpc_protocol.h"
#include "state_store.h"

namespace mkctl {

namespace po = boost::program_options;

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;

class Context {
 public:
  Context(std::string verb, std::vector<std::string> args) : verb_(std::move(verb)), args_(std::move(args)) {}

  // Adds --json, --topology FILE and --help to a verb's options.
  void add_global_options(po::options_description& desc);
  // Parses args_ against desc (+ positionals). On error prints usage and
  // returns false; `exit_code` then holds the code to return.
  bool parse(const po::options_description& desc, const po::positional_options_description& pos,
             po::variables_map& vm, const char* usage_line, int& exit_code);

  bool json() const { return json_; }
  bool planning_only() const { return topology_file_.has_value(); }
  std::string topology_source() const { return topology_file_ ? *topology_file_ : "live"; }

  // The live machine, or the --topology XML (loaded once per call).
  mk::Result<mk::Topology> topology();
  mk::Result<mk::tools::StateStore> open_state(mk::tools::StateStore::Mode mode);

  // Runs a partition action where it belongs (see above). Failures to reach
  // the daemon come back as failure responses with a hint.
  mk::tools::rpc::Response execute(const mk::tools::rpc::Action& action);
  // A lifecycle action whose progress frames go to `on_progress` as the
  // daemon sends them (mkctl update).
  mk::tools::rpc::Response execute(const mk::tools::rpc::Action& action,
                                   const std::function<void(const boost::json::object&)>& on_progress);
  // Prints a response as emit() or fail() would; returns the exit code.
  int finish(const mk::tools::rpc::Response& r);

  // Success: prints `text` (human) or `doc` (--json). Returns kExitOk.
  int emit(const boost::json::object& doc, const std::string& text);
  // Failure: prints the error (and a hint) and returns kExitFailed.
  int fail(const mk::Error& e, const std::string& hint = "");
  int fail(const mk::tools::rpc::WireError& e);
  // Command-line error: returns kExitUsage.
  int usage_error(const std::string& message);

  const std::string& verb() const { return verb_; }

 private:
  std::string verb_;
  std::vector<std::string> args_;
  bool json_ = false;
  std::optional<std::string> topology_file_;
  std::optional<mk::Topology> topology_;
};

// Renders warnings as "warning: ..." lines.
std::string warning_lines(const std::vector<std::string>& w);

}  // namespace mkctl
