// DOC: runs the mkbench binary for its end-to-end tests
// (mkbench_isolation_test.cc, mkbench_pe_split_test.cc): one command line
// with stdout and stderr captured in a private directory, the exit code,
// and the JSON document of a --json run.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace mkbench_test {

struct CliRun {
  int code = -1;
  std::string out, err;
};

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// `mkbench ARGS` with its outputs in `dir`.
inline CliRun run_mkbench(const std::filesystem::path& dir, const std::string& args) {
  std::string out = (dir / "stdout").string(), err = (dir / "stderr").string();
  std::string cmd = std::string(MK_BIN_DIR) + "/mkbench " + args + " >" + out + " 2>" + err;
  int st = std::system(cmd.c_str());
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, slurp(out), slurp(err)};
}

// The document of a --json run; a null value when stdout is not JSON.
inline boost::json::value parse_json(const std::string& text) {
  boost::system::error_code ec;
  auto v = boost::json::parse(text, ec);
  return ec ? boost::json::value() : v;
}

// A fresh directory for one test.
inline std::filesystem::path test_dir(const std::string& suite) {
  auto d = std::filesystem::temp_directory_path() /
           ("mkbench-test-" + suite + "-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

}  // namespace mkbench_test
