// The retention routes of issue 9 (patient facts, retention views, legal holds, sweeps and
// certificates of destruction) through the real server and handlers against a mock
// VaultService: what reaches the service, the JSON the client gets back, the streamed sweep, and
// that malformed requests never reach the service.
#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "crypto/secret.h"
#include "crypto/signing.h"
#include "daemon/problem.h"
#include "storage/destruction_certificate.h"
#include "tests/daemon/api_server_fixture.h"
#include "tests/daemon/raw_http_client.h"

namespace phivault::daemon {
namespace {

using ::testing::_;
using ::testing::AllOf;
using testing::ExpectProblem;
using ::testing::Field;
using ::testing::HasSubstr;
using testing::HttpServerTest;
using ::testing::Invoke;
using testing::kRecordId;
using ::testing::Not;
using testing::RawResponse;
using testing::Request;
using ::testing::Return;
using testing::TestConfig;

using json = nlohmann::json;

constexpr char kHoldId[] = "HHHHHHHHHHHHHHHHHHHHHw";
constexpr char kCertificateId[] = "00112233445566778899aabbccddeeff";
constexpr char kSecret[] = "synthetic-secret-Roe";
constexpr int64_t kNov29 = 1795910400000000;  // 2026-11-29T00:00:00Z

class RetentionRoutesTest : public HttpServerTest {
 protected:
  void Start() {
    Config config = TestConfig(getuid());
    config.limits.max_connections = 64;
    config.practice_name = "Synthetic Family Practice";
    HttpServerTest::Start(std::move(config));
  }

  void ExpectBadBody(const std::string& method, const std::string& target, const std::string& body,
                     const std::string& detail) {
    SCOPED_TRACE(method + " " + target + " " + body);
    const RawResponse r = Send(Request(method, target, body));
    ExpectProblem(r, 400, "invalid-request");
    EXPECT_THAT(Body(r)["detail"].get<std::string>(), HasSubstr(detail));
    EXPECT_THAT(r.body, Not(HasSubstr(kSecret)));
  }
};

PatientFacts SampleFacts() {
  PatientFacts f;
  f.patient_id = "synthetic-patient-0001";
  f.date_of_birth = "1990-04-01";
  f.last_encounter = "2026-11-29";
  f.updated_us = kNov29;
  f.updated_by = "admin.synthetic";
  return f;
}

LegalHold SampleHold() {
  LegalHold h;
  h.id = kHoldId;
  h.matter = "Synthetic v. Clinic";
  h.reason = "litigation notice";
  h.patient_id = "synthetic-patient-0001";
  h.scope = HoldScope::kRecords;
  h.record_ids = {kRecordId};
  h.placed_by = "counsel.synthetic";
  h.placed_us = kNov29;
  return h;
}

SweepResult SampleSweep(bool dry_run) {
  SweepResult r;
  r.sweep_id = dry_run ? "dryrun-1" : kCertificateId;
  r.dry_run = dry_run;
  r.until = "2026-11-29";
  SweepCandidate c;
  c.record_id = kRecordId;
  c.versions = 2;
  c.category = "lab_result";
  c.patient_bid = std::string(64, 'b');
  c.epoch_id = "d20261128";
  c.expires_on = "2026-11-28";
  c.reason = "expires 2026-11-28: rule 'adult' (22 TAC 165.1): 7 years after last_encounter";
  r.destroyed = {c};
  r.destroyed_records = 1;
  r.destroyed_versions = 2;
  r.rewrapped_records = 3;
  r.held_records = 1;
  if (!dry_run) {
    r.epochs_destroyed = {"d20261128"};
    r.certificate_id = kCertificateId;
    r.verification_result = "passed: 2 of 2 versions fail to decrypt";
  }
  r.audit_seq = 77;
  return r;
}

json SampleSweepJson(bool dry_run) {
  return {{"sweep_id", dry_run ? "dryrun-1" : kCertificateId},
          {"dry_run", dry_run},
          {"until", "2026-11-29"},
          {"destroyed",
           {{{"record_id", kRecordId},
             {"versions", 2},
             {"category", "lab_result"},
             {"patient_bid", std::string(64, 'b')},
             {"epoch_id", "d20261128"},
             {"expires_on", "2026-11-28"},
             {"reason",
              "expires 2026-11-28: rule 'adult' (22 TAC 165.1): 7 years after last_encounter"}}}},
          {"destroyed_records", 1},
          {"destroyed_versions", 2},
          {"rewrapped_records", 3},
          {"held_records", 1},
          {"epochs_destroyed", dry_run ? json::array() : json::array({"d20261128"})},
          {"resumed", false},
          {"certificate_id", dry_run ? json(nullptr) : json(kCertificateId)},
          {"verification_result", dry_run ? "" : "passed: 2 of 2 versions fail to decrypt"},
          {"audit_seq", 77}};
}

// The lines of an NDJSON body, each parsed.
std::vector<json> Lines(const std::string& body) {
  std::vector<json> out;
  size_t start = 0;
  while (start < body.size()) {
    const size_t end = body.find('\n', start);
    EXPECT_NE(end, std::string::npos) << "the last line has no newline";
    if (end == std::string::npos) break;
    out.push_back(json::parse(body.substr(start, end - start)));
    start = end + 1;
  }
  return out;
}

// ---- patient facts

TEST_F(RetentionRoutesTest, SetFactsTellsKeepFromClearFromSet) {
  Start();
  EXPECT_CALL(service_, SetPatientFacts(_, _))
      .WillOnce(Invoke([](const RequestContext& ctx, const PatientFactsUpdate& u) {
        EXPECT_EQ(ctx.user, "nurse.synthetic");
        EXPECT_EQ(u.patient_id, "synthetic-patient-0001");
        EXPECT_EQ(u.date_of_birth, std::optional<std::string>("1990-04-01"));
        EXPECT_EQ(u.date_of_death, std::optional<std::string>(""));  // null: clear
        EXPECT_EQ(u.last_encounter, std::nullopt);                   // absent: keep
        return std::make_pair(SampleFacts(), uint64_t{12});
      }))
      .WillOnce(Invoke([](const RequestContext&, const PatientFactsUpdate& u) {
        EXPECT_EQ(u.date_of_birth, std::optional<std::string>(""));  // "": clear
        EXPECT_EQ(u.date_of_death, std::nullopt);
        return std::make_pair(SampleFacts(), uint64_t{13});
      }));
  RawResponse r = Send(Request("PUT", "/v1/patients/facts",
                               R"({"patient_id":"synthetic-patient-0001",)"
                               R"("date_of_birth":"1990-04-01","date_of_death":null})"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r), json({{"facts",
                            {{"patient_id", "synthetic-patient-0001"},
                             {"date_of_birth", "1990-04-01"},
                             {"date_of_death", nullptr},
                             {"last_encounter", "2026-11-29"},
                             {"updated_at", "2026-11-29T00:00:00.000000Z"},
                             {"updated_by", "admin.synthetic"}}},
                           {"audit_seq", 12}}));
  r = Send(Request("PUT", "/v1/patients/facts", R"({"patient_id":"p","date_of_birth":""})"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Body(r)["audit_seq"], 13);
}

TEST_F(RetentionRoutesTest, GetFactsAndItsNotFound) {
  Start();
  EXPECT_CALL(service_, GetPatientFacts(_, "synthetic-patient-0001"))
      .WillOnce(Return(SampleFacts()))
      .WillOnce(Return(NotFound("no facts are recorded for this patient")));
  RawResponse r = Send(
      Request("POST", "/v1/patients/facts/_get", R"({"patient_id":"synthetic-patient-0001"})"));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(Body(r)["facts"]["date_of_birth"], "1990-04-01");
  EXPECT_EQ(Body(r)["facts"]["date_of_death"], nullptr);
  EXPECT_EQ(Body(r).size(), 1u);
  r = Send(
      Request("POST", "/v1/patients/facts/_get", R"({"patient_id":"synthetic-patient-0001"})"));
  ExpectProblem(r, 404, "not-found");
  EXPECT_EQ(Body(r)["detail"], "no facts are recorded for this patient");
}

TEST_F(RetentionRoutesTest, FactsRejectMalformedBodies) {
  Start();
  const std::string s = kSecret;
  ExpectBadBody("PUT", "/v1/patients/facts", R"({"date_of_birth":"1990-04-01"})",
                "'patient_id' is required");
  ExpectBadBody("PUT", "/v1/patients/facts", R"({"patient_id":"p","date_of_birth":19900401})",
                "'date_of_birth' must be a date");
  ExpectBadBody("PUT", "/v1/patients/facts", R"({"patient_id":"p","died":")" + s + "\"}",
                "unknown field 'died'");
  ExpectBadBody("POST", "/v1/patients/facts/_get", R"({"patient_id":7})", "'patient_id'");
  ExpectBadBody("POST", "/v1/retention/_patient", R"({})", "'patient_id' is required");
}

// ---- retention views

TEST_F(RetentionRoutesTest, PatientRetentionListsEachRecordsDecision) {
  Start();
  RecordRetention expires;
  expires.record_id = kRecordId;
  expires.versions = 3;
  expires.category = "lab_result";
  expires.epoch_id = "d20331129";
  expires.outcome = "expires";
  expires.expires_on = "2033-11-29";
  expires.reason = "expires 2033-11-29: rule 'adult'";
  RecordRetention held = expires;
  held.record_id = "BBBBBBBBBBBBBBBBBBBBBB";
  held.outcome = "held";
  held.hold_ids = {kHoldId};
  RecordRetention undetermined = expires;
  undetermined.record_id = "CCCCCCCCCCCCCCCCCCCCCC";
  undetermined.outcome = "undetermined";
  undetermined.expires_on.clear();
  EXPECT_CALL(service_, PatientRetention(_, "synthetic-patient-0001"))
      .WillOnce(Return(std::vector<RecordRetention>{expires, held, undetermined}));
  const RawResponse r =
      Send(Request("POST", "/v1/retention/_patient", R"({"patient_id":"synthetic-patient-0001"})"));
  ASSERT_EQ(r.status, 200);
  const json records = Body(r)["records"];
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0], json({{"record_id", kRecordId},
                              {"versions", 3},
                              {"category", "lab_result"},
                              {"epoch_id", "d20331129"},
                              {"outcome", "expires"},
                              {"expires_on", "2033-11-29"},
                              {"reason", "expires 2033-11-29: rule 'adult'"},
                              {"hold_ids", json::array()}}));
  EXPECT_EQ(records[1]["hold_ids"], json::array({kHoldId}));
  EXPECT_EQ(records[2]["expires_on"], nullptr);
}

TEST_F(RetentionRoutesTest, RulesNameEachRulesBasisAndSource) {
  Start();
  RetentionTableInfo table;
  table.preset = "us-tx";
  table.source = "/etc/phivault/retention.toml";
  table.sha256_hex = std::string(64, 'c');
  policies::RetentionRule adult;
  adult.name = "tx-adult";
  adult.categories = {"*"};
  adult.basis = policies::RetentionBasis::kLastEncounter;
  adult.years = 7;
  adult.source = "22 TAC 165.1(b)";
  adult.origin = "preset us-tx:3";
  policies::RetentionRule minor = adult;
  minor.name = "tx-minor";
  minor.basis = policies::RetentionBasis::kMajority;
  minor.years = 3;
  minor.age_of_majority = 18;
  table.rules = {adult, minor};
  EXPECT_CALL(service_, RetentionRules(_)).WillOnce(Return(table));
  const RawResponse r = Send(Request("GET", "/v1/retention/rules"));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(Body(r), json({{"preset", "us-tx"},
                           {"source", "/etc/phivault/retention.toml"},
                           {"sha256", std::string(64, 'c')},
                           {"rules",
                            {{{"name", "tx-adult"},
                              {"categories", {"*"}},
                              {"basis", "last_encounter"},
                              {"years", 7},
                              {"source", "22 TAC 165.1(b)"},
                              {"origin", "preset us-tx:3"}},
                             {{"name", "tx-minor"},
                              {"categories", {"*"}},
                              {"basis", "majority"},
                              {"years", 3},
                              {"age_of_majority", 18},
                              {"source", "22 TAC 165.1(b)"},
                              {"origin", "preset us-tx:3"}}}}}));
  ExpectProblem(Send(Request("GET", "/v1/retention/rules?x=1")), 400, "invalid-request");
}

// ---- legal holds

TEST_F(RetentionRoutesTest, PlaceReleaseAndListHolds) {
  Start();
  EXPECT_CALL(service_,
              PlaceHold(_, AllOf(Field(&PlaceHoldRequest::patient_id, "synthetic-patient-0001"),
                                 Field(&PlaceHoldRequest::matter, "Synthetic v. Clinic"),
                                 Field(&PlaceHoldRequest::reason, "litigation notice"),
                                 Field(&PlaceHoldRequest::record_ids,
                                       std::vector<std::string>{kRecordId}))))
      .WillOnce(Return(std::make_pair(SampleHold(), uint64_t{20})));
  RawResponse r = Send(Request("POST", "/v1/holds",
                               R"({"patient_id":"synthetic-patient-0001",)"
                               R"("matter":"Synthetic v. Clinic","reason":"litigation notice",)"
                               R"("record_ids":["AAAAAAAAAAAAAAAAAAAAAA"]})"));
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(Body(r), json({{"hold",
                            {{"id", kHoldId},
                             {"matter", "Synthetic v. Clinic"},
                             {"reason", "litigation notice"},
                             {"patient_id", "synthetic-patient-0001"},
                             {"scope", "records"},
                             {"record_ids", {kRecordId}},
                             {"placed_by", "counsel.synthetic"},
                             {"placed_at", "2026-11-29T00:00:00.000000Z"},
                             {"released_at", nullptr},
                             {"released_by", ""},
                             {"release_reason", ""},
                             {"active", true}}},
                           {"audit_seq", 20}}));

  LegalHold released = SampleHold();
  released.released_us = kNov29 + 1000000;
  released.released_by = "counsel.synthetic";
  released.release_reason = "settled";
  EXPECT_CALL(service_, ReleaseHold(_, kHoldId, "settled"))
      .WillOnce(Return(std::make_pair(released, uint64_t{21})))
      .WillOnce(Return(FailedPrecondition("legal hold already released")));
  r = Send(
      Request("POST", std::string("/v1/holds/") + kHoldId + "/release", R"({"reason":"settled"})"));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(Body(r)["audit_seq"], 21);
  EXPECT_EQ(Body(r)["hold"]["active"], false);
  EXPECT_EQ(Body(r)["hold"]["released_at"], "2026-11-29T00:00:01.000000Z");
  EXPECT_EQ(Body(r)["hold"]["release_reason"], "settled");
  ExpectProblem(Send(Request("POST", std::string("/v1/holds/") + kHoldId + "/release",
                             R"({"reason":"settled"})")),
                409, "failed-precondition");

  EXPECT_CALL(service_, ListHolds(_, std::optional<std::string>("synthetic-patient-0001"), true))
      .WillOnce(Return(std::vector<LegalHold>{SampleHold(), released}));
  EXPECT_CALL(service_, ListHolds(_, std::optional<std::string>(), false))
      .WillOnce(Return(std::vector<LegalHold>{}));
  r = Send(Request("POST", "/v1/holds/_search",
                   R"({"patient_id":"synthetic-patient-0001","include_released":true})"));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(Body(r)["holds"].size(), 2u);
  r = Send(Request("POST", "/v1/holds/_search", "{}"));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(Body(r), json({{"holds", json::array()}}));
}

TEST_F(RetentionRoutesTest, HoldsRejectMalformedRequests) {
  Start();
  const std::string s = kSecret;
  ExpectBadBody("POST", "/v1/holds", R"({"patient_id":"p","reason":"r"})", "'matter' is required");
  ExpectBadBody("POST", "/v1/holds", R"({"patient_id":"p","matter":"m"})", "'reason' is required");
  ExpectBadBody("POST", "/v1/holds",
                R"({"patient_id":"p","matter":"m","reason":"r",)"
                R"("record_ids":")" +
                    s + "\"}",
                "'record_ids' must be an array of strings");
  ExpectBadBody("POST", std::string("/v1/holds/") + kHoldId + "/release", "{}",
                "'reason' is required");
  ExpectBadBody("POST", "/v1/holds/not-an-id/release", R"({"reason":"r"})",
                "an id is 22 characters");
  ExpectBadBody("POST", "/v1/holds/_search", R"({"include_released":"yes"})",
                "'include_released' must be true or false");
}

// ---- sweeps

TEST_F(RetentionRoutesTest, SweepWithoutDryRunIsRefused) {
  Start();
  ExpectBadBody("POST", "/v1/retention/sweep", "{}", "'dry_run' is required");
  ExpectBadBody("POST", "/v1/retention/sweep", R"({"until":"2026-11-29"})",
                "'dry_run' is required");
  ExpectBadBody("POST", "/v1/retention/sweep", R"({"dry_run":"false"})",
                "'dry_run' must be true or false");
  ExpectBadBody("POST", "/v1/retention/sweep", R"({"dry_run":true,"until":20261129})",
                "'until' must be a string");
}

TEST_F(RetentionRoutesTest, SweepAnswersPlainJsonByDefault) {
  Start();
  EXPECT_CALL(service_,
              Sweep(_,
                    AllOf(Field(&SweepRequest::dry_run, true),
                          Field(&SweepRequest::until, std::optional<std::string>("2026-12-31"))),
                    _))
      .WillOnce(Invoke([](const RequestContext* ctx, const SweepRequest&,
                          const SweepProgressFn& progress) -> StatusOr<SweepResult> {
        EXPECT_NE(ctx, nullptr);
        progress({"plan", 1, 1});  // ignored without NDJSON
        return SampleSweep(true);
      }));
  const RawResponse r =
      Send(Request("POST", "/v1/retention/sweep", R"({"dry_run":true,"until":"2026-12-31"})"));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type"), "application/json");
  EXPECT_EQ(Body(r), SampleSweepJson(true));
}

TEST_F(RetentionRoutesTest, SweepStreamsProgressLinesThenTheResult) {
  Start();
  EXPECT_CALL(service_, Sweep(_, Field(&SweepRequest::dry_run, false), _))
      .WillOnce(Invoke([](const RequestContext*, const SweepRequest&,
                          const SweepProgressFn& progress) -> StatusOr<SweepResult> {
        progress({"plan", 0, 2});
        progress({"erase", 1, 2});
        progress({"done", 2, 2});
        return SampleSweep(false);
      }));
  const RawResponse r = Send(Request("POST", "/v1/retention/sweep", R"({"dry_run":false})",
                                     "Accept: application/x-ndjson\r\n"));
  ASSERT_TRUE(r.received) << "the stream did not end with its final chunk";
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.chunked);
  EXPECT_EQ(r.Header("content-type"), "application/x-ndjson");
  const std::vector<json> lines = Lines(r.body);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0], json({{"progress", {{"phase", "plan"}, {"done", 0}, {"total", 2}}}}));
  EXPECT_EQ(lines[1], json({{"progress", {{"phase", "erase"}, {"done", 1}, {"total", 2}}}}));
  EXPECT_EQ(lines[2], json({{"progress", {{"phase", "done"}, {"done", 2}, {"total", 2}}}}));
  EXPECT_EQ(lines[3], json({{"result", SampleSweepJson(false)}}));
}

TEST_F(RetentionRoutesTest, SweepFailingAfterItsFirstLineEndsWithAnErrorLine) {
  Start();
  EXPECT_CALL(service_, Sweep(_, _, _))
      .WillOnce(Invoke([](const RequestContext*, const SweepRequest&,
                          const SweepProgressFn& progress) -> StatusOr<SweepResult> {
        progress({"plan", 0, 5});
        return DataLoss("verify: 1 destroyed version still decrypts; no certificate was issued");
      }))
      .WillOnce(Return(FailedPrecondition("a retention sweep is already running")));
  RawResponse r = Send(Request("POST", "/v1/retention/sweep", R"({"dry_run":false})",
                               "Accept: application/x-ndjson\r\n"));
  ASSERT_TRUE(r.received);
  EXPECT_EQ(r.status, 200);
  const std::vector<json> lines = Lines(r.body);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_TRUE(lines[0].contains("progress"));
  const json& error = lines[1]["error"];
  EXPECT_EQ(error["type"], "urn:phivault:problem:integrity-failure");
  EXPECT_EQ(error["status"], 500);
  EXPECT_EQ(error["detail"],
            "verify: 1 destroyed version still decrypts; no certificate was issued");
  EXPECT_EQ(error["request_id"], r.Header("x-request-id"));
  // Refused before any progress: a plain problem response.
  r = Send(Request("POST", "/v1/retention/sweep", R"({"dry_run":true})",
                   "Accept: application/x-ndjson\r\n"));
  ExpectProblem(r, 409, "failed-precondition");
  EXPECT_EQ(Body(r)["detail"], "a retention sweep is already running");
}

// ---- certificates

// A real signed certificate, as a sweep issues it.
struct SignedCertificate {
  std::string note;
  std::string verifier_key;
};

SignedCertificate SignSample() {
  auto signer = crypto::Ed25519Signer::Create(crypto::SecretBytes::CopyFrom(
      std::string(32, '\x07'), crypto::InsecureSecretKeyAccess::Get()));
  EXPECT_TRUE(signer.ok());
  storage::DestructionCertificate c;
  c.id = kCertificateId;
  c.principal = "phivaultd:retention";
  c.user = "phivaultd:retention";
  c.role = "system";
  c.started_unix_us = kNov29;
  c.finished_unix_us = kNov29 + 5000000;
  c.epoch_ids = {"d20261128"};
  c.media = "vault data directory and keyring copies";
  c.records = {{kRecordId, 1, "lab_result", std::string(64, 'b')}};
  c.verification = "decrypt of each destroyed version";
  c.verification_result = "passed";
  c.tool_name = "phivault";
  c.tool_version = "0.9.0";
  c.audit_seq_first = 5;
  c.audit_seq_last = 7;
  auto note = storage::SignDestructionCertificate(c, **signer, "clinic.example/audit");
  EXPECT_TRUE(note.ok()) << note.status().ToString();
  return {note.ok() ? *note : "",
          crypto::NoteVerifierKey("clinic.example/audit", (*signer)->public_key())};
}

TEST_F(RetentionRoutesTest, CertificatesAreListed) {
  Start();
  CertificateSummary c;
  c.id = kCertificateId;
  c.started_unix_us = kNov29;
  c.finished_unix_us = kNov29 + 5000000;
  c.records = 1;
  c.versions = 2;
  c.patients = 1;
  c.epoch_ids = {"d20261128"};
  EXPECT_CALL(service_, ListCertificates(_)).WillOnce(Return(std::vector<CertificateSummary>{c}));
  const RawResponse r = Send(Request("GET", "/v1/certificates"));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(Body(r), json({{"certificates",
                            {{{"id", kCertificateId},
                              {"started_at", "2026-11-29T00:00:00.000000Z"},
                              {"finished_at", "2026-11-29T00:00:05.000000Z"},
                              {"records", 1},
                              {"versions", 2},
                              {"patients", 1},
                              {"epoch_ids", {"d20261128"}}}}}}));
}

TEST_F(RetentionRoutesTest, CertificateComesAsItsNoteOrVerifiedAsHtmlOrJson) {
  ASSERT_TRUE(crypto::InitSodium().ok());
  const SignedCertificate signed_cert = SignSample();
  ASSERT_FALSE(signed_cert.note.empty());
  Start();
  EXPECT_CALL(service_, GetCertificate(_, kCertificateId))
      .Times(3)
      .WillRepeatedly(Return(signed_cert.note));
  EXPECT_CALL(service_, AuditVerifierKey(_))
      .Times(2)
      .WillRepeatedly(Return(signed_cert.verifier_key));
  const std::string target = std::string("/v1/certificates/") + kCertificateId;
  RawResponse r = Send(Request("GET", target));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type"), "text/plain; charset=utf-8");
  EXPECT_EQ(r.body, signed_cert.note);

  r = Send(Request("GET", target, "", "Accept: text/html\r\n"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("content-type"), "text/html; charset=utf-8");
  EXPECT_THAT(r.body, HasSubstr(kCertificateId));
  EXPECT_THAT(r.body, HasSubstr("Synthetic Family Practice"));

  r = Send(Request("GET", target, "", "Accept: application/json\r\n"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("content-type"), "application/json");
  const json j = Body(r);
  EXPECT_EQ(j["id"], kCertificateId);
  EXPECT_EQ(j["verifier_key"], signed_cert.verifier_key);
}

TEST_F(RetentionRoutesTest, ATamperedCertificateIsNeverRendered) {
  ASSERT_TRUE(crypto::InitSodium().ok());
  const SignedCertificate signed_cert = SignSample();
  std::string tampered = signed_cert.note;
  tampered.replace(tampered.find("result passed"), 13, "result failed");
  Start();
  EXPECT_CALL(service_, GetCertificate(_, kCertificateId)).WillOnce(Return(tampered));
  EXPECT_CALL(service_, AuditVerifierKey(_)).WillOnce(Return(signed_cert.verifier_key));
  const RawResponse r = Send(Request("GET", std::string("/v1/certificates/") + kCertificateId, "",
                                     "Accept: text/html\r\n"));
  ExpectProblem(r, 500, "integrity-failure");
  EXPECT_THAT(Body(r)["detail"].get<std::string>(), HasSubstr("signature does not verify"));
}

TEST_F(RetentionRoutesTest, CertificateIdsAreThirtyTwoLowercaseHexDigits) {
  Start();
  const std::vector<std::string> bad_ids = {"0011", "00112233445566778899AABBCCDDEEFF",
                                            "00112233445566778899aabbccddeeff0",
                                            "zz112233445566778899aabbccddeeff"};
  for (const std::string& id : bad_ids) {
    SCOPED_TRACE(id);
    const RawResponse r = Send(Request("GET", "/v1/certificates/" + id));
    ExpectProblem(r, 400, "invalid-request");
    EXPECT_THAT(Body(r)["detail"].get<std::string>(), HasSubstr("32 lowercase hex digits"));
  }
  EXPECT_CALL(service_, GetCertificate(_, kCertificateId))
      .WillOnce(Return(NotFound("no such certificate")));
  ExpectProblem(Send(Request("GET", std::string("/v1/certificates/") + kCertificateId)), 404,
                "not-found");
}

// A record a sweep destroyed answers 410 naming the sweep's certificate.
TEST_F(RetentionRoutesTest, AShreddedRecordNamesItsCertificate) {
  Start();
  EXPECT_CALL(service_, ReadRecord(_, kRecordId, _, _))
      .WillOnce(Return(FailedPrecondition(std::string("record was crypto-shredded (certificate ") +
                                          kCertificateId + ")")));
  const RawResponse r = Send(Request("GET", std::string("/v1/records/") + kRecordId));
  ExpectProblem(r, 410, "record-shredded");
  EXPECT_EQ(Body(r)["certificate"], kCertificateId);
}

// Refusals on the PHI routes of issue 9 are audited under each route's own action.
TEST_F(RetentionRoutesTest, RejectionsAreAuditedUnderTheRoutesAction) {
  Start();
  struct Route {
    std::string method;
    std::string target;
    std::string action;
  };
  const Route routes[] = {
      {"PUT", "/v1/patients/facts", "patient.facts"},
      {"POST", "/v1/patients/facts/_get", "patient.facts"},
      {"POST", "/v1/retention/_patient", "retention.show"},
      {"POST", "/v1/holds", "hold.place"},
      {"POST", std::string("/v1/holds/") + kHoldId + "/release", "hold.release"},
      {"POST", "/v1/holds/_search", "hold.list"},
      {"POST", "/v1/retention/sweep", "retention.sweep"},
      {"GET", "/v1/certificates", "certificate.read"},
      {"GET", std::string("/v1/certificates/") + kCertificateId, "certificate.read"},
  };
  for (const auto& route : routes) {
    SCOPED_TRACE(route.target);
    EXPECT_CALL(service_, AuditRejected(Field(&RequestContext::user, "nurse.synthetic"),
                                        route.action, HasSubstr("forbidden"), _))
        .WillOnce(Return(Status::Ok()));
    std::string bad_role = Request(route.method, route.target, route.method == "GET" ? "" : "{}");
    bad_role.replace(bad_role.find("Role: nurse"), 11, "Role: wizard");
    ExpectProblem(Send(bad_role), 403, "forbidden");
    ::testing::Mock::VerifyAndClearExpectations(&service_);
  }
}

}  // namespace
}  // namespace phivault::daemon
