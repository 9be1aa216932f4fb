// mkctl's (and mkerneld's) bad command lines, as a table (issue #8). Each
// row is an argv, the exit code docs/cli.md promises (2 malformed command
// line, 1 refused), a piece of stderr that names what was wrong, and:
// stdout empty (with --json: exactly one {"error": {errno, error, message}}
// document), and every state file in the runtime directory byte-identical
// before and after (nothing changed on failure). Every third row also runs
// with --json appended unless the row says otherwise.
//
// Live rows go to a real mkerneld in a private runtime directory holding a
// pool (CPU 1, 64 MiB) and an instance 'a' (loaded with mk-kernel, never
// started: no row may boot anything); --topology rows plan against the
// recorded Raptor Lake with a pool and an instance 'db'.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cstdlib>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct CliRun {
  int code = -1;
  std::string out, err;
};

// Runs `bin` with exactly `argv` (no shell: empty and non-ASCII arguments
// arrive as they are) and the extra environment; kills it after 30 s.
CliRun run_argv(const fs::path& dir, const std::string& bin, const std::vector<std::string>& args,
             const std::vector<std::string>& env) {
  const fs::path out = dir / "row.out", err = dir / "row.err";
  pid_t pid = ::fork();
  if (pid == 0) {
    int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int n = ::open("/dev/null", O_RDONLY);
    if (o < 0 || e < 0 || n < 0) ::_exit(126);
    ::dup2(n, 0);
    ::dup2(o, 1);
    ::dup2(e, 2);
    for (const auto& kv : env) ::putenv(const_cast<char*>(kv.c_str()));
    std::vector<char*> v;
    v.push_back(const_cast<char*>(bin.c_str()));
    for (const auto& a : args) v.push_back(const_cast<char*>(a.c_str()));
    v.push_back(nullptr);
    ::execv(bin.c_str(), v.data());
    ::_exit(127);
  }
  CliRun r;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  int st = 0;
  for (;;) {
    pid_t w = ::waitpid(pid, &st, WNOHANG);
    if (w == pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &st, 0);
      r.err = "<killed after 30 s>";
      return r;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

struct Row {
  std::vector<std::string> argv;
  int code;           // 2 usage, 1 refused
  std::string names;  // stderr must contain this
  bool json = true;   // also run with --json appended
};

const std::string kTopo = std::string(MK_TEST_DATA) + "/topologies/Intel-RaptorLake-Corei7-1370P.xml";

class CliBadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    // In an ASan build mkctl skips its leak check by default (tools/mkctl/
    // main.cc): every error path of this table gets it.
    const char* asan = std::getenv("ASAN_OPTIONS");
    ::setenv("ASAN_OPTIONS", (std::string(asan ? asan : "") + ":detect_leaks=1").c_str(), 1);
    dir = fs::path("/tmp") / ("mk-sec-cli-" + std::to_string(::getpid()) + "-" +
                              ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
    rt = dir / "rt";
    env = {"MKERNEL_RUNTIME_DIR=" + rt.string()};
  }
  void TearDown() override {
    if (pid_t pid = daemon_pid(); pid > 0) {
      ::kill(pid, SIGTERM);
      for (int i = 0; i < 200 && ::waitpid(pid, nullptr, WNOHANG) == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    fs::remove_all(dir);
  }
  pid_t daemon_pid() {
    int fd = ::open((rt / "mkerneld.lock").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    bool held = ::flock(fd, LOCK_EX | LOCK_NB) != 0;
    ::close(fd);
    return held ? static_cast<pid_t>(std::atoi(slurp(rt / "mkerneld.lock").c_str())) : 0;
  }
  CliRun mkctl(const std::vector<std::string>& args) { return run_argv(dir, std::string(MK_BIN_DIR) + "/mkctl", args, env); }
  // Every file of the runtime directory but the daemon's log and the
  // console logs, by relative path: what "nothing changed" is checked on.
  std::map<std::string, std::string> snapshot() {
    std::map<std::string, std::string> s;
    for (const auto& e : fs::recursive_directory_iterator(rt)) {
      const std::string rel = fs::relative(e.path(), rt).string();
      if (rel == "mkerneld.log" || rel.rfind("console", 0) == 0) continue;
      s[rel] = e.is_regular_file() ? slurp(e.path()) : std::string("<") + (e.is_directory() ? "dir" : "other") + ">";
    }
    return s;
  }
  // Checks one row (and, for every third row that allows it, its --json
  // twin: the error document is one code path, and each mkctl run costs a
  // quarter second under ASan); counts the runs in `runs`.
  int checked = 0;  // rows checked so far (picks the --json twins)
  void check(const Row& row, const std::vector<std::string>& suffix) {
    const bool twin = row.json && (checked++ % 3 == 0);
    for (int json_variant = 0; json_variant < (twin ? 2 : 1); ++json_variant) {
      std::vector<std::string> args = row.argv;
      args.insert(args.end(), suffix.begin(), suffix.end());
      if (json_variant) args.push_back("--json");
      std::string shown = "mkctl";
      for (const auto& a : args) shown += " '" + a + "'";
      SCOPED_TRACE(shown);
      const auto before = snapshot();
      const CliRun r = mkctl(args);
      ++runs;
      EXPECT_EQ(r.code, row.code) << "stderr: " << r.err << "stdout: " << r.out;
      EXPECT_NE(r.err.find(row.names), std::string::npos) << "stderr does not name '" << row.names << "': " << r.err;
      EXPECT_EQ(r.err.find("internal error"), std::string::npos) << r.err;
      // --json anywhere on the line (also when an option swallowed it as its
      // value): stdout is the error document; otherwise stdout is empty.
      if (std::find(args.begin(), args.end(), "--json") != args.end()) expect_error_document(r);
      else EXPECT_EQ(r.out, "") << "stdout of a failure must be empty";
      EXPECT_EQ(snapshot(), before) << "the runtime directory changed";
    }
  }
  static void expect_error_document(const CliRun& r) {
    boost::system::error_code ec;
    json::value v = json::parse(r.out, ec);
    ASSERT_FALSE(ec) << "--json: stdout is not one JSON document: '" << r.out << "'";
    ASSERT_TRUE(v.is_object() && v.as_object().contains("error") && v.as_object().at("error").is_object()) << r.out;
    EXPECT_EQ(v.as_object().size(), 1u) << r.out;
    const json::object& e = v.as_object().at("error").as_object();
    EXPECT_TRUE(e.contains("errno") && e.at("errno").is_int64() && e.at("errno").as_int64() > 0) << r.out;
    EXPECT_TRUE(e.contains("error") && e.at("error").is_string()) << r.out;
    ASSERT_TRUE(e.contains("message") && e.at("message").is_string()) << r.out;
    // The document says what stderr says.
    EXPECT_NE(r.err.find(std::string(e.at("message").as_string())), std::string::npos) << r.out << r.err;
  }
  int runs = 0;
  fs::path dir, rt;
  std::vector<std::string> env;
};

std::vector<std::string> words(const std::string& s) {
  std::vector<std::string> v;
  std::istringstream in(s);
  for (std::string w; in >> w;) v.push_back(w);
  return v;
}

Row R(const std::string& args, int code, const std::string& names, bool with_json = true) {
  return {words(args), code, names, with_json};
}

// Rows against the live machine's daemon (instance 'a' exists, loaded, stopped).
std::vector<Row> live_rows() {
  const std::string long_name(64, 'x');
  const std::string kernel = std::string(MK_BIN_DIR) + "/mk-kernel";
  std::vector<Row> rows = {
      // --- unknown options, missing values, stray arguments (every verb)
      R("create b --cpus 1 --memory 2M --bogus", 2, "unrecognised option '--bogus'"),
      R("init --cpus 1 --frobnicate", 2, "unrecognised option '--frobnicate'"),
      R("delete a --force", 2, "unrecognised option '--force'"),
      R("load a --kernel /bin/true --image x", 2, "unrecognised option '--image'"),
      R("start a --now", 2, "unrecognised option '--now'"),
      R("stop a --hard", 2, "unrecognised option '--hard'"),
      R("ping a --flood", 2, "unrecognised option '--flood'"),
      R("console a --tail", 2, "unrecognised option '--tail'"),
      R("top --once", 2, "unrecognised option '--once'"),
      R("show --all", 2, "unrecognised option '--all'"),
      R("update a --dry-run", 2, "unrecognised option '--dry-run'"),
      R("cpu move 1 --from a --to b --force", 2, "unrecognised option '--force'"),
      R("plan --policy even --instances 1 --spread", 2, "unrecognised option '--spread'"),
      R("host status --verbose", 2, "unrecognised option '--verbose'"),
      R("topology --cpus 1", 2, "unrecognised option '--cpus'"),
      R("create b --cpus --memory 2M", 2, "argument for option '--cpus' is missing"),
      R("create b --memory 2M --cpus", 2, "argument for option '--cpus' is missing", false),
      R("create b --cpus 1 --memory", 2, "argument for option '--memory' is missing", false),
      R("create b --cpus 1 --memory 2M --device", 2, "argument for option '--device' is missing", false),
      R("init --cpus --memory 2M", 2, "argument for option '--cpus' is missing"),
      R("load a --kernel", 2, "argument for option '--kernel' is missing", false),
      R("start a --timeout", 2, "argument for option '--timeout' is missing", false),
      R("ping a --from", 2, "argument for option '--from' is missing", false),
      R("update a --cpus", 2, "argument for option '--cpus' is missing", false),
      R("plan --policy", 2, "argument for option '--policy' is missing", false),
      R("show a --dtb", 2, "argument for option '--dtb' is missing", false),
      R("create", 2, "missing the instance NAME"),
      R("create b --memory 2M", 2, "exactly one of --cpus LIST and --cpu-count N"),
      R("create b --cpus 1", 2, "missing --memory SIZE"),
      R("delete", 2, "missing the instance NAME"),
      R("delete a b", 2, "unexpected argument 'b'"),
      R("load", 2, "missing the instance NAME"),
      R("load a", 2, "missing --kernel IMAGE"),
      R("start", 2, "missing the instance NAME"),
      R("start a b", 2, "unexpected argument 'b'"),
      R("stop", 2, "missing the instance NAME"),
      R("ping", 2, "missing the instance NAME"),
      R("console", 2, "missing the instance NAME"),
      R("show a b", 2, "unexpected argument 'b'"),
      R("update", 2, "missing the instance NAME"),
      R("top extra", 2, "unexpected argument 'extra'"),
      R("init extra", 2, "unexpected argument 'extra'"),
      R("topology extra", 2, "unexpected argument 'extra'"),
      R("plan even", 2, "unexpected argument 'even'"),
      R("host", 2, "missing what to do: stop or status"),
      R("host reboot", 2, "unknown host command 'reboot'"),
      R("host status now", 2, "unexpected argument 'now'"),
      R("cpu", 2, "missing what to do: move"),
      R("cpu jump 1", 2, "unknown cpu command 'jump'"),
      R("cpu move", 2, "missing the CPU to move"),
      R("cpu move 1", 2, "give both --from NAME and --to NAME"),
      R("cpu move 1 --to a", 2, "give both --from NAME and --to NAME"),
      R("cpu move 1 --from a --to b extra", 2, "unexpected argument 'extra'"),
      R("stop a --force=yes", 2, "'--force' does not take any arguments"),
      R("create b --cpus 1 --memory 2M --json --json", 2, "'--json' cannot be specified more than once", false),
      R("show --topology", 2, "argument for option '--topology' is missing", false),
      R("show --json=yes", 2, "'--json' does not take any arguments", false),
      R("show --json --topology", 2, "argument for option '--topology' is missing", false),
      R("host status --json --json", 2, "'--json' cannot be specified more than once", false),
      R("delete --json", 2, "missing the instance NAME", false),
      // --- bad CPU lists
      R("create b --cpus 1- --memory 2M", 2, "'1-': expected a CPU number"),
      R("create b --cpus 3-1 --memory 2M", 2, "'3-1': range end is below its start"),
      R("create b --cpus x --memory 2M", 2, "'x' is not a CPU number"),
      R("create b --cpus 99999 --memory 2M", 2, "cpu 99999 is beyond the maximum"),
      R("create b --cpus -1 --memory 2M", 2, "--cpus"),
      R("create b --cpus 0-3:0 --memory 2M", 2, "--cpus"),
      R("create b --cpus 1,,2 --memory 2M", 2, "--cpus"),
      R("init --cpus 3-1", 2, "'3-1': range end is below its start"),
      R("init --cpus 1-x", 2, "--cpus"),
      R("update a --cpus 3-1", 2, "'3-1': range end is below its start"),
      R("update a --staged --spare-cpus 9-", 2, "--spare-cpus"),
      R("cpu move x --from a --to b", 2, "one OS CPU number, not 'x'"),
      R("cpu move 1-2 --from a --to b", 2, "one OS CPU number, not '1-2'"),
      R("cpu move 99999 --from a --to b", 2, "one OS CPU number, not '99999'"),
      R("init --cpus 5", 1, "cpu 5 does not exist"),
      R("create b --cpus 0 --memory 2M", 1, "cpu 0 is the host's"),
      R("create b --cpus 1 --memory 2M", 1, "cpu 1 already belongs to instance 'a'"),
      R("update a --cpus 0", 1, "cpu 0 is the host's"),
      // --- bad sizes
      R("create b --cpus 1 --memory 12Q", 2, "'12Q': unknown unit"),
      R("create b --cpus 1 --memory -1M", 2, "'-1M' does not start with a number"),
      R("create b --cpus 1 --memory 99999999999999999999999G", 2, "above the 4 EiB limit"),
      R("create b --cpus 1 --memory 17179869184G", 2, "above the 4 EiB limit"),
      R("create b --cpus 1 --memory 0", 2, "size must be above zero"),
      R("create b --cpus 1 --memory 2M@x", 2, "node after '@' must be a NUMA node number"),
      R("create b --cpus 1 --memory 2M,4M", 2, "one SIZE[@NODE] per --memory"),
      R("init --memory lots", 2, "--memory"),
      R("init --memory 1M@0,2M", 2, "one SIZE[@NODE] per --memory"),
      R("update a --memory 12Q", 2, "'12Q': unknown unit"),
      R("update a --memory 2M,,4M", 2, "empty size"),
      R("plan --policy even --instances 1 --memory 1X", 2, "--memory"),
      R("create b --cpus 1 --memory 1000", 1, "cpu 1 already belongs"),
      R("update a --memory 2M@7", 1, "NUMA node 7 does not exist"),
      R("init --cpus 1 --memory 2M@5", 1, "NUMA node 5 does not exist"),
      // --- numbers: signs, overflow, non-numbers, ranges
      R("create b --cpu-count -1 --memory 2M", 2, "('-1') for option '--cpu-count' is invalid"),
      R("create b --cpu-count 0 --memory 2M", 2, "--cpu-count must be at least 1"),
      R("create b --cpu-count 99999999999 --memory 2M", 2, "('99999999999') for option '--cpu-count' is invalid"),
      R("create b --cpu-count 1 --numa -1 --memory 2M", 2, "('-1') for option '--numa' is invalid"),
      R("create b --cpus 1 --memory 2M --id -1", 2, "('-1') for option '--id' is invalid"),
      R("create b --cpus 1 --memory 2M --id x", 2, "('x') for option '--id' is invalid"),
      R("create b --cpu-count 1 --memory 2M --id 0", 1, "id 0 is outside 1..511"),
      R("create b --cpu-count 1 --memory 2M --id 512", 1, "id 512 is outside 1..511"),
      R("start a --timeout -5", 2, "('-5') for option '--timeout' is invalid"),
      R("start a --timeout 0", 2, "--timeout must be 1..600000"),
      R("start a --timeout 600001", 2, "--timeout must be 1..600000"),
      R("start a --timeout x", 2, "('x') for option '--timeout' is invalid"),
      R("stop a --grace -1", 2, "('-1') for option '--grace' is invalid"),
      R("stop a --grace 700000", 2, "--grace must be 0..600000"),
      R("stop a --timeout 0", 2, "--timeout must be 1..600000"),
      R("stop a --timeout abc", 2, "('abc') for option '--timeout' is invalid"),
      R("ping a --count 0", 2, "--count must be 1..100000"),
      R("ping a --count 100001", 2, "--count must be 1..100000"),
      R("ping a -c -1", 2, "('-1') for option '--count' is invalid"),
      R("ping a --size 4097", 2, "--size must be 0..4096"),
      R("ping a --size -1", 2, "('-1') for option '--size' is invalid"),
      R("top --interval 49", 2, "--interval must be 50..10000"),
      R("top --interval 10001", 2, "--interval must be 50..10000"),
      R("top --interval -1", 2, "('-1') for option '--interval' is invalid"),
      R("update a --timeout 0", 2, "--timeout: seconds, 0.001..600"),
      R("update a --timeout -1", 2, "--timeout: seconds, 0.001..600"),
      R("update a --timeout nan", 2, "--timeout: seconds, 0.001..600"),
      R("update a --timeout 1e9", 2, "--timeout: seconds, 0.001..600"),
      R("cpu move 1 --from a --to b --timeout 0", 2, "--timeout: seconds, 0.001..600"),
      R("plan --policy even --instances -2", 2, "('-2') for option '--instances' is invalid"),
      // --- bad names (refusals: docs/cli.md "bad or taken name": exit 1)
      R("create " + long_name + " --cpu-count 1 --memory 2M", 1, "is longer than 63 characters"),
      R("create ../x --cpu-count 1 --memory 2M", 1, "'../x' must start with a letter or digit"),
      R("create a/b --cpu-count 1 --memory 2M", 1, "bad instance name"),
      R("create a --cpu-count 1 --memory 2M", 1, "an instance named 'a' already exists"),
      R("delete nope", 1, "no instance named 'nope'"),
      R("delete ../state", 1, "no instance named '../state'"),
      R("load nope --kernel " + kernel, 1, "no such instance: 'nope'"),
      R("start nope", 1, "no such instance: 'nope'"),
      R("stop nope", 1, "no such instance: 'nope'"),
      R("ping nope", 1, "no such instance: 'nope'"),
      R("console nope", 1, "no such instance: 'nope'"),
      R("console ../../../../etc/passwd", 1, "no such instance: '../../../../etc/passwd'"),
      R("show nope", 1, "no instance named 'nope'"),
      R("update nope", 1, "no such instance: 'nope'"),
      R("update nope --staged", 1, "no such instance: 'nope'"),
      R("update nope --abort", 1, "no such instance: 'nope'"),
      R("update nope --cpus 1", 1, "no instance 'nope'"),
      R("update nope --memory 2M", 1, "no instance 'nope'"),
      R("update nope --device none", 1, "no instance 'nope'"),
      R("cpu move 1 --from nope --to a", 1, "no instance 'nope'"),
      R("cpu move 1 --from a --to a", 1, "'a' is both the source and the target"),
      // --- bad device specs
      R("create b --cpu-count 1 --memory 2M --device gpu:0", 2, "'gpu:0': unknown device kind"),
      R("create b --cpu-count 1 --memory 2M --device listen:1.2.3.4", 2, "missing :PORT"),
      R("create b --cpu-count 1 --memory 2M --device listen:127.0.0.1:99999", 2, "port must be 1-65535"),
      R("create b --cpu-count 1 --memory 2M --device listen:127.0.0.1:0", 2, "port must be 1-65535"),
      R("create b --cpu-count 1 --memory 2M --device listen:localhost:80", 2, "numeric IPv4 or IPv6"),
      R("create b --cpu-count 1 --memory 2M --device file:", 2, "file path must be absolute"),
      R("create b --cpu-count 1 --memory 2M --device file:relative", 2, "file path must be absolute"),
      R("create b --cpu-count 1 --memory 2M --device net:", 2, "device name must be 1-15 characters"),
      R("create b --cpu-count 1 --memory 2M --device net:waytoolonginterfacename", 2, "device name must be 1-15"),
      R("create b --cpu-count 1 --memory 2M --device block:a/b", 2, "without '/'"),
      R("update a --device gpu:1", 2, "'gpu:1': unknown device kind"),
      R("update a --device none none", 2, "--device none stands alone"),
      R("update a --device block:nosuch", 1, "device 'nosuch' is not in the pool"),
      R("init --cpus 1 --devices nosuchdev", 1, "device 'nosuchdev' is not on this machine"),
      // --- conflicting options
      R("create b --cpus 1 --cpu-count 1 --memory 2M", 2, "exactly one of --cpus LIST and --cpu-count N"),
      R("create b --cpus 1 --spread --memory 2M", 2, "go with --cpu-count, not --cpus"),
      R("create b --cpus 1 --kind efficiency --memory 2M", 2, "go with --cpu-count, not --cpus"),
      R("create b --cpu-count 1 --kind fast --memory 2M", 2, "--kind: 'fast'"),
      R("update a --cpus 1 --staged", 2, "--staged updates its image: one at a time"),
      R("update a --cpus 1 --kernel " + kernel, 2, "--kernel/--cmdline update its image: one at a time"),
      R("update a --memory 2M --device none", 2, "--memory and --device: one at a time"),
      R("update a --memory 2M --cpus 1", 2, "one at a time"),
      R("update a --spare-cpus 1", 2, "--spare-cpus goes with --staged"),
      R("update a --abort --staged", 2, "--abort NAME takes nothing else"),
      R("update a --kernel", 2, "argument for option '--kernel' is missing", false),
      R("update a --fault bogus", 2, "--fault: 'bogus'"),
      R("update a --staged --fault bogus", 2, "--fault: 'bogus'"),
      R("update a --cpus 1 --fault weird", 2, "--fault: 'weird'"),
      R("update a --memory 2M --fault fail:", 2, "--fault: 'fail:'"),
      R("cpu move 1 --from a --to b --fault zzz", 2, "--fault: 'zzz'"),
      R("show --dtb /tmp/x.dtb", 2, "--dtb needs an instance NAME"),
      R("show a --picture /tmp/x.png", 2, "--picture draws the whole partition"),
      R("show --picture /tmp/x.gif", 2, "must end in .png or .svg"),
      R("console a -f --json", 2, "-f streams text; it does not combine with --json", false),
      R("host status --topology " + kTopo, 2, "--topology does not apply"),
      R("cpu move 1 --from a --to b --topology " + kTopo, 2, "--topology does not apply"),
      R("update a --cpus 1 --topology " + kTopo, 2, "--topology does not apply"),
      R("start a --topology " + kTopo, 1, "--topology only plans"),
      R("stop a --topology " + kTopo, 1, "--topology only plans"),
      R("ping a --topology " + kTopo, 1, "--topology only plans"),
      R("load a --kernel /bin/true --topology " + kTopo, 1, "--topology only plans"),
      R("topology --topology /nonexistent.xml", 1, "'/nonexistent.xml': No such file or directory"),
      R("topology --topology /etc/passwd", 1, "not a valid hwloc 2.x XML topology"),
      // --- load: bad images and users
      R("load a --kernel /nonexistent", 1, "'/nonexistent': no such file"),
      R("load a --kernel /etc/passwd", 1, "'/etc/passwd' is not executable"),
      R("load a --kernel /bin/sh-not-there", 1, "no such file"),
      R("load a --kernel /tmp", 1, "/tmp"),
      R("load a --kernel " + kernel + " --user nosuchuser", 2, "no user named 'nosuchuser'"),
      R("load a --kernel " + kernel + " --user :x", 2, "no user before ':'"),
      R("load a --kernel " + kernel + " --user root:nosuchgroup", 2, "no group named 'nosuchgroup'"),
      // --- state-dependent refusals (nothing runs)
      R("stop a", 1, "'a' is loaded"),
      R("ping a", 1, "instance is not running"),
      R("update a", 1, "instance is not running"),
      R("update a --staged", 1, "not running"),
      R("update a --abort", 1, "a"),
      R("plan --policy even", 1, "even needs --instances N"),
      R("plan --policy even --instances 0", 1, "--instances must be 1..511"),
      R("plan --policy random", 2, "'random' is not a policy"),
      R("plan", 2, "missing --policy"),
      R("plan --policy pe-split --kinds 0", 2, "declare at least two kinds"),
      R("plan --policy pe-split --kinds 3-1:0", 2, "range end is below its start"),
  };
  // Non-ASCII, empty and control-character names go in as single arguments.
  rows.push_back({{"create", "\xc3\xa9t\xc3\xa9", "--cpu-count", "1", "--memory", "2M"}, 1, "must start with a letter or digit"});
  rows.push_back({{"create", "", "--cpu-count", "1", "--memory", "2M"}, 1, "an instance name cannot be empty"});
  rows.push_back({{"create", "b\nc", "--cpu-count", "1", "--memory", "2M"}, 1, "bad instance name"});
  rows.push_back({{"create", "b c", "--cpu-count", "1", "--memory", "2M"}, 1, "bad instance name"});
  rows.push_back({{"create", "\xff\xfe", "--cpu-count", "1", "--memory", "2M"}, 2, "'\\xff\\xfe' is not valid UTF-8"});
  rows.push_back({{"load", "a", "--kernel", "/tmp/\xc3("}, 2, "'/tmp/\\xc3(' is not valid UTF-8"});
  rows.push_back({{"show", "\xed\xa0\x80"}, 2, "is not valid UTF-8"});
  rows.push_back({{"show", "\xc3\xa9t\xc3\xa9"}, 1, "no instance named"});
  rows.push_back({{"delete", ""}, 1, "no instance named ''"});
  rows.push_back({{"load", "a", "--kernel", ""}, 2, "--kernel: empty path"});
  rows.push_back({{"update", "a", "--kernel", ""}, 2, "--kernel: empty path"});
  rows.push_back({{"create", "b", "--cpus", "", "--memory", "2M"}, 2, "--cpus"});
  rows.push_back({{"create", "b", "--cpus", "1", "--memory", ""}, 2, "empty size"});
  rows.push_back({{"update", "a", "--cpus", ""}, 2, "--cpus"});
  rows.push_back({{"update", "a", "--staged", "--spare-cpus", ""}, 2, "--spare-cpus"});
  return rows;
}

// The live daemon's runtime directory with a pool and a loaded instance 'a'.
TEST_F(CliBadInput, LiveRowsExitAsDocumentedNameTheProblemAndChangeNothing) {
  CliRun i = mkctl({"init", "--cpus", "1", "--memory", "64M"});
  ASSERT_EQ(i.code, 0) << i.err;
  CliRun c = mkctl({"create", "a", "--cpus", "1", "--memory", "32M"});
  ASSERT_EQ(c.code, 0) << c.err;
  CliRun l = mkctl({"load", "a", "--kernel", std::string(MK_BIN_DIR) + "/mk-kernel"});
  ASSERT_EQ(l.code, 0) << l.err;
  const pid_t daemon = daemon_pid();
  ASSERT_GT(daemon, 0);
  ASSERT_TRUE(fs::exists(rt / "state.json"));
  const std::string state = slurp(rt / "state.json");
  const std::vector<Row> rows = live_rows();
  for (const Row& row : rows) check(row, {});
  // Nothing changed, and the daemon that answered them all is still the
  // same one and still serves.
  EXPECT_EQ(slurp(rt / "state.json"), state);
  EXPECT_EQ(daemon_pid(), daemon);
  CliRun s = mkctl({"show", "a", "--json"});
  EXPECT_EQ(s.code, 0) << s.err;
  EXPECT_NE(s.out.find("\"state\":\"loaded\""), std::string::npos) << s.out;
  std::printf("[ table ] %zu live rows, %d mkctl runs\n", rows.size(), runs);
  EXPECT_GE(rows.size(), 100u);
}

// --topology: mkctl plans itself, the state is topo/NAME-HASH.json.
TEST_F(CliBadInput, TopologyRowsChangeNothing) {
  ASSERT_EQ(mkctl({"init", "--cpus", "2-19", "--memory", "8G@0", "--topology", kTopo}).code, 0);
  ASSERT_EQ(mkctl({"create", "db", "--cpus", "4-7", "--memory", "1G", "--topology", kTopo}).code, 0);
  const std::vector<Row> rows = {
      R("create web --cpus 5-8 --memory 1G", 1, "cpu 5 already belongs to instance 'db' (cpus 4-7)"),
      R("create web --cpus 0 --memory 1G", 1, "cpu 0 is the host's"),
      R("create web --cpus 40 --memory 1G", 1, "cpu 40 does not exist"),
      R("create web --cpus 8 --memory 100G", 1, "100 GiB asked on node 0 but the pool has 7 GiB free"),
      R("create web --cpus 8 --memory 1000", 1, "page"),
      R("create web --cpus 8 --memory 1G@3", 1, "NUMA node 3 does not exist"),
      R("create web --cpu-count 99 --memory 1G", 1, "not enough free cpus"),
      R("create web --cpu-count 1 --kind 7 --memory 1G", 1, "kind"),
      R("create db --cpus 8 --memory 1G", 1, "an instance named 'db' already exists"),
      R("create web --cpus 8 --memory 1G --id 1", 1, "id 1"),
      R("create web --cpus 8 --memory 1G --device net:nosuch0", 1, "nosuch0"),
      R("init --cpus 2-40", 1, "20-40 does not exist"),
      R("init --cpus 8-19", 1, "db"),
      R("delete nope", 1, "no instance named 'nope'"),
      R("show nope", 1, "no instance named 'nope'"),
      R("plan --policy even --instances 40", 1, "not enough free cpus"),
      R("plan --policy even --instances 2 --prefix ../x --apply", 1, "'../x0' must start with a letter or digit"),
      R("plan --policy even --instances 2 --prefix " + std::string(70, 'p') + " --apply", 1, "longer than 63"),
      R("plan --policy pe-split --apply --instances 1 --kinds 2-3", 2, "declare at least two kinds"),
      R("create web --cpus 1- --memory 1G", 2, "'1-': expected a CPU number"),
      R("create web --cpus 8 --memory 12Q", 2, "'12Q': unknown unit"),
      R("create web --cpus 8 --memory 1G --device gpu:0", 2, "unknown device kind"),
      R("start db", 1, "--topology only plans"),
      R("console db", 1, "--topology only plans"),
      R("top", 1, "--topology only plans"),
      R("host stop", 2, "--topology does not apply"),
  };
  for (const Row& row : rows) check(row, {"--topology", kTopo});
  std::printf("[ table ] %zu --topology rows, %d mkctl runs\n", rows.size(), runs);
  // Planning only: no daemon was started for any of them.
  EXPECT_EQ(daemon_pid(), 0);
}

// Rows no verb handles: mkctl's own command line.
TEST_F(CliBadInput, NoVerbOrUnknownVerbExitTwoWithUsage) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> rows = {
      {{}, "usage: mkctl VERB"},
      {{"frobnicate"}, "unknown verb 'frobnicate'"},
      {{""}, "unknown verb ''"},
      {{"--json"}, "unknown verb '--json'"},
      {{"CREATE", "a"}, "unknown verb 'CREATE'"},
      {{"-x"}, "unknown verb '-x'"},
  };
  fs::create_directories(rt);
  for (const auto& [args, names] : rows) {
    const auto before = snapshot();
    CliRun r = mkctl(args);
    EXPECT_EQ(r.code, 2) << names;
    EXPECT_NE(r.err.find(names), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("usage: mkctl VERB"), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(snapshot(), before);
  }
  EXPECT_EQ(daemon_pid(), 0) << "a bad command line must not start mkerneld";
}

// The environment: a runtime directory that cannot work, a daemon binary that
// is missing or fails. Exit 1, the reason named, no hang.
TEST_F(CliBadInput, BadEnvironmentIsARefusalNamingIt) {
  const std::string bin = std::string(MK_BIN_DIR) + "/mkctl";
  struct EnvRow {
    std::vector<std::string> env;
    std::string names;
  };
  const std::vector<EnvRow> rows = {
      {{"MKERNEL_RUNTIME_DIR=/etc/passwd"}, "/etc/passwd/control.sock: Not a directory"},
      {{"MKERNEL_RUNTIME_DIR=/tmp/" + std::string(120, 'd')}, "a socket path has at most 107 bytes"},
      {{"MKERNEL_RUNTIME_DIR=" + (dir / "rt-a").string(), "MKERNEL_MKERNELD=/nonexistent"},
       "/nonexistent is not an executable"},
      {{"MKERNEL_RUNTIME_DIR=" + (dir / "rt-b").string(), "MKERNEL_MKERNELD=/bin/false"}, "mkerneld failed to start"},
  };
  for (const auto& row : rows) {
    SCOPED_TRACE(row.env.back());
    CliRun r = run_argv(dir, bin, {"show"}, row.env);
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_NE(r.err.find(row.names), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
    CliRun j = run_argv(dir, bin, {"show", "--json"}, row.env);
    EXPECT_EQ(j.code, 1) << j.err;
    EXPECT_NE(j.out.find("\"error\""), std::string::npos) << j.out;
  }
  EXPECT_FALSE(fs::exists(dir / "rt-a" / "state.json"));
  EXPECT_FALSE(fs::exists(dir / "rt-b" / "state.json"));
}

// mkerneld's own arguments: usage errors exit 2 and start nothing.
TEST_F(CliBadInput, MkerneldBadArgumentsExitTwo) {
  const std::string bin = std::string(MK_BIN_DIR) + "/mkerneld";
  const std::vector<std::pair<std::vector<std::string>, std::string>> usage = {
      {{"--bogus"}, "unknown argument '--bogus'"},
      {{"--runtime-dir"}, "--runtime-dir needs a value"},
      {{"--runtime-dir", ""}, "--runtime-dir: an empty path"},
      {{"--ready-fd"}, "--ready-fd needs a value"},
      {{"--ready-fd", "x"}, "--ready-fd: 'x' is not an fd number"},
      {{"--ready-fd", "-3"}, "--ready-fd: '-3' is not an fd number"},
      {{"--ready-fd", "999"}, "--ready-fd: fd 999 is not open"},
      {{"--max-instances"}, "--max-instances needs a value"},
      {{"extra"}, "unknown argument 'extra'"},
      {{"--runtime-dir", rt.string(), "--runtime-dir"}, "--runtime-dir needs a value"},
  };
  for (const auto& [args, says] : usage) {
    SCOPED_TRACE(args.front());
    CliRun r = run_argv(dir, bin, args, {});
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_NE(r.err.find("mkerneld: " + says + "\n"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("usage: mkerneld [--runtime-dir DIR] [--ready-fd N]"), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
  }
  CliRun help = run_argv(dir, bin, {"--help"}, {});
  EXPECT_EQ(help.code, 0) << help.err;
  EXPECT_NE(help.out.find("usage: mkerneld"), std::string::npos) << help.out;
  EXPECT_EQ(help.err, "");
  EXPECT_FALSE(fs::exists(rt / "control.sock"));
  // A runtime directory that cannot be made: exit 1, named.
  CliRun r = run_argv(dir, bin, {"--runtime-dir", "/proc/nope/rt"}, {});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("cannot create runtime directory: /proc/nope"), std::string::npos) << r.err;
  // Another daemon owns the directory: exit 3, named.
  ASSERT_EQ(mkctl({"host", "status"}).code, 0);
  ASSERT_EQ(mkctl({"show"}).code, 0);  // starts one
  const pid_t owner = daemon_pid();
  ASSERT_GT(owner, 0);
  CliRun second = run_argv(dir, bin, {"--runtime-dir", rt.string()}, {});
  EXPECT_EQ(second.code, 3) << second.err;
  EXPECT_NE(second.err.find("mkerneld already running: pid " + std::to_string(owner)), std::string::npos)
      << second.err;
  EXPECT_EQ(daemon_pid(), owner);
}

}  // namespace
