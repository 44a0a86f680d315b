// Socket activation and readiness notification, checked against real sockets the way systemd
// provides them (fd 3 + LISTEN_PID/LISTEN_FDS; a datagram socket at NOTIFY_SOCKET).
#include "daemon/systemd_integration.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "tests/testing/temp_dir.h"

namespace phivault::daemon {
namespace {

int BindUnix(int type, const std::string& name, bool abstract) {
  const int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path + (abstract ? 1 : 0), name.data(), name.size());
  const auto len =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() + (abstract ? 1 : 0));
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

std::string Receive(int fd) {
  char buf[256];
  const ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

TEST(SdNotifyTest, SendsTheStateToAPathSocket) {
  phivault::testing::TempDir dir;
  const std::string path = dir.Sub("notify");
  const int fd = BindUnix(SOCK_DGRAM, path, false);
  ASSERT_GE(fd, 0);
  setenv("NOTIFY_SOCKET", path.c_str(), 1);
  EXPECT_TRUE(SdNotify("READY=1\nSTATUS=serving").ok());
  unsetenv("NOTIFY_SOCKET");
  EXPECT_EQ(Receive(fd), "READY=1\nSTATUS=serving");
  close(fd);
}

TEST(SdNotifyTest, SendsTheStateToAnAbstractSocket) {
  const std::string name = "phivault-test-notify-" + std::to_string(getpid());
  const int fd = BindUnix(SOCK_DGRAM, name, true);
  ASSERT_GE(fd, 0);
  setenv("NOTIFY_SOCKET", ("@" + name).c_str(), 1);
  EXPECT_TRUE(SdNotify("STOPPING=1").ok());
  unsetenv("NOTIFY_SOCKET");
  EXPECT_EQ(Receive(fd), "STOPPING=1");
  close(fd);
}

TEST(SdNotifyTest, DoesNothingOutsideSystemdAndFailsForAMissingSocket) {
  unsetenv("NOTIFY_SOCKET");
  EXPECT_TRUE(SdNotify("READY=1").ok());
  setenv("NOTIFY_SOCKET", "/nonexistent/phivault/notify", 1);
  EXPECT_EQ(SdNotify("READY=1").code(), StatusCode::kUnavailable);
  setenv("NOTIFY_SOCKET", "relative/path", 1);
  EXPECT_FALSE(SdNotify("READY=1").ok());
  unsetenv("NOTIFY_SOCKET");
}

// Puts a listening socket on fd 3 for the duration of a test, restoring whatever was there.
class ListenFdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_ = dup(3);  // -1 if fd 3 was not open
    path_ = dir_.Sub("activated.sock");
    const int fd = BindUnix(SOCK_STREAM, path_, false);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(listen(fd, 8), 0);
    if (fd != 3) {
      ASSERT_EQ(dup2(fd, 3), 3);
      close(fd);
    }
    ASSERT_EQ(fcntl(3, F_SETFD, 0), 0);  // systemd passes it without close-on-exec
  }
  void TearDown() override {
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    if (saved_ >= 0) {
      dup2(saved_, 3);
      close(saved_);
    } else {
      close(3);
    }
  }
  phivault::testing::TempDir dir_;
  std::string path_;
  int saved_ = -1;
};

TEST_F(ListenFdTest, TakesFdThreeWhenTheVariablesNameThisProcess) {
  setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
  setenv("LISTEN_FDS", "1", 1);
  auto fd = TakeListenFd();
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  EXPECT_EQ(*fd, std::optional<int>(3));
  EXPECT_EQ(std::getenv("LISTEN_PID"), nullptr);  // not inherited by children
  EXPECT_EQ(std::getenv("LISTEN_FDS"), nullptr);
  EXPECT_NE(fcntl(3, F_GETFD) & FD_CLOEXEC, 0);
}

TEST_F(ListenFdTest, IgnoresVariablesMeantForAnotherProcess) {
  setenv("LISTEN_PID", std::to_string(getpid() + 1).c_str(), 1);
  setenv("LISTEN_FDS", "1", 1);
  auto fd = TakeListenFd();
  ASSERT_TRUE(fd.ok());
  EXPECT_FALSE(fd->has_value());
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  fd = TakeListenFd();
  ASSERT_TRUE(fd.ok());
  EXPECT_FALSE(fd->has_value());
}

TEST_F(ListenFdTest, RejectsMalformedVariablesAndNonListeningSockets) {
  setenv("LISTEN_PID", "12ab", 1);
  setenv("LISTEN_FDS", "1", 1);
  EXPECT_FALSE(TakeListenFd().ok());

  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  ASSERT_EQ(dup2(pair[0], 3), 3);
  close(pair[0]);
  close(pair[1]);
  setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
  setenv("LISTEN_FDS", "1", 1);
  auto fd = TakeListenFd();
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace phivault::daemon
