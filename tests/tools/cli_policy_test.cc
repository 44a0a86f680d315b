// The `phivault` binary's issue 8 commands: the access policy (against a scripted fake daemon,
// and `policy test` / `policy diff` on real policy files with the real engine), break-glass
// review, restrictions, the patient export, confidential contact and patient requests.
#include <sys/stat.h>

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "crypto/secret.h"
#include "tests/testing/temp_dir.h"
#include "tests/tools/fake_daemon.h"
#include "tests/tools/run_phivault.h"

namespace phivault::tools {
namespace {

using testing::CliRun;
using testing::FakeDaemon;
using testing::Forbidden;
using ::testing::HasSubstr;
using testing::Problem;
using testing::ReadFile;
using testing::Reply;
using testing::SeenRequest;
using ::testing::StartsWith;
using testing::WriteFile;

Reply JsonReply(int status, const nlohmann::json& j) {
  return Reply{.status = status, .body = j.dump()};
}

class CliPolicyTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(crypto::InitSodium().ok()); }

  CliRun Phivault(const std::vector<std::string>& args) {
    return testing::RunPhivault(args, {}, "", dir_.path().string());
  }
  // Talks to the fake daemon as the compliance officer.
  std::vector<std::string> To(std::vector<std::string> rest) {
    std::vector<std::string> args = {"--socket",  sock_,     "--role",  "compliance_officer",
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

nlohmann::json Decision(bool allowed, const std::string& rule) {
  return {{"allowed", allowed},
          {"rule", rule},
          {"explanation", allowed ? "physicians read the chart to treat" : "no rule permits it"},
          {"category", "clinical_note"},
          {"is_author", false}};
}

// ---- policy check / show / history / reload ----

TEST_F(CliPolicyTest, PolicyCheckPrintsTheDecisionAndExitsZeroForAllow) {
  Answer(JsonReply(200, Decision(true, "clinical-care")));
  CliRun r = Phivault(To({"policy", "check", "--as", "dr.b", "--role", "physician", "--purpose",
                          "TREAT", "--action", "read", "--record", "rec_9", "--version", "2"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "allow\n"
            "rule:        clinical-care\n"
            "category:    clinical_note\n"
            "explanation: physicians read the chart to treat\n");
  EXPECT_EQ(daemon_.last().uri, "/v1/policy/check");
  // The acting identity is the officer's; the checked one is in the body.
  EXPECT_EQ(daemon_.last().headers["x-phivault-role"], "compliance_officer");
  EXPECT_EQ(daemon_.last().headers["x-phivault-purpose"], "HOPERAT");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"as_user", "dr.b"},
                                        {"role", "physician"},
                                        {"purpose", "TREAT"},
                                        {"action", "read"},
                                        {"record_id", "rec_9"},
                                        {"version", 2},
                                        {"consent", false},
                                        {"break_glass", false}}));
}

TEST_F(CliPolicyTest, PolicyCheckExitsThreeForDenyAndSpeaksJson) {
  Answer(JsonReply(200, Decision(false, "default-deny")));
  CliRun r = Phivault(
      To({"--json", "policy", "check", "--as", "dr.b", "--role", "billing", "--purpose", "HPAYMT",
          "--action", "read", "--category", "clinical_note", "--consent", "--break-glass"}));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), Decision(false, "default-deny"));
  EXPECT_EQ(LastBody(), (nlohmann::json{{"as_user", "dr.b"},
                                        {"role", "billing"},
                                        {"purpose", "HPAYMT"},
                                        {"action", "read"},
                                        {"category", "clinical_note"},
                                        {"consent", true},
                                        {"break_glass", true}}));
}

TEST_F(CliPolicyTest, PolicyCheckUsageErrorsSendNothing) {
  CliRun r = Phivault(To({"policy", "check", "--as", "dr.b", "--role", "physician", "--purpose",
                          "treat", "--action", "read", "--category", "clinical_note"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--purpose treat is not an HL7 PurposeOfUse code"));
  r = Phivault(To({"policy", "check", "--as", "dr.b", "--role", "physician", "--purpose", "TREAT",
                   "--action", "read", "--record", "rec_1", "--category", "x"}));
  EXPECT_EQ(r.exit_code, 2);
  r = Phivault(To({"policy", "check", "--as", "dr.b", "--role", "physician", "--purpose", "TREAT",
                   "--action", "peek"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("disclose"));
  r = Phivault(
      To({"policy", "check", "--role", "physician", "--purpose", "TREAT", "--action", "read"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--as"));
  EXPECT_TRUE(daemon_.requests().empty());
}

TEST_F(CliPolicyTest, AnswersOfTheDaemonMapToExitCodes) {
  Answer(Forbidden("the compliance officer may not check policies", "default-deny"));
  CliRun r = Phivault(To({"policy", "check", "--as", "dr.b", "--role", "physician", "--purpose",
                          "TREAT", "--action", "read", "--category", "clinical_note"}));
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.err,
            "phivault: Forbidden: the compliance officer may not check policies (rule: "
            "default-deny)\n");

  Answer(Problem(404, "not-found", "Not Found", "no policy was in force at 2020-01-01"));
  r = Phivault(To({"policy", "show", "--at", "2020-01-01"}));
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_EQ(daemon_.last().uri, "/v1/policy?at=2020-01-01");

  Answer(Problem(422, "invalid-policy", "Invalid policy",
                 "/etc/phivault/policy.toml:31: rule 'billing': unknown category 'labs'"));
  r = Phivault(To({"policy", "reload"}));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err,
            "phivault: Invalid policy: /etc/phivault/policy.toml:31: rule 'billing': unknown "
            "category 'labs'\n");
}

TEST_F(CliPolicyTest, PolicyShowPrintsTheTextAloneOnStandardOutput) {
  const std::string text = "[policy]\nname = \"v2\"\n";
  Answer(JsonReply(200, {{"name", "v2"},
                         {"sha256", std::string(64, 'b')},
                         {"in_force_from", "2026-06-01T00:00:00Z"},
                         {"in_force_until", nullptr},
                         {"audit_seq", 40},
                         {"text", text}}));
  CliRun r = Phivault(To({"policy", "show"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, text);
  EXPECT_EQ(r.err, "phivault: policy \"v2\" (sha256 " + std::string(64, 'b') +
                       "), in force from 2026-06-01T00:00:00Z until (in force), audit seq 40\n");
  EXPECT_EQ(daemon_.last().method, "GET");
  EXPECT_EQ(daemon_.last().uri, "/v1/policy");
}

TEST_F(CliPolicyTest, PolicyHistoryIsATableAndReloadSaysWhatChanged) {
  Answer(JsonReply(200, {{"versions",
                          {{{"name", "v1"},
                            {"sha256", "aa"},
                            {"in_force_from", "2026-01-01T00:00:00Z"},
                            {"in_force_until", "2026-06-01T00:00:00Z"},
                            {"audit_seq", 1}},
                           {{"name", "v2"},
                            {"sha256", "bb"},
                            {"in_force_from", "2026-06-01T00:00:00Z"},
                            {"in_force_until", nullptr},
                            {"audit_seq", 40}}}}}));
  CliRun r = Phivault(To({"policy", "history"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "NAME  SHA256  IN FORCE FROM         UNTIL                 AUDIT SEQ\n"
            "v1    aa      2026-01-01T00:00:00Z  2026-06-01T00:00:00Z  1\n"
            "v2    bb      2026-06-01T00:00:00Z  (in force)            40\n");

  Answer(JsonReply(
      200,
      {{"name", "v2"}, {"sha256", "bb"}, {"rules", 14}, {"changed", false}, {"audit_seq", 41}}));
  r = Phivault(To({"policy", "reload"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "unchanged: policy \"v2\" (sha256 bb, 14 rules), audit seq 41\n");
  EXPECT_EQ(daemon_.last().method, "POST");
  EXPECT_EQ(daemon_.last().uri, "/v1/policy/reload");
}

// ---- the request headers and what the policy withholds ----

TEST_F(CliPolicyTest, GetSendsTheBreakGlassReasonAndConsent) {
  Answer(Reply{.status = 200, .content_type = "text/plain", .body = "note"});
  CliRun r = Phivault({"--socket", sock_, "--role", "physician", "--purpose", "ETREAT", "--token",
                       "t", "get", "rec_1", "--break-glass-reason", "unconscious, no history",
                       "--consent", "consent:2026/0042"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "note");
  EXPECT_EQ(daemon_.last().headers["x-phivault-break-glass-reason"], "unconscious, no history");
  EXPECT_EQ(daemon_.last().headers["x-phivault-consent"], "consent:2026/0042");

  r = Phivault(To({"get", "rec_1"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(daemon_.last().has("x-phivault-break-glass-reason"));
  EXPECT_FALSE(daemon_.last().has("x-phivault-consent"));

  r = Phivault(To({"get", "rec_1", "--consent", ""}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--consent must not be empty"));
}

TEST_F(CliPolicyTest, AForbiddenReadNamesTheRule) {
  Answer(Forbidden("the patient restricted this use", "restriction:r_7"));
  CliRun r = Phivault(To({"get", "rec_1"}));
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.err,
            "phivault: Forbidden: the patient restricted this use (rule: restriction:r_7)\n");
  EXPECT_EQ(r.out, "");
}

TEST_F(CliPolicyTest, LsSaysHowManyRecordsThePolicyWithholds) {
  const nlohmann::json record = {{"record_id", "rec_1"},
                                 {"version", 1},
                                 {"patient_id", "SYNTH-0001"},
                                 {"category", "clinical_note"},
                                 {"content_type", "text/plain"},
                                 {"encounter_date", "2024-03-01"},
                                 {"author", "Dr. S"},
                                 {"created", "2024-03-01T10:00:00Z"},
                                 {"content_bytes", 5}};
  Answer(JsonReply(200, {{"records", {record}}, {"withheld", 2}}));
  CliRun r = Phivault(To({"ls", "--patient", "SYNTH-0001", "--consent", "c-1"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, StartsWith("RECORD ID  VERSION"));
  EXPECT_THAT(r.out, HasSubstr("rec_1"));
  EXPECT_EQ(r.err, "phivault: 2 more records withheld by policy\n");
  EXPECT_EQ(daemon_.last().headers["x-phivault-consent"], "c-1");

  r = Phivault(To({"--json", "ls", "--patient", "SYNTH-0001"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["withheld"], 2);
  EXPECT_EQ(r.err, "");

  Answer(JsonReply(200, {{"records", {record}}, {"withheld", 0}}));
  r = Phivault(To({"ls", "--patient", "SYNTH-0001"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
}

TEST_F(CliPolicyTest, PutAndAmendSendTheConsent) {
  Answer(JsonReply(201, {{"record_id", "rec_2"},
                         {"version", 1},
                         {"patient_id", "SYNTH-0001"},
                         {"category", "substance_use"},
                         {"content_type", "text/plain"},
                         {"encounter_date", "2024-03-01"},
                         {"author", "Dr. S"},
                         {"created", "2024-03-01T10:00:00Z"},
                         {"content_bytes", 4}}));
  CliRun r = Phivault(
      To({"put", "--patient", "SYNTH-0001", "--category", "substance_use", "--type", "text/plain",
          "--encounter-date", "2024-03-01", "--author", "Dr. S", "--consent", "consent:7", "-"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(daemon_.last().headers["x-phivault-consent"], "consent:7");
  r = Phivault(To({"amend", "rec_2", "--reason", "typo", "--consent", "consent:7", "-"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(daemon_.last().uri, "/v1/records/rec_2/versions");
  EXPECT_EQ(daemon_.last().headers["x-phivault-consent"], "consent:7");
}

TEST_F(CliPolicyTest, DiscloseSendsTheConsent) {
  Answer(JsonReply(201, {{"audit_seq", 9}}));
  CliRun r = Phivault(To({"disclose", "--patient", "SYNTH-0001", "--recipient", "Clinic",
                          "--description", "discharge summary", "--consent", "auth-77"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(daemon_.last().headers["x-phivault-consent"], "auth-77");
}

// ---- policy test / policy diff: local, with the real engine ----

// A small policy in the format of docs/policy.md over the default categories.
std::string SmallPolicy(const std::string& billing_purpose) {
  return R"([policy]
name = "small"

[roles]
physician = "Physicians"
billing = "Billing staff"

[[permit]]
name = "clinical-care"
roles = ["physician"]
actions = ["read", "list"]
categories = ["*"]
purposes = ["TREAT"]

[[permit]]
name = "billing-claims"
roles = ["billing"]
actions = ["read"]
categories = ["billing"]
purposes = [")" +
         billing_purpose + R"("]
)";
}

constexpr const char* kCases = R"([[case]]
role = "physician"
action = "read"
category = "clinical_note"
purpose = "TREAT"
expect = "allow"
rule = "clinical-care"

[[case]]
role = "billing"
action = "read"
category = "clinical_note"
purpose = "HPAYMT"
expect = "deny"

[[case]]
role = "billing"
action = "read"
category = "billing"
purpose = "HPAYMT"
expect = "allow"
)";

TEST_F(CliPolicyTest, PolicyTestPassesAndFailsCasesWithoutADaemon) {
  const std::string good = File("good.toml", SmallPolicy("HPAYMT"));
  const std::string cases = File("cases.toml", kCases);
  CliRun r = Phivault({"policy", "test", good, cases});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "3 cases, 0 failed\n");

  const std::string wrong = File("wrong.toml", SmallPolicy("HOPERAT"));
  r = Phivault({"policy", "test", wrong, cases});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.out, "FAIL " + cases +
                       ":16: billing read billing HPAYMT: expected allow, got deny (rule: "
                       "default-deny)\n3 cases, 1 failed\n");

  r = Phivault({"--json", "policy", "test", wrong, cases});
  EXPECT_EQ(r.exit_code, 1);
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["cases"], 3);
  EXPECT_EQ(j["failed"], 1);
  EXPECT_EQ(j["results"][2]["passed"], false);
  EXPECT_EQ(j["results"][2]["got"]["rule"], "default-deny");
  EXPECT_TRUE(daemon_.requests().empty());
}

TEST_F(CliPolicyTest, PolicyTestNamesTheFileAndLineOfAnInvalidInput) {
  const std::string good = File("good.toml", SmallPolicy("HPAYMT"));
  const std::string typo = File("typo.toml",
                                "[[case]]\nrole = \"physician\"\naction = \"read\"\n"
                                "category = \"clinical_note\"\npurpose = \"TREAT\"\n"
                                "expcet = \"allow\"\n");
  CliRun r = Phivault({"policy", "test", good, typo});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr(typo + ":6:"));

  std::string bad_text = SmallPolicy("HPAYMT");
  bad_text.replace(bad_text.find("categories = [\"billing\"]"), 24, "categories = [\"labs\"]");
  const std::string bad = File("bad.toml", bad_text);
  r = Phivault({"policy", "test", bad, typo});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, StartsWith("phivault: invalid policy: " + bad + ":"));
  EXPECT_THAT(r.err, HasSubstr("billing-claims"));
  EXPECT_EQ(r.out, "");
}

TEST_F(CliPolicyTest, PolicyDiffListsEveryChangedCell) {
  const std::string before = File("before.toml", SmallPolicy("HPAYMT"));
  CliRun r = Phivault({"policy", "diff", before, before});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "0 cells newly allowed, 0 newly denied\n");

  const std::string after = File("after.toml", SmallPolicy("HOPERAT"));
  r = Phivault({"policy", "diff", before, after});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.out, HasSubstr("+ allow  billing read billing HOPERAT  (rule: billing-claims)\n"));
  EXPECT_THAT(r.out, HasSubstr("- deny   billing read billing HPAYMT  (rule: default-deny, was "
                               "rule billing-claims)\n"));
  EXPECT_THAT(r.out, HasSubstr(" author consent break-glass  (rule:"));

  // Every line is one cell; the summary counts them.
  size_t allowed = 0, denied = 0;
  for (size_t at = 0; at < r.out.size(); at = r.out.find('\n', at) + 1) {
    allowed += r.out.compare(at, 9, "+ allow  ") == 0 ? 1 : 0;
    denied += r.out.compare(at, 9, "- deny   ") == 0 ? 1 : 0;
  }
  EXPECT_GT(allowed, 0u);
  EXPECT_GT(denied, 0u);
  EXPECT_THAT(r.out, ::testing::EndsWith(std::to_string(allowed) + " cells newly allowed, " +
                                         std::to_string(denied) + " newly denied\n"));

  r = Phivault({"--json", "policy", "diff", before, after});
  EXPECT_EQ(r.exit_code, 1);
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["cells"].size(), allowed + denied);
  EXPECT_EQ(j["newly_allowed"], allowed);
}

TEST_F(CliPolicyTest, PolicyDiffOfAnInvalidFileExitsTwoNamingIt) {
  const std::string before = File("before.toml", SmallPolicy("HPAYMT"));
  std::string text = SmallPolicy("HPAYMT");
  text.replace(text.find("roles = [\"billing\"]"), 19, "roles = [\"coder\"]");
  const std::string after = File("after.toml", text);
  CliRun r = Phivault({"policy", "diff", before, after});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, StartsWith("phivault: invalid policy: " + after + ":"));
  EXPECT_THAT(r.err, HasSubstr("rule 'billing-claims'"));
  EXPECT_EQ(r.out, "");
}

TEST_F(CliPolicyTest, PolicyTestTakesCategoriesAndRequiredRolesFromAConfig) {
  const std::string good = File("good.toml", SmallPolicy("HPAYMT"));
  const std::string cases = File("cases.toml", kCases);
  const std::string config = File("phivault.toml", R"(socket_path = "/tmp/x.sock"
data_dir = "/tmp/x"
roles = ["physician", "billing", "nurse"]
[master_key]
source = "file"
file = "/tmp/x.key"
)");
  CliRun r = Phivault({"policy", "test", "--config", config, good, cases});
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_THAT(r.err, HasSubstr("nurse"));

  r = Phivault({"policy", "test", "--config", dir_.Sub("missing.toml"), good, cases});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, StartsWith("phivault: usage error: --config: "));
}

// ---- break-glass review ----

nlohmann::json Event(const std::string& status) {
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
          {"status", status},
          {"signed_off_by", nullptr},
          {"signed_off_at", nullptr},
          {"note", nullptr}};
}

TEST_F(CliPolicyTest, AuditReviewListsWindowsAndSignsOneOff) {
  Answer(JsonReply(200, {{"events", {Event("pending")}}}));
  CliRun r = Phivault(To({"audit", "review"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(LastBody(), (nlohmann::json{{"status", "pending"}}));
  EXPECT_THAT(r.out, StartsWith("ID    STATUS   USER   ROLE       APPLICATION  PATIENT"));
  EXPECT_THAT(r.out, HasSubstr("bg_1  pending  dr.er  physician  ehr          SYNTH-0001"));
  EXPECT_THAT(r.out, HasSubstr("  4         -              unconscious\n"));

  r = Phivault(To({"--json", "audit", "review", "--all"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(LastBody(), (nlohmann::json{{"status", "all"}}));
  EXPECT_EQ(nlohmann::json::parse(r.out), (nlohmann::json{{"events", {Event("pending")}}}));

  Answer(JsonReply(200, {{"id", "bg_1"},
                         {"signed_off_by", "pat.privacy"},
                         {"signed_off_at", "2026-11-30T09:00:00Z"},
                         {"audit_seq", 77}}));
  r = Phivault(To({"audit", "review", "sign-off", "bg_1", "--note", "justified"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "signed off bg_1 by pat.privacy at 2026-11-30T09:00:00Z, audit seq 77\n");
  EXPECT_EQ(daemon_.last().uri, "/v1/audit/review/bg_1/sign-off");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"note", "justified"}}));

  Answer(Problem(409, "conflict", "Conflict", "the window is still open"));
  r = Phivault(To({"audit", "review", "sign-off", "bg_1", "--note", "x"}));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "phivault: Conflict: the window is still open\n");

  r = Phivault(To({"audit", "review", "sign-off", "bg_1"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--note"));
}

// ---- restrictions ----

TEST_F(CliPolicyTest, RestrictionsAddSendsTheRestrictionAndPrintsItsId) {
  Answer(JsonReply(201, {{"id", "r_7"}, {"audit_seq", 90}}));
  CliRun r = Phivault(To({"restrictions", "add", "--patient", "SYNTH-0001", "--purpose", "HPAYMT",
                          "HOPERAT", "--category", "lab_result", "--recipient", "health plan",
                          "--note", "paid out of pocket"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "r_7\n");
  EXPECT_EQ(daemon_.last().uri, "/v1/restrictions");
  // The restriction's purposes are not the acting purpose.
  EXPECT_EQ(daemon_.last().headers["x-phivault-purpose"], "HOPERAT");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"patient_id", "SYNTH-0001"},
                                        {"purposes", {"HPAYMT", "HOPERAT"}},
                                        {"categories", {"lab_result"}},
                                        {"recipient", "health plan"},
                                        {"note", "paid out of pocket"}}));

  r = Phivault(To({"--json", "restrictions", "add", "--patient", "SYNTH-0001", "--purpose",
                   "HPAYMT", "--record", "rec_1", "--record", "rec_2", "--recipient", "plan"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), (nlohmann::json{{"id", "r_7"}, {"audit_seq", 90}}));
  EXPECT_EQ(LastBody()["record_ids"], (nlohmann::json{"rec_1", "rec_2"}));
}

TEST_F(CliPolicyTest, RestrictionsUsageErrorsSendNothing) {
  CliRun r = Phivault(To({"restrictions", "add", "--patient", "SYNTH-0001", "--purpose", "payment",
                          "--recipient", "plan"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--purpose payment is not an HL7 PurposeOfUse code"));
  r = Phivault(To({"restrictions", "add", "--patient", "SYNTH-0001", "--recipient", "plan"}));
  EXPECT_EQ(r.exit_code, 2);
  r = Phivault(To({"restrictions", "end", "--patient", "SYNTH-0001", "--id", "r_7"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(daemon_.requests().empty());
}

TEST_F(CliPolicyTest, RestrictionsAreListedAndEnded) {
  Answer(JsonReply(200, {{"restrictions",
                          {{{"id", "r_7"},
                            {"purposes", {"HPAYMT", "HOPERAT"}},
                            {"record_ids", nlohmann::json::array()},
                            {"categories", nlohmann::json::array()},
                            {"recipient", "health plan"},
                            {"note", nullptr},
                            {"created", "2026-11-30T09:00:00Z"},
                            {"created_by", "pat.privacy"},
                            {"ended", nullptr},
                            {"ended_by", nullptr},
                            {"end_reason", nullptr}}}}}));
  CliRun r = Phivault(To({"restrictions", "ls", "--patient", "SYNTH-0001", "--all"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(LastBody(), (nlohmann::json{{"patient_id", "SYNTH-0001"}, {"include_ended", true}}));
  EXPECT_THAT(r.out, HasSubstr("r_7  HPAYMT,HOPERAT  all records  health plan  "
                               "2026-11-30T09:00:00Z  pat.privacy  -      -\n"));

  Answer(JsonReply(200, {{"id", "r_7"}, {"ended", "2026-12-01T10:00:00Z"}, {"audit_seq", 95}}));
  r = Phivault(
      To({"restrictions", "end", "--patient", "SYNTH-0001", "--id", "r_7", "--reason", "revoked"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "ended r_7 at 2026-12-01T10:00:00Z, audit seq 95\n");
  EXPECT_EQ(daemon_.last().uri, "/v1/restrictions/r_7/end");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"patient_id", "SYNTH-0001"}, {"reason", "revoked"}}));

  Answer(Problem(404, "not-found", "Not Found", "no restriction r_8"));
  r = Phivault(
      To({"restrictions", "end", "--patient", "SYNTH-0001", "--id", "r_8", "--reason", "x"}));
  EXPECT_EQ(r.exit_code, 4);
  Answer(Problem(409, "conflict", "Conflict", "restriction r_7 has ended"));
  r = Phivault(
      To({"restrictions", "end", "--patient", "SYNTH-0001", "--id", "r_7", "--reason", "x"}));
  EXPECT_EQ(r.exit_code, 1);
}

// ---- patient export and contact ----

mode_t Mode(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0;
}

TEST_F(CliPolicyTest, PatientExportWritesThePrivateTarWithPurposePatrqt) {
  const std::string tar(100000, 't');
  Answer(Reply{.status = 200, .content_type = "application/x-tar", .body = tar, .chunked = true});
  const std::string out = dir_.Sub("export.tar");
  CliRun r = Phivault({"--socket", sock_, "--role", "front_office", "--token", "t", "patient",
                       "export", "--patient", "SYNTH-0001", "-o", out, "--request", "pr_3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadFile(out), tar);
  EXPECT_EQ(Mode(out), 0600u);
  EXPECT_EQ(daemon_.last().uri, "/v1/patients/export");
  EXPECT_EQ(daemon_.last().headers["x-phivault-purpose"], "PATRQT");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"patient_id", "SYNTH-0001"}, {"request_id", "pr_3"}}));

  // A purpose given explicitly is the one sent; standard output that is no terminal gets the tar.
  r = Phivault(To({"patient", "export", "--patient", "SYNTH-0001"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, tar);
  EXPECT_EQ(daemon_.last().headers["x-phivault-purpose"], "HOPERAT");
}

TEST_F(CliPolicyTest, ADeniedPatientExportLeavesNoFile) {
  Answer(Forbidden("export needs purpose PATRQT", "default-deny"));
  const std::string out = dir_.Sub("export.tar");
  CliRun r = Phivault(To({"patient", "export", "--patient", "SYNTH-0001", "-o", out}));
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.err, "phivault: Forbidden: export needs purpose PATRQT (rule: default-deny)\n");
  EXPECT_EQ(Mode(out), 0u);
}

TEST_F(CliPolicyTest, PatientContactIsSetAndShown) {
  Answer(JsonReply(200, {{"audit_seq", 140}}));
  CliRun r = Phivault(To({"patient", "contact", "set", "--patient", "SYNTH-0001", "--address",
                          "PO Box 12", "--channel", "mail", "--note", "not home"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "140\n");
  EXPECT_EQ(daemon_.last().method, "PUT");
  EXPECT_EQ(daemon_.last().uri, "/v1/patients/contact");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"patient_id", "SYNTH-0001"},
                                        {"address", "PO Box 12"},
                                        {"channel", "mail"},
                                        {"note", "not home"}}));

  r = Phivault(To({"patient", "contact", "set", "--patient", "SYNTH-0001", "--address", "x",
                   "--channel", "fax"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("mail"));
  EXPECT_THAT(r.err, HasSubstr("portal"));

  Answer(JsonReply(200, {{"patient_id", "SYNTH-0001"},
                         {"address", "PO Box 12"},
                         {"channel", "mail"},
                         {"note", nullptr},
                         {"updated", "2026-11-30T09:00:00Z"}}));
  r = Phivault(To({"patient", "contact", "show", "--patient", "SYNTH-0001"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "patient:  SYNTH-0001\nchannel:  mail\naddress:  PO Box 12\nnote:     -\n"
            "updated:  2026-11-30T09:00:00Z\n");
  EXPECT_EQ(daemon_.last().uri, "/v1/patients/contact/_get");

  Answer(Problem(404, "not-found", "Not Found", "no confidential contact"));
  r = Phivault(To({"patient", "contact", "show", "--patient", "SYNTH-0002"}));
  EXPECT_EQ(r.exit_code, 4);
}

// ---- patient requests ----

TEST_F(CliPolicyTest, RequestsAreOpenedExtendedAndClosed) {
  Answer(JsonReply(201, {{"id", "pr_3"}, {"due", "2026-12-31"}, {"audit_seq", 100}}));
  CliRun r = Phivault(To({"requests", "open", "--patient", "SYNTH-0001", "--kind", "access",
                          "--received", "2026-12-01", "--note", "by letter"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "pr_3 due 2026-12-31\n");
  EXPECT_EQ(daemon_.last().uri, "/v1/patient-requests");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"patient_id", "SYNTH-0001"},
                                        {"kind", "access"},
                                        {"received", "2026-12-01"},
                                        {"note", "by letter"}}));

  Answer(JsonReply(200, {{"id", "pr_3"}, {"due", "2027-01-30"}}));
  r = Phivault(To({"requests", "extend", "pr_3", "--reason", "off-site storage"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "pr_3 due 2027-01-30\n");
  EXPECT_EQ(daemon_.last().uri, "/v1/patient-requests/pr_3/extend");
  Answer(Problem(409, "conflict", "Conflict", "a request is extended once"));
  r = Phivault(To({"requests", "extend", "pr_3", "--reason", "again"}));
  EXPECT_EQ(r.exit_code, 1);

  Answer(JsonReply(200, {{"id", "pr_3"}, {"closed", "2026-12-10T10:00:00Z"}, {"audit_seq", 130}}));
  r = Phivault(To({"requests", "close", "pr_3", "--outcome", "fulfilled", "--delivered", "ab12"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "pr_3 closed 2026-12-10T10:00:00Z, audit seq 130\n");
  EXPECT_EQ(LastBody(), (nlohmann::json{{"outcome", "fulfilled"}, {"delivered", "ab12"}}));
}

TEST_F(CliPolicyTest, RequestsUsageErrorsListTheAllowedValues) {
  CliRun r = Phivault(To({"requests", "open", "--patient", "SYNTH-0001", "--kind", "copy"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("amendment"));
  r = Phivault(To({"requests", "open", "--patient", "SYNTH-0001", "--kind", "access", "--received",
                   "2026-02-30"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--received must be a calendar date written YYYY-MM-DD"));
  r = Phivault(To({"requests", "close", "pr_3", "--outcome", "done", "--delivered", "x"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("fulfilled"));
  EXPECT_TRUE(daemon_.requests().empty());
}

TEST_F(CliPolicyTest, RequestsLsShowsDeadlines) {
  Answer(JsonReply(200, {{"requests",
                          {{{"id", "pr_3"},
                            {"patient_id", "SYNTH-0001"},
                            {"kind", "access"},
                            {"received", "2026-10-01"},
                            {"due", "2026-10-31"},
                            {"extended", false},
                            {"extension_reason", nullptr},
                            {"status", "open"},
                            {"outcome", nullptr},
                            {"closed", nullptr},
                            {"delivered", nullptr},
                            {"overdue", true}}}}}));
  CliRun r = Phivault(To({"requests", "ls", "--overdue"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(LastBody(), (nlohmann::json{{"overdue", true}, {"include_closed", false}}));
  EXPECT_THAT(r.out, HasSubstr("pr_3  SYNTH-0001  access  2026-10-01  2026-10-31 OVERDUE  open"));

  r = Phivault(To({"--json", "requests", "ls", "--patient", "SYNTH-0001", "--all"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(
      LastBody(),
      (nlohmann::json{{"patient_id", "SYNTH-0001"}, {"overdue", false}, {"include_closed", true}}));
  EXPECT_EQ(nlohmann::json::parse(r.out)["requests"][0]["overdue"], true);
}

}  // namespace
}  // namespace phivault::tools
