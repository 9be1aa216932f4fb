// Topology: loading every XML in tests/data/topologies and the live machine,
// the figures each file states, the invariants every load must keep, and
// every error path of load_topology_xml().
//
// Where the expected figures come from (hwloc 2.9 command-line tools, run on
// the same files; none of them comes from this code):
//   counts:   hwloc-calc --if xml -i FILE --number-of {pu,core,numanode,package,l3cache} machine:0
//             (the PU counts also equal `grep -c 'type="PU"' FILE`)
//   kinds:    lstopo-no-graphics --if xml -i FILE --cpukinds  (index, efficiency, cpuset, infos),
//             cpusets turned into OS indices with hwloc-calc --po --intersect pu CPUSET
//   NUMA PUs: hwloc-calc --if xml -i FILE --po --intersect pu --pi numa:N
//   memory:   the local_memory="..." attributes of the NUMANode objects (only the
//             KNL file has any; the others were stripped of memory sizes upstream)
//   SMT/L3:   lstopo-no-graphics --if xml -i FILE, and hwloc-calc ... --intersect pu core:N / l3cache:N
#include "mkernel/topology.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace mk {
namespace {

namespace fs = std::filesystem;

std::string topo_path(const std::string& name) {
  return std::string(MK_TEST_DATA) + "/topologies/" + name;
}

Topology load(const std::string& name) {
  auto t = load_topology_xml(topo_path(name));
  EXPECT_TRUE(t) << name << ": " << (t ? "" : t.error().to_string());
  return t ? std::move(t).value() : Topology{};
}

std::string write_temp(const std::string& name, const std::string& text) {
  fs::path p = fs::path(::testing::TempDir()) / ("mk_topology_" + std::to_string(::getpid()) + "_" + name);
  std::ofstream(p) << text;
  return p.string();
}

struct Expected {
  const char* file;
  std::size_t pus, cores, numa_nodes, packages, l3_groups;
  std::vector<std::string> kind_pus;  // cpu-list per kind, kind 0 first
};

// One row per file in tests/data/topologies (EveryFileHasARow enforces it).
const std::vector<Expected>& expectations() {
  static const std::vector<Expected> rows = {
      // i7-1370P: 6 P-cores with SMT (PUs 0-11) + 8 E-cores (12-19).
      {"Intel-RaptorLake-Corei7-1370P.xml", 20, 14, 1, 1, 1, {"12-19", "0-11"}},
      // Core Ultra 5 225U: LP E-cores 12-13 (outside the L3), E 4-11, P 0-3 (2 cores, SMT).
      {"Intel-ArrowLake-CoreUltra5-225U.xml", 14, 12, 1, 1, 1, {"12-13", "4-11", "0-3"}},
      // Ryzen AI 9 HX 370: Zen5c (kind 0) and Zen5, one L3 per core type.
      {"AMD-1Ah-Zen5StrixPoint-RyzenAI9HX370.xml", 24, 12, 1, 1, 2,
       {"4-11,16-23", "0-3,12-15"}},
      // 2 x EPYC 9654: 2 x 96 cores with SMT, 12 CCDs per socket, no kind info.
      {"AMD-19h-Zen4-2xEpyc-9654.xml", 384, 192, 2, 2, 24, {}},
      // 2 x EPYC 7763 with SMT off: 2 x 64 cores, 8 CCXs per socket.
      {"AMD-19h-Zen3-2xEpyc-7763.xml", 128, 128, 2, 2, 16, {}},
      // Synthetic KNL SNC4 hybrid: 16 cores x 4 threads, 4 DRAM + 4 MCDRAM nodes,
      // one memory-side cache (typed L3Cache) per quadrant.
      {"64intel64-fakeKNL-SNC4-hybrid.xml", 64, 16, 8, 1, 4, {}},
      // Synthetic: 2 cores x 2 PUs, no caches, three kinds (forced efficiencies 0/7/10).
      {"fakecpukinds.xml", 4, 2, 1, 1, 0, {"0-1", "2", "3"}},
  };
  return rows;
}

TEST(Topology, EveryFileHasARow) {
  std::set<std::string> listed;
  for (const Expected& e : expectations()) listed.insert(e.file);
  std::set<std::string> on_disk;
  for (const auto& entry : fs::directory_iterator(topo_path(""))) {
    if (entry.path().extension() == ".xml") on_disk.insert(entry.path().filename().string());
  }
  EXPECT_EQ(listed, on_disk) << "add a row to expectations() for each new topology file";
}

// The figures each file states.
TEST(Topology, CountsMatchEveryFile) {
  for (const Expected& e : expectations()) {
    SCOPED_TRACE(e.file);
    Topology t = load(e.file);
    EXPECT_EQ(t.pus.size(), e.pus);
    EXPECT_EQ(t.cores.size(), e.cores);
    EXPECT_EQ(t.numa_nodes.size(), e.numa_nodes);
    EXPECT_EQ(t.packages.size(), e.packages);
    EXPECT_EQ(t.l3_groups.size(), e.l3_groups);
    ASSERT_EQ(t.kinds.size(), e.kind_pus.size());
    for (std::size_t k = 0; k < t.kinds.size(); ++k) {
      EXPECT_EQ(t.kinds[k].index, k);
      EXPECT_EQ(t.kinds[k].pus.to_string(), e.kind_pus[k]) << "kind " << k;
      // Every file either forces efficiencies or has hwloc rank them 0..n-1.
      EXPECT_EQ(t.kinds[k].efficiency, static_cast<int32_t>(k)) << "kind " << k;
    }
    EXPECT_EQ(t.source, topo_path(e.file));
    EXPECT_FALSE(t.is_live);
    EXPECT_TRUE(t.devices.empty()) << "none of these files has I/O objects";
  }
}

// What must hold for any load, whatever the machine.
void expect_invariants(const Topology& t) {
  ASSERT_FALSE(t.pus.empty());
  CpuSet all = t.all_pus();
  EXPECT_EQ(all.count(), t.pus.size()) << "duplicate PU OS index";
  for (std::size_t i = 1; i < t.pus.size(); ++i) EXPECT_LT(t.pus[i - 1].os_index, t.pus[i].os_index);

  CpuSet in_cores;
  for (std::size_t i = 0; i < t.cores.size(); ++i) {
    const Core& c = t.cores[i];
    EXPECT_EQ(c.index, i) << "core indices are dense";
    EXPECT_FALSE(c.pus.empty());
    EXPECT_FALSE(c.pus.intersects(in_cores)) << "core " << i << " shares a PU";
    in_cores |= c.pus;
  }
  EXPECT_EQ(in_cores, all) << "cores partition the PUs";

  CpuSet in_numa, in_packages, in_kinds;
  for (const NumaNode& n : t.numa_nodes) {
    EXPECT_FALSE(n.pus.intersects(in_numa)) << "node " << n.os_index << " shares a PU";
    EXPECT_TRUE(n.pus.is_subset_of(n.local_pus)) << "node " << n.os_index;
    in_numa |= n.pus;
  }
  for (const Package& p : t.packages) in_packages |= p.pus;
  for (const CpuKind& k : t.kinds) {
    EXPECT_FALSE(k.pus.intersects(in_kinds)) << "kinds overlap";
    in_kinds |= k.pus;
  }
  EXPECT_EQ(in_numa, all) << "NUMA nodes partition the PUs";
  EXPECT_EQ(in_packages, all);
  if (!t.kinds.empty()) {
    EXPECT_EQ(in_kinds, all);
  }
  for (std::size_t i = 1; i < t.numa_nodes.size(); ++i) {
    EXPECT_LT(t.numa_nodes[i - 1].os_index, t.numa_nodes[i].os_index);
  }

  for (const Pu& pu : t.pus) {
    SCOPED_TRACE("pu " + std::to_string(pu.os_index));
    ASSERT_LT(pu.core, t.cores.size());
    EXPECT_TRUE(t.cores[pu.core].pus.contains(pu.os_index));
    EXPECT_EQ(t.cores[pu.core].package, pu.package);
    EXPECT_EQ(t.cores[pu.core].numa, pu.numa);
    const NumaNode* home = pu.numa >= 0 ? t.find_numa(static_cast<uint32_t>(pu.numa)) : nullptr;
    ASSERT_NE(home, nullptr);
    EXPECT_TRUE(home->pus.contains(pu.os_index));
    if (t.kinds.empty()) {
      EXPECT_EQ(pu.kind, -1);
    } else {
      ASSERT_GE(pu.kind, 0);
      EXPECT_TRUE(t.kinds[static_cast<std::size_t>(pu.kind)].pus.contains(pu.os_index));
    }
    if (pu.l3 >= 0) {
      ASSERT_LT(static_cast<std::size_t>(pu.l3), t.l3_groups.size());
      EXPECT_TRUE(t.l3_groups[static_cast<std::size_t>(pu.l3)].pus.contains(pu.os_index));
    }
    bool in_package = false;
    for (const Package& p : t.packages) in_package |= p.os_index == pu.package && p.pus.contains(pu.os_index);
    EXPECT_TRUE(in_package);
  }
}

TEST(Topology, InvariantsHoldForEveryFile) {
  for (const Expected& e : expectations()) {
    SCOPED_TRACE(e.file);
    expect_invariants(load(e.file));
  }
}

TEST(Topology, RaptorLakePAndEKinds) {
  Topology t = load("Intel-RaptorLake-Corei7-1370P.xml");
  ASSERT_EQ(t.kinds.size(), 2u);
  EXPECT_EQ(t.kinds[0].core_type, "IntelAtom");
  EXPECT_EQ(t.kinds[1].core_type, "IntelCore");
  EXPECT_EQ(t.kinds[0].frequency_max_mhz, 0u) << "the file gives no FrequencyMaxMHz";
  ASSERT_EQ(t.kinds[0].infos.size(), 1u);
  EXPECT_EQ(t.kinds[0].infos[0].first, "CoreType");
  EXPECT_EQ(t.kinds[0].infos[0].second, "IntelAtom");
  // SMT on the P-cores only.
  EXPECT_EQ(t.cores[t.find_pu(0)->core].pus.to_string(), "0-1");
  EXPECT_EQ(t.cores[t.find_pu(11)->core].pus.to_string(), "10-11");
  EXPECT_EQ(t.cores[t.find_pu(12)->core].pus.to_string(), "12");
  EXPECT_EQ(t.find_pu(12)->kind, 0);
  EXPECT_EQ(t.find_pu(11)->kind, 1);
  EXPECT_EQ(t.packages[0].model, "13th Gen Intel(R) Core(TM) i7-1370P");
  EXPECT_EQ(t.machine_model, "13th Gen Intel(R) Core(TM) i7-1370P");
  EXPECT_EQ(t.l3_groups[0].pus, t.all_pus());
  EXPECT_EQ(t.l3_groups[0].size_bytes, 24u * 1024 * 1024);
  EXPECT_EQ(t.l3_groups[0].subtype, "");
}

TEST(Topology, ArrowLakeThreeKindsAndPusOutsideTheL3) {
  Topology t = load("Intel-ArrowLake-CoreUltra5-225U.xml");
  ASSERT_EQ(t.kinds.size(), 3u);
  EXPECT_EQ(t.kinds[0].core_type, "IntelLowPower");
  EXPECT_EQ(t.kinds[1].core_type, "IntelAtom");
  EXPECT_EQ(t.kinds[2].core_type, "IntelCore");
  // The low-power E-cores sit outside the compute tile's L3.
  EXPECT_EQ(t.l3_groups[0].pus.to_string(), "0-11");
  EXPECT_EQ(t.find_pu(12)->l3, -1);
  EXPECT_EQ(t.find_pu(13)->l3, -1);
  EXPECT_EQ(t.find_pu(0)->l3, 0);
  EXPECT_EQ(t.cores[t.find_pu(2)->core].pus.to_string(), "2-3");
}

TEST(Topology, StrixPointKindsMatchItsTwoL3s) {
  Topology t = load("AMD-1Ah-Zen5StrixPoint-RyzenAI9HX370.xml");
  ASSERT_EQ(t.kinds.size(), 2u);
  EXPECT_EQ(t.kinds[0].core_type, "AMDEfficieny");  // sic: the file's spelling
  EXPECT_EQ(t.kinds[1].core_type, "AMDPerformance");
  ASSERT_EQ(t.l3_groups.size(), 2u);
  EXPECT_EQ(t.l3_groups[0].pus, t.kinds[1].pus);
  EXPECT_EQ(t.l3_groups[1].pus, t.kinds[0].pus);
  EXPECT_EQ(t.cores[t.find_pu(0)->core].pus.to_string(), "0,12");
}

TEST(Topology, Epyc9654TwoSocketsTwoNodes) {
  Topology t = load("AMD-19h-Zen4-2xEpyc-9654.xml");
  EXPECT_EQ(t.all_pus(), CpuSet::range(0, 383));
  ASSERT_EQ(t.numa_nodes.size(), 2u);
  EXPECT_EQ(t.numa_nodes[0].os_index, 0u);
  EXPECT_EQ(t.numa_nodes[0].pus.to_string(), "0-95,192-287");
  EXPECT_EQ(t.numa_nodes[0].local_pus, t.numa_nodes[0].pus);
  EXPECT_EQ(t.numa_nodes[1].os_index, 1u);
  EXPECT_EQ(t.numa_nodes[1].pus.to_string(), "96-191,288-383");
  EXPECT_EQ(t.total_memory(), 0u) << "the file carries no local_memory";
  ASSERT_EQ(t.packages.size(), 2u);
  EXPECT_EQ(t.packages[1].os_index, 1u);
  EXPECT_EQ(t.packages[1].pus, t.numa_nodes[1].pus);
  EXPECT_EQ(t.packages[0].model, "AMD EPYC 9654 96-Core Processor") << "blank padding trimmed";
  EXPECT_EQ(t.cores[t.find_pu(0)->core].pus.to_string(), "0,192");
  EXPECT_EQ(t.cores[t.find_pu(383)->core].pus.to_string(), "191,383");
  EXPECT_EQ(t.find_pu(383)->package, 1u);
  EXPECT_EQ(t.find_pu(383)->numa, 1);
  EXPECT_EQ(t.l3_groups[0].pus.to_string(), "0-7,192-199");
  EXPECT_EQ(t.l3_groups[23].pus.to_string(), "184-191,376-383");
  EXPECT_EQ(t.find_pu(200)->l3, 1);
  EXPECT_EQ(t.find_pu(384), nullptr);
}

TEST(Topology, Epyc7763NoSmt) {
  Topology t = load("AMD-19h-Zen3-2xEpyc-7763.xml");
  EXPECT_EQ(t.numa_nodes[0].pus.to_string(), "0-63");
  EXPECT_EQ(t.numa_nodes[1].pus.to_string(), "64-127");
  for (const Core& c : t.cores) EXPECT_EQ(c.pus.count(), 1u);
}

TEST(Topology, KnlListsMcdramNodesAndHomesPusOnDram) {
  Topology t = load("64intel64-fakeKNL-SNC4-hybrid.xml");
  ASSERT_EQ(t.numa_nodes.size(), 8u);
  const std::string quadrant[4] = {"0-3,16-19,32-35,48-51", "4-7,20-23,36-39,52-55",
                                   "8-11,24-27,40-43,56-59", "12-15,28-31,44-47,60-63"};
  // In the file each quadrant's memory-side cache holds a DRAM and an MCDRAM
  // node with the same cpuset: DRAM nodes 0-3 = quadrants 0-3, MCDRAM nodes
  // 4,5,6,7 = quadrants 1,2,3,0. The DRAM node is home to the PUs, so the
  // MCDRAM nodes are listed with their locality but own no PUs.
  const int mcdram_quadrant[4] = {1, 2, 3, 0};
  for (uint32_t n = 0; n < 8; ++n) {
    SCOPED_TRACE("node " + std::to_string(n));
    const NumaNode* node = t.find_numa(n);
    ASSERT_NE(node, nullptr);
    bool dram = n < 4;
    EXPECT_EQ(node->subtype, dram ? "DRAM" : "MCDRAM");
    EXPECT_EQ(node->memory_bytes, dram ? (1ull << 30) : (2ull << 30));
    const std::string& local = quadrant[dram ? n : mcdram_quadrant[n - 4]];
    EXPECT_EQ(node->local_pus.to_string(), local);
    EXPECT_EQ(node->pus.to_string(), dram ? local : "");
  }
  EXPECT_EQ(t.total_memory(), 12ull << 30);
  EXPECT_EQ(t.find_numa(8), nullptr);
  // PU 0 lies in DRAM node 0 and MCDRAM node 7; its home is the DRAM one.
  EXPECT_EQ(t.find_pu(0)->numa, 0);
  EXPECT_EQ(t.find_pu(63)->numa, 3);
  EXPECT_EQ(t.cores[t.find_pu(0)->core].pus.to_string(), "0,16,32,48");
  // The per-quadrant "L3" is hwloc's L3Cache typed memory-side cache.
  ASSERT_EQ(t.l3_groups.size(), 4u);
  EXPECT_EQ(t.l3_groups[0].subtype, "MemorySideCache");
  EXPECT_EQ(t.l3_groups[0].size_bytes, 2ull << 30);
  EXPECT_EQ(t.l3_groups[0].pus.to_string(), quadrant[0]);
}

TEST(Topology, FakeCpuKindsEdgeCases) {
  Topology t = load("fakecpukinds.xml");
  ASSERT_EQ(t.kinds.size(), 3u);
  // The file forces efficiencies 0, 7 and 10; hwloc re-ranks them 0, 1, 2.
  EXPECT_EQ(t.kinds[0].core_type, "MySmallCore");
  EXPECT_EQ(t.kinds[0].frequency_max_mhz, 1000u);
  EXPECT_EQ(t.kinds[1].core_type, "YouBigcore");
  EXPECT_EQ(t.kinds[1].frequency_max_mhz, 2000u);
  EXPECT_EQ(t.kinds[2].core_type, "IntelCore");
  EXPECT_EQ(t.kinds[2].frequency_max_mhz, 2000u);
  std::map<std::string, std::string> infos(t.kinds[2].infos.begin(), t.kinds[2].infos.end());
  EXPECT_EQ(infos["Features"], "EverythingAndEvenMore");
  EXPECT_EQ(t.kinds[2].infos.size(), 3u);
  // SMT siblings of different kinds: core 0 = PUs 0 (kind 0) and 2 (kind 1).
  EXPECT_EQ(t.cores[0].pus.to_string(), "0,2");
  EXPECT_EQ(t.find_pu(0)->kind, 0);
  EXPECT_EQ(t.find_pu(2)->kind, 1);
  EXPECT_EQ(t.find_pu(3)->kind, 2);
  EXPECT_EQ(t.find_pu(1)->core, t.find_pu(3)->core);
  // No caches at all.
  for (const Pu& pu : t.pus) EXPECT_EQ(pu.l3, -1);
}

TEST(Topology, LiveMachineLoads) {
  auto t = load_topology_live();
  ASSERT_TRUE(t) << t.error().to_string();
  EXPECT_EQ(t->source, "live");
  EXPECT_TRUE(t->is_live);
  EXPECT_GE(t->pus.size(), 1u);
  EXPECT_GE(t->numa_nodes.size(), 1u);
  EXPECT_GT(t->total_memory(), 0u) << "Linux always reports node memory";
  expect_invariants(*t);
  for (const IoDevice& d : t->devices) {
    EXPECT_FALSE(d.kind.empty());
    EXPECT_FALSE(d.name.empty());
  }
}

// A hand-written export with I/O: none of the machine files carries any.
// Two packages, one NUMA node and one PU each; a NIC below package 1, an
// NVMe disk and a GPU below the machine.
constexpr const char* kIoXml = R"(<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE topology SYSTEM "hwloc2.dtd">
<topology version="2.0">
  <object type="Machine" os_index="0" cpuset="0x00000003" complete_cpuset="0x00000003" allowed_cpuset="0x00000003" nodeset="0x00000003" complete_nodeset="0x00000003" allowed_nodeset="0x00000003" gp_index="1">
    <object type="Package" os_index="0" cpuset="0x00000001" complete_cpuset="0x00000001" nodeset="0x00000001" complete_nodeset="0x00000001" gp_index="2">
      <info name="CPUModel" value="Test CPU   "/>
      <object type="NUMANode" os_index="0" cpuset="0x00000001" complete_cpuset="0x00000001" nodeset="0x00000001" complete_nodeset="0x00000001" gp_index="3" local_memory="1073741824"/>
      <object type="Core" os_index="0" cpuset="0x00000001" complete_cpuset="0x00000001" nodeset="0x00000001" complete_nodeset="0x00000001" gp_index="4">
        <object type="PU" os_index="0" cpuset="0x00000001" complete_cpuset="0x00000001" nodeset="0x00000001" complete_nodeset="0x00000001" gp_index="5"/>
      </object>
    </object>
    <object type="Package" os_index="1" cpuset="0x00000002" complete_cpuset="0x00000002" nodeset="0x00000002" complete_nodeset="0x00000002" gp_index="6">
      <object type="NUMANode" os_index="1" cpuset="0x00000002" complete_cpuset="0x00000002" nodeset="0x00000002" complete_nodeset="0x00000002" gp_index="7" local_memory="2147483648"/>
      <object type="Core" os_index="0" cpuset="0x00000002" complete_cpuset="0x00000002" nodeset="0x00000002" complete_nodeset="0x00000002" gp_index="8">
        <object type="PU" os_index="1" cpuset="0x00000002" complete_cpuset="0x00000002" nodeset="0x00000002" complete_nodeset="0x00000002" gp_index="9"/>
      </object>
      <object type="Bridge" gp_index="10" bridge_type="0-1" depth="0" bridge_pci="0000:[40-40]">
        <object type="PCIDev" gp_index="11" pci_busid="0000:40:00.1" pci_type="0200 [8086:15f3] [8086:0000] 03" pci_link_speed="0.000000">
          <info name="PCIVendor" value="Intel Corporation"/>
          <info name="PCIDevice" value="Ethernet Controller I225-V"/>
          <object type="OSDev" gp_index="12" name="eth1" osdev_type="2">
            <info name="Address" value="02:00:00:00:00:01"/>
          </object>
        </object>
      </object>
    </object>
    <object type="Bridge" gp_index="13" bridge_type="0-1" depth="0" bridge_pci="0000:[00-00]">
      <object type="PCIDev" gp_index="14" pci_busid="0000:00:1d.0" pci_type="0108 [144d:a808] [144d:a801] 00" pci_link_speed="0.000000">
        <object type="OSDev" gp_index="15" name="nvme0n1" subtype="Disk" osdev_type="0">
          <info name="Model" value="Samsung SSD 970"/>
        </object>
      </object>
      <object type="PCIDev" gp_index="16" pci_busid="0000:00:02.0" pci_type="0300 [8086:46a6] [8086:0000] 0c" pci_link_speed="0.000000"/>
    </object>
  </object>
</topology>
)";

TEST(Topology, ReadsPciAndOsDevices) {
  std::string path = write_temp("io.xml", kIoXml);
  auto t = load_topology_xml(path);
  fs::remove(path);
  ASSERT_TRUE(t) << t.error().to_string();
  expect_invariants(*t);
  EXPECT_EQ(t->total_memory(), 3ull << 30);
  EXPECT_EQ(t->packages[0].model, "Test CPU");
  std::map<std::string, IoDevice> by_name;
  for (const IoDevice& d : t->devices) by_name[d.name] = d;
  ASSERT_EQ(by_name.size(), 5u) << "3 PCI functions + 2 OS devices";

  const IoDevice& nic = by_name.at("0000:40:00.1");
  EXPECT_EQ(nic.kind, "pci");
  EXPECT_EQ(nic.pci_busid, "0000:40:00.1");
  EXPECT_EQ(nic.vendor_device, "8086:15f3");
  EXPECT_EQ(nic.description, "Intel Corporation Ethernet Controller I225-V");
  EXPECT_EQ(nic.numa, 1) << "below package 1";

  const IoDevice& eth = by_name.at("eth1");
  EXPECT_EQ(eth.kind, "net");
  EXPECT_EQ(eth.pci_busid, "0000:40:00.1");
  EXPECT_EQ(eth.vendor_device, "8086:15f3");
  EXPECT_EQ(eth.numa, 1);

  const IoDevice& disk = by_name.at("nvme0n1");
  EXPECT_EQ(disk.kind, "block");
  EXPECT_EQ(disk.pci_busid, "0000:00:1d.0");
  EXPECT_EQ(disk.vendor_device, "144d:a808");
  EXPECT_EQ(disk.description, "Disk Samsung SSD 970");
  EXPECT_EQ(disk.numa, 0) << "below the machine: two candidate nodes, lowest wins";

  const IoDevice& gpu = by_name.at("0000:00:02.0");
  EXPECT_EQ(gpu.kind, "pci");
  EXPECT_EQ(gpu.description, "Display (class 0300)");
}

// Some platforms report neither packages nor cores: every PU then gets a core
// of its own and one package holds them all, so no consumer meets a PU
// without a core or package.
TEST(Topology, BarePusGetCoresAndAPackage) {
  std::string path = write_temp("bare.xml", R"(<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE topology SYSTEM "hwloc2.dtd">
<topology version="2.0">
  <object type="Machine" os_index="0" cpuset="0x00000005" complete_cpuset="0x00000005" allowed_cpuset="0x00000005" nodeset="0x00000001" complete_nodeset="0x00000001" allowed_nodeset="0x00000001">
    <object type="NUMANode" os_index="0" cpuset="0x00000005" complete_cpuset="0x00000005" nodeset="0x00000001" complete_nodeset="0x00000001" local_memory="1048576"/>
    <object type="PU" os_index="0" cpuset="0x00000001" complete_cpuset="0x00000001" nodeset="0x00000001" complete_nodeset="0x00000001"/>
    <object type="PU" os_index="2" cpuset="0x00000004" complete_cpuset="0x00000004" nodeset="0x00000001" complete_nodeset="0x00000001"/>
  </object>
</topology>
)");
  auto t = load_topology_xml(path);
  fs::remove(path);
  ASSERT_TRUE(t) << t.error().to_string();
  expect_invariants(*t);
  EXPECT_EQ(t->all_pus().to_string(), "0,2");
  ASSERT_EQ(t->cores.size(), 2u);
  EXPECT_EQ(t->cores[1].pus.to_string(), "2");
  EXPECT_EQ(t->cores[1].os_index, 2u);
  ASSERT_EQ(t->packages.size(), 1u);
  EXPECT_EQ(t->packages[0].pus.to_string(), "0,2");
  EXPECT_TRUE(t->kinds.empty());
  EXPECT_EQ(t->find_pu(2)->kind, -1);
}

TEST(Topology, MissingFileIsEnoentNamingThePath) {
  std::string path = topo_path("no-such-machine.xml");
  auto t = load_topology_xml(path);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code(), ENOENT);
  EXPECT_NE(std::string(t.error().detail()).find(path), std::string::npos) << t.error().to_string();
  EXPECT_NE(std::string(t.error().detail()).find("lstopo"), std::string::npos);
}

TEST(Topology, EmptyPathIsEnoent) {
  auto t = load_topology_xml("");
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code(), ENOENT);
}

TEST(Topology, UnreadableFileIsEacces) {
  std::string path = write_temp("unreadable.xml", kIoXml);
  fs::permissions(path, fs::perms::none);
  // Root reads any file, so as root the load runs in a child that dropped to
  // nobody; the child reports the errno and whether the path was named.
  auto check = [&]() -> int {
    auto t = load_topology_xml(path);
    if (t) return 10;
    if (t.error().code() != EACCES) return 11;
    return std::string(t.error().detail()).find(path) == std::string::npos ? 12 : 0;
  };
  int rc;
  if (::geteuid() == 0) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) ::_exit(13);
      ::_exit(check());
    }
    int st = 0;
    ASSERT_EQ(::waitpid(pid, &st, 0), pid);
    ASSERT_TRUE(WIFEXITED(st));
    rc = WEXITSTATUS(st);
  } else {
    rc = check();
  }
  fs::remove(path);
  EXPECT_EQ(rc, 0) << "10: loaded, 11: not EACCES, 12: path not named, 13: could not drop root";
}

TEST(Topology, DirectoryIsEisdir) {
  auto t = load_topology_xml(topo_path(""));
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code(), EISDIR);
}

TEST(Topology, GarbageIsEinval) {
  for (const char* text : {"this is not xml at all\n", "<?xml version=\"1.0\"?><foo/>\n", ""}) {
    SCOPED_TRACE(text);
    std::string path = write_temp("garbage.xml", text);
    auto t = load_topology_xml(path);
    ASSERT_FALSE(t);
    EXPECT_EQ(t.error().code(), EINVAL);
    EXPECT_NE(std::string(t.error().detail()).find(path), std::string::npos) << t.error().to_string();
    fs::remove(path);
  }
}

// A well-formed export that hwloc accepts but CpuSet cannot hold: one PU
// with OS index 9000 (bit 8 of 32-bit word 281 in hwloc's bitmap syntax).
TEST(Topology, PuIndexBeyondKMaxCpusIsEinval) {
  std::string cs = "0x00000100" + std::string(281, ',');
  std::string sets = "cpuset=\"" + cs + "\" complete_cpuset=\"" + cs + "\"";
  std::string nodes = "nodeset=\"0x00000001\" complete_nodeset=\"0x00000001\"";
  std::string xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                    "<!DOCTYPE topology SYSTEM \"hwloc2.dtd\">\n<topology version=\"2.0\">\n"
                    "<object type=\"Machine\" os_index=\"0\" " + sets + " allowed_cpuset=\"" + cs +
                    "\" " + nodes + " allowed_nodeset=\"0x00000001\">\n"
                    "<object type=\"NUMANode\" os_index=\"0\" " + sets + " " + nodes + "/>\n"
                    "<object type=\"PU\" os_index=\"9000\" " + sets + " " + nodes + "/>\n"
                    "</object>\n</topology>\n";
  std::string path = write_temp("big.xml", xml);
  auto t = load_topology_xml(path);
  fs::remove(path);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code(), EINVAL);
  EXPECT_NE(std::string(t.error().detail()).find("9000"), std::string::npos) << t.error().to_string();
}

// hwloc itself refuses a machine without PUs, so this reaches EINVAL from
// hwloc rather than from check_pus(); either way the caller sees EINVAL.
TEST(Topology, NoPusIsEinval) {
  std::string path = write_temp("nopu.xml", R"(<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE topology SYSTEM "hwloc2.dtd">
<topology version="2.0">
  <object type="Machine" os_index="0" cpuset="0x0" complete_cpuset="0x0" allowed_cpuset="0x0" nodeset="0x00000001" complete_nodeset="0x00000001" allowed_nodeset="0x00000001">
    <object type="NUMANode" os_index="0" cpuset="0x0" complete_cpuset="0x0" nodeset="0x00000001" complete_nodeset="0x00000001"/>
  </object>
</topology>
)");
  auto t = load_topology_xml(path);
  fs::remove(path);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code(), EINVAL);
}

TEST(Topology, FindAndTotals) {
  Topology t = load("Intel-RaptorLake-Corei7-1370P.xml");
  ASSERT_NE(t.find_pu(19), nullptr);
  EXPECT_EQ(t.find_pu(19)->os_index, 19u);
  EXPECT_EQ(t.find_pu(19)->kind, 0);
  EXPECT_EQ(t.find_pu(20), nullptr);
  EXPECT_EQ(t.find_pu(100000), nullptr);
  ASSERT_NE(t.find_numa(0), nullptr);
  EXPECT_EQ(t.find_numa(0)->pus, t.all_pus());
  EXPECT_EQ(t.find_numa(1), nullptr);
  EXPECT_EQ(t.all_pus(), CpuSet::range(0, 19));

  // A hand-built value: the helpers need no hwloc.
  Topology h;
  h.pus = {{.os_index = 2}, {.os_index = 5}};
  h.numa_nodes = {{.os_index = 3, .memory_bytes = 100}, {.os_index = 1, .memory_bytes = 23}};
  EXPECT_EQ(h.all_pus().to_string(), "2,5");
  EXPECT_EQ(h.total_memory(), 123u);
  EXPECT_NE(h.find_pu(5), nullptr);
  EXPECT_EQ(h.find_pu(3), nullptr);
  ASSERT_NE(h.find_numa(1), nullptr);
  EXPECT_EQ(h.find_numa(1)->memory_bytes, 23u);
  EXPECT_EQ(Topology{}.all_pus().count(), 0u);
  EXPECT_EQ(Topology{}.find_pu(0), nullptr);
  EXPECT_EQ(Topology{}.total_memory(), 0u);
}

}  // namespace
}  // namespace mk
