// systemd/phivault.toml.example is what an administrator copies to /etc/phivault: it must load
// with phivaultd's own parser, and it must agree with the units and sysusers snippet it ships
// with (a mismatch is a daemon that cannot find its key or a socket nobody can reach).
#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "daemon/config.h"
#include "tests/testing/temp_dir.h"

namespace phivault::daemon {
namespace {

const std::string kSystemdDir = PHIVAULT_SYSTEMD_DIR;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The value of the first "Key=value" line in a unit file, "" if there is none.
std::string UnitSetting(const std::string& unit_text, const std::string& key) {
  std::istringstream in(unit_text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key + "=", 0) == 0) return line.substr(key.size() + 1);
  }
  return "";
}

TEST(ConfigExampleTest, LoadsWithTheDaemonsParser) {
  auto config = LoadConfig(kSystemdDir + "/phivault.toml.example");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->data_dir, "/var/lib/phivault");
  EXPECT_EQ(config->socket_mode, 0660u);
  EXPECT_EQ(config->master_key.kind, MasterKeySource::Kind::kCredential);
  EXPECT_TRUE(config->applications.empty());
  ASSERT_EQ(config->operators.size(), 2u);
  EXPECT_EQ(config->operators[0].role, "vault_admin");
  EXPECT_EQ(config->operators[0].group, "phivault-admin");
  // No retention file: the shipped us-federal preset; the timer, not the daemon, sweeps.
  EXPECT_TRUE(config->retention_file.empty());
  EXPECT_TRUE(config->retention_sweep_at.empty());
}

TEST(ConfigExampleTest, CredentialNameIsTheOneTheServiceLoads) {
  auto config = LoadConfig(kSystemdDir + "/phivault.toml.example");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  const std::string service = ReadFile(kSystemdDir + "/phivault.service");
  EXPECT_EQ(UnitSetting(service, "LoadCredential"),
            config->master_key.credential + ":/etc/phivault/master.key");
  EXPECT_EQ(UnitSetting(service, "ExecStart"),
            "/usr/bin/phivaultd --config /etc/phivault/phivault.toml");
}

TEST(ConfigExampleTest, SocketMatchesTheSocketUnit) {
  auto config = LoadConfig(kSystemdDir + "/phivault.toml.example");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  const std::string socket = ReadFile(kSystemdDir + "/phivault.socket");
  EXPECT_EQ(UnitSetting(socket, "ListenStream"), config->socket_path);
  EXPECT_EQ(UnitSetting(socket, "SocketGroup"), config->socket_group);
  EXPECT_EQ(UnitSetting(socket, "SocketMode"), "0660");
}

TEST(ConfigExampleTest, OperatorGroupsAreCreatedBySysusers) {
  auto config = LoadConfig(kSystemdDir + "/phivault.toml.example");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  ASSERT_FALSE(config->operators.empty());
  const std::string sysusers = ReadFile(kSystemdDir + "/phivault-sysusers.conf");
  for (const auto& op : config->operators) {
    // A "g" line creates the group; a "u" line creates the user and its group of the same name.
    EXPECT_TRUE(sysusers.find("\ng " + op.group + " ") != std::string::npos ||
                sysusers.find("\nu " + op.group + " ") != std::string::npos)
        << "phivault-sysusers.conf does not create group " << op.group;
  }
}

// The sweep unit runs as an operator the example allows to sweep, on the socket the daemon
// listens on; the timer starts that unit.
TEST(ConfigExampleTest, SweepUnitRunsAsTheSweepOperatorOnTheDaemonsSocket) {
  auto config = LoadConfig(kSystemdDir + "/phivault.toml.example");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  const std::string service = ReadFile(kSystemdDir + "/phivault-sweep.service");
  const std::string group = UnitSetting(service, "Group");
  const auto op = std::find_if(config->operators.begin(), config->operators.end(),
                               [&](const OperatorConfig& o) { return o.group == group; });
  ASSERT_NE(op, config->operators.end()) << "no [[operators]] entry for group " << group;
  EXPECT_EQ(op->actions, std::vector<std::string>{"retention.sweep"});
  EXPECT_EQ(UnitSetting(service, "User"), group);
  // The socket's group, without which the kernel refuses the connection.
  EXPECT_EQ(UnitSetting(service, "SupplementaryGroups"), config->socket_group);
  EXPECT_EQ(UnitSetting(service, "ExecStart"), "/usr/bin/phivault --socket " + config->socket_path +
                                                   " --role " + op->role +
                                                   " --purpose HOPERAT retention sweep --destroy"
                                                   " --json");
  const std::string timer = ReadFile(kSystemdDir + "/phivault-sweep.timer");
  EXPECT_EQ(UnitSetting(timer, "Unit"), "phivault-sweep.service");
  EXPECT_EQ(UnitSetting(timer, "OnCalendar"), "*-*-* 03:15:00 UTC");
}

// The commented retention keys are documentation an administrator will uncomment; uncommented,
// they load (and a retired key in their place would not).
TEST(ConfigExampleTest, CommentedRetentionKeysLoadOnceUncommented) {
  std::string example = ReadFile(kSystemdDir + "/phivault.toml.example");
  for (const std::string key : {"retention_file", "retention_sweep_at"}) {
    const size_t at = example.find("\n# " + key + " = ");
    ASSERT_NE(at, std::string::npos) << "no commented " << key << " in the example";
    example.erase(at + 1, 2);
  }
  testing::TempDir dir;
  const std::string path = dir.Sub("phivault.toml");
  std::ofstream(path) << example;
  auto config = LoadConfig(path);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->retention_file, "/etc/phivault/retention.toml");
  EXPECT_EQ(config->retention_sweep_at, "03:00");
}

// The commented [[applications]] block is documentation an administrator will uncomment and
// fill in; filled in, it must load.
TEST(ConfigExampleTest, CommentedApplicationExampleLoadsOnceFilledIn) {
  const std::string example = ReadFile(kSystemdDir + "/phivault.toml.example");
  std::istringstream in(example);
  std::string uncommented;
  bool in_block = false;
  for (std::string line; std::getline(in, line);) {
    if (line == "# [[applications]]") in_block = true;
    if (in_block && line.rfind("# ", 0) != 0) break;
    if (in_block) uncommented += line.substr(2) + "\n";
  }
  ASSERT_FALSE(uncommented.empty()) << "no commented [[applications]] block in the example";
  const std::string placeholder = "<64 hex digits>";
  const size_t at = uncommented.find(placeholder);
  ASSERT_NE(at, std::string::npos);
  uncommented.replace(at, placeholder.size(), std::string(64, 'a'));

  testing::TempDir dir;
  const std::string path = dir.Sub("phivault.toml");
  std::ofstream(path) << example << "\n" << uncommented;
  auto config = LoadConfig(path);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  ASSERT_EQ(config->applications.size(), 1u);
  EXPECT_EQ(config->applications[0].actions.size(), 5u);
  EXPECT_EQ(config->applications[0].roles,
            (std::vector<std::string>{"physician", "nurse", "medical_assistant"}));
  EXPECT_EQ(config->applications[0].purposes,
            (std::vector<std::string>{"TREAT", "ETREAT", "HPAYMT", "HOPERAT"}));
}

}  // namespace
}  // namespace phivault::daemon
