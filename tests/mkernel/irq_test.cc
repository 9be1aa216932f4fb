// Tests for mkernel/irq.h: IRQ steering on a fake /proc/irq (movable,
// managed, effective affinity that does not follow), restoring when the last
// instance stops, restoring from the saved file after a daemon restart; the
// real /proc/irq read only, and as root a steering round trip on the live
// machine that puts every affinity back.
#include "mkernel/irq.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace mk {
namespace {

class FakeProc {
 public:
  explicit FakeProc(const std::string& name) {
    dir_ = fs::path(::testing::TempDir()) / ("mk_irq_" + std::to_string(::getpid()) + "_" + name);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  ~FakeProc() { fs::remove_all(dir_); }
  SysRoot root() const { return SysRoot(dir_.string()); }
  std::string state() const { return (dir_ / "irq-affinity.json").string(); }
  void write(const std::string& abs, const std::string& content) const {
    fs::path p = dir_ / abs.substr(1);
    fs::create_directories(p.parent_path());
    std::ofstream(p) << content;
  }
  std::string read(const std::string& abs) const {
    std::ifstream in(dir_ / abs.substr(1));
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::string affinity(int irq) const {
    std::string s = read("/proc/irq/" + std::to_string(irq) + "/smp_affinity_list");
    while (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
  }

 private:
  fs::path dir_;
};

// CPUs 0-3. 24: 0-3; 25: only cpu 1; 26: 0-3, managed (the writer fails EIO
// like the kernel); 27: 2-3 (never on cpu 1); 28: 0-1 whose effective
// affinity stays on cpu 1 whatever is written.
void make_irqs(const FakeProc& p) {
  p.write("/proc/interrupts",
          "            CPU0       CPU1       CPU2       CPU3\n"
          "  24:          1          0          0          0   IO-APIC   5-edge      ACPI:Ged\n"
          "  25:          0          9          0          0   IO-APIC   4-edge      ttyS0\n"
          "  26:        100        200        300        400   PCI-MSIX-0000:00:01.0   1-edge      nvme0q1\n"
          "  27:          0          0          0          0   PCI-MSIX-0000:00:02.0   0-edge      virtio1-config\n"
          "  28:          5          5          0          0   PCI-MSIX-0000:00:03.0   1-edge      eth0-rx-0, eth0-tx-0\n"
          " NMI:          0          0          0          0   Non-maskable interrupts\n"
          " ERR:          0\n");
  p.write("/proc/irq/default_smp_affinity", "f\n");
  p.write("/proc/irq/24/smp_affinity_list", "0-3\n");
  p.write("/proc/irq/25/smp_affinity_list", "1\n");
  p.write("/proc/irq/26/smp_affinity_list", "0-3\n");
  p.write("/proc/irq/27/smp_affinity_list", "2-3\n");
  p.write("/proc/irq/28/smp_affinity_list", "0-1\n");
  p.write("/proc/irq/28/effective_affinity_list", "1\n");
  p.write("/proc/irq/0/smp_affinity", "1\n");  // no _list: not listed
}

IrqSteering::Writer managed_26(const SysRoot& root) {
  return [root](const std::string& abs, const std::string& value) -> Result<void> {
    if (abs == "/proc/irq/26/smp_affinity_list") return MK_FAIL(EIO, "IRQ affinity write refused", "fake managed IRQ");
    std::ofstream out(root.path(abs), std::ios::trunc);
    if (!out) return MK_FAIL(ENOENT, "cannot open IRQ file", "%s", abs.c_str());
    out << value << "\n";
    return ok();
  };
}

TEST(IrqMask, ParseAndFormat) {
  auto a = parse_cpu_mask("3\n");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->to_string(), "0-1");
  auto b = parse_cpu_mask("00000001,00000000");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->to_string(), "32");
  EXPECT_EQ(to_cpu_mask(CpuSet::of({0, 2, 3})), "d");
  EXPECT_EQ(to_cpu_mask(CpuSet::of({0, 33})), "2,00000001");
  EXPECT_EQ(to_cpu_mask(CpuSet{}), "0");
  auto bad = parse_cpu_mask("xyz");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), EINVAL);
}

TEST(IrqRead, FakeTreeNamesAndEffective) {
  FakeProc p("read");
  make_irqs(p);
  auto l = read_irqs(p.root());
  ASSERT_TRUE(l) << l.error().to_string();
  ASSERT_EQ(l->size(), 5u);
  EXPECT_EQ((*l)[0].irq, 24);
  EXPECT_EQ((*l)[0].name, "ACPI:Ged");
  EXPECT_EQ((*l)[2].name, "nvme0q1");
  EXPECT_EQ((*l)[4].name, "eth0-rx-0, eth0-tx-0");
  EXPECT_EQ((*l)[1].affinity.to_string(), "1");
  EXPECT_FALSE((*l)[0].effective.has_value());
  ASSERT_TRUE((*l)[4].effective.has_value());
  EXPECT_EQ((*l)[4].effective->to_string(), "1");
}

TEST(IrqRead, NoProcIrqIsAnError) {
  FakeProc p("none");
  auto l = read_irqs(p.root());
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code(), ENOENT);
  IrqSteering s(p.root(), "");
  auto r = s.apply(CpuSet::of({1}), CpuSet::of({0}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ENOENT);
}

TEST(IrqSteering, MovesOffReservedReportsManagedAndRestores) {
  FakeProc p("steer");
  make_irqs(p);
  IrqSteering s(p.root(), p.state());
  s.set_writer(managed_26(p.root()));
  ASSERT_TRUE(s.apply(CpuSet::of({1}), CpuSet::of({0, 2, 3})));
  EXPECT_EQ(p.affinity(24), "0,2-3");
  EXPECT_EQ(p.affinity(25), "0,2-3");  // nothing left of its own: the host's
  EXPECT_EQ(p.affinity(26), "0-3");    // refused
  EXPECT_EQ(p.affinity(27), "2-3");    // never touched
  EXPECT_EQ(p.affinity(28), "0");      // written, but the effective one stays
  EXPECT_EQ(p.read("/proc/irq/default_smp_affinity"), "d\n");

  IrqSteerReport r = s.report(CpuSet::of({1}));
  EXPECT_EQ(r.total, 5u);
  EXPECT_EQ(r.on_cpus, 4u);
  EXPECT_EQ(r.moved, 3u);
  EXPECT_TRUE(r.default_steered);
  ASSERT_EQ(r.not_movable.size(), 1u);
  EXPECT_EQ(r.not_movable[0].first, 26);
  EXPECT_EQ(r.not_movable[0].second, "nvme0q1: managed: kernel refused the write: Input/output error");
  ASSERT_EQ(r.pending.size(), 1u);
  EXPECT_EQ(r.pending[0], (std::pair<int, std::string>{28, "eth0-rx-0, eth0-tx-0"}));
  Guarantee g = r.guarantee();
  EXPECT_EQ(g.name, "irq steering");
  EXPECT_FALSE(g.in_force);
  EXPECT_EQ(g.detail, "3 of 4 IRQs on cpus 1 moved off them (5 IRQs in all, host cpus 0,2-3); "
                      "1 not movable (managed or refused): 26 (nvme0q1: managed: kernel refused the write: "
                      "Input/output error); 1 move at their next interrupt (effective affinity not yet off): "
                      "28 (eth0-rx-0, eth0-tx-0)");

  // The originals are on disk before the writes.
  std::ifstream in(p.state());
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_NE(ss.str().find("\"24\":\"0-3\""), std::string::npos) << ss.str();
  EXPECT_NE(ss.str().find("\"25\":\"1\""), std::string::npos);
  EXPECT_EQ(ss.str().find("\"27\""), std::string::npos);
  EXPECT_NE(ss.str().find("\"default_smp_affinity\":\"0-3\""), std::string::npos);

  // The instance stops: everything back, the file gone.
  ASSERT_TRUE(s.apply(CpuSet{}, CpuSet::of({0, 1, 2, 3})));
  EXPECT_EQ(p.affinity(24), "0-3");
  EXPECT_EQ(p.affinity(25), "1");
  EXPECT_EQ(p.affinity(28), "0-1");
  EXPECT_EQ(p.read("/proc/irq/default_smp_affinity"), "f\n");
  EXPECT_FALSE(fs::exists(p.state()));
  EXPECT_TRUE(s.originals().empty());
}

TEST(IrqSteering, AllMovableIsInForce) {
  FakeProc p("inforce");
  make_irqs(p);
  fs::remove(p.root().path("/proc/irq/28/effective_affinity_list"));
  IrqSteering s(p.root(), "");
  s.set_writer([&](const std::string& abs, const std::string& v) -> Result<void> {
    std::ofstream(p.root().path(abs), std::ios::trunc) << v << "\n";
    return ok();
  });
  ASSERT_TRUE(s.apply(CpuSet::of({1}), CpuSet::of({0, 2, 3})));
  IrqSteerReport r = s.report(CpuSet::of({1}));
  EXPECT_EQ(r.moved, 4u);
  EXPECT_EQ(r.on_cpus, 4u);
  EXPECT_TRUE(r.guarantee().in_force) << r.guarantee().detail;
  // Another instance's CPUs are not this one's business: none of its IRQs
  // "moved" for cpu 3 (none was steered away from it).
  IrqSteerReport other = s.report(CpuSet::of({3}));
  EXPECT_EQ(other.moved, 0u);
  EXPECT_EQ(other.on_cpus, 4u);  // 24, 25 (now host 0,2-3), 26, 27
  EXPECT_FALSE(other.guarantee().in_force);
}

TEST(IrqSteering, SecondInstanceThenFirstStops) {
  FakeProc p("two");
  make_irqs(p);
  IrqSteering s(p.root(), p.state());
  s.set_writer(managed_26(p.root()));
  ASSERT_TRUE(s.apply(CpuSet::of({1}), CpuSet::of({0, 2, 3})));
  ASSERT_TRUE(s.apply(CpuSet::of({1, 2}), CpuSet::of({0, 3})));
  EXPECT_EQ(p.affinity(24), "0,3");
  EXPECT_EQ(p.affinity(27), "3");
  EXPECT_EQ(p.read("/proc/irq/default_smp_affinity"), "9\n");
  // The instance on cpu 1 stops: IRQs may use it again, not cpu 2.
  ASSERT_TRUE(s.apply(CpuSet::of({2}), CpuSet::of({0, 1, 3})));
  EXPECT_EQ(p.affinity(24), "0-1,3");
  EXPECT_EQ(p.affinity(25), "1");  // its original again
  EXPECT_EQ(p.affinity(27), "3");
  EXPECT_TRUE(fs::exists(p.state()));
  ASSERT_TRUE(s.apply(CpuSet{}, CpuSet::of({0, 1, 2, 3})));
  EXPECT_EQ(p.affinity(24), "0-3");
  EXPECT_EQ(p.affinity(27), "2-3");
  EXPECT_FALSE(fs::exists(p.state()));
}

TEST(IrqSteering, RestoredFromTheSavedFileAfterARestart) {
  FakeProc p("restart");
  make_irqs(p);
  {
    IrqSteering first(p.root(), p.state());
    first.set_writer(managed_26(p.root()));
    ASSERT_TRUE(first.apply(CpuSet::of({1}), CpuSet::of({0, 2, 3})));
  }  // the daemon dies
  ASSERT_TRUE(fs::exists(p.state()));
  // A new daemon, the instance still running: nothing to write, the report
  // is the same (the originals came from the file).
  IrqSteering again(p.root(), p.state());
  again.set_writer(managed_26(p.root()));
  ASSERT_TRUE(again.load());
  EXPECT_EQ(again.originals().at(25).to_string(), "1");
  EXPECT_EQ(again.reserved().to_string(), "1");
  ASSERT_TRUE(again.apply(CpuSet::of({1}), CpuSet::of({0, 2, 3})));
  IrqSteerReport r = again.report(CpuSet::of({1}));
  EXPECT_EQ(r.on_cpus, 4u);
  EXPECT_EQ(r.moved, 3u);
  // A new daemon after the instance died: everything back from the file.
  IrqSteering third(p.root(), p.state());
  third.set_writer(managed_26(p.root()));
  ASSERT_TRUE(third.load());
  ASSERT_TRUE(third.apply(CpuSet{}, CpuSet::of({0, 1, 2, 3})));
  EXPECT_EQ(p.affinity(24), "0-3");
  EXPECT_EQ(p.affinity(25), "1");
  EXPECT_EQ(p.read("/proc/irq/default_smp_affinity"), "f\n");
  EXPECT_FALSE(fs::exists(p.state()));
}

TEST(IrqSteering, BadStateFileIsRefused) {
  FakeProc p("badstate");
  make_irqs(p);
  std::ofstream(p.state()) << "{\"irqs\":{\"24\":\"0-3\"}}\n";  // no format
  IrqSteering s(p.root(), p.state());
  auto r = s.load();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), EBADMSG);
  std::ofstream(p.state(), std::ios::trunc) << "{\"format\":\"mkernel-irq-affinity/1\",\"irqs\":{\"x\":\"1\"}}";
  auto r2 = IrqSteering(p.root(), p.state()).load();
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.error().code(), EBADMSG);
}

TEST(IrqSteering, NoHostCpuLeftIsReported) {
  FakeProc p("nohost");
  make_irqs(p);
  IrqSteering s(p.root(), "");
  s.set_writer(managed_26(p.root()));
  ASSERT_TRUE(s.apply(CpuSet::of({1}), CpuSet{}));
  EXPECT_EQ(p.affinity(25), "1");  // nowhere to go
  IrqSteerReport r = s.report(CpuSet::of({1}));
  bool found = false;
  for (const auto& [irq, why] : r.not_movable)
    if (irq == 25) found = why == "ttyS0: no host cpu to move it to";
  EXPECT_TRUE(found) << r.guarantee().detail;
}

// The live machine, read only: every IRQ the kernel lists has an affinity
// inside the online CPUs.
TEST(IrqReal, ReadsTheLiveProcIrq) {
  if (!fs::exists("/proc/irq")) GTEST_SKIP() << "no /proc/irq here";
  auto l = read_irqs(SysRoot("/"));
  ASSERT_TRUE(l) << l.error().to_string();
  const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
  std::size_t named = 0;
  for (const IrqLine& x : *l) {
    EXPECT_FALSE(x.affinity.empty()) << x.irq;
    EXPECT_LT(x.affinity.last(), online) << x.irq;
    if (!x.name.empty()) ++named;
  }
  EXPECT_EQ(named, l->size()) << "every /proc/irq/N should be named in /proc/interrupts";
  auto def = SysRoot("/").read_file("/proc/irq/default_smp_affinity");
  ASSERT_TRUE(def);
  EXPECT_TRUE(parse_cpu_mask(*def));
}

// As root, with at least 2 CPUs: steer every IRQ off the last CPU and back.
// Writes live affinities; a guard restores them even when an expectation
// fails (this test is SERIAL).
TEST(IrqReal, SteersOffTheLastCpuAndRestores) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to write /proc/irq";
  const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
  if (online < 2) GTEST_SKIP() << "needs 2 CPUs";
  auto before = read_irqs(SysRoot("/"));
  ASSERT_TRUE(before);
  auto def_before = SysRoot("/").read_file("/proc/irq/default_smp_affinity");
  ASSERT_TRUE(def_before);
  const std::string state = (fs::path(::testing::TempDir()) /
                             ("mk_irq_real_" + std::to_string(::getpid()) + ".json")).string();
  const CpuSet inst = CpuSet::of({static_cast<uint32_t>(online - 1)});
  const CpuSet host = CpuSet::range(0, static_cast<uint32_t>(online - 2));
  IrqSteering s(SysRoot("/"), state);
  struct Guard {
    IrqSteering& s;
    CpuSet all;
    ~Guard() { (void)s.apply(CpuSet{}, all); }
  } guard{s, CpuSet::range(0, static_cast<uint32_t>(online - 1))};
  ASSERT_TRUE(s.apply(inst, host));
  IrqSteerReport r = s.report(inst);
  std::printf("real: %s\n", to_line(r.guarantee()).c_str());
  EXPECT_EQ(r.total, before->size());
  EXPECT_EQ(r.moved + r.not_movable.size(), r.on_cpus);
  EXPECT_TRUE(r.default_steered);
  auto during = read_irqs(SysRoot("/"));
  ASSERT_TRUE(during);
  for (const IrqLine& x : *during) {
    bool refused = false;
    for (const auto& [irq, why] : r.not_movable) refused |= irq == x.irq;
    if (!refused) {
      EXPECT_FALSE(x.affinity.intersects(inst)) << x.irq << " " << x.affinity.to_string();
    }
  }
  ASSERT_TRUE(s.apply(CpuSet{}, guard.all));
  auto after = read_irqs(SysRoot("/"));
  ASSERT_TRUE(after);
  ASSERT_EQ(after->size(), before->size());
  for (std::size_t i = 0; i < after->size(); ++i)
    EXPECT_EQ((*after)[i].affinity.to_string(), (*before)[i].affinity.to_string()) << (*after)[i].irq;
  auto def_after = SysRoot("/").read_file("/proc/irq/default_smp_affinity");
  ASSERT_TRUE(def_after);
  EXPECT_EQ(*def_after, *def_before);
  EXPECT_FALSE(fs::exists(state));
}

}  // namespace
}  // namespace mk
