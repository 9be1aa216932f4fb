// StateStore: round trip, atomic save, corrupt/truncated files refused and
// left untouched, invariants checked on load, lock serialization.
#include "state_store.h"

#include <gtest/gtest.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

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

}  // namespace
}  // namespace mk::tools
