// The handoff package: write + seal (old image), receive + validate (successor).
#include "handoff_package.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace mk::image {

namespace {

Result<void> write_all(int fd, const void* data, std::size_t n) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return errno_error("writing the handoff package");
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return {};
}

}  // namespace

Result<handover::OwnedFd> make_package_memfd(std::size_t reserve) {
  handover::OwnedFd fd(::memfd_create("mk-handoff", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid()) return errno_error("memfd_create for the handoff package");
  if (reserve > 0 && ::fallocate(fd.get(), 0, 0, static_cast<off_t>(reserve)) != 0) {
    return errno_error("fallocate of the handoff package");
  }
  return fd;
}

Result<handover::OwnedFd> write_handoff_package(std::uint32_t update_id, std::span<const int> source_fds,
                                                std::span<const std::uint8_t> blob, handover::OwnedFd into) {
  if (source_fds.size() > abi::kMaxHandoffFds) {
    return MK_FAIL(EINVAL, "too many fds to hand over", "%zu fds, the package carries at most %u", source_fds.size(),
                   abi::kMaxHandoffFds);
  }
  if (blob.empty() || blob.size() > abi::kMaxHandoffBlobBytes) {
    return MK_FAIL(EINVAL, "bad handover blob size", "%zu bytes (1..%llu)", blob.size(),
                   static_cast<unsigned long long>(abi::kMaxHandoffBlobBytes));
  }
  handover::OwnedFd fd = std::move(into);
  if (!fd.valid()) {
    MK_TRY_ASSIGN(fd, make_package_memfd(0));
  }
  const auto count = static_cast<std::uint32_t>(source_fds.size());
  abi::HandoffHeader h{};
  std::memcpy(h.magic, abi::kHandoffMagic, sizeof h.magic);
  h.version = abi::kHandoffVersion;
  h.fd_count = count;
  h.blob_bytes = blob.size();
  h.update_id = update_id;
  std::vector<std::uint8_t> head(abi::handoff_blob_offset(count), 0);
  std::memcpy(head.data(), &h, sizeof h);
  for (std::uint32_t i = 0; i < count; ++i) {
    const std::int32_t v = source_fds[i];
    std::memcpy(head.data() + sizeof h + 4 * i, &v, 4);
  }
  MK_TRY(write_all(fd.get(), head.data(), head.size()));
  MK_TRY(write_all(fd.get(), blob.data(), blob.size()));
  // A reserved memfd is longer than the package: its size must be exact.
  if (::ftruncate(fd.get(), static_cast<off_t>(head.size() + blob.size())) != 0) {
    return errno_error("sizing the handoff package");
  }
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return errno_error("sealing the handoff package");
  }
  return fd;
}

namespace {

// One message: the chunk header and up to kHandoffFdsPerMessage fds.
Result<void> recv_chunk(int sock, std::uint32_t want_first, std::uint32_t want_count,
                        std::vector<handover::OwnedFd>* out, std::chrono::milliseconds timeout) {
  pollfd p{sock, POLLIN, 0};
  int pr;
  do {
    pr = ::poll(&p, 1, static_cast<int>(timeout.count()));
  } while (pr < 0 && errno == EINTR);
  if (pr < 0) return errno_error("poll on the handover socket");
  if (pr == 0) {
    return MK_FAIL(ETIMEDOUT, "handoff fds did not arrive",
                   "waited %lld ms for the chunk of fds %u..%u on the handover socket",
                   static_cast<long long>(timeout.count()), want_first, want_first + want_count - 1);
  }
  abi::HandoffChunk chunk{};
  iovec iov{&chunk, sizeof chunk};
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * abi::kHandoffFdsPerMessage)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf;
  msg.msg_controllen = sizeof cbuf;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno_error("recvmsg on the handover socket");
  // Take ownership of whatever arrived first, so every path closes it.
  std::vector<handover::OwnedFd> got;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < k; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      got.emplace_back(fd);
    }
  }
  if (n == 0) return MK_FAIL(ECONNRESET, "handover socket closed", "the host closed it before sending every fd");
  if (msg.msg_flags & MSG_CTRUNC) {
    return MK_FAIL(EPROTO, "handoff fds truncated", "MSG_CTRUNC: more than %u fds in one message (fds %u..)",
                   abi::kHandoffFdsPerMessage, want_first);
  }
  if (static_cast<std::size_t>(n) != sizeof chunk || (msg.msg_flags & MSG_TRUNC)) {
    return MK_FAIL(EPROTO, "bad handoff chunk", "%zd data bytes, expected %zu", n, sizeof chunk);
  }
  if (chunk.first != want_first || chunk.count != want_count || got.size() != want_count) {
    return MK_FAIL(EPROTO, "handoff chunk out of order",
                   "got first %u count %u with %zu fds, expected first %u count %u", chunk.first, chunk.count,
                   got.size(), want_first, want_count);
  }
  for (auto& f : got) out->push_back(std::move(f));
  return {};
}

}  // namespace

Result<ReceivedHandoff> receive_handoff(int sock, std::uint32_t fd_count, std::chrono::milliseconds timeout) {
  if (fd_count > abi::kMaxHandoffFds) {
    return MK_FAIL(EPROTO, "too many handoff fds announced", "%u fds, at most %u", fd_count, abi::kMaxHandoffFds);
  }
  ReceivedHandoff out;
  std::vector<handover::OwnedFd> pkg;
  MK_TRY(recv_chunk(sock, 0, 1, &pkg, timeout));
  out.package = std::move(pkg.front());
  out.fds.reserve(fd_count);
  for (std::uint32_t first = 0; first < fd_count; first += abi::kHandoffFdsPerMessage) {
    const std::uint32_t count = std::min(abi::kHandoffFdsPerMessage, fd_count - first);
    MK_TRY(recv_chunk(sock, first, count, &out.fds, timeout));
  }
  return out;
}

Result<HandoffContents> read_handoff_package(int memfd, std::uint32_t expected_fds, std::uint32_t update_id) {
  struct stat st {};
  if (::fstat(memfd, &st) != 0) return errno_error("fstat of the handoff package");
  auto pread_all = [&](void* dst, std::size_t n, std::uint64_t off) -> Result<void> {
    auto* p = static_cast<std::uint8_t*>(dst);
    std::size_t got = 0;
    while (got < n) {
      ssize_t r = ::pread(memfd, p + got, n - got, static_cast<off_t>(off + got));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return errno_error("reading the handoff package");
      if (r == 0) return MK_FAIL(EBADMSG, "short handoff package", "ends at byte %llu", static_cast<unsigned long long>(off + got));
      got += static_cast<std::size_t>(r);
    }
    return {};
  };
  const auto size = static_cast<std::uint64_t>(st.st_size);
  HandoffContents c;
  if (size < sizeof c.header) {
    return MK_FAIL(EBADMSG, "handoff package too small", "%llu bytes, the header alone is %zu",
                   static_cast<unsigned long long>(size), sizeof c.header);
  }
  MK_TRY(pread_all(&c.header, sizeof c.header, 0));
  const abi::HandoffHeader& h = c.header;
  if (std::memcmp(h.magic, abi::kHandoffMagic, sizeof h.magic) != 0) {
    return MK_FAIL(EBADMSG, "not a handoff package", "bad magic (expected \"mkhoff1\")");
  }
  if (h.version != abi::kHandoffVersion) {
    return MK_FAIL(EBADMSG, "handoff package version", "version %u, this image reads %u", h.version,
                   abi::kHandoffVersion);
  }
  if (h.reserved != 0 || h.fd_count > abi::kMaxHandoffFds || h.blob_bytes == 0 ||
      h.blob_bytes > abi::kMaxHandoffBlobBytes) {
    return MK_FAIL(EBADMSG, "bad handoff package header", "fd_count %u blob_bytes %llu reserved %u", h.fd_count,
                   static_cast<unsigned long long>(h.blob_bytes), h.reserved);
  }
  if (h.update_id != update_id) {
    return MK_FAIL(EBADMSG, "handoff package of another update", "written for update %u, this is update %u",
                   h.update_id, update_id);
  }
  if (h.fd_count != expected_fds) {
    return MK_FAIL(EPROTO, "handoff fd count mismatch", "the package lists %u fds, kMsgHandover announced %u",
                   h.fd_count, expected_fds);
  }
  if (size != abi::handoff_size(h.fd_count, h.blob_bytes)) {
    return MK_FAIL(EBADMSG, "handoff package size", "%llu bytes, header says %llu",
                   static_cast<unsigned long long>(size),
                   static_cast<unsigned long long>(abi::handoff_size(h.fd_count, h.blob_bytes)));
  }
  c.source_fds.resize(h.fd_count);
  if (h.fd_count) {
    MK_TRY(pread_all(c.source_fds.data(), 4ull * h.fd_count, sizeof h));
  }
  c.blob.resize(h.blob_bytes);
  MK_TRY(pread_all(c.blob.data(), c.blob.size(), abi::handoff_blob_offset(h.fd_count)));
  return c;
}

}  // namespace mk::image
