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
  ASSERT_EQ(config->operators.size(), 1u);
  EXPECT_EQ(config->operators[0].uid, ::getuid());
  EXPECT_EQ(config->operators[0].role, "administrator");
  // A development vault may do everything the daemon knows, no more and no less.
  std::vector<std::string> known = daemon::KnownActions();
  std::sort(known.begin(), known.end());
  for (auto actions : {config->operators[0].actions, config->applications[0].actions}) {
    std::sort(actions.begin(), actions.end());
    EXPECT_EQ(actions, known);
  }
}

}  // namespace
}  // namespace phivault::tools
