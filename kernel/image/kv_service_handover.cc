// The KV service's live-update side (kv_service.h "Live update"): the
// successor's stage() and begin(), the old image's pause(), resume() and
// snapshot(), and the gate the service thread passes for each batch.
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "kv_service_impl.h"

namespace mk::image {

using kv::Conn;

bool KvService::Impl::enter() {
  std::unique_lock<std::mutex> lk(gate_mu);
  gate_cv.wait(lk, [this] { return gate != Gate::kWait; });
  if (gate == Gate::kQuit) return false;
  busy = true;
  return true;
}

void KvService::Impl::leave() {
  {
    std::lock_guard<std::mutex> lk(gate_mu);
    busy = false;
  }
  gate_cv.notify_all();
}

Result<std::unique_ptr<KvService>> KvService::stage(std::vector<int> listen_fds, std::uint32_t cpu,
                                                    sdk::Console* con, std::vector<KvConnState> conns) {
  // Owned from here on: closed on any error below.
  struct Closer {
    std::vector<KvConnState>* v;
    bool armed = true;
    ~Closer() {
      if (!armed) return;
      for (auto& c : *v) {
        if (c.fd >= 0) ::close(c.fd);
      }
    }
  } closer{&conns};
  std::unique_ptr<KvService> self(new KvService());
  self->impl_ = std::make_unique<Impl>();
  Impl& im = *self->impl_;
  im.listen = std::move(listen_fds);
  im.cpu = cpu;
  im.con = con;
  // Room for -c 1000 and more: the soft fd limit up to the hard one.
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &rl);
  }
  im.ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (im.ep < 0) return errno_error("kv: epoll_create1");
  im.stop_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (im.stop_fd < 0) return errno_error("kv: eventfd");
  im.reserve_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = im.stop_fd;
  if (::epoll_ctl(im.ep, EPOLL_CTL_ADD, im.stop_fd, &ev) != 0) return errno_error("kv: epoll_ctl");
  for (int l : im.listen) {
    int fl = ::fcntl(l, F_GETFL);
    if (fl < 0 || ((fl & O_NONBLOCK) == 0 && ::fcntl(l, F_SETFL, fl | O_NONBLOCK) != 0)) {
      return errno_error("kv: listen fd O_NONBLOCK");
    }
    ev.data.fd = l;
    if (::epoll_ctl(im.ep, EPOLL_CTL_ADD, l, &ev) != 0) return errno_error("kv: epoll_ctl of a listen fd");
  }
  std::vector<std::pair<std::uint32_t, int>> index;
  for (const auto& c : conns) index.emplace_back(c.id, c.fd);
  std::sort(index.begin(), index.end());
  for (std::size_t i = 1; i < index.size(); ++i) {
    if (index[i].first == index[i - 1].first) {
      return MK_FAIL(EINVAL, "kv: two connections with one id", "id %u", index[i].first);
    }
  }
  im.staged_index = std::move(index);
  for (auto& c : conns) {
    const int fd = c.fd;
    c.fd = -1;  // the service owns it now (closed by stop() or on error below)
    if (auto r = im.add_conn(KvConnState{c.id, fd, std::move(c.in), std::move(c.out), c.closing}); !r) {
      ::close(fd);
      return r.error();
    }
  }
  closer.armed = false;
  im.gate = Impl::Gate::kWait;
  try {
    im.thread = std::thread([&im] { im.run(); });
  } catch (const std::system_error& e) {
    return MK_FAIL(e.code().value(), "kv: cannot start the service thread", "%s", e.what());
  }
  return self;
}

Result<void> KvService::begin(sdk::KvStore store, const std::vector<std::uint32_t>* live,
                              std::vector<KvConnState> changes) {
  struct Closer {
    std::vector<KvConnState>* v;
    ~Closer() {
      for (auto& c : *v) {
        if (c.fd >= 0) ::close(c.fd);
      }
    }
  } closer{&changes};
  if (!impl_ || stopped_ || impl_->store) {
    return MK_FAIL(EINVAL, "kv: begin() on a service that is not staged", "stage() it first, begin() once");
  }
  Impl& im = *impl_;
  // Staged connections by id (stage() sorted them).
  const std::vector<std::pair<std::uint32_t, int>>& by_id = im.staged_index;
  auto find = [&](std::uint32_t id) -> int {
    auto it = std::lower_bound(by_id.begin(), by_id.end(), std::make_pair(id, -1));
    return it != by_id.end() && it->first == id ? it->second : -1;
  };
  // `live` sorted (the caller's order is kept; a sorted list costs one pass).
  std::vector<std::uint32_t> sorted_copy;
  const std::vector<std::uint32_t>* want_p = live;
  if (live && !std::is_sorted(live->begin(), live->end())) {
    sorted_copy = *live;
    std::sort(sorted_copy.begin(), sorted_copy.end());
    want_p = &sorted_copy;
  }
  static const std::vector<std::uint32_t> kNone;
  const std::vector<std::uint32_t>& want = want_p ? *want_p : kNone;
  if (std::adjacent_find(want.begin(), want.end()) != want.end()) {
    return MK_FAIL(EINVAL, "kv: a connection listed twice", "the live list repeats an id");
  }
  auto is_live = [&](std::uint32_t id) { return !live || std::binary_search(want.begin(), want.end(), id); };
  // Check everything before changing anything.
  for (const auto& c : changes) {
    const int at = find(c.id);
    if (c.fd < 0 && at < 0) {
      return MK_FAIL(EINVAL, "kv: state for a connection that was not staged", "id %u", c.id);
    }
    if (c.fd >= 0 && at >= 0) return MK_FAIL(EINVAL, "kv: a new connection reuses a staged id", "id %u", c.id);
    if (!is_live(c.id)) return MK_FAIL(EINVAL, "kv: state for a connection not in the live list", "id %u", c.id);
  }
  std::vector<std::uint32_t> added;  // ids of the changes that bring an fd
  for (const auto& c : changes) {
    if (c.fd >= 0) added.push_back(c.id);
  }
  std::sort(added.begin(), added.end());
  if (std::adjacent_find(added.begin(), added.end()) != added.end()) {
    return MK_FAIL(EINVAL, "kv: two new connections with one id", "the changes repeat an id");
  }
  {  // every live id staged or added (all three lists sorted: one walk)
    auto st = by_id.begin();
    auto ad = added.begin();
    for (std::uint32_t id : want) {
      while (st != by_id.end() && st->first < id) ++st;
      while (ad != added.end() && *ad < id) ++ad;
      if ((st == by_id.end() || st->first != id) && (ad == added.end() || *ad != id)) {
        return MK_FAIL(EINVAL, "kv: a live connection was handed no fd", "id %u", id);
      }
    }
  }
  // Staged connections the predecessor closed since: our dup goes quietly
  // (the predecessor shut the socket down itself). Both lists are sorted.
  if (live) {
    auto w = want.begin();
    for (const auto& [id, fd] : by_id) {
      while (w != want.end() && *w < id) ++w;
      if (w == want.end() || *w != id) im.close_conn(fd, false);
    }
  }
  for (auto& c : changes) {
    if (c.fd >= 0) {
      const int fd = c.fd;
      c.fd = -1;
      if (auto r = im.add_conn(KvConnState{c.id, fd, std::move(c.in), std::move(c.out), c.closing}); !r) {
        ::close(fd);
        return r.error();
      }
    } else {
      const int fd = find(c.id);
      Conn& k = *im.conns[static_cast<std::size_t>(fd)];
      if (!c.in.empty() || !c.out.empty() || c.closing) im.carried.push_back(fd);
      k.in = std::move(c.in);
      k.in_off = 0;
      k.out = std::move(c.out);
      k.out_off = 0;
      k.closing = c.closing;
      im.pending_of[static_cast<std::size_t>(fd)] = Impl::pending(k) ? 1 : 0;
    }
  }
  im.staged_index.clear();
  im.staged_index.shrink_to_fit();
  capacity_ = store.capacity_bytes();
  im.used.store(store.used_bytes());
  im.store = store;
  {
    std::lock_guard<std::mutex> lk(im.gate_mu);
    im.gate = Impl::Gate::kGo;
  }
  im.gate_cv.notify_one();
  return {};
}

Result<std::unique_ptr<KvService>> KvService::start(sdk::KvStore store, std::vector<int> listen_fds,
                                                    std::uint32_t cpu, sdk::Console* con,
                                                    std::vector<KvConnState> restored) {
  MK_TRY_ASSIGN(auto self, stage(std::move(listen_fds), cpu, con, std::move(restored)));
  MK_TRY(self->begin(store, nullptr, {}));
  return self;
}

void KvService::pause() {
  if (!impl_ || stopped_) return;
  Impl& im = *impl_;
  std::unique_lock<std::mutex> lk(im.gate_mu);
  if (im.gate == Impl::Gate::kGo) im.gate = Impl::Gate::kWait;
  im.gate_cv.wait(lk, [&im] { return !im.busy; });
  if (im.store) paused_ = true;  // (a staged service is not paused: begin() opens it)
}

Result<void> KvService::resume() {
  if (!impl_ || stopped_) return MK_FAIL(EINVAL, "kv: service stopped", "resume() after stop()");
  Impl& im = *impl_;
  if (!im.store) return MK_FAIL(EINVAL, "kv: service staged, not begun", "begin() first");
  {
    std::lock_guard<std::mutex> lk(im.gate_mu);
    im.gate = Impl::Gate::kGo;
  }
  im.gate_cv.notify_all();
  paused_ = false;
  return {};
}

Result<void> KvService::add_listener(int fd) {
  if (!impl_ || stopped_) return MK_FAIL(EINVAL, "kv: service stopped", "add_listener(%d) after stop()", fd);
  Impl& im = *impl_;
  // Reading `listen` here races with nothing: the thread only reads it too.
  if (std::find(im.listen.begin(), im.listen.end(), fd) != im.listen.end()) {
    return MK_FAIL(EINVAL, "kv: a listen fd added twice", "fd %d is served already", fd);
  }
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0) return MK_FAIL(EINVAL, "kv: listen fd not open", "fd %d: %s", fd, std::strerror(errno));
  if ((fl & O_NONBLOCK) == 0 && ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
    return errno_error("kv: listen fd O_NONBLOCK");
  }
  // A paused (live update) or staged service stays held afterwards.
  const bool held = paused_ || !im.store;
  pause();
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  Result<void> out = {};
  if (::epoll_ctl(im.ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    out = errno_error("kv: epoll_ctl of an added listen fd");
  } else {
    im.listen.push_back(fd);
  }
  if (!held) (void)resume();
  return out;
}

Result<void> KvService::remove_listener(int fd) {
  if (!impl_ || stopped_) return MK_FAIL(EINVAL, "kv: service stopped", "remove_listener(%d) after stop()", fd);
  Impl& im = *impl_;
  const auto it = std::find(im.listen.begin(), im.listen.end(), fd);
  if (it == im.listen.end()) return MK_FAIL(EINVAL, "kv: not a listen fd of the service", "fd %d", fd);
  const bool held = paused_ || !im.store;
  pause();
  // Events of this fd that epoll_wait returned before the pause reach
  // on_conn() after it, which ignores an fd that is no connection.
  Result<void> out = {};
  if (::epoll_ctl(im.ep, EPOLL_CTL_DEL, fd, nullptr) != 0) {
    out = errno_error("kv: epoll_ctl of a removed listen fd");
  } else {
    im.listen.erase(it);
  }
  if (!held) (void)resume();
  return out;
}

std::size_t KvService::listeners() const { return impl_ ? impl_->listen.size() : 0; }

KvService::Snapshot KvService::snapshot() const {
  Snapshot out;
  if (!impl_) return out;
  const Impl& im = *impl_;
  out.ids.reserve(im.nconns.load(std::memory_order_relaxed));
  out.fds.reserve(out.ids.capacity());
  for (std::size_t fd = 0; fd < im.id_of.size(); ++fd) {
    if (im.id_of[fd] == 0) continue;
    out.ids.push_back(im.id_of[fd]);
    out.fds.push_back(static_cast<int>(fd));
    if (im.pending_of[fd]) {
      const Conn& c = *im.conns[fd];
      out.pending.push_back(
          KvConnState{c.id, static_cast<int>(fd), c.in.substr(c.in_off), c.out.substr(c.out_off), c.closing});
    }
  }
  return out;
}

}  // namespace mk::image
