// Shared by the Channel::take_over tests (takeover_test.cc,
// takeover_corrupt_test.cc): the message pattern both sides check, and the
// single-threaded pump/drain that moves it through a channel pair.
#pragma once

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
inline std::size_t len_of(std::uint64_t i) {
  static constexpr std::size_t kLens[] = {8, 200, 700, 0, 3000, 48, 49, 1784, 5000};
  return kLens[i % (sizeof kLens / sizeof kLens[0])];
}

inline Status send_one(Channel& c, std::uint64_t i, std::size_t len) {
  std::vector<std::byte> buf(len);
  fill_pattern(buf.data(), len, i);
  return c.try_send(kType, buf, MessageKind::kOneWay, static_cast<std::uint32_t>(i));
}
inline Status send_one(Channel& c, std::uint64_t i) { return send_one(c, i, len_of(i)); }

// True (and no gtest failure) when m is message i, intact.
inline bool is_msg(const InMessage& m, std::uint64_t i, std::size_t len) {
  return m.type == kType && m.corr == static_cast<std::uint32_t>(i) && m.payload.size() == len &&
         m.by_ref == (len > abi::kMaxSpanPayload) && check_pattern(m.payload.data(), len, i);
}

inline void expect_msg(const InMessage& m, std::uint64_t i) {
  EXPECT_EQ(m.corr, static_cast<std::uint32_t>(i));
  EXPECT_TRUE(is_msg(m, i, len_of(i))) << "message " << i << " (corr " << m.corr << ", "
                                       << m.payload.size() << " bytes)";
}

// Sends [*sent, until) from tx; whenever tx is full, rx takes one and checks
// it is *got. Single thread; the rings never deadlock (flushed before reading).
inline void pump(Channel& tx, Channel& rx, std::uint64_t* sent, std::uint64_t* got, std::uint64_t until) {
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

inline void drain(Channel& rx, std::uint64_t* got, std::uint64_t until) {
  InMessage m;
  while (*got < until) {
    ASSERT_EQ(rx.try_receive(m).code(), 0) << "missing message " << *got;
    expect_msg(m, (*got)++);
  }
  EXPECT_EQ(rx.try_receive(m).code(), EAGAIN);
}


}  // namespace
}  // namespace mk::ipi
