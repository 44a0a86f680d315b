// No PHI leaves the encrypted store: after a session of successful, failed and denied requests
// carrying canary patient ids, a patient name and content, none of them is in the daemon's
// stderr, its log file, or any other file it wrote.
#include <unistd.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "crypto/hash.h"
#include "tests/e2e/harness.h"

namespace phivault::e2e {
namespace {

class E2ePhiLogsTest : public VaultTest {
 protected:
  bool StartInSetUp() const override { return false; }
};

TEST_F(E2ePhiLogsTest, NoCanaryInLogsOrAnyFileOutsideTheEncryptedStore) {
  // An application that may only read the status, to provoke 403s on PHI routes.
  const std::string limited_token = "pvt_" + crypto::Base64UrlEncode(RandomBytes(32));
  vault_.AppendConfig("[[applications]]\nname = \"limited-app\"\ntoken_sha256 = \"" +
                      crypto::HexEncode(crypto::AsView(crypto::Sha256(limited_token))) +
                      "\"\nuids = [" + std::to_string(getuid()) +
                      "]\nactions = [\"status\"]\nroles = [\"physician\"]\n");
  ASSERT_TRUE(vault_.Start());

  const std::string patient = "synthetic-patient-" + RandomHex(12);
  const std::string unknown_patient = "synthetic-patient-" + RandomHex(12);
  const std::string name = "Quimbyworth";  // the synthetic patient's family name
  const std::string content_core = RandomHex(24);
  const std::string content =
      "Synthetic visit note. Patient: Zelda " + name + ", complains of headache. " + content_core;
  const std::string amended = "Synthetic amended note for Zelda " + name + ". " + content_core;
  const std::string request_id = "e2e-phi-" + RandomHex(8);

  client::Client app = vault_.AppClient();
  client::Client limited = vault_.NewClient(limited_token);
  client::Client impostor = vault_.NewClient("pvt_" + crypto::Base64UrlEncode(RandomBytes(32)));
  client::Actor actor = Physician();
  actor.request_id = request_id;
  const client::NewRecord record{.patient_id = patient,
                                 .category = "clinical_note",
                                 .content_type = "text/plain",
                                 .encounter_date = "2026-07-07",
                                 .author = "dr.synthetic",
                                 .content = content};

  // Successful accesses.
  auto created = app.CreateRecord(actor, record);
  ASSERT_TRUE(created.ok()) << created.error().Message();
  const std::string id = created->record_id;
  EXPECT_TRUE(app.ReadRecord(actor, id).ok());
  EXPECT_TRUE(app.ReadContent(actor, id).ok());
  EXPECT_TRUE(app.ReadMetadata(actor, id).ok());
  EXPECT_TRUE(app.AmendRecord(actor, id,
                              client::Amendment{
                                  .reason = "corrected for patient " + patient + " (" + name + ")",
                                  .content = amended})
                  .ok());
  EXPECT_TRUE(app.SearchPatient(actor, patient).ok());
  EXPECT_TRUE(app.SearchPatient(actor, unknown_patient).ok());
  const std::map<std::string, std::string> cli_env = {{"PHIVAULT_TOKEN", vault_.token()},
                                                      {"PHIVAULT_ROLE", "physician"}};
  const ProcessResult put =
      vault_.Cli({"put", "--patient", patient, "--category", "clinical_note", "--type",
                  "text/plain", "--encounter-date", "2026-07-08", "--author", "dr.synthetic", "-"},
                 cli_env, content);
  EXPECT_EQ(put.exit_code, 0) << put.err;
  const ProcessResult ls = vault_.Cli({"ls", "--patient", patient}, cli_env);
  EXPECT_EQ(ls.exit_code, 0) << ls.err;

  // Denied and failed ones, each carrying PHI in what it sends.
  auto expect_error = [](const auto& result, client::ErrorKind kind, const char* what) {
    ASSERT_FALSE(result.ok()) << what;
    EXPECT_EQ(result.error().kind, kind) << what << ": " << result.error().Message();
  };
  expect_error(impostor.CreateRecord(actor, record), client::ErrorKind::kUnauthenticated,
               "wrong token");
  expect_error(impostor.SearchPatient(actor, patient), client::ErrorKind::kUnauthenticated,
               "wrong token");
  expect_error(limited.CreateRecord(actor, record), client::ErrorKind::kForbidden,
               "action not allowed");
  expect_error(limited.ReadRecord(actor, id), client::ErrorKind::kForbidden, "action not allowed");
  expect_error(limited.SearchPatient(actor, patient), client::ErrorKind::kForbidden,
               "action not allowed");
  client::Actor astronaut = actor;
  astronaut.role = "astronaut";
  expect_error(app.CreateRecord(astronaut, record), client::ErrorKind::kForbidden, "unknown role");
  client::NewRecord bad_category = record;
  bad_category.category = "horoscope";
  expect_error(app.CreateRecord(actor, bad_category), client::ErrorKind::kInvalid,
               "unknown category");
  client::NewRecord bad_date = record;
  bad_date.encounter_date = "2026-02-30";
  expect_error(app.CreateRecord(actor, bad_date), client::ErrorKind::kInvalid, "impossible date");
  expect_error(app.AmendRecord(actor, id, client::Amendment{.reason = "", .content = content}),
               client::ErrorKind::kInvalid, "amendment without a reason");
  expect_error(app.ReadRecord(actor, "AAAAAAAAAAAAAAAAAAAAAA"), client::ErrorKind::kNotFound,
               "unknown record");

  // Malformed requests with PHI in the body, the path and the query.
  for (const auto& [method, path, body] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"POST", "/v1/records",
            "{\"patient_id\": \"" + patient + "\", \"content\": \"" + content + "\""},
           {"POST", "/v1/records", "{\"patient_id\": \"" + patient + "\", \"surprise\": 1}"},
           {"POST", "/v1/records/_search", "{\"patient_id\": \"" + patient + "\", \"x\": 1}"},
           {"GET", "/v1/records/" + patient, ""},
           {"GET", "/v1/records/" + id + "?patient=" + patient, ""},
           {"GET", "/v1/patients/" + patient, ""},
       }) {
    auto reply = app.Send(method, path, &actor, body);
    ASSERT_TRUE(reply.ok()) << path << ": " << reply.error().Message();
    EXPECT_GE(reply->status, 400) << method << " " << path;
    EXPECT_LT(reply->status, 500) << method << " " << path;
  }
  vault_.Stop();

  const std::string log = ReadFile(vault_.log_file());
  const std::string err = ReadFile(vault_.daemon().stderr_path());
  // The search covers the lines these requests produced.
  EXPECT_NE(log.find(request_id), std::string::npos) << "requests are not in the log file";
  EXPECT_NE(err.find(request_id), std::string::npos) << "requests are not on stderr";
  EXPECT_NE(log.find("status=401"), std::string::npos) << log;
  EXPECT_NE(log.find("status=403"), std::string::npos) << log;

  const std::vector<std::string> not_searched = {vault_.key_path()};
  EXPECT_GE(FilesWithBytes(vault_.dir(), request_id, not_searched).size(), 2u)
      << "the search does not see the log file and the stderr capture";
  for (const auto& [what, canary] : std::vector<std::pair<std::string, std::string>>{
           {"patient id", patient},
           {"patient id (random part)", patient.substr(18)},
           {"unknown patient id", unknown_patient.substr(18)},
           {"patient name", name},
           {"content", content_core},
           {"content prefix", "complains of headache"}}) {
    EXPECT_EQ(FilesWithBytes(vault_.dir(), canary, not_searched), std::vector<std::string>{})
        << what << " leaked";
  }
}

}  // namespace
}  // namespace phivault::e2e
