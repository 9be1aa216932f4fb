// BootTree codec: round trips of full, minimal and maximal trees, and every
// rule the writer enforces (validate_boot_tree). Corrupt blobs are in
// boot_tree_corrupt_test.cc, the pinned v1 bytes in boot_tree_golden_test.cc.
#include "mk/boot_tree.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <libfdt.h>

#include <algorithm>
#include <cstring>
#include <functional>

#include "boot_tree_samples.h"
#include "fdt_mutate.h"

namespace mk {
namespace {

using ::testing::HasSubstr;

BootTree round_trip(const BootTree& t) {
  auto blob = emit_boot_tree(t);
  EXPECT_TRUE(blob) << blob.error().to_string();
  if (!blob) return {};
  auto back = parse_boot_tree(*blob);
  EXPECT_TRUE(back) << back.error().to_string();
  return back ? *back : BootTree{};
}

TEST(BootTree, RoundTripsFullTree) {
  BootTree t = samples::full_tree();
  BootTree back = round_trip(t);
  EXPECT_EQ(back, t);
  // Spot-check fields so a broken operator== cannot hide a loss.
  EXPECT_EQ(back.instance.name, "web-frontend.v2");
  EXPECT_EQ(back.init, "/usr/bin/nginx -g 'daemon off;'");
  ASSERT_TRUE(back.handover);
  EXPECT_EQ(back.handover->fd, 9);
  EXPECT_EQ(back.handover->size, 20480u);
  ASSERT_EQ(back.cpus.size(), 13u);
  EXPECT_EQ(back.cpus[8].os_index, 16u);
  EXPECT_EQ(back.cpus[8].numa, 1u);
  EXPECT_EQ(back.cpus[12].kind, -1);
  EXPECT_EQ(back.cpus[12].os_index, 8191u);
  ASSERT_EQ(back.memory.size(), 3u);
  EXPECT_EQ(back.memory[0].size, 2 * kGiB);
  EXPECT_EQ(back.memory[1].flags, abi::kMemoryFlagHugetlb);
  EXPECT_EQ(back.memory[2].index, 0x1au);
  ASSERT_EQ(back.ipi.channels.size(), 3u);
  EXPECT_EQ(back.ipi.channels[1].role, ChannelRole::kTx);
  EXPECT_EQ(back.ipi.channels[2].peer_id, 511u);
  ASSERT_EQ(back.devices.size(), 5u);
  EXPECT_EQ(back.devices[1].fd, -1);
  EXPECT_EQ(back.devices[2].properties.at("ro"), "");
  EXPECT_EQ(back.devices[3].properties.at("port"), "8080");
}

// A live update's successor (optional; added to v1 without a version bump:
// only a host that boots a successor writes it, and the golden v1 bytes
// above do not change).
TEST(BootTree, RoundTripsHandoverSocket) {
  BootTree t = samples::full_tree();
  t.handover_socket = 10;
  BootTree back = round_trip(t);
  EXPECT_EQ(back, t);
  EXPECT_EQ(back.handover_socket, 10);
  EXPECT_FALSE(back.handover_socket_host);
  EXPECT_FALSE(back.parked);
}

// Every image's handover socket (staged updates hand state back to a running
// image), the copy of the host's end a restarted host takes back, and the
// parked flag of a successor.
TEST(BootTree, RoundTripsHandoverSocketHostAndParked) {
  BootTree t = samples::full_tree();
  t.handover_socket = 10;
  t.handover_socket_host = 11;
  t.parked = true;
  BootTree back = round_trip(t);
  EXPECT_EQ(back, t);
  EXPECT_EQ(back.handover_socket_host, 11);
  EXPECT_TRUE(back.parked);
}

TEST(BootTree, RoundTripsMinimalTreeWithEmptyOptionalParts) {
  BootTree t = samples::minimal_tree();
  BootTree back = round_trip(t);
  EXPECT_EQ(back, t);
  EXPECT_FALSE(back.handover);
  EXPECT_FALSE(back.handover_socket);
  EXPECT_TRUE(back.init.empty());
  EXPECT_TRUE(back.bootargs.empty());
  EXPECT_TRUE(back.ipi.channels.empty());
  EXPECT_TRUE(back.devices.empty());
}

TEST(BootTree, RoundTripsLargestTree) {
  // Every limit at once: 8192 CPUs, 256 regions, 511 channels, 256 devices.
  BootTree t;
  t.instance = {511, std::string(63, 'x')};
  t.bootargs = std::string(4096, 'b');
  t.init = std::string(4096, 'i');
  t.handover = HandoverRef{65535, abi::kMaxHandoverBytes};
  for (uint32_t c = 0; c < 8192; ++c)
    t.cpus.push_back(BootCpu{c, c / 2, c / 512, c % 1024, static_cast<int32_t>(c % 65) - 1, 63});
  for (uint32_t m = 0; m < 256; ++m)
    t.memory.push_back(BootMemory{255 - m, (m + 1) * abi::kPageSize, m, static_cast<int32_t>(m), 1});
  t.ipi.host_id = 510;
  for (uint32_t p = 0; p < 511; ++p)
    t.ipi.channels.push_back(IpiChannel{p, "p" + std::to_string(p), 100, 1u << 30, ChannelRole::kRx});
  for (uint32_t d = 0; d < 256; ++d) t.devices.push_back(BootDevice{"d" + std::to_string(d), DeviceKind::kFile, -1, {}});
  t.devices[0].properties = {{std::string(31, 'k'), std::string(4096, 'v')}};
  for (int k = 0; k < 32; ++k) t.devices[1].properties["k" + std::to_string(k)] = "v";
  auto blob = emit_boot_tree(t);
  ASSERT_TRUE(blob) << blob.error().to_string();
  EXPECT_LE(blob->size(), abi::kMaxTreeBytes);
  auto back = parse_boot_tree(*blob);
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(*back, t);
}

TEST(BootTree, EmitIsDeterministicAndCanonical) {
  auto a = emit_boot_tree(samples::full_tree());
  auto b = emit_boot_tree(samples::full_tree());
  ASSERT_TRUE(a && b);
  EXPECT_EQ(*a, *b);
  auto parsed = parse_boot_tree(*a);
  ASSERT_TRUE(parsed);
  auto again = emit_boot_tree(*parsed);
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *a);
}

TEST(BootTree, EmitsTheDocumentedLayout) {
  auto blob = emit_boot_tree(samples::full_tree());
  ASSERT_TRUE(blob);
  std::vector<uint64_t> buf((blob->size() + 7) / 8);
  std::memcpy(buf.data(), blob->data(), blob->size());
  const void* f = buf.data();
  EXPECT_STREQ(static_cast<const char*>(fdt_getprop(f, 0, "compatible", nullptr)), "mkernel,boot-tree-v1");
  int cpu = fdt_path_offset(f, "/cpus/cpu@10");  // OS index 16, hex unit address
  ASSERT_GE(cpu, 0);
  int len = 0;
  const auto* reg = static_cast<const fdt32_t*>(fdt_getprop(f, cpu, "reg", &len));
  ASSERT_EQ(len, 4);
  EXPECT_EQ(fdt32_to_cpu(*reg), 16u);
  int mem = fdt_path_offset(f, "/memory@1");
  ASSERT_GE(mem, 0);
  const auto* size = static_cast<const fdt64_t*>(fdt_getprop(f, mem, "size", &len));
  ASSERT_EQ(len, 8);
  EXPECT_EQ(fdt64_to_cpu(*size), 512 * kMiB);
  EXPECT_GE(fdt_path_offset(f, "/ipi/channel@1ff"), 0);
  int dev = fdt_path_offset(f, "/devices/eth0");
  ASSERT_GE(dev, 0);
  EXPECT_STREQ(static_cast<const char*>(fdt_getprop(f, dev, "compatible", nullptr)), "mkernel,device-net");
  const auto* fd = static_cast<const fdt32_t*>(fdt_getprop(f, dev, "mkernel,fd", &len));
  ASSERT_EQ(len, 4);
  EXPECT_EQ(fdt32_to_cpu(*fd), 0xffffffffu);  // -1 as a two's-complement cell
}

TEST(BootTree, EnumsConvertBothWays) {
  for (DeviceKind k : {DeviceKind::kConsole, DeviceKind::kNet, DeviceKind::kFile, DeviceKind::kListen,
                       DeviceKind::kBlock})
    EXPECT_EQ(parse_device_kind(to_string(k)), k);
  for (ChannelRole r : {ChannelRole::kBidirectional, ChannelRole::kTx, ChannelRole::kRx})
    EXPECT_EQ(parse_channel_role(to_string(r)), r);
  EXPECT_FALSE(parse_device_kind("gpu"));
  EXPECT_FALSE(parse_channel_role("both"));
  EXPECT_EQ(to_string(static_cast<DeviceKind>(99)), "");
}

TEST(BootTree, NameRules) {
  EXPECT_TRUE(is_valid_boot_name("web-1.a_b"));
  EXPECT_TRUE(is_valid_boot_name(std::string(63, 'n')));
  for (const char* bad : {"", "a b", "a/b", "a@1", "a,b", "é"}) EXPECT_FALSE(is_valid_boot_name(bad)) << bad;
  EXPECT_FALSE(is_valid_boot_name(std::string(64, 'n')));
}

// One invalid edit per writer rule: emit refuses it with EINVAL and a detail
// naming the node and property.
struct EmitCase {
  const char* label;
  std::function<void(BootTree&)> edit;
  const char* detail;
};

void PrintTo(const EmitCase& c, std::ostream* os) { *os << c.label; }

class EmitRejects : public ::testing::TestWithParam<EmitCase> {};

TEST_P(EmitRejects, InvalidTree) {
  BootTree t = samples::full_tree();
  GetParam().edit(t);
  auto blob = emit_boot_tree(t);
  ASSERT_FALSE(blob) << GetParam().label;
  EXPECT_EQ(blob.error().code(), EINVAL);
  EXPECT_STREQ(blob.error().what(), "bad boot tree");
  EXPECT_THAT(blob.error().detail(), HasSubstr(GetParam().detail));
  auto v = validate_boot_tree(t);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code(), EINVAL);
}

const EmitCase kEmitCases[] = {
    {"version", [](BootTree& t) { t.version = 2; }, "'version' is 2"},
    {"id 0", [](BootTree& t) { t.instance.id = 0; }, "/chosen: 'mkernel,instance-id' is 0, expected 1..511"},
    {"id 512", [](BootTree& t) { t.instance.id = 512; }, "'mkernel,instance-id' is 512"},
    {"name empty", [](BootTree& t) { t.instance.name = ""; }, "'mkernel,instance-name' '' is not a valid name"},
    {"name chars", [](BootTree& t) { t.instance.name = "a b"; }, "'a b' is not a valid name"},
    {"name long", [](BootTree& t) { t.instance.name = std::string(64, 'a'); }, "is not a valid name"},
    {"bootargs long", [](BootTree& t) { t.bootargs = std::string(4097, 'a'); }, "'bootargs' is 4097 bytes"},
    {"init nul", [](BootTree& t) { t.init = std::string("a\0b", 3); }, "'mkernel,init' contains a NUL"},
    {"handover fd", [](BootTree& t) { t.handover->fd = -1; }, "'mkernel,handover-fd' is -1"},
    {"handover size 0", [](BootTree& t) { t.handover->size = 0; }, "'mkernel,handover-size' is 0"},
    {"handover socket", [](BootTree& t) { t.handover_socket = 65536; }, "'mkernel,handover-socket' is 65536"},
    {"socket host alone", [](BootTree& t) { t.handover_socket_host = 9; },
     "'mkernel,handover-socket-host' without 'mkernel,handover-socket'"},
    {"socket host range", [](BootTree& t) { t.handover_socket = 9; t.handover_socket_host = 65536; },
     "'mkernel,handover-socket-host' is 65536"},
    {"socket host same", [](BootTree& t) { t.handover_socket = 9; t.handover_socket_host = 9; },
     "'mkernel,handover-socket' and 'mkernel,handover-socket-host' are both fd 9"},
    {"parked alone", [](BootTree& t) { t.parked = true; }, "'mkernel,parked' without 'mkernel,handover-socket'"},
    {"handover size big", [](BootTree& t) { t.handover->size = abi::kMaxHandoverBytes + 1; },
     "'mkernel,handover-size' is 67108865"},
    {"no cpus", [](BootTree& t) { t.cpus.clear(); }, "/cpus: no CPUs"},
    {"cpu index", [](BootTree& t) { t.cpus[0].os_index = 8192; }, "CPU 8192 is out of range"},
    {"dup cpu", [](BootTree& t) { t.cpus[1].os_index = 4; }, "/cpus/cpu@4: duplicate CPU 4"},
    {"core", [](BootTree& t) { t.cpus[0].core = 8192; }, "/cpus/cpu@4: 'core' is 8192"},
    {"package", [](BootTree& t) { t.cpus[0].package = 9000; }, "'package' is 9000"},
    {"numa", [](BootTree& t) { t.cpus[0].numa = 1024; }, "'numa-node-id' is 1024, expected < 1024"},
    {"kind low", [](BootTree& t) { t.cpus[0].kind = -2; }, "'mkernel,cpu-kind' is -2, expected -1..63"},
    {"kind high", [](BootTree& t) { t.cpus[0].kind = 64; }, "'mkernel,cpu-kind' is 64"},
    {"efficiency", [](BootTree& t) { t.cpus[0].efficiency = 64; }, "'mkernel,efficiency' is 64"},
    {"no memory", [](BootTree& t) { t.memory.clear(); }, "no memory@N regions"},
    {"mem index", [](BootTree& t) { t.memory[0].index = 256; }, "memory region index 256 is out of range"},
    {"dup mem", [](BootTree& t) { t.memory[1].index = 0; }, "/memory@0: duplicate memory region 0"},
    {"mem size 0", [](BootTree& t) { t.memory[0].size = 0; }, "/memory@0: 'size' is 0"},
    {"mem unaligned", [](BootTree& t) { t.memory[0].size = 4097; }, "'size' is 4097"},
    {"mem huge", [](BootTree& t) { t.memory[0].size = (uint64_t{1} << 62) + 4096; }, "up to 2^62"},
    {"mem numa", [](BootTree& t) { t.memory[0].numa = 5000; }, "/memory@0: 'numa-node-id' is 5000"},
    {"mem fd", [](BootTree& t) { t.memory[0].fd = -1; }, "/memory@0: 'mkernel,fd' is -1, expected 0..65535"},
    {"mem fd big", [](BootTree& t) { t.memory[0].fd = 65536; }, "'mkernel,fd' is 65536"},
    {"mem flags", [](BootTree& t) { t.memory[0].flags = 0x6; }, "unknown bits 0x6"},
    {"host id self", [](BootTree& t) { t.ipi.host_id = 7; }, "/ipi: 'mkernel,host-id' is 7"},
    {"host id big", [](BootTree& t) { t.ipi.host_id = 512; }, "'mkernel,host-id' is 512"},
    {"peer self", [](BootTree& t) { t.ipi.channels[0].peer_id = 7; }, "channel peer 7 is out of range"},
    {"peer big", [](BootTree& t) { t.ipi.channels[0].peer_id = 512; }, "channel peer 512"},
    {"dup peer", [](BootTree& t) { t.ipi.channels[1].peer_id = 0; }, "/ipi/channel@0: duplicate channel"},
    {"peer name", [](BootTree& t) { t.ipi.channels[0].peer_name = "h st"; }, "'peer-name' 'h st'"},
    {"chan fd", [](BootTree& t) { t.ipi.channels[0].fd = -3; }, "/ipi/channel@0: 'mkernel,fd' is -3"},
    {"ring small", [](BootTree& t) { t.ipi.channels[0].ring_size = 0; }, "'ring-size' is 0"},
    {"ring align", [](BootTree& t) { t.ipi.channels[0].ring_size = 100; }, "'ring-size' is 100"},
    {"ring big", [](BootTree& t) { t.ipi.channels[0].ring_size = (1u << 30) + 64; }, "'ring-size' is"},
    {"role", [](BootTree& t) { t.ipi.channels[0].role = static_cast<ChannelRole>(9); }, "'mkernel,role'"},
    {"side 2", [](BootTree& t) { t.ipi.channels[1].side = 2; },
     "/ipi/channel@3: 'mkernel,side' is 2, expected 0 (a) or 1 (b)"},
    {"side a on host channel", [](BootTree& t) { t.ipi.channels[0].side = 0; },
     "/ipi/channel@0: the host channel's side is the host's to create"},
    {"too many channels",
     [](BootTree& t) {
       t.ipi.channels.assign(512, t.ipi.channels[0]);
     },
     "512 channels, at most 511"},
    {"dev name", [](BootTree& t) { t.devices[0].name = "con sole"; }, "device name 'con sole'"},
    {"dup dev", [](BootTree& t) { t.devices[1].name = "console"; }, "/devices/console: duplicate"},
    {"dev kind", [](BootTree& t) { t.devices[0].kind = static_cast<DeviceKind>(7); }, "unknown device kind 7"},
    {"dev fd", [](BootTree& t) { t.devices[0].fd = -2; }, "/devices/console: 'mkernel,fd' is -2"},
    {"dev key", [](BootTree& t) { t.devices[0].properties["compatible"] = "x"; }, "'compatible' is not allowed"},
    {"dev key chars", [](BootTree& t) { t.devices[0].properties["a,b"] = "x"; }, "'a,b' is not allowed"},
    {"dev key long", [](BootTree& t) { t.devices[0].properties[std::string(32, 'k')] = "x"; }, "is not allowed"},
    {"dev value nul", [](BootTree& t) { t.devices[0].properties["k"] = std::string("\0", 1); }, "holds a NUL"},
    {"dev value long", [](BootTree& t) { t.devices[0].properties["k"] = std::string(4097, 'v'); }, "4097 bytes"},
    {"dev props",
     [](BootTree& t) {
       for (int i = 0; i < 33; ++i) t.devices[0].properties["k" + std::to_string(i)] = "";
     },
     "33 properties, at most 32"},
    {"too many devices",
     [](BootTree& t) {
       t.devices.clear();
       for (int i = 0; i < 257; ++i) t.devices.push_back({"d" + std::to_string(i), DeviceKind::kFile, -1, {}});
     },
     "257 devices, at most 256"},
};

INSTANTIATE_TEST_SUITE_P(Rules, EmitRejects, ::testing::ValuesIn(kEmitCases),
                         [](const auto& info) {
                           std::string n = info.param.label;
                           for (char& c : n)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

TEST(BootTree, EmitRefusesTreesAboveTheCap) {
  BootTree t = samples::full_tree();
  t.devices.clear();
  for (int d = 0; d < 256; ++d) {
    BootDevice dev{"d" + std::to_string(d), DeviceKind::kFile, -1, {}};
    for (int k = 0; k < 32; ++k) dev.properties["k" + std::to_string(k)] = std::string(4096, 'v');
    t.devices.push_back(dev);
  }
  auto blob = emit_boot_tree(t);
  ASSERT_FALSE(blob);
  EXPECT_EQ(blob.error().code(), E2BIG);
  EXPECT_THAT(blob.error().detail(), HasSubstr("2097152-byte limit"));
}


// ---- mkernel,side (channels between instances) ----

bool blob_mentions(const std::vector<uint8_t>& blob, const std::string& s) {
  return std::search(blob.begin(), blob.end(), s.begin(), s.end()) != blob.end();
}

TEST(BootTreeSide, SideARoundTripsAndIsEmittedAsA) {
  BootTree t = samples::full_tree();
  t.ipi.channels[1].side = 0;  // db: this instance takes over side A
  auto blob = emit_boot_tree(t);
  ASSERT_TRUE(blob) << blob.error().to_string();
  EXPECT_TRUE(blob_mentions(*blob, "mkernel,side"));
  std::vector<uint64_t> buf((blob->size() + 7) / 8);
  std::memcpy(buf.data(), blob->data(), blob->size());
  int len = 0;
  const void* v = fdt_getprop(buf.data(), fdt_path_offset(buf.data(), "/ipi/channel@3"), "mkernel,side", &len);
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(std::string(static_cast<const char*>(v), static_cast<std::size_t>(len)), std::string("a\0", 2));
  // Only the side-A channel carries the property.
  EXPECT_EQ(fdt_getprop(buf.data(), fdt_path_offset(buf.data(), "/ipi/channel@0"), "mkernel,side", &len), nullptr);
  EXPECT_EQ(fdt_getprop(buf.data(), fdt_path_offset(buf.data(), "/ipi/channel@1ff"), "mkernel,side", &len), nullptr);

  auto back = parse_boot_tree(*blob);
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(*back, t);
  EXPECT_EQ(back->ipi.channels[0].side, 1);
  EXPECT_EQ(back->ipi.channels[1].side, 0);
  EXPECT_EQ(back->ipi.channels[2].side, 1);
}

TEST(BootTreeSide, SideBIsTheDefaultAndEmitsNothing) {
  BootTree t = samples::full_tree();
  for (const auto& c : t.ipi.channels) ASSERT_EQ(c.side, 1);  // the struct's default
  auto blob = emit_boot_tree(t);
  ASSERT_TRUE(blob) << blob.error().to_string();
  EXPECT_FALSE(blob_mentions(*blob, "mkernel,side"));
  auto back = parse_boot_tree(*blob);
  ASSERT_TRUE(back) << back.error().to_string();
  for (const auto& c : back->ipi.channels) EXPECT_EQ(c.side, 1) << c.peer_name;
  EXPECT_EQ(*back, t);
}

TEST(BootTreeSide, SideAIsAllowedOnAPeerChannelEvenWithAnotherHostId) {
  // The host channel is the one to ipi.host_id, not necessarily peer 0.
  BootTree t = samples::full_tree();
  t.ipi.host_id = 3;
  t.ipi.channels[0].side = 0;  // peer 0 is an ordinary instance here
  EXPECT_TRUE(validate_boot_tree(t)) << validate_boot_tree(t).error().to_string();
  EXPECT_EQ(round_trip(t), t);
  t.ipi.channels[1].side = 0;  // peer 3 is now the host
  auto v = validate_boot_tree(t);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code(), EINVAL);
  EXPECT_THAT(v.error().detail(), HasSubstr("/ipi/channel@3: the host channel's side is the host's to create"));
}

void expect_parse_refused(const std::vector<uint8_t>& blob, const std::string& detail) {
  auto r = parse_boot_tree(blob);
  ASSERT_FALSE(r) << "accepted; expected: " << detail;
  EXPECT_EQ(r.error().code(), EINVAL) << r.error().to_string();
  EXPECT_STREQ(r.error().what(), "bad boot tree");
  EXPECT_THAT(r.error().detail(), HasSubstr(detail));
}

TEST(BootTreeSide, ParserChecksTheProperty) {
  auto blob = emit_boot_tree(samples::full_tree());
  ASSERT_TRUE(blob);
  using namespace mk::testing;
  expect_parse_refused(mutate(*blob, [](void* f) { set_str(f, "/ipi/channel@3", "mkernel,side", "x"); }),
                       "/ipi/channel@3: 'mkernel,side' is 'x', expected a or b");
  expect_parse_refused(mutate(*blob, [](void* f) { set_str(f, "/ipi/channel@3", "mkernel,side", ""); }),
                       "'mkernel,side' is '', expected a or b");
  expect_parse_refused(mutate(*blob, [](void* f) { set_str(f, "/ipi/channel@3", "mkernel,side", "ab"); }),
                       "'mkernel,side' is 'ab', expected a or b");
  // A parsed tree is validated like an emitted one: never side a towards the host.
  expect_parse_refused(mutate(*blob, [](void* f) { set_str(f, "/ipi/channel@0", "mkernel,side", "a"); }),
                       "/ipi/channel@0: the host channel's side is the host's to create");
  // Not a string at all.
  auto not_string = parse_boot_tree(mutate(*blob, [](void* f) { set_u32(f, "/ipi/channel@3", "mkernel,side", 0); }));
  ASSERT_FALSE(not_string);
  EXPECT_THAT(not_string.error().detail(), HasSubstr("mkernel,side"));

  // An explicit "b" is the default spelled out; "a" is side 0.
  auto b = parse_boot_tree(mutate(*blob, [](void* f) { set_str(f, "/ipi/channel@3", "mkernel,side", "b"); }));
  ASSERT_TRUE(b) << b.error().to_string();
  EXPECT_EQ(*b, samples::full_tree());
  auto a = parse_boot_tree(mutate(*blob, [](void* f) { set_str(f, "/ipi/channel@1ff", "mkernel,side", "a"); }));
  ASSERT_TRUE(a) << a.error().to_string();
  EXPECT_EQ(a->ipi.channels[2].side, 0);
  EXPECT_EQ(a->ipi.channels[1].side, 1);
}
}  // namespace
}  // namespace mk
