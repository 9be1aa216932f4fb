// Tests for InstanceCgroup::make_mems_exclusive (v1 cpuset.mem_exclusive,
// issue #7) on fake v1/v2 trees, and on this machine's v1 cpuset as root.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "mkernel/cgroup.h"

namespace fs = std::filesystem;

namespace mk {
namespace {

class Tree {
 public:
  explicit Tree(const std::string& name) {
    dir_ = fs::path(::testing::TempDir()) / ("mk_cgiso_" + std::to_string(::getpid()) + "_" + name);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  ~Tree() { fs::remove_all(dir_); }
  SysRoot root() const { return SysRoot(dir_.string()); }
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

 private:
  fs::path dir_;
};

void v1_tree(const Tree& t) {
  t.write("/proc/self/mountinfo",
          "22 1 254:1 / / rw,relatime - ext4 /dev/vda rw\n"
          "33 22 0:30 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n");
  for (const std::string d : {"/sys/fs/cgroup/cpuset", "/sys/fs/cgroup/cpuset/mkernel",
                              "/sys/fs/cgroup/cpuset/mkernel/db"}) {
    const bool top = d == "/sys/fs/cgroup/cpuset";
    t.write(d + "/cpuset.cpus", top ? "0-3\n" : "");
    t.write(d + "/cpuset.mems", top ? "0\n" : "");
    t.write(d + "/cpuset.cpu_exclusive", top ? "1\n" : "0\n");
    t.write(d + "/cpuset.mem_exclusive", top ? "1\n" : "0\n");
    t.write(d + "/cgroup.procs", "");
  }
}

TEST(CgroupMemExclusive, V1ParentThenInstance) {
  Tree t("v1");
  v1_tree(t);
  auto l = detect_cgroups(t.root());
  ASSERT_TRUE(l);
  auto cg = InstanceCgroup::create(t.root(), *l, "db", CpuSet::of({1}), CpuSet::of({0}), {});
  ASSERT_TRUE(cg) << cg.error().to_string();
  Guarantee g = cg->make_mems_exclusive();
  EXPECT_TRUE(g.in_force) << g.detail;
  EXPECT_EQ(g.name, "memory nodes");
  EXPECT_EQ(g.detail, "v1 mem_exclusive, node(s) 0");
  EXPECT_EQ(t.read("/sys/fs/cgroup/cpuset/mkernel/cpuset.mem_exclusive"), "1\n");
  EXPECT_EQ(t.read("/sys/fs/cgroup/cpuset/mkernel/db/cpuset.mem_exclusive"), "1\n");
  bool listed = false;
  for (const auto& x : cg->guarantees()) listed |= x == g;
  EXPECT_TRUE(listed);
}

TEST(CgroupMemExclusive, V1RefusalIsReportedWithTheReason) {
  Tree t("v1_refused");
  v1_tree(t);
  auto l = detect_cgroups(t.root());
  ASSERT_TRUE(l);
  auto cg = InstanceCgroup::create(t.root(), *l, "db", CpuSet::of({1}), CpuSet::of({0}), {});
  ASSERT_TRUE(cg) << cg.error().to_string();
  // A directory in place of the file: the write fails as a kernel refusal.
  const std::string f = t.root().path("/sys/fs/cgroup/cpuset/mkernel/db/cpuset.mem_exclusive");
  fs::remove(f);
  fs::create_directories(f);
  Guarantee g = cg->make_mems_exclusive();
  EXPECT_FALSE(g.in_force);
  EXPECT_EQ(g.detail, "node(s) 0 not exclusive (kernel refused mem_exclusive=1 on "
                      "/sys/fs/cgroup/cpuset/mkernel/db: Is a directory; another cpuset uses these nodes?)");
}

TEST(CgroupMemExclusive, V2HasNone) {
  Tree t("v2");
  t.write("/proc/self/mountinfo",
          "25 22 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n");
  t.write("/sys/fs/cgroup/cgroup.controllers", "cpuset memory\n");
  t.write("/sys/fs/cgroup/cgroup.subtree_control", "");
  for (const std::string d : {"/sys/fs/cgroup/mkernel", "/sys/fs/cgroup/mkernel/db"}) {
    t.write(d + "/cgroup.subtree_control", "");
    t.write(d + "/cpuset.cpus", "");
    t.write(d + "/cpuset.mems", "");
    t.write(d + "/cpuset.cpus.partition", "member\n");
    t.write(d + "/cgroup.procs", "");
  }
  auto l = detect_cgroups(t.root());
  ASSERT_TRUE(l);
  auto cg = InstanceCgroup::create(t.root(), *l, "db", CpuSet::of({1}), CpuSet::of({0}), {});
  ASSERT_TRUE(cg) << cg.error().to_string();
  Guarantee g = cg->make_mems_exclusive();
  EXPECT_FALSE(g.in_force);
  EXPECT_NE(g.detail.find("cgroup v2 has no mem_exclusive"), std::string::npos) << g.detail;
}

// This machine's v1 cpuset (root): in force when no sibling cpuset of the
// test's parent holds node 0, refused by the kernel (EINVAL) otherwise.
TEST(CgroupMemExclusiveLive, V1OnThisMachine) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to write /sys/fs/cgroup/cpuset";
  SysRoot root("/");
  auto l = detect_cgroups(root);
  ASSERT_TRUE(l) << l.error().to_string();
  if (l->cpuset.version != CgroupVersion::kV1 || !l->cpuset.writable)
    GTEST_SKIP() << "no writable v1 cpuset hierarchy here: " << l->to_string();
  l->parent = "mkernel-iso-test-" + std::to_string(::getpid());
  auto all = CpuSet::parse(root.read_file(l->cpuset.mount + "/cpuset.effective_cpus").value_or("0"));
  ASSERT_TRUE(all);
  auto cg = InstanceCgroup::create(root, *l, "m", CpuSet::of({static_cast<uint32_t>(all->last())}),
                                   CpuSet::of({0}), {});
  ASSERT_TRUE(cg) << cg.error().to_string();
  Guarantee g = cg->make_mems_exclusive();
  std::printf("live: %s\n", to_line(g).c_str());
  const std::string parent = l->cpuset.mount + "/" + l->parent;
  auto child_flag = root.read_file(cg->cpuset_dir() + "/cpuset.mem_exclusive");
  // Siblings of the parent holding node 0 (another runtime's instances).
  bool sibling_on_node0 = false;
  for (const auto& e : fs::directory_iterator(l->cpuset.mount)) {
    if (!e.is_directory() || e.path().string() == parent) continue;
    auto m = CpuSet::parse(root.read_file(e.path().string() + "/cpuset.mems").value_or(""));
    if (m && m->contains(0)) sibling_on_node0 = true;
  }
  auto destroyed = cg->destroy();
  ASSERT_TRUE(destroyed) << destroyed.error().to_string();
  EXPECT_FALSE(fs::exists(parent));
  if (g.in_force) {
    ASSERT_TRUE(child_flag);
    EXPECT_EQ(*child_flag, "1\n");
    EXPECT_FALSE(sibling_on_node0);
  } else {
    EXPECT_NE(g.detail.find("kernel refused mem_exclusive=1"), std::string::npos) << g.detail;
    EXPECT_TRUE(sibling_on_node0) << "refused with no sibling on node 0: " << g.detail;
  }
}

}  // namespace
}  // namespace mk
