// mk::check_fdt_structure: every refusal of the bounded structure walk, a
// real emitted tree accepted, and the fuzz_pool_tree finding (a negative
// property length that made libfdt's fdt_check_full loop forever) refused
// by the pool-tree parser at once.
#include "mk/fdt_structure.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "mk/pool_tree.h"

namespace mk {
namespace {

// A minimal v17 FDT built by hand: header, struct block, strings block.
struct Blob {
  std::vector<uint32_t> tokens;  // host order; written big endian
  std::string strings = "compatible";
  std::vector<uint8_t> bytes(uint32_t total_delta = 0, uint32_t off_struct_delta = 0) const {
    std::vector<uint8_t> out(40);
    auto put = [&](std::size_t at, uint32_t v) {
      out[at] = uint8_t(v >> 24), out[at + 1] = uint8_t(v >> 16), out[at + 2] = uint8_t(v >> 8), out[at + 3] = uint8_t(v);
    };
    for (uint32_t t : tokens) {
      out.resize(out.size() + 4);
      put(out.size() - 4, t);
    }
    const uint32_t size_struct = static_cast<uint32_t>(tokens.size() * 4);
    const uint32_t off_strings = 40 + size_struct;
    out.insert(out.end(), strings.begin(), strings.end());
    out.push_back(0);
    put(0, 0xd00dfeed);
    put(4, static_cast<uint32_t>(out.size()) + total_delta);
    put(8, 40 + off_struct_delta);
    put(12, off_strings);
    put(16, 40);  // no reservation map entries beyond the terminator: unused here
    put(20, 17);
    put(24, 16);
    put(32, static_cast<uint32_t>(strings.size() + 1));
    put(36, size_struct);
    return out;
  }
};

constexpr uint32_t kBegin = 1, kEndNode = 2, kProp = 3, kNop = 4, kEnd = 9;

Blob root_with(std::vector<uint32_t> inner) {
  Blob b;
  b.tokens = {kBegin, 0};  // root name "" padded to 4 bytes
  b.tokens.insert(b.tokens.end(), inner.begin(), inner.end());
  b.tokens.push_back(kEndNode);
  b.tokens.push_back(kEnd);
  return b;
}

void expect_refused(const std::vector<uint8_t>& blob, const char* words) {
  auto r = check_fdt_structure(blob);
  ASSERT_FALSE(r) << "accepted, expected: " << words;
  EXPECT_EQ(r.error().code(), EBADMSG);
  EXPECT_NE(std::string(r.error().message()).find(words), std::string::npos) << r.error().message();
}

TEST(FdtStructure, AcceptsWellFormedTrees) {
  EXPECT_TRUE(check_fdt_structure(root_with({}).bytes()));
  EXPECT_TRUE(check_fdt_structure(root_with({kNop, kProp, 4, 0, 0x61626300, kBegin, 0x63000000, kEndNode}).bytes()));
  PoolTree pool;
  auto real = emit_pool_tree(pool);
  ASSERT_TRUE(real) << real.error().to_string();
  EXPECT_TRUE(check_fdt_structure(*real));
}

TEST(FdtStructure, RefusesEveryMalformation) {
  expect_refused(std::vector<uint8_t>(39, 0), "shorter than an FDT header");
  expect_refused(root_with({}).bytes(4), "totalsize");
  expect_refused(root_with({}).bytes(0, 2), "not 4-byte aligned");
  expect_refused(root_with({}).bytes(0, 4000), "outside the blob");
  Blob no_end = root_with({});
  no_end.tokens.pop_back();
  expect_refused(no_end.bytes(), "without an END token");
  Blob two_roots = root_with({});
  two_roots.tokens.insert(two_roots.tokens.end() - 1, {kBegin, 0, kEndNode});
  expect_refused(two_roots.bytes(), "a second root node");
  Blob long_name;
  long_name.tokens = {kBegin, 0x61616161};  // name without NUL up to the end
  expect_refused(long_name.bytes(), "runs past the structure block");
  Blob stray_end;
  stray_end.tokens = {kEndNode, kEnd};
  expect_refused(stray_end.bytes(), "END_NODE without a node");
  Blob stray_prop;
  stray_prop.tokens = {kProp, 0, 0, kEnd};
  expect_refused(stray_prop.bytes(), "property outside any node");
  Blob cut_prop;
  cut_prop.tokens = {kBegin, 0, kProp, 4};
  expect_refused(cut_prop.bytes(), "property header");
  expect_refused(root_with({kProp, 0xfffffff4, 0}).bytes(), "past the structure block");
  expect_refused(root_with({kProp, 0, 999}).bytes(), "outside the strings block");
  expect_refused(root_with({0x77}).bytes(), "unknown token 0x77");
  Blob open_node = root_with({kBegin, 0x62000000});
  expect_refused(open_node.bytes(), "node(s) open");
}

TEST(FdtStructure, NegativePropertyLengthIsRefusedNotLoopedOn) {
  // The fuzz_pool_tree finding, kept as a seed too
  // (tests/fuzz/corpus/fuzz_pool_tree/regress-negative-prop-len).
  const auto t0 = std::chrono::steady_clock::now();
  Blob b = root_with({kProp, 0xfffffff4, 0, kProp, 4, 0, 0});
  auto r = parse_pool_tree(b.bytes());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), EBADMSG);
  EXPECT_NE(std::string(r.error().message()).find("malformed FDT: property at offset"), std::string::npos)
      << r.error().message();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

}  // namespace
}  // namespace mk
