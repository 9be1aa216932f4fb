// DOC: mk::sdk::PerCpu — one pinned loop thread per CPU of the instance.
//
// What this is: the image's per-CPU execution contexts (DESIGN.md §3 step 3).
// For every CPU in the boot tree one thread is created and pinned with
// pthread_setaffinity_np to exactly that CPU before it runs any work. Each
// runs a loop over its own work queue (post() from any thread) until the
// stop flag is set; every pass of the loop is counted, so the host can see
// the loops are alive (StatsMsg::loop_iterations). An idle loop sleeps on its
// queue's condition variable with a tick, so an idle instance burns no CPU.
//
// Place in the boot flow: after load_boot_info, before Regions::map.
//
// Happy path:
//   1. auto loops = PerCpu::start(tree.cpus);  threads created and pinned;
//   2. loops->post(i, fn) runs fn on CPU tree.cpus[i];
//   3. loops->iterations() / cpu_of(i) / size();
//   4. loops->stop() (or destruction) sets the stop flags, wakes and joins.
// Unhappy paths:
//   1. No CPUs: EINVAL. A CPU index >= CPU_SETSIZE: EINVAL.
//   2. pthread_create fails (EAGAIN) or pthread_setaffinity_np fails (EINVAL:
//      the CPU is not in the process's allowed set): the threads already
//      started are stopped and joined; nothing is left running.
//   3. post() to an index out of range or after stop(): EINVAL / ESHUTDOWN.
//
// Returns:
//   start: EINVAL, pthread_create / pthread_setaffinity_np codes.
//   post:  EINVAL, ESHUTDOWN.
#pragma once

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "mk/boot_tree.h"
#include "mk/result.h"

namespace mk::sdk {

struct PerCpuOptions {
  std::chrono::milliseconds tick{10};  // idle wake-up period of a loop
};

class PerCpu {
 public:
  static Result<std::unique_ptr<PerCpu>> start(std::span<const BootCpu> cpus,
                                               const PerCpuOptions& opts = {});
  ~PerCpu();
  PerCpu(const PerCpu&) = delete;
  PerCpu& operator=(const PerCpu&) = delete;

  Result<void> post(std::size_t index, std::function<void()> work);
  void stop();

  std::size_t size() const { return loops_.size(); }
  std::uint32_t cpu_of(std::size_t index) const { return loops_[index]->cpu; }
  std::uint64_t iterations() const;  // summed over all loops

 private:
  struct Loop {
    std::uint32_t cpu = 0;
    pthread_t thread{};
    bool joinable = false;
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::function<void()>> queue;  // guarded by mu
    bool stop = false;                        // guarded by mu
    bool pinned = false;                      // guarded by mu; set by the starter
    std::atomic<std::uint64_t> iterations{0};
    std::chrono::milliseconds tick{10};
  };
  PerCpu() = default;
  static void* run(void* arg);

  std::vector<std::unique_ptr<Loop>> loops_;
  bool stopped_ = false;
};

}  // namespace mk::sdk
