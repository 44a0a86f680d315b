// The `phivault` binary's issue 9 commands against a scripted fake daemon: patient facts,
// retention rules and views, sweeps (human and JSON lines output), legal holds, and certificates
// of destruction, including offline verification of a real signed certificate.
#include <sys/stat.h>

#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "crypto/secret.h"
#include "crypto/signing.h"
#include "storage/destruction_certificate.h"
#include "tests/testing/temp_dir.h"
#include "tests/tools/fake_daemon.h"
#include "tests/tools/run_phivault.h"
#include "tools/cli_internal.h"

namespace phivault::tools {
namespace {

using testing::CliRun;
using testing::FakeDaemon;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::Problem;
using testing::ReadFile;
using testing::Reply;
using testing::SeenRequest;
using testing::WriteFile;

constexpr char kCertificateId[] = "00112233445566778899aabbccddeeff";
constexpr char kRecordId[] = "AAAAAAAAAAAAAAAAAAAAAA";

Reply JsonReply(int status, const nlohmann::json& j) {
  return Reply{.status = status, .body = j.dump()};
}

class CliRetentionTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(crypto::InitSodium().ok()); }

  CliRun Phivault(const std::vector<std::string>& args) {
    return testing::RunPhivault(args, {}, "", dir_.path().string());
  }
  std::vector<std::string> To(std::vector<std::string> rest) {
    std::vector<std::string> args = {"--socket",  sock_,     "--role",  "vault_admin",
                                     "--purpose", "HOPERAT", "--token", "t"};
    args.insert(args.end(), rest.begin(), rest.end());
    return args;
  }
  void Answer(Reply reply) {
    daemon_.SetHandler([reply](const SeenRequest&) { return reply; });
  }
  nlohmann::json LastBody() { return nlohmann::json::parse(daemon_.last().body); }
  std::string File(const std::string& name, const std::string& text) {
    const std::string path = dir_.Sub(name);
    WriteFile(path, text);
    return path;
  }

  phivault::testing::TempDir dir_;
  std::string sock_ = dir_.Sub("d.sock");
  FakeDaemon daemon_{sock_};
};

nlohmann::json FactsJson() {
  return {{"patient_id", "SYNTH-0001"},
          {"date_of_birth", "1990-04-01"},
          {"date_of_death", nullptr},
          {"last_encounter", "2026-11-29"},
          {"updated_at", "2026-11-29T10:00:00.000000Z"},
          {"updated_by", "sam.admin"}};
}

nlohmann::json SweepJson(bool dry_run) {
  return {{"sweep_id", dry_run ? "dry-1" : kCertificateId},
          {"dry_run", dry_run},
          {"until", "2026-11-29"},
          {"destroyed",
           {{{"record_id", kRecordId},
             {"versions", 2},
             {"category", "lab_result"},
             {"patient_bid", "0a1b2c3d4e5f" + std::string(52, 'b')},
             {"epoch_id", "d20261128"},
             {"expires_on", "2026-11-28"},
             {"reason", "expires 2026-11-28: rule 'adult' (22 TAC 165.1)"}}}},
          {"destroyed_records", 1},
          {"destroyed_versions", 2},
          {"rewrapped_records", dry_run ? 0 : 3},
          {"held_records", 1},
          {"epochs_destroyed", dry_run ? nlohmann::json::array() : nlohmann::json{"d20261128"}},
          {"resumed", false},
          {"certificate_id", dry_run ? nlohmann::json(nullptr) : nlohmann::json(kCertificateId)},
          {"verification_result", dry_run ? "" : "passed: 2 of 2 versions fail to decrypt"},
          {"audit_seq", 9}};
}

// ---- patient set / facts ----

TEST_F(CliRetentionTest, PatientSetSendsOnlyWhatChangesAndShowsTheFacts) {
  Answer(JsonReply(200, {{"facts", FactsJson()}, {"audit_seq", 31}}));
  CliRun r = Phivault(
      To({"patient", "set", "--patient", "SYNTH-0001", "--dob", "1990-04-01", "--clear-died"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(daemon_.last().method, "PUT");
  EXPECT_EQ(daemon_.last().uri, "/v1/patients/facts");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"patient_id", "SYNTH-0001"},
                                        {"date_of_birth", "1990-04-01"},
                                        {"date_of_death", nullptr}}));
  EXPECT_EQ(r.out,
            "patient:         SYNTH-0001\n"
            "date of birth:   1990-04-01\n"
            "date of death:   -\n"
            "last encounter:  2026-11-29\n"
            "updated:         2026-11-29T10:00:00.000000Z by sam.admin\n"
            "audit seq:       31\n");

  Answer(JsonReply(200, {{"facts", FactsJson()}}));
  r = Phivault(To({"--json", "patient", "facts", "--patient", "SYNTH-0001"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(daemon_.last().uri, "/v1/patients/facts/_get");
  EXPECT_EQ(nlohmann::json::parse(r.out), (nlohmann::json{{"facts", FactsJson()}}));
}

TEST_F(CliRetentionTest, PatientSetUsageErrorsSendNothing) {
  CliRun r = Phivault(To({"patient", "set", "--patient", "SYNTH-0001"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("at least one of --dob"));
  r = Phivault(To({"patient", "set", "--patient", "SYNTH-0001", "--died", "2026-02-30"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--died must be a calendar date"));
  r = Phivault(
      To({"patient", "set", "--patient", "SYNTH-0001", "--dob", "1990-04-01", "--clear-dob"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(daemon_.requests().empty());

  Answer(Problem(400, "invalid-request", "The request is invalid",
                 "field 'date_of_death' must not be before the date of birth"));
  r = Phivault(To({"patient", "set", "--patient", "SYNTH-0001", "--died", "1980-01-01"}));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("must not be before the date of birth"));
}

// ---- retention ----

TEST_F(CliRetentionTest, RetentionRulesAndShowAreTables) {
  Answer(JsonReply(200, {{"preset", "us-tx"},
                         {"source", "preset us-tx"},
                         {"sha256", "cc"},
                         {"rules",
                          {{{"name", "tx-minor"},
                            {"categories", {"*"}},
                            {"basis", "majority"},
                            {"years", 3},
                            {"age_of_majority", 18},
                            {"source", "22 TAC 165.1"},
                            {"origin", "us-tx.toml:9"}}}}}));
  CliRun r = Phivault(To({"retention", "rules"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "preset us-tx from preset us-tx (sha256 cc)\n"
            "RULE      CATEGORIES  AFTER     YEARS  MAJORITY  SOURCE        WRITTEN AT\n"
            "tx-minor  *           majority  3      18        22 TAC 165.1  us-tx.toml:9\n");

  Answer(JsonReply(200, {{"records",
                          {{{"record_id", kRecordId},
                            {"versions", 1},
                            {"category", "lab_result"},
                            {"epoch_id", "d20331129"},
                            {"outcome", "expires"},
                            {"expires_on", "2033-11-29"},
                            {"reason", "rule 'adult'"},
                            {"hold_ids", nlohmann::json::array()}}}}}));
  r = Phivault(To({"retention", "show", "--patient", "SYNTH-0001"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(LastBody(), (nlohmann::json{{"patient_id", "SYNTH-0001"}}));
  EXPECT_THAT(r.out, HasSubstr("RECORD"));
  EXPECT_THAT(r.out, HasSubstr(std::string(kRecordId) +
                               "  lab_result  1         expires  2033-11-29  d20331129  -      "
                               "rule 'adult'"));
}

TEST_F(CliRetentionTest, SweepNeedsExactlyOneOfDryRunAndDestroy) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"retention", "sweep"},
           {"retention", "sweep", "--until", "2026-11-29"},
           {"retention", "sweep", "--dry-run", "--destroy"},
       }) {
    CliRun r = Phivault(To(args));
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_THAT(r.err, HasSubstr("--dry-run"));
    EXPECT_THAT(r.err, HasSubstr("--destroy"));
  }
  CliRun r = Phivault(To({"retention", "sweep", "--dry-run", "--until", "29/11/2026"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--until must be a calendar date"));
  EXPECT_TRUE(daemon_.requests().empty());
}

std::string Stream(const nlohmann::json& result) {
  return nlohmann::json{{"progress", {{"phase", "plan"}, {"done", 0}, {"total", 1}}}}.dump() +
         "\n" +
         nlohmann::json{{"progress", {{"phase", "done"}, {"done", 1}, {"total", 1}}}}.dump() +
         "\n" + nlohmann::json{{"result", result}}.dump() + "\n";
}

TEST_F(CliRetentionTest, DryRunListsWhatWouldBeDestroyedAndWhy) {
  Answer(Reply{
      .content_type = "application/x-ndjson", .body = Stream(SweepJson(true)), .chunked = true});
  CliRun r = Phivault(To({"retention", "sweep", "--dry-run", "--until", "2026-11-29"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(LastBody(), (nlohmann::json{{"dry_run", true}, {"until", "2026-11-29"}}));
  EXPECT_EQ(daemon_.last().headers["accept"], "application/x-ndjson, application/problem+json");
  EXPECT_EQ(r.out,
            "dry run until 2026-11-29: 1 record (2 versions) would be destroyed; nothing was "
            "destroyed\n"
            "1 expired record kept under a legal hold\n"
            "RECORD                  CATEGORY    VERSIONS  EPOCH      EXPIRED     PATIENT (BLIND "
            "ID)  RULE\n"
            "AAAAAAAAAAAAAAAAAAAAAA  lab_result  2         d20261128  2026-11-28  0a1b2c3d4e5f...  "
            "   expires 2026-11-28: rule 'adult' (22 TAC 165.1)\n");
  // Standard error is not a terminal here: no progress bar.
  EXPECT_EQ(r.err, "");
}

TEST_F(CliRetentionTest, DestroyingSweepSummarisesAndNamesItsCertificate) {
  Answer(Reply{
      .content_type = "application/x-ndjson", .body = Stream(SweepJson(false)), .chunked = true});
  CliRun r = Phivault(To({"retention", "sweep", "--destroy"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(LastBody(), (nlohmann::json{{"dry_run", false}}));
  EXPECT_EQ(r.out,
            "destroyed 1 record (2 versions) expired on or before 2026-11-29\n"
            "epoch keys destroyed: d20261128\n"
            "3 records found not to be expired and moved to a later epoch\n"
            "1 record kept under a legal hold\n"
            "verification: passed: 2 of 2 versions fail to decrypt\n"
            "certificate of destruction: 00112233445566778899aabbccddeeff\n"
            "  phivault certificate show 00112233445566778899aabbccddeeff\n"
            "audit seq 9\n");
}

TEST_F(CliRetentionTest, SweepWithJsonPrintsEachEventAsALine) {
  Answer(Reply{
      .content_type = "application/x-ndjson", .body = Stream(SweepJson(false)), .chunked = true});
  CliRun r = Phivault(To({"retention", "sweep", "--destroy", "--json"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<nlohmann::json> lines;
  size_t start = 0;
  for (size_t nl; (nl = r.out.find('\n', start)) != std::string::npos; start = nl + 1) {
    lines.push_back(nlohmann::json::parse(r.out.substr(start, nl - start)));
  }
  ASSERT_EQ(lines.size(), 3u) << r.out;
  EXPECT_EQ(lines[0],
            (nlohmann::json{{"progress", {{"phase", "plan"}, {"done", 0}, {"total", 1}}}}));
  EXPECT_EQ(lines[1]["progress"]["phase"], "done");
  EXPECT_EQ(lines[2], (nlohmann::json{{"result", SweepJson(false)}}));
}

TEST_F(CliRetentionTest, AFailedSweepExitsNonZeroWithTheDetail) {
  const std::string body =
      R"({"progress":{"phase":"plan","done":0,"total":3}})"
      "\n"
      R"({"error":{"type":"urn:phivault:problem:integrity-failure","title":"Stored data failed )"
      R"(its integrity check","status":500,"detail":"verify: a destroyed version still )"
      R"(decrypts; no certificate was issued","request_id":"r-1"}})"
      "\n";
  Answer(Reply{.content_type = "application/x-ndjson", .body = body, .chunked = true});
  CliRun r = Phivault(To({"retention", "sweep", "--destroy"}));
  EXPECT_EQ(r.exit_code, 6);
  EXPECT_THAT(r.err, HasSubstr("verify: a destroyed version still decrypts; no certificate was "
                               "issued"));
  EXPECT_THAT(r.out, Not(HasSubstr("certificate of destruction")));

  r = Phivault(To({"retention", "sweep", "--destroy", "--json"}));
  EXPECT_EQ(r.exit_code, 6);
  const std::string last = r.out.substr(r.out.rfind('\n', r.out.size() - 2) + 1);
  EXPECT_EQ(nlohmann::json::parse(last)["error"]["type"], "urn:phivault:problem:integrity-failure");

  Answer(Problem(409, "failed-precondition", "Conflict", "a retention sweep is already running"));
  r = Phivault(To({"retention", "sweep", "--dry-run"}));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "phivault: Conflict: a retention sweep is already running\n");
}

TEST(SweepProgressBarTest, DrawsPhaseCountAndPercentOverTheLastLine) {
  EXPECT_EQ(SweepProgressBar({"erase", 1, 4}),
            "\rerase       [#######.......................] 1/4 25%\x1b[K");
  EXPECT_EQ(SweepProgressBar({"done", 4, 4}),
            "\rdone        [##############################] 4/4 100%\x1b[K");
  // A phase without steps is complete.
  EXPECT_EQ(SweepProgressBar({"compact", 0, 0}),
            "\rcompact     [##############################] 0/0 100%\x1b[K");
}

// ---- holds ----

nlohmann::json HoldJson(bool active) {
  return {
      {"id", "HHHHHHHHHHHHHHHHHHHHHw"},
      {"matter", "Synthetic v. Clinic"},
      {"reason", "litigation notice"},
      {"patient_id", "SYNTH-0001"},
      {"scope", "records"},
      {"record_ids", {kRecordId}},
      {"placed_by", "sam.admin"},
      {"placed_at", "2026-11-29T10:00:00.000000Z"},
      {"released_at", active ? nlohmann::json(nullptr) : nlohmann::json("2026-11-30T10:00:00Z")},
      {"released_by", active ? "" : "sam.admin"},
      {"release_reason", active ? "" : "settled"},
      {"active", active}};
}

TEST_F(CliRetentionTest, HoldsArePlacedReleasedAndListed) {
  Answer(JsonReply(201, {{"hold", HoldJson(true)}, {"audit_seq", 40}}));
  CliRun r =
      Phivault(To({"hold", "place", "--patient", "SYNTH-0001", "--matter", "Synthetic v. Clinic",
                   "--reason", "litigation notice", "--record", kRecordId}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "HHHHHHHHHHHHHHHHHHHHHw\n");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"patient_id", "SYNTH-0001"},
                                        {"matter", "Synthetic v. Clinic"},
                                        {"reason", "litigation notice"},
                                        {"record_ids", {kRecordId}}}));

  Answer(JsonReply(200, {{"hold", HoldJson(false)}, {"audit_seq", 41}}));
  r = Phivault(To({"hold", "release", "HHHHHHHHHHHHHHHHHHHHHw", "--reason", "settled"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(daemon_.last().uri, "/v1/holds/HHHHHHHHHHHHHHHHHHHHHw/release");
  EXPECT_EQ(r.out, "released HHHHHHHHHHHHHHHHHHHHHw at 2026-11-30T10:00:00Z, audit seq 41\n");

  Answer(JsonReply(200, {{"holds", {HoldJson(true)}}}));
  r = Phivault(To({"hold", "ls", "--patient", "SYNTH-0001", "--all"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(LastBody(), (nlohmann::json{{"patient_id", "SYNTH-0001"}, {"include_released", true}}));
  EXPECT_THAT(r.out, HasSubstr("records AAAAAAAAAAAAAAAAAAAAAA"));

  r = Phivault(To({"hold", "place", "--patient", "SYNTH-0001", "--reason", "r"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--matter"));
}

// ---- certificates ----

// A real certificate, signed as a sweep signs one, with its verifier key.
struct Signed {
  std::string note;
  std::string verifier_key;
};

Signed SignSample() {
  auto signer = crypto::Ed25519Signer::Create(crypto::SecretBytes::CopyFrom(
      std::string(32, '\x09'), crypto::InsecureSecretKeyAccess::Get()));
  EXPECT_TRUE(signer.ok());
  storage::DestructionCertificate c;
  c.id = kCertificateId;
  c.principal = "phivaultd:retention";
  c.user = "phivaultd:retention";
  c.role = "system";
  c.started_unix_us = 1795910400000000;
  c.finished_unix_us = 1795910405000000;
  c.epoch_ids = {"d20261128"};
  c.media = "vault data directory and keyring copies";
  c.records = {{kRecordId, 1, "lab_result", std::string(64, 'b')},
               {kRecordId, 2, "lab_result", std::string(64, 'b')}};
  c.verification = "decrypt of each destroyed version";
  c.verification_result = "passed: 2 of 2 versions fail to decrypt";
  c.tool_name = "phivault";
  c.tool_version = "0.9.0";
  c.audit_seq_first = 5;
  c.audit_seq_last = 7;
  auto note = storage::SignDestructionCertificate(c, **signer, "clinic.example/audit");
  EXPECT_TRUE(note.ok()) << note.status().ToString();
  return {note.ok() ? *note : "",
          crypto::NoteVerifierKey("clinic.example/audit", (*signer)->public_key())};
}

TEST_F(CliRetentionTest, CertificateVerifiesOfflineAndSaysWhatItChecked) {
  const Signed s = SignSample();
  const std::string note = File("cert.txt", s.note);
  const std::string pubkey = File("audit.pub", s.verifier_key + "\n");  // as `audit pubkey`
  // No --role and no daemon: offline.
  CliRun r = Phivault({"--socket", dir_.Sub("none.sock"), "certificate", "verify", "--file", note,
                       "--pubkey", pubkey});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("ok: certificate 00112233445566778899aabbccddeeff verified\n"));
  EXPECT_THAT(r.out, HasSubstr("Ed25519 by clinic.example/audit over the whole text (key from " +
                               pubkey + ")"));
  EXPECT_THAT(r.out, HasSubstr("1 record, 2 versions, 1 patient; epoch keys d20261128"));
  EXPECT_THAT(r.out, HasSubstr("entries 5 to 7"));
  EXPECT_TRUE(daemon_.requests().empty());
}

TEST_F(CliRetentionTest, ATamperedCertificateFailsVerification) {
  const Signed s = SignSample();
  std::string tampered = s.note;
  tampered.replace(tampered.find("passed: 2 of 2"), 14, "passed: 1 of 2");
  const std::string note = File("cert.txt", tampered);
  const std::string pubkey = File("audit.pub", s.verifier_key + "\n");
  CliRun r = Phivault({"certificate", "verify", "--file", note, "--pubkey", pubkey});
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_THAT(r.err, HasSubstr("verification failed: certificate signature does not verify"));
  EXPECT_THAT(r.out, Not(HasSubstr("ok:")));

  // Another vault's key.
  auto other = crypto::Ed25519Signer::Create(crypto::SecretBytes::Random(32));
  ASSERT_TRUE(other.ok());
  const std::string other_key = File(
      "other.pub", crypto::NoteVerifierKey("clinic.example/audit", (*other)->public_key()) + "\n");
  r = Phivault(
      {"certificate", "verify", "--file", File("good.txt", s.note), "--pubkey", other_key});
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_THAT(r.err, HasSubstr("certificate is not signed by"));

  r = Phivault({"certificate", "verify", "--file", note, "--pubkey", File("bad.pub", "nonsense")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("is not a verifier key"));
}

TEST_F(CliRetentionTest, CertificateVerifyByIdFetchesTheNoteAndTheKey) {
  const Signed s = SignSample();
  daemon_.SetHandler([&s](const SeenRequest& req) {
    if (req.uri == "/v1/audit/pubkey") {
      return JsonReply(200, {{"verifier_key", s.verifier_key}});
    }
    return Reply{.content_type = "text/plain; charset=utf-8", .body = s.note};
  });
  CliRun r = Phivault(To({"--json", "certificate", "verify", kCertificateId}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["id"], kCertificateId);
  EXPECT_EQ(j["versions"], 2);
  EXPECT_EQ(j["key_source"], "key fetched from the daemon");
  EXPECT_THAT(r.err, HasSubstr("using the verifier key fetched from the daemon"));
  ASSERT_EQ(daemon_.requests().size(), 2u);
  EXPECT_EQ(daemon_.requests()[1].uri, std::string("/v1/certificates/") + kCertificateId);
  EXPECT_EQ(daemon_.requests()[1].headers.at("accept"), "text/plain, application/problem+json");
}

TEST_F(CliRetentionTest, CertificateLsAndShowInEachForm) {
  Answer(JsonReply(200, {{"certificates",
                          {{{"id", kCertificateId},
                            {"started_at", "2026-11-29T00:00:00.000000Z"},
                            {"finished_at", "2026-11-29T00:00:05.000000Z"},
                            {"records", 1},
                            {"versions", 2},
                            {"patients", 1},
                            {"epoch_ids", {"d20261128"}}}}}}));
  CliRun r = Phivault(To({"certificate", "ls"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(std::string(kCertificateId) +
                               "  2026-11-29T00:00:00.000000Z  2026-11-29T00:00:05.000000Z  1"));

  Answer(Reply{.content_type = "text/html; charset=utf-8", .body = "<!doctype html>page"});
  const std::string out = dir_.Sub("cert.html");
  r = Phivault(To({"certificate", "show", kCertificateId, "--html", "-o", out}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(daemon_.last().headers["accept"], "text/html, application/problem+json");
  EXPECT_EQ(ReadFile(out), "<!doctype html>page");
  struct stat st {};
  ASSERT_EQ(stat(out.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  Answer(Reply{.body = R"({"id":"00112233445566778899aabbccddeeff"})"});
  r = Phivault(To({"certificate", "show", kCertificateId, "--json"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(daemon_.last().headers["accept"], "application/json, application/problem+json");
  EXPECT_EQ(r.out, "{\"id\":\"00112233445566778899aabbccddeeff\"}\n");

  r = Phivault(To({"certificate", "show", kCertificateId, "--json", "--html"}));
  EXPECT_EQ(r.exit_code, 2);

  Answer(Problem(404, "not-found", "Not found", "no such certificate"));
  r = Phivault(To({"certificate", "show", kCertificateId}));
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_EQ(r.err, "phivault: Not found: no such certificate\n");
}

TEST_F(CliRetentionTest, AShreddedRecordPointsToItsCertificate) {
  Reply gone =
      Problem(410, "record-shredded", "The record was destroyed",
              std::string("record was crypto-shredded (certificate ") + kCertificateId + ")");
  gone.body.insert(gone.body.size() - 1,
                   std::string(",\"certificate\":\"") + kCertificateId + "\"");
  Answer(gone);
  CliRun r = Phivault(To({"get", kRecordId}));
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_EQ(r.err, std::string("phivault: The record was destroyed: record was crypto-shredded "
                               "(certificate ") +
                       kCertificateId +
                       ")\nphivault: its certificate of destruction: phivault certificate show " +
                       kCertificateId + "\n");
}

}  // namespace
}  // namespace phivault::tools
