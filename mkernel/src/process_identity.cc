// pid + start time identities and pidfds on them (see process_identity.h).
#include "mkernel/process_identity.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <charconv>
#include <string>

namespace mk {

Result<ProcessIdentity> read_identity(const SysRoot& root, pid_t pid) {
  if (pid <= 0) return MK_FAIL(ESRCH, "no such process", "pid %d", pid);
  std::string path = "/proc/" + std::to_string(pid) + "/stat";
  auto text = root.read_file(path, 4096);
  if (!text) {
    if (text.error().code() == ENOENT) return MK_FAIL(ESRCH, "no such process", "pid %d", pid);
    return text.error();
  }
  // "PID (COMM) STATE ..." — COMM may hold spaces and parentheses, so fields
  // are counted from the last ')': STATE is field 3, starttime field 22.
  std::size_t close = text->rfind(')');
  if (close == std::string::npos) return MK_FAIL(EBADMSG, "unparsable /proc stat", "%s: no ')'", path.c_str());
  const char* p = text->data() + close + 1;
  const char* end = text->data() + text->size();
  for (int field = 3; field <= 22; ++field) {
    while (p < end && *p == ' ') ++p;
    const char* start = p;
    while (p < end && *p != ' ' && *p != '\n') ++p;
    if (start == p) return MK_FAIL(EBADMSG, "unparsable /proc stat", "%s: %d fields", path.c_str(), field - 1);
    if (field == 22) {
      uint64_t t = 0;
      auto [q, ec] = std::from_chars(start, p, t);
      if (ec != std::errc() || q != p) return MK_FAIL(EBADMSG, "unparsable /proc stat", "%s: starttime", path.c_str());
      return ProcessIdentity{pid, t};
    }
  }
  return MK_FAIL(EBADMSG, "unparsable /proc stat", "%s", path.c_str());
}

Result<OwnedFd> open_identity(const SysRoot& root, const ProcessIdentity& who) {
  if (who.pid <= 0) return MK_FAIL(ESRCH, "no such process", "pid %d", who.pid);
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, who.pid, 0));
  if (fd < 0) {
    if (errno == ESRCH) return MK_FAIL(ESRCH, "no such process", "pid %d is gone", who.pid);
    return errno_error("pidfd_open");
  }
  OwnedFd owned(fd);
  MK_TRY_ASSIGN(ProcessIdentity now, read_identity(root, who.pid));
  if (now.start_time != who.start_time) {
    return MK_FAIL(ESRCH, "no such process",
                   "pid %d now belongs to another process (started at tick %llu, recorded %llu)", who.pid,
                   static_cast<unsigned long long>(now.start_time),
                   static_cast<unsigned long long>(who.start_time));
  }
  return owned;
}

}  // namespace mk
