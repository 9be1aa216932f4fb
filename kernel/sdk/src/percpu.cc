// percpu: pinned per-CPU loop threads with a work queue and a stop flag.
#include "mksdk/percpu.h"

#include <sched.h>

#include <cstdio>
#include <cstring>

namespace mk::sdk {

void* PerCpu::run(void* arg) {
  auto* l = static_cast<Loop*>(arg);
  std::unique_lock lock(l->mu);
  // Run nothing until the starter pinned us (or told us to stop because
  // pinning failed): no instruction of a loop ever runs on another CPU.
  l->cv.wait(lock, [l] { return l->pinned || l->stop; });
  while (!l->stop) {
    if (l->queue.empty()) l->cv.wait_for(lock, l->tick);
    while (!l->queue.empty() && !l->stop) {
      auto work = std::move(l->queue.front());
      l->queue.pop_front();
      lock.unlock();
      work();
      lock.lock();
    }
    l->iterations.fetch_add(1, std::memory_order_relaxed);
  }
  return nullptr;
}

Result<std::unique_ptr<PerCpu>> PerCpu::start(std::span<const BootCpu> cpus, const PerCpuOptions& opts) {
  if (cpus.empty()) return MK_FAIL(EINVAL, "no cpus", "the boot tree lists no CPU");
  std::unique_ptr<PerCpu> self(new PerCpu());
  for (const auto& c : cpus) {
    if (c.os_index >= CPU_SETSIZE) {
      return MK_FAIL(EINVAL, "cpu out of range", "cpu %u >= %d", c.os_index, CPU_SETSIZE);
    }
    auto l = std::make_unique<Loop>();
    l->cpu = c.os_index;
    l->tick = opts.tick;
    if (int rc = ::pthread_create(&l->thread, nullptr, &PerCpu::run, l.get()); rc != 0) {
      return MK_FAIL(rc, "pthread_create for a per-cpu loop", "cpu %u: %s", c.os_index, std::strerror(rc));
    }
    l->joinable = true;
    Loop* raw = l.get();
    self->loops_.push_back(std::move(l));  // from here ~PerCpu stops and joins it
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(raw->cpu, &set);
    int rc = ::pthread_setaffinity_np(raw->thread, sizeof set, &set);
    if (rc != 0) {
      return MK_FAIL(rc, "pinning a per-cpu loop", "pthread_setaffinity_np to cpu %u: %s", raw->cpu,
                     std::strerror(rc));
    }
    char name[16];
    std::snprintf(name, sizeof name, "mk-cpu%u", raw->cpu);
    (void)::pthread_setname_np(raw->thread, name);
    {
      std::lock_guard g(raw->mu);
      raw->pinned = true;
    }
    raw->cv.notify_all();
  }
  return self;
}

PerCpu::~PerCpu() { stop(); }

Result<void> PerCpu::post(std::size_t index, std::function<void()> work) {
  if (index >= loops_.size()) return MK_FAIL(EINVAL, "no such per-cpu loop", "index %zu", index);
  Loop& l = *loops_[index];
  {
    std::lock_guard g(l.mu);
    if (l.stop) return MK_FAIL(ESHUTDOWN, "per-cpu loop stopped", "cpu %u", l.cpu);
    l.queue.push_back(std::move(work));
  }
  l.cv.notify_one();
  return {};
}

void PerCpu::stop() {
  for (auto& l : loops_) {
    {
      std::lock_guard g(l->mu);
      l->stop = true;
    }
    l->cv.notify_all();
  }
  for (auto& l : loops_) {
    if (l->joinable) {
      ::pthread_join(l->thread, nullptr);
      l->joinable = false;
    }
  }
  stopped_ = true;
}

std::uint64_t PerCpu::iterations() const {
  std::uint64_t n = 0;
  for (const auto& l : loops_) n += l->iterations.load(std::memory_order_relaxed);
  return n;
}

}  // namespace mk::sdk
