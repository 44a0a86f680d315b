#include "daemon/systemd_integration.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <string>

namespace phivault::daemon {
namespace {

constexpr int kListenFdsStart = 3;  // SD_LISTEN_FDS_START

std::optional<long> ParseDecimal(const char* s) {
  if (s == nullptr || *s == '\0') return std::nullopt;
  long v = 0;
  const char* end = s + std::strlen(s);
  auto [ptr, ec] = std::from_chars(s, end, v);
  if (ec != std::errc() || ptr != end || v < 0) return std::nullopt;
  return v;
}

}  // namespace

StatusOr<std::optional<int>> TakeListenFd() {
  const char* pid_text = std::getenv("LISTEN_PID");
  const char* fds_text = std::getenv("LISTEN_FDS");
  if (pid_text == nullptr || fds_text == nullptr) return std::optional<int>();
  const std::optional<long> pid = ParseDecimal(pid_text);
  const std::optional<long> fds = ParseDecimal(fds_text);
  if (!pid.has_value() || !fds.has_value()) {
    return InvalidArgument("LISTEN_PID and LISTEN_FDS must be decimal numbers");
  }
  if (*pid != static_cast<long>(getpid())) return std::optional<int>();
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  if (*fds < 1) return std::optional<int>();
  if (*fds > 1)
    return InvalidArgument("expected one socket from systemd, got " + std::to_string(*fds));

  const int fd = kListenFdsStart;
  int type = 0;
  int listening = 0;
  sockaddr_storage addr{};
  socklen_t type_len = sizeof(type);
  socklen_t listening_len = sizeof(listening);
  socklen_t addr_len = sizeof(addr);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_len) != 0 ||
      getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &listening_len) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &addr_len) != 0) {
    return InvalidArgument(std::string("the socket from systemd is unusable: ") +
                           std::strerror(errno));
  }
  if (type != SOCK_STREAM || listening == 0 || addr.ss_family != AF_UNIX) {
    return InvalidArgument("the socket from systemd must be a listening Unix stream socket");
  }
  const int flags = fcntl(fd, F_GETFD);
  if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) != 0) {
    return InvalidArgument(std::string("cannot set close-on-exec on the socket from systemd: ") +
                           std::strerror(errno));
  }
  return std::optional<int>(fd);
}

Status SdNotify(std::string_view state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || *path == '\0') return Status::Ok();
  std::string name(path);
  if (name[0] != '/' && name[0] != '@') {
    return InvalidArgument("NOTIFY_SOCKET must be an absolute path or start with '@'");
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (name.size() >= sizeof(addr.sun_path)) return InvalidArgument("NOTIFY_SOCKET is too long");
  std::memcpy(addr.sun_path, name.data(), name.size());
  if (name[0] == '@') addr.sun_path[0] = '\0';
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());

  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Unavailable(std::string("sd_notify: socket: ") + std::strerror(errno));
  const ssize_t sent = sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                              reinterpret_cast<const sockaddr*>(&addr), len);
  const int err = errno;
  close(fd);
  if (sent < 0 || static_cast<size_t>(sent) != state.size()) {
    return Unavailable(std::string("sd_notify: sendto: ") + std::strerror(err));
  }
  return Status::Ok();
}

}  // namespace phivault::daemon
