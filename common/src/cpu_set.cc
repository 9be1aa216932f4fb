// CpuSet: bitset operations and the cpu-list parser (see mk/cpu_set.h).
#include "mk/cpu_set.h"

#include <algorithm>
#include <bit>
#include <charconv>

namespace mk {

CpuSet CpuSet::of(std::initializer_list<uint32_t> cpus) {
  CpuSet s;
  for (uint32_t c : cpus) s.insert(c);
  return s;
}

CpuSet CpuSet::range(uint32_t first, uint32_t last) {
  CpuSet s;
  for (uint32_t c = first; c <= last; ++c) s.insert(c);
  return s;
}

bool CpuSet::contains(uint32_t cpu) const noexcept {
  std::size_t w = cpu / 64;
  return w < words_.size() && (words_[w] >> (cpu % 64)) & 1u;
}

void CpuSet::insert(uint32_t cpu) {
  std::size_t w = cpu / 64;
  if (w >= words_.size()) words_.resize(w + 1, 0);
  words_[w] |= uint64_t{1} << (cpu % 64);
}

void CpuSet::erase(uint32_t cpu) noexcept {
  std::size_t w = cpu / 64;
  if (w < words_.size()) {
    words_[w] &= ~(uint64_t{1} << (cpu % 64));
    trim();
  }
}

void CpuSet::trim() noexcept {
  while (!words_.empty() && words_.back() == 0) words_.pop_back();
}

std::size_t CpuSet::count() const noexcept {
  std::size_t n = 0;
  for (uint64_t w : words_) n += static_cast<std::size_t>(std::popcount(w));
  return n;
}

int CpuSet::first() const noexcept { return next(-1); }

int CpuSet::last() const noexcept {
  for (std::size_t i = words_.size(); i-- > 0;) {
    if (words_[i]) return static_cast<int>(i * 64 + 63 - std::countl_zero(words_[i]));
  }
  return -1;
}

int CpuSet::next(int cpu) const noexcept {
  uint32_t start = static_cast<uint32_t>(cpu + 1);
  std::size_t w = start / 64;
  if (w >= words_.size()) return -1;
  uint64_t bits = words_[w] & (~uint64_t{0} << (start % 64));
  while (true) {
    if (bits) return static_cast<int>(w * 64 + static_cast<std::size_t>(std::countr_zero(bits)));
    if (++w >= words_.size()) return -1;
    bits = words_[w];
  }
}

std::vector<uint32_t> CpuSet::to_vector() const {
  std::vector<uint32_t> v;
  v.reserve(count());
  for (uint32_t c : *this) v.push_back(c);
  return v;
}

std::string CpuSet::to_string() const {
  std::string out;
  int c = first();
  while (c >= 0) {
    int end = c;
    while (contains(static_cast<uint32_t>(end + 1))) ++end;
    if (!out.empty()) out += ',';
    out += std::to_string(c);
    if (end > c) {
      out += '-';
      out += std::to_string(end);
    }
    c = next(end);
  }
  return out;
}

CpuSet CpuSet::operator|(const CpuSet& o) const {
  CpuSet r = *this;
  r |= o;
  return r;
}

CpuSet& CpuSet::operator|=(const CpuSet& o) {
  if (o.words_.size() > words_.size()) words_.resize(o.words_.size(), 0);
  for (std::size_t i = 0; i < o.words_.size(); ++i) words_[i] |= o.words_[i];
  return *this;
}

CpuSet CpuSet::operator&(const CpuSet& o) const {
  CpuSet r;
  std::size_t n = std::min(words_.size(), o.words_.size());
  r.words_.resize(n);
  for (std::size_t i = 0; i < n; ++i) r.words_[i] = words_[i] & o.words_[i];
  r.trim();
  return r;
}

CpuSet CpuSet::operator-(const CpuSet& o) const {
  CpuSet r = *this;
  r -= o;
  return r;
}

CpuSet& CpuSet::operator-=(const CpuSet& o) {
  std::size_t n = std::min(words_.size(), o.words_.size());
  for (std::size_t i = 0; i < n; ++i) words_[i] &= ~o.words_[i];
  trim();
  return *this;
}

bool CpuSet::intersects(const CpuSet& o) const noexcept {
  std::size_t n = std::min(words_.size(), o.words_.size());
  for (std::size_t i = 0; i < n; ++i)
    if (words_[i] & o.words_[i]) return true;
  return false;
}

bool CpuSet::is_subset_of(const CpuSet& o) const noexcept {
  for (std::size_t i = 0; i < words_.size(); ++i) {
    uint64_t other = i < o.words_.size() ? o.words_[i] : 0;
    if (words_[i] & ~other) return false;
  }
  return true;
}

bool CpuSet::operator==(const CpuSet& o) const noexcept { return words_ == o.words_; }

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n'; }

std::string_view strip(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// Parses a decimal CPU number that must fill `s` entirely.
Result<uint32_t> parse_index(std::string_view s, std::string_view token) {
  uint64_t v = 0;
  if (s.empty()) {
    return MK_FAIL(EINVAL, "bad cpu list", "'%.*s': expected a CPU number, e.g. 0-3,8",
                   static_cast<int>(token.size()), token.data());
  }
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec == std::errc::result_out_of_range) v = UINT64_MAX;
  else if (ec != std::errc() || p != s.data() + s.size()) {
    return MK_FAIL(EINVAL, "bad cpu list",
                   "'%.*s' is not a CPU number or range (expected e.g. 0-3,8,10-11)",
                   static_cast<int>(token.size()), token.data());
  }
  if (v >= CpuSet::kMaxCpus) {
    return MK_FAIL(ERANGE, "cpu index out of range", "cpu %.*s is beyond the maximum of %u CPUs",
                   static_cast<int>(s.size()), s.data(), CpuSet::kMaxCpus);
  }
  return static_cast<uint32_t>(v);
}

}  // namespace

Result<CpuSet> CpuSet::parse(std::string_view text) {
  CpuSet out;
  std::string_view rest = strip(text);
  if (rest.empty()) return MK_FAIL(EINVAL, "bad cpu list", "empty cpu list (expected e.g. 0-3,8)");
  while (true) {
    std::size_t comma = rest.find(',');
    std::string_view token = strip(rest.substr(0, comma));
    if (token.empty()) {
      return MK_FAIL(EINVAL, "bad cpu list", "empty element in '%.*s' (stray comma?)",
                     static_cast<int>(text.size()), text.data());
    }
    std::string_view range = token;
    uint32_t stride = 1;
    if (std::size_t colon = token.find(':'); colon != std::string_view::npos) {
      range = token.substr(0, colon);
      MK_TRY_ASSIGN(uint32_t st, parse_index(token.substr(colon + 1), token));
      if (st == 0) {
        return MK_FAIL(EINVAL, "bad cpu list", "'%.*s': stride must be at least 1",
                       static_cast<int>(token.size()), token.data());
      }
      stride = st;
    }
    std::size_t dash = range.find('-');
    if (dash == std::string_view::npos) {
      if (stride != 1) {
        return MK_FAIL(EINVAL, "bad cpu list", "'%.*s': a stride needs a range (e.g. 0-15:2)",
                       static_cast<int>(token.size()), token.data());
      }
      MK_TRY_ASSIGN(uint32_t c, parse_index(range, token));
      out.insert(c);
    } else {
      MK_TRY_ASSIGN(uint32_t lo, parse_index(strip(range.substr(0, dash)), token));
      MK_TRY_ASSIGN(uint32_t hi, parse_index(strip(range.substr(dash + 1)), token));
      if (hi < lo) {
        return MK_FAIL(EINVAL, "bad cpu list", "'%.*s': range end is below its start",
                       static_cast<int>(token.size()), token.data());
      }
      for (uint32_t c = lo; c <= hi; c += stride) out.insert(c);
    }
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  return out;
}

}  // namespace mk
