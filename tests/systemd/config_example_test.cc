// systemd/phivault.toml.example is what an administrator copies to /etc/phivault: it must load
// with phivaultd's own parser, and it must agree with the units and sysusers snippet it ships
// with (a mismatch is a daemon that cannot find its key or a socket nobody can reach).
#include <fstream>
#include <sstream>
#include <string>

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
  ASSERT_EQ(config->operators.size(), 1u);
  EXPECT_EQ(config->operators[0].role, "vault_admin");
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

TEST(ConfigExampleTest, OperatorGroupIsCreatedBySysusers) {
  auto config = LoadConfig(kSystemdDir + "/phivault.toml.example");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  ASSERT_EQ(config->operators.size(), 1u);
  const std::string sysusers = ReadFile(kSystemdDir + "/phivault-sysusers.conf");
  EXPECT_NE(sysusers.find("\ng " + config->operators[0].group + " "), std::string::npos)
      << "phivault-sysusers.conf does not create group " << config->operators[0].group;
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
