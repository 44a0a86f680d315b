// The archive tier as a user of the service meets it: `archive run` moves records nobody has
// touched (and whose patient has had no encounter) for [archive] after_days, a dry run only
// counts them, reads answer from the archive with the same bytes and say so (and, configured,
// move the record back), amendments work, backups carry archived records, and a retention sweep
// shreds them like any other — 410 afterwards and none of their bytes in any file. A real store,
// keyring and audit log; a fake clock fixes "today".
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <vector>

#include "daemon/service.h"
#include "storage/file_scan.h"
#include "storage/ledger.h"
#include "storage/records.h"
#include "storage/vault_id.h"
#include "tests/testing/in_process_vault.h"
#include "tests/testing/temp_dir.h"

namespace phivault::daemon {
namespace {

constexpr int64_t kStartUs = 1'793'000'000LL * 1000000;  // 2026-10-26T07:33:20Z, "now"
constexpr int64_t kDayUs = 86400LL * 1000000;

class ArchiveServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    vault_.clock = [this] { return now_us_.load(); };
    vault_.config.archive.after_days = 365;
  }
  void Open() {
    ASSERT_NO_FATAL_FAILURE(vault_.Open());
    service_ = vault_.service.get();
  }

  static RequestContext Ctx(std::string user, std::string role, std::string purpose) {
    RequestContext ctx;
    ctx.request_id = "req";
    ctx.principal.name = "test-app";
    ctx.principal.actions = KnownActions();
    ctx.principal.roles = DefaultRoles();
    ctx.user = std::move(user);
    ctx.role = std::move(role);
    ctx.purpose = std::move(purpose);
    return ctx;
  }
  static RequestContext Physician() { return Ctx("dr.synthetic", "physician", "TREAT"); }
  static RequestContext Admin() { return Ctx("admin.synthetic", "vault_admin", "HOPERAT"); }

  storage::RecordMetadata Create(const std::string& patient, const std::string& encounter,
                                 const std::string& content) {
    auto m = service_->CreateRecord(
        Physician(), {patient, "clinical_note", "text/plain", encounter, "Dr. Synthetic", content});
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return m.ok() ? *m : storage::RecordMetadata{};
  }
  storage::Record Read(const std::string& id, std::optional<uint32_t> version = std::nullopt,
                       bool with_content = true) {
    auto r = service_->ReadRecord(Physician(), id, version, with_content);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : storage::Record{};
  }
  StatusOr<ArchiveResult> Run(bool dry_run, const RequestContext& ctx = Admin()) {
    return service_->RunArchive(ctx, ArchiveRequest{dry_run});
  }
  std::vector<storage::AuditEntry> EntriesWithAction(std::string_view action) {
    std::vector<storage::AuditEntry> out;
    EXPECT_TRUE(storage::ScanAuditEntries(*vault_.store, 1, vault_.ledger().size(),
                                          [&](const storage::AuditEntry& e, std::string_view) {
                                            if (e.action == action) out.push_back(e);
                                            return true;
                                          })
                    .ok());
    return out;
  }
  std::vector<std::string> Fingerprints(const std::vector<std::string>& ids) {
    storage::RecordRepository repo(*vault_.store, *vault_.keyring);
    std::vector<std::string> out;
    for (const auto& id : ids) {
      auto f = repo.Fingerprints(id);
      EXPECT_TRUE(f.ok()) << f.status().ToString();
      if (f.ok()) out.insert(out.end(), f->begin(), f->end());
    }
    return out;
  }
  bool InArchive(const std::string& id, uint32_t version) {
    storage::RecordRepository repo(*vault_.store, *vault_.keyring);
    auto a = repo.IsArchived(id, version);
    EXPECT_TRUE(a.ok());
    return a.ok() && *a;
  }

  testing::InProcessVault vault_;
  VaultService* service_ = nullptr;
  std::atomic<int64_t> now_us_{kStartUs};
};

// The ledger stamps entries with the real clock, so here every audit entry is older than the
// cutoff: recent access is exercised end to end (tests/e2e/archive_e2e_test.cc, whose daemon runs
// on one shifted clock), recent changes and encounters here.
TEST_F(ArchiveServiceTest, ColdRecordsMoveAndReadBackTheSameSayingArchived) {
  ASSERT_NO_FATAL_FAILURE(Open());
  const std::string big = "synthetic scan " + std::string(9000, 'S');  // a blob file when live
  const auto cold = Create("patient-arc-1", "2024-01-10", "synthetic cold note");
  const auto cold_big = Create("patient-arc-1", "2024-01-11", big);
  const auto seen_lately = Create("patient-arc-3", "2024-01-13", "synthetic old note");
  now_us_ += 800 * kDayUs;  // 2029-01-03: cutoff 2028-01-04
  // The patient came back: their old record stays live, and the new one is new.
  const auto visit = Create("patient-arc-3", "2028-06-01", "synthetic new visit");

  auto dry = Run(/*dry_run=*/true);
  ASSERT_TRUE(dry.ok()) << dry.status().ToString();
  EXPECT_TRUE(dry->dry_run);
  EXPECT_EQ(dry->cutoff, "2028-01-04");
  EXPECT_EQ(dry->examined_records, 4u);
  EXPECT_EQ(dry->archived_records, 2u);
  EXPECT_EQ(dry->archived_versions, 2u);
  EXPECT_EQ(dry->audit_entries_read, 0u);  // all before the cutoff: the binary search skips them
  EXPECT_FALSE(InArchive(cold.record_id, 1)) << "a dry run moves nothing";

  auto run = Run(/*dry_run=*/false);
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  EXPECT_EQ(run->archived_records, 2u);
  EXPECT_TRUE(run->compacted) << run->compaction_error;
  for (const auto* m : {&cold, &cold_big}) EXPECT_TRUE(InArchive(m->record_id, 1));
  for (const auto* m : {&seen_lately, &visit}) EXPECT_FALSE(InArchive(m->record_id, 1));

  // Audited with counts and nothing about patients.
  const auto entries = EntriesWithAction("archive.run");
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[1].seq, run->audit_seq);
  EXPECT_EQ(entries[1].outcome, "success");
  EXPECT_EQ(entries[1].reason,
            "cutoff 2028-01-04: 2 records (2 versions) archived, 0 already archived, 4 examined");
  EXPECT_EQ(entries[0].reason.rfind("dry-run ", 0), 0u);
  EXPECT_TRUE(entries[1].patient_bid.empty());

  // The same API, the same bytes, and the response says where they came from.
  const storage::Record a = Read(cold.record_id);
  EXPECT_EQ(a.content, "synthetic cold note");
  EXPECT_TRUE(a.archived);
  const storage::Record b = Read(cold_big.record_id, 1);
  EXPECT_EQ(b.content, big);
  EXPECT_TRUE(b.archived);
  EXPECT_TRUE(Read(cold.record_id, std::nullopt, /*with_content=*/false).archived);
  EXPECT_FALSE(Read(seen_lately.record_id).archived);
  // Without restore_on_read the record stays archived after being read.
  EXPECT_TRUE(InArchive(cold.record_id, 1));
  auto listed = service_->ListRecords(Physician(), "patient-arc-1");
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->records.size(), 2u);

  // Nothing is moved twice.
  auto again = Run(false);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->archived_records, 0u);
  EXPECT_EQ(again->already_archived, 2u);
}

TEST_F(ArchiveServiceTest, WithRestoreOnReadAReadMovesTheRecordBack) {
  vault_.config.archive.restore_on_read = true;
  ASSERT_NO_FATAL_FAILURE(Open());
  const auto m = Create("patient-arc-4", "2024-02-01", "synthetic note to restore");
  now_us_ += 800 * kDayUs;
  ASSERT_EQ(Run(false)->archived_records, 1u);
  const storage::Record first = Read(m.record_id);
  EXPECT_TRUE(first.archived);
  EXPECT_EQ(first.content, "synthetic note to restore");
  EXPECT_FALSE(InArchive(m.record_id, 1));
  const storage::Record second = Read(m.record_id);
  EXPECT_FALSE(second.archived);
  EXPECT_EQ(second.content, first.content);
}

TEST_F(ArchiveServiceTest, AnArchivedRecordCanBeAmended) {
  ASSERT_NO_FATAL_FAILURE(Open());
  const auto m = Create("patient-arc-5", "2024-03-01", "synthetic original");
  now_us_ += 800 * kDayUs;
  ASSERT_EQ(Run(false)->archived_records, 1u);
  AmendRecordRequest amend;
  amend.content = "synthetic correction";
  amend.reason = "addendum";
  auto v2 = service_->AmendRecord(Physician(), m.record_id, amend);
  ASSERT_TRUE(v2.ok()) << v2.status().ToString();
  EXPECT_EQ(v2->version, 2u);
  const storage::Record latest = Read(m.record_id);
  EXPECT_EQ(latest.content, "synthetic correction");
  EXPECT_FALSE(latest.archived);
  const storage::Record original = Read(m.record_id, 1);
  EXPECT_EQ(original.content, "synthetic original");
  EXPECT_TRUE(original.archived);
}

TEST_F(ArchiveServiceTest, ABackupCarriesArchivedRecords) {
  ASSERT_NO_FATAL_FAILURE(Open());
  const auto m = Create("patient-arc-6", "2024-04-01", "synthetic note in a backup");
  now_us_ += 800 * kDayUs;
  ASSERT_EQ(Run(false)->archived_records, 1u);
  // As phivaultd binds them at start (daemon/main.cc): a backup names the vault it belongs to.
  ASSERT_TRUE(storage::BindVaultId(*vault_.store, vault_.keyring->vault_id()).ok());
  testing::TempDir backups;
  auto made = service_->CreateBackup(Admin(), BackupRequest{backups.path().string()});
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  // The backup's database, opened on its own, holds the archived content; the keyring opens it.
  storage::RocksStoreOptions options;
  options.path = (backups.path() / made->id / "db").string();
  options.create_if_missing = false;
  options.reserve_bytes = 0;
  auto copy = storage::OpenRocksStore(options);
  ASSERT_TRUE(copy.ok()) << copy.status().ToString();
  storage::RecordRepository repo(**copy, *vault_.keyring);
  auto read = repo.ReadVersion(m.record_id, 1, /*with_content=*/true);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->content, "synthetic note in a backup");
  EXPECT_TRUE(read->archived);
}

TEST_F(ArchiveServiceTest, ASweepShredsArchivedRecordsAndLeavesNoByteOfThem) {
  ASSERT_NO_FATAL_FAILURE(Open());
  const std::string secret = "synthetic-archived-plaintext-5e2b71";
  const std::string big = "synthetic-archived-big-" + std::string(7000, 'Z');
  const auto gone1 = Create("patient-arc-7", "2012-02-02", secret);
  const auto gone2 = Create("patient-arc-8", "2012-02-02", big);
  const auto kept = Create("patient-arc-9", "2026-02-02", "synthetic kept archived note");
  now_us_ += 4LL * 365 * kDayUs;  // 2030: the 2012 records expired (2019), all are cold
  auto run = Run(false);
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  ASSERT_EQ(run->archived_records, 3u);
  const auto doomed = Fingerprints({gone1.record_id, gone2.record_id});
  const auto kept_fps = Fingerprints({kept.record_id});
  const std::string db = vault_.dir.Sub("db");
  auto before = storage::FindInFiles(db, doomed);
  ASSERT_TRUE(before.ok());
  EXPECT_FALSE(before->empty()) << "the search must see archived bytes";

  SweepRequest req;
  req.dry_run = false;
  RequestContext admin = Admin();
  auto swept = service_->Sweep(&admin, req, nullptr);
  ASSERT_TRUE(swept.ok()) << swept.status().ToString();
  EXPECT_EQ(swept->destroyed_records, 2u);
  EXPECT_NE(swept->verification_result.find("passed"), std::string::npos)
      << swept->verification_result;
  for (const auto& id : {gone1.record_id, gone2.record_id}) {
    auto read = service_->ReadRecord(Physician(), id, std::nullopt, true);
    EXPECT_EQ(read.status().code(), StatusCode::kFailedPrecondition) << read.status().ToString();
    EXPECT_NE(read.status().message().find(swept->certificate_id), std::string::npos);
  }
  auto after = storage::FindInFiles(vault_.dir.path().string(), doomed);
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->empty()) << after->front().path;
  auto kept_after = storage::FindInFiles(db, kept_fps);
  ASSERT_TRUE(kept_after.ok());
  EXPECT_FALSE(kept_after->empty());
  const storage::Record survivor = Read(kept.record_id);
  EXPECT_EQ(survivor.content, "synthetic kept archived note");
  EXPECT_TRUE(survivor.archived);
}

TEST_F(ArchiveServiceTest, RefusedWithoutAnArchiveTierOrTheRightAndAudited) {
  vault_.config.archive.after_days = 0;
  ASSERT_NO_FATAL_FAILURE(Open());
  auto off = Run(false);
  EXPECT_EQ(off.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(off.status().message().find("[archive] after_days"), std::string::npos);
  auto denied = Run(false, Physician());
  EXPECT_EQ(denied.status().code(), StatusCode::kPermissionDenied) << denied.status().ToString();
  const auto entries = EntriesWithAction("archive.run");
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].outcome, "error");
  EXPECT_EQ(entries[1].outcome, "denied");
}

}  // namespace
}  // namespace phivault::daemon
