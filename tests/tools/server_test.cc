// mkerneld::Server in-process: a stuck client is closed after the request
// timeout and the server keeps serving; host-stop ends the loop after the
// answer. Uses the live topology and a private runtime directory.
#include "server.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <thread>

#include "controller.h"

namespace {

namespace fs = std::filesystem;

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::path("/tmp") / ("mk-srv-" + std::to_string(::getpid()) + "-" +
                              ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
  int connect_socket() {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::string p = (dir / "control.sock").string();
    std::memcpy(a.sun_path, p.c_str(), p.size() + 1);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    return fd;
  }
  static std::string read_all(int fd) {
    std::string s;
    char buf[4096];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) s.append(buf, static_cast<std::size_t>(n));
    return s;
  }
  fs::path dir;
};

TEST_F(ServerTest, StuckClientIsClosedAndOthersAreServed) {
  boost::asio::io_context io;
  auto ctl = mkerneld::Controller::create(dir.string(), mk::SysRoot(), io);
  ASSERT_TRUE(ctl) << ctl.error().to_string();
  auto srv = mkerneld::Server::create(io, (dir / "control.sock").string(), **ctl, [&io] { io.stop(); },
                                      std::chrono::milliseconds(50));
  ASSERT_TRUE(srv) << srv.error().to_string();
  (*srv)->start();
  std::thread loop([&io] { io.run(); });

  int stuck = connect_socket();
  ASSERT_EQ(::send(stuck, "{\"action\":", 10, MSG_NOSIGNAL), 10);  // never finished
  EXPECT_EQ(read_all(stuck), "");  // closed by the server: EOF, no answer
  ::close(stuck);

  int fd = connect_socket();
  const std::string stop = "{\"action\":\"host-stop\"}\n";
  ASSERT_EQ(::send(fd, stop.data(), stop.size(), MSG_NOSIGNAL), static_cast<ssize_t>(stop.size()));
  loop.join();  // host-stop ended the loop after answering
  (*srv)->close();
  srv->reset();  // closes the host-stop connection (EOF for the client)
  std::string answer = read_all(fd);
  EXPECT_NE(answer.find("\"stopped\":true"), std::string::npos) << answer;
  ::close(fd);
  EXPECT_FALSE(fs::exists(dir / "control.sock"));
}

}  // namespace
