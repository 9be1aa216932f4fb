// Bounded console logs fed from a pipe, and their reader (see console_log.h).
#include "mkernel/console_log.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace mk {
namespace {

Result<void> write_all(int fd, const char* p, std::size_t n, const char* what) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      return MK_FAIL(e, "console write failed", "%s: %s", what, std::strerror(e));
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return ok();
}

// Copies fd from its current offset to EOF into out_fd.
Result<void> copy_to_eof(int fd, int out_fd) {
  char buf[16384];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("cannot read console log");
    }
    if (n == 0) return ok();
    MK_TRY(write_all(out_fd, buf, static_cast<std::size_t>(n), "console output"));
  }
}

// Keeps only the last `max` bytes of `path` (a rotated log left by a run
// with a larger bound): written to a temporary file renamed over it.
Result<void> keep_tail(const std::string& path, uint64_t max) {
  OwnedFd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) return errno == ENOENT ? ok() : errno_error("cannot open rotated console log");
  struct stat st{};
  if (::fstat(in.get(), &st) != 0) return errno_error("cannot stat rotated console log");
  if (static_cast<uint64_t>(st.st_size) <= max) return ok();
  const std::string tmp = path + ".trim";
  OwnedFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!out) {
    int e = errno;
    return MK_FAIL(e, "cannot trim console log", "%s: %s", tmp.c_str(), std::strerror(e));
  }
  if (::lseek(in.get(), static_cast<off_t>(static_cast<uint64_t>(st.st_size) - max), SEEK_SET) < 0)
    return errno_error("cannot seek in rotated console log");
  if (auto c = copy_to_eof(in.get(), out.get()); !c) {
    ::unlink(tmp.c_str());
    return c;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return MK_FAIL(e, "cannot trim console log", "%s: %s", path.c_str(), std::strerror(e));
  }
  return ok();
}

}  // namespace

Result<ConsolePipe> make_console_pipe() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return errno_error("cannot create console pipe");
  ConsolePipe out{OwnedFd(p[0]), OwnedFd(p[1])};
  int fl = ::fcntl(p[0], F_GETFL);
  if (fl < 0 || ::fcntl(p[0], F_SETFL, fl | O_NONBLOCK) != 0)
    return errno_error("cannot make console pipe nonblocking");
  // Room for what an instance prints while mkerneld restarts (nobody drains
  // then; a full pipe blocks the writer like a flow-controlled serial line).
  // Best effort: an unprivileged caller may be capped by pipe-max-size.
  (void)::fcntl(p[1], F_SETPIPE_SZ, kConsolePipeBytes);
  return out;
}

Result<ConsoleLog> ConsoleLog::create(std::string path, uint64_t max_bytes) {
  if (max_bytes == 0) return MK_FAIL(EINVAL, "bad console log size", "%s: max 0", path.c_str());
  ConsoleLog log;
  log.fd_.reset(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log.fd_) {
    int e = errno;
    return MK_FAIL(e, "cannot open console log", "%s: %s", path.c_str(), std::strerror(e));
  }
  struct stat st{};
  if (::fstat(log.fd_.get(), &st) != 0) return errno_error("cannot stat console log");
  log.size_ = static_cast<uint64_t>(st.st_size);
  log.path_ = std::move(path);
  log.max_ = max_bytes;
  // Files left by a run with a larger bound are brought under this one at
  // once, so the bound holds from the start, not from the first rotation.
  if (log.size_ > log.max_) MK_TRY(log.rotate());
  MK_TRY(keep_tail(log.path_ + ".1", log.max_));
  return log;
}

Result<void> ConsoleLog::rotate() {
  std::string old = path_ + ".1";
  if (::rename(path_.c_str(), old.c_str()) != 0) {
    int e = errno;
    return MK_FAIL(e, "cannot rotate console log", "%s -> %s: %s", path_.c_str(), old.c_str(),
                   std::strerror(e));
  }
  OwnedFd fresh(::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_TRUNC | O_CLOEXEC, 0600));
  if (!fresh) {
    int e = errno;
    return MK_FAIL(e, "cannot open console log", "%s: %s", path_.c_str(), std::strerror(e));
  }
  fd_ = std::move(fresh);
  size_ = 0;
  return ok();
}

Result<void> ConsoleLog::append(std::string_view data) {
  if (lost_ > 0) {
    // Output dropped while the log could not be written (disk full): say
    // so where it is missing, once writing works again.
    char note[128];
    std::snprintf(note, sizeof note, "\n[console: %llu bytes lost: %s]\n", static_cast<unsigned long long>(lost_),
                  std::strerror(lost_errno_));
    std::string_view n(note);
    if (size_ > 0 && size_ + n.size() > max_) MK_TRY(rotate());
    MK_TRY(write_all(fd_.get(), n.data(), n.size(), path_.c_str()));
    size_ += n.size();
    lost_ = 0;
  }
  // A single write larger than the bound keeps only its tail.
  if (data.size() > max_) data = data.substr(data.size() - max_);
  if (size_ > 0 && size_ + data.size() > max_) MK_TRY(rotate());
  if (auto w = write_all(fd_.get(), data.data(), data.size(), path_.c_str()); !w) {
    // Part of it may be written: count what the file holds.
    struct stat st{};
    if (::fstat(fd_.get(), &st) == 0) size_ = static_cast<uint64_t>(st.st_size);
    return w;
  }
  size_ += data.size();
  return ok();
}

Result<std::size_t> ConsoleLog::drain(int fd, bool* eof) {
  if (eof) *eof = false;
  std::size_t total = 0;
  char buf[16384];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return total;
      return errno_error("cannot read console pipe");
    }
    if (n == 0) {
      if (eof) *eof = true;
      return total;
    }
    total += static_cast<std::size_t>(n);
    // A write that fails (disk full) loses this output but never stops the
    // draining: the image must not block on a full console pipe.
    if (auto a = append(std::string_view(buf, static_cast<std::size_t>(n))); !a) {
      lost_ += static_cast<uint64_t>(n);
      lost_errno_ = a.error().code();
    }
  }
}

Result<std::string> read_console(const std::string& path) {
  std::string out;
  bool any = false;
  for (const std::string& p : {path + ".1", path}) {
    OwnedFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
      if (errno == ENOENT) continue;
      int e = errno;
      return MK_FAIL(e, "cannot open console log", "%s: %s", p.c_str(), std::strerror(e));
    }
    any = true;
    char buf[16384];
    while (true) {
      ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno_error("cannot read console log");
      }
      if (n == 0) break;
      out.append(buf, static_cast<std::size_t>(n));
    }
  }
  if (!any) return MK_FAIL(ENOENT, "no console log", "%s does not exist", path.c_str());
  return out;
}

Result<void> follow_console(const std::string& path, int out_fd, int stop_fd, int poll_ms) {
  OwnedFd cur(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (cur) {
    // The rotated part first, then the live file from its start.
    OwnedFd old(::open((path + ".1").c_str(), O_RDONLY | O_CLOEXEC));
    if (old) MK_TRY(copy_to_eof(old.get(), out_fd));
    MK_TRY(copy_to_eof(cur.get(), out_fd));
  }
  while (true) {
    pollfd p{stop_fd, POLLIN, 0};
    int r = ::poll(&p, stop_fd >= 0 ? 1 : 0, std::max(poll_ms, 1));
    if (r < 0 && errno != EINTR) return errno_error("poll failed while following console");
    if (r > 0) return ok();
    if (!cur) {
      cur.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      if (!cur) continue;  // not created yet
    }
    MK_TRY(copy_to_eof(cur.get(), out_fd));
    // Rotated? The name now points at a new file: finish the old, switch.
    struct stat a{}, b{};
    if (::fstat(cur.get(), &a) == 0 && ::stat(path.c_str(), &b) == 0 &&
        (a.st_ino != b.st_ino || a.st_dev != b.st_dev)) {
      MK_TRY(copy_to_eof(cur.get(), out_fd));
      cur.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      if (cur) MK_TRY(copy_to_eof(cur.get(), out_fd));
    }
  }
}

}  // namespace mk
