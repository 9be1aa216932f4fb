// mkerneld::Supervisor: identities from /proc/PID/stat (real and fake trees),
// pidfd adoption that refuses a recycled pid, exit reports from the Asio
// loop. Uses forked children; every child is killed and reaped.
#include "supervisor.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>

namespace {

namespace fs = std::filesystem;
using mkerneld::ProcessExit;
using mkerneld::ProcessIdentity;
using mkerneld::Supervisor;

pid_t fork_sleeper() {
  pid_t pid = ::fork();
  if (pid == 0) {
    while (true) ::pause();
  }
  return pid;
}

void kill_and_reap(pid_t pid) {
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

class SupervisorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("mk-sup-" + std::to_string(::getpid()) + "-" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
  void fake_stat(pid_t pid, const std::string& text) {
    fs::create_directories(dir / "proc" / std::to_string(pid));
    std::ofstream(dir / "proc" / std::to_string(pid) / "stat") << text;
  }
  // Runs the loop until an exit is reported (bounded so a bug fails, not hangs).
  std::optional<ProcessExit> wait_exit(boost::asio::io_context& io, std::optional<ProcessExit>& got) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!got && std::chrono::steady_clock::now() < deadline) io.run_for(std::chrono::milliseconds(50));
    return got;
  }
  fs::path dir;
};

TEST_F(SupervisorTest, ReadsItsOwnIdentity) {
  auto a = mkerneld::read_identity(mk::SysRoot(), ::getpid());
  ASSERT_TRUE(a) << a.error().to_string();
  EXPECT_EQ(a->pid, ::getpid());
  EXPECT_GT(a->start_time, 0u);
  auto b = mkerneld::read_identity(mk::SysRoot(), ::getpid());
  ASSERT_TRUE(b);
  EXPECT_EQ(*a, *b);
}

TEST_F(SupervisorTest, ParsesField22PastACommWithSpacesAndParens) {
  std::string rest;
  for (int f = 3; f <= 21; ++f) rest += (f == 3 ? "S" : std::to_string(f)) + " ";
  fake_stat(4242, "4242 (we) ird) (name) " + rest + "987654 23 24\n");
  auto id = mkerneld::read_identity(mk::SysRoot(dir.string()), 4242);
  ASSERT_TRUE(id) << id.error().to_string();
  EXPECT_EQ(id->start_time, 987654u);
}

TEST_F(SupervisorTest, MissingOrGarbledStatIsAnError) {
  EXPECT_EQ(mkerneld::read_identity(mk::SysRoot(dir.string()), 4243).error().code(), ESRCH);
  fake_stat(4244, "4244 (x) S 1 2 3\n");
  EXPECT_EQ(mkerneld::read_identity(mk::SysRoot(dir.string()), 4244).error().code(), EBADMSG);
  fake_stat(4245, "4245 no parens at all");
  EXPECT_EQ(mkerneld::read_identity(mk::SysRoot(dir.string()), 4245).error().code(), EBADMSG);
  EXPECT_EQ(mkerneld::read_identity(mk::SysRoot(), 0).error().code(), ESRCH);
}

TEST_F(SupervisorTest, ReportsTheExitOfAKilledChildWithItsStatus) {
  boost::asio::io_context io;
  std::optional<ProcessExit> got;
  Supervisor sup(io, mk::SysRoot(), [&](const ProcessExit& e) { got = e; });
  pid_t child = fork_sleeper();
  ASSERT_GT(child, 0);
  auto id = mkerneld::read_identity(mk::SysRoot(), child);
  ASSERT_TRUE(id);
  ASSERT_TRUE(sup.adopt(*id)) << "adopt";
  EXPECT_TRUE(sup.watching(child));
  ::kill(child, SIGKILL);
  ASSERT_TRUE(wait_exit(io, got));
  EXPECT_EQ(got->who, *id);
  EXPECT_TRUE(got->have_status);  // our child: reaped through the pidfd
  EXPECT_EQ(got->code, CLD_KILLED);
  EXPECT_EQ(got->status, SIGKILL);
  EXPECT_FALSE(sup.watching(child));
  EXPECT_EQ(::waitpid(child, nullptr, WNOHANG), -1);  // already reaped
}

TEST_F(SupervisorTest, ReportsACleanExit) {
  boost::asio::io_context io;
  std::optional<ProcessExit> got;
  Supervisor sup(io, mk::SysRoot(), [&](const ProcessExit& e) { got = e; });
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  pid_t child = ::fork();
  if (child == 0) {
    char c;
    ssize_t n = ::read(go[0], &c, 1);
    ::_exit(n == 1 ? 7 : 8);
  }
  auto id = mkerneld::read_identity(mk::SysRoot(), child);
  ASSERT_TRUE(id);
  ASSERT_TRUE(sup.adopt(*id));
  ASSERT_EQ(::write(go[1], "x", 1), 1);
  ASSERT_TRUE(wait_exit(io, got));
  EXPECT_EQ(got->code, CLD_EXITED);
  EXPECT_EQ(got->status, 7);
  ::close(go[0]);
  ::close(go[1]);
}

TEST_F(SupervisorTest, RefusesARecycledPid) {
  boost::asio::io_context io;
  bool called = false;
  Supervisor sup(io, mk::SysRoot(), [&](const ProcessExit&) { called = true; });
  pid_t child = fork_sleeper();
  auto id = mkerneld::read_identity(mk::SysRoot(), child);
  ASSERT_TRUE(id);
  // The persisted identity of an instance that died: same pid, other start.
  ProcessIdentity old{child, id->start_time + 1};
  auto r = sup.adopt(old);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ESRCH);
  EXPECT_STREQ(r.error().what(), "pid was recycled");
  EXPECT_EQ(sup.size(), 0u);
  kill_and_reap(child);
  io.poll();
  EXPECT_FALSE(called);
}

TEST_F(SupervisorTest, RefusesWhenTheStatTreeDisagrees) {
  // A fake /proc whose stat for the child says another start time: the check
  // after pidfd_open goes through the SysRoot and refuses.
  boost::asio::io_context io;
  pid_t child = fork_sleeper();
  auto id = mkerneld::read_identity(mk::SysRoot(), child);
  ASSERT_TRUE(id);
  std::string rest;
  for (int f = 3; f <= 21; ++f) rest += (f == 3 ? "S" : std::to_string(f)) + " ";
  fake_stat(child, std::to_string(child) + " (sleeper) " + rest + std::to_string(id->start_time + 100) + " 23\n");
  Supervisor sup(io, mk::SysRoot(dir.string()), nullptr);
  auto r = sup.adopt(*id);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ESRCH);
  kill_and_reap(child);
}

TEST_F(SupervisorTest, AdoptErrors) {
  boost::asio::io_context io;
  Supervisor sup(io, mk::SysRoot(), nullptr);
  pid_t gone = ::fork();
  if (gone == 0) ::_exit(0);
  ::waitpid(gone, nullptr, 0);
  EXPECT_EQ(sup.adopt({gone, 1}).error().code(), ESRCH);

  pid_t child = fork_sleeper();
  auto id = mkerneld::read_identity(mk::SysRoot(), child);
  ASSERT_TRUE(id);
  ASSERT_TRUE(sup.adopt(*id));
  EXPECT_EQ(sup.adopt(*id).error().code(), EEXIST);
  EXPECT_TRUE(sup.release(child));
  EXPECT_FALSE(sup.release(child));
  kill_and_reap(child);
}

TEST_F(SupervisorTest, ReleasedProcessesAreNotReported) {
  boost::asio::io_context io;
  bool called = false;
  Supervisor sup(io, mk::SysRoot(), [&](const ProcessExit&) { called = true; });
  pid_t child = fork_sleeper();
  auto id = mkerneld::read_identity(mk::SysRoot(), child);
  ASSERT_TRUE(id);
  ASSERT_TRUE(sup.adopt(*id));
  ASSERT_TRUE(sup.release(child));
  kill_and_reap(child);  // the process itself was never touched by release
  io.run_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(called);
}

}  // namespace
