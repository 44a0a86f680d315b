// The keyring is bound to its database by the vault id both hold: the real daemon refuses to
// start over a database whose keyring is missing or belongs to another vault, and never creates
// a fresh keyring over existing data.
#include <gtest/gtest.h>

#include <filesystem>

#include "crypto/keyring.h"
#include "crypto/master_key.h"
#include "storage/vault_id.h"
#include "tests/e2e/harness.h"

namespace phivault::e2e {
namespace {

constexpr char kPatient[] = "synthetic-bind-1";

class E2eKeyringBindingTest : public VaultTest {
 protected:
  bool StartInSetUp() const override { return false; }

  std::string keyring_path() const { return vault_.data_dir() + "/keyring"; }

  // Starts the daemon expecting it to refuse; its standard error.
  std::string StartExpectingRefusal() {
    vault_.SpawnOnly();
    auto code = vault_.daemon().WaitExit(std::chrono::seconds(30));
    EXPECT_TRUE(code.has_value());
    EXPECT_NE(code.value_or(0), 0);
    return ReadFile(vault_.daemon().stderr_path());
  }

  std::optional<std::string> DatabaseVaultId() {
    auto store = OpenStoreOrDie(vault_.db_path());
    if (store == nullptr) return std::nullopt;
    auto id = storage::ReadVaultId(*store);
    EXPECT_TRUE(id.ok());
    return id.ok() ? *id : std::nullopt;
  }

  std::string KeyringVaultId() {
    auto master_key = crypto::LoadMasterKeyFile(vault_.key_path());
    EXPECT_TRUE(master_key.ok());
    if (!master_key.ok()) return "";
    auto keyring = crypto::Keyring::Open({keyring_path(), {}}, std::move(master_key).value());
    EXPECT_TRUE(keyring.ok()) << keyring.status().ToString();
    return keyring.ok() ? (*keyring)->vault_id() : "";
  }
};

TEST_F(E2eKeyringBindingTest, FirstStartCreatesAndBindsTheKeyringAndRestartsReuseIt) {
  ASSERT_TRUE(vault_.ok());
  ASSERT_FALSE(std::filesystem::exists(keyring_path()));
  ASSERT_TRUE(vault_.Start());
  const std::string id = StoreNote(kPatient, "bound at the first start");
  vault_.Stop();

  const std::string vault_id = KeyringVaultId();
  EXPECT_EQ(vault_id.size(), 32u);
  EXPECT_EQ(DatabaseVaultId(), vault_id);

  ASSERT_TRUE(vault_.Start());
  EXPECT_EQ(ReadNote(id), "bound at the first start");
  vault_.Stop();
  EXPECT_EQ(KeyringVaultId(), vault_id);
}

TEST_F(E2eKeyringBindingTest, DeletedKeyringOverRecordsIsRefusedNotRecreated) {
  ASSERT_TRUE(vault_.ok());
  ASSERT_TRUE(vault_.Start());
  const std::string id = StoreNote(kPatient, "needs its own keyring");
  vault_.Stop();
  const std::string saved = ReadFile(keyring_path());
  std::filesystem::remove(keyring_path());

  const std::string err = StartExpectingRefusal();
  EXPECT_NE(err.find("keyring " + keyring_path() + " is missing"), std::string::npos) << err;
  EXPECT_NE(err.find("Restore the keyring from a mirror or a keyring backup"), std::string::npos)
      << err;
  EXPECT_FALSE(std::filesystem::exists(keyring_path()));

  // Restoring the keyring is the remedy the message names.
  WriteFile(keyring_path(), saved);
  std::filesystem::permissions(
      keyring_path(), std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  ASSERT_TRUE(vault_.Start());
  EXPECT_EQ(ReadNote(id), "needs its own keyring");
}

TEST_F(E2eKeyringBindingTest, KeyringOfAnotherVaultIsRefusedNamingBothIds) {
  ASSERT_TRUE(vault_.ok());
  ASSERT_TRUE(vault_.Start());
  const std::string id = StoreNote(kPatient, "bound to the first keyring");
  vault_.Stop();
  const std::string own_id = KeyringVaultId();
  const std::string own = keyring_path() + ".own";
  std::filesystem::rename(keyring_path(), own);

  // Another vault's keyring under the same master key: everything authenticates, nothing fits.
  std::string other_id;
  {
    auto master_key = crypto::LoadMasterKeyFile(vault_.key_path());
    ASSERT_TRUE(master_key.ok());
    auto other = crypto::Keyring::Create({keyring_path(), {}}, std::move(master_key).value());
    ASSERT_TRUE(other.ok()) << other.status().ToString();
    other_id = (*other)->vault_id();
  }
  ASSERT_NE(other_id, own_id);
  const std::string other_bytes = ReadFile(keyring_path());

  const std::string err = StartExpectingRefusal();
  EXPECT_NE(err.find("belongs to vault " + other_id), std::string::npos) << err;
  EXPECT_NE(err.find("belongs to vault " + own_id), std::string::npos) << err;
  EXPECT_NE(err.find("Restore the keyring"), std::string::npos) << err;
  EXPECT_EQ(ReadFile(keyring_path()), other_bytes);
  EXPECT_EQ(DatabaseVaultId(), own_id);

  std::filesystem::rename(own, keyring_path());
  ASSERT_TRUE(vault_.Start());
  EXPECT_EQ(ReadNote(id), "bound to the first keyring");
}

TEST_F(E2eKeyringBindingTest, DeletedKeyringOfAnEmptyButBoundVaultIsRefused) {
  ASSERT_TRUE(vault_.ok());
  ASSERT_TRUE(vault_.Start());
  vault_.Stop();
  ASSERT_TRUE(DatabaseVaultId().has_value());
  std::filesystem::remove(keyring_path());
  const std::string err = StartExpectingRefusal();
  EXPECT_NE(err.find("belongs to vault " + *DatabaseVaultId()), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists(keyring_path()));
}

TEST_F(E2eKeyringBindingTest, VaultFromBeforeVaultIdsIsBoundOnceNotLockedOut) {
  ASSERT_TRUE(vault_.ok());
  ASSERT_TRUE(vault_.Start());
  const std::string id = StoreNote(kPatient, "written before vault ids");
  vault_.Stop();
  const std::string vault_id = KeyringVaultId();
  {
    auto store = OpenStoreOrDie(vault_.db_path());
    ASSERT_NE(store, nullptr);
    storage::WriteBatch unbind;
    unbind.Delete(storage::Cf::kState, std::string(storage::kVaultIdKey));
    ASSERT_TRUE(store->Write(unbind, true).ok());
  }
  ASSERT_EQ(DatabaseVaultId(), std::nullopt);

  ASSERT_TRUE(vault_.Start());
  EXPECT_EQ(ReadNote(id), "written before vault ids");
  vault_.Stop();
  EXPECT_EQ(DatabaseVaultId(), vault_id);
}

TEST_F(E2eKeyringBindingTest, RolledBackKeyringPrimaryIsRefusedWhileAMirrorIsNewer) {
  ASSERT_TRUE(vault_.ok());
  const std::string mirror_dir = vault_.ScratchPath("keyring-mirror");
  std::filesystem::create_directory(mirror_dir);
  const std::string mirror = mirror_dir + "/keyring";
  vault_.EditConfig("socket_mode = \"0660\"",
                    "socket_mode = \"0660\"\nkeyring_mirrors = [\"" + mirror + "\"]");
  ASSERT_TRUE(vault_.Start());
  const std::string first = StoreNote(kPatient, "before the rollback");
  vault_.Stop();
  const std::string old_primary = ReadFile(keyring_path());
  ASSERT_TRUE(ReadFile(mirror) == old_primary);

  // A later encounter puts the next record in another epoch: a new key in every copy.
  ASSERT_TRUE(vault_.Start());
  auto created = vault_.AppClient().CreateRecord(
      Physician(), client::NewRecord{.patient_id = kPatient,
                                     .category = "clinical_note",
                                     .content_type = "text/plain",
                                     .encounter_date = "2026-11-20",
                                     .author = "Dr. Synthetic",
                                     .content = "needs the newer keyring"});
  ASSERT_TRUE(created.ok()) << created.error().Message();
  const std::string second = created->record_id;
  vault_.Stop();
  const std::string new_mirror = ReadFile(mirror);
  ASSERT_TRUE(new_mirror != old_primary);

  WriteFile(keyring_path(), old_primary);
  const std::string err = StartExpectingRefusal();
  EXPECT_NE(err.find("keyring mirror " + mirror + " is newer"), std::string::npos) << err;
  EXPECT_NE(err.find("copy the newest mirror over the primary"), std::string::npos) << err;
  EXPECT_TRUE(ReadFile(mirror) == new_mirror);  // the old state did not spread
  EXPECT_TRUE(ReadFile(keyring_path()) == old_primary);

  // The remedy the message names.
  WriteFile(keyring_path(), new_mirror);
  ASSERT_TRUE(vault_.Start());
  EXPECT_EQ(ReadNote(first), "before the rollback");
  EXPECT_EQ(ReadNote(second), "needs the newer keyring");
}

}  // namespace
}  // namespace phivault::e2e
