// The master key from each of its sources (file, systemd credential, Argon2id passphrase), and a
// disk below its reserve, against the real daemon.
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/e2e/harness.h"

namespace phivault::e2e {
namespace {

constexpr char kPatient[] = "synthetic-keys-1";

class E2eKeySourcesTest : public VaultTest {
 protected:
  bool StartInSetUp() const override { return false; }

  std::string FileKeySection() const {
    return "source = \"file\"\nfile = \"" + vault_.key_path() + "\"";
  }
};

TEST_F(E2eKeySourcesTest, SystemdCredentialServesTheVaultTheKeyFileCreated) {
  ASSERT_TRUE(vault_.ok());
  ASSERT_TRUE(vault_.Start());
  const std::string id = StoreNote(kPatient, "stored with the key file");
  vault_.Stop();

  // The key moves into a credentials directory, as systemd's LoadCredential= provides it.
  const std::string creds = vault_.ScratchPath("credentials");
  std::filesystem::create_directory(creds);
  std::filesystem::rename(vault_.key_path(), creds + "/phivault-master-key");
  vault_.EditConfig(FileKeySection(), "source = \"credential\"");
  vault_.SetDaemonEnv({{"CREDENTIALS_DIRECTORY", creds}});
  ASSERT_TRUE(vault_.Start());
  EXPECT_EQ(ReadNote(id), "stored with the key file");
  vault_.Stop();

  // Without the credentials directory the daemon refuses to start and says why.
  vault_.SetDaemonEnv({});
  vault_.SpawnOnly();
  auto code = vault_.daemon().WaitExit(std::chrono::seconds(20));
  ASSERT_TRUE(code.has_value());
  EXPECT_NE(*code, 0);
  EXPECT_NE(ReadFile(vault_.daemon().stderr_path()).find("CREDENTIALS_DIRECTORY"),
            std::string::npos);
}

TEST_F(E2eKeySourcesTest, PassphraseDerivedKeyOpensOnlyWithTheSamePassphrase) {
  ASSERT_TRUE(vault_.ok());
  // A fresh vault whose master key is derived with Argon2id (minimum cost keeps the test fast).
  vault_.EditConfig(FileKeySection(),
                    "source = \"passphrase\"\npassphrase_env = \"PV_TEST_PASSPHRASE\"\n"
                    "salt = \"c3ludGhldGljLXNhbHQxNg==\"\nopslimit = 1\nmemlimit = 8192");
  vault_.SetDaemonEnv({{"PV_TEST_PASSPHRASE", "correct horse battery staple"}});
  ASSERT_TRUE(vault_.Start());
  const std::string id = StoreNote(kPatient, "stored under a passphrase");
  vault_.Stop();

  vault_.SetDaemonEnv({{"PV_TEST_PASSPHRASE", "correct horse battery stapler"}});
  vault_.SpawnOnly();
  auto code = vault_.daemon().WaitExit(std::chrono::seconds(20));
  ASSERT_TRUE(code.has_value());
  EXPECT_NE(*code, 0);
  EXPECT_NE(ReadFile(vault_.daemon().stderr_path()).find("master key does not match"),
            std::string::npos);

  vault_.SetDaemonEnv({{"PV_TEST_PASSPHRASE", "correct horse battery staple"}});
  ASSERT_TRUE(vault_.Start());
  EXPECT_EQ(ReadNote(id), "stored under a passphrase");
}

TEST_F(E2eKeySourcesTest, DiskBelowReserveRefusesWritesAndReadsWithoutLosingData) {
  ASSERT_TRUE(vault_.ok());
  ASSERT_TRUE(vault_.Start());
  const std::string id = StoreNote(kPatient, "stored before the disk filled");
  vault_.Stop();

  // A reserve larger than any disk: every write, audit entries included, is refused.
  vault_.EditConfig("disk_reserve_bytes = 16777216", "disk_reserve_bytes = 1125899906842624");
  ASSERT_TRUE(vault_.Start());
  auto c = vault_.AppClient();
  auto created = c.CreateRecord(Physician(), {"synthetic-keys-1", "clinical_note", "text/plain",
                                              "2026-11-01", "Dr. Synthetic", "refused"});
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.error().kind, client::ErrorKind::kDiskFull);
  // A read cannot be audited either, so it is refused rather than served unaudited.
  auto read = c.ReadRecord(Physician(), id);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.error().kind, client::ErrorKind::kDiskFull);
  vault_.Stop();

  vault_.EditConfig("disk_reserve_bytes = 1125899906842624", "disk_reserve_bytes = 16777216");
  ASSERT_TRUE(vault_.Start());
  EXPECT_EQ(ReadNote(id), "stored before the disk filled");
}

}  // namespace
}  // namespace phivault::e2e
