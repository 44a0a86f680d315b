// The service layer against a real RocksDB store, a real keyring and the real ledger; a wrapping
// ledger injects audit-write failures to prove the fail-closed path.
#include "daemon/service.h"

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include "crypto/hash.h"
#include "crypto/secret.h"
#include "tests/testing/in_process_vault.h"

namespace phivault::daemon {
namespace {

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    vault_.config.max_content_bytes = 1 << 20;
    ASSERT_NO_FATAL_FAILURE(vault_.Open());
    keyring_ = vault_.keyring.get();
    store_ = vault_.store.get();
    ledger_ = &vault_.ledger();
    faulty_ = vault_.faulty_ledger.get();
    service_ = vault_.service.get();
    // The vault starts with two entries: the access policy and the retention table coming into
    // force.
    ASSERT_EQ(ledger_->size(), 2u);
    ASSERT_EQ(storage::ReadAuditEntry(*store_, 1)->action, "policy.load");
    ASSERT_EQ(LastEntry().action, "retention.load");
  }

  RequestContext Ctx(std::vector<std::string> actions = {"record.create", "record.read",
                                                         "record.amend", "record.list", "status"}) {
    RequestContext ctx;
    ctx.request_id = "req-" + std::to_string(++requests_);
    ctx.principal.name = "test-app";
    ctx.principal.actions = std::move(actions);
    ctx.user = "dr.synthetic";
    ctx.role = "physician";
    ctx.purpose = "TREAT";
    return ctx;
  }

  static CreateRecordRequest Note(std::string patient, std::string content) {
    return {std::move(patient), "clinical_note", "text/plain",
            "2026-11-02",       "Dr. Synthetic", std::move(content)};
  }

  storage::AuditEntry LastEntry() {
    auto e = storage::ReadAuditEntry(*store_, ledger_->size());
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return e.ok() ? *e : storage::AuditEntry{};
  }

  testing::InProcessVault vault_;
  crypto::Keyring* keyring_ = nullptr;
  storage::Store* store_ = nullptr;
  storage::Ledger* ledger_ = nullptr;
  testing::FaultyLedger* faulty_ = nullptr;
  VaultService* service_ = nullptr;
  std::atomic<int> requests_{0};  // Ctx() is called from the concurrency tests' threads
};

TEST_F(ServiceTest, CreateThenReadReturnsWhatWasStoredAndAuditsBoth) {
  auto created = service_->CreateRecord(Ctx(), Note("synthetic-0001", "BP 120/80, no distress"));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_EQ(created->version, 1u);
  EXPECT_TRUE(storage::IsValidRecordId(created->record_id));
  EXPECT_EQ(ledger_->size(), 3u);
  EXPECT_EQ(LastEntry().action, "record.create");

  auto read = service_->ReadRecord(Ctx(), created->record_id, std::nullopt, true);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->content, "BP 120/80, no distress");
  EXPECT_EQ(read->meta.patient_id, "synthetic-0001");
  EXPECT_EQ(read->meta.category, "clinical_note");
  EXPECT_EQ(read->meta.encounter_date, "2026-11-02");
  EXPECT_EQ(ledger_->size(), 4u);
  storage::AuditEntry e = LastEntry();
  EXPECT_EQ(e.action, "record.read");
  EXPECT_EQ(e.outcome, "success");
  EXPECT_EQ(e.user, "dr.synthetic");
  EXPECT_EQ(e.purpose, "TREAT");
  EXPECT_EQ(e.records, std::vector<std::string>{created->record_id + "@1"});
  EXPECT_EQ(e.patient_bid.size(), 64u);
}

TEST_F(ServiceTest, AmendmentsAddVersionsAndKeepTheOriginal) {
  auto created = service_->CreateRecord(Ctx(), Note("synthetic-0002", "original text"));
  ASSERT_TRUE(created.ok());
  auto amended = service_->AmendRecord(
      Ctx(), created->record_id,
      {"corrected text", "typo in dosage", std::nullopt, std::nullopt, std::nullopt});
  ASSERT_TRUE(amended.ok()) << amended.status().ToString();
  EXPECT_EQ(amended->version, 2u);
  EXPECT_EQ(amended->amendment_reason, "typo in dosage");

  auto v1 = service_->ReadRecord(Ctx(), created->record_id, 1, true);
  auto latest = service_->ReadRecord(Ctx(), created->record_id, std::nullopt, true);
  ASSERT_TRUE(v1.ok() && latest.ok());
  EXPECT_EQ(v1->content, "original text");
  EXPECT_EQ(latest->content, "corrected text");
  EXPECT_EQ(latest->meta.version, 2u);
  EXPECT_EQ(latest->meta.patient_id, "synthetic-0002");
  EXPECT_EQ(service_->ReadRecord(Ctx(), created->record_id, 3, true).status().code(),
            StatusCode::kNotFound);
}

TEST_F(ServiceTest, ConcurrentAmendmentsGetDistinctVersions) {
  auto created = service_->CreateRecord(Ctx(), Note("synthetic-0003", "v1"));
  ASSERT_TRUE(created.ok());
  std::vector<std::thread> threads;
  std::vector<uint32_t> versions(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      auto m = service_->AmendRecord(
          Ctx(), created->record_id,
          {"amendment " + std::to_string(i), "reason", std::nullopt, std::nullopt, std::nullopt});
      versions[i] = m.ok() ? m->version : 0;
    });
  }
  for (auto& t : threads) t.join();
  std::set<uint32_t> distinct(versions.begin(), versions.end());
  EXPECT_EQ(distinct, (std::set<uint32_t>{2, 3, 4, 5, 6, 7, 8, 9}));
  for (uint32_t v = 2; v <= 9; ++v) {
    auto r = service_->ReadRecord(Ctx(), created->record_id, v, true);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->content.rfind("amendment ", 0), 0u);
  }
}

TEST_F(ServiceTest, ListReturnsEachRecordOfThePatientAtItsLatestVersion) {
  auto a = service_->CreateRecord(Ctx(), Note("synthetic-0004", "first"));
  auto b = service_->CreateRecord(Ctx(), Note("synthetic-0004", "second"));
  auto other = service_->CreateRecord(Ctx(), Note("synthetic-0005", "someone else"));
  ASSERT_TRUE(a.ok() && b.ok() && other.ok());
  ASSERT_TRUE(
      service_
          ->AmendRecord(Ctx(), b->record_id,
                        {"second, amended", "update", std::nullopt, std::nullopt, std::nullopt})
          .ok());
  auto list = service_->ListRecords(Ctx(), "synthetic-0004");
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->records.size(), 2u);
  EXPECT_EQ(list->withheld, 0u);
  std::map<std::string, uint32_t> got;
  for (const auto& m : list->records) got[m.record_id] = m.version;
  EXPECT_EQ(got[a->record_id], 1u);
  EXPECT_EQ(got[b->record_id], 2u);
  EXPECT_EQ(LastEntry().action, "record.list");
  EXPECT_EQ(LastEntry().records.size(), 2u);
}

TEST_F(ServiceTest, DeniedAttemptsAreRefusedAndAudited) {
  auto created = service_->CreateRecord(Ctx(), Note("synthetic-0006", "secret note"));
  ASSERT_TRUE(created.ok());
  const uint64_t before = ledger_->size();
  auto read = service_->ReadRecord(Ctx({"record.create"}), created->record_id, std::nullopt, true);
  EXPECT_EQ(read.status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(ledger_->size(), before + 1);
  storage::AuditEntry e = LastEntry();
  EXPECT_EQ(e.action, "record.read");
  EXPECT_EQ(e.outcome, "denied");
  EXPECT_EQ(e.reason, "config:actions");

  auto create = service_->CreateRecord(Ctx({"record.read"}), Note("synthetic-0006", "x"));
  EXPECT_EQ(create.status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(LastEntry().outcome, "denied");
  auto list = service_->ListRecords(Ctx({"record.read"}), "synthetic-0006");
  ASSERT_TRUE(list.status().code() == StatusCode::kPermissionDenied);
}

TEST_F(ServiceTest, OperatorsActOnlyInTheirConfiguredRole) {
  RequestContext ctx = Ctx();
  ctx.principal.kind = Principal::Kind::kOperator;
  ctx.principal.operator_role = "nurse";
  ctx.role = "physician";
  auto denied = service_->CreateRecord(ctx, Note("synthetic-0012", "x"));
  EXPECT_EQ(denied.status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(LastEntry().reason, "config:operator_role");
  ctx.role = "nurse";
  EXPECT_TRUE(service_->CreateRecord(ctx, Note("synthetic-0012", "x")).ok());
}

TEST_F(ServiceTest, ReadFailsClosedWhenTheAuditEntryCannotBeWritten) {
  auto created = service_->CreateRecord(Ctx(), Note("synthetic-0007", "content under audit"));
  ASSERT_TRUE(created.ok());
  faulty_->fail_ = true;
  auto read = service_->ReadRecord(Ctx(), created->record_id, std::nullopt, true);
  EXPECT_EQ(read.status().code(), StatusCode::kUnavailable);
  EXPECT_FALSE(read.ok());
  auto list = service_->ListRecords(Ctx(), "synthetic-0007");
  EXPECT_EQ(list.status().code(), StatusCode::kUnavailable);
}

TEST_F(ServiceTest, WriteFailsClosedAndStoresNothingWhenTheAuditEntryCannotBeWritten) {
  faulty_->fail_ = true;
  auto created = service_->CreateRecord(Ctx(), Note("synthetic-0008", "never stored"));
  EXPECT_EQ(created.status().code(), StatusCode::kUnavailable);
  faulty_->fail_ = false;
  auto list = service_->ListRecords(Ctx(), "synthetic-0008");
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->records.empty());
}

TEST_F(ServiceTest, TamperedContentFailsTheReadWithAnIntegrityErrorThatIsAudited) {
  auto created = service_->CreateRecord(Ctx(), Note("synthetic-0009", "tamper target"));
  ASSERT_TRUE(created.ok());
  // Flip one byte in the middle of every stored content value ('c' keys).
  storage::WriteBatch tamper;
  ASSERT_TRUE(store_
                  ->Scan(storage::Cf::kRecords, "c", "d",
                         [&](std::string_view key, std::string_view value) {
                           std::string v(value);
                           v[v.size() / 2] ^= 0x01;
                           tamper.Put(storage::Cf::kRecords, std::string(key), v);
                           return true;
                         })
                  .ok());
  ASSERT_FALSE(tamper.empty());
  ASSERT_TRUE(store_->Write(tamper, true).ok());

  auto read = service_->ReadRecord(Ctx(), created->record_id, std::nullopt, true);
  EXPECT_EQ(read.status().code(), StatusCode::kDataLoss);
  storage::AuditEntry e = LastEntry();
  EXPECT_EQ(e.action, "record.read");
  EXPECT_EQ(e.outcome, "error");
  EXPECT_EQ(e.reason, "integrity_failure");
}

TEST_F(ServiceTest, BadInputIsRejectedWithTheFieldNamedAndNothingStored) {
  auto bad_category = Note("synthetic-0010", "x");
  bad_category.category = "gossip";
  EXPECT_EQ(service_->CreateRecord(Ctx(), bad_category).status().code(),
            StatusCode::kInvalidArgument);
  auto bad_date = Note("synthetic-0010", "x");
  bad_date.encounter_date = "2026-02-30";
  auto s = service_->CreateRecord(Ctx(), bad_date).status();
  EXPECT_NE(s.message().find("encounter_date"), std::string::npos);
  auto too_big = Note("synthetic-0010", std::string((1 << 20) + 1, 'x'));
  EXPECT_EQ(service_->CreateRecord(Ctx(), too_big).status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(service_->ReadRecord(Ctx(), "../../etc/passwd", std::nullopt, true).status().code(),
            StatusCode::kInvalidArgument);
  auto list = service_->ListRecords(Ctx(), "synthetic-0010");
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->records.empty());
}

TEST_F(ServiceTest, AuditEntriesNeverHoldThePatientIdInTheClear) {
  const std::string patient = "synthetic-canary-7f3a9";
  const uint64_t first = ledger_->size() + 1;  // after the policy's entry
  auto created = service_->CreateRecord(Ctx(), Note(patient, "content canary 55e1"));
  ASSERT_TRUE(created.ok());
  ASSERT_TRUE(service_->ReadRecord(Ctx(), created->record_id, std::nullopt, true).ok());
  ASSERT_TRUE(service_->ListRecords(Ctx(), patient).ok());
  const std::string bid =
      crypto::HexEncode(storage::RecordRepository(*store_, *keyring_).PatientBlindId(patient));
  for (uint64_t seq = first; seq <= ledger_->size(); ++seq) {
    auto e = storage::ReadAuditEntry(*store_, seq);
    ASSERT_TRUE(e.ok());
    const std::string bytes = *storage::ReadAuditEntryBytes(*store_, seq);
    EXPECT_EQ(bytes.find(patient), std::string::npos);
    EXPECT_EQ(bytes.find("content canary"), std::string::npos);
    EXPECT_EQ(e->patient_bid, bid);
    EXPECT_FALSE(e->sealed_phi.empty());
  }
}

TEST_F(ServiceTest, StatusCountsAuditEntriesWithoutAuditingItself) {
  ASSERT_TRUE(service_->CreateRecord(Ctx(), Note("synthetic-0011", "x")).ok());
  auto st = service_->GetStatus(Ctx());
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->audit_entries, 3u)
      << "the policy and the retention table coming into force, and the create";
  EXPECT_EQ(st->epochs, 1u);
  EXPECT_EQ(ledger_->size(), 3u);
  EXPECT_EQ(service_->GetStatus(Ctx({"record.read"})).status().code(),
            StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace phivault::daemon
