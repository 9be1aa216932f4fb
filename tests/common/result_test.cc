// Result/Error: value and error paths, MK_TRY propagation, detail formatting.
#include "mk/result.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace mk {
namespace {

Result<int> half(int x) {
  if (x % 2) return MK_FAIL(EINVAL, "odd number", "%d is odd", x);
  return x / 2;
}

Result<int> quarter(int x) {
  MK_TRY_ASSIGN(int h, half(x));
  MK_TRY_ASSIGN(int q, half(h));
  return q;
}

Result<void> check(int x) {
  MK_TRY(half(x));
  return ok();
}

TEST(Result, ValueAndErrorPaths) {
  auto r = quarter(8);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 2);
  auto e = quarter(6);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code(), EINVAL);
  EXPECT_STREQ(e.error().what(), "odd number");
  EXPECT_STREQ(e.error().detail(), "3 is odd");
  EXPECT_EQ(e.error().to_string(), "odd number: 3 is odd");
  EXPECT_TRUE(check(2));
  EXPECT_FALSE(check(3));
  EXPECT_EQ(quarter(5).value_or(-1), -1);
}

TEST(Result, MoveOnlyValues) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(7);
  ASSERT_TRUE(r);
  std::unique_ptr<int> p = std::move(r).value();
  EXPECT_EQ(*p, 7);
}

TEST(Result, LongDetailIsMarkedTruncated) {
  Error e(EINVAL, "x");
  std::string longtext(1000, 'a');
  e.set_detail("%s", longtext.c_str());
  std::string d = e.detail();
  EXPECT_EQ(d.size(), Error::kDetailMax - 1);
  EXPECT_EQ(d.substr(d.size() - 3), "...");
  EXPECT_STREQ(Error(ENOENT, "plain").message(), "plain");
}

}  // namespace
}  // namespace mk
