// Tests for mkernel/cpu_move.h: CPU moves and resizes against a fake v1
// cgroup tree (the machine has 2 CPUs; the moves need more) and "scripted
// images": real IPI channels whose image end runs in a thread of the test
// and answers kMsgCpuRelease / kMsgCpuAdd as each test scripts it (consent,
// refusal, silence, death, a malformed reply). After every step the test
// checks that no CPU is in two instances' cpusets.
#include "mkernel/cpu_move.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "mkernel/boot_cpu.h"
#include "test_topologies.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace mk {
namespace {

const char* kMountInfo = "33 30 0:30 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n";
const std::string kParent = "/sys/fs/cgroup/cpuset/mkernel";
const std::vector<std::pair<std::string, CpuSet>> kInstances{
    {"a", CpuSet::of({0, 1, 2})}, {"b", CpuSet::of({3})}, {"c", CpuSet::of({4})}};

class FakeTree {
 public:
  explicit FakeTree(const std::string& name) {
    dir_ = fs::path(::testing::TempDir()) / ("mk_cpu_move_" + std::to_string(::getpid()) + "_" + name);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  ~FakeTree() { fs::remove_all(dir_); }
  SysRoot root() const { return SysRoot(dir_.string()); }
  fs::path at(const std::string& abs) const { return dir_ / abs.substr(1); }
  void write(const std::string& abs, const std::string& content) const {
    fs::create_directories(at(abs).parent_path());
    std::ofstream(at(abs)) << content;
  }
  std::string read(const std::string& abs) const {
    std::ifstream in(at(abs));
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // A thread of the fake /proc.
  void task(pid_t pid, pid_t tid, const std::string& comm, const std::string& allowed) const {
    const std::string d = "/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid);
    write(d + "/comm", comm + "\n");
    write(d + "/status", "Name:\t" + comm + "\nCpus_allowed:\tff\nCpus_allowed_list:\t" + allowed + "\n");
  }

 private:
  fs::path dir_;
};

// The v1 cpuset hierarchy with one (populated) directory per instance.
void make_v1(const FakeTree& t, std::initializer_list<const char*> names) {
  t.write("/proc/self/mountinfo", kMountInfo);
  for (const auto& [f, v] :
       {std::pair{"cpuset.cpus", "0-19"}, std::pair{"cpuset.mems", "0"}, std::pair{"cgroup.procs", "1"}})
    t.write(std::string("/sys/fs/cgroup/cpuset/") + f, v);
  std::vector<std::string> dirs{kParent};
  for (const char* n : names) dirs.push_back(kParent + "/" + n);
  for (const auto& d : dirs)
    for (const char* f : {"cpuset.cpus", "cpuset.mems", "cpuset.cpu_exclusive", "cgroup.procs"})
      t.write(d + "/" + f, "");
}

// A log shared by the scripted images and on_step, in the order things happen.
struct Log {
  std::mutex mu;
  std::vector<std::string> v;
  void push(std::string s) {
    std::lock_guard l(mu);
    v.push_back(std::move(s));
  }
  std::vector<std::string> get() {
    std::lock_guard l(mu);
    return v;
  }
};

// How a scripted image answers one request.
struct Answer {
  enum Kind { kReply, kSilent, kDie, kShort, kLong } kind = kReply;
  int32_t status = 0;
  const char* detail = "";
};
using Script = std::function<Answer(uint16_t type, uint32_t cpu)>;

// The image end of an instance's host channel, in a thread of the test.
class ScriptedImage {
 public:
  ScriptedImage(uint32_t id, std::string name, Log& log, std::function<std::string()> cpuset, Script script)
      : name_(std::move(name)), log_(log), cpuset_(std::move(cpuset)), script_(std::move(script)) {
    auto h = ipi::Endpoint::create();
    auto i = ipi::Endpoint::create();
    auto ch = ipi::Channel::create_pair(ipi::ChannelConfig{256, 0});
    EXPECT_TRUE(h && i && ch);
    host_ = std::move(*h);
    image_ = std::move(*i);
    EXPECT_TRUE(host_->add_peer(id, std::move(ch->first)));
    EXPECT_TRUE(image_->add_peer(abi::kHostId, std::move(ch->second)));
    for (uint16_t type : {abi::kMsgCpuRelease, abi::kMsgCpuAdd})
      EXPECT_TRUE(image_->on_value<abi::CpuMsg>(type, [this, type](const abi::CpuMsg& m, ipi::Incoming& in) {
        answer(type, m, in);
      }));
    thread_ = std::thread([this] {
      while (!stop_) image_->dispatch(2ms);
    });
  }
  ~ScriptedImage() {
    stop_ = true;
    thread_.join();
  }
  ipi::Endpoint* host() { return host_.get(); }
  std::vector<abi::CpuMsg> msgs() {
    std::lock_guard l(mu_);
    return msgs_;
  }

 private:
  void answer(uint16_t type, const abi::CpuMsg& m, ipi::Incoming& in) {
    const char* what = type == abi::kMsgCpuRelease ? "release " : "add ";
    log_.push(name_ + ": " + what + std::to_string(m.os_index) + " (cpuset " + cpuset_() + ")");
    {
      std::lock_guard l(mu_);
      msgs_.push_back(m);
    }
    Answer a = script_ ? script_(type, m.os_index) : Answer{};
    abi::CpuReply r{};
    r.status = a.status;
    r.changed = a.status == 0;
    std::snprintf(r.detail, sizeof r.detail, "%s", a.detail);
    switch (a.kind) {
      case Answer::kReply: (void)in.reply_value(r); break;
      case Answer::kSilent:
        // Past the requester's timeout (the endpoint answers ENOMSG for a
        // handler that returns without replying).
        std::this_thread::sleep_for(400ms);
        break;
      case Answer::kDie: image_->channel(abi::kHostId)->close(); break;
      case Answer::kShort: (void)in.reply_value(r.status); break;
      case Answer::kLong: {
        std::byte more[sizeof r + 8] = {};
        std::memcpy(more, &r, sizeof r);
        (void)in.reply(more);
        break;
      }
    }
  }

  std::string name_;
  Log& log_;
  std::function<std::string()> cpuset_;
  Script script_;
  std::unique_ptr<ipi::Endpoint> host_, image_;
  std::mutex mu_;
  std::vector<abi::CpuMsg> msgs_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Two (or three) running instances a{0-2} (id 1), b{3} (id 2), c{4} (id 3)
// on a 20-PU topology, each with a cgroup in the fake tree and an image.
struct World {
  FakeTree t;
  Topology topo = test::load(test::kRaptorLake);
  Log log;
  std::map<std::string, std::unique_ptr<InstanceCgroup>> cg;
  std::map<std::string, std::unique_ptr<ScriptedImage>> img;
  std::map<std::string, CpuHolder> h;
  bool overlap_seen = false;

  explicit World(const std::string& name, std::map<std::string, Script> scripts = {}) : t(name) {
    make_v1(t, {"a", "b", "c"});
    auto layout = detect_cgroups(t.root());
    EXPECT_TRUE(layout);
    uint32_t id = 1;
    for (const auto& [n, cpus] : kInstances) {
      auto c = InstanceCgroup::create(t.root(), *layout, n, cpus, CpuSet::of({0}), {});
      EXPECT_TRUE(c) << c.error().to_string();
      cg[n] = std::make_unique<InstanceCgroup>(std::move(*c));
      img[n] = std::make_unique<ScriptedImage>(id, n, log, [this, n = n] { return cpus_of(n); }, scripts[n]);
      h[n] = CpuHolder{id++, n, cpus, img[n]->host(), cg[n].get(), {}};
    }
  }
  std::string cpus_of(const std::string& n) const {
    const std::string f = kParent + "/" + n + "/cpuset.cpus";
    if (!fs::is_regular_file(fs::symlink_status(t.at(f)))) return "?";
    return t.read(f);
  }
  // No CPU in two instances' cpusets.
  bool disjoint() const {
    CpuSet all;
    for (const char* n : {"a", "b", "c"}) {
      auto s = CpuSet::parse(cpus_of(n));
      if (!s) continue;
      if (all.intersects(*s)) return false;
      all |= *s;
    }
    return true;
  }
  CpuChangeOptions opts(std::chrono::milliseconds timeout = 2000ms) {
    CpuChangeOptions o;
    o.timeout = timeout;
    o.op_id = 7;
    o.on_step = [this](std::string_view step, double ms) {
      EXPECT_GE(ms, 0.0);
      log.push("step: " + std::string(step));
      if (!disjoint()) overlap_seen = true;
    };
    return o;
  }
  std::vector<std::string> steps_of(const CpuChangeResult& r) const {
    std::vector<std::string> out;
    for (const auto& [s, ms] : r.steps) out.push_back(s);
    return out;
  }
};

Answer refuse(int code, const char* detail) { return {Answer::kReply, -code, detail}; }

void expect_error(const Error& e, int code, std::initializer_list<const char*> parts) {
  EXPECT_EQ(e.code(), code) << e.to_string();
  for (const char* p : parts)
    EXPECT_NE(std::string(e.message()).find(p), std::string::npos) << "want '" << p << "' in: " << e.message();
}

// ---- checks against the partition ----------------------------------------

Partition three_instances(const Topology& topo) {
  Partition p = test::pool_of(topo, CpuSet::range(0, 7), 0);
  uint32_t id = 1;
  for (const auto& [n, cpus] : kInstances) {
    Instance i;
    i.id = id++;
    i.name = n;
    i.cpus = cpus;
    p.add(i);
  }
  return p;
}

TEST(CpuMoveCheck, MoveRules) {
  Topology topo = test::load(test::kRaptorLake);
  Partition p = three_instances(topo);
  EXPECT_TRUE(check_cpu_move(topo, p, 2, "a", "b"));
  expect_error(check_cpu_move(topo, p, 2, "x", "b").error(), ENOENT, {"no instance 'x'"});
  expect_error(check_cpu_move(topo, p, 2, "a", "y").error(), ENOENT, {"no instance 'y'"});
  expect_error(check_cpu_move(topo, p, 2, "a", "a").error(), EINVAL, {"both the source and the target"});
  expect_error(check_cpu_move(topo, p, 99, "a", "b").error(), ENOENT, {"cpu 99 is not on this machine"});
  expect_error(check_cpu_move(topo, p, 4, "a", "b").error(), EINVAL, {"cpu 4 is not 'a''s", "instance 'c''s"});
  expect_error(check_cpu_move(topo, p, 6, "a", "b").error(), EINVAL, {"free in the pool"});
  expect_error(check_cpu_move(topo, p, 12, "a", "b").error(), EINVAL, {"outside the pool"});
  expect_error(check_cpu_move(topo, p, 3, "b", "a").error(), EBUSY, {"last cpu of 'b'"});
}

TEST(CpuMoveCheck, ResizeRules) {
  Topology topo = test::load(test::kRaptorLake);
  Partition p = three_instances(topo);
  EXPECT_TRUE(check_cpu_resize(topo, p, "a", CpuSet::of({0, 5, 6})));
  EXPECT_TRUE(check_cpu_resize(topo, p, "a", CpuSet::of({1})));
  expect_error(check_cpu_resize(topo, p, "x", CpuSet::of({1})).error(), ENOENT, {"no instance 'x'"});
  expect_error(check_cpu_resize(topo, p, "a", CpuSet{}).error(), EINVAL, {"at least one cpu"});
  expect_error(check_cpu_resize(topo, p, "a", CpuSet::of({0, 9})).error(), EINVAL, {"cpu 9", "not in the pool"});
  expect_error(check_cpu_resize(topo, p, "a", CpuSet::of({0, 4})).error(), EBUSY,
               {"cpu 4 already belongs to instance 'c'", "free pool cpus: 5-7"});
  expect_error(check_cpu_resize(topo, p, "a", CpuSet::of({0, 50})).error(), ENOENT, {"cpu 50 is not on this machine"});
}

// ---- moves -----------------------------------------------------------------

TEST(CpuMove, MovesACpuBetweenRunningInstances) {
  World w("ok");
  // a's image and a tenant thread, b's image and a tenant that did not follow.
  w.t.write(kParent + "/a/cgroup.procs", "100\n");
  w.t.task(100, 100, "image", "0-1");
  w.t.task(100, 101, "mk-cpu1", "1");
  w.t.write(kParent + "/b/cgroup.procs", "200\n");
  w.t.task(200, 200, "image", "2-3");
  w.t.task(200, 201, "tenant", "3");
  auto r = move_cpu(w.topo, w.t.root(), w.h["a"], w.h["b"], 2, w.opts());
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->from_cpus, CpuSet::of({0, 1}));
  EXPECT_EQ(r->cpus, CpuSet::of({2, 3}));
  EXPECT_EQ(w.cpus_of("a"), "0-1");
  EXPECT_EQ(w.cpus_of("b"), "2-3");
  EXPECT_EQ(w.t.read(kParent + "/cpuset.cpus"), "0-4");
  EXPECT_EQ(w.cg["b"]->guarantees().at(0).detail, "v1 exclusive, cpus 2-3");
  // The release reaches a while its cpuset still has the CPU; a's cpuset is
  // written before b's; the add reaches b once b's cpuset has it.
  EXPECT_EQ(w.log.get(), (std::vector<std::string>{"a: release 2 (cpuset 0-2)", "step: release CPU 2 from a",
                                                   "step: cpuset of a", "step: cpuset of b",
                                                   "b: add 2 (cpuset 2-3)", "step: add CPU 2 to b"}));
  EXPECT_EQ(w.steps_of(*r), (std::vector<std::string>{"release CPU 2 from a", "cpuset of a", "cpuset of b",
                                                      "add CPU 2 to b"}));
  EXPECT_FALSE(w.overlap_seen);
  auto m = w.img["b"]->msgs().at(0);
  auto want = boot_cpu_of(w.topo, 2);
  ASSERT_TRUE(want);
  EXPECT_EQ(m.op_id, 7u);
  EXPECT_EQ(m.os_index, 2u);
  EXPECT_EQ(m.core, want->core);
  EXPECT_EQ(m.package, want->package);
  EXPECT_EQ(m.numa, want->numa);
  EXPECT_EQ(m.kind, want->kind);
  EXPECT_EQ(m.efficiency, want->efficiency);
  EXPECT_NE(m.kind, -1);  // this topology has CPU kinds
  EXPECT_EQ(r->threads_checked, 4u);
  ASSERT_EQ(r->not_following.size(), 1u);
  EXPECT_EQ(r->not_following[0].tid, 201);
  EXPECT_EQ(r->not_following[0].comm, "tenant");
  EXPECT_TRUE(r->warnings.empty());
  EXPECT_GT(r->ms, 0.0);
}

TEST(CpuMove, RefusalByTheLoserChangesNothing) {
  World w("refuse", {{"a", [](uint16_t, uint32_t) { return refuse(EBUSY, "a live update is in progress"); }}});
  auto r = move_cpu(w.topo, w.t.root(), w.h["a"], w.h["b"], 2, w.opts());
  ASSERT_FALSE(r);
  expect_error(r.error(), EBUSY, {"release CPU 2 from a failed, nothing changed (a keeps 0-2, b keeps 3)",
                                  "'a' refused kMsgCpuRelease for cpu 2", "a live update is in progress"});
  EXPECT_EQ(w.cpus_of("a"), "0-2");
  EXPECT_EQ(w.cpus_of("b"), "3");
  EXPECT_EQ(w.log.get(), (std::vector<std::string>{"a: release 2 (cpuset 0-2)", "step: release CPU 2 from a"}));
}

TEST(CpuMove, FailedAddIsUndoneInReverseOrder) {
  World w("add_fails", {{"b", [](uint16_t, uint32_t) { return refuse(EINVAL, "cannot run on cpu 2"); }}});
  auto r = move_cpu(w.topo, w.t.root(), w.h["a"], w.h["b"], 2, w.opts());
  ASSERT_FALSE(r);
  expect_error(r.error(), EINVAL,
               {"add CPU 2 to b failed, nothing changed (a keeps 0-2, b keeps 3; undone: cpuset of b, cpuset of a, "
                "release CPU 2 from a)",
                "cannot run on cpu 2"});
  EXPECT_EQ(w.cpus_of("a"), "0-2");
  EXPECT_EQ(w.cpus_of("b"), "3");
  EXPECT_FALSE(w.overlap_seen);
  EXPECT_EQ(w.log.get(), (std::vector<std::string>{
                             "a: release 2 (cpuset 0-2)", "step: release CPU 2 from a", "step: cpuset of a",
                             "step: cpuset of b", "b: add 2 (cpuset 2-3)", "step: add CPU 2 to b",
                             "step: undo: cpuset of b", "step: undo: cpuset of a", "a: add 2 (cpuset 0-2)",
                             "step: undo: add CPU 2 to a"}));
}

TEST(CpuMove, CgroupWriteFailureAtEitherWrite) {
  {
    World w("write_a");
    fs::remove(w.t.at(kParent + "/a/cpuset.cpus"));
    fs::create_symlink("/dev/full", w.t.at(kParent + "/a/cpuset.cpus"));
    auto r = move_cpu(w.topo, w.t.root(), w.h["a"], w.h["b"], 2, w.opts());
    ASSERT_FALSE(r);
    expect_error(r.error(), ENOSPC, {"cpuset of a failed, nothing changed", "undone: release CPU 2 from a",
                                     "writing '0-1' to "});
    EXPECT_EQ(w.cpus_of("b"), "3");
    EXPECT_EQ(w.log.get(), (std::vector<std::string>{"a: release 2 (cpuset ?)", "step: release CPU 2 from a",
                                                     "step: cpuset of a", "a: add 2 (cpuset ?)",
                                                     "step: undo: add CPU 2 to a"}));
  }
  {
    World w("write_b");
    fs::remove(w.t.at(kParent + "/b/cpuset.cpus"));
    fs::create_directory(w.t.at(kParent + "/b/cpuset.cpus"));
    auto r = move_cpu(w.topo, w.t.root(), w.h["a"], w.h["b"], 2, w.opts());
    ASSERT_FALSE(r);
    expect_error(r.error(), EISDIR, {"cpuset of b failed, nothing changed", "undone: cpuset of a, release CPU 2 from a",
                                     "b/cpuset.cpus"});
    EXPECT_EQ(w.cpus_of("a"), "0-2");
    EXPECT_TRUE(w.img["b"]->msgs().empty());
    EXPECT_EQ(w.img["a"]->msgs().size(), 2u);
  }
}

TEST(CpuMove, InjectedFailureAtEveryStepIsUndone) {
  const std::vector<std::string> steps{"release CPU 2 from a", "cpuset of a", "cpuset of b", "add CPU 2 to b"};
  for (const auto& at : steps) {
    World w("inject");
    CpuChangeOptions o = w.opts();
    o.inject = [&](std::string_view s) -> Result<void> {
      if (s == at) return MK_FAIL(EIO, "injected", "fault at %s", at.c_str());
      return ok();
    };
    auto r = move_cpu(w.topo, w.t.root(), w.h["a"], w.h["b"], 2, o);
    ASSERT_FALSE(r) << at;
    expect_error(r.error(), EIO, {(at + " failed, nothing changed").c_str(), ("fault at " + at).c_str()});
    EXPECT_EQ(w.cpus_of("a"), "0-2") << at;
    EXPECT_EQ(w.cpus_of("b"), "3") << at;
    EXPECT_FALSE(w.overlap_seen) << at;
    EXPECT_TRUE(w.img["b"]->msgs().empty()) << at;  // the add is the last step: never sent
    EXPECT_EQ(w.img["a"]->msgs().size(), at == steps[0] ? 0u : 2u) << at;
  }
  // A failing undo stops the undo and says what is left changed.
  const std::vector<std::pair<std::string, std::string>> undos{
      {"undo: cpuset of b", "cpuset of b, cpuset of a, release CPU 2 from a"},
      {"undo: cpuset of a", "cpuset of a, release CPU 2 from a"},
      {"undo: add CPU 2 to a", "release CPU 2 from a"}};
  for (const auto& [at, left] : undos) {
    World w("inject_undo");
    CpuChangeOptions o = w.opts();
    o.inject = [&](std::string_view s) -> Result<void> {
      if (s == "add CPU 2 to b" || s == at) return MK_FAIL(EIO, "injected", "fault at %s", std::string(s).c_str());
      return ok();
    };
    auto r = move_cpu(w.topo, w.t.root(), w.h["a"], w.h["b"], 2, o);
    ASSERT_FALSE(r) << at;
    expect_error(r.error(), EIO, {("the undo stopped at '" + at + "'").c_str(), ("still done: " + left).c_str(),
                                  "state file says a keeps 0-2, b keeps 3"});
    EXPECT_FALSE(w.overlap_seen) << at;
  }
}

TEST(CpuMove, TimeoutDeadPeerAndBadReply) {
  {
    // a says nothing to the release: it may have let go, so it is sent the add.
    World w("silent", {{"a", [](uint16_t t, uint32_t) {
                          return t == abi::kMsgCpuRelease ? Answer{Answer::kSilent} : Answer{};
                        }}});
    auto r = move_cpu(w.topo, w.t.root(), w.h["a"], w.h["b"], 2, w.opts(300ms));
    ASSERT_FALSE(r);
    expect_error(r.error(), ETIMEDOUT, {"release CPU 2 from a failed, nothing changed", "undone: release CPU 2 from a",
                                        "kMsgCpuRelease for cpu 2 to 'a'"});
    EXPECT_EQ(w.img["a"]->msgs().size(), 2u);
    EXPECT_EQ(w.cpus_of("a"), "0-2");
  }
  {
    World w("dead", {{"b", [](uint16_t, uint32_t) { return Answer{Answer::kDie}; }}});
    auto r = move_cpu(w.topo, w.t.root(), w.h["a"], w.h["b"], 2, w.opts(10000ms));
    ASSERT_FALSE(r);
    expect_error(r.error(), ECONNRESET, {"add CPU 2 to b failed, nothing changed",
                                         "undone: cpuset of b, cpuset of a, release CPU 2 from a"});
    EXPECT_EQ(w.cpus_of("a"), "0-2");
    EXPECT_EQ(w.cpus_of("b"), "3");
  }
  {
    World w("short", {{"a", [](uint16_t, uint32_t) { return Answer{Answer::kShort}; }}});
    auto r = move_cpu(w.topo, w.t.root(), w.h["a"], w.h["b"], 2, w.opts());
    ASSERT_FALSE(r);
    expect_error(r.error(), EPROTO, {"release CPU 2 from a failed, nothing changed", "answered 4 bytes, expected 128"});
  }
  {
    World w("long", {{"b", [](uint16_t, uint32_t) { return Answer{Answer::kLong}; }}});
    auto r = move_cpu(w.topo, w.t.root(), w.h["a"], w.h["b"], 2, w.opts());
    ASSERT_FALSE(r);
    expect_error(r.error(), EPROTO, {"add CPU 2 to b failed, nothing changed", "kMsgCpuAdd for cpu 2 to 'b'"});
    EXPECT_EQ(w.cpus_of("a"), "0-2");
    EXPECT_EQ(w.cpus_of("b"), "3");
  }
}

TEST(CpuMove, NotRunningSidesChangeOnlyOnPaper) {
  World w("paper");
  CpuHolder a = w.h["a"];
  a.ep = nullptr;
  auto r = move_cpu(w.topo, w.t.root(), a, w.h["b"], 2, w.opts());
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(w.steps_of(*r), (std::vector<std::string>{"cpuset of b", "add CPU 2 to b"}));
  EXPECT_EQ(w.cpus_of("a"), "0-2");  // untouched: a is not running
  EXPECT_TRUE(w.img["a"]->msgs().empty());
  CpuHolder b = w.h["b"];
  b.ep = nullptr;
  b.cpus = CpuSet::of({2, 3});
  a.cpus = CpuSet::of({0, 1});
  auto back = move_cpu(w.topo, w.t.root(), b, a, 2, w.opts());
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_TRUE(back->steps.empty());
  EXPECT_EQ(back->from_cpus, CpuSet::of({3}));
  EXPECT_EQ(back->cpus, CpuSet::of({0, 1, 2}));
  EXPECT_EQ(w.cpus_of("a"), "0-2");
  EXPECT_EQ(w.cpus_of("b"), "2-3");
  EXPECT_EQ(w.img["b"]->msgs().size(), 1u);
}

TEST(CpuMove, HolderMismatchesAreRefusedBeforeAnything) {
  World w("holders");
  expect_error(move_cpu(w.topo, w.t.root(), w.h["a"], w.h["b"], 4, w.opts()).error(), EINVAL,
               {"cpu 4: 'a' has cpus 0-2, 'b' has 3"});
  expect_error(move_cpu(w.topo, w.t.root(), w.h["b"], w.h["a"], 3, w.opts()).error(), EBUSY, {"last cpu of 'b'"});
  expect_error(move_cpu(w.topo, w.t.root(), w.h["a"], w.h["a"], 2, w.opts()).error(), EINVAL, {"both the source"});
  CpuHolder a = w.h["a"];
  a.cpus = CpuSet::of({0, 99});
  expect_error(move_cpu(w.topo, w.t.root(), a, w.h["b"], 99, w.opts()).error(), ENOENT,
               {"cpu 99 is not on this machine"});
  EXPECT_TRUE(w.log.get().empty());
}

// ---- resizes ---------------------------------------------------------------

TEST(CpuResize, GrowsAndShrinksSeveralAtOnce) {
  World w("resize");
  auto g = resize_cpus(w.topo, w.t.root(), w.h["a"], CpuSet::of({0, 1, 2, 5, 6}), w.opts());
  ASSERT_TRUE(g) << g.error().to_string();
  EXPECT_EQ(w.steps_of(*g), (std::vector<std::string>{"cpuset of a", "add CPU 5 to a", "add CPU 6 to a"}));
  EXPECT_EQ(w.cpus_of("a"), "0-2,5-6");
  EXPECT_EQ(w.t.read(kParent + "/cpuset.cpus"), "0-6");
  CpuHolder a = w.h["a"];
  a.cpus = g->cpus;
  auto s = resize_cpus(w.topo, w.t.root(), a, CpuSet::of({1, 6}), w.opts());
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_EQ(w.steps_of(*s), (std::vector<std::string>{"release CPU 0 from a", "release CPU 2 from a",
                                                      "release CPU 5 from a", "cpuset of a"}));
  EXPECT_EQ(w.cpus_of("a"), "1,6");
  // Disjoint: grow to both, add, release, shrink (never zero CPUs).
  a.cpus = s->cpus;
  auto d = resize_cpus(w.topo, w.t.root(), a, CpuSet::of({7}), w.opts());
  ASSERT_TRUE(d) << d.error().to_string();
  EXPECT_EQ(w.steps_of(*d), (std::vector<std::string>{"cpuset of a", "add CPU 7 to a", "release CPU 1 from a",
                                                      "release CPU 6 from a", "cpuset of a"}));
  EXPECT_EQ(w.cpus_of("a"), "7");
  EXPECT_FALSE(w.overlap_seen);
  EXPECT_EQ(w.img["a"]->msgs().size(), 2u + 3u + 3u);
  // Not running: on paper only.
  CpuHolder off = a;
  off.ep = nullptr;
  off.cpus = d->cpus;
  auto p = resize_cpus(w.topo, w.t.root(), off, CpuSet::of({5, 7}), w.opts());
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_TRUE(p->steps.empty());
  EXPECT_EQ(p->cpus, CpuSet::of({5, 7}));
  EXPECT_EQ(w.cpus_of("a"), "7");
  auto bad = resize_cpus(w.topo, w.t.root(), a, CpuSet{}, w.opts());
  expect_error(bad.error(), EINVAL, {"at least one cpu"});
}

TEST(CpuResize, PartialFailureIsUndone) {
  World w("resize_fail", {{"a", [](uint16_t t, uint32_t cpu) {
                             if (t == abi::kMsgCpuAdd && cpu == 6) return refuse(EINVAL, "no loop on 6");
                             if (t == abi::kMsgCpuRelease && cpu == 2) return refuse(EBUSY, "kv pinned");
                             return Answer{};
                           }}});
  auto g = resize_cpus(w.topo, w.t.root(), w.h["a"], CpuSet::of({0, 1, 2, 5, 6}), w.opts());
  ASSERT_FALSE(g);
  expect_error(g.error(), EINVAL, {"add CPU 6 to a failed, nothing changed (a keeps 0-2; undone: add CPU 5 to a, "
                                   "cpuset of a)",
                                   "no loop on 6"});
  EXPECT_EQ(w.cpus_of("a"), "0-2");
  auto s = resize_cpus(w.topo, w.t.root(), w.h["a"], CpuSet::of({0}), w.opts());
  ASSERT_FALSE(s);
  expect_error(s.error(), EBUSY, {"release CPU 2 from a failed, nothing changed (a keeps 0-2; undone: release CPU 1 "
                                  "from a)",
                                  "kv pinned"});
  EXPECT_EQ(w.cpus_of("a"), "0-2");
  auto msgs = w.img["a"]->msgs();
  ASSERT_EQ(msgs.size(), 3u + 3u);
  EXPECT_EQ(msgs[2].os_index, 5u);  // undo: release 5
  EXPECT_EQ(msgs[5].os_index, 1u);  // undo: add 1
}

// ---- threads ---------------------------------------------------------------

TEST(ThreadsNotFollowing, FakeProc) {
  FakeTree t("threads");
  t.task(100, 100, "image", "0-2");
  t.task(100, 101, "worker", "0");      // a stray
  t.task(100, 102, "mk-cpu1", "1");     // a loop within the set
  t.task(100, 103, "mk-cpu7", "7");     // a loop outside
  t.task(100, 104, "mk-kv", "0-2");
  t.write("/proc/100/task/105/comm", "gone\n");  // ended while read: no status
  CpuHolder h{1, "a", CpuSet::of({0, 1, 2}), nullptr, nullptr, {100, 300}};
  uint32_t n = 0;
  auto r = threads_not_following(t.root(), h, CpuSet::of({0, 1, 2}), &n);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(n, 5u);
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].tid, 101);
  EXPECT_EQ((*r)[0].allowed, CpuSet::of({0}));
  EXPECT_EQ((*r)[1].comm, "mk-cpu7");
  t.write("/proc/100/task/104/status", "Name:\tmk-kv\n");
  auto bad = threads_not_following(t.root(), h, CpuSet::of({0, 1, 2}), &n);
  ASSERT_FALSE(bad);
  expect_error(bad.error(), EPROTO, {"task/104/status has no Cpus_allowed_list"});
}

TEST(ThreadsNotFollowing, ThisProcess) {
  cpu_set_t mask;
  ASSERT_EQ(::sched_getaffinity(0, sizeof mask, &mask), 0);
  CpuSet mine;
  for (uint32_t c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &mask)) mine.insert(c);
  if (mine.count() < 2) GTEST_SKIP() << "needs two CPUs";
  CpuHolder h{1, "self", mine, nullptr, nullptr, {::getpid()}};
  uint32_t n = 0;
  auto all = threads_not_following(SysRoot("/"), h, mine, &n);
  ASSERT_TRUE(all) << all.error().to_string();
  EXPECT_TRUE(all->empty());
  EXPECT_GE(n, 1u);
  // Two pinned threads: a loop thread (allowed) and an ordinary one (stray).
  std::atomic<int> ready{0};
  std::atomic<bool> stop{false};
  auto pinned = [&](const char* comm) {
    return std::thread([&, comm] {
      ::pthread_setname_np(::pthread_self(), comm);
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(mine.first(), &one);
      ::sched_setaffinity(0, sizeof one, &one);
      ++ready;
      while (!stop) std::this_thread::sleep_for(1ms);
    });
  };
  std::thread t1 = pinned("mk-cpu0"), t2 = pinned("stray-worker");
  while (ready < 2) std::this_thread::sleep_for(1ms);
  auto r = threads_not_following(SysRoot("/"), h, mine, &n);
  stop = true;
  t1.join();
  t2.join();
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].comm, "stray-worker");
  EXPECT_EQ((*r)[0].allowed, CpuSet::of({static_cast<uint32_t>(mine.first())}));
}

// ---- reconcile -------------------------------------------------------------

TEST(CpuReconcile, FinishesAnInterruptedMoveAndIsIdempotent) {
  World w("reconcile", {{"c", [](uint16_t, uint32_t) { return refuse(EBUSY, "parked"); }}});
  // Interrupted after b's cpuset grew: a shrank, b has 2, neither told.
  w.t.write(kParent + "/a/cpuset.cpus", "0-1");
  w.t.write(kParent + "/b/cpuset.cpus", "2-3");
  // The partition was not persisted: a keeps 0-2, b keeps 3. Loser first.
  for (int round = 0; round < 2; ++round) {
    ASSERT_TRUE(reconcile_cpus(w.topo, w.t.root(), w.h["b"], CpuSet::of({3}), CpuSet::of({2}), w.opts()));
    ASSERT_TRUE(reconcile_cpus(w.topo, w.t.root(), w.h["a"], CpuSet::of({0, 1, 2}), CpuSet::of({2}), w.opts()));
    EXPECT_EQ(w.cpus_of("a"), "0-2");
    EXPECT_EQ(w.cpus_of("b"), "3");
  }
  auto log = w.log.get();
  ASSERT_GE(log.size(), 6u);
  EXPECT_EQ(std::vector<std::string>(log.begin(), log.begin() + 6),
            (std::vector<std::string>{"b: release 2 (cpuset 2-3)", "step: release CPU 2 from b", "step: cpuset of b",
                                      "step: cpuset of a", "a: add 2 (cpuset 0-2)", "step: add CPU 2 to a"}));
  EXPECT_FALSE(w.overlap_seen);
  auto r = reconcile_cpus(w.topo, w.t.root(), w.h["c"], CpuSet::of({4}), CpuSet::of({4, 5}), w.opts());
  ASSERT_FALSE(r);
  expect_error(r.error(), EBUSY,
               {"release CPU 5 from c failed after 0 of 3 steps", "reconciling again is safe", "parked"});
  CpuHolder off = w.h["c"];
  off.ep = nullptr;
  EXPECT_TRUE(reconcile_cpus(w.topo, w.t.root(), off, CpuSet::of({4}), CpuSet::of({4, 5}), w.opts()));
}

}  // namespace
}  // namespace mk
