// DOC: mk::sdk::PerCpu — one pinned loop thread per CPU of the instance.
//
// What this is: the image's per-CPU execution contexts (DESIGN.md §3 step 3).
// For every CPU in the boot tree one thread is created and pinned with
// pthread_setaffinity_np to exactly that CPU before it runs any work. Each
// runs a loop over its own work queue (post() from any thread) until the
// stop flag is set; every pass of the loop is counted, so the host can see
// the loops are alive (StatsMsg::loop_iterations). An idle loop sleeps on its
// queue's condition variable with a tick, so an idle instance burns no CPU.
// Every loop thread is named `mk-cpu<N>` (N = the OS CPU index): the host
// tells the per-CPU loops from the other threads of an instance by that
// name (docs/sdk.md "Moving CPUs").
//
// Place in the boot flow: after load_boot_info, before Regions::map. CPU
// moves (kMsgCpuRelease / kMsgCpuAdd, kernel/image/cpus.h) stop one loop
// with remove() and start one with add() while the instance runs.
//
// Happy path:
//   1. auto loops = PerCpu::start(tree.cpus);  threads created and pinned;
//   2. loops->post(i, fn) runs fn on the CPU of loop i (cpu_of(i));
//   3. loops->iterations() / cpu_of(i) / size() / cpus() / has(cpu);
//   4. loops->add(cpu) / loops->remove(os_index): one loop more or less;
//   5. loops->stop() (or destruction) sets the stop flags, wakes and joins.
// Loop order: start()'s order; add() inserts before the first loop with a
// higher CPU index (sorted input stays sorted). remove() shifts the indices
// of the loops after the removed one: post() by index is only meaningful
// between two changes of the set (cpus() says which index is which CPU).
// Unhappy paths:
//   1. No CPUs: EINVAL. A CPU index >= CPU_SETSIZE: EINVAL.
//   2. pthread_create fails (EAGAIN) or pthread_setaffinity_np fails (EINVAL:
//      the CPU is not in the process's allowed set, or does not exist): the
//      threads already started (start) / the new thread (add) are stopped
//      and joined; nothing is left running and the set is as before.
//   3. post() to an index out of range or after stop(): EINVAL / ESHUTDOWN.
//      Work queued on a loop that is then stopped or removed is dropped
//      unrun.
//   4. add() of a CPU that has a loop: EEXIST; remove() of one that has
//      none: ENOENT; add() after stop(): ESHUTDOWN.
//
// Thread safety: start/add/remove/stop and destruction from one thread
// (the owner: the image's main thread). post, size, cpu_of, cpus, has and
// iterations may be called from any thread at any time, concurrently with
// add/remove/stop (a mutex guards the set; remove() joins the stopped loop
// outside it, so a post() to another loop never waits for a join).
//
// Returns:
//   start:  EINVAL, pthread_create / pthread_setaffinity_np codes.
//   add:    EINVAL, EEXIST, ESHUTDOWN, pthread_create / pthread_setaffinity_np codes.
//   remove: ENOENT.
//   post:   EINVAL, ESHUTDOWN.
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

  // Starts and pins a loop on `cpu.os_index` (named mk-cpu<N>).
  Result<void> add(const BootCpu& cpu);
  // Stops and joins the loop on `os_index`.
  Result<void> remove(std::uint32_t os_index);

  Result<void> post(std::size_t index, std::function<void()> work);
  void stop();

  std::size_t size() const;
  std::uint32_t cpu_of(std::size_t index) const;  // index < size()
  std::vector<std::uint32_t> cpus() const;        // OS index of each loop, in loop order
  bool has(std::uint32_t os_index) const;
  // Summed over every loop since start, removed ones included (never decreases).
  std::uint64_t iterations() const;

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
  // A started, pinned and named loop on `os_index`, not yet in loops_.
  Result<std::unique_ptr<Loop>> launch(std::uint32_t os_index);
  static void halt(Loop& l);  // sets the stop flag, wakes and joins

  mutable std::mutex mu_;  // guards loops_ and stopped_ (see "Thread safety")
  std::vector<std::unique_ptr<Loop>> loops_;
  std::uint64_t retired_iterations_ = 0;  // of removed loops; guarded by mu_
  bool stopped_ = false;
  PerCpuOptions opts_;
};

}  // namespace mk::sdk
