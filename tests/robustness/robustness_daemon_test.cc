// mkerneld's robustness to its environment, end to end (issue #8): the real
// mkctl and mkerneld on a runtime directory that is full (a small tmpfs),
// read-only, or holds a corrupt state file or journals; two daemons at once;
// and every configurable limit (limits.json, options) enforced and shown by
// `mkctl host status --json`. Root (mounts, instances); SERIAL (the tests
// that start instances use CPUs 0-1 and the live cgroup parent; run them
// under flock /tmp/mk-e2e.lock).
#include <sys/mount.h>

#include <regex>
#include <set>
#include <thread>

#include "../tools/daemon_fixture.h"

namespace {

using namespace std::chrono_literals;

class Robust : public Daemon {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (mounts, cgroups)";
    Daemon::SetUp();
    name = "rb-" + std::to_string(::getpid());
    kernel = std::string(MK_BIN_DIR) + "/mk-kernel";
  }
  void TearDown() override {
    if (::geteuid() != 0) return;
    // The daemon first (it has files open on the mount), then the mount.
    if (pid_t pid = daemon_pid(); pid > 0 && ::kill(pid, SIGKILL) == 0) ::waitpid(pid, nullptr, 0);
    if (bound) ::umount2(rt.c_str(), MNT_DETACH);
    if (mounted) ::umount2(rt.c_str(), MNT_DETACH);
    Daemon::TearDown();
    for (const std::string& n : {name, name + "-b"})
      for (const char* h : {"cpuset", "memory"}) ::rmdir(("/sys/fs/cgroup/" + std::string(h) + "/mkernel/" + n).c_str());
    for (const char* h : {"cpuset", "memory"}) ::rmdir(("/sys/fs/cgroup/" + std::string(h) + "/mkernel").c_str());
  }
  void mount_rt(const char* size) {
    fs::create_directories(rt);
    ASSERT_EQ(::mount("tmpfs", rt.c_str(), "tmpfs", 0, (std::string("mode=0700,size=") + size).c_str()), 0)
        << strerror(errno);
    mounted = true;
  }
  // The whole tmpfs read-only (only while nothing has a file open for writing).
  void remount(bool ro) {
    ASSERT_EQ(::mount(nullptr, rt.c_str(), nullptr, MS_REMOUNT | (ro ? MS_RDONLY : 0), nullptr), 0) << strerror(errno);
  }
  // rt read-only under a running daemon: a read-only bind mount over it
  // (files already open for writing stay writable, every new open is EROFS).
  void bind_read_only(bool ro) {
    if (ro) {
      ASSERT_EQ(::mount(rt.c_str(), rt.c_str(), nullptr, MS_BIND, nullptr), 0) << strerror(errno);
      bound = true;
      ASSERT_EQ(::mount(nullptr, rt.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr), 0) << strerror(errno);
    } else {
      ASSERT_EQ(::umount2(rt.c_str(), MNT_DETACH), 0) << strerror(errno);
      bound = false;
    }
  }
  // Fills rt's file system to the last byte.
  void fill() {
    int fd = ::open((rt / "filler").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    std::string block(4096, 'x');
    while (::write(fd, block.data(), block.size()) > 0) {
    }
    while (::write(fd, block.data(), 1) > 0) {
    }
    ::close(fd);
  }
  void unfill() { fs::remove(rt / "filler"); }
  json::object run_json(const std::string& args, int want = 0) {
    CliRun r = run(args + " --json");
    EXPECT_EQ(r.code, want) << args << ": " << r.err << r.out;
    boost::system::error_code ec;
    json::value v = json::parse(r.out, ec);
    return !ec && v.is_object() ? v.as_object() : json::object{};
  }
  // host status never starts a daemon: `show` does first.
  json::object status() {
    EXPECT_EQ(run("show").code, 0);
    return run_json("host status");
  }
  std::string state() { return slurp(rt / "state.json"); }
  bool no_temp_files() {
    for (const auto& e : fs::directory_iterator(rt))
      if (e.path().filename().string().find(".tmp.") != std::string::npos) return false;
    return true;
  }
  pid_t image_pid(const std::string& n) {
    json::object doc = run_json("show " + n);
    if (!doc.contains("instance") || !doc.at("instance").as_object().contains("runtime")) return 0;
    return static_cast<pid_t>(doc.at("instance").as_object().at("runtime").as_object().at("pid").as_int64());
  }
  // mkerneld with extra arguments, its output in `log`; returns its pid.
  pid_t spawn_with(const std::string& args, const fs::path& log) {
    std::string cmd = "exec " + std::string(MK_BIN_DIR) + "/mkerneld --runtime-dir '" + rt.string() + "' " + args +
                      " >>'" + log.string() + "' 2>&1";
    pid_t pid = ::fork();
    if (pid == 0) {
      ::execl("/bin/sh", "sh", "-c", cmd.c_str(), nullptr);
      ::_exit(127);
    }
    return pid;
  }
  bool wait_socket() {
    for (int i = 0; i < 500; ++i) {
      int fd = connect_socket();
      if (fd >= 0) {
        ::close(fd);
        return true;
      }
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  std::string name, kernel;
  bool mounted = false, bound = false;
};

// ---- 1. disk full -------------------------------------------------------------

TEST_F(Robust, DiskFullRefusesChangesNamingEnospcKeepsStateAndServesReads) {
  mount_rt("256k");
  ASSERT_EQ(run("init --cpus 0-1 --memory 256M").code, 0);
  ASSERT_EQ(run("create a --cpus 0 --memory 16M").code, 0);
  const pid_t daemon = daemon_pid();
  const std::string before = state();
  fill();

  const struct {
    const char* args;
    const char* hint;
  } changes[] = {
      {"create b --cpus 1 --memory 16M", "nothing was changed"},
      {"delete a", "nothing was changed"},
      {"update a --cpus 0-1", "the move was undone: every CPU is where it was"},
      {"update a --memory 32M", "the change was undone"},
      {"load a --kernel " MK_BIN_DIR "/mk-kernel", "nothing was changed"},
  };
  for (const auto& c : changes) {
    CliRun r = run(c.args);
    EXPECT_EQ(r.code, 1) << c.args << ": " << r.out;
    EXPECT_NE(r.err.find((rt / "state.json").string() + ": No space left on device (ENOSPC): the disk holding it is "
                                                         "full: free space there (df) and retry; the previous file "
                                                         "is intact"),
              std::string::npos)
        << c.args << ": " << r.err;
    EXPECT_NE(r.err.find(c.hint), std::string::npos) << c.args << ": " << r.err;
    json::object j = run_json(std::string(c.args), 1);
    EXPECT_EQ(j.at("error").as_object().at("errno").as_int64(), ENOSPC) << c.args;
    EXPECT_EQ(state(), before) << c.args;  // the previous state, intact and valid
  }
  EXPECT_TRUE(no_temp_files());
  // Reads are served by the same daemon, from the state it kept.
  json::object shown = run_json("show");
  ASSERT_EQ(shown.at("instances").as_array().size(), 1u);
  EXPECT_EQ(shown.at("instances").as_array()[0].as_object().at("cpus").as_string(), "0");
  EXPECT_EQ(status().at("pid").as_int64(), daemon);
  EXPECT_EQ(run("plan --policy even --instances 1").code, 0);  // a plan without --apply only reads

  // Space freed: the same commands work.
  unfill();
  ASSERT_EQ(run("create b --cpus 1 --memory 16M").code, 0);
  ASSERT_EQ(run("update a --memory 32M").code, 0);
  json::object after = run_json("show");
  EXPECT_EQ(after.at("instances").as_array().size(), 2u);
  EXPECT_NE(state(), before);
  EXPECT_EQ(daemon_pid(), daemon);
}

TEST_F(Robust, DiskFullRefusesStartAndUpdateAndTheInstanceKeepsRunning) {
  mount_rt("256k");
  ASSERT_EQ(run("init --cpus 0-1 --memory 256M").code, 0);
  ASSERT_EQ(run("create " + name + " --cpus 1 --memory 64M").code, 0);
  ASSERT_EQ(run("load " + name + " --kernel " + kernel + " --init 'sleep 300'").code, 0);
  const std::string before = state();
  fill();
  CliRun s = run("start " + name);
  EXPECT_EQ(s.code, 1);
  EXPECT_NE(s.err.find("(ENOSPC)"), std::string::npos) << s.err;
  EXPECT_NE(s.err.find("the instance was stopped again: its state could not be saved"), std::string::npos) << s.err;
  EXPECT_EQ(state(), before);
  EXPECT_EQ(run_json("show " + name).at("instance").as_object().at("state").as_string(), "loaded");
  EXPECT_FALSE(fs::exists("/sys/fs/cgroup/cpuset/mkernel/" + name));  // nothing left of the boot

  unfill();
  CliRun s2 = run("start " + name);
  ASSERT_EQ(s2.code, 0) << s2.err;
  const pid_t first = image_pid(name);
  ASSERT_GT(first, 0);
  fill();
  CliRun u = run("update " + name);
  EXPECT_EQ(u.code, 1);
  EXPECT_NE(u.err.find("(ENOSPC)"), std::string::npos) << u.err;
  EXPECT_NE(u.err.find("nothing was changed; the instance runs as before"), std::string::npos) << u.err;
  EXPECT_EQ(image_pid(name), first);
  EXPECT_EQ(::kill(first, 0), 0);
  CliRun r = run("update " + name + " --cpus 0-1");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("cpu-move.json: No space left on device (ENOSPC)"), std::string::npos) << r.err;
  EXPECT_EQ(run_json("show " + name).at("instance").as_object().at("cpus").as_string(), "1");
  CliRun m = run("update " + name + " --memory 128M");
  EXPECT_EQ(m.code, 1);
  EXPECT_NE(m.err.find("resource-move.json: No space left on device (ENOSPC)"), std::string::npos) << m.err;
  EXPECT_NE(m.err.find("nothing was changed"), std::string::npos) << m.err;
  EXPECT_EQ(run_json("show " + name).at("instance").as_object().at("memory_bytes").as_int64(), 64 << 20);
  EXPECT_EQ(image_pid(name), first);

  unfill();
  CliRun u2 = run("update " + name);
  ASSERT_EQ(u2.code, 0) << u2.err;
  EXPECT_NE(image_pid(name), first);
  ASSERT_EQ(run("stop " + name).code, 0);
}

// ---- 2. read-only -------------------------------------------------------------

TEST_F(Robust, ReadOnlyRuntimeDirRefusesTheStart) {
  mount_rt("256k");
  remount(true);
  const pid_t pid = spawn_with("", dir / "ro.log");
  EXPECT_EQ(exit_code(pid), 1);
  const std::string log = slurp(dir / "ro.log");
  EXPECT_NE(log.find("runtime directory is read-only: " + rt.string() +
                     " is on a read-only file system (EROFS): mkerneld keeps its state and journals there; remount it "
                     "read-write or set MKERNEL_RUNTIME_DIR to a writable directory"),
            std::string::npos)
      << log;
  EXPECT_EQ(daemon_pid(), 0);
  // mkctl cannot start it either, and passes on the daemon's own reason
  // (not "cannot open the mkerneld log": the log goes to /dev/null then).
  CliRun r = run("show");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("runtime directory is read-only"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("cannot open the mkerneld log"), std::string::npos) << r.err;
}

TEST_F(Robust, RuntimeDirTurnedReadOnlyRefusesChangesAndKeepsServingReads) {
  mount_rt("256k");
  ASSERT_EQ(run("init --cpus 0-1 --memory 256M").code, 0);
  ASSERT_EQ(run("create a --cpus 0 --memory 16M").code, 0);
  const pid_t daemon = daemon_pid();
  const std::string before = state();
  bind_read_only(true);
  CliRun c = run("create b --cpus 1 --memory 16M");
  EXPECT_EQ(c.code, 1);
  EXPECT_NE(c.err.find("Read-only file system (EROFS): its file system is read-only: remount it read-write"),
            std::string::npos)
      << c.err;
  EXPECT_NE(c.err.find(rt.string()), std::string::npos) << c.err;
  EXPECT_EQ(run_json("create b --cpus 1 --memory 16M", 1).at("error").as_object().at("errno").as_int64(), EROFS);
  EXPECT_EQ(run_json("show").at("instances").as_array().size(), 1u);
  EXPECT_EQ(status().at("pid").as_int64(), daemon);
  EXPECT_EQ(state(), before);
  bind_read_only(false);
  ASSERT_EQ(run("create b --cpus 1 --memory 16M").code, 0);
  EXPECT_EQ(run_json("show").at("instances").as_array().size(), 2u);
}

// ---- 3. corrupt state and journals ---------------------------------------------

TEST_F(Robust, CorruptStateFilesRefuseTheStartNamingFileAndProblem) {
  // A valid state to corrupt.
  ASSERT_EQ(run("init --cpus 0-1 --memory 256M").code, 0);
  ASSERT_EQ(run("create a --cpus 0 --memory 16M").code, 0);
  ASSERT_EQ(run("create b --cpus 1 --memory 16M").code, 0);
  ASSERT_EQ(run("host stop").code, 0);
  const std::string valid = state();
  auto replace = [&](std::string s, const std::string& from, const std::string& to) {
    auto at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return at == std::string::npos ? s : s.replace(at, from.size(), to);
  };
  const struct {
    const char* what;
    std::string text;
    std::string words;
  } cases[] = {
      {"truncated", valid.substr(0, valid.size() / 2), "(truncated?)"},
      {"empty", "", "(truncated?)"},
      {"garbage", std::string("\x7f" "ELF\x01\x02\x03 garbage", 14), "not JSON: syntax error at line 1, column 1"},
      {"wrong shape", R"({"format":"mkernel-state-v1","topology":"live","pool":null,"instances":{}})",
       "instances: expected an array"},
      {"other format", R"({"hello": "world"})", "format is not \"mkernel-state-v1\""},
      {"out of range", replace(valid, "\"id\":2", "\"id\":600"), "instances[1] ('b'): "},
      {"duplicate cpu owner", replace(valid, "\"cpus\":\"1\"", "\"cpus\":\"0\""),
       "cpu 0 owned by two instances ('a' and 'b')"},
  };
  for (const auto& c : cases) {
    std::ofstream(rt / "state.json", std::ios::trunc) << c.text;
    CliRun r = run("show");
    EXPECT_EQ(r.code, 1) << c.what;
    EXPECT_NE(r.err.find("mkerneld failed to start: corrupt state file: " + (rt / "state.json").string() + ": "),
              std::string::npos)
        << c.what << ": " << r.err;
    EXPECT_NE(r.err.find(c.words), std::string::npos) << c.what << ": " << r.err;
    EXPECT_NE(r.err.find("left untouched: move it aside to start afresh"), std::string::npos) << c.what << ": " << r.err;
    EXPECT_EQ(state(), c.text) << c.what;  // never overwritten
    EXPECT_EQ(daemon_pid(), 0) << c.what;
    EXPECT_EQ(run_json("show", 1).at("error").as_object().at("errno").as_int64(), EBADMSG) << c.what;
  }
  // What the message says to do works.
  fs::rename(rt / "state.json", rt / "state.json.bad");
  EXPECT_EQ(run("show").code, 0);
}

TEST_F(Robust, CorruptJournalsAreMovedAsideNamedAndReported) {
  ASSERT_EQ(run("init --cpus 0-1 --memory 256M").code, 0);
  ASSERT_EQ(run("create a --cpus 0 --memory 16M").code, 0);
  ASSERT_EQ(run("host stop").code, 0);
  fs::create_directories(rt / "update");
  fs::create_directories(rt / "last-update");
  const std::vector<std::pair<fs::path, std::string>> journals = {
      {rt / "cpu-move.json", "{\"instances\": [tru"},
      {rt / "resource-move.json", "[1, 2]"},
      {rt / "irq-affinity.json", "\x01\x02"},
      {rt / "update" / "a.json", "{\"instance\": \"a\"}"},
      {rt / "update" / "z.json", "{\"staged\": true, \"progress\": 5}"},
      {rt / "last-update" / "a.json", "{\"when\": 1}"},
  };
  for (const auto& [path, text] : journals) std::ofstream(path) << text;
  std::ofstream(rt / "cpu-move.json.corrupt") << "an earlier copy";
  const std::string st = state();

  json::object s = status();  // starts the daemon: corrupt journals do not stop it
  ASSERT_TRUE(s.contains("warnings")) << json::serialize(s);
  const json::array& w = s.at("warnings").as_array();
  EXPECT_EQ(w.size(), journals.size()) << json::serialize(w);
  std::string all;
  for (const auto& x : w) all += std::string(x.as_string()) + "\n";
  for (const auto& [path, text] : journals) {
    EXPECT_FALSE(fs::exists(path)) << path;
    const std::string copy = path.string() + (path.filename() == "cpu-move.json" ? ".corrupt.1" : ".corrupt");
    ASSERT_TRUE(fs::exists(copy)) << copy;
    EXPECT_EQ(slurp(copy), text) << copy;
    EXPECT_NE(all.find(path.string() + " is corrupt ("), std::string::npos) << path << "\n" << all;
    EXPECT_NE(all.find("moved aside to " + copy), std::string::npos) << copy << "\n" << all;
  }
  EXPECT_EQ(slurp(rt / "cpu-move.json.corrupt"), "an earlier copy");  // never replaced
  EXPECT_NE(all.find("not JSON"), std::string::npos) << all;
  EXPECT_NE(all.find("`mkctl update NAME --cpus LIST`"), std::string::npos) << all;
  EXPECT_NE(all.find("'successor': missing or not an object"), std::string::npos) << all;
  EXPECT_NE(all.find("(corrupt staged-update journal: bad 'progress'): moved aside to " +
                     (rt / "update" / "z.json.corrupt").string() + "; a staged update of z was interrupted"),
            std::string::npos)
      << all;
  // The human status says it too, and the log.
  CliRun h = run("host status");
  EXPECT_NE(h.out.find("  warning: " + (rt / "cpu-move.json").string() + " is corrupt"), std::string::npos) << h.out;
  EXPECT_NE(slurp(rt / "mkerneld.log").find((rt / "resource-move.json").string() + " is corrupt"), std::string::npos);
  EXPECT_EQ(state(), st);
  EXPECT_EQ(run_json("show").at("instances").as_array().size(), 1u);
  // A clean restart has nothing to report.
  ASSERT_EQ(run("host stop").code, 0);
  EXPECT_TRUE(status().at("warnings").as_array().empty());
}

TEST_F(Robust, ACorruptEvictedTasksFileIsMovedAsideWhetherItsInstanceRunsOrNot) {
  ASSERT_EQ(run("init --cpus 0-1 --memory 256M").code, 0);
  ASSERT_EQ(run("create " + name + " --cpus 1 --memory 64M").code, 0);
  ASSERT_EQ(run("load " + name + " --kernel " + kernel + " --init 'exec sleep 300'").code, 0);
  ASSERT_EQ(run("start " + name).code, 0);
  const pid_t image = image_pid(name);
  ASSERT_GT(image, 0);
  const fs::path evicted = rt / ("evicted-" + name + ".json");
  auto kill_daemon = [&] {
    const pid_t d = daemon_pid();
    ASSERT_GT(d, 0);
    ASSERT_EQ(::kill(d, SIGKILL), 0);
    ::waitpid(d, nullptr, 0);  // ours: the subreaper's
  };

  // Running: re-adopted, the file kept aside.
  kill_daemon();
  std::ofstream(evicted) << "{\"tasks\": 3}";
  json::object s = status();
  std::string all;
  for (const auto& x : s.at("warnings").as_array()) all += std::string(x.as_string()) + "\n";
  EXPECT_NE(all.find(evicted.string() + " is corrupt (" + evicted.string() + ": not an evicted-tasks file): moved aside to " +
                     evicted.string() + ".corrupt; host tasks " + name +
                     " moved off its CPUs will not be given back when it stops"),
            std::string::npos)
      << all;
  EXPECT_EQ(slurp(evicted.string() + ".corrupt"), "{\"tasks\": 3}");
  EXPECT_FALSE(fs::exists(evicted));
  EXPECT_EQ(image_pid(name), image);  // re-adopted

  // Gone while no daemon ran: the copy is kept beside the first one.
  kill_daemon();
  ASSERT_EQ(::kill(image, SIGKILL), 0);
  ::waitpid(image, nullptr, 0);
  std::ofstream(evicted) << "garbage";
  s = status();
  all.clear();
  for (const auto& x : s.at("warnings").as_array()) all += std::string(x.as_string()) + "\n";
  EXPECT_NE(all.find("moved aside to " + evicted.string() + ".corrupt.1; host tasks " + name +
                     " moved off its CPUs were not given back"),
            std::string::npos)
      << all;
  EXPECT_EQ(slurp(evicted.string() + ".corrupt.1"), "garbage");
  EXPECT_EQ(slurp(evicted.string() + ".corrupt"), "{\"tasks\": 3}");
  EXPECT_EQ(run_json("show " + name).at("instance").as_object().at("state").as_string(), "failed");
}

// ---- 4. two daemons -------------------------------------------------------------

TEST_F(Robust, ASecondDaemonExitsNamingTheFirstOnesPid) {
  const pid_t first = spawn_with("", dir / "first.log");
  ASSERT_TRUE(wait_socket());
  const pid_t second = spawn_with("", dir / "second.log");
  EXPECT_EQ(exit_code(second), 3);
  EXPECT_NE(slurp(dir / "second.log")
                .find("mkerneld already running: pid " + std::to_string(first) + " owns " + rt.string() +
                      " (stop it with mkctl host stop)"),
            std::string::npos)
      << slurp(dir / "second.log");
  EXPECT_EQ(status().at("pid").as_int64(), first);  // unaffected
  EXPECT_EQ(::kill(first, SIGTERM), 0);
  EXPECT_EQ(exit_code(first), 0);
}

TEST_F(Robust, TwoDaemonsStartedAtTheSameInstantAlwaysHaveExactlyOneWinner) {
  for (int round = 0; round < 20; ++round) {
    int gate[2];
    ASSERT_EQ(::pipe(gate), 0);
    pid_t pids[2];
    fs::path logs[2] = {dir / ("r" + std::to_string(round) + "a.log"), dir / ("r" + std::to_string(round) + "b.log")};
    for (int k = 0; k < 2; ++k) {
      std::string bin = std::string(MK_BIN_DIR) + "/mkerneld";
      std::string rts = rt.string();
      pids[k] = ::fork();
      if (pids[k] == 0) {
        ::close(gate[1]);
        char c;
        while (::read(gate[0], &c, 1) > 0) {
        }  // both leave here when the gate closes
        int fd = ::open(logs[k].c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        ::execl(bin.c_str(), "mkerneld", "--runtime-dir", rts.c_str(), nullptr);
        ::_exit(127);
      }
    }
    ::close(gate[0]);
    ::close(gate[1]);  // go
    // The loser exits 3 (it waits at most 2 s to learn the winner's pid).
    int losers = 0, winner = -1;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    std::set<int> done;
    while (done.size() < 1 && std::chrono::steady_clock::now() < deadline) {
      for (int k = 0; k < 2; ++k) {
        int st = 0;
        if (!done.count(k) && ::waitpid(pids[k], &st, WNOHANG) == pids[k]) {
          done.insert(k);
          EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 3) << "round " << round << ": " << slurp(logs[k]);
          ++losers;
          winner = 1 - k;
        }
      }
      std::this_thread::sleep_for(5ms);
    }
    ASSERT_EQ(losers, 1) << "round " << round;
    ASSERT_TRUE(wait_socket()) << "round " << round;
    EXPECT_EQ(daemon_pid(), pids[winner]) << "round " << round;
    EXPECT_NE(slurp(logs[1 - winner]).find("mkerneld already running: pid " + std::to_string(pids[winner])),
              std::string::npos)
        << "round " << round << ": " << slurp(logs[1 - winner]);
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(::kill(pids[winner], 0), 0) << "round " << round;  // the winner still runs
    ::kill(pids[winner], SIGTERM);
    EXPECT_EQ(exit_code(pids[winner]), 0) << "round " << round;
  }
}

TEST_F(Robust, MkctlFromTwoShellsAtOnceStartsOneDaemon) {
  const std::string env = "MKERNEL_RUNTIME_DIR='" + rt.string() + "' ";
  const std::string mkctl = std::string(MK_BIN_DIR) + "/mkctl";
  for (int round = 0; round < 5; ++round) {
    std::string cmd = env + mkctl + " show >" + (dir / "s1").string() + " 2>&1 & " + env + mkctl + " show >" +
                      (dir / "s2").string() + " 2>&1 & \nfail=0; for j in $(jobs -p); do wait $j || fail=1; done; exit $fail\n";
    ASSERT_EQ(run_script(cmd), 0) << slurp(dir / "s1") << slurp(dir / "s2");
    EXPECT_EQ(slurp(dir / "s1"), "no pool set (mkctl init sets one)\n");
    EXPECT_EQ(slurp(dir / "s2"), "no pool set (mkctl init sets one)\n");
    const pid_t pid = daemon_pid();
    ASSERT_GT(pid, 0);
    // Exactly one mkerneld serves rt: the one the lock names.
    int daemons = 0;
    for (const auto& e : fs::directory_iterator("/proc")) {
      std::string cmdline = slurp(e.path() / "cmdline");
      std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
      if (cmdline.find("mkerneld --runtime-dir " + rt.string() + " ") != std::string::npos) ++daemons;
    }
    EXPECT_EQ(daemons, 1) << "round " << round;
    ASSERT_EQ(run("host stop").code, 0);
    EXPECT_EQ(exit_code(pid), 0);
  }
}

// ---- 5. limits --------------------------------------------------------------------

TEST_F(Robust, LimitsHaveDocumentedDefaultsAndComeFromLimitsJsonOrOptions) {
  json::object l = status().at("limits").as_object();
  EXPECT_EQ(l.at("max_instances").as_int64(), 64);
  EXPECT_EQ(l.at("max_channels_per_instance").as_int64(), 63);
  EXPECT_EQ(l.at("max_handoff_fds").as_int64(), 65536);
  EXPECT_EQ(l.at("max_handoff_blob").as_int64(), 16 << 20);
  EXPECT_EQ(l.at("max_console_log").as_int64(), 2 << 20);
  EXPECT_EQ(l.at("source").as_string(), "defaults");
  EXPECT_NE(run("host status").out.find("  limits (defaults): 64 instances, 63 channels per instance"),
            std::string::npos);
  ASSERT_EQ(run("host stop").code, 0);

  std::ofstream(rt / "limits.json") << R"({"max_instances": 2, "max_console_log": 65536})";
  l = status().at("limits").as_object();
  EXPECT_EQ(l.at("max_instances").as_int64(), 2);
  EXPECT_EQ(l.at("max_console_log").as_int64(), 65536);
  EXPECT_EQ(l.at("source").as_string(), "limits.json");
  ASSERT_EQ(run("host stop").code, 0);

  // Options win over the file.
  const pid_t pid = spawn_with("--max-instances 5 --max-handoff-fds 8", dir / "opt.log");
  ASSERT_TRUE(wait_socket());
  l = status().at("limits").as_object();
  EXPECT_EQ(l.at("max_instances").as_int64(), 5);
  EXPECT_EQ(l.at("max_handoff_fds").as_int64(), 8);
  EXPECT_EQ(l.at("max_console_log").as_int64(), 65536);
  EXPECT_EQ(l.at("source").as_string(), "options");
  ::kill(pid, SIGTERM);
  EXPECT_EQ(exit_code(pid), 0);

  // A bad option or file refuses the start, naming it; the file is kept.
  const pid_t bad = spawn_with("--max-instances 0", dir / "bad.log");
  EXPECT_EQ(exit_code(bad), 1);
  EXPECT_NE(slurp(dir / "bad.log").find("bad limit: --max-instances: 0 is out of range 1..511"), std::string::npos)
      << slurp(dir / "bad.log");
  const std::string text = R"({"max_instances": 2, "max_cpus": 3})";
  std::ofstream(rt / "limits.json", std::ios::trunc) << text;
  CliRun r = run("show");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("mkerneld failed to start: bad limits file: " + (rt / "limits.json").string() +
                       ": unknown key 'max_cpus'; fix or remove it"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(slurp(rt / "limits.json"), text);
  EXPECT_EQ(daemon_pid(), 0);
}

TEST_F(Robust, OneInstanceTooManyIsRefusedNamingTheLimit) {
  fs::create_directories(rt);
  std::ofstream(rt / "limits.json") << R"({"max_instances": 2})";
  ASSERT_EQ(run("init --cpus 0-1 --memory 256M").code, 0);
  ASSERT_EQ(run("create a --cpu-count 1 --memory 8M").code, 0);
  ASSERT_EQ(run("create b --cpu-count 1 --memory 8M").code, 0);
  const std::string before = state();
  CliRun c = run("create c --cpus 0 --memory 8M");
  EXPECT_EQ(c.code, 1);
  EXPECT_NE(c.err.find("mkctl create: instance limit reached: 3 instances would exist, the limit is 2: raise "
                       "max_instances (mkerneld --max-instances N, or in " +
                       rt.string() + "/limits.json)"),
            std::string::npos)
      << c.err;
  EXPECT_NE(c.err.find("nothing was changed; limits are read when mkerneld starts"), std::string::npos) << c.err;
  EXPECT_EQ(run_json("create c --cpus 0 --memory 8M", 1).at("error").as_object().at("errno").as_int64(), EDQUOT);
  EXPECT_EQ(state(), before);
  // Lowered below what exists: the daemon starts, the partition may shrink
  // but not grow; a plan that would create more is refused the same way.
  ASSERT_EQ(run("host stop").code, 0);
  std::ofstream(rt / "limits.json", std::ios::trunc) << R"({"max_instances": 1})";
  EXPECT_EQ(run_json("show").at("instances").as_array().size(), 2u);
  ASSERT_EQ(run("delete b").code, 0);
  CliRun p = run("plan --policy even --instances 1 --apply");
  EXPECT_EQ(p.code, 1);
  EXPECT_NE(p.err.find("instance limit reached: 2 instances would exist, the limit is 1"), std::string::npos) << p.err;
  EXPECT_NE(p.err.find("nothing was created"), std::string::npos) << p.err;
  EXPECT_EQ(run_json("show").at("instances").as_array().size(), 1u);
  EXPECT_EQ(run("plan --policy even --instances 1").code, 0) << "the same plan without --apply";
  // Raised: accepted.
  ASSERT_EQ(run("host stop").code, 0);
  std::ofstream(rt / "limits.json", std::ios::trunc) << R"({"max_instances": 3})";
  ASSERT_EQ(run("create b --cpu-count 1 --memory 8M").code, 0);
  EXPECT_EQ(run_json("show").at("instances").as_array().size(), 2u);
}

TEST_F(Robust, AStartWithMoreChannelsThanAllowedIsRefused) {
  fs::create_directories(rt);
  std::ofstream(rt / "limits.json") << R"({"max_channels_per_instance": 0})";
  ASSERT_EQ(run("init --cpus 0-1 --memory 256M").code, 0);
  ASSERT_EQ(run("create " + name + " --cpus 1 --memory 64M").code, 0);
  ASSERT_EQ(run("create " + name + "-b --cpus 0 --memory 16M").code, 0);
  ASSERT_EQ(run("load " + name + " --kernel " + kernel).code, 0);
  CliRun s = run("start " + name);
  EXPECT_EQ(s.code, 1);
  EXPECT_NE(s.err.find("channel limit reached: '" + name +
                       "' would get 1 IPI channels to other instances, the limit is 0: raise "
                       "max_channels_per_instance (mkerneld --max-channels-per-instance N"),
            std::string::npos)
      << s.err;
  EXPECT_NE(s.err.find("nothing was started"), std::string::npos) << s.err;
  EXPECT_EQ(image_pid(name), 0);
  EXPECT_FALSE(fs::exists("/sys/fs/cgroup/cpuset/mkernel/" + name));
  // Alone in the partition it needs none.
  ASSERT_EQ(run("delete " + name + "-b").code, 0);
  CliRun s2 = run("start " + name);
  ASSERT_EQ(s2.code, 0) << s2.err;
  ASSERT_EQ(run("stop " + name).code, 0);
}

TEST_F(Robust, TheConsoleLogNeverExceedsItsLimit) {
  fs::create_directories(rt);
  std::ofstream(rt / "limits.json") << R"({"max_console_log": 16384})";
  ASSERT_EQ(run("init --cpus 0-1 --memory 256M").code, 0);
  ASSERT_EQ(run("create " + name + " --cpus 1 --memory 64M").code, 0);
  // A tenant that prints 400 KiB, numbered lines, then sleeps.
  ASSERT_EQ(run("load " + name + " --kernel " + kernel +
                " --init 'seq 1 60000; echo LAST-LINE; exec sleep 300'")
                .code,
            0);
  CliRun s = run("start " + name);
  ASSERT_EQ(s.code, 0) << s.err;
  const fs::path log = rt / "console" / (name + ".log");
  std::string text;
  for (int i = 0; i < 500 && text.find("LAST-LINE") == std::string::npos; ++i) {
    std::this_thread::sleep_for(20ms);
    text = run_json("console " + name).at("text").as_string().c_str();
  }
  ASSERT_NE(text.find("LAST-LINE"), std::string::npos) << text.substr(0, 200);
  const auto size = [](const fs::path& p) { return fs::exists(p) ? fs::file_size(p) : 0; };
  EXPECT_LE(size(log) + size(log.string() + ".1"), 16384u);
  EXPECT_GT(size(log.string() + ".1"), 0u);  // it rotated
  EXPECT_NE(text.find("60000\n"), std::string::npos);  // the newest output is kept
  EXPECT_EQ(text.find("\n1\n2\n3\n"), std::string::npos);  // the oldest is gone
  ASSERT_EQ(run("stop " + name).code, 0);
  EXPECT_LE(size(log) + size(log.string() + ".1"), 16384u);
}

TEST_F(Robust, AHandoffOverItsLimitsRollsTheUpdateBack) {
  const uint16_t port = free_port();
  ASSERT_NE(port, 0);
  fs::create_directories(rt);
  std::ofstream(rt / "limits.json") << R"({"max_handoff_fds": 1})";
  ASSERT_EQ(run("init --cpus 0-1 --memory 256M").code, 0);
  ASSERT_EQ(run("create " + name + " --cpus 1 --memory 64M --device listen:127.0.0.1:" + std::to_string(port)).code, 0);
  ASSERT_EQ(run("load " + name + " --kernel " + kernel + " --cmdline --services=kv").code, 0);
  ASSERT_EQ(run("start " + name).code, 0);
  const pid_t first = image_pid(name);
  ASSERT_GT(first, 0);
  // A client holds a connection: with the listen socket, two fds to preserve.
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  auto ping = [&] {
    const std::string cmd = "*1\r\n$4\r\nPING\r\n";
    if (::send(fd, cmd.data(), cmd.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(cmd.size())) return std::string();
    char buf[64];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
  };
  ASSERT_EQ(ping(), "+PONG\r\n");

  CliRun u = run("update " + name);
  EXPECT_EQ(u.code, 1) << u.out;
  EXPECT_TRUE(std::regex_search(u.err, std::regex(R"(handoff package over a limit: \d+ preserved fds, the limit is 1 )"
                                                  R"(\(raise it: mkerneld --max-handoff-fds N or "max_handoff_fds" )"
                                                  R"(in limits.json\))")))
      << u.err;
  EXPECT_EQ(image_pid(name), first);  // rolled back: the old image serves
  EXPECT_EQ(ping(), "+PONG\r\n");
  json::object shown = run_json("show " + name);
  ASSERT_TRUE(shown.contains("instance") && shown.at("instance").as_object().contains("update")) << json::serialize(shown);
  const json::value& last = shown.at("instance").at("update").at("last");
  ASSERT_TRUE(last.is_object()) << json::serialize(shown);
  EXPECT_EQ(last.at("outcome").as_string(), "rolled back");
  EXPECT_NE(std::string(last.at("cause").as_string()).find("handoff package over a limit"), std::string::npos)
      << json::serialize(last);

  // The blob limit, with a new daemon (limits are read at its start).
  ASSERT_EQ(run("host stop").code, 0);
  std::ofstream(rt / "limits.json", std::ios::trunc) << R"({"max_handoff_blob": 16})";
  CliRun b = run("update " + name);
  EXPECT_EQ(b.code, 1) << b.out;
  EXPECT_TRUE(std::regex_search(b.err, std::regex(R"(handoff package over a limit: handover blob of \d+ bytes, )"
                                                  R"(the limit is 16 \(raise it: mkerneld --max-handoff-blob BYTES)")))
      << b.err;
  EXPECT_EQ(image_pid(name), first);
  EXPECT_EQ(ping(), "+PONG\r\n");

  // Without the limits the same update goes through.
  ASSERT_EQ(run("host stop").code, 0);
  fs::remove(rt / "limits.json");
  CliRun ok = run("update " + name);
  ASSERT_EQ(ok.code, 0) << ok.err;
  EXPECT_NE(image_pid(name), first);
  EXPECT_EQ(ping(), "+PONG\r\n");
  ::close(fd);
  ASSERT_EQ(run("stop " + name).code, 0);
}

}  // namespace
