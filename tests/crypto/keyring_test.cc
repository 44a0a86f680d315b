#include "crypto/keyring.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "tests/crypto/test_util.h"

namespace phivault::crypto {
namespace {

using testing::FileMode;
using testing::ReadFileBytes;
using testing::Secret;
using testing::TempDir;
using testing::WriteFileBytes;

// Layout documented in crypto/keyring.h: two 8 KiB header regions, then two 172-byte places
// per slot; a slot's sealed key is 68 bytes into it.
constexpr size_t kHeaderRegion = 8192;
constexpr size_t kSlotsStart = 2 * kHeaderRegion;
constexpr size_t kSlotBytes = 172;
constexpr size_t kIdBytes = 48;
constexpr size_t kSealedOffset = 68;
constexpr size_t kSealedBytes = 72;

// Offset of the sealed key of slot `id` in a keyring file, or npos.
size_t SealedOffset(const std::string& file, std::string_view id) {
  std::string field(id);
  field.resize(kIdBytes, '\0');
  for (size_t off = kSlotsStart; off + kSlotBytes <= file.size(); off += kSlotBytes) {
    if (file.compare(off, kIdBytes, field) == 0) return off + kSealedOffset;
  }
  return std::string::npos;
}

std::string SealedKey(const std::string& file, std::string_view id) {
  const size_t off = SealedOffset(file, id);
  return off == std::string::npos ? "" : file.substr(off, kSealedBytes);
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

class KeyringTest : public ::testing::Test {
 protected:
  KeyringTest()
      : master_(RandomBytes(32)),
        primary_(dir_.Sub("keyring")),
        mirror_dir_(dir_.Sub("mirror")),
        mirror_(mirror_dir_ + "/keyring") {
    std::filesystem::create_directory(mirror_dir_);
  }

  KeyringOptions Options() const { return {primary_, {mirror_}}; }

  // Opens the keyring, creating it first if no primary exists yet.
  std::unique_ptr<Keyring> OpenWith(const std::string& master) {
    auto keyring = std::filesystem::exists(primary_) ? Keyring::Open(Options(), Secret(master))
                                                     : Keyring::Create(Options(), Secret(master));
    EXPECT_TRUE(keyring.ok()) << keyring.status().ToString();
    return keyring.ok() ? std::move(keyring).value() : nullptr;
  }
  std::unique_ptr<Keyring> OpenKeyring() { return OpenWith(master_); }

  std::shared_ptr<const Aead> Epoch(Keyring& keyring, std::string_view id) {
    auto key = keyring.GetOrCreateEpoch(id);
    EXPECT_TRUE(key.ok()) << key.status().ToString();
    return key.ok() ? *key : nullptr;
  }

  TempDir dir_;
  std::string master_;
  std::string primary_;
  std::string mirror_dir_;
  std::string mirror_;
};

TEST_F(KeyringTest, CreatesPrimaryAndMirrorOwnerOnly) {
  auto keyring = OpenKeyring();
  ASSERT_NE(keyring, nullptr);
  EXPECT_EQ(FileMode(primary_), 0600u);
  EXPECT_EQ(FileMode(mirror_), 0600u);
  const std::string bytes = ReadFileBytes(primary_);
  EXPECT_EQ(bytes.substr(0, 4), "PVK2");
  EXPECT_EQ(bytes.size(), kSlotsStart + 2 * 4 * kSlotBytes);  // three service keys, vault id
  EXPECT_EQ(ReadFileBytes(mirror_), bytes);
  EXPECT_TRUE(keyring->ListEpochs().empty());
  EXPECT_FALSE(std::filesystem::exists(primary_ + ".tmp"));
}

TEST_F(KeyringTest, OpenWithoutAnyCopyIsNotFoundAndCreatesNothing) {
  auto keyring = Keyring::Open(Options(), Secret(master_));
  ASSERT_FALSE(keyring.ok());
  EXPECT_EQ(keyring.status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(primary_));
  EXPECT_FALSE(std::filesystem::exists(mirror_));
}

TEST_F(KeyringTest, CreateNeverOverwritesAnExistingCopy) {
  ASSERT_NE(OpenKeyring(), nullptr);
  const std::string primary_before = ReadFileBytes(primary_);
  auto again = Keyring::Create(Options(), Secret(master_));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), StatusCode::kAlreadyExists);
  EXPECT_NE(again.status().message().find(primary_), std::string::npos);
  EXPECT_EQ(ReadFileBytes(primary_), primary_before);

  // A mirror alone is a keyring too: creating a primary next to it would orphan its keys.
  std::filesystem::remove(primary_);
  auto beside_mirror = Keyring::Create(Options(), Secret(master_));
  ASSERT_FALSE(beside_mirror.ok());
  EXPECT_EQ(beside_mirror.status().code(), StatusCode::kAlreadyExists);
  EXPECT_NE(beside_mirror.status().message().find(mirror_), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(primary_));
}

TEST_F(KeyringTest, VaultIdIsRandomAndFixedForTheKeyringsLife) {
  std::string id;
  {
    auto keyring = OpenKeyring();
    ASSERT_NE(keyring, nullptr);
    id = keyring->vault_id();
    EXPECT_EQ(id.size(), 32u);
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
    ASSERT_TRUE(keyring->Rotate(Secret(RandomBytes(32))).ok());
    EXPECT_EQ(keyring->vault_id(), id);
  }
  TempDir other;
  auto second = Keyring::Create({other.Sub("keyring"), {}}, Secret(master_));
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_NE((*second)->vault_id(), id);
}

TEST_F(KeyringTest, VaultIdSurvivesReopen) {
  std::string id;
  {
    auto keyring = OpenKeyring();
    ASSERT_NE(keyring, nullptr);
    id = keyring->vault_id();
  }
  auto keyring = OpenKeyring();
  ASSERT_NE(keyring, nullptr);
  EXPECT_EQ(keyring->vault_id(), id);
}

TEST_F(KeyringTest, ServiceKeysPersistAcrossReopen) {
  std::string blind, sealed, public_key;
  {
    auto keyring = OpenKeyring();
    ASSERT_NE(keyring, nullptr);
    blind = keyring->blind_index().Compute("patient", "MRN-42");
    sealed = keyring->audit_key().Encrypt("audit field", "entry-1");
    public_key = keyring->audit_signer().public_key();
  }
  auto keyring = OpenKeyring();
  ASSERT_NE(keyring, nullptr);
  EXPECT_EQ(keyring->blind_index().Compute("patient", "MRN-42"), blind);
  EXPECT_EQ(keyring->audit_key().Decrypt(sealed, "entry-1").value(), "audit field");
  EXPECT_EQ(keyring->audit_signer().public_key(), public_key);
  EXPECT_TRUE(Ed25519Verify(public_key, "cp", keyring->audit_signer().Sign("cp")));
}

TEST_F(KeyringTest, WrongMasterKeyIsFailedPreconditionAndChangesNothing) {
  ASSERT_NE(OpenKeyring(), nullptr);
  const std::string before = ReadFileBytes(primary_);
  auto wrong = Keyring::Open(Options(), SecretBytes::Random(32));
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(wrong.status().message(), "master key does not match the keyring");
  EXPECT_EQ(ReadFileBytes(primary_), before);
  EXPECT_EQ(Keyring::Open(Options(), SecretBytes::Random(16)).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(Keyring::Open({primary_, {mirror_, mirror_}}, Secret(master_)).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(Keyring::Open({primary_, {primary_}}, Secret(master_)).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(KeyringTest, EpochKeysPersistAcrossReopen) {
  std::string sealed;
  {
    auto keyring = OpenKeyring();
    ASSERT_NE(keyring, nullptr);
    auto key = Epoch(*keyring, "d20360101");
    ASSERT_NE(key, nullptr);
    EXPECT_EQ(Epoch(*keyring, "d20360101"), key);  // same object, no second slot
    sealed = key->Encrypt("dek", "rec-1|1|d20360101");
    ASSERT_NE(Epoch(*keyring, "hHOLD-7_x"), nullptr);
    EXPECT_EQ(keyring->GetEpoch("d20360101").value(), key);
  }
  EXPECT_EQ(ReadFileBytes(mirror_), ReadFileBytes(primary_));
  auto keyring = OpenKeyring();
  ASSERT_NE(keyring, nullptr);
  auto key = keyring->GetEpoch("d20360101");
  ASSERT_TRUE(key.ok());
  EXPECT_EQ((*key)->Decrypt(sealed, "rec-1|1|d20360101").value(), "dek");
  const auto epochs = keyring->ListEpochs();
  ASSERT_EQ(epochs.size(), 2u);
  EXPECT_EQ(epochs[0].id, "d20360101");
  EXPECT_FALSE(epochs[0].destroyed);
  EXPECT_GT(epochs[0].created_unix, 0);
  EXPECT_EQ(epochs[1].id, "hHOLD-7_x");
}

TEST_F(KeyringTest, EpochIdsAreValidated) {
  auto keyring = OpenKeyring();
  ASSERT_NE(keyring, nullptr);
  for (std::string_view bad :
       {"", "d", "d2036010", "d203601011", "d2036010a", "x20360101", "h", "hbad id", "h/x",
        "svc:audit", "svc:blind-index", "H123", "h\xc3\xa9"}) {
    EXPECT_EQ(keyring->GetOrCreateEpoch(bad).status().code(), StatusCode::kInvalidArgument) << bad;
  }
  const std::string longest = "h" + std::string(40, 'a');
  EXPECT_TRUE(keyring->GetOrCreateEpoch(longest).ok());
  EXPECT_EQ(keyring->GetOrCreateEpoch(longest + "a").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(keyring->GetEpoch("d20990101").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(keyring->DestroyEpoch("d20990101").code(), StatusCode::kNotFound);
  EXPECT_EQ(keyring->DestroyEpoch("svc:audit").code(), StatusCode::kInvalidArgument);
}

TEST_F(KeyringTest, DestroyErasesKeyFromEveryCopyInPlace) {
  std::string kept_ct;
  {
    auto keyring = OpenKeyring();
    ASSERT_NE(keyring, nullptr);
    ASSERT_NE(Epoch(*keyring, "d20300101"), nullptr);
  }
  const std::string sealed = SealedKey(ReadFileBytes(primary_), "d20300101");
  ASSERT_EQ(sealed.size(), kSealedBytes);
  ASSERT_NE(sealed, std::string(kSealedBytes, '\0'));
  // A temp file left behind by format 1 holds a full old copy; the hard link shows that it is
  // overwritten, not merely unlinked.
  WriteFileBytes(primary_ + ".tmp", ReadFileBytes(primary_), 0600);
  ASSERT_EQ(::link((primary_ + ".tmp").c_str(), (primary_ + ".tmp.old").c_str()), 0);
  {
    struct stat before;
    ASSERT_EQ(::stat(primary_.c_str(), &before), 0);
    auto keyring = OpenKeyring();
    ASSERT_NE(keyring, nullptr);
    EXPECT_FALSE(std::filesystem::exists(primary_ + ".tmp"));
    auto kept = Epoch(*keyring, "d20300102");
    ASSERT_NE(kept, nullptr);
    kept_ct = kept->Encrypt("dek", "aad");
    ASSERT_TRUE(Contains(ReadFileBytes(mirror_), sealed));
    // Hard links keep the inodes visible: one inode per copy, overwritten in place.
    ASSERT_EQ(::link(primary_.c_str(), (primary_ + ".old").c_str()), 0);
    ASSERT_EQ(::link(mirror_.c_str(), (mirror_ + ".old").c_str()), 0);

    ASSERT_TRUE(keyring->DestroyEpoch("d20300101").ok());

    for (const std::string& path :
         {primary_, mirror_, primary_ + ".old", mirror_ + ".old", primary_ + ".tmp.old"}) {
      EXPECT_FALSE(Contains(ReadFileBytes(path), sealed)) << path;
    }
    // The tombstone: the slot is there, destroyed, its sealed key zero.
    EXPECT_EQ(SealedKey(ReadFileBytes(primary_), "d20300101"), std::string(kSealedBytes, '\0'));
    struct stat after;
    ASSERT_EQ(::stat(primary_.c_str(), &after), 0);
    EXPECT_EQ(after.st_ino, before.st_ino);
    EXPECT_EQ(keyring->GetEpoch("d20300101").status().code(), StatusCode::kFailedPrecondition);
    auto recreate = keyring->GetOrCreateEpoch("d20300101");
    EXPECT_EQ(recreate.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_EQ(recreate.status().message(), "epoch key was destroyed");
    EXPECT_TRUE(keyring->DestroyEpoch("d20300101").ok());  // idempotent
  }
  auto keyring = OpenKeyring();
  ASSERT_NE(keyring, nullptr);
  EXPECT_EQ(keyring->GetEpoch("d20300101").status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(keyring->GetOrCreateEpoch("d20300101").status().code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(keyring->GetEpoch("d20300102").value()->Decrypt(kept_ct, "aad").value(), "dek");
  const auto epochs = keyring->ListEpochs();
  ASSERT_EQ(epochs.size(), 2u);
  EXPECT_TRUE(epochs[0].destroyed);
  EXPECT_GT(epochs[0].destroyed_unix, 0);
  EXPECT_FALSE(epochs[1].destroyed);
}

TEST_F(KeyringTest, DestroyEpochsErasesSeveralInOneUpdateOfEveryCopy) {
  {
    auto keyring = OpenKeyring();
    ASSERT_NE(keyring, nullptr);
    for (const char* id : {"d20300101", "d20300102", "d20300103"}) {
      ASSERT_NE(Epoch(*keyring, id), nullptr);
    }
  }
  const std::string primary_bytes = ReadFileBytes(primary_);
  const std::string first = SealedKey(primary_bytes, "d20300101");
  const std::string second = SealedKey(primary_bytes, "d20300102");
  auto keyring = OpenKeyring();
  ASSERT_NE(keyring, nullptr);
  // One unknown id: nothing is destroyed.
  EXPECT_EQ(keyring->DestroyEpochs({"d20300101", "d20990909"}).code(), StatusCode::kNotFound);
  EXPECT_TRUE(keyring->GetEpoch("d20300101").ok());

  ASSERT_TRUE(keyring->DestroyEpochs({"d20300101", "d20300102", "d20300101"}).ok());
  for (const std::string& path : {primary_, mirror_}) {
    const std::string bytes = ReadFileBytes(path);
    EXPECT_FALSE(Contains(bytes, first)) << path;
    EXPECT_FALSE(Contains(bytes, second)) << path;
  }
  EXPECT_EQ(keyring->GetEpoch("d20300101").status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(keyring->GetEpoch("d20300102").status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(keyring->GetEpoch("d20300103").ok());
  EXPECT_TRUE(keyring->DestroyEpochs({"d20300101", "d20300102"}).ok());  // idempotent
  keyring.reset();
  auto reopened = OpenKeyring();
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(reopened->GetEpoch("d20300102").status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(reopened->GetEpoch("d20300103").ok());
}

TEST_F(KeyringTest, ZeroedSlotIsCorruptionRepairedFromAMirrorNotADestruction) {
  std::string ct;
  {
    auto keyring = OpenKeyring();
    ASSERT_NE(keyring, nullptr);
    ct = Epoch(*keyring, "d20300101")->Encrypt("dek", "aad");
  }
  const std::string good = ReadFileBytes(primary_);
  // Someone who can write the primary (or a disk returning zeros) zeroes the sealed key.
  std::string bytes = good;
  const size_t off = SealedOffset(bytes, "d20300101");
  ASSERT_NE(off, std::string::npos);
  bytes.replace(off, kSealedBytes, std::string(kSealedBytes, '\0'));
  WriteFileBytes(primary_, bytes, 0600);

  auto keyring = OpenKeyring();
  ASSERT_NE(keyring, nullptr);
  EXPECT_EQ(keyring->GetEpoch("d20300101").value()->Decrypt(ct, "aad").value(), "dek");
  EXPECT_FALSE(keyring->ListEpochs().at(0).destroyed);
  EXPECT_EQ(ReadFileBytes(primary_), good);  // repaired from the mirror, which was not touched
  EXPECT_EQ(ReadFileBytes(mirror_), good);
}

TEST_F(KeyringTest, ForgedTombstoneIsNotBelievedAndDoesNotSpread) {
  std::string ct;
  {
    auto keyring = OpenKeyring();
    ASSERT_NE(keyring, nullptr);
    ct = Epoch(*keyring, "d20300101")->Encrypt("dek", "aad");
  }
  const std::string good = ReadFileBytes(primary_);
  // A "destroyed" slot written without the master key: state 2, a time, the key zeroed.
  std::string bytes = good;
  const size_t sealed = SealedOffset(bytes, "d20300101");
  ASSERT_NE(sealed, std::string::npos);
  const size_t slot = sealed - kSealedOffset;
  bytes[slot + kIdBytes] = 2;
  bytes[slot + kIdBytes + 12] = 1;
  bytes.replace(sealed, kSealedBytes, std::string(kSealedBytes, '\0'));
  WriteFileBytes(primary_, bytes, 0600);

  auto keyring = OpenKeyring();
  ASSERT_NE(keyring, nullptr);
  EXPECT_EQ(keyring->GetEpoch("d20300101").value()->Decrypt(ct, "aad").value(), "dek");
  EXPECT_TRUE(ReadFileBytes(primary_) == good);
  EXPECT_TRUE(ReadFileBytes(mirror_) == good);
}

TEST_F(KeyringTest, ZeroedSlotWithoutAGoodCopyIsDataLossAndSpreadsNowhere) {
  {
    auto keyring = OpenKeyring();
    ASSERT_NE(keyring, nullptr);
    ASSERT_NE(Epoch(*keyring, "d20300101"), nullptr);
  }
  for (const std::string& path : {primary_, mirror_}) {
    std::string bytes = ReadFileBytes(path);
    const size_t off = SealedOffset(bytes, "d20300101");
    ASSERT_NE(off, std::string::npos);
    bytes.replace(off, kSealedBytes, std::string(kSealedBytes, '\0'));
    WriteFileBytes(path, bytes, 0600);
  }
  const std::string primary_before = ReadFileBytes(primary_);
  auto keyring = Keyring::Open(Options(), Secret(master_));
  ASSERT_FALSE(keyring.ok());
  EXPECT_EQ(keyring.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(keyring.status().message().find(primary_), std::string::npos);
  EXPECT_EQ(ReadFileBytes(primary_), primary_before);
}

TEST_F(KeyringTest, RolledBackPrimaryIsRefusedAndChangesNothing) {
  std::string old_primary;
  {
    auto keyring = OpenKeyring();
    ASSERT_NE(keyring, nullptr);
    ASSERT_NE(Epoch(*keyring, "d20300101"), nullptr);
    old_primary = ReadFileBytes(primary_);
    ASSERT_TRUE(keyring->DestroyEpoch("d20300101").ok());
  }
  // The primary is put back to a copy from before the destruction.
  WriteFileBytes(primary_, old_primary, 0600);
  const std::string mirror_before = ReadFileBytes(mirror_);
  auto keyring = Keyring::Open(Options(), Secret(master_));
  ASSERT_FALSE(keyring.ok());
  EXPECT_EQ(keyring.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(keyring.status().message().find("is newer"), std::string::npos)
      << keyring.status().message();
  EXPECT_NE(keyring.status().message().find(mirror_), std::string::npos);
  EXPECT_EQ(ReadFileBytes(primary_), old_primary);
  EXPECT_EQ(ReadFileBytes(mirror_), mirror_before);
}

TEST_F(KeyringTest, RolledBackMirrorIsRewrittenAndItsKeysDoNotSpread) {
  std::string old_mirror, sealed;
  {
    auto keyring = OpenKeyring();
    ASSERT_NE(keyring, nullptr);
    ASSERT_NE(Epoch(*keyring, "d20300101"), nullptr);
    old_mirror = ReadFileBytes(mirror_);
    sealed = SealedKey(old_mirror, "d20300101");
    ASSERT_TRUE(keyring->DestroyEpoch("d20300101").ok());
  }
  WriteFileBytes(mirror_, old_mirror, 0600);
  auto keyring = OpenKeyring();
  ASSERT_NE(keyring, nullptr);
  EXPECT_EQ(keyring->GetEpoch("d20300101").status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReadFileBytes(mirror_), ReadFileBytes(primary_));
  EXPECT_FALSE(Contains(ReadFileBytes(mirror_), sealed));
  EXPECT_FALSE(Contains(ReadFileBytes(primary_), sealed));
}

TEST_F(KeyringTest, DivergedCopiesMergeTombstonesAndKeysAndNeverResurrect) {
  std::string before_destroy, sealed, mirror_diverged, ct;
  {
    auto keyring = OpenKeyring();
    ASSERT_NE(keyring, nullptr);
    ASSERT_NE(Epoch(*keyring, "d20300101"), nullptr);
    before_destroy = ReadFileBytes(primary_);
    sealed = SealedKey(before_destroy, "d20300101");
    ASSERT_TRUE(keyring->DestroyEpoch("d20300101").ok());
    ct = Epoch(*keyring, "d20300103")->Encrypt("dek", "aad");
    mirror_diverged = ReadFileBytes(mirror_);
  }
  // The primary diverges: put back to before the destruction, then changed twice on its own, so
  // that it reaches the mirror's generation with another history.
  WriteFileBytes(primary_, before_destroy, 0600);
  {
    auto alone = Keyring::Open({primary_, {}}, Secret(master_));
    ASSERT_TRUE(alone.ok()) << alone.status().ToString();
    ASSERT_TRUE((*alone)->GetOrCreateEpoch("d20300102").ok());
    ASSERT_TRUE((*alone)->GetOrCreateEpoch("d20300104").ok());
  }
  WriteFileBytes(mirror_, mirror_diverged, 0600);

  auto keyring = OpenKeyring();
  ASSERT_NE(keyring, nullptr);
  // The mirror's tombstone wins over the primary's live key; the mirror's own key is kept.
  EXPECT_EQ(keyring->GetEpoch("d20300101").status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(keyring->GetEpoch("d20300103").value()->Decrypt(ct, "aad").value(), "dek");
  EXPECT_TRUE(keyring->GetEpoch("d20300102").ok());
  EXPECT_TRUE(keyring->GetEpoch("d20300104").ok());
  EXPECT_FALSE(Contains(ReadFileBytes(primary_), sealed));
  EXPECT_FALSE(Contains(ReadFileBytes(mirror_), sealed));
  EXPECT_TRUE(ReadFileBytes(mirror_) == ReadFileBytes(primary_));
  keyring.reset();
  auto reopened = OpenKeyring();
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(reopened->ListEpochs().size(), 4u);
}

TEST_F(KeyringTest, FailedMirrorIsNamedAndRetried) {
  auto keyring = OpenKeyring();
  ASSERT_NE(keyring, nullptr);
  ASSERT_NE(Epoch(*keyring, "d20300101"), nullptr);
  std::filesystem::remove_all(mirror_dir_);

  const Status destroyed = keyring->DestroyEpoch("d20300101");
  EXPECT_EQ(destroyed.code(), StatusCode::kUnavailable);
  EXPECT_NE(destroyed.message().find(mirror_), std::string::npos) << destroyed.message();
  // The key is gone from memory and from the primary even though a mirror failed.
  EXPECT_EQ(keyring->GetEpoch("d20300101").status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(SealedKey(ReadFileBytes(primary_), "d20300101"), std::string(kSealedBytes, '\0'));
  auto created = keyring->GetOrCreateEpoch("d20300102");
  EXPECT_EQ(created.status().code(), StatusCode::kUnavailable);

  std::filesystem::create_directory(mirror_dir_);
  EXPECT_TRUE(keyring->DestroyEpoch("d20300101").ok());
  EXPECT_EQ(ReadFileBytes(mirror_), ReadFileBytes(primary_));
  EXPECT_TRUE(keyring->GetOrCreateEpoch("d20300102").ok());
  EXPECT_EQ(ReadFileBytes(mirror_), ReadFileBytes(primary_));
}

TEST_F(KeyringTest, MissingOrStaleMirrorIsRewrittenAtOpen) {
  {
    auto keyring = OpenKeyring();
    ASSERT_NE(keyring, nullptr);
    ASSERT_NE(Epoch(*keyring, "d20300101"), nullptr);
  }
  std::filesystem::remove(mirror_);
  ASSERT_NE(OpenKeyring(), nullptr);
  EXPECT_EQ(ReadFileBytes(mirror_), ReadFileBytes(primary_));
  EXPECT_EQ(FileMode(mirror_), 0600u);

  WriteFileBytes(mirror_, "stale", 0600);
  ASSERT_NE(OpenKeyring(), nullptr);
  EXPECT_EQ(ReadFileBytes(mirror_), ReadFileBytes(primary_));
}

TEST_F(KeyringTest, MissingPrimaryWithExistingMirrorIsRefused) {
  ASSERT_NE(OpenKeyring(), nullptr);
  const std::string mirror_before = ReadFileBytes(mirror_);
  std::filesystem::remove(primary_);
  auto keyring = Keyring::Open(Options(), Secret(master_));
  EXPECT_EQ(keyring.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReadFileBytes(mirror_), mirror_before);
  EXPECT_FALSE(std::filesystem::exists(primary_));
}

TEST_F(KeyringTest, RotationResealsUnderNewMasterKey) {
  const std::string new_master = RandomBytes(32);
  std::string sealed;
  std::string blind;
  {
    auto keyring = OpenKeyring();
    ASSERT_NE(keyring, nullptr);
    auto key = Epoch(*keyring, "d20300101");
    ASSERT_NE(key, nullptr);
    ASSERT_NE(Epoch(*keyring, "d20300102"), nullptr);
    ASSERT_TRUE(keyring->DestroyEpoch("d20300102").ok());
    sealed = key->Encrypt("dek", "aad");
    blind = keyring->blind_index().Compute("patient", "MRN-1");
    ASSERT_TRUE(keyring->Rotate(Secret(new_master)).ok());
    EXPECT_EQ(keyring->GetEpoch("d20300101").value(), key);  // in-memory keys unchanged
  }
  EXPECT_EQ(ReadFileBytes(mirror_), ReadFileBytes(primary_));
  EXPECT_EQ(Keyring::Open(Options(), Secret(master_)).status().code(),
            StatusCode::kFailedPrecondition);
  auto keyring = OpenWith(new_master);
  ASSERT_NE(keyring, nullptr);
  EXPECT_EQ(keyring->GetEpoch("d20300101").value()->Decrypt(sealed, "aad").value(), "dek");
  EXPECT_EQ(keyring->GetEpoch("d20300102").status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(keyring->blind_index().Compute("patient", "MRN-1"), blind);
  EXPECT_EQ(keyring->Rotate(SecretBytes::Random(31)).code(), StatusCode::kInvalidArgument);
}

TEST_F(KeyringTest, TruncatedFileIsDataLoss) {
  {
    auto keyring = OpenKeyring();
    ASSERT_NE(keyring, nullptr);
    ASSERT_NE(Epoch(*keyring, "d20300101"), nullptr);
  }
  std::filesystem::remove(mirror_);  // no good copy to repair from
  const std::string good = ReadFileBytes(primary_);
  for (size_t len : {size_t{0}, size_t{3}, kHeaderRegion, kSlotsStart, good.size() - 1,
                     good.size() - kSlotBytes}) {
    WriteFileBytes(primary_, good.substr(0, len), 0600);
    auto keyring = Keyring::Open(Options(), Secret(master_));
    ASSERT_FALSE(keyring.ok()) << len;
    EXPECT_EQ(keyring.status().code(), StatusCode::kDataLoss) << len;
  }
  // Bytes past the end are leftovers, not state: zeroed in place, never believed.
  WriteFileBytes(primary_, good + "x", 0600);
  ASSERT_NE(OpenKeyring(), nullptr);
  EXPECT_EQ(ReadFileBytes(primary_), good + std::string(1, '\0'));
}

TEST_F(KeyringTest, EveryCorruptedByteIsDetectedOrHarmlessNeverBelieved) {
  std::string ct;
  {
    auto keyring = OpenKeyring();
    ASSERT_NE(keyring, nullptr);
    ct = Epoch(*keyring, "d20300101")->Encrypt("dek", "aad");
  }
  std::filesystem::remove(mirror_);
  const std::string good = ReadFileBytes(primary_);
  // The state: the active header (region 1 after creation and one change) up to its MAC (fixed
  // fields, a one-byte bitmap, the MAC) and the first place of every slot (the only ones used).
  auto in_state = [&](size_t i) {
    if (i >= kHeaderRegion && i < kHeaderRegion + 92 + 1 + 32) return true;
    return i >= kSlotsStart && ((i - kSlotsStart) / kSlotBytes) % 2 == 0;
  };
  std::vector<size_t> offsets;
  for (size_t i = 0; i < 256; ++i) offsets.push_back(i);  // the header, its MAC, padding
  for (size_t i = kHeaderRegion; i < kHeaderRegion + 256; ++i) offsets.push_back(i);
  for (size_t i = kSlotsStart; i < good.size(); ++i) offsets.push_back(i);
  for (size_t i : offsets) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x20);
    WriteFileBytes(primary_, bad, 0600);
    auto keyring = Keyring::Open({primary_, {}}, Secret(master_));
    if (!keyring.ok()) {
      EXPECT_EQ(keyring.status().code(), StatusCode::kDataLoss) << "byte " << i;
      EXPECT_TRUE(in_state(i)) << "byte " << i;
      continue;
    }
    EXPECT_FALSE(in_state(i)) << "byte " << i;
    // It opened: the byte was outside the state (an unused place or header region) and is
    // zeroed again; the keys are exactly the old ones.
    EXPECT_EQ((*keyring)->GetEpoch("d20300101").value()->Decrypt(ct, "aad").value(), "dek")
        << "byte " << i;
    EXPECT_EQ((*keyring)->ListEpochs().size(), 1u) << "byte " << i;
    EXPECT_TRUE(ReadFileBytes(primary_) == good) << "byte " << i;
  }
}

TEST_F(KeyringTest, SymlinkedCopyIsNotFollowed) {
  ASSERT_NE(OpenKeyring(), nullptr);
  // Someone who can write the directory swaps the mirror for a link to a file of their choice.
  const std::string elsewhere = dir_.Sub("elsewhere");
  WriteFileBytes(elsewhere, "not a keyring", 0600);
  std::filesystem::remove(mirror_);
  std::filesystem::create_symlink(elsewhere, mirror_);
  auto keyring = Keyring::Open(Options(), Secret(master_));
  ASSERT_FALSE(keyring.ok());
  EXPECT_EQ(keyring.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(keyring.status().message().find(mirror_), std::string::npos);
  EXPECT_EQ(ReadFileBytes(elsewhere), "not a keyring");
}

TEST_F(KeyringTest, ConcurrentGetOrCreateYieldsOneKey) {
  auto keyring = OpenKeyring();
  ASSERT_NE(keyring, nullptr);
  constexpr int kThreads = 8;
  std::vector<std::shared_ptr<const Aead>> keys(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto key = keyring->GetOrCreateEpoch("d20991231");
      if (key.ok()) keys[t] = *key;
    });
  }
  for (std::thread& t : threads) t.join();
  for (const auto& key : keys) {
    ASSERT_NE(key, nullptr);
    EXPECT_EQ(key, keys[0]);
  }
  EXPECT_EQ(keyring->ListEpochs().size(), 1u);
  auto reopened = OpenKeyring();
  ASSERT_NE(reopened, nullptr);
  const std::string ct = keys[0]->Encrypt("x", "");
  EXPECT_EQ(reopened->GetEpoch("d20991231").value()->Decrypt(ct, "").value(), "x");
}

}  // namespace
}  // namespace phivault::crypto
