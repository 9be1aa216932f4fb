// KHO blob codec: round trips, the pinned v1 bytes, every rule emit enforces,
// every corruption class parse refuses (crafted with libfdt's fdt_sw so that
// the blobs are well-formed FDTs that break only the KHO schema), and
// find_compatible's version check.
//
// Golden bytes and fuzz seeds are regenerated (only when a schema change is
// intended, with a version bump) by:
//   MK_UPDATE_GOLDEN=1 ./handover_test --gtest_filter='KhoGolden*'
#include <gtest/gtest.h>
#include <libfdt.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

#include "handover/kho_blob.h"

namespace mk::handover {
namespace {

using Blob = std::vector<uint8_t>;

KhoBlob sample() {
  KhoBlob b;
  b.memory = {{0, 0, 0x2000}, {0, 0x4000, 0x1000}, {3, 0x100000, 0x10000}};
  Subsystem files{"files", "mkernel,files-v1", {KhoProperty::u32("count", 1)}, {}};
  files.children.push_back(KhoNode{"fd@1",
                                   {KhoProperty::u64("token", 1), KhoProperty::string("type", "memfd"),
                                    KhoProperty::u32("flags", 2)},
                                   {}});
  Subsystem kv{"kv", "app,kv-v3", {}, {}};
  uint8_t raw[] = {0, 1, 2, 0xff, 0};
  kv.properties.push_back(KhoProperty::bytes("root", raw));
  kv.children.push_back(KhoNode{"shard@0", {}, {KhoNode{"meta", {KhoProperty::string("x", "")}, {}}}});
  b.subsystems = {files, kv, Subsystem{"tenants", "mkernel,tenants-v1", {}, {}}};
  return b;
}

Blob emit_ok(const KhoBlob& b) {
  auto r = emit_kho_blob(b);
  EXPECT_TRUE(r) << r.error().to_string();
  return r ? *r : Blob{};
}

void expect_parse_error(const Blob& blob, int code, const char* needle) {
  auto r = parse_kho_blob(blob);
  ASSERT_FALSE(r) << "parsed a corrupt blob";
  EXPECT_EQ(r.error().code(), code) << r.error().to_string();
  EXPECT_NE(std::string(r.error().message()).find(needle), std::string::npos)
      << "detail '" << r.error().message() << "' does not mention '" << needle << "'";
}

void expect_emit_error(const KhoBlob& b, int code, const char* needle) {
  auto r = emit_kho_blob(b);
  ASSERT_FALSE(r) << "emitted an invalid blob";
  EXPECT_EQ(r.error().code(), code) << r.error().to_string();
  EXPECT_NE(std::string(r.error().message()).find(needle), std::string::npos) << r.error().message();
}

// A raw FDT writer for crafting blobs emit would refuse.
class Raw {
 public:
  Raw() : buf_(1 << 20) {
    fdt_create(buf_.data(), static_cast<int>(buf_.size()));
    fdt_finish_reservemap(buf_.data());
    fdt_begin_node(buf_.data(), "");
  }
  Raw& str(const char* name, const char* v) {
    fdt_property_string(buf_.data(), name, v);
    return *this;
  }
  Raw& bytes(const char* name, const Blob& v) {
    fdt_property(buf_.data(), name, v.data(), static_cast<int>(v.size()));
    return *this;
  }
  Raw& map(std::initializer_list<std::array<uint64_t, 4>> ranges) {
    Blob v;
    for (auto& r : ranges) {
      for (int i = 3; i >= 0; --i) v.push_back(static_cast<uint8_t>(r[0] >> (8 * i)));
      for (int i = 3; i >= 0; --i) v.push_back(static_cast<uint8_t>(r[3] >> (8 * i)));
      for (int i = 7; i >= 0; --i) v.push_back(static_cast<uint8_t>(r[1] >> (8 * i)));
      for (int i = 7; i >= 0; --i) v.push_back(static_cast<uint8_t>(r[2] >> (8 * i)));
    }
    return bytes(kMemoryMapProperty, v);
  }
  Raw& root() { return str("compatible", "kho-v1").map({}); }
  Raw& begin(const char* name) {
    fdt_begin_node(buf_.data(), name);
    return *this;
  }
  Raw& end() {
    fdt_end_node(buf_.data());
    return *this;
  }
  Blob finish() {
    fdt_end_node(buf_.data());
    EXPECT_EQ(fdt_finish(buf_.data()), 0);
    return Blob(buf_.begin(), buf_.begin() + fdt_totalsize(buf_.data()));
  }

 private:
  std::vector<uint8_t> buf_;
};

// ---- round trips ---------------------------------------------------------------

TEST(KhoBlob, EmptyBlobRoundTrips) {
  Blob bytes = emit_ok(KhoBlob{});
  auto back = parse_kho_blob(bytes);
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(*back, KhoBlob{});
}

TEST(KhoBlob, SampleRoundTripsAndIsCanonical) {
  KhoBlob b = sample();
  Blob bytes = emit_ok(b);
  auto back = parse_kho_blob(bytes);
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(*back, b);
  EXPECT_EQ(emit_ok(*back), bytes);
}

TEST(KhoBlob, ManySubsystemsAndBinaryProperties) {
  KhoBlob b;
  for (std::size_t i = 0; i < kMaxSubsystems; ++i) {
    Subsystem s{"app" + std::to_string(i), "vendor,app" + std::to_string(i) + "-v" + std::to_string(i + 1),
                {}, {}};
    Blob raw(i * 37);
    for (std::size_t j = 0; j < raw.size(); ++j) raw[j] = static_cast<uint8_t>(j * 7 + i);
    s.properties.push_back(KhoProperty::bytes("data", raw));
    s.properties.push_back(KhoProperty::u64("big", ~uint64_t{0} - i));
    KhoNode chain{"n0", {}, {}};
    b.subsystems.push_back(std::move(s));
  }
  // A chain as deep as allowed in the last subsystem.
  KhoNode* at = nullptr;
  b.subsystems.back().children.push_back(KhoNode{"d1", {}, {}});
  at = &b.subsystems.back().children.back();
  for (std::size_t d = 2; d < kMaxDepth; ++d) {
    at->children.push_back(KhoNode{"d" + std::to_string(d), {KhoProperty::u32("depth", uint32_t(d))}, {}});
    at = &at->children.back();
  }
  for (uint32_t i = 0; i < 100; ++i) b.memory.push_back({i / 10, (i % 10) * 2 * kPageSize, kPageSize});
  auto back = parse_kho_blob(emit_ok(b));
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(*back, b);
}

TEST(KhoBlob, TypedPropertyAccessors) {
  EXPECT_EQ(*KhoProperty::u32("a", 0xdeadbeef).as_u32(), 0xdeadbeefu);
  EXPECT_EQ(KhoProperty::u32("a", 1).value, (Blob{0, 0, 0, 1}));
  EXPECT_EQ(*KhoProperty::u64("a", 0x0102030405060708).as_u64(), 0x0102030405060708u);
  EXPECT_EQ(*KhoProperty::string("a", "hi").as_string(), "hi");
  EXPECT_EQ(KhoProperty::u64("a", 1).as_u32().error().code(), EINVAL);
  EXPECT_EQ(KhoProperty::u32("a", 1).as_u64().error().code(), EINVAL);
  EXPECT_EQ(KhoProperty::bytes("a", Blob{'a', 0, 'b', 0}).as_string().error().code(), EINVAL);
  EXPECT_EQ(KhoProperty::bytes("a", Blob{'a'}).as_string().error().code(), EINVAL);
}

// ---- golden --------------------------------------------------------------------

std::string golden_path(const char* name) { return std::string(MK_GOLDEN_DIR) + "/" + name; }

Blob read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Blob(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const Blob& b) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

TEST(KhoGolden, V1BytesArePinned) {
  Blob emitted = emit_ok(sample());
  std::string path = golden_path("kho_v1.dtb");
  if (std::getenv("MK_UPDATE_GOLDEN")) {
    write_file(path, emitted);
    // Fuzz seeds: the sample, the empty blob, and one with a newer subtree.
    std::string seeds = MK_FUZZ_SEED_DIR;
    write_file(seeds + "/sample.dtb", emitted);
    write_file(seeds + "/empty.dtb", emit_ok(KhoBlob{}));
    KhoBlob one;
    one.memory = {{1, 0x1000, 0x3000}};
    one.subsystems = {Subsystem{"memory", "mkernel,memory-v2", {KhoProperty::u64("size", 1 << 20)}, {}}};
    write_file(seeds + "/memory.dtb", emit_ok(one));
  }
  Blob golden = read_file(path);
  ASSERT_FALSE(golden.empty()) << "missing golden file " << path;
  EXPECT_EQ(emitted, golden) << "the writer no longer produces the pinned kho-v1 bytes";
  auto back = parse_kho_blob(golden);
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(*back, sample());
}

// ---- emit refuses what parse would refuse --------------------------------------

TEST(KhoEmit, RefusesInvalidBlobs) {
  KhoBlob b = sample();
  b.memory = {{0, 0x1000, 0x1001}};
  expect_emit_error(b, EINVAL, "aligned");
  b.memory = {{0, 0x1001, 0x1000}};
  expect_emit_error(b, EINVAL, "aligned");
  b.memory = {{0, 0x1000, 0}};
  expect_emit_error(b, EINVAL, "empty");
  b.memory = {{0, 0, 0x2000}, {0, 0x1000, 0x1000}};
  expect_emit_error(b, EINVAL, "overlaps");
  b.memory = {{1, 0, 0x1000}, {0, 0, 0x1000}};
  expect_emit_error(b, EINVAL, "sorted");
  b.memory = {{0, ~uint64_t{0} - 0xfff, 0x2000}};
  expect_emit_error(b, EINVAL, "wraps");
  b.memory = {{0, 0, 0x1000}, {1, 0, 0x1000}};  // same offsets, other region: fine
  EXPECT_TRUE(emit_kho_blob(b));

  b = sample();
  b.subsystems.push_back(b.subsystems[0]);
  expect_emit_error(b, EINVAL, "duplicate subsystem 'files'");
  b = sample();
  b.subsystems[0].name = "bad/name";
  expect_emit_error(b, EINVAL, "bad subsystem name");
  for (const char* c : {"files-v1", "mkernel,files", "mkernel,files-v0", "mkernel,files-v01",
                        "mkernel,files-vx", "Mkernel,files-v1", "mkernel,-v1", ",files-v1",
                        "mkernel,files-v1234567"}) {
    b = sample();
    b.subsystems[0].compatible = c;
    expect_emit_error(b, EINVAL, "compatible");
  }
  b = sample();
  b.subsystems[0].properties.push_back(KhoProperty::u32("compatible", 1));
  expect_emit_error(b, EINVAL, "bad property name 'compatible'");
  b = sample();
  b.subsystems[0].properties.push_back(KhoProperty::u32("count", 2));
  expect_emit_error(b, EINVAL, "duplicate property 'count'");
  b = sample();
  b.subsystems[0].children.push_back(b.subsystems[0].children[0]);
  expect_emit_error(b, EINVAL, "/files: duplicate node 'fd@1'");
  b = sample();
  b.subsystems[0].children[0].name = "fd@";
  expect_emit_error(b, EINVAL, "bad node name");
}

TEST(KhoEmit, RefusesCapsAndOversize) {
  KhoBlob b;
  for (std::size_t i = 0; i <= kMaxSubsystems; ++i) b.subsystems.push_back({"s" + std::to_string(i), "a,b-v1", {}, {}});
  expect_emit_error(b, EINVAL, "subsystems");

  b = KhoBlob{};
  b.subsystems.push_back({"s", "a,b-v1", {}, {}});
  for (std::size_t i = 0; i <= kMaxProperties; ++i) b.subsystems[0].properties.push_back(KhoProperty::u32("p" + std::to_string(i), 0));
  expect_emit_error(b, EINVAL, "properties");

  b.subsystems[0].properties.clear();
  KhoNode* at = nullptr;
  b.subsystems[0].children.push_back(KhoNode{"d", {}, {}});
  at = &b.subsystems[0].children[0];
  for (std::size_t d = 1; d < kMaxDepth; ++d) {
    at->children.push_back(KhoNode{"d", {}, {}});
    at = &at->children[0];
  }
  expect_emit_error(b, EINVAL, "depth");

  b = KhoBlob{};
  b.subsystems.push_back({"s", "a,b-v1", {KhoProperty::bytes("big", Blob(kMaxBlobBytes))}, {}});
  expect_emit_error(b, E2BIG, "limit");
}

// ---- parse refuses every corruption class --------------------------------------

TEST(KhoParse, RefusesNonFdt) {
  Blob good = emit_ok(sample());
  expect_parse_error(Blob{}, EBADMSG, "shorter than an FDT header");
  expect_parse_error(Blob(good.begin(), good.begin() + 20), EBADMSG, "shorter");
  expect_parse_error(Blob(good.begin(), good.end() - 1), EBADMSG, "totalsize");
  Blob longer = good;
  longer.push_back(0);
  expect_parse_error(longer, EBADMSG, "header says");
  Blob magic = good;
  magic[0] ^= 0xff;
  expect_parse_error(magic, EBADMSG, "magic");
  Blob total = good;
  total[7] += 8;  // totalsize (big-endian at offset 4) grows
  expect_parse_error(total, EBADMSG, "totalsize");
  Blob version = good;
  version[23] = 16;  // version (offset 20)
  expect_parse_error(version, EPROTONOSUPPORT, "FDT format version");
  expect_parse_error(Blob(kMaxBlobBytes + 1), E2BIG, "limit");
}

TEST(KhoParse, SurvivesEveryTruncationAndByteFlip) {
  Blob good = emit_ok(sample());
  for (std::size_t n = 0; n < good.size(); ++n) {
    auto r = parse_kho_blob(std::span<const uint8_t>(good.data(), n));
    EXPECT_FALSE(r) << "truncated to " << n;
  }
  for (std::size_t i = 0; i < good.size(); ++i) {
    for (uint8_t x : {0x01, 0x80, 0xff}) {
      Blob bad = good;
      bad[i] ^= x;
      auto r = parse_kho_blob(bad);
      if (r) {
        auto again = emit_kho_blob(*r);
        EXPECT_TRUE(again) << "byte " << i;
      } else {
        EXPECT_NE(r.error().detail()[0], '\0');
      }
    }
  }
}

TEST(KhoParse, RefusesRootSchemaViolations) {
  expect_parse_error(Raw().str("compatible", "kho-v2").map({}).finish(), EPROTONOSUPPORT, "kho-v2");
  expect_parse_error(Raw().str("compatible", "luo-v1").map({}).finish(), EPROTONOSUPPORT, "expected 'kho-v1'");
  expect_parse_error(Raw().map({}).finish(), EINVAL, "missing required property 'compatible'");
  expect_parse_error(Raw().str("compatible", "kho-v1").finish(), EINVAL, "preserved-memory-map");
  expect_parse_error(Raw().bytes("compatible", Blob{'k', 'h', 'o'}).map({}).finish(), EINVAL,
                     "NUL-terminated");
  expect_parse_error(Raw().root().str("extra", "x").finish(), EINVAL, "more than 2 properties");
  expect_parse_error(Raw().str("compatible", "kho-v1").str("extra", "x").finish(), EINVAL,
                     "unknown property 'extra'");
}

TEST(KhoParse, RefusesBadMemoryMaps) {
  auto with = [](std::initializer_list<std::array<uint64_t, 4>> m) {
    return Raw().str("compatible", "kho-v1").map(m).finish();
  };
  expect_parse_error(with({{0, 0, 0x2000, 0}, {0, 0x1000, 0x1000, 0}}), EINVAL, "overlaps");
  expect_parse_error(with({{0, 0x800, 0x1000, 0}}), EINVAL, "aligned");
  expect_parse_error(with({{0, 0, 0x1800, 0}}), EINVAL, "aligned");
  expect_parse_error(with({{0, 0, 0, 0}}), EINVAL, "empty");
  expect_parse_error(with({{2, 0, 0x1000, 0}, {1, 0, 0x1000, 0}}), EINVAL, "sorted");
  expect_parse_error(with({{0, 0, 0x1000, 7}}), EINVAL, "reserved");
  expect_parse_error(Raw().str("compatible", "kho-v1").bytes(kMemoryMapProperty, Blob(23)).finish(), EINVAL,
                     "multiple of 24");
  auto ok = parse_kho_blob(with({{0, 0, 0x1000, 0}, {0, 0x1000, 0x1000, 0}}));  // adjacent is fine
  ASSERT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ(ok->memory.size(), 2u);
}

TEST(KhoParse, RefusesBadSubsystems) {
  expect_parse_error(Raw().root().begin("files").str("compatible", "mkernel,files-v1").end()
                         .begin("files").str("compatible", "mkernel,files-v1").end().finish(),
                     EINVAL, "/: duplicate node 'files'");
  expect_parse_error(Raw().root().begin("files").end().finish(), EINVAL,
                     "/files: missing required property 'compatible'");
  for (const char* c : {"mkernel,files-v", "mkernel,files-vX", "mkernel,files", "kho-v1", "mkernel,files-v0"}) {
    expect_parse_error(Raw().root().begin("files").str("compatible", c).end().finish(), EINVAL,
                       "is not '<vendor>,<schema>-v<N>'");
  }
  expect_parse_error(Raw().root().begin("files").str("compatible", "a,b-v1").str("compatible", "a,b-v1").end().finish(),
                     EINVAL, "duplicate property 'compatible'");
  expect_parse_error(Raw().root().begin("files").str("compatible", "a,b-v1").str("x", "1").str("x", "2").end().finish(),
                     EINVAL, "duplicate property 'x'");
  expect_parse_error(Raw().root().begin("f").str("compatible", "a,b-v1").begin("n").str("name", "x").end().end().finish(),
                     EINVAL, "/f/n: bad property name 'name'");
  expect_parse_error(Raw().root().begin("f").str("compatible", "a,b-v1").begin("n@").end().end().finish(),
                     EINVAL, "/f: bad node name 'n@'");
  expect_parse_error(Raw().root().begin("f").str("compatible", "a,b-v1").begin("n").end().begin("n").end().end().finish(),
                     EINVAL, "/f: duplicate node 'n'");
}

TEST(KhoParse, RefusesTooDeepTooManyTooMuch) {
  Raw deep;
  deep.root().begin("f").str("compatible", "a,b-v1");
  for (int i = 0; i < 200; ++i) deep.begin("d");
  for (int i = 0; i < 200; ++i) deep.end();
  deep.end();
  expect_parse_error(deep.finish(), EINVAL, "depth");

  Raw props;
  props.root().begin("f").str("compatible", "a,b-v1");
  for (std::size_t i = 0; i <= kMaxProperties; ++i) props.str(("p" + std::to_string(i)).c_str(), "");
  props.end();
  expect_parse_error(props.finish(), EINVAL, "/f: more than");

  Raw kids;
  kids.root().begin("f").str("compatible", "a,b-v1");
  for (std::size_t i = 0; i <= kMaxChildren; ++i) kids.begin(("c" + std::to_string(i)).c_str()).end();
  kids.end();
  expect_parse_error(kids.finish(), EINVAL, "/f: more than 1024 child nodes");

  Raw subs;
  subs.root();
  for (std::size_t i = 0; i <= kMaxSubsystems; ++i) subs.begin(("s" + std::to_string(i)).c_str()).str("compatible", "a,b-v1").end();
  expect_parse_error(subs.finish(), EINVAL, "/: more than 64 child nodes");
}

// ---- compatibility ---------------------------------------------------------------

TEST(KhoCompat, FindCompatibleChecksPrefixAndVersion) {
  KhoBlob b = sample();
  auto files = find_compatible(b, "files", "mkernel,files-v", 1);
  ASSERT_TRUE(files) << files.error().to_string();
  EXPECT_EQ((*files)->name, "files");
  EXPECT_TRUE(find_compatible(b, "kv", "app,kv-v", 3));
  EXPECT_TRUE(find_compatible(b, "kv", "app,kv-v", 7));

  auto newer = find_compatible(b, "kv", "app,kv-v", 2);
  ASSERT_FALSE(newer);
  EXPECT_EQ(newer.error().code(), EPROTONOSUPPORT);
  EXPECT_NE(std::string(newer.error().message()).find("version 3"), std::string::npos);
  EXPECT_EQ(find_compatible(b, "files", "mkernel,memory-v", 9).error().code(), EPROTONOSUPPORT);
  EXPECT_EQ(find_compatible(b, "files", "mkernel,file-v", 9).error().code(), EPROTONOSUPPORT);
  EXPECT_EQ(find_compatible(b, "nope", "mkernel,files-v", 1).error().code(), ENOENT);
  EXPECT_EQ(find_compatible(b, "files", "mkernel,files", 1).error().code(), EINVAL);
  EXPECT_EQ(find_compatible(b, "files", "mkernel,files-v", 0).error().code(), EINVAL);
  EXPECT_EQ(compatible_version("mkernel,files-v12"), 12u);
  EXPECT_EQ(compatible_version("a,b-c-v999999"), 999999u);
  EXPECT_EQ(compatible_version("a,b-v1000000"), 0u);
}

}  // namespace
}  // namespace mk::handover
