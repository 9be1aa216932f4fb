// PoolTree codec: round trips, writer rules and hostile blobs.
#include "mk/pool_tree.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "boot_tree_samples.h"
#include "fdt_mutate.h"

namespace mk {
namespace {

using ::testing::HasSubstr;
using namespace mk::testing;

Blob pool_blob() {
  auto b = emit_pool_tree(samples::full_pool());
  EXPECT_TRUE(b) << b.error().to_string();
  return b ? *b : Blob{};
}

void expect_rejected(const Blob& blob, int code, const std::string& detail) {
  auto r = parse_pool_tree(blob);
  ASSERT_FALSE(r) << "accepted; expected: " << detail;
  EXPECT_EQ(r.error().code(), code) << r.error().to_string();
  EXPECT_STREQ(r.error().what(), "bad pool tree");
  EXPECT_THAT(r.error().detail(), HasSubstr(detail));
}

void expect_emit_rejected(const PoolTree& p, const std::string& detail) {
  auto r = emit_pool_tree(p);
  ASSERT_FALSE(r) << "emitted; expected: " << detail;
  EXPECT_EQ(r.error().code(), EINVAL);
  EXPECT_THAT(r.error().detail(), HasSubstr(detail));
}

TEST(PoolTree, RoundTripsFullPool) {
  PoolTree p = samples::full_pool();
  auto blob = emit_pool_tree(p);
  ASSERT_TRUE(blob) << blob.error().to_string();
  auto back = parse_pool_tree(*blob);
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(*back, p);
  EXPECT_EQ(back->cpus.to_string(), "1-19,64,8191");
  ASSERT_EQ(back->memory.size(), 3u);
  EXPECT_EQ(back->memory[1].bytes, 8 * kGiB + 12345);
  EXPECT_EQ(back->devices[3], "/dev/sdb");
}

TEST(PoolTree, RoundTripsEmptyPool) {
  PoolTree p;
  auto blob = emit_pool_tree(p);
  ASSERT_TRUE(blob) << blob.error().to_string();
  auto back = parse_pool_tree(*blob);
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(*back, p);
  EXPECT_TRUE(back->cpus.empty());
  EXPECT_TRUE(back->memory.empty());
  EXPECT_TRUE(back->devices.empty());
}

TEST(PoolTree, RoundTripsLargestPool) {
  PoolTree p;
  p.cpus = CpuSet::range(0, 8191);
  for (uint32_t n = 0; n < 1024; ++n) p.memory.push_back({1023 - n, abi::kMaxMemoryBytes - n});
  for (int d = 0; d < 1024; ++d) p.devices.push_back(std::string(200, 'd') + std::to_string(d));
  auto blob = emit_pool_tree(p);
  ASSERT_TRUE(blob) << blob.error().to_string();
  auto back = parse_pool_tree(*blob);
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(*back, p);
}

TEST(PoolTree, EmitRejectsInvalidPools) {
  PoolTree p = samples::full_pool();
  p.cpus.insert(8192);
  expect_emit_rejected(p, "CPU 8192 is out of range");
  p = samples::full_pool();
  p.memory.push_back({0, 4096});
  expect_emit_rejected(p, "/memory@0: duplicate NUMA node 0");
  p = samples::full_pool();
  p.memory[0].node = 1024;
  expect_emit_rejected(p, "memory NUMA node 1024 is out of range");
  p = samples::full_pool();
  p.memory[0].bytes = 0;
  expect_emit_rejected(p, "/memory@0: 'size' is 0");
  p = samples::full_pool();
  p.memory[0].bytes = abi::kMaxMemoryBytes + 1;
  expect_emit_rejected(p, "expected 1..2^62");
  for (const std::string& bad : {std::string(""), std::string("a,b"), std::string("a b"), std::string(256, 'x'),
                                 std::string("a\0b", 3), std::string("tab\t")}) {
    p = samples::full_pool();
    p.devices.push_back(bad);
    expect_emit_rejected(p, "is not valid");
  }
  p = samples::full_pool();
  p.devices.push_back("eth1");
  expect_emit_rejected(p, "duplicate device 'eth1'");
  p = PoolTree{};
  for (int d = 0; d < 1025; ++d) p.devices.push_back("d" + std::to_string(d));
  expect_emit_rejected(p, "1025 devices, at most 1024");
}

TEST(PoolTree, RejectsHostileBlobs) {
  Blob b = pool_blob();
  expect_rejected(Blob(b.begin(), b.begin() + 60), EBADMSG, "malformed FDT");
  Blob magic = b;
  magic[1] = 0;
  expect_rejected(magic, EBADMSG, "not an FDT");
  expect_rejected(Blob(abi::kMaxTreeBytes + 8, 0xd0), E2BIG, "above the");
  expect_rejected(emit_boot_tree(samples::minimal_tree()).value(), EPROTONOSUPPORT,
                  "compatible is 'mkernel,boot-tree-v1', expected 'mkernel,pool-v1'");
  expect_rejected(mutate(b, [](void* f) { set_u32(f, "/", "version", 9); }), EPROTONOSUPPORT, "version is 9");
}

TEST(PoolTree, RejectsSchemaViolations) {
  Blob b = pool_blob();
  expect_rejected(mutate(b, [](void* f) { del_prop(f, "/", "mkernel,cpus"); }), EINVAL,
                  "/: missing required property 'mkernel,cpus'");
  expect_rejected(mutate(b, [](void* f) { del_prop(f, "/", "mkernel,devices"); }), EINVAL,
                  "missing required property 'mkernel,devices'");
  expect_rejected(mutate(b, [](void* f) { set_bytes(f, "/", "mkernel,cpus", "\0\0\0\1\0", 5); }), EINVAL,
                  "'mkernel,cpus' is 5 bytes, expected a multiple of 4");
  const uint32_t descending[] = {cpu_to_fdt32(3), cpu_to_fdt32(2)};
  expect_rejected(mutate(b, [&](void* f) { set_bytes(f, "/", "mkernel,cpus", descending, 8); }), EINVAL,
                  "not strictly ascending at CPU 2");
  const uint32_t dup[] = {cpu_to_fdt32(3), cpu_to_fdt32(3)};
  expect_rejected(mutate(b, [&](void* f) { set_bytes(f, "/", "mkernel,cpus", dup, 8); }), EINVAL,
                  "not strictly ascending at CPU 3");
  const uint32_t big[] = {cpu_to_fdt32(8192)};
  expect_rejected(mutate(b, [&](void* f) { set_bytes(f, "/", "mkernel,cpus", big, 4); }), EINVAL,
                  "holds CPU 8192, expected < 8192");
  std::vector<uint8_t> too_many(4 * 8193, 0);
  expect_rejected(mutate(b, [&](void* f) { set_bytes(f, "/", "mkernel,cpus", too_many.data(), 4 * 8193); }),
                  EINVAL, "has 8193 cells, at most 8192");
  expect_rejected(mutate(b, [](void* f) { set_bytes(f, "/", "mkernel,devices", "eth1\0eth2", 9); }), EINVAL,
                  "'mkernel,devices' is not a NUL-terminated string list");
  expect_rejected(mutate(b, [](void* f) { set_bytes(f, "/", "mkernel,devices", "a\0\0", 3); }), EINVAL,
                  "device name '' is not valid");
  expect_rejected(mutate(b, [](void* f) { set_bytes(f, "/", "mkernel,devices", "a\0a\0", 4); }), EINVAL,
                  "duplicate device 'a'");
  expect_rejected(mutate(b, [](void* f) { set_u32(f, "/memory@1", "numa-node-id", 2); }), EINVAL,
                  "/memory@1: unit address does not match 'numa-node-id' (2)");
  expect_rejected(mutate(b, [](void* f) { set_u32(f, "/memory@1", "size", 1); }), EINVAL,
                  "/memory@1: 'size' is 4 bytes, expected 8");
  expect_rejected(mutate(b, [](void* f) { set_u64(f, "/memory@1", "size", 0); }), EINVAL,
                  "/memory@1: 'size' is 0");
  expect_rejected(mutate(b, [](void* f) { set_str(f, "/memory@1", "device_type", "cpu"); }), EINVAL,
                  "'device_type' is 'cpu', expected 'memory'");
  expect_rejected(mutate(b, [](void* f) { set_u32(f, "/memory@1", "mkernel,fd", 3); }), EINVAL,
                  "/memory@1: unknown property 'mkernel,fd'");
  expect_rejected(mutate(b, [](void* f) { fdt_add_subnode(f, 0, "cpus"); }), EINVAL, "/: unknown node 'cpus'");
  expect_rejected(mutate(b, [](void* f) {
                    copy_node(f, "/memory@1", "/", "tmp");
                    rename(f, "/tmp", "memory@1");
                  }),
                  EINVAL, "/: duplicate node 'memory@1'");
}

}  // namespace
}  // namespace mk
