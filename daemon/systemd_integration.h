// systemd integration without libsystemd: socket activation (sd_listen_fds(3)) and readiness
// notification (sd_notify(3)), both plain environment-variable and datagram protocols.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"

namespace phivault::daemon {

// The first socket passed by systemd (fd 3), if LISTEN_PID is this process and LISTEN_FDS >= 1.
// Unsets LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES so children do not inherit them, and marks the fd
// close-on-exec. InvalidArgument if the variables are malformed or the fd is not a listening
// Unix stream socket; std::nullopt when not socket-activated.
StatusOr<std::optional<int>> TakeListenFd();

// Sends `state` (e.g. "READY=1", "STOPPING=1", "STATUS=...") to $NOTIFY_SOCKET. OK and nothing
// sent when the variable is unset; a leading '@' names an abstract socket. Unavailable if the
// datagram cannot be sent.
Status SdNotify(std::string_view state);

}  // namespace phivault::daemon
