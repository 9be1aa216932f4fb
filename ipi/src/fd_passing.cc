// SCM_RIGHTS helpers: see ipi/fd_passing.h.
#include "ipi/fd_passing.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdint>
#include <cstring>

namespace mk::ipi {

namespace {

constexpr std::uint64_t kChannelFrameMagic = 0x6e6168435049504dULL;  // "MPIPChan"

struct ChannelFrame {
  std::uint64_t magic;
  std::uint32_t nfds;
  std::uint32_t version;
};

}  // namespace

Result<void> send_fds(int sock, std::span<const int> fds, std::span<const std::byte> data) {
  if (fds.size() > kMaxFds) return MK_FAIL(EINVAL, "too many fds", "%zu > %zu", fds.size(), kMaxFds);
  if (data.size() > 4096) return fail(EMSGSIZE, "fd-passing frame too large");
  std::byte dummy{0};
  iovec iov{};
  iov.iov_base = data.empty() ? &dummy : const_cast<std::byte*>(data.data());
  iov.iov_len = data.empty() ? 1 : data.size();
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (!fds.empty()) {
    msg.msg_control = ctrl;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno_error("sendmsg with SCM_RIGHTS");
  return ok();
}

Result<RecvFdsResult> recv_fds(int sock, std::span<UniqueFd> out_fds, std::span<std::byte> data) {
  std::byte dummy{0};
  iovec iov{};
  iov.iov_base = data.empty() ? &dummy : data.data();
  iov.iov_len = data.empty() ? 1 : data.size();
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctrl;
  msg.msg_controllen = sizeof ctrl;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno_error("recvmsg with SCM_RIGHTS");

  // Take ownership of everything that arrived before judging the frame, so
  // no descriptor leaks on any error path.
  UniqueFd got[kMaxFds];
  std::size_t nfds = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < k && nfds < kMaxFds; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      got[nfds++].reset(fd);
    }
  }
  if (n == 0) return fail(ECONNRESET, "fd-passing peer closed the socket");
  if (msg.msg_flags & MSG_CTRUNC) {
    return fail(EMSGSIZE, "fd-passing control data truncated (too many descriptors sent)");
  }
  if (nfds > out_fds.size()) {
    return MK_FAIL(EBADMSG, "unexpected descriptors", "received %zu, room for %zu", nfds, out_fds.size());
  }
  for (std::size_t i = 0; i < nfds; ++i) out_fds[i] = std::move(got[i]);
  return RecvFdsResult{nfds, data.empty() ? 0 : static_cast<std::size_t>(n)};
}

Result<void> send_channel(int sock, const Channel& ch) {
  const RegionFds f = ch.region().fds();
  const int fds[3] = {f.memfd, f.eventfd[0], f.eventfd[1]};
  const ChannelFrame frame{kChannelFrameMagic, 3, abi::kVersion};
  return send_fds(sock, fds, std::as_bytes(std::span<const ChannelFrame, 1>(&frame, 1)));
}

Result<ChannelFds> recv_channel(int sock) {
  UniqueFd fds[3];
  ChannelFrame frame{};
  MK_TRY_ASSIGN(RecvFdsResult r,
                recv_fds(sock, fds, std::as_writable_bytes(std::span<ChannelFrame, 1>(&frame, 1))));
  if (r.nbytes != sizeof frame || frame.magic != kChannelFrameMagic) {
    return fail(EBADMSG, "not an ipi channel hand-off frame");
  }
  if (frame.nfds != 3 || r.nfds != 3) {
    return MK_FAIL(EBADMSG, "ipi channel hand-off lost descriptors", "frame announces %u, received %zu",
                   frame.nfds, r.nfds);
  }
  ChannelFds out;
  out.memfd = std::move(fds[0]);
  out.eventfd[0] = std::move(fds[1]);
  out.eventfd[1] = std::move(fds[2]);
  return out;
}

}  // namespace mk::ipi
