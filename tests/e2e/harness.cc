#include "tests/e2e/harness.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <thread>

#include <nlohmann/json.hpp>

#include "crypto/hash.h"
#include "crypto/secret.h"
#include "tests/testing/subprocess.h"

#ifndef PHIVAULT_DAEMON_FAKETIME_PATH
#define PHIVAULT_DAEMON_FAKETIME_PATH PHIVAULT_DAEMON_PATH
#endif

namespace phivault::e2e {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Room left in sun_path (108 bytes) for "/pv-XXXXXX/phivault.sock" and a margin.
constexpr size_t kMaxTempBaseLength = 60;
constexpr auto kStartTimeout = std::chrono::seconds(20);
constexpr auto kStopTimeout = std::chrono::seconds(40);

// posix_spawn with stdin/stdout/stderr redirected to files. -1 on failure (test failure added).
pid_t Spawn(std::vector<std::string> argv, const std::map<std::string, std::string>& env,
            const std::string& in_path, const std::string& out_path, const std::string& err_path) {
  std::string error;
  const pid_t pid =
      phivault::testing::SpawnRedirected(argv, env, in_path, out_path, err_path, &error);
  if (pid < 0) ADD_FAILURE() << "cannot spawn " << argv[0] << ": " << error;
  return pid;
}

// Waits for `pid` up to `timeout`. The exit code (-1 if killed by a signal), or nullopt if it is
// still running.
std::optional<int> WaitPid(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (r < 0 && errno != EINTR) return -1;
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::string ShellQuote(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

}  // namespace

ShortTempDir::ShortTempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string dir =
      base != nullptr && *base != '\0' && std::strlen(base) <= kMaxTempBaseLength ? base : "/tmp";
  std::string tmpl = dir + "/pv-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) std::abort();
  path_ = tmpl;
}

ShortTempDir::~ShortTempDir() {
  std::error_code ec;
  // master.key is 0400 inside a 0700 directory: removal needs only the directory's permissions.
  fs::remove_all(path_, ec);
}

ProcessResult RunProcess(const std::vector<std::string>& argv, const std::string& scratch_dir,
                         const std::map<std::string, std::string>& env, const std::string& input,
                         std::chrono::seconds timeout) {
  static int counter = 0;
  const std::string prefix = scratch_dir + "/run" + std::to_string(++counter);
  const std::string in_path = prefix + ".in", out_path = prefix + ".out",
                    err_path = prefix + ".err";
  WriteFile(in_path, input);
  ProcessResult result;
  const pid_t pid = Spawn(argv, env, in_path, out_path, err_path);
  if (pid > 0) {
    auto code = WaitPid(pid, timeout);
    if (!code.has_value()) {
      kill(pid, SIGKILL);
      WaitPid(pid, std::chrono::seconds(10));
      result.timed_out = true;
    } else {
      result.exit_code = *code;
    }
  }
  result.out = ReadFile(out_path);
  result.err = ReadFile(err_path);
  for (const auto& p : {in_path, out_path, err_path}) ::unlink(p.c_str());
  return result;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void WriteFile(const std::string& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  EXPECT_TRUE(out.good()) << "cannot write " << path;
}

std::string RandomHex(size_t bytes) { return crypto::HexEncode(crypto::RandomBytes(bytes)); }
std::string RandomBytes(size_t bytes) { return crypto::RandomBytes(bytes); }

std::vector<std::string> AllFiles(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) files.push_back(entry.path().string());
  }
  return files;
}

std::vector<std::string> FilesWithBytes(const std::string& dir, std::string_view needle,
                                        const std::vector<std::string>& exclude) {
  std::vector<std::string> hits;
  for (const auto& path : AllFiles(dir)) {
    if (std::find(exclude.begin(), exclude.end(), path) != exclude.end()) continue;
    if (ReadFile(path).find(needle) != std::string::npos) hits.push_back(path);
  }
  return hits;
}

DaemonProcess::~DaemonProcess() { Kill(); }

void DaemonProcess::Spawn(const std::string& config_path, const std::string& log_prefix,
                          const std::map<std::string, std::string>& env) {
  ASSERT_FALSE(running()) << "the daemon is already running";
  stderr_path_ = log_prefix + ".stderr";
  // libfaketime hangs a jemalloc process at start: a daemon run under it is the glibc build.
  const bool faketime = env.count("FAKETIME") > 0;
  pid_ = e2e::Spawn(
      {faketime ? PHIVAULT_DAEMON_FAKETIME_PATH : PHIVAULT_DAEMON_PATH, "--config", config_path},
      env, "/dev/null", log_prefix + ".stdout", stderr_path_);
}

std::optional<int> DaemonProcess::WaitExit(std::chrono::milliseconds timeout) {
  if (!running()) return exit_code_;
  auto code = WaitPid(pid_, timeout);
  if (!code.has_value()) return std::nullopt;
  pid_ = -1;
  exit_code_ = *code;
  return *code;
}

bool DaemonProcess::Exited() { return WaitExit(std::chrono::milliseconds(0)).has_value(); }

int DaemonProcess::Terminate(std::chrono::seconds timeout) {
  if (!running()) return exit_code_;
  kill(pid_, SIGTERM);
  if (auto code = WaitExit(timeout); code.has_value()) return *code;
  ADD_FAILURE() << "phivaultd did not stop within " << timeout.count() << " s of SIGTERM; killed";
  Kill();
  return -1;
}

void DaemonProcess::Kill() {
  if (!running()) return;
  kill(pid_, SIGKILL);
  WaitExit(std::chrono::seconds(10));
}

Vault::Vault() {
  ProcessResult init =
      RunProcess({PHIVAULT_CLI_PATH, "--json", "init", "--dir", dir_.path()}, scratch_.path());
  if (init.exit_code != 0) {
    ADD_FAILURE() << "phivault init failed (" << init.exit_code << "): " << init.err;
    return;
  }
  auto j = nlohmann::json::parse(init.out, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("token_file") || !j.contains("socket") ||
      !j.contains("config") || !j.contains("data_dir")) {
    ADD_FAILURE() << "unexpected output of phivault init: " << init.out;
    return;
  }
  // init never prints the token; it writes it (one line) to the 0600 token file.
  token_ = ReadFile(j["token_file"].get<std::string>());
  while (!token_.empty() && token_.back() == '\n') token_.pop_back();
  socket_ = j["socket"].get<std::string>();
  config_ = j["config"].get<std::string>();
  data_dir_ = j["data_dir"].get<std::string>();
  // A smaller reserve keeps the tests independent of how full the build machine's disk is; the
  // log file and debug level give the no-PHI-in-logs test the most lines to search.
  EditConfig("disk_reserve_bytes = 268435456", "disk_reserve_bytes = 16777216");
  EditConfig("level = \"info\"", "level = \"debug\"\nfile = \"" + log_file() + "\"");
  ok_ = !::testing::Test::HasFailure();
}

void Vault::EditConfig(std::string_view from, std::string_view to) {
  std::string text = ReadFile(config_);
  const size_t at = text.find(from);
  ASSERT_NE(at, std::string::npos) << "phivault.toml has no '" << from << "'";
  text.replace(at, from.size(), to);
  WriteFile(config_, text);
}

void Vault::AppendConfig(std::string_view text) {
  WriteFile(config_, ReadFile(config_) + "\n" + std::string(text));
}

void Vault::SpawnOnly() {
  daemon_.Spawn(config_, dir_.Sub("phivaultd-" + std::to_string(++starts_)), daemon_env_);
}

bool Vault::Start() {
  SpawnOnly();
  if (!daemon_.running()) return false;
  client::Client c(socket_);
  const auto deadline = Clock::now() + kStartTimeout;
  while (Clock::now() < deadline) {
    if (daemon_.Exited()) {
      ADD_FAILURE() << "phivaultd exited during start-up: " << ReadFile(daemon_.stderr_path());
      return false;
    }
    if (c.Health().ok()) return true;
    c.Disconnect();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "phivaultd did not answer /v1/health within " << kStartTimeout.count()
                << " s: " << ReadFile(daemon_.stderr_path());
  daemon_.Kill();
  return false;
}

void Vault::Stop() {
  const int code = daemon_.Terminate(kStopTimeout);
  EXPECT_EQ(code, 0) << "phivaultd did not stop cleanly: " << ReadFile(daemon_.stderr_path());
}

client::Client Vault::NewClient(std::string token) const {
  return client::Client(client::ClientOptions{.socket_path = socket_, .token = std::move(token)});
}

ProcessResult Vault::Cli(const std::vector<std::string>& args,
                         const std::map<std::string, std::string>& env, const std::string& input) {
  std::vector<std::string> argv = {PHIVAULT_CLI_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  std::map<std::string, std::string> full_env = env;
  full_env.emplace("PHIVAULT_SOCKET", socket_);
  return RunProcess(argv, scratch_.path(), full_env, input);
}

void VaultTest::SetUp() {
  ASSERT_TRUE(crypto::InitSodium().ok());
  ASSERT_TRUE(vault_.ok());
  if (StartInSetUp()) {
    ASSERT_TRUE(vault_.Start());
  }
}

void VaultTest::TearDown() {
  if (vault_.daemon().running()) vault_.Stop();
}

std::string VaultTest::StoreNote(const std::string& patient_id, const std::string& content) {
  client::Client c = vault_.AppClient();
  auto m = c.CreateRecord(Physician(), client::NewRecord{.patient_id = patient_id,
                                                         .category = "clinical_note",
                                                         .content_type = "text/plain",
                                                         .encounter_date = "2026-11-01",
                                                         .author = "Dr. Synthetic",
                                                         .content = content});
  EXPECT_TRUE(m.ok()) << (m.ok() ? "" : m.error().Message());
  return m.ok() ? m->record_id : "";
}

std::string VaultTest::ReadNote(const std::string& record_id) {
  client::Client c = vault_.AppClient();
  auto r = c.ReadRecord(Physician(), record_id);
  return r.ok() ? r->content : "<" + r.error().Message() + ">";
}

client::Actor Physician(std::string user) {
  return client::Actor{.user = std::move(user), .role = "physician", .purpose = "TREAT"};
}

std::optional<std::string> Curl(const std::string& socket, const std::vector<std::string>& args) {
  std::string command =
      "curl --silent --show-error --max-time 60 --unix-socket " + ShellQuote(socket);
  for (const auto& a : args) command += " " + ShellQuote(a);
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return std::nullopt;
  std::string out;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  const int status = ::pclose(pipe);
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::nullopt;
  return out;
}

std::unique_ptr<storage::Store> OpenStoreOrDie(const std::string& db_path) {
  storage::RocksStoreOptions options;
  options.path = db_path;
  options.reserve_bytes = 1 << 20;
  options.create_if_missing = false;
  auto store = storage::OpenRocksStore(options);
  if (!store.ok()) {
    ADD_FAILURE() << "cannot open the daemon's store: " << store.status().ToString();
    return nullptr;
  }
  return std::move(store).value();
}

std::string BE32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

std::string RecordKey(char kind, const std::string& record_id, uint32_t version) {
  auto raw = crypto::Base64UrlDecode(record_id);
  EXPECT_TRUE(raw.ok() && raw->size() == 16) << "not a record id: " << record_id;
  return std::string(1, kind) + (raw.ok() ? *raw : std::string()) + BE32(version);
}

std::vector<std::string> ParseVersionHeader(std::string_view in) {
  std::vector<std::string> fields;
  if (in.empty() || in[0] != '\x01') return {};
  in.remove_prefix(1);
  while (!in.empty()) {
    if (in.size() < 4) return {};
    uint32_t n = 0;
    for (size_t i = 0; i < 4; ++i) n = n << 8 | static_cast<uint8_t>(in[i]);
    if (in.size() - 4 < n) return {};
    fields.emplace_back(in.substr(4, n));
    in.remove_prefix(4 + n);
  }
  if (fields.size() != 4) return {};
  return fields;
}

}  // namespace phivault::e2e
