// The picture of the partition (mkernel/picture.h): the colour key, the
// annotated topology read back with hwloc, the SVG and PNG lstopo and
// rsvg-convert produce from it, and the refusals (nothing left behind).
#include "mkernel/picture.h"

#include <dirent.h>
#include <hwloc.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "mk/units.h"
#include "mkernel/planner.h"
#include "test_topologies.h"

namespace mk {
namespace {

using test::load;
using test::pool_of;

// A scratch directory, removed with whatever is in it.
class Scratch {
 public:
  Scratch() {
    char t[] = "/tmp/mkpicture_test.XXXXXX";
    path_ = ::mkdtemp(t) ? t : "";
  }
  ~Scratch() {
    if (!path_.empty()) std::system(("rm -rf '" + path_ + "'").c_str());
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  std::set<std::string> entries() const {
    std::set<std::string> out;
    if (DIR* d = ::opendir(path_.c_str())) {
      while (auto* e = ::readdir(d))
        if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") out.insert(e->d_name);
      ::closedir(d);
    }
    return out;
  }

 private:
  std::string path_;
};

// Sets an environment variable for one scope.
class EnvOverride {
 public:
  EnvOverride(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    ::setenv(name, value.c_str(), 1);
  }
  ~EnvOverride() {
    if (had_) ::setenv(name_, old_.c_str(), 1);
    else ::unsetenv(name_);
  }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_script(const std::string& path, const std::string& body) {
  std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
  ::chmod(path.c_str(), 0755);
}

bool have_tool(const char* name) {
  return std::system((std::string("command -v ") + name + " >/dev/null 2>&1").c_str()) == 0;
}

// "#d62728" -> "rgb(214,39,40)", how lstopo's SVG writes fills.
std::string rgb(const std::string& hex) {
  auto c = [&](int i) { return std::to_string(std::stoul(hex.substr(1 + 2 * i, 2), nullptr, 16)); };
  return "rgb(" + c(0) + "," + c(1) + "," + c(2) + ")";
}

// Raptor Lake (P-cores 0-11, E-cores 12-19, one node): pool 0-17 with 8 GiB,
// pe-split over the pool would take everything, so the instances are made by
// hand: pcores 0-11, ecores 12-15; 16-17 stay free, 18-19 are the host's.
struct RaptorFixture {
  Topology topo = load(test::kRaptorLake);
  Partition part;
  RaptorFixture() {
    part = pool_of(topo, *CpuSet::parse("0-17"), 8 * kGiB);
    Instance p;
    p.id = 1, p.name = "pcores", p.cpus = *CpuSet::parse("0-11"), p.memory = {{0, 2 * kGiB}};
    Instance e;
    e.id = 2, e.name = "ecores", e.cpus = *CpuSet::parse("12-15"), e.memory = {{0, 1 * kGiB}};
    part.add(p);
    part.add(e);
  }
};

const PictureEntry* entry(const PictureKey& key, const std::string& name) {
  for (const auto& e : key.instances)
    if (e.name == name) return &e;
  return nullptr;
}

unsigned channel(const std::string& hex, int i) { return std::stoul(hex.substr(1 + 2 * i, 2), nullptr, 16); }

TEST(PictureFormat, ByExtension) {
  EXPECT_EQ(*picture_format("out.svg"), PictureFormat::kSvg);
  EXPECT_EQ(*picture_format("/x/y/OUT.PNG"), PictureFormat::kPng);
  for (const char* bad : {"out.jpg", "out", "png", ".png", "out.svg.txt", ""}) {
    auto f = picture_format(bad);
    ASSERT_FALSE(f) << bad;
    EXPECT_EQ(f.error().code(), EINVAL);
    EXPECT_NE(f.error().to_string().find(".png or .svg"), std::string::npos) << f.error().to_string();
  }
}

TEST(PictureKey, PeSplitPlanGivesPWarmAndECool) {
  Topology t = load(test::kRaptorLake);
  Partition part = pool_of(t, t.all_pus(), 16 * kGiB);
  PlanRequest r;
  r.policy = PlanPolicy::PeSplit;
  auto plan = make_plan(t, part, r);
  ASSERT_TRUE(plan) << plan.error().to_string();
  for (const auto& ip : plan->instances) part.add(ip.instance);
  PictureKey key = picture_key(t, part);
  ASSERT_EQ(key.instances.size(), 2u);
  const PictureEntry* p = entry(key, "pcores");
  const PictureEntry* e = entry(key, "ecores");
  ASSERT_TRUE(p && e);
  EXPECT_EQ(p->kind, "P-cores");
  EXPECT_EQ(e->kind, "E-cores");
  EXPECT_NE(p->colour, e->colour);
  EXPECT_GT(channel(p->colour, 0), channel(p->colour, 2)) << "P-cores warm: " << p->colour;
  EXPECT_GT(channel(e->colour, 2), channel(e->colour, 0)) << "E-cores cool: " << e->colour;
  EXPECT_TRUE(key.host_cpus.empty());
  EXPECT_TRUE(key.free_cpus.empty());
  // The legend names each instance with its colour and CPUs.
  std::string legend;
  for (const auto& l : key.legend) legend += l + "\n";
  EXPECT_NE(legend.find("pcores: " + p->colour + ", cpus 0-11 (P-cores)"), std::string::npos) << legend;
  EXPECT_NE(legend.find("ecores: " + e->colour + ", cpus 12-19 (E-cores)"), std::string::npos) << legend;
}

TEST(PictureKey, ManyInstancesWithoutKindsGetDistinctColours) {
  Topology t = load(test::kEpyc9654);
  ASSERT_TRUE(t.kinds.empty());
  Partition part = pool_of(t, t.all_pus(), 0);
  for (uint32_t i = 0; i < 40; ++i) {
    Instance inst;
    inst.id = i + 1;
    inst.name = "i" + std::to_string(i);
    inst.cpus.insert(i);
    part.add(inst);
  }
  PictureKey key = picture_key(t, part);
  std::set<std::string> colours;
  for (const auto& e : key.instances) {
    EXPECT_EQ(e.kind, "");
    ASSERT_EQ(e.colour.size(), 7u);
    colours.insert(e.colour);
    EXPECT_TRUE(e.text_colour == "#000000" || e.text_colour == "#ffffff");
  }
  EXPECT_EQ(colours.size(), 40u);
  EXPECT_EQ(colours.count(kPictureFreeColour), 0u);
  EXPECT_EQ(key.free_cpus.count(), t.pus.size() - 40);
}

// The exported XML, read back with hwloc: instance PUs carry their colour and
// name, free PUs grey, host PUs nothing; labels and legend are there.
TEST(PictureAnnotate, ExportedXmlCarriesColoursPerPu) {
  RaptorFixture f;
  PictureKey key = picture_key(f.topo, f.part);
  Scratch dir;
  ASSERT_TRUE(annotate_topology(f.topo, key, dir / "a.xml"));

  hwloc_topology_t t;
  ASSERT_EQ(hwloc_topology_init(&t), 0);
  ASSERT_EQ(hwloc_topology_set_xml(t, (dir / "a.xml").c_str()), 0);
  ASSERT_EQ(hwloc_topology_set_type_filter(t, HWLOC_OBJ_MISC, HWLOC_TYPE_FILTER_KEEP_ALL), 0);
  ASSERT_EQ(hwloc_topology_load(t), 0);
  const PictureEntry* p = entry(key, "pcores");
  const PictureEntry* e = entry(key, "ecores");
  for (uint32_t cpu = 0; cpu < 20; ++cpu) {
    hwloc_obj_t pu = hwloc_get_pu_obj_by_os_index(t, cpu);
    ASSERT_NE(pu, nullptr) << cpu;
    const char* st = hwloc_obj_get_info_by_name(pu, "lstopoStyle");
    const char* owner = hwloc_obj_get_info_by_name(pu, "mkernelInstance");
    if (cpu <= 15) {
      const PictureEntry* want = cpu <= 11 ? p : e;
      ASSERT_NE(st, nullptr) << cpu;
      EXPECT_EQ(std::string(st), "Background=" + want->colour + ";Text=" + want->text_colour) << cpu;
      ASSERT_NE(owner, nullptr);
      EXPECT_EQ(std::string(owner), want->name);
    } else if (cpu <= 17) {
      ASSERT_NE(st, nullptr) << cpu;
      EXPECT_EQ(std::string(st), std::string("Background=") + kPictureFreeColour + ";Text=#000000");
      EXPECT_EQ(owner, nullptr);
    } else {
      EXPECT_EQ(st, nullptr) << "host cpu " << cpu << " must stay plain";
      EXPECT_EQ(owner, nullptr);
    }
  }
  // Labels: one per instance in the package, one per instance in node 0.
  std::set<std::string> labels;
  for (hwloc_obj_t m = nullptr; (m = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_MISC, m)) != nullptr;) {
    labels.insert(std::string(m->parent->type == HWLOC_OBJ_NUMANODE ? "node:" : "pkg:") + m->name);
    const char* st = hwloc_obj_get_info_by_name(m, "lstopoStyle");
    ASSERT_NE(st, nullptr) << m->name;
  }
  EXPECT_EQ(labels, (std::set<std::string>{"pkg:pcores: cpus 0-11", "pkg:ecores: cpus 12-15", "node:pcores: 2 GiB",
                                           "node:ecores: 1 GiB"}));
  // Node 0 holds two instances' memory: its box stays plain.
  EXPECT_EQ(hwloc_obj_get_info_by_name(hwloc_get_numanode_obj_by_os_index(t, 0), "lstopoStyle"), nullptr);
  // Legend lines on the root.
  hwloc_obj_t root = hwloc_get_root_obj(t);
  std::string legend;
  for (unsigned i = 0; i < root->infos_count; ++i)
    if (std::string(root->infos[i].name) == "lstopoLegend") legend += std::string(root->infos[i].value) + "\n";
  EXPECT_NE(legend.find("cpus 0-11 (P-cores), 2 GiB on node 0"), std::string::npos) << legend;
  EXPECT_NE(legend.find(std::string("free: ") + kPictureFreeColour + ", cpus 16-17 (in the pool, no instance)"),
            std::string::npos)
      << legend;
  EXPECT_NE(legend.find("host: plain, cpus 18-19"), std::string::npos) << legend;
  hwloc_topology_destroy(t);
}

TEST(PictureAnnotate, OneInstanceOnANodeColoursTheNode) {
  RaptorFixture f;
  f.part.remove("ecores");
  PictureKey key = picture_key(f.topo, f.part);
  Scratch dir;
  ASSERT_TRUE(annotate_topology(f.topo, key, dir / "a.xml"));
  hwloc_topology_t t;
  ASSERT_EQ(hwloc_topology_init(&t), 0);
  ASSERT_EQ(hwloc_topology_set_xml(t, (dir / "a.xml").c_str()), 0);
  ASSERT_EQ(hwloc_topology_load(t), 0);
  const char* st = hwloc_obj_get_info_by_name(hwloc_get_numanode_obj_by_os_index(t, 0), "lstopoStyle");
  ASSERT_NE(st, nullptr);
  EXPECT_EQ(std::string(st), "Background=" + key.instances[0].colour + ";Text=" + key.instances[0].text_colour);
  hwloc_topology_destroy(t);
}

TEST(PictureAnnotate, StateFromAnotherMachineIsRefused) {
  RaptorFixture f;
  Scratch dir;
  Partition cpu_part = f.part;
  cpu_part.find("ecores")->cpus.insert(40);
  auto r = annotate_topology(f.topo, picture_key(f.topo, cpu_part), dir / "a.xml");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), EINVAL);
  EXPECT_NE(r.error().to_string().find("cpu 40 of instance 'ecores'"), std::string::npos) << r.error().to_string();

  Partition node_part = f.part;
  node_part.find("pcores")->memory.push_back({3, kGiB});
  r = annotate_topology(f.topo, picture_key(f.topo, node_part), dir / "a.xml");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), EINVAL);
  EXPECT_NE(r.error().to_string().find("node 3"), std::string::npos) << r.error().to_string();
}

class PictureDraw : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_tool("lstopo-no-graphics") && !have_tool("lstopo"))
      GTEST_SKIP() << "lstopo not installed (bash scripts/install-deps.sh installs hwloc-nox)";
  }
  RaptorFixture f;
  Scratch dir;
  Scratch tmp;  // TMPDIR during the draw: must be empty after it
};

TEST_F(PictureDraw, SvgNamesAndColoursEveryInstance) {
  EnvOverride t("TMPDIR", tmp.path());
  auto r = draw_partition(f.topo, f.part, dir / "p.svg");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->format, PictureFormat::kSvg);
  std::string svg = slurp(dir / "p.svg");
  EXPECT_EQ(r->bytes, svg.size());
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  auto vb = svg.find("viewBox='");
  ASSERT_NE(vb, std::string::npos);
  std::string box = svg.substr(vb, svg.find('\'', vb + 9) - vb);
  EXPECT_EQ(box.find("px"), std::string::npos) << box;
  for (const auto& e : r->key.instances) {
    EXPECT_NE(svg.find(e.name + ": cpus " + e.cpus.to_string()), std::string::npos) << e.name;
    EXPECT_NE(svg.find("fill='" + rgb(e.colour) + "'"), std::string::npos) << e.name << " " << e.colour;
  }
  EXPECT_NE(svg.find(rgb(kPictureFreeColour)), std::string::npos);
  EXPECT_EQ(dir.entries(), std::set<std::string>{"p.svg"});
  EXPECT_TRUE(tmp.entries().empty());
}

TEST_F(PictureDraw, PngIsAValidImage) {
  if (!have_tool("rsvg-convert")) GTEST_SKIP() << "rsvg-convert not installed (librsvg2-bin)";
  EnvOverride t("TMPDIR", tmp.path());
  auto r = draw_partition(f.topo, f.part, dir / "p.png");
  ASSERT_TRUE(r) << r.error().to_string();
  std::string png = slurp(dir / "p.png");
  ASSERT_GT(png.size(), 10000u);
  EXPECT_EQ(png.compare(0, 8, "\x89PNG\r\n\x1a\n", 8), 0);
  EXPECT_EQ(png.compare(12, 4, "IHDR"), 0);
  auto be32 = [&](std::size_t off) {
    return (uint32_t(uint8_t(png[off])) << 24) | (uint32_t(uint8_t(png[off + 1])) << 16) |
           (uint32_t(uint8_t(png[off + 2])) << 8) | uint32_t(uint8_t(png[off + 3]));
  };
  EXPECT_GT(be32(16), 400u);  // width
  EXPECT_GT(be32(20), 200u);  // height
  EXPECT_EQ(r->bytes, png.size());
  EXPECT_EQ(dir.entries(), std::set<std::string>{"p.png"});
  EXPECT_TRUE(tmp.entries().empty());
}

TEST_F(PictureDraw, UnknownExtensionWritesNothing) {
  auto r = draw_partition(f.topo, f.part, dir / "p.jpg");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), EINVAL);
  EXPECT_TRUE(dir.entries().empty());
}

TEST_F(PictureDraw, UnwritableDirectoryIsNamed) {
  auto r = draw_partition(f.topo, f.part, dir / "missing/p.svg");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ENOENT);
  EXPECT_NE(r.error().to_string().find("missing/p.svg"), std::string::npos) << r.error().to_string();
  EXPECT_TRUE(dir.entries().empty());
}

TEST_F(PictureDraw, MissingLstopoSaysWhatToInstall) {
  Scratch empty;
  EnvOverride path("PATH", empty.path());
  auto r = draw_partition(f.topo, f.part, dir / "p.svg");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ENOENT);
  EXPECT_NE(r.error().to_string().find("install hwloc-nox"), std::string::npos) << r.error().to_string();
  EXPECT_TRUE(dir.entries().empty());
}

TEST_F(PictureDraw, MissingRsvgConvertFailsPngOnly) {
  Scratch bin;
  std::string real = have_tool("lstopo-no-graphics") ? "lstopo-no-graphics" : "lstopo";
  write_script(bin / "lstopo-no-graphics", "exec /usr/bin/" + real + " \"$@\"");
  EnvOverride path("PATH", bin.path());
  std::ofstream(dir / "p.png") << "old";
  auto r = draw_partition(f.topo, f.part, dir / "p.png");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ENOENT);
  EXPECT_NE(r.error().to_string().find("install librsvg2-bin"), std::string::npos) << r.error().to_string();
  EXPECT_EQ(slurp(dir / "p.png"), "old");  // left as it was
  auto s = draw_partition(f.topo, f.part, dir / "p.svg");
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_EQ(dir.entries(), (std::set<std::string>{"p.png", "p.svg"}));
}

TEST_F(PictureDraw, FailingLstopoReportsItsMessage) {
  Scratch bin;
  write_script(bin / "lstopo-no-graphics", "echo 'lstopo: cannot draw this' >&2; exit 3");
  EnvOverride path("PATH", bin.path());
  EnvOverride t("TMPDIR", tmp.path());
  auto r = draw_partition(f.topo, f.part, dir / "p.svg");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), EIO);
  EXPECT_NE(r.error().to_string().find("status 3: lstopo: cannot draw this"), std::string::npos)
      << r.error().to_string();
  EXPECT_TRUE(dir.entries().empty());
  EXPECT_TRUE(tmp.entries().empty());
}

TEST_F(PictureDraw, HungLstopoIsKilledAtTheTimeout) {
  Scratch bin;
  write_script(bin / "lstopo-no-graphics", "exec sleep 30");
  EnvOverride path("PATH", bin.path() + ":/usr/bin:/bin");
  EnvOverride t("TMPDIR", tmp.path());
  auto start = std::chrono::steady_clock::now();
  auto r = draw_partition(f.topo, f.part, dir / "p.svg", PictureOptions{.timeout_ms = 300});
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ETIMEDOUT);
  EXPECT_LT(took, std::chrono::seconds(5));
  EXPECT_TRUE(dir.entries().empty());
  EXPECT_TRUE(tmp.entries().empty());
}

std::string run_cli(const std::string& cmd) {
  std::string out;
  if (FILE* p = ::popen((cmd + " 2>&1").c_str(), "r")) {
    char buf[4096];
    while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    ::pclose(p);
  }
  return out;
}

// The "done when": a pe-split plan of the recorded Raptor Lake, then
// `mkctl show --picture out.png --topology` shows P and E in different colours.
TEST_F(PictureDraw, MkctlShowPictureAfterPeSplitPlan) {
  const std::string mkctl = std::string(MK_BIN_DIR) + "/mkctl";
  if (::access(mkctl.c_str(), X_OK) != 0) GTEST_SKIP() << mkctl << " not built (ninja mkctl)";
  if (!have_tool("rsvg-convert")) GTEST_SKIP() << "rsvg-convert not installed (librsvg2-bin)";
  const std::string env = "MKERNEL_RUNTIME_DIR='" + tmp.path() + "' ";
  const std::string topo = " --topology '" + test::topo_path(test::kRaptorLake) + "'";
  std::string plan = run_cli(env + mkctl + " plan --policy pe-split --apply" + topo);
  ASSERT_NE(plan.find("applied"), std::string::npos) << plan;
  std::string out = run_cli(env + mkctl + " show --json --picture '" + (dir / "out.png") + "'" + topo);
  ASSERT_NE(out.find("\"picture\":{\"path\":\"" + (dir / "out.png") + "\",\"format\":\"png\""), std::string::npos)
      << out;
  std::map<std::string, std::string> colour_of_kind;
  std::regex entry_re("\"name\":\"(\\w+)\",\"colour\":\"(#[0-9a-f]{6})\",\"kind\":\"([^\"]*)\"");
  for (std::sregex_iterator it(out.begin(), out.end(), entry_re), end; it != end; ++it)
    colour_of_kind[(*it)[3]] = (*it)[2];
  ASSERT_EQ(colour_of_kind.size(), 2u) << out;
  ASSERT_TRUE(colour_of_kind.count("P-cores") && colour_of_kind.count("E-cores")) << out;
  EXPECT_NE(colour_of_kind["P-cores"], colour_of_kind["E-cores"]);
  std::string png = slurp(dir / "out.png");
  ASSERT_GT(png.size(), 10000u);
  EXPECT_EQ(png.compare(0, 8, "\x89PNG\r\n\x1a\n", 8), 0);
  // A bad extension is a usage error (2) and writes nothing.
  int rc = std::system((env + mkctl + " show --picture '" + (dir / "out.gif") + "'" + topo + " >/dev/null 2>&1").c_str());
  EXPECT_EQ(WEXITSTATUS(rc), 2);
  EXPECT_EQ(dir.entries(), std::set<std::string>{"out.png"});
}

}  // namespace
}  // namespace mk
