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

TEST_F(BackupTest, ASecondBackupSharesUnchangedFilesAndEachSurvivesTheOthersRemoval) {
  ASSERT_TRUE(store_->Flush().ok());
  const BackupManifest first = Make();
  WriteBatch small;
  small.Put(Cf::kRecords, "k-new", "one small change");
  ASSERT_TRUE(store_->Write(small, true).ok());
  const BackupManifest second = Make();
  ASSERT_NE(first.id, second.id);
  EXPECT_EQ(first.shared_bytes, 0u);
  // The table file holding the 50 values is unchanged: linked, not written again.
  EXPECT_GT(second.shared_bytes, 200000u);
  EXPECT_LT(second.TotalBytes() - second.shared_bytes, 100000u);
  auto listing = ListBackups(backups_);
  ASSERT_TRUE(listing.ok());
  ASSERT_EQ(listing->size(), 2u);
  EXPECT_EQ((*listing)[0].shared_bytes, 0u);
  EXPECT_EQ((*listing)[1].shared_bytes, second.shared_bytes);
  EXPECT_EQ((*listing)[1].new_bytes + (*listing)[1].shared_bytes, second.TotalBytes());
  for (const auto& m : {first, second}) {
    auto v = VerifyBackup(backups_ + "/" + m.id, key_);
    ASSERT_TRUE(v.ok());
    EXPECT_TRUE(v->ok()) << m.id;
  }
  // A shared file is one file: damage to it shows in every backup that holds it.
  std::string shared;
  for (const auto& f : second.files) {
    if (f.size > 200000) shared = f.path;
  }
  ASSERT_FALSE(shared.empty());
  const auto flip = [&] {
    std::fstream f(backups_ + "/" + first.id + "/" + shared,
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(1000);
    const char c = static_cast<char>(f.get());
    f.seekp(1000);
    f.put(static_cast<char>(c ^ 1));
  };
  flip();
  for (const auto& m : {first, second}) {
    auto damaged = VerifyBackup(backups_ + "/" + m.id, key_);
    ASSERT_TRUE(damaged.ok());
    EXPECT_FALSE(damaged->ok()) << m.id;
  }
  flip();

  auto dry = PruneBackups(backups_, 1, /*dry_run=*/true);
  ASSERT_TRUE(dry.ok()) << dry.status().message();
  EXPECT_EQ(dry->removed, std::vector<std::string>{first.id});
  EXPECT_TRUE(fs::is_directory(backups_ + "/" + first.id)) << "a dry run removes nothing";
  auto pruned = PruneBackups(backups_, 1, /*dry_run=*/false);
  ASSERT_TRUE(pruned.ok()) << pruned.status().message();
  EXPECT_EQ(pruned->removed, std::vector<std::string>{first.id});
  EXPECT_EQ(pruned->kept, std::vector<std::string>{second.id});
  EXPECT_LT(pruned->freed_bytes, first.TotalBytes()) << "the shared table file stays";
  EXPECT_FALSE(fs::exists(backups_ + "/" + first.id));
  auto v = VerifyBackup(backups_ + "/" + second.id, key_);
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok()) << "removing the older backup leaves the newer complete";

  store_.reset();
  auto restored =
      RestoreBackup({.backup_dir = backups_ + "/" + second.id, .data_dir = data_, .key = key_});
  ASSERT_TRUE(restored.ok()) << restored.status().message();
  auto reopened = OpenRocksStore({.path = data_ + "/db", .reserve_bytes = 0});
  ASSERT_TRUE(reopened.ok()) << reopened.status().message();
  for (const auto& [key, want] : std::map<std::string, std::string>{
           {"k-new", "one small change"}, {"k42", std::string(5000, static_cast<char>(42))}}) {
    auto got = (*reopened)->Get(Cf::kRecords, key);
    ASSERT_TRUE(got.ok() && got->has_value()) << key;
    EXPECT_EQ(**got, want);
  }
  EXPECT_FALSE(PruneBackups(backups_, 0, false).ok());
  EXPECT_FALSE(PruneBackups(backups_ + "/" + second.id, 1, false).ok());
}

TEST_F(BackupTest, ProgressIsReportedAPercentAtATimeAndEndsAtTheTotal) {
  ASSERT_TRUE(store_->Flush().ok());
  std::vector<std::pair<std::string, uint64_t>> seen;
  uint64_t total = 0;
  auto m =
      CreateBackup(*store_, {.dir = backups_,
                             .keyring_path = data_ + "/keyring",
                             .signer = signer_.get(),
                             .origin = "test.vault",
                             .staging_dir = data_ + "/backup-staging",
                             .progress = [&](std::string_view phase, uint64_t done, uint64_t of) {
                               seen.emplace_back(std::string(phase), done);
                               if (phase == "backup") total = of;
                             }});
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_FALSE(fs::exists(data_ + "/backup-staging")) << "the staging checkpoint is removed";
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.front().first, "checkpoint");
  EXPECT_EQ(seen.back(), (std::pair<std::string, uint64_t>{"backup", m->TotalBytes()}));
  EXPECT_EQ(total, m->TotalBytes());
  EXPECT_LE(seen.size(), 110u) << "at most a report per percent";
  auto v = VerifyBackup(backups_ + "/" + m->id, key_);
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok());
}

TEST_F(BackupTest, BadInputGetsAnErrorThatSaysWhatIsWrong) {
  const BackupManifest m = Make();
  const std::string b = backups_ + "/" + m.id;
  // Not a backup at all.
  const std::string empty = dir_.path().string() + "/empty";
  fs::create_directories(empty);
  EXPECT_EQ(ResolveBackupDir(empty, "").status().code(), StatusCode::kNotFound);
  auto none = ListBackups(empty);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  // Backing up into a backup.
  auto nested = CreateBackup(*store_, {.dir = b,
                                       .keyring_path = data_ + "/keyring",
                                       .signer = signer_.get(),
                                       .origin = "test.vault"});
  ASSERT_FALSE(nested.ok());
  EXPECT_NE(nested.status().message().find("is a backup"), std::string::npos);

  const std::string note = [&] {
    std::ifstream in(b + "/manifest.phivault", std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  const auto problem_of = [&](const std::string& manifest) {
    std::ofstream(b + "/manifest.phivault", std::ios::binary | std::ios::trunc) << manifest;
    auto v = VerifyBackup(b, key_);
    EXPECT_TRUE(v.ok());
    EXPECT_FALSE(v->ok());
    return v->problems.empty() ? std::string()
                               : v->problems.front().kind + ": " + v->problems.front().detail;
  };
  EXPECT_NE(problem_of(note.substr(0, note.size() / 2)).find("cut short"), std::string::npos);
  EXPECT_NE(problem_of("").find("cut short"), std::string::npos);
  std::string newer = note;
  newer.replace(0, std::string_view("phivault-backup 1").size(), "phivault-backup 2");
  EXPECT_NE(problem_of(newer).find("newer than this phivault"), std::string::npos);
  store_.reset();
  std::ofstream(b + "/manifest.phivault", std::ios::binary | std::ios::trunc) << newer;
  auto r = RestoreBackup({.backup_dir = b, .data_dir = data_, .key = key_});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("newer than this phivault"), std::string::npos)
      << r.status().message();
}

TEST_F(BackupTest, ABackupOfAnotherVaultIsNotRestoredOverThisOne) {
  const BackupManifest mine = Make();
  // Another vault, backed up with its own key into the same backups directory.
  phivault::testing::TempDir other_dir;
  const std::string other_data = other_dir.path().string();
  auto other = OpenRocksStore({.path = other_data + "/db", .reserve_bytes = 0});
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(BindVaultId(**other, "ffeeddccbbaa99887766554433221100").ok());
  WriteKeyringHeader(other_data + "/keyring", 7);
  auto foreign = CreateBackup(**other, {.dir = backups_,
                                        .keyring_path = other_data + "/keyring",
                                        .signer = signer_.get(),
                                        .origin = "test.vault"});
  ASSERT_TRUE(foreign.ok()) << foreign.status().message();
  store_.reset();
  auto r =
      RestoreBackup({.backup_dir = backups_ + "/" + foreign->id, .data_dir = data_, .key = key_});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("is of vault ffeeddccbbaa99887766554433221100"),
            std::string::npos)
      << r.status().message();
  EXPECT_FALSE(fs::exists(data_ + "/restore-marker.json"));
  auto reopened = OpenRocksStore({.path = data_ + "/db", .reserve_bytes = 0});
  ASSERT_TRUE(reopened.ok());
  auto id = ReadVaultId(**reopened);
  ASSERT_TRUE(id.ok() && id->has_value());
  EXPECT_EQ(**id, mine.vault_id);
}

}  // namespace
}  // namespace phivault::storage
