// The RocksDB store on a disk that loses power or fails (tests/storage/power_cut_fs.h): after a
// cut, every acknowledged synced write is there and nothing of an unacknowledged one is half
// there; a failed WAL sync fails every writer of its commit group, and the store takes writes
// again by itself once the fault clears, without losing what it acknowledged after that.
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "storage/rocks_store.h"
#include "storage/store.h"
#include "tests/storage/power_cut_fs.h"
#include "tests/testing/power_switch.h"
#include "tests/testing/temp_dir.h"

namespace phivault::storage {
namespace {

using testing::FsFault;
using testing::FsOp;
using testing::PowerCutFs;

class PowerLossStoreTest : public ::testing::Test {
 protected:
  void Open() {
    RocksStoreOptions options;
    options.path = dir_.Sub("db");
    options.reserve_bytes = 1 << 20;
    auto store = OpenRocksStoreOn(options, fs_);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
  }
  // The machine stops: nothing more reaches the disk, the process is gone, and the disk keeps
  // only what was durable (with `seed`, plus a random part of the unsynced tails).
  testing::DropReport CutAndReboot(std::optional<uint64_t> seed = std::nullopt) {
    power_->Cut();
    store_.reset();
    auto report = fs_->DropUnsynced(seed);
    fs_->Clear();
    power_->Restore();
    return report;
  }
  // One failing operation of kind `op` (after a flush of every memtable if `flush_first`): the
  // write fails with Unavailable, reads go on, and once the fault has cleared (count 1) the
  // store takes writes again by itself; after a cut, everything acknowledged is there and the
  // failed write is all or nothing.
  void ExpectRecoversFromOneFault(FsOp op, bool flush_first) {
    ASSERT_NO_FATAL_FAILURE(Open());
    ASSERT_TRUE(store_->Write(Pair("before", "v0"), true).ok());
    if (flush_first) {
      ASSERT_TRUE(store_->Flush().ok());
    }
    fs_->Fail({.ops = static_cast<uint32_t>(op), .count = 1});
    Status failed = store_->Write(Pair("failed", "v1"), true);
    EXPECT_FALSE(failed.ok());
    EXPECT_EQ(failed.code(), StatusCode::kUnavailable) << failed.ToString();
    EXPECT_EQ(fs_->failures_injected(), 1u);
    EXPECT_TRUE(Present("before", "v0"));
    Status last;
    for (int i = 0; i < 300; ++i) {
      last = store_->Write(Pair("after", "v2"), true);
      if (last.ok()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_TRUE(last.ok()) << last.ToString();
    ASSERT_TRUE(store_->Write(Pair("after2", "v3"), true).ok());
    CutAndReboot();
    ASSERT_NO_FATAL_FAILURE(Open());
    EXPECT_TRUE(Present("before", "v0"));
    EXPECT_TRUE(Present("after", "v2"));
    EXPECT_TRUE(Present("after2", "v3"));
    EXPECT_TRUE(AllOrNothing("failed", "v1"));
  }

  // A batch of two puts in two column families, so that a torn batch would show.
  static WriteBatch Pair(const std::string& key, const std::string& value) {
    WriteBatch b;
    b.Put(Cf::kRecords, key, value);
    b.Put(Cf::kAudit, key, "audit of " + value);
    return b;
  }
  // Absent from both column families, or present in both with exactly `value`.
  ::testing::AssertionResult AllOrNothing(const std::string& key, const std::string& value) {
    auto r = store_->Get(Cf::kRecords, key);
    auto a = store_->Get(Cf::kAudit, key);
    if (!r.ok() || !a.ok()) return ::testing::AssertionFailure() << "read failed";
    if (!r->has_value() && !a->has_value()) return ::testing::AssertionSuccess();
    if (r->has_value() && a->has_value() && **r == value && **a == "audit of " + value) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << key << " is half there or altered";
  }
  ::testing::AssertionResult Present(const std::string& key, const std::string& value) {
    auto r = store_->Get(Cf::kRecords, key);
    if (!r.ok()) return ::testing::AssertionFailure() << r.status().ToString();
    if (!r->has_value()) return ::testing::AssertionFailure() << key << " was lost";
    if (**r != value) return ::testing::AssertionFailure() << key << " reads back altered";
    return AllOrNothing(key, value);
  }

  phivault::testing::TempDir dir_;
  std::shared_ptr<phivault::testing::PowerSwitch> power_ =
      std::make_shared<phivault::testing::PowerSwitch>();
  std::shared_ptr<PowerCutFs> fs_ = std::make_shared<PowerCutFs>(power_);
  std::unique_ptr<Store> store_;
};

// The wrapper itself: unsynced writes are lost, synced ones kept (the tests below rely on it).
TEST_F(PowerLossStoreTest, ACutLosesUnsyncedWritesAndKeepsSyncedOnes) {
  ASSERT_NO_FATAL_FAILURE(Open());
  ASSERT_TRUE(store_->Write(Pair("synced", "v1"), /*sync=*/true).ok());
  ASSERT_TRUE(store_->Write(Pair("unsynced", "v2"), /*sync=*/false).ok());
  const auto report = CutAndReboot();
  EXPECT_GT(report.bytes_dropped, 0u);
  ASSERT_NO_FATAL_FAILURE(Open());
  EXPECT_TRUE(Present("synced", "v1"));
  EXPECT_FALSE(store_->Get(Cf::kRecords, "unsynced")->has_value());
}

// Unlogged writes (a sweep's deletes): gone at a cut, even when a synced write came after them,
// until a Flush() makes them durable; they can never be synced on their own.
TEST_F(PowerLossStoreTest, UnloggedWritesLastOnlyOnceFlushed) {
  ASSERT_NO_FATAL_FAILURE(Open());
  WriteBatch lost = Pair("unlogged-lost", "v1");
  lost.set_unlogged(true);
  ASSERT_TRUE(store_->Write(lost, /*sync=*/false).ok());
  EXPECT_TRUE(Present("unlogged-lost", "v1"));  // readable at once
  EXPECT_EQ(store_->Write(lost, /*sync=*/true).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(store_->Write(Pair("synced-after", "v2"), /*sync=*/true).ok());
  CutAndReboot();
  ASSERT_NO_FATAL_FAILURE(Open());
  EXPECT_TRUE(Present("synced-after", "v2"));
  EXPECT_FALSE(store_->Get(Cf::kRecords, "unlogged-lost")->has_value());
  EXPECT_TRUE(AllOrNothing("unlogged-lost", "v1"));

  WriteBatch kept = Pair("unlogged-kept", "v3");
  kept.set_unlogged(true);
  ASSERT_TRUE(store_->Write(kept, /*sync=*/false).ok());
  ASSERT_TRUE(store_->Flush().ok());
  CutAndReboot();
  ASSERT_NO_FATAL_FAILURE(Open());
  EXPECT_TRUE(Present("unlogged-kept", "v3"));
}

// Cuts at every change the store makes to its files while opening, writing and flushing.
TEST_F(PowerLossStoreTest, ACutAtAnyPointKeepsEveryAcknowledgedWrite) {
  std::map<std::string, std::string> acked;
  int next = 0;
  // Opening alone makes about 50 changes (WAL, MANIFEST, OPTIONS, CURRENT, directory syncs).
  for (uint64_t step = 0; step < 40; ++step) {
    const uint64_t cut = 3 * step;
    power_->CutAfter(cut);
    RocksStoreOptions options;
    options.path = dir_.Sub("db");
    options.reserve_bytes = 1 << 20;
    auto store = OpenRocksStoreOn(options, fs_);
    std::string in_flight;
    if (store.ok()) {
      store_ = std::move(*store);
      for (int i = 0; i < 8 && !power_->off(); ++i) {
        const std::string key = "k" + std::to_string(next++);
        in_flight = key;
        if (store_->Write(Pair(key, "value of " + key), true).ok()) acked[key] = "value of " + key;
        if (i == 4) (void)store_->Flush();
      }
    }
    CutAndReboot(cut);
    ASSERT_NO_FATAL_FAILURE(Open());
    for (const auto& [key, value] : acked) ASSERT_TRUE(Present(key, value)) << "cut " << cut;
    if (!in_flight.empty()) {
      ASSERT_TRUE(AllOrNothing(in_flight, "value of " + in_flight)) << "cut " << cut;
    }
    store_.reset();
  }
  EXPECT_GT(acked.size(), 30u);
}

// One failing operation of kind `op` (after a flush of every memtable if `flush_first`): the
// write fails with 503-class Unavailable, reads go on, and once the fault has cleared (count 1)
// the store takes writes again by itself, without being reopened by its owner; after a cut,
// everything acknowledged is there and the failed write is all or nothing.
// A failed WAL sync. The bytes of the failed sync are lost (as Linux drops them after a
// writeback error) even though a later sync of the same file would succeed: nothing
// acknowledged afterwards may sit behind that hole.
TEST_F(PowerLossStoreTest, RecoversByItselfAfterAFailedSyncAndLosesNothingAcknowledged) {
  ExpectRecoversFromOneFault(FsOp::kSync, /*flush_first=*/false);
}

// A failed WAL append right after a flush (every memtable empty): RocksDB's Resume() then moves
// to a new WAL only if a memtable holds something, and the next write would go to the log writer
// that failed (Debian's RocksDB aborts there); the store reopens the database instead.
TEST_F(PowerLossStoreTest, RecoversByItselfAfterAFailedAppendRightAfterAFlush) {
  ExpectRecoversFromOneFault(FsOp::kAppend, /*flush_first=*/true);
}

// Many writers share WAL syncs (group commit) while syncs fail at random: a writer
// whose group's sync failed is never told OK. Then a cut; every acknowledged write is there.
TEST_F(PowerLossStoreTest, AFailedGroupSyncFailsEveryWriterOfTheGroup) {
  for (uint64_t round = 0; round < 4; ++round) {
    ASSERT_NO_FATAL_FAILURE(Open());
    fs_->Fail({.ops = static_cast<uint32_t>(FsOp::kSync), .probability = 0.05, .seed = round + 1});
    std::mutex mu;
    std::map<std::string, std::string> acked;
    std::vector<std::string> tried;
    std::vector<std::thread> writers;
    for (int t = 0; t < 8; ++t) {
      writers.emplace_back([&, t] {
        for (int i = 0; i < 150; ++i) {
          const std::string key =
              "r" + std::to_string(round) + "-t" + std::to_string(t) + "-" + std::to_string(i);
          const bool ok = store_->Write(Pair(key, "value of " + key), true).ok();
          std::lock_guard<std::mutex> lock(mu);
          tried.push_back(key);
          if (ok) acked[key] = "value of " + key;
        }
      });
    }
    for (auto& w : writers) w.join();
    EXPECT_GT(fs_->failures_injected(), 0u);
    CutAndReboot(round);
    ASSERT_NO_FATAL_FAILURE(Open());
    for (const auto& [key, value] : acked) ASSERT_TRUE(Present(key, value)) << "round " << round;
    for (const auto& key : tried) ASSERT_TRUE(AllOrNothing(key, "value of " + key));
    store_.reset();
  }
}

}  // namespace
}  // namespace phivault::storage
