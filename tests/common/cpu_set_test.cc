// CpuSet: set algebra and the cpu-list parser, including every error path.
#include "mk/cpu_set.h"

#include <gtest/gtest.h>

namespace mk {
namespace {

TEST(CpuSet, ParsesListsRangesAndStrides) {
  auto s = CpuSet::parse("0-3,8,10-11");
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_EQ(s->to_string(), "0-3,8,10-11");
  EXPECT_EQ(s->count(), 7u);
  auto st = CpuSet::parse("0-7:2");
  ASSERT_TRUE(st);
  EXPECT_EQ(st->to_string(), "0,2,4,6");
  auto sp = CpuSet::parse(" 5 , 1-2 ");
  ASSERT_TRUE(sp);
  EXPECT_EQ(sp->to_string(), "1-2,5");
}

TEST(CpuSet, CanonicalisesOverlapsAndOrder) {
  auto s = CpuSet::parse("7,3-5,4,6");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->to_string(), "3-7");
}

TEST(CpuSet, RejectsMalformedText) {
  for (const char* bad : {"", " ", "a", "1-", "-1", "3-1", "1,,2", "1,", "0-3:0", "5:2", "1.5", "0x1",
                          "1 2"}) {
    auto s = CpuSet::parse(bad);
    ASSERT_FALSE(s) << "accepted '" << bad << "'";
    EXPECT_EQ(s.error().code(), EINVAL) << bad;
    EXPECT_STRNE(s.error().detail(), "") << bad;
  }
}

TEST(CpuSet, RejectsOutOfRange) {
  auto s = CpuSet::parse("0-8192");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ERANGE);
  auto big = CpuSet::parse("99999999999999999999999");
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code(), ERANGE);
  EXPECT_TRUE(CpuSet::parse("8191"));
}

TEST(CpuSet, Algebra) {
  CpuSet a = CpuSet::range(0, 7), b = CpuSet::of({4, 5, 100});
  EXPECT_EQ((a & b).to_string(), "4-5");
  EXPECT_EQ((a - b).to_string(), "0-3,6-7");
  EXPECT_EQ((a | b).to_string(), "0-7,100");
  EXPECT_TRUE(a.intersects(b));
  EXPECT_FALSE(CpuSet::of({1}).intersects(CpuSet::of({65})));
  EXPECT_TRUE(CpuSet::of({4, 5}).is_subset_of(a));
  EXPECT_FALSE(b.is_subset_of(a));
  EXPECT_EQ(b.first(), 4);
  EXPECT_EQ(b.last(), 100);
  EXPECT_EQ(b.next(5), 100);
  EXPECT_EQ(b.next(100), -1);
  CpuSet e;
  EXPECT_TRUE(e.empty());
  EXPECT_EQ(e.first(), -1);
  EXPECT_EQ(e.to_string(), "");
  // Equality ignores trailing empty words.
  CpuSet c = CpuSet::of({1, 200});
  c.erase(200);
  EXPECT_EQ(c, CpuSet::of({1}));
}

TEST(CpuSet, Iterates) {
  CpuSet s = CpuSet::of({0, 63, 64, 127, 128});
  std::vector<uint32_t> v;
  for (uint32_t c : s) v.push_back(c);
  EXPECT_EQ(v, (std::vector<uint32_t>{0, 63, 64, 127, 128}));
  EXPECT_EQ(s.to_vector(), v);
}

}  // namespace
}  // namespace mk
