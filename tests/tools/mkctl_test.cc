// mkctl end to end: runs the real binary against recorded topologies with a
// private runtime directory; checks outputs, exit codes and that refused
// commands leave the state file byte-for-byte unchanged.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "mk/boot_tree.h"
#include "mk/cpu_set.h"

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

struct CliRun {
  int code;
  std::string out, err;
};

class Mkctl : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("mk-cli-" + std::to_string(::getpid()) + "-" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }

  CliRun run(const std::string& args) {
    std::string out = (dir / "out").string(), err = (dir / "err").string();
    std::string cmd = "MKERNEL_RUNTIME_DIR='" + dir.string() + "/rt' " + std::string(MK_BIN_DIR) + "/mkctl " + args +
                      " >" + out + " 2>" + err;
    int st = std::system(cmd.c_str());
    return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, slurp(out), slurp(err)};
  }
  static std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  static std::string topo(const std::string& f) { return " --topology " + std::string(MK_TEST_DATA) + "/topologies/" + f; }
  std::string state_file() {
    for (const auto& e : fs::directory_iterator(dir / "rt" / "topo")) return slurp(e.path());
    return "";
  }
  fs::path dir;
};

const std::string kRL = "Intel-RaptorLake-Corei7-1370P.xml";

TEST_F(Mkctl, TopologyJsonOfRaptorLake) {
  CliRun r = run("topology --json" + topo(kRL));
  ASSERT_EQ(r.code, 0) << r.err;
  json::object d = json::parse(r.out).as_object();
  EXPECT_EQ(d["pus"].as_array().size(), 20u);
  EXPECT_EQ(d["cores"].as_array().size(), 14u);
  auto& kinds = d["kinds"].as_array();
  ASSERT_EQ(kinds.size(), 2u);
  EXPECT_EQ(kinds[0].as_object().at("pus").as_string(), "12-19");
  EXPECT_EQ(kinds[0].as_object().at("core_type").as_string(), "IntelAtom");
  EXPECT_EQ(kinds[1].as_object().at("pus").as_string(), "0-11");
  for (const char* key : {"numa_nodes", "devices", "packages"}) EXPECT_TRUE(d.contains(key)) << key;
}

TEST_F(Mkctl, PerNumaPlanOfEpyc9654) {
  CliRun r = run("plan --policy per-numa --instances 2 --json" + topo("AMD-19h-Zen4-2xEpyc-9654.xml"));
  ASSERT_EQ(r.code, 0) << r.err;
  json::object d = json::parse(r.out).as_object();
  auto& insts = d["instances"].as_array();
  ASSERT_EQ(insts.size(), 2u);
  auto a = *mk::CpuSet::parse(insts[0].as_object().at("cpus").as_string().c_str());
  auto b = *mk::CpuSet::parse(insts[1].as_object().at("cpus").as_string().c_str());
  EXPECT_FALSE(a.intersects(b));
  // Node 0 = PUs 0-95,192-287 and node 1 = 96-191,288-383 on this machine.
  EXPECT_TRUE(a.is_subset_of(*mk::CpuSet::parse("0-95,192-287")));
  EXPECT_TRUE(b.is_subset_of(*mk::CpuSet::parse("96-191,288-383")));
  EXPECT_FALSE(d["applied"].as_bool());
}

TEST_F(Mkctl, OverlappingCreateNamesOwnerAndChangesNothing) {
  ASSERT_EQ(run("init --cpus 2-19 --memory 8G@0" + topo(kRL)).code, 0);
  ASSERT_EQ(run("create db --cpus 4-7 --memory 1G" + topo(kRL)).code, 0);
  std::string before = state_file();
  CliRun r = run("create web --cpus 5-8 --memory 1G" + topo(kRL));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("cpu 5 already belongs to instance 'db' (cpus 4-7); free pool cpus: 2-3,8-19"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(state_file(), before);
  CliRun j = run("create web --cpus 5-8 --memory 1G --json" + topo(kRL));
  EXPECT_EQ(j.code, 1);
  json::object e = json::parse(j.out).as_object();
  EXPECT_EQ(e["error"].as_object()["errno"].as_int64(), EBUSY);
  EXPECT_EQ(state_file(), before);
}

TEST_F(Mkctl, CreateShowDtbDelete) {
  ASSERT_EQ(run("init --cpus 2-19 --memory 8G@0" + topo(kRL)).code, 0);
  CliRun c = run("create e --cpu-count 4 --kind efficiency --memory 512M --device listen:127.0.0.1:7000 --json" + topo(kRL));
  ASSERT_EQ(c.code, 0) << c.err;
  json::object inst = json::parse(c.out).as_object()["instance"].as_object();
  EXPECT_EQ(inst["cpus"].as_string(), "12-15");
  std::string dtb = (dir / "e.dtb").string();
  CliRun s = run("show e --dtb " + dtb + topo(kRL));
  ASSERT_EQ(s.code, 0) << s.err;
  std::string blob = slurp(dtb);
  auto tree = mk::parse_boot_tree({reinterpret_cast<const uint8_t*>(blob.data()), blob.size()});
  ASSERT_TRUE(tree) << tree.error().to_string();
  EXPECT_EQ(tree->instance.name, "e");
  ASSERT_EQ(tree->cpus.size(), 4u);
  EXPECT_EQ(tree->cpus[0].os_index, 12u);
  EXPECT_EQ(tree->cpus[0].kind, 0);
  ASSERT_EQ(tree->memory.size(), 1u);
  EXPECT_EQ(tree->memory[0].size, 512u << 20);
  EXPECT_EQ(tree->memory[0].fd, 4);
  ASSERT_EQ(tree->devices.size(), 2u);  // console + listen
  CliRun d = run("delete e" + topo(kRL));
  EXPECT_EQ(d.code, 0) << d.err;
  CliRun again = run("delete e" + topo(kRL));
  EXPECT_EQ(again.code, 1);
  EXPECT_NE(again.err.find("no instance named 'e'"), std::string::npos);
}

TEST_F(Mkctl, PeSplitApplyIsAllOrNothing) {
  CliRun p = run("plan --policy pe-split --apply" + topo(kRL));
  ASSERT_EQ(p.code, 0) << p.err;
  CliRun s = run("show --json" + topo(kRL));
  json::object d = json::parse(s.out).as_object();
  ASSERT_EQ(d["instances"].as_array().size(), 2u);
  std::string before = state_file();
  // A second apply cannot fit (names and CPUs taken): nothing changes.
  CliRun again = run("plan --policy pe-split --apply" + topo(kRL));
  EXPECT_EQ(again.code, 1);
  EXPECT_EQ(state_file(), before);
}

TEST_F(Mkctl, CorruptStateIsReportedNotReplaced) {
  ASSERT_EQ(run("init --cpus 2-19 --memory 1G@0" + topo(kRL)).code, 0);
  fs::path f;
  for (const auto& e : fs::directory_iterator(dir / "rt" / "topo")) f = e.path();
  std::ofstream(f, std::ios::trunc) << "{\"format\": \"mkernel-state-v1\", \"topo";
  CliRun r = run("create a --cpus 4 --memory 1G" + topo(kRL));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("corrupt state file"), std::string::npos) << r.err;
  EXPECT_EQ(slurp(f), "{\"format\": \"mkernel-state-v1\", \"topo");
}

TEST_F(Mkctl, BadCommandLinesExitTwoWithAMessage) {
  const std::vector<std::string> bad = {
      "",
      "frobnicate",
      "create",
      "create a --memory 1G",
      "create a --cpus 1 --cpu-count 2 --memory 1G",
      "create a --cpus 1-",
      "create a --cpus 1",
      "create a --cpus x --memory 1G",
      "create a --cpus 1 --memory 1Q",
      "create a --cpus 1 --memory 1G --device gpu:0",
      "create a --cpu-count 0 --memory 1G",
      "create a --cpu-count 1 --kind fast --memory 1G",
      "create a --cpus 1 --kind e --memory 1G",
      "create a --cpus 1 --memory 1G --no-such-option",
      "init --cpus 3-1",
      "init --memory lots",
      "plan",
      "plan --policy random",
      "plan --policy pe-split --kinds 0",
      "plan --policy even --memory 1X",
      "show --dtb /tmp/x",
      "delete",
  };
  for (const auto& args : bad) {
    CliRun r = run(args + topo(kRL));
    EXPECT_EQ(r.code, 2) << "mkctl " << args << "\n" << r.err;
    EXPECT_FALSE(r.err.empty()) << args;
  }
}

TEST_F(Mkctl, RefusalsExitOne) {
  EXPECT_EQ(run("create a --cpus 1 --memory 1G" + topo(kRL)).code, 1);  // no pool
  EXPECT_EQ(run("topology --topology /nonexistent.xml").code, 1);
  ASSERT_EQ(run("init --cpus 2-19 --memory 1G@0" + topo(kRL)).code, 0);
  EXPECT_EQ(run("init --cpus 2-40" + topo(kRL)).code, 1);
  EXPECT_EQ(run("create a --cpus 0 --memory 4K" + topo(kRL)).code, 1);
  EXPECT_EQ(run("create a --cpus 2 --memory 2G" + topo(kRL)).code, 1);
  EXPECT_EQ(run("create a --cpus 2 --memory 1000" + topo(kRL)).code, 1);
  EXPECT_EQ(run("plan --policy even --instances 40" + topo(kRL)).code, 1);
}

TEST_F(Mkctl, HelpExitsZero) {
  EXPECT_EQ(run("--help").code, 0);
  for (const char* verb : {"topology", "init", "create", "delete", "plan", "show"}) {
    CliRun r = run(std::string(verb) + " --help");
    EXPECT_EQ(r.code, 0) << verb;
    EXPECT_NE(r.out.find("usage: mkctl"), std::string::npos) << verb;
  }
}

}  // namespace
