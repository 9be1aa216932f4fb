// The reaper: what an old image becomes when a live update finishes while
// it is still needed as a parent (`mk-kernel --reaper=FD`, argv only).
//
// Role in the handover flow: at kMsgUpdateFinish an old image that is PID 1
// of the instance's PID namespace (its exit would kill every process in it,
// successor included) or that still has live tenant children execs
// /proc/self/exe --reaper=FD, keeping only the reaper pipe's write end FD.
// The reaper waits for every child and writes one abi::TenantExitMsg
// {pid, status, index 0} per exit to FD; the successor (which holds the read
// end, handed over as the session's kReaperToken) maps pids to its adopted
// tenants. A full or closed pipe drops the record (EAGAIN/EPIPE; SIGPIPE is
// ignored). With no children left: as PID 1 it keeps waiting for orphans
// (SIGCHLD) until the host ends the namespace; otherwise it exits 0.
//
// Returns (run_reaper): the process exit code: 0 (no children left, not
// PID 1), 2 (FD is not an open fd). Never returns as PID 1.
#pragma once

namespace mk::image {

int run_reaper(int fd);

}  // namespace mk::image
