// DOC: mk::ConsoleLog — an instance's console, captured by the host into a
// bounded log file in the runtime directory (DESIGN.md §2 "console").
//
// What this is: every instance has a console: the image's stdout/stderr are
// the write end of a pipe (make_console_pipe), the host drains the read end
// into `<rundir>/<name>.console` and rotates it to `.console.1` when it would
// pass max_bytes (default 1 MiB), so the host keeps between max and 2*max of
// the most recent output and a chatty image can never fill the disk.
// read_console()/follow_console() are what `mkctl console NAME [-f]` runs.
//
// Place in the boot flow: `start` makes the pipe (1 MiB when allowed), puts
// the write end in the confine plan's fd map (fd 1, fd 2 and the console's
// boot-tree fd) and a copy of the read end at the console's `host-fd` (the
// image holds it unread, so the pipe keeps a reader — no SIGPIPE for the
// image or its tenants — while mkerneld restarts; the new daemon takes it
// back with pidfd_getfd), closes its copy of the write end after spawn, and registers the read end with the daemon's event
// loop, which calls drain() whenever it is readable. The log outlives stops
// (a failed instance's last words stay readable) and goes with `delete`.
//
// Happy path: 1. ConsoleLog::create(path); 2. make_console_pipe();
// 3. drain(read_fd) on readable until it reports eof; 4. read_console(path)
// or follow_console(path, out, stop_fd).
//
// Unhappy paths: 1. runtime dir missing or not writable: create() fails with
// the errno naming the path. 2. disk full on append: ENOSPC, the data read
// from the pipe is lost (the pipe is still drained, so the image never blocks
// on a full console). 3. the log is rotated while following: the rest of
// the old file is printed, then the new one from its start.
//
// Returns: create: errno of open. append: errno of write/rename. drain: errno of read.
// read_console: ENOENT when no log exists. follow_console: errno of
// open/read/write/poll (EPIPE when the reader went away).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "mk/result.h"
#include "mkernel/owned_fd.h"

namespace mk {

inline constexpr uint64_t kConsoleLogMax = 1u << 20;
inline constexpr int kConsolePipeBytes = 1 << 20;

struct ConsolePipe {
  OwnedFd read_end;   // O_NONBLOCK | O_CLOEXEC, kept by the host
  OwnedFd write_end;  // O_CLOEXEC, dup2()ed into the child by the fd map
};
Result<ConsolePipe> make_console_pipe();

class ConsoleLog {
 public:
  // Opens (appends to) `path`. Files left larger than max_bytes (by a run
  // with a larger bound) are brought under it here: `path` is rotated and
  // "<path>.1" keeps only its last max_bytes, so from now on the two files
  // never hold more than 2 * max_bytes together.
  static Result<ConsoleLog> create(std::string path, uint64_t max_bytes = kConsoleLogMax);

  // Appends, rotating to "<path>.1" first when the file would pass max_bytes.
  Result<void> append(std::string_view data);
  // Reads what is available on nonblocking `fd` into the log. Returns the
  // bytes read; *eof is set when every writer has closed the pipe. Output
  // that cannot be written (ENOSPC) is dropped, the pipe still drained; the
  // next write that works is preceded by "[console: N bytes lost: ...]".
  // Returns: errno of read only.
  Result<std::size_t> drain(int fd, bool* eof);
  // Bytes dropped since the last successful write.
  uint64_t lost() const { return lost_; }

  const std::string& path() const { return path_; }
  uint64_t max_bytes() const { return max_; }

 private:
  ConsoleLog() = default;
  Result<void> rotate();
  std::string path_;
  uint64_t max_ = kConsoleLogMax;
  uint64_t size_ = 0;
  uint64_t lost_ = 0;
  int lost_errno_ = 0;
  OwnedFd fd_;
};

// "<path>.1" followed by "<path>" (what the host kept, oldest first).
Result<std::string> read_console(const std::string& path);

// Writes read_console() to out_fd, then keeps writing what is appended
// (following rotations), checking every poll_ms, until stop_fd becomes
// readable (stop_fd -1: until an error, e.g. EPIPE on out_fd).
Result<void> follow_console(const std::string& path, int out_fd, int stop_fd, int poll_ms = 100);

}  // namespace mk
