// LoadRetention: the table a vault keeps records by comes from the practice's retention file, or
// from the shipped us-federal preset when the configuration names none; a file that cannot be
// read, or that would shorten a preset's rule, keeps the daemon from using it.
#include "daemon/retention_loader.h"

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/testing/temp_dir.h"

namespace phivault::daemon {
namespace {

using ::testing::HasSubstr;

class RetentionLoaderTest : public ::testing::Test {
 protected:
  RetentionLoaderTest() { config_.categories = DefaultCategories(); }

  // Writes `text` as the configured retention file.
  void WriteRetentionFile(const std::string& text) {
    config_.retention_file = path_;
    std::ofstream(path_) << text;
  }

  phivault::testing::TempDir dir_;
  std::string path_ = dir_.Sub("retention.toml");
  Config config_;
};

TEST_F(RetentionLoaderTest, NoRetentionFileIsTheUsFederalPreset) {
  auto loaded = LoadRetention(config_);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  ASSERT_NE(loaded->table, nullptr);
  EXPECT_EQ(loaded->table->preset(), "us-federal");
  EXPECT_EQ(loaded->source, "preset us-federal");
  EXPECT_EQ(loaded->text, "[retention]\npreset = \"us-federal\"\n");
  // printf '[retention]\npreset = "us-federal"\n' | sha256sum: the digest a vault records for the
  // default table must not change between releases, or every vault would see a policy change.
  EXPECT_EQ(loaded->sha256_hex, "06b31e52c7f99d20402a6dcafc90e5afb46fcb995a3340379009dfc9c7932ec9");
  std::vector<std::string> rules;
  for (const auto& rule : loaded->table->rules()) rules.push_back(rule.name);
  EXPECT_EQ(rules, (std::vector<std::string>{"federal-hospital-records", "federal-medicare-service",
                                             "federal-hipaa-documentation"}));
}

TEST_F(RetentionLoaderTest, AFileThatLengthensAPresetRuleLoads) {
  const std::string text =
      "[retention]\npreset = \"us-tx\"\n\n[[rule]]\nname = \"tx-adult\"\nyears = 10\n";
  WriteRetentionFile(text);
  auto loaded = LoadRetention(config_);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->table->preset(), "us-tx");
  EXPECT_EQ(loaded->source, path_);
  EXPECT_EQ(loaded->text, text);
  const policies::RetentionTable& table = *loaded->table;
  const auto it = std::find_if(table.rules().begin(), table.rules().end(),
                               [](const auto& rule) { return rule.name == "tx-adult"; });
  ASSERT_NE(it, table.rules().end());
  EXPECT_EQ(it->years, 10);
  EXPECT_EQ(it->source, "22 Tex. Admin. Code 165.1(b)");  // the preset's, kept
  EXPECT_EQ(it->origin, path_ + ":4");
  // A different file is a different digest: the vault can tell a changed table.
  auto preset = LoadRetention(Config{.categories = DefaultCategories()});
  ASSERT_TRUE(preset.ok());
  EXPECT_NE(loaded->sha256_hex, preset->sha256_hex);
}

TEST_F(RetentionLoaderTest, AFileThatShortensAPresetRuleIsRefusedNamingFileAndLine) {
  WriteRetentionFile(
      "[retention]\npreset = \"us-tx\"\n\n[[rule]]\nname = \"tx-adult\"\nyears = 5\n");
  auto loaded = LoadRetention(config_);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(loaded.status().message(), HasSubstr(path_ + ":4: rule 'tx-adult': would shorten "
                                                           "preset 'us-tx' rule 'tx-adult'"));
}

TEST_F(RetentionLoaderTest, AMissingFileIsNotFoundNamingIt) {
  config_.retention_file = dir_.Sub("absent.toml");
  auto loaded = LoadRetention(config_);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(loaded.status().message(), HasSubstr(dir_.Sub("absent.toml")));
}

TEST_F(RetentionLoaderTest, AnUnknownCategoryIsRefused) {
  auto parsed = ParseRetention(config_, "practice.toml",
                               "[retention]\npreset = \"us-federal\"\n\n[[rule]]\nname = \"x\"\n"
                               "categories = [\"labs\"]\nafter = \"service\"\nyears = 10\n");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(parsed.status().message(),
              HasSubstr("practice.toml:6: rule 'x': unknown category 'labs' (not a configured "
                        "category)"));
}

// The categories checked against are the configured ones, not the defaults.
TEST_F(RetentionLoaderTest, RulesNameTheConfiguredCategories) {
  const std::string text =
      "[retention]\npreset = \"us-federal\"\n\n[[rule]]\nname = \"x\"\n"
      "categories = [\"obstetrics\"]\nafter = \"service\"\nyears = 25\n";
  EXPECT_FALSE(ParseRetention(config_, "practice.toml", text).ok());
  config_.categories.push_back("obstetrics");
  auto parsed = ParseRetention(config_, "practice.toml", text);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->table->rules().back().name, "x");
}

}  // namespace
}  // namespace phivault::daemon
