// phivaultd --config PATH [--check-config]
//
// Exit codes (also in docs/configuration.md):
//   0  stopped cleanly on SIGTERM/SIGINT, or --check-config found the configuration valid
//   1  could not start: master key, keyring, database, audit log or socket
//   2  bad command line
//   3  invalid configuration
//   4  stopped, but requests were still running when the shutdown grace period ended
#include <signal.h>
#include <string.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "base/mutex.h"
#include "crypto/hash.h"
#include "crypto/keyring.h"
#include "crypto/master_key.h"
#include "crypto/secret.h"
#include "daemon/auth.h"
#include "daemon/config.h"
#include "daemon/handlers.h"
#include "daemon/http_server.h"
#include "daemon/logging.h"
#include "daemon/memory.h"
#include "daemon/policy_loader.h"
#include "daemon/service.h"
#include "daemon/systemd_integration.h"
#include "storage/audit_log.h"
#include "storage/backup.h"
#include "storage/store.h"
#include "storage/vault_id.h"

#ifdef PHIVAULT_JEMALLOC
// jemalloc reads this when the process starts (docs/configuration.md, "Memory"). Pages freed
// dirty go back to the kernel after about a second (dirty_decay_ms; muzzy_decay_ms:0 skips the
// lazy-free stage), purged by jemalloc's own background thread, so that RSS follows the heap in
// use under continuous load as well as after it; two arenas, as glibc was tuned before.
extern "C" {
// NOLINTNEXTLINE: the name and type are jemalloc's interface.
const char* malloc_conf = "background_thread:true,narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0";
}
#endif

namespace phivault::daemon {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitStartFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitBadConfig = 3;
constexpr int kExitUnfinishedRequests = 4;

constexpr auto kShutdownGrace = std::chrono::seconds(30);

int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "phivaultd: %s\n", message.c_str());
  return code;
}

// The passphrase from its environment variable (wiped from the environment block afterwards) or
// from the first line of its file.
StatusOr<crypto::SecretBytes> ReadPassphrase(const MasterKeySource& mk) {
  std::string passphrase;
  if (!mk.passphrase_file.empty()) {
    std::ifstream in(mk.passphrase_file);
    if (!in.good()) return NotFound("cannot read master_key.passphrase_file " + mk.passphrase_file);
    std::getline(in, passphrase);
  } else {
    char* value = std::getenv(mk.passphrase_env.c_str());
    if (value == nullptr) {
      return FailedPrecondition("the passphrase variable " + mk.passphrase_env + " is not set");
    }
    passphrase = value;
    explicit_bzero(value, std::strlen(value));
    unsetenv(mk.passphrase_env.c_str());
  }
  auto secret = crypto::SecretBytes::CopyFrom(passphrase, crypto::InsecureSecretKeyAccess::Get());
  explicit_bzero(passphrase.data(), passphrase.size());
  return secret;
}

StatusOr<crypto::SecretBytes> LoadMasterKey(const MasterKeySource& mk) {
  switch (mk.kind) {
    case MasterKeySource::Kind::kFile:
      return crypto::LoadMasterKeyFile(mk.file);
    case MasterKeySource::Kind::kCredential:
      return crypto::LoadMasterKeyCredential(mk.credential);
    case MasterKeySource::Kind::kPassphrase:
      break;
  }
  PV_ASSIGN_OR_RETURN(crypto::SecretBytes passphrase, ReadPassphrase(mk));
  PV_ASSIGN_OR_RETURN(std::string salt, crypto::Base64Decode(mk.salt_base64));
  crypto::PassphraseParams params;
  params.salt = std::move(salt);
  params.opslimit = mk.opslimit;
  params.memlimit = mk.memlimit;
  return crypto::DeriveMasterKeyFromPassphrase(
      passphrase.view(crypto::InsecureSecretKeyAccess::Get()), params);
}

Status EnsureDataDir(const std::string& dir) {
  if (mkdir(dir.c_str(), 0700) == 0 || errno == EEXIST) return Status::Ok();
  return Unavailable("cannot create data_dir " + dir + ": " + std::strerror(errno));
}

// Opens the keyring and checks that it belongs to the database (storage/vault_id.h). A keyring
// is created only for a vault that does not exist yet — no keyring copy, and a database that is
// unbound and empty — because a fresh keyring over existing data would orphan every record and
// sign the audit log with a new key. A database from before vault ids is bound to its keyring
// once. Every refusal says which files disagree and what to restore.
StatusOr<std::unique_ptr<crypto::Keyring>> OpenBoundKeyring(storage::Store& store,
                                                            const std::string& db_path,
                                                            const crypto::KeyringOptions& options,
                                                            crypto::SecretBytes master_key) {
  const auto access = crypto::InsecureSecretKeyAccess::Get();
  auto bound = storage::ReadVaultId(store);
  if (!bound.ok()) {
    return Unavailable("cannot read the vault id from the database at " + db_path + ": " +
                       bound.status().message());
  }
  // Open consumes its key; Create may need it afterwards.
  auto keyring = crypto::Keyring::Open(
      options, crypto::SecretBytes::CopyFrom(master_key.view(access), access));
  if (!keyring.ok() && keyring.status().code() == StatusCode::kNotFound) {
    auto holds_data = storage::HoldsVaultData(store);
    if (!holds_data.ok()) {
      return Unavailable("cannot inspect the database at " + db_path + ": " +
                         holds_data.status().message());
    }
    if (bound->has_value() || *holds_data) {
      return FailedPrecondition(
          "the keyring " + options.path + " is missing but the database at " + db_path +
          (bound->has_value() ? " belongs to vault " + **bound : std::string(" holds data")) +
          "; refusing to create a new keyring, which would leave every record unreadable and "
          "sign the audit log with a new key. Restore the keyring from a mirror or a keyring "
          "backup to " +
          options.path);
    }
    keyring = crypto::Keyring::Create(options, std::move(master_key));
    if (keyring.ok()) spdlog::info("created keyring {} for the new vault", options.path);
  }
  if (!keyring.ok()) {
    if (keyring.status().code() == StatusCode::kFailedPrecondition &&
        keyring.status().message() == "master key does not match the keyring") {
      return FailedPrecondition("master key does not match the keyring at " + options.path);
    }
    return Status(keyring.status().code(),
                  "cannot open the keyring at " + options.path + ": " + keyring.status().message());
  }
  const std::string& vault_id = (*keyring)->vault_id();
  if (bound->has_value() && **bound != vault_id) {
    return FailedPrecondition(
        "the keyring " + options.path + " belongs to vault " + vault_id + " but the database at " +
        db_path + " belongs to vault " + **bound +
        "; refusing to start. Restore the keyring (or a keyring mirror) of vault " + **bound +
        " to " + options.path + ", or point data_dir at the database of vault " + vault_id);
  }
  if (!bound->has_value()) {
    // A new vault, or one from before vault ids: bind the database to this keyring, once.
    if (Status s = storage::BindVaultId(store, vault_id); !s.ok()) {
      return Unavailable("cannot store the vault id in the database at " + db_path + ": " +
                         s.message());
    }
    spdlog::info("database {} bound to vault {}", db_path, vault_id);
  }
  return keyring;
}

// OpenBoundKeyring, allowing for a master-key rotation (`phivault key rotate`, docs/keys.md)
// whose new key waits at crypto::PendingMasterKeyPath to be installed: if the configured key no
// longer opens the keyring, that key is tried; if the configured key opens it, the pending key
// is either installed already or belongs to a rotation that never reached the keyring, and is
// shredded.
StatusOr<std::unique_ptr<crypto::Keyring>> OpenKeyringAfterRotation(
    storage::Store& store, const std::string& db_path, const crypto::KeyringOptions& options,
    const std::string& data_dir, crypto::SecretBytes master_key) {
  const auto access = crypto::InsecureSecretKeyAccess::Get();
  const std::string pending = crypto::PendingMasterKeyPath(data_dir);
  struct stat st;
  const bool has_pending = ::lstat(pending.c_str(), &st) == 0;
  auto keyring = OpenBoundKeyring(store, db_path, options, std::move(master_key));
  if (keyring.ok()) {
    if (has_pending) {
      if (Status s = crypto::ShredMasterKeyFile(pending); !s.ok()) {
        spdlog::warn("cannot remove the rotation's pending master key {}: {}", pending,
                     s.message());
      } else {
        spdlog::info("the configured master key opens the keyring; removed {}", pending);
      }
    }
    return keyring;
  }
  if (!has_pending || keyring.status().code() != StatusCode::kFailedPrecondition ||
      keyring.status().message().rfind("master key does not match the keyring", 0) != 0) {
    return keyring;
  }
  auto next = crypto::LoadMasterKeyFile(pending);
  if (!next.ok()) {
    return FailedPrecondition(keyring.status().message() + "; the pending key of a rotation at " +
                              pending + " cannot be used either: " + next.status().message());
  }
  auto rotated = OpenBoundKeyring(store, db_path, options,
                                  crypto::SecretBytes::CopyFrom(next->view(access), access));
  if (!rotated.ok()) return keyring;
  spdlog::warn(
      "the configured master key no longer opens the keyring: opened it with the key of the last "
      "rotation at {}; install that key where the configuration loads the key from (docs/keys.md)",
      pending);
  return rotated;
}

// Signs a checkpoint of the audit log unless it is empty. Failures are logged (the code and the
// storage message, which never carries PHI); the next attempt may succeed.
void MakeAuditCheckpoint(storage::AuditLog& audit_log) {
  if (audit_log.tree().size() == 0) return;
  auto note = audit_log.MakeCheckpoint(storage::CheckpointKind::kScheduled);
  if (!note.ok()) {
    spdlog::error("audit checkpoint failed: {}: {}", StatusCodeName(note.status().code()),
                  note.status().message());
  }
}

// What a timer thread sleeps on: Stop() wakes it at once, even mid-interval.
class StopSignal {
 public:
  void Stop() EXCLUDES(mu_) {
    {
      MutexLock lock(mu_);
      stopped_ = true;
    }
    wake_.SignalAll();
  }
  // Sleeps for `interval` or until Stop(); true once Stop() was called.
  bool WaitFor(std::chrono::steady_clock::duration interval) EXCLUDES(mu_) {
    const auto deadline = std::chrono::steady_clock::now() + interval;
    MutexLock lock(mu_);
    while (!stopped_ && wake_.WaitUntil(mu_, deadline)) {
    }
    return stopped_;
  }

 private:
  Mutex mu_;
  CondVar wake_;
  bool stopped_ GUARDED_BY(mu_) = false;
};

// Checkpoints the audit log every `interval` on its own thread, so that verifiers always find
// a recent signed tree head.
class CheckpointTimer {
 public:
  CheckpointTimer(storage::AuditLog& audit_log, std::chrono::seconds interval)
      : audit_log_(audit_log), interval_(interval), thread_([this] { Run(); }) {}
  ~CheckpointTimer() { Stop(); }
  CheckpointTimer(const CheckpointTimer&) = delete;
  CheckpointTimer& operator=(const CheckpointTimer&) = delete;

  // Returns once the thread has ended (after the checkpoint in progress, if any).
  void Stop() {
    stop_.Stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Run() {
    while (!stop_.WaitFor(interval_)) MakeAuditCheckpoint(audit_log_);
  }

  storage::AuditLog& audit_log_;
  const std::chrono::seconds interval_;
  StopSignal stop_;
  std::thread thread_;  // last: starts once everything above is initialised
};

// Hands freed heap back to the kernel once no connection has been open for `idle` (the server
// closes keep-alive connections after limits.idle_timeout_ms), and again each minute it stays
// idle: background flushes and compactions free memory after the last request.
class IdleMemoryReleaser {
 public:
  IdleMemoryReleaser(const HttpServer& server, std::chrono::seconds idle)
      : server_(server), idle_(idle) {
    thread_ = std::thread([this] { Run(); });
  }
  ~IdleMemoryReleaser() {
    stop_.Stop();
    thread_.join();
  }
  IdleMemoryReleaser(const IdleMemoryReleaser&) = delete;
  IdleMemoryReleaser& operator=(const IdleMemoryReleaser&) = delete;

 private:
  void Run() {
    using Clock = std::chrono::steady_clock;
    std::optional<Clock::time_point> idle_since;
    Clock::time_point next_release;
    while (!stop_.WaitFor(std::chrono::seconds(1))) {
      const auto now = Clock::now();
      if (server_.active_connections() > 0) {
        idle_since.reset();
        continue;
      }
      if (!idle_since) {
        idle_since = now;
        next_release = now + idle_;
      }
      if (now >= next_release) {
        ReleaseFreedMemory();
        next_release = now + std::chrono::minutes(1);
      }
    }
  }

  const HttpServer& server_;
  const std::chrono::seconds idle_;
  StopSignal stop_;
  std::thread thread_;  // last
};

// Closes expired break-glass windows (each with its end audit entry) every few seconds.
class BreakGlassTimer {
 public:
  explicit BreakGlassTimer(VaultService& service) : service_(service) {
    thread_ = std::thread([this] { Run(); });
  }
  ~BreakGlassTimer() {
    stop_.Stop();
    thread_.join();
  }

 private:
  void Run() {
    while (!stop_.WaitFor(std::chrono::seconds(5))) {
      if (Status s = service_.CloseExpiredBreakGlass(); !s.ok()) {
        spdlog::error("expired break-glass windows could not be closed: {}",
                      StatusCodeName(s.code()));
      }
    }
  }

  VaultService& service_;
  StopSignal stop_;
  std::thread thread_;  // last
};

// Runs the daily retention sweep at `at` ("HH:MM" UTC), through the same service path as
// `phivault retention sweep`, as the system principal. Checks twice a minute; a day whose time
// has passed when the daemon starts is swept then (a sweep is idempotent).
class RetentionSweepTimer {
 public:
  RetentionSweepTimer(VaultService& service, const std::string& at)
      : service_(service),
        minute_of_day_(std::stoi(at.substr(0, 2)) * 60 + std::stoi(at.substr(3, 2))) {
    thread_ = std::thread([this] { Run(); });
  }
  ~RetentionSweepTimer() {
    stop_.Stop();
    thread_.join();
  }

 private:
  void Run() {
    std::chrono::sys_days last_day{};
    do {
      using namespace std::chrono;
      const auto now = system_clock::now();
      const auto day = floor<days>(now);
      const auto minute = duration_cast<minutes>(now - day).count();
      if (day != last_day && minute >= minute_of_day_) {
        last_day = day;
        SweepRequest req;
        req.dry_run = false;
        auto r = service_.Sweep(nullptr, req, nullptr);
        if (r.ok()) {
          spdlog::info(
              "retention sweep: {} records ({} versions) destroyed, {} re-wrapped, {} "
              "held{}{}",
              r->destroyed_records, r->destroyed_versions, r->rewrapped_records, r->held_records,
              r->certificate_id.empty() ? "" : ", certificate ", r->certificate_id);
        } else {
          spdlog::error("retention sweep failed ({}): {}", StatusCodeName(r.status().code()),
                        r.status().message());
        }
      }
    } while (!stop_.WaitFor(std::chrono::seconds(30)));
  }

  VaultService& service_;
  const int minute_of_day_;
  StopSignal stop_;
  std::thread thread_;  // last
};

// Waits for a termination signal; SIGHUP reloads the access policy (the configuration itself is
// not reloaded).
void WaitForTermination(const sigset_t& signals, VaultService& service) {
  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      auto info = service.ReloadPolicy(nullptr);
      if (info.ok()) {
        spdlog::info("SIGHUP: access policy {} (sha256 {}) in force{}", info->name,
                     info->sha256_hex, info->changed ? "" : ", unchanged");
      } else {
        spdlog::error("SIGHUP: the policy in force is unchanged: {}", info.status().message());
      }
      continue;
    }
    spdlog::info("{} received; stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    return;
  }
}

int Run(int argc, char** argv) {
  CLI::App app{"phivaultd: the phivault encrypted medical-records vault"};
  std::string config_path;
  bool check_only = false;
  app.add_option("--config", config_path, "path of the TOML configuration file")->required();
  app.add_flag("--check-config", check_only, "validate the configuration and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }

  TuneAllocator();
  // Signals are handled by sigwait in this thread; every thread started later inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  if (Status s = crypto::InitAndHardenProcess(); !s.ok()) {
    return Fail(kExitStartFailed, s.ToString());
  }
  auto config = LoadConfig(config_path);
  if (!config.ok()) return Fail(kExitBadConfig, config.status().message());
  auto authenticator = Authenticator::Create(*config);
  if (!authenticator.ok()) return Fail(kExitBadConfig, authenticator.status().message());
  auto policy = LoadAccessPolicy(*config);
  if (!policy.ok()) return Fail(kExitBadConfig, policy.status().message());
  if (check_only) {
    std::printf("%s: configuration is valid (access policy %s, %zu rules)\n", config_path.c_str(),
                (*policy)->name().c_str(), (*policy)->rules().size());
    return kExitOk;
  }
  if (Status s = SetupLogging(config->log_level, config->log_file); !s.ok()) {
    return Fail(kExitBadConfig, s.message());
  }

  if (Status s = EnsureDataDir(config->data_dir); !s.ok()) {
    return Fail(kExitStartFailed, s.message());
  }
  auto master_key = LoadMasterKey(config->master_key);
  if (!master_key.ok()) {
    return Fail(kExitStartFailed, "cannot load the master key: " + master_key.status().message());
  }
  // The database first: its lock keeps a second daemon on the same data directory from
  // touching the keyring.
  storage::RocksStoreOptions store_options;
  store_options.path = (std::filesystem::path(config->data_dir) / "db").string();
  store_options.reserve_bytes = config->limits.disk_reserve_bytes;
  store_options.block_cache_bytes = config->memory.block_cache_bytes;
  store_options.memtable_budget_bytes = config->memory.memtable_budget_bytes;
  auto store = storage::OpenRocksStore(store_options);
  if (!store.ok()) {
    return Fail(kExitStartFailed, "cannot open the database at " + store_options.path + ": " +
                                      store.status().message());
  }
  crypto::KeyringOptions keyring_options;
  keyring_options.path = (std::filesystem::path(config->data_dir) / "keyring").string();
  keyring_options.mirrors = config->keyring_mirrors;
  auto keyring = OpenKeyringAfterRotation(**store, store_options.path, keyring_options,
                                          config->data_dir, std::move(master_key).value());
  if (!keyring.ok()) return Fail(kExitStartFailed, keyring.status().message());

  auto audit_log =
      storage::AuditLog::Open(**store, (*keyring)->audit_signer(), config->audit_origin);
  if (!audit_log.ok()) {
    return Fail(kExitStartFailed, "cannot open the audit log: " + audit_log.status().message());
  }
  auto opened = NewVaultService(ServiceDeps{&*config, store->get(), &(*audit_log)->ledger(),
                                            keyring->get(), audit_log->get(), *policy});
  if (!opened.ok()) {
    return Fail(kExitStartFailed, "cannot start the vault service: " + opened.status().message());
  }
  std::unique_ptr<VaultService> service = std::move(opened).value();
  // A backup or restore cut short leaves hard links to (or copies of) database files beside the
  // database, where no sweep looks: removed now that the database lock is held.
  auto removed = storage::RemoveStaleStaging(config->data_dir);
  if (!removed.ok()) return Fail(kExitStartFailed, removed.status().message());
  for (const auto& path : *removed) {
    spdlog::info("removed {}, left by an interrupted backup or restore", path);
  }
  // A restore (phivault backup restore) leaves a marker. Before the vault serves anything, the
  // records shredded since the backup are purged from the restored database and the restore is
  // audited (Service::RecordRestore); the marker goes only then, so a purge cut short by a crash
  // is completed at the next start, and the daemon does not serve if either fails.
  if (auto marker = storage::ReadRestoreMarker(config->data_dir);
      !marker.ok() || marker->has_value()) {
    const StatusOr<storage::RestoreMarker> found =
        marker.ok() ? StatusOr<storage::RestoreMarker>(**marker)
                    : StatusOr<storage::RestoreMarker>(marker.status());
    if (Status s = service->RecordRestore(found); !s.ok()) {
      return Fail(kExitStartFailed, "cannot audit the restore: " + s.message());
    }
    if (Status s = storage::RemoveRestoreMarker(config->data_dir); !s.ok()) {
      return Fail(kExitStartFailed, s.message());
    }
    spdlog::info("recorded the restore of a backup in the audit log (backup.restore)");
  }

  auto listen_fd = TakeListenFd();
  if (!listen_fd.ok()) return Fail(kExitStartFailed, listen_fd.status().message());
  HttpServerOptions server_options;
  server_options.socket_path = config->socket_path;
  server_options.socket_mode = config->socket_mode;
  server_options.socket_group = config->socket_group;
  server_options.listen_fd = *listen_fd;
  server_options.limits = config->limits;
  auto server = HttpServer::Start(
      server_options, NewApiHandlerFactory(ApiDeps{&*config, service.get(), authenticator->get()}));
  if (!server.ok()) return Fail(kExitStartFailed, server.status().message());

  const std::string where =
      listen_fd->has_value() ? "the socket passed by systemd" : config->socket_path;
  spdlog::info("phivaultd serving on {} ({} applications, {} operator entries)", where,
               config->applications.size(), config->operators.size());
  if (Status s = SdNotify("READY=1\nSTATUS=serving on " + where); !s.ok()) {
    spdlog::warn("readiness notification failed: {}", s.message());
  }

  std::unique_ptr<IdleMemoryReleaser> releaser;
  if (config->memory.release_after_idle_seconds > 0) {
    releaser = std::make_unique<IdleMemoryReleaser>(
        **server, std::chrono::seconds(config->memory.release_after_idle_seconds));
  }
  std::unique_ptr<CheckpointTimer> checkpoints;
  if (config->audit_checkpoint_interval_seconds > 0) {
    checkpoints = std::make_unique<CheckpointTimer>(
        **audit_log, std::chrono::seconds(config->audit_checkpoint_interval_seconds));
  }

  auto break_glass = std::make_unique<BreakGlassTimer>(*service);
  std::unique_ptr<RetentionSweepTimer> sweeper;
  if (!config->retention_sweep_at.empty()) {
    sweeper = std::make_unique<RetentionSweepTimer>(*service, config->retention_sweep_at);
    spdlog::info("retention: the daemon sweeps daily at {} UTC", config->retention_sweep_at);
  }

  WaitForTermination(signals, *service);
  (void)SdNotify("STOPPING=1\nSTATUS=finishing requests in progress");
  checkpoints.reset();
  releaser.reset();
  sweeper.reset();
  break_glass.reset();
  const bool finished = (*server)->Stop(kShutdownGrace);
  if (!finished) {
    spdlog::error("requests were still running after {} s; exiting without them",
                  kShutdownGrace.count());
    // Their threads still use the service; skip destructors rather than pull it from under them.
    spdlog::shutdown();
    std::_Exit(kExitUnfinishedRequests);
  }
  server->reset();
  // The log's final size gets a signed checkpoint, so a verifier can cover every entry.
  MakeAuditCheckpoint(**audit_log);
  service.reset();
  spdlog::info("phivaultd stopped");
  return kExitOk;
}

}  // namespace
}  // namespace phivault::daemon

int main(int argc, char** argv) { return phivault::daemon::Run(argc, argv); }
