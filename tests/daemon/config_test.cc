// LoadConfig: a complete file loads with every value, relative paths resolve against the
// file's directory, and every violated rule is refused with a message naming file, key and rule.
#include "daemon/config.h"

#include <algorithm>
#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "crypto/secret.h"
#include "daemon/router.h"
#include "tests/testing/temp_dir.h"

namespace phivault::daemon {
namespace {

using ::testing::HasSubstr;

const std::string kHash(64, 'a');

// Every key the format has, with non-default values.
std::string CompleteConfig() {
  return R"(data_dir = "/srv/phivault"
socket_path = "/run/phivault/api.sock"
socket_mode = "0640"
socket_group = "phivault"
retention_file = "/etc/phivault/retention.toml"
retention_sweep_at = "03:00"
max_content_bytes = 1048576
categories = ["clinical-note", "lab-result"]
roles = ["physician", "vault_admin"]
compliance_role = "vault_admin"
practice_name = "Synthetic Family Practice"
audit_origin = "clinic.example/phivault"
audit_checkpoint_interval_seconds = 60
keyring_mirrors = ["/mnt/mirror1/keyring", "/mnt/mirror2/keyring"]

[master_key]
source = "passphrase"
passphrase_file = "/etc/phivault/passphrase"
salt = "AAECAwQFBgcICQoLDA0ODw=="
opslimit = 4
memlimit = 67108864

[limits]
max_body_bytes = 2000000
max_header_bytes = 8192
max_connections = 32
idle_timeout_ms = 2000
disk_reserve_bytes = 104857600
auth_failure_burst = 8
auth_failure_refill_ms = 5000
auth_failure_summary_ms = 30000
auth_failures_per_connection = 2

[log]
level = "debug"
file = "/var/log/phivault/phivaultd.log"

[archive]
after_days = 730
restore_on_read = true

[[applications]]
name = "ehr"
token_sha256 = ")" +
         std::string(64, 'A') +
         R"("
uids = [998, 999]
actions = ["record.create", "record.read"]
roles = ["physician", "vault_admin"]
purposes = ["TREAT", "HPAYMT"]

[[operators]]
uid = 1000
role = "physician"
actions = ["status"]

[[operators]]
group = "phivault-admin"
role = "vault_admin"
actions = ["status", "record.list", "hold.place", "retention.sweep"]
)";
}

// The smallest valid file.
std::string MinimalConfig() {
  return R"(data_dir = "/srv/phivault"
socket_path = "/run/phivault/api.sock"
[master_key]
source = "file"
file = "/etc/phivault/master.key"
)";
}

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(crypto::InitSodium().ok()); }

  std::string Write(const std::string& text) {
    std::ofstream(path_) << text;
    return path_;
  }
  StatusOr<Config> Load(const std::string& text) { return LoadConfig(Write(text)); }

  // Loads `text` and expects InvalidArgument whose message contains the file and `expected`.
  void ExpectRejected(const std::string& text, const std::string& expected) {
    auto c = Load(text);
    ASSERT_FALSE(c.ok()) << "accepted:\n" << text;
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(c.status().message(), HasSubstr(path_));
    EXPECT_THAT(c.status().message(), HasSubstr(expected));
  }

  phivault::testing::TempDir dir_;
  std::string path_ = dir_.Sub("phivault.toml");
};

TEST_F(ConfigTest, CompleteFileLoadsEveryValue) {
  auto c = Load(CompleteConfig());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->config_path, path_);
  EXPECT_EQ(c->data_dir, "/srv/phivault");
  EXPECT_EQ(c->socket_path, "/run/phivault/api.sock");
  EXPECT_EQ(c->socket_mode, 0640u);
  EXPECT_EQ(c->socket_group, "phivault");
  EXPECT_EQ(c->retention_file, "/etc/phivault/retention.toml");
  EXPECT_EQ(c->retention_sweep_at, "03:00");
  EXPECT_EQ(c->max_content_bytes, 1048576u);
  EXPECT_EQ(c->categories, (std::vector<std::string>{"clinical-note", "lab-result"}));
  EXPECT_EQ(c->roles, (std::vector<std::string>{"physician", "vault_admin"}));
  EXPECT_EQ(c->compliance_role, "vault_admin");
  EXPECT_EQ(c->practice_name, "Synthetic Family Practice");
  EXPECT_EQ(c->audit_origin, "clinic.example/phivault");
  EXPECT_EQ(c->audit_checkpoint_interval_seconds, 60u);
  EXPECT_EQ(c->keyring_mirrors,
            (std::vector<std::string>{"/mnt/mirror1/keyring", "/mnt/mirror2/keyring"}));
  EXPECT_EQ(c->master_key.kind, MasterKeySource::Kind::kPassphrase);
  EXPECT_EQ(c->master_key.passphrase_file, "/etc/phivault/passphrase");
  EXPECT_EQ(c->master_key.salt_base64, "AAECAwQFBgcICQoLDA0ODw==");
  EXPECT_EQ(c->master_key.opslimit, 4u);
  EXPECT_EQ(c->master_key.memlimit, 67108864u);
  EXPECT_EQ(c->limits.max_body_bytes, 2000000u);
  EXPECT_EQ(c->limits.max_header_bytes, 8192u);
  EXPECT_EQ(c->limits.max_connections, 32u);
  EXPECT_EQ(c->limits.idle_timeout_ms, 2000u);
  EXPECT_EQ(c->limits.disk_reserve_bytes, 104857600u);
  EXPECT_EQ(c->limits.auth_failure_burst, 8u);
  EXPECT_EQ(c->limits.auth_failure_refill_ms, 5000u);
  EXPECT_EQ(c->limits.auth_failure_summary_ms, 30000u);
  EXPECT_EQ(c->limits.auth_failures_per_connection, 2u);
  EXPECT_EQ(c->log_level, "debug");
  EXPECT_EQ(c->log_file, "/var/log/phivault/phivaultd.log");
  EXPECT_EQ(c->archive.after_days, 730u);
  EXPECT_TRUE(c->archive.restore_on_read);
  ASSERT_EQ(c->applications.size(), 1u);
  EXPECT_EQ(c->applications[0].name, "ehr");
  EXPECT_EQ(c->applications[0].token_sha256_hex, kHash);  // normalised to lower case
  EXPECT_EQ(c->applications[0].uids, (std::vector<uint32_t>{998, 999}));
  EXPECT_EQ(c->applications[0].actions, (std::vector<std::string>{"record.create", "record.read"}));
  EXPECT_EQ(c->applications[0].roles, (std::vector<std::string>{"physician", "vault_admin"}));
  EXPECT_EQ(c->applications[0].purposes, (std::vector<std::string>{"TREAT", "HPAYMT"}));
  ASSERT_EQ(c->operators.size(), 2u);
  EXPECT_EQ(c->operators[0].uid, std::optional<uint32_t>(1000));
  EXPECT_EQ(c->operators[0].role, "physician");
  EXPECT_FALSE(c->operators[1].uid.has_value());
  EXPECT_EQ(c->operators[1].group, "phivault-admin");
  EXPECT_EQ(c->operators[1].actions,
            (std::vector<std::string>{"status", "record.list", "hold.place", "retention.sweep"}));
}

TEST_F(ConfigTest, MinimalFileGetsTheDocumentedDefaults) {
  auto c = Load(MinimalConfig());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->socket_mode, 0660u);
  // No retention file: the shipped us-federal preset; no sweep scheduled by the daemon.
  EXPECT_TRUE(c->retention_file.empty());
  EXPECT_TRUE(c->retention_sweep_at.empty());
  // No [archive]: no archive tier.
  EXPECT_EQ(c->archive.after_days, 0u);
  EXPECT_FALSE(c->archive.restore_on_read);
  EXPECT_EQ(c->categories, DefaultCategories());
  EXPECT_EQ(c->roles, DefaultRoles());
  EXPECT_EQ(c->master_key.kind, MasterKeySource::Kind::kFile);
  EXPECT_EQ(c->limits.max_connections, 64u);
  EXPECT_EQ(c->limits.auth_failure_burst, 5u);
  EXPECT_EQ(c->limits.auth_failure_refill_ms, 10000u);
  EXPECT_EQ(c->limits.auth_failure_summary_ms, 60000u);
  EXPECT_EQ(c->limits.auth_failures_per_connection, 3u);
  EXPECT_EQ(c->log_level, "info");
  EXPECT_TRUE(c->log_file.empty());
  EXPECT_TRUE(c->applications.empty());
}

TEST_F(ConfigTest, RelativePathsResolveAgainstTheConfigDirectory) {
  auto c = Load(R"(data_dir = "data"
socket_path = "./run/../api.sock"
keyring_mirrors = ["mirror/keyring"]
retention_file = "policy/../retention.toml"
[master_key]
source = "file"
file = "keys/master.key"
[log]
file = "log/phivaultd.log"
)");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  const std::string dir = dir_.path().string();
  EXPECT_EQ(c->data_dir, dir + "/data");
  EXPECT_EQ(c->socket_path, dir + "/api.sock");
  EXPECT_EQ(c->keyring_mirrors, std::vector<std::string>{dir + "/mirror/keyring"});
  EXPECT_EQ(c->master_key.file, dir + "/keys/master.key");
  EXPECT_EQ(c->log_file, dir + "/log/phivaultd.log");
  EXPECT_EQ(c->retention_file, dir + "/retention.toml");
}

TEST_F(ConfigTest, MissingFileIsNotFound) {
  auto c = LoadConfig(dir_.Sub("absent.toml"));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
}

TEST_F(ConfigTest, TomlSyntaxErrorNamesTheLine) {
  ExpectRejected("data_dir = \"/srv\"\nsocket_path = \n", ":2:");
}

TEST_F(ConfigTest, UnknownKeysAreRejectedAtEveryLevel) {
  ExpectRejected(MinimalConfig() + "\n[limits]\nmax_conections = 5\n",
                 "unknown key limits.max_conections");
  ExpectRejected("colour = \"blue\"\n" + MinimalConfig(), "unknown key colour");
  ExpectRejected(MinimalConfig() + "[log]\nlevel = \"info\"\nformat = \"json\"\n",
                 "unknown key log.format");
  ExpectRejected(MinimalConfig() + "[[applications]]\nname = \"ehr\"\ntoken_sha256 = \"" + kHash +
                     "\"\nuids = [1]\nactions = [\"status\"]\ntoken = \"secret\"\n",
                 "unknown key applications[0].token");
}

struct BadValue {
  std::string name;
  std::string replace;  // a line of MinimalConfig()
  std::string with;     // its replacement (may add lines)
  std::string expected;
};

class ConfigBadValueTest : public ConfigTest, public ::testing::WithParamInterface<BadValue> {};

TEST_P(ConfigBadValueTest, IsRejectedNamingKeyAndRule) {
  std::string text = MinimalConfig();
  const BadValue& p = GetParam();
  const size_t at = text.find(p.replace);
  ASSERT_NE(at, std::string::npos);
  text.replace(at, p.replace.size(), p.with);
  ExpectRejected(text, p.expected);
}

const std::string kDataDir = "data_dir = \"/srv/phivault\"";
const std::string kSource = "source = \"file\"\nfile = \"/etc/phivault/master.key\"";
const std::string kSweepAtRule =
    "retention_sweep_at must be a UTC time of day written HH:MM (00:00-23:59)";

INSTANTIATE_TEST_SUITE_P(
    Keys, ConfigBadValueTest,
    ::testing::Values(
        BadValue{"NoDataDir", kDataDir, "", "data_dir is required"},
        BadValue{"EmptyDataDir", kDataDir, "data_dir = \"\"", "data_dir must not be empty"},
        BadValue{"DataDirNotString", kDataDir, "data_dir = 5", "data_dir must be a string"},
        BadValue{"NoSocketPath", "socket_path = \"/run/phivault/api.sock\"", "",
                 "socket_path is required"},
        BadValue{"SocketPathTooLong", "socket_path = \"/run/phivault/api.sock\"",
                 "socket_path = \"/" + std::string(120, 's') + "\"",
                 "socket_path must be shorter than 108 bytes"},
        BadValue{"SocketModeForOthers", kDataDir, kDataDir + "\nsocket_mode = \"0666\"",
                 "socket_mode must not grant access to others"},
        BadValue{"SocketModeNotOctal", kDataDir, kDataDir + "\nsocket_mode = \"0689\"",
                 "socket_mode must be an octal string"},
        BadValue{"SocketModeInteger", kDataDir, kDataDir + "\nsocket_mode = 660",
                 "socket_mode must be a string"},
        BadValue{"SocketModeOwnerCannotWrite", kDataDir, kDataDir + "\nsocket_mode = \"0460\"",
                 "socket_mode must let the owner read and write"},
        // A retired key is refused with where its replacement is, not as merely unknown.
        BadValue{"DefaultRetentionYearsReplaced", kDataDir,
                 kDataDir + "\ndefault_retention_years = 10",
                 "default_retention_years was replaced by retention_file (a preset with its legal "
                 "sources, which may only be lengthened; see docs/retention.md): remove it"},
        BadValue{"EmptyRetentionFile", kDataDir, kDataDir + "\nretention_file = \"\"",
                 "retention_file must not be empty"},
        BadValue{"RetentionFileNotString", kDataDir, kDataDir + "\nretention_file = 7",
                 "retention_file must be a string"},
        BadValue{"SweepAtHourOutOfRange", kDataDir, kDataDir + "\nretention_sweep_at = \"25:00\"",
                 kSweepAtRule},
        BadValue{"SweepAtOneDigitHour", kDataDir, kDataDir + "\nretention_sweep_at = \"3:00\"",
                 kSweepAtRule},
        BadValue{"SweepAtNotDigits", kDataDir, kDataDir + "\nretention_sweep_at = \"ab:cd\"",
                 kSweepAtRule},
        BadValue{"SweepAtMinuteOutOfRange", kDataDir, kDataDir + "\nretention_sweep_at = \"23:60\"",
                 kSweepAtRule},
        BadValue{"SweepAtEmpty", kDataDir, kDataDir + "\nretention_sweep_at = \"\"",
                 "retention_sweep_at must not be empty"},
        BadValue{"SweepAtInteger", kDataDir, kDataDir + "\nretention_sweep_at = 300",
                 "retention_sweep_at must be a string"},
        BadValue{"ArchiveAfterTooFewDays", "[master_key]",
                 "[archive]\nafter_days = 7\n[master_key]",
                 "archive.after_days must be an integer between 30 and 36600"},
        BadValue{"ArchiveWithoutAfterDays", "[master_key]",
                 "[archive]\nrestore_on_read = true\n[master_key]",
                 "archive.after_days is required"},
        BadValue{"ArchiveRestoreOnReadNotBool", "[master_key]",
                 "[archive]\nafter_days = 365\nrestore_on_read = \"yes\"\n[master_key]",
                 "archive.restore_on_read must be true or false"},
        BadValue{"ArchiveUnknownKey", "[master_key]",
                 "[archive]\nafter_days = 365\nzstd_level = 19\n[master_key]",
                 "unknown key archive.zstd_level"},
        BadValue{"EmptyCategories", kDataDir, kDataDir + "\ncategories = []",
                 "categories must not be empty"},
        BadValue{"BadCategoryName", kDataDir, kDataDir + "\ncategories = [\"Lab Results\"]",
                 "categories[0] must be 1 to 64 characters"},
        BadValue{"DuplicateRole", kDataDir, kDataDir + "\nroles = [\"nurse\", \"nurse\"]",
                 "roles[1] is a duplicate"},
        BadValue{"ComplianceRoleUnknown", kDataDir, kDataDir + "\ncompliance_role = \"auditor\"",
                 "compliance_role must be one of the configured roles"},
        BadValue{"PracticeNameControl", kDataDir, kDataDir + "\npractice_name = \"a\\u0007b\"",
                 "practice_name must be at most 128 bytes without control characters"},
        BadValue{"AuditOriginSpace", kDataDir, kDataDir + "\naudit_origin = \"my log\"",
                 "audit_origin must be 1 to 255 printable ASCII characters"},
        BadValue{"CheckpointIntervalTooLong", kDataDir,
                 kDataDir + "\naudit_checkpoint_interval_seconds = 86401",
                 "audit_checkpoint_interval_seconds must be an integer between 0 and 86400"},
        BadValue{"MirrorIsPrimary", kDataDir,
                 kDataDir + "\nkeyring_mirrors = [\"/srv/phivault/keyring\"]",
                 "keyring_mirrors[0] must not be the primary keyring"},
        BadValue{"NoMasterKey", "[master_key]\n" + kSource, "", "master_key is required"},
        BadValue{"UnknownSource", kSource, "source = \"usb\"", "master_key.source must be one of"},
        BadValue{"FileWithoutPath", kSource, "source = \"file\"", "master_key.file is required"},
        BadValue{"FileWithSalt", kSource, kSource + "\nsalt = \"AAECAwQFBgcICQoLDA0ODw==\"",
                 "master_key.salt is not used with source = \"file\""},
        BadValue{"CredentialPath", kSource,
                 "source = \"credential\"\ncredential = \"../etc/shadow\"",
                 "master_key.credential must be a credential name"},
        BadValue{"PassphraseWithoutSalt", kSource, "source = \"passphrase\"",
                 "master_key.salt is required"},
        BadValue{"PassphraseShortSalt", kSource, "source = \"passphrase\"\nsalt = \"AAECAw==\"",
                 "master_key.salt must be the base64 encoding of exactly 16 bytes"},
        BadValue{"PassphraseOpsZero", kSource,
                 "source = \"passphrase\"\nsalt = \"AAECAwQFBgcICQoLDA0ODw==\"\nopslimit = 0",
                 "master_key.opslimit must be an integer between 1 and"},
        BadValue{"PassphraseTinyMemory", kSource,
                 "source = \"passphrase\"\nsalt = \"AAECAwQFBgcICQoLDA0ODw==\"\nmemlimit = 1024",
                 "master_key.memlimit must be an integer between 8192 and"},
        BadValue{"PassphraseEnvAndFile", kSource,
                 "source = \"passphrase\"\nsalt = \"AAECAwQFBgcICQoLDA0ODw==\"\n"
                 "passphrase_env = \"PV\"\npassphrase_file = \"/p\"",
                 "master_key.passphrase_file cannot be combined with passphrase_env"},
        BadValue{"ZeroConnections", kSource, kSource + "\n[limits]\nmax_connections = 0",
                 "limits.max_connections must be an integer between 1 and 4096"},
        BadValue{"TooManyConnections", kSource, kSource + "\n[limits]\nmax_connections = 5000",
                 "limits.max_connections must be an integer between 1 and 4096"},
        BadValue{"TinyHeaders", kSource, kSource + "\n[limits]\nmax_header_bytes = 100",
                 "limits.max_header_bytes must be an integer between 1024 and 65536"},
        BadValue{"NoFailureBudget", kSource, kSource + "\n[limits]\nauth_failure_burst = 0",
                 "limits.auth_failure_burst must be an integer between 1 and 1000"},
        BadValue{"InstantRefill", kSource, kSource + "\n[limits]\nauth_failure_refill_ms = 1",
                 "limits.auth_failure_refill_ms must be an integer between 10 and 3600000"},
        BadValue{"EndlessSummary", kSource,
                 kSource + "\n[limits]\nauth_failure_summary_ms = 3600001",
                 "limits.auth_failure_summary_ms must be an integer between 100 and 3600000"},
        BadValue{"NoFailuresPerConnection", kSource,
                 kSource + "\n[limits]\nauth_failures_per_connection = 0",
                 "limits.auth_failures_per_connection must be an integer between 1 and 1000"},
        BadValue{"ShortIdle", kSource, kSource + "\n[limits]\nidle_timeout_ms = 5",
                 "limits.idle_timeout_ms must be an integer between 100 and 3600000"},
        BadValue{"NoReserve", kSource, kSource + "\n[limits]\ndisk_reserve_bytes = 0",
                 "limits.disk_reserve_bytes must be an integer between 1048576"},
        BadValue{"BodySmallerThanContent", kSource,
                 kSource + "\n[limits]\nmax_body_bytes = 1000000",
                 "limits.max_body_bytes must be at least"},
        BadValue{"ReservedNotBelowMax", kSource,
                 kSource + "\n[limits]\nmax_connections = 4\nreserved_operator_connections = 4",
                 "limits.reserved_operator_connections must be less than limits.max_connections"},
        BadValue{"OperatorUidNegative", kSource, kSource + "\n[limits]\noperator_uids = [-1]",
                 "limits.operator_uids[0] must be an integer between 0 and 4294967294"},
        BadValue{"RequestTimeoutTooShort", kSource, kSource + "\n[limits]\nrequest_timeout_ms = 5",
                 "limits.request_timeout_ms must be an integer between 100 and 3600000"},
        BadValue{"SmallBodyOverBody", kSource,
                 kSource + "\n[limits]\nmax_small_body_bytes = 200000000",
                 "limits.max_small_body_bytes must not exceed limits.max_body_bytes"},
        BadValue{"InflightBelowBody", kSource,
                 kSource + "\n[limits]\nmax_inflight_body_bytes = 2000000",
                 "limits.max_inflight_body_bytes must be at least limits.max_body_bytes"},
        BadValue{"LimitsNotTable", kDataDir, kDataDir + "\nlimits = 5", "limits must be a table"},
        BadValue{"BadLogLevel", kSource, kSource + "\n[log]\nlevel = \"verbose\"",
                 "log.level must be one of"},
        BadValue{"AppsNotTables", kDataDir, kDataDir + "\napplications = [\"ehr\"]",
                 "applications must be an array of tables"}),
    [](const ::testing::TestParamInfo<BadValue>& p) { return p.param.name; });

std::string App(const std::string& body) { return MinimalConfig() + "\n[[applications]]\n" + body; }

TEST_F(ConfigTest, ApplicationRules) {
  const std::string hash = "token_sha256 = \"" + kHash + "\"\n";
  ExpectRejected(App(hash + "uids = [1]\nactions = [\"status\"]\n"),
                 "applications[0].name is required");
  ExpectRejected(App("name = \"e h r\"\n" + hash + "uids = [1]\nactions = [\"status\"]\n"),
                 "applications[0].name must be 1 to 64 characters");
  ExpectRejected(
      App("name = \"ehr\"\ntoken_sha256 = \"abc\"\nuids = [1]\nactions = [\"status\"]\n"),
      "applications[0].token_sha256 must be 64 hexadecimal characters");
  ExpectRejected(App("name = \"ehr\"\n" + hash + "actions = [\"status\"]\n"),
                 "applications[0].uids is required");
  ExpectRejected(App("name = \"ehr\"\n" + hash + "uids = []\nactions = [\"status\"]\n"),
                 "applications[0].uids must be a non-empty array");
  ExpectRejected(App("name = \"ehr\"\n" + hash + "uids = [-1]\nactions = [\"status\"]\n"),
                 "applications[0].uids[0] must be an integer between 0 and 4294967294");
  ExpectRejected(App("name = \"ehr\"\n" + hash + "uids = [1]\n"),
                 "applications[0].actions is required");
  ExpectRejected(App("name = \"ehr\"\n" + hash + "uids = [1]\nactions = [\"record.delete\"]\n"),
                 "applications[0].actions[0] must be one of: record.create");
  const std::string one =
      "name = \"ehr\"\n" + hash + "uids = [1]\nactions = [\"status\"]\nroles = [\"nurse\"]\n";
  ExpectRejected(App(one + "[[applications]]\n" + one), "applications[1].name is a duplicate");
  ExpectRejected(App(one + "[[applications]]\nname = \"billing\"\n" + hash +
                     "uids = [2]\nactions = [\"status\"]\n"),
                 "applications[1].token_sha256 is shared with another application");
}

// An application asserts only the roles (and purposes) its entry lists; without `roles` a token
// would let it act as anyone, so the key is required.
TEST_F(ConfigTest, ApplicationRolesAndPurposes) {
  const std::string base =
      "name = \"ehr\"\ntoken_sha256 = \"" + kHash + "\"\nuids = [1]\nactions = [\"status\"]\n";
  ExpectRejected(App(base), "applications[0].roles is required");
  ExpectRejected(App(base + "roles = []\n"), "applications[0].roles must not be empty");
  ExpectRejected(App(base + "roles = \"physician\"\n"),
                 "applications[0].roles must be an array of strings");
  ExpectRejected(App(base + "roles = [\"physician\", \"surgeon\"]\n"),
                 "applications[0].roles[1] must be one of the configured roles: physician");
  ExpectRejected(App(base + "roles = [\"nurse\", \"nurse\"]\n"),
                 "applications[0].roles[1] is a duplicate");
  // The configured list, not the default one, is what an application's roles are checked against.
  ExpectRejected("roles = [\"doctor\"]\n" + App(base + "roles = [\"physician\"]\n"),
                 "applications[0].roles[0] must be one of the configured roles: doctor");
  ExpectRejected(App(base + "roles = [\"nurse\"]\npurposes = [\"TREAT\", \"COFFEE\"]\n"),
                 "applications[0].purposes[1] must be an HL7 PurposeOfUse code");
  // The abstract root of the value set is no purpose a request may carry.
  ExpectRejected(App(base + "roles = [\"nurse\"]\npurposes = [\"PurposeOfUse\"]\n"),
                 "applications[0].purposes[0] must be an HL7 PurposeOfUse code");
  ExpectRejected(App(base + "roles = [\"nurse\"]\npurposes = []\n"),
                 "applications[0].purposes must not be empty");

  const std::string path = Write(App(base + "roles = [\"nurse\", \"compliance_officer\"]\n"));
  auto c = LoadConfig(path);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->applications[0].roles, (std::vector<std::string>{"nurse", "compliance_officer"}));
  EXPECT_TRUE(c->applications[0].purposes.empty());  // absent: any purpose
}

TEST_F(ConfigTest, OperatorRules) {
  const std::string base = MinimalConfig() + "\n[[operators]]\n";
  ExpectRejected(base + "role = \"nurse\"\nactions = [\"status\"]\n",
                 "operators[0] must have exactly one of uid and group");
  ExpectRejected(base + "uid = 1\ngroup = \"staff\"\nrole = \"nurse\"\nactions = [\"status\"]\n",
                 "operators[0] must have exactly one of uid and group");
  ExpectRejected(base + "uid = 1\nrole = \"janitor\"\nactions = [\"status\"]\n",
                 "operators[0].role must be one of the configured roles");
  ExpectRejected(base + "uid = \"1000\"\nrole = \"nurse\"\nactions = [\"status\"]\n",
                 "operators[0].uid must be an integer");
  ExpectRejected(base + "group = \"\"\nrole = \"nurse\"\nactions = [\"status\"]\n",
                 "operators[0].group must not be empty");
}

TEST_F(ConfigTest, RetentionSweepAtAcceptsEveryTimeOfDay) {
  for (const std::string at : {"00:00", "03:15", "23:59"}) {
    auto c = Load("retention_sweep_at = \"" + at + "\"\n" + MinimalConfig());
    ASSERT_TRUE(c.ok()) << at << ": " << c.status().ToString();
    EXPECT_EQ(c->retention_sweep_at, at);
  }
}

// Holds, retention, patient facts and certificates (issue 9) can be granted like any action.
TEST_F(ConfigTest, RetentionAndHoldActionsCanBeGranted) {
  const std::vector<std::string> actions = {"patient.facts",   "retention.show", "retention.sweep",
                                            "hold.place",      "hold.release",   "hold.list",
                                            "certificate.read"};
  std::string list;
  for (const auto& a : actions) list += (list.empty() ? "\"" : ", \"") + a + "\"";
  auto c = Load(App("name = \"ehr\"\ntoken_sha256 = \"" + kHash +
                    "\"\nuids = [1]\nroles = [\"vault_admin\"]\nactions = [" + list +
                    "]\n[[operators]]\ngroup = \"phivault-admin\"\nrole = \"vault_admin\"\n" +
                    "actions = [" + list + "]\n"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->applications.size(), 1u);
  EXPECT_EQ(c->applications[0].actions, actions);
  ASSERT_EQ(c->operators.size(), 1u);
  EXPECT_EQ(c->operators[0].actions, actions);
  ExpectRejected(App("name = \"ehr\"\ntoken_sha256 = \"" + kHash +
                     "\"\nuids = [1]\nroles = [\"vault_admin\"]\nactions = [\"hold.delete\"]\n"),
                 "applications[0].actions[0] must be one of:");
}

TEST_F(ConfigTest, MemoryDefaultsAndValues) {
  auto defaults = Load(MinimalConfig());
  ASSERT_TRUE(defaults.ok()) << defaults.status().ToString();
  EXPECT_EQ(defaults->memory.block_cache_bytes, 128ull << 20);
  EXPECT_EQ(defaults->memory.memtable_budget_bytes, 64ull << 20);
  EXPECT_EQ(defaults->memory.encounter_cache_patients, 50000u);
  EXPECT_EQ(defaults->memory.release_after_idle_seconds, 5u);

  auto given = Load(MinimalConfig() +
                    "[memory]\nblock_cache_bytes = 268435456\nmemtable_budget_bytes = 67108864\n"
                    "encounter_cache_patients = 200000\nrelease_after_idle_seconds = 0\n");
  ASSERT_TRUE(given.ok()) << given.status().ToString();
  EXPECT_EQ(given->memory.block_cache_bytes, 256ull << 20);
  EXPECT_EQ(given->memory.memtable_budget_bytes, 64ull << 20);
  EXPECT_EQ(given->memory.encounter_cache_patients, 200000u);
  EXPECT_EQ(given->memory.release_after_idle_seconds, 0u);

  // A block cache given alone keeps the memtables at half of it, below it either way.
  auto cache_only = Load(MinimalConfig() + "[memory]\nblock_cache_bytes = 16777216\n");
  ASSERT_TRUE(cache_only.ok()) << cache_only.status().ToString();
  EXPECT_EQ(cache_only->memory.memtable_budget_bytes, 8ull << 20);
}

INSTANTIATE_TEST_SUITE_P(
    Memory, ConfigBadValueTest,
    ::testing::Values(
        BadValue{"BlockCacheTooSmall", kSource, kSource + "\n[memory]\nblock_cache_bytes = 1048576",
                 "memory.block_cache_bytes must be an integer between 8388608 and 1099511627776"},
        BadValue{"BlockCacheNotInteger", kSource,
                 kSource + "\n[memory]\nblock_cache_bytes = \"64MiB\"",
                 "memory.block_cache_bytes must be an integer between"},
        BadValue{"MemtablesNotBelowCache", kSource,
                 kSource + "\n[memory]\nblock_cache_bytes = 33554432\nmemtable_budget_bytes = "
                           "33554432",
                 "memory.memtable_budget_bytes must be less than memory.block_cache_bytes"},
        BadValue{"MemtablesOverDefaultCache", kSource,
                 kSource + "\n[memory]\nmemtable_budget_bytes = 134217728",
                 "memory.memtable_budget_bytes must be less than memory.block_cache_bytes"},
        BadValue{"MemtablesTooSmall", kSource, kSource + "\n[memory]\nmemtable_budget_bytes = 1024",
                 "memory.memtable_budget_bytes must be an integer between 4194304 and"},
        BadValue{"EncounterCacheTooSmall", kSource,
                 kSource + "\n[memory]\nencounter_cache_patients = 10",
                 "memory.encounter_cache_patients must be an integer between 100 and 100000000"},
        BadValue{"EncounterCacheNegative", kSource,
                 kSource + "\n[memory]\nencounter_cache_patients = -5",
                 "memory.encounter_cache_patients must be an integer between 100 and 100000000"},
        BadValue{"ReleaseAfterIdleTooLong", kSource,
                 kSource + "\n[memory]\nrelease_after_idle_seconds = 100000",
                 "memory.release_after_idle_seconds must be an integer between 0 and 86400"},
        BadValue{"UnknownMemoryKey", kSource, kSource + "\n[memory]\ncache_bytes = 1",
                 "unknown key memory.cache_bytes"},
        BadValue{"MemoryNotTable", kDataDir, kDataDir + "\nmemory = 5", "memory must be a table"}),
    [](const ::testing::TestParamInfo<BadValue>& p) { return p.param.name; });

// A route needing an action the config cannot grant could never be called.
TEST(KnownActionsTest, IncludeEveryActionARouteNeeds) {
  const std::vector<std::string> known = KnownActions();
  for (const auto& route : Routes()) {
    if (route.access == RouteSpec::Access::kPublic) continue;
    EXPECT_NE(std::find(known.begin(), known.end(), route.action), known.end())
        << route.method << " " << route.path << " needs " << route.action;
  }
}

}  // namespace
}  // namespace phivault::daemon
