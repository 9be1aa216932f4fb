// Golden blobs: the v1 byte layout of both schemas is pinned. A reader must
// keep accepting these exact bytes, and the writer must keep producing them,
// until the compatible string is bumped (mk/abi/boot_tree_abi.h rule 1).
//
// If a change is intended: bump the schema version, then regenerate with
//   MK_UPDATE_GOLDEN=1 ./common_boot_tree_test --gtest_filter='Golden*'
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>

#include "boot_tree_samples.h"
#include "mk/boot_tree.h"
#include "mk/pool_tree.h"

namespace mk {
namespace {

using Blob = std::vector<uint8_t>;

std::string golden_path(const char* name) { return std::string(MK_GOLDEN_DIR) + "/" + name; }

Blob read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Blob(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void check_golden(const char* name, const Blob& emitted) {
  std::string path = golden_path(name);
  if (std::getenv("MK_UPDATE_GOLDEN")) {
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(emitted.data()),
                                                static_cast<std::streamsize>(emitted.size()));
  }
  Blob golden = read_file(path);
  ASSERT_FALSE(golden.empty()) << "missing golden file " << path;
  EXPECT_EQ(emitted, golden) << "the writer no longer produces the pinned v1 bytes of " << path;
}

TEST(GoldenBootTree, FullTreeBytesArePinned) {
  auto blob = emit_boot_tree(samples::full_tree());
  ASSERT_TRUE(blob) << blob.error().to_string();
  check_golden("boot_tree_v1.dtb", *blob);
  auto parsed = parse_boot_tree(read_file(golden_path("boot_tree_v1.dtb")));
  ASSERT_TRUE(parsed) << parsed.error().to_string();
  EXPECT_EQ(*parsed, samples::full_tree());
}

TEST(GoldenBootTree, MinimalTreeBytesArePinned) {
  auto blob = emit_boot_tree(samples::minimal_tree());
  ASSERT_TRUE(blob) << blob.error().to_string();
  check_golden("boot_tree_minimal_v1.dtb", *blob);
  auto parsed = parse_boot_tree(read_file(golden_path("boot_tree_minimal_v1.dtb")));
  ASSERT_TRUE(parsed) << parsed.error().to_string();
  EXPECT_EQ(*parsed, samples::minimal_tree());
}

TEST(GoldenPoolTree, FullPoolBytesArePinned) {
  auto blob = emit_pool_tree(samples::full_pool());
  ASSERT_TRUE(blob) << blob.error().to_string();
  check_golden("pool_v1.dtb", *blob);
  auto parsed = parse_pool_tree(read_file(golden_path("pool_v1.dtb")));
  ASSERT_TRUE(parsed) << parsed.error().to_string();
  EXPECT_EQ(*parsed, samples::full_pool());
}

}  // namespace
}  // namespace mk
