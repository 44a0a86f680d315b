// The built `phivault` binary, run as a user would run it.
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <toml++/toml.h>
#include <nlohmann/json.hpp>

#include "crypto/hash.h"
#include "crypto/secret.h"
#include "daemon/config.h"
#include "tests/testing/temp_dir.h"
#include "tests/tools/fake_daemon.h"
#include "tests/tools/run_phivault.h"
#include "tools/cli.h"
#include "tools/cli_init.h"

namespace phivault::tools {
namespace {

using testing::FakeDaemon;
using ::testing::HasSubstr;
using testing::Problem;
using testing::Reply;
using testing::SeenRequest;
using ::testing::StartsWith;

using testing::CliRun;
using testing::ReadFile;
using testing::WriteFile;

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(crypto::InitSodium().ok()); }

  // Runs phivault with `args`, the caller's environment minus every PHIVAULT_* variable plus
  // `env`, and `input` on standard input.
  CliRun Phivault(const std::vector<std::string>& args,
                  const std::map<std::string, std::string>& env = {},
                  const std::string& input = "") {
    return testing::RunPhivault(args, env, input, dir_.path().string());
  }

  // Standard options for commands that talk to the daemon.
  std::vector<std::string> To(const std::string& socket, std::vector<std::string> rest) {
    std::vector<std::string> args = {"--socket", socket, "--role", "physician", "--token", "t"};
    args.insert(args.end(), rest.begin(), rest.end());
    return args;
  }

  static mode_t Mode(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0;
  }

  testing::TempDir dir_;
};

// The token init wrote to the vault's token file (one line), "" if there is none.
std::string TokenOf(const std::string& vault) {
  std::string token = ReadFile(vault + "/dev-token");
  if (!token.empty() && token.back() == '\n') token.pop_back();
  return token;
}

TEST_F(CliTest, InitCreatesKeyDataAndConfigWithTheHashedToken) {
  const std::string vault = dir_.Sub("vault");
  CliRun r = Phivault({"init", "--dir", vault});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  EXPECT_EQ(Mode(vault + "/master.key"), 0400u);
  EXPECT_EQ(ReadFile(vault + "/master.key").size(), 32u);
  EXPECT_EQ(Mode(vault + "/data"), 0700u);
  EXPECT_EQ(Mode(vault + "/phivault.toml"), 0600u);
  EXPECT_EQ(Mode(vault + "/dev-token"), 0600u);

  const std::string token = TokenOf(vault);
  ASSERT_THAT(token, StartsWith("pvt_"));
  auto raw = crypto::Base64UrlDecode(std::string_view(token).substr(4));
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw->size(), 32u);
  // Standard output may be going to a log: it says where the token is, never what it is.
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr(token)));
  EXPECT_THAT(r.err, ::testing::Not(HasSubstr(token)));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("pvt_")));
  EXPECT_THAT(r.out, HasSubstr(vault + "/dev-token (mode 0600"));
  EXPECT_THAT(r.out, HasSubstr("SYNTHETIC DATA only"));
  // The practice name defaults to something a patient can read, and init says so.
  EXPECT_THAT(r.out, HasSubstr("\"Development Practice (synthetic data)\" (the default; set it "
                               "with --practice-name)"));

  const std::string text = ReadFile(vault + "/phivault.toml");
  EXPECT_THAT(text, ::testing::Not(HasSubstr(token)));
  toml::table config = toml::parse(text);
  EXPECT_EQ(config["data_dir"].value<std::string>(), vault + "/data");
  EXPECT_EQ(config["socket_path"].value<std::string>(), vault + "/phivault.sock");
  EXPECT_EQ(config["socket_mode"].value<std::string>(), "0660");
  // Retention comes from the shipped default table (retention_file unset); the daemon refuses
  // the old default_retention_years key.
  EXPECT_FALSE(config.contains("default_retention_years"));
  EXPECT_EQ(config["master_key"]["source"].value<std::string>(), "file");
  EXPECT_EQ(config["master_key"]["file"].value<std::string>(), vault + "/master.key");
  EXPECT_EQ(config["limits"]["disk_reserve_bytes"].value<int64_t>(), 268435456);
  EXPECT_EQ(config["log"]["level"].value<std::string>(), "info");
  auto* apps = config["applications"].as_array();
  ASSERT_NE(apps, nullptr);
  ASSERT_EQ(apps->size(), 1u);
  auto& app = *apps->at(0).as_table();
  EXPECT_EQ(app["name"].value<std::string>(), "dev-app");
  EXPECT_EQ(app["token_sha256"].value<std::string>(),
            crypto::HexEncode(crypto::AsView(crypto::Sha256(token))));
  EXPECT_EQ(app["uids"][0].value<int64_t>(), static_cast<int64_t>(::getuid()));
  EXPECT_EQ(config["practice_name"].value<std::string>(), "Development Practice (synthetic data)");
  // One operator entry per default role for the creator, administrator first.
  auto* ops = config["operators"].as_array();
  ASSERT_NE(ops, nullptr);
  ASSERT_EQ(ops->size(), 7u);
  std::vector<std::string> roles;
  for (auto& node : *ops) {
    auto& op = *node.as_table();
    EXPECT_EQ(op["uid"].value<int64_t>(), static_cast<int64_t>(::getuid()));
    EXPECT_EQ(op["actions"].as_array()->size(), daemon::KnownActions().size());
    roles.push_back(op["role"].value<std::string>().value_or(""));
  }
  EXPECT_EQ(roles.front(), "vault_admin");
  EXPECT_THAT(roles, ::testing::UnorderedElementsAre("vault_admin", "physician", "nurse",
                                                     "medical_assistant", "front_office", "billing",
                                                     "compliance_officer"));
}

TEST_F(CliTest, InitJsonNamesTheTokenFileAndPrintsNoToken) {
  const std::string vault = dir_.Sub("vault");
  CliRun r = Phivault({"--json", "init", "--dir", vault, "--practice-name", "Synthetic Clinic"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["token_file"], vault + "/dev-token");
  EXPECT_EQ(j["practice_name"], "Synthetic Clinic");
  EXPECT_FALSE(j.contains("token"));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr(TokenOf(vault))));
  EXPECT_THAT(ReadFile(vault + "/phivault.toml"),
              HasSubstr("practice_name = \"Synthetic Clinic\"\n"));
}

TEST_F(CliTest, InitRefusesAPracticeNameWithControlCharacters) {
  CliRun r = Phivault({"init", "--dir", dir_.Sub("vault"), "--practice-name",
                       "a\x07"
                       "b"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--practice-name must be at most 128 bytes"));
}

TEST_F(CliTest, InitTwiceRefusesAndChangesNothing) {
  const std::string vault = dir_.Sub("vault");
  ASSERT_EQ(Phivault({"init", "--dir", vault}).exit_code, 0);
  const std::string key = ReadFile(vault + "/master.key");
  const std::string config = ReadFile(vault + "/phivault.toml");
  CliRun again = Phivault({"init", "--dir", vault});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, StartsWith("phivault: "));
  EXPECT_THAT(again.err, HasSubstr("phivault.toml already exists"));
  const std::string token = TokenOf(vault);
  EXPECT_EQ(ReadFile(vault + "/master.key"), key);
  EXPECT_EQ(ReadFile(vault + "/phivault.toml"), config);
  EXPECT_EQ(TokenOf(vault), token);
}

TEST_F(CliTest, InitNeverOverwritesAnExistingMasterKey) {
  const std::string vault = dir_.Sub("vault");
  ASSERT_EQ(::mkdir(vault.c_str(), 0700), 0);
  WriteFile(vault + "/master.key", std::string(32, 'k'));
  CliRun r = Phivault({"init", "--dir", vault});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("master.key already exists"));
  EXPECT_EQ(ReadFile(vault + "/master.key"), std::string(32, 'k'));
  EXPECT_EQ(Mode(vault + "/phivault.toml"), 0u);  // no config written
}

TEST_F(CliTest, InitForceConfigIssuesANewTokenAndKeepsTheKey) {
  const std::string vault = dir_.Sub("vault");
  CliRun first = Phivault({"init", "--dir", vault});
  ASSERT_EQ(first.exit_code, 0);
  const std::string first_token = TokenOf(vault);
  const std::string key = ReadFile(vault + "/master.key");
  CliRun second = Phivault({"--json", "init", "--dir", vault, "--force-config"});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  auto j = nlohmann::json::parse(second.out);
  EXPECT_EQ(j["created_master_key"], false);
  const std::string token = TokenOf(vault);
  EXPECT_THAT(token, StartsWith("pvt_"));
  EXPECT_NE(token, first_token);
  EXPECT_EQ(ReadFile(vault + "/master.key"), key);
  EXPECT_THAT(ReadFile(vault + "/phivault.toml"),
              HasSubstr(crypto::HexEncode(crypto::AsView(crypto::Sha256(token)))));
}

TEST_F(CliTest, HelpListsTheExitCodes) {
  CliRun r = Phivault({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("Exit codes"));
  EXPECT_THAT(r.out, HasSubstr("5  daemon unavailable"));
}

TEST_F(CliTest, UsageErrorsExitTwo) {
  const std::string sock = dir_.Sub("none.sock");
  const std::vector<std::vector<std::string>> cases = {
      {},              // no command
      {"frobnicate"},  // unknown command
      {"--socket", sock, "--role", "physician", "status", "--bogus"},
      To(sock, {"put", "--category", "c", "--type", "text/plain", "--encounter-date", "2024-01-01",
                "--author", "a"}),  // no --patient
      To(sock, {"put", "--patient", "P", "--category", "c", "--type", "text/plain",
                "--encounter-date", "2024-02-30", "--author", "a"}),  // no such day
      To(sock, {"get", "rec_1", "--version", "0"}),
      To(sock, {"get"}),             // no id
      {"--socket", sock, "status"},  // no role
      {"init"},                      // no --dir
  };
  for (const auto& args : cases) {
    CliRun r = Phivault(args);
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    EXPECT_EQ(r.exit_code, 2) << joined << "\n" << r.err;
    EXPECT_THAT(r.err, StartsWith("phivault: usage error: ")) << joined;
  }
}

TEST_F(CliTest, RoleComesFromTheEnvironment) {
  const std::string sock = dir_.Sub("none.sock");
  CliRun r = Phivault({"status"}, {{"PHIVAULT_SOCKET", sock}, {"PHIVAULT_ROLE", "nurse"}});
  EXPECT_EQ(r.exit_code, 5) << r.err;  // got past the role check, then found no daemon
}

TEST_F(CliTest, NoDaemonExitsFiveWithAClearMessage) {
  CliRun r = Phivault(To(dir_.Sub("none.sock"), {"status"}));
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_THAT(r.err, StartsWith("phivault: daemon unavailable: no daemon socket at "));
  EXPECT_TRUE(r.out.empty());
}

class CliDaemonTest : public CliTest {
 protected:
  std::string sock_ = dir_.Sub("d.sock");
  FakeDaemon daemon_{sock_};
};

nlohmann::json Meta(uint32_t version, const std::string& type = "text/plain") {
  nlohmann::json j = {{"record_id", "rec_1"},      {"version", version},
                      {"patient_id", "SYNTH-7"},   {"category", "lab_result"},
                      {"content_type", type},      {"encounter_date", "2024-05-06"},
                      {"author", "Dr. Synthetic"}, {"created", "2024-05-06T08:00:00.000001Z"},
                      {"content_bytes", 3}};
  if (version > 1) j["amendment_reason"] = "fix";
  return j;
}

TEST_F(CliDaemonTest, PutSendsStdinAsBase64AndPrintsTheRecordId) {
  daemon_.SetHandler(
      [](const SeenRequest&) { return Reply{.status = 201, .body = Meta(1).dump()}; });
  const std::string content("bin\0ary\xff", 8);
  CliRun r = Phivault(To(sock_, {"--as", "alice", "put", "--patient", "SYNTH-7", "--category",
                                 "lab_result", "--type", "application/octet-stream",
                                 "--encounter-date", "2024-05-06", "--author", "Dr. Synthetic"}),
                      {}, content);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "rec_1\n");
  SeenRequest req = daemon_.last();
  EXPECT_EQ(req.headers["x-phivault-user"], "alice");
  EXPECT_EQ(req.headers["x-phivault-purpose"], "TREAT");
  auto body = nlohmann::json::parse(req.body);
  EXPECT_EQ(*crypto::Base64Decode(body["content_base64"].get<std::string>()), content);
}

TEST_F(CliDaemonTest, GetWritesRawContentToStdoutOrAPrivateFile) {
  const std::string content("%PDF\0\x01", 6);
  daemon_.SetHandler([&content](const SeenRequest&) {
    return Reply{.status = 200, .content_type = "application/pdf", .body = content};
  });
  CliRun r = Phivault(To(sock_, {"get", "rec_1", "--version", "2"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, content);
  EXPECT_EQ(daemon_.last().uri, "/v1/records/rec_1/content?version=2");

  const std::string file = dir_.Sub("out.pdf");
  CliRun to_file = Phivault(To(sock_, {"get", "rec_1", "-o", file}));
  ASSERT_EQ(to_file.exit_code, 0) << to_file.err;
  EXPECT_EQ(ReadFile(file), content);
  EXPECT_EQ(Mode(file), 0600u);
}

TEST_F(CliDaemonTest, GetJsonPrintsMetadataAndContent) {
  daemon_.SetHandler([](const SeenRequest&) {
    nlohmann::json j = Meta(2);
    j["content_base64"] = crypto::Base64Encode("abc");
    return Reply{.body = j.dump()};
  });
  CliRun r = Phivault(To(sock_, {"--json", "get", "rec_1"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["version"], 2);
  EXPECT_EQ(j["amendment_reason"], "fix");
  EXPECT_EQ(j["content_base64"], crypto::Base64Encode("abc"));
  EXPECT_EQ(daemon_.last().uri, "/v1/records/rec_1");
}

TEST_F(CliDaemonTest, AmendReadsTheFileAndPrintsTheNewVersion) {
  daemon_.SetHandler(
      [](const SeenRequest&) { return Reply{.status = 201, .body = Meta(2).dump()}; });
  const std::string file = dir_.Sub("amended.txt");
  WriteFile(file, "corrected");
  CliRun r =
      Phivault(To(sock_, {"amend", "rec_1", "--reason", "fix", "--type", "text/markdown", file}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "rec_1 version 2\n");
  auto body = nlohmann::json::parse(daemon_.last().body);
  EXPECT_EQ(body["reason"], "fix");
  EXPECT_EQ(body["content_type"], "text/markdown");
  EXPECT_FALSE(body.contains("author"));
  EXPECT_EQ(*crypto::Base64Decode(body["content_base64"].get<std::string>()), "corrected");
}

TEST_F(CliDaemonTest, LsPrintsATableAndJson) {
  daemon_.SetHandler([](const SeenRequest&) {
    return Reply{.body = nlohmann::json{{"records", {Meta(1), Meta(3, "application/pdf")}}}.dump()};
  });
  CliRun table = Phivault(To(sock_, {"ls", "--patient", "SYNTH-7"}));
  ASSERT_EQ(table.exit_code, 0) << table.err;
  std::istringstream lines(table.out);
  std::string header, row1, row2, extra;
  std::getline(lines, header);
  std::getline(lines, row1);
  std::getline(lines, row2);
  EXPECT_FALSE(std::getline(lines, extra));
  EXPECT_THAT(header, StartsWith("RECORD ID"));
  EXPECT_THAT(header, HasSubstr("SIZE"));
  EXPECT_THAT(row2, HasSubstr("application/pdf"));
  EXPECT_THAT(row2, HasSubstr("2024-05-06T08:00:00.000001Z"));
  EXPECT_EQ(header.find("CATEGORY"), row1.find("lab_result"));  // columns line up

  CliRun json = Phivault(To(sock_, {"--json", "ls", "--patient", "SYNTH-7"}));
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_EQ(nlohmann::json::parse(json.out)["records"].size(), 2u);
  EXPECT_EQ(nlohmann::json::parse(daemon_.last().body)["patient_id"], "SYNTH-7");
}

TEST_F(CliDaemonTest, StatusPrintsTheDaemonsFigures) {
  daemon_.SetHandler([](const SeenRequest&) {
    return Reply{.body = R"({"version":"0.1.0","uptime_seconds":5,"audit_entries":9,"epochs":2,)"
                         R"("records":12,"patients":4,)"
                         R"("disk":{"free_bytes":1,"reserve_bytes":2,"live_data_bytes":3221225472,)"
                         R"("table_bytes":1073741824,"blob_bytes":2147483136,"log_bytes":512}})"};
  });
  CliRun r = Phivault(To(sock_, {"status"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("records:          12\n"));
  EXPECT_THAT(r.out, HasSubstr("patients:         4\n"));
  EXPECT_THAT(r.out, HasSubstr("audit entries:    9\n"));
  EXPECT_THAT(r.out, HasSubstr("live data:        3221225472 bytes (3.0 GiB)\n"));
  EXPECT_THAT(r.out, HasSubstr("  tables:         1073741824 bytes (1.0 GiB)\n"));
  EXPECT_THAT(r.out, HasSubstr("  log (WAL):      512 bytes\n"));

  CliRun json = Phivault(To(sock_, {"--json", "status"}));
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const auto j = nlohmann::json::parse(json.out);
  EXPECT_EQ(j["records"], 12);
  EXPECT_EQ(j["patients"], 4);
  EXPECT_EQ(j["disk"]["blob_bytes"], 2147483136);
}

TEST_F(CliDaemonTest, AnUnknownPurposeIsAUsageErrorNamingTheCodes) {
  CliRun r = Phivault(To(sock_, {"--purpose", "FOO", "status"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--purpose FOO is not an HL7 PurposeOfUse code"));
  for (const char* code : {"TREAT", "HOPERAT", "PUBHLTH", "BTG", "HLEGAL"}) {
    EXPECT_THAT(r.err, HasSubstr(code));
  }
  EXPECT_TRUE(daemon_.requests().empty());  // refused before asking the daemon
  // Codes are case-sensitive, as the daemon checks them.
  EXPECT_EQ(Phivault(To(sock_, {"--purpose", "treat", "status"})).exit_code, 2);
}

TEST_F(CliDaemonTest, AnUnknownCategoryNamesTheOption) {
  daemon_.SetHandler([](const SeenRequest&) {
    return Problem(400, "invalid-request", "The request is invalid",
                   "category is not one of the configured categories");
  });
  CliRun r = Phivault(To(sock_, {"put", "--patient", "P", "--category", "notes", "--type",
                                 "text/plain", "--encounter-date", "2026-11-29", "--author", "A"}),
                      {}, "x");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("--category: category is not one of the configured categories"));

  // A message naming the JSON field gets the option's name in its place.
  daemon_.SetHandler([](const SeenRequest&) {
    return Problem(400, "invalid-request", "The request is invalid",
                   "field 'category': 'notes' is not a configured category (allowed: a, b)");
  });
  r = Phivault(To(sock_, {"put", "--patient", "P", "--category", "notes", "--type", "text/plain",
                          "--encounter-date", "2026-11-29", "--author", "A"}),
               {}, "x");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err,
              HasSubstr(": --category: 'notes' is not a configured category (allowed: a, b)\n"));
}

TEST_F(CliTest, PutHelpListsTheCategories) {
  CliRun r = Phivault({"put", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* category :
       {"demographics", "clinical_note", "lab_result", "psychotherapy_note", "substance_use"}) {
    EXPECT_THAT(r.out, HasSubstr(category));
  }
}

TEST_F(CliDaemonTest, DaemonErrorsBecomeExitCodesAndProblemMessages) {
  struct Case {
    int status;
    std::string name;
    int exit_code;
  };
  for (const Case& c : std::vector<Case>{{401, "unauthenticated", 3},
                                         {403, "forbidden", 3},
                                         {404, "not-found", 4},
                                         {410, "record-shredded", 4},
                                         {500, "integrity-failure", 6},
                                         {503, "audit-unavailable", 5},
                                         {507, "insufficient-storage", 1}}) {
    daemon_.SetHandler([&c](const SeenRequest&) {
      return Problem(c.status, c.name, "title " + c.name, "detail " + c.name);
    });
    CliRun r = Phivault(To(sock_, {"get", "rec_1"}));
    EXPECT_EQ(r.exit_code, c.exit_code) << c.status;
    EXPECT_EQ(r.err, "phivault: title " + c.name + ": detail " + c.name + "\n");
    EXPECT_TRUE(r.out.empty());
  }
}

TEST(CliUnitTest, CalendarDates) {
  EXPECT_TRUE(IsCalendarDate("2024-02-29"));
  EXPECT_TRUE(IsCalendarDate("2000-02-29"));
  EXPECT_FALSE(IsCalendarDate("1900-02-29"));
  EXPECT_FALSE(IsCalendarDate("2023-02-29"));
  EXPECT_FALSE(IsCalendarDate("2024-13-01"));
  EXPECT_FALSE(IsCalendarDate("2024-04-31"));
  EXPECT_FALSE(IsCalendarDate("2024-4-01"));
  EXPECT_FALSE(IsCalendarDate("2024/04/01"));
  EXPECT_FALSE(IsCalendarDate(""));
}

TEST(CliUnitTest, TomlQuoteEscapesWhatTomlRequires) {
  const std::string nasty = "a\"b\\c\nd\x01";
  toml::table t = toml::parse("v = " + TomlQuote(nasty));
  EXPECT_EQ(t["v"].value<std::string>(), nasty);
}

}  // namespace
}  // namespace phivault::tools
