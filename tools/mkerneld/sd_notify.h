// DOC: sd_notify — readiness for systemd (Type=notify) without libsystemd.
//
// What this is: the one datagram systemd's notify protocol needs. When
// NOTIFY_SOCKET is set (a path, or "@name" for the abstract namespace),
// mkerneld sends "READY=1" once its control socket listens and "STOPPING=1"
// when it begins to exit. Without NOTIFY_SOCKET nothing is sent.
//
// Returns: true when a message was sent, false when NOTIFY_SOCKET is unset;
// ENAMETOOLONG (path does not fit a sockaddr_un), or the errno of
// socket/sendto (the caller logs it: readiness is best effort).
#pragma once

#include "mk/result.h"

namespace mkerneld {

mk::Result<bool> sd_notify(const char* state);

}  // namespace mkerneld
