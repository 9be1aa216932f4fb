// Fuzzes what a successor image reads at a live update (kernel/image/
// handoff_package.cc); the first input byte picks the part:
//   even: mk::image::read_handoff_package — the package memfd (its bytes are
//         the rest of the input), with the fd count and update id kMsgHandover
//         announces taken from the header when there is one. Invariants: a
//         refusal is EBADMSG/EPROTO with a detail; an accepted package is
//         exactly handoff_size(fd_count, blob_bytes) bytes, of the update and
//         fd count announced, with a blob of 1..kMaxHandoffBlobBytes equal to
//         the package's tail; and differentially: whatever the host's own
//         check (mk::parse_handoff_package, mkernel/src/handoff_package.cc)
//         accepts, the image accepts with the same header, fds and blob.
//   odd:  mk::image::receive_handoff — the messages on the handover socket:
//         the input is a sequence of [fds 0..3][length 0..31][bytes], each
//         sent as one SOCK_SEQPACKET message with that many fds (of
//         /dev/null); then the host end closes. Invariants: no fd received
//         is leaked on any path (the process's open fds are the same after
//         the call and the result's destruction); a success holds a package
//         fd and exactly the announced number of fds; errors are
//         EPROTO/ECONNRESET/ETIMEDOUT.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <dirent.h>
#include <span>

#include "fuzz_check.h"
#include "handoff_package.h"
#include "mkernel/handoff_package.h"

namespace {

int open_fds() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  MK_FUZZ_CHECK(d != nullptr, "opendir /proc/self/fd: errno %d", errno);
  while (::readdir(d)) ++n;
  ::closedir(d);
  return n;
}

void package(const uint8_t* data, size_t size) {
  static const int memfd = ::memfd_create("fuzz-handoff", MFD_CLOEXEC);
  MK_FUZZ_CHECK(memfd >= 0, "memfd_create: errno %d", errno);
  MK_FUZZ_CHECK(::ftruncate(memfd, 0) == 0 && (size == 0 || ::pwrite(memfd, data, size, 0) == (ssize_t)size),
                "writing the memfd");
  uint32_t want_fds = 0, want_id = 7;
  if (size >= sizeof(mk::abi::HandoffHeader)) {
    mk::abi::HandoffHeader h;
    std::memcpy(&h, data, sizeof h);
    want_fds = h.fd_count;
    want_id = h.update_id;
  }
  auto r = mk::image::read_handoff_package(memfd, want_fds, want_id);
  auto host = mk::parse_handoff_package(std::span<const uint8_t>(data, size), want_id);
  if (!r) {
    const int c = r.error().code();
    MK_FUZZ_CHECK(c == EBADMSG || c == EPROTO, "code %d: %s", c, r.error().to_string().c_str());
    MK_FUZZ_CHECK(r.error().detail()[0] != '\0', "empty detail");
    MK_FUZZ_CHECK(!host, "the host accepts a package the image refuses: %s", r.error().to_string().c_str());
    return;
  }
  const mk::abi::HandoffHeader& h = r->header;
  MK_FUZZ_CHECK(h.update_id == want_id && h.fd_count == want_fds, "accepted another update's package");
  MK_FUZZ_CHECK(size == mk::abi::handoff_size(h.fd_count, h.blob_bytes), "accepted a package of the wrong size");
  MK_FUZZ_CHECK(r->source_fds.size() == h.fd_count, "fd count");
  MK_FUZZ_CHECK(h.blob_bytes >= 1 && h.blob_bytes <= mk::abi::kMaxHandoffBlobBytes && r->blob.size() == h.blob_bytes,
                "blob size");
  const size_t off = mk::abi::handoff_blob_offset(h.fd_count);
  MK_FUZZ_CHECK(std::memcmp(r->blob.data(), data + off, r->blob.size()) == 0, "blob is not the package's tail");
  if (host) {
    MK_FUZZ_CHECK(std::memcmp(&host->header, &h, sizeof h) == 0, "host and image read different headers");
    MK_FUZZ_CHECK(host->source_fds == r->source_fds, "host and image read different fds");
    const auto hb = host->blob();
    MK_FUZZ_CHECK(hb.size() == r->blob.size() && std::memcmp(hb.data(), r->blob.data(), hb.size()) == 0,
                  "host and image read different blobs");
  }
}

void socket_messages(const uint8_t* data, size_t size) {
  static const int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  MK_FUZZ_CHECK(devnull >= 0, "open /dev/null");
  if (size < 1) return;
  const uint32_t announced = data[0] % 5 == 4 ? 251 : data[0] % 5;  // 251: two chunks
  ++data;
  --size;
  const int before = open_fds();
  {
    int sv[2];
    MK_FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0, "socketpair: errno %d", errno);
    size_t i = 0;
    for (int msgs = 0; i + 2 <= size && msgs < 16; ++msgs) {
      const unsigned nfds = data[i] % 4, len = data[i + 1] % 32;
      i += 2;
      uint8_t buf[32] = {};
      const size_t take = std::min<size_t>(len, size - i);
      std::memcpy(buf, data + i, take);
      i += take;
      iovec iov{buf, len};
      alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 3)] = {};
      msghdr m{};
      m.msg_iov = &iov;
      m.msg_iovlen = 1;
      if (nfds) {
        m.msg_control = cbuf;
        m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        cmsghdr* c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        const int fds[3] = {devnull, devnull, devnull};
        std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
      }
      if (::sendmsg(sv[1], &m, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) break;  // full: stop sending
    }
    ::close(sv[1]);
    auto r = mk::image::receive_handoff(sv[0], announced, std::chrono::milliseconds(0));
    if (r) {
      MK_FUZZ_CHECK(r->package.get() >= 0, "success without a package fd");
      MK_FUZZ_CHECK(r->fds.size() == announced, "%zu fds for %u announced", r->fds.size(), announced);
    } else {
      const int c = r.error().code();
      MK_FUZZ_CHECK(c == EPROTO || c == ECONNRESET || c == ETIMEDOUT, "code %d: %s", c,
                    r.error().to_string().c_str());
    }
    ::close(sv[0]);  // unread messages' fds go with it
  }
  const int after = open_fds();
  MK_FUZZ_CHECK(after == before, "%d fds open before, %d after: receive_handoff leaked", before, after);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  if (data[0] % 2 == 0) {
    package(data + 1, size - 1);
  } else {
    socket_messages(data + 1, size - 1);
  }
  return 0;
}
