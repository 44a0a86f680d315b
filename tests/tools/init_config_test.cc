// What `phivault init` writes is a configuration phivaultd accepts as it is.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "crypto/hash.h"
#include "crypto/secret.h"
#include "daemon/config.h"
#include "daemon/retention_loader.h"
#include "policies/retention.h"
#include "tests/testing/temp_dir.h"
#include "tools/cli_init.h"

namespace phivault::tools {
namespace {

TEST(InitConfigTest, TheDaemonLoadsTheConfigThatInitWrites) {
  ASSERT_TRUE(crypto::InitSodium().ok());
  testing::TempDir dir;
  auto init = InitDevVault(InitOptions{.dir = dir.Sub("vault"), .uid = ::getuid()});
  ASSERT_TRUE(init.ok()) << init.status().ToString();

  auto config = daemon::LoadConfig(init->config_path);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->data_dir, init->data_dir);
  EXPECT_EQ(config->socket_path, init->socket_path);
  EXPECT_EQ(config->socket_mode, 0660u);
  EXPECT_EQ(config->master_key.kind, daemon::MasterKeySource::Kind::kFile);
  EXPECT_EQ(config->master_key.file, init->key_path);
  ASSERT_EQ(config->applications.size(), 1u);
  EXPECT_EQ(config->applications[0].name, "dev-app");
  EXPECT_EQ(config->applications[0].token_sha256_hex,
            crypto::HexEncode(crypto::AsView(crypto::Sha256(init->token))));
  EXPECT_EQ(config->applications[0].uids, std::vector<uint32_t>{::getuid()});
  EXPECT_EQ(config->practice_name, kDefaultPracticeName);
  // The dev app may assert every role (and any purpose), so every guide works with its token.
  std::vector<std::string> app_roles = config->applications[0].roles;
  std::vector<std::string> all_roles = daemon::DefaultRoles();
  std::sort(app_roles.begin(), app_roles.end());
  std::sort(all_roles.begin(), all_roles.end());
  EXPECT_EQ(app_roles, all_roles);
  EXPECT_TRUE(config->applications[0].purposes.empty());
  // The creator is an operator in each of the daemon's roles (so that every guide works as
  // written), administrator first; a development vault may do everything the daemon knows, no
  // more and no less.
  std::vector<std::string> roles;
  for (const auto& op : config->operators) {
    EXPECT_EQ(op.uid, ::getuid());
    roles.push_back(op.role);
  }
  ASSERT_FALSE(roles.empty());
  EXPECT_EQ(roles.front(), "vault_admin");
  std::vector<std::string> default_roles = daemon::DefaultRoles();
  std::sort(roles.begin(), roles.end());
  std::sort(default_roles.begin(), default_roles.end());
  EXPECT_EQ(roles, default_roles);
  std::vector<std::string> known = daemon::KnownActions();
  std::sort(known.begin(), known.end());
  std::vector<std::vector<std::string>> lists = {config->applications[0].actions};
  for (const auto& op : config->operators) lists.push_back(op.actions);
  for (auto actions : lists) {
    std::sort(actions.begin(), actions.end());
    EXPECT_EQ(actions, known);
  }
  // Among them what issue 9 added: the administrator places holds, runs and shows retention and
  // sets patient facts; the compliance officer reads destruction certificates and retention.
  for (const auto& op : config->operators) {
    std::vector<std::string> wanted;
    if (op.role == "vault_admin") {
      wanted = {"hold.place",      "hold.release",     "hold.list",    "retention.show",
                "retention.sweep", "certificate.read", "patient.facts"};
    } else if (op.role == "compliance_officer") {
      wanted = {"certificate.read", "retention.show"};
    }
    for (const auto& action : wanted) {
      EXPECT_NE(std::find(op.actions.begin(), op.actions.end(), action), op.actions.end())
          << op.role << " lacks " << action;
    }
  }
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The retention file init writes is the one the config names, and the daemon loads it: the
// us-federal preset unless --retention-preset chose another.
TEST(InitConfigTest, TheDaemonLoadsTheRetentionFileThatInitWrites) {
  ASSERT_TRUE(crypto::InitSodium().ok());
  testing::TempDir dir;
  auto init = InitDevVault(InitOptions{.dir = dir.Sub("vault"), .uid = ::getuid()});
  ASSERT_TRUE(init.ok()) << init.status().ToString();
  EXPECT_TRUE(init->created_retention);
  EXPECT_EQ(init->retention_path, init->dir + "/retention.toml");
  EXPECT_EQ(init->retention_preset, "us-federal");
  EXPECT_EQ(init->retention_sources,
            (std::vector<std::string>{"42 CFR 482.24(b)(1)", "42 CFR 424.516(f)",
                                      "45 CFR 164.316(b)(2)(i)"}));

  auto config = daemon::LoadConfig(init->config_path);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->retention_file, init->retention_path);
  EXPECT_TRUE(config->retention_sweep_at.empty());
  auto retention = daemon::LoadRetention(*config);
  ASSERT_TRUE(retention.ok()) << retention.status().ToString();
  EXPECT_EQ(retention->table->preset(), "us-federal");
  EXPECT_EQ(retention->source, init->retention_path);
  // Same rules as the daemon's default table: writing the file changed nothing but where it is.
  auto preset = policies::RetentionTable::Preset("us-federal");
  ASSERT_TRUE(preset.ok());
  EXPECT_TRUE(policies::FindShortenings(*preset, *retention->table).empty());
  EXPECT_TRUE(policies::FindShortenings(*retention->table, *preset).empty());
}

TEST(InitConfigTest, EveryShippedPresetCanBeChosenAndLoads) {
  ASSERT_TRUE(crypto::InitSodium().ok());
  for (std::string_view name : policies::RetentionPresetNames()) {
    testing::TempDir dir;
    auto init = InitDevVault(InitOptions{
        .dir = dir.Sub("vault"), .uid = ::getuid(), .retention_preset = std::string(name)});
    ASSERT_TRUE(init.ok()) << name << ": " << init.status().ToString();
    auto config = daemon::LoadConfig(init->config_path);
    ASSERT_TRUE(config.ok()) << name << ": " << config.status().ToString();
    auto retention = daemon::LoadRetention(*config);
    ASSERT_TRUE(retention.ok()) << name << ": " << retention.status().ToString();
    EXPECT_EQ(retention->table->preset(), name);
  }
}

// The commented guidance is an example an administrator will uncomment: uncommented, it loads
// and lengthens the preset.
TEST(InitConfigTest, TheCommentedLengtheningInTheRetentionFileLoadsOnceUncommented) {
  for (std::string_view name : policies::RetentionPresetNames()) {
    std::istringstream in(RenderRetentionFile(name));
    std::string uncommented;
    for (std::string line; std::getline(in, line);) {
      if (line == "# [[rule]]") uncommented += "\n";
      if (line.rfind("# [[rule]]", 0) == 0 || line.rfind("# name", 0) == 0 ||
          line.rfind("# years", 0) == 0 || line.rfind("# categories", 0) == 0 ||
          line.rfind("# after", 0) == 0 || line.rfind("# source", 0) == 0) {
        uncommented += line.substr(2) + "\n";
      } else {
        uncommented += line + "\n";
      }
    }
    daemon::Config config;
    config.categories = daemon::DefaultCategories();
    auto lengthened = daemon::ParseRetention(config, "retention.toml", uncommented);
    ASSERT_TRUE(lengthened.ok()) << name << ": " << lengthened.status().ToString() << "\n"
                                 << uncommented;
    auto preset = policies::RetentionTable::Preset(name);
    ASSERT_TRUE(preset.ok());
    EXPECT_TRUE(policies::FindShortenings(*preset, *lengthened->table).empty()) << name;
    EXPECT_EQ(lengthened->table->rules().size(), preset->rules().size() + 1) << name;
  }
}

TEST(InitConfigTest, AnUnknownRetentionPresetIsRefusedAndNothingIsWritten) {
  ASSERT_TRUE(crypto::InitSodium().ok());
  testing::TempDir dir;
  auto init = InitDevVault(
      InitOptions{.dir = dir.Sub("vault"), .uid = ::getuid(), .retention_preset = "us-federa"});
  ASSERT_FALSE(init.ok());
  EXPECT_EQ(init.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(init.status().message(),
            "--retention-preset \"us-federa\" is not a shipped retention preset (presets: us-ca, "
            "us-federal, us-fl, us-ny, us-tx)");
  EXPECT_FALSE(std::filesystem::exists(dir.Sub("vault")));
}

// A kept retention file (--force-config) must load as the daemon would load it, or init stops
// before writing a config the daemon would refuse to start with.
TEST(InitConfigTest, AKeptRetentionFileThatDoesNotLoadIsRefusedNamingItsLine) {
  ASSERT_TRUE(crypto::InitSodium().ok());
  testing::TempDir dir;
  auto first = InitDevVault(InitOptions{.dir = dir.Sub("vault"), .uid = ::getuid()});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  const std::string config_text = ReadText(first->config_path);
  std::ofstream(first->retention_path)
      << "[retention]\npreset = \"us-federal\"\n[[rule]]\nname = \"federal-medicare-service\"\n"
         "years = 3\n";
  auto again =
      InitDevVault(InitOptions{.dir = dir.Sub("vault"), .force_config = true, .uid = ::getuid()});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(again.status().message(),
              ::testing::HasSubstr(first->retention_path +
                                   ":3: rule 'federal-medicare-service': would shorten"));
  EXPECT_EQ(ReadText(first->config_path), config_text);
}

}  // namespace
}  // namespace phivault::tools
