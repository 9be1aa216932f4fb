// boot_info: read, parse and check the boot tree on fd 3.
#include "mksdk/boot_info.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace mk::sdk {

std::uint64_t monotonic_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

Result<BootTree> read_boot_tree(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return MK_FAIL(EBADF, "boot tree fd not open",
                   "fd %d (the boot tree) is not open: the image must be started by the host", fd);
  }
  if (!S_ISREG(st.st_mode)) {
    return MK_FAIL(EBADF, "boot tree fd is not a memfd", "fd %d is not a regular file or memfd", fd);
  }
  if (st.st_size <= 0) return MK_FAIL(EBADMSG, "empty boot tree", "fd %d holds 0 bytes", fd);
  // Cap before allocating: the size is the host's word, not yet trusted.
  if (static_cast<std::uint64_t>(st.st_size) > abi::kMaxTreeBytes) {
    return MK_FAIL(E2BIG, "boot tree too large", "fd %d holds %lld bytes, the limit is %zu", fd,
                   static_cast<long long>(st.st_size), abi::kMaxTreeBytes);
  }
  std::vector<std::uint8_t> blob(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < blob.size()) {
    ssize_t n = ::pread(fd, blob.data() + got, blob.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("reading the boot tree");
    if (n == 0) return MK_FAIL(EIO, "short boot tree read", "got %zu of %zu bytes", got, blob.size());
    got += static_cast<std::size_t>(n);
  }
  return parse_boot_tree(blob);
}

std::vector<int> channel_fds(const IpiChannel& ch) {
  return {ch.fd, ch.fd + 1, ch.fd + 2};
}

namespace {

Result<void> check_fd(int fd, const char* node_kind, const std::string& node) {
  int flags = ::fcntl(fd, F_GETFD);
  if (flags < 0) {
    return MK_FAIL(EBADF, "boot tree fd not open", "%s %s lists fd %d, which is not open", node_kind,
                   node.c_str(), fd);
  }
  // Tenants are spawned later: they must not inherit the instance's resources.
  if (!(flags & FD_CLOEXEC) && ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC) != 0) {
    return errno_error("fcntl(F_SETFD) on a boot fd");
  }
  return {};
}

}  // namespace

Result<void> check_boot_fds(const BootTree& tree, int tree_fd) {
  MK_TRY(check_fd(tree_fd, "the", std::string("boot tree")));
  for (const auto& m : tree.memory) {
    MK_TRY(check_fd(m.fd, "memory", "/memory@" + std::to_string(m.index)));
  }
  for (const auto& d : tree.devices) {
    if (d.fd < 0) continue;  // net devices travel by name
    MK_TRY(check_fd(d.fd, "device", "/devices/" + d.name));
    // The console's host end: held (never read) so the console outlives a
    // host restart; close-on-exec so tenants do not inherit it.
    if (auto it = d.properties.find("host-fd"); it != d.properties.end()) {
      char* end = nullptr;
      long fd = std::strtol(it->second.c_str(), &end, 10);
      if (it->second.empty() || *end || fd < 0 || fd > 65535) {
        return MK_FAIL(EINVAL, "bad console host-fd", "/devices/%s: host-fd '%s' is not an fd number",
                       d.name.c_str(), it->second.c_str());
      }
      MK_TRY(check_fd(static_cast<int>(fd), "device", "/devices/" + d.name + " host-fd"));
    }
  }
  for (const auto& ch : tree.ipi.channels) {
    char node[40];
    std::snprintf(node, sizeof node, "/ipi/channel@%x", ch.peer_id);
    for (int fd : channel_fds(ch)) MK_TRY(check_fd(fd, "channel", node));
  }
  if (tree.handover) MK_TRY(check_fd(tree.handover->fd, "handover", std::string("/chosen")));
  return {};
}

Result<BootTree> load_boot_info(int fd) {
  MK_TRY_ASSIGN(BootTree tree, read_boot_tree(fd));
  MK_TRY(check_boot_fds(tree, fd));
  return tree;
}

}  // namespace mk::sdk
