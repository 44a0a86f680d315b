// The purge at the first start after a restore (docs/backups.md): records whose epoch keys the
// keyring reports destroyed are deleted from the restored database with a tombstone, the byte
// search finds none of their ciphertext, every other record reads back the same, and a purge cut
// short by a crash is completed by the next start. A real store, keyring and audit log.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <vector>

#include "crypto/hash.h"
#include "daemon/service.h"
#include "storage/file_scan.h"
#include "storage/ledger.h"
#include "storage/records.h"
#include "tests/testing/in_process_vault.h"

namespace phivault::daemon {
namespace {

constexpr int64_t kStartUs = 1'793'000'000LL * 1000000;  // 2026-10-26

RequestContext Physician() {
  RequestContext ctx;
  ctx.request_id = "req";
  ctx.principal.name = "test-app";
  ctx.principal.actions = KnownActions();
  ctx.principal.roles = DefaultRoles();
  ctx.user = "dr.synthetic";
  ctx.role = "physician";
  ctx.purpose = "TREAT";
  return ctx;
}

class RestorePurgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    vault_.clock = [] { return kStartUs; };
    ASSERT_NO_FATAL_FAILURE(vault_.Open());
    service_ = vault_.service.get();
  }
  storage::RecordMetadata Create(const std::string& patient, const std::string& encounter,
                                 const std::string& content) {
    auto m = service_->CreateRecord(
        Physician(), {patient, "clinical_note", "text/plain", encounter, "Dr. Synthetic", content});
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return m.ok() ? *m : storage::RecordMetadata{};
  }
  std::vector<storage::AuditEntry> RestoreEntries() {
    std::vector<storage::AuditEntry> out;
    EXPECT_TRUE(storage::ScanAuditEntries(*vault_.store, 1, vault_.ledger().size(),
                                          [&](const storage::AuditEntry& e, std::string_view) {
                                            if (e.action == "backup.restore") out.push_back(e);
                                            return true;
                                          })
                    .ok());
    return out;
  }
  size_t ProgressKeys() {
    size_t n = 0;
    EXPECT_TRUE(vault_.store
                    ->Scan(storage::Cf::kState, "restore/purged/", "restore/purged0",
                           [&](std::string_view, std::string_view) {
                             ++n;
                             return true;
                           })
                    .ok());
    return n;
  }
  static storage::RestoreMarker Marker() {
    storage::RestoreMarker m;
    m.backup_id = "20261201T000000Z-00000000";
    return m;
  }

  testing::InProcessVault vault_;
  VaultService* service_ = nullptr;
};

TEST_F(RestorePurgeTest, PurgesRecordsUnderDestroyedKeysAndCompletesAfterACrash) {
  std::vector<storage::RecordMetadata> doomed = {
      Create("patient-rp-1", "2012-02-02",
             "synthetic purged note " + crypto::HexEncode(crypto::RandomBytes(900))),
      Create("patient-rp-2", "2012-02-02", "synthetic purged note two"),
      Create("patient-rp-2", "2012-02-02", "synthetic purged note three")};
  // Another patient: a new encounter of patient-rp-2 would extend their records' retention.
  const auto kept = Create("patient-rp-3", "2026-02-02", "synthetic kept note");
  storage::RecordRepository repo(*vault_.store, *vault_.keyring);
  std::vector<std::string> needles;
  for (const auto& d : doomed) {
    ASSERT_EQ(d.epoch_id, doomed[0].epoch_id);
    auto f = repo.Fingerprints(d.record_id);
    ASSERT_TRUE(f.ok());
    needles.insert(needles.end(), f->begin(), f->end());
  }
  ASSERT_NE(kept.epoch_id, doomed[0].epoch_id);
  const std::string db = vault_.dir.Sub("db");
  ASSERT_FALSE(storage::FindInFiles(db, needles)->empty());
  // The state of a restored database: a sweep after the backup destroyed the epoch key.
  ASSERT_TRUE(vault_.keyring->DestroyEpoch(doomed[0].epoch_id).ok());
  ASSERT_EQ(
      service_->ReadRecord(Physician(), doomed[0].record_id, std::nullopt, true).status().message(),
      "record was crypto-shredded");

  // A purge cut short: the first record deleted with its progress key (the form
  // Service::PurgeRestoredShredded writes: versions, certificate id, fingerprints in hex).
  const std::string earlier = crypto::HexEncode(crypto::RandomBytes(16));
  {
    storage::WriteBatch b;
    ASSERT_TRUE(repo.StageShred(doomed[0].record_id, earlier, kStartUs, b).ok());
    std::string value = "1 " + earlier;
    for (size_t i = 0; i < 3; ++i) value += " " + crypto::HexEncode(needles[i]);
    b.Put(storage::Cf::kState, "restore/purged/" + doomed[0].record_id, value);
    ASSERT_TRUE(vault_.store->Write(b, true).ok());
  }

  ASSERT_TRUE(service_->RecordRestore(Marker()).ok());
  auto entries = RestoreEntries();
  ASSERT_EQ(entries.size(), 1u);
  const std::string& reason = entries[0].reason;
  EXPECT_NE(reason.find("index entries of 3 records (3 versions)"), std::string::npos) << reason;
  EXPECT_NE(reason.find("none of their 9 ciphertext fingerprints"), std::string::npos) << reason;
  EXPECT_NE(reason.find("; compacted"), std::string::npos) << reason;
  EXPECT_EQ(entries[0].records.size(), 3u);
  EXPECT_EQ(ProgressKeys(), 0u) << "the entry's batch removes the progress keys";
  EXPECT_TRUE(storage::FindInFiles(vault_.dir.path().string(), needles)->empty());
  for (const auto& d : doomed) {
    auto read = service_->ReadRecord(Physician(), d.record_id, std::nullopt, true);
    EXPECT_EQ(read.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_NE(read.status().message().find("(certificate "), std::string::npos)
        << read.status().message();
    EXPECT_NE(std::find(entries[0].records.begin(), entries[0].records.end(), d.record_id + "@1-1"),
              entries[0].records.end())
        << "named in the entry's records";
  }
  // No previous database to take certificates from: the purge's own id, said so.
  EXPECT_NE(reason.find("name this purge:"), std::string::npos) << reason;
  auto read = service_->ReadRecord(Physician(), kept.record_id, std::nullopt, true);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->content, "synthetic kept note");
  auto listed = service_->ListRecords(Physician(), "patient-rp-2");
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  EXPECT_TRUE(listed->records.empty());

  // Idempotent: a second start after the same restore finds nothing more to purge.
  ASSERT_TRUE(service_->RecordRestore(Marker()).ok());
  entries = RestoreEntries();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_NE(entries[1].reason.find("of 0 records"), std::string::npos) << entries[1].reason;
}

}  // namespace
}  // namespace phivault::daemon
