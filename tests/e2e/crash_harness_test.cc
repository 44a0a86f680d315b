// The crash harness (tools/crash_harness.cc) run as CI runs it: ten SIGKILLs of the real phivaultd
// under load, every acknowledged operation checked after each restart. The seed is random unless
// PHIVAULT_CRASH_SEED is set; a failure prints it, and the harness's output, for a rerun.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/testing/subprocess.h"

namespace phivault::crash {
namespace {

using Clock = std::chrono::steady_clock;

struct HarnessRun {
  int exit_code = -1;  // -1: killed by a signal or timed out
  std::string out, err;
  nlohmann::json summary;  // discarded if stdout is not JSON
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A short directory under /tmp (the vault's socket path must fit sun_path), removed afterwards.
class ShortDir {
 public:
  ShortDir() {
    std::string tmpl = "/tmp/pvct-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) std::abort();
    path_ = tmpl;
  }
  ~ShortDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ShortDir(const ShortDir&) = delete;
  ShortDir& operator=(const ShortDir&) = delete;
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

HarnessRun RunHarness(std::vector<std::string> args, std::chrono::seconds timeout) {
  ShortDir dir;
  std::vector<std::string> argv = {PHIVAULT_CRASH_HARNESS_PATH, "--json", "--dir", dir.Sub("v")};
  argv.insert(argv.end(), args.begin(), args.end());
  HarnessRun run;
  std::string error;
  const pid_t pid =
      testing::SpawnRedirected(argv, {}, "/dev/null", dir.Sub("out"), dir.Sub("err"), &error);
  if (pid < 0) {
    ADD_FAILURE() << "cannot start the crash harness: " << error;
    return run;
  }
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      break;
    }
    if (Clock::now() >= deadline) {
      // SIGTERM: the harness SIGKILLs its daemon before it exits.
      kill(pid, SIGTERM);
      waitpid(pid, &status, 0);
      ADD_FAILURE() << "the crash harness did not finish within " << timeout.count() << " s";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  run.out = Slurp(dir.Sub("out"));
  run.err = Slurp(dir.Sub("err"));
  run.summary = nlohmann::json::parse(run.out, nullptr, /*allow_exceptions=*/false);
  return run;
}

std::vector<std::string> SeedArgs() {
  const char* seed = std::getenv("PHIVAULT_CRASH_SEED");
  if (seed == nullptr || *seed == '\0') return {};
  return {"--seed", seed};
}

uint64_t Count(const nlohmann::json& j, const char* a, const char* b) {
  return j.contains(a) && j[a].contains(b) ? j[a][b].get<uint64_t>() : 0;
}

TEST(CrashHarnessTest, TenKillsUnderLoadLoseNothingAcknowledged) {
  std::vector<std::string> args = {"--cycles", "10",  "--clients", "4",
                                   "--min-ms", "150", "--max-ms",  "700"};
  for (auto& a : SeedArgs()) args.push_back(a);
  const HarnessRun run = RunHarness(args, std::chrono::seconds(540));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  ASSERT_TRUE(run.summary.is_object()) << run.out;
  const auto& s = run.summary;
  ::testing::Test::RecordProperty("seed", std::to_string(s["seed"].get<uint64_t>()));
  EXPECT_EQ(s["cycles_survived"], 10) << run.err;
  EXPECT_TRUE(s["violations"].empty()) << s["violations"].dump(2);
  // The kills landed under load: every kind of operation was acknowledged and then found again.
  for (const char* kind : {"create", "amend", "read", "disclose"}) {
    EXPECT_GT(Count(s, "acknowledged", kind), 0u) << kind << "\n" << run.err;
  }
  uint64_t acked = 0;
  for (const auto& [kind, n] : s["acknowledged"].items()) acked += n.get<uint64_t>();
  EXPECT_EQ(s["acknowledged_ops_checked"].get<uint64_t>(), acked)
      << "every acknowledged operation's audit entry was found";
  EXPECT_GE(s["versions_checked"].get<uint64_t>(), Count(s, "acknowledged", "create"));
  EXPECT_GT(s["audit_entries_verified"].get<uint64_t>(), acked);
  std::cerr << "crash harness summary:\n" << s.dump(2) << "\n";
}

// The checks are not vacuous: a log of acknowledged operations that claims bytes the daemon never
// stored, and a read it never served, makes the run fail and names both.
TEST(CrashHarnessTest, FalsifiedAcknowledgementsAreCaught) {
  const HarnessRun run =
      RunHarness({"--cycles", "2", "--min-ms", "300", "--max-ms", "600", "--selftest-corrupt-log"},
                 std::chrono::seconds(300));
  ASSERT_EQ(run.exit_code, 1) << run.err;
  ASSERT_TRUE(run.summary.is_object()) << run.out;
  const std::string violations = run.summary["violations"].dump();
  EXPECT_NE(violations.find("reads back with other bytes"), std::string::npos) << violations;
  EXPECT_NE(violations.find("no audit entry for acknowledged read crash-fabricated-read"),
            std::string::npos)
      << violations;
  EXPECT_EQ(run.summary["cycles_survived"], 0);
}

TEST(CrashHarnessTest, InvertedIntervalIsRefused) {
  const HarnessRun run =
      RunHarness({"--min-ms", "900", "--max-ms", "100"}, std::chrono::seconds(60));
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(run.err.find("--min-ms must not exceed --max-ms"), std::string::npos) << run.err;
}

}  // namespace
}  // namespace phivault::crash
