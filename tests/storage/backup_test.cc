// storage/backup.h against a real RocksDB store: a backup verifies, every kind of damage is named,
// the manifest and marker parsers refuse what could escape the backup or forge a claim, and a
// restore refuses an older keyring without touching the data directory.
#include "storage/backup.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "crypto/secret.h"
#include "storage/vault_id.h"
#include "tests/testing/temp_dir.h"

namespace phivault::storage {
namespace {

namespace fs = std::filesystem;

// A keyring-shaped header: "PVK2", version 2, generation `g` (little-endian), in region 0.
void WriteKeyringHeader(const std::string& path, uint64_t g) {
  std::string bytes(8192 * 2, '\0');
  bytes.replace(0, 4, "PVK2");
  bytes[4] = 2;
  for (int i = 0; i < 8; ++i) bytes[8 + static_cast<size_t>(i)] = static_cast<char>(g >> (8 * i));
  std::ofstream(path, std::ios::binary) << bytes;
}

class BackupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(data_ + "/db");
    auto store = OpenRocksStore({.path = data_ + "/db", .reserve_bytes = 0});
    ASSERT_TRUE(store.ok()) << store.status().message();
    store_ = std::move(store).value();
    ASSERT_TRUE(BindVaultId(*store_, "00112233445566778899aabbccddeeff").ok());
    WriteBatch batch;
    for (int i = 0; i < 50; ++i) {
      batch.Put(Cf::kRecords, "k" + std::to_string(i), std::string(5000, static_cast<char>(i)));
    }
    ASSERT_TRUE(store_->Write(batch, true).ok());
    WriteKeyringHeader(data_ + "/keyring", 7);
    auto signer = crypto::Ed25519Signer::Create(crypto::SecretBytes::Random(32));
    ASSERT_TRUE(signer.ok());
    signer_ = std::move(signer).value();
    key_ =
        crypto::ParseNoteVerifierKey(crypto::NoteVerifierKey("test.vault", signer_->public_key()))
            .value();
  }
  BackupManifest Make() {
    auto m = CreateBackup(*store_, {.dir = backups_,
                                    .keyring_path = data_ + "/keyring",
                                    .signer = signer_.get(),
                                    .origin = "test.vault"});
    EXPECT_TRUE(m.ok()) << m.status().message();
    return m.ok() ? *m : BackupManifest{};
  }

  phivault::testing::TempDir dir_;
  std::string data_ = dir_.path().string() + "/data";
  std::string backups_ = dir_.path().string() + "/backups";
  std::unique_ptr<Store> store_;
  std::unique_ptr<crypto::Ed25519Signer> signer_;
  crypto::NoteVerifier key_;
};

TEST_F(BackupTest, ABackupVerifiesAndNamesWhatItNeeds) {
  const BackupManifest m = Make();
  EXPECT_EQ(m.vault_id, "00112233445566778899aabbccddeeff");
  EXPECT_EQ(m.keyring_generation, 7u);
  EXPECT_FALSE(m.files.empty());
  for (const auto& f : m.files) EXPECT_EQ(f.path.rfind("db/", 0), 0u) << f.path;
  auto v = VerifyBackup(backups_ + "/" + m.id, key_);
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok());
  EXPECT_EQ(v->files_checked, m.files.size());
  auto resolved = ResolveBackupDir(backups_, "");
  ASSERT_TRUE(resolved.ok());
  EXPECT_EQ(*resolved, backups_ + "/" + m.id);
}

TEST_F(BackupTest, EachDamageIsNamed) {
  const BackupManifest m = Make();
  const std::string b = backups_ + "/" + m.id;
  const std::string victim = b + "/" + m.files.front().path;
  fs::remove(victim);
  std::ofstream(b + "/db/planted.sst") << "x";
  auto v = VerifyBackup(b, key_);
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok());
  std::set<std::string> kinds;
  for (const auto& p : v->problems) kinds.insert(p.kind);
  EXPECT_EQ(kinds, (std::set<std::string>{"missing", "foreign"}));
  // A key that is not the vault's.
  auto other = crypto::Ed25519Signer::Create(crypto::SecretBytes::Random(32));
  auto other_key =
      crypto::ParseNoteVerifierKey(crypto::NoteVerifierKey("test.vault", (*other)->public_key()));
  auto w = VerifyBackup(b, *other_key);
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE(w->signature_ok);
}

TEST(BackupManifestTest, RefusesPathsThatLeaveTheBackupAndRepeatedFields) {
  BackupManifest m;
  m.id = "20261201T000000Z-00000000";
  m.vault_id = "00112233445566778899aabbccddeeff";
  m.verifier_key = crypto::NoteVerifierKey("v", std::string(32, 'k'));
  m.files = {{"db/CURRENT", 16, std::string(64, 'a')}};
  ASSERT_TRUE(ParseBackupManifestText(BackupManifestText(m)).ok());
  for (const std::string bad :
       {"../etc/passwd", "/etc/passwd", "db/../../x", "db//x", "db/./x", "manifest.phivault"}) {
    BackupManifest b = m;
    b.files = {{bad, 1, std::string(64, 'a')}};
    EXPECT_FALSE(ParseBackupManifestText(BackupManifestText(b)).ok()) << bad;
  }
  std::string text = BackupManifestText(m);
  EXPECT_FALSE(ParseBackupManifestText(text + "vault 00112233445566778899aabbccddeeff\n").ok());
  EXPECT_FALSE(ParseBackupManifestText(text.substr(text.find('\n') + 1)).ok());
}

TEST(RestoreMarkerTest, RefusesMarkersOutOfForm) {
  phivault::testing::TempDir dir;
  RestoreMarker m;
  m.backup_id = "20261201T000000Z-00000000";
  m.previous_audit_size = 5;
  m.lacking_entries = 3;
  m.set_aside = "db.before-restore-20261201T000000Z-00000000";
  std::ofstream(dir.path().string() + "/restore-marker.json") << RestoreMarkerJson(m);
  auto read = ReadRestoreMarker(dir.path());
  ASSERT_TRUE(read.ok() && read->has_value());
  EXPECT_EQ((*read)->lacking_entries, 3u);
  for (const std::string& aside : {std::string("../../etc"), std::string("db.before-restore-/x")}) {
    m.set_aside = aside;
    std::ofstream(dir.path().string() + "/restore-marker.json") << RestoreMarkerJson(m);
    EXPECT_FALSE(ReadRestoreMarker(dir.path()).ok()) << aside;
  }
  ASSERT_TRUE(RemoveRestoreMarker(dir.path()).ok());
  auto none = ReadRestoreMarker(dir.path());
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST_F(BackupTest, RestoreRefusesAnOlderKeyringAndTouchesNothing) {
  const BackupManifest m = Make();
  store_.reset();  // the daemon is stopped
  WriteKeyringHeader(data_ + "/keyring", 6);
  std::map<std::string, uintmax_t> before;
  for (const auto& e : fs::recursive_directory_iterator(data_)) {
    if (e.is_regular_file()) before[e.path().string()] = e.file_size();
  }
  auto r = RestoreBackup({.backup_dir = backups_ + "/" + m.id, .data_dir = data_, .key = key_});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("older than the backup needs"), std::string::npos)
      << r.status().message();
  std::map<std::string, uintmax_t> after;
  for (const auto& e : fs::recursive_directory_iterator(data_)) {
    if (e.is_regular_file()) after[e.path().string()] = e.file_size();
  }
  EXPECT_EQ(before, after);

  WriteKeyringHeader(data_ + "/keyring", 9);
  auto ok = RestoreBackup({.backup_dir = backups_ + "/" + m.id, .data_dir = data_, .key = key_});
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_TRUE(ok->had_database);
  EXPECT_TRUE(fs::is_directory(ok->set_aside));
  auto reopened = OpenRocksStore({.path = data_ + "/db", .reserve_bytes = 0});
  ASSERT_TRUE(reopened.ok()) << reopened.status().message();
  auto v = (*reopened)->Get(Cf::kRecords, "k7");
  ASSERT_TRUE(v.ok() && v->has_value());
  EXPECT_EQ(**v, std::string(5000, static_cast<char>(7)));
}

}  // namespace
}  // namespace phivault::storage
