// End-to-end harness: a vault created by the real `phivault init`, served by the real `phivaultd`
// process on a socket in a short temporary directory, plus helpers to run the CLI and curl and to
// look at what the daemon left on disk.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "storage/store.h"
#include "tools/client.h"

namespace phivault::e2e {

// A fresh directory under $TMPDIR (or /tmp when $TMPDIR would make socket paths too long for
// sun_path), removed with its contents on destruction.
class ShortTempDir {
 public:
  ShortTempDir();
  ~ShortTempDir();
  ShortTempDir(const ShortTempDir&) = delete;
  ShortTempDir& operator=(const ShortTempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Sub(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

struct ProcessResult {
  int exit_code = -1;  // -1 if killed by a signal or timed out
  bool timed_out = false;
  std::string out;
  std::string err;
};

// Runs `argv` (argv[0] is the executable path) with the caller's environment minus the PHIVAULT_*
// and systemd variables, plus `env`, `input` on stdin; waits at most `timeout` (then SIGKILL).
// Standard output and error are captured through files in `scratch_dir`.
ProcessResult RunProcess(const std::vector<std::string>& argv, const std::string& scratch_dir,
                         const std::map<std::string, std::string>& env = {},
                         const std::string& input = "",
                         std::chrono::seconds timeout = std::chrono::seconds(60));

std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, std::string_view data);
std::string RandomHex(size_t bytes);
std::string RandomBytes(size_t bytes);

// Every regular file under `dir` (recursively).
std::vector<std::string> AllFiles(const std::string& dir);
// Paths of the files under `dir` (minus `exclude`) containing `needle` exactly.
std::vector<std::string> FilesWithBytes(const std::string& dir, std::string_view needle,
                                        const std::vector<std::string>& exclude = {});

// The real daemon's process. Not copyable; kills the process if still running on destruction.
class DaemonProcess {
 public:
  DaemonProcess() = default;
  ~DaemonProcess();
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  // Spawns `phivaultd --config config_path`, stdout/stderr to `log_prefix`.stdout/.stderr.
  // `env` is added to the (cleaned) environment.
  void Spawn(const std::string& config_path, const std::string& log_prefix,
             const std::map<std::string, std::string>& env = {});
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  const std::string& stderr_path() const { return stderr_path_; }
  // Waits for the process to exit on its own; its exit code, or nullopt on timeout (still
  // running) or if it died from a signal (exit code -1).
  std::optional<int> WaitExit(std::chrono::milliseconds timeout);
  // True once the process has exited (reaps it).
  bool Exited();
  // SIGTERM, then waits up to `timeout`; on timeout SIGKILL and a test failure. Exit code.
  int Terminate(std::chrono::seconds timeout);
  void Kill();

 private:
  pid_t pid_ = -1;
  int exit_code_ = -1;
  std::string stderr_path_;
};

// One vault: `phivault init` in a short temp dir, a running daemon, clients for it.
class Vault {
 public:
  // Runs `phivault --json init --dir <tmp>` and captures the dev token. Failures are reported
  // with ADD_FAILURE; check ok().
  Vault();
  ~Vault() = default;

  bool ok() const { return ok_; }
  const std::string& dir() const { return dir_.path(); }
  const std::string& token() const { return token_; }
  const std::string& socket_path() const { return socket_; }
  const std::string& config_path() const { return config_; }
  const std::string& data_dir() const { return data_dir_; }
  std::string key_path() const { return dir_.Sub("master.key"); }
  std::string db_path() const { return data_dir_ + "/db"; }
  std::string log_file() const { return dir_.Sub("phivaultd.log"); }
  // A path in a second temp dir for the test's own files (inputs, outputs of the CLI and curl),
  // kept apart from the vault so that searching the vault's files never finds them.
  std::string ScratchPath(std::string_view name) const { return scratch_.Sub(name); }

  // Replaces the first occurrence of `from` in the config file (must exist) with `to`.
  void EditConfig(std::string_view from, std::string_view to);
  void AppendConfig(std::string_view text);
  // Environment variables given to every later start of the daemon (e.g. a passphrase).
  void SetDaemonEnv(std::map<std::string, std::string> env) { daemon_env_ = std::move(env); }

  // Starts phivaultd and waits (bounded) until GET /v1/health answers; fails the test (and
  // returns false) if it exits or does not answer in time. Each start logs to its own files.
  bool Start();
  // SIGTERM and bounded wait; expects exit code 0.
  void Stop();
  DaemonProcess& daemon() { return daemon_; }
  // Spawns the daemon without waiting for health (for start-up failures).
  void SpawnOnly();

  client::Client NewClient(std::string token) const;
  client::Client AppClient() const { return NewClient(token_); }

  // Runs the CLI against this vault with PHIVAULT_SOCKET set (and `env` added).
  ProcessResult Cli(const std::vector<std::string>& args,
                    const std::map<std::string, std::string>& env = {},
                    const std::string& input = "");

 private:
  ShortTempDir dir_;
  ShortTempDir scratch_;  // process captures of the test side (never searched for canaries)
  bool ok_ = false;
  std::string token_, socket_, config_, data_dir_;
  DaemonProcess daemon_;
  std::map<std::string, std::string> daemon_env_;
  int starts_ = 0;
};

// A started vault per test; the daemon is stopped (expecting a clean exit) after the test.
// Fixtures that must change the configuration first override StartInSetUp.
class VaultTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  virtual bool StartInSetUp() const { return true; }

  // Stores a synthetic clinical note with `content` for `patient_id`, as Physician() through the
  // app client; its record id, or "" after a test failure.
  std::string StoreNote(const std::string& patient_id, const std::string& content);
  // The latest content of `record_id` as Physician() reads it, or "<error message>".
  std::string ReadNote(const std::string& record_id);

  Vault vault_;
};

// An actor with the physician role, treating.
client::Actor Physician(std::string user = "dr.e2e");

// Runs curl (via popen) with `args`, talking to `socket`; returns stdout, or nullopt if curl
// itself failed. `args` are shell-quoted here.
std::optional<std::string> Curl(const std::string& socket, const std::vector<std::string>& args);

// --- Direct access to the stopped daemon's store ---------------------------------------------

std::unique_ptr<storage::Store> OpenStoreOrDie(const std::string& db_path);
// kRecords key of one half of a version: kind 'm' (header) or 'c' (content).
std::string RecordKey(char kind, const std::string& record_id, uint32_t version);
std::string BE32(uint32_t v);

// The version header as documented in storage/records.h: 0x01, then four BE32-length-prefixed
// fields: epoch id, wrapped DEK, patient blind id, sealed metadata. Empty on a malformed header.
std::vector<std::string> ParseVersionHeader(std::string_view header);

}  // namespace phivault::e2e
