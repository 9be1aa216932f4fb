// mk::sdk::PerCpu's changes while running (add / remove, CPU moves), in
// process: the loop threads are checked through /proc/self/task (their
// names, mk-cpu<N>, and their Cpus_allowed_list), as the host checks them.
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "host_harness.h"
#include "mksdk/percpu.h"

namespace mk::sdk {
namespace {

using namespace std::chrono_literals;

BootCpu boot_cpu(std::uint32_t c) { return BootCpu{c, c, 0, 0, -1, -1}; }

// Cpus_allowed_list of this process's thread named `comm`; "" if none.
std::string loop_cpus(std::uint32_t cpu) {
  const std::string comm = "mk-cpu" + std::to_string(cpu);
  for (const auto& t : test::tasks_of(-1)) {
    if (t.comm == comm) return t.cpus;
  }
  return "";
}

std::size_t thread_count() { return test::tasks_of(-1).size(); }

TEST(PerCpuMoves, AddStartsANamedPinnedLoopAndRemoveJoinsIt) {
  const auto allowed = test::allowed_cpus();
  if (allowed.size() < 2) GTEST_SKIP() << "needs 2 CPUs this process may use";
  const std::uint32_t a = allowed[0], b = allowed[1];
  std::vector<BootCpu> first = {boot_cpu(a)};
  auto loops = PerCpu::start(first, PerCpuOptions{1ms});
  ASSERT_TRUE(loops.has_value()) << loops.error().to_string();
  PerCpu& p = **loops;
  EXPECT_EQ(loop_cpus(a), std::to_string(a));  // start() names its loops too
  EXPECT_EQ(loop_cpus(b), "");

  ASSERT_TRUE(p.add(boot_cpu(b)).has_value());
  EXPECT_EQ(p.size(), 2u);
  EXPECT_EQ(p.cpus(), (std::vector<std::uint32_t>{a, b}));
  EXPECT_TRUE(p.has(b));
  EXPECT_EQ(loop_cpus(b), std::to_string(b));
  std::atomic<int> ran_on{-1};
  ASSERT_TRUE(p.post(1, [&] { ran_on.store(sched_getcpu()); }).has_value());
  for (int i = 0; i < 5000 && ran_on.load() < 0; ++i) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(ran_on.load(), static_cast<int>(b));
  EXPECT_EQ(p.add(boot_cpu(b)).error().code(), EEXIST);
  EXPECT_EQ(p.size(), 2u);

  while (p.iterations() < 10) std::this_thread::sleep_for(1ms);
  const std::uint64_t before = p.iterations();
  ASSERT_TRUE(p.remove(b).has_value());
  EXPECT_EQ(loop_cpus(b), "");  // joined: the thread is gone
  EXPECT_EQ(p.size(), 1u);
  EXPECT_FALSE(p.has(b));
  EXPECT_GE(p.iterations(), before);  // the removed loop's passes still count
  EXPECT_EQ(p.remove(b).error().code(), ENOENT);
  EXPECT_EQ(p.post(1, [] {}).error().code(), EINVAL);

  // Added in order: below the existing loop goes first.
  ASSERT_TRUE(p.remove(a).has_value());
  EXPECT_EQ(p.size(), 0u);
  ASSERT_TRUE(p.add(boot_cpu(b)).has_value());
  ASSERT_TRUE(p.add(boot_cpu(a)).has_value());
  EXPECT_EQ(p.cpus(), (std::vector<std::uint32_t>{a, b}));
  p.stop();
  EXPECT_EQ(p.add(boot_cpu(a)).error().code(), ESHUTDOWN);
  EXPECT_EQ(loop_cpus(a), "");
  EXPECT_EQ(loop_cpus(b), "");
}

TEST(PerCpuMoves, AddOfACpuTheKernelRefusesLeavesNothingRunning) {
  const std::uint32_t cpu = test::instance_cpu();
  std::vector<BootCpu> one = {boot_cpu(cpu)};
  auto loops = PerCpu::start(one, PerCpuOptions{1ms});
  ASSERT_TRUE(loops.has_value()) << loops.error().to_string();
  const std::size_t threads = thread_count();
  auto r = (*loops)->add(boot_cpu(1000));  // no such CPU here
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), EINVAL);
  EXPECT_EQ(loop_cpus(1000), "");
  EXPECT_EQ(thread_count(), threads);  // the thread it made was joined
  EXPECT_EQ((*loops)->add(boot_cpu(CPU_SETSIZE + 1)).error().code(), EINVAL);
  EXPECT_EQ((*loops)->size(), 1u);
  EXPECT_EQ((*loops)->cpus(), (std::vector<std::uint32_t>{cpu}));
}

// post() from another thread while the owner adds and removes loops: every
// post lands in a loop that is in the set (or fails with EINVAL when the
// index is gone), and each work runs pinned to exactly one CPU. Run under
// ASan/TSan for the races.
TEST(PerCpuMoves, PostFromOtherThreadsWhileAddAndRemoveRun) {
  const auto allowed = test::allowed_cpus();
  if (allowed.size() < 2) GTEST_SKIP() << "needs 2 CPUs this process may use";
  std::vector<BootCpu> first = {boot_cpu(allowed[0])};
  auto loops = PerCpu::start(first, PerCpuOptions{1ms});
  ASSERT_TRUE(loops.has_value()) << loops.error().to_string();
  PerCpu& p = **loops;
  std::atomic<bool> done{false};
  std::atomic<int> posted{0}, ran{0}, misplaced{0}, other_errors{0};
  std::thread poster([&] {
    while (!done.load()) {
      for (std::size_t i = 0; i < 2; ++i) {
        auto r = p.post(i, [&] {
          cpu_set_t set;
          CPU_ZERO(&set);
          pthread_getaffinity_np(pthread_self(), sizeof set, &set);
          if (CPU_COUNT(&set) != 1 || !CPU_ISSET(sched_getcpu(), &set)) misplaced.fetch_add(1);
          ran.fetch_add(1);
        });
        if (r) {
          posted.fetch_add(1);
        } else if (r.error().code() != EINVAL) {
          other_errors.fetch_add(1);
        }
        (void)p.size();
        (void)p.iterations();
      }
    }
  });
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(p.add(boot_cpu(allowed[1])).has_value());
    std::this_thread::sleep_for(2ms);
    ASSERT_TRUE(p.remove(allowed[1]).has_value());
  }
  done.store(true);
  poster.join();
  p.stop();
  EXPECT_GT(posted.load(), 0);
  EXPECT_GT(ran.load(), 0);
  EXPECT_LE(ran.load(), posted.load());  // work queued on a removed loop is dropped
  EXPECT_EQ(misplaced.load(), 0);
  EXPECT_EQ(other_errors.load(), 0);
}

}  // namespace
}  // namespace mk::sdk
