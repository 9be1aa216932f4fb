// parse_size / format_size, including every error path.
#include "mk/units.h"

#include <gtest/gtest.h>

namespace mk {
namespace {

TEST(Units, ParsesSuffixes) {
  EXPECT_EQ(*parse_size("4096"), 4096u);
  EXPECT_EQ(*parse_size("64K"), 64 * kKiB);
  EXPECT_EQ(*parse_size("512M"), 512 * kMiB);
  EXPECT_EQ(*parse_size("2G"), 2 * kGiB);
  EXPECT_EQ(*parse_size("2GiB"), 2 * kGiB);
  EXPECT_EQ(*parse_size("2gb"), 2 * kGiB);
  EXPECT_EQ(*parse_size("1.5G"), kGiB + kGiB / 2);
  EXPECT_EQ(*parse_size("1T"), 1024 * kGiB);
  EXPECT_EQ(*parse_size(" 8 M "), 8 * kMiB);
  EXPECT_EQ(*parse_size("10B"), 10u);
}

TEST(Units, RejectsBadSizes) {
  for (const char* bad : {"", "M", "12X", "1.5", "1.3K", "5MiBs", "-1G", "1..2G", "G2"}) {
    auto r = parse_size(bad);
    ASSERT_FALSE(r) << "accepted '" << bad << "'";
    EXPECT_EQ(r.error().code(), EINVAL) << bad;
  }
  auto r = parse_size("9999999T");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ERANGE);
  auto r2 = parse_size("99999999999999999999999999");
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.error().code(), ERANGE);
}

TEST(Units, Formats) {
  EXPECT_EQ(format_size(0), "0 B");
  EXPECT_EQ(format_size(64 * kMiB), "64 MiB");
  EXPECT_EQ(format_size(kGiB + kGiB / 2), "1.50 GiB");
  EXPECT_EQ(format_size(1000), "1000 B");
}

}  // namespace
}  // namespace mk
