// Memory and device moves end to end through mkctl and mkerneld (issue #6):
// a running KV instance gains and gives up memory regions and listen/file
// devices with `mkctl update NAME --memory LIST | --device SPEC...`. Checked
// from outside after every change: the state file (mkctl show), the image's
// own mappings and fds (/proc/PID/maps, /proc/PID/fd), the memory cgroup's
// limit, and the same client connection still reading every key; a new
// listen device is served, a released one refuses connections. The image's
// refusals (region 0 holds the kv store, its last listen device), the
// host's checks and an injected failure at each step change nothing; a
// daemon killed mid-change is undone by its restart; a live update after a
// change boots the new image with the new lists. Needs root; SERIAL (live
// cgroups, both CPUs).
#include <fcntl.h>

#include "kv_instance_fixture.h"

namespace {

class Resources : public KvInstance {
 protected:
  // The memfd of region `i` is mapped by the image (RegionFd's label).
  bool maps_region(pid_t pid, int i) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/maps");
    const std::string label = "memfd:mk-" + name + "-mem" + std::to_string(i);
    for (std::string line; std::getline(f, line);)
      if (line.find(label) != std::string::npos) return true;
    return false;
  }
  // Fds of `pid` whose link target is `target`.
  int fds_to(pid_t pid, const std::string& target) {
    int n = 0;
    for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
      std::error_code ec;
      if (fs::read_symlink(e.path(), ec).string() == target) ++n;
    }
    return n;
  }
  std::vector<uint64_t> regions() {
    json::object doc = run_json("show " + name);
    std::vector<uint64_t> out;
    if (!doc.contains("instance")) return out;
    for (const auto& m : doc.at("instance").as_object().at("memory").as_array())
      out.push_back(m.as_object().at("bytes").to_number<uint64_t>());
    return out;
  }
  std::vector<std::string> devices() {
    json::object doc = run_json("show " + name);
    std::vector<std::string> out;
    if (!doc.contains("instance")) return out;
    for (const auto& d : doc.at("instance").as_object().at("devices").as_array())
      out.emplace_back(d.as_string());
    return out;
  }
  uint64_t memory_limit() {
    const std::string v = trim(slurp(fs::path("/sys/fs/cgroup/memory/mkernel") / name / "memory.limit_in_bytes"));
    return v.empty() ? 0 : std::stoull(v);
  }
  std::string listen(uint16_t p) { return "listen:127.0.0.1:" + std::to_string(p); }
  // The instance's guarantee lines (mkctl show --json).
  std::vector<std::string> guarantees() {
    json::object doc = run_json("show " + name);
    std::vector<std::string> out;
    if (!doc.contains("instance") || !doc.at("instance").as_object().contains("runtime")) return out;
    for (const auto& g : doc.at("instance").as_object().at("runtime").as_object().at("guarantees").as_array())
      out.emplace_back(g.as_string());
    return out;
  }
  static int lines_starting(const std::vector<std::string>& lines, const std::string& prefix) {
    int n = 0;
    for (const auto& l : lines) n += l.rfind(prefix, 0) == 0;
    return n;
  }
  // One connection attempt, no retry: true when the port refuses it.
  static bool refuses(uint16_t p) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(p);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool refused = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno == ECONNREFUSED;
    ::close(fd);
    return refused;
  }
  static constexpr uint64_t kMiB = 1ull << 20;
  static constexpr uint64_t kOverhead = 256 * kMiB;  // mk::kInstanceOverheadBytes
};

TEST_F(Resources, RegionsAreAddedAndReleasedWhileTheInstanceServes) {
  start_kv();
  const pid_t pid = image_pid();
  ASSERT_GT(pid, 0);
  EXPECT_EQ(memory_limit(), 64 * kMiB + kOverhead);

  json::object g = run_json("update " + name + " --memory 64M,32M");
  ASSERT_TRUE(g.contains("memory")) << json::serialize(g);
  EXPECT_TRUE(g.at("running").as_bool());
  EXPECT_EQ(g.at("added").as_array().size(), 1u);
  EXPECT_EQ(g.at("added").as_array()[0].as_string(), "region 1: 32 MiB on node 0");
  EXPECT_TRUE(g.at("removed").as_array().empty());
  EXPECT_EQ(regions(), (std::vector<uint64_t>{64 * kMiB, 32 * kMiB}));
  EXPECT_TRUE(maps_region(pid, 1)) << "the image maps the new region";
  EXPECT_EQ(memory_limit(), 96 * kMiB + kOverhead);
  expect_keys("after adding a region");

  // Two more at once (comma list and repeated --memory), then back to one.
  CliRun two = run("update " + name + " --memory 64M,32M --memory 16M@0,16M");
  ASSERT_EQ(two.code, 0) << two.err;
  EXPECT_NE(two.out.find("+ region 3: 16 MiB on node 0"), std::string::npos) << two.out;
  EXPECT_EQ(regions().size(), 4u);
  EXPECT_TRUE(maps_region(pid, 3));
  CliRun s = run("update " + name + " --memory 64M");
  ASSERT_EQ(s.code, 0) << s.err;
  EXPECT_NE(s.out.find("- region 1: 32 MiB on node 0"), std::string::npos) << s.out;
  EXPECT_EQ(regions(), (std::vector<uint64_t>{64 * kMiB}));
  for (int i = 1; i <= 3; ++i) EXPECT_FALSE(maps_region(pid, i)) << "region " << i << " still mapped";
  EXPECT_EQ(memory_limit(), 64 * kMiB + kOverhead);
  expect_keys("after releasing three regions");
  EXPECT_EQ(image_pid(), pid) << "the same image throughout";
}

TEST_F(Resources, TheImageRefusesARegionInUseAndTheHostItsOwnChecks) {
  start_kv();
  const pid_t pid = image_pid();
  // Region 0 holds the kv store: replacing it is refused by the image.
  CliRun busy = run("update " + name + " --memory 32M");
  EXPECT_EQ(busy.code, 1) << busy.out;
  EXPECT_NE(busy.err.find("refused kMsgMemoryRelease #0"), std::string::npos) << busy.err;
  EXPECT_NE(busy.err.find("nothing changed"), std::string::npos) << busy.err;
  EXPECT_EQ(regions(), (std::vector<uint64_t>{64 * kMiB}));
  EXPECT_TRUE(maps_region(pid, 0));
  expect_keys("after the refusal");
  // The host's checks, before anything is asked.
  struct Case {
    std::string args, words;
    int code;
  };
  const std::vector<Case> cases = {
      {"--memory 64M,1G", "not enough pool memory", 1},
      {"--memory 64M,16M@7", "NUMA node 7", 1},
      {"--memory 64M,1000", "page", 1},
      {"--memory x", "--memory", 2},
      {"--memory 64M --device none", "one at a time", 2},
      {"--memory 64M --cpus 0", "one at a time", 2},
      {"--device bogus:x", "--device", 2},
      {"--device none " + listen(port), "stands alone", 2},
      {"--device " + listen(port) + " " + listen(port), "given twice", 1},
      {"--device net:nosuchif0", "not in the pool", 1},
  };
  for (const Case& c : cases) {
    CliRun r = run("update " + name + " " + c.args);
    EXPECT_EQ(r.code, c.code) << c.args << ": " << r.out << r.err;
    EXPECT_NE(r.err.find(c.words), std::string::npos) << c.args << ": " << r.err;
  }
  EXPECT_NE(run("update nope --memory 64M").err.find("no such instance"), std::string::npos);
  EXPECT_EQ(regions(), (std::vector<uint64_t>{64 * kMiB}));
  EXPECT_EQ(devices(), (std::vector<std::string>{listen(port)}));
  // A failure injected at each step of a grow, then of a shrink: undone.
  for (std::string step : {"memory cgroup of", "add region 1"}) {
    CliRun r = run("update " + name + " --memory 64M,32M --fault 'fail:" + step + "'");
    EXPECT_EQ(r.code, 1) << step << ": " << r.out << r.err;
    EXPECT_NE(r.err.find("--fault fail:" + step), std::string::npos) << r.err;
    EXPECT_EQ(regions(), (std::vector<uint64_t>{64 * kMiB})) << step;
    EXPECT_FALSE(maps_region(pid, 1)) << step;
    EXPECT_EQ(memory_limit(), 64 * kMiB + kOverhead) << step;
  }
  ASSERT_EQ(run("update " + name + " --memory 64M,32M,16M").code, 0);
  CliRun r = run("update " + name + " --memory 64M,32M --memory 8M --fault 'fail:add region 2'");
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("undone: release region 2"), std::string::npos) << r.err;
  EXPECT_EQ(regions(), (std::vector<uint64_t>{64 * kMiB, 32 * kMiB, 16 * kMiB}));
  EXPECT_TRUE(maps_region(pid, 2)) << "the region released by the failed change is given back";
  expect_keys("after the failed changes");
}

TEST_F(Resources, ListenDevicesAreAddedServedAndReleased) {
  start_kv();
  const pid_t pid = image_pid();
  const uint16_t p2 = free_port();
  CliRun a = run("update " + name + " --device " + listen(port) + " " + listen(p2));
  ASSERT_EQ(a.code, 0) << a.err << a.out;
  EXPECT_NE(a.out.find("+ " + listen(p2)), std::string::npos) << a.out;
  EXPECT_EQ(devices(), (std::vector<std::string>{listen(port), listen(p2)}));
  int c2 = connect_kv(p2);
  ASSERT_GE(c2, 0);
  EXPECT_EQ(resp(c2, {"GET", "k3"}), "$v3") << "the new listen device serves the same store";
  EXPECT_EQ(resp(c2, {"SET", "via-p2", "yes"}), "+OK");

  // Its last listen device is refused; releasing the first one works and
  // keeps the connection accepted on it.
  CliRun last = run("update " + name + " --device none");
  EXPECT_EQ(last.code, 1);
  // Two listen devices: releasing both would leave none; the image refuses the second.
  EXPECT_NE(last.err.find("last listen device"), std::string::npos) << last.err;
  EXPECT_EQ(devices(), (std::vector<std::string>{listen(port), listen(p2)}));
  EXPECT_FALSE(refuses(port)) << "the undo gave the first listen device back";
  CliRun rel = run("update " + name + " --device " + listen(p2));
  ASSERT_EQ(rel.code, 0) << rel.err;
  EXPECT_EQ(devices(), (std::vector<std::string>{listen(p2)}));
  EXPECT_TRUE(refuses(port)) << "the released listen socket is closed";
  EXPECT_EQ(resp(client, {"GET", "via-p2"}), "$yes") << "a connection accepted on it stays";
  expect_keys("on the connection of the released device");

  // Replace the only listen device: the new one is added first.
  const uint16_t p3 = free_port();
  ASSERT_EQ(run("update " + name + " --device " + listen(p3)).code, 0);
  EXPECT_TRUE(refuses(p2));
  int c3 = connect_kv(p3);
  ASSERT_GE(c3, 0);
  EXPECT_EQ(resp(c3, {"GET", "k7"}), "$v7");

  // A file device: the image holds it open, then lets it go.
  const std::string file = (rt / "data.bin").string();
  { std::ofstream(file) << "x"; }
  ASSERT_EQ(run("update " + name + " --device " + listen(p3) + " file:" + file + ":ro").code, 0);
  EXPECT_EQ(fds_to(pid, file), 1);
  ASSERT_EQ(run("update " + name + " --device " + listen(p3)).code, 0);
  EXPECT_EQ(fds_to(pid, file), 0);
  EXPECT_EQ(image_pid(), pid);
  ::close(c2);
  ::close(c3);
}

TEST_F(Resources, ALiveUpdateAfterAChangeBootsTheNewListsAndAPaperChangeNeedsNoImage) {
  start_kv();
  const uint16_t p2 = free_port();
  const std::vector<std::string> before = guarantees();
  ASSERT_EQ(lines_starting(before, "irq steering: "), 1) << "the host's isolation lines are there from start";
  ASSERT_EQ(run("update " + name + " --memory 64M,32M").code, 0);
  std::vector<std::string> after = guarantees();
  EXPECT_EQ(lines_starting(after, "memory region: "), 2) << "a line per region";
  EXPECT_EQ(lines_starting(after, "memory cgroup: v1 limit " + std::to_string(96 * kMiB + kOverhead)), 1)
      << "the limit line follows";
  EXPECT_EQ(after.size(), before.size() + 1) << "no other line lost";
  ASSERT_EQ(run("update " + name + " --device " + listen(p2)).code, 0);
  CliRun u = run("update " + name);
  ASSERT_EQ(u.code, 0) << u.err << u.out;
  after = guarantees();
  EXPECT_EQ(lines_starting(after, "irq steering: "), 1) << "the host's lines carried to the new image";
  EXPECT_EQ(lines_starting(after, "host tasks: "), 1);
  EXPECT_EQ(lines_starting(after, "memory region: "), 2);
  const pid_t pid = image_pid();
  EXPECT_TRUE(maps_region(pid, 1)) << "the new image maps the added region";
  expect_keys("after the live update");
  int c2 = connect_kv(p2);
  ASSERT_GE(c2, 0);
  EXPECT_EQ(resp(c2, {"GET", "k1"}), "$v1") << "the new image serves the added listen device";
  EXPECT_TRUE(refuses(port));
  // And the new image gives the region up again.
  ASSERT_EQ(run("update " + name + " --memory 64M").code, 0);
  EXPECT_FALSE(maps_region(pid, 1));
  ::close(c2);

  // Not running: the state file only.
  ASSERT_EQ(run("stop " + name).code, 0);
  CliRun p = run("update " + name + " --memory 64M,8M");
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_NE(p.out.find("not running"), std::string::npos) << p.out;
  EXPECT_EQ(regions(), (std::vector<uint64_t>{64 * kMiB, 8 * kMiB}));
  ASSERT_EQ(run("start " + name).code, 0);
  EXPECT_TRUE(maps_region(image_pid(), 1)) << "started with the region added on paper";
}

TEST_F(Resources, ADaemonKilledMidChangeIsUndoneByItsRestart) {
  start_kv();
  const pid_t pid = image_pid();
  // Killed after the image took region 1, before the state file said so.
  CliRun r = run("update " + name + " --memory 64M,32M --fault 'host-exit-after:add region 1'");
  EXPECT_NE(r.code, 0) << r.out << r.err;
  EXPECT_EQ(regions(), (std::vector<uint64_t>{64 * kMiB})) << "the restarted daemon keeps the state file's";
  EXPECT_FALSE(maps_region(pid, 1)) << "and the image let the region go";
  EXPECT_FALSE(fs::exists(rt / "resource-move.json"));
  expect_keys("after the restart");

  // Killed after the image released region 1, before the state file said so.
  ASSERT_EQ(run("update " + name + " --memory 64M,32M").code, 0);
  r = run("update " + name + " --memory 64M --fault 'host-exit-after:release region 1'");
  EXPECT_NE(r.code, 0) << r.out << r.err;
  EXPECT_EQ(regions(), (std::vector<uint64_t>{64 * kMiB, 32 * kMiB}));
  EXPECT_TRUE(maps_region(pid, 1)) << "the region is given back (afresh)";
  expect_keys("after the second restart");
  // The state is whole again: the change can be made, and a live update works.
  ASSERT_EQ(run("update " + name + " --memory 64M").code, 0);
  EXPECT_FALSE(maps_region(pid, 1));
  ASSERT_EQ(run("update " + name).code, 0);
  expect_keys("after a live update");
}

}  // namespace
