// StateStore: round trip, atomic save, corrupt/truncated files refused and
// left untouched, invariants checked on load, lock serialization.
#include "state_store.h"

#include <gtest/gtest.h>
#include <sys/file.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "json_codec.h"
#include "mk/units.h"

namespace mk::tools {
namespace {

namespace fs = std::filesystem;

class StateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("mk-state-" + std::to_string(::getpid()) + "-" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
  Partition sample() {
    Partition p;
    p.has_pool = true;
    p.pool.cpus = CpuSet::range(1, 7);
    p.pool.memory = {{0, 4 * kGiB}};
    p.pool.devices = {"eth1"};
    Instance a;
    a.id = 3;
    a.name = "db";
    a.cpus = CpuSet::range(2, 3);
    a.memory = {{0, kGiB}};
    a.devices = {*DeviceSpec::parse("net:eth1"), *DeviceSpec::parse("listen:127.0.0.1:6379")};
    p.add(a);
    return p;
  }
  std::string read(const fs::path& f) {
    std::ifstream in(f);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  fs::path dir;
};

TEST_F(StateStoreTest, RoundTrip) {
  {
    auto s = StateStore::open(dir, "live", StateStore::Mode::Write);
    ASSERT_TRUE(s) << s.error().to_string();
    auto empty = s->load();
    ASSERT_TRUE(empty);
    EXPECT_FALSE(empty->has_pool);
    ASSERT_TRUE(s->save(sample()));
  }
  auto s = StateStore::open(dir, "live", StateStore::Mode::Read);
  ASSERT_TRUE(s);
  auto p = s->load();
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_EQ(p->pool.cpus.to_string(), "1-7");
  ASSERT_EQ(p->instances.size(), 1u);
  EXPECT_EQ(p->instances[0].name, "db");
  EXPECT_EQ(p->instances[0].id, 3u);
  EXPECT_EQ(p->instances[0].devices, sample().instances[0].devices);
  EXPECT_EQ(p->instances[0].memory, sample().instances[0].memory);
  // No temporary file is left behind.
  for (const auto& e : fs::directory_iterator(dir)) EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos);
}

TEST_F(StateStoreTest, TopologyFilesHaveTheirOwnState) {
  std::string live_path;
  {
    auto live = StateStore::open(dir, "live", StateStore::Mode::Write);
    ASSERT_TRUE(live);
    ASSERT_TRUE(live->save(sample()));
    live_path = live->path();
  }  // one lock per runtime directory: release it before the next open
  std::string xml = std::string(MK_TEST_DATA) + "/topologies/fakecpukinds.xml";
  auto t = StateStore::open(dir, xml, StateStore::Mode::Write);
  ASSERT_TRUE(t);
  EXPECT_NE(t->path(), live_path);
  EXPECT_NE(t->path().find("/topo/fakecpukinds-"), std::string::npos);
  auto p = t->load();
  ASSERT_TRUE(p);
  EXPECT_FALSE(p->has_pool);
}

TEST_F(StateStoreTest, CorruptFilesAreRefusedAndKept) {
  fs::create_directories(dir);
  std::string valid = partition_to_json_text(sample(), "live");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"truncated", valid.substr(0, valid.size() / 2)},
      {"garbage", "\x01\x02 not json"},
      {"wrong format", R"({"format":"other","topology":"live","pool":null,"instances":[]})"},
      {"other topology", R"({"format":"mkernel-state-v1","topology":"/x.xml","pool":null,"instances":[]})"},
      {"bad cpus", R"({"format":"mkernel-state-v1","topology":"live","pool":{"cpus":"1-","memory":[],"devices":[]},"instances":[]})"},
      {"cpu owned twice",
       R"({"format":"mkernel-state-v1","topology":"live","pool":{"cpus":"1-7","memory":[{"node":0,"bytes":1073741824}],"devices":[]},"instances":[)"
       R"({"id":1,"name":"a","state":"empty","cpus":"1-2","memory":[],"devices":[]},)"
       R"({"id":2,"name":"b","state":"empty","cpus":"2-3","memory":[],"devices":[]}]})"},
      {"id out of range",
       R"({"format":"mkernel-state-v1","topology":"live","pool":{"cpus":"1-7","memory":[],"devices":[]},"instances":[)"
       R"({"id":600,"name":"a","state":"empty","cpus":"1","memory":[],"devices":[]}]})"},
      {"memory above pool",
       R"({"format":"mkernel-state-v1","topology":"live","pool":{"cpus":"1-7","memory":[{"node":0,"bytes":4096}],"devices":[]},"instances":[)"
       R"({"id":1,"name":"a","state":"empty","cpus":"1","memory":[{"node":0,"bytes":8192}],"devices":[]}]})"},
      {"bad state",
       R"({"format":"mkernel-state-v1","topology":"live","pool":{"cpus":"1-7","memory":[],"devices":[]},"instances":[)"
       R"({"id":1,"name":"a","state":"dancing","cpus":"1","memory":[],"devices":[]}]})"},
  };
  for (const auto& [what, text] : cases) {
    std::ofstream(dir / "state.json", std::ios::trunc) << text;
    auto s = StateStore::open(dir, "live", StateStore::Mode::Write);
    ASSERT_TRUE(s);
    auto p = s->load();
    ASSERT_FALSE(p) << what;
    EXPECT_EQ(p.error().code(), EBADMSG) << what;
    EXPECT_NE(std::string(p.error().detail()).find("left untouched"), std::string::npos) << what;
    EXPECT_EQ(read(dir / "state.json"), text) << what;
  }
}

TEST_F(StateStoreTest, UncreatableDirectoryIsAClearError) {
  // procfs refuses mkdir even to root, so this fails for every uid.
  auto s = StateStore::open("/proc/mkernel-test-dir", "live", StateStore::Mode::Write);
  ASSERT_FALSE(s);
  EXPECT_STREQ(s.error().what(), "cannot create runtime directory");
  EXPECT_NE(std::string(s.error().detail()).find("MKERNEL_RUNTIME_DIR"), std::string::npos);
}

TEST_F(StateStoreTest, NotADirectory) {
  fs::create_directories(dir);
  std::ofstream(dir / "file") << "x";
  auto s = StateStore::open((dir / "file").string(), "live", StateStore::Mode::Write);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ENOTDIR);
}

TEST_F(StateStoreTest, WritersAreSerialized) {
  auto first = StateStore::open(dir, "live", StateStore::Mode::Write);
  ASSERT_TRUE(first);
  // A second writer must block: check with a non-blocking flock on the same file.
  int fd = ::open((dir / "lock").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(::flock(fd, LOCK_EX | LOCK_NB), -1);
  EXPECT_EQ(errno, EWOULDBLOCK);
  { auto moved = std::move(*first); }  // destroying the holder releases the lock
  EXPECT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  ::close(fd);
}

TEST(RuntimeDir, FromEnvironment) {
  ::setenv("MKERNEL_RUNTIME_DIR", "/tmp/x-mk", 1);
  EXPECT_EQ(runtime_dir(), "/tmp/x-mk");
  ::unsetenv("MKERNEL_RUNTIME_DIR");
  if (::geteuid() == 0) {
    EXPECT_EQ(runtime_dir(), "/run/mkernel");
  }
}


// ---- lifecycle records: image, runtime, last_exit (issue #4) ----

namespace json = boost::json;

const std::string kSha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

LoadedImage sample_image(const std::string& tag) {
  return LoadedImage{"/opt/mkernel/images/mk-kernel-" + tag, kSha, 1234567, "x86_64", "mk.poll_budget=200 quiet",
                     "/usr/bin/redis-server --port 6379"};
}

RuntimeRecord sample_runtime() {
  RuntimeRecord r;
  r.pid = 4194304;  // the kernel's pid_max
  r.start_time = 987654321012;
  r.started_unix_ms = 1764504000123;
  r.host_channel_fd = 9;
  r.console_host_fd = 65535;
  r.handover_host_fd = 17;
  r.console_fd = 6;
  r.region_fds = {4, 5, 0};
  r.peers = {{3, 12, 0}, {511, 15, 1}};
  r.guarantees = {"cpus: exclusive 4-5", "memory: mlocked [not in force]", ""};
  return r;
}

// The sample pool plus an active, a loaded, a stopping and a failed instance.
Partition lifecycle_sample() {
  Partition p;
  p.has_pool = true;
  p.pool.cpus = CpuSet::range(1, 7);
  p.pool.memory = {{0, 8 * kGiB}};
  const struct {
    uint32_t id;
    const char* name;
    uint32_t cpu;
    InstanceState state;
  } rows[] = {{1, "idle", 1, InstanceState::Empty},
              {2, "web", 2, InstanceState::Active},
              {3, "cache", 3, InstanceState::Loaded},
              {4, "batch", 4, InstanceState::Stopping},
              {5, "crashy", 5, InstanceState::Failed}};
  for (const auto& r : rows) {
    Instance i;
    i.id = r.id;
    i.name = r.name;
    i.cpus = CpuSet::of({r.cpu});
    i.memory = {{0, kGiB}};
    i.state = r.state;
    if (r.state != InstanceState::Empty) i.image = sample_image(r.name);
    if (r.state == InstanceState::Active) {  // one image runs as a user
      i.image->uid = 65534;
      i.image->gid = 65534;
    }
    if (r.state == InstanceState::Active || r.state == InstanceState::Stopping) i.runtime = sample_runtime();
    p.add(i);
  }
  // Regions added while running (mkctl update --memory) may share a node.
  p.find("web")->memory.push_back({0, kGiB / 2});
  p.find("cache")->image->init = "";  // "" = no tenant
  p.find("cache")->last_exit = "stopped: exit 0 after SIGTERM";
  p.find("batch")->runtime->peers.clear();
  p.find("batch")->runtime->region_fds.clear();
  p.find("batch")->runtime->guarantees.clear();
  p.find("crashy")->last_exit = std::string(1024, 'x');  // the longest accepted
  return p;
}

void expect_same_lifecycle(const Partition& got, const Partition& want) {
  ASSERT_EQ(got.instances.size(), want.instances.size());
  for (std::size_t k = 0; k < want.instances.size(); ++k) {
    const Instance& g = got.instances[k];
    const Instance& w = want.instances[k];
    SCOPED_TRACE(w.name);
    EXPECT_EQ(g.name, w.name);
    EXPECT_EQ(g.state, w.state);
    EXPECT_EQ(g.image, w.image);
    EXPECT_EQ(g.runtime, w.runtime);
    EXPECT_EQ(g.last_exit, w.last_exit);
  }
}

TEST_F(StateStoreTest, LifecycleRecordsRoundTripExactly) {
  const Partition want = lifecycle_sample();
  auto back = partition_from_json_text(partition_to_json_text(want, "live"), "live");
  ASSERT_TRUE(back) << back.error().to_string();
  expect_same_lifecycle(*back, want);
  // Spot checks, so that a broken operator== cannot hide a loss.
  const Instance* web = back->find("web");
  ASSERT_TRUE(web && web->image && web->runtime);
  EXPECT_EQ(web->image->sha256, kSha);
  EXPECT_EQ(web->image->size, 1234567u);
  EXPECT_EQ(web->runtime->pid, 4194304);
  EXPECT_EQ(web->runtime->start_time, 987654321012u);
  EXPECT_EQ(web->runtime->started_unix_ms, 1764504000123);
  EXPECT_EQ(web->runtime->console_host_fd, 65535);
  EXPECT_EQ(web->runtime->handover_host_fd, 17);
  EXPECT_EQ(web->runtime->console_fd, 6);
  EXPECT_EQ(web->memory, (std::vector<MemoryRegion>{{0, kGiB}, {0, kGiB / 2}}));
  EXPECT_EQ(web->runtime->region_fds, (std::vector<int32_t>{4, 5, 0}));
  ASSERT_EQ(web->runtime->peers.size(), 2u);
  EXPECT_EQ(web->runtime->peers[0].side, 0);
  EXPECT_EQ(web->runtime->peers[0].fd, 12);
  EXPECT_EQ(web->runtime->peers[1].side, 1);
  EXPECT_EQ(web->runtime->peers[1].peer_id, 511u);
  EXPECT_EQ(web->runtime->guarantees[1], "memory: mlocked [not in force]");
  EXPECT_FALSE(back->find("idle")->image);
  EXPECT_FALSE(back->find("idle")->runtime);
  EXPECT_FALSE(back->find("cache")->runtime);
  EXPECT_EQ(back->find("cache")->last_exit, "stopped: exit 0 after SIGTERM");
  EXPECT_EQ(back->find("crashy")->last_exit.size(), 1024u);

  // And through the store itself (save, then a fresh open and load).
  {
    auto s = StateStore::open(dir, "live", StateStore::Mode::Write);
    ASSERT_TRUE(s) << s.error().to_string();
    ASSERT_TRUE(s->save(want));
  }
  auto s = StateStore::open(dir, "live", StateStore::Mode::Read);
  ASSERT_TRUE(s);
  auto loaded = s->load();
  ASSERT_TRUE(loaded) << loaded.error().to_string();
  expect_same_lifecycle(*loaded, want);
}

TEST_F(StateStoreTest, StateFileWithoutLifecycleRecordsStillLoads) {
  // Written by a version before load/start existed: no image, runtime or last_exit keys.
  const std::string old =
      R"({"format":"mkernel-state-v1","topology":"live","pool":{"cpus":"1-7","memory":[{"node":0,"bytes":1073741824}],"devices":["eth1"]},"instances":[)"
      R"({"id":3,"name":"db","state":"empty","cpus":"2-3","memory":[{"node":0,"bytes":536870912}],"devices":["net:eth1"]}]})";
  auto p = partition_from_json_text(old, "live");
  ASSERT_TRUE(p) << p.error().to_string();
  ASSERT_EQ(p->instances.size(), 1u);
  EXPECT_EQ(p->instances[0].state, InstanceState::Empty);
  EXPECT_FALSE(p->instances[0].image);
  EXPECT_FALSE(p->instances[0].runtime);
  EXPECT_EQ(p->instances[0].last_exit, "");
  // Re-saving it adds no lifecycle keys either.
  std::string again = partition_to_json_text(*p, "live");
  for (const char* key : {"\"image\"", "\"runtime\"", "\"last_exit\""})
    EXPECT_EQ(again.find(key), std::string::npos) << key << " in " << again;
}

// The state text of lifecycle_sample() with `edit` applied to instance `name`.
std::string edited(const std::string& name, const std::function<void(json::object&)>& edit) {
  json::value v = json::parse(partition_to_json_text(lifecycle_sample(), "live"));
  for (auto& i : v.as_object()["instances"].as_array())
    if (i.as_object()["name"].as_string() == name.c_str()) edit(i.as_object());
  return json::serialize(v);
}

TEST_F(StateStoreTest, BadLifecycleRecordsAreRefusedNamingTheField) {
  const auto image = [](json::object& i) -> json::object& { return i["image"].as_object(); };
  const auto runtime = [](json::object& i) -> json::object& { return i["runtime"].as_object(); };
  const struct {
    const char* label;
    const char* instance;
    std::function<void(json::object&)> edit;
    const char* words;
  } cases[] = {
      {"relative image path", "web", [&](json::object& i) { image(i)["path"] = "images/mk-kernel"; },
       "instances[].image: path: expected an absolute path"},
      {"empty image path", "cache", [&](json::object& i) { image(i)["path"] = ""; },
       "instances[].image: path: expected an absolute path"},
      {"sha256 short", "web", [&](json::object& i) { image(i)["sha256"] = kSha.substr(1); },
       "instances[].image: sha256: expected 64 lowercase hex digits"},
      {"sha256 long", "web", [&](json::object& i) { image(i)["sha256"] = kSha + "0"; },
       "instances[].image: sha256: expected 64 lowercase hex digits"},
      {"sha256 uppercase", "web",
       [&](json::object& i) { image(i)["sha256"] = "ABCDEF" + kSha.substr(6); },
       "instances[].image: sha256: expected 64 lowercase hex digits"},
      {"sha256 not hex", "web", [&](json::object& i) { image(i)["sha256"] = "g" + kSha.substr(1); },
       "instances[].image: sha256: expected 64 lowercase hex digits"},
      {"sha256 number", "web", [&](json::object& i) { image(i)["sha256"] = 7; },
       "instances[].image.sha256: expected a string"},
      {"image cmdline long", "cache", [&](json::object& i) { image(i)["cmdline"] = std::string(4097, 'c'); },
       "instances[].image: cmdline/init: longer than 4096 bytes"},
      {"image init long", "cache", [&](json::object& i) { image(i)["init"] = std::string(4097, 'i'); },
       "instances[].image: cmdline/init: longer than 4096 bytes"},
      {"image without machine", "cache", [&](json::object& i) { image(i).erase("machine"); },
       "instances[].image.machine: missing"},
      {"image not an object", "cache", [](json::object& i) { i["image"] = "/k"; },
       "instances[].image: expected an object"},
      {"runtime pid 0", "web", [&](json::object& i) { runtime(i)["pid"] = 0; },
       "instances[].runtime: pid: expected a process id above 1"},
      {"runtime pid 1", "web", [&](json::object& i) { runtime(i)["pid"] = 1; },
       "instances[].runtime: pid: expected a process id above 1"},
      {"runtime pid above pid_max", "web", [&](json::object& i) { runtime(i)["pid"] = 4194305; },
       "instances[].runtime.pid: 4194305 is above 4194304"},
      {"runtime pid string", "web", [&](json::object& i) { runtime(i)["pid"] = "42"; },
       "instances[].runtime.pid: expected a non-negative integer"},
      {"host channel fd", "web", [&](json::object& i) { runtime(i)["host_channel_fd"] = 65536; },
       "instances[].runtime.host_channel_fd: 65536 is above 65535"},
      {"console fd", "web", [&](json::object& i) { runtime(i)["console_host_fd"] = 65536; },
       "instances[].runtime.console_host_fd: 65536 is above 65535"},
      {"handover fd", "web", [&](json::object& i) { runtime(i)["handover_host_fd"] = 65536; },
       "instances[].runtime.handover_host_fd: 65536 is above 65535"},
      {"console write fd", "web", [&](json::object& i) { runtime(i)["console_fd"] = 65536; },
       "instances[].runtime.console_fd: 65536 is above 65535"},
      {"console fd negative", "web", [&](json::object& i) { runtime(i)["console_host_fd"] = -1; },
       "instances[].runtime.console_host_fd: expected a non-negative integer"},
      {"region fd", "web", [&](json::object& i) { runtime(i)["region_fds"] = json::array{4, 65536}; },
       "instances[].runtime: region_fds[]: expected fd numbers"},
      {"region fd negative", "web", [&](json::object& i) { runtime(i)["region_fds"] = json::array{-1}; },
       "instances[].runtime: region_fds[]: expected fd numbers"},
      {"region fd string", "web", [&](json::object& i) { runtime(i)["region_fds"] = json::array{"4"}; },
       "instances[].runtime: region_fds[]: expected fd numbers"},
      {"peer fd", "web",
       [&](json::object& i) { runtime(i)["peers"].as_array()[0].as_object()["fd"] = 65536; },
       "fd: 65536 is above 65535"},
      {"peer side c", "web",
       [&](json::object& i) { runtime(i)["peers"].as_array()[1].as_object()["side"] = "c"; },
       "instances[].runtime: peers[].side: expected \"a\" or \"b\""},
      {"peer side number", "web",
       [&](json::object& i) { runtime(i)["peers"].as_array()[0].as_object()["side"] = 0; },
       "instances[].runtime: peers[].side: expected \"a\" or \"b\""},
      {"peer id", "web",
       [&](json::object& i) { runtime(i)["peers"].as_array()[0].as_object()["peer_id"] = 512; },
       "instances[].runtime.peer_id: 512 is above 511"},
      {"peer not an object", "web", [&](json::object& i) { runtime(i)["peers"] = json::array{3}; },
       "instances[].runtime: peers[]: expected objects"},
      {"guarantee number", "web", [&](json::object& i) { runtime(i)["guarantees"] = json::array{"ok", 1}; },
       "instances[].runtime: guarantees[]: expected strings"},
      {"guarantees not an array", "web", [&](json::object& i) { runtime(i)["guarantees"] = "cpus"; },
       "instances[].runtime.guarantees: expected an array"},
      {"runtime without start_time", "web", [&](json::object& i) { runtime(i).erase("start_time"); },
       "instances[].runtime.start_time: missing"},
      {"runtime not an object", "web", [](json::object& i) { i["runtime"] = json::array{}; },
       "instances[].runtime: expected an object"},
      {"last_exit too long", "cache", [](json::object& i) { i["last_exit"] = std::string(1025, 'x'); },
       "instances[].last_exit: expected a short string"},
      {"last_exit number", "cache", [](json::object& i) { i["last_exit"] = 137; },
       "instances[].last_exit: expected a short string"},
      {"loaded without image", "cache", [](json::object& i) { i.erase("image"); },
       "instances[]: state needs an image record"},
      {"failed without image", "crashy", [](json::object& i) { i.erase("image"); },
       "instances[]: state needs an image record"},
      {"active without runtime", "web", [](json::object& i) { i.erase("runtime"); },
       "instances[]: runtime record and state disagree"},
      {"stopping without runtime", "batch", [](json::object& i) { i.erase("runtime"); },
       "instances[]: runtime record and state disagree"},
      {"loaded with runtime", "cache",
       [](json::object& i) { i["runtime"] = instance_to_json(*lifecycle_sample().find("web")).at("runtime"); },
       "instances[]: runtime record and state disagree"},
      {"failed with runtime", "crashy",
       [](json::object& i) { i["runtime"] = instance_to_json(*lifecycle_sample().find("web")).at("runtime"); },
       "instances[]: runtime record and state disagree"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    std::string text = edited(c.instance, c.edit);
    ASSERT_NE(text, partition_to_json_text(lifecycle_sample(), "live")) << "edit changed nothing";
    auto p = partition_from_json_text(text, "live");
    ASSERT_FALSE(p) << "accepted";
    EXPECT_EQ(p.error().code(), EBADMSG) << p.error().to_string();
    EXPECT_NE(std::string(p.error().message()).find(c.words), std::string::npos)
        << "message: " << p.error().message() << "\nexpected to contain: " << c.words;
  }
  // Through the store: the file is refused by name and left as it was.
  fs::create_directories(dir);
  const std::string text = edited("web", [](json::object& i) { i.erase("runtime"); });
  std::ofstream(dir / "state.json", std::ios::trunc) << text;
  auto s = StateStore::open(dir, "live", StateStore::Mode::Write);
  ASSERT_TRUE(s);
  auto p = s->load();
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code(), EBADMSG);
  EXPECT_NE(std::string(p.error().detail()).find("runtime record and state disagree"), std::string::npos)
      << p.error().detail();
  EXPECT_EQ(read(dir / "state.json"), text);
}

// A record written before images had a handover socket loads without one.
TEST_F(StateStoreTest, RuntimeWithoutHandoverSocketLoadsAsNone) {
  const std::string text = edited("web", [&](json::object& i) { i["runtime"].as_object().erase("handover_host_fd"); });
  auto p = partition_from_json_text(text, "live");
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_EQ(p->find("web")->runtime->handover_host_fd, -1);
  EXPECT_FALSE(instance_to_json(*p->find("web")).at("runtime").as_object().contains("handover_host_fd"));
}

// A record written before the console's fd was recorded loads without one
// (the host then computes it from the regions, manifest.h console_fd_of).
TEST_F(StateStoreTest, RuntimeWithoutConsoleFdLoadsAsNone) {
  const std::string text = edited("web", [&](json::object& i) { i["runtime"].as_object().erase("console_fd"); });
  auto p = partition_from_json_text(text, "live");
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_EQ(p->find("web")->runtime->console_fd, -1);
  EXPECT_FALSE(instance_to_json(*p->find("web")).at("runtime").as_object().contains("console_fd"));
}

// The pool still has one entry per node.
TEST_F(StateStoreTest, APoolNodeListedTwiceIsRefused) {
  const std::string text = R"({"format":"mkernel-state-v1","topology":"live","pool":{"cpus":"1-7","memory":)"
                           R"([{"node":0,"bytes":4096},{"node":0,"bytes":4096}],"devices":[]},"instances":[]})";
  auto p = partition_from_json_text(text, "live");
  ASSERT_FALSE(p);
  EXPECT_NE(p.error().to_string().find("pool: memory[]: node listed twice"), std::string::npos) << p.error().to_string();
}

TEST_F(StateStoreTest, EmptyInstanceMayNotCarryARuntimeRecord) {
  const std::string text = edited("idle", [](json::object& i) {
    i["runtime"] = instance_to_json(*lifecycle_sample().find("web")).at("runtime");
  });
  auto p = partition_from_json_text(text, "live");
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code(), EBADMSG);
  EXPECT_NE(std::string(p.error().message()).find("runtime record and state disagree"), std::string::npos)
      << p.error().message();
}
}  // namespace
}  // namespace mk::tools
