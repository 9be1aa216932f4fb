// The live-update state in `mkctl show` end to end (issue #5): after an
// update, after rollbacks (with and without a blackout), across a daemon
// restart (and a corrupt record), and *during* an update whose successor
// hangs — show answers "frozen" while every mutating request (and the IPI
// ones, ping and top) is refused with EBUSY, and another instance's exit
// waits for the update. Needs root; SERIAL (live cgroups, both CPUs).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <regex>
#include <thread>

#include "daemon_fixture.h"

namespace {

using namespace std::chrono_literals;

class UpdateShow : public Daemon {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (cgroups, namespaces)";
    Daemon::SetUp();
    name = "us-" + std::to_string(::getpid());
    kernel = std::string(MK_BIN_DIR) + "/mk-kernel";
  }
  void TearDown() override {
    if (::geteuid() != 0) return;
    Daemon::TearDown();
    for (const char* h : {"cpuset", "memory"}) {
      ::rmdir(("/sys/fs/cgroup/" + std::string(h) + "/mkernel/" + name).c_str());
      ::rmdir(("/sys/fs/cgroup/" + std::string(h) + "/mkernel/" + name + "-b").c_str());
      ::rmdir(("/sys/fs/cgroup/" + std::string(h) + "/mkernel").c_str());  // when nothing else lives there
    }
  }
  json::object run_json(const std::string& args, int want = 0) {
    CliRun r = run(args + " --json");
    EXPECT_EQ(r.code, want) << args << ": " << r.err << r.out;
    boost::system::error_code ec;
    json::value v = json::parse(r.out, ec);
    return !ec && v.is_object() ? v.as_object() : json::object{};
  }
  json::object update_status() {
    json::object doc = run_json("show " + name);
    if (!doc.contains("instance") || !doc.at("instance").as_object().contains("update")) {
      ADD_FAILURE() << "no instance.update in " << json::serialize(doc);
      return {};
    }
    return doc.at("instance").at("update").as_object();
  }
  std::string state(const std::string& who = "") {
    json::object i = run_json("show " + (who.empty() ? name : who));
    return i.contains("instance") ? std::string(i.at("instance").at("state").as_string()) : "";
  }
  // The KV service (it needs a listen socket) on CPU 1, started.
  void start_kv() {
    ASSERT_EQ(run("init --cpus 0-1 --memory 256M").code, 0);
    const uint16_t port = free_port();
    ASSERT_NE(port, 0);
    CliRun c = run("create " + name + " --cpus 1 --memory 64M --device listen:127.0.0.1:" + std::to_string(port));
    ASSERT_EQ(c.code, 0) << c.err;
    CliRun l = run("load " + name + " --kernel " + kernel + " --cmdline --services=kv");
    ASSERT_EQ(l.code, 0) << l.err;
    CliRun s = run("start " + name);
    ASSERT_EQ(s.code, 0) << s.err;
  }
  // mkctl in the background, its output in files of its own.
  pid_t spawn_mkctl(const std::string& args, const std::string& tag) {
    const std::string cmd = "exec env MKERNEL_RUNTIME_DIR='" + rt.string() + "' " + std::string(MK_BIN_DIR) +
                            "/mkctl " + args + " >" + (dir / (tag + ".out")).string() + " 2>" +
                            (dir / (tag + ".err")).string();
    pid_t pid = ::fork();
    if (pid == 0) {
      ::execl("/bin/sh", "sh", "-c", cmd.c_str(), nullptr);
      ::_exit(127);
    }
    return pid;
  }
  void expect_busy(const std::string& args, const std::string& verb) {
    CliRun r = run(args);
    EXPECT_EQ(r.code, 1) << args << ": " << r.out << r.err;
    EXPECT_NE(r.err.find("instance " + name + " is being updated (state frozen); retry when `mkctl update` returns"),
              std::string::npos)
        << args << ": " << r.err;
    json::object j = run_json(args, 1);
    ASSERT_TRUE(j.contains("error")) << args;
    EXPECT_EQ(j.at("error").at("errno").as_int64(), EBUSY) << args;
    EXPECT_NE(std::string(j.at("error").at("hint").as_string()).find("`" + verb + "` was not run"),
              std::string::npos)
        << json::serialize(j);
  }
  // Waits (up to 2.5 s) until show reports the update frozen.
  json::object wait_frozen() {
    json::object st;
    const auto deadline = std::chrono::steady_clock::now() + 2500ms;
    while (std::chrono::steady_clock::now() < deadline) {
      st = update_status();
      if (!st.empty() && st.at("state").as_string() == "frozen") break;
      std::this_thread::sleep_for(20ms);
    }
    return st;
  }
  std::string name, kernel;
};

const std::regex kWhen(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)");

TEST_F(UpdateShow, ShowsTheLastUpdateAfterSuccessRollbackAndRestart) {
  start_kv();
  // Never updated: normal, no last update.
  CliRun idle = run("show " + name);
  ASSERT_EQ(idle.code, 0) << idle.err;
  EXPECT_NE(idle.out.find("\n  update:  normal\n"), std::string::npos) << idle.out;
  EXPECT_EQ(idle.out.find("last update"), std::string::npos) << idle.out;
  json::object st = update_status();
  EXPECT_EQ(st.at("state").as_string(), "normal");
  EXPECT_FALSE(st.at("in_progress").as_bool());
  EXPECT_TRUE(st.at("last").is_null());

  // A successful update: outcome, id, kernel, blackout.
  json::object u = run_json("update " + name);
  ASSERT_TRUE(u.contains("update_id")) << json::serialize(u);
  st = update_status();
  EXPECT_EQ(st.at("state").as_string(), "normal");
  json::object last = st.at("last").as_object();
  EXPECT_EQ(last.at("outcome").as_string(), "updated");
  EXPECT_EQ(last.at("update_id").as_int64(), u.at("update_id").as_int64());
  EXPECT_EQ(last.at("kernel").as_string(), kernel);
  EXPECT_TRUE(std::regex_match(std::string(last.at("when").as_string()), kWhen)) << last.at("when");
  EXPECT_DOUBLE_EQ(last.at("blackout_ms").to_number<double>(), u.at("blackout_ms").to_number<double>());
  EXPECT_FALSE(last.contains("cause"));
  CliRun shown = run("show " + name);
  EXPECT_NE(shown.out.find("\n  update:  normal\n  last update: "), std::string::npos) << shown.out;
  EXPECT_TRUE(std::regex_search(shown.out, std::regex(R"(last update: \S+Z updated, blackout \d+\.\d{3} ms \(update )")))
      << shown.out;
  // The whole-pool listing carries it per instance too.
  json::object all = run_json("show");
  ASSERT_EQ(all.at("instances").as_array().size(), 1u);
  EXPECT_EQ(all.at("instances").at(0).at("update").at("last").at("outcome").as_string(), "updated");

  // Rolled back after the freeze (a corrupt package): a blackout and a cause.
  CliRun corrupt = run("update " + name + " --fault corrupt-package");
  EXPECT_EQ(corrupt.code, 1) << corrupt.out << corrupt.err;
  last = update_status().at("last").as_object();
  EXPECT_EQ(last.at("outcome").as_string(), "rolled back");
  EXPECT_GT(last.at("blackout_ms").to_number<double>(), 0.0);
  EXPECT_FALSE(last.at("cause").as_string().empty());
  EXPECT_FALSE(last.at("rollback").as_string().empty());
  EXPECT_EQ(last.at("update_id").as_int64(), u.at("update_id").as_int64() + 1);
  shown = run("show " + name);
  EXPECT_TRUE(std::regex_search(shown.out, std::regex(R"(last update: \S+Z rolled back, blackout [0-9.]+ ms \(update \d+, .*\): .+)")))
      << shown.out;

  // Rolled back before the freeze (the successor refuses to boot): no blackout.
  CliRun boot = run("update " + name + " --cmdline '--services=kv --fault=exit-at-boot'");
  EXPECT_EQ(boot.code, 1) << boot.out << boot.err;
  last = update_status().at("last").as_object();
  EXPECT_EQ(last.at("outcome").as_string(), "rolled back");
  EXPECT_TRUE(last.at("blackout_ms").is_null());
  shown = run("show " + name);
  EXPECT_TRUE(std::regex_search(shown.out, std::regex(R"(last update: \S+Z rolled back \(update )"))) << shown.out;
  const int64_t id = last.at("update_id").as_int64();

  // A new daemon still knows it (the record is a file).
  ASSERT_EQ(run("host stop").code, 0);
  last = update_status().at("last").as_object();
  EXPECT_EQ(last.at("update_id").as_int64(), id);
  EXPECT_EQ(last.at("outcome").as_string(), "rolled back");

  // A corrupt record: the daemon starts, shows none and keeps the file aside.
  ASSERT_EQ(run("host stop").code, 0);
  std::ofstream(rt / "last-update" / (name + ".json")) << "{\"when\": 1}";
  EXPECT_TRUE(update_status().at("last").is_null());
  EXPECT_TRUE(fs::exists(rt / "last-update" / (name + ".json.corrupt")));
  EXPECT_NE(slurp(rt / "mkerneld.log").find("bad last-update record"), std::string::npos);

  // An update the daemon died in is rolled back by the next daemon: shown so.
  CliRun dead = run("update " + name + " --fault host-exit-after-freeze");
  EXPECT_EQ(dead.code, 1) << dead.out << dead.err;
  last = update_status().at("last").as_object();  // a new daemon
  EXPECT_EQ(last.at("outcome").as_string(), "rolled back");
  EXPECT_EQ(last.at("kernel").as_string(), kernel);
  EXPECT_NE(std::string(last.at("cause").as_string()).find("mkerneld was restarted"), std::string::npos);
  EXPECT_NE(std::string(last.at("rollback").as_string()).find("unfrozen"), std::string::npos) << last;
  EXPECT_EQ(state(), "active");

  // Gone with the instance.
  ASSERT_EQ(run("stop " + name).code, 0);
  ASSERT_EQ(run("delete " + name).code, 0);
  EXPECT_FALSE(fs::exists(rt / "last-update" / (name + ".json")));
}

TEST_F(UpdateShow, ShowAnswersDuringAHungUpdateAndMutationsGetEbusy) {
  start_kv();
  pid_t upd = spawn_mkctl("update " + name + " --cmdline '--services=kv --fault=hang-at-handover' --timeout 8", "upd");

  // The successor hangs in restore: the old image is frozen for 8 s (long
  // enough for the requests below on a loaded CI machine), and the daemon
  // answers show meanwhile.
  json::object st = wait_frozen();
  ASSERT_EQ(st.at("state").as_string(), "frozen") << json::serialize(st);
  EXPECT_TRUE(st.at("in_progress").as_bool());
  EXPECT_GE(st.at("update_id").as_int64(), 1);
  CliRun shown = run("show " + name);
  EXPECT_TRUE(std::regex_search(shown.out, std::regex(R"(\n  update:  frozen \(update \d+ in progress\)\n)")))
      << shown.out;

  expect_busy("stop " + name, "stop");
  expect_busy("update " + name, "update");
  expect_busy("create other --cpus 0 --memory 16M", "create");
  expect_busy("ping " + name + " --count 1", "ping");
  expect_busy("top --interval 50", "top");
  // Read-only requests are answered.
  EXPECT_EQ(run("host status").code, 0);
  EXPECT_EQ(run("console " + name).code, 0);
  EXPECT_EQ(run("plan --policy per-numa").code, 0);
  EXPECT_EQ(update_status().at("state").as_string(), "frozen") << "the refusals must not have taken 8 s";

  // The update times out and rolls back; its client saw progress and the refusal.
  EXPECT_EQ(exit_code(upd), 1);
  const std::string err = slurp(dir / "upd.err");
  EXPECT_NE(err.find("rolled back"), std::string::npos) << err;
  st = update_status();
  EXPECT_EQ(st.at("state").as_string(), "normal");
  EXPECT_FALSE(st.at("in_progress").as_bool());
  EXPECT_EQ(st.at("last").at("outcome").as_string(), "rolled back");
  EXPECT_GT(st.at("last").at("blackout_ms").to_number<double>(), 7000.0);
  EXPECT_EQ(state(), "active");
  // The instance was not stopped by the refused stop, and can be now.
  CliRun stop = run("stop " + name);
  EXPECT_EQ(stop.code, 0) << stop.err;
  EXPECT_EQ(run("delete " + name).code, 0);
}

// Another instance that dies while an update polls the loop is retired only
// once the update returned: retiring closes its channels, and the update
// borrows the fds of the channel between the two. Until then show still
// says active; afterwards it is failed with its exit, and the updated
// instance rolled back with its peer channel intact.
TEST_F(UpdateShow, AnExitDuringAnUpdateIsHandledAfterIt) {
  ASSERT_NO_FATAL_FAILURE(start_kv());
  const std::string other = name + "-b";
  ASSERT_EQ(run("create " + other + " --cpus 0 --memory 32M").code, 0);
  ASSERT_EQ(run("load " + other + " --kernel " + kernel).code, 0);
  CliRun started = run("start " + other);
  ASSERT_EQ(started.code, 0) << started.err;
  json::object b = run_json("show " + other);
  const pid_t bpid = static_cast<pid_t>(b.at("instance").at("runtime").at("pid").as_int64());

  pid_t upd = spawn_mkctl("update " + name + " --cmdline '--services=kv --fault=hang-at-handover' --timeout 8", "upd");
  ASSERT_EQ(wait_frozen().at("state").as_string(), "frozen");
  ASSERT_EQ(::kill(bpid, SIGKILL), 0);
  std::this_thread::sleep_for(200ms);  // its pidfd is readable at once; the poll sees it
  EXPECT_EQ(state(other), "active") << "retired during the update";

  EXPECT_EQ(exit_code(upd), 1);
  json::object after = run_json("show " + other).at("instance").as_object();
  EXPECT_EQ(after.at("state").as_string(), "failed");
  EXPECT_NE(std::string(after.at("last_exit").as_string()).find("killed by signal 9"), std::string::npos)
      << json::serialize(after);
  EXPECT_EQ(state(), "active");
  EXPECT_EQ(update_status().at("last").at("outcome").as_string(), "rolled back");
  EXPECT_EQ(run("stop " + name).code, 0);
}

}  // namespace
