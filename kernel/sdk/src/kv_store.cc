// kv_store: a hash table of strings and lists inside one memory region,
// linked by offsets (see mksdk/kv_store.h for the layout).
#include "mksdk/kv_store.h"

#include <cstring>

namespace mk::sdk {

namespace {

constexpr unsigned kMinClass = 5;   // 32-byte blocks
constexpr unsigned kMaxClass = 28;  // 256 MiB blocks
constexpr unsigned kClasses = kMaxClass - kMinClass + 1;
constexpr std::uint64_t kBlockHeader = 8;
constexpr std::uint32_t kTagEntry = 0xb10c0001;
constexpr std::uint32_t kTagNode = 0xb10c0002;
constexpr std::uint32_t kTagFree = 0xb10c0003;
constexpr std::uint32_t kTypeString = 0;
constexpr std::uint32_t kTypeList = 1;

struct Block {
  std::uint32_t cls;
  std::uint32_t tag;
};

struct ListHead {
  std::uint64_t head;
  std::uint64_t count;
};

struct Node {
  std::uint64_t next;
  std::uint64_t len;
};

Error corrupt(const char* what) { return MK_FAIL(EIO, "corrupt store", "%s", what); }

}  // namespace

// Redis's string2ll: optional '-', no '+', no blanks, no leading zeros.
bool kv_parse_int(std::string_view s, std::int64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  if (s == "0") {
    *out = 0;
    return true;
  }
  bool neg = false;
  std::size_t i = 0;
  if (s[0] == '-') {
    neg = true;
    i = 1;
  }
  if (i >= s.size() || s[i] < '1' || s[i] > '9') return false;
  std::uint64_t v = 0;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    if (v > (UINT64_MAX - 9) / 10) return false;
    v = v * 10 + static_cast<std::uint64_t>(s[i] - '0');
  }
  if (neg) {
    if (v > static_cast<std::uint64_t>(INT64_MAX) + 1) return false;
    *out = static_cast<std::int64_t>(0 - v);
  } else {
    if (v > static_cast<std::uint64_t>(INT64_MAX)) return false;
    *out = static_cast<std::int64_t>(v);
  }
  return true;
}

struct KvStore::Header {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t header_bytes;
  std::uint64_t region_size;
  std::uint64_t buckets_off;
  std::uint64_t bucket_count;
  std::uint64_t heap_begin;
  std::uint64_t heap_end;
  std::uint64_t bump;
  std::uint64_t free_head[kClasses];
  std::uint64_t items;
  std::uint64_t heap_used;
};

struct KvStore::Entry {
  std::uint64_t next;
  std::uint64_t hash;
  std::uint32_t key_len;
  std::uint32_t type;
  std::uint64_t value_len;
};

template <class T>
T* KvStore::at(std::uint64_t off, std::uint64_t len) const {
  const Header* h = hdr();
  if (off < h->heap_begin || off > h->bump || len > h->bump - off || off % alignof(T) != 0) return nullptr;
  return reinterpret_cast<T*>(base_ + off);
}

std::uint64_t KvStore::hash_of(std::string_view key) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : key) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h ^ (h >> 29);
}

Result<KvStore> KvStore::format(void* base, std::uint64_t size) {
  if (base == nullptr || reinterpret_cast<std::uintptr_t>(base) % 64 != 0 || size % 8 != 0 || size < kMinRegion ||
      size > (1ull << 40)) {
    return MK_FAIL(EINVAL, "bad KV region", "%llu bytes at %p: need 8-aligned, %llu..2^40 bytes, 64-aligned base",
                   static_cast<unsigned long long>(size), base, static_cast<unsigned long long>(kMinRegion));
  }
  static_assert(sizeof(Header) <= kHeaderBytes);
  static_assert(sizeof(Entry) == 32);
  std::uint64_t buckets = 64;
  while (buckets * 2 <= size / 256) buckets *= 2;
  KvStore s(static_cast<std::byte*>(base), size);
  Header* h = s.hdr();
  std::memset(h, 0, kHeaderBytes);
  h->version = kVersion;
  h->header_bytes = kHeaderBytes;
  h->region_size = size;
  h->buckets_off = kHeaderBytes;
  h->bucket_count = buckets;
  h->heap_begin = (kHeaderBytes + buckets * 8 + 63) / 64 * 64;
  h->heap_end = size;
  h->bump = h->heap_begin;
  std::memset(s.base_ + h->buckets_off, 0, buckets * 8);
  // The magic last: a format torn half way is "no store", not a bad one.
  h->magic = kMagic;
  return s;
}

Result<KvStore> KvStore::attach(void* base, std::uint64_t size) {
  if (base == nullptr || reinterpret_cast<std::uintptr_t>(base) % 64 != 0 || size % 8 != 0 || size < kMinRegion) {
    return MK_FAIL(EINVAL, "bad KV region", "%llu bytes at %p", static_cast<unsigned long long>(size), base);
  }
  KvStore s(static_cast<std::byte*>(base), size);
  const Header* h = s.hdr();
  if (h->magic != kMagic) return MK_FAIL(ENOENT, "no KV store in the region", "magic 0x%016llx", static_cast<unsigned long long>(h->magic));
  if (h->version != kVersion) {
    return MK_FAIL(EPROTONOSUPPORT, "unsupported KV layout", "version %u, this image reads %u", h->version, kVersion);
  }
  auto bad = [](const char* what) { return MK_FAIL(EBADMSG, "corrupt KV header", "%s", what); };
  if (h->header_bytes != kHeaderBytes) return bad("header size");
  if (h->region_size != size) return bad("region size differs from the mapping");
  if (h->buckets_off != kHeaderBytes) return bad("bucket array offset");
  if (h->bucket_count < 64 || (h->bucket_count & (h->bucket_count - 1)) != 0 || h->bucket_count > size / 8) {
    return bad("bucket count");
  }
  if (h->heap_begin != (kHeaderBytes + h->bucket_count * 8 + 63) / 64 * 64 || h->heap_begin > size) return bad("heap start");
  if (h->heap_end != size) return bad("heap end");
  if (h->bump < h->heap_begin || h->bump > h->heap_end || (h->bump - h->heap_begin) % 32 != 0) return bad("bump pointer");
  for (unsigned c = 0; c < kClasses; ++c) {
    const std::uint64_t f = h->free_head[c];
    if (f == 0) continue;
    if (f < h->heap_begin + kBlockHeader || f >= h->bump || (f - kBlockHeader - h->heap_begin) % 32 != 0) {
      return bad("free list head");
    }
  }
  if (h->heap_used > h->bump - h->heap_begin) return bad("bytes used");
  if (h->items > (h->heap_end - h->heap_begin) / 32) return bad("item count");
  return s;
}

Result<std::uint64_t> KvStore::alloc(std::uint64_t bytes, std::uint32_t tag) {
  Header* h = hdr();
  const std::uint64_t need = bytes + kBlockHeader;
  unsigned cls = kMinClass;
  while (cls <= kMaxClass && (1ull << cls) < need) ++cls;
  if (cls > kMaxClass) return MK_FAIL(ENOMEM, "out of KV memory", "%llu bytes is over the largest block", static_cast<unsigned long long>(bytes));
  const std::uint64_t block_size = 1ull << cls;
  std::uint64_t& head = h->free_head[cls - kMinClass];
  std::uint64_t user = 0;
  if (head != 0) {
    auto* blk = at<Block>(head - kBlockHeader, block_size);
    if (blk == nullptr || blk->tag != kTagFree || blk->cls != cls) return corrupt("free list");
    user = head;
    head = *reinterpret_cast<std::uint64_t*>(base_ + user);
    if (head != 0 && at<Block>(head - kBlockHeader) == nullptr) return corrupt("free list link");
  } else {
    if (h->heap_end - h->bump < block_size) {
      return MK_FAIL(ENOMEM, "out of KV memory", "no free block of %llu bytes (%llu of %llu heap bytes used)",
                     static_cast<unsigned long long>(block_size), static_cast<unsigned long long>(h->heap_used),
                     static_cast<unsigned long long>(h->heap_end - h->heap_begin));
    }
    user = h->bump + kBlockHeader;
    h->bump += block_size;
  }
  auto* blk = reinterpret_cast<Block*>(base_ + user - kBlockHeader);
  blk->cls = cls;
  blk->tag = tag;
  h->heap_used += block_size;
  return user;
}

void KvStore::release(std::uint64_t off) {
  Header* h = hdr();
  auto* blk = at<Block>(off - kBlockHeader, kBlockHeader + 8);
  if (blk == nullptr || blk->cls < kMinClass || blk->cls > kMaxClass || blk->tag == kTagFree) return;  // leak, never fault
  const std::uint64_t block_size = 1ull << blk->cls;
  if (at<std::byte>(off - kBlockHeader, block_size) == nullptr) return;
  blk->tag = kTagFree;
  std::uint64_t& head = h->free_head[blk->cls - kMinClass];
  *reinterpret_cast<std::uint64_t*>(base_ + off) = head;
  head = off;
  h->heap_used -= std::min(h->heap_used, block_size);
}

Result<std::uint64_t> KvStore::find(std::string_view key, std::uint64_t hash, std::uint64_t* link) const {
  const Header* h = hdr();
  *link = h->buckets_off + (hash & (h->bucket_count - 1)) * 8;
  std::uint64_t cur = *reinterpret_cast<const std::uint64_t*>(base_ + *link);
  for (std::uint64_t steps = 0; cur != 0; ++steps) {
    if (steps > h->items) return corrupt("hash chain loops");
    const Entry* e = at<Entry>(cur);
    if (e == nullptr || e->value_len > size_ || at<std::byte>(cur, sizeof(Entry) + std::uint64_t{e->key_len} + e->value_len) == nullptr) {
      return corrupt("entry out of bounds");
    }
    if (e->hash == hash && e->key_len == key.size() &&
        std::memcmp(base_ + cur + sizeof(Entry), key.data(), key.size()) == 0) {
      return cur;
    }
    *link = cur;  // Entry::next is at offset 0
    cur = e->next;
  }
  return std::uint64_t{0};
}

Result<void> KvStore::free_entry(std::uint64_t off) {
  Entry* e = at<Entry>(off);
  if (e == nullptr) return corrupt("entry");
  if (e->type == kTypeList) {
    // The list head follows the key: not necessarily 8-aligned.
    const auto* raw = at<std::byte>(off + sizeof(Entry) + e->key_len, sizeof(ListHead));
    if (raw == nullptr) return corrupt("list head");
    ListHead lh;
    std::memcpy(&lh, raw, sizeof lh);
    std::uint64_t n = lh.head;
    for (std::uint64_t i = 0; n != 0 && i < lh.count; ++i) {
      Node* node = at<Node>(n);
      if (node == nullptr) break;
      const std::uint64_t next = node->next;
      release(n);
      n = next;
    }
  }
  release(off);
  return {};
}

Result<std::optional<std::string_view>> KvStore::get(std::string_view key) const {
  std::uint64_t link = 0;
  MK_TRY_ASSIGN(std::uint64_t off, find(key, hash_of(key), &link));
  if (off == 0) return std::optional<std::string_view>();
  const Entry* e = at<Entry>(off);
  if (e->type != kTypeString) return MK_FAIL(EMEDIUMTYPE, "wrong type", "key holds a list");
  return std::optional<std::string_view>(
      std::string_view(reinterpret_cast<const char*>(base_ + off + sizeof(Entry) + e->key_len), e->value_len));
}

Result<void> KvStore::set(std::string_view key, std::string_view value) {
  if (key.size() > UINT32_MAX || value.size() > (1ull << 32)) return MK_FAIL(E2BIG, "key or value too large", "%zu/%zu bytes", key.size(), value.size());
  const std::uint64_t hash = hash_of(key);
  std::uint64_t link = 0;
  MK_TRY_ASSIGN(std::uint64_t old, find(key, hash, &link));
  const std::uint64_t need = sizeof(Entry) + key.size() + value.size();
  if (old != 0) {
    Entry* e = at<Entry>(old);
    const auto* blk = reinterpret_cast<const Block*>(base_ + old - kBlockHeader);
    if (e->type == kTypeString && blk->cls >= kMinClass && blk->cls <= kMaxClass &&
        need + kBlockHeader <= (1ull << blk->cls) && at<std::byte>(old, need) != nullptr) {
      std::memcpy(base_ + old + sizeof(Entry) + key.size(), value.data(), value.size());
      e->value_len = value.size();
      return {};
    }
  }
  MK_TRY_ASSIGN(std::uint64_t off, alloc(need, kTagEntry));
  Entry* n = reinterpret_cast<Entry*>(base_ + off);
  n->hash = hash;
  n->key_len = static_cast<std::uint32_t>(key.size());
  n->type = kTypeString;
  n->value_len = value.size();
  std::memcpy(base_ + off + sizeof(Entry), key.data(), key.size());
  if (!value.empty()) std::memcpy(base_ + off + sizeof(Entry) + key.size(), value.data(), value.size());
  auto* link_p = reinterpret_cast<std::uint64_t*>(base_ + link);
  if (old != 0) {
    n->next = at<Entry>(old)->next;
    *link_p = off;
    MK_TRY(free_entry(old));
  } else {
    // Insert at the head of the bucket.
    auto* bucket = reinterpret_cast<std::uint64_t*>(base_ + hdr()->buckets_off + (hash & (hdr()->bucket_count - 1)) * 8);
    n->next = *bucket;
    *bucket = off;
    ++hdr()->items;
  }
  return {};
}

Result<bool> KvStore::del(std::string_view key) {
  std::uint64_t link = 0;
  MK_TRY_ASSIGN(std::uint64_t off, find(key, hash_of(key), &link));
  if (off == 0) return false;
  *reinterpret_cast<std::uint64_t*>(base_ + link) = at<Entry>(off)->next;
  if (hdr()->items > 0) --hdr()->items;
  MK_TRY(free_entry(off));
  return true;
}

Result<bool> KvStore::exists(std::string_view key) const {
  std::uint64_t link = 0;
  MK_TRY_ASSIGN(std::uint64_t off, find(key, hash_of(key), &link));
  return off != 0;
}

Result<std::int64_t> KvStore::incr(std::string_view key, std::int64_t by) {
  MK_TRY_ASSIGN(std::optional<std::string_view> cur, get(key));
  std::int64_t v = 0;
  if (cur && !kv_parse_int(*cur, &v)) return MK_FAIL(EINVAL, "not an integer", "value is not an integer or out of range");
  std::int64_t out = 0;
  if (__builtin_add_overflow(v, by, &out)) return MK_FAIL(ERANGE, "overflow", "increment or decrement would overflow");
  char tmp[24];
  const int n = std::snprintf(tmp, sizeof tmp, "%lld", static_cast<long long>(out));
  MK_TRY(set(key, std::string_view(tmp, static_cast<std::size_t>(n))));
  return out;
}

Result<void> KvStore::mset(std::span<const std::string> kv) {
  if (kv.size() % 2 != 0) return MK_FAIL(EINVAL, "mset", "odd number of arguments");
  for (std::size_t i = 0; i < kv.size(); i += 2) MK_TRY(set(kv[i], kv[i + 1]));
  return {};
}

Result<std::vector<std::optional<std::string_view>>> KvStore::mget(std::span<const std::string> keys) const {
  std::vector<std::optional<std::string_view>> out;
  out.reserve(keys.size());
  for (const auto& k : keys) {
    auto r = get(k);
    if (!r) {
      if (r.error().code() != EMEDIUMTYPE) return r.error();
      out.emplace_back();  // Redis: MGET answers nil for a non-string
      continue;
    }
    out.push_back(*r);
  }
  return out;
}

Result<std::uint64_t> KvStore::lpush(std::string_view key, std::span<const std::string> values) {
  if (key.size() > UINT32_MAX) return MK_FAIL(E2BIG, "key too large", "%zu bytes", key.size());
  const std::uint64_t hash = hash_of(key);
  std::uint64_t link = 0;
  MK_TRY_ASSIGN(std::uint64_t off, find(key, hash, &link));
  if (off != 0 && at<Entry>(off)->type != kTypeList) return MK_FAIL(EMEDIUMTYPE, "wrong type", "key holds a string");
  if (off == 0) {
    MK_TRY_ASSIGN(off, alloc(sizeof(Entry) + key.size() + sizeof(ListHead), kTagEntry));
    Entry* e = reinterpret_cast<Entry*>(base_ + off);
    e->hash = hash;
    e->key_len = static_cast<std::uint32_t>(key.size());
    e->type = kTypeList;
    e->value_len = sizeof(ListHead);
    std::memcpy(base_ + off + sizeof(Entry), key.data(), key.size());
    const ListHead empty{0, 0};
    std::memcpy(base_ + off + sizeof(Entry) + key.size(), &empty, sizeof empty);  // unaligned
    auto* bucket = reinterpret_cast<std::uint64_t*>(base_ + hdr()->buckets_off + (hash & (hdr()->bucket_count - 1)) * 8);
    e->next = *bucket;
    *bucket = off;
    ++hdr()->items;
  }
  // ListHead sits right after the key: 8-aligned only when the key is, so
  // copy through memcpy.
  const std::uint64_t lh_off = off + sizeof(Entry) + key.size();
  ListHead lh;
  std::memcpy(&lh, base_ + lh_off, sizeof lh);
  Result<void> st;
  for (const auto& v : values) {
    auto n = alloc(sizeof(Node) + v.size(), kTagNode);
    if (!n) {
      st = n.error();
      break;
    }
    Node* node = reinterpret_cast<Node*>(base_ + *n);
    node->next = lh.head;
    node->len = v.size();
    std::memcpy(base_ + *n + sizeof(Node), v.data(), v.size());
    lh.head = *n;
    ++lh.count;
  }
  std::memcpy(base_ + lh_off, &lh, sizeof lh);
  if (!st) {
    if (lh.count == 0) (void)del(key);  // Redis has no empty lists
    return st.error();
  }
  return lh.count;
}

Result<std::optional<std::string>> KvStore::lpop(std::string_view key) {
  std::uint64_t link = 0;
  MK_TRY_ASSIGN(std::uint64_t off, find(key, hash_of(key), &link));
  if (off == 0) return std::optional<std::string>();
  const Entry* e = at<Entry>(off);
  if (e->type != kTypeList) return MK_FAIL(EMEDIUMTYPE, "wrong type", "key holds a string");
  const std::uint64_t lh_off = off + sizeof(Entry) + e->key_len;
  ListHead lh;
  std::memcpy(&lh, base_ + lh_off, sizeof lh);
  const Node* node = at<Node>(lh.head);
  if (node == nullptr || node->len > size_ || at<std::byte>(lh.head, sizeof(Node) + node->len) == nullptr) return corrupt("list node");
  std::string out(reinterpret_cast<const char*>(base_ + lh.head + sizeof(Node)), node->len);
  const std::uint64_t popped = lh.head;
  lh.head = node->next;
  lh.count = lh.count > 0 ? lh.count - 1 : 0;
  release(popped);
  std::memcpy(base_ + lh_off, &lh, sizeof lh);
  if (lh.count == 0 || lh.head == 0) MK_TRY(del(key));
  return std::optional<std::string>(std::move(out));
}

Result<std::vector<std::string_view>> KvStore::lrange(std::string_view key, std::int64_t start, std::int64_t stop) const {
  std::vector<std::string_view> out;
  std::uint64_t link = 0;
  MK_TRY_ASSIGN(std::uint64_t off, find(key, hash_of(key), &link));
  if (off == 0) return out;
  const Entry* e = at<Entry>(off);
  if (e->type != kTypeList) return MK_FAIL(EMEDIUMTYPE, "wrong type", "key holds a string");
  ListHead lh;
  std::memcpy(&lh, base_ + off + sizeof(Entry) + e->key_len, sizeof lh);
  const std::int64_t len = static_cast<std::int64_t>(std::min<std::uint64_t>(lh.count, INT64_MAX));
  if (start < 0) start = std::max<std::int64_t>(0, len + start);
  if (stop < 0) stop = len + stop;
  if (stop >= len) stop = len - 1;
  if (start > stop || start >= len) return out;
  std::uint64_t n = lh.head;
  for (std::int64_t i = 0; i <= stop; ++i) {
    const Node* node = at<Node>(n);
    if (node == nullptr || node->len > size_ || at<std::byte>(n, sizeof(Node) + node->len) == nullptr) return corrupt("list node");
    if (i >= start) out.emplace_back(reinterpret_cast<const char*>(base_ + n + sizeof(Node)), node->len);
    n = node->next;
  }
  return out;
}

void KvStore::flushall() { (void)format(base_, size_); }

std::uint64_t KvStore::dbsize() const { return hdr()->items; }

std::uint64_t KvStore::used_bytes() const { return hdr()->heap_begin + hdr()->heap_used; }

std::uint64_t KvStore::bucket_count() const { return hdr()->bucket_count; }

}  // namespace mk::sdk
