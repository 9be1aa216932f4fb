// topology_to_json / topology_to_text: the fields `mkctl topology --json`
// promises (issue #2: Raptor Lake = 20 PUs, 14 cores, 2 kinds, efficiency
// kind = PUs 12-19), kind infos, memory-side nodes, devices, and a table that
// stays short on a 384-PU machine. Expected figures are the ones
// tests/mkernel/topology_test.cc derives from the files with hwloc's tools.
#include "topology_json.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

namespace mk::tools {
namespace {

namespace json = boost::json;

Topology load(const std::string& name) {
  auto t = load_topology_xml(std::string(MK_TEST_DATA) + "/topologies/" + name);
  EXPECT_TRUE(t) << name << ": " << (t ? "" : t.error().to_string());
  return t ? std::move(t).value() : Topology{};
}

// Round-trip through text so the test sees what a script would parse.
json::object as_printed(const Topology& t) {
  return json::parse(json::serialize(topology_to_json(t))).as_object();
}

TEST(TopologyJson, RaptorLakeFields) {
  Topology t = load("Intel-RaptorLake-Corei7-1370P.xml");
  json::object o = as_printed(t);

  EXPECT_EQ(o.at("source").as_string(), t.source);
  EXPECT_FALSE(o.at("is_live").as_bool());
  EXPECT_EQ(o.at("machine_model").as_string(), "13th Gen Intel(R) Core(TM) i7-1370P");

  const json::object& s = o.at("summary").as_object();
  EXPECT_EQ(s.at("pus").to_number<int>(), 20);
  EXPECT_EQ(s.at("cores").to_number<int>(), 14);
  EXPECT_EQ(s.at("numa_nodes").to_number<int>(), 1);
  EXPECT_EQ(s.at("packages").to_number<int>(), 1);
  EXPECT_EQ(s.at("kinds").to_number<int>(), 2);
  EXPECT_EQ(s.at("l3_groups").to_number<int>(), 1);
  EXPECT_EQ(s.at("memory_bytes").to_number<int>(), 0);  // the file has no sizes

  const json::array& kinds = o.at("kinds").as_array();
  ASSERT_EQ(kinds.size(), 2u);
  EXPECT_EQ(kinds[0].at("index").to_number<int>(), 0);
  EXPECT_EQ(kinds[0].at("efficiency").to_number<int>(), 0);
  EXPECT_EQ(kinds[0].at("pus").as_string(), "12-19");
  EXPECT_EQ(kinds[0].at("core_type").as_string(), "IntelAtom");
  EXPECT_EQ(kinds[0].at("frequency_max_mhz").to_number<int>(), 0);
  EXPECT_EQ(kinds[0].at("infos").at("CoreType").as_string(), "IntelAtom");
  EXPECT_EQ(kinds[1].at("pus").as_string(), "0-11");
  EXPECT_EQ(kinds[1].at("core_type").as_string(), "IntelCore");
  EXPECT_EQ(kinds[1].at("efficiency").to_number<int>(), 1);

  const json::array& pus = o.at("pus").as_array();
  ASSERT_EQ(pus.size(), 20u);
  for (std::size_t i = 0; i < pus.size(); ++i) {
    const json::object& p = pus[i].as_object();
    EXPECT_EQ(p.at("os_index").to_number<std::size_t>(), i);
    EXPECT_EQ(p.at("kind").to_number<int>(), i < 12 ? 1 : 0) << "pu " << i;
    EXPECT_EQ(p.at("package").to_number<int>(), 0);
    EXPECT_EQ(p.at("numa").to_number<int>(), 0);
    EXPECT_EQ(p.at("l3").to_number<int>(), 0);
  }
  // P-cores 0-5 hold two PUs each, so PU 12 (the first E-core) is core 6.
  EXPECT_EQ(pus[12].at("core").to_number<int>(), 6);
  EXPECT_EQ(pus[11].at("core").to_number<int>(), 5);

  const json::array& cores = o.at("cores").as_array();
  ASSERT_EQ(cores.size(), 14u);
  EXPECT_EQ(cores[0].at("index").to_number<int>(), 0);
  EXPECT_EQ(cores[0].at("pus").as_string(), "0-1");
  EXPECT_EQ(cores[6].at("pus").as_string(), "12");
  EXPECT_EQ(cores[13].at("pus").as_string(), "19");
  EXPECT_EQ(cores[13].at("package").to_number<int>(), 0);
  EXPECT_EQ(cores[13].at("numa").to_number<int>(), 0);
  EXPECT_TRUE(cores[13].as_object().contains("os_index"));

  const json::array& nodes = o.at("numa_nodes").as_array();
  ASSERT_EQ(nodes.size(), 1u);
  EXPECT_EQ(nodes[0].at("os_index").to_number<int>(), 0);
  EXPECT_EQ(nodes[0].at("memory_bytes").to_number<int>(), 0);
  EXPECT_EQ(nodes[0].at("subtype").as_string(), "");
  EXPECT_EQ(nodes[0].at("pus").as_string(), "0-19");

  const json::array& packages = o.at("packages").as_array();
  ASSERT_EQ(packages.size(), 1u);
  EXPECT_EQ(packages[0].at("pus").as_string(), "0-19");
  const json::array& l3 = o.at("l3_groups").as_array();
  ASSERT_EQ(l3.size(), 1u);
  EXPECT_EQ(l3[0].at("size_bytes").to_number<uint64_t>(), 24u << 20);
  EXPECT_TRUE(o.at("devices").as_array().empty());
}

TEST(TopologyJson, KindInfosAndFrequency) {
  json::object o = as_printed(load("fakecpukinds.xml"));
  const json::array& kinds = o.at("kinds").as_array();
  ASSERT_EQ(kinds.size(), 3u);
  EXPECT_EQ(kinds[0].at("frequency_max_mhz").to_number<int>(), 1000);
  EXPECT_EQ(kinds[2].at("efficiency").to_number<int>(), 2);
  EXPECT_EQ(kinds[2].at("infos").at("Features").as_string(), "EverythingAndEvenMore");
  EXPECT_EQ(kinds[2].at("infos").as_object().size(), 3u);
  EXPECT_EQ(o.at("pus").as_array()[0].at("l3").to_number<int>(), -1);
}

TEST(TopologyJson, KnlMemorySideNodes) {
  json::object o = as_printed(load("64intel64-fakeKNL-SNC4-hybrid.xml"));
  const json::array& nodes = o.at("numa_nodes").as_array();
  ASSERT_EQ(nodes.size(), 8u);
  EXPECT_EQ(nodes[7].at("subtype").as_string(), "MCDRAM");
  EXPECT_EQ(nodes[7].at("pus").as_string(), "");
  EXPECT_EQ(nodes[7].at("local_pus").as_string(), "0-3,16-19,32-35,48-51");
  EXPECT_EQ(nodes[7].at("memory_bytes").to_number<uint64_t>(), 2ull << 30);
  EXPECT_EQ(o.at("summary").at("memory_bytes").to_number<uint64_t>(), 12ull << 30);
  EXPECT_EQ(o.at("l3_groups").as_array()[0].at("subtype").as_string(), "MemorySideCache");
}

Topology with_devices() {
  Topology t;
  t.source = "hand-built";
  t.pus = {{.os_index = 0}};
  t.cores = {{.index = 0, .pus = CpuSet::of({0})}};
  t.packages = {{.os_index = 0, .pus = CpuSet::of({0})}};
  t.numa_nodes = {{.os_index = 0, .memory_bytes = 4ull << 30, .pus = CpuSet::of({0}), .local_pus = CpuSet::of({0})}};
  t.devices = {{"pci", "0000:00:03.0", "0000:00:03.0", "1af4:1041", "Network (class 0200)", 0},
               {"net", "eth0", "0000:00:03.0", "1af4:1041", "", 0},
               {"block", "vdb", "", "", "Disk", -1}};
  return t;
}

TEST(TopologyJson, Devices) {
  json::object o = as_printed(with_devices());
  const json::array& d = o.at("devices").as_array();
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[1].at("kind").as_string(), "net");
  EXPECT_EQ(d[1].at("name").as_string(), "eth0");
  EXPECT_EQ(d[1].at("pci_busid").as_string(), "0000:00:03.0");
  EXPECT_EQ(d[1].at("vendor_device").as_string(), "1af4:1041");
  EXPECT_EQ(d[0].at("description").as_string(), "Network (class 0200)");
  EXPECT_EQ(d[1].at("numa").to_number<int>(), 0);
  EXPECT_EQ(d[2].at("numa").to_number<int>(), -1);
  EXPECT_EQ(o.at("summary").at("devices").to_number<int>(), 3);
}

bool has(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

TEST(TopologyText, RaptorLakeTable) {
  std::string text = topology_to_text(load("Intel-RaptorLake-Corei7-1370P.xml"));
  EXPECT_TRUE(has(text, "Machine: 13th Gen Intel(R) Core(TM) i7-1370P")) << text;
  EXPECT_TRUE(has(text, "20 PUs in 14 cores, 1 package, 1 NUMA node, 1 L3 group, 2 CPU kinds; memory unknown"))
      << text;
  EXPECT_TRUE(has(text, "IntelAtom")) << text;
  EXPECT_TRUE(has(text, "12-19")) << text;
  // P-cores fold to one line, E-cores to another.
  EXPECT_TRUE(has(text, "0-5    0        0     2         0-11   {0-1} ... {10-11}")) << text;
  EXPECT_TRUE(has(text, "6-13   0        0     1         12-19  12 ... 19")) << text;
  EXPECT_TRUE(has(text, "Devices\n  none reported\n")) << text;
  for (std::size_t p = 0; (p = text.find(" \n", p)) != std::string::npos; ++p) ADD_FAILURE() << "trailing blank";
}

TEST(TopologyText, EpycStaysShort) {
  std::string text = topology_to_text(load("AMD-19h-Zen4-2xEpyc-9654.xml"));
  EXPECT_LT(std::count(text.begin(), text.end(), '\n'), 60) << text;
  EXPECT_TRUE(has(text, "384 PUs in 192 cores, 2 packages, 2 NUMA nodes, 24 L3 groups, 0 CPU kinds")) << text;
  EXPECT_TRUE(has(text, "{0,192} ... {95,287}")) << text;
  EXPECT_TRUE(has(text, "{96,288} ... {191,383}")) << text;
  EXPECT_TRUE(has(text, "none reported (all PUs alike)")) << text;
}

TEST(TopologyText, KnlShowsMcdramLocality) {
  std::string text = topology_to_text(load("64intel64-fakeKNL-SNC4-hybrid.xml"));
  EXPECT_TRUE(has(text, "MCDRAM")) << text;
  EXPECT_TRUE(has(text, "2 GiB")) << text;
  EXPECT_TRUE(has(text, "MemorySideCache")) << text;
  EXPECT_TRUE(has(text, "memory 12 GiB")) << text;
}

TEST(TopologyText, Devices) {
  std::string text = topology_to_text(with_devices());
  EXPECT_TRUE(has(text, "eth0")) << text;
  EXPECT_TRUE(has(text, "1af4:1041")) << text;
  EXPECT_TRUE(has(text, "vdb")) << text;
  EXPECT_TRUE(has(text, "[hand-built]")) << text;
}

TEST(TopologyText, LiveMachine) {
  auto t = load_topology_live();
  ASSERT_TRUE(t) << t.error().to_string();
  std::string text = topology_to_text(*t);
  EXPECT_TRUE(has(text, "[live]")) << text;
  json::object o = as_printed(*t);
  EXPECT_EQ(o.at("summary").at("pus").to_number<std::size_t>(), t->pus.size());
  EXPECT_TRUE(o.at("is_live").as_bool());
}

}  // namespace
}  // namespace mk::tools
