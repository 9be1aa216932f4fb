// The KV service of mk-kernel (`--services=kv`, issue #5): a Redis-protocol
// (RESP2) server on every `listen` device of the boot tree whose data is a
// mk::sdk::KvStore in /memory@0.
//
// Threading: one thread, named `mk-kv` and pinned to one CPU of the
// instance (the first at boot; set_cpu() moves it when that CPU is
// released, kernel/image/cpus.h), runs a level-triggered epoll loop over the
// listen fds, the connections and a stop eventfd. The store is used from
// that thread only.
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
// Live update (docs/sdk.md "Live update"): pause() holds the thread at a
// request boundary (between two epoll batches: every request parsed so far
// was executed and its reply queued); the connections, their unparsed input
// and unwritten output stay. snapshot() lists them for the handoff;
// resume() restarts the same loop (a cancelled update). Each
// connection has an id, unique in this service and carried across updates
// (the handoff's token), never its fd number, which the kernel reuses.
// The successor's side is two steps, so that the per-connection work
// happens before the blackout: stage() takes the pre-copied connections,
// registers them with epoll and parks the thread (outside the blackout);
// begin() attaches the store, drops the connections the predecessor closed
// since, adds the ones it accepted since, sets the buffers of each and
// releases the thread, which serves them first (pending complete requests
// are executed, pending replies written). start() is both at once.
//
// Listen devices moved while running (kernel/image/resources.h, docs/sdk.md
// "Moving memory and devices"): add_listener / remove_listener change the
// listen set between two batches; connections stay where they are.
//
// Flow control: a connection whose pending replies exceed 4 MiB is not read
// until they drain (pipelined GETs of big values cannot grow memory without
// bound); requests are capped by mksdk/resp.h's limits.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mk/result.h"
#include "mksdk/devices.h"
#include "mksdk/kv_store.h"

namespace mk::image {

// One client connection's state between two requests.
struct KvConnState {
  std::uint32_t id = 0;  // unique in the service (the handover token's low half)
  int fd = -1;
  std::string in;   // received, not yet parsed
  std::string out;  // replies not yet written
  bool closing = false;  // QUIT or protocol error: close once `out` is written
};

class KvService {
 public:
  // Per connection and direction, the most a live update carries.
  static constexpr std::size_t kMaxHandoverBytes = 8u << 20;

  // Serves `store` on `listen_fds` (set non-blocking here) from a thread
  // pinned to `cpu`, plus the `restored` connections of a previous image
  // (owned by the service from here on, even on error).
  // Returns: epoll/eventfd/thread errno; EINVAL (a restored fd not open).
  static Result<std::unique_ptr<KvService>> start(sdk::KvStore store, std::vector<int> listen_fds,
                                                  std::uint32_t cpu, sdk::Console* con,
                                                  std::vector<KvConnState> restored = {});
  // A successor's first step: the service with `conns` (owned from here on,
  // even on error) registered, its thread started and parked until begin().
  // Returns: epoll/eventfd/thread errno; EINVAL (an fd not open, two
  // connections with one id).
  static Result<std::unique_ptr<KvService>> stage(std::vector<int> listen_fds, std::uint32_t cpu,
                                                  sdk::Console* con, std::vector<KvConnState> conns);
  // The second step, once the predecessor froze: serve `store`. `live`: the
  // ids that still exist (null: every staged one); staged connections not
  // in it are closed. `changes` (fds owned from here on): with fd -1 the
  // buffers of a staged connection, with an fd a connection accepted since
  // staging. Checked before anything changes. Returns: EINVAL (not staged
  // or begun already, an id repeated, buffers for an unknown id, a new fd
  // under a staged id, a live id with no fd, an fd not open).
  Result<void> begin(sdk::KvStore store, const std::vector<std::uint32_t>* live, std::vector<KvConnState> changes);
  ~KvService();  // stop()
  KvService(const KvService&) = delete;
  KvService& operator=(const KvService&) = delete;

  // Re-pins the service thread to `cpu` (a CPU move released the one it
  // was on). From the owner's thread, like every call but the getters.
  // Returns: EINVAL (cpu >= CPU_SETSIZE, or the kernel refuses it: not
  // allowed to this process), ESRCH (the thread ended); the thread stays
  // where it was on error.
  Result<void> set_cpu(std::uint32_t cpu);
  std::uint32_t cpu() const;  // where the thread is pinned

  // A listen device added or released while running (kernel/image/
  // resources.h): the service starts / stops accepting on `fd`. From the
  // owner's thread. The gate is closed (pause()) while the listen list and
  // the epoll set change, then opened again unless it was closed already
  // (a paused or staged service stays so). add_listener sets `fd`
  // non-blocking, as stage() does. remove_listener leaves the connections
  // accepted on `fd` alone and does not close it (the caller does).
  // Returns: EINVAL (stopped; add: fd not open or listened on already;
  // remove: not a listen fd of the service), epoll_ctl/fcntl errno (nothing
  // changed).
  Result<void> add_listener(int fd);
  Result<void> remove_listener(int fd);
  std::size_t listeners() const;  // listen fds served (owner's thread)

  // Stops the loop, joins the thread, closes the connections (the listen
  // fds stay open: they belong to the boot tree).
  void stop();

  // Holds the thread at a request boundary, keeping every connection and
  // its buffers (idempotent). It returns as soon as no batch of requests is
  // being worked on: an idle thread is not woken (it stays in epoll_wait
  // and, if a client wakes it, waits for resume()).
  void pause();
  // Lets the thread go on after pause(). Returns: EINVAL (stopped, or
  // staged and not begun).
  Result<void> resume();
  // After pause(), what a freeze needs: every connection's id and fd (in fd
  // order), and the full state of only those with buffered bytes or a
  // pending close. Reads compact per-fd arrays, not each connection.
  struct Snapshot {
    std::vector<std::uint32_t> ids;
    std::vector<int> fds;  // fds[i] is ids[i]'s
    std::vector<KvConnState> pending;
  };
  Snapshot snapshot() const;
  bool paused() const { return paused_; }

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
  bool paused_ = false;
  bool stopped_ = false;
};

}  // namespace mk::image
