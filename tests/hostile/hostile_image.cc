// mk-hostile: an image that boots like any other (boot tree on fd 3, host
// channel attached as side B, peer channels taken over on the side the tree
// names, READY sent) and then misbehaves, per --mode:
//
//   scribble         random bytes over every shared ring it maps (host and
//                    peer channels: header, indices, slots, bulk, doorbell
//                    words) and writes to every doorbell eventfd;
//   flood            sends as fast as it can to the host and to every peer
//                    (one-way, ping requests, READY/TenantExit again, large
//                    by-reference messages), never receives;
//   garbage          answers every message it receives with garbage, written
//                    straight into its outgoing ring: wrong kinds, wrong
//                    correlation ids, wrong lengths, spans longer than the
//                    ring allows, bulk references outside the bulk ring,
//                    invalid types;
//   refuse-shutdown  answers ping (host and peers) and stats properly,
//                    ignores shutdown requests and SIGTERM; with
//                    --ping-delay-ms=N each ping is answered N ms late;
//   silent           never reads its rings again and keeps its CPU busy.
//
// Only the end-to-end tests in tests/hostile use it (hostile_e2e_test.cc):
// the host and the other instances must survive each mode.
#include <linux/futex.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include "ipi/abi/ring_layout.h"
#include "ipi/channel.h"
#include "ipi/message_types.h"
#include "mk/abi/control_messages.h"
#include "mksdk/boot_info.h"
#include "mksdk/devices.h"

namespace {

using namespace mk;
namespace iabi = mk::ipi::abi;

std::uint64_t splitmix(std::uint64_t& s) {
  std::uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// One mapped channel: the Channel, and its fds kept (dup'ed) so the
// doorbell eventfds can be written directly.
struct Link {
  std::uint32_t peer_id = 0;
  std::uint32_t side = 1;  // ours: we produce into direction `side`
  std::optional<ipi::Channel> ch;  // always set once in `links`
  int eventfd[2] = {-1, -1};
};

// Raw producer over our outgoing ring: writes slots itself, so it can
// publish what Channel::try_send refuses to build (wrong flags, lengths,
// spans, bulk references, types). Used only by garbage mode, where the
// Channel's own producer is never used after READY.
class RawTx {
 public:
  RawTx(Link& l) : l_(l), v_(l.ch->region().ring(l.side)) {
    head_ = tail();
    bulk_head_ = bulk_tail();
  }
  std::uint64_t tail() const {
    return std::atomic_ref<std::uint64_t>(v_.control->consumer.tail).load(std::memory_order_acquire);
  }
  std::uint64_t bulk_tail() const {
    return std::atomic_ref<std::uint64_t>(v_.control->consumer.bulk_tail).load(std::memory_order_acquire);
  }
  // Publishes one head slot with the given header fields and `nslots - 1`
  // continuation slots after it, payload bytes from `payload` (truncated to
  // what the slots hold). false when the ring has no room.
  bool put(std::uint16_t type, std::uint8_t flags, std::uint8_t nslots, std::uint32_t length, std::uint32_t corr,
           const std::byte* payload, std::size_t n) {
    const std::uint32_t k = nslots == 0 ? 1 : nslots;
    if (head_ + k - tail() > v_.slot_count) return false;
    for (std::uint32_t i = 1; i < k; ++i) {
      std::byte* s = slot(head_ + i);
      iabi::ContSlot c{};
      c.seq = 0;
      c.flags = iabi::kFlagCont;
      c.index = static_cast<std::uint8_t>(i);
      const std::size_t from = iabi::kHeadPayload + (i - 1) * iabi::kContPayload;
      if (from < n) std::memcpy(c.payload, payload + from, std::min<std::size_t>(iabi::kContPayload, n - from));
      std::memcpy(s + 4, reinterpret_cast<const std::byte*>(&c) + 4, sizeof c - 4);
      std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(s))
          .store(static_cast<std::uint32_t>(head_ + i + 1), std::memory_order_release);
    }
    iabi::Slot h{};
    h.type = type;
    h.flags = flags;
    h.nslots = nslots;
    h.length = length;
    h.corr = corr;
    if (n) std::memcpy(h.payload, payload, std::min<std::size_t>(iabi::kHeadPayload, n));
    std::byte* s = slot(head_);
    std::memcpy(s + 4, reinterpret_cast<const std::byte*>(&h) + 4, sizeof h - 4);
    std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(s))
        .store(static_cast<std::uint32_t>(head_ + 1), std::memory_order_seq_cst);
    head_ += k;
    ring();
    return true;
  }
  // An honest by-reference message of `len` bytes (flags: kind | by-ref).
  bool put_bulk(std::uint16_t type, std::uint8_t kind, std::uint32_t corr, std::size_t len, std::uint64_t& seed) {
    if (!v_.bulk || len > v_.bulk_size) return false;
    std::uint64_t pos = (bulk_head_ + iabi::kBulkAlign - 1) & ~(iabi::kBulkAlign - 1);
    if (pos % v_.bulk_size + len > v_.bulk_size) pos += v_.bulk_size - pos % v_.bulk_size;
    if (pos + len - bulk_tail() > v_.bulk_size) return false;
    for (std::size_t i = 0; i < len; i += 8) {
      const std::uint64_t x = splitmix(seed);
      std::memcpy(v_.bulk + (pos + i) % v_.bulk_size, &x, std::min<std::size_t>(8, len - i));
    }
    iabi::BulkRef ref{pos, static_cast<std::uint32_t>(len), ~static_cast<std::uint32_t>(len)};
    if (!put(type, static_cast<std::uint8_t>(kind | iabi::kFlagByRef), 1, static_cast<std::uint32_t>(len), corr,
             reinterpret_cast<const std::byte*>(&ref), sizeof ref))
      return false;
    bulk_head_ = pos + len;
    return true;
  }

 private:
  std::byte* slot(std::uint64_t pos) const { return v_.slots + (pos & (v_.slot_count - 1)) * iabi::kSlotSize; }
  // Wakes the consumer whatever it sleeps on (spurious wakes are harmless).
  void ring() {
    std::atomic_ref<std::uint32_t> w(v_.control->doorbell.state);
    std::uint32_t s = w.load(std::memory_order_seq_cst);
    if (s == iabi::kAwake || !w.compare_exchange_strong(s, iabi::kAwake)) return;
    if (s == iabi::kSleepingEventfd) {
      const std::uint64_t one = 1;
      (void)!::write(l_.eventfd[l_.side], &one, sizeof one);
    } else {
      ::syscall(SYS_futex, &v_.control->doorbell.state, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
    }
  }
  Link& l_;
  ipi::RingView v_;
  std::uint64_t head_ = 0, bulk_head_ = 0;
};

[[noreturn]] void scribble(std::vector<Link>& links, std::uint64_t seed) {
  std::vector<std::byte> buf(8192);
  for (std::uint64_t round = 0;; ++round) {
    for (Link& l : links) {
      std::byte* base = l.ch->region().base();
      const std::size_t size = l.ch->region().size();
      for (int i = 0; i < 64; ++i) {
        const std::uint64_t x = splitmix(seed);
        if (x % 16 == 0) {  // a burst anywhere
          const std::size_t off = splitmix(seed) % size;
          const std::size_t len = std::min<std::size_t>(size - off, 1 + splitmix(seed) % 4096);
          for (std::size_t j = 0; j < len; j += 8) {
            const std::uint64_t v = splitmix(seed);
            std::memcpy(base + off + j, &v, std::min<std::size_t>(8, len - j));
          }
        } else {  // one aligned word, mostly in the header, control lines and slots
          const std::size_t span = (x & 0x100) ? size : std::min<std::size_t>(size, 64 * 1024);
          const std::size_t off = (splitmix(seed) % (span / 4)) * 4;
          const std::uint32_t v = static_cast<std::uint32_t>(splitmix(seed));
          std::memcpy(base + off, &v, 4);
        }
      }
      // Both doorbells: the eventfds and the futex words.
      const std::uint64_t one = 1;
      for (int fd : l.eventfd) (void)!::write(fd, &one, sizeof one);
      for (std::uint32_t d = 0; d < 2; ++d)
        ::syscall(SYS_futex, &l.ch->region().ring(d).control->doorbell.state, FUTEX_WAKE, INT32_MAX, nullptr, nullptr,
                  0);
    }
    if (round % 1024 == 0) ::usleep(100);  // a short sleep now and then: still ~all of its CPU
  }
}

[[noreturn]] void flood(std::vector<Link>& links, std::uint32_t id, std::uint64_t seed) {
  std::vector<std::byte> buf(128 * 1024);
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<std::byte>(i * 31);
  for (;;) {
    for (Link& l : links) {
      for (int i = 0; i < 32; ++i) {
        const std::uint64_t x = splitmix(seed);
        switch (x % 6) {
          case 0:  // one-way user message, small to spanning
            (void)l.ch->try_send(ipi::type_in(ipi::TypeRange::kUser, x % 64), std::span(buf.data(), (x >> 8) % 1700));
            break;
          case 1:  // a ping request: the receiver echoes into a ring we never drain
            (void)l.ch->try_send(abi::kMsgPing, std::span(buf.data(), (x >> 8) % 64), ipi::MessageKind::kRequest,
                                static_cast<std::uint32_t>(x >> 32));
            break;
          case 2: {  // READY again (host: overwrites its copy; peers: unhandled)
            const abi::ReadyMsg r{abi::kControlVersion, id, 1, 0, 0};
            (void)l.ch->try_send_value(abi::kMsgReady, r);
            break;
          }
          case 3: {  // tenant exits nobody started
            const abi::TenantExitMsg t{static_cast<std::int32_t>(x), 0, static_cast<std::uint32_t>(x >> 32), 0};
            (void)l.ch->try_send_value(abi::kMsgTenantExit, t);
            break;
          }
          case 4:  // by reference, up to 100 KiB
            (void)l.ch->try_send(ipi::type_in(ipi::TypeRange::kIo, 1), std::span(buf.data(), 2048 + (x >> 8) % 100000));
            break;
          default:  // requests of types nobody handles (ENOSYS replies into our full ring)
            (void)l.ch->try_send(ipi::type_in(ipi::TypeRange::kResource, x % 16), std::span(buf.data(), 8),
                                ipi::MessageKind::kRequest, static_cast<std::uint32_t>(x >> 32));
            break;
        }
      }
      l.ch->flush();
    }
  }
}

[[noreturn]] void garbage(std::vector<Link>& links, std::uint64_t seed) {
  std::vector<RawTx> tx;
  for (Link& l : links) tx.emplace_back(l);
  std::vector<std::byte> junk(4096);
  for (;;) {
    bool any = false;
    for (std::size_t k = 0; k < links.size(); ++k) {
      ipi::InMessage m;
      ipi::Status s = links[k].ch->try_receive(m);
      if (!s) continue;
      any = true;
      const std::uint32_t corr = m.corr;
      for (std::size_t i = 0; i < junk.size(); i += 8) {
        const std::uint64_t v = splitmix(seed);
        std::memcpy(junk.data() + i, &v, 8);
      }
      RawTx& t = tx[k];
      // Several answers to each message, none of them right.
      for (int a = 0; a < 3; ++a) {
        const std::uint64_t x = splitmix(seed);
        const std::uint16_t any_type = static_cast<std::uint16_t>(x >> 16);
        switch (x % 9) {
          case 0:  // response, right id, wrong length (0..1784 bytes: spans)
          {
            const std::uint32_t len = static_cast<std::uint32_t>((x >> 32) % (iabi::kMaxSpanPayload + 1));
            (void)t.put(abi::kMsgPing, iabi::kKindResponse, static_cast<std::uint8_t>(ipi::slots_for(len)), len, corr,
                        junk.data(), len);
            break;
          }
          case 1:  // response, wrong id
            (void)t.put(abi::kMsgPing, iabi::kKindResponse, 1, 8, static_cast<std::uint32_t>(x >> 32), junk.data(), 8);
            break;
          case 2:  // error response, right id, nonsense errno / length
            (void)t.put(abi::kMsgPing, iabi::kKindErrorResponse, 1, static_cast<std::uint32_t>((x >> 40) % 49), corr,
                        junk.data(), 48);
            break;
          case 3:  // oversized, honest by-reference response with the right id
            (void)t.put_bulk(abi::kMsgPing, iabi::kKindResponse, corr, 4096 + (x >> 32) % (200 * 1024), seed);
            break;
          case 4:  // a span longer than the protocol allows, length lying
            (void)t.put(abi::kMsgPing, iabi::kKindResponse, static_cast<std::uint8_t>(33 + (x >> 32) % 200),
                        static_cast<std::uint32_t>(x >> 8), corr, junk.data(), junk.size());
            break;
          case 5:  // length inconsistent with nslots
            (void)t.put(abi::kMsgPing, iabi::kKindResponse, 2, 4000000, corr, junk.data(), 120);
            break;
          case 6: {  // bulk reference outside the bulk ring
            iabi::BulkRef ref{x, static_cast<std::uint32_t>(x >> 20), ~static_cast<std::uint32_t>(x >> 20)};
            if (x & 0x8000) ref.check = static_cast<std::uint32_t>(x);
            (void)t.put(abi::kMsgPing, static_cast<std::uint8_t>(iabi::kKindResponse | iabi::kFlagByRef), 1,
                        ref.length, corr, reinterpret_cast<const std::byte*>(&ref), sizeof ref);
            break;
          }
          case 7:  // invalid type and flags, any kind
            (void)t.put(any_type < 0x1000 ? any_type : static_cast<std::uint16_t>(any_type | 0x8000),
                        static_cast<std::uint8_t>(x >> 48), 1, 16, corr, junk.data(), 48);
            break;
          default:  // a request back (the receiver answers ENOSYS or echoes), random id
            (void)t.put(static_cast<std::uint16_t>(0x1000 + (x >> 24) % 0x20), iabi::kKindRequest, 1, 16,
                        static_cast<std::uint32_t>(x >> 32), junk.data(), 48);
            break;
        }
      }
    }
    if (!any) ::usleep(200);
  }
}

// Proper answers to ping (host and peers) and stats; shutdown requests are
// read and dropped. --ping-delay-ms=N answers each ping N ms late (a slow,
// not a dead, peer).
[[noreturn]] void refuse_shutdown(std::vector<Link>& links, std::uint64_t t0, std::uint32_t cpus,
                                  std::uint32_t ping_delay_ms) {
  std::uint64_t rx = 0, tx = 0;
  for (;;) {
    bool any = false;
    for (Link& l : links) {
      ipi::InMessage m;
      if (!l.ch->try_receive(m)) continue;
      any = true;
      ++rx;
      if (m.kind != ipi::MessageKind::kRequest || m.type == abi::kMsgShutdown) continue;  // no reply, no exit
      ipi::Status s;
      if (m.type == abi::kMsgPing) {
        std::vector<std::byte> echo(m.payload.begin(), m.payload.end());
        if (ping_delay_ms) ::usleep(ping_delay_ms * 1000);
        s = l.ch->try_send(abi::kMsgPing, echo, ipi::MessageKind::kResponse, m.corr);
      } else if (m.type == abi::kMsgStats) {
        abi::StatsMsg st{};
        st.ipi_rx = rx;
        st.ipi_tx = tx;
        st.cpus = cpus;
        st.uptime_ns = sdk::monotonic_ns() - t0;
        s = l.ch->try_send(abi::kMsgStats, std::as_bytes(std::span<const abi::StatsMsg, 1>(&st, 1)),
                           ipi::MessageKind::kResponse, m.corr);
      } else {
        const std::int32_t e = ENOSYS;
        s = l.ch->try_send(abi::kMsgPing, std::as_bytes(std::span<const std::int32_t, 1>(&e, 1)),
                           ipi::MessageKind::kErrorResponse, m.corr);
      }
      if (s) ++tx;
      l.ch->flush();
    }
    if (!any) ::usleep(100);
  }
}

[[noreturn]] void silent() {
  volatile std::uint64_t spin = 0;
  for (;;) spin = spin + 1;
}

int usage(const char* why) {
  std::fprintf(stderr,
               "mk-hostile: %s\nusage: mk-hostile --mode=scribble|flood|garbage|refuse-shutdown|silent [--seed=N]\n",
               why);
  return sdk::exit_code::kUsage;
}

}  // namespace

int main(int argc, char** argv) {
  const std::uint64_t t0 = sdk::monotonic_ns();
  std::string mode;
  std::uint32_t ping_delay_ms = 0;
  std::uint64_t seed = static_cast<std::uint64_t>(::time(nullptr)) ^ static_cast<std::uint64_t>(::getpid()) << 32;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--mode=", 0) == 0) mode = a.substr(7);
    else if (a == "--mode" && i + 1 < argc) mode = argv[++i];
    else if (a.rfind("--seed=", 0) == 0) seed = std::strtoull(a.c_str() + 7, nullptr, 0);
    else if (a.rfind("--ping-delay-ms=", 0) == 0) ping_delay_ms = static_cast<std::uint32_t>(std::strtoul(a.c_str() + 16, nullptr, 0));
    else return usage(("unknown argument " + a).c_str());
  }
  if (mode != "scribble" && mode != "flood" && mode != "garbage" && mode != "refuse-shutdown" && mode != "silent")
    return usage(mode.empty() ? "missing --mode" : ("unknown mode " + mode).c_str());
  if (mode == "refuse-shutdown") ::signal(SIGTERM, SIG_IGN);

  auto tree = sdk::load_boot_info();
  if (!tree) {
    std::fprintf(stderr, "mk-hostile: %s\n", tree.error().to_string().c_str());
    return sdk::exit_code::kBadBootTree;
  }
  sdk::Console con(sdk::Devices(tree->devices).console_fd().value_or(2));
  std::vector<Link> links;  // [0] = the host
  const IpiChannel* host = nullptr;
  for (const auto& c : tree->ipi.channels)
    if (c.peer_id == tree->ipi.host_id) host = &c;
  if (!host) {
    con.print("mk-hostile: no host channel\n");
    return sdk::exit_code::kHostLink;
  }
  auto open = [&](const IpiChannel& c, bool is_host) -> bool {
    const auto fds = sdk::channel_fds(c);
    ipi::ChannelFds cf;
    cf.memfd.reset(::dup(fds[0]));
    cf.eventfd[0].reset(::dup(fds[1]));
    cf.eventfd[1].reset(::dup(fds[2]));
    Link l;
    l.peer_id = c.peer_id;
    l.side = is_host ? 1 : c.side;
    l.eventfd[0] = fds[1];
    l.eventfd[1] = fds[2];
    auto ch = is_host ? ipi::Channel::attach(std::move(cf)) : ipi::Channel::take_over(std::move(cf), c.side);
    if (!ch) {
      con.print("mk-hostile: channel to %u: %s\n", c.peer_id, ch.error().to_string().c_str());
      return false;
    }
    l.ch.emplace(std::move(*ch));
    links.push_back(std::move(l));
    return true;
  };
  if (!open(*host, true)) return sdk::exit_code::kHostLink;
  for (const auto& c : tree->ipi.channels)
    if (&c != host) (void)open(c, false);

  const auto cpus = static_cast<std::uint32_t>(tree->cpus.size());
  const abi::ReadyMsg ready{abi::kControlVersion, tree->instance.id, cpus, 0, sdk::monotonic_ns() - t0};
  if (!links[0].ch->send(abi::kMsgReady, std::as_bytes(std::span<const abi::ReadyMsg, 1>(&ready, 1)),
                        std::chrono::seconds(5)))
    return sdk::exit_code::kHostLink;
  links[0].ch->flush();
  con.print("mk-hostile: instance %u, mode %s, seed %llu, %zu peer channel(s)\n", tree->instance.id, mode.c_str(),
            static_cast<unsigned long long>(seed), links.size() - 1);
  if (mode == "scribble") scribble(links, seed);
  if (mode == "flood") flood(links, tree->instance.id, seed);
  if (mode == "garbage") {
    // The host reads READY before anything else: let it, so garbage never
    // overwrites it (the raw writer starts at the consumer's tail).
    for (int i = 0; i < 500; ++i) {
      if (std::atomic_ref<std::uint64_t>(links[0].ch->region().ring(1).control->consumer.tail)
              .load(std::memory_order_acquire) >= 1)
        break;
      ::usleep(10'000);
    }
    garbage(links, seed);
  }
  if (mode == "refuse-shutdown") refuse_shutdown(links, t0, cpus, ping_delay_ms);
  silent();
}
