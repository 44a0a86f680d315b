// What every phivault benchmark stands on: a vault service on a real RocksDB store in a directory,
// wired as phivaultd wires it (daemon/main.cc), so that every audited request pays for a synced
// ledger write exactly as in production.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "base/status.h"
#include "crypto/keyring.h"
#include "daemon/config.h"
#include "daemon/service.h"
#include "storage/audit_log.h"
#include "storage/ledger.h"
#include "storage/store.h"

namespace phivault::bench {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class ScratchDir {
 public:
  // Exits the process if the directory cannot be made (a benchmark without it measures nothing).
  explicit ScratchDir(std::string_view prefix);
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct VaultEnvOptions {
  std::string dir;     // holds master.key, keyring and db/; created if missing
  bool merkle = true;  // true: storage::AuditLog (ledger + Merkle tree observer, as phivaultd);
                       // false: the plain storage::Ledger, no audit_log in ServiceDeps
  // The access policy in force (TOML, docs/policy.md); empty: the shipped default policy.
  std::string policy_toml;
};

class VaultEnv {
 public:
  // Opens the vault in options.dir, creating it if needed. The master key is kept in
  // dir/master.key (0600) so that a generated vault can be reopened by a later run: benchmark
  // vaults hold synthetic data only. Errors of the keyring, store, audit log or ledger.
  static StatusOr<std::unique_ptr<VaultEnv>> Open(const VaultEnvOptions& options);
  VaultEnv(const VaultEnv&) = delete;
  VaultEnv& operator=(const VaultEnv&) = delete;
  ~VaultEnv();

  daemon::VaultService& service() { return *service_; }
  storage::Store& store() { return *store_; }
  storage::Ledger& ledger() { return audit_log_ ? audit_log_->ledger() : *ledger_; }
  // Null when opened without the Merkle tree.
  storage::AuditLog* audit_log() { return audit_log_.get(); }
  crypto::Keyring& keyring() { return *keyring_; }
  const daemon::Config& config() const { return config_; }

 private:
  VaultEnv() = default;

  daemon::Config config_;
  std::unique_ptr<crypto::Keyring> keyring_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<storage::AuditLog> audit_log_;
  std::unique_ptr<storage::Ledger> ledger_;  // only without the Merkle tree
  std::unique_ptr<daemon::VaultService> service_;
};

// A request context whose principal may perform every action, as a fully configured application.
daemon::RequestContext Context(std::string user, std::string role, std::string purpose);

// A small synthetic clinical note for `patient_id` (about 100 bytes of content).
daemon::CreateRecordRequest SmallRecord(std::string patient_id);

// The contents of the file at `path`; nullopt if it cannot be read.
std::optional<std::string> ReadFile(const std::string& path);

// Prints `what` with the status to stderr and exits with status 1 unless `status` is OK: a
// benchmark whose operations fail would time the error path.
void CheckOk(const Status& status, std::string_view what);
template <typename T>
T ValueOrDie(StatusOr<T> value, std::string_view what) {
  CheckOk(value.status(), what);
  return std::move(*value);
}

}  // namespace phivault::bench
