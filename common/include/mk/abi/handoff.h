// DOC: the handoff package of a live update (ABI, "mk-handoff-v1").
//
// What this is: how the outgoing image hands its frozen state to the host,
// and the host to the successor (DESIGN.md §5, docs/handover.md). At
// kMsgUpdateFreeze the old image writes one memfd, seals it, and replies with
// its fd number; the host copies it and every fd it lists out of the old
// image with pidfd_getfd (so the host holds the preserved fds during the
// switch, as the kernel does for LUO), then sends the package memfd and the
// fds on the successor's handover socket and asks it to restore.
//
// Layout of the package memfd (little-endian, same machine):
//   HandoffHeader                      32 bytes
//   int32_t source_fds[fd_count]       the fds in the old image, in session
//                                      transfer order (the KHO blob's
//                                      "mkernel,files-v1" `index`)
//   padding to a multiple of 8
//   blob[blob_bytes]                   the KHO blob (handover/kho_blob.h)
// The package size is exactly handoff_size(fd_count, blob_bytes).
//
// Socket protocol (AF_UNIX SOCK_SEQPACKET, host -> successor): message 0
// carries 8 data bytes {u32 first = 0, u32 count = 1} and SCM_RIGHTS with the
// package memfd; then messages of at most kHandoffFdsPerMessage fds, each
// with {u32 first index, u32 count}, covering indexes 0..fd_count-1 in
// order. Then the host sends kMsgHandover{fds = fd_count} over IPI.
//
// The package is untrusted for the host (the old image wrote it) and for the
// successor: readers check magic, version, counts, caps and the exact size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace mk::abi {

inline constexpr char kHandoffMagic[8] = {'m', 'k', 'h', 'o', 'f', 'f', '1', '\0'};
inline constexpr uint32_t kHandoffVersion = 1;
inline constexpr uint32_t kMaxHandoffFds = 65536;
inline constexpr uint64_t kMaxHandoffBlobBytes = uint64_t{16} << 20;  // = handover::kMaxBlobBytes
inline constexpr uint32_t kHandoffFdsPerMessage = 250;               // < SCM_MAX_FD (253)

struct HandoffHeader {
  char magic[8];        // kHandoffMagic
  uint32_t version;     // kHandoffVersion
  uint32_t fd_count;    // <= kMaxHandoffFds
  uint64_t blob_bytes;  // 1..kMaxHandoffBlobBytes
  uint32_t update_id;   // UpdateStepMsg::update_id of the freeze
  uint32_t reserved;    // 0
};
static_assert(std::is_trivially_copyable_v<HandoffHeader>);
static_assert(sizeof(HandoffHeader) == 32, "HandoffHeader layout changed: bump kHandoffVersion");

// One SCM_RIGHTS message's data bytes.
struct HandoffChunk {
  uint32_t first;  // index of the first fd in this message
  uint32_t count;  // fds in this message
};
static_assert(sizeof(HandoffChunk) == 8);

inline constexpr uint64_t handoff_blob_offset(uint32_t fd_count) {
  return (sizeof(HandoffHeader) + uint64_t{4} * fd_count + 7) & ~uint64_t{7};
}
inline constexpr uint64_t handoff_size(uint32_t fd_count, uint64_t blob_bytes) {
  return handoff_blob_offset(fd_count) + blob_bytes;
}

}  // namespace mk::abi
