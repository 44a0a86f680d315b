// `phivault keyring export`: a keyring copy sealed for offline custody opens only under the
// master key of its time, comes back as a working keyring, and never overwrites one.
#include "crypto/keyring_export.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "crypto/keyring.h"
#include "tests/crypto/test_util.h"

namespace phivault::crypto {
namespace {

using testing::FileMode;
using testing::ReadFileBytes;
using testing::Secret;
using testing::TempDir;

class KeyringExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(InitSodium().ok());
    auto keyring = Keyring::Create({primary(), {}}, Secret(master_));
    ASSERT_TRUE(keyring.ok());
    sealed_ = (*keyring)->GetOrCreateEpoch("d20300101").value()->Encrypt("dek", "aad");
    ASSERT_TRUE((*keyring)->GetOrCreateEpoch("d20300102").ok());
    ASSERT_TRUE((*keyring)->DestroyEpoch("d20300102").ok());
    vault_id_ = (*keyring)->vault_id();
  }
  std::string primary() const { return dir_.Sub("keyring"); }

  TempDir dir_;
  const std::string master_ = RandomBytes(32);
  std::string sealed_, vault_id_;
};

TEST_F(KeyringExportTest, ExportRoundTripsIntoAWorkingKeyring) {
  KeyringExportInfo info;
  auto exported = SealKeyringExport(ReadFileBytes(primary()), Secret(master_), 1800000000, &info);
  ASSERT_TRUE(exported.ok()) << exported.status().ToString();
  EXPECT_EQ(exported->substr(0, 4), "PVKX");
  EXPECT_EQ(info.copy.vault_id, vault_id_);
  EXPECT_EQ(info.copy.live_epochs, 1u);
  EXPECT_EQ(info.copy.destroyed_epochs, 1u);

  const std::string restored = dir_.Sub("restored");
  KeyringExportInfo opened;
  ASSERT_TRUE(ImportKeyringExport(*exported, Secret(master_), restored, nullptr, &opened).ok());
  EXPECT_EQ(opened.exported_unix, 1800000000);
  EXPECT_EQ(opened.copy.generation, info.copy.generation);
  EXPECT_EQ(FileMode(restored), 0600u);
  auto keyring = Keyring::Open({restored, {}}, Secret(master_));
  ASSERT_TRUE(keyring.ok()) << keyring.status().ToString();
  EXPECT_EQ((*keyring)->vault_id(), vault_id_);
  EXPECT_EQ((*keyring)->GetEpoch("d20300101").value()->Decrypt(sealed_, "aad").value(), "dek");
  // A destroyed key stays destroyed in the export.
  EXPECT_EQ((*keyring)->GetEpoch("d20300102").status().code(), StatusCode::kFailedPrecondition);

  // An import never overwrites a keyring.
  const std::string before = ReadFileBytes(restored);
  EXPECT_EQ(ImportKeyringExport(*exported, Secret(master_), restored, nullptr, nullptr).code(),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(ReadFileBytes(restored), before);
}

TEST_F(KeyringExportTest, AnExportOpensOnlyUnderTheMasterKeyOfItsTime) {
  auto exported = SealKeyringExport(ReadFileBytes(primary()), Secret(master_), 1, nullptr);
  ASSERT_TRUE(exported.ok());
  const std::string new_master = RandomBytes(32);
  {
    auto keyring = Keyring::Open({primary(), {}}, Secret(master_));
    ASSERT_TRUE(keyring.ok());
    ASSERT_TRUE((*keyring)->Rotate(Secret(new_master)).ok());
  }
  auto with_new = OpenKeyringExport(*exported, Secret(new_master), nullptr);
  EXPECT_EQ(with_new.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(OpenKeyringExport(*exported, Secret(master_), nullptr).ok());
  // The rotated keyring exports under the new key only.
  EXPECT_EQ(
      SealKeyringExport(ReadFileBytes(primary()), Secret(master_), 1, nullptr).status().code(),
      StatusCode::kFailedPrecondition);
  EXPECT_TRUE(SealKeyringExport(ReadFileBytes(primary()), Secret(new_master), 1, nullptr).ok());
}

TEST_F(KeyringExportTest, DamagedInputIsRefused) {
  auto exported = SealKeyringExport(ReadFileBytes(primary()), Secret(master_), 1, nullptr);
  ASSERT_TRUE(exported.ok());
  std::string altered = *exported;
  altered[10] = static_cast<char>(altered[10] ^ 1);  // the generation in the envelope
  EXPECT_FALSE(OpenKeyringExport(altered, Secret(master_), nullptr).ok());
  altered = *exported;
  altered[altered.size() - 3] = static_cast<char>(altered[altered.size() - 3] ^ 1);
  EXPECT_FALSE(OpenKeyringExport(altered, Secret(master_), nullptr).ok());
  EXPECT_EQ(OpenKeyringExport("hello", Secret(master_), nullptr).status().code(),
            StatusCode::kInvalidArgument);
  // A damaged keyring is not exported.
  std::string copy = ReadFileBytes(primary());
  copy[16384 + 10] = static_cast<char>(copy[16384 + 10] ^ 1);
  EXPECT_EQ(SealKeyringExport(copy, Secret(master_), 1, nullptr).status().code(),
            StatusCode::kDataLoss);
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("nothing")));
}

}  // namespace
}  // namespace phivault::crypto
