// Retention, legal holds and the sweep as a user of the service meets them: records land in the
// epoch of their expiry and move when a record, an amendment, a patient fact, a hold or the
// retention table changes; a sweep lists (dry run) and destroys exactly what has expired, leaves
// nothing readable behind — not in the service, not in any file — issues a certificate that
// verifies, and completes after being stopped at any of its steps. A real store, keyring and
// audit log; a fake clock fixes "today".
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "crypto/hash.h"
#include "crypto/signing.h"
#include "daemon/retention_loader.h"
#include "daemon/service.h"
#include "storage/destruction_certificate.h"
#include "storage/file_scan.h"
#include "storage/ledger.h"
#include "storage/records.h"
#include "tests/testing/in_process_vault.h"

namespace phivault::daemon {
namespace {

constexpr int64_t kStartUs = 1'793'000'000LL * 1000000;  // 2026-10-26T07:33:20Z, "now"

// us-federal plus a minors' rule (3 years after 18) and a death rule (10 years after death).
constexpr const char* kMinorsRetention = R"([retention]
preset = "us-federal"

[[rule]]
name = "practice-minors"
categories = ["*"]
after = "majority"
age_of_majority = 18
years = 3
source = "practice policy"

[[rule]]
name = "practice-after-death"
categories = ["*"]
after = "death"
years = 10
source = "practice policy"
)";

std::string ReadAll(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// Every file under `dir` that holds `needle`.
std::vector<std::string> FilesHolding(const std::filesystem::path& dir, const std::string& needle) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    if (ReadAll(e.path()).find(needle) != std::string::npos) out.push_back(e.path().string());
  }
  return out;
}

class RetentionServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    vault_.clock = [this] { return now_us_.load(); };
    vault_.sweep_fault = [this](std::string_view step) -> Status {
      if (step == fail_at_) return Unavailable("injected crash at " + std::string(step));
      return Status::Ok();
    };
  }
  void Open(const char* retention_text = nullptr) {
    if (retention_text != nullptr) {
      auto r = ParseRetention(vault_.config, "retention.toml", retention_text);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      vault_.retention = *r;
    }
    ASSERT_NO_FATAL_FAILURE(vault_.Open());
    service_ = vault_.service.get();
  }
  // A new service on the same store, keyring and audit log: a daemon restart.
  StatusOr<std::unique_ptr<VaultService>> Reopen(const char* retention_text = nullptr) {
    vault_.service.reset();
    service_ = nullptr;
    std::optional<LoadedRetention> retention = vault_.retention;
    if (retention_text != nullptr) {
      auto r = ParseRetention(vault_.config, "retention.toml", retention_text);
      if (!r.ok()) return r.status();
      retention = *r;
    }
    return NewVaultService({&vault_.config, vault_.store.get(), vault_.faulty_ledger.get(),
                            vault_.keyring.get(), vault_.audit_log.get(), vault_.policy,
                            vault_.clock, retention, vault_.sweep_fault});
  }
  void Restart(const char* retention_text = nullptr) {
    auto opened = Reopen(retention_text);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    vault_.service = std::move(*opened);
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
  static RequestContext Officer() { return Ctx("co.synthetic", "compliance_officer", "HOPERAT"); }

  storage::RecordMetadata Create(const std::string& patient, const std::string& encounter,
                                 const std::string& content,
                                 const std::string& category = "clinical_note") {
    auto m = service_->CreateRecord(
        Physician(), {patient, category, "text/plain", encounter, "Dr. Synthetic", content});
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return m.ok() ? *m : storage::RecordMetadata{};
  }
  std::string EpochOf(const std::string& id) {
    auto r = service_->ReadRecord(Physician(), id, std::nullopt, false);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->meta.epoch_id : "";
  }
  std::string EpochOfVersion(const std::string& id, uint32_t v) {
    auto r = service_->ReadRecord(Physician(), id, v, false);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->meta.epoch_id : "";
  }
  RecordRetention RetentionOf(const std::string& patient, const std::string& id) {
    auto list = service_->PatientRetention(Officer(), patient);
    EXPECT_TRUE(list.ok()) << list.status().ToString();
    if (list.ok()) {
      for (const auto& r : *list) {
        if (r.record_id == id) return r;
      }
    }
    ADD_FAILURE() << "record not listed";
    return {};
  }
  StatusOr<SweepResult> Sweep(bool dry_run, std::optional<std::string> until = std::nullopt) {
    SweepRequest req;
    req.dry_run = dry_run;
    req.until = std::move(until);
    return service_->Sweep(&ctx_admin_, req, nullptr);
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
  std::string BlindId(const std::string& patient) {
    return crypto::HexEncode(
        storage::RecordRepository(*vault_.store, *vault_.keyring).PatientBlindId(patient));
  }
  // The sealed key bytes of `epoch_id` in the keyring file (slot layout in crypto/keyring.h).
  std::string SealedEpochKey(const std::string& epoch_id) {
    const std::string bytes = ReadAll(vault_.dir.Sub("keyring"));
    std::string id = epoch_id;
    id.resize(48, '\0');
    const size_t at = bytes.find(id);
    if (at == std::string::npos) return "";
    return bytes.substr(at + 48 + 4 + 8 + 8, 72);
  }

  testing::InProcessVault vault_;
  VaultService* service_ = nullptr;
  std::atomic<int64_t> now_us_{kStartUs};
  std::string fail_at_;
  RequestContext ctx_admin_ = Admin();
};

TEST_F(RetentionServiceTest, RecordLandsInTheEpochOfItsExpiryAndSaysWhy) {
  ASSERT_NO_FATAL_FAILURE(Open());
  const auto m = Create("patient-ret-1", "2020-03-01", "synthetic note");
  // us-federal: the later of 5 years after the last encounter and 7 after the service.
  EXPECT_EQ(m.epoch_id, "d20270301");
  const RecordRetention r = RetentionOf("patient-ret-1", m.record_id);
  EXPECT_EQ(r.outcome, "expires");
  EXPECT_EQ(r.expires_on, "2027-03-01");
  EXPECT_NE(r.reason.find("federal-medicare-service"), std::string::npos) << r.reason;
  EXPECT_NE(r.reason.find("42 CFR 424.516(f)"), std::string::npos) << r.reason;
  auto rules = service_->RetentionRules(Officer());
  ASSERT_TRUE(rules.ok()) << rules.status().ToString();
  EXPECT_EQ(rules->preset, "us-federal");
  EXPECT_EQ(rules->source, "preset us-federal");
  // The table's coming into force is on the record.
  EXPECT_EQ(EntriesWithAction("retention.load").size(), 1u);
}

TEST_F(RetentionServiceTest, AnAlreadyExpiredRecordIsKeptUntilTomorrowsSweepAtLeast) {
  ASSERT_NO_FATAL_FAILURE(Open());
  const auto m = Create("patient-ret-old", "2001-05-05", "synthetic old note");
  EXPECT_EQ(m.epoch_id, "d20261027");  // never today or earlier
  auto swept = Sweep(/*dry_run=*/false);
  ASSERT_TRUE(swept.ok()) << swept.status().ToString();
  EXPECT_EQ(swept->destroyed_records, 0u);
  EXPECT_TRUE(service_->ReadRecord(Physician(), m.record_id, std::nullopt, true).ok());
}

TEST_F(RetentionServiceTest, ANewEncounterLengthensThePatientsOtherRecords) {
  ASSERT_NO_FATAL_FAILURE(Open());
  const auto a = Create("patient-ret-2", "2020-03-01", "synthetic first visit");
  EXPECT_EQ(a.epoch_id, "d20270301");
  const auto b = Create("patient-ret-2", "2026-10-01", "synthetic second visit");
  EXPECT_EQ(b.epoch_id, "d20331001");
  // 5 years after the new last encounter beats 7 after the first record's service.
  EXPECT_EQ(EpochOf(a.record_id), "d20311001");
  // Moving a record re-wraps its DEK; its content is the same.
  auto read = service_->ReadRecord(Physician(), a.record_id, std::nullopt, true);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->content, "synthetic first visit");
}

TEST_F(RetentionServiceTest, AnAmendmentMovesEveryVersionWithTheLatest) {
  ASSERT_NO_FATAL_FAILURE(Open());
  const auto a = Create("patient-ret-3", "2020-03-01", "synthetic note v1");
  AmendRecordRequest amend;
  amend.content = "synthetic note v2";
  amend.reason = "corrected encounter date";
  amend.encounter_date = "2024-02-02";
  auto v2 = service_->AmendRecord(Physician(), a.record_id, amend);
  ASSERT_TRUE(v2.ok()) << v2.status().ToString();
  EXPECT_EQ(v2->epoch_id, "d20310202");
  EXPECT_EQ(EpochOfVersion(a.record_id, 1), "d20310202");
  EXPECT_EQ(EpochOfVersion(a.record_id, 2), "d20310202");
}

TEST_F(RetentionServiceTest, PatientFactsMoveRecordsAndAreAudited) {
  ASSERT_NO_FATAL_FAILURE(Open(kMinorsRetention));
  const auto m = Create("patient-ret-child", "2020-01-01", "synthetic pediatric note");
  // No date of birth: decided as if born on the encounter date (18 + 3 years later).
  EXPECT_EQ(m.epoch_id, "d20410101");
  EXPECT_NE(RetentionOf("patient-ret-child", m.record_id).reason.find("no date of birth"),
            std::string::npos);

  PatientFactsUpdate facts;
  facts.patient_id = "patient-ret-child";
  facts.date_of_birth = "2010-06-01";
  auto set = service_->SetPatientFacts(Admin(), facts);
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->first.date_of_birth, "2010-06-01");
  // Majority 2028-06-01 + 3 years.
  EXPECT_EQ(EpochOf(m.record_id), "d20310601");
  const auto entry = storage::ReadAuditEntry(*vault_.store, set->second);
  ASSERT_TRUE(entry.ok());
  EXPECT_EQ(entry->action, "patient.facts");
  EXPECT_EQ(entry->patient_bid, BlindId("patient-ret-child"));

  // A death lengthens (10 years after it), and clearing it shortens back.
  PatientFactsUpdate died;
  died.patient_id = "patient-ret-child";
  died.date_of_death = "2026-01-15";
  ASSERT_TRUE(service_->SetPatientFacts(Admin(), died).ok());
  EXPECT_EQ(EpochOf(m.record_id), "d20360115");
  auto shown = service_->GetPatientFacts(Officer(), "patient-ret-child");
  EXPECT_EQ(shown.status().code(), StatusCode::kPermissionDenied);  // "admin" is vault_admin's
  shown = service_->GetPatientFacts(Admin(), "patient-ret-child");
  ASSERT_TRUE(shown.ok()) << shown.status().ToString();
  EXPECT_EQ(shown->date_of_death, "2026-01-15");
  EXPECT_EQ(shown->date_of_birth, "2010-06-01");

  PatientFactsUpdate bad;
  bad.patient_id = "patient-ret-child";
  bad.date_of_death = "2009-01-01";  // before birth
  EXPECT_EQ(service_->SetPatientFacts(Admin(), bad).status().code(), StatusCode::kInvalidArgument);
  bad.date_of_death = "2099-01-01";  // in the future
  EXPECT_EQ(service_->SetPatientFacts(Admin(), bad).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(EpochOf(m.record_id), "d20360115");
}

TEST_F(RetentionServiceTest, ATableThatShortensIsRefusedAndOneThatLengthensMovesRecords) {
  ASSERT_NO_FATAL_FAILURE(Open(kMinorsRetention));
  const auto m = Create("patient-ret-4", "2020-03-01", "synthetic note");
  EXPECT_EQ(m.epoch_id, "d20410301");  // the minors' bound: no date of birth
  // Dropping the practice's rules would shorten: refused at start, nothing changes.
  auto refused = Reopen("[retention]\npreset = \"us-federal\"\n");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("would shorten"), std::string::npos)
      << refused.status().message();
  // Lengthening a preset rule is accepted; every record is re-settled.
  ASSERT_NO_FATAL_FAILURE(Restart((std::string(kMinorsRetention) +
                                   "\n[[rule]]\nname = \"federal-medicare-service\"\nyears = 30\n")
                                      .c_str()));
  EXPECT_EQ(EpochOf(m.record_id), "d20500301");
  EXPECT_EQ(EntriesWithAction("retention.load").size(), 2u);
}

TEST_F(RetentionServiceTest, HoldsMoveRecordsUnderTheirOwnKeyAndBlockDestruction) {
  ASSERT_NO_FATAL_FAILURE(Open());
  const auto held = Create("patient-ret-held", "2010-01-01", "synthetic held note");
  const auto free = Create("patient-ret-free", "2010-01-01", "synthetic free note");
  now_us_ += 3650LL * 86400 * 1000000;  // ten years on: both long expired
  PlaceHoldRequest req;
  req.patient_id = "patient-ret-held";
  req.matter = "Synthetic v. Example Clinic";
  req.reason = "litigation hold";
  auto hold = service_->PlaceHold(Admin(), req);
  ASSERT_TRUE(hold.ok()) << hold.status().ToString();
  const std::string hold_epoch = "h" + hold->first.id;
  EXPECT_EQ(EpochOf(held.record_id), hold_epoch);
  EXPECT_EQ(RetentionOf("patient-ret-held", held.record_id).outcome, "held");
  // A later record of the patient is under the hold from the start.
  const auto later = Create("patient-ret-held", "2036-01-01", "synthetic later note");
  EXPECT_EQ(later.epoch_id, hold_epoch);

  auto swept = Sweep(/*dry_run=*/false);
  ASSERT_TRUE(swept.ok()) << swept.status().ToString();
  EXPECT_EQ(swept->destroyed_records, 1u);
  ASSERT_EQ(swept->destroyed.size(), 1u);
  EXPECT_EQ(swept->destroyed[0].record_id, free.record_id);
  EXPECT_TRUE(service_->ReadRecord(Physician(), held.record_id, std::nullopt, true).ok());

  auto released = service_->ReleaseHold(Admin(), hold->first.id, "matter settled");
  ASSERT_TRUE(released.ok()) << released.status().ToString();
  EXPECT_FALSE(released->first.active());
  // Back to retention, which the later encounter lengthened: 5 years after 2036-01-01.
  EXPECT_EQ(EpochOf(held.record_id), "d20410101");
  EXPECT_EQ(vault_.keyring->GetEpoch(hold_epoch).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(service_->ReleaseHold(Admin(), hold->first.id, "again").status().code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(service_->ReleaseHold(Admin(), "no-such-hold-id-000000", "x").status().code(),
            StatusCode::kNotFound);
  auto holds = service_->ListHolds(Admin(), std::nullopt, /*include_released=*/true);
  ASSERT_TRUE(holds.ok());
  EXPECT_EQ(holds->size(), 1u);
  EXPECT_EQ(EntriesWithAction("hold.place").size(), 1u);
  const auto releases = EntriesWithAction("hold.release");
  ASSERT_EQ(releases.size(), 3u);  // the refused attempts are on the record too
  EXPECT_EQ(releases[0].outcome, "success");
  EXPECT_NE(releases[1].outcome, "success");
  // A physician may not place holds.
  EXPECT_EQ(service_->PlaceHold(Physician(), req).status().code(), StatusCode::kPermissionDenied);
}

TEST_F(RetentionServiceTest, ARecordReleasedPastItsRetentionGoesAtTheNextSweep) {
  ASSERT_NO_FATAL_FAILURE(Open());
  const auto m = Create("patient-ret-rel", "2010-01-01", "synthetic released note");
  const auto other = Create("patient-ret-rel", "2010-01-01", "synthetic unheld note");
  PlaceHoldRequest req;
  req.patient_id = "patient-ret-rel";
  req.matter = "Synthetic audit";
  req.reason = "records request";
  req.record_ids = {m.record_id};
  auto hold = service_->PlaceHold(Admin(), req);
  ASSERT_TRUE(hold.ok()) << hold.status().ToString();
  EXPECT_EQ(EpochOf(m.record_id), "h" + hold->first.id);
  EXPECT_EQ(EpochOf(other.record_id), other.epoch_id);  // only the listed record is held
  req.record_ids = {"AAAAAAAAAAAAAAAAAAAAAA"};
  EXPECT_EQ(service_->PlaceHold(Admin(), req).status().code(), StatusCode::kNotFound);
  req.record_ids = {other.record_id};
  req.patient_id = "patient-ret-someone-else";
  EXPECT_EQ(service_->PlaceHold(Admin(), req).status().code(), StatusCode::kNotFound);

  now_us_ += 3650LL * 86400 * 1000000;
  ASSERT_TRUE(service_->ReleaseHold(Admin(), hold->first.id, "closed").ok());
  EXPECT_EQ(EpochOf(m.record_id), "d20361024");  // tomorrow: the earliest a record may go
  auto today = Sweep(false);
  ASSERT_TRUE(today.ok()) << today.status().ToString();
  EXPECT_EQ(today->destroyed_records, 1u);  // the never-held one
  now_us_ += 86400LL * 1000000;
  auto tomorrow = Sweep(false);
  ASSERT_TRUE(tomorrow.ok()) << tomorrow.status().ToString();
  EXPECT_EQ(tomorrow->destroyed_records, 1u);
  EXPECT_EQ(service_->ReadRecord(Physician(), m.record_id, std::nullopt, true).status().code(),
            StatusCode::kFailedPrecondition);
}

TEST_F(RetentionServiceTest, DryRunListsWhatWouldGoAndWhyAndChangesNothing) {
  ASSERT_NO_FATAL_FAILURE(Open());
  const auto old1 = Create("patient-ret-5", "2015-01-01", "synthetic old");
  const auto fresh = Create("patient-ret-6", "2026-01-01", "synthetic fresh");
  now_us_ += 5LL * 365 * 86400 * 1000000;  // 2031-10: old1 (2022) expired, fresh (2033) not
  const uint64_t entries = vault_.ledger().size();
  auto dry = Sweep(/*dry_run=*/true);
  ASSERT_TRUE(dry.ok()) << dry.status().ToString();
  ASSERT_EQ(dry->destroyed.size(), 1u);
  EXPECT_EQ(dry->destroyed[0].record_id, old1.record_id);
  EXPECT_EQ(dry->destroyed[0].expires_on, "2022-01-01");
  EXPECT_EQ(dry->destroyed[0].patient_bid, BlindId("patient-ret-5"));
  EXPECT_NE(dry->destroyed[0].reason.find("federal-medicare-service"), std::string::npos);
  EXPECT_TRUE(dry->certificate_id.empty());
  EXPECT_EQ(vault_.ledger().size(), entries + 1);  // the dry run itself is audited
  EXPECT_TRUE(vault_.keyring->GetEpoch(old1.epoch_id).ok());
  EXPECT_TRUE(service_->ReadRecord(Physician(), old1.record_id, std::nullopt, true).ok());
  // Looking ahead: by 2034 the fresh record is due too.
  auto ahead = Sweep(/*dry_run=*/true, "2034-01-01");
  ASSERT_TRUE(ahead.ok());
  EXPECT_EQ(ahead->destroyed.size(), 2u);
  // A real sweep may not look ahead.
  EXPECT_EQ(Sweep(false, "2034-01-01").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Sweep(true, "2034-13-01").status().code(), StatusCode::kInvalidArgument);
  (void)fresh;
}

TEST_F(RetentionServiceTest, SweepDestroysLeavesNothingReadableAndCertifiesIt) {
  ASSERT_NO_FATAL_FAILURE(Open());
  const std::string big(6000, 'Q');  // lands in a blob file
  const std::string secret_small = "synthetic-small-plaintext-7f3a9c";
  const std::string secret_big = "synthetic-big-plaintext-" + big;
  const auto gone1 = Create("patient-ret-7", "2012-02-02", secret_small);
  const auto gone2 = Create("patient-ret-8", "2012-02-02", secret_big);
  AmendRecordRequest amend;
  amend.content = secret_small + "-amended";
  amend.reason = "addendum";
  ASSERT_TRUE(service_->AmendRecord(Physician(), gone1.record_id, amend).ok());
  const std::string kept_text = "synthetic-kept-plaintext-0c1d";
  const auto kept = Create("patient-ret-9", "2026-02-02", kept_text);
  now_us_ += 4LL * 365 * 86400 * 1000000;  // 2030: the 2012 records (2019) expired
  ASSERT_TRUE(vault_.store->Flush().ok());
  ASSERT_FALSE(FilesHolding(vault_.dir.Sub("db"), gone2.record_id).empty() &&
               SealedEpochKey(gone1.epoch_id).empty());
  const std::string sealed = SealedEpochKey(gone1.epoch_id);
  ASSERT_EQ(sealed.size(), 72u);
  storage::RecordRepository repo(*vault_.store, *vault_.keyring);
  std::vector<std::string> fingerprints;
  for (const auto& id : {gone1.record_id, gone2.record_id}) {
    auto f = repo.Fingerprints(id);
    ASSERT_TRUE(f.ok());
    fingerprints.insert(fingerprints.end(), f->begin(), f->end());
  }
  auto kept_fps = repo.Fingerprints(kept.record_id);
  ASSERT_TRUE(kept_fps.ok());
  // The search can fail: the live record is found before the sweep, and so are the doomed ones.
  auto before = storage::FindInFiles(vault_.dir.Sub("db"), fingerprints);
  ASSERT_TRUE(before.ok());
  EXPECT_FALSE(before->empty());

  std::vector<SweepProgress> progress;
  SweepRequest req;
  req.dry_run = false;
  auto swept =
      service_->Sweep(&ctx_admin_, req, [&](const SweepProgress& p) { progress.push_back(p); });
  ASSERT_TRUE(swept.ok()) << swept.status().ToString();
  EXPECT_FALSE(swept->resumed);
  EXPECT_EQ(swept->destroyed_records, 2u);
  EXPECT_EQ(swept->destroyed_versions, 3u);
  ASSERT_FALSE(swept->certificate_id.empty());
  EXPECT_EQ(swept->sweep_id, swept->certificate_id);
  EXPECT_NE(
      std::find(swept->epochs_destroyed.begin(), swept->epochs_destroyed.end(), gone1.epoch_id),
      swept->epochs_destroyed.end());
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back().phase, "done");

  // Gone from the service: 410 with the certificate.
  for (const auto& id : {gone1.record_id, gone2.record_id}) {
    auto read = service_->ReadRecord(Physician(), id, std::nullopt, true);
    ASSERT_EQ(read.status().code(), StatusCode::kFailedPrecondition) << read.status().ToString();
    EXPECT_NE(read.status().message().find("record was crypto-shredded (certificate " +
                                           swept->certificate_id + ")"),
              std::string::npos)
        << read.status().message();
  }
  auto list = service_->ListRecords(Physician(), "patient-ret-7");
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->records.empty());
  EXPECT_TRUE(service_->ReadRecord(Physician(), kept.record_id, std::nullopt, true).ok());

  // Gone from every file: plaintext, ciphertext, wrapped DEKs; and the epoch key from the keyring.
  const std::filesystem::path dir = vault_.dir.path();
  EXPECT_TRUE(FilesHolding(dir, secret_small).empty());
  EXPECT_TRUE(FilesHolding(dir, secret_big.substr(0, 40)).empty());
  auto after = storage::FindInFiles(dir.string(), fingerprints);
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->empty()) << after->front().path;
  auto kept_after = storage::FindInFiles(dir.string(), *kept_fps);
  ASSERT_TRUE(kept_after.ok());
  EXPECT_FALSE(kept_after->empty());  // the live record's bytes are still found
  EXPECT_TRUE(FilesHolding(dir, sealed).empty());
  EXPECT_EQ(vault_.keyring->GetEpoch(gone1.epoch_id).status().code(),
            StatusCode::kFailedPrecondition);

  // The certificate verifies with the audit verifier key, names the records, and fails when
  // altered.
  auto note = service_->GetCertificate(Officer(), swept->certificate_id);
  ASSERT_TRUE(note.ok()) << note.status().ToString();
  auto verifier = crypto::ParseNoteVerifierKey(vault_.audit_log->VerifierKey());
  ASSERT_TRUE(verifier.ok());
  auto cert = storage::VerifyDestructionCertificate(*note, *verifier);
  ASSERT_TRUE(cert.ok()) << cert.status().ToString();
  EXPECT_EQ(cert->records.size(), 3u);
  EXPECT_EQ(cert->user, "admin.synthetic");
  EXPECT_EQ(cert->role, "vault_admin");
  EXPECT_NE(cert->verification_result.find("passed"), std::string::npos);
  std::string tampered = *note;
  tampered.replace(tampered.find(gone1.record_id), 1, gone1.record_id[0] == 'A' ? "B" : "A");
  EXPECT_FALSE(storage::VerifyDestructionCertificate(tampered, *verifier).ok());
  auto certs = service_->ListCertificates(Officer());
  ASSERT_TRUE(certs.ok());
  ASSERT_EQ(certs->size(), 1u);
  EXPECT_EQ((*certs)[0].records, 2u);
  EXPECT_EQ((*certs)[0].versions, 3u);
  EXPECT_EQ(service_->GetCertificate(Officer(), "00000000000000000000000000000000").status().code(),
            StatusCode::kNotFound);

  // The audit log: one record.shred per patient inside the certificate's range, and the sweep.
  const auto shreds = EntriesWithAction("record.shred");
  ASSERT_EQ(shreds.size(), 2u);
  std::set<std::string> bids;
  for (const auto& e : shreds) {
    bids.insert(e.patient_bid);
    EXPECT_GE(e.seq, cert->audit_seq_first);
    EXPECT_LE(e.seq, cert->audit_seq_last);
  }
  EXPECT_EQ(bids, (std::set<std::string>{BlindId("patient-ret-7"), BlindId("patient-ret-8")}));
  const auto sweeps = EntriesWithAction("retention.sweep");
  ASSERT_EQ(sweeps.size(), 1u);
  EXPECT_NE(sweeps[0].reason.find(swept->certificate_id), std::string::npos);

  // Twice changes nothing.
  const uint64_t entries = vault_.ledger().size();
  auto again = Sweep(/*dry_run=*/false);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->destroyed_records, 0u);
  EXPECT_TRUE(again->certificate_id.empty());
  EXPECT_EQ(vault_.ledger().size(), entries + 1);
  auto certs2 = service_->ListCertificates(Officer());
  ASSERT_TRUE(certs2.ok());
  EXPECT_EQ(certs2->size(), 1u);
}

TEST_F(RetentionServiceTest, TheDaemonsOwnSweepRunsAsTheSystemPrincipal) {
  ASSERT_NO_FATAL_FAILURE(Open());
  Create("patient-ret-sys", "2010-01-01", "synthetic note");
  now_us_ += 3650LL * 86400 * 1000000;
  SweepRequest req;
  req.dry_run = false;
  auto swept = service_->Sweep(nullptr, req, nullptr);
  ASSERT_TRUE(swept.ok()) << swept.status().ToString();
  EXPECT_EQ(swept->destroyed_records, 1u);
  const auto sweeps = EntriesWithAction("retention.sweep");
  ASSERT_EQ(sweeps.size(), 1u);
  EXPECT_EQ(sweeps[0].application, "phivaultd:retention");
  EXPECT_EQ(sweeps[0].outcome, "success");
}

TEST_F(RetentionServiceTest, ASweepRefusedByThePolicyDestroysNothingAndIsAudited) {
  ASSERT_NO_FATAL_FAILURE(Open());
  const auto m = Create("patient-ret-deny", "2010-01-01", "synthetic note");
  now_us_ += 3650LL * 86400 * 1000000;
  SweepRequest req;
  req.dry_run = false;
  auto denied = service_->Sweep(nullptr, req, nullptr);
  ASSERT_TRUE(denied.ok());  // the system principal is not the policy's to refuse
  (void)m;
  const auto physician = Physician();
  Create("patient-ret-deny2", "2010-01-01", "synthetic note");
  now_us_ += 3650LL * 86400 * 1000000;
  auto refused = service_->Sweep(&physician, req, nullptr);
  EXPECT_EQ(refused.status().code(), StatusCode::kPermissionDenied);
  const auto sweeps = EntriesWithAction("retention.sweep");
  ASSERT_EQ(sweeps.size(), 2u);
  EXPECT_EQ(sweeps[1].outcome, "denied");
}

// Someone who can write the data directory plants a sweep journal telling the next sweep to
// erase a live epoch and delete a live record: it is not believed, and nothing is destroyed.
TEST_F(RetentionServiceTest, APlantedSweepJournalIsRefusedAndDestroysNothing) {
  ASSERT_NO_FATAL_FAILURE(Open());
  const auto live = Create("patient-ret-plant", "2026-01-01", "synthetic live note");
  const std::string planted = nlohmann::json{
      {"id", "0123456789abcdef0123456789abcdef"},
      {"until", "2026-10-26"},
      {"started_us", kStartUs},
      {"phase", "erase"},
      {"epochs", {live.epoch_id}},
      {"principal", "x"},
      {"user", "x"},
      {"role", "x"},
      {"rewrapped", 0},
      {"held", 0},
      {"verification_result", ""}}.dump();
  storage::WriteBatch plant;
  plant.Put(storage::Cf::kState, "sweep/journal", planted);
  ASSERT_TRUE(vault_.store->Write(plant, true).ok());
  auto swept = Sweep(/*dry_run=*/false);
  ASSERT_FALSE(swept.ok());
  EXPECT_EQ(swept.status().code(), StatusCode::kDataLoss) << swept.status().ToString();
  EXPECT_TRUE(vault_.keyring->GetEpoch(live.epoch_id).ok());
  auto read = service_->ReadRecord(Physician(), live.record_id, std::nullopt, true);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->content, "synthetic live note");
}

// Someone who can write the data directory deletes a chunk of a stopped sweep's chosen records
// (each chunk is sealed, the set of chunks is not) after its keys were erased: the next sweep
// must not certify without those records, and says why.
TEST_F(RetentionServiceTest, ADeletedChunkOfTheSweepJournalIsRefusedNotForgotten) {
  ASSERT_NO_FATAL_FAILURE(Open());
  const auto gone = Create("patient-ret-chunk", "2011-01-01", "synthetic chunk note");
  now_us_ += 3LL * 365 * 86400 * 1000000;
  fail_at_ = "delete";
  ASSERT_FALSE(Sweep(/*dry_run=*/false).ok());
  fail_at_.clear();
  storage::WriteBatch cut;
  cut.Delete(storage::Cf::kState, "sweep/d/00000000");
  ASSERT_TRUE(vault_.store->Write(cut, true).ok());
  ASSERT_NO_FATAL_FAILURE(Restart());
  auto swept = Sweep(/*dry_run=*/false);
  ASSERT_FALSE(swept.ok());
  EXPECT_EQ(swept.status().code(), StatusCode::kDataLoss) << swept.status().ToString();
  EXPECT_NE(swept.status().message().find("0 of its 1 chosen records"), std::string::npos)
      << swept.status().ToString();
  EXPECT_TRUE(service_->ListCertificates(Officer())->empty());
}

// The same attacker puts back a chunk from an earlier staging of the chosen records (the
// recheck's, written before the erase step confirmed which records no longer open): it no
// longer authenticates, so it cannot bring back a record the erase step dropped.
TEST_F(RetentionServiceTest, AChunkFromAnEarlierStagingOfTheSweepJournalIsRefused) {
  ASSERT_NO_FATAL_FAILURE(Open());
  Create("patient-ret-stage", "2011-01-01", "synthetic staging note");
  now_us_ += 3LL * 365 * 86400 * 1000000;
  fail_at_ = "verify-erase";
  ASSERT_FALSE(Sweep(/*dry_run=*/false).ok());
  auto earlier = vault_.store->Get(storage::Cf::kState, "sweep/d/00000000");
  ASSERT_TRUE(earlier.ok() && earlier->has_value());
  fail_at_ = "delete";
  ASSERT_FALSE(Sweep(/*dry_run=*/false).ok());
  auto current = vault_.store->Get(storage::Cf::kState, "sweep/d/00000000");
  ASSERT_TRUE(current.ok() && current->has_value());
  ASSERT_NE(**earlier, **current);
  fail_at_.clear();
  storage::WriteBatch back;
  back.Put(storage::Cf::kState, "sweep/d/00000000", **earlier);
  ASSERT_TRUE(vault_.store->Write(back, true).ok());
  ASSERT_NO_FATAL_FAILURE(Restart());
  auto swept = Sweep(/*dry_run=*/false);
  ASSERT_FALSE(swept.ok());
  EXPECT_EQ(swept.status().code(), StatusCode::kDataLoss) << swept.status().ToString();
  EXPECT_TRUE(service_->ListCertificates(Officer())->empty());
}

// A sweep beside normal traffic: creates, reads and amendments of other records and of the very
// records being destroyed all go on; none fails except an amendment of a record already erased
// (410), and whatever the sweep certifies is exactly what no longer reads.
TEST_F(RetentionServiceTest, ASweepRunsBesideTrafficAndNeverRacesAnAmendment) {
  ASSERT_NO_FATAL_FAILURE(Open());
  std::vector<std::string> doomed;
  for (int i = 0; i < 60; ++i) {
    doomed.push_back(
        Create("patient-race-" + std::to_string(i % 20), "2011-01-01", "synthetic race note")
            .record_id);
  }
  now_us_ += 3LL * 365 * 86400 * 1000000;
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::atomic<int> amended{0};
  std::atomic<int> gone{0};
  std::mutex versions_mu;
  std::map<std::string, uint32_t> versions_of;  // amendments that succeeded, per record
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      int n = 0;
      while (!stop) {
        const std::string patient = "patient-busy-" + std::to_string(t);
        auto m = service_->CreateRecord(Physician(), {patient, "clinical_note", "text/plain",
                                                      "2029-06-01", "Dr. Synthetic", "busy"});
        if (!m.ok()) ++failures;
        if (m.ok() && !service_->ReadRecord(Physician(), m->record_id, std::nullopt, true).ok()) {
          ++failures;
        }
        AmendRecordRequest amend;
        amend.content = "synthetic race addendum";
        amend.reason = "addendum";
        const std::string& target = doomed[(n++ * 7 + t) % doomed.size()];
        auto a = service_->AmendRecord(Physician(), target, amend);
        if (a.ok()) {
          ++amended;
          std::lock_guard<std::mutex> lock(versions_mu);
          ++versions_of[target];
        } else if (a.status().code() == StatusCode::kFailedPrecondition) {
          ++gone;
        } else {
          ++failures;
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto swept = Sweep(/*dry_run=*/false);
  stop = true;
  for (auto& c : clients) c.join();
  ASSERT_TRUE(swept.ok()) << swept.status().ToString();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(amended.load(), 0);
  EXPECT_EQ(swept->destroyed_records, doomed.size());
  auto note = service_->GetCertificate(Officer(), swept->certificate_id);
  ASSERT_TRUE(note.ok());
  auto verifier = crypto::ParseNoteVerifierKey(vault_.audit_log->VerifierKey());
  ASSERT_TRUE(verifier.ok());
  auto cert = storage::VerifyDestructionCertificate(*note, *verifier);
  ASSERT_TRUE(cert.ok()) << cert.status().ToString();
  // Every version of every destroyed record is certified, the amendments made during the sweep
  // included, and none of them reads.
  uint64_t versions = 0;
  for (const auto& id : doomed) {
    auto read = service_->ReadRecord(Physician(), id, std::nullopt, true);
    EXPECT_EQ(read.status().code(), StatusCode::kFailedPrecondition);
    uint32_t certified = 0;
    for (const auto& r : cert->records) {
      if (r.record_id == id) ++certified;
    }
    EXPECT_EQ(certified, 1 + versions_of[id]) << id;
    versions += certified;
  }
  EXPECT_EQ(versions, cert->records.size());
}

TEST_F(RetentionServiceTest, WhoMayReadCertificatesMayHaveTheKeyThatChecksThem) {
  ASSERT_NO_FATAL_FAILURE(Open());
  RequestContext reader = Officer();
  reader.principal.actions = {"certificate.read"};
  auto key = service_->AuditVerifierKey(reader);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(*key, vault_.audit_log->VerifierKey());
  reader.principal.actions = {"record.read"};
  EXPECT_EQ(service_->AuditVerifierKey(reader).status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(service_->ListCertificates(reader).status().code(), StatusCode::kPermissionDenied);
}

// Someone who can write the data directory replaces the stored "table in force" with the bare
// preset, so that a retention file dropping the practice's rules would pass the shortening
// check: the forged value is not believed, and the daemon does not start on it.
TEST_F(RetentionServiceTest, APlantedRetentionTableInForceIsRefused) {
  ASSERT_NO_FATAL_FAILURE(Open(kMinorsRetention));
  const auto m = Create("patient-ret-forge", "2020-03-01", "synthetic note");
  storage::WriteBatch plant;
  plant.Put(storage::Cf::kState, "retention/table",
            nlohmann::json{{"source", "retention.toml"},
                           {"sha256", "00"},
                           {"text", "[retention]\npreset = \"us-federal\"\n"},
                           {"from_us", kStartUs}}
                .dump());
  ASSERT_TRUE(vault_.store->Write(plant, true).ok());
  auto reopened = Reopen("[retention]\npreset = \"us-federal\"\n");
  ASSERT_FALSE(reopened.ok());
  EXPECT_EQ(reopened.status().code(), StatusCode::kDataLoss) << reopened.status().ToString();
  EXPECT_NE(reopened.status().message().find("stored retention table"), std::string::npos);
  (void)m;
}

// A sweep stopped at each of its steps (as a crash would stop it) is completed by the next one,
// after a restart: the same records destroyed, one certificate, one record.shred per patient.
class SweepCrashTest : public RetentionServiceTest,
                       public ::testing::WithParamInterface<const char*> {};

TEST_P(SweepCrashTest, StoppedSweepIsCompletedByTheNext) {
  ASSERT_NO_FATAL_FAILURE(Open());
  const auto gone_a = Create("patient-crash-1", "2011-01-01", "synthetic crash note a");
  const auto gone_b = Create("patient-crash-2", "2011-01-01", "synthetic crash note b");
  const auto kept = Create("patient-crash-3", "2026-01-01", "synthetic crash note kept");
  now_us_ += 3LL * 365 * 86400 * 1000000;
  fail_at_ = GetParam();
  auto stopped = Sweep(/*dry_run=*/false);
  ASSERT_FALSE(stopped.ok());
  EXPECT_NE(stopped.status().message().find("injected crash"), std::string::npos)
      << stopped.status().ToString();
  EXPECT_TRUE(service_->ListCertificates(Officer())->empty());
  fail_at_.clear();
  ASSERT_NO_FATAL_FAILURE(Restart());
  auto done = Sweep(/*dry_run=*/false);
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_EQ(done->destroyed_records, 2u);
  EXPECT_FALSE(done->certificate_id.empty());
  EXPECT_EQ(EntriesWithAction("record.shred").size(), 2u);
  EXPECT_EQ(service_->ListCertificates(Officer())->size(), 1u);
  for (const auto& id : {gone_a.record_id, gone_b.record_id}) {
    EXPECT_EQ(service_->ReadRecord(Physician(), id, std::nullopt, true).status().code(),
              StatusCode::kFailedPrecondition);
  }
  EXPECT_TRUE(service_->ReadRecord(Physician(), kept.record_id, std::nullopt, true).ok());
  auto after = storage::FindInFiles(vault_.dir.path().string(),
                                    std::vector<std::string>{"synthetic crash note a"});
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->empty());
  // And once more: nothing.
  auto again = Sweep(/*dry_run=*/false);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->destroyed_records, 0u);
  EXPECT_EQ(EntriesWithAction("record.shred").size(), 2u);
}

INSTANTIATE_TEST_SUITE_P(EachStep, SweepCrashTest,
                         ::testing::Values("recheck", "erase", "verify-erase", "delete", "compact",
                                           "verify", "audit", "certificate"));

// A hold placed after a sweep stopped (its records were chosen, its keys not yet erased) wins:
// the resumed sweep destroys none of the held records.
TEST_F(RetentionServiceTest, AHoldPlacedWhileASweepIsStoppedWins) {
  ASSERT_NO_FATAL_FAILURE(Open());
  const auto m = Create("patient-crash-hold", "2011-01-01", "synthetic hold race");
  now_us_ += 3LL * 365 * 86400 * 1000000;
  fail_at_ = "erase";
  ASSERT_FALSE(Sweep(false).ok());
  fail_at_.clear();
  PlaceHoldRequest req;
  req.patient_id = "patient-crash-hold";
  req.matter = "Synthetic matter";
  req.reason = "preservation letter";
  ASSERT_TRUE(service_->PlaceHold(Admin(), req).ok());
  auto done = Sweep(false);
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_EQ(done->destroyed_records, 0u);
  EXPECT_TRUE(service_->ReadRecord(Physician(), m.record_id, std::nullopt, true).ok());
}

}  // namespace
}  // namespace phivault::daemon
