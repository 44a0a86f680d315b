// Who may talk to the daemon, as the client library and the CLI see it.
#include <pwd.h>
#include <unistd.h>

#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "crypto/hash.h"
#include "storage/records.h"
#include "tests/e2e/harness.h"

namespace phivault::e2e {
namespace {

client::NewRecord Note() {
  return client::NewRecord{.patient_id = "synthetic-patient-auth",
                           .category = "clinical_note",
                           .content_type = "text/plain",
                           .encounter_date = "2026-08-08",
                           .author = "dr.synthetic",
                           .content = "Synthetic note for the auth tests."};
}

using E2eAuthTest = VaultTest;

TEST_F(E2eAuthTest, WrongTokenMissingPurposeAndUnknownRoleAreRefused) {
  client::Client app = vault_.AppClient();
  auto stored = app.CreateRecord(Physician(), Note());
  ASSERT_TRUE(stored.ok()) << stored.error().Message();

  client::Client impostor = vault_.NewClient("pvt_" + crypto::Base64UrlEncode(RandomBytes(32)));
  auto create = impostor.CreateRecord(Physician(), Note());
  ASSERT_FALSE(create.ok());
  EXPECT_EQ(create.error().http_status, 401);
  EXPECT_EQ(create.error().kind, client::ErrorKind::kUnauthenticated);
  auto read = impostor.ReadContent(Physician(), stored->record_id);
  ASSERT_FALSE(read.ok()) << "content served for a wrong token";
  EXPECT_EQ(read.error().kind, client::ErrorKind::kUnauthenticated);

  client::Actor astronaut = Physician();
  astronaut.role = "astronaut";
  auto forbidden = app.ReadContent(astronaut, stored->record_id);
  ASSERT_FALSE(forbidden.ok()) << "content served to an unknown role";
  EXPECT_EQ(forbidden.error().http_status, 403);
  EXPECT_EQ(forbidden.error().kind, client::ErrorKind::kForbidden);
  EXPECT_EQ(forbidden.error().type, "urn:phivault:problem:forbidden");

  // Without X-Phivault-Purpose (curl sends exactly the headers given).
  auto missing_purpose =
      Curl(vault_.socket_path(),
           {"-H", "Authorization: Bearer " + vault_.token(), "-H", "X-Phivault-User: dr.curl", "-H",
            "X-Phivault-Role: physician", "-w", "\n%{http_code}",
            "http://localhost/v1/records/" + stored->record_id + "/content"});
  ASSERT_TRUE(missing_purpose.has_value()) << "curl failed";
  const size_t nl = missing_purpose->rfind('\n');
  ASSERT_NE(nl, std::string::npos);
  EXPECT_EQ(missing_purpose->substr(nl + 1), "400");
  const auto problem = nlohmann::json::parse(missing_purpose->substr(0, nl), nullptr, false);
  ASSERT_TRUE(problem.is_object()) << *missing_purpose;
  EXPECT_EQ(problem.value("type", ""), "urn:phivault:problem:invalid-request");
  EXPECT_NE(problem.value("detail", "").find("X-Phivault-Purpose"), std::string::npos)
      << "the problem does not say which header is missing";
  EXPECT_EQ(missing_purpose->find("Synthetic note"), std::string::npos);

  // The right token and headers still work.
  auto ok = app.ReadContent(Physician(), stored->record_id);
  ASSERT_TRUE(ok.ok()) << ok.error().Message();
  EXPECT_EQ(ok->bytes, Note().content);
}

TEST_F(E2eAuthTest, CliExitCodesAgainstTheRealDaemon) {
  const std::map<std::string, std::string> env = {{"PHIVAULT_TOKEN", vault_.token()},
                                                  {"PHIVAULT_ROLE", "physician"},
                                                  {"PHIVAULT_USER", "dr.cli"}};
  const std::string input = vault_.ScratchPath("scan.bin");
  const std::string content = RandomBytes(64 << 10);
  WriteFile(input, content);

  const ProcessResult put =
      vault_.Cli({"put", "--patient", "synthetic-patient-cli", "--category", "imaging", "--type",
                  "application/octet-stream", "--encounter-date", "2026-08-09", "--author",
                  "dr.synthetic", input},
                 env);
  ASSERT_EQ(put.exit_code, 0) << put.err;
  std::string id = put.out;
  while (!id.empty() && id.back() == '\n') id.pop_back();
  ASSERT_TRUE(storage::IsValidRecordId(id)) << "put printed: " << put.out;

  const std::string output = vault_.ScratchPath("scan.out");
  const ProcessResult get = vault_.Cli({"get", id, "-o", output}, env);
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_TRUE(ReadFile(output) == content) << "get -o wrote different bytes";
  const ProcessResult get_stdout = vault_.Cli({"get", id}, env);
  EXPECT_EQ(get_stdout.exit_code, 0) << get_stdout.err;
  EXPECT_TRUE(get_stdout.out == content) << "get to stdout wrote different bytes";

  const ProcessResult unknown = vault_.Cli({"get", storage::NewRecordId()}, env);
  EXPECT_EQ(unknown.exit_code, 4) << unknown.err;
  EXPECT_TRUE(unknown.out.empty());

  std::map<std::string, std::string> bad_env = env;
  bad_env["PHIVAULT_TOKEN"] = "pvt_" + crypto::Base64UrlEncode(RandomBytes(32));
  const ProcessResult denied = vault_.Cli({"get", id}, bad_env);
  EXPECT_EQ(denied.exit_code, 3) << denied.err;
  EXPECT_TRUE(denied.out.empty()) << "content printed for a bad token";

  // An operator (recognised by uid, no token) as `phivault init` configured it.
  const ProcessResult status =
      vault_.Cli({"status"}, {{"PHIVAULT_ROLE", "vault_admin"}, {"PHIVAULT_USER", "admin"}});
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_NE(status.out.find("audit entries:"), std::string::npos) << status.out;

  vault_.Stop();
  const ProcessResult stopped = vault_.Cli({"get", id}, env);
  EXPECT_EQ(stopped.exit_code, 5) << stopped.err;
  EXPECT_TRUE(stopped.out.empty());
  EXPECT_FALSE(stopped.err.empty()) << "no message when the daemon is down";
}

// The lines of a JSON Lines audit export that hold entries.
std::vector<nlohmann::json> EntryLines(const std::string& jsonl) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(jsonl);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.value("type", "") == "entry") lines.push_back(std::move(j));
  }
  return lines;
}

nlohmann::json EntryOf(const nlohmann::json& line) {
  return nlohmann::json::parse(line.value("entry", ""), nullptr, /*allow_exceptions=*/false);
}

// The roles line `phivault init` writes for its app (tools/cli_init.cc): every role.
constexpr char kInitAppRoles[] =
    R"(roles = ["vault_admin", "physician", "nurse", "front_office", "billing", )"
    R"("compliance_officer", "medical_assistant"])";

class E2eAppRolesTest : public VaultTest {
 protected:
  bool StartInSetUp() const override { return false; }
};

// An application bound to `physician` and `vault_admin`, though allowed audit.export, cannot get
// unsealed PHI by claiming the compliance officer's role: the claim is refused and audited, the
// policy refuses a physician the audit log, and the administrator's export carries no readable
// PHI. The compliance officer (an operator) still gets it.
TEST_F(E2eAppRolesTest, AppBoundToPhysicianCannotActAsComplianceOfficer) {
  vault_.EditConfig(kInitAppRoles, R"(roles = ["physician", "vault_admin"])");
  ASSERT_TRUE(vault_.Start());
  client::Client app = vault_.AppClient();
  auto stored = app.CreateRecord(Physician(), Note());
  ASSERT_TRUE(stored.ok()) << stored.error().Message();

  const client::Actor officer{
      .user = "co.claimed", .role = "compliance_officer", .purpose = "HOPERAT"};
  std::ostringstream refused_out;
  auto refused = app.ExportAudit(officer, client::AuditExportQuery{}, refused_out);
  ASSERT_FALSE(refused.ok()) << "an app bound to physician exported as the compliance officer";
  EXPECT_EQ(refused.error().http_status, 403);
  EXPECT_EQ(refused.error().type, "urn:phivault:problem:forbidden");
  EXPECT_NE(refused.error().Message().find("application dev-app may not assert role "
                                           "compliance_officer (config:application_roles)"),
            std::string::npos)
      << refused.error().Message();
  EXPECT_EQ(refused_out.str().find("synthetic-patient-auth"), std::string::npos);

  // As a physician the policy refuses it, naming its rule.
  client::Actor physician = Physician();
  physician.purpose = "HOPERAT";
  std::ostringstream as_physician;
  auto denied = app.ExportAudit(physician, client::AuditExportQuery{}, as_physician);
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.error().http_status, 403);
  EXPECT_EQ(denied.error().rule, "default-deny");
  EXPECT_EQ(as_physician.str(), "");

  // As its vault administrator, with audit.export allowed, the export has no unsealed PHI.
  const client::Actor admin{.user = "it.synthetic", .role = "vault_admin", .purpose = "HOPERAT"};
  std::ostringstream own;
  auto exported = app.ExportAudit(admin, client::AuditExportQuery{}, own);
  ASSERT_TRUE(exported.ok()) << exported.error().Message();
  EXPECT_EQ(own.str().find("synthetic-patient-auth"), std::string::npos);
  const auto lines = EntryLines(own.str());
  ASSERT_FALSE(lines.empty());
  bool refusal_audited = false;
  for (const auto& line : lines) {
    EXPECT_FALSE(line.contains("phi")) << line.dump();
    EXPECT_FALSE(line.contains("phi_salt")) << line.dump();
    const auto e = EntryOf(line);
    if (e.value("outcome", "") == "denied" && e.value("action", "") == "audit.export" &&
        e.value("app", "") == "dev-app" && e.value("role", "") == "compliance_officer" &&
        e.value("reason", "").find("config:application_roles") != std::string::npos) {
      refusal_audited = true;
    }
  }
  EXPECT_TRUE(refusal_audited) << "the refused role claim is not in the audit log";

  // The compliance officer at the CLI (an operator, as `phivault init` configured it) gets the
  // patient id unsealed; their --as is not believed: the entries name their account.
  const struct passwd* pw = getpwuid(getuid());
  const std::string account =
      pw != nullptr ? std::string(pw->pw_name) : "uid:" + std::to_string(getuid());
  const ProcessResult cli = vault_.Cli({"--role", "compliance_officer", "--purpose", "HOPERAT",
                                        "--as", "someone.else", "--json", "audit", "export"});
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_NE(cli.out.find("synthetic-patient-auth"), std::string::npos)
      << "the compliance officer's export does not unseal the patient id";
  const ProcessResult again = vault_.Cli({"--role", "compliance_officer", "--purpose", "HOPERAT",
                                          "--as", "someone.else", "--json", "audit", "export"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  bool officer_entry = false;
  for (const auto& line : EntryLines(again.out)) {
    const auto e = EntryOf(line);
    if (e.value("action", "") != "audit.export" || e.value("outcome", "") == "denied") continue;
    if (e.value("role", "") != "compliance_officer") continue;
    officer_entry = true;
    EXPECT_EQ(e.value("user", ""), account) << e.dump();
  }
  EXPECT_TRUE(officer_entry) << "the operator's export is not audited";
}

}  // namespace
}  // namespace phivault::e2e
