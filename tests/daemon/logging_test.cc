// The operational log: one line per request with the route template, and the journald form
// only when stderr really is the journal stream.
#include "daemon/logging.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include "tests/testing/temp_dir.h"

namespace phivault::daemon {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Sends stderr to a file for the lifetime of the object.
class CapturedStderr {
 public:
  explicit CapturedStderr(const std::string& path) : path_(path) {
    fflush(stderr);
    saved_ = dup(STDERR_FILENO);
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    dup2(fd, STDERR_FILENO);
    close(fd);
  }
  ~CapturedStderr() {
    fflush(stderr);
    dup2(saved_, STDERR_FILENO);
    close(saved_);
  }
  std::string Text() const { return ReadAll(path_); }

 private:
  std::string path_;
  int saved_ = -1;
};

class LoggingTest : public ::testing::Test {
 protected:
  void TearDown() override {
    unsetenv("JOURNAL_STREAM");
    EXPECT_TRUE(SetupLogging("info", "").ok());  // back to plain stderr for later tests
  }
  phivault::testing::TempDir dir_;
};

TEST_F(LoggingTest, RequestLineCarriesTemplateStatusAndPrincipal) {
  const std::string file = dir_.Sub("phivaultd.log");
  CapturedStderr captured(dir_.Sub("stderr"));
  ASSERT_TRUE(SetupLogging("info", file).ok());
  LogRequest({"req-1", "GET", "/v1/records/{id}", 404, std::chrono::microseconds(1500), "ehr",
              "not-found"});
  spdlog::default_logger()->flush();
  const std::string text = ReadAll(file);
  EXPECT_THAT(text, HasSubstr("request id=req-1 method=GET route=/v1/records/{id} status=404 "
                              "duration_ms=1.500 principal=ehr problem=not-found"));
  EXPECT_THAT(captured.Text(), HasSubstr("route=/v1/records/{id}"));
}

TEST_F(LoggingTest, JournalFormOnlyWhenStderrIsTheNamedStream) {
  const std::string path = dir_.Sub("stderr");
  CapturedStderr captured(path);
  struct stat st {};
  ASSERT_EQ(fstat(STDERR_FILENO, &st), 0);
  setenv("JOURNAL_STREAM", (std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino)).c_str(),
         1);
  ASSERT_TRUE(SetupLogging("info", "").ok());
  spdlog::warn("disk nearly full");
  spdlog::info("serving");
  EXPECT_EQ(captured.Text(), "<4>disk nearly full\n<6>serving\n");

  setenv("JOURNAL_STREAM", "1:1", 1);  // inherited, but not our stderr
  ASSERT_TRUE(SetupLogging("info", "").ok());
  spdlog::info("serving");
  const std::string text = captured.Text();
  const std::string last = text.substr(text.rfind("\n", text.size() - 2) + 1);
  EXPECT_THAT(last, ::testing::MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T.*Z info serving\n"));
}

TEST_F(LoggingTest, UnknownLevelOrUnwritableFileIsRefused) {
  EXPECT_EQ(SetupLogging("chatty", "").code(), StatusCode::kInvalidArgument);
  std::ofstream(dir_.Sub("not-a-dir")) << "x";
  EXPECT_EQ(SetupLogging("info", dir_.Sub("not-a-dir/log")).code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace phivault::daemon
