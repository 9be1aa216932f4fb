// Channel::take_over / detach: a side changes hands (hand-over, or a restart
// after its owner died) and both rings continue exactly where they were; every
// refusal path; corrupt shared indices never crash or hang the new owner.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <vector>

#include "ipi/channel.h"
#include "ipi/message_types.h"
#include "ipi_test_util.h"

namespace mk::ipi {
namespace {

using namespace std::chrono_literals;
using test::check_pattern;
using test::fill_pattern;
using Clock = std::chrono::steady_clock;

constexpr std::uint16_t kType = type_in(TypeRange::kUser, 7);
constexpr std::uint16_t kStop = type_in(TypeRange::kUser, 8);
// 64 slots, 16 KiB bulk: a few hundred messages wrap both rings many times.
constexpr ChannelConfig kCfg{64, 16 * 1024};

// Message i: 1 slot, 4 / 13 / 32 spanning slots, empty, by-reference, the
// one-slot edge and the first spanning size.
std::size_t len_of(std::uint64_t i) {
  static constexpr std::size_t kLens[] = {8, 200, 700, 0, 3000, 48, 49, 1784, 5000};
  return kLens[i % (sizeof kLens / sizeof kLens[0])];
}

Status send_one(Channel& c, std::uint64_t i, std::size_t len) {
  std::vector<std::byte> buf(len);
  fill_pattern(buf.data(), len, i);
  return c.try_send(kType, buf, MessageKind::kOneWay, static_cast<std::uint32_t>(i));
}
Status send_one(Channel& c, std::uint64_t i) { return send_one(c, i, len_of(i)); }

// True (and no gtest failure) when m is message i, intact.
bool is_msg(const InMessage& m, std::uint64_t i, std::size_t len) {
  return m.type == kType && m.corr == static_cast<std::uint32_t>(i) && m.payload.size() == len &&
         m.by_ref == (len > abi::kMaxSpanPayload) && check_pattern(m.payload.data(), len, i);
}

void expect_msg(const InMessage& m, std::uint64_t i) {
  EXPECT_EQ(m.corr, static_cast<std::uint32_t>(i));
  EXPECT_TRUE(is_msg(m, i, len_of(i))) << "message " << i << " (corr " << m.corr << ", "
                                       << m.payload.size() << " bytes)";
}

// Sends [*sent, until) from tx; whenever tx is full, rx takes one and checks
// it is *got. Single thread; the rings never deadlock (flushed before reading).
void pump(Channel& tx, Channel& rx, std::uint64_t* sent, std::uint64_t* got, std::uint64_t until) {
  InMessage m;
  while (*sent < until) {
    Status s = send_one(tx, *sent);
    if (s) {
      ++*sent;
      continue;
    }
    ASSERT_EQ(s.code(), EAGAIN);
    tx.flush();
    ASSERT_EQ(rx.try_receive(m).code(), 0) << "full ring but nothing to receive at " << *got;
    expect_msg(m, (*got)++);
  }
  tx.flush();
}

void drain(Channel& rx, std::uint64_t* got, std::uint64_t until) {
  InMessage m;
  while (*got < until) {
    ASSERT_EQ(rx.try_receive(m).code(), 0) << "missing message " << *got;
    expect_msg(m, (*got)++);
  }
  EXPECT_EQ(rx.try_receive(m).code(), EAGAIN);
}

// ---------------------------------------------------------------------------

TEST(TakeOver, DetachedSideAResumesBothRingsExactly) {
  ChannelOptions batched;
  batched.batch = 4;
  auto a = Channel::create(kCfg, batched);
  ASSERT_TRUE(a);
  auto fds_b = a->export_fds();
  ASSERT_TRUE(fds_b);
  auto b = Channel::attach(std::move(*fds_b));
  ASSERT_TRUE(b);
  auto fds_a = a->export_fds();
  ASSERT_TRUE(fds_a);

  // A sends 10 (the last two still in an unpublished batch), B reads 5
  // (holding the by-reference message 4 at the end).
  std::uint64_t sent = 0, got = 0;
  for (; sent < 10; ++sent) ASSERT_TRUE(send_one(*a, sent));
  EXPECT_EQ(a->stats().publishes, 2u);
  InMessage m;
  for (; got < 5; ++got) {
    ASSERT_TRUE(b->try_receive(m));
    expect_msg(m, got);
  }
  EXPECT_TRUE(m.by_ref);
  // B -> A: three messages pending for A at the hand-over.
  for (std::uint64_t i = 0; i < 3; ++i) ASSERT_TRUE(send_one(*b, 100 + i, 8));
  b->flush();
  // Mark the pid so the take-over's write is visible.
  a->region().header()->pid[0] = 12345;
  EXPECT_EQ(b->peer_pid(), 12345);

  a->detach();  // publishes messages 8 and 9
  a->detach();  // idempotent
  EXPECT_FALSE(b->peer_closed());

  auto na = Channel::take_over(std::move(*fds_a), 0, batched);
  ASSERT_TRUE(na) << na.error().what();
  EXPECT_EQ(na->side(), 0u);
  EXPECT_EQ(b->peer_pid(), ::getpid());
  EXPECT_EQ(na->peer_pid(), ::getpid());
  for (std::uint64_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(na->try_receive(m));
    EXPECT_TRUE(is_msg(m, 100 + i, 8)) << i;
  }
  EXPECT_EQ(na->try_receive(m).code(), EAGAIN);

  // 400 more messages through a 64-slot ring: many wraps of slots and bulk.
  pump(*na, *b, &sent, &got, 400);
  drain(*b, &got, 400);
  EXPECT_EQ(b->rx_stats().errors(), 0u);
  EXPECT_EQ(b->rx_stats().received, 400u);
}

// Both sides change hands repeatedly while traffic flows both ways, each time
// at a different ring position (wrap-around across every take-over).
TEST(TakeOver, RepeatedHandOversOfBothSidesLoseNothing) {
  auto a0 = Channel::create(kCfg);
  ASSERT_TRUE(a0);
  auto fb = a0->export_fds();
  ASSERT_TRUE(fb);
  auto b0 = Channel::attach(std::move(*fb));
  ASSERT_TRUE(b0);
  Channel a = std::move(*a0), b = std::move(*b0);

  std::uint64_t ab_sent = 0, ab_got = 0, ba_sent = 0, ba_got = 0;
  ChannelOptions o;
  for (int round = 0; round < 24; ++round) {
    pump(a, b, &ab_sent, &ab_got, ab_sent + 17 + round % 5);
    pump(b, a, &ba_sent, &ba_got, ba_sent + 11 + round % 7);
    // Leave part of each direction unread; sometimes hold a bulk payload.
    InMessage m;
    if (ab_got < ab_sent && b.try_receive(m)) expect_msg(m, ab_got++);
    const std::uint32_t side = round % 2;
    Channel& who = side == 0 ? a : b;
    auto fds = who.export_fds();
    ASSERT_TRUE(fds);
    o.batch = 1 + round % 5;
    who.detach();
    auto n = Channel::take_over(std::move(*fds), side, o);
    ASSERT_TRUE(n) << "round " << round << ": " << n.error().what();
    who = std::move(*n);
  }
  drain(b, &ab_got, ab_sent);
  drain(a, &ba_got, ba_sent);
  EXPECT_EQ(a.rx_stats().errors() + b.rx_stats().errors(), 0u);
  EXPECT_GT(ab_sent, 3u * kCfg.slot_count);
}

// The owner of side A dies without detach or close, mid-batch: written but
// unpublished messages (one of them with its seq already stored, as a
// non-first batch member) must never reach the peer.
TEST(TakeOver, DeadOwnersUnpublishedBatchIsNeverSeen) {
  ChannelOptions batched;
  batched.batch = 4;
  auto a = Channel::create(kCfg, batched);
  ASSERT_TRUE(a);
  auto fds_b = a->export_fds();
  auto fds_a = a->export_fds();
  ASSERT_TRUE(fds_b && fds_a);
  auto b = Channel::attach(std::move(*fds_b));
  ASSERT_TRUE(b);

  const pid_t child = test::fork_child([&]() -> int {
    // 0..7 published (two full batches), then 1-slot messages 0xdead0 and
    // 0xdead1 (+ a by-reference one) written but never published.
    for (std::uint64_t i = 0; i < 8; ++i) {
      if (!send_one(*a, i)) return 2;
    }
    for (std::uint64_t i = 0; i < 3; ++i) {
      if (!send_one(*a, 0xdead0 + i, i == 2 ? 3000 : 8)) return 3;
    }
    if (a->stats().sent != 11 || a->stats().publishes != 2) return 4;
    ::_exit(0);  // dies: no flush, no close
  });
  ASSERT_GT(child, 0);
  a->detach();  // the parent's copy of side A (nothing pending: writes nothing)
  ASSERT_EQ(test::wait_child(child), 0);

  auto na = Channel::take_over(std::move(*fds_a), 0);
  ASSERT_TRUE(na) << na.error().what();
  // New messages 8.. start with 1-slot ones, landing exactly where the dead
  // owner's unpublished 0xdead0 / 0xdead1 were.
  for (std::uint64_t i = 0; i < 2; ++i) ASSERT_TRUE(send_one(*na, 1000 + i, 8));
  InMessage m;
  for (std::uint64_t i = 0; i < 8; ++i) {
    ASSERT_TRUE(b->try_receive(m));
    expect_msg(m, i);
  }
  for (std::uint64_t i = 0; i < 2; ++i) {
    ASSERT_TRUE(b->try_receive(m));
    EXPECT_TRUE(is_msg(m, 1000 + i, 8)) << "got corr " << std::hex << m.corr;
  }
  EXPECT_EQ(b->try_receive(m).code(), EAGAIN);
  EXPECT_EQ(b->rx_stats().errors(), 0u);
  // And it keeps going across wraps.
  std::uint64_t sent = 8, got = 8;
  pump(*na, *b, &sent, &got, 300);
  drain(*b, &got, 300);
}

// ---- refusals --------------------------------------------------------------

TEST(TakeOver, RefusesAClosedSideAndABadSide) {
  auto a = Channel::create(kCfg);
  ASSERT_TRUE(a);
  auto fds_b = a->export_fds();
  ASSERT_TRUE(fds_b);
  auto b = Channel::attach(std::move(*fds_b));
  ASSERT_TRUE(b);
  {
    auto fds = *a->export_fds();
    auto r = Channel::take_over(std::move(fds), 2);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), EINVAL);
  }
  {
    ChannelOptions bad;
    bad.batch = 0;
    auto r = Channel::take_over(*a->export_fds(), 0, bad);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), EINVAL);
  }
  auto fds_a = *a->export_fds();
  auto fds_b2 = *b->export_fds();
  b->close();
  {
    auto r = Channel::take_over(std::move(fds_b2), 1);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), EPIPE);
  }
  a->close();
  auto r = Channel::take_over(std::move(fds_a), 0);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), EPIPE);
}

TEST(TakeOver, ProbesTheRegionLikeAttach) {
  auto a = Channel::create(kCfg);
  ASSERT_TRUE(a);
  auto code = [&](auto patch) {
    auto fds = *a->export_fds();
    patch(fds);
    auto r = Channel::take_over(std::move(fds), 0);
    return r ? 0 : r.error().code();
  };
  EXPECT_EQ(code([](ChannelFds& f) { f.memfd.reset(); }), EBADF);
  EXPECT_EQ(code([](ChannelFds& f) { f.eventfd[0].reset(); }), EBADF);
  EXPECT_EQ(code([&](ChannelFds& f) {
              UniqueFd m(::memfd_create("unsealed", MFD_CLOEXEC));
              ASSERT_EQ(::ftruncate(m.get(), static_cast<off_t>(a->region().size())), 0);
              f.memfd = std::move(m);
            }),
            EPERM);
  EXPECT_EQ(code([&](ChannelFds& f) {
              UniqueFd m(::memfd_create("zeros", MFD_CLOEXEC | MFD_ALLOW_SEALING));
              ASSERT_EQ(::ftruncate(m.get(), static_cast<off_t>(a->region().size())), 0);
              ASSERT_EQ(::fcntl(m.get(), F_ADD_SEALS, F_SEAL_SHRINK), 0);
              f.memfd = std::move(m);
            }),
            EPROTO);
  abi::RegionHeader* h = a->region().header();
  const abi::RegionHeader saved = *h;
  auto patched = [&](auto patch) {
    patch(h);
    const int c = code([](ChannelFds&) {});
    *h = saved;
    return c;
  };
  EXPECT_EQ(patched([](abi::RegionHeader* x) { x->magic ^= 1; }), EPROTO);
  EXPECT_EQ(patched([](abi::RegionHeader* x) { x->version = 2; }), EPROTONOSUPPORT);
  EXPECT_EQ(patched([](abi::RegionHeader* x) { x->slot_count = 128; }), EBADMSG);
  EXPECT_EQ(patched([](abi::RegionHeader* x) { x->side_state[0] = 7; }), EBADMSG);
  // A refused take-over writes nothing (here: the pid stays our mark).
  h->pid[0] = 4242;
  h->side_state[0] = 9;
  EXPECT_EQ(code([](ChannelFds&) {}), EBADMSG);
  EXPECT_EQ(h->pid[0], 4242);
  *h = saved;
  EXPECT_EQ(code([](ChannelFds&) {}), 0);
}

TEST(TakeOver, UnattachedSideBBehavesLikeAttach) {
  auto a = Channel::create(kCfg);
  ASSERT_TRUE(a);
  auto fds = a->export_fds();
  ASSERT_TRUE(fds);
  auto spare = *a->export_fds();
  EXPECT_EQ(a->region().header()->side_state[1], abi::kSideUnattached);
  auto b = Channel::take_over(std::move(*fds), 1);
  ASSERT_TRUE(b) << b.error().what();
  EXPECT_EQ(a->region().header()->side_state[1], abi::kSideAttached);
  EXPECT_EQ(a->peer_pid(), ::getpid());
  // Now taken: attach refuses like for any attached side.
  auto again = Channel::attach(std::move(spare));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), EBUSY);
  std::uint64_t sent = 0, got = 0;
  pump(*a, *b, &sent, &got, 50);
  drain(*b, &got, 50);
  sent = got = 0;
  pump(*b, *a, &sent, &got, 50);
  drain(*a, &got, 50);
  // Closing b marks side B closed for good.
  b->close();
  EXPECT_TRUE(a->peer_closed());
}

// ---- corrupt shared memory -------------------------------------------------

TEST(TakeOver, ImpossibleTailsAreRefusedWithoutWriting) {
  auto a = Channel::create(kCfg);
  ASSERT_TRUE(a);
  auto fb = a->export_fds();
  ASSERT_TRUE(fb);
  auto b = Channel::attach(std::move(*fb));
  ASSERT_TRUE(b);
  std::uint64_t sent = 0, got = 0;
  pump(*a, *b, &sent, &got, 100);
  drain(*b, &got, 100);  // head == tail now
  auto fds_a = *a->export_fds();
  a->detach();
  Region& r = b->region();
  abi::ConsumerLine& out = r.ring(abi::kDirAtoB).control->consumer;
  abi::ConsumerLine& in = r.ring(abi::kDirBtoA).control->consumer;
  const std::uint64_t tail = out.tail;
  auto try_with = [&](std::uint64_t* word, std::uint64_t v) {
    const std::uint64_t keep = *word;
    *word = v;
    auto fds = *b->export_fds();  // same region, fresh descriptors
    auto c = Channel::take_over(std::move(fds), 0);
    *word = keep;
    return c ? 0 : c.error().code();
  };
  r.header()->pid[0] = 4242;
  const std::vector<std::byte> marked(r.base(), r.base() + r.size());
  EXPECT_EQ(try_with(&out.tail, tail + 3), EBADMSG);          // ahead of the head
  EXPECT_EQ(try_with(&out.tail, tail + 1000003), EBADMSG);    // nowhere near
  EXPECT_EQ(try_with(&out.tail, ~0ull), EBADMSG);
  // (A tail moved *back* onto published slots looks like an honest "not yet
  // consumed" state; that only replays the peer's own input to it.)
  EXPECT_EQ(try_with(&in.tail, 77777), EBADMSG);              // our own incoming tail
  // Nothing was written by the refusals (byte-identical region).
  EXPECT_EQ(std::memcmp(marked.data(), r.base(), r.size()), 0);
  auto na = Channel::take_over(std::move(fds_a), 0);
  ASSERT_TRUE(na) << na.error().what();
  pump(*na, *b, &sent, &got, 200);
  drain(*b, &got, 200);
}

// Garbage that reads "published" beyond the old head: the walk treats it the
// way the consumer will (skip one slot each), so the peer counts it and then
// receives the new owner's messages in order.
TEST(TakeOver, PublishedLookingGarbageIsSkippedConsistently) {
  auto a = Channel::create(kCfg);
  ASSERT_TRUE(a);
  auto fb = a->export_fds();
  ASSERT_TRUE(fb);
  auto b = Channel::attach(std::move(*fb));
  ASSERT_TRUE(b);
  std::uint64_t sent = 0, got = 0;
  pump(*a, *b, &sent, &got, 70);
  drain(*b, &got, 70);
  auto fds_a = *a->export_fds();
  a->detach();
  RingView v = b->region().ring(abi::kDirAtoB);
  const std::uint64_t head = v.control->consumer.tail;
  for (std::uint64_t p = head; p < head + 3; ++p) {
    std::byte* s = v.slots + (p % v.slot_count) * abi::kSlotSize;
    const std::uint32_t seq = static_cast<std::uint32_t>(p + 1);
    std::memcpy(s, &seq, 4);
    std::memset(s + 4, 0xff, 4);  // flags with the continuation bit, nslots 255
  }
  auto na = Channel::take_over(std::move(fds_a), 0);
  ASSERT_TRUE(na) << na.error().what();
  for (std::uint64_t i = 0; i < 5; ++i) ASSERT_TRUE(send_one(*na, 70 + i));
  InMessage m;
  int bad = 0;
  while (got < 75) {
    Status s = b->try_receive(m);
    if (s.code() == EBADMSG) {
      ++bad;
      ASSERT_LE(bad, 3);
      continue;
    }
    ASSERT_EQ(s.code(), 0);
    expect_msg(m, got++);
  }
  EXPECT_EQ(bad, 3);
  EXPECT_EQ(b->rx_stats().corrupt_slots, 3u);
}

// Random scribbles over slots, nslots, seqs and indices: take_over either
// refuses with EBADMSG or yields a channel that works within bounds; it never
// crashes or loops (the walk is bounded by slot_count).
TEST(TakeOver, RandomCorruptionNeverCrashesOrHangs) {
  std::uint64_t rng = 0x7a4e;
  int refused = 0, taken = 0;
  const int rounds = static_cast<int>(test::kSanitized ? 60 : 300);
  for (int round = 0; round < rounds; ++round) {
    auto a = Channel::create(kCfg);
    ASSERT_TRUE(a);
    auto b = Channel::attach(*a->export_fds());
    ASSERT_TRUE(b);
    std::uint64_t sent = 0, got = 0;
    pump(*a, *b, &sent, &got, 20 + test::splitmix(rng) % 80);
    InMessage m;
    for (std::uint64_t k = test::splitmix(rng) % 8; k > 0 && got < sent; --k) {
      ASSERT_TRUE(b->try_receive(m));
      expect_msg(m, got++);
    }
    auto fds_a = *a->export_fds();
    a->detach();
    RingView v = b->region().ring(abi::kDirAtoB);
    const std::uint64_t tail = v.control->consumer.tail;
    for (int k = 1 + static_cast<int>(test::splitmix(rng) % 6); k > 0; --k) {
      const std::uint64_t x = test::splitmix(rng);
      const std::uint64_t p = tail + (x >> 8) % (2 * v.slot_count);
      std::byte* s = v.slots + (p % v.slot_count) * abi::kSlotSize;
      switch (x % 5) {
        case 0: {  // a "published" seq at a random position
          const auto seq = static_cast<std::uint32_t>(p + 1);
          std::memcpy(s, &seq, 4);
          break;
        }
        case 1: s[7] = static_cast<std::byte>(x >> 40); break;  // nslots
        case 2: s[6] = static_cast<std::byte>(x >> 40); break;  // flags
        case 3: {
          const auto seq = static_cast<std::uint32_t>(x >> 16);
          std::memcpy(s, &seq, 4);
          break;
        }
        default: v.control->consumer.bulk_tail += (x >> 20) % 8192; break;
      }
    }
    auto na = Channel::take_over(std::move(fds_a), 0);
    if (!na) {
      EXPECT_EQ(na.error().code(), EBADMSG);
      ++refused;
      continue;
    }
    ++taken;
    for (std::uint64_t i = 0; i < 30; ++i) {
      (void)send_one(*na, 500 + i);
      for (int k = 0; k < 4; ++k) {
        if (b->try_receive(m)) {
          EXPECT_LE(m.payload.size(), kCfg.bulk_size);
        }
      }
    }
  }
  EXPECT_EQ(refused + taken, rounds);
  EXPECT_GT(taken, 0);
}

// ---- the host-restart scenario across processes ---------------------------

Status send_blocking(Channel& c, std::uint64_t i, std::size_t len) {
  std::vector<std::byte> buf(len);
  fill_pattern(buf.data(), len, i);
  return c.send(kType, buf, 20s, MessageKind::kOneWay, static_cast<std::uint32_t>(i))
             ? kOk
             : Status(ETIMEDOUT);
}

int pidfd_getfd_from(pid_t pid, int fd) {
  const int pfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pfd < 0) return -1;
  const int got = static_cast<int>(::syscall(SYS_pidfd_getfd, pfd, fd, 0));
  ::close(pfd);
  return got;
}

// An instance (side B) keeps running; the daemon (side A) is SIGKILLed with a
// batch half written and replies unread; the restarted daemon recovers the
// fds from the instance (pidfd_getfd, or its own dup when ptrace rules forbid
// it) and continues: the instance sees every message exactly once, in order,
// and the new daemon gets exactly the replies the old one had not read.
TEST(TakeOver, RestartedDaemonContinuesWithARunningInstance) {
  constexpr std::uint64_t kBefore = 100, kReadByOld = 50, kTotal = 260;
  ChannelOptions batched;
  batched.batch = 4;
  auto a = Channel::create(kCfg, batched);
  ASSERT_TRUE(a);
  auto fds_b = a->export_fds();
  auto fds_spare = a->export_fds();
  ASSERT_TRUE(fds_b && fds_spare);
  const int b_fds[3] = {fds_b->memfd.get(), fds_b->eventfd[0].get(), fds_b->eventfd[1].get()};
  const pid_t daemon_pid = ::getpid();

  const pid_t instance = test::fork_child([&]() -> int {
    auto b = Channel::attach(std::move(*fds_b));
    if (!b) return 10;
    InMessage m;
    std::uint64_t expected = 0;
    for (;;) {
      if (!b->receive(m, 20s)) return 11;
      if (m.type == kStop) break;
      if (!is_msg(m, expected, len_of(expected))) return 12;
      if (!send_blocking(*b, expected, 8)) return 13;
      ++expected;
    }
    if (expected != kTotal) return 14;
    if (b->peer_pid() != daemon_pid) return 15;  // the restarted daemon
    b->close();
    return 0;
  });
  ASSERT_GT(instance, 0);

  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  const pid_t old_daemon = test::fork_child([&]() -> int {
    const auto deadline = Clock::now() + 20s;
    InMessage m;
    std::uint64_t sent = 0, replies = 0;
    while (sent < kBefore) {
      Status s = send_one(*a, sent);
      if (s) {
        ++sent;
        continue;
      }
      if (!s.again() || Clock::now() > deadline) return 20;
      if (replies < kReadByOld && a->try_receive(m)) {
        if (m.corr != replies) return 21;
        ++replies;
      }
    }
    a->flush();
    while (replies < kReadByOld) {
      if (!a->receive(m, 20s) || m.corr != replies) return 22;
      ++replies;
    }
    // A batch that will never be published (its second member's seq is set).
    if (!send_one(*a, 0xdead0, 8) || !send_one(*a, 0xdead1, 8)) return 23;
    if (::write(pipefd[1], &replies, sizeof replies) != sizeof replies) return 24;
    for (;;) ::pause();
  });
  ASSERT_GT(old_daemon, 0);
  ::close(pipefd[1]);
  a->detach();  // our copy of the old daemon's side
  fds_b->memfd.reset();
  fds_b->eventfd[0].reset();
  fds_b->eventfd[1].reset();

  std::uint64_t read_by_old = 0;
  ASSERT_EQ(::read(pipefd[0], &read_by_old, sizeof read_by_old),
            static_cast<ssize_t>(sizeof read_by_old));
  ::close(pipefd[0]);
  ASSERT_EQ(read_by_old, kReadByOld);
  ASSERT_EQ(::kill(old_daemon, SIGKILL), 0);
  ASSERT_EQ(test::wait_child(old_daemon), 128 + SIGKILL);

  // "Restart": recover the fds from the running instance.
  ChannelFds fds;
  const int m0 = pidfd_getfd_from(instance, b_fds[0]);
  if (m0 >= 0) {
    fds.memfd.reset(m0);
    fds.eventfd[0].reset(pidfd_getfd_from(instance, b_fds[1]));
    fds.eventfd[1].reset(pidfd_getfd_from(instance, b_fds[2]));
  } else {
    fds = std::move(*fds_spare);  // ptrace rules forbid pidfd_getfd here
  }
  auto na = Channel::take_over(std::move(fds), 0, batched);
  ASSERT_TRUE(na) << na.error().what();

  const auto deadline = Clock::now() + 30s;
  InMessage m;
  std::uint64_t sent = kBefore, replies = kReadByOld;
  while (sent < kTotal) {
    Status s = send_one(*na, sent);
    if (s) {
      ++sent;
      continue;
    }
    ASSERT_EQ(s.code(), EAGAIN);
    ASSERT_LT(Clock::now(), deadline);
    if (na->try_receive(m)) {
      ASSERT_EQ(m.corr, replies);
      ASSERT_TRUE(is_msg(m, replies, 8));
      ++replies;
    }
  }
  ASSERT_TRUE(na->send(kStop, {}, 20s));
  na->flush();  // batch 4: the tail of the last batch
  while (replies < kTotal) {
    ASSERT_TRUE(na->receive(m, 20s)) << "reply " << replies;
    ASSERT_EQ(m.corr, replies);
    ASSERT_TRUE(is_msg(m, replies, 8));
    ++replies;
  }
  EXPECT_EQ(test::wait_child(instance), 0);
  EXPECT_TRUE(na->peer_closed());
  EXPECT_EQ(na->rx_stats().errors(), 0u);
}

}  // namespace
}  // namespace mk::ipi
