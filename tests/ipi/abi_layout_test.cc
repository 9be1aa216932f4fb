// Golden layout of mk-ipi-ring-v1 (ipi/abi/ring_layout.h). If this fails you
// changed the shared-memory ABI: bump kVersion/kCompatible and update the
// golden bytes deliberately.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "ipi/abi/ring_layout.h"
#include "ipi/region.h"
#include "ipi/ring.h"

namespace mk::ipi {
namespace {

TEST(AbiLayout, ConstantsAreVersion1) {
  EXPECT_EQ(abi::kVersion, 1u);
  EXPECT_STREQ(abi::kCompatible, "mk-ipi-ring-v1");
  EXPECT_EQ(kCacheLine, 64u);
  EXPECT_EQ(abi::kSlotSize, 64u);
  EXPECT_EQ(abi::kHeadPayload, 48u);
  EXPECT_EQ(abi::kContPayload, 56u);
  EXPECT_EQ(abi::kMaxSpanSlots, 32u);
  EXPECT_EQ(abi::kMaxSpanPayload, 1784u);
  EXPECT_EQ(sizeof(abi::RegionHeader), 128u);
  EXPECT_EQ(sizeof(abi::DirectionControl), 256u);
}

TEST(AbiLayout, RegionHeaderGoldenBytes) {
  auto r = Region::create(ChannelConfig{64, 4096});
  ASSERT_TRUE(r) << r.error().to_string();
  auto& region = **r;
  std::vector<unsigned char> h(sizeof(abi::RegionHeader));
  std::memcpy(h.data(), region.base(), h.size());
  // pid[0] varies: blank it.
  std::memset(h.data() + 80, 0, 4);
  const unsigned char golden[128] = {
      0x7f, 'M', 'K', 'P', 'I', '_', 'v', '1',                       // magic
      'm', 'k', '-', 'i', 'p', 'i', '-', 'r', 'i', 'n', 'g', '-', 'v', '1', 0, 0,  // compatible
      1, 0, 0, 0,                                                    // version
      128, 0, 0, 0,                                                  // header_size
      64, 0, 0, 0,                                                   // slot_size
      64, 0, 0, 0,                                                   // slot_count
      0x00, 0x10, 0, 0, 0, 0, 0, 0,                                  // bulk_size 4096
      0x00, 0x30, 0, 0, 0, 0, 0, 0,                                  // direction_size 12288
      0x00, 0x70, 0, 0, 0, 0, 0, 0,                                  // total_size 28672
      0x00, 0x10, 0, 0, 0, 0, 0, 0,                                  // dir_offset[0] 4096
      0x00, 0x40, 0, 0, 0, 0, 0, 0,                                  // dir_offset[1] 16384
      0, 0, 0, 0, 0, 0, 0, 0,                                        // pid[0] (blanked), pid[1]
      1, 0, 0, 0, 0, 0, 0, 0,                                        // side_state A attached
  };
  EXPECT_EQ(0, std::memcmp(h.data(), golden, sizeof golden));
  EXPECT_EQ(region.size(), 28672u);
}

TEST(AbiLayout, SlotGoldenBytes) {
  auto r = Region::create(ChannelConfig{64, 0});
  ASSERT_TRUE(r);
  RingView v = (*r)->ring(0);
  // Fresh ring: slot i carries seq low32(i + 1 - 64) ("written one lap ago").
  std::uint32_t seq0;
  std::memcpy(&seq0, v.slots, 4);
  EXPECT_EQ(seq0, 0xffffffc1u);

  RingProducer p(v);
  std::vector<std::byte> payload(60);
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = std::byte(i + 1);
  ASSERT_TRUE(p.write(0x4001, MessageKind::kRequest, 7, payload).ok());
  ASSERT_TRUE(p.publish());
  const unsigned char head[16] = {1, 0, 0, 0, 0x01, 0x40, 0x01, 2, 60, 0, 0, 0, 7, 0, 0, 0};
  EXPECT_EQ(0, std::memcmp(v.slots, head, 16));
  EXPECT_EQ(0, std::memcmp(v.slots + 16, payload.data(), 48));
  const unsigned char cont[8] = {2, 0, 0, 0, 0, 0, 0x80, 1};
  EXPECT_EQ(0, std::memcmp(v.slots + 64, cont, 8));
  EXPECT_EQ(0, std::memcmp(v.slots + 72, payload.data() + 48, 12));
}

}  // namespace
}  // namespace mk::ipi
