// The keyring under injected faults: a crash (a failed or torn write, or lost unsynced writes,
// and nothing after it) at every write of every kind of update leaves the old or the new state; a
// full disk refuses new keys but still destroys; a format-1 keyring is migrated in place,
// crash-safely.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "crypto/keyring.h"
#include "tests/crypto/test_util.h"

namespace phivault::crypto {
namespace {

using testing::ReadFileBytes;
using testing::Secret;
using testing::TempDir;
using testing::WriteFileBytes;

// How an injected crash hits the write it stops at.
enum class CrashMode {
  kFail,          // the write or sync fails, nothing of it lands
  kTear,          // a failing write lands half of its bytes
  kDropUnsynced,  // writes land only at their file's next sync; the crash loses the rest
};

// The real file system, until the armed operation: that write or sync fails, and so does every
// mutation after it, as if the machine had stopped there (see CrashMode for what lands). With
// `full_disk`, writes that would grow a file fail.
class FaultyFiles final : public KeyringFiles {
 public:
  void Arm(int fail_at, CrashMode mode) {
    ops_ = 0;
    fail_at_ = fail_at;
    mode_ = mode;
    crashed_ = false;
    pending_.clear();
  }
  void set_full_disk(bool full) { full_disk_ = full; }
  bool crashed() const { return crashed_; }

  StatusOr<std::string> Read(const std::string& path) override {
    auto bytes = real().Read(path);
    if (!bytes.ok()) return bytes;
    for (const auto& [offset, data] : pending_[path]) {
      if (bytes->size() < offset + data.size()) bytes->resize(offset + data.size(), '\0');
      bytes->replace(offset, data.size(), data);
    }
    return bytes;
  }
  bool Exists(const std::string& path) override { return real().Exists(path); }
  Status Create(const std::string& path, std::string_view data) override {
    PV_RETURN_IF_ERROR(Step());
    if (full_disk_) return ResourceExhausted("injected: disk full creating " + path);
    return real().Create(path, data);
  }
  Status WriteAt(const std::string& path, uint64_t offset, std::string_view data) override {
    if (full_disk_) {
      auto size = Read(path);
      if (size.ok() && offset + data.size() > size->size()) {
        return ResourceExhausted("injected: disk full writing " + path);
      }
    }
    if (Status s = Step(); !s.ok()) {
      if (mode_ == CrashMode::kTear && ops_ == fail_at_ + 1) {
        (void)real().WriteAt(path, offset, data.substr(0, data.size() / 2));
      }
      return s;
    }
    if (mode_ == CrashMode::kDropUnsynced) {
      pending_[path].emplace_back(offset, std::string(data));
      return Status::Ok();
    }
    return real().WriteAt(path, offset, data);
  }
  Status Sync(const std::string& path) override {
    PV_RETURN_IF_ERROR(Step());
    for (const auto& [offset, data] : pending_[path]) {
      PV_RETURN_IF_ERROR(real().WriteAt(path, offset, data));
    }
    pending_.erase(path);
    return real().Sync(path);
  }
  Status Shred(const std::string& path) override {
    PV_RETURN_IF_ERROR(Step());
    return real().Shred(path);
  }

 private:
  static KeyringFiles& real() { return PosixKeyringFiles(); }
  Status Step() {
    const int op = ops_++;
    if (crashed_ || (fail_at_ >= 0 && op >= fail_at_)) {
      crashed_ = true;
      pending_.clear();  // what was not synced is lost
      return Unavailable("injected crash");
    }
    return Status::Ok();
  }

  int ops_ = 0;
  int fail_at_ = -1;
  CrashMode mode_ = CrashMode::kFail;
  bool crashed_ = false;
  bool full_disk_ = false;
  std::map<std::string, std::vector<std::pair<uint64_t, std::string>>> pending_;
};

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Two copies hold the same bytes, up to zeros at the end (a crash can leave one copy longer).
bool SameCopy(std::string a, std::string b) {
  while (!a.empty() && a.back() == '\0') a.pop_back();
  while (!b.empty() && b.back() == '\0') b.pop_back();
  return a == b;
}

// The sealed key of epoch `id` in a format-2 file ("" if absent): slots start at 16384 and are
// 172 bytes, the sealed key 68 bytes into the slot (crypto/keyring.h).
std::string SealedKeyOf(const std::string& file, std::string_view id) {
  std::string field(id);
  field.resize(48, '\0');
  for (size_t off = 16384; off + 172 <= file.size(); off += 172) {
    if (file.compare(off, 48, field) == 0) return file.substr(off + 68, 72);
  }
  return "";
}

class KeyringFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    master_ = RandomBytes(32);
    std::filesystem::create_directory(dir_.Sub("m"));
  }
  std::string primary() const { return dir_.Sub("keyring"); }
  std::string mirror() const { return dir_.Sub("m/keyring"); }
  KeyringOptions Options(KeyringFiles* files = nullptr) const {
    KeyringOptions o{primary(), {mirror()}};
    o.files = files;
    return o;
  }

  // A keyring with two epochs; `ct` is sealed under the first.
  void Prepare() {
    std::filesystem::remove(primary());
    std::filesystem::remove(mirror());
    auto keyring = Keyring::Create(Options(), Secret(master_));
    ASSERT_TRUE(keyring.ok()) << keyring.status().ToString();
    auto first = (*keyring)->GetOrCreateEpoch("d20300101");
    ASSERT_TRUE(first.ok());
    ASSERT_TRUE((*keyring)->GetOrCreateEpoch("d20300102").ok());
    ct_ = (*first)->Encrypt("dek", "aad");
    sealed_first_ = SealedKeyOf(ReadFileBytes(primary()), "d20300101");
    ASSERT_EQ(sealed_first_.size(), 72u);
  }

  // Reopens with the real file system under `master` (or, failing that, `other`: after a crash
  // during a rotation either key may be the one that opens); fails the test unless one does.
  std::unique_ptr<Keyring> Reopen(const std::string& master, const std::string& other = "") {
    auto keyring = Keyring::Open(Options(), Secret(master));
    if (!keyring.ok() && !other.empty()) {
      // The key that does not fit is told so, not that the keyring is damaged.
      EXPECT_EQ(keyring.status().code(), StatusCode::kFailedPrecondition)
          << keyring.status().ToString();
      keyring = Keyring::Open(Options(), Secret(other));
    }
    EXPECT_TRUE(keyring.ok()) << keyring.status().ToString();
    return keyring.ok() ? std::move(*keyring) : nullptr;
  }

  // Runs `update` on a keyring whose writes crash at the k-th operation, for every k until the
  // update completes untouched, then calls `check` on the reopened keyring.
  template <typename Update, typename Check>
  void AtEveryWrite(Update update, Check check, const std::string& other_master = "") {
    for (CrashMode mode : {CrashMode::kFail, CrashMode::kTear, CrashMode::kDropUnsynced}) {
      for (int k = 0;; ++k) {
        SCOPED_TRACE("crash at operation " + std::to_string(k) + " mode " +
                     std::to_string(static_cast<int>(mode)));
        Prepare();
        FaultyFiles faults;
        bool crashed = false;
        {
          auto keyring = Keyring::Open(Options(&faults), Secret(master_));
          ASSERT_TRUE(keyring.ok()) << keyring.status().ToString();
          faults.Arm(k, mode);
          update(**keyring);
          crashed = faults.crashed();
        }
        auto reopened = Reopen(master_, other_master);
        ASSERT_NE(reopened, nullptr);
        check(*reopened);
        EXPECT_TRUE(SameCopy(ReadFileBytes(mirror()), ReadFileBytes(primary())));
        if (!crashed) break;
        ASSERT_LT(k, 200) << "the update never completes";
      }
    }
  }

  TempDir dir_;
  std::string master_;
  std::string ct_;
  std::string sealed_first_;
};

TEST_F(KeyringFaultTest, CrashDuringEpochCreationLeavesOldOrNewState) {
  AtEveryWrite([](Keyring& k) { (void)k.GetOrCreateEpoch("d20300103"); },
               [&](Keyring& k) {
                 auto created = k.GetEpoch("d20300103");
                 EXPECT_TRUE(created.ok() || created.status().code() == StatusCode::kNotFound)
                     << created.status().ToString();
                 EXPECT_EQ(k.GetEpoch("d20300101").value()->Decrypt(ct_, "aad").value(), "dek");
                 EXPECT_EQ(k.ListEpochs().size(), created.ok() ? 3u : 2u);
               });
}

TEST_F(KeyringFaultTest, CrashDuringDestructionLeavesOldOrNewStateAndNewMeansGone) {
  AtEveryWrite([](Keyring& k) { (void)k.DestroyEpoch("d20300101"); },
               [&](Keyring& k) {
                 auto key = k.GetEpoch("d20300101");
                 if (key.ok()) {
                   EXPECT_EQ((*key)->Decrypt(ct_, "aad").value(), "dek");
                 } else {
                   EXPECT_EQ(key.status().code(), StatusCode::kFailedPrecondition);
                   // Once destroyed, the sealed key is in no copy (the reopen scrubbed any
                   // half an interrupted update left behind).
                   EXPECT_FALSE(Contains(ReadFileBytes(primary()), sealed_first_));
                   EXPECT_FALSE(Contains(ReadFileBytes(mirror()), sealed_first_));
                 }
                 EXPECT_TRUE(k.GetEpoch("d20300102").ok());
               });
}

TEST_F(KeyringFaultTest, CrashDuringRotationLeavesTheOldOrTheNewMasterKeyWorking) {
  const std::string new_master = RandomBytes(32);
  AtEveryWrite([&](Keyring& k) { (void)k.Rotate(Secret(new_master)); },
               [&](Keyring& k) {
                 EXPECT_EQ(k.GetEpoch("d20300101").value()->Decrypt(ct_, "aad").value(), "dek");
                 EXPECT_EQ(k.ListEpochs().size(), 2u);
               },
               new_master);
}

// After a crash at any write of a rotation exactly one of the two keys opens the keyring (and
// its mirror, once repaired): never neither, and never the old key once the new one is in force.
TEST_F(KeyringFaultTest, AfterACrashDuringRotationExactlyOneMasterKeyOpensTheKeyring) {
  const std::string new_master = RandomBytes(32);
  for (CrashMode mode : {CrashMode::kFail, CrashMode::kTear, CrashMode::kDropUnsynced}) {
    for (int k = 0;; ++k) {
      SCOPED_TRACE("crash at operation " + std::to_string(k) + " mode " +
                   std::to_string(static_cast<int>(mode)));
      Prepare();
      FaultyFiles faults;
      {
        auto keyring = Keyring::Open(Options(&faults), Secret(master_));
        ASSERT_TRUE(keyring.ok());
        faults.Arm(k, mode);
        (void)(*keyring)->Rotate(Secret(new_master));
      }
      const bool old_opens = Keyring::Open(Options(), Secret(master_)).ok();
      bool new_opens = false;
      {
        auto with_new = Keyring::Open(Options(), Secret(new_master));
        new_opens = with_new.ok();
        if (new_opens) {
          EXPECT_EQ((*with_new)->GetEpoch("d20300101").value()->Decrypt(ct_, "aad").value(), "dek");
        }
      }
      EXPECT_NE(old_opens, new_opens);
      if (new_opens) {
        // Repaired at that open: the mirror too is under the new key only.
        EXPECT_EQ(Keyring::Open({mirror(), {}}, Secret(master_)).status().code(),
                  StatusCode::kFailedPrecondition);
      }
      if (!faults.crashed()) break;
      ASSERT_LT(k, 200);
    }
  }
}

TEST_F(KeyringFaultTest, FullDiskRefusesNewEpochsButStillDestroys) {
  Prepare();
  FaultyFiles faults;
  auto keyring = Keyring::Open(Options(&faults), Secret(master_));
  ASSERT_TRUE(keyring.ok()) << keyring.status().ToString();
  faults.set_full_disk(true);
  auto refused = (*keyring)->GetOrCreateEpoch("d20300103");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ((*keyring)->GetEpoch("d20300103").status().code(), StatusCode::kNotFound);
  // A destruction rewrites slots in place: it needs no new space.
  EXPECT_TRUE((*keyring)->DestroyEpoch("d20300101").ok());
  EXPECT_FALSE(Contains(ReadFileBytes(primary()), sealed_first_));
  EXPECT_FALSE(Contains(ReadFileBytes(mirror()), sealed_first_));
  faults.set_full_disk(false);
  EXPECT_TRUE((*keyring)->GetOrCreateEpoch("d20300103").ok());
  keyring->reset();
  auto reopened = Reopen(master_);
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(reopened->GetEpoch("d20300101").status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(reopened->GetEpoch("d20300103").ok());
}

// A format-1 keyring as the previous version wrote it: header "PVKR" | u32 1 | u32 count |
// sealed check, slots id(48) | u32 state | i64 created | i64 destroyed | sealed key(72), then
// SHA-256 of it all with the sealed keys counted as zero.
std::string Format1File(const Aead& master,
                        const std::vector<std::pair<std::string, std::string>>& slots) {
  auto le = [](uint64_t v, int n) {
    std::string out;
    for (int i = 0; i < n; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    return out;
  };
  std::string out = "PVKR" + le(1, 4) + le(slots.size(), 4) +
                    master.Encrypt("phivault keyring check value v01", "phivault/keyring/check/v1");
  std::string covered = out;
  for (const auto& [id, key] : slots) {
    std::string field = id;
    field.resize(48, '\0');
    const std::string meta = field + le(1, 4) + le(1700000000, 8) + le(0, 8);
    out += meta + WrapKey(master, Secret(key), "phivault/keyring/slot/v1" + id);
    covered += meta + std::string(72, '\0');
  }
  return out + std::string(AsView(Sha256(covered)));
}

TEST_F(KeyringFaultTest, Format1KeyringIsMigratedInPlaceAtEveryCrashPoint) {
  auto master = Aead::Create(Secret(master_));
  ASSERT_TRUE(master.ok());
  const std::string blind_key = RandomBytes(32), epoch_key = RandomBytes(32);
  const std::string v1 = Format1File(**master, {{"svc:blind-index", blind_key},
                                                {"svc:audit", RandomBytes(32)},
                                                {"svc:audit-sign", RandomBytes(32)},
                                                {"d20300101", epoch_key}});
  auto expected_epoch = Aead::Create(Secret(epoch_key));
  auto expected_blind = BlindIndex::Create(Secret(blind_key));
  ASSERT_TRUE(expected_epoch.ok() && expected_blind.ok());
  const std::string ct = (*expected_epoch)->Encrypt("dek", "aad");
  for (int k = 0;; ++k) {
    SCOPED_TRACE("crash at operation " + std::to_string(k));
    std::filesystem::remove(mirror());
    WriteFileBytes(primary(), v1, 0600);
    // Format 1 could leave a temp file behind: a full copy of its time.
    WriteFileBytes(primary() + ".tmp", v1, 0600);
    FaultyFiles faults;
    faults.Arm(k, CrashMode::kTear);
    (void)Keyring::Open({primary(), {}, &faults}, Secret(master_));
    const bool crashed = faults.crashed();
    auto keyring = Keyring::Open({primary(), {}}, Secret(master_));
    ASSERT_TRUE(keyring.ok()) << keyring.status().ToString();
    EXPECT_EQ((*keyring)->GetEpoch("d20300101").value()->Decrypt(ct, "aad").value(), "dek");
    EXPECT_EQ((*keyring)->blind_index().Compute("patient", "MRN-1"),
              (*expected_blind)->Compute("patient", "MRN-1"));
    EXPECT_EQ((*keyring)->vault_id().size(), 32u);
    const std::string migrated = ReadFileBytes(primary());
    EXPECT_EQ(migrated.substr(0, 4), std::string(4, '\0'));  // format-1 header overwritten
    EXPECT_EQ(migrated.substr(8192, 4), "PVK2");
    EXPECT_FALSE(std::filesystem::exists(primary() + ".tmp"));
    const std::string id = (*keyring)->vault_id();
    keyring->reset();
    auto again = Keyring::Open({primary(), {}}, Secret(master_));
    ASSERT_TRUE(again.ok());
    EXPECT_EQ((*again)->vault_id(), id);
    if (!crashed) break;
    ASSERT_LT(k, 100);
  }
}

}  // namespace
}  // namespace phivault::crypto
