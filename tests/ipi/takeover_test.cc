// Channel::take_over / detach: a side changes hands (hand-over, or a restart
// after its owner died) and both rings continue exactly where they were; every
// refusal path; the host-restart scenario across processes. Corrupt shared
// memory: takeover_corrupt_test.cc.
#include "takeover_util.h"

namespace mk::ipi {
namespace {

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
