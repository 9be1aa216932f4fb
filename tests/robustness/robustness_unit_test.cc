// The daemon's robustness without a daemon (issue #8): the state file's
// parse errors say where, a corrupt file is moved aside without ever
// replacing an earlier copy, an atomic write on a full or read-only file
// system fails naming ENOSPC/EROFS and leaves the old file and no temporary
// behind (root: a small tmpfs), limits.json and the limit options, the
// handoff package limits, and the console log bound over files left by a
// run with a larger bound.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "daemon_limits.h"
#include "mk/abi/handoff.h"
#include "mkernel/console_log.h"
#include "mkernel/handoff_package.h"
#include "state_store.h"

namespace {

namespace fs = std::filesystem;
using mk::tools::move_aside;
using mk::tools::partition_from_json_text;
using mk::tools::write_file_atomic;

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::path("/tmp") / ("mk-rob-" + std::to_string(::getpid()) + "-" +
                              ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override {
    if (mounted) ::umount2(dir.c_str(), MNT_DETACH);
    fs::remove_all(dir);
  }
  // A tmpfs of `size` on dir (root only).
  bool mount_tmpfs(const char* size) {
    std::string opts = std::string("size=") + size + ",mode=0700";
    mounted = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, opts.c_str()) == 0;
    return mounted;
  }
  // Fills the file system of dir to the last byte: returns the filler.
  fs::path fill() {
    fs::path f = dir / "filler";
    int fd = ::open(f.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    EXPECT_GE(fd, 0);
    std::string block(4096, 'x');
    while (::write(fd, block.data(), block.size()) > 0) {
    }
    while (::write(fd, block.data(), 1) > 0) {
    }
    EXPECT_EQ(errno, ENOSPC);
    ::close(fd);
    return f;
  }
  fs::path dir;
  bool mounted = false;
};

const std::string kPool =
    R"({"format":"mkernel-state-v1","topology":"live","pool":{"cpus":"1-7","memory":[{"node":0,"bytes":1073741824}],"devices":[]},"instances":[)";

TEST(StateParse, SyntaxErrorsSayWhere) {
  auto p = partition_from_json_text("{\n  \"format\": \"mkernel-state-v1\",\n  \"topology\": live\n}", "live");
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code(), EBADMSG);
  EXPECT_NE(std::string(p.error().message()).find("line 3, column 15"), std::string::npos) << p.error().message();
  auto t = partition_from_json_text(kPool.substr(0, 60), "live");
  ASSERT_FALSE(t);
  EXPECT_NE(std::string(t.error().message()).find("(truncated?)"), std::string::npos) << t.error().message();
  auto g = partition_from_json_text(std::string("\x01\x02 garbage", 10), "live");
  ASSERT_FALSE(g);
  EXPECT_NE(std::string(g.error().message()).find("line 1, column 1"), std::string::npos) << g.error().message();
}

TEST(StateParse, BadInstancesAreNamedByIndexAndName) {
  auto p = partition_from_json_text(
      kPool + R"({"id":1,"name":"a","state":"empty","cpus":"1","memory":[],"devices":[]},)" +
          R"({"id":2,"name":"b","state":"dancing","cpus":"2","memory":[],"devices":[]}]})",
      "live");
  ASSERT_FALSE(p);
  EXPECT_NE(std::string(p.error().message()).find("instances[1] ('b'): "), std::string::npos) << p.error().message();
  auto range = partition_from_json_text(
      kPool + R"({"id":600,"name":"a","state":"empty","cpus":"1","memory":[],"devices":[]}]})", "live");
  ASSERT_FALSE(range);
  EXPECT_NE(std::string(range.error().message()).find("instances[0] ('a'): "), std::string::npos)
      << range.error().message();
  auto twice = partition_from_json_text(
      kPool + R"({"id":1,"name":"a","state":"empty","cpus":"1-2","memory":[],"devices":[]},)" +
          R"({"id":2,"name":"b","state":"empty","cpus":"2-3","memory":[],"devices":[]}]})",
      "live");
  ASSERT_FALSE(twice);
  EXPECT_NE(std::string(twice.error().message()).find("cpu 2 owned by two instances ('a' and 'b')"),
            std::string::npos)
      << twice.error().message();
}

TEST_F(TempDir, MoveAsideNeverReplacesAnEarlierCopy) {
  const fs::path f = dir / "cpu-move.json";
  std::ofstream(f) << "first";
  auto a = move_aside(f.string());
  ASSERT_TRUE(a) << a.error().to_string();
  EXPECT_EQ(*a, f.string() + ".corrupt");
  std::ofstream(f) << "second";
  auto b = move_aside(f.string());
  ASSERT_TRUE(b) << b.error().to_string();
  EXPECT_EQ(*b, f.string() + ".corrupt.1");
  EXPECT_FALSE(fs::exists(f));
  EXPECT_EQ(read(*a), "first");
  EXPECT_EQ(read(*b), "second");
  auto none = move_aside((dir / "nope").string());
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), ENOENT);
}

TEST_F(TempDir, AtomicWriteOnAFullDiskNamesEnospcAndKeepsTheOldFile) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (mount)";
  ASSERT_TRUE(mount_tmpfs("64k")) << strerror(errno);
  const fs::path state = dir / "state.json";
  ASSERT_TRUE(write_file_atomic(state.string(), "old\n"));
  const fs::path filler = fill();
  auto w = write_file_atomic(state.string(), std::string(8192, 'n'));
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code(), ENOSPC);
  const std::string msg = w.error().to_string();
  EXPECT_NE(msg.find(state.string() + ": No space left on device (ENOSPC)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("free space there (df) and retry; the previous file is intact"), std::string::npos) << msg;
  EXPECT_EQ(read(state), "old\n");
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
  fs::remove(filler);
  ASSERT_TRUE(write_file_atomic(state.string(), std::string(8192, 'n')));
  EXPECT_EQ(read(state), std::string(8192, 'n'));
}

TEST_F(TempDir, AtomicWriteOnAReadOnlyFileSystemNamesErofs) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (mount)";
  ASSERT_TRUE(mount_tmpfs("64k")) << strerror(errno);
  const fs::path state = dir / "state.json";
  ASSERT_TRUE(write_file_atomic(state.string(), "old\n"));
  ASSERT_EQ(::mount(nullptr, dir.c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr), 0) << strerror(errno);
  auto w = write_file_atomic(state.string(), "new\n");
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code(), EROFS);
  EXPECT_NE(w.error().to_string().find("(EROFS): its file system is read-only: remount it read-write"),
            std::string::npos)
      << w.error().to_string();
  auto store = mk::tools::StateStore::open(dir.string(), "live", mk::tools::StateStore::Mode::Write);
  ASSERT_FALSE(store);  // the lock file cannot be created
  EXPECT_EQ(store.error().code(), EROFS);
  EXPECT_NE(store.error().to_string().find("read-only"), std::string::npos) << store.error().to_string();
  EXPECT_EQ(read(state), "old\n");
  ASSERT_EQ(::mount(nullptr, dir.c_str(), nullptr, MS_REMOUNT, nullptr), 0) << strerror(errno);
  EXPECT_TRUE(write_file_atomic(state.string(), "new\n"));
}

TEST_F(TempDir, LimitsFileAndOptions) {
  using mkerneld::Limits;
  auto none = mkerneld::load_limits_file(dir.string(), Limits{});
  ASSERT_TRUE(none) << none.error().to_string();
  EXPECT_EQ(none->max_instances, 64u);
  EXPECT_EQ(none->max_channels_per_instance, 63u);
  EXPECT_EQ(none->max_handoff_fds, mk::abi::kMaxHandoffFds);
  EXPECT_EQ(none->max_handoff_blob, mk::abi::kMaxHandoffBlobBytes);
  EXPECT_EQ(none->max_console_log, 2u << 20);
  EXPECT_EQ(none->source, "defaults");

  const fs::path f = dir / "limits.json";
  std::ofstream(f) << R"({"max_instances": 3, "max_console_log": 65536})";
  auto l = mkerneld::load_limits_file(dir.string(), Limits{});
  ASSERT_TRUE(l) << l.error().to_string();
  EXPECT_EQ(l->max_instances, 3u);
  EXPECT_EQ(l->max_console_log, 65536u);
  EXPECT_EQ(l->max_handoff_fds, mk::abi::kMaxHandoffFds);
  EXPECT_EQ(l->source, "limits.json");
  EXPECT_EQ(l->to_json().at("max_instances").as_uint64(), 3u);

  const struct {
    const char* text;
    const char* words;
  } bad[] = {
      {"{\"max_instances\": ", "not JSON"},
      {"[1]", "not a JSON object"},
      {R"({"max_instancez": 3})", "unknown key 'max_instancez'"},
      {R"({"max_instances": "3"})", "max_instances: expected a non-negative integer"},
      {R"({"max_instances": -1})", "max_instances: expected a non-negative integer"},
      {R"({"max_instances": 0})", "max_instances: 0 is out of range 1..511"},
      {R"({"max_handoff_fds": 65537})", "max_handoff_fds: 65537 is out of range 0..65536"},
      {R"({"max_console_log": 100})", "max_console_log: 100 is out of range 8192.."},
  };
  for (const auto& b : bad) {
    std::ofstream(f, std::ios::trunc) << b.text;
    auto r = mkerneld::load_limits_file(dir.string(), Limits{});
    ASSERT_FALSE(r) << b.text;
    EXPECT_EQ(r.error().code(), EINVAL) << b.text;
    const std::string msg = r.error().to_string();
    EXPECT_NE(msg.find(f.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find(b.words), std::string::npos) << msg;
    EXPECT_NE(msg.find("fix or remove it"), std::string::npos) << msg;
    EXPECT_EQ(read(f), b.text);  // never rewritten
  }

  Limits o;
  ASSERT_TRUE(mkerneld::set_limit(o, "max_handoff_blob", "4096", "--max-handoff-blob"));
  EXPECT_EQ(o.max_handoff_blob, 4096u);
  auto nan = mkerneld::set_limit(o, "max_instances", "lots", "--max-instances");
  ASSERT_FALSE(nan);
  EXPECT_NE(nan.error().to_string().find("--max-instances: 'lots' is not a non-negative integer"), std::string::npos)
      << nan.error().to_string();
  auto neg = mkerneld::set_limit(o, "max_instances", "-2", "--max-instances");
  ASSERT_FALSE(neg);
  auto zero = mkerneld::set_limit(o, "max_handoff_blob", "0", "--max-handoff-blob");
  ASSERT_FALSE(zero);
  EXPECT_NE(zero.error().to_string().find("--max-handoff-blob: 0 is out of range 1.."), std::string::npos);
  auto unknown = mkerneld::set_limit(o, "max_cats", "1", "--max-cats");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().to_string().find("--max-cats: unknown limit"), std::string::npos);
}

std::vector<uint8_t> package(uint32_t fds, uint64_t blob_bytes, uint32_t id) {
  mk::abi::HandoffHeader h{};
  std::memcpy(h.magic, mk::abi::kHandoffMagic, sizeof h.magic);
  h.version = mk::abi::kHandoffVersion;
  h.fd_count = fds;
  h.blob_bytes = blob_bytes;
  h.update_id = id;
  std::vector<uint8_t> out(mk::abi::handoff_size(h.fd_count, h.blob_bytes), 0);
  std::memcpy(out.data(), &h, sizeof h);
  for (uint32_t i = 0; i < fds; ++i) {
    const int32_t fd = static_cast<int32_t>(10 + i);
    std::memcpy(out.data() + sizeof h + 4 * i, &fd, 4);
  }
  return out;
}

TEST(HandoffLimits, APackageOverAConfiguredLimitIsRefusedNamingIt) {
  const mk::HandoffLimits before = mk::handoff_limits();
  EXPECT_EQ(before.max_fds, mk::abi::kMaxHandoffFds);
  ASSERT_TRUE(mk::set_handoff_limits({2, 100, "--max-handoff-fds N", "--max-handoff-blob BYTES"}));
  EXPECT_TRUE(mk::parse_handoff_package(package(2, 100, 5), 5));
  auto fds = mk::parse_handoff_package(package(3, 100, 5), 5);
  ASSERT_FALSE(fds);
  EXPECT_EQ(fds.error().code(), E2BIG);
  EXPECT_EQ(fds.error().to_string(),
            "handoff package over a limit: 3 preserved fds, the limit is 2 (raise it: --max-handoff-fds N)");
  auto blob = mk::parse_handoff_package(package(0, 101, 5), 5);
  ASSERT_FALSE(blob);
  EXPECT_EQ(blob.error().code(), E2BIG);
  EXPECT_EQ(blob.error().to_string(),
            "handoff package over a limit: handover blob of 101 bytes, the limit is 100 (raise it: --max-handoff-blob "
            "BYTES)");
  // The same through the memfd reader the live update uses.
  auto bytes = package(3, 100, 5);
  int fd = ::memfd_create("pkg", MFD_CLOEXEC);
  ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  auto r = mk::read_handoff_package(fd, 5);
  ::close(fd);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), E2BIG);
  // Limits above the ABI's are refused; the defaults come back.
  EXPECT_FALSE(mk::set_handoff_limits({mk::abi::kMaxHandoffFds + 1, 100}));
  EXPECT_FALSE(mk::set_handoff_limits({2, 0}));
  ASSERT_TRUE(mk::set_handoff_limits(mk::HandoffLimits{}));
  EXPECT_TRUE(mk::parse_handoff_package(package(3, 101, 5), 5));
}

TEST_F(TempDir, ConsoleLogNeverHoldsMoreThanTwiceItsBound) {
  const fs::path log = dir / "web.log";
  // Left by a run with a larger bound.
  std::ofstream(log) << std::string(10000, 'a');
  std::ofstream(log.string() + ".1") << std::string(9000, 'o') + std::string(1000, 'O');
  auto c = mk::ConsoleLog::create(log.string(), 1000);
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_LE(fs::file_size(log), 1000u);
  EXPECT_LE(fs::file_size(log.string() + ".1"), 1000u);
  // The newest output is kept: the old .1 went, the oversize file's tail became .1.
  EXPECT_EQ(read(log.string() + ".1"), std::string(1000, 'a'));
  for (int i = 0; i < 500; ++i) {
    ASSERT_TRUE(c->append(std::string(37 + i % 300, static_cast<char>('a' + i % 26))));
    ASSERT_LE(fs::file_size(log) + fs::file_size(log.string() + ".1"), 2000u) << i;
  }
  ASSERT_TRUE(c->append(std::string(5000, 'z')));  // larger than the bound: its tail only
  EXPECT_EQ(read(log), std::string(1000, 'z'));
}

TEST_F(TempDir, AConsoleOnAFullDiskIsStillDrainedAndSaysWhatWasLost) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (mount)";
  ASSERT_TRUE(mount_tmpfs("64k")) << strerror(errno);
  const fs::path log = dir / "web.log";
  auto c = mk::ConsoleLog::create(log.string(), 16384);
  ASSERT_TRUE(c) << c.error().to_string();
  auto p = mk::make_console_pipe();
  ASSERT_TRUE(p);
  ASSERT_TRUE(c->append(std::string(4096, 'b')));  // a whole page: the next byte needs a new one
  const fs::path filler = fill();
  ASSERT_EQ(::write(p->write_end.get(), "while full\n", 11), 11);
  bool eof = false;
  auto n = c->drain(p->read_end.get(), &eof);
  ASSERT_TRUE(n) << n.error().to_string();  // never an error: the pipe is drained
  EXPECT_EQ(*n, 11u);
  char probe;
  EXPECT_EQ(::read(p->read_end.get(), &probe, 1), -1);  // empty
  EXPECT_EQ(c->lost(), 11u);
  fs::remove(filler);
  ASSERT_EQ(::write(p->write_end.get(), "after\n", 6), 6);
  ASSERT_TRUE(c->drain(p->read_end.get(), &eof));
  EXPECT_EQ(c->lost(), 0u);
  EXPECT_EQ(*mk::read_console(log.string()),
            std::string(4096, 'b') + "\n[console: 11 bytes lost: No space left on device]\nafter\n");
}

}  // namespace
