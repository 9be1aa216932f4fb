// percpu: pinned per-CPU loop threads with a work queue and a stop flag;
// one loop more (add) or less (remove) while the instance runs.
#include "mksdk/percpu.h"

#include <sched.h>

#include <algorithm>
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

void PerCpu::halt(Loop& l) {
  {
    std::lock_guard g(l.mu);
    l.stop = true;
  }
  l.cv.notify_all();
  if (l.joinable) {
    ::pthread_join(l.thread, nullptr);
    l.joinable = false;
  }
}

Result<std::unique_ptr<PerCpu::Loop>> PerCpu::launch(std::uint32_t os_index) {
  if (os_index >= CPU_SETSIZE) {
    return MK_FAIL(EINVAL, "cpu out of range", "cpu %u >= %d", os_index, CPU_SETSIZE);
  }
  auto l = std::make_unique<Loop>();
  l->cpu = os_index;
  l->tick = opts_.tick;
  if (int rc = ::pthread_create(&l->thread, nullptr, &PerCpu::run, l.get()); rc != 0) {
    return MK_FAIL(rc, "pthread_create for a per-cpu loop", "cpu %u: %s", os_index, std::strerror(rc));
  }
  l->joinable = true;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(os_index, &set);
  if (int rc = ::pthread_setaffinity_np(l->thread, sizeof set, &set); rc != 0) {
    halt(*l);  // it never ran a loop pass: it waits for `pinned` or `stop`
    return MK_FAIL(rc, "pinning a per-cpu loop", "pthread_setaffinity_np to cpu %u: %s", os_index,
                   std::strerror(rc));
  }
  // The host identifies the loops by this name (docs/sdk.md "Moving CPUs").
  char name[16];
  std::snprintf(name, sizeof name, "mk-cpu%u", os_index);
  (void)::pthread_setname_np(l->thread, name);
  {
    std::lock_guard g(l->mu);
    l->pinned = true;
  }
  l->cv.notify_all();
  return l;
}

Result<std::unique_ptr<PerCpu>> PerCpu::start(std::span<const BootCpu> cpus, const PerCpuOptions& opts) {
  if (cpus.empty()) return MK_FAIL(EINVAL, "no cpus", "the boot tree lists no CPU");
  std::unique_ptr<PerCpu> self(new PerCpu());
  self->opts_ = opts;
  for (const auto& c : cpus) {
    // On failure ~PerCpu stops and joins the loops started so far.
    MK_TRY_ASSIGN(auto l, self->launch(c.os_index));
    std::lock_guard g(self->mu_);
    self->loops_.push_back(std::move(l));
  }
  return self;
}

Result<void> PerCpu::add(const BootCpu& cpu) {
  {
    std::lock_guard g(mu_);
    if (stopped_) return MK_FAIL(ESHUTDOWN, "per-cpu loops stopped", "add of cpu %u after stop()", cpu.os_index);
    for (const auto& l : loops_) {
      if (l->cpu == cpu.os_index) {
        return MK_FAIL(EEXIST, "cpu has a per-cpu loop already", "cpu %u", cpu.os_index);
      }
    }
  }
  // Only the owner adds, removes and stops: the checks above still hold.
  MK_TRY_ASSIGN(auto l, launch(cpu.os_index));
  std::lock_guard g(mu_);
  auto at = std::find_if(loops_.begin(), loops_.end(), [&](const auto& x) { return x->cpu > cpu.os_index; });
  loops_.insert(at, std::move(l));
  return {};
}

Result<void> PerCpu::remove(std::uint32_t os_index) {
  std::unique_ptr<Loop> gone;
  {
    std::lock_guard g(mu_);
    auto it = std::find_if(loops_.begin(), loops_.end(), [&](const auto& x) { return x->cpu == os_index; });
    if (it == loops_.end()) return MK_FAIL(ENOENT, "no per-cpu loop on that cpu", "cpu %u", os_index);
    gone = std::move(*it);
    loops_.erase(it);
  }
  // Outside mu_: post() to the other loops goes on meanwhile; none can
  // reach this one any more.
  halt(*gone);
  std::lock_guard g(mu_);
  retired_iterations_ += gone->iterations.load(std::memory_order_relaxed);
  return {};
}

PerCpu::~PerCpu() { stop(); }

Result<void> PerCpu::post(std::size_t index, std::function<void()> work) {
  // mu_ is held until the loop is notified: remove() cannot free it meanwhile.
  std::lock_guard g(mu_);
  if (index >= loops_.size()) return MK_FAIL(EINVAL, "no such per-cpu loop", "index %zu", index);
  Loop& l = *loops_[index];
  {
    std::lock_guard lg(l.mu);
    if (l.stop) return MK_FAIL(ESHUTDOWN, "per-cpu loop stopped", "cpu %u", l.cpu);
    l.queue.push_back(std::move(work));
  }
  l.cv.notify_one();
  return {};
}

void PerCpu::stop() {
  {
    std::lock_guard g(mu_);
    stopped_ = true;
    for (auto& l : loops_) {
      {
        std::lock_guard lg(l->mu);
        l->stop = true;
      }
      l->cv.notify_all();
    }
  }
  // Joined outside mu_ (post() answers ESHUTDOWN meanwhile); only the
  // owner changes loops_, and it is here.
  for (auto& l : loops_) halt(*l);
}

std::size_t PerCpu::size() const {
  std::lock_guard g(mu_);
  return loops_.size();
}

std::uint32_t PerCpu::cpu_of(std::size_t index) const {
  std::lock_guard g(mu_);
  return loops_[index]->cpu;
}

std::vector<std::uint32_t> PerCpu::cpus() const {
  std::lock_guard g(mu_);
  std::vector<std::uint32_t> out;
  out.reserve(loops_.size());
  for (const auto& l : loops_) out.push_back(l->cpu);
  return out;
}

bool PerCpu::has(std::uint32_t os_index) const {
  std::lock_guard g(mu_);
  return std::any_of(loops_.begin(), loops_.end(), [&](const auto& l) { return l->cpu == os_index; });
}

std::uint64_t PerCpu::iterations() const {
  std::lock_guard g(mu_);
  std::uint64_t n = retired_iterations_;
  for (const auto& l : loops_) n += l->iterations.load(std::memory_order_relaxed);
  return n;
}

}  // namespace mk::sdk
