// The KV service: epoll loop, RESP framing, command execution (kv_service.h);
// its live-update side (stage, begin, pause, snapshot) is kv_service_handover.cc.
#include "kv_service.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <cstring>
#include <string>
#include <thread>

#include "kv_service_impl.h"
#include "mksdk/resp.h"

namespace mk::image {

using kv::Conn;
using kv::kMaxEvents;
using kv::kOutHigh;
using kv::kReadChunk;

namespace {


bool eq_nocase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char c = a[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != b[i]) return false;
  }
  return true;
}

}  // namespace


void KvService::Impl::pin_self() {
  // The host tells the service thread from the tenants' by this name
  // (docs/sdk.md "Moving CPUs").
  (void)::pthread_setname_np(::pthread_self(), "mk-kv");
  // Under cpu_mu: a set_cpu() racing with the thread's start wins or
  // waits, never is undone by this.
  std::lock_guard<std::mutex> lk(cpu_mu);
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (::pthread_setaffinity_np(::pthread_self(), sizeof set, &set) != 0) {
    con->print("mk-kernel: kv: cannot pin to cpu %u, running unpinned\n", cpu);
  }
}

void KvService::Impl::run() {
  pin_self();
  if (!enter()) return;
  // Connections carried over (a restored service): execute what is
  // already buffered and write what is pending before waiting.
  for (int fd : carried) {
    const auto i = static_cast<std::size_t>(fd);
    if (i < conns.size() && conns[i]) {
      process(fd, *conns[i]);
      if (conns[i]) pending_of[i] = pending(*conns[i]);
    }
  }
  carried.clear();
  used.store(store->used_bytes(), std::memory_order_relaxed);
  leave();
  epoll_event evs[kMaxEvents];
  for (;;) {
    int n = ::epoll_wait(ep, evs, kMaxEvents, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      con->print("mk-kernel: kv: epoll_wait: %s; service stopped\n", std::strerror(errno));
      return;
    }
    // Events seen before a pause stay valid after it: nothing else touches
    // the connections while the gate is closed (level-triggered anyway).
    if (!enter()) return;
    for (int i = 0; i < n; ++i) {
      const int fd = evs[i].data.fd;
      if (fd == stop_fd) {
        leave();
        return;
      }
      bool is_listen = false;
      for (int l : listen) is_listen |= (l == fd);
      if (is_listen) {
        accept_all(fd);
      } else {
        on_conn(fd, evs[i].events);
      }
    }
    used.store(store->used_bytes(), std::memory_order_relaxed);
    leave();
  }
}

void KvService::Impl::accept_all(int lfd) {
  for (;;) {
    int fd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if ((errno == EMFILE || errno == ENFILE) && reserve_fd >= 0) {
        // Out of fds: drop the connection instead of spinning on it.
        ::close(reserve_fd);
        int c = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) ::close(c);
        reserve_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        con->print("mk-kernel: kv: out of file descriptors, connection refused\n");
        continue;
      }
      if (errno != EAGAIN && errno != EWOULDBLOCK) con->print("mk-kernel: kv: accept: %s\n", std::strerror(errno));
      return;
    }
    int one = 1;
    (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
      ::close(fd);
      continue;
    }
    if (conns.size() <= static_cast<std::size_t>(fd)) conns.resize(static_cast<std::size_t>(fd) + 1);
    conns[static_cast<std::size_t>(fd)] = std::make_unique<Conn>();
    conns[static_cast<std::size_t>(fd)]->events = EPOLLIN;
    conns[static_cast<std::size_t>(fd)]->id = next_id++;
    if (next_id == 0) next_id = 1;  // 2^32 connections later: ids wrap
    track(fd, conns[static_cast<std::size_t>(fd)]->id, false);
    nconns.fetch_add(1, std::memory_order_relaxed);
  }
}

Result<void> KvService::Impl::add_conn(KvConnState st) {
  const int fd = st.fd;
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0) return MK_FAIL(EINVAL, "kv: restored connection not open", "fd %d", fd);
  // Usually set already: the flag lives in the socket's open file, shared
  // with the predecessor's descriptor.
  if ((fl & O_NONBLOCK) == 0 && ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
    return errno_error("kv: O_NONBLOCK on a restored connection");
  }
  auto c = std::make_unique<Conn>();
  if (!st.in.empty() || !st.out.empty() || st.closing) carried.push_back(fd);
  c->id = st.id;
  if (st.id >= next_id) next_id = st.id + 1 == 0 ? 1 : st.id + 1;
  c->in = std::move(st.in);
  c->out = std::move(st.out);
  c->closing = st.closing;
  c->events = EPOLLIN;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) return errno_error("kv: epoll_ctl of a restored connection");
  if (conns.size() <= static_cast<std::size_t>(fd)) conns.resize(static_cast<std::size_t>(fd) + 1);
  track(fd, c->id, pending(*c));
  conns[static_cast<std::size_t>(fd)] = std::move(c);
  nconns.fetch_add(1, std::memory_order_relaxed);
  return {};
}

void KvService::Impl::close_conn(int fd, bool shut) {
  // DEL first: epoll keeps a registration while any dup of the socket lives.
  (void)::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
  if (shut) (void)::shutdown(fd, SHUT_RDWR);
  ::close(fd);
  conns[static_cast<std::size_t>(fd)].reset();
  track(fd, 0, false);
  nconns.fetch_sub(1, std::memory_order_relaxed);
}

void KvService::Impl::on_conn(int fd, std::uint32_t ev) {
  if (static_cast<std::size_t>(fd) >= conns.size() || !conns[static_cast<std::size_t>(fd)]) return;
  Conn& c = *conns[static_cast<std::size_t>(fd)];
  if (ev & EPOLLOUT) {
    if (!flush(fd, c)) return;
  }
  if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    for (int reads = 0; reads < 16; ++reads) {
      ssize_t n = ::read(fd, scratch.data(), scratch.size());
      // After QUIT or a protocol error what the client still sends is dropped.
      if (n > 0 && !c.closing) c.in.append(scratch.data(), static_cast<std::size_t>(n));
      if (n > 0) {
        if (static_cast<std::size_t>(n) < kReadChunk) break;
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0 && errno == EINTR) continue;
      close_conn(fd, true);  // EOF or reset
      return;
    }
  }
  process(fd, c);
  if (conns[static_cast<std::size_t>(fd)]) pending_of[static_cast<std::size_t>(fd)] = pending(c);
}

void KvService::Impl::track(int fd, std::uint32_t id, bool p) {
  const auto i = static_cast<std::size_t>(fd);
  if (id_of.size() <= i) {
    id_of.resize(i + 1, 0);
    pending_of.resize(i + 1, 0);
  }
  id_of[i] = id;
  pending_of[i] = p ? 1 : 0;
}

// Parses and executes buffered requests while replies are not backed up,
// then writes what it can.
void KvService::Impl::process(int fd, Conn& c) {
  for (;;) {
    bool held = false;  // stopped by flow control, not by lack of input
    while (!c.closing && c.in_off < c.in.size()) {
      if (c.out.size() - c.out_off >= kOutHigh) {
        held = true;
        break;
      }
      auto r = sdk::resp::parse_request(std::string_view(c.in).substr(c.in_off), &args);
      if (!r) {
        c.out += "-ERR Protocol error: ";
        c.out += r.error().message();
        c.out += "\r\n";
        c.closing = true;
        c.in.clear();
        c.in_off = 0;
        break;
      }
      if (*r == 0) break;
      c.in_off += *r;
      if (!args.empty()) execute(c);
    }
    if (c.in_off == c.in.size()) {
      c.in.clear();
      c.in_off = 0;
    } else if (c.in_off > 0 && c.in_off >= c.in.size() / 2) {
      c.in.erase(0, c.in_off);
      c.in_off = 0;
    }
    if (!flush(fd, c)) return;
    if (!held || c.out.size() - c.out_off >= kOutHigh) return;
  }
}

bool KvService::Impl::flush(int fd, Conn& c) {
  while (c.out_off < c.out.size()) {
    ssize_t n = ::send(fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
    if (n > 0) {
      c.out_off += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    close_conn(fd, true);
    return false;
  }
  if (c.out_off == c.out.size()) {
    c.out.clear();
    c.out_off = 0;
    if (c.closing) {
      close_conn(fd, true);
      return false;
    }
  }
  update_interest(fd, c);
  return true;
}

void KvService::Impl::update_interest(int fd, Conn& c) {
  const std::size_t pending = c.out.size() - c.out_off;
  std::uint32_t want = 0;
  if (pending < kOutHigh || c.closing) want |= EPOLLIN;  // closing: drain and drop
  if (pending > 0) want |= EPOLLOUT;
  if (want == c.events) return;
  epoll_event ev{};
  ev.events = want;
  ev.data.fd = fd;
  if (::epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) == 0) c.events = want;
}

void KvService::Impl::reply_error(std::string* out, const Error& e) {
  switch (e.code()) {
    case ENOMEM: {
      std::string m = "OOM ";
      m += e.message();
      sdk::resp::append_error(out, m);
      return;
    }
    case EINVAL: sdk::resp::append_error(out, "ERR value is not an integer or out of range"); return;
    case ERANGE: sdk::resp::append_error(out, "ERR increment or decrement would overflow"); return;
    case EMEDIUMTYPE:
      sdk::resp::append_error(out, "WRONGTYPE Operation against a key holding the wrong kind of value");
      return;
    default: {
      std::string m = "ERR ";
      m += e.to_string();
      sdk::resp::append_error(out, m);
    }
  }
}

void KvService::Impl::execute(Conn& c) {
  namespace resp = sdk::resp;
  std::string* out = &c.out;
  const std::string& cmd = args[0];
  const std::size_t n = args.size();
  auto arity = [&](bool ok) {
    if (ok) return true;
    std::string m = "ERR wrong number of arguments for '";
    for (char ch : cmd) m.push_back(static_cast<char>(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch));
    m += "' command";
    resp::append_error(out, m);
    return false;
  };
  auto incr_by = [&](std::int64_t by) {
    auto r = store->incr(args[1], by);
    if (r) {
      resp::append_integer(out, *r);
    } else {
      reply_error(out, r.error());
    }
  };
  if (eq_nocase(cmd, "get")) {
    if (!arity(n == 2)) return;
    auto r = store->get(args[1]);
    if (!r) return reply_error(out, r.error());
    if (*r) {
      resp::append_bulk(out, **r);
    } else {
      resp::append_nil(out);
    }
  } else if (eq_nocase(cmd, "set")) {
    if (!arity(n >= 3)) return;
    if (n > 3) return resp::append_error(out, "ERR SET options (EX, PX, NX, XX, KEEPTTL, GET) are not supported");
    auto r = store->set(args[1], args[2]);
    if (!r) return reply_error(out, r.error());
    resp::append_simple(out, "OK");
  } else if (eq_nocase(cmd, "incr")) {
    if (arity(n == 2)) incr_by(1);
  } else if (eq_nocase(cmd, "decr")) {
    if (arity(n == 2)) incr_by(-1);
  } else if (eq_nocase(cmd, "incrby") || eq_nocase(cmd, "decrby")) {
    if (!arity(n == 3)) return;
    std::int64_t by = 0;
    if (!sdk::kv_parse_int(args[2], &by) || (eq_nocase(cmd, "decrby") && by == INT64_MIN)) {
      return resp::append_error(out, "ERR value is not an integer or out of range");
    }
    incr_by(eq_nocase(cmd, "decrby") ? -by : by);
  } else if (eq_nocase(cmd, "ping")) {
    if (!arity(n <= 2)) return;
    if (n == 2) return resp::append_bulk(out, args[1]);
    resp::append_simple(out, "PONG");
  } else if (eq_nocase(cmd, "echo")) {
    if (arity(n == 2)) resp::append_bulk(out, args[1]);
  } else if (eq_nocase(cmd, "del") || eq_nocase(cmd, "exists")) {
    if (!arity(n >= 2)) return;
    const bool del = eq_nocase(cmd, "del");
    std::int64_t count = 0;
    for (std::size_t i = 1; i < n; ++i) {
      auto r = del ? store->del(args[i]) : store->exists(args[i]);
      if (!r) return reply_error(out, r.error());
      count += *r ? 1 : 0;
    }
    resp::append_integer(out, count);
  } else if (eq_nocase(cmd, "dbsize")) {
    if (arity(n == 1)) resp::append_integer(out, static_cast<std::int64_t>(store->dbsize()));
  } else if (eq_nocase(cmd, "mset")) {
    if (!arity(n >= 3 && n % 2 == 1)) return;
    auto r = store->mset(std::span<const std::string>(args).subspan(1));
    if (!r) return reply_error(out, r.error());
    resp::append_simple(out, "OK");
  } else if (eq_nocase(cmd, "mget")) {
    if (!arity(n >= 2)) return;
    auto r = store->mget(std::span<const std::string>(args).subspan(1));
    if (!r) return reply_error(out, r.error());
    resp::append_array_header(out, r->size());
    for (const auto& v : *r) {
      if (v) {
        resp::append_bulk(out, *v);
      } else {
        resp::append_nil(out);
      }
    }
  } else if (eq_nocase(cmd, "flushall") || eq_nocase(cmd, "flushdb")) {
    if (!arity(n <= 2)) return;
    store->flushall();
    resp::append_simple(out, "OK");
  } else if (eq_nocase(cmd, "lpush")) {
    if (!arity(n >= 3)) return;
    auto r = store->lpush(args[1], std::span<const std::string>(args).subspan(2));
    if (!r) return reply_error(out, r.error());
    resp::append_integer(out, static_cast<std::int64_t>(*r));
  } else if (eq_nocase(cmd, "lpop")) {
    if (!arity(n == 2)) return;
    auto r = store->lpop(args[1]);
    if (!r) return reply_error(out, r.error());
    if (*r) {
      resp::append_bulk(out, **r);
    } else {
      resp::append_nil(out);
    }
  } else if (eq_nocase(cmd, "lrange")) {
    if (!arity(n == 4)) return;
    std::int64_t a = 0, b = 0;
    if (!sdk::kv_parse_int(args[2], &a) || !sdk::kv_parse_int(args[3], &b)) {
      return resp::append_error(out, "ERR value is not an integer or out of range");
    }
    auto r = store->lrange(args[1], a, b);
    if (!r) return reply_error(out, r.error());
    resp::append_array_header(out, r->size());
    for (auto v : *r) resp::append_bulk(out, v);
  } else if (eq_nocase(cmd, "config")) {
    // redis-benchmark asks for `save` and `appendonly` at start.
    if (n == 3 && eq_nocase(args[1], "get")) {
      if (eq_nocase(args[2], "save")) {
        resp::append_array_header(out, 2);
        resp::append_bulk(out, "save");
        resp::append_bulk(out, "");
      } else if (eq_nocase(args[2], "appendonly")) {
        resp::append_array_header(out, 2);
        resp::append_bulk(out, "appendonly");
        resp::append_bulk(out, "no");
      } else {
        resp::append_array_header(out, 0);
      }
      return;
    }
    resp::append_error(out, "ERR only CONFIG GET is supported");
  } else if (eq_nocase(cmd, "command")) {
    resp::append_array_header(out, 0);
  } else if (eq_nocase(cmd, "select")) {
    if (!arity(n == 2)) return;
    if (args[1] == "0") return resp::append_simple(out, "OK");
    resp::append_error(out, "ERR DB index is out of range");
  } else if (eq_nocase(cmd, "quit")) {
    resp::append_simple(out, "OK");
    c.closing = true;
  } else {
    std::string m = "ERR unknown command '";
    m.append(cmd, 0, std::min<std::size_t>(cmd.size(), 128));
    m += "'";
    resp::append_error(out, m);
  }
}

void KvService::stop() {
  if (!impl_ || stopped_) return;
  Impl& im = *impl_;
  {
    std::lock_guard<std::mutex> lk(im.gate_mu);
    im.gate = Impl::Gate::kQuit;
  }
  im.gate_cv.notify_all();
  if (im.thread.joinable()) {
    const std::uint64_t one = 1;
    (void)!::write(im.stop_fd, &one, sizeof one);  // out of epoll_wait
    im.thread.join();
  }
  stopped_ = true;
  paused_ = false;
  for (std::size_t fd = 0; fd < im.conns.size(); ++fd) {
    if (im.conns[fd]) im.close_conn(static_cast<int>(fd), false);
  }
}

KvService::~KvService() {
  stop();
  if (impl_) {
    if (impl_->ep >= 0) ::close(impl_->ep);
    if (impl_->stop_fd >= 0) ::close(impl_->stop_fd);
    if (impl_->reserve_fd >= 0) ::close(impl_->reserve_fd);
  }
}

Result<void> KvService::set_cpu(std::uint32_t cpu) {
  if (cpu >= CPU_SETSIZE) return MK_FAIL(EINVAL, "kv: cpu out of range", "cpu %u >= %d", cpu, CPU_SETSIZE);
  Impl& im = *impl_;
  std::lock_guard<std::mutex> lk(im.cpu_mu);
  if (!stopped_ && im.thread.joinable()) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (int rc = ::pthread_setaffinity_np(im.thread.native_handle(), sizeof set, &set); rc != 0) {
      return MK_FAIL(rc, "kv: re-pinning the service thread", "pthread_setaffinity_np to cpu %u: %s", cpu,
                     std::strerror(rc));
    }
  }
  im.cpu = cpu;
  return {};
}

std::uint32_t KvService::cpu() const {
  std::lock_guard<std::mutex> lk(impl_->cpu_mu);
  return impl_->cpu;
}

std::uint64_t KvService::used_bytes() const { return impl_->used.load(std::memory_order_relaxed); }
std::uint64_t KvService::connections() const { return impl_->nconns.load(std::memory_order_relaxed); }

}  // namespace mk::image
