#include "crypto/master_key.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

#include "tests/crypto/test_util.h"

namespace phivault::crypto {
namespace {

using testing::FileMode;
using testing::ReadFileBytes;
using testing::TempDir;
using testing::WriteFileBytes;

TEST(MasterKeyFileTest, CreateWritesThirtyTwoRandomBytesReadOnlyForOwner) {
  TempDir dir;
  const std::string path = dir.Sub("master.key");
  ASSERT_TRUE(CreateMasterKeyFile(path).ok());
  EXPECT_EQ(FileMode(path), 0400u);
  const std::string on_disk = ReadFileBytes(path);
  ASSERT_EQ(on_disk.size(), kMasterKeyBytes);

  auto key = LoadMasterKeyFile(path);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(key->view(InsecureSecretKeyAccess::Get()), on_disk);

  const std::string other = dir.Sub("other.key");
  ASSERT_TRUE(CreateMasterKeyFile(other).ok());
  EXPECT_NE(ReadFileBytes(other), on_disk);
}

TEST(MasterKeyFileTest, NeverOverwritesAnExistingFile) {
  TempDir dir;
  const std::string path = dir.Sub("master.key");
  ASSERT_TRUE(CreateMasterKeyFile(path).ok());
  const std::string before = ReadFileBytes(path);
  const Status again = CreateMasterKeyFile(path);
  EXPECT_EQ(again.code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(ReadFileBytes(path), before);

  const std::string plain = dir.Sub("notes.txt");
  WriteFileBytes(plain, "not a key", 0600);
  EXPECT_EQ(CreateMasterKeyFile(plain).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(ReadFileBytes(plain), "not a key");
}

TEST(MasterKeyFileTest, WriteStoresAGivenKeyAndShredRemovesIt) {
  TempDir dir;
  const std::string path = dir.Sub("restored.key");
  const std::string key = RandomBytes(32);
  ASSERT_TRUE(WriteMasterKeyFile(path, testing::Secret(key)).ok());
  EXPECT_EQ(FileMode(path), 0400u);
  EXPECT_EQ(ReadFileBytes(path), key);
  EXPECT_EQ(WriteMasterKeyFile(path, testing::Secret(RandomBytes(32))).code(),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(ReadFileBytes(path), key);
  EXPECT_EQ(WriteMasterKeyFile(dir.Sub("short"), testing::Secret(RandomBytes(31))).code(),
            StatusCode::kInvalidArgument);
  ASSERT_TRUE(ShredMasterKeyFile(path).ok());
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_TRUE(ShredMasterKeyFile(path).ok());  // nothing there: done
}

TEST(MasterKeyFileTest, CreateInMissingDirectoryIsNotFound) {
  TempDir dir;
  EXPECT_EQ(CreateMasterKeyFile(dir.Sub("missing/master.key")).code(), StatusCode::kNotFound);
}

TEST(MasterKeyFileTest, LoadRejectsMissingWrongSizeAndExposedFiles) {
  TempDir dir;
  EXPECT_EQ(LoadMasterKeyFile(dir.Sub("absent.key")).status().code(), StatusCode::kNotFound);

  for (size_t size : {0, 31, 33, 64}) {
    const std::string path = dir.Sub("size" + std::to_string(size));
    WriteFileBytes(path, std::string(size, 'k'), 0600);
    auto key = LoadMasterKeyFile(path);
    ASSERT_FALSE(key.ok()) << size;
    EXPECT_EQ(key.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(key.status().message(), "master key file must be exactly 32 bytes");
  }

  for (mode_t mode : {0440, 0404, 0640, 0604, 0644, 0410}) {
    const std::string path = dir.Sub("mode" + std::to_string(mode));
    WriteFileBytes(path, std::string(32, 'k'), mode);
    auto key = LoadMasterKeyFile(path);
    ASSERT_FALSE(key.ok()) << std::oct << mode;
    EXPECT_EQ(key.status().code(), StatusCode::kPermissionDenied);
    EXPECT_EQ(key.status().message(), "master key file must not be readable by group or others");
  }

  const std::string ok = dir.Sub("ok.key");
  WriteFileBytes(ok, std::string(32, 'k'), 0600);
  auto key = LoadMasterKeyFile(ok);
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(key->view(InsecureSecretKeyAccess::Get()), std::string(32, 'k'));
}

// Sets or unsets CREDENTIALS_DIRECTORY for one test and restores it afterwards.
class ScopedCredentialsDir {
 public:
  explicit ScopedCredentialsDir(const char* value) {
    if (const char* old = std::getenv("CREDENTIALS_DIRECTORY")) old_ = old;
    if (value != nullptr) {
      ::setenv("CREDENTIALS_DIRECTORY", value, 1);
    } else {
      ::unsetenv("CREDENTIALS_DIRECTORY");
    }
  }
  ~ScopedCredentialsDir() {
    if (old_) {
      ::setenv("CREDENTIALS_DIRECTORY", old_->c_str(), 1);
    } else {
      ::unsetenv("CREDENTIALS_DIRECTORY");
    }
  }

 private:
  std::optional<std::string> old_;
};

TEST(MasterKeyCredentialTest, ReadsFromCredentialsDirectory) {
  TempDir dir;
  // systemd owns the credentials directory, so group-readable modes are accepted there.
  WriteFileBytes(dir.Sub("phivault-master-key"), std::string(32, 'c'), 0440);
  ScopedCredentialsDir env(dir.path().c_str());
  auto key = LoadMasterKeyCredential("phivault-master-key");
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(key->view(InsecureSecretKeyAccess::Get()), std::string(32, 'c'));

  EXPECT_EQ(LoadMasterKeyCredential("absent").status().code(), StatusCode::kNotFound);
  WriteFileBytes(dir.Sub("short"), std::string(16, 'c'), 0400);
  EXPECT_EQ(LoadMasterKeyCredential("short").status().code(), StatusCode::kInvalidArgument);
  for (const char* bad : {"", ".", "..", "../phivault-master-key", "a/b"}) {
    EXPECT_EQ(LoadMasterKeyCredential(bad).status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(MasterKeyCredentialTest, FailsWithoutCredentialsDirectory) {
  ScopedCredentialsDir env(nullptr);
  EXPECT_EQ(LoadMasterKeyCredential("phivault-master-key").status().code(),
            StatusCode::kFailedPrecondition);
}

// Minimum Argon2id costs keep the tests fast; production uses the MODERATE defaults.
PassphraseParams FastParams(std::string salt = std::string(16, 's')) {
  PassphraseParams p;
  p.salt = std::move(salt);
  p.opslimit = 1;
  p.memlimit = 8192;
  return p;
}

std::string Derive(std::string_view passphrase, const PassphraseParams& params) {
  auto key = DeriveMasterKeyFromPassphrase(passphrase, params);
  EXPECT_TRUE(key.ok()) << key.status().ToString();
  if (!key.ok()) return "";
  EXPECT_EQ(key->size(), kMasterKeyBytes);
  return std::string(key->view(InsecureSecretKeyAccess::Get()));
}

TEST(PassphraseTest, DerivationIsDeterministicAndDependsOnEveryInput) {
  const std::string base = Derive("correct horse battery staple", FastParams());
  EXPECT_EQ(Derive("correct horse battery staple", FastParams()), base);
  EXPECT_NE(Derive("correct horse battery stapler", FastParams()), base);
  EXPECT_NE(Derive("correct horse battery staple", FastParams(std::string(16, 't'))), base);
  PassphraseParams more_ops = FastParams();
  more_ops.opslimit = 2;
  EXPECT_NE(Derive("correct horse battery staple", more_ops), base);
  PassphraseParams more_mem = FastParams();
  more_mem.memlimit = 16384;
  EXPECT_NE(Derive("correct horse battery staple", more_mem), base);
}

TEST(PassphraseTest, RejectsBadParameters) {
  auto code = [](std::string_view pass, const PassphraseParams& p) {
    return DeriveMasterKeyFromPassphrase(pass, p).status().code();
  };
  EXPECT_EQ(code("", FastParams()), StatusCode::kInvalidArgument);
  EXPECT_EQ(code("pass", FastParams(std::string(15, 's'))), StatusCode::kInvalidArgument);
  EXPECT_EQ(code("pass", FastParams(std::string(17, 's'))), StatusCode::kInvalidArgument);
  EXPECT_EQ(code("pass", FastParams("")), StatusCode::kInvalidArgument);
  PassphraseParams zero_ops = FastParams();
  zero_ops.opslimit = 0;
  EXPECT_EQ(code("pass", zero_ops), StatusCode::kInvalidArgument);
  PassphraseParams tiny_mem = FastParams();
  tiny_mem.memlimit = 1024;
  EXPECT_EQ(code("pass", tiny_mem), StatusCode::kInvalidArgument);
  PassphraseParams huge_ops = FastParams();
  huge_ops.opslimit = uint64_t{1} << 33;
  EXPECT_EQ(code("pass", huge_ops), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace phivault::crypto
