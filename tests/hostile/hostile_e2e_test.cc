// A hostile instance beside a KV instance, through mkctl and mkerneld
// (issue #8): whatever the hostile image (tests/hostile/hostile_image.cc)
// does to its rings, the host and the other instance must not crash, hang
// or starve. For each --mode:
//   - mkerneld answers `host status`, `show` and `top` within 10 s;
//   - the KV instance answers `mkctl ping` and serves its keys over TCP,
//     also after it was asked to ping the hostile one over their channel;
//   - `mkctl ping HOSTILE` (from the host, and from the KV instance over
//     their channel) fails within 10 s with an error naming it (except
//     refuse-shutdown, which answers pings);
//   - `mkctl stop HOSTILE` ends it (falling back to SIGKILL), and so does
//     `--force`; no process or cgroup of it is left;
//   - the daemon's fd count and RSS do not grow while the hostile one runs.
// Needs root and CPUs 0 and 1 (KV on 0, hostile on 1).
#include <dirent.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "../tools/daemon_fixture.h"
#include "../tools/instance_probe.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr double kBound = 10.0;  // seconds: generous, never tight timing

struct ProcUse {
  long rss_kb = -1;
  long fds = -1;
  double cpu_s = 0;  // user + system
  Clock::time_point at = Clock::now();
};

ProcUse proc_use(pid_t pid) {
  ProcUse u;
  const fs::path p = fs::path("/proc") / std::to_string(pid);
  const std::string rss = status_field(p / "status", "VmRSS");
  if (!rss.empty()) u.rss_kb = std::atol(rss.c_str());
  std::error_code ec;
  long n = 0;
  for (auto it = fs::directory_iterator(p / "fd", ec); !ec && it != fs::directory_iterator(); it.increment(ec)) ++n;
  if (!ec) u.fds = n;
  const std::string stat = slurp(p / "stat");
  const std::size_t close = stat.rfind(')');
  unsigned long ut = 0, st = 0;
  if (close != std::string::npos &&
      std::sscanf(stat.c_str() + close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
    u.cpu_s = static_cast<double>(ut + st) / static_cast<double>(::sysconf(_SC_CLK_TCK));
  return u;
}

class Hostile : public Daemon {
 protected:
  struct Timed {
    CliRun r;
    double secs;
  };
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (cgroups, namespaces)";
    if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs CPUs 0 and 1";
    Daemon::SetUp();
    kv = "hk-" + std::to_string(::getpid());
    bad = "hb-" + std::to_string(::getpid());
  }
  void TearDown() override {
    if (::geteuid() != 0 || std::thread::hardware_concurrency() < 2) return;
    if (client >= 0) ::close(client);
    Daemon::TearDown();
    for (const std::string& n : {kv, bad})
      for (const char* h : {"cpuset", "memory"}) ::rmdir(("/sys/fs/cgroup/" + std::string(h) + "/mkernel/" + n).c_str());
    for (const char* h : {"cpuset", "memory"}) ::rmdir(("/sys/fs/cgroup/" + std::string(h) + "/mkernel").c_str());
  }
  Timed timed(const std::string& args) {
    const auto t0 = Clock::now();
    CliRun r = run(args);
    return {std::move(r), std::chrono::duration<double>(Clock::now() - t0).count()};
  }
  json::object parse(const std::string& s) {
    boost::system::error_code ec;
    json::value v = json::parse(s, ec);
    return !ec && v.is_object() ? v.as_object() : json::object{};
  }
  pid_t pid_of(const std::string& n) {
    json::object doc = parse(run("show " + n + " --json").out);
    if (!doc.contains("instance")) return 0;
    const json::object& i = doc.at("instance").as_object();
    return i.contains("runtime") ? static_cast<pid_t>(i.at("runtime").as_object().at("pid").as_int64()) : 0;
  }
  std::string state_of(const std::string& n) {
    json::object doc = parse(run("show " + n + " --json").out);
    if (!doc.contains("instance")) return "?";
    return std::string(doc.at("instance").as_object().at("state").as_string());
  }
  // No process left in, and no directory left of, the instance's cgroups.
  void expect_no_cgroup(const std::string& n, const std::string& where) {
    for (const char* h : {"cpuset", "memory"}) {
      const fs::path dir = fs::path("/sys/fs/cgroup") / h / "mkernel" / n;
      EXPECT_FALSE(fs::exists(dir)) << where << ": " << dir << " left: tasks " << slurp(dir / "tasks");
    }
  }

  void start_pair(const std::string& mode, const std::string& extra = "") {
    port = free_port();
    ASSERT_NE(port, 0);
    ASSERT_EQ(run("init --cpus 0-1 --memory 256M").code, 0);
    // Both exist before either starts: the daemon makes their channel when
    // the first one (the KV instance, side A) starts.
    CliRun c = run("create " + kv + " --cpus 0 --memory 64M --device listen:127.0.0.1:" + std::to_string(port));
    ASSERT_EQ(c.code, 0) << c.err;
    c = run("create " + bad + " --cpus 1 --memory 64M");
    ASSERT_EQ(c.code, 0) << c.err;
    c = run("load " + kv + " --kernel " + std::string(MK_BIN_DIR) + "/mk-kernel --cmdline '--services=kv'");
    ASSERT_EQ(c.code, 0) << c.err;
    c = run("load " + bad + " --kernel " + std::string(MK_BIN_DIR) + "/mk-hostile --cmdline '--mode=" + mode +
            (extra.empty() ? "" : " " + extra) + "'");
    ASSERT_EQ(c.code, 0) << c.err;
    c = run("start " + kv);
    ASSERT_EQ(c.code, 0) << c.err;
    client = connect_kv(port);
    ASSERT_GE(client, 0);
    for (int k = 0; k < 20; ++k)
      ASSERT_EQ(resp(client, {"SET", "k" + std::to_string(k), "v" + std::to_string(k)}), "+OK");
    daemon = daemon_pid();
    ASSERT_GT(daemon, 0);
    before_hostile = proc_use(daemon);
    Timed s = timed("start " + bad);
    ASSERT_EQ(s.r.code, 0) << s.r.err;
    EXPECT_LT(s.secs, kBound);
    hostile_pid = pid_of(bad);
    ASSERT_GT(hostile_pid, 0);
    // It booted in that mode, with its channel to the KV instance.
    const std::string con = run("console " + bad).out;
    EXPECT_NE(con.find("mode " + mode + ","), std::string::npos) << con;
    EXPECT_NE(con.find("1 peer channel(s)"), std::string::npos) << con;
  }

  // The daemon answers; the KV instance answers the host and serves its keys.
  void expect_host_and_kv_fine(const std::string& where) {
    for (const std::string& cmd : {std::string("host status"), std::string("show"), "show " + kv + " --json"}) {
      Timed t = timed(cmd);
      EXPECT_EQ(t.r.code, 0) << where << ": " << cmd << ": " << t.r.err;
      EXPECT_LT(t.secs, kBound) << where << ": " << cmd;
    }
    Timed p = timed("ping " + kv + " --count 20");
    EXPECT_EQ(p.r.code, 0) << where << ": ping " << kv << ": " << p.r.err;
    EXPECT_LT(p.secs, kBound) << where;
    for (int k = 0; k < 20; ++k)
      ASSERT_EQ(resp(client, {"GET", "k" + std::to_string(k)}), "$v" + std::to_string(k)) << where;
  }

  // The whole scenario for one mode.
  void exercise(const std::string& mode, bool answers_ping) {
    start_pair(mode);
    if (HasFatalFailure()) return;
    std::this_thread::sleep_for(1s);  // let it misbehave
    expect_host_and_kv_fine("after 1 s of " + mode);
    const ProcUse first = proc_use(daemon);
    const pid_t kv_image = pid_of(kv);
    const ProcUse kv_first = proc_use(kv_image);
    for (int round = 0; round < 2; ++round) {
      const std::string where = mode + ", round " + std::to_string(round);
      Timed p = timed("ping " + bad + " --count 3");
      EXPECT_LT(p.secs, kBound) << where << ": ping of the hostile instance hung";
      if (answers_ping) {
        EXPECT_EQ(p.r.code, 0) << where << ": " << p.r.err;
      } else {
        EXPECT_NE(p.r.code, 0) << where << ": ping of the hostile instance succeeded: " << p.r.out;
        EXPECT_NE(p.r.err.find(bad), std::string::npos) << where << ": the error does not name the instance: " << p.r.err;
      }
      if (round == 0) std::printf("[ %s ] mkctl ping %s: exit %d in %.2f s: %s", mode.c_str(), bad.c_str(),
                                  p.r.code, p.secs, (p.r.code ? p.r.err : p.r.out).c_str());
      // The KV instance pings the hostile one over their channel: fails
      // (refuse-shutdown: answers), and must leave the KV instance serving.
      Timed q = timed("ping " + bad + " --from " + kv + " --count 3");
      if (answers_ping) {
        EXPECT_EQ(q.r.code, 0) << where << ": ping over the channel: " << q.r.err;
      } else {
        EXPECT_NE(q.r.code, 0) << where << ": ping over the channel succeeded: " << q.r.out;
      }
      EXPECT_LT(q.secs, kBound) << where << ": ping over the channel hung";
      if (round == 0) std::printf("[ %s ] mkctl ping %s --from %s: exit %d in %.2f s: %s", mode.c_str(), bad.c_str(),
                                  kv.c_str(), q.r.code, q.secs, (q.r.code ? q.r.err : q.r.out).c_str());
      Timed top = timed("top --interval 200");
      EXPECT_EQ(top.r.code, 0) << where << ": top: " << top.r.err;
      EXPECT_LT(top.secs, kBound) << where << ": top";
      expect_host_and_kv_fine(where);
      if (HasFatalFailure()) return;
    }
    const ProcUse last = proc_use(daemon);
    const ProcUse kv_last = proc_use(kv_image);
    std::printf("[ %s ] KV image: CPU %.0f %% of one core over the rounds\n", mode.c_str(),
                100.0 * (kv_last.cpu_s - kv_first.cpu_s) / std::chrono::duration<double>(kv_last.at - kv_first.at).count());
    std::printf("[ %s ] mkerneld: fds %ld before the hostile start, %ld / %ld with it; VmRSS %ld / %ld kB; "
                "CPU %.0f %% of one core over the rounds\n",
                mode.c_str(), before_hostile.fds, first.fds, last.fds, first.rss_kb, last.rss_kb,
                100.0 * (last.cpu_s - first.cpu_s) / std::chrono::duration<double>(last.at - first.at).count());
    EXPECT_LE(last.fds, first.fds + 2) << mode << ": the daemon's fds grow";
    EXPECT_LT(last.rss_kb - first.rss_kb, 16 * 1024) << mode << ": the daemon's RSS grows";

    // Stop: the shutdown request is never answered properly, the daemon
    // falls back to SIGKILL after --timeout + --grace.
    Timed st = timed("stop " + bad + " --timeout 1000 --grace 500 --json");
    EXPECT_EQ(st.r.code, 0) << mode << ": stop: " << st.r.err;
    EXPECT_LT(st.secs, kBound) << mode << ": stop";
    const json::object sdoc = parse(st.r.out);
    const std::string how = sdoc.contains("how") ? std::string(sdoc.at("how").as_string()) : st.r.out;
    std::printf("[ %s ] mkctl stop %s: %.2f s: %s\n", mode.c_str(), bad.c_str(), st.secs, how.c_str());
    EXPECT_NE(how.find("killed after the shutdown request failed"), std::string::npos) << mode << ": " << how;
    EXPECT_FALSE(process_alive(hostile_pid)) << mode << ": image pid " << hostile_pid << " survived stop";
    EXPECT_EQ(state_of(bad), "loaded") << mode;
    expect_no_cgroup(bad, mode + ": after stop");
    expect_host_and_kv_fine(mode + ": after stop");
    if (HasFatalFailure()) return;

    // Again, stopped with --force.
    Timed s2 = timed("start " + bad);
    ASSERT_EQ(s2.r.code, 0) << mode << ": restart: " << s2.r.err;
    const pid_t again = pid_of(bad);
    std::this_thread::sleep_for(500ms);
    Timed f = timed("stop " + bad + " --force");
    EXPECT_EQ(f.r.code, 0) << mode << ": stop --force: " << f.r.err;
    EXPECT_LT(f.secs, kBound) << mode << ": stop --force";
    EXPECT_FALSE(process_alive(again)) << mode << ": image pid " << again << " survived stop --force";
    expect_no_cgroup(bad, mode + ": after stop --force");
    expect_host_and_kv_fine(mode + ": after stop --force");
    if (HasFatalFailure()) return;

    const ProcUse end = proc_use(daemon);
    std::printf("[ %s ] mkerneld after the hostile instance stopped: fds %ld, VmRSS %ld kB\n", mode.c_str(), end.fds,
                end.rss_kb);
    EXPECT_LE(end.fds, before_hostile.fds) << mode << ": fds of the hostile instance left open in the daemon";

    // The KV instance still shuts down cleanly over IPI; nothing is left.
    const pid_t kv_pid = pid_of(kv);
    Timed k = timed("stop " + kv + " --json");
    EXPECT_EQ(k.r.code, 0) << k.r.err;
    const json::object kdoc = parse(k.r.out);
    EXPECT_EQ(kdoc.contains("how") ? std::string(kdoc.at("how").as_string()) : k.r.out, "shut down over IPI");
    EXPECT_FALSE(process_alive(kv_pid));
    expect_no_cgroup(kv, mode + ": after the KV stop");
    EXPECT_EQ(daemon_pid(), daemon) << mode << ": mkerneld restarted (it crashed)";
  }

  std::string kv, bad;
  uint16_t port = 0;
  int client = -1;
  pid_t daemon = 0, hostile_pid = 0;
  ProcUse before_hostile;
};

TEST_F(Hostile, Scribble) { exercise("scribble", false); }
TEST_F(Hostile, Flood) { exercise("flood", false); }
TEST_F(Hostile, Garbage) { exercise("garbage", false); }
TEST_F(Hostile, RefuseShutdown) { exercise("refuse-shutdown", true); }
TEST_F(Hostile, Silent) { exercise("silent", false); }

// A slow peer (each ping answered 900 ms late): the host's deadline in
// PingPeerMsg ends the KV instance's series when mkctl stops waiting, so the
// KV instance answers the host again at once, not after its own 30 s bound.
TEST_F(Hostile, ASlowPeerDoesNotKeepTheOtherInstanceFromTheHost) {
  start_pair("refuse-shutdown", "--ping-delay-ms=900");
  if (HasFatalFailure()) return;
  Timed series = timed("ping " + bad + " --from " + kv + " --count 1000");
  EXPECT_NE(series.r.code, 0) << series.r.out;
  EXPECT_LT(series.secs, kBound);
  Timed p = timed("ping " + kv + " --count 3");
  EXPECT_EQ(p.r.code, 0) << p.r.err;
  // The series had 2.1 s (2000 ms + count/10); the image stops 200 ms before
  // that: the host thread is free again within about one late ping (it
  // took 30 s, the image's own bound, before the deadline was sent).
  EXPECT_LT(p.secs, kBound) << "the KV instance was still busy with the series";
  std::printf("[ slow peer ] ping series gave up in %.2f s (%s); the KV instance answered the host %.2f s later\n",
              series.secs, series.r.err.substr(0, series.r.err.find('\n')).c_str(), p.secs);
  EXPECT_EQ(run("stop " + bad + " --force").code, 0);
}

}  // namespace
