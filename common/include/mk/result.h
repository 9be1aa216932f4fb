// DOC: mk::Error and mk::Result<T> — the one error currency of every mkernel
// library (common, ipi, handover, mkernel, kernel SDK).
//
// What this is: a value-or-error return type spelled like std::expected (so a
// later `template <class T> using Result = std::expected<T, Error>` is a
// one-line switch once the toolchain ships <expected> under C++20), and an
// Error that is trivially copyable and never allocates, so it is safe on the
// IPI hot path and inside a signal-free child after fork().
//
// Error codes are errno values: hwloc, libnuma and syscalls already speak
// errno, and foreign spaces (libfdt's FDT_ERR_*) are translated at the
// wrapper. `what` is a string literal naming the failure class; `detail` is an
// optional fixed-size message built at the failure site with the specifics a
// user needs ("cpu 5 already belongs to instance 'db' (cpus 4-7); ...").
//
// Usage:
//   1. return mk::fail(EINVAL, "bad cpu list", "'%s': %s", text, why);
//   2. MK_TRY(step());                 // propagate on error
//   3. MK_TRY_ASSIGN(auto x, make());  // bind on success, propagate on error
#pragma once

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#if __has_include(<source_location>)
#include <source_location>
#endif

namespace mk {

// mk::source_location is std::source_location where the toolchain has it.
// clang 14 with libstdc++ 12 (the fuzz preset) lacks the builtin that
// libstdc++'s version needs, so there a same-shaped fallback built on the
// __builtin_FILE/LINE/FUNCTION intrinsics stands in.
#if defined(__cpp_lib_source_location)
using source_location = std::source_location;
#else
struct source_location {
  static constexpr source_location current(const char* file = __builtin_FILE(),
                                           const char* function = __builtin_FUNCTION(),
                                           uint_least32_t line = __builtin_LINE()) noexcept {
    source_location l;
    l.file_ = file;
    l.function_ = function;
    l.line_ = line;
    return l;
  }
  constexpr const char* file_name() const noexcept { return file_; }
  constexpr const char* function_name() const noexcept { return function_; }
  constexpr uint_least32_t line() const noexcept { return line_; }
  constexpr uint_least32_t column() const noexcept { return 0; }

 private:
  const char* file_ = "";
  const char* function_ = "";
  uint_least32_t line_ = 0;
};
#endif

class [[nodiscard]] Error {
 public:
  static constexpr std::size_t kDetailMax = 320;

  constexpr Error() = default;
  Error(int errnum, const char* what,
        source_location where = source_location::current()) noexcept
      : errnum_(errnum), what_(what), where_(where) {}

  int code() const noexcept { return errnum_; }
  const char* what() const noexcept { return what_; }
  const char* detail() const noexcept { return detail_; }
  const source_location& where() const noexcept { return where_; }

  // The message for a user: the detail when the failure site gave one, the
  // failure class otherwise.
  const char* message() const noexcept { return detail_[0] ? detail_ : what_; }

  // Human form "what: detail" (or just what), for logs and CLI output.
  std::string to_string() const {
    std::string s = what_;
    if (detail_[0]) {
      s += ": ";
      s += detail_;
    }
    return s;
  }

  Error& set_detail(const char* fmt, ...) noexcept __attribute__((format(printf, 2, 3))) {
    va_list ap;
    va_start(ap, fmt);
    vset_detail(fmt, ap);
    va_end(ap);
    return *this;
  }

  Error& vset_detail(const char* fmt, va_list ap) noexcept {
    int n = std::vsnprintf(detail_, sizeof detail_, fmt, ap);
    if (n >= static_cast<int>(sizeof detail_)) {
      // Truncated: say so instead of silently cutting a list in half.
      std::memcpy(detail_ + sizeof detail_ - 4, "...", 4);
    }
    return *this;
  }

 private:
  int errnum_ = 0;
  const char* what_ = "success";
  source_location where_{};
  char detail_[kDetailMax] = {};
};

static_assert(std::is_trivially_copyable_v<Error>);

// Result<T>: either a T or an Error.
template <class T>
class [[nodiscard]] Result {
 public:
  using value_type = T;

  Result(const T& v) : v_(std::in_place_index<0>, v) {}
  Result(T&& v) : v_(std::in_place_index<0>, std::move(v)) {}
  Result(const Error& e) : v_(std::in_place_index<1>, e) {}
  template <class U>
    requires(std::is_constructible_v<T, U &&> && !std::is_same_v<std::remove_cvref_t<U>, T> &&
             !std::is_same_v<std::remove_cvref_t<U>, Error>)
  Result(U&& u) : v_(std::in_place_index<0>, T(std::forward<U>(u))) {}

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const Error& error() const { return std::get<1>(v_); }

  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  template <class U>
  T value_or(U&& fallback) const& {
    return has_value() ? value() : static_cast<T>(std::forward<U>(fallback));
  }

 private:
  std::variant<T, Error> v_;
};

// Success holds std::monostate, so returning ok() never touches (or zeroes)
// the Error's detail buffer: the IPI hot path returns Result<void>.
template <>
class [[nodiscard]] Result<void> {
 public:
  using value_type = void;
  Result() = default;
  Result(const Error& e) : v_(std::in_place_index<1>, e) {}

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }
  void value() const {}
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<std::monostate, Error> v_;
};

inline Result<void> ok() { return {}; }

// fail(code, what) / fail(code, what, fmt, ...): build an Error at the failure
// site. `what` must be a string literal (it is stored by pointer).
inline Error fail(int code, const char* what,
                  source_location where = source_location::current()) noexcept {
  return Error(code, what, where);
}

#define MK_FAIL(code, what, ...) \
  (::mk::Error((code), (what), ::mk::source_location::current()).set_detail(__VA_ARGS__))

// Propagate an error from `expr` (a Result<...>) to the caller.
#define MK_TRY(expr)                                 \
  do {                                               \
    auto&& mk_try_r_ = (expr);                       \
    if (!mk_try_r_.has_value()) return mk_try_r_.error(); \
  } while (0)

#define MK_CONCAT_INNER_(a, b) a##b
#define MK_CONCAT_(a, b) MK_CONCAT_INNER_(a, b)
#define MK_TRY_ASSIGN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                        \
  if (!tmp.has_value()) return tmp.error(); \
  lhs = std::move(tmp).value()

// Bind the value of `expr` to `lhs` (a declaration or an lvalue) or return its
// error from the enclosing function.
#define MK_TRY_ASSIGN(lhs, expr) MK_TRY_ASSIGN_IMPL_(MK_CONCAT_(mk_try_a_, __LINE__), lhs, expr)

// errno captured right after a failing syscall.
inline Error errno_error(const char* what,
                         source_location where = source_location::current()) noexcept {
  int e = errno;
  return Error(e ? e : EIO, what, where);
}

}  // namespace mk
