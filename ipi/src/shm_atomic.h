// Private: single-copy atomic access to words in shared memory.
//
// Every word a peer can write is read exactly once through these helpers
// (std::atomic_ref on a naturally aligned fixed-width integer), so a hostile
// peer changing it between a check and a use cannot make the two disagree:
// the value is copied into a local first. Alignment and lock-freedom are
// asserted in abi/ring_layout.h.
#pragma once

#include <atomic>
#include <cstdint>

namespace mk::ipi::detail {

template <class T>
inline T shm_load(const void* p, std::memory_order o) {
  return std::atomic_ref<T>(*static_cast<T*>(const_cast<void*>(p))).load(o);
}

template <class T>
inline void shm_store(void* p, T v, std::memory_order o) {
  std::atomic_ref<T>(*static_cast<T*>(p)).store(v, o);
}

template <class T>
inline bool shm_cas(void* p, T expected, T desired, std::memory_order o) {
  return std::atomic_ref<T>(*static_cast<T*>(p)).compare_exchange_strong(expected, desired, o);
}

inline std::uint32_t low32(std::uint64_t v) { return static_cast<std::uint32_t>(v); }

}  // namespace mk::ipi::detail
