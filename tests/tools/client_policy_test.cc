// phivault::client::Client's issue 8 calls (access policy, break-glass review, restrictions,
// patient export, patient requests, confidential contact) against a scripted fake daemon: the
// exact requests sent and what the answers become.
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "crypto/secret.h"
#include "tests/testing/temp_dir.h"
#include "tests/tools/fake_daemon.h"
#include "tools/client.h"

namespace phivault::client {
namespace {

using testing::FakeDaemon;
using testing::Forbidden;
using testing::Problem;
using testing::Reply;
using testing::SeenRequest;

const Actor kOfficer{.user = "pat.privacy", .role = "compliance_officer", .purpose = "HOPERAT"};

Reply JsonReply(int status, const nlohmann::json& j) {
  return Reply{.status = status, .body = j.dump()};
}

class ClientPolicyTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(crypto::InitSodium().ok()); }
  // Answers every request with `reply`.
  void Answer(Reply reply) {
    daemon_.SetHandler([reply](const SeenRequest&) { return reply; });
  }
  nlohmann::json LastBody() const { return nlohmann::json::parse(daemon_.last().body); }

  testing::TempDir dir_;
  std::string socket_ = dir_.Sub("d.sock");
  FakeDaemon daemon_{socket_};
  Client client_{socket_, "pvt_t"};
};

nlohmann::json MetadataJson(const std::string& id) {
  return {{"record_id", id},
          {"version", 1},
          {"patient_id", "SYNTH-0001"},
          {"category", "clinical_note"},
          {"content_type", "text/plain"},
          {"encounter_date", "2024-03-01"},
          {"author", "Dr. Synthetic"},
          {"created", "2024-03-01T10:00:00.123456Z"},
          {"content_bytes", 5}};
}

TEST_F(ClientPolicyTest, BreakGlassReasonAndConsentAreSentOnlyWhenSet) {
  Answer(JsonReply(200, {{"records", nlohmann::json::array()}, {"withheld", 0}}));
  ASSERT_TRUE(client_.SearchPatient(kOfficer, "SYNTH-0001").ok());
  EXPECT_FALSE(daemon_.last().has("x-phivault-break-glass-reason"));
  EXPECT_FALSE(daemon_.last().has("x-phivault-consent"));

  Actor emergency{.user = "dr.er", .role = "physician", .purpose = "ETREAT"};
  emergency.break_glass_reason = "unconscious patient, allergies unknown";
  emergency.consent = "consent:2026/0042";
  ASSERT_TRUE(client_.SearchPatient(emergency, "SYNTH-0001").ok());
  EXPECT_EQ(daemon_.last().headers.at("x-phivault-break-glass-reason"),
            "unconscious patient, allergies unknown");
  EXPECT_EQ(daemon_.last().headers.at("x-phivault-consent"), "consent:2026/0042");
  EXPECT_EQ(daemon_.last().headers.at("x-phivault-purpose"), "ETREAT");
}

TEST_F(ClientPolicyTest, AReasonWithALineBreakIsRefusedBeforeAnythingIsSent) {
  Actor a = kOfficer;
  a.break_glass_reason = "emergency\r\nX-Phivault-Role: vault_admin";
  auto r = client_.SearchPatient(a, "SYNTH-0001");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kClient);
  EXPECT_TRUE(daemon_.requests().empty());
}

TEST_F(ClientPolicyTest, SearchReportsHowManyRecordsAreWithheld) {
  Answer(JsonReply(200, {{"records", {MetadataJson("rec_1")}}, {"withheld", 3}}));
  auto r = client_.SearchPatientRecords(kOfficer, "SYNTH-0001");
  ASSERT_TRUE(r.ok()) << r.error().Message();
  ASSERT_EQ(r->records.size(), 1u);
  EXPECT_EQ(r->records[0].record_id, "rec_1");
  EXPECT_EQ(r->withheld, 3u);
  EXPECT_EQ(LastBody(), (nlohmann::json{{"patient_id", "SYNTH-0001"}}));

  Answer(JsonReply(200, {{"records", {MetadataJson("rec_1")}}, {"withheld", "three"}}));
  auto bad = client_.SearchPatientRecords(kOfficer, "SYNTH-0001");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().kind, ErrorKind::kProtocol);
}

TEST_F(ClientPolicyTest, AForbiddenProblemNamesItsRuleInTheErrorAndItsMessage) {
  Answer(Forbidden("the patient restricted this use", "restriction:r_7"));
  auto r = client_.ReadRecord(kOfficer, "rec_1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kForbidden);
  EXPECT_EQ(r.error().rule, "restriction:r_7");
  EXPECT_EQ(r.error().Message(),
            "Forbidden: the patient restricted this use (rule: restriction:r_7)");
  EXPECT_EQ(r.error().ToStatus().code(), StatusCode::kPermissionDenied);

  Answer(Problem(404, "not-found", "Not Found", "no such record"));
  auto missing = client_.ReadRecord(kOfficer, "rec_1");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().rule, "");
  EXPECT_EQ(missing.error().Message(), "Not Found: no such record");
}

TEST_F(ClientPolicyTest, CheckPolicyPostsTheQueryAndParsesTheDecision) {
  Answer(JsonReply(200, {{"allowed", false},
                         {"rule", "protected:psychotherapy_note"},
                         {"explanation", "only the author may read psychotherapy notes"},
                         {"category", "psychotherapy_note"},
                         {"is_author", false}}));
  auto r = client_.CheckPolicy(kOfficer, {.as_user = "dr.b",
                                          .role = "physician",
                                          .purpose = "TREAT",
                                          .action = "read",
                                          .record_id = "rec_9",
                                          .version = 2});
  ASSERT_TRUE(r.ok()) << r.error().Message();
  EXPECT_FALSE(r->allowed);
  EXPECT_EQ(r->rule, "protected:psychotherapy_note");
  EXPECT_EQ(r->category, "psychotherapy_note");
  EXPECT_EQ(daemon_.last().method, "POST");
  EXPECT_EQ(daemon_.last().uri, "/v1/policy/check");
  EXPECT_EQ(daemon_.last().headers.at("x-phivault-role"), "compliance_officer");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"as_user", "dr.b"},
                                        {"role", "physician"},
                                        {"purpose", "TREAT"},
                                        {"action", "read"},
                                        {"record_id", "rec_9"},
                                        {"version", 2},
                                        {"consent", false},
                                        {"break_glass", false}}));

  ASSERT_TRUE(client_
                  .CheckPolicy(kOfficer, {.as_user = "dr.b",
                                          .role = "physician",
                                          .purpose = "ETREAT",
                                          .action = "read",
                                          .category = "substance_use",
                                          .consent = true,
                                          .break_glass = true})
                  .ok());
  EXPECT_EQ(LastBody(), (nlohmann::json{{"as_user", "dr.b"},
                                        {"role", "physician"},
                                        {"purpose", "ETREAT"},
                                        {"action", "read"},
                                        {"category", "substance_use"},
                                        {"consent", true},
                                        {"break_glass", true}}));
}

TEST_F(ClientPolicyTest, ShowPolicyAsksForATimeAndReadsAnOpenEnd) {
  Answer(JsonReply(200, {{"name", "small-practice-default"},
                         {"sha256", std::string(64, 'a')},
                         {"in_force_from", "2026-11-01T08:00:00Z"},
                         {"in_force_until", nullptr},
                         {"audit_seq", 12},
                         {"text", "[policy]\nname = \"small-practice-default\"\n"}}));
  auto v = client_.ShowPolicy(kOfficer, "2026-11-30T12:00:00Z");
  ASSERT_TRUE(v.ok()) << v.error().Message();
  EXPECT_EQ(daemon_.last().method, "GET");
  EXPECT_EQ(daemon_.last().uri, "/v1/policy?at=2026-11-30T12:00:00Z");
  EXPECT_EQ(v->name, "small-practice-default");
  EXPECT_FALSE(v->in_force_until.has_value());
  EXPECT_EQ(v->audit_seq, 12u);
  EXPECT_EQ(v->text, "[policy]\nname = \"small-practice-default\"\n");

  ASSERT_TRUE(client_.ShowPolicy(kOfficer).ok());
  EXPECT_EQ(daemon_.last().uri, "/v1/policy");

  Answer(Problem(404, "not-found", "Not Found", "no policy was in force at 2020-01-01"));
  auto none = client_.ShowPolicy(kOfficer, "2020-01-01");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().kind, ErrorKind::kNotFound);
}

TEST_F(ClientPolicyTest, PolicyHistoryListsEveryVersionOldestFirst) {
  Answer(JsonReply(200, {{"versions",
                          {{{"name", "v1"},
                            {"sha256", std::string(64, 'a')},
                            {"in_force_from", "2026-01-01T00:00:00Z"},
                            {"in_force_until", "2026-06-01T00:00:00Z"},
                            {"audit_seq", 1}},
                           {{"name", "v2"},
                            {"sha256", std::string(64, 'b')},
                            {"in_force_from", "2026-06-01T00:00:00Z"},
                            {"in_force_until", nullptr},
                            {"audit_seq", 40}}}}}));
  auto h = client_.PolicyHistory(kOfficer);
  ASSERT_TRUE(h.ok()) << h.error().Message();
  EXPECT_EQ(daemon_.last().method, "GET");
  EXPECT_EQ(daemon_.last().uri, "/v1/policy/history");
  ASSERT_EQ(h->size(), 2u);
  EXPECT_EQ((*h)[0].in_force_until, "2026-06-01T00:00:00Z");
  EXPECT_FALSE((*h)[1].in_force_until.has_value());
  EXPECT_EQ((*h)[1].audit_seq, 40u);
}

TEST_F(ClientPolicyTest, ReloadReportsTheNewPolicyOrWhyTheFileIsInvalid) {
  Answer(JsonReply(200, {{"name", "v2"},
                         {"sha256", std::string(64, 'b')},
                         {"rules", 14},
                         {"changed", true},
                         {"audit_seq", 41}}));
  auto r = client_.ReloadPolicy(kOfficer);
  ASSERT_TRUE(r.ok()) << r.error().Message();
  EXPECT_EQ(daemon_.last().method, "POST");
  EXPECT_EQ(daemon_.last().uri, "/v1/policy/reload");
  EXPECT_EQ(LastBody(), nlohmann::json::object());
  EXPECT_EQ(r->rules, 14u);
  EXPECT_TRUE(r->changed);

  Answer(Problem(422, "invalid-policy", "Invalid policy",
                 "policy.toml:31: rule 'billing': unknown category 'labs'"));
  auto bad = client_.ReloadPolicy(kOfficer);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().kind, ErrorKind::kInvalidPolicy);
  EXPECT_EQ(bad.error().http_status, 422);
  EXPECT_EQ(bad.error().detail, "policy.toml:31: rule 'billing': unknown category 'labs'");
}

nlohmann::json EventJson() {
  return {{"id", "bg_1"},
          {"user", "dr.er"},
          {"role", "physician"},
          {"application", "ehr"},
          {"patient_id", "SYNTH-0001"},
          {"reason", "unconscious"},
          {"opened", "2026-11-30T02:00:00Z"},
          {"expires", "2026-11-30T03:00:00Z"},
          {"closed", "2026-11-30T03:00:00Z"},
          {"accesses", 4},
          {"status", "pending"},
          {"signed_off_by", nullptr},
          {"signed_off_at", nullptr},
          {"note", nullptr}};
}

TEST_F(ClientPolicyTest, ReviewListsBreakGlassWindowsAndSignsOneOff) {
  Answer(JsonReply(200, {{"events", {EventJson()}}}));
  auto events = client_.ListBreakGlassEvents(kOfficer);
  ASSERT_TRUE(events.ok()) << events.error().Message();
  EXPECT_EQ(daemon_.last().uri, "/v1/audit/review");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"status", "pending"}}));
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].accesses, 4u);
  EXPECT_EQ((*events)[0].closed, "2026-11-30T03:00:00Z");
  EXPECT_FALSE((*events)[0].signed_off_by.has_value());
  EXPECT_EQ(ToJson((*events)[0]), EventJson());
  ASSERT_TRUE(client_.ListBreakGlassEvents(kOfficer, /*include_all=*/true).ok());
  EXPECT_EQ(LastBody(), (nlohmann::json{{"status", "all"}}));

  Answer(JsonReply(200, {{"id", "bg_1"},
                         {"signed_off_by", "pat.privacy"},
                         {"signed_off_at", "2026-11-30T09:00:00Z"},
                         {"audit_seq", 77}}));
  auto s = client_.SignOffBreakGlass(kOfficer, "bg_1", "justified: ER admission");
  ASSERT_TRUE(s.ok()) << s.error().Message();
  EXPECT_EQ(daemon_.last().method, "POST");
  EXPECT_EQ(daemon_.last().uri, "/v1/audit/review/bg_1/sign-off");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"note", "justified: ER admission"}}));
  EXPECT_EQ(s->audit_seq, 77u);

  Answer(Problem(409, "conflict", "Conflict", "already signed off"));
  auto again = client_.SignOffBreakGlass(kOfficer, "bg/1", "x");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(daemon_.last().uri, "/v1/audit/review/bg%2F1/sign-off");
  EXPECT_EQ(again.error().kind, ErrorKind::kConflict);
}

TEST_F(ClientPolicyTest, RestrictionsAreAddedListedAndEnded) {
  Answer(JsonReply(201, {{"id", "r_7"}, {"audit_seq", 90}}));
  auto c = client_.AddRestriction(
      kOfficer,
      {.patient_id = "SYNTH-0001", .purposes = {"HPAYMT", "HOPERAT"}, .recipient = "health plan"});
  ASSERT_TRUE(c.ok()) << c.error().Message();
  EXPECT_EQ(c->id, "r_7");
  EXPECT_EQ(c->audit_seq, 90u);
  EXPECT_EQ(daemon_.last().uri, "/v1/restrictions");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"patient_id", "SYNTH-0001"},
                                        {"purposes", {"HPAYMT", "HOPERAT"}},
                                        {"recipient", "health plan"}}));
  ASSERT_TRUE(client_
                  .AddRestriction(kOfficer, {.patient_id = "SYNTH-0001",
                                             .purposes = {"HPAYMT"},
                                             .record_ids = {"rec_1"},
                                             .categories = {"lab_result"},
                                             .recipient = "health plan",
                                             .note = "paid out of pocket"})
                  .ok());
  EXPECT_EQ(LastBody(), (nlohmann::json{{"patient_id", "SYNTH-0001"},
                                        {"purposes", {"HPAYMT"}},
                                        {"record_ids", {"rec_1"}},
                                        {"categories", {"lab_result"}},
                                        {"recipient", "health plan"},
                                        {"note", "paid out of pocket"}}));

  Answer(JsonReply(200, {{"restrictions",
                          {{{"id", "r_7"},
                            {"purposes", {"HPAYMT"}},
                            {"record_ids", nlohmann::json::array()},
                            {"categories", {"lab_result"}},
                            {"recipient", "health plan"},
                            {"note", nullptr},
                            {"created", "2026-11-30T09:00:00Z"},
                            {"created_by", "pat.privacy"},
                            {"ended", nullptr},
                            {"ended_by", nullptr},
                            {"end_reason", nullptr}}}}}));
  auto list = client_.ListRestrictions(kOfficer, "SYNTH-0001", /*include_ended=*/true);
  ASSERT_TRUE(list.ok()) << list.error().Message();
  EXPECT_EQ(daemon_.last().uri, "/v1/restrictions/_search");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"patient_id", "SYNTH-0001"}, {"include_ended", true}}));
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].categories, std::vector<std::string>{"lab_result"});
  EXPECT_FALSE((*list)[0].ended.has_value());

  Answer(JsonReply(200, {{"id", "r_7"}, {"ended", "2026-12-01T10:00:00Z"}, {"audit_seq", 95}}));
  auto ended = client_.EndRestriction(kOfficer, "SYNTH-0001", "r_7", "patient revoked it");
  ASSERT_TRUE(ended.ok()) << ended.error().Message();
  EXPECT_EQ(daemon_.last().uri, "/v1/restrictions/r_7/end");
  EXPECT_EQ(LastBody(),
            (nlohmann::json{{"patient_id", "SYNTH-0001"}, {"reason", "patient revoked it"}}));
  EXPECT_EQ(ended->audit_seq, 95u);

  Answer(Problem(409, "conflict", "Conflict", "restriction r_7 has ended"));
  auto twice = client_.EndRestriction(kOfficer, "SYNTH-0001", "r_7", "again");
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.error().kind, ErrorKind::kConflict);
}

TEST_F(ClientPolicyTest, PatientExportStreamsTheTarToTheSink) {
  const std::string tar(200000, 't');
  Answer(Reply{.status = 200,
               .content_type = "application/x-tar",
               .body = tar,
               .chunked = true,
               .chunk_bytes = 16384});
  const Actor patient_access{.user = "front.desk", .role = "front_office", .purpose = "PATRQT"};
  std::ostringstream out;
  auto r = client_.ExportPatient(patient_access, "SYNTH-0001", "pr_3", out);
  ASSERT_TRUE(r.ok()) << r.error().Message();
  EXPECT_EQ(out.str(), tar);
  EXPECT_EQ(r->bytes, tar.size());
  EXPECT_EQ(r->content_type, "application/x-tar");
  EXPECT_EQ(daemon_.last().method, "POST");
  EXPECT_EQ(daemon_.last().uri, "/v1/patients/export");
  EXPECT_EQ(daemon_.last().headers.at("x-phivault-purpose"), "PATRQT");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"patient_id", "SYNTH-0001"}, {"request_id", "pr_3"}}));

  Answer(Forbidden("export needs purpose PATRQT", "default-deny"));
  std::ostringstream none;
  auto denied = client_.ExportPatient(kOfficer, "SYNTH-0001", std::nullopt, none);
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.error().rule, "default-deny");
  EXPECT_EQ(none.str(), "");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"patient_id", "SYNTH-0001"}}));
}

TEST_F(ClientPolicyTest, PatientRequestsAreOpenedExtendedClosedAndListed) {
  Answer(JsonReply(201, {{"id", "pr_3"}, {"due", "2026-12-31"}, {"audit_seq", 100}}));
  auto opened = client_.OpenPatientRequest(
      kOfficer, {.patient_id = "SYNTH-0001", .kind = "access", .received = "2026-12-01"});
  ASSERT_TRUE(opened.ok()) << opened.error().Message();
  EXPECT_EQ(opened->due, "2026-12-31");
  EXPECT_EQ(daemon_.last().uri, "/v1/patient-requests");
  EXPECT_EQ(LastBody(),
            (nlohmann::json{
                {"patient_id", "SYNTH-0001"}, {"kind", "access"}, {"received", "2026-12-01"}}));

  Answer(JsonReply(200, {{"id", "pr_3"}, {"due", "2027-01-30"}}));
  auto extended = client_.ExtendPatientRequest(kOfficer, "pr_3", "records in off-site storage");
  ASSERT_TRUE(extended.ok()) << extended.error().Message();
  EXPECT_EQ(daemon_.last().uri, "/v1/patient-requests/pr_3/extend");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"reason", "records in off-site storage"}}));
  EXPECT_EQ(extended->due, "2027-01-30");

  Answer(Problem(409, "conflict", "Conflict", "a request is extended once"));
  auto twice = client_.ExtendPatientRequest(kOfficer, "pr_3", "again");
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.error().kind, ErrorKind::kConflict);

  Answer(JsonReply(200, {{"id", "pr_3"}, {"closed", "2026-12-10T10:00:00Z"}, {"audit_seq", 130}}));
  auto closed = client_.ClosePatientRequest(
      kOfficer, "pr_3", {.outcome = "fulfilled", .delivered = std::string(64, 'c')});
  ASSERT_TRUE(closed.ok()) << closed.error().Message();
  EXPECT_EQ(daemon_.last().uri, "/v1/patient-requests/pr_3/close");
  EXPECT_EQ(LastBody(),
            (nlohmann::json{{"outcome", "fulfilled"}, {"delivered", std::string(64, 'c')}}));
  EXPECT_EQ(closed->audit_seq, 130u);

  Answer(JsonReply(200, {{"requests",
                          {{{"id", "pr_3"},
                            {"patient_id", "SYNTH-0001"},
                            {"kind", "access"},
                            {"received", "2026-12-01"},
                            {"due", "2027-01-30"},
                            {"extended", true},
                            {"extension_reason", "records in off-site storage"},
                            {"status", "open"},
                            {"outcome", nullptr},
                            {"closed", nullptr},
                            {"delivered", nullptr},
                            {"overdue", false}}}}}));
  auto list = client_.ListPatientRequests(kOfficer, {.overdue = true});
  ASSERT_TRUE(list.ok()) << list.error().Message();
  EXPECT_EQ(daemon_.last().uri, "/v1/patient-requests/_search");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"overdue", true}, {"include_closed", false}}));
  ASSERT_EQ(list->size(), 1u);
  EXPECT_TRUE((*list)[0].extended);
  EXPECT_FALSE((*list)[0].outcome.has_value());
  ASSERT_TRUE(
      client_.ListPatientRequests(kOfficer, {.patient_id = "SYNTH-0001", .include_closed = true})
          .ok());
  EXPECT_EQ(
      LastBody(),
      (nlohmann::json{{"patient_id", "SYNTH-0001"}, {"overdue", false}, {"include_closed", true}}));
}

TEST_F(ClientPolicyTest, ContactIsPutAndReadBack) {
  Answer(JsonReply(200, {{"audit_seq", 140}}));
  auto seq = client_.SetContact(kOfficer, {.patient_id = "SYNTH-0001",
                                           .address = "PO Box 12, Springfield",
                                           .channel = "mail",
                                           .note = "not the home address"});
  ASSERT_TRUE(seq.ok()) << seq.error().Message();
  EXPECT_EQ(*seq, 140u);
  EXPECT_EQ(daemon_.last().method, "PUT");
  EXPECT_EQ(daemon_.last().uri, "/v1/patients/contact");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"patient_id", "SYNTH-0001"},
                                        {"address", "PO Box 12, Springfield"},
                                        {"channel", "mail"},
                                        {"note", "not the home address"}}));

  Answer(JsonReply(200, {{"patient_id", "SYNTH-0001"},
                         {"address", "PO Box 12, Springfield"},
                         {"channel", "mail"},
                         {"note", nullptr},
                         {"updated", "2026-11-30T09:00:00Z"}}));
  auto c = client_.GetContact(kOfficer, "SYNTH-0001");
  ASSERT_TRUE(c.ok()) << c.error().Message();
  EXPECT_EQ(daemon_.last().method, "POST");
  EXPECT_EQ(daemon_.last().uri, "/v1/patients/contact/_get");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"patient_id", "SYNTH-0001"}}));
  EXPECT_EQ(c->channel, "mail");
  EXPECT_FALSE(c->note.has_value());

  Answer(Problem(404, "not-found", "Not Found", "no confidential contact"));
  auto none = client_.GetContact(kOfficer, "SYNTH-0002");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().kind, ErrorKind::kNotFound);
}

TEST_F(ClientPolicyTest, AnAnswerMissingAFieldIsAProtocolError) {
  Answer(JsonReply(200, {{"allowed", true}, {"rule", "clinical-care"}}));
  auto r = client_.CheckPolicy(kOfficer, {.as_user = "dr.b",
                                          .role = "physician",
                                          .purpose = "TREAT",
                                          .action = "read",
                                          .category = "clinical_note"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kProtocol);
  EXPECT_EQ(r.error().detail, "missing field \"explanation\"");
}

}  // namespace
}  // namespace phivault::client
