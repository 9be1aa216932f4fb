// Fuzzes mk::parse_handoff_package, the host's check of the handoff package
// an outgoing image wrote (mk/abi/handoff.h; the old image is not trusted).
// Invariants: failures carry a documented errno and a detail; anything
// accepted is exactly handoff_size(fd_count, blob_bytes) bytes, lists
// fd_count fds in 0..65535, names the update asked for, and its blob() lies
// inside the package at handoff_blob_offset().
#include <cstdint>
#include <cstring>
#include <span>

#include "fuzz_check.h"
#include "mk/abi/handoff.h"
#include "mkernel/live_update.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The update id the host expects: the header's own when there is one (so
  // accepting paths are reachable), else an arbitrary value.
  uint32_t want = 7;
  if (size >= sizeof(mk::abi::HandoffHeader)) std::memcpy(&want, data + 24, sizeof want);
  auto r = mk::parse_handoff_package(std::span<const uint8_t>(data, size), want);
  if (!r) {
    int c = r.error().code();
    MK_FUZZ_CHECK(c == EBADMSG || c == EPROTONOSUPPORT || c == E2BIG, "code %d: %s", c,
                  r.error().to_string().c_str());
    MK_FUZZ_CHECK(r.error().detail()[0] != '\0', "empty detail");
    return 0;
  }
  const mk::abi::HandoffHeader& h = r->header;
  MK_FUZZ_CHECK(h.update_id == want, "accepted another update's package");
  MK_FUZZ_CHECK(size == mk::abi::handoff_size(h.fd_count, h.blob_bytes), "accepted a package of the wrong size");
  MK_FUZZ_CHECK(r->source_fds.size() == h.fd_count, "fd count mismatch");
  for (int32_t fd : r->source_fds) MK_FUZZ_CHECK(fd >= 0 && fd <= 65535, "fd %d out of range", fd);
  const auto blob = r->blob();
  MK_FUZZ_CHECK(blob.size() == h.blob_bytes && h.blob_bytes >= 1 && h.blob_bytes <= mk::abi::kMaxHandoffBlobBytes,
                "blob size");
  MK_FUZZ_CHECK(blob.data() == r->bytes.data() + mk::abi::handoff_blob_offset(h.fd_count), "blob offset");
  return 0;
}
