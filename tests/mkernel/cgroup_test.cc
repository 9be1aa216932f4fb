// Tests for mkernel/cgroup.h: layout detection and instance cgroups on fake
// v1, v2 and no-cgroup trees, plus the real v1 cpuset of this machine when
// running as root.
#include "mkernel/cgroup.h"

#include <fcntl.h>

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "mkernel/confine.h"

namespace fs = std::filesystem;

namespace mk {
namespace {

class FakeTree {
 public:
  explicit FakeTree(const std::string& name) {
    dir_ = fs::path(::testing::TempDir()) /
           ("mk_cgroup_" + std::to_string(::getpid()) + "_" + name);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  ~FakeTree() { fs::remove_all(dir_); }
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
  void mkdir(const std::string& abs) const { fs::create_directories(dir_ / abs.substr(1)); }
  // A cgroup directory as the kernel would populate it.
  void cgroup(const std::string& abs, std::initializer_list<std::pair<std::string, std::string>> files) const {
    mkdir(abs);
    for (const auto& [f, v] : files) write(abs + "/" + f, v);
  }

 private:
  fs::path dir_;
};

const char* kV1MountInfo =
    "22 1 254:1 / / rw,relatime - ext4 /dev/vda rw\n"
    "30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "33 30 0:30 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
    "34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

void make_v1_tree(const FakeTree& t, const std::string& child_procs = "") {
  t.write("/proc/self/mountinfo", kV1MountInfo);
  t.write("/sys/fs/cgroup/unified/cgroup.controllers", "hugetlb\n");
  t.cgroup("/sys/fs/cgroup/cpuset", {{"cpuset.cpus", "0-3\n"}, {"cpuset.mems", "0\n"},
                                     {"cpuset.cpu_exclusive", "1\n"}, {"cgroup.procs", "1\n"}});
  for (const char* d : {"/sys/fs/cgroup/cpuset/mkernel", "/sys/fs/cgroup/cpuset/mkernel/db"})
    t.cgroup(d, {{"cpuset.cpus", ""}, {"cpuset.mems", ""}, {"cpuset.cpu_exclusive", "0"},
                 {"cgroup.procs", std::string(d).ends_with("db") ? child_procs : ""}});
  t.cgroup("/sys/fs/cgroup/memory", {{"memory.limit_in_bytes", ""}, {"cgroup.procs", ""}});
  t.cgroup("/sys/fs/cgroup/memory/mkernel", {{"memory.limit_in_bytes", ""}, {"cgroup.procs", ""}});
  t.cgroup("/sys/fs/cgroup/memory/mkernel/db", {{"memory.limit_in_bytes", ""}, {"cgroup.procs", ""}});
}

void make_v2_tree(const FakeTree& t, const std::string& partition) {
  t.write("/proc/self/mountinfo",
          "22 1 254:1 / / rw,relatime - ext4 /dev/vda rw\n"
          "25 22 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec - cgroup2 cgroup2 rw,nsdelegate\n");
  t.cgroup("/sys/fs/cgroup", {{"cgroup.controllers", "cpuset cpu io memory pids\n"},
                              {"cgroup.subtree_control", ""}, {"cgroup.procs", "1\n"}});
  t.cgroup("/sys/fs/cgroup/mkernel",
           {{"cgroup.controllers", "cpuset memory\n"}, {"cgroup.subtree_control", ""},
            {"cpuset.cpus", ""}, {"cpuset.mems", ""}, {"cpuset.cpus.partition", "member\n"},
            {"cgroup.procs", ""}});
  t.cgroup("/sys/fs/cgroup/mkernel/db",
           {{"cpuset.cpus", ""}, {"cpuset.mems", ""}, {"cpuset.cpus.partition", partition},
            {"memory.max", ""}, {"cgroup.procs", ""}});
}

const Guarantee* find(const Guarantees& g, const std::string& name) {
  for (const auto& x : g)
    if (x.name == name) return &x;
  return nullptr;
}

TEST(CgroupDetect, V1Hybrid) {
  FakeTree t("detect_v1");
  make_v1_tree(t);
  auto l = detect_cgroups(t.root());
  ASSERT_TRUE(l) << l.error().to_string();
  EXPECT_EQ(l->cpuset.version, CgroupVersion::kV1);
  EXPECT_EQ(l->cpuset.mount, "/sys/fs/cgroup/cpuset");
  EXPECT_TRUE(l->cpuset.writable);
  EXPECT_EQ(l->memory.version, CgroupVersion::kV1);
  EXPECT_EQ(l->memory.mount, "/sys/fs/cgroup/memory");
  EXPECT_EQ(l->unified_mount, "/sys/fs/cgroup/unified");
  EXPECT_FALSE(l->v2_partition);
  EXPECT_NE(l->to_string().find("cpuset: v1 at /sys/fs/cgroup/cpuset"), std::string::npos);
}

TEST(CgroupDetect, V2Unified) {
  FakeTree t("detect_v2");
  make_v2_tree(t, "");
  auto l = detect_cgroups(t.root());
  ASSERT_TRUE(l) << l.error().to_string();
  EXPECT_EQ(l->cpuset.version, CgroupVersion::kV2);
  EXPECT_EQ(l->memory.version, CgroupVersion::kV2);
  EXPECT_EQ(l->cpuset.mount, "/sys/fs/cgroup");
  EXPECT_TRUE(l->v2_partition);
}

TEST(CgroupDetect, ProcMountsFallbackAndReadOnly) {
  FakeTree t("detect_mounts");
  t.write("/proc/mounts",
          "cgroup /sys/fs/cgroup/cpuset cgroup ro,relatime,cpuset 0 0\n"
          "cgroup /sys/fs/cgroup/mem\\040ory cgroup rw,memory 0 0\n");
  t.mkdir("/sys/fs/cgroup/cpuset");
  t.mkdir("/sys/fs/cgroup/mem ory");
  auto l = detect_cgroups(t.root());
  ASSERT_TRUE(l) << l.error().to_string();
  EXPECT_EQ(l->cpuset.version, CgroupVersion::kV1);
  EXPECT_FALSE(l->cpuset.writable);
  EXPECT_NE(l->cpuset.why_not.find("read-only"), std::string::npos);
  EXPECT_EQ(l->memory.mount, "/sys/fs/cgroup/mem ory");
  EXPECT_TRUE(l->memory.writable);
}

TEST(CgroupDetect, NoMountTableIsEnoent) {
  FakeTree t("detect_none");
  auto l = detect_cgroups(t.root());
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code(), ENOENT);
}

TEST(InstanceCgroup, V1CreateAttachDestroyBusy) {
  FakeTree t("v1");
  make_v1_tree(t);
  auto l = detect_cgroups(t.root());
  ASSERT_TRUE(l);
  auto cg = InstanceCgroup::create(t.root(), *l, "db", CpuSet::of({1}), CpuSet::of({0}),
                                   {.memory_limit = 64ull << 20});
  ASSERT_TRUE(cg) << cg.error().to_string();
  const std::string d = "/sys/fs/cgroup/cpuset/mkernel/db";
  EXPECT_EQ(t.read(d + "/cpuset.cpus"), "1");
  EXPECT_EQ(t.read(d + "/cpuset.mems"), "0");
  EXPECT_EQ(t.read(d + "/cpuset.cpu_exclusive"), "1");
  EXPECT_EQ(t.read("/sys/fs/cgroup/cpuset/mkernel/cpuset.cpus"), "1");
  EXPECT_EQ(t.read("/sys/fs/cgroup/cpuset/mkernel/cpuset.cpu_exclusive"), "1");
  EXPECT_EQ(t.read("/sys/fs/cgroup/memory/mkernel/db/memory.limit_in_bytes"), "67108864");
  EXPECT_EQ(cg->cpuset_dir(), d);
  const Guarantee* c = find(cg->guarantees(), "cpuset");
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->in_force);
  EXPECT_EQ(c->detail, "v1 exclusive, cpus 1");
  const Guarantee* m = find(cg->guarantees(), "memory cgroup");
  ASSERT_NE(m, nullptr);
  EXPECT_TRUE(m->in_force);
  EXPECT_EQ(m->detail, "v1 limit 67108864");

  ASSERT_TRUE(cg->attach(4321));
  EXPECT_EQ(t.read(d + "/cgroup.procs"), "4321");
  EXPECT_EQ(t.read("/sys/fs/cgroup/memory/mkernel/db/cgroup.procs"), "4321");
  auto pids = cg->pids();
  ASSERT_TRUE(pids);
  EXPECT_EQ(*pids, std::vector<pid_t>{4321});
  auto r = cg->destroy();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), EBUSY);
  EXPECT_NE(std::string(r.error().detail()).find("4321"), std::string::npos);

  auto again = InstanceCgroup::open_existing(t.root(), *l, "db");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->cpuset_dir(), d);
  auto none = InstanceCgroup::open_existing(t.root(), *l, "nope");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), ENOENT);
}

TEST(InstanceCgroup, V1ParentWidensToContainChild) {
  FakeTree t("v1_widen");
  make_v1_tree(t);
  t.write("/sys/fs/cgroup/cpuset/mkernel/cpuset.cpus", "0");
  t.write("/sys/fs/cgroup/cpuset/mkernel/cpuset.mems", "0");
  auto l = detect_cgroups(t.root());
  ASSERT_TRUE(l);
  auto cg = InstanceCgroup::create(t.root(), *l, "db", CpuSet::of({2, 3}), CpuSet::of({0}), {});
  ASSERT_TRUE(cg) << cg.error().to_string();
  EXPECT_EQ(t.read("/sys/fs/cgroup/cpuset/mkernel/cpuset.cpus"), "0,2-3");
  const Guarantee* m = find(cg->guarantees(), "memory cgroup");
  ASSERT_NE(m, nullptr);
  EXPECT_FALSE(m->in_force);
  EXPECT_EQ(m->detail, "no (no limit requested)");
}

TEST(InstanceCgroup, V1ExclusiveRefusedIsReportedNotHidden) {
  FakeTree t("v1_excl");
  make_v1_tree(t);
  // A directory in place of the file: the write fails like a kernel refusal.
  fs::remove(fs::path(t.root().path("/sys/fs/cgroup/cpuset/mkernel/db/cpuset.cpu_exclusive")));
  t.mkdir("/sys/fs/cgroup/cpuset/mkernel/db/cpuset.cpu_exclusive");
  auto l = detect_cgroups(t.root());
  ASSERT_TRUE(l);
  auto cg = InstanceCgroup::create(t.root(), *l, "db", CpuSet::of({1}), CpuSet::of({0}), {});
  ASSERT_TRUE(cg) << cg.error().to_string();
  const Guarantee* c = find(cg->guarantees(), "cpuset");
  ASSERT_NE(c, nullptr);
  EXPECT_FALSE(c->in_force);
  EXPECT_NE(c->detail.find("not exclusive (kernel refused cpu_exclusive=1"), std::string::npos)
      << c->detail;
  auto strict = InstanceCgroup::create(t.root(), *l, "db", CpuSet::of({1}), CpuSet::of({0}),
                                       {.require_exclusive = true});
  ASSERT_FALSE(strict);
  EXPECT_EQ(strict.error().code(), EISDIR);
}

TEST(InstanceCgroup, ExistingDirWithTasksIsBusy) {
  FakeTree t("v1_busy");
  make_v1_tree(t, "777\n");
  auto l = detect_cgroups(t.root());
  ASSERT_TRUE(l);
  auto cg = InstanceCgroup::create(t.root(), *l, "db", CpuSet::of({1}), CpuSet::of({0}), {});
  ASSERT_FALSE(cg);
  EXPECT_EQ(cg.error().code(), EBUSY);
  EXPECT_NE(std::string(cg.error().detail()).find("777"), std::string::npos);
}

TEST(InstanceCgroup, KernelRefusalOfCpusFailsAndRollsBackNewDirs) {
  FakeTree t("v1_enoent");
  make_v1_tree(t);
  // "ghost" is created by create() itself, but a fake tree has no kernel to
  // populate it: writing cpuset.cpus fails (ENOENT) and the dir is removed.
  auto l = detect_cgroups(t.root());
  ASSERT_TRUE(l);
  auto cg = InstanceCgroup::create(t.root(), *l, "ghost", CpuSet::of({1}), CpuSet::of({0}), {});
  ASSERT_FALSE(cg);
  EXPECT_EQ(cg.error().code(), ENOENT);
  EXPECT_NE(std::string(cg.error().detail()).find("ghost/cpuset.cpus"), std::string::npos);
  EXPECT_FALSE(t.root().exists("/sys/fs/cgroup/cpuset/mkernel/ghost"));
}

TEST(InstanceCgroup, BadRequests) {
  FakeTree t("v1_bad");
  make_v1_tree(t);
  auto l = detect_cgroups(t.root());
  ASSERT_TRUE(l);
  auto a = InstanceCgroup::create(t.root(), *l, "db", CpuSet{}, CpuSet::of({0}), {});
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().code(), EINVAL);
  auto b = InstanceCgroup::create(t.root(), *l, "db", CpuSet::of({1}), CpuSet{}, {});
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code(), EINVAL);
  auto c = InstanceCgroup::create(t.root(), *l, "../x", CpuSet::of({1}), CpuSet::of({0}), {});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code(), EINVAL);
}

TEST(InstanceCgroup, V2IsolatedPartition) {
  FakeTree t("v2_ok");
  make_v2_tree(t, "");
  auto l = detect_cgroups(t.root());
  ASSERT_TRUE(l);
  auto cg = InstanceCgroup::create(t.root(), *l, "db", CpuSet::of({2, 3}), CpuSet::of({0}),
                                   {.memory_limit = 1ull << 30});
  ASSERT_TRUE(cg) << cg.error().to_string();
  const std::string d = "/sys/fs/cgroup/mkernel/db";
  EXPECT_EQ(t.read(d + "/cpuset.cpus"), "2-3");
  EXPECT_EQ(t.read(d + "/cpuset.cpus.partition"), "isolated");
  EXPECT_EQ(t.read(d + "/memory.max"), "1073741824");
  EXPECT_EQ(t.read("/sys/fs/cgroup/mkernel/cpuset.cpus"), "2-3");
  EXPECT_EQ(t.read("/sys/fs/cgroup/cgroup.subtree_control").substr(0, 1), "+");
  EXPECT_EQ(cg->cpuset_dir(), cg->memory_dir());
  const Guarantee* c = find(cg->guarantees(), "cpuset");
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->in_force);
  EXPECT_EQ(c->detail, "v2 isolated partition, cpus 2-3");
  const Guarantee* m = find(cg->guarantees(), "memory cgroup");
  ASSERT_NE(m, nullptr);
  EXPECT_TRUE(m->in_force);
  EXPECT_EQ(m->detail, "v2 limit 1073741824");
  ASSERT_TRUE(cg->attach(55));
  EXPECT_EQ(t.read(d + "/cgroup.procs"), "55");
}

TEST(InstanceCgroup, V2InvalidPartitionIsAnErrorNotASuccess) {
  const std::string invalid = "isolated invalid (Cpu list in cpuset.cpus not exclusive)\n";
  {
    FakeTree t("v2_invalid");
    make_v2_tree(t, invalid);
    auto l = detect_cgroups(t.root());
    ASSERT_TRUE(l);
    auto cg = InstanceCgroup::create(t.root(), *l, "db", CpuSet::of({1}), CpuSet::of({0}), {});
    ASSERT_TRUE(cg) << cg.error().to_string();
    const Guarantee* c = find(cg->guarantees(), "cpuset");
    ASSERT_NE(c, nullptr);
    EXPECT_FALSE(c->in_force);
    EXPECT_NE(c->detail.find("isolated invalid (Cpu list in cpuset.cpus not exclusive)"),
              std::string::npos)
        << c->detail;
    // Reverted to a plain member.
    EXPECT_EQ(t.read("/sys/fs/cgroup/mkernel/db/cpuset.cpus.partition").substr(0, 6), "member");
  }
  {
    FakeTree t("v2_invalid_strict");
    make_v2_tree(t, invalid);
    auto l = detect_cgroups(t.root());
    ASSERT_TRUE(l);
    auto cg = InstanceCgroup::create(t.root(), *l, "db", CpuSet::of({1}), CpuSet::of({0}),
                                     {.require_exclusive = true});
    ASSERT_FALSE(cg);
    EXPECT_EQ(cg.error().code(), EINVAL);
    EXPECT_NE(std::string(cg.error().detail()).find("not exclusive"), std::string::npos);
  }
}

// A CPU move (cpu_move.h): growing widens the parent first, shrinking leaves
// it; cpu_exclusive stays; the guarantee follows the new cpus.
TEST(InstanceCgroupSetCpus, V1GrowAndShrink) {
  FakeTree t("v1_set");
  make_v1_tree(t);
  auto l = detect_cgroups(t.root());
  ASSERT_TRUE(l);
  auto cg = InstanceCgroup::create(t.root(), *l, "db", CpuSet::of({1, 2}), CpuSet::of({0}), {});
  ASSERT_TRUE(cg) << cg.error().to_string();
  const std::string d = "/sys/fs/cgroup/cpuset/mkernel/db";
  ASSERT_TRUE(cg->set_cpus(CpuSet::of({1, 2, 3})));
  EXPECT_EQ(t.read("/sys/fs/cgroup/cpuset/mkernel/cpuset.cpus"), "1-3");
  EXPECT_EQ(t.read(d + "/cpuset.cpus"), "1-3");
  EXPECT_EQ(t.read(d + "/cpuset.cpu_exclusive"), "1");
  EXPECT_EQ(t.read("/sys/fs/cgroup/cpuset/mkernel/db/cpuset.mems"), "0");
  const Guarantee* c = find(cg->guarantees(), "cpuset");
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->in_force);
  EXPECT_EQ(c->detail, "v1 exclusive, cpus 1-3");
  EXPECT_EQ(cg->guarantees().size(), 2u);  // replaced, not appended
  ASSERT_TRUE(cg->set_cpus(CpuSet::of({3})));
  EXPECT_EQ(t.read(d + "/cpuset.cpus"), "3");  // read back exactly, not "3-3"
  EXPECT_EQ(t.read("/sys/fs/cgroup/cpuset/mkernel/cpuset.cpus"), "1-3");  // the parent is never narrowed
  EXPECT_EQ(find(cg->guarantees(), "cpuset")->detail, "v1 exclusive, cpus 3");
  auto empty = cg->set_cpus(CpuSet{});
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code(), EINVAL);
  EXPECT_NE(std::string(empty.error().detail()).find("at least one cpu"), std::string::npos);
  EXPECT_EQ(t.read(d + "/cpuset.cpus"), "3");
}

TEST(InstanceCgroupSetCpus, RefusedWriteNamesFileAndValue) {
  FakeTree t("v1_set_refused");
  make_v1_tree(t);
  auto l = detect_cgroups(t.root());
  ASSERT_TRUE(l);
  auto cg = InstanceCgroup::create(t.root(), *l, "db", CpuSet::of({1}), CpuSet::of({0}), {});
  ASSERT_TRUE(cg) << cg.error().to_string();
  // /dev/full refuses every write (ENOSPC), as the kernel refuses a CPU.
  const std::string f = "/sys/fs/cgroup/cpuset/mkernel/db/cpuset.cpus";
  fs::remove(fs::path(t.root().path(f)));
  fs::create_symlink("/dev/full", fs::path(t.root().path(f)));
  auto r = cg->set_cpus(CpuSet::of({1, 2}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ENOSPC);
  EXPECT_NE(std::string(r.error().detail()).find("writing '1-2' to " + t.root().path(f)), std::string::npos)
      << r.error().detail();
  EXPECT_TRUE(find(cg->guarantees(), "cpuset")->in_force);
  EXPECT_EQ(find(cg->guarantees(), "cpuset")->detail, "v1 exclusive, cpus 1");  // unchanged
  // The parent refusing to widen: nothing written to the child.
  fs::remove(fs::path(t.root().path(f)));
  t.write(f, "1");
  fs::remove(fs::path(t.root().path("/sys/fs/cgroup/cpuset/mkernel/cpuset.cpus")));
  t.mkdir("/sys/fs/cgroup/cpuset/mkernel/cpuset.cpus");
  auto p = cg->set_cpus(CpuSet::of({1, 2}));
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code(), EISDIR);
  EXPECT_NE(std::string(p.error().detail()).find("mkernel/cpuset.cpus"), std::string::npos) << p.error().detail();
  EXPECT_EQ(t.read(f), "1");
}

TEST(InstanceCgroupSetCpus, V1ExclusiveRetriedWhenNotInForce) {
  FakeTree t("v1_set_excl");
  make_v1_tree(t);
  const std::string d = "/sys/fs/cgroup/cpuset/mkernel/db";
  fs::remove(fs::path(t.root().path(d + "/cpuset.cpu_exclusive")));
  t.mkdir(d + "/cpuset.cpu_exclusive");
  auto l = detect_cgroups(t.root());
  ASSERT_TRUE(l);
  auto cg = InstanceCgroup::create(t.root(), *l, "db", CpuSet::of({1}), CpuSet::of({0}), {});
  ASSERT_TRUE(cg) << cg.error().to_string();
  ASSERT_FALSE(find(cg->guarantees(), "cpuset")->in_force);
  ASSERT_TRUE(cg->set_cpus(CpuSet::of({1, 2})));  // still refused: reported, not an error
  EXPECT_FALSE(find(cg->guarantees(), "cpuset")->in_force);
  EXPECT_NE(find(cg->guarantees(), "cpuset")->detail.find("v1 cpus 1-2, not exclusive (kernel refused"),
            std::string::npos);
  fs::remove(fs::path(t.root().path(d + "/cpuset.cpu_exclusive")));
  t.write(d + "/cpuset.cpu_exclusive", "0");  // the overlapping sibling went away
  ASSERT_TRUE(cg->set_cpus(CpuSet::of({2})));
  EXPECT_EQ(t.read(d + "/cpuset.cpu_exclusive"), "1");
  EXPECT_TRUE(find(cg->guarantees(), "cpuset")->in_force);
  EXPECT_EQ(find(cg->guarantees(), "cpuset")->detail, "v1 exclusive, cpus 2");
}

TEST(InstanceCgroupSetCpus, V2PartitionReadBack) {
  FakeTree t("v2_set");
  make_v2_tree(t, "");
  auto l = detect_cgroups(t.root());
  ASSERT_TRUE(l);
  auto cg = InstanceCgroup::create(t.root(), *l, "db", CpuSet::of({2}), CpuSet::of({0}), {});
  ASSERT_TRUE(cg) << cg.error().to_string();
  const std::string d = "/sys/fs/cgroup/mkernel/db";
  ASSERT_TRUE(cg->set_cpus(CpuSet::of({2, 3})));
  EXPECT_EQ(t.read(d + "/cpuset.cpus"), "2-3");
  EXPECT_EQ(t.read("/sys/fs/cgroup/mkernel/cpuset.cpus"), "2-3");
  EXPECT_EQ(find(cg->guarantees(), "cpuset")->detail, "v2 isolated partition, cpus 2-3");
  // The kernel finds the new cpus unfit for a partition: never a success.
  t.write(d + "/cpuset.cpus.partition", "isolated invalid (Cpu list in cpuset.cpus not exclusive)\n");
  ASSERT_TRUE(cg->set_cpus(CpuSet::of({3})));
  const Guarantee* c = find(cg->guarantees(), "cpuset");
  ASSERT_NE(c, nullptr);
  EXPECT_FALSE(c->in_force);
  EXPECT_NE(c->detail.find("v2 cpus 3, not isolated (isolated invalid (Cpu list in cpuset.cpus not exclusive))"),
            std::string::npos)
      << c->detail;
  EXPECT_EQ(t.read(d + "/cpuset.cpus.partition").substr(0, 6), "member");
  // Valid again later: the partition is asked for again and in force.
  t.write(d + "/cpuset.cpus.partition", "member\n");
  ASSERT_TRUE(cg->set_cpus(CpuSet::of({3, 4})));
  EXPECT_TRUE(find(cg->guarantees(), "cpuset")->in_force);
  EXPECT_EQ(t.read(d + "/cpuset.cpus.partition").substr(0, 8), "isolated");
}

TEST(InstanceCgroupSetCpus, NoCpusetIsANoOp) {
  FakeTree t("none_set");
  t.write("/proc/self/mountinfo", "22 1 254:1 / / rw,relatime - ext4 /dev/vda rw\n");
  auto l = detect_cgroups(t.root());
  ASSERT_TRUE(l);
  auto cg = InstanceCgroup::create(t.root(), *l, "db", CpuSet::of({1}), CpuSet::of({0}), {});
  ASSERT_TRUE(cg) << cg.error().to_string();
  EXPECT_TRUE(cg->set_cpus(CpuSet::of({1, 2})));
  EXPECT_EQ(find(cg->guarantees(), "cpuset")->detail, "no (no cpuset hierarchy mounted)");
}

TEST(InstanceCgroup, NoCgroupsStillCreatesAndSaysWhy) {
  FakeTree t("none");
  t.write("/proc/self/mountinfo", "22 1 254:1 / / rw,relatime - ext4 /dev/vda rw\n");
  auto l = detect_cgroups(t.root());
  ASSERT_TRUE(l);
  EXPECT_EQ(l->cpuset.version, CgroupVersion::kNone);
  auto cg = InstanceCgroup::create(t.root(), *l, "db", CpuSet::of({1}), CpuSet::of({0}),
                                   {.memory_limit = 1 << 20});
  ASSERT_TRUE(cg) << cg.error().to_string();
  const Guarantee* c = find(cg->guarantees(), "cpuset");
  ASSERT_NE(c, nullptr);
  EXPECT_FALSE(c->in_force);
  EXPECT_EQ(c->detail, "no (no cpuset hierarchy mounted)");
  const Guarantee* m = find(cg->guarantees(), "memory cgroup");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->detail, "no (no memory hierarchy mounted)");
  EXPECT_TRUE(cg->attach(1));
  EXPECT_TRUE(cg->destroy());
}

// The live v1 cpuset of this machine: create, attach a forked child, check
// what the kernel reports for it, destroy. Parent directory unique to this
// test process so it cannot collide with a running mkerneld.
TEST(InstanceCgroupLive, V1CpusetOnThisMachine) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to write /sys/fs/cgroup/cpuset";
  SysRoot root("/");
  auto l = detect_cgroups(root);
  ASSERT_TRUE(l) << l.error().to_string();
  if (l->cpuset.version != CgroupVersion::kV1 || !l->cpuset.writable)
    GTEST_SKIP() << "no writable v1 cpuset hierarchy here: " << l->to_string();
  l->parent = "mkernel-test-" + std::to_string(::getpid());
  auto eff = root.read_file(l->cpuset.mount + "/cpuset.effective_cpus");
  auto effm = root.read_file(l->cpuset.mount + "/cpuset.effective_mems");
  ASSERT_TRUE(eff && effm);
  auto all = CpuSet::parse(*eff);
  auto mems = CpuSet::parse(*effm);
  ASSERT_TRUE(all && mems);
  CpuSet cpus = CpuSet::of({static_cast<uint32_t>(all->last())});

  auto cg = InstanceCgroup::create(root, *l, "t1", cpus, *mems, {.memory_limit = 256ull << 20});
  ASSERT_TRUE(cg) << cg.error().to_string();
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    char c;
    ::close(go[1]);
    while (::read(go[0], &c, 1) < 0) {
    }
    ::_exit(0);
  }
  ::close(go[0]);
  auto attached = cg->attach(child);
  std::string status, cgroups;
  if (attached) {
    status = root.read_file("/proc/" + std::to_string(child) + "/status").value_or(std::string());
    cgroups = root.read_file("/proc/" + std::to_string(child) + "/cgroup").value_or(std::string());
  }
  ::close(go[1]);
  int st = 0;
  ::waitpid(child, &st, 0);
  auto destroyed = cg->destroy();

  ASSERT_TRUE(attached) << attached.error().to_string();
  EXPECT_NE(status.find("Cpus_allowed_list:\t" + cpus.to_string() + "\n"), std::string::npos)
      << status;
  EXPECT_NE(cgroups.find(":cpuset:/" + l->parent + "/t1\n"), std::string::npos) << cgroups;
  const Guarantee* c = find(cg->guarantees(), "cpuset");
  ASSERT_NE(c, nullptr);
  if (!c->in_force) {
    EXPECT_NE(c->detail.find("refused"), std::string::npos) << c->detail;
  }
  ASSERT_TRUE(destroyed) << destroyed.error().to_string();
  EXPECT_FALSE(root.exists(l->cpuset.mount + "/" + l->parent));
  if (l->memory.version != CgroupVersion::kNone && l->memory.writable) {
    EXPECT_NE(cgroups.find(":memory:/" + l->parent + "/t1\n"), std::string::npos) << cgroups;
    EXPECT_FALSE(root.exists(l->memory.mount + "/" + l->parent));
  }
}

// set_cpus on the live v1 cpuset: a task in the cgroup follows the grown and
// the shrunk set (what a CPU move relies on for tenants that never re-pin).
TEST(InstanceCgroupLive, SetCpusMovesTheTasksOnThisMachine) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to write /sys/fs/cgroup/cpuset";
  SysRoot root("/");
  auto l = detect_cgroups(root);
  ASSERT_TRUE(l) << l.error().to_string();
  if (l->cpuset.version != CgroupVersion::kV1 || !l->cpuset.writable)
    GTEST_SKIP() << "no writable v1 cpuset hierarchy here: " << l->to_string();
  l->parent = "mkernel-test-" + std::to_string(::getpid());
  auto all = CpuSet::parse(root.read_file(l->cpuset.mount + "/cpuset.effective_cpus").value_or("0"));
  ASSERT_TRUE(all);
  if (all->count() < 2) GTEST_SKIP() << "needs two CPUs";
  const CpuSet last = CpuSet::of({static_cast<uint32_t>(all->last())});
  const CpuSet both = last | CpuSet::of({static_cast<uint32_t>(all->first())});
  auto cg = InstanceCgroup::create(root, *l, "t3", last, CpuSet::of({0}), {});
  ASSERT_TRUE(cg) << cg.error().to_string();
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    char c;
    ::close(go[1]);
    while (::read(go[0], &c, 1) < 0) {
    }
    ::_exit(0);
  }
  ::close(go[0]);
  auto allowed = [&] {
    std::string st = root.read_file("/proc/" + std::to_string(child) + "/status").value_or(std::string());
    auto p = st.find("Cpus_allowed_list:\t");
    return p == std::string::npos ? std::string() : st.substr(p + 19, st.find('\n', p) - p - 19);
  };
  auto attached = cg->attach(child);
  auto grown = attached ? cg->set_cpus(both) : attached;
  std::string after_grow = allowed();
  std::string file_grown = root.read_file(cg->cpuset_dir() + "/cpuset.cpus").value_or(std::string());
  auto shrunk = grown ? cg->set_cpus(last) : grown;
  std::string after_shrink = allowed();
  ::close(go[1]);
  ::waitpid(child, nullptr, 0);
  auto destroyed = cg->destroy();
  ASSERT_TRUE(attached) << attached.error().to_string();
  ASSERT_TRUE(grown) << grown.error().to_string();
  ASSERT_TRUE(shrunk) << shrunk.error().to_string();
  EXPECT_EQ(file_grown, both.to_string() + "\n");
  EXPECT_EQ(after_grow, both.to_string());
  EXPECT_EQ(after_shrink, last.to_string());
  const Guarantee* c = find(cg->guarantees(), "cpuset");
  ASSERT_NE(c, nullptr);
  EXPECT_NE(c->detail.find("cpus " + last.to_string()), std::string::npos) << c->detail;
  ASSERT_TRUE(destroyed) << destroyed.error().to_string();
}

// The boot recipe's order on the live machine: create the cgroup, spawn the
// confined child with prepare = attach, so the image starts inside it.
TEST(InstanceCgroupLive, ConfinedChildStartsInsideItsCgroup) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to write /sys/fs/cgroup/cpuset";
  SysRoot root("/");
  auto l = detect_cgroups(root);
  ASSERT_TRUE(l) << l.error().to_string();
  if (l->cpuset.version != CgroupVersion::kV1 || !l->cpuset.writable)
    GTEST_SKIP() << "no writable v1 cpuset hierarchy here: " << l->to_string();
  l->parent = "mkernel-test-" + std::to_string(::getpid());
  auto all = CpuSet::parse(root.read_file(l->cpuset.mount + "/cpuset.effective_cpus").value_or("0"));
  ASSERT_TRUE(all);
  // The first CPU here, the last in V1CpusetOnThisMachine: ctest runs the two
  // in parallel, and exclusive v1 siblings may not overlap.
  CpuSet cpus = CpuSet::of({static_cast<uint32_t>(all->first())});
  auto cg = InstanceCgroup::create(root, *l, "t2", cpus, CpuSet::of({0}), {});
  ASSERT_TRUE(cg) << cg.error().to_string();

  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  ConfineSpec spec;
  spec.cpus = cpus;
  spec.nodes = {0};
  spec.fds = {{out[1], 1}, {out[1], 2}};
  auto plan = make_confine_plan(spec);
  ASSERT_TRUE(plan) << plan.error().to_string();
  SpawnOptions opts;
  opts.prepare = [&](pid_t pid) { return cg->attach(pid); };
  auto p = spawn_confined(*plan, {"/bin/sh", "-c", "cat /proc/self/cgroup /proc/self/status"},
                          {}, opts);
  ::close(out[1]);
  std::string o;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(out[0], buf, sizeof buf)) > 0) o.append(buf, static_cast<std::size_t>(n));
  ::close(out[0]);
  if (p) ::waitpid(p->pid, nullptr, 0);
  auto destroyed = cg->destroy();
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_NE(o.find(":cpuset:/" + l->parent + "/t2\n"), std::string::npos) << o;
  EXPECT_NE(o.find("Cpus_allowed_list:\t" + cpus.to_string() + "\n"), std::string::npos) << o;
  ASSERT_TRUE(destroyed) << destroyed.error().to_string();
  EXPECT_FALSE(root.exists(l->cpuset.mount + "/" + l->parent));
}

}  // namespace
}  // namespace mk
