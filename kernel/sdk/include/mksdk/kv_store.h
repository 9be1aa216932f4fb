// DOC: mk::sdk::KvStore — a Redis-like key/value store whose every byte
// lives inside one memory region, addressed by offsets.
//
// What this is: the state of mk-kernel's KV service (issue #5). The store
// is a header, a bucket array and a heap, all inside the byte range given to
// format()/attach() (normally /memory@0 of the instance, mapped MAP_SHARED
// from its memfd). Every link is an OFFSET from the start of that range,
// never a pointer, so a freshly booted image that maps the same memfd at any
// address (a live update) calls attach() and finds all data, with no copy.
//
// Layout (layout version 1, little-endian, offsets from the range start):
//   [0, 4096)           Header: magic "MKKVSTR1", version, region size,
//                       bucket array offset/count, heap bounds, bump
//                       pointer, 24 free-list heads, item count, bytes used.
//   [4096, +8*buckets)  buckets: offset of the first entry of the chain (0 =
//                       empty). buckets = range/256 rounded down to a power
//                       of two (min 64); fixed at format, no rehash (chains
//                       stay short: an entry is >= 64 bytes, so a full heap
//                       averages <= 4 entries per bucket).
//   [heap_begin, end)   heap: blocks of 2^k bytes (k = 5..28), each with an
//                       8-byte header {class, tag}; freed blocks go on the
//                       free list of their class (no coalescing); new blocks
//                       come from the free list, then the bump pointer.
//   An entry block: {next, hash, key_len, type, value_len} then the key,
//   then the value (a string), or for a list: {head, count} and nodes
//   {next, len, bytes} in blocks of their own.
//
// Untrusted on attach: the header is validated (magic, version, sizes,
// every offset and free-list head in bounds); a failure is an error, never
// a crash. Each later dereference is bounds-checked too and chain walks are
// capped, so a corrupt body gives EIO ("corrupt store"), not a fault.
//
// Happy path:
//   1. auto s = KvStore::attach(base, size);   // existing data (ENOENT if none)
//      or KvStore::format(base, size);        // a new, empty store
//   2. s->set("k", "v"); s->get("k") -> "v"; s->incr("n", 1) -> 1; ...
//   3. the mapping is all there is: no flush, no close. A later attach of the
//      same bytes sees every completed operation.
// Unhappy paths:
//   1. format: range not 8-aligned or under kMinRegion (64 KiB) or over 2^40:
//      EINVAL.
//   2. attach: no magic (e.g. a zeroed memfd): ENOENT; other version:
//      EPROTONOSUPPORT; size or any offset out of bounds: EBADMSG.
//   3. Heap full: ENOMEM (the service answers "-OOM ..."). An overwrite
//      that runs out of memory leaves the old value in place. MSET is not
//      atomic on ENOMEM (the keys before the failing one are set).
//   4. INCR on a value that is not a base-10 int64 ("007", "+1", " 1",
//      longer than 20 bytes): EINVAL; result out of int64: ERANGE.
//   5. A string command on a list key or the reverse: EMEDIUMTYPE (the
//      service answers "-WRONGTYPE ...").
//   6. Key or value over 2^32-1 bytes: E2BIG. Corrupt body: EIO.
//
// Thread safety: none. One thread uses a store at a time (the KV service
// runs a single epoll thread). get() and lrange() return views into the
// region, valid until the next mutating call.
//
// Returns:
//   format:  EINVAL.
//   attach:  ENOENT, EPROTONOSUPPORT, EBADMSG, EINVAL.
//   get/exists/lrange/dbsize: EMEDIUMTYPE, EIO.
//   set/mset/incr/lpush: ENOMEM, EINVAL, ERANGE, EMEDIUMTYPE, E2BIG, EIO.
//   del/lpop/flushall: EMEDIUMTYPE, EIO.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mk/result.h"

namespace mk::sdk {

// Redis's integer rule (string2ll): base 10, optional '-', no '+', no
// blanks, no leading zeros, within int64. INCR and INCRBY's argument use it.
bool kv_parse_int(std::string_view s, std::int64_t* out);

class KvStore {
 public:
  static constexpr std::uint64_t kMagic = 0x315254534b564b4dull;  // "MKKVSTR1"
  static constexpr std::uint32_t kVersion = 1;
  static constexpr std::uint64_t kMinRegion = 64 * 1024;
  static constexpr std::uint64_t kHeaderBytes = 4096;

  // A new, empty store over [base, base + size). Overwrites the range.
  static Result<KvStore> format(void* base, std::uint64_t size);
  // The store already in [base, base + size), validated.
  static Result<KvStore> attach(void* base, std::uint64_t size);

  Result<std::optional<std::string_view>> get(std::string_view key) const;
  Result<void> set(std::string_view key, std::string_view value);
  Result<bool> del(std::string_view key);  // true if it existed
  Result<bool> exists(std::string_view key) const;
  Result<std::int64_t> incr(std::string_view key, std::int64_t by);
  // keys_values = k1, v1, k2, v2, ... (even count).
  Result<void> mset(std::span<const std::string> keys_values);
  Result<std::vector<std::optional<std::string_view>>> mget(std::span<const std::string> keys) const;
  // Lists: LPUSH (returns the new length), LPOP (nullopt on a missing key),
  // LRANGE with Redis's negative-index rules.
  Result<std::uint64_t> lpush(std::string_view key, std::span<const std::string> values);
  Result<std::optional<std::string>> lpop(std::string_view key);
  Result<std::vector<std::string_view>> lrange(std::string_view key, std::int64_t start, std::int64_t stop) const;
  void flushall();  // format again, same geometry

  std::uint64_t dbsize() const;
  // Header + buckets + allocated heap blocks; and the whole range.
  std::uint64_t used_bytes() const;
  std::uint64_t capacity_bytes() const { return size_; }
  std::uint64_t bucket_count() const;

 private:
  struct Header;
  struct Entry;
  KvStore(std::byte* base, std::uint64_t size) : base_(base), size_(size) {}
  Header* hdr() const { return reinterpret_cast<Header*>(base_); }
  template <class T>
  T* at(std::uint64_t off, std::uint64_t len = sizeof(T)) const;
  Result<std::uint64_t> alloc(std::uint64_t bytes, std::uint32_t tag);
  void release(std::uint64_t off);
  // Finds `key`: the entry offset (0: absent) and the offset of the link
  // that points to it (bucket or previous entry's next).
  Result<std::uint64_t> find(std::string_view key, std::uint64_t hash, std::uint64_t* link) const;
  Result<void> free_entry(std::uint64_t off);
  static std::uint64_t hash_of(std::string_view key);

  std::byte* base_;
  std::uint64_t size_;
};

}  // namespace mk::sdk
