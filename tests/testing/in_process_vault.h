// A real vault in one process for tests of the service layer and what sits on it: a keyring,
// a RocksDB store and the verifiable audit log in a temporary directory, and the service wired
// as phivaultd wires it — except that the ledger is wrapped so a test can make audit writes fail.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "crypto/secret.h"
#include "daemon/config.h"
#include "daemon/service.h"
#include "storage/audit_log.h"
#include "tests/testing/temp_dir.h"

namespace phivault::testing {

// Passes commits through to the real ledger unless told to fail them (fault injection).
class FaultyLedger : public storage::Ledger {
 public:
  explicit FaultyLedger(storage::Ledger& inner) : inner_(inner) {}
  StatusOr<uint64_t> Commit(storage::WriteBatch changes, storage::AuditEntry entry) override {
    if (fail_) return Unavailable("injected audit write failure");
    return inner_.Commit(std::move(changes), std::move(entry));
  }
  uint64_t size() const override { return inner_.size(); }
  std::atomic<bool> fail_{false};

 private:
  storage::Ledger& inner_;
};

struct InProcessVaultOptions {
  uint64_t reserve_bytes = 0;
  // Free space the store sees; the real filesystem's if empty.
  std::function<StatusOr<uint64_t>(const std::string&)> free_space;
};

class InProcessVault {
 public:
  // A config with the default categories and roles; tests adjust it before Open().
  InProcessVault() {
    config.categories = daemon::DefaultCategories();
    config.roles = daemon::DefaultRoles();
  }

  // Opens everything; fails the current test (check with ASSERT_NO_FATAL_FAILURE) on error.
  void Open(const InProcessVaultOptions& options = {}) {
    ASSERT_TRUE(crypto::InitSodium().ok());
    // As phivaultd lays it out: the sweep's byte search reads <data_dir>/db, and certificates
    // are signed under the audit log's origin.
    config.data_dir = dir.path().string();
    config.audit_origin = "test.example/audit";
    auto k = crypto::Keyring::Create({dir.Sub("keyring"), {}}, crypto::SecretBytes::Random(32));
    ASSERT_TRUE(k.ok()) << k.status().ToString();
    keyring = std::move(*k);
    storage::RocksStoreOptions store_options;
    store_options.path = dir.Sub("db");
    store_options.reserve_bytes = options.reserve_bytes;
    if (options.free_space) store_options.free_space = options.free_space;
    auto s = storage::OpenRocksStore(store_options);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store = std::move(*s);
    auto log = storage::AuditLog::Open(*store, keyring->audit_signer(), "test.example/audit");
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    audit_log = std::move(*log);
    faulty_ledger = std::make_unique<FaultyLedger>(audit_log->ledger());
    auto opened = daemon::NewVaultService({&config, store.get(), faulty_ledger.get(), keyring.get(),
                                           audit_log.get(), policy, clock, retention, sweep_fault});
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    service = std::move(*opened);
  }

  storage::Ledger& ledger() { return audit_log->ledger(); }

  TempDir dir;
  daemon::Config config;
  // The access policy to start with; null: the configuration's (the shipped default policy).
  std::shared_ptr<const policies::AccessPolicy> policy;
  // The service's clock (Unix microseconds); null: the system clock.
  std::function<int64_t()> clock;
  // The retention table to start with; unset: the configuration's (us-federal without a file).
  std::optional<daemon::LoadedRetention> retention;
  // Stops a real sweep at a step, as a crash would (daemon::ServiceDeps::sweep_fault).
  std::function<Status(std::string_view step)> sweep_fault;
  std::unique_ptr<crypto::Keyring> keyring;
  std::unique_ptr<storage::Store> store;
  std::unique_ptr<storage::AuditLog> audit_log;
  std::unique_ptr<FaultyLedger> faulty_ledger;
  std::unique_ptr<daemon::VaultService> service;
};

}  // namespace phivault::testing
