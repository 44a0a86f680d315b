// RocksDB-specific guarantees: the disk reserve, blob files, and that purged values leave no
// bytes behind in any file of the database directory.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include "storage/store.h"
#include "tests/storage/file_search.h"
#include "tests/testing/temp_dir.h"

namespace phivault::storage {
namespace {

using testing::FilesContaining;
using testing::FilesWithSuffix;

// Incompressible bytes, so a value cannot hide from a byte search inside a compressed block.
std::string RandomBytes(size_t n) {
  static std::mt19937_64 rng(std::random_device{}());
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rng());
  return out;
}

class RocksStoreTest : public ::testing::Test {
 protected:
  static RocksStoreOptions SmallReserve() {
    RocksStoreOptions options;
    options.reserve_bytes = 1 << 20;
    return options;
  }

  std::unique_ptr<Store> Open(RocksStoreOptions options = SmallReserve()) {
    options.path = path_;
    auto store = OpenRocksStore(options);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? std::move(*store) : nullptr;
  }

  phivault::testing::TempDir dir_;
  const std::string path_ = dir_.Sub("db");
};

TEST_F(RocksStoreTest, RefusesWritesBelowReserveAndWritesNothing) {
  RocksStoreOptions options;
  options.reserve_bytes = uint64_t{1} << 62;  // more than any disk has
  auto store = Open(options);
  ASSERT_NE(store, nullptr);
  WriteBatch b;
  b.Put(Cf::kRecords, "r", "value");
  b.Put(Cf::kAudit, "a", "entry");
  Status s = store->Write(b, true);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(), "disk space below reserve");
  EXPECT_EQ(*store->Get(Cf::kRecords, "r"), std::nullopt);
  EXPECT_EQ(*store->Get(Cf::kAudit, "a"), std::nullopt);
  auto space = store->Space();
  ASSERT_TRUE(space.ok());
  EXPECT_EQ(space->reserve_bytes, options.reserve_bytes);
}

// synced_writes (GET /v1/status, `phivault bench`'s syncs per request) counts the synced writes
// that reached the log: not unsynced ones, not empty batches, not refused ones.
TEST_F(RocksStoreTest, CountsSyncedWritesThatSucceeded) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->synced_writes(), 0u);
  WriteBatch b;
  b.Put(Cf::kRecords, "r", "value");
  ASSERT_TRUE(store->Write(b, /*sync=*/false).ok());
  EXPECT_EQ(store->synced_writes(), 0u);
  ASSERT_TRUE(store->Write(b, /*sync=*/true).ok());
  ASSERT_TRUE(store->Write(b, /*sync=*/true).ok());
  EXPECT_EQ(store->synced_writes(), 2u);
  ASSERT_TRUE(store->Write(WriteBatch(), /*sync=*/true).ok());
  EXPECT_EQ(store->synced_writes(), 2u);
  store.reset();

  RocksStoreOptions full;
  full.reserve_bytes = uint64_t{1} << 62;  // more than any disk has: every write is refused
  store = Open(full);
  ASSERT_NE(store, nullptr);
  EXPECT_FALSE(store->Write(b, /*sync=*/true).ok());
  EXPECT_EQ(store->synced_writes(), 0u);
}

TEST_F(RocksStoreTest, CountsABatchTwiceAgainstTheReserve) {
  // 100 MiB free, 60 MiB reserve: a batch may take at most 20 MiB, because it lands twice
  // (WAL, then table or blob file) before compaction can reclaim anything.
  RocksStoreOptions options;
  options.reserve_bytes = 60ull << 20;
  options.free_space = [](const std::string&) -> StatusOr<uint64_t> { return 100ull << 20; };
  auto store = Open(options);
  ASSERT_NE(store, nullptr);
  WriteBatch fits;
  fits.Put(Cf::kRecords, "fits", std::string(16ull << 20, 'x'));
  EXPECT_TRUE(store->Write(fits, true).ok());
  WriteBatch too_big;
  too_big.Put(Cf::kRecords, "too-big", std::string(24ull << 20, 'x'));
  EXPECT_EQ(store->Write(too_big, true).code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(*store->Get(Cf::kRecords, "too-big"), std::nullopt);
  EXPECT_TRUE(store->Get(Cf::kRecords, "fits")->has_value());
}

TEST_F(RocksStoreTest, NoticesFreeSpaceShrinking) {
  auto free = std::make_shared<std::atomic<uint64_t>>(1ull << 30);
  RocksStoreOptions options;
  options.reserve_bytes = 256ull << 20;
  options.free_space = [free](const std::string&) -> StatusOr<uint64_t> { return free->load(); };
  auto store = Open(options);
  ASSERT_NE(store, nullptr);
  WriteBatch small;
  small.Put(Cf::kState, "k", "v");
  ASSERT_TRUE(store->Write(small, true).ok());

  free->store(200ull << 20);  // someone else filled the disk
  WriteBatch large;
  large.Put(Cf::kRecords, "large", std::string(2ull << 20, 'x'));
  EXPECT_EQ(store->Write(large, true).code(), StatusCode::kResourceExhausted);  // re-read at once
  // Small writes may use the cached figure, but never for longer than the refresh interval.
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  EXPECT_EQ(store->Write(small, true).code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(store->Space()->free_bytes, 200ull << 20);

  free->store(1ull << 30);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  EXPECT_TRUE(store->Write(small, true).ok());
}

TEST_F(RocksStoreTest, CompactAllRefusesWhenTheDiskCannotHoldACopy) {
  auto free = std::make_shared<std::atomic<uint64_t>>(1ull << 30);
  RocksStoreOptions options;
  options.reserve_bytes = 1 << 20;
  options.free_space = [free](const std::string&) -> StatusOr<uint64_t> { return free->load(); };
  auto store = Open(options);
  ASSERT_NE(store, nullptr);
  WriteBatch b;
  b.Put(Cf::kRecords, "k", RandomBytes(1 << 20));
  ASSERT_TRUE(store->Write(b, true).ok());
  ASSERT_TRUE(store->Flush().ok());
  free->store(4096);
  Status s = store->CompactAll();
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(), "not enough free disk space to compact");
}

// Audited reads must keep working on a full disk: a batch of audit entries alone may use the
// reserve down to its last quarter; anything else stops at the reserve.
TEST_F(RocksStoreTest, AuditOnlyWritesMayUseTheReserveButNotItsLastQuarter) {
  auto free = std::make_shared<std::atomic<uint64_t>>(100ull << 20);
  RocksStoreOptions options;
  options.reserve_bytes = 128ull << 20;  // floor for audit-only writes: 32 MiB
  options.free_space = [free](const std::string&) -> StatusOr<uint64_t> { return free->load(); };
  auto store = Open(options);
  ASSERT_NE(store, nullptr);

  WriteBatch create;
  create.Put(Cf::kRecords, "record", "content");
  create.Put(Cf::kAudit, "create-entry", "entry");
  Status refused = store->Write(create, true);
  EXPECT_EQ(refused.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(refused.message(), "disk space below reserve");
  EXPECT_EQ(*store->Get(Cf::kRecords, "record"), std::nullopt);

  WriteBatch audit;
  audit.Put(Cf::kAudit, "read-entry", "entry");
  audit.set_write_class(WriteClass::kAuditOnly);
  ASSERT_TRUE(store->Write(audit, true).ok());
  EXPECT_EQ(*store->Get(Cf::kAudit, "read-entry"), "entry");

  // Even audit-only writes keep the last quarter: headroom for RocksDB's own files.
  free->store(30ull << 20);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  WriteBatch late;
  late.Put(Cf::kAudit, "late-entry", "entry");
  late.set_write_class(WriteClass::kAuditOnly);
  EXPECT_EQ(store->Write(late, true).code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(*store->Get(Cf::kAudit, "late-entry"), std::nullopt);

  // When space returns, writes resume without reopening.
  free->store(1ull << 30);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  EXPECT_TRUE(store->Write(create, true).ok());
  EXPECT_EQ(*store->Get(Cf::kRecords, "record"), "content");
}

// Data that is still only in memtables will be written again by a flush (at the latest on
// shutdown or restart): it counts against the free space, or a restart could hit ENOSPC.
TEST_F(RocksStoreTest, UnflushedDataCountsAgainstTheReserve) {
  RocksStoreOptions options;
  options.reserve_bytes = 56ull << 20;
  options.free_space = [](const std::string&) -> StatusOr<uint64_t> { return 100ull << 20; };
  auto store = Open(options);
  ASSERT_NE(store, nullptr);
  WriteBatch first;
  first.Put(Cf::kState, "first", std::string(20ull << 20, 'x'));
  ASSERT_TRUE(store->Write(first, true).ok());  // 100 - 2 * 20 = 60 MiB left >= 56
  // The free figure stays at 100 MiB (injected), as if the WAL took no room: twice this batch
  // alone would leave 68 MiB; the 20 MiB held in the memtable make it 48, below the reserve.
  WriteBatch second;
  second.Put(Cf::kState, "second", std::string(16ull << 20, 'x'));
  EXPECT_EQ(store->Write(second, true).code(), StatusCode::kResourceExhausted);
  ASSERT_TRUE(store->Flush().ok());
  EXPECT_TRUE(store->Write(second, true).ok());  // flushed: only the batch itself counts
}

TEST_F(RocksStoreTest, CompactAllLeavesTheReserveFree) {
  auto free = std::make_shared<std::atomic<uint64_t>>(1ull << 30);
  RocksStoreOptions options;
  options.reserve_bytes = 64ull << 20;
  options.free_space = [free](const std::string&) -> StatusOr<uint64_t> { return free->load(); };
  auto store = Open(options);
  ASSERT_NE(store, nullptr);
  WriteBatch b;
  b.Put(Cf::kRecords, "k", RandomBytes(1 << 20));
  ASSERT_TRUE(store->Write(b, true).ok());
  ASSERT_TRUE(store->Flush().ok());
  auto space = store->Space();
  ASSERT_TRUE(space.ok());
  ASSERT_GT(space->live_data_bytes, 0u);
  // Room for a copy of the live data, but not for the reserve beside it.
  free->store(space->live_data_bytes + options.reserve_bytes - 1);
  Status s = store->CompactAll();
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(), "not enough free disk space to compact");
  free->store(space->live_data_bytes + options.reserve_bytes + (1 << 20));
  EXPECT_TRUE(store->CompactAll().ok());
}

TEST_F(RocksStoreTest, LargeRecordValuesGoToBlobFiles) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  WriteBatch small;
  small.Put(Cf::kRecords, "small", RandomBytes(100));
  ASSERT_TRUE(store->Write(small, true).ok());
  ASSERT_TRUE(store->Flush().ok());
  EXPECT_TRUE(FilesWithSuffix(path_, ".blob").empty());

  const std::string value = RandomBytes(64 << 10);
  WriteBatch large;
  large.Put(Cf::kRecords, "large", value);
  ASSERT_TRUE(store->Write(large, true).ok());
  ASSERT_TRUE(store->Flush().ok());
  EXPECT_FALSE(FilesWithSuffix(path_, ".blob").empty());
  EXPECT_EQ(*store->Get(Cf::kRecords, "large"), value);
}

// CompactAll compacts the column families two at a time with RocksDB's compaction pool raised;
// two callers at once, with writes going on, must both finish, remove what was deleted from
// every family, and leave the pool's configured size (max_background_jobs = 2) in force.
TEST_F(RocksStoreTest, ConcurrentCompactAllRemovesDeletedValuesInEveryFamily) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  std::vector<std::string> deleted;
  WriteBatch b;
  WriteBatch del;
  for (Cf cf : {Cf::kRecords, Cf::kAudit, Cf::kState}) {
    for (int i = 0; i < 20; ++i) {
      const std::string key = "k" + std::to_string(i);
      const std::string value = RandomBytes(i % 2 == 0 ? (64 << 10) : 300);
      b.Put(cf, key, value);
      if (i % 4 == 0) {
        deleted.push_back(value);
        del.Delete(cf, key);
      }
    }
  }
  ASSERT_TRUE(store->Write(b, true).ok());
  ASSERT_TRUE(store->Flush().ok());
  ASSERT_TRUE(store->Write(del, true).ok());
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; !stop; ++i) {
      WriteBatch w;
      w.Put(Cf::kState, "live" + std::to_string(i % 50), RandomBytes(100));
      ASSERT_TRUE(store->Write(w, false).ok());
    }
  });
  Status first;
  std::thread other([&] { first = store->CompactAll(); });
  const Status second = store->CompactAll();
  other.join();
  stop = true;
  writer.join();
  ASSERT_TRUE(first.ok()) << first.message();
  ASSERT_TRUE(second.ok()) << second.message();
  for (const auto& gone : deleted)
    EXPECT_EQ(FilesContaining(path_, gone), std::vector<std::string>{});
  EXPECT_TRUE(store->Get(Cf::kAudit, "k1").value().has_value());
  // The newest OPTIONS file RocksDB wrote holds the configured pool size again.
  std::string newest;
  for (const auto& f : std::filesystem::directory_iterator(path_)) {
    const std::string name = f.path().filename().string();
    if (name.rfind("OPTIONS-", 0) == 0 && name > newest) {
      newest = name;
    }
  }
  ASSERT_FALSE(newest.empty());
  std::ifstream in(std::filesystem::path(path_) / newest);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("max_background_jobs=2\n"), std::string::npos);
}

TEST_F(RocksStoreTest, DeletedValuesLeaveNoBytesInAnyFileAfterCompactAll) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const std::string blob_deleted = RandomBytes(100 << 10);
  const std::string blob_kept = RandomBytes(100 << 10);
  const std::string sst_deleted = RandomBytes(200);
  const std::string audit_deleted = RandomBytes(300);
  const std::string audit_kept = RandomBytes(300);
  const std::string wal_only = RandomBytes(50 << 10);

  // Deleted and kept blobs share one blob file, so that file must be rewritten, not just dropped.
  WriteBatch b;
  b.Put(Cf::kRecords, "blob-deleted", blob_deleted);
  b.Put(Cf::kRecords, "blob-kept", blob_kept);
  b.Put(Cf::kRecords, "sst-deleted", sst_deleted);
  b.Put(Cf::kAudit, "audit-deleted", audit_deleted);
  b.Put(Cf::kAudit, "audit-kept", audit_kept);
  ASSERT_TRUE(store->Write(b, true).ok());
  ASSERT_TRUE(store->Flush().ok());
  WriteBatch w;
  w.Put(Cf::kRecords, "wal-only", wal_only);
  ASSERT_TRUE(store->Write(w, true).ok());
  ASSERT_FALSE(FilesContaining(path_, blob_deleted).empty());  // the search finds stored bytes
  ASSERT_FALSE(FilesContaining(path_, wal_only).empty());

  WriteBatch del;
  for (const char* k : {"blob-deleted", "sst-deleted", "wal-only"}) del.Delete(Cf::kRecords, k);
  del.Delete(Cf::kAudit, "audit-deleted");
  ASSERT_TRUE(store->Write(del, true).ok());
  ASSERT_TRUE(store->CompactAll().ok());

  for (const std::string* gone : {&blob_deleted, &sst_deleted, &audit_deleted, &wal_only}) {
    EXPECT_EQ(FilesContaining(path_, *gone), std::vector<std::string>{});
  }
  EXPECT_FALSE(FilesContaining(path_, blob_kept).empty());
  EXPECT_FALSE(FilesContaining(path_, audit_kept).empty());
  EXPECT_EQ(*store->Get(Cf::kRecords, "blob-kept"), blob_kept);
  EXPECT_LE(FilesWithSuffix(path_, ".log").size(), 1u) << "obsolete WAL files were kept";
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(path_) / "archive"));

  store.reset();
  store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*store->Get(Cf::kRecords, "blob-kept"), blob_kept);
  EXPECT_EQ(*store->Get(Cf::kRecords, "blob-deleted"), std::nullopt);
}

// A sweep pauses RocksDB's own compactions while it writes its deletes (CompactAll rewrites
// everything after them anyway). Paused, flushed files pile up; resumed, or after a restart,
// they are merged again; CompactAll works either way.
TEST_F(RocksStoreTest, PausedAutoCompactionsLeaveFlushedFilesUntilResumedOrReopened) {
  constexpr size_t kFlushes = 8;  // twice RocksDB's trigger for an automatic compaction
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto flush_files = [&](int round, size_t flushes) {
    for (size_t f = 0; f < flushes; ++f) {
      WriteBatch b;
      for (int i = 0; i < 50; ++i) {
        b.Put(Cf::kIndexes, "r" + std::to_string(round) + "-" + std::to_string(i),
              RandomBytes(200));
      }
      ASSERT_TRUE(store->Write(b, true).ok());
      ASSERT_TRUE(store->Flush().ok());
    }
  };
  auto tables = [&] { return FilesWithSuffix(path_, ".sst").size(); };
  auto merged_within = [&](size_t below, std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (tables() >= below && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return tables() < below;
  };

  // 40 files: past RocksDB's level-0 trigger that stops writes (36) when compactions run. Paused,
  // writes must go on (a sweep writes all its deletes, and the vault its traffic, before the
  // forced compaction): a stop here would hang this test.
  constexpr size_t kMany = 40;
  ASSERT_TRUE(store->SetAutoCompactions(false).ok());
  flush_files(0, kMany);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // time enough to compact
  EXPECT_GE(tables(), kMany) << "flushed files were compacted while compactions were paused";
  ASSERT_TRUE(store->SetAutoCompactions(true).ok());
  EXPECT_TRUE(merged_within(kMany, std::chrono::seconds(20))) << tables() << " files";

  // Paused again and not resumed: a restart runs them. A compaction already running finishes
  // first (pausing stops new ones), so the count is taken once it has settled.
  ASSERT_TRUE(store->SetAutoCompactions(false).ok());
  for (size_t last = 0; last != tables();) {
    last = tables();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  const size_t before = tables();
  flush_files(1, kFlushes);
  EXPECT_GE(tables(), before + kFlushes);
  store.reset();
  store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(merged_within(before + kFlushes, std::chrono::seconds(20))) << tables() << " files";

  // CompactAll does not need them: it merges the files, paused or not.
  ASSERT_TRUE(store->SetAutoCompactions(false).ok());
  flush_files(2, kFlushes);
  ASSERT_GE(tables(), kFlushes);
  ASSERT_TRUE(store->CompactAll().ok());
  EXPECT_LT(tables(), kFlushes);
  EXPECT_TRUE(store->Get(Cf::kIndexes, "r0-7")->has_value());
  EXPECT_TRUE(store->Get(Cf::kIndexes, "r2-49")->has_value());
}

TEST_F(RocksStoreTest, SecondOpenOfTheSameDirectoryIsUnavailable) {
  auto first = Open();
  ASSERT_NE(first, nullptr);
  RocksStoreOptions options;
  options.path = path_;
  auto second = OpenRocksStore(options);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
}

TEST_F(RocksStoreTest, RefusesADatabaseWithAnUnknownColumnFamily) {
  Open().reset();
  {
    rocksdb::DB* raw = nullptr;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    std::vector<std::string> names;
    ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), path_, &names).ok());
    for (const auto& n : names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::DBOptions(), path_, cfs, &handles, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    rocksdb::ColumnFamilyHandle* extra = nullptr;
    ASSERT_TRUE(db->CreateColumnFamily(rocksdb::ColumnFamilyOptions(), "stranger", &extra).ok());
    handles.push_back(extra);
    for (auto* h : handles) ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
  }
  RocksStoreOptions options;
  options.path = path_;
  auto store = OpenRocksStore(options);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(RocksStoreTest, MissingDirectoryWithoutCreateIsUnavailable) {
  RocksStoreOptions options;
  options.path = path_;
  options.create_if_missing = false;
  auto store = OpenRocksStore(options);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace phivault::storage
