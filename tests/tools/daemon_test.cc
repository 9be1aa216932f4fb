// mkerneld end to end: the real mkctl and mkerneld binaries against a
// private runtime directory per test. The test process is a child subreaper,
// so every daemon mkctl starts becomes our child once mkctl exits; TearDown
// kills and reaps it.
#include "daemon_fixture.h"

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

TEST_F(Daemon, AutoStartsOnFirstUseAndServes) {
  EXPECT_EQ(daemon_pid(), 0);
  CliRun r = run("show");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "no pool set (mkctl init sets one)\n");
  pid_t pid = daemon_pid();
  ASSERT_GT(pid, 0);
  CliRun st = run("host status --json");
  ASSERT_EQ(st.code, 0) << st.err;
  json::object s = json::parse(st.out).as_object();
  EXPECT_EQ(s.at("pid").as_int64(), pid);
  EXPECT_EQ(s.at("runtime_dir").as_string(), rt.string());

  ASSERT_EQ(run("init --cpus 0 --memory 64M").code, 0);
  CliRun c = run("create a --cpus 0 --memory 16M");
  ASSERT_EQ(c.code, 0) << c.err;
  EXPECT_NE(c.out.find("created 'a' (id 1): cpus 0, memory 16 MiB"), std::string::npos) << c.out;
  CliRun sh = run("show a --json --dtb " + (dir / "a.dtb").string());
  ASSERT_EQ(sh.code, 0) << sh.err;
  json::object d = json::parse(sh.out).as_object();
  EXPECT_EQ(d.at("instance").as_object().at("name").as_string(), "a");
  EXPECT_GT(d.at("dtb").as_object().at("bytes").as_int64(), 0);
  EXPECT_GT(fs::file_size(dir / "a.dtb"), 0u);
  EXPECT_EQ(daemon_pid(), pid);  // the same daemon served every call
  // The daemon, not mkctl, wrote the state.
  EXPECT_NE(slurp(rt / "state.json").find("\"name\":\"a\""), std::string::npos);
}

TEST_F(Daemon, RefusalsKeepTheirTextJsonAndExitCodes) {
  CliRun r = run("delete nope --json");
  EXPECT_EQ(r.code, 1);
  json::object e = json::parse(r.out).as_object().at("error").as_object();
  EXPECT_EQ(e.at("errno").as_int64(), ENOENT);
  EXPECT_EQ(e.at("error").as_string(), "no such instance");
  EXPECT_EQ(r.err, "mkctl delete: no such instance: no instance named 'nope' (instances: none)\n");
  CliRun c = run("create a --cpus 0 --memory 16M");
  EXPECT_EQ(c.code, 1);  // no pool
  EXPECT_NE(c.err.find("nothing was changed"), std::string::npos) << c.err;
  EXPECT_EQ(run("create a --cpus 0").code, 2);  // bad usage never reaches the daemon
}

TEST_F(Daemon, ConcurrentCallsRaceTheAutoStartAndAreSerialized) {
  // Eight clients find no daemon at once: all are served, by one daemon.
  std::string env = "MKERNEL_RUNTIME_DIR='" + rt.string() + "' ";
  std::string mkctl = std::string(MK_BIN_DIR) + "/mkctl";
  std::string cmd;
  for (int i = 0; i < 8; ++i)
    cmd += env + mkctl + " show >" + (dir / ("show" + std::to_string(i))).string() + " 2>&1 & ";
  cmd += "\nfail=0; for j in $(jobs -p); do wait $j || fail=1; done; exit $fail\n";
  ASSERT_EQ(run_script(cmd), 0) << slurp(dir / "show0");
  for (int i = 0; i < 8; ++i) EXPECT_EQ(slurp(dir / ("show" + std::to_string(i))), "no pool set (mkctl init sets one)\n");
  pid_t pid = daemon_pid();
  ASSERT_GT(pid, 0);
  // Four creates of one CPU each on a two-CPU pool: exactly two win, with
  // different CPUs, and the state holds exactly those two.
  ASSERT_EQ(run("init --cpus 0-1 --memory 64M").code, 0);
  cmd.clear();
  for (int i = 0; i < 4; ++i)
    cmd += env + mkctl + " create i" + std::to_string(i) + " --cpu-count 1 --memory 4M >/dev/null 2>&1 & ";
  cmd += "\nwait\n";
  ASSERT_EQ(run_script(cmd), 0);
  CliRun r = run("show --json");
  ASSERT_EQ(r.code, 0) << r.err;
  json::value doc = json::parse(r.out);
  auto& insts = doc.as_object().at("instances").as_array();
  ASSERT_EQ(insts.size(), 2u);
  EXPECT_NE(insts[0].as_object().at("cpus").as_string(), insts[1].as_object().at("cpus").as_string());
  EXPECT_EQ(doc.as_object().at("free_cpus").as_string(), "");
  EXPECT_EQ(daemon_pid(), pid);
}

TEST_F(Daemon, ControlSocketIsMode0600) {
  ASSERT_EQ(run("show").code, 0);
  struct stat st;
  ASSERT_EQ(::stat((rt / "control.sock").c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, ::geteuid());
}

TEST_F(Daemon, StateSurvivesSigkillAndANewDaemonReloadsIt) {
  ASSERT_EQ(run("init --cpus 0 --memory 64M").code, 0);
  ASSERT_EQ(run("create a --cpus 0 --memory 16M").code, 0);
  pid_t first = daemon_pid();
  ASSERT_GT(first, 0);
  ASSERT_EQ(::kill(first, SIGKILL), 0);
  EXPECT_EQ(exit_code(first), 128 + SIGKILL);
  EXPECT_TRUE(fs::exists(rt / "control.sock"));  // stale: nobody removed it
  CliRun r = run("show --json");
  ASSERT_EQ(r.code, 0) << r.err;
  pid_t second = daemon_pid();
  EXPECT_GT(second, 0);
  EXPECT_NE(second, first);
  json::value doc = json::parse(r.out);
  auto& insts = doc.as_object().at("instances").as_array();
  ASSERT_EQ(insts.size(), 1u);
  EXPECT_EQ(insts[0].as_object().at("name").as_string(), "a");
}

TEST_F(Daemon, ASecondDaemonIsRefusedNamingTheFirst) {
  ASSERT_EQ(run("show").code, 0);
  pid_t first = daemon_pid();
  ASSERT_GT(first, 0);
  pid_t second = spawn_daemon();
  EXPECT_EQ(exit_code(second), 3);
  std::string log = slurp(dir / "direct.log");
  EXPECT_NE(log.find("already running"), std::string::npos) << log;
  EXPECT_NE(log.find("pid " + std::to_string(first)), std::string::npos) << log;
  EXPECT_EQ(daemon_pid(), first);
  EXPECT_EQ(run("show").code, 0);  // the first still serves
}

TEST_F(Daemon, AnotherUidIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to switch to uid 65534";
  ASSERT_EQ(run("show").code, 0);
  // Widen the permissions on purpose, so the kernel lets uid 65534 connect
  // and the daemon's own SO_PEERCRED check is what refuses it.
  fs::permissions(rt, fs::perms::owner_all | fs::perms::others_exec | fs::perms::group_exec);
  fs::permissions(rt / "control.sock", fs::perms::all);
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  pid_t child = ::fork();
  if (child == 0) {
    ::close(pipefd[0]);
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) ::_exit(10);
    int fd = connect_socket();
    if (fd < 0) ::_exit(11);
    const char req[] = "{\"action\":\"show\"}\n";
    if (::send(fd, req, sizeof req - 1, MSG_NOSIGNAL) < 0) {
      // The daemon may have answered and closed already; read anyway.
    }
    std::string line = read_line(fd);
    ssize_t w = ::write(pipefd[1], line.data(), line.size());
    ::_exit(w == static_cast<ssize_t>(line.size()) ? 0 : 12);
  }
  ::close(pipefd[1]);
  std::string got;
  char buf[4096];
  for (ssize_t n; (n = ::read(pipefd[0], buf, sizeof buf)) > 0;) got.append(buf, static_cast<std::size_t>(n));
  ::close(pipefd[0]);
  ASSERT_EQ(exit_code(child), 0);
  json::object resp = json::parse(got).as_object();
  EXPECT_FALSE(resp.at("ok").as_bool());
  EXPECT_EQ(resp.at("error").as_object().at("errno").as_int64(), EACCES);
  EXPECT_NE(std::string(resp.at("error").as_object().at("message").as_string()).find("uid 65534"),
            std::string::npos);
  EXPECT_NE(slurp(rt / "mkerneld.log").find("refused a connection from uid 65534"), std::string::npos);
  EXPECT_EQ(run("show").code, 0);  // the owner still gets served
}

TEST_F(Daemon, MalformedRequestsGetErrorsAndTheDaemonKeepsServing) {
  ASSERT_EQ(run("show").code, 0);
  pid_t pid = daemon_pid();
  const std::vector<std::pair<std::string, int>> bad = {
      {"garbage\n", EBADMSG},
      {"\n", EBADMSG},
      {"[1]\n", EBADMSG},
      {"{\"action\":\"reboot\"}\n", EOPNOTSUPP},
      {"{\"action\":\"show\",\"bogus\":true}\n", EINVAL},
      {"{\"action\":\"delete\",\"name\":42}\n", EINVAL},
      {"{\"action\":\"create\",\"name\":\"a\",\"cpus\":\"0\",\"memory\":\"lots\"}\n", EINVAL},
      {std::string(1 << 20, 'x') + "xx\n", EMSGSIZE},
  };
  for (const auto& [bytes, code] : bad) {
    json::object r = raw(bytes);
    ASSERT_TRUE(r.contains("ok")) << bytes.substr(0, 60);
    EXPECT_FALSE(r.at("ok").as_bool()) << bytes.substr(0, 60);
    EXPECT_EQ(r.at("error").as_object().at("errno").as_int64(), code) << bytes.substr(0, 60);
  }
  // Several requests on one connection, after a bad one.
  int fd = connect_socket();
  ASSERT_GE(fd, 0);
  std::string two = "{\"action\":\"nope\"}\n{\"action\":\"host-status\"}\n";
  ASSERT_EQ(::send(fd, two.data(), two.size(), MSG_NOSIGNAL), static_cast<ssize_t>(two.size()));
  EXPECT_NE(read_line(fd).find("\"ok\":false"), std::string::npos);
  EXPECT_NE(read_line(fd).find("\"ok\":true"), std::string::npos);
  ::close(fd);
  EXPECT_EQ(daemon_pid(), pid);
  EXPECT_EQ(run("show").code, 0);
}

TEST_F(Daemon, HostStopExitsCleanlyAndRemovesTheSocket) {
  CliRun none = run("host stop");
  EXPECT_EQ(none.code, 0);
  EXPECT_NE(none.out.find("not running"), std::string::npos);
  EXPECT_FALSE(fs::exists(rt / "control.sock"));  // stopping did not start one
  ASSERT_EQ(run("init --cpus 0 --memory 64M").code, 0);
  pid_t pid = daemon_pid();
  ASSERT_GT(pid, 0);
  CliRun r = run("host stop --json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(json::parse(r.out).as_object().at("stopped").as_bool());
  // host stop returned: the socket is gone and the directory is free already.
  EXPECT_FALSE(fs::exists(rt / "control.sock"));
  EXPECT_EQ(daemon_pid(), 0);
  EXPECT_EQ(exit_code(pid), 0);
  EXPECT_EQ(run("host stop --topology /x.xml").code, 2);
  // The next call starts a new daemon with the same state.
  CliRun s = run("show --json");
  ASSERT_EQ(s.code, 0) << s.err;
  EXPECT_EQ(json::parse(s.out).as_object().at("pool").as_object().at("cpus").as_string(), "0");
}

TEST_F(Daemon, SigtermExitsCleanlyAndRemovesTheSocket) {
  ASSERT_EQ(run("show").code, 0);
  pid_t pid = daemon_pid();
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  EXPECT_EQ(exit_code(pid), 0);
  EXPECT_FALSE(fs::exists(rt / "control.sock"));
}

TEST_F(Daemon, CorruptStateRefusesToStartAndIsLeftUntouched) {
  fs::create_directories(rt);
  const std::string junk = "{\"format\": \"mkernel-state-v1\", \"topo";
  std::ofstream(rt / "state.json") << junk;
  CliRun r = run("show");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("mkerneld failed to start"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("corrupt state file"), std::string::npos) << r.err;
  EXPECT_EQ(slurp(rt / "state.json"), junk);
  EXPECT_EQ(daemon_pid(), 0);
  EXPECT_FALSE(fs::exists(rt / "control.sock"));
  CliRun j = run("show --json");
  EXPECT_EQ(j.code, 1);
  EXPECT_EQ(json::parse(j.out).as_object().at("error").as_object().at("errno").as_int64(), EBADMSG);
}

TEST_F(Daemon, NotifiesSystemdWhenNotifySocketIsSet) {
  std::string path = (dir / "notify").string();
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  pid_t pid = spawn_daemon("NOTIFY_SOCKET='" + path + "'");
  char buf[256];
  ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<std::size_t>(n)), "READY=1");
  EXPECT_TRUE(fs::exists(rt / "control.sock"));  // ready means listening
  ::kill(pid, SIGTERM);
  n = ::recv(fd, buf, sizeof buf, 0);
  EXPECT_EQ(std::string(buf, static_cast<std::size_t>(n > 0 ? n : 0)), "STOPPING=1");
  EXPECT_EQ(exit_code(pid), 0);
  ::close(fd);
}

TEST_F(Daemon, TopologyFilesStayLocalWhileADaemonRuns) {
  ASSERT_EQ(run("show").code, 0);
  pid_t pid = daemon_pid();
  std::string topo = " --topology " + std::string(MK_TEST_DATA) + "/topologies/Intel-RaptorLake-Corei7-1370P.xml";
  CliRun r = run("init --cpus 2-19 --memory 1G@0" + topo);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(rt / "topo"));
  EXPECT_FALSE(fs::exists(rt / "state.json"));  // the live state was not touched
  EXPECT_EQ(daemon_pid(), pid);
}

}  // namespace
