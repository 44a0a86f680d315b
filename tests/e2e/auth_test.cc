// Who may talk to the daemon, as the client library and the CLI see it.
#include <string>

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
      vault_.Cli({"status"}, {{"PHIVAULT_ROLE", "administrator"}, {"PHIVAULT_USER", "admin"}});
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_NE(status.out.find("audit entries:"), std::string::npos) << status.out;

  vault_.Stop();
  const ProcessResult stopped = vault_.Cli({"get", id}, env);
  EXPECT_EQ(stopped.exit_code, 5) << stopped.err;
  EXPECT_TRUE(stopped.out.empty());
  EXPECT_FALSE(stopped.err.empty()) << "no message when the daemon is down";
}

}  // namespace
}  // namespace phivault::e2e
