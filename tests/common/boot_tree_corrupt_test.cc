// parse_boot_tree on hostile input: one test per corruption or schema rule
// (truncation, magic, versions, missing/unknown/duplicate nodes and
// properties, sizes, encodings, ranges, garbage). Each must fail with the
// documented errno and a detail naming the node, and never crash.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "boot_tree_samples.h"
#include "fdt_mutate.h"
#include "mk/boot_tree.h"

namespace mk {
namespace {

using ::testing::HasSubstr;
using testing::Blob;
using namespace mk::testing;

Blob full_blob() {
  auto b = emit_boot_tree(samples::full_tree());
  EXPECT_TRUE(b) << b.error().to_string();
  return b ? *b : Blob{};
}

void expect_rejected(const Blob& blob, int code, const std::string& detail) {
  auto r = parse_boot_tree(blob);
  ASSERT_FALSE(r) << "accepted; expected: " << detail;
  EXPECT_EQ(r.error().code(), code) << r.error().to_string();
  EXPECT_STREQ(r.error().what(), "bad boot tree");
  EXPECT_THAT(r.error().detail(), HasSubstr(detail));
}

TEST(BootTreeCorrupt, SanityTheUnmutatedBlobParses) {
  Blob b = mutate(full_blob(), [](void*) {});
  auto r = parse_boot_tree(b);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(*r, samples::full_tree());
}

TEST(BootTreeCorrupt, EmptyAndShortBlobs) {
  expect_rejected({}, EBADMSG, "shorter than an FDT header");
  Blob b = full_blob();
  expect_rejected(Blob(b.begin(), b.begin() + 39), EBADMSG, "39 bytes, shorter than an FDT header");
}

TEST(BootTreeCorrupt, TruncatedBlob) {
  Blob b = full_blob();
  for (std::size_t cut : {b.size() / 2, b.size() - 1, std::size_t{48}}) {
    expect_rejected(Blob(b.begin(), b.begin() + static_cast<long>(cut)), EBADMSG, "malformed FDT");
  }
}

TEST(BootTreeCorrupt, TrailingBytes) {
  Blob b = full_blob();
  b.resize(b.size() + 8, 0);
  expect_rejected(b, EBADMSG, "but its FDT header says");
}

TEST(BootTreeCorrupt, BadMagic) {
  Blob b = full_blob();
  b[0] ^= 0xff;
  expect_rejected(b, EBADMSG, "not an FDT: magic is 0x2f0dfeed");
}

TEST(BootTreeCorrupt, UnsupportedFdtFormatVersion) {
  Blob b = full_blob();
  b[23] = 16;  // version field (offset 20, big-endian) 17 -> 16
  expect_rejected(b, EPROTONOSUPPORT, "FDT format version 16");
}

TEST(BootTreeCorrupt, CorruptStructureBlock) {
  Blob b = full_blob();
  uint32_t off_struct = (uint32_t{b[8]} << 24) | (uint32_t{b[9]} << 16) | (uint32_t{b[10]} << 8) | b[11];
  b[off_struct + 3] = 0x77;  // the root's FDT_BEGIN_NODE tag -> unknown tag
  auto r = parse_boot_tree(b);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().code() == EBADMSG || r.error().code() == EIO) << r.error().to_string();
}

TEST(BootTreeCorrupt, OversizeBlob) {
  Blob b(abi::kMaxTreeBytes + 1, 0);
  expect_rejected(b, E2BIG, "2097153 bytes, above the 2097152-byte limit");
}

TEST(BootTreeCorrupt, WrongCompatible) {
  expect_rejected(mutate(full_blob(), [](void* f) { set_str(f, "/", "compatible", "mkernel,boot-tree-v2"); }),
                  EPROTONOSUPPORT, "/: compatible is 'mkernel,boot-tree-v2', expected 'mkernel,boot-tree-v1'");
  auto pool = emit_pool_tree(samples::full_pool());
  ASSERT_TRUE(pool);
  expect_rejected(*pool, EPROTONOSUPPORT, "compatible is 'mkernel,pool-v1'");
}

TEST(BootTreeCorrupt, WrongVersion) {
  expect_rejected(mutate(full_blob(), [](void* f) { set_u32(f, "/", "version", 2); }), EPROTONOSUPPORT,
                  "version is 2, this reader supports 1");
}

TEST(BootTreeCorrupt, MissingCompatibleOrVersion) {
  expect_rejected(mutate(full_blob(), [](void* f) { del_prop(f, "/", "compatible"); }), EINVAL,
                  "/: missing required property 'compatible'");
  expect_rejected(mutate(full_blob(), [](void* f) { del_prop(f, "/", "version"); }), EINVAL,
                  "/: missing required property 'version'");
}

TEST(BootTreeCorrupt, MissingRequiredNodes) {
  for (const char* n : {"/chosen", "/cpus", "/ipi", "/devices"}) {
    expect_rejected(mutate(full_blob(), [&](void* f) { del_node(f, n); }), EINVAL,
                    std::string("missing required node '") + n + "'");
  }
  Blob no_mem = mutate(full_blob(), [](void* f) {
    for (const char* m : {"/memory@0", "/memory@1", "/memory@1a"}) del_node(f, m);
  });
  expect_rejected(no_mem, EINVAL, "no memory@N regions");
  Blob no_cpu = mutate(emit_boot_tree(samples::minimal_tree()).value(), [](void* f) { del_node(f, "/cpus/cpu@0"); });
  expect_rejected(no_cpu, EINVAL, "/cpus: no CPUs");
}

TEST(BootTreeCorrupt, MissingRequiredProperty) {
  const std::pair<const char*, const char*> required[] = {
      {"/chosen", "bootargs"},       {"/chosen", "mkernel,instance-id"}, {"/chosen", "mkernel,instance-name"},
      {"/cpus", "#address-cells"},   {"/cpus", "#size-cells"},           {"/cpus/cpu@4", "device_type"},
      {"/cpus/cpu@4", "reg"},        {"/cpus/cpu@4", "core"},            {"/cpus/cpu@4", "package"},
      {"/cpus/cpu@4", "numa-node-id"}, {"/cpus/cpu@4", "mkernel,cpu-kind"}, {"/cpus/cpu@4", "mkernel,efficiency"},
      {"/memory@1", "device_type"},  {"/memory@1", "size"},              {"/memory@1", "numa-node-id"},
      {"/memory@1", "mkernel,fd"},   {"/memory@1", "mkernel,flags"},     {"/ipi", "mkernel,host-id"},
      {"/ipi/channel@3", "peer-id"}, {"/ipi/channel@3", "peer-name"},    {"/ipi/channel@3", "mkernel,fd"},
      {"/ipi/channel@3", "ring-size"}, {"/ipi/channel@3", "mkernel,role"}, {"/devices/data", "compatible"},
      {"/devices/data", "mkernel,fd"},
  };
  for (const auto& req : required) {
    const char* path = req.first;
    const char* prop = req.second;
    expect_rejected(mutate(full_blob(), [&](void* f) { del_prop(f, path, prop); }), EINVAL,
                    std::string(path) + ": missing required property '" + prop + "'");
  }
}

TEST(BootTreeCorrupt, HandoverNeedsBothProperties) {
  expect_rejected(mutate(full_blob(), [](void* f) { del_prop(f, "/chosen", "mkernel,handover-size"); }), EINVAL,
                  "/chosen: 'mkernel,handover-fd' given without 'mkernel,handover-size'");
  expect_rejected(mutate(full_blob(), [](void* f) { del_prop(f, "/chosen", "mkernel,handover-fd"); }), EINVAL,
                  "'mkernel,handover-size' given without 'mkernel,handover-fd'");
}

TEST(BootTreeCorrupt, WrongPropertySize) {
  expect_rejected(mutate(full_blob(), [](void* f) { set_bytes(f, "/cpus/cpu@10", "numa-node-id", "\0\1", 2); }),
                  EINVAL, "/cpus/cpu@10: 'numa-node-id' is 2 bytes, expected 4");
  expect_rejected(mutate(full_blob(), [](void* f) { set_u32(f, "/memory@0", "size", 4096); }), EINVAL,
                  "/memory@0: 'size' is 4 bytes, expected 8");
  expect_rejected(mutate(full_blob(), [](void* f) { set_u64(f, "/chosen", "mkernel,instance-id", 7); }), EINVAL,
                  "/chosen: 'mkernel,instance-id' is 8 bytes, expected 4");
  expect_rejected(mutate(full_blob(), [](void* f) { set_bytes(f, "/ipi", "mkernel,host-id", "", 0); }), EINVAL,
                  "/ipi: 'mkernel,host-id' is 0 bytes, expected 4");
}

TEST(BootTreeCorrupt, MalformedStrings) {
  expect_rejected(mutate(full_blob(), [](void* f) { set_bytes(f, "/chosen", "bootargs", "abc", 3); }), EINVAL,
                  "/chosen: 'bootargs' is not a NUL-terminated string");
  expect_rejected(mutate(full_blob(), [](void* f) { set_bytes(f, "/chosen", "mkernel,instance-name", "a\0b", 4); }),
                  EINVAL, "'mkernel,instance-name' holds several strings");
  expect_rejected(mutate(full_blob(), [](void* f) { set_bytes(f, "/devices/eth0", "ifname", "", 0); }), EINVAL,
                  "/devices/eth0: 'ifname' is not a NUL-terminated string");
}

TEST(BootTreeCorrupt, UnknownNodesAndProperties) {
  expect_rejected(mutate(full_blob(), [](void* f) { fdt_add_subnode(f, 0, "aliases"); }), EINVAL,
                  "/: unknown node 'aliases'");
  expect_rejected(mutate(full_blob(), [](void* f) { set_u32(f, "/", "model", 1); }), EINVAL,
                  "/: unknown property 'model'");
  expect_rejected(mutate(full_blob(), [](void* f) { set_u32(f, "/cpus/cpu@4", "clock-frequency", 1); }), EINVAL,
                  "/cpus/cpu@4: unknown property 'clock-frequency'");
  expect_rejected(mutate(full_blob(), [](void* f) { fdt_add_subnode(f, node(f, "/cpus"), "l2-cache"); }), EINVAL,
                  "/cpus: unexpected node 'l2-cache'");
  expect_rejected(mutate(full_blob(), [](void* f) { fdt_add_subnode(f, node(f, "/cpus/cpu@4"), "x"); }), EINVAL,
                  "/cpus/cpu@4: unexpected child node 'x'");
  expect_rejected(mutate(full_blob(), [](void* f) { fdt_add_subnode(f, node(f, "/ipi"), "doorbell"); }), EINVAL,
                  "/ipi: unexpected node 'doorbell'");
  expect_rejected(mutate(full_blob(), [](void* f) { set_u32(f, "/devices", "count", 5); }), EINVAL,
                  "/devices: unknown property 'count'");
  expect_rejected(mutate(full_blob(), [](void* f) { set_u32(f, "/devices/disk0", "bad,key", 5); }), EINVAL,
                  "/devices/disk0: unknown property 'bad,key'");
  expect_rejected(mutate(full_blob(), [](void* f) { rename(f, "/devices/disk0", "disk@0"); }), EINVAL,
                  "device node name 'disk@0' is not valid");
}

TEST(BootTreeCorrupt, UnitAddressesMustBeCanonicalAndMatch) {
  expect_rejected(mutate(full_blob(), [](void* f) { set_u32(f, "/cpus/cpu@4", "reg", 5); }), EINVAL,
                  "/cpus/cpu@4: unit address does not match 'reg' (5)");
  expect_rejected(mutate(full_blob(), [](void* f) { rename(f, "/cpus/cpu@4", "cpu@04"); }), EINVAL,
                  "unexpected node 'cpu@04'");
  expect_rejected(mutate(full_blob(), [](void* f) { rename(f, "/cpus/cpu@a", "cpu@A"); }), EINVAL,
                  "unexpected node 'cpu@A'");
  expect_rejected(mutate(full_blob(), [](void* f) { set_u32(f, "/ipi/channel@3", "peer-id", 4); }), EINVAL,
                  "/ipi/channel@3: unit address does not match 'peer-id' (4)");
  expect_rejected(mutate(full_blob(), [](void* f) { rename(f, "/memory@1", "memory@x"); }), EINVAL,
                  "/: unknown node 'memory@x'");
}

TEST(BootTreeCorrupt, DuplicateNodes) {
  expect_rejected(mutate(full_blob(), [](void* f) {
                    copy_node(f, "/cpus/cpu@4", "/cpus", "tmp");
                    rename(f, "/cpus/tmp", "cpu@4");
                  }),
                  EINVAL, "/cpus: duplicate node 'cpu@4'");
  expect_rejected(mutate(full_blob(), [](void* f) {
                    copy_node(f, "/chosen", "/", "tmp");
                    rename(f, "/tmp", "chosen");
                  }),
                  EINVAL, "/: duplicate node 'chosen'");
  expect_rejected(mutate(full_blob(), [](void* f) {
                    copy_node(f, "/ipi/channel@3", "/ipi", "tmp");
                    rename(f, "/ipi/tmp", "channel@3");
                  }),
                  EINVAL, "/ipi: duplicate node 'channel@3'");
  expect_rejected(mutate(full_blob(), [](void* f) {
                    copy_node(f, "/devices/eth0", "/devices", "tmp");
                    rename(f, "/devices/tmp", "eth0");
                  }),
                  EINVAL, "/devices: duplicate node 'eth0'");
}

TEST(BootTreeCorrupt, DuplicateProperty) {
  // fdt_rw refuses to create one, so rewrite a property name in place: in
  // the strings block "core" becomes "reg\0", giving each cpu two 'reg's.
  Blob b = full_blob();
  std::string s(b.begin(), b.end());
  std::size_t at = s.find(std::string("core\0", 5));
  ASSERT_NE(at, std::string::npos);
  std::memcpy(&b[at], "reg\0", 4);
  expect_rejected(b, EINVAL, "/cpus/cpu@4: duplicate property 'reg'");
}

TEST(BootTreeCorrupt, OutOfRangeValues) {
  const struct {
    std::function<void(void*)> edit;
    const char* detail;
  } cases[] = {
      {[](void* f) { set_u32(f, "/chosen", "mkernel,instance-id", 0); }, "'mkernel,instance-id' is 0, expected 1..511"},
      {[](void* f) { set_u32(f, "/chosen", "mkernel,instance-id", 512); }, "'mkernel,instance-id' is 512"},
      {[](void* f) { set_str(f, "/chosen", "mkernel,instance-name", "no/slash"); }, "'no/slash' is not a valid name"},
      {[](void* f) { set_str(f, "/chosen", "bootargs", std::string(4097, 'a')); }, "'bootargs' is 4097 bytes"},
      {[](void* f) { set_u32(f, "/chosen", "mkernel,handover-fd", 70000); }, "'mkernel,handover-fd' is 70000"},
      {[](void* f) { set_u64(f, "/chosen", "mkernel,handover-size", 0); }, "'mkernel,handover-size' is 0"},
      {[](void* f) { set_u32(f, "/chosen", "mkernel,handover-socket", 70000); }, "'mkernel,handover-socket' is 70000"},
      {[](void* f) { set_u32(f, "/chosen", "mkernel,parked", 1); }, "'mkernel,parked' without 'mkernel,handover-socket'"},
      {[](void* f) {
         set_u32(f, "/chosen", "mkernel,handover-socket", 9);
         set_u32(f, "/chosen", "mkernel,parked", 2);
       },
       "'mkernel,parked' is 2, expected 1"},
      {[](void* f) {
         set_u32(f, "/chosen", "mkernel,handover-socket", 9);
         set_u32(f, "/chosen", "mkernel,handover-socket-host", 9);
       },
       "are both fd 9"},
      {[](void* f) {
         rename(f, "/cpus/cpu@4", "cpu@2000");
         set_u32(f, "/cpus/cpu@2000", "reg", 8192);
       },
       "CPU 8192 is out of range, expected < 8192"},
      {[](void* f) { set_u32(f, "/cpus/cpu@4", "numa-node-id", 1024); }, "/cpus/cpu@4: 'numa-node-id' is 1024"},
      {[](void* f) { set_u32(f, "/cpus/cpu@4", "mkernel,cpu-kind", 0xfffffffe); }, "'mkernel,cpu-kind' is -2"},
      {[](void* f) { set_u32(f, "/cpus/cpu@4", "mkernel,efficiency", 64); }, "'mkernel,efficiency' is 64"},
      {[](void* f) { set_u32(f, "/cpus/cpu@4", "core", 0x80000000); }, "'core' is 2147483648"},
      {[](void* f) { set_str(f, "/cpus/cpu@4", "device_type", "memory"); }, "'device_type' is 'memory', expected 'cpu'"},
      {[](void* f) { set_u32(f, "/cpus", "#size-cells", 1); }, "expected 1 and 0"},
      {[](void* f) { rename(f, "/memory@1", "memory@100"); }, "memory region index 256 is out of range"},
      {[](void* f) { set_u64(f, "/memory@1", "size", 4095); }, "/memory@1: 'size' is 4095"},
      {[](void* f) { set_u32(f, "/memory@1", "mkernel,fd", 0xffffffff); }, "/memory@1: 'mkernel,fd' is -1"},
      {[](void* f) { set_u32(f, "/memory@1", "mkernel,flags", 0x80000001); }, "unknown bits 0x80000000"},
      {[](void* f) { set_u32(f, "/ipi", "mkernel,host-id", 7); }, "'mkernel,host-id' is 7"},
      {[](void* f) { set_str(f, "/ipi/channel@3", "mkernel,role", "both"); }, "'mkernel,role' is 'both', expected"},
      {[](void* f) { set_u32(f, "/ipi/channel@3", "ring-size", 65); }, "/ipi/channel@3: 'ring-size' is 65"},
      {[](void* f) { set_str(f, "/ipi/channel@3", "peer-name", ""); }, "'peer-name' '' is not a valid name"},
      {[](void* f) {
         rename(f, "/ipi/channel@3", "channel@7");
         set_u32(f, "/ipi/channel@7", "peer-id", 7);
       },
       "channel peer 7 is out of range"},
      {[](void* f) { set_str(f, "/devices/disk0", "compatible", "mkernel,device-gpu"); },
       "/devices/disk0: 'compatible' is 'mkernel,device-gpu'"},
      {[](void* f) { set_u32(f, "/devices/disk0", "mkernel,fd", 0xfffffff0); }, "'mkernel,fd' is -16"},
      {[](void* f) { set_str(f, "/devices/disk0", "path", std::string(4097, 'p')); }, "'path' is 4097 bytes"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.detail);
    expect_rejected(mutate(full_blob(), c.edit), EINVAL, c.detail);
  }
}

TEST(BootTreeCorrupt, TooManyChildrenOrProperties) {
  Blob many_devs = mutate(full_blob(), [](void* f) {
    for (int i = 0; i < 260; ++i) fdt_add_subnode(f, node(f, "/devices"), ("x" + std::to_string(i)).c_str());
  });
  expect_rejected(many_devs, EINVAL, "/devices: more than 256 child nodes");
  Blob many_props = mutate(full_blob(), [](void* f) {
    for (int i = 0; i < 40; ++i) set_str(f, "/devices/disk0", ("p" + std::to_string(i)).c_str(), "v");
  });
  expect_rejected(many_props, EINVAL, "/devices/disk0: more than 34 properties");
}

TEST(BootTreeCorrupt, MemoryReservationEntries) {
  expect_rejected(mutate(full_blob(), [](void* f) { ASSERT_EQ(fdt_add_mem_rsv(f, 0x1000, 0x1000), 0); }), EINVAL,
                  "1 memory reservation entries");
}

TEST(BootTreeCorrupt, GarbageNeverCrashes) {
  std::mt19937 rng(12345);
  Blob valid = full_blob();
  for (int round = 0; round < 2000; ++round) {
    Blob b;
    if (round % 2) {
      b.resize(rng() % 512);
      for (auto& x : b) x = static_cast<uint8_t>(rng());
    } else {
      // Keep the header, flip random bytes in the body.
      b = valid;
      for (int k = 0; k < 1 + round % 16; ++k) b[40 + rng() % (b.size() - 40)] ^= static_cast<uint8_t>(1u << (rng() % 8));
    }
    auto r = parse_boot_tree(b);
    if (r) {
      // A flip can land in a value and still be valid; then it must re-emit.
      auto again = emit_boot_tree(*r);
      ASSERT_TRUE(again) << again.error().to_string();
      EXPECT_EQ(parse_boot_tree(*again).value(), *r);
    } else {
      int c = r.error().code();
      EXPECT_TRUE(c == EINVAL || c == EBADMSG || c == EPROTONOSUPPORT || c == EIO) << r.error().to_string();
      EXPECT_STRNE(r.error().detail(), "");
    }
  }
}

}  // namespace
}  // namespace mk
