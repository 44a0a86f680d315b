// AuditLog's checkpoints: they carry their signing time, and the stored ones are bounded by time
// (scheduled ones all kept, handed-out ones thinned), however many are asked for.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "crypto/secret.h"
#include "crypto/signing.h"
#include "storage/audit_entry.h"
#include "storage/audit_log.h"
#include "storage/checkpoint.h"
#include "storage/merkle.h"
#include "tests/storage_merkle/memory_store.h"

namespace phivault::storage {
namespace {

constexpr std::string_view kOrigin = "phivault.example/clinic-a/audit";
constexpr int64_t kStart = 1'764'547'200;  // 2025-12-01T00:00:00Z
constexpr int64_t kHour = 3600;
constexpr int64_t kDay = 86400;

class AuditLogTest : public ::testing::Test {
 protected:
  AuditLogTest() {
    if (!crypto::InitSodium().ok()) std::abort();
    signer_ = std::move(crypto::Ed25519Signer::Create(crypto::SecretBytes::Random(32))).value();
    log_ = std::move(AuditLog::Open(store_, *signer_, std::string(kOrigin), [this] {
             return now_;
           })).value();
  }

  void Append() {
    AuditEntry e;
    e.action = "record.read";
    e.outcome = "success";
    ASSERT_TRUE(log_->ledger().Commit({}, std::move(e)).ok());
  }
  std::string Make(CheckpointKind kind) {
    StatusOr<std::string> note = log_->MakeCheckpoint(kind);
    EXPECT_TRUE(note.ok()) << note.status().ToString();
    return note.ok() ? *note : "";
  }
  Checkpoint Open(const std::string& note) {
    StatusOr<Checkpoint> cp = OpenCheckpoint(note, {std::string(kOrigin), signer_->public_key()});
    EXPECT_TRUE(cp.ok()) << cp.status().ToString();
    return cp.ok() ? *cp : Checkpoint{};
  }
  // Stored checkpoints by size, each opened with the log's key.
  std::map<uint64_t, Checkpoint> Stored() {
    std::map<uint64_t, Checkpoint> out;
    StatusOr<std::vector<std::string>> notes = log_->Checkpoints();
    EXPECT_TRUE(notes.ok()) << notes.status().ToString();
    if (!notes.ok()) return out;
    const std::vector<std::string> all = std::move(notes).value();
    for (const std::string& note : all) {
      Checkpoint cp = Open(note);
      out[cp.size] = cp;
    }
    return out;
  }

  testing::MemoryStore store_;
  std::unique_ptr<crypto::Ed25519Signer> signer_;
  int64_t now_ = kStart;
  std::unique_ptr<AuditLog> log_;
};

TEST_F(AuditLogTest, CheckpointsCarryTheirSigningTime) {
  EXPECT_EQ(log_->MakeCheckpoint(CheckpointKind::kScheduled).status().code(),
            StatusCode::kFailedPrecondition);
  Append();
  now_ = kStart + 42;
  const Checkpoint cp = Open(Make(CheckpointKind::kHandedOut));
  EXPECT_EQ(cp.size, 1u);
  EXPECT_EQ(cp.time_unix_seconds, kStart + 42);
  EXPECT_EQ(cp.root, log_->tree().Root());
}

TEST_F(AuditLogTest, AScheduledCheckpointOfAnUnchangedLogIsNotSignedAgain) {
  Append();
  const std::string first = Make(CheckpointKind::kScheduled);
  now_ += 3600;
  EXPECT_EQ(Make(CheckpointKind::kScheduled), first);
  // A handed-out one is always signed when it is handed out.
  const Checkpoint fresh = Open(Make(CheckpointKind::kHandedOut));
  EXPECT_EQ(fresh.time_unix_seconds, now_);
  EXPECT_EQ(Stored().size(), 1u);
}

TEST_F(AuditLogTest, AThousandHandedOutCheckpointsDoNotLeaveAThousandStored) {
  // A thousand exports or fresh-checkpoint requests in under a minute, each after a new entry.
  for (int i = 0; i < 1000; ++i) {
    Append();
    now_ = kStart + i / 20;  // 50 seconds in all
    Make(CheckpointKind::kHandedOut);
  }
  // For an hour they are all kept: the next export still holds each one just handed out.
  EXPECT_EQ(Stored().size(), 1000u);
  // Then only the newest of that hour stays.
  now_ = kStart + 2 * kHour;
  Append();
  Make(CheckpointKind::kHandedOut);
  const auto stored = Stored();
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(stored.begin()->first, 1000u);
  EXPECT_EQ(stored.rbegin()->first, 1001u);
}

TEST_F(AuditLogTest, HandedOutCheckpointsAreBoundedByTimeNotByRequests) {
  // A thousand over four days, about one every six minutes.
  constexpr int kCount = 1000;
  constexpr int64_t kEvery = 4 * kDay / kCount;
  for (int i = 0; i < kCount; ++i) {
    Append();
    now_ = kStart + i * kEvery;
    Make(CheckpointKind::kHandedOut);
  }
  // Before the whole UTC hour an hour before now: one per hour. After it: all of them.
  const int64_t horizon = (now_ - kHour) - (now_ - kHour) % kHour;
  std::map<int64_t, int> per_hour;
  uint64_t recent = 0;
  for (const auto& [size, cp] : Stored()) {
    ASSERT_TRUE(cp.time_unix_seconds.has_value());
    if (*cp.time_unix_seconds < horizon) {
      ++per_hour[*cp.time_unix_seconds / kHour];
    } else {
      ++recent;
    }
  }
  EXPECT_EQ(per_hour.size(), static_cast<size_t>((horizon - kStart) / kHour));
  for (const auto& [hour, count] : per_hour) EXPECT_EQ(count, 1) << "hour " << hour;
  EXPECT_LE(recent, static_cast<uint64_t>(2 * kHour / kEvery + 1));
}

TEST_F(AuditLogTest, ScheduledCheckpointsAreAllKept) {
  for (int i = 0; i < 30; ++i) {
    Append();
    now_ = kStart + i;
    Make(i % 3 == 0 ? CheckpointKind::kScheduled : CheckpointKind::kHandedOut);
  }
  now_ += 2 * kHour;
  Append();
  Make(CheckpointKind::kHandedOut);
  const auto stored = Stored();
  // Ten scheduled (sizes 1, 4, ..., 28), the newest handed-out one of that hour (30), the new one.
  ASSERT_EQ(stored.size(), 12u);
  for (int i = 0; i < 30; i += 3) EXPECT_EQ(stored.count(static_cast<uint64_t>(i + 1)), 1u) << i;
  EXPECT_EQ(stored.count(30u), 1u);
  EXPECT_EQ(stored.count(31u), 1u);
}

TEST_F(AuditLogTest, AHandedOutCheckpointReplacingAScheduledOneStaysKept) {
  Append();
  Make(CheckpointKind::kScheduled);
  now_ += 1;
  Make(CheckpointKind::kHandedOut);  // same size, signed again
  Append();
  now_ += 1;
  Make(CheckpointKind::kHandedOut);
  now_ += 2 * kHour;
  Append();
  Make(CheckpointKind::kHandedOut);
  // Size 2 is the newest handed-out one of its hour; size 1 stays because it is scheduled.
  const auto stored = Stored();
  ASSERT_EQ(stored.size(), 3u);
  EXPECT_EQ(stored.at(1).time_unix_seconds, kStart + 1);
}

TEST_F(AuditLogTest, CheckpointsBelowASize) {
  for (int i = 0; i < 3; ++i) {
    Append();
    Make(CheckpointKind::kScheduled);
  }
  EXPECT_EQ(log_->Checkpoints(3)->size(), 2u);
  EXPECT_EQ(log_->Checkpoints()->size(), 3u);
  EXPECT_EQ(Open(*log_->LatestCheckpoint()).size, 3u);
}

// The daemon's checkpoint timer signs tree heads while requests append entries: every checkpoint
// signed meanwhile must describe a prefix of the final log, or a verifier holding it would
// report tampering that never happened.
TEST_F(AuditLogTest, CheckpointsSignedWhileEntriesAreAppendedArePrefixesOfTheFinalLog) {
  Append();
  constexpr int kWriters = 4;
  constexpr int kEntriesPerWriter = 40;
  std::atomic<int> writers_done{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&] {
      for (int i = 0; i < kEntriesPerWriter; ++i) Append();
      writers_done.fetch_add(1);
    });
  }
  std::vector<std::string> notes;
  while (writers_done.load() < kWriters) notes.push_back(Make(CheckpointKind::kHandedOut));
  for (std::thread& t : writers) t.join();
  notes.push_back(Make(CheckpointKind::kHandedOut));

  const uint64_t final_size = log_->tree().size();
  ASSERT_EQ(final_size, 1u + kWriters * kEntriesPerWriter);
  ASSERT_GE(notes.size(), 2u);
  const MerkleHash final_root = log_->tree().Root();
  for (const std::string& note : notes) {
    const Checkpoint cp = Open(note);
    ASSERT_GE(cp.size, 1u);
    StatusOr<std::vector<MerkleHash>> proof = log_->tree().ConsistencyProof(cp.size, final_size);
    ASSERT_TRUE(proof.ok()) << proof.status().ToString();
    EXPECT_TRUE(VerifyConsistencyProof(cp.size, final_size, *proof, cp.root, final_root).ok())
        << "checkpoint of size " << cp.size;
  }
}

}  // namespace
}  // namespace phivault::storage
