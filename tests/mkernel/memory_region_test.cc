// Tests for mkernel/memory_region.h: sealed, node-bound memfd regions.
#include "mkernel/memory_region.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

namespace mk {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

TEST(RegionFd, SizeSealsAndNode) {
  auto r = RegionFd::create("mk-test-region", 0, 4 * kMiB, {});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_GE(r->fd(), 0);
  EXPECT_EQ(r->size(), 4 * kMiB);
  EXPECT_EQ(r->node(), 0u);
  struct stat st{};
  ASSERT_EQ(::fstat(r->fd(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 4 * kMiB);
  EXPECT_EQ(::fcntl(r->fd(), F_GET_SEALS), F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL);
  EXPECT_TRUE(::fcntl(r->fd(), F_GETFD) & FD_CLOEXEC);

  errno = 0;
  EXPECT_EQ(::ftruncate(r->fd(), 8 * kMiB), -1);
  EXPECT_EQ(errno, EPERM);
  errno = 0;
  EXPECT_EQ(::ftruncate(r->fd(), kMiB), -1);
  EXPECT_EQ(errno, EPERM);
  errno = 0;
  EXPECT_EQ(::fcntl(r->fd(), F_ADD_SEALS, F_SEAL_WRITE), -1);
  EXPECT_EQ(errno, EPERM);
  // Writing past the end would grow it: refused too.
  char c = 'x';
  errno = 0;
  EXPECT_EQ(::pwrite(r->fd(), &c, 1, static_cast<off_t>(4 * kMiB)), -1);
  EXPECT_EQ(errno, EPERM);

  Guarantee g = r->guarantee();
  EXPECT_EQ(g.name, "memory region");
  EXPECT_NE(g.detail.find("size-sealed"), std::string::npos);
}

// The image's view: a second mapping of the fd sees the host's bytes, and
// every page is on the region's node.
void check_mapping_on_node(const RegionFd& r, bool touch_first) {
  void* p = ::mmap(nullptr, r.size(), PROT_READ | PROT_WRITE, MAP_SHARED, r.fd(), 0);
  ASSERT_NE(p, MAP_FAILED);
  auto* bytes = static_cast<unsigned char*>(p);
  if (touch_first)
    for (uint64_t off = 0; off < r.size(); off += 4096) bytes[off] = 0xA5;
  for (uint64_t off = 0; off < r.size(); off += 64 * 4096) {
    auto n = numa_node_of(bytes + off);
    ASSERT_TRUE(n) << n.error().to_string();
    EXPECT_EQ(*n, static_cast<int>(r.node())) << "page at offset " << off;
  }
  std::memcpy(bytes, "hello", 5);
  void* q = ::mmap(nullptr, r.size(), PROT_READ, MAP_SHARED, r.fd(), 0);
  ASSERT_NE(q, MAP_FAILED);
  EXPECT_EQ(std::memcmp(q, "hello", 5), 0);
  ::munmap(q, r.size());
  ::munmap(p, r.size());
}

TEST(RegionFd, PrefaultedPagesAreOnTheNode) {
  auto r = RegionFd::create("mk-test-prefault", 0, 2 * kMiB, {.prefault = true});
  ASSERT_TRUE(r) << r.error().to_string();
  check_mapping_on_node(*r, false);
}

TEST(RegionFd, LazyPagesFollowTheSharedPolicy) {
  auto r = RegionFd::create("mk-test-lazy", 0, 2 * kMiB, {.prefault = false});
  ASSERT_TRUE(r) << r.error().to_string();
  check_mapping_on_node(*r, true);
}

TEST(RegionFd, BadNodeIsEinval) {
  auto r = RegionFd::create("mk-test-badnode", 999, 2 * kMiB, {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), EINVAL);
  EXPECT_NE(std::string(r.error().detail()).find("node 999"), std::string::npos);
}

TEST(RegionFd, ZeroOrUnalignedSizeIsEinval) {
  auto z = RegionFd::create("mk-test-zero", 0, 0, {});
  ASSERT_FALSE(z);
  EXPECT_EQ(z.error().code(), EINVAL);
  auto u = RegionFd::create("mk-test-odd", 0, 4097, {});
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code(), EINVAL);
  auto h = RegionFd::create("mk-test-hodd", 0, 4096, {.hugetlb = true, .require_hugetlb = true});
  ASSERT_FALSE(h);
  EXPECT_EQ(h.error().code(), EINVAL);
}

TEST(RegionFd, HugetlbUsedOrFallbackExplained) {
  auto r = RegionFd::create("mk-test-huge", 0, 2 * kMiB, {.hugetlb = true});
  ASSERT_TRUE(r) << r.error().to_string();
  if (r->hugetlb()) {
    EXPECT_TRUE(r->note().empty());
    EXPECT_NE(r->guarantee().detail.find("2 MiB pages"), std::string::npos);
  } else {
    EXPECT_NE(r->note().find("hugetlb unavailable"), std::string::npos) << r->note();
    EXPECT_NE(r->guarantee().detail.find("4 KiB pages"), std::string::npos);
    auto strict =
        RegionFd::create("mk-test-huge", 0, 2 * kMiB, {.hugetlb = true, .require_hugetlb = true});
    ASSERT_FALSE(strict);
    EXPECT_NE(strict.error().code(), 0);
  }
  EXPECT_EQ(::fcntl(r->fd(), F_GET_SEALS), F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL);
}

TEST(RegionFd, ReleaseHandsOverTheFd) {
  auto r = RegionFd::create("mk-test-release", 0, 64 * 1024, {});
  ASSERT_TRUE(r);
  OwnedFd fd = r->release_fd();
  EXPECT_TRUE(fd.valid());
  EXPECT_EQ(r->fd(), -1);
}

}  // namespace
}  // namespace mk
