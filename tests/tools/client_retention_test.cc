// phivault::client::Client's issue 9 calls (patient facts, retention, legal holds, sweeps and
// certificates of destruction) against a scripted fake daemon: the exact requests sent, what the
// answers become, and the streamed sweep read line by line.
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
using testing::Problem;
using testing::Reply;
using testing::SeenRequest;

const Actor kAdmin{.user = "sam.admin", .role = "vault_admin", .purpose = "HOPERAT"};
constexpr char kCertificateId[] = "00112233445566778899aabbccddeeff";

Reply JsonReply(int status, const nlohmann::json& j) {
  return Reply{.status = status, .body = j.dump()};
}

class ClientRetentionTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(crypto::InitSodium().ok()); }
  void Answer(Reply reply) {
    daemon_.SetHandler([reply](const SeenRequest&) { return reply; });
  }
  nlohmann::json LastBody() const { return nlohmann::json::parse(daemon_.last().body); }

  testing::TempDir dir_;
  std::string socket_ = dir_.Sub("d.sock");
  FakeDaemon daemon_{socket_};
  Client client_{socket_, "pvt_t"};
};

nlohmann::json FactsJson() {
  return {{"patient_id", "SYNTH-0001"},
          {"date_of_birth", "1990-04-01"},
          {"date_of_death", nullptr},
          {"last_encounter", "2026-11-29"},
          {"updated_at", "2026-11-29T10:00:00.000000Z"},
          {"updated_by", "sam.admin"}};
}

nlohmann::json HoldJson(bool active) {
  return {
      {"id", "HHHHHHHHHHHHHHHHHHHHHw"},
      {"matter", "Synthetic v. Clinic"},
      {"reason", "litigation notice"},
      {"patient_id", "SYNTH-0001"},
      {"scope", "patient"},
      {"record_ids", nlohmann::json::array()},
      {"placed_by", "sam.admin"},
      {"placed_at", "2026-11-29T10:00:00.000000Z"},
      {"released_at", active ? nlohmann::json(nullptr) : nlohmann::json("2026-11-30T10:00:00Z")},
      {"released_by", active ? "" : "sam.admin"},
      {"release_reason", active ? "" : "settled"},
      {"active", active}};
}

nlohmann::json SweepJson(bool dry_run) {
  return {{"sweep_id", dry_run ? "dry" : kCertificateId},
          {"dry_run", dry_run},
          {"until", "2026-11-29"},
          {"destroyed",
           {{{"record_id", "AAAAAAAAAAAAAAAAAAAAAA"},
             {"versions", 2},
             {"category", "lab_result"},
             {"patient_bid", std::string(64, 'b')},
             {"epoch_id", "d20261128"},
             {"expires_on", "2026-11-28"},
             {"reason", "expires 2026-11-28: rule 'adult'"}}}},
          {"destroyed_records", 1},
          {"destroyed_versions", 2},
          {"rewrapped_records", 0},
          {"held_records", 0},
          {"epochs_destroyed", dry_run ? nlohmann::json::array() : nlohmann::json{"d20261128"}},
          {"resumed", false},
          {"certificate_id", dry_run ? nlohmann::json(nullptr) : nlohmann::json(kCertificateId)},
          {"verification_result", dry_run ? "" : "passed"},
          {"audit_seq", 9}};
}

TEST_F(ClientRetentionTest, SetFactsSendsKeepClearAndSetApart) {
  Answer(JsonReply(200, {{"facts", FactsJson()}, {"audit_seq", 31}}));
  auto r = client_.SetPatientFacts(
      kAdmin, {.patient_id = "SYNTH-0001", .date_of_birth = "1990-04-01", .date_of_death = ""});
  ASSERT_TRUE(r.ok()) << r.error().Message();
  EXPECT_EQ(daemon_.last().method, "PUT");
  EXPECT_EQ(daemon_.last().uri, "/v1/patients/facts");
  // last_encounter is left out (kept), the date of death is cleared with null.
  EXPECT_EQ(LastBody(), (nlohmann::json{{"patient_id", "SYNTH-0001"},
                                        {"date_of_birth", "1990-04-01"},
                                        {"date_of_death", nullptr}}));
  EXPECT_EQ(r->audit_seq, 31u);
  EXPECT_EQ(r->facts.date_of_birth, std::optional<std::string>("1990-04-01"));
  EXPECT_FALSE(r->facts.date_of_death.has_value());
  EXPECT_EQ(ToJson(r->facts), FactsJson());
}

TEST_F(ClientRetentionTest, GetFactsAndPatientRetention) {
  Answer(JsonReply(200, {{"facts", FactsJson()}}));
  auto f = client_.GetPatientFacts(kAdmin, "SYNTH-0001");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(daemon_.last().uri, "/v1/patients/facts/_get");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"patient_id", "SYNTH-0001"}}));

  Answer(Problem(404, "not-found", "Not found", "no facts are recorded for this patient"));
  f = client_.GetPatientFacts(kAdmin, "SYNTH-0002");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.error().kind, ErrorKind::kNotFound);

  const nlohmann::json record = {{"record_id", "AAAAAAAAAAAAAAAAAAAAAA"},
                                 {"versions", 1},
                                 {"category", "lab_result"},
                                 {"epoch_id", "h-hold"},
                                 {"outcome", "held"},
                                 {"expires_on", "2030-01-01"},
                                 {"reason", "expires 2030-01-01: rule 'adult'"},
                                 {"hold_ids", {"HHHHHHHHHHHHHHHHHHHHHw"}}};
  Answer(JsonReply(200, {{"records", {record}}}));
  auto list = client_.PatientRetention(kAdmin, "SYNTH-0001");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(daemon_.last().uri, "/v1/retention/_patient");
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].outcome, "held");
  EXPECT_EQ(ToJson((*list)[0]), record);
}

TEST_F(ClientRetentionTest, RulesKeepTheAgeOfMajorityOnlyWhereGiven) {
  const nlohmann::json table = {{"preset", "us-tx"},
                                {"source", "preset us-tx"},
                                {"sha256", std::string(64, 'c')},
                                {"rules",
                                 {{{"name", "tx-adult"},
                                   {"categories", {"*"}},
                                   {"basis", "last_encounter"},
                                   {"years", 7},
                                   {"source", "22 TAC 165.1"},
                                   {"origin", "preset:1"}},
                                  {{"name", "tx-minor"},
                                   {"categories", {"*"}},
                                   {"basis", "majority"},
                                   {"years", 3},
                                   {"age_of_majority", 18},
                                   {"source", "22 TAC 165.1"},
                                   {"origin", "preset:2"}}}}};
  Answer(JsonReply(200, table));
  auto r = client_.GetRetentionRules(kAdmin);
  ASSERT_TRUE(r.ok()) << r.error().Message();
  EXPECT_EQ(daemon_.last().method, "GET");
  EXPECT_EQ(daemon_.last().uri, "/v1/retention/rules");
  EXPECT_FALSE(r->rules[0].age_of_majority.has_value());
  EXPECT_EQ(r->rules[1].age_of_majority, std::optional<int>(18));
  EXPECT_EQ(ToJson(*r), table);
}

TEST_F(ClientRetentionTest, HoldsArePlacedReleasedAndListed) {
  Answer(JsonReply(201, {{"hold", HoldJson(true)}, {"audit_seq", 40}}));
  auto placed = client_.PlaceHold(
      kAdmin,
      {.patient_id = "SYNTH-0001", .matter = "Synthetic v. Clinic", .reason = "litigation notice"});
  ASSERT_TRUE(placed.ok()) << placed.error().Message();
  EXPECT_EQ(daemon_.last().uri, "/v1/holds");
  // No record_ids: the whole patient.
  EXPECT_EQ(LastBody(), (nlohmann::json{{"patient_id", "SYNTH-0001"},
                                        {"matter", "Synthetic v. Clinic"},
                                        {"reason", "litigation notice"}}));
  EXPECT_EQ(placed->audit_seq, 40u);
  EXPECT_TRUE(placed->hold.active);

  Answer(JsonReply(200, {{"hold", HoldJson(false)}, {"audit_seq", 41}}));
  auto released = client_.ReleaseHold(kAdmin, "HHHHHHHHHHHHHHHHHHHHHw", "settled");
  ASSERT_TRUE(released.ok());
  EXPECT_EQ(daemon_.last().uri, "/v1/holds/HHHHHHHHHHHHHHHHHHHHHw/release");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"reason", "settled"}}));
  EXPECT_FALSE(released->hold.active);
  EXPECT_EQ(released->hold.released_at, std::optional<std::string>("2026-11-30T10:00:00Z"));

  Answer(Problem(409, "failed-precondition", "Conflict", "legal hold already released"));
  released = client_.ReleaseHold(kAdmin, "HHHHHHHHHHHHHHHHHHHHHw", "settled");
  ASSERT_FALSE(released.ok());
  EXPECT_EQ(released.error().kind, ErrorKind::kConflict);

  Answer(JsonReply(200, {{"holds", {HoldJson(true), HoldJson(false)}}}));
  auto list = client_.ListHolds(kAdmin, std::nullopt, true);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(daemon_.last().uri, "/v1/holds/_search");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"include_released", true}}));
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ(ToJson((*list)[1]), HoldJson(false));
}

TEST_F(ClientRetentionTest, PlainSweepSendsDryRunAndUntil) {
  Answer(JsonReply(200, SweepJson(true)));
  auto r = client_.Sweep(kAdmin, true, std::string("2026-12-31"));
  ASSERT_TRUE(r.ok()) << r.error().Message();
  EXPECT_EQ(daemon_.last().uri, "/v1/retention/sweep");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"dry_run", true}, {"until", "2026-12-31"}}));
  EXPECT_EQ(ToJson(*r), SweepJson(true));
  EXPECT_FALSE(r->certificate_id.has_value());
}

TEST_F(ClientRetentionTest, StreamedSweepReportsEachProgressLineThenTheResult) {
  std::string body;
  for (const auto& [phase, done] :
       std::vector<std::pair<std::string, int>>{{"plan", 0}, {"erase", 1}, {"verify", 2}}) {
    body += nlohmann::json{{"progress", {{"phase", phase}, {"done", done}, {"total", 2}}}}.dump() +
            "\n";
  }
  body += nlohmann::json{{"result", SweepJson(false)}}.dump() + "\n";
  // Small chunks: lines arrive split across them.
  Answer(Reply{
      .content_type = "application/x-ndjson", .body = body, .chunked = true, .chunk_bytes = 7});
  std::vector<SweepProgress> seen;
  auto r = client_.Sweep(kAdmin, false, std::nullopt,
                         [&seen](const SweepProgress& p) { seen.push_back(p); });
  ASSERT_TRUE(r.ok()) << r.error().Message();
  EXPECT_EQ(daemon_.last().headers.at("accept"), "application/x-ndjson, application/problem+json");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"dry_run", false}}));
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[1].phase, "erase");
  EXPECT_EQ(seen[1].done, 1u);
  EXPECT_EQ(seen[2].total, 2u);
  EXPECT_EQ(r->certificate_id, std::optional<std::string>(kCertificateId));
  EXPECT_EQ(r->epochs_destroyed, std::vector<std::string>{"d20261128"});
}

TEST_F(ClientRetentionTest, StreamedSweepFailsWithTheProblemOfItsErrorLine) {
  const std::string body =
      R"({"progress":{"phase":"plan","done":0,"total":3}})"
      "\n"
      R"({"error":{"type":"urn:phivault:problem:integrity-failure","title":"Stored data failed )"
      R"(its integrity check","status":500,"detail":"verify: a destroyed version still )"
      R"(decrypts","request_id":"r-1"}})"
      "\n";
  Answer(Reply{.content_type = "application/x-ndjson", .body = body, .chunked = true});
  int progress_lines = 0;
  auto r = client_.Sweep(kAdmin, false, std::nullopt,
                         [&progress_lines](const SweepProgress&) { ++progress_lines; });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(progress_lines, 1);
  EXPECT_EQ(r.error().kind, ErrorKind::kIntegrity);
  EXPECT_EQ(r.error().http_status, 500);
  EXPECT_EQ(r.error().detail, "verify: a destroyed version still decrypts");

  // A stream cut off before its last line: the outcome is unknown, and says so.
  Answer(Reply{.content_type = "application/x-ndjson",
               .body = R"({"progress":{"phase":"erase","done":1,"total":3}})"
                       "\n",
               .chunked = true,
               .cut_before_end = true});
  r = client_.Sweep(kAdmin, false, std::nullopt, [](const SweepProgress&) {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kUnavailable);

  // Refused before it began: the problem response itself.
  Answer(Problem(409, "failed-precondition", "Conflict", "a retention sweep is already running"));
  r = client_.Sweep(kAdmin, true, std::nullopt, [](const SweepProgress&) {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kConflict);
  EXPECT_EQ(r.error().detail, "a retention sweep is already running");
}

TEST_F(ClientRetentionTest, CertificatesAreListedAndFetchedInEachForm) {
  const nlohmann::json summary = {{"id", kCertificateId},
                                  {"started_at", "2026-11-29T00:00:00.000000Z"},
                                  {"finished_at", "2026-11-29T00:00:05.000000Z"},
                                  {"records", 1},
                                  {"versions", 2},
                                  {"patients", 1},
                                  {"epoch_ids", {"d20261128"}}};
  Answer(JsonReply(200, {{"certificates", {summary}}}));
  auto list = client_.ListCertificates(kAdmin);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(daemon_.last().uri, "/v1/certificates");
  EXPECT_EQ(ToJson((*list)[0]), summary);

  Answer(Reply{.content_type = "text/plain; charset=utf-8", .body = "note\n"});
  auto note = client_.GetCertificate(kAdmin, kCertificateId);
  ASSERT_TRUE(note.ok());
  EXPECT_EQ(note->body, "note\n");
  EXPECT_EQ(daemon_.last().uri, std::string("/v1/certificates/") + kCertificateId);
  EXPECT_EQ(daemon_.last().headers.at("accept"), "text/plain, application/problem+json");
  ASSERT_TRUE(client_.GetCertificate(kAdmin, kCertificateId, CertificateFormat::kHtml).ok());
  EXPECT_EQ(daemon_.last().headers.at("accept"), "text/html, application/problem+json");
  ASSERT_TRUE(client_.GetCertificate(kAdmin, kCertificateId, CertificateFormat::kJson).ok());
  EXPECT_EQ(daemon_.last().headers.at("accept"), "application/json, application/problem+json");
}

TEST_F(ClientRetentionTest, AShreddedRecordsErrorNamesItsCertificate) {
  Reply gone =
      Problem(410, "record-shredded", "The record was destroyed",
              std::string("record was crypto-shredded (certificate ") + kCertificateId + ")");
  gone.body.insert(gone.body.size() - 1,
                   std::string(",\"certificate\":\"") + kCertificateId + "\"");
  Answer(gone);
  auto r = client_.ReadRecord(kAdmin, "AAAAAAAAAAAAAAAAAAAAAA");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kShredded);
  EXPECT_EQ(r.error().certificate, kCertificateId);
}

}  // namespace
}  // namespace phivault::client
