// DOC: mk::CpuSet — a set of CPU OS indices, and the Linux cpu-list syntax.
//
// What this is: the value type every layer uses to say "these CPUs": the pool,
// an instance's exclusive CPUs, a CPU kind, a NUMA node's PUs, the /cpus node
// of the boot tree. It is a dynamic bitset over OS indices (the numbers
// Linux shows in /sys/devices/system/cpu and in Cpus_allowed_list), so a
// 384-PU EPYC and a 2-CPU VM use the same code.
//
// The text form is the kernel's cpu-list syntax: "0-3,8,10-11", also with
// strides "0-15:2" (every other CPU), as cpuset.cpus accepts. parse() is a
// parser of untrusted input (CLI arguments, state files, boot trees): it
// bounds every number by kMaxCpus and never allocates past it.
//
// Returns (parse): EINVAL for malformed text (message names the offending
// token and the expected form), ERANGE for an index ≥ kMaxCpus.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mk/result.h"

namespace mk {

class CpuSet {
 public:
  // Linux's NR_CPUS maximum is 8192; nothing real exceeds it.
  static constexpr uint32_t kMaxCpus = 8192;

  CpuSet() = default;
  static CpuSet of(std::initializer_list<uint32_t> cpus);
  static CpuSet range(uint32_t first, uint32_t last);  // inclusive

  static Result<CpuSet> parse(std::string_view text);

  bool contains(uint32_t cpu) const noexcept;
  void insert(uint32_t cpu);  // cpu < kMaxCpus (callers validate)
  void erase(uint32_t cpu) noexcept;
  void clear() noexcept { words_.clear(); }

  std::size_t count() const noexcept;
  bool empty() const noexcept { return count() == 0; }
  // Lowest / highest member; -1 when empty.
  int first() const noexcept;
  int last() const noexcept;
  // Smallest member > cpu; -1 when none.
  int next(int cpu) const noexcept;

  std::vector<uint32_t> to_vector() const;
  std::string to_string() const;  // canonical cpu-list, "" when empty

  CpuSet operator|(const CpuSet& o) const;
  CpuSet operator&(const CpuSet& o) const;
  CpuSet operator-(const CpuSet& o) const;  // difference
  CpuSet& operator|=(const CpuSet& o);
  CpuSet& operator-=(const CpuSet& o);
  bool intersects(const CpuSet& o) const noexcept;
  bool is_subset_of(const CpuSet& o) const noexcept;
  bool operator==(const CpuSet& o) const noexcept;

  // Iteration: for (uint32_t cpu : set) ...
  class iterator {
   public:
    iterator(const CpuSet* s, int pos) : s_(s), pos_(pos) {}
    uint32_t operator*() const { return static_cast<uint32_t>(pos_); }
    iterator& operator++() {
      pos_ = s_->next(pos_);
      return *this;
    }
    bool operator!=(const iterator& o) const { return pos_ != o.pos_; }
    bool operator==(const iterator& o) const { return pos_ == o.pos_; }

   private:
    const CpuSet* s_;
    int pos_;
  };
  iterator begin() const { return iterator(this, first()); }
  iterator end() const { return iterator(this, -1); }

 private:
  void trim() noexcept;
  std::vector<uint64_t> words_;
};

}  // namespace mk
