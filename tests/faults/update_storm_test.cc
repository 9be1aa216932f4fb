// 100 consecutive injected live-update failures with the KV service under
// load (issue #8): a client thread SETs keys without pause on its own
// connection while `mkctl update` fails 100 times, at each step of the
// in-place update in turn (MKERNEL_FAULT=update:STEP in the daemon's
// environment; the daemon restarts between steps and adopts the instance).
// Every update must roll back, the load connection must never break, and
// afterwards every key the service acknowledged must read back, with the
// census (tools/soak/census.h) as before. Needs root and CPUs 0-1; SERIAL.
#include <atomic>

#include "fault_fixture.h"
#include "mkernel/fault.h"

namespace {

// resp() with the reason of a failure: "<eof>", "<errno N>".
std::string set_key(int fd, const std::string& k, const std::string& v) {
  const std::string out = "*3\r\n$3\r\nSET\r\n$" + std::to_string(k.size()) + "\r\n" + k + "\r\n$" +
                          std::to_string(v.size()) + "\r\n" + v + "\r\n";
  std::size_t off = 0;
  while (off < out.size()) {
    ssize_t n = ::send(fd, out.data() + off, out.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return "<send errno " + std::to_string(errno) + ">";
    off += static_cast<std::size_t>(n);
  }
  std::string in;
  char buf[64];
  while (in.find("\r\n") == std::string::npos) {
    ssize_t k2 = ::recv(fd, buf, sizeof buf, 0);
    if (k2 < 0 && errno == EINTR) continue;
    if (k2 == 0) return "<eof>";
    if (k2 < 0) return "<recv errno " + std::to_string(errno) + ">";
    in.append(buf, static_cast<std::size_t>(k2));
  }
  return in.substr(0, in.find("\r\n"));
}

class UpdateStorm : public FaultyDaemon {};

constexpr long kKeys = 20000;  // distinct keys the load cycles over

TEST_F(UpdateStorm, HundredInjectedUpdateFailuresUnderLoadLoseNoKey) {
  start_kv();
  if (HasFatalFailure()) return;
  std::vector<std::string> steps;
  for (const auto& p : mk::fault::catalog())
    if (p.op == "update") steps.emplace_back(p.step);
  ASSERT_FALSE(steps.empty());

  const int load = connect_kv(port);
  ASSERT_GE(load, 0);
  std::atomic<bool> stop{false};
  std::atomic<long> acked{0};
  std::string load_error;
  std::thread writer([&] {
    for (long n = 1; !stop.load(); ++n) {
      // A bounded key space (the store is a 64 MiB region): key n % kKeys
      // holds the last n written to it, which is what must read back.
      std::string r = set_key(load, "L" + std::to_string(n % kKeys), std::to_string(n));
      if (r != "+OK") {
        load_error = "SET L" + std::to_string(n) + " answered '" + r + "'";
        return;
      }
      acked.store(n);
    }
  });

  restart_daemon("update:" + steps[0]);
  const pid_t image = image_pid();
  const Census before = take_census(daemon_pid());
  int rolled_back = 0;
  std::string first_bad;
  for (int i = 0; i < 100; ++i) {
    const std::string& step = steps[i * steps.size() / 100];
    if (i > 0 && step != steps[(i - 1) * steps.size() / 100]) restart_daemon("update:" + step);
    const long at_start = acked.load();
    CliRun u = run("update " + name);
    const bool ok = u.code == 1 && u.err.find("fault injected") != std::string::npos;
    rolled_back += ok;
    if (!ok && first_bad.empty()) first_bad = "update " + std::to_string(i) + " (" + step + "): " + u.err + u.out;
    // The load went on across the failed update.
    for (int w = 0; w < 200 && acked.load() == at_start && load_error.empty(); ++w) std::this_thread::sleep_for(5ms);
    if (acked.load() == at_start) {
      ADD_FAILURE() << "no SET acknowledged after update " << i << " (" << step << "): " << load_error;
      break;
    }
  }
  stop = true;
  writer.join();
  EXPECT_EQ(rolled_back, 100) << first_bad;
  EXPECT_TRUE(load_error.empty()) << load_error;
  const Census after = take_census(daemon_pid());
  EXPECT_EQ(after, before) << before.str() << " -> " << after.str();
  EXPECT_EQ(run_json("show " + name).at("instance").as_object().at("state").as_string(), "active");

  // Zero lost keys: every acknowledged SET reads back, on a new connection
  // and on the client connected before the storm.
  const long n = acked.load();
  EXPECT_GT(n, 100) << "the load wrote too little to mean anything";
  const int check = connect_kv(port);
  ASSERT_GE(check, 0);
  long lost = 0;
  // The last write to each key was the highest acknowledged n with that
  // remainder (the writer stopped after acknowledging n).
  for (long k = std::max(1L, n - kKeys + 1); k <= n; ++k)
    lost += resp(check, {"GET", "L" + std::to_string(k % kKeys)}) != "$" + std::to_string(k);
  EXPECT_EQ(lost, 0) << "of the last " << std::min(n, kKeys) << " acknowledged writes (" << n << " in all)";
  expect_keys("after the storm, the client connected before it");
  std::cout << "update storm: " << rolled_back << " rollbacks across " << steps.size() << " steps, " << n
            << " SETs acknowledged under load over " << kKeys << " keys, " << lost << " lost; image pid " << image << " -> " << image_pid()
            << "\n";
  ::close(check);
  ::close(load);
}

}  // namespace
