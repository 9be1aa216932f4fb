// The handoff package on the host's side: check, read, corrupt (fault
// injection), send (see mkernel/handoff_package.h).
#include "mkernel/handoff_package.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "ipi/fd_passing.h"

namespace mk {

namespace {

// Written once at start, read by updates (the same thread in mkerneld).
std::atomic<uint32_t> g_max_fds{abi::kMaxHandoffFds};
std::atomic<uint64_t> g_max_blob{abi::kMaxHandoffBlobBytes};
std::atomic<const char*> g_raise_fds{nullptr};
std::atomic<const char*> g_raise_blob{nullptr};

}  // namespace

Result<void> set_handoff_limits(const HandoffLimits& l) {
  if (l.max_fds > abi::kMaxHandoffFds)
    return MK_FAIL(EINVAL, "bad handoff limit", "%u fds, the ABI allows at most %u", l.max_fds, abi::kMaxHandoffFds);
  if (l.max_blob_bytes == 0 || l.max_blob_bytes > abi::kMaxHandoffBlobBytes)
    return MK_FAIL(EINVAL, "bad handoff limit", "blob of %llu bytes, the ABI allows 1..%llu",
                   static_cast<unsigned long long>(l.max_blob_bytes),
                   static_cast<unsigned long long>(abi::kMaxHandoffBlobBytes));
  g_max_fds = l.max_fds;
  g_max_blob = l.max_blob_bytes;
  g_raise_fds = l.raise_fds;
  g_raise_blob = l.raise_blob;
  return ok();
}

HandoffLimits handoff_limits() { return {g_max_fds.load(), g_max_blob.load(), g_raise_fds.load(), g_raise_blob.load()}; }

std::span<const uint8_t> HandoffPackage::blob() const {
  const uint64_t off = abi::handoff_blob_offset(header.fd_count);
  return std::span<const uint8_t>(bytes).subspan(off, header.blob_bytes);
}

Result<HandoffPackage> parse_handoff_package(std::span<const uint8_t> bytes, uint32_t update_id) {
  HandoffPackage p;
  if (bytes.size() < sizeof(abi::HandoffHeader)) {
    return MK_FAIL(EBADMSG, "bad handoff package", "%zu bytes, shorter than its %zu-byte header", bytes.size(),
                   sizeof(abi::HandoffHeader));
  }
  std::memcpy(&p.header, bytes.data(), sizeof p.header);
  const abi::HandoffHeader& h = p.header;
  if (std::memcmp(h.magic, abi::kHandoffMagic, sizeof h.magic) != 0)
    return MK_FAIL(EBADMSG, "bad handoff package", "bad magic (expected \"mkhoff1\")");
  if (h.version != abi::kHandoffVersion)
    return MK_FAIL(EPROTONOSUPPORT, "bad handoff package", "version %u, this host speaks %u", h.version,
                   abi::kHandoffVersion);
  if (h.reserved != 0) return MK_FAIL(EBADMSG, "bad handoff package", "reserved field is %u, expected 0", h.reserved);
  if (h.fd_count > abi::kMaxHandoffFds)
    return MK_FAIL(E2BIG, "bad handoff package", "%u fds, at most %u", h.fd_count, abi::kMaxHandoffFds);
  if (h.blob_bytes == 0) return MK_FAIL(EBADMSG, "bad handoff package", "empty handover blob");
  if (h.blob_bytes > abi::kMaxHandoffBlobBytes)
    return MK_FAIL(E2BIG, "bad handoff package", "blob of %llu bytes, at most %llu",
                   static_cast<unsigned long long>(h.blob_bytes),
                   static_cast<unsigned long long>(abi::kMaxHandoffBlobBytes));
  const HandoffLimits lim = handoff_limits();
  if (h.fd_count > lim.max_fds)
    return MK_FAIL(E2BIG, "handoff package over a limit", "%u preserved fds, the limit is %u (raise it: %s)",
                   h.fd_count, lim.max_fds, lim.raise_fds ? lim.raise_fds : "it is the ABI's maximum");
  if (h.blob_bytes > lim.max_blob_bytes)
    return MK_FAIL(E2BIG, "handoff package over a limit", "handover blob of %llu bytes, the limit is %llu (raise it: %s)",
                   static_cast<unsigned long long>(h.blob_bytes), static_cast<unsigned long long>(lim.max_blob_bytes),
                   lim.raise_blob ? lim.raise_blob : "it is the ABI's maximum");
  const uint64_t want = abi::handoff_size(h.fd_count, h.blob_bytes);
  if (bytes.size() != want)
    return MK_FAIL(EBADMSG, "bad handoff package", "%zu bytes, the header says %llu (%u fds, %llu-byte blob)",
                   bytes.size(), static_cast<unsigned long long>(want), h.fd_count,
                   static_cast<unsigned long long>(h.blob_bytes));
  if (h.update_id != update_id)
    return MK_FAIL(EBADMSG, "bad handoff package", "written for update %u, this is update %u", h.update_id,
                   update_id);
  p.source_fds.resize(h.fd_count);
  if (h.fd_count) std::memcpy(p.source_fds.data(), bytes.data() + sizeof h, 4 * std::size_t{h.fd_count});
  for (std::size_t i = 0; i < p.source_fds.size(); ++i) {
    if (p.source_fds[i] < 0 || p.source_fds[i] > 65535)
      return MK_FAIL(EBADMSG, "bad handoff package", "fd %zu is number %d, expected 0..65535", i, p.source_fds[i]);
  }
  p.bytes.assign(bytes.begin(), bytes.end());
  return p;
}

Result<HandoffPackage> read_handoff_package(int memfd, uint32_t update_id) {
  struct stat st{};
  if (::fstat(memfd, &st) != 0) return errno_error("fstat of the handoff package");
  const uint64_t cap = abi::handoff_size(abi::kMaxHandoffFds, abi::kMaxHandoffBlobBytes);
  if (st.st_size < 0 || static_cast<uint64_t>(st.st_size) > cap)
    return MK_FAIL(E2BIG, "bad handoff package", "%lld bytes, at most %llu", static_cast<long long>(st.st_size),
                   static_cast<unsigned long long>(cap));
  std::vector<uint8_t> buf(static_cast<std::size_t>(st.st_size));
  std::size_t off = 0;
  while (off < buf.size()) {
    ssize_t n = ::pread(memfd, buf.data() + off, buf.size() - off, static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("reading the handoff package");
    if (n == 0) break;  // shrunk under us: the size check below says so
    off += static_cast<std::size_t>(n);
  }
  buf.resize(off);
  return parse_handoff_package(buf, update_id);
}

Result<OwnedFd> corrupted_package_copy(const HandoffPackage& pkg) {
  std::vector<uint8_t> bytes = pkg.bytes;
  const uint64_t off = abi::handoff_blob_offset(pkg.header.fd_count);
  for (uint64_t i = 0; i < 8 && off + i < bytes.size(); ++i) bytes[off + i] ^= 0xff;
  int fd = ::memfd_create("mk-handoff-corrupt", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return errno_error("memfd_create for the corrupted package");
  OwnedFd owned(fd);
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("writing the corrupted package");
    done += static_cast<std::size_t>(n);
  }
  if (::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
    return errno_error("sealing the corrupted package");
  return owned;
}

namespace {

Result<void> send_chunk(int sock, uint32_t first, std::span<const int> fds) {
  const abi::HandoffChunk chunk{first, static_cast<uint32_t>(fds.size())};
  auto r = ipi::send_fds(sock, fds, std::as_bytes(std::span<const abi::HandoffChunk, 1>(&chunk, 1)));
  if (!r) {
    return Error(r.error().code(), "cannot send on the handover socket")
        .set_detail("fds %u..%zu: %s", first, first + fds.size() - 1, r.error().to_string().c_str());
  }
  return ok();
}

}  // namespace

Result<void> send_handoff(int sock, int package_fd, std::span<const int> fds) {
  if (fds.size() > abi::kMaxHandoffFds)
    return MK_FAIL(EINVAL, "too many fds to hand over", "%zu, at most %u", fds.size(), abi::kMaxHandoffFds);
  // Message 0: {first 0, count 1} and the package memfd.
  MK_TRY(send_chunk(sock, 0, std::span<const int>(&package_fd, 1)));
  for (std::size_t first = 0; first < fds.size(); first += abi::kHandoffFdsPerMessage) {
    const std::size_t n = std::min<std::size_t>(abi::kHandoffFdsPerMessage, fds.size() - first);
    MK_TRY(send_chunk(sock, static_cast<uint32_t>(first), fds.subspan(first, n)));
  }
  return ok();
}

}  // namespace mk
