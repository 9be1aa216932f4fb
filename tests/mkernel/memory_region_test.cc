// Tests for mkernel/memory_region.h: sealed, node-bound memfd regions.
#include "mkernel/memory_region.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

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

// Pages of a fresh mapping of `fd` that are resident (mincore).
std::size_t resident_pages(int fd, uint64_t size) {
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return SIZE_MAX;
  std::vector<unsigned char> vec(size / 4096);
  std::size_t n = SIZE_MAX;
  if (::mincore(p, size, vec.data()) == 0) {
    n = 0;
    for (unsigned char v : vec) n += v & 1;
  }
  ::munmap(p, size);
  return n;
}

// The boot default: nothing is allocated by the host (no pages to charge to
// its memory cgroup, no 64 MiB zeroing on the start path), yet the region is
// sealed and node-bound all the same.
TEST(RegionFd, DefaultIsLazySealedAndBound) {
  auto r = RegionFd::create("mk-test-default", 0, 4 * kMiB, {});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_FALSE(r->prefaulted());
  EXPECT_EQ(resident_pages(r->fd(), r->size()), 0u);
  EXPECT_EQ(::fcntl(r->fd(), F_GET_SEALS), F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL);
  Guarantee g = r->guarantee();
  EXPECT_NE(g.detail.find("faulted on first touch"), std::string::npos) << g.detail;
  if (r->bound()) {
    EXPECT_NE(g.detail.find("mbind"), std::string::npos) << g.detail;
  }

  auto pre = RegionFd::create("mk-test-prefaulted", 0, 2 * kMiB, {.prefault = true});
  ASSERT_TRUE(pre) << pre.error().to_string();
  EXPECT_TRUE(pre->prefaulted());
  EXPECT_EQ(resident_pages(pre->fd(), pre->size()), pre->size() / 4096);
  EXPECT_NE(pre->guarantee().detail.find("pre-faulted by the host"), std::string::npos);
}

// The image's side of a lazy region: another process (a fresh mm, no policy
// of its own) maps the fd it inherited; its mapping carries the memfd's
// shared MPOL_BIND (numa_maps "bind:<node>") and its first touches allocate
// on the node. Exit code of the child: 0 ok, else the failed check.
TEST(RegionFd, LazyPagesFaultInOnTheImageSideOnTheNode) {
  auto r = RegionFd::create("mk-test-imageside", 0, 4 * kMiB, {});
  ASSERT_TRUE(r) << r.error().to_string();
  if (!r->bound()) GTEST_SKIP() << "no NUMA support: no mbind to check";
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    void* p = ::mmap(nullptr, r->size(), PROT_READ | PROT_WRITE, MAP_SHARED, r->fd(), 0);
    if (p == MAP_FAILED) ::_exit(10);
    auto* bytes = static_cast<unsigned char*>(p);
    for (uint64_t off = 0; off < r->size(); off += 4096) bytes[off] = 1;
    for (uint64_t off = 0; off < r->size(); off += 4096) {
      auto n = numa_node_of(bytes + off);
      if (!n || *n != static_cast<int>(r->node())) ::_exit(11);
    }
    std::ifstream maps("/proc/self/numa_maps");
    char addr[32];
    std::snprintf(addr, sizeof addr, "%lx ", reinterpret_cast<unsigned long>(p));
    std::string want_policy = "bind:" + std::to_string(r->node());
    std::string want_pages = "N" + std::to_string(r->node()) + "=" + std::to_string(r->size() / 4096);
    for (std::string line; std::getline(maps, line);) {
      if (line.rfind(addr, 0) != 0) continue;
      if (line.find(want_policy) == std::string::npos) ::_exit(12);
      if (line.find(want_pages) == std::string::npos) ::_exit(13);
      ::_exit(0);
    }
    ::_exit(14);  // mapping not listed
  }
  int st = 0;
  ASSERT_EQ(::waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0) << "10 mmap, 11 page off node, 12 no bind policy in numa_maps, "
                                   "13 pages not on the node, 14 mapping not in numa_maps";
  // The host never touched it: every page came from the child's faults.
  EXPECT_EQ(resident_pages(r->fd(), r->size()), r->size() / 4096);
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
