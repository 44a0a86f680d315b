// What `phivault init` writes is a configuration phivaultd accepts as it is.
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "crypto/hash.h"
#include "crypto/secret.h"
#include "daemon/config.h"
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
}

}  // namespace
}  // namespace phivault::tools
