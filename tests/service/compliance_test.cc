// Disclosures, the accounting of disclosures, the access report, audit exports and proofs,
// through the service layer on a real store, keyring and verifiable audit log.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "crypto/secret.h"
#include "daemon/service.h"
#include "storage/audit_verify.h"
#include "storage/ledger.h"
#include "storage/merkle.h"
#include "tests/testing/in_process_vault.h"

namespace phivault::daemon {
namespace {

class ComplianceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(vault_.Open());
    store_ = vault_.store.get();
    log_ = vault_.audit_log.get();
    service_ = vault_.service.get();
  }

  RequestContext Ctx(std::string role = "physician", std::string purpose = "TREAT") {
    RequestContext ctx;
    ctx.request_id = "req";
    ctx.principal.name = "test-app";
    ctx.principal.actions = KnownActions();
    ctx.principal.roles = DefaultRoles();  // bound to every role, as the handler checked
    ctx.user = role == "compliance_officer" ? "co.synthetic" : "dr.synthetic";
    ctx.role = std::move(role);
    ctx.purpose = std::move(purpose);
    return ctx;
  }

  std::string NewRecord(const std::string& patient) {
    auto m = service_->CreateRecord(
        Ctx(), {patient, "lab_result", "text/plain", "2026-10-01", "Dr. Synthetic", "HbA1c 6.1%"});
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return m.ok() ? m->record_id : "";
  }

  std::string Export(const RequestContext& ctx, AuditExportRequest req) {
    std::string out;
    Status s = service_->ExportAudit(ctx, req, [&](std::string_view chunk) {
      out.append(chunk);
      return true;
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }

  // Verifies a JSON Lines export offline, from a file, with only the published verifier key.
  storage::AuditVerifyReport VerifyOffline(const std::string& exported) {
    const std::string path = dir_.Sub("export-" + std::to_string(++exports_) + ".jsonl");
    std::ofstream(path) << exported;
    auto vkey = service_->AuditVerifierKey(Ctx("compliance_officer", "HOPERAT"));
    EXPECT_TRUE(vkey.ok());
    auto verifier = crypto::ParseNoteVerifierKey(vkey.ok() ? *vkey : "");
    EXPECT_TRUE(verifier.ok());
    if (!verifier.ok()) return {};
    std::ifstream in(path);
    auto report = storage::VerifyAuditExport(in, *verifier);
    EXPECT_TRUE(report.ok()) << report.status().ToString();
    return report.ok() ? *report : storage::AuditVerifyReport{};
  }

  // The entry lines of a JSON Lines export; counts its checkpoint lines into `checkpoints`.
  static std::vector<nlohmann::json> EntryLines(const std::string& exported, size_t* checkpoints) {
    std::vector<nlohmann::json> entries;
    *checkpoints = 0;
    std::istringstream in(exported);
    std::string line;
    while (std::getline(in, line)) {
      nlohmann::json j = nlohmann::json::parse(line);
      if (j["type"] == "entry") entries.push_back(std::move(j));
      if (j["type"] == "checkpoint") ++*checkpoints;
    }
    return entries;
  }

  testing::InProcessVault vault_;
  testing::TempDir& dir_ = vault_.dir;
  int exports_ = 0;
  storage::Store* store_ = nullptr;
  storage::AuditLog* log_ = nullptr;
  VaultService* service_ = nullptr;
};

TEST_F(ComplianceTest, AccountingListsAccountableDisclosuresAndLeavesOutTreatment) {
  const std::string id = NewRecord("synthetic-acct-1");
  RecordDisclosureRequest to_health_dept{
      "synthetic-acct-1",
      {id},
      std::nullopt,
      {"County Health Department", "1 Main St, Springfield", "public_health",
       "lab result for notifiable disease", ""}};
  ASSERT_TRUE(service_->RecordDisclosure(Ctx("physician", "PUBHLTH"), to_health_dept).ok());
  // A read that names a recipient records the disclosure itself; treatment is excluded.
  DisclosureInfo to_specialist{"Synthetic Cardiology", std::nullopt, "", "lab results", ""};
  ASSERT_TRUE(service_->DiscloseRecord(Ctx(), id, std::nullopt, to_specialist).ok());

  auto report =
      service_->AccountingOfDisclosures(Ctx("compliance_officer", "HOPERAT"),
                                        {"synthetic-acct-1", std::nullopt, ReportFormat::kJson});
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->content_type, "application/json");
  EXPECT_NE(report->body.find("County Health Department"), std::string::npos);
  EXPECT_NE(report->body.find("1 Main St, Springfield"), std::string::npos);
  EXPECT_EQ(report->body.find("Synthetic Cardiology"), std::string::npos);

  auto csv = service_->AccountingOfDisclosures(
      Ctx("compliance_officer", "HOPERAT"), {"synthetic-acct-1", std::nullopt, ReportFormat::kCsv});
  ASSERT_TRUE(csv.ok());
  EXPECT_NE(csv->body.find("County Health Department"), std::string::npos);
  auto html =
      service_->AccountingOfDisclosures(Ctx("compliance_officer", "HOPERAT"),
                                        {"synthetic-acct-1", std::nullopt, ReportFormat::kHtml});
  ASSERT_TRUE(html.ok());
  EXPECT_NE(html->body.find("Accounting of Disclosures"), std::string::npos);
  EXPECT_NE(html->body.find("County Health Department"), std::string::npos);
}

TEST_F(ComplianceTest, AnotherPatientsDisclosuresNeverAppear) {
  NewRecord("synthetic-acct-2");
  ASSERT_TRUE(service_
                  ->RecordDisclosure(Ctx("physician", "PUBHLTH"),
                                     {"synthetic-acct-3",
                                      {},
                                      std::nullopt,
                                      {"State Registry", std::nullopt, "public_health",
                                       "immunization record", ""}})
                  .ok());
  auto report =
      service_->AccountingOfDisclosures(Ctx("compliance_officer", "HOPERAT"),
                                        {"synthetic-acct-2", std::nullopt, ReportFormat::kJson});
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->body.find("State Registry"), std::string::npos);
}

TEST_F(ComplianceTest, SuspensionWithholdsDisclosuresToThatAgencyWhileItRuns) {
  NewRecord("synthetic-acct-4");
  ASSERT_TRUE(service_
                  ->RecordDisclosure(Ctx("physician", "HLEGAL"),
                                     {"synthetic-acct-4",
                                      {},
                                      std::nullopt,
                                      {"Synthetic Police Department", std::nullopt,
                                       "law_enforcement", "visit dates", ""}})
                  .ok());
  const int64_t now = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  SuspensionRequest suspension{"Synthetic Police Department", now - 1000000,
                               now + 86400LL * 1000000 * 10, false,
                               "written request by Det. Synthetic, case 42"};
  ASSERT_TRUE(
      service_->AddDisclosureSuspension(Ctx("compliance_officer", "HOPERAT"), suspension).ok());
  auto report =
      service_->AccountingOfDisclosures(Ctx("compliance_officer", "HOPERAT"),
                                        {"synthetic-acct-4", std::nullopt, ReportFormat::kJson});
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->body.find("Synthetic Police Department"), std::string::npos);
  SuspensionRequest no_end{"Agency", now, std::nullopt, false, "written, no end"};
  EXPECT_EQ(service_->AddDisclosureSuspension(Ctx("compliance_officer", "HOPERAT"), no_end)
                .status()
                .code(),
            StatusCode::kInvalidArgument);
}

TEST_F(ComplianceTest, DisclosuresNeedABasisWhenThePurposeDoesNotSettleIt) {
  auto s = service_->RecordDisclosure(
      Ctx("compliance_officer", "HOPERAT"),
      {"synthetic-acct-5",
       {},
       std::nullopt,
       {"Synthetic University", std::nullopt, "", "de-identified? no: full record", "", "HRESCH"}});
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("basis"), std::string::npos);
}

// The purpose an accounting shows is the disclosure's, not that of the officer who recorded it.
TEST_F(ComplianceTest, ADisclosuresPurposeComesFromItsBasisNotTheRecordingRequest) {
  NewRecord("synthetic-acct-7");
  const RequestContext officer = Ctx("compliance_officer", "HOPERAT");
  RecordDisclosureRequest police{
      "synthetic-acct-7",
      {},
      std::nullopt,
      {"Synthetic Police Department", std::nullopt, "law_enforcement", "visit dates", ""}};
  ASSERT_TRUE(service_->RecordDisclosure(officer, police).ok());
  RecordDisclosureRequest registry{
      "synthetic-acct-7",
      {},
      std::nullopt,
      {"Synthetic Tumor Registry", std::nullopt, "", "pathology report", "", "PUBHLTH"}};
  ASSERT_TRUE(service_->RecordDisclosure(officer, registry).ok());

  auto report = service_->AccountingOfDisclosures(
      officer, {"synthetic-acct-7", std::nullopt, ReportFormat::kJson});
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  const auto j = nlohmann::json::parse(report->body);
  std::map<std::string, std::string> purpose_of;
  for (const auto& d : j["disclosures"]) {
    purpose_of[d["recipient"]["name"].get<std::string>()] = d["purpose"]["code"];
  }
  EXPECT_EQ(purpose_of["Synthetic Police Department"], "HLEGAL") << report->body;
  EXPECT_EQ(purpose_of["Synthetic Tumor Registry"], "PUBHLTH") << report->body;
  EXPECT_EQ(report->body.find("HOPERAT"), std::string::npos) << report->body;

  // A purpose that means another basis is refused, and so is a disclosure with neither.
  police.disclosure.purpose = "TREAT";
  auto contradiction = service_->RecordDisclosure(officer, police);
  EXPECT_EQ(contradiction.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(contradiction.status().message().find("tpo_treatment"), std::string::npos)
      << contradiction.status().message();
  RecordDisclosureRequest neither{
      "synthetic-acct-7", {}, std::nullopt, {"Someone", std::nullopt, "", "something", ""}};
  EXPECT_EQ(service_->RecordDisclosure(officer, neither).status().code(),
            StatusCode::kInvalidArgument);
}

// An attacker with write access to the database moves one entry's sealed PHI (same key, same
// associated data) onto another entry: the entry's commitment no longer matches, and the
// report fails instead of naming the wrong recipient.
TEST_F(ComplianceTest, SealedPhiMovedToAnotherEntryFailsTheReport) {
  NewRecord("synthetic-acct-8");
  auto first = service_->RecordDisclosure(
      Ctx("compliance_officer", "HOPERAT"),
      {"synthetic-acct-8",
       {},
       std::nullopt,
       {"Synthetic Health Dept", std::nullopt, "public_health", "lab result", ""}});
  auto second = service_->RecordDisclosure(
      Ctx("compliance_officer", "HOPERAT"),
      {"synthetic-acct-8",
       {},
       std::nullopt,
       {"Synthetic Police", std::nullopt, "law_enforcement", "visit dates", ""}});
  ASSERT_TRUE(first.ok() && second.ok());
  auto a = storage::ReadAuditEntry(*store_, *first);
  auto b = storage::ReadAuditEntry(*store_, *second);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_FALSE(a->phi_commit.empty());
  b->sealed_phi = a->sealed_phi;
  storage::WriteBatch batch;
  batch.Put(storage::Cf::kAudit, storage::AuditKey(*second), *storage::EncodeAuditEntry(*b));
  ASSERT_TRUE(store_->Write(batch, /*sync=*/true).ok());
  auto report =
      service_->AccountingOfDisclosures(Ctx("compliance_officer", "HOPERAT"),
                                        {"synthetic-acct-8", std::nullopt, ReportFormat::kJson});
  ASSERT_FALSE(report.ok()) << report->body;
  EXPECT_EQ(report.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(report.status().message().find("commitment"), std::string::npos)
      << report.status().message();
}

TEST_F(ComplianceTest, AccessReportShowsWhoReadThePatientsRecords) {
  const std::string id = NewRecord("synthetic-acct-6");
  ASSERT_TRUE(service_->ReadRecord(Ctx(), id, std::nullopt, true).ok());
  auto report = service_->AccessReport(Ctx("compliance_officer", "HOPERAT"),
                                       {"synthetic-acct-6", std::nullopt, ReportFormat::kCsv});
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_NE(report->body.find("dr.synthetic"), std::string::npos);
  EXPECT_NE(report->body.find("record.read"), std::string::npos);
}

TEST_F(ComplianceTest, FullJsonLinesExportVerifiesOfflineWithOnlyThePublicKey) {
  const std::string id = NewRecord("synthetic-acct-7");
  ASSERT_TRUE(service_->ReadRecord(Ctx(), id, std::nullopt, true).ok());
  const std::string exported = Export(Ctx("compliance_officer", "HOPERAT"), {});
  // The export was audited before it was produced, so it contains its own entry.
  EXPECT_NE(exported.find("audit.export"), std::string::npos);
  const std::string path = dir_.Sub("export.jsonl");
  std::ofstream(path) << exported;
  auto vkey = service_->AuditVerifierKey(Ctx("compliance_officer", "HOPERAT"));
  ASSERT_TRUE(vkey.ok());
  auto verifier = crypto::ParseNoteVerifierKey(*vkey);
  ASSERT_TRUE(verifier.ok());
  std::ifstream in(path);
  auto report = storage::VerifyAuditExport(in, *verifier);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok) << (report->problem ? report->problem->message : "");
  // The policy and the retention table coming into force (seq 1, 2), the create, the read and
  // the export.
  EXPECT_EQ(report->entries_checked, 5u);
  EXPECT_EQ(report->entries_covered, 5u);
}

TEST_F(ComplianceTest, PatientFilteredJsonLinesExportVerifiesOfflineAndHoldsOnlyThatPatient) {
  const std::string id = NewRecord("synthetic-acct-11");
  NewRecord("synthetic-acct-11");
  const std::string other = NewRecord("synthetic-acct-12");
  auto compliance = Ctx("compliance_officer", "HOPERAT");
  ASSERT_TRUE(service_->AuditCheckpoint(compliance, true).ok());  // an older checkpoint, size 4
  ASSERT_TRUE(service_->ReadRecord(Ctx(), id, std::nullopt, true).ok());
  ASSERT_TRUE(service_->ReadRecord(Ctx(), other, std::nullopt, true).ok());

  AuditExportRequest req;
  req.patient_id = "synthetic-acct-11";
  const std::string exported = Export(compliance, req);
  EXPECT_EQ(exported.find("synthetic-acct-12"), std::string::npos);
  size_t checkpoints = 0;
  const std::vector<nlohmann::json> entries = EntryLines(exported, &checkpoints);
  // Two creates, one read, and the export itself (it names the patient).
  ASSERT_EQ(entries.size(), 4u);
  for (const nlohmann::json& e : entries) {
    EXPECT_EQ(e["phi"]["patient_id"], "synthetic-acct-11");
    EXPECT_EQ(e["tree_size"], 8u);
  }
  EXPECT_EQ(checkpoints, 1u);  // only the one the proofs are against

  const storage::AuditVerifyReport report = VerifyOffline(exported);
  EXPECT_TRUE(report.ok) << (report.problem ? report.problem->message : "");
  EXPECT_TRUE(report.filtered);
  EXPECT_EQ(report.entries_checked, 4u);
  EXPECT_EQ(report.entries_covered, 8u);
}

TEST_F(ComplianceTest, UserFilteredJsonLinesExportVerifiesOfflineAndHoldsOnlyThatUser) {
  const std::string id = NewRecord("synthetic-acct-13");
  auto other_user = Ctx();
  other_user.user = "dr.other";
  ASSERT_TRUE(service_->ReadRecord(other_user, id, std::nullopt, true).ok());
  ASSERT_TRUE(service_->ReadRecord(Ctx(), id, std::nullopt, true).ok());
  ASSERT_TRUE(service_->ReadRecord(other_user, id, std::nullopt, false).ok());

  AuditExportRequest req;
  req.user = "dr.other";
  const std::string exported = Export(Ctx("compliance_officer", "HOPERAT"), req);
  size_t checkpoints = 0;
  const std::vector<nlohmann::json> entries = EntryLines(exported, &checkpoints);
  ASSERT_EQ(entries.size(), 2u);
  std::vector<uint64_t> seqs;
  for (const nlohmann::json& e : entries) {
    auto decoded = storage::DecodeAuditEntry(e["entry"].get<std::string>());
    ASSERT_TRUE(decoded.ok());
    EXPECT_EQ(decoded->user, "dr.other");
    seqs.push_back(decoded->seq);
  }
  // After the policy's and the retention table's entries and the create.
  EXPECT_EQ(seqs, (std::vector<uint64_t>{4, 6}));
  EXPECT_EQ(checkpoints, 1u);

  const storage::AuditVerifyReport report = VerifyOffline(exported);
  EXPECT_TRUE(report.ok) << (report.problem ? report.problem->message : "");
  EXPECT_TRUE(report.filtered);
  EXPECT_EQ(report.entries_checked, 2u);
  EXPECT_EQ(report.entries_covered, 7u);
}

TEST_F(ComplianceTest, FilteredJsonLinesExportThatMatchesNothingIsEmpty) {
  NewRecord("synthetic-acct-14");
  AuditExportRequest req;
  req.action = "record.disclose";
  const std::string exported = Export(Ctx("compliance_officer", "HOPERAT"), req);
  EXPECT_EQ(exported, "");
  // An empty file proves nothing (an attacker could hand one over for any export).
  const storage::AuditVerifyReport report = VerifyOffline(exported);
  EXPECT_FALSE(report.ok);
  ASSERT_TRUE(report.problem.has_value());
  EXPECT_EQ(report.problem->kind, storage::AuditProblem::Kind::kUncovered);
}

TEST_F(ComplianceTest, ExportsUnsealPhiOnlyForTheComplianceRole) {
  NewRecord("synthetic-acct-8");
  // The vault administrator may export the log (to archive it) but sees no PHI in it; a
  // physician may not export it at all.
  const std::string as_admin = Export(Ctx("vault_admin", "HOPERAT"), {});
  EXPECT_NE(as_admin.find("record.create"), std::string::npos);
  EXPECT_EQ(as_admin.find("synthetic-acct-8"), std::string::npos);
  const Status physician = service_->ExportAudit(Ctx(), {}, [](std::string_view) { return true; });
  EXPECT_EQ(physician.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(physician.message().find("[rule: default-deny]"), std::string::npos);
  const std::string as_compliance = Export(Ctx("compliance_officer", "HOPERAT"), {});
  EXPECT_NE(as_compliance.find("synthetic-acct-8"), std::string::npos);
  // Defence in depth behind the handler's role check: a principal not bound to the compliance
  // role gets nothing unsealed even if its request claims that role.
  RequestContext claimed = Ctx("compliance_officer", "HOPERAT");
  claimed.principal.roles = {"physician", "nurse"};
  EXPECT_EQ(Export(claimed, {}).find("synthetic-acct-8"), std::string::npos);
  claimed.principal.kind = Principal::Kind::kOperator;
  claimed.principal.operator_role = "compliance_officer";
  claimed.principal.roles = {"compliance_officer"};
  EXPECT_NE(Export(claimed, {}).find("synthetic-acct-8"), std::string::npos);
  AuditExportRequest fhir;
  fhir.format = ExportFormat::kFhir;
  fhir.action = "record.create";
  auto bundle = nlohmann::json::parse(Export(Ctx("compliance_officer", "HOPERAT"), fhir));
  EXPECT_EQ(bundle["resourceType"], "Bundle");
  ASSERT_EQ(bundle["entry"].size(), 1u);
  EXPECT_EQ(bundle["entry"][0]["resource"]["resourceType"], "AuditEvent");
}

TEST_F(ComplianceTest, InclusionAndConsistencyProofsVerifyAgainstTheCheckpointRoot) {
  // Entry 1 is the policy coming into force; four creates make a tree of five.
  for (int i = 0; i < 4; ++i) NewRecord("synthetic-acct-9");
  auto ctx = Ctx("compliance_officer", "HOPERAT");
  auto note = service_->AuditCheckpoint(ctx, true);
  ASSERT_TRUE(note.ok()) << note.status().ToString();
  auto vkey = crypto::ParseNoteVerifierKey(*service_->AuditVerifierKey(ctx));
  ASSERT_TRUE(vkey.ok());
  auto checkpoint = storage::OpenCheckpoint(*note, *vkey);
  ASSERT_TRUE(checkpoint.ok());
  EXPECT_EQ(checkpoint->size, 6u);

  auto proof = service_->AuditInclusionProof(ctx, 3, std::nullopt);
  ASSERT_TRUE(proof.ok()) << proof.status().ToString();
  std::vector<storage::MerkleHash> path;
  for (const auto& h : proof->path_hex) {
    storage::MerkleHash m{};
    auto raw = crypto::HexDecode(h);
    ASSERT_TRUE(raw.ok());
    std::copy(raw->begin(), raw->end(), m.begin());
    path.push_back(m);
  }
  storage::MerkleHash leaf{};
  auto raw_leaf = crypto::HexDecode(proof->leaf_hash_hex);
  ASSERT_TRUE(raw_leaf.ok());
  std::copy(raw_leaf->begin(), raw_leaf->end(), leaf.begin());
  EXPECT_TRUE(storage::VerifyInclusionProof(2, 6, leaf, path, checkpoint->root).ok());
  leaf[0] ^= 1;
  EXPECT_FALSE(storage::VerifyInclusionProof(2, 6, leaf, path, checkpoint->root).ok());

  auto consistency = service_->AuditConsistencyProof(ctx, 2, 6);
  ASSERT_TRUE(consistency.ok());
  EXPECT_FALSE(consistency->empty());
  EXPECT_EQ(service_->AuditInclusionProof(ctx, 7, std::nullopt).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(ComplianceTest, ReportsAndExportsNeedTheirActions) {
  auto ctx = Ctx();
  ctx.principal.actions = {"record.read"};
  EXPECT_EQ(
      service_
          ->AccountingOfDisclosures(ctx, {"synthetic-acct-10", std::nullopt, ReportFormat::kJson})
          .status()
          .code(),
      StatusCode::kPermissionDenied);
  bool called = false;
  EXPECT_EQ(service_
                ->ExportAudit(ctx, {},
                              [&](std::string_view) {
                                called = true;
                                return true;
                              })
                .code(),
            StatusCode::kPermissionDenied);
  EXPECT_FALSE(called);
  EXPECT_EQ(service_->AuditCheckpoint(ctx, true).status().code(), StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace phivault::daemon
