// Tests for mkernel/console_log.h: bounded console logs and their reader.
#include "mkernel/console_log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

namespace fs = std::filesystem;

namespace mk {
namespace {

class ConsoleLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("mk_console_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const char* f = "db.console") const { return (dir_ / f).string(); }
  fs::path dir_;
};

TEST_F(ConsoleLogTest, AppendAndRead) {
  auto log = ConsoleLog::create(path());
  ASSERT_TRUE(log) << log.error().to_string();
  ASSERT_TRUE(log->append("hello "));
  ASSERT_TRUE(log->append("world\n"));
  auto s = read_console(path());
  ASSERT_TRUE(s);
  EXPECT_EQ(*s, "hello world\n");
  // Re-opening continues the same file.
  auto again = ConsoleLog::create(path());
  ASSERT_TRUE(again);
  ASSERT_TRUE(again->append("more\n"));
  EXPECT_EQ(*read_console(path()), "hello world\nmore\n");
}

TEST_F(ConsoleLogTest, RotatesAndKeepsTheMostRecent) {
  auto log = ConsoleLog::create(path(), 1024);
  ASSERT_TRUE(log);
  const std::string a(600, 'a'), b(600, 'b'), c(600, 'c');
  ASSERT_TRUE(log->append(a));
  ASSERT_TRUE(log->append(b));
  EXPECT_EQ(fs::file_size(path()), 600u);
  EXPECT_EQ(fs::file_size(path("db.console.1")), 600u);
  EXPECT_EQ(*read_console(path()), a + b);
  ASSERT_TRUE(log->append(c));
  EXPECT_EQ(*read_console(path()), b + c);
  // One write larger than the bound keeps only its tail.
  std::string big(3000, 'x');
  big.back() = 'Z';
  ASSERT_TRUE(log->append(big));
  auto s = read_console(path());
  ASSERT_TRUE(s);
  EXPECT_LE(s->size(), 2048u);
  EXPECT_EQ(s->back(), 'Z');
}

TEST_F(ConsoleLogTest, DrainsAPipeUntilEof) {
  auto log = ConsoleLog::create(path());
  ASSERT_TRUE(log);
  auto p = make_console_pipe();
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_TRUE(::fcntl(p->read_end.get(), F_GETFL) & O_NONBLOCK);
  EXPECT_TRUE(::fcntl(p->write_end.get(), F_GETFD) & FD_CLOEXEC);
  bool eof = true;
  auto n0 = log->drain(p->read_end.get(), &eof);
  ASSERT_TRUE(n0);
  EXPECT_EQ(*n0, 0u);
  EXPECT_FALSE(eof);
  ASSERT_EQ(::write(p->write_end.get(), "boot ok\n", 8), 8);
  auto n = log->drain(p->read_end.get(), &eof);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 8u);
  EXPECT_FALSE(eof);
  p->write_end.reset();
  auto n2 = log->drain(p->read_end.get(), &eof);
  ASSERT_TRUE(n2);
  EXPECT_TRUE(eof);
  EXPECT_EQ(*read_console(path()), "boot ok\n");
}

TEST_F(ConsoleLogTest, Errors) {
  auto missing = read_console(path("nope.console"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ENOENT);
  auto nodir = ConsoleLog::create((dir_ / "no-such-dir" / "x.console").string());
  ASSERT_FALSE(nodir);
  EXPECT_EQ(nodir.error().code(), ENOENT);
  EXPECT_NE(std::string(nodir.error().detail()).find("no-such-dir"), std::string::npos);
  auto zero = ConsoleLog::create(path(), 0);
  ASSERT_FALSE(zero);
  EXPECT_EQ(zero.error().code(), EINVAL);
  auto log = ConsoleLog::create(path());
  ASSERT_TRUE(log);
  bool eof = false;
  auto bad = log->drain(-1, &eof);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), EBADF);
}

TEST_F(ConsoleLogTest, FollowPrintsHistoryThenNewOutputAcrossRotation) {
  auto log = ConsoleLog::create(path(), 64);
  ASSERT_TRUE(log);
  ASSERT_TRUE(log->append("first\n"));
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  int stop = ::eventfd(0, EFD_CLOEXEC);
  ASSERT_GE(stop, 0);
  Result<void> followed = ok();
  std::thread t([&] { followed = follow_console(path(), out[1], stop, 5); });

  std::string seen;
  auto wait_for = [&](const std::string& needle) {
    // Bounded only as a hang guard; nothing asserts on time.
    for (int i = 0; i < 20000 && seen.find(needle) == std::string::npos; ++i) {
      pollfd p{out[0], POLLIN, 0};
      if (::poll(&p, 1, 10) > 0) {
        char buf[256];
        ssize_t n = ::read(out[0], buf, sizeof buf);
        if (n > 0) seen.append(buf, static_cast<std::size_t>(n));
      }
    }
    return seen.find(needle) != std::string::npos;
  };
  ASSERT_TRUE(wait_for("first\n"));
  ASSERT_TRUE(log->append("second\n"));
  ASSERT_TRUE(wait_for("second\n"));
  ASSERT_TRUE(log->append(std::string(60, '-') + "\n"));  // forces a rotation
  ASSERT_TRUE(log->append("third\n"));
  ASSERT_TRUE(wait_for("third\n"));
  uint64_t one = 1;
  ASSERT_EQ(::write(stop, &one, sizeof one), 8);
  t.join();
  EXPECT_TRUE(followed) << followed.error().to_string();
  auto a = seen.find("first"), b = seen.find("second"), c = seen.find("third");
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  ::close(out[0]);
  ::close(out[1]);
  ::close(stop);
}

}  // namespace
}  // namespace mk
