// The KV service of mk-kernel (`--services=kv`, issue #5): a Redis-protocol
// (RESP2) server on every `listen` device of the boot tree whose data is a
// mk::sdk::KvStore in /memory@0.
//
// Threading: one thread, pinned to the instance's first CPU, runs a
// level-triggered epoll loop over the listen fds, the connections and a stop
// eventfd. The store is used from that thread only.
//
// Memory: the whole of region 0 is claimed from the image's page allocator
// (it must be the first allocation: offset 0 of region 0, so the next image
// finds the store at the same place) and holds the store. attach() first:
// a region that already holds a store (same memfd, new image) is served as
// it is; a zeroed region is formatted; a corrupt or foreign one is refused.
//
// Fd table (what a live update would hand over): the listen fds, then one
// entry per connection indexed by fd. Per-connection state is only the
// bytes of a partial request not yet parsed and the reply bytes not yet
// written (both plain buffers); no state lives between requests otherwise.
//
// Flow control: a connection whose pending replies exceed 4 MiB is not read
// until they drain (pipelined GETs of big values cannot grow memory without
// bound); requests are capped by mksdk/resp.h's limits.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "mk/result.h"
#include "mksdk/devices.h"
#include "mksdk/kv_store.h"

namespace mk::image {

class KvService {
 public:
  // Serves `store` on `listen_fds` (set non-blocking here) from a thread
  // pinned to `cpu`. Returns: epoll/eventfd/thread errno.
  static Result<std::unique_ptr<KvService>> start(sdk::KvStore store, std::vector<int> listen_fds,
                                                  std::uint32_t cpu, sdk::Console* con);
  ~KvService();  // stop()
  KvService(const KvService&) = delete;
  KvService& operator=(const KvService&) = delete;

  // Stops the loop, joins the thread, closes the connections (the listen
  // fds stay open: they belong to the boot tree).
  void stop();

  // Store bytes in use (header, buckets, live blocks) and the whole store,
  // refreshed by the service thread after every batch of requests.
  std::uint64_t used_bytes() const;
  std::uint64_t capacity_bytes() const { return capacity_; }
  std::uint64_t connections() const;

  struct Impl;

 private:
  KvService() = default;
  std::unique_ptr<Impl> impl_;
  std::uint64_t capacity_ = 0;
};

}  // namespace mk::image
