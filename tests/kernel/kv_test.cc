// Unit tests of the RESP codec (mksdk/resp.h) and the region KV store
// (mksdk/kv_store.h).
#include <sys/mman.h>

#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "mksdk/kv_store.h"
#include "mksdk/resp.h"

namespace mk::sdk {
namespace {

using Args = std::vector<std::string>;

// ---- RESP ----

TEST(Resp, ParsesMultibulkAndReportsConsumed) {
  Args a;
  const std::string req = resp::encode_command({"SET", "key", "va\r\nl"});
  auto r = resp::parse_request(req, &a);
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(*r, req.size());
  EXPECT_EQ(a, (Args{"SET", "key", "va\r\nl"}));
}

TEST(Resp, EveryPrefixIsIncomplete) {
  const std::string req = resp::encode_command({"MSET", "a", "1", "bb", "", "c", std::string(300, 'x')});
  Args a;
  for (std::size_t i = 0; i < req.size(); ++i) {
    auto r = resp::parse_request(std::string_view(req).substr(0, i), &a);
    ASSERT_TRUE(r.has_value()) << i << ": " << r.error().to_string();
    EXPECT_EQ(*r, 0u) << i;
  }
}

TEST(Resp, PipelinedRequestsOneAtATime) {
  std::string buf = resp::encode_command({"PING"}) + "GET  k\r\n" + "\r\n" + "*0\r\n" + "*-1\r\n" +
                    resp::encode_command({"INCR", "n"}) + "*1\r\n$4\r\nPI";
  std::vector<Args> got;
  std::size_t off = 0;
  Args a;
  for (;;) {
    auto r = resp::parse_request(std::string_view(buf).substr(off), &a);
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    if (*r == 0) break;
    off += *r;
    got.push_back(a);
  }
  ASSERT_EQ(got.size(), 6u);
  EXPECT_EQ(got[0], Args{"PING"});
  EXPECT_EQ(got[1], (Args{"GET", "k"}));
  EXPECT_TRUE(got[2].empty());  // empty inline line
  EXPECT_TRUE(got[3].empty());  // *0
  EXPECT_TRUE(got[4].empty());  // *-1
  EXPECT_EQ(got[5], (Args{"INCR", "n"}));
  EXPECT_EQ(buf.substr(off), "*1\r\n$4\r\nPI");
}

TEST(Resp, InlineWithoutCrAndWithTabs) {
  Args a;
  auto r = resp::parse_request("set\tk  v\n", &a);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, 9u);
  EXPECT_EQ(a, (Args{"set", "k", "v"}));
  EXPECT_EQ(*resp::parse_request("PING", &a), 0u);  // no newline yet
}

void expect_error(std::string_view in, std::string_view needle) {
  Args a;
  auto r = resp::parse_request(in, &a);
  ASSERT_FALSE(r.has_value()) << "accepted: " << std::string(in).substr(0, 60);
  EXPECT_EQ(r.error().code(), EPROTO);
  EXPECT_NE(std::string(r.error().message()).find(needle), std::string::npos) << r.error().message();
}

TEST(Resp, EveryErrorPath) {
  expect_error("*1x\r\n", "invalid multibulk count");
  expect_error("*\r\n", "invalid multibulk count");
  expect_error("*-\r\n", "invalid multibulk count");
  expect_error("*1\n", "invalid multibulk count line");
  expect_error("*+1\r\n", "invalid multibulk count");
  expect_error("*1025\r\n", "invalid multibulk length");
  expect_error("*999999999999999999999\r\n", "invalid multibulk count");
  expect_error("*" + std::string(40, '1'), "too big multibulk count string");
  expect_error("*1\r\n:1\r\n", "expected '$', got ':'");
  expect_error(std::string("*1\r\n\x01", 5), "got byte 0x01");
  expect_error("*1\r\n$-1\r\n", "invalid bulk length");
  expect_error("*1\r\n$x\r\n", "invalid bulk length");
  expect_error("*1\r\n$3\n", "invalid bulk length line");
  expect_error("*1\r\n$67108865\r\n", "invalid bulk length 67108865");
  expect_error("*1\r\n$" + std::string(40, '9'), "too big bulk length string");
  expect_error("*1\r\n$3\r\nabcXY", "not followed by CRLF");
  expect_error("*3\r\n$67108864\r\n" + std::string(67108864, 'a') + "\r\n$67108864\r\n" +
                   std::string(67108864, 'b') + "\r\n$1\r\n",
               "request larger than");
  expect_error(std::string(resp::kMaxInline, 'a'), "too big inline request");
  std::string many;
  for (int i = 0; i < 1100; ++i) many += "a ";
  expect_error(many + "\n", "too many arguments");
}

TEST(Resp, LimitsAreInclusive) {
  Args a;
  std::string req = "*1024\r\n";
  for (int i = 0; i < 1024; ++i) req += "$0\r\n\r\n";
  auto r = resp::parse_request(req, &a);
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(a.size(), 1024u);
}

TEST(Resp, Serializers) {
  std::string o;
  resp::append_simple(&o, "OK");
  resp::append_error(&o, "ERR bad\r\nthing");
  resp::append_integer(&o, -42);
  resp::append_integer(&o, INT64_MIN);
  resp::append_bulk(&o, std::string("a\0b", 3));
  resp::append_nil(&o);
  resp::append_array_header(&o, 2);
  resp::append_nil_array(&o);
  static constexpr char kWant[] =
      "+OK\r\n-ERR bad  thing\r\n:-42\r\n:-9223372036854775808\r\n$3\r\na\0b\r\n$-1\r\n*2\r\n*-1\r\n";
  EXPECT_EQ(o, std::string(kWant, sizeof kWant - 1));
}

// ---- KvStore ----

class Region {
 public:
  explicit Region(std::size_t n) : n_(n) {
    p_ = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  }
  ~Region() { ::munmap(p_, n_); }
  void* base() const { return p_; }
  std::size_t size() const { return n_; }
  unsigned char* bytes() const { return static_cast<unsigned char*>(p_); }

 private:
  void* p_;
  std::size_t n_;
};

TEST(KvStore, FormatAttachSeesTheData) {
  Region r(1 << 20);
  {
    auto s = KvStore::format(r.base(), r.size());
    ASSERT_TRUE(s.has_value()) << s.error().to_string();
    ASSERT_TRUE(s->set("a", "1").has_value());
    ASSERT_TRUE(s->set("b", std::string(1000, 'x')).has_value());
    ASSERT_TRUE(s->lpush("l", Args{"x", "y"}).has_value());
    EXPECT_EQ(s->dbsize(), 3u);
  }
  auto s = KvStore::attach(r.base(), r.size());
  ASSERT_TRUE(s.has_value()) << s.error().to_string();
  EXPECT_EQ(s->dbsize(), 3u);
  EXPECT_EQ(s->get("a")->value(), "1");
  EXPECT_EQ(s->get("b")->value(), std::string(1000, 'x'));
  auto l = s->lrange("l", 0, -1);
  ASSERT_TRUE(l.has_value());
  EXPECT_EQ(*l, (std::vector<std::string_view>{"y", "x"}));
}

TEST(KvStore, AttachRejectsBadRegionsAndHeaders) {
  Region r(1 << 20);
  EXPECT_EQ(KvStore::attach(r.base(), r.size()).error().code(), ENOENT);  // zeroed
  EXPECT_EQ(KvStore::format(r.base(), 1000).error().code(), EINVAL);
  EXPECT_EQ(KvStore::format(r.bytes() + 8, r.size() - 64).error().code(), EINVAL);
  ASSERT_TRUE(KvStore::format(r.base(), r.size()).has_value());
  EXPECT_EQ(KvStore::attach(r.base(), r.size() / 2).error().code(), EBADMSG);  // size differs
  // Each header word corrupted in turn: an error (never a crash), except
  // fields whose any value is valid (items/used are checked loosely).
  std::vector<unsigned char> saved(r.bytes(), r.bytes() + 4096);
  int errors = 0;
  for (std::size_t off = 0; off < 8 * 40; off += 8) {
    for (std::uint64_t v : {0ull, 1ull, 0xffffffffffffffffull, 4097ull, (1ull << 20) + 8}) {
      std::memcpy(r.bytes() + off, &v, 8);
      auto s = KvStore::attach(r.base(), r.size());
      if (!s) {
        ++errors;
        EXPECT_TRUE(s.error().code() == ENOENT || s.error().code() == EBADMSG ||
                    s.error().code() == EPROTONOSUPPORT)
            << s.error().to_string();
      } else {
        (void)s->get("k");
        (void)s->set("k", "v");  // must not crash either
      }
      std::memcpy(r.bytes(), saved.data(), saved.size());
    }
  }
  EXPECT_GT(errors, 40);
  std::uint32_t v2 = 2;
  std::memcpy(r.bytes() + 8, &v2, 4);
  EXPECT_EQ(KvStore::attach(r.base(), r.size()).error().code(), EPROTONOSUPPORT);
}

TEST(KvStore, CorruptBodyIsAnErrorNotACrash) {
  Region r(1 << 20);
  auto s = KvStore::format(r.base(), r.size());
  ASSERT_TRUE(s.has_value());
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(s->set("key" + std::to_string(i), "v").has_value());
  // Scribble over every bucket.
  std::memset(r.bytes() + KvStore::kHeaderBytes, 0x41, s->bucket_count() * 8);
  auto g = s->get("key1");
  ASSERT_FALSE(g.has_value());
  EXPECT_EQ(g.error().code(), EIO);
  EXPECT_FALSE(s->set("key1", "x").has_value());
}

TEST(KvStore, IncrFollowsRedis) {
  Region r(1 << 20);
  auto s = *KvStore::format(r.base(), r.size());
  EXPECT_EQ(*s.incr("n", 1), 1);
  EXPECT_EQ(*s.incr("n", 41), 42);
  EXPECT_EQ(s.get("n")->value(), "42");
  EXPECT_EQ(*s.incr("n", -50), -8);
  for (const char* bad : {"abc", "007", "+1", " 1", "1 ", "", "-0", "1.5", "99999999999999999999"}) {
    ASSERT_TRUE(s.set("b", bad).has_value());
    auto i = s.incr("b", 1);
    ASSERT_FALSE(i.has_value()) << bad;
    EXPECT_EQ(i.error().code(), EINVAL) << bad;
  }
  ASSERT_TRUE(s.set("m", "9223372036854775807").has_value());
  EXPECT_EQ(s.incr("m", 1).error().code(), ERANGE);
  EXPECT_EQ(s.get("m")->value(), "9223372036854775807");
  ASSERT_TRUE(s.set("m", "-9223372036854775808").has_value());
  EXPECT_EQ(s.incr("m", -1).error().code(), ERANGE);
  EXPECT_EQ(*s.incr("m", 1), INT64_MIN + 1);
  ASSERT_TRUE(s.lpush("l", Args{"1"}).has_value());
  EXPECT_EQ(s.incr("l", 1).error().code(), EMEDIUMTYPE);
}

TEST(KvStore, ManyKeysDeleteAndReuse) {
  Region r(16 << 20);
  auto s = *KvStore::format(r.base(), r.size());
  const int n = 50000;
  for (int i = 0; i < n; ++i) ASSERT_TRUE(s.set("k:" + std::to_string(i), std::to_string(i * 7)).has_value());
  EXPECT_EQ(s.dbsize(), static_cast<std::uint64_t>(n));
  for (int i = 0; i < n; ++i) ASSERT_EQ(s.get("k:" + std::to_string(i))->value(), std::to_string(i * 7)) << i;
  for (int i = 0; i < n; i += 2) ASSERT_TRUE(*s.del("k:" + std::to_string(i)));
  EXPECT_FALSE(*s.del("k:0"));
  EXPECT_EQ(s.dbsize(), static_cast<std::uint64_t>(n / 2));
  EXPECT_FALSE(*s.exists("k:0"));
  EXPECT_TRUE(*s.exists("k:1"));
  const auto used = s.used_bytes();
  // Freed blocks are reused: re-adding the same shapes does not grow use
  // past the first peak.
  for (int i = 0; i < n; i += 2) ASSERT_TRUE(s.set("k:" + std::to_string(i), std::to_string(i * 7)).has_value());
  EXPECT_GT(s.used_bytes(), used);
  auto again = *KvStore::attach(r.base(), r.size());
  EXPECT_EQ(again.dbsize(), static_cast<std::uint64_t>(n));
  s.flushall();
  EXPECT_EQ(s.dbsize(), 0u);
  EXPECT_FALSE(s.get("k:1")->has_value());
}

TEST(KvStore, OverwriteGrowShrinkAndMsetMget) {
  Region r(1 << 20);
  auto s = *KvStore::format(r.base(), r.size());
  ASSERT_TRUE(s.set("k", "short").has_value());
  ASSERT_TRUE(s.set("k", std::string(5000, 'z')).has_value());
  EXPECT_EQ(s.get("k")->value(), std::string(5000, 'z'));
  ASSERT_TRUE(s.set("k", "").has_value());
  EXPECT_EQ(s.get("k")->value(), "");
  EXPECT_EQ(s.dbsize(), 1u);
  ASSERT_TRUE(s.mset(Args{"a", "1", "b", "2"}).has_value());
  EXPECT_EQ(s.mset(Args{"a"}).error().code(), EINVAL);
  auto m = s.mget(Args{"a", "nope", "b"});
  ASSERT_TRUE(m.has_value());
  ASSERT_EQ(m->size(), 3u);
  EXPECT_EQ((*m)[0].value(), "1");
  EXPECT_FALSE((*m)[1].has_value());
  EXPECT_EQ((*m)[2].value(), "2");
}

TEST(KvStore, OutOfMemoryIsAnErrorAndKeepsOldValue) {
  Region r(KvStore::kMinRegion);
  auto s = *KvStore::format(r.base(), r.size());
  ASSERT_TRUE(s.set("k", "old").has_value());
  auto big = s.set("k", std::string(KvStore::kMinRegion, 'x'));
  ASSERT_FALSE(big.has_value());
  EXPECT_EQ(big.error().code(), ENOMEM);
  EXPECT_EQ(s.get("k")->value(), "old");
  int stored = 0;
  Result<void> last;
  for (int i = 0; i < 100000 && (last = s.set("key" + std::to_string(i), std::string(100, 'v'))); ++i) ++stored;
  ASSERT_FALSE(last.has_value());
  EXPECT_EQ(last.error().code(), ENOMEM);
  EXPECT_GT(stored, 100);
  EXPECT_LE(s.used_bytes(), s.capacity_bytes());
  EXPECT_EQ(s.lpush("l", Args{std::string(40000, 'q')}).error().code(), ENOMEM);
  EXPECT_FALSE(*s.exists("l"));  // no empty list left behind
  ASSERT_TRUE(s.del("key0").has_value());
  EXPECT_TRUE(s.set("key0", std::string(100, 'v')).has_value());  // freed block reused
}

TEST(KvStore, Lists) {
  Region r(1 << 20);
  auto s = *KvStore::format(r.base(), r.size());
  EXPECT_EQ(*s.lpush("l", Args{"a", "b", "c"}), 3u);
  auto all = s.lrange("l", 0, -1);
  ASSERT_TRUE(all.has_value()) << all.error().to_string();
  EXPECT_EQ(*all, (std::vector<std::string_view>{"c", "b", "a"}));
  auto p1 = s.lpop("l");
  ASSERT_TRUE(p1.has_value()) << p1.error().to_string();
  ASSERT_TRUE(s.lpush("l", Args{"c"}).has_value());
  EXPECT_EQ(*s.lrange("l", -2, 10), (std::vector<std::string_view>{"b", "a"}));
  EXPECT_TRUE(s.lrange("l", 5, 10)->empty());
  EXPECT_EQ(s.lpop("l")->value(), "c");
  EXPECT_EQ(s.get("l").error().code(), EMEDIUMTYPE);
  ASSERT_TRUE(s.set("str", "x").has_value());
  EXPECT_EQ(s.lpush("str", Args{"a"}).error().code(), EMEDIUMTYPE);
  EXPECT_EQ(s.lpop("l")->value(), "b");
  EXPECT_EQ(s.lpop("l")->value(), "a");
  EXPECT_FALSE(*s.exists("l"));
  EXPECT_FALSE(s.lpop("l")->has_value());
  ASSERT_TRUE(s.lpush("l2", Args{"z"}).has_value());
  ASSERT_TRUE(s.set("l2", "now a string").has_value());  // SET replaces any type
  EXPECT_EQ(s.get("l2")->value(), "now a string");
}

TEST(KvStore, ParseInt) {
  std::int64_t v = 0;
  EXPECT_TRUE(kv_parse_int("-9223372036854775808", &v));
  EXPECT_EQ(v, INT64_MIN);
  EXPECT_FALSE(kv_parse_int("9223372036854775808", &v));
  EXPECT_TRUE(kv_parse_int("0", &v));
  EXPECT_FALSE(kv_parse_int("-", &v));
}

}  // namespace
}  // namespace mk::sdk
