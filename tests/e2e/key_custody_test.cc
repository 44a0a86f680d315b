// Master-key rotation, the recovery kit and the keyring export against the real daemon and CLI:
// a rotation while clients create and read loses nothing and leaves the old key useless against
// the keyring and its mirror; 3 of 5 shares restore a key the vault opens with, 2 do not; an
// export comes back as a keyring the vault serves from.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "crypto/hash.h"
#include "crypto/keyring.h"
#include "crypto/master_key.h"
#include "crypto/secret.h"
#include "tests/e2e/harness.h"

namespace phivault::e2e {
namespace {

const crypto::InsecureSecretKeyAccess kAccess = crypto::InsecureSecretKeyAccess::Get();

crypto::SecretBytes Secret(std::string_view bytes) {
  return crypto::SecretBytes::CopyFrom(bytes, kAccess);
}

// How the master key `key` fares against the keyring copy at `path`: OK, or FailedPrecondition
// for a key that does not fit.
StatusCode KeyAgainst(const std::string& path, const std::string& key) {
  auto info = crypto::Keyring::InspectCopy(ReadFile(path), Secret(key), nullptr);
  return info.ok() ? StatusCode::kOk : info.status().code();
}

class E2eKeyCustodyTest : public VaultTest {
 protected:
  bool StartInSetUp() const override { return false; }

  void AddMirror() {
    const std::string dir = vault_.ScratchPath("mirror");
    std::filesystem::create_directory(dir);
    mirror_ = dir + "/keyring";
    vault_.EditConfig("socket_mode = \"0660\"",
                      "socket_mode = \"0660\"\nkeyring_mirrors = [\"" + mirror_ + "\"]");
  }
  std::string keyring() const { return vault_.data_dir() + "/keyring"; }
  ProcessResult Admin(const std::vector<std::string>& args, const std::string& input = "") {
    return vault_.Cli(args, {{"PHIVAULT_ROLE", "vault_admin"}, {"PHIVAULT_PURPOSE", "HOPERAT"}},
                      input);
  }
  // Replaces the key file by `key` (it is 0400: removed, then written anew).
  void InstallKey(const std::string& key) {
    std::filesystem::remove(vault_.key_path());
    ASSERT_TRUE(crypto::WriteMasterKeyFile(vault_.key_path(), Secret(key)).ok());
  }
  void ExpectStartRefused(const std::string& why) {
    vault_.SpawnOnly();
    auto code = vault_.daemon().WaitExit(std::chrono::seconds(30));
    ASSERT_TRUE(code.has_value());
    EXPECT_NE(*code, 0);
    EXPECT_NE(ReadFile(vault_.daemon().stderr_path()).find(why), std::string::npos)
        << ReadFile(vault_.daemon().stderr_path());
  }

  std::string mirror_;
};

TEST_F(E2eKeyCustodyTest, RotationUnderLoadLosesNothingAndTheOldKeyNoLongerOpensTheKeyring) {
  ASSERT_TRUE(vault_.ok());
  AddMirror();
  ASSERT_TRUE(vault_.Start());
  const std::string old_key = ReadFile(vault_.key_path());
  ASSERT_EQ(old_key.size(), 32u);

  // Clients create and read records before, during and after the rotation.
  struct Stored {
    std::string id, content;
  };
  std::mutex mu;
  std::vector<Stored> stored;
  std::vector<std::string> failures;
  std::atomic<bool> rotated{false}, stop{false};
  std::atomic<int> after_rotation{0};
  constexpr int kClients = 4;
  std::vector<std::thread> clients;
  for (int t = 0; t < kClients; ++t) {
    clients.emplace_back([&, t] {
      auto c = vault_.AppClient();
      for (int i = 0; !stop.load(); ++i) {
        const std::string patient = "synthetic-rotate-" + std::to_string(t);
        const std::string content = "note " + std::to_string(t) + "/" + std::to_string(i);
        auto created = c.CreateRecord(Physician(), {patient, "clinical_note", "text/plain",
                                                    "2026-11-01", "Dr. Synthetic", content});
        if (!created.ok()) {
          std::lock_guard<std::mutex> lock(mu);
          failures.push_back("create: " + created.error().Message());
          continue;
        }
        auto read = c.ReadRecord(Physician(), created->record_id);
        std::lock_guard<std::mutex> lock(mu);
        if (!read.ok() || read->content != content) {
          failures.push_back("read back " + created->record_id);
        }
        stored.push_back({created->record_id, content});
        if (rotated.load()) after_rotation.fetch_add(1);
      }
    });
  }
  // Some load before the rotation starts.
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (stored.size() >= 40 || !failures.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ProcessResult r = Admin({"--json", "key", "rotate"});
  rotated = true;
  while (after_rotation.load() < 40) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!failures.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stop = true;
  for (auto& t : clients) t.join();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(failures.empty()) << failures.front();
  const nlohmann::json result = nlohmann::json::parse(r.out);
  EXPECT_EQ(result["source"], "file");
  EXPECT_EQ(result["keyring_copies"], 2);
  EXPECT_GT(result["audit_seq"].get<uint64_t>(), 0u);
  const std::string pending = result["pending_key_path"];
  EXPECT_EQ(pending, vault_.data_dir() + "/master-key.next");
  struct stat st;
  ASSERT_EQ(::stat(pending.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0400u);
  const std::string new_key = ReadFile(pending);
  ASSERT_EQ(new_key.size(), 32u);
  EXPECT_NE(new_key, old_key);

  // A second rotation before the new key is installed is refused: it would replace that key.
  ProcessResult again = Admin({"key", "rotate"});
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.err.find("waiting at " + pending), std::string::npos) << again.err;

  // Everything written before, during and after reads back.
  auto c = vault_.AppClient();
  for (const auto& s : stored) {
    auto read = c.ReadRecord(Physician(), s.id);
    ASSERT_TRUE(read.ok()) << s.id << ": " << read.error().Message();
    EXPECT_EQ(read->content, s.content);
  }
  vault_.Stop();

  // The old key opens neither the keyring nor its mirror; the new one opens both.
  EXPECT_EQ(KeyAgainst(keyring(), old_key), StatusCode::kFailedPrecondition);
  EXPECT_EQ(KeyAgainst(mirror_, old_key), StatusCode::kFailedPrecondition);
  EXPECT_EQ(KeyAgainst(keyring(), new_key), StatusCode::kOk);
  EXPECT_EQ(KeyAgainst(mirror_, new_key), StatusCode::kOk);

  // Not installed yet: the daemon starts with the pending key, and keeps it.
  ASSERT_TRUE(vault_.Start());
  EXPECT_NE(
      ReadFile(vault_.daemon().stderr_path()).find("opened it with the key of the last rotation"),
      std::string::npos);
  EXPECT_EQ(ReadNote(stored.front().id), stored.front().content);
  vault_.Stop();
  EXPECT_TRUE(std::filesystem::exists(pending));

  // Installed: the daemon opens with the configured key and shreds the pending one.
  InstallKey(new_key);
  ASSERT_TRUE(vault_.Start());
  EXPECT_EQ(ReadNote(stored.back().id), stored.back().content);
  vault_.Stop();
  EXPECT_FALSE(std::filesystem::exists(pending));

  // The old key, put back, no longer starts the vault.
  InstallKey(old_key);
  ExpectStartRefused("master key does not match the keyring");
}

TEST_F(E2eKeyCustodyTest, PassphraseRotationNeedsTheNewPassphraseAfterwards) {
  ASSERT_TRUE(vault_.ok());
  vault_.EditConfig("source = \"file\"\nfile = \"" + vault_.key_path() + "\"",
                    "source = \"passphrase\"\npassphrase_env = \"PV_TEST_PASSPHRASE\"\n"
                    "salt = \"c3ludGhldGljLXNhbHQxNg==\"\nopslimit = 1\nmemlimit = 8192");
  vault_.SetDaemonEnv({{"PV_TEST_PASSPHRASE", "old synthetic passphrase"}});
  ASSERT_TRUE(vault_.Start());
  const std::string id = StoreNote("synthetic-rotate-pass", "kept across the rotation");

  // The passphrase source needs the new passphrase; the file sources' form is refused.
  ProcessResult missing = Admin({"key", "rotate"});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("new_passphrase' is required"), std::string::npos) << missing.err;
  const std::string file = vault_.ScratchPath("new-passphrase");
  WriteFile(file, "new synthetic \"passphrase\"\n");
  ProcessResult r = Admin({"--json", "key", "rotate", "--new-passphrase-file", file});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json result = nlohmann::json::parse(r.out);
  EXPECT_EQ(result["source"], "passphrase");
  EXPECT_TRUE(result["pending_key_path"].is_null());
  EXPECT_EQ(ReadNote(id), "kept across the rotation");
  vault_.Stop();

  ExpectStartRefused("master key does not match");
  vault_.SetDaemonEnv({{"PV_TEST_PASSPHRASE", "new synthetic \"passphrase\""}});
  ASSERT_TRUE(vault_.Start());
  EXPECT_EQ(ReadNote(id), "kept across the rotation");
}

// A crash after the new key was written but before the keyring was re-sealed: the configured key
// still opens the keyring, so the pending key is a leftover and is shredded at start.
TEST_F(E2eKeyCustodyTest, APendingKeyThatNeverReachedTheKeyringIsRemovedAtStart) {
  ASSERT_TRUE(vault_.ok());
  ASSERT_TRUE(vault_.Start());
  const std::string id = StoreNote("synthetic-rotate-stale", "kept under the old key");
  vault_.Stop();
  const std::string pending = vault_.data_dir() + "/master-key.next";
  ASSERT_TRUE(crypto::WriteMasterKeyFile(pending, Secret(RandomBytes(32))).ok());
  ASSERT_TRUE(vault_.Start());
  EXPECT_FALSE(std::filesystem::exists(pending));
  EXPECT_EQ(ReadNote(id), "kept under the old key");
  // Rotation is the vault administrator's: a physician is refused (and the refusal audited).
  ProcessResult denied = vault_.Cli({"key", "rotate"}, {{"PHIVAULT_ROLE", "physician"}});
  EXPECT_EQ(denied.exit_code, 3) << denied.err;
  EXPECT_FALSE(std::filesystem::exists(pending));
  // And the next rotation is not blocked by the leftover.
  ProcessResult r = Admin({"key", "rotate"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("The new key is at " + pending), std::string::npos) << r.out;
}

// The share lines of `phivault recovery-kit create` output (its comments dropped).
std::vector<std::string> ShareLines(const std::string& out) {
  std::vector<std::string> lines;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("PVRK-", 0) == 0) lines.push_back(line);
  }
  return lines;
}

TEST_F(E2eKeyCustodyTest, ThreeOfFiveSharesRestoreAKeyTheVaultOpensWithAndTwoDoNot) {
  ASSERT_TRUE(vault_.ok());
  ASSERT_TRUE(vault_.Start());
  const std::string id = StoreNote("synthetic-kit-1", "recovered with the kit");
  vault_.Stop();

  ProcessResult kit = vault_.Cli({"recovery-kit", "create", "--shares", "5", "--threshold", "3",
                                  "--key-file", vault_.key_path()});
  ASSERT_EQ(kit.exit_code, 0) << kit.err;
  const std::vector<std::string> shares = ShareLines(kit.out);
  ASSERT_EQ(shares.size(), 5u) << kit.out;
  const std::string original = ReadFile(vault_.key_path());
  EXPECT_EQ(kit.out.find(crypto::HexEncode(original)), std::string::npos);
  std::filesystem::remove(vault_.key_path());  // the key is lost

  // Two shares: refused, nothing written.
  const std::string restored = vault_.ScratchPath("restored.key");
  ProcessResult two = vault_.Cli({"recovery-kit", "combine", "--out", restored}, {},
                                 shares[0] + "\n" + shares[3] + "\n");
  EXPECT_NE(two.exit_code, 0);
  EXPECT_NE(two.err.find("3 shares are needed to restore the key, 2 given"), std::string::npos)
      << two.err;
  EXPECT_FALSE(std::filesystem::exists(restored));

  // A mistyped share is named.
  std::string typo = shares[2];
  typo[10] = typo[10] == 'A' ? 'B' : 'A';
  ProcessResult typed = vault_.Cli({"recovery-kit", "combine", "--out", restored}, {},
                                   shares[0] + "\n" + shares[1] + "\n" + typo + "\n");
  EXPECT_NE(typed.exit_code, 0);
  EXPECT_NE(typed.err.find("share 3: checksum mismatch"), std::string::npos) << typed.err;
  EXPECT_FALSE(std::filesystem::exists(restored));

  // Three shares, checked against the keyring, restore the key; the vault opens with it.
  ProcessResult three = vault_.Cli(
      {"recovery-kit", "combine", "--out", vault_.key_path(), "--keyring", keyring()}, {},
      "# holders 5, 2 and 4\n" + shares[4] + "\n" + shares[1] + "\n" + shares[3] + "\n");
  ASSERT_EQ(three.exit_code, 0) << three.err;
  EXPECT_NE(three.out.find("it opens the keyring"), std::string::npos) << three.out;
  EXPECT_EQ(ReadFile(vault_.key_path()), original);
  ASSERT_TRUE(vault_.Start());
  EXPECT_EQ(ReadNote(id), "recovered with the kit");
}

TEST_F(E2eKeyCustodyTest, KeyringExportComesBackAsAKeyringTheVaultServesFrom) {
  ASSERT_TRUE(vault_.ok());
  ASSERT_TRUE(vault_.Start());
  const std::string id = StoreNote("synthetic-export-1", "kept in the export");
  // Exported while the daemon serves.
  const std::string exported = vault_.ScratchPath("keyring.pvkx");
  ProcessResult r = vault_.Cli({"--json", "keyring", "export", exported, "--keyring", keyring(),
                                "--key-file", vault_.key_path()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  struct stat st;
  ASSERT_EQ(::stat(exported.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0400u);
  // Never over an existing file.
  ProcessResult again = vault_.Cli(
      {"keyring", "export", exported, "--keyring", keyring(), "--key-file", vault_.key_path()});
  EXPECT_EQ(again.exit_code, 2);
  vault_.Stop();

  // The keyring is lost; the import restores it, and refuses to overwrite it afterwards.
  std::filesystem::remove(keyring());
  ExpectStartRefused("keyring");
  ProcessResult imported = vault_.Cli(
      {"keyring", "import", exported, "--to", keyring(), "--key-file", vault_.key_path()});
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  ProcessResult twice = vault_.Cli(
      {"keyring", "import", exported, "--to", keyring(), "--key-file", vault_.key_path()});
  EXPECT_NE(twice.exit_code, 0);
  EXPECT_NE(twice.err.find("never overwrites a keyring"), std::string::npos) << twice.err;
  ASSERT_TRUE(vault_.Start());
  EXPECT_EQ(ReadNote(id), "kept in the export");
}

}  // namespace
}  // namespace phivault::e2e
