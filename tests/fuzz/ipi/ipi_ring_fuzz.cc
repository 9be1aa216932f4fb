// libFuzzer target: arbitrary ring contents fed to the IPI receiver.
//
// The input drives a 64-slot ring with a 4 KiB bulk ring, laid out exactly as
// in a channel region. Byte 0 picks how many valid messages a real producer
// writes (and the consumer drains) first, so the consumer starts at varied
// positions and laps; the rest of the input is copied over the slots and the
// bulk ring (repeating), as a peer with write access could. The consumer must
// then never crash, never read out of bounds (ASan), never loop without
// bound, and hand out only messages whose type is valid and whose payload lies
// inside its scratch buffer or the bulk ring.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "fuzz_check.h"
#include "ipi/message_types.h"
#include "ipi/ring.h"

namespace {

using namespace mk::ipi;

constexpr std::uint32_t kSlots = 64;
constexpr std::size_t kBulk = 4096;
constexpr std::size_t kSize = sizeof(abi::DirectionControl) + kSlots * abi::kSlotSize + kBulk;

alignas(64) std::byte g_mem[kSize];
std::byte g_scratch[abi::kMaxSpanPayload];

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  std::memset(g_mem, 0, sizeof g_mem);
  RingView v;
  v.control = reinterpret_cast<abi::DirectionControl*>(g_mem);
  v.slots = g_mem + sizeof(abi::DirectionControl);
  v.slot_count = kSlots;
  v.bulk = v.slots + kSlots * abi::kSlotSize;
  v.bulk_size = kBulk;
  init_ring(v);
  RingProducer prod(v);
  RingConsumer cons(v, g_scratch);

  // Honest prefix: advance both sides to a data-dependent position.
  const unsigned pre = data[0] % 200;
  std::byte payload[3000] = {};
  InMessage m;
  for (unsigned i = 0; i < pre; ++i) {
    const std::size_t len = (static_cast<std::size_t>(data[1]) * (i + 1) * 13) % sizeof payload;
    if (prod.write(type_in(TypeRange::kUser, 1), MessageKind::kOneWay, i, std::span(payload, len)).ok()) {
      prod.publish();
    }
    while (cons.try_pop(m).code() != EAGAIN) {
    }
  }

  // Hostile overlay over slots + bulk.
  std::byte* area = v.slots;
  const std::size_t area_len = kSlots * abi::kSlotSize + kBulk;
  const std::uint8_t* in = data + 2;
  const std::size_t in_len = size - 2;
  if (in_len == 0) return 0;
  const std::size_t start = (cons.position() % kSlots) * abi::kSlotSize;
  for (std::size_t i = 0; i < area_len; ++i) {
    area[(start + i) % area_len] = static_cast<std::byte>(in[i % in_len]);
  }

  // Drain: bounded work, valid output only.
  for (unsigned i = 0; i < 4 * kSlots; ++i) {
    (void)cons.has_pending();
    Status s = cons.try_pop(m);
    if (s.code() == EAGAIN) break;
    if (!s.ok()) {
      MK_FUZZ_CHECK(s.code() == EBADMSG, "try_pop returned errno %d", s.code());
      continue;
    }
    MK_FUZZ_CHECK(is_valid_type(m.type), "accepted type 0x%04x", m.type);
    const std::byte* p = m.payload.data();
    const std::size_t n = m.payload.size();
    if (m.by_ref) {
      MK_FUZZ_CHECK(p >= v.bulk && p + n <= v.bulk + kBulk, "by-ref payload outside the bulk ring (%zu bytes)", n);
    } else {
      MK_FUZZ_CHECK(n <= abi::kMaxSpanPayload && (n == 0 || (p >= g_scratch && p + n <= g_scratch + sizeof g_scratch)),
                    "inline payload outside scratch (%zu bytes)", n);
    }
    unsigned sum = 0;
    for (std::size_t k = 0; k < n; ++k) sum += static_cast<unsigned>(p[k]);
    asm volatile("" : : "r"(sum));
  }
  return 0;
}
