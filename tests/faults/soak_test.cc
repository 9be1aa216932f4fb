// mksoak (tools/soak): its usage errors, and a short seeded run that must
// end with no violation and the census it started with. The 2-minute run
// is a stage of scripts/test.sh. Needs root and CPUs 0-1; SERIAL.
#include "../tools/daemon_fixture.h"

namespace {

CliRun soak(const std::string& args, const fs::path& dir) {
  const std::string out = (dir / "soak.out").string(), err = (dir / "soak.err").string();
  int st = std::system((std::string(MK_BIN_DIR) + "/mksoak " + args + " >" + out + " 2>" + err).c_str());
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, slurp(out), slurp(err)};
}

TEST_F(Daemon, MksoakRefusesBadUsage) {
  struct Row {
    std::string args, says;
  } rows[] = {
      {"--bogus", "unrecognised option '--bogus'"},
      {"--seconds", "--seconds"},
      {"--seconds x", "--seconds"},
      {"--seconds 0", "between 1 second and 7 days"},
      {"--minutes 20000", "between 1 second and 7 days"},
      {"--minutes 1 --seconds 5", "--minutes or --seconds, not both"},
      {"--seed -1", "--seed"},
  };
  for (const auto& r : rows) {
    CliRun c = soak(r.args, dir);
    EXPECT_EQ(c.code, 2) << r.args;
    EXPECT_NE(c.err.find(r.says), std::string::npos) << r.args << ": " << c.err;
    EXPECT_EQ(c.out, "") << r.args;
  }
  CliRun h = soak("--help", dir);
  EXPECT_EQ(h.code, 0);
  EXPECT_NE(h.out.find("usage: mksoak"), std::string::npos) << h.out;
}

TEST_F(Daemon, MksoakShortSeededRunHoldsItsInvariants) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  CliRun c = soak("--seconds 10 --seed 7 --json --runtime-dir " + rt.string(), dir);
  ASSERT_EQ(c.code, 0) << c.out << c.err;
  boost::system::error_code ec;
  json::value v = json::parse(c.out, ec);
  ASSERT_FALSE(ec) << c.out;
  const json::object& o = v.as_object();
  EXPECT_EQ(o.at("seed").to_number<uint64_t>(), 7u);
  EXPECT_EQ(o.at("violations").as_int64(), 0);
  EXPECT_GT(o.at("operations").as_int64(), 5);
  EXPECT_EQ(o.at("checks").as_int64(), o.at("operations").as_int64());
  EXPECT_EQ(o.at("census_before"), o.at("census_after"));
  EXPECT_TRUE(o.at("per_operation").as_object().contains("init"));
}

}  // namespace
