// phivault_crash_harness: kills the real phivaultd with SIGKILL at random moments while clients
// create, amend, read and disclose records of synthetic patients, and checks after every restart
// that nothing acknowledged was lost and nothing unacknowledged is half-visible.
//
// Each client thread has its own connection (tools/client.h) and its own records, so the history
// of a record is linear and known exactly: every acknowledged operation is logged (record id,
// version, SHA-256 of the exact content bytes, request id). A request that got no answer when the
// daemon died is "in flight"; after the restart it must resolve completely one way or the other:
// a create is either absent or readable with exactly its bytes (and audited), an amendment either
// is the next version, whole, or does not exist, and version lists have no holes.
//
// After each restart the harness also exports the whole audit log, verifies it offline
// (storage/audit_verify.h; consistent with the previous cycle's checkpoint, so no earlier entry
// can have vanished) and finds the entry of every operation acknowledged in the cycle by its
// request id, action and record@version.
//
// Exit code: 0 if every cycle passed, 1 if a check failed (the violations are printed and in the
// --json summary), 2 on bad options or when the vault cannot be set up or restarted.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "crypto/hash.h"
#include "crypto/secret.h"
#include "crypto/signing.h"
#include "storage/audit_verify.h"
#include "tools/client.h"

extern char** environ;

namespace phivault::crash {
namespace {

// The running daemon, for the signal handler: a harness stopped by SIGTERM or ^C must not leave
// its phivaultd behind.
std::atomic<pid_t> g_daemon_pid{-1};

void OnTerminate(int) {
  const pid_t pid = g_daemon_pid.load();
  if (pid > 0) kill(pid, SIGKILL);
  _exit(2);
}

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr auto kStartTimeout = std::chrono::seconds(60);
constexpr auto kStopTimeout = std::chrono::seconds(60);
constexpr int kPatientsPerClient = 4;
// Records of earlier cycles re-read after each restart besides those the cycle touched (all of
// them are read after the last cycle).
constexpr size_t kSampledOlderRecords = 16;
// The whole audit log is exported and verified after the first cycle, every tenth and the last;
// after the others, only the cycle's entries, each with its inclusion proof, and a consistency
// proof from the previous cycle's checkpoint (so a long run is not quadratic in the log's size).
constexpr int kFullAuditEvery = 10;

struct Options {
  int cycles = 10;
  std::optional<uint64_t> seed;
  int clients = 4;
  int min_ms = 200;
  int max_ms = 1500;
  bool json = false;
  std::string dir;
  bool keep = false;
  std::string daemon_path = PHIVAULT_DAEMON_PATH;
  std::string cli_path = PHIVAULT_CLI_PATH;
  bool selftest_corrupt_log = false;
};

enum class OpKind { kCreate, kAmend, kRead, kDisclose };
constexpr OpKind kAllKinds[] = {OpKind::kCreate, OpKind::kAmend, OpKind::kRead, OpKind::kDisclose};

std::string_view KindName(OpKind k) {
  switch (k) {
    case OpKind::kCreate:
      return "create";
    case OpKind::kAmend:
      return "amend";
    case OpKind::kRead:
      return "read";
    case OpKind::kDisclose:
      return "disclose";
  }
  return "?";
}

std::string ActionOf(OpKind k) { return "record." + std::string(KindName(k)); }

// RFC 3339 UTC to the second, as the audit export's `from` takes it.
std::string Rfc3339(std::chrono::system_clock::time_point t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// The tree size of a signed checkpoint note (its second line), 0 if it has none.
uint64_t CheckpointSize(const std::string& note) {
  const size_t first = note.find('\n');
  if (first == std::string::npos) return 0;
  const size_t second = note.find('\n', first + 1);
  if (second == std::string::npos) return 0;
  return std::strtoull(note.substr(first + 1, second - first - 1).c_str(), nullptr, 10);
}

std::string HashHex(std::string_view bytes) {
  return crypto::HexEncode(crypto::AsView(crypto::Sha256(bytes)));
}

// One request as the client saw it.
struct Op {
  OpKind kind = OpKind::kRead;
  std::string request_id;
  std::string record_id;  // known before the request, except for a create (from its answer)
  uint32_t version = 0;   // the version created or read (0 while unknown)
  std::string patient;
  std::string content_hash;  // of the bytes sent (create, amend) or expected (read, disclose)
  int cycle = 0;
};

// A record as acknowledged to its client: hashes[v - 1] is version v's content hash.
struct RecordState {
  std::string id;
  std::string patient;
  std::vector<std::string> hashes;
  int touched_cycle = 0;  // last cycle in which it was created or an amendment of it was sent
};

struct ClientState {
  int index = 0;
  std::mt19937_64 rng;
  std::vector<RecordState> records;
  std::vector<Op> acked;  // acknowledged this cycle (checked against the audit log, then cleared)
  std::optional<Op> in_flight;       // sent, no answer (the daemon died)
  std::vector<std::string> refused;  // answered with an error: a violation
  std::vector<std::string> violations;
  std::set<std::string> patients_touched;
  uint64_t next_op = 0;
};

struct Summary {
  uint64_t seed = 0;
  int cycles_requested = 0;
  int cycles_survived = 0;
  std::map<std::string, uint64_t> acked_by_kind;
  uint64_t acked_ops_checked = 0;             // acknowledged ops whose audit entry was found
  std::atomic<uint64_t> versions_checked{0};  // versions read back and compared after restarts
  uint64_t records = 0;
  uint64_t audit_entries_verified = 0;  // entries of the last full export
  uint64_t audit_full_exports = 0;      // whole-log exports verified
  uint64_t audit_cycle_exports = 0;     // exports of one cycle's entries (proofs) verified
  // "<kind>" -> {"applied"|"absent"|"audited"|"not_audited" -> count}
  std::map<std::string, std::map<std::string, uint64_t>> unacknowledged;
  std::vector<int> kill_after_ms;
  std::vector<std::string> violations;
  double wall_seconds = 0;
};

client::Actor Clinician(int client_index, std::string request_id) {
  return client::Actor{.user = "dr.crash." + std::to_string(client_index),
                       .role = "physician",
                       .purpose = "TREAT",
                       .request_id = std::move(request_id)};
}

client::Actor Checker() {
  return client::Actor{.user = "crash.checker", .role = "physician", .purpose = "TREAT"};
}

client::Actor Officer() {
  return client::Actor{.user = "officer.crash", .role = "compliance_officer", .purpose = "HCOMPL"};
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

bool WriteWholeFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  return out.good();
}

// The caller's environment minus what would change how a phivault binary behaves.
std::vector<std::string> ChildEnvironment() {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    bool drop = false;
    for (std::string_view prefix : {"PHIVAULT_", "LISTEN_FDS=", "LISTEN_PID=", "LISTEN_FDNAMES=",
                                    "NOTIFY_SOCKET=", "CREDENTIALS_DIRECTORY="}) {
      drop |= entry.rfind(prefix, 0) == 0;
    }
    if (!drop) env.emplace_back(entry);
  }
  return env;
}

// posix_spawn with stdin from /dev/null and stdout/stderr to files. -1 on failure.
pid_t Spawn(const std::vector<std::string>& args, const std::string& out_path,
            const std::string& err_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  std::vector<std::string> env = ChildEnvironment();
  std::vector<char*> argv, envp;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, args[0].c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    std::cerr << "cannot start " << args[0] << ": " << std::strerror(rc) << "\n";
    return -1;
  }
  return pid;
}

// Exit code of `pid` (-1 if a signal ended it), nullopt if it still runs after `timeout`.
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

class Harness {
 public:
  explicit Harness(Options options) : o_(std::move(options)) {}
  ~Harness() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      WaitPid(pid_, std::chrono::seconds(10));
    }
  }

  // 0, 1 or 2 as documented at the top of the file.
  int Run() {
    const auto start = Clock::now();
    s_.seed = o_.seed.value_or(std::random_device{}());
    s_.cycles_requested = o_.cycles;
    std::cerr << "crash harness seed: " << s_.seed << " (rerun with --seed " << s_.seed << ")\n";
    rng_.seed(s_.seed);
    if (!SetUpVault() || !StartDaemon()) return Finish(start, 2);
    auto key = client::Client(NewOptions()).AuditVerifierKey(Officer());
    if (!key.ok()) {
      std::cerr << "cannot fetch the audit verifier key: " << key.error().Message() << "\n";
      return Finish(start, 2);
    }
    verifier_key_ = *key;
    clients_.resize(static_cast<size_t>(o_.clients));
    for (int t = 0; t < o_.clients; ++t) {
      clients_[static_cast<size_t>(t)].index = t;
      clients_[static_cast<size_t>(t)].rng.seed(s_.seed * 1000003u + static_cast<uint64_t>(t));
    }
    for (int cycle = 1; cycle <= o_.cycles; ++cycle) {
      if (!RunCycle(cycle)) return Finish(start, 2);
      if (o_.selftest_corrupt_log && cycle == 1) CorruptLog();
      Check(cycle, /*all_records=*/cycle == o_.cycles);
      if (!s_.violations.empty()) {
        std::cerr << "cycle " << cycle << ": " << s_.violations.size() << " violation(s)\n";
        return Finish(start, 1);
      }
      s_.cycles_survived = cycle;
      std::cerr << "cycle " << cycle << "/" << o_.cycles << ": killed after "
                << s_.kill_after_ms.back() << " ms; checks passed\n";
    }
    if (!StopDaemon()) return Finish(start, 1);
    return Finish(start, 0);
  }

 private:
  client::ClientOptions NewOptions() const {
    return client::ClientOptions{
        .socket_path = socket_, .token = token_, .timeout = std::chrono::milliseconds(120000)};
  }

  void Violation(std::string what) {
    std::lock_guard<std::mutex> lock(violations_mu_);
    std::cerr << "VIOLATION: " << what << "\n";
    s_.violations.push_back(std::move(what));
  }

  bool SetUpVault() {
    if (o_.dir.empty()) {
      std::string tmpl = "/tmp/pvcrash-XXXXXX";
      if (mkdtemp(tmpl.data()) == nullptr) {
        std::cerr << "cannot create a temporary directory: " << std::strerror(errno) << "\n";
        return false;
      }
      dir_ = tmpl;
      remove_dir_ = !o_.keep;
    } else {
      dir_ = o_.dir;
      std::error_code ec;
      if (fs::exists(dir_ + "/vault", ec)) {
        std::cerr << dir_ << "/vault already exists: give an empty --dir\n";
        return false;
      }
      fs::create_directories(dir_, ec);
    }
    const std::string out = dir_ + "/init.out", err = dir_ + "/init.err";
    const pid_t pid = Spawn({o_.cli_path, "--json", "init", "--dir", dir_ + "/vault"}, out, err);
    if (pid < 0) return false;
    const auto code = WaitPid(pid, std::chrono::seconds(120));
    if (code != 0) {
      std::cerr << "phivault init failed: " << ReadWholeFile(err) << "\n";
      return false;
    }
    const json j = json::parse(ReadWholeFile(out), nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("token_file") || !j.contains("socket") ||
        !j.contains("config")) {
      std::cerr << "unexpected output of phivault init\n";
      return false;
    }
    token_ = ReadWholeFile(j["token_file"].get<std::string>());
    while (!token_.empty() && token_.back() == '\n') token_.pop_back();
    socket_ = j["socket"].get<std::string>();
    config_ = j["config"].get<std::string>();
    // A checkpoint signed every second lands between entries being appended when the kill
    // comes; a small disk reserve keeps the run independent of how full the machine's disk is.
    std::string text = ReadWholeFile(config_);
    const std::string reserve = "disk_reserve_bytes = 268435456";
    if (const size_t at = text.find(reserve); at != std::string::npos) {
      text.replace(at, reserve.size(), "disk_reserve_bytes = 16777216");
    }
    text = "audit_checkpoint_interval_seconds = 1\n" + text;
    return WriteWholeFile(config_, text);
  }

  bool StartDaemon() {
    ++starts_;
    const std::string prefix = dir_ + "/phivaultd-" + std::to_string(starts_);
    daemon_stderr_ = prefix + ".stderr";
    pid_ = Spawn({o_.daemon_path, "--config", config_}, prefix + ".stdout", daemon_stderr_);
    if (pid_ < 0) return false;
    g_daemon_pid.store(pid_);
    client::Client c(socket_);
    const auto deadline = Clock::now() + kStartTimeout;
    while (Clock::now() < deadline) {
      if (auto code = WaitPid(pid_, std::chrono::milliseconds(0)); code.has_value()) {
        pid_ = -1;
        g_daemon_pid.store(-1);
        std::cerr << "phivaultd exited during start " << starts_ << " (" << *code
                  << "): " << ReadWholeFile(daemon_stderr_) << "\n";
        return false;
      }
      if (c.Health().ok()) return true;
      c.Disconnect();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::cerr << "phivaultd did not answer /v1/health within " << kStartTimeout.count()
              << " s of start " << starts_ << "\n";
    return false;
  }

  bool StopDaemon() {
    kill(pid_, SIGTERM);
    const auto code = WaitPid(pid_, kStopTimeout);
    if (!code.has_value()) {
      Violation("phivaultd did not stop within " + std::to_string(kStopTimeout.count()) +
                " s of SIGTERM after the last cycle");
      return false;
    }
    pid_ = -1;
    g_daemon_pid.store(-1);
    if (*code != 0) {
      Violation("phivaultd exited with " + std::to_string(*code) + " on SIGTERM");
      return false;
    }
    return true;
  }

  // Load, SIGKILL after a random delay, restart on the same data directory.
  bool RunCycle(int cycle) {
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    cycle_start_ = std::chrono::system_clock::now();
    for (auto& c : clients_) {
      c.acked.clear();
      c.in_flight.reset();
      c.patients_touched.clear();
      threads.emplace_back([this, &c, &stop, cycle] { Load(c, cycle, stop); });
    }
    std::uniform_int_distribution<int> delay(o_.min_ms, o_.max_ms);
    const int ms = delay(rng_);
    s_.kill_after_ms.push_back(ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    kill(pid_, SIGKILL);
    const auto code = WaitPid(pid_, std::chrono::seconds(30));
    pid_ = -1;
    g_daemon_pid.store(-1);
    stop.store(true);
    for (auto& th : threads) th.join();
    if (!code.has_value()) {
      std::cerr << "phivaultd did not die from SIGKILL\n";
      return false;
    }
    for (auto& c : clients_) {
      for (auto& v : c.violations) Violation(std::move(v));
      c.violations.clear();
      for (auto& r : c.refused) Violation("answered with an error under load: " + r);
      c.refused.clear();
      for (const auto& op : c.acked) ++s_.acked_by_kind[std::string(KindName(op.kind))];
    }
    return StartDaemon();
  }

  // One client's load until the daemon dies (its first request without an answer) or `stop`.
  void Load(ClientState& c, int cycle, const std::atomic<bool>& stop) {
    client::Client conn(NewOptions());
    std::uniform_int_distribution<int> pick(0, 99);
    std::uniform_int_distribution<size_t> size(16, 4096);
    while (!stop.load()) {
      const int p = pick(c.rng);
      OpKind kind = p < 30   ? OpKind::kCreate
                    : p < 55 ? OpKind::kAmend
                    : p < 85 ? OpKind::kRead
                             : OpKind::kDisclose;
      if (c.records.empty()) kind = OpKind::kCreate;
      Op op;
      op.kind = kind;
      op.cycle = cycle;
      op.request_id = "crash-c" + std::to_string(cycle) + "-t" + std::to_string(c.index) + "-n" +
                      std::to_string(c.next_op++);
      RecordState* rec = nullptr;
      std::string content;
      if (kind == OpKind::kCreate) {
        op.patient = "synthetic-crash-patient-" + std::to_string(c.index) + "-" +
                     std::to_string(pick(c.rng) % kPatientsPerClient);
        content = SyntheticContent(c, op, size(c.rng));
        op.version = 1;
      } else {
        std::uniform_int_distribution<size_t> which(0, c.records.size() - 1);
        rec = &c.records[which(c.rng)];
        op.record_id = rec->id;
        op.patient = rec->patient;
        if (kind == OpKind::kAmend) {
          content = SyntheticContent(c, op, size(c.rng));
          op.version = static_cast<uint32_t>(rec->hashes.size() + 1);
        } else {
          std::uniform_int_distribution<size_t> v(1, rec->hashes.size());
          op.version = static_cast<uint32_t>(v(c.rng));
          op.content_hash = rec->hashes[op.version - 1];
        }
        if (kind == OpKind::kAmend) rec->touched_cycle = cycle;
      }
      if (!content.empty()) op.content_hash = HashHex(content);
      c.patients_touched.insert(op.patient);
      const client::Actor actor = Clinician(c.index, op.request_id);

      std::optional<client::Error> error;
      std::string got_hash;
      switch (kind) {
        case OpKind::kCreate: {
          auto m =
              conn.CreateRecord(actor, client::NewRecord{.patient_id = op.patient,
                                                         .category = "clinical_note",
                                                         .content_type = "application/octet-stream",
                                                         .encounter_date = "2026-11-01",
                                                         .author = "dr.synthetic",
                                                         .content = content});
          if (!m.ok()) {
            error = m.error();
            break;
          }
          op.record_id = m->record_id;
          if (m->version != 1) {
            c.violations.push_back(op.request_id + ": create answered version " +
                                   std::to_string(m->version));
          }
          c.records.push_back(RecordState{.id = op.record_id,
                                          .patient = op.patient,
                                          .hashes = {op.content_hash},
                                          .touched_cycle = cycle});
          break;
        }
        case OpKind::kAmend: {
          auto m = conn.AmendRecord(
              actor, op.record_id,
              client::Amendment{.reason = "synthetic correction", .content = content});
          if (!m.ok()) {
            error = m.error();
            break;
          }
          if (m->version != op.version) {
            c.violations.push_back(op.request_id + ": amendment of " + op.record_id +
                                   " answered version " + std::to_string(m->version) +
                                   ", expected " + std::to_string(op.version));
          }
          rec->hashes.push_back(op.content_hash);
          break;
        }
        case OpKind::kRead: {
          auto r = conn.ReadContent(actor, op.record_id, op.version);
          if (!r.ok()) {
            error = r.error();
            break;
          }
          got_hash = HashHex(r->bytes);
          break;
        }
        case OpKind::kDisclose: {
          auto r = conn.DiscloseRecord(
              actor, op.record_id, op.version,
              client::Disclosure{
                  .recipient_name = "Synthetic Referral Clinic " + std::to_string(c.index),
                  .description = "synthetic crash-harness note"});
          if (!r.ok()) {
            error = r.error();
            break;
          }
          got_hash = HashHex(r->content);
          break;
        }
      }
      if (error.has_value()) {
        if (error->kind == client::ErrorKind::kUnavailable && error->http_status == 0) {
          c.in_flight = std::move(op);
          return;
        }
        c.refused.push_back(op.request_id + " (" + std::string(KindName(kind)) + " " +
                            op.record_id + "): " + error->Message());
        return;
      }
      if ((kind == OpKind::kRead || kind == OpKind::kDisclose) && got_hash != op.content_hash) {
        c.violations.push_back(op.request_id + ": " + std::string(KindName(kind)) + " of " +
                               op.record_id + "@" + std::to_string(op.version) +
                               " returned other bytes than were acknowledged");
      }
      c.acked.push_back(std::move(op));
    }
  }

  // Unique, partly binary bytes: a text line naming the operation, then random bytes.
  static std::string SyntheticContent(ClientState& c, const Op& op, size_t random_bytes) {
    std::string s = "synthetic crash-harness note " + op.request_id + "\n";
    std::uniform_int_distribution<int> byte(0, 255);
    for (size_t i = 0; i < random_bytes; ++i) s.push_back(static_cast<char>(byte(c.rng)));
    return s;
  }

  // Self-test: the log now claims what never happened, which the checks must catch.
  void CorruptLog() {
    for (auto& c : clients_) {
      for (auto& r : c.records) {
        if (c.in_flight.has_value() && c.in_flight->record_id == r.id) continue;
        r.hashes[0] = HashHex("bytes that were never sent");
        r.touched_cycle = 1;
        c.acked.push_back(Op{.kind = OpKind::kRead,
                             .request_id = "crash-fabricated-read",
                             .record_id = r.id,
                             .version = 1,
                             .patient = r.patient,
                             .cycle = 1});
        std::cerr << "self-test: corrupted the log of " << r.id << "\n";
        return;
      }
    }
  }

  // The checks after the restart of `cycle`.
  void Check(int cycle, bool all_records) {
    client::Client conn(NewOptions());
    std::vector<Op> applied;  // in-flight creates and amendments that turned out to be stored
    for (auto& c : clients_) {
      if (c.in_flight.has_value()) ResolveInFlight(conn, c, &applied);
    }
    for (auto& c : clients_) {
      for (const auto& patient : c.patients_touched) CheckPatient(conn, c, patient);
    }
    std::vector<const RecordState*> to_read;
    std::vector<const RecordState*> older;
    for (const auto& c : clients_) {
      for (const auto& r : c.records) {
        (all_records || r.touched_cycle == cycle ? to_read : older).push_back(&r);
      }
    }
    std::shuffle(older.begin(), older.end(), rng_);
    if (older.size() > kSampledOlderRecords) older.resize(kSampledOlderRecords);
    to_read.insert(to_read.end(), older.begin(), older.end());
    // One checker connection per client: each read is audited, and the daemon syncs concurrent
    // audit entries together.
    std::vector<std::thread> checkers;
    for (size_t t = 0; t < clients_.size(); ++t) {
      checkers.emplace_back([this, t, &to_read] {
        client::Client own(NewOptions());
        for (size_t i = t; i < to_read.size(); i += clients_.size()) CheckRecord(own, *to_read[i]);
      });
    }
    for (auto& th : checkers) th.join();
    s_.records = 0;
    for (const auto& c : clients_) s_.records += c.records.size();
    CheckAudit(conn, cycle, applied);
  }

  // Decides what became of the client's request that got no answer, and folds a stored create
  // or amendment into the client's records.
  void ResolveInFlight(client::Client& conn, ClientState& c, std::vector<Op>* applied) {
    Op& op = *c.in_flight;
    auto& counts = s_.unacknowledged[std::string(KindName(op.kind))];
    if (op.kind == OpKind::kRead || op.kind == OpKind::kDisclose) {
      in_flight_reads_.push_back(op);
      return;  // counted as audited or not once the audit log is read
    }
    if (op.kind == OpKind::kAmend) {
      auto it = std::find_if(c.records.begin(), c.records.end(),
                             [&](const RecordState& r) { return r.id == op.record_id; });
      if (it == c.records.end()) std::abort();  // amendments are sent for known records only
      auto m = conn.ReadMetadata(Checker(), op.record_id);
      if (!m.ok()) {
        Violation("record " + op.record_id +
                  " cannot be read after the restart: " + m.error().Message());
        return;
      }
      if (m->version == op.version) {
        auto r = conn.ReadContent(Checker(), op.record_id, op.version);
        if (!r.ok() || HashHex(r->bytes) != op.content_hash) {
          Violation("unacknowledged amendment " + op.request_id + " is half-visible: " +
                    op.record_id + "@" + std::to_string(op.version) + " exists with " +
                    (r.ok() ? "other bytes" : "unreadable content: " + r.error().Message()));
          return;
        }
        it->hashes.push_back(op.content_hash);
        ++counts["applied"];
        applied->push_back(op);
      } else if (m->version + 1 == op.version) {
        ++counts["absent"];
      } else {
        Violation("record " + op.record_id + " is at version " + std::to_string(m->version) +
                  " after the restart; acknowledged " + std::to_string(op.version - 1));
      }
      return;
    }
    // A create: its record id is unknown, so look among the patient's records for one the
    // client never heard of.
    auto found = conn.SearchPatient(Checker(), op.patient);
    if (!found.ok()) {
      Violation("cannot list the records of " + op.patient + ": " + found.error().Message());
      return;
    }
    std::set<std::string> known;
    for (const auto& r : c.records) known.insert(r.id);
    std::vector<std::string> unknown;
    for (const auto& m : *found) {
      if (known.count(m.record_id) == 0) unknown.push_back(m.record_id);
    }
    if (unknown.empty()) {
      ++counts["absent"];
      return;
    }
    if (unknown.size() > 1) {
      Violation(std::to_string(unknown.size()) + " records of " + op.patient +
                " were never acknowledged, only one create was in flight");
      return;
    }
    op.record_id = unknown[0];
    auto m = conn.ReadMetadata(Checker(), op.record_id);
    auto r = conn.ReadContent(Checker(), op.record_id, 1);
    if (!m.ok() || m->version != 1 || !r.ok() || HashHex(r->bytes) != op.content_hash) {
      Violation("unacknowledged create " + op.request_id + " is half-visible as " + op.record_id +
                (r.ok() ? " (other bytes or versions)" : ": " + r.error().Message()));
      return;
    }
    c.records.push_back(RecordState{.id = op.record_id,
                                    .patient = op.patient,
                                    .hashes = {op.content_hash},
                                    .touched_cycle = op.cycle});
    ++counts["applied"];
    applied->push_back(op);
  }

  // The patient's records as the daemon lists them are exactly the client's, at their latest
  // acknowledged versions: no acknowledged record lost from the index, no stray one.
  void CheckPatient(client::Client& conn, const ClientState& c, const std::string& patient) {
    auto found = conn.SearchPatient(Checker(), patient);
    if (!found.ok()) {
      Violation("cannot list the records of " + patient + ": " + found.error().Message());
      return;
    }
    std::map<std::string, uint32_t> listed;
    for (const auto& m : *found) listed[m.record_id] = m.version;
    std::map<std::string, uint32_t> expected;
    for (const auto& r : c.records) {
      if (r.patient == patient) expected[r.id] = static_cast<uint32_t>(r.hashes.size());
    }
    if (listed != expected) {
      std::string detail;
      for (const auto& [id, v] : expected) {
        auto it = listed.find(id);
        if (it == listed.end()) detail += " missing " + id;
        if (it != listed.end() && it->second != v) {
          detail += " " + id + " listed at version " + std::to_string(it->second) +
                    " (acknowledged " + std::to_string(v) + ")";
        }
      }
      for (const auto& [id, v] : listed) {
        if (expected.count(id) == 0) detail += " unexpected " + id + "@" + std::to_string(v);
      }
      Violation("the records listed for " + patient +
                " differ from the acknowledged ones:" + detail);
    }
  }

  // Every version of the record, 1..latest, reads back with exactly the acknowledged bytes.
  void CheckRecord(client::Client& conn, const RecordState& r) {
    auto m = conn.ReadMetadata(Checker(), r.id);
    if (!m.ok()) {
      Violation("acknowledged record " + r.id + " cannot be read: " + m.error().Message());
      return;
    }
    if (m->version != r.hashes.size()) {
      Violation("record " + r.id + " is at version " + std::to_string(m->version) +
                ", acknowledged " + std::to_string(r.hashes.size()));
    }
    for (uint32_t v = 1; v <= r.hashes.size(); ++v) {
      auto got = conn.ReadContent(Checker(), r.id, v);
      ++s_.versions_checked;
      if (!got.ok()) {
        Violation("acknowledged version " + r.id + "@" + std::to_string(v) +
                  " cannot be read: " + got.error().Message());
      } else if (HashHex(got->bytes) != r.hashes[v - 1]) {
        Violation("acknowledged version " + r.id + "@" + std::to_string(v) +
                  " reads back with other bytes");
      }
    }
  }

  struct AuditSeen {
    std::string action;
    std::string outcome;
    std::vector<std::string> records;
  };

  // Exports and verifies the whole log (consistent with the previous cycle's checkpoint), then
  // finds the entry of each acknowledged (or applied) operation of the cycle.
  void CheckAudit(client::Client& conn, int cycle, const std::vector<Op>& applied) {
    const std::string path = dir_ + "/audit-" + std::to_string(cycle) + ".jsonl";
    const bool full =
        trusted_checkpoint_.empty() || cycle == o_.cycles || cycle % kFullAuditEvery == 0;
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      client::AuditExportQuery query;
      if (!full) {
        // Entry times are whole microseconds of the same clock; a margin for the rounding.
        query.from = Rfc3339(cycle_start_ - std::chrono::seconds(2));
        query.trusted_sizes = {CheckpointSize(trusted_checkpoint_)};
      }
      auto exported = conn.ExportAudit(Officer(), query, out);
      if (!exported.ok()) {
        Violation("cannot export the audit log: " + exported.error().Message());
        return;
      }
    }
    auto verifier = crypto::ParseNoteVerifierKey(verifier_key_);
    if (!verifier.ok()) {
      Violation("the daemon's verifier key does not parse: " + verifier.status().ToString());
      return;
    }
    storage::AuditVerifyOptions options;
    if (!trusted_checkpoint_.empty()) {
      options.trusted.push_back({.name = "checkpoint of cycle " + std::to_string(cycle - 1),
                                 .note = trusted_checkpoint_});
    }
    {
      std::ifstream in(path, std::ios::binary);
      auto report = storage::VerifyAuditExport(in, *verifier, options);
      if (!report.ok()) {
        Violation("cannot verify the audit export: " + report.status().ToString());
        return;
      }
      if (!report->ok) {
        Violation("the audit log does not verify after the restart: " +
                  (report->problem ? report->problem->message : std::string("?")));
        return;
      }
      if (report->filtered == full) {
        Violation(std::string("the audit export is ") + (full ? "" : "not ") +
                  "filtered, contrary to the request");
        return;
      }
      if (full) {
        s_.audit_entries_verified = report->entries_checked;
        ++s_.audit_full_exports;
      } else {
        ++s_.audit_cycle_exports;
      }
    }
    std::unordered_map<std::string, std::vector<AuditSeen>> by_request;
    std::ifstream in(path, std::ios::binary);
    for (std::string line; std::getline(in, line);) {
      const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!j.is_object()) continue;
      const std::string type = j.value("type", "");
      if (type == "checkpoint") trusted_checkpoint_ = j.value("note", "");
      if (type != "entry") continue;
      const json e = json::parse(j.value("entry", ""), nullptr, /*allow_exceptions=*/false);
      if (!e.is_object()) continue;
      AuditSeen seen{.action = e.value("action", ""), .outcome = e.value("outcome", "")};
      if (e.contains("records") && e["records"].is_array()) {
        for (const auto& r : e["records"]) {
          if (r.is_string()) seen.records.push_back(r.get<std::string>());
        }
      }
      by_request[e.value("request_id", "")].push_back(std::move(seen));
    }
    in.close();
    if (!o_.keep) fs::remove(path);

    auto audited = [&](const Op& op) {
      auto it = by_request.find(op.request_id);
      if (it == by_request.end()) return false;
      const std::string want = op.record_id + "@" + std::to_string(op.version);
      for (const auto& seen : it->second) {
        if (seen.action == ActionOf(op.kind) && seen.outcome == "success" &&
            std::find(seen.records.begin(), seen.records.end(), want) != seen.records.end()) {
          return true;
        }
      }
      return false;
    };
    for (const auto& c : clients_) {
      for (const auto& op : c.acked) {
        if (audited(op)) {
          ++s_.acked_ops_checked;
        } else {
          Violation("no audit entry for acknowledged " + std::string(KindName(op.kind)) + " " +
                    op.request_id + " of " + op.record_id + "@" + std::to_string(op.version));
        }
      }
    }
    for (const auto& op : applied) {
      if (!audited(op)) {
        Violation("unacknowledged " + std::string(KindName(op.kind)) + " " + op.request_id +
                  " is stored as " + op.record_id + "@" + std::to_string(op.version) +
                  " without its audit entry");
      }
    }
    for (const auto& op : in_flight_reads_) {
      ++s_.unacknowledged[std::string(KindName(op.kind))][audited(op) ? "audited" : "not_audited"];
    }
    in_flight_reads_.clear();
  }

  int Finish(Clock::time_point start, int code) {
    s_.wall_seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      WaitPid(pid_, std::chrono::seconds(10));
      pid_ = -1;
      g_daemon_pid.store(-1);
    }
    if (o_.json) std::cout << SummaryJson().dump(2) << "\n";
    std::cerr << "crash harness: " << s_.cycles_survived << "/" << s_.cycles_requested
              << " cycles survived, " << s_.acked_ops_checked << " acknowledged ops checked, "
              << s_.versions_checked << " versions read back, " << s_.violations.size()
              << " violation(s), " << s_.wall_seconds << " s; seed " << s_.seed << "\n";
    if (code == 0 && remove_dir_) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    } else if (!dir_.empty()) {
      std::cerr << "vault and daemon logs kept in " << dir_ << "\n";
    }
    return code;
  }

  json SummaryJson() const {
    json unacked = json::object();
    for (OpKind k : kAllKinds) {
      json counts = json::object();
      const bool writes = k == OpKind::kCreate || k == OpKind::kAmend;
      for (const char* outcome : writes ? std::vector<const char*>{"applied", "absent"}
                                        : std::vector<const char*>{"audited", "not_audited"}) {
        uint64_t n = 0;
        if (auto it = s_.unacknowledged.find(std::string(KindName(k)));
            it != s_.unacknowledged.end()) {
          if (auto jt = it->second.find(outcome); jt != it->second.end()) n = jt->second;
        }
        counts[outcome] = n;
      }
      unacked[std::string(KindName(k))] = counts;
    }
    json acked = json::object();
    for (OpKind k : kAllKinds) {
      auto it = s_.acked_by_kind.find(std::string(KindName(k)));
      acked[std::string(KindName(k))] = it == s_.acked_by_kind.end() ? 0 : it->second;
    }
    return json{{"seed", s_.seed},
                {"cycles_requested", s_.cycles_requested},
                {"cycles_survived", s_.cycles_survived},
                {"clients", o_.clients},
                {"kill_after_ms", s_.kill_after_ms},
                {"acknowledged", acked},
                {"acknowledged_ops_checked", s_.acked_ops_checked},
                {"versions_checked", s_.versions_checked.load()},
                {"records", s_.records},
                {"audit_entries_verified", s_.audit_entries_verified},
                {"audit_full_exports", s_.audit_full_exports},
                {"audit_cycle_exports", s_.audit_cycle_exports},
                {"unacknowledged", unacked},
                {"violations", s_.violations},
                {"wall_seconds", s_.wall_seconds}};
  }

  Options o_;
  Summary s_;
  std::mt19937_64 rng_;
  std::string dir_;
  bool remove_dir_ = false;
  std::string token_, socket_, config_, daemon_stderr_;
  pid_t pid_ = -1;
  int starts_ = 0;
  std::string verifier_key_;
  std::string trusted_checkpoint_;  // the last checkpoint of the previous cycle's export
  std::chrono::system_clock::time_point cycle_start_;
  std::vector<ClientState> clients_;
  std::vector<Op> in_flight_reads_;
  std::mutex violations_mu_;  // Violation() is called from the checker threads
};

}  // namespace
}  // namespace phivault::crash

int main(int argc, char** argv) {
  phivault::crash::Options o;
  CLI::App app{
      "Kills phivaultd with SIGKILL at random moments under load and checks after each restart "
      "that every acknowledged operation survived, nothing unacknowledged is half-visible, and "
      "the audit log verifies and records every acknowledged operation."};
  app.add_option("--cycles", o.cycles, "kill/restart cycles")->check(CLI::Range(1, 100000));
  app.add_option("--seed", o.seed, "seed of the random choices (printed; default: random)");
  app.add_option("--clients", o.clients, "client threads, one connection each")
      ->check(CLI::Range(1, 64));
  app.add_option("--min-ms", o.min_ms, "shortest load before a kill, in ms")
      ->check(CLI::Range(1, 3600000));
  app.add_option("--max-ms", o.max_ms, "longest load before a kill, in ms")
      ->check(CLI::Range(1, 3600000));
  app.add_flag("--json", o.json, "print a JSON summary on standard output");
  app.add_option("--dir", o.dir, "empty directory for the vault (default: a new one under /tmp)");
  app.add_flag("--keep", o.keep, "keep the vault, the daemon's logs and the audit exports");
  app.add_option("--phivaultd", o.daemon_path, "the daemon binary")->check(CLI::ExistingFile);
  app.add_option("--phivault", o.cli_path, "the CLI binary (for phivault init)")
      ->check(CLI::ExistingFile);
  app.add_flag("--selftest-corrupt-log", o.selftest_corrupt_log,
               "after cycle 1, falsify the log of acknowledged operations (one version's hash, "
               "one read never sent) to show that the checks fail");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (o.min_ms > o.max_ms) {
    std::cerr << "--min-ms must not exceed --max-ms\n";
    return 2;
  }
  if (!phivault::crypto::InitSodium().ok()) {
    std::cerr << "libsodium failed to initialise\n";
    return 2;
  }
  // A client writing to a socket the daemon closed as it died must see an error, not die.
  signal(SIGPIPE, SIG_IGN);
  struct sigaction stop {};
  stop.sa_handler = phivault::crash::OnTerminate;
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaction(sig, &stop, nullptr);
  return phivault::crash::Harness(std::move(o)).Run();
}
