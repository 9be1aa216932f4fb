// mk-kernel --services=kv end to end: the harness gives the image a listen
// device on 127.0.0.1 (ephemeral port) and talks RESP to it over TCP.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "host_harness.h"
#include "resp_client.h"
#include "mksdk/boot_info.h"
#include "mksdk/kv_store.h"
#include "mksdk/resp.h"

namespace mk::test {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<ImageRun> launch_kv() {
  LaunchSpec spec;
  spec.args = {"--services=kv"};
  spec.listen_device = true;
  auto r = ImageRun::launch(spec);
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().to_string());
  return r ? std::move(*r) : nullptr;
}

void shutdown(ImageRun& run) {
  auto rep = run.request<abi::ShutdownMsg, abi::ShutdownReply>(abi::kMsgShutdown, abi::ShutdownMsg{2000, 0});
  ASSERT_TRUE(rep.has_value()) << rep.error().to_string();
  auto st = run.wait_exit();
  ASSERT_TRUE(st.has_value());
  ASSERT_TRUE(WIFEXITED(*st));
  EXPECT_EQ(WEXITSTATUS(*st), 0) << run.stderr_text() << run.console();
}

TEST(MkKernelKv, ServesCommandsAndTheDataIsInTheRegion) {
  auto run = launch_kv();
  ASSERT_TRUE(run && run->wait_ready()) << (run ? run->stderr_text() + run->console() : "");
  Client c(run->listen_port());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c.cmd({"PING"}), "+PONG");
  EXPECT_EQ(c.cmd({"ECHO", "hi"}), "$hi");
  EXPECT_EQ(c.cmd({"SET", "k", "v1"}), "+OK");
  EXPECT_EQ(c.cmd({"GET", "k"}), "$v1");
  EXPECT_EQ(c.cmd({"GET", "missing"}), "$nil");
  EXPECT_EQ(c.cmd({"INCR", "n"}), ":1");
  EXPECT_EQ(c.cmd({"INCR", "n"}), ":2");
  EXPECT_EQ(c.cmd({"INCR", "k"}), "-ERR value is not an integer or out of range");
  EXPECT_EQ(c.cmd({"MSET", "a", "1", "b", "2"}), "+OK");
  EXPECT_EQ(c.cmd({"MGET", "a", "zz", "b"}), "*3[$1,$nil,$2]");
  EXPECT_EQ(c.cmd({"EXISTS", "a", "b", "zz"}), ":2");
  EXPECT_EQ(c.cmd({"DEL", "a", "zz"}), ":1");
  EXPECT_EQ(c.cmd({"LPUSH", "l", "x", "y"}), ":2");
  EXPECT_EQ(c.cmd({"LRANGE", "l", "0", "-1"}), "*2[$y,$x]");
  EXPECT_EQ(c.cmd({"LPOP", "l"}), "$y");
  EXPECT_EQ(c.cmd({"GET", "l"}), "-WRONGTYPE Operation against a key holding the wrong kind of value");
  EXPECT_EQ(c.cmd({"DBSIZE"}), ":4");  // k n b l
  EXPECT_EQ(c.cmd({"CONFIG", "GET", "save"}), "*2[$save,$]");
  EXPECT_EQ(c.cmd({"COMMAND", "DOCS"}), "*0[]");
  EXPECT_EQ(c.cmd({"SET", "k", "v", "EX", "10"}).substr(0, 4), "-ERR");
  EXPECT_EQ(c.cmd({"GET"}), "-ERR wrong number of arguments for 'get' command");
  EXPECT_EQ(c.cmd({"NOPE", "x"}), "-ERR unknown command 'NOPE'");
  c.send_raw("SET inl ine\r\n");  // inline, as telnet / redis-cli sometimes send
  EXPECT_EQ(c.reply(), "+OK");

  // Pipelined: 500 requests in one write, replies in order.
  std::string batch;
  for (int i = 0; i < 500; ++i) batch += sdk::resp::encode_command({"INCR", "p"});
  c.send_raw(batch);
  for (int i = 1; i <= 500; ++i) ASSERT_EQ(c.reply(), ":" + std::to_string(i));

  // A big value crosses many reads and writes.
  const std::string big(3 << 20, 'B');
  EXPECT_EQ(c.cmd({"SET", "big", big}), "+OK");
  EXPECT_EQ(c.cmd({"GET", "big"}), "$" + big);

  // The live-update property: a second attach of the same memfd (what the
  // next image would do) sees everything written so far.
  void* p = ::mmap(nullptr, kRegionBytes, PROT_READ | PROT_WRITE, MAP_SHARED, run->region_fd(), 0);
  ASSERT_NE(p, MAP_FAILED);
  {
    auto s = sdk::KvStore::attach(p, kRegionBytes);
    ASSERT_TRUE(s.has_value()) << s.error().to_string();
    EXPECT_EQ(s->get("k")->value(), "v1");
    EXPECT_EQ(s->get("n")->value(), "2");
    EXPECT_EQ(s->get("p")->value(), "500");
    EXPECT_EQ(s->get("big")->value(), big);
    EXPECT_EQ(s->get("inl")->value(), "ine");
    EXPECT_EQ(s->dbsize(), 7u);
  }
  ::munmap(p, kRegionBytes);

  // Stats: memory_used_bytes counts the store's use, not all of region 0.
  auto st = run->request<abi::StatsMsg, abi::StatsMsg>(abi::kMsgStats, abi::StatsMsg{});
  ASSERT_TRUE(st.has_value());
  EXPECT_GT(st->memory_used_bytes, big.size());
  EXPECT_LT(st->memory_used_bytes, kRegionBytes);

  EXPECT_EQ(c.cmd({"FLUSHALL"}), "+OK");
  EXPECT_EQ(c.cmd({"DBSIZE"}), ":0");
  EXPECT_EQ(c.cmd({"QUIT"}), "+OK");
  EXPECT_EQ(c.reply(), "EOF");
  shutdown(*run);
  EXPECT_NE(run->console().find("kv: formatted a new store"), std::string::npos) << run->console();
}

TEST(MkKernelKv, ProtocolErrorRepliesAndCloses) {
  auto run = launch_kv();
  ASSERT_TRUE(run && run->wait_ready()) << (run ? run->stderr_text() + run->console() : "");
  Client c(run->listen_port());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c.cmd({"SET", "x", "1"}), "+OK");
  c.send_raw("*1\r\n$zz\r\n");
  EXPECT_EQ(c.reply(), "-ERR Protocol error: invalid bulk length");
  EXPECT_EQ(c.reply(), "EOF");
  // Other clients are unaffected; many at once.
  std::vector<std::unique_ptr<Client>> many;
  for (int i = 0; i < 50; ++i) {
    many.push_back(std::make_unique<Client>(run->listen_port()));
    ASSERT_TRUE(many.back()->ok());
    many.back()->send_raw(sdk::resp::encode_command({"INCR", "c"}));
  }
  std::vector<bool> seen(51);
  for (auto& m : many) {
    const std::string r = m->reply();
    ASSERT_EQ(r[0], ':') << r;
    seen[std::stoul(r.substr(1))] = true;
  }
  for (int i = 1; i <= 50; ++i) EXPECT_TRUE(seen[i]) << i;
  Client d(run->listen_port());
  EXPECT_EQ(d.cmd({"GET", "x"}), "$1");
  shutdown(*run);
}

TEST(MkKernelKv, RefusedWithoutAListenDevice) {
  LaunchSpec spec;
  spec.args = {"--services=kv"};
  auto run = ImageRun::launch(spec);
  ASSERT_TRUE(run.has_value());
  auto st = (*run)->wait_exit();
  ASSERT_TRUE(st.has_value() && WIFEXITED(*st));
  EXPECT_EQ(WEXITSTATUS(*st), sdk::exit_code::kMissingResource);
  EXPECT_NE((*run)->console().find("kv service: no listen device"), std::string::npos) << (*run)->console();
}

TEST(MkKernelKv, UnknownServiceIsAUsageError) {
  LaunchSpec spec;
  spec.args = {"--services=kv,nope"};
  auto run = ImageRun::launch(spec);
  ASSERT_TRUE(run.has_value());
  auto st = (*run)->wait_exit();
  ASSERT_TRUE(st.has_value() && WIFEXITED(*st));
  EXPECT_EQ(WEXITSTATUS(*st), sdk::exit_code::kUsage);
}

}  // namespace
}  // namespace mk::test
