// The behaviour every Store engine must have. An engine joins by adding a StoreEngine to the
// INSTANTIATE_TEST_SUITE_P list at the bottom.
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "storage/store.h"
#include "tests/testing/temp_dir.h"

namespace phivault::storage {
namespace {

struct StoreEngine {
  std::string name;
  // Opens the engine's store kept under `dir`; opening the same dir again must see the data.
  std::function<StatusOr<std::unique_ptr<Store>>(const std::string& dir)> open;
};

using KV = std::pair<std::string, std::string>;

class StoreConformanceTest : public ::testing::TestWithParam<StoreEngine> {
 protected:
  void SetUp() override { store_ = Open(); }

  std::unique_ptr<Store> Open() {
    auto store = GetParam().open(dir_.Sub("store"));
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? std::move(*store) : nullptr;
  }

  std::optional<std::string> Get(Cf cf, std::string_view key) {
    auto v = store_->Get(cf, key);
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    return v.ok() ? *v : std::nullopt;
  }

  void Put(Cf cf, std::string key, std::string value) {
    WriteBatch b;
    b.Put(cf, std::move(key), std::move(value));
    ASSERT_TRUE(store_->Write(b, /*sync=*/true).ok());
  }

  std::vector<KV> Scan(Cf cf, std::string_view begin, std::string_view end, size_t limit = 100) {
    std::vector<KV> out;
    Status s = store_->Scan(cf, begin, end, [&](std::string_view k, std::string_view v) {
      out.emplace_back(k, v);
      return out.size() < limit;
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }

  std::vector<KV> ScanReverse(Cf cf, std::string_view begin, std::string_view end,
                              size_t limit = 100) {
    std::vector<KV> out;
    Status s = store_->ScanReverse(cf, begin, end, [&](std::string_view k, std::string_view v) {
      out.emplace_back(k, v);
      return out.size() < limit;
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }

  phivault::testing::TempDir dir_;
  std::unique_ptr<Store> store_;
};

TEST_P(StoreConformanceTest, PutGetOverwriteDelete) {
  EXPECT_EQ(Get(Cf::kRecords, "k"), std::nullopt);
  Put(Cf::kRecords, "k", "v1");
  EXPECT_EQ(Get(Cf::kRecords, "k"), "v1");
  Put(Cf::kRecords, "k", "v2");
  EXPECT_EQ(Get(Cf::kRecords, "k"), "v2");
  WriteBatch del;
  del.Delete(Cf::kRecords, "k");
  ASSERT_TRUE(store_->Write(del, true).ok());
  EXPECT_EQ(Get(Cf::kRecords, "k"), std::nullopt);
}

TEST_P(StoreConformanceTest, BinaryKeysAndValuesRoundTrip) {
  const std::string key("\x00\xff\x01\x00", 4);
  const std::string value("\x00\x00\xfe\x7f", 4);
  Put(Cf::kIndexes, key, value);
  EXPECT_EQ(Get(Cf::kIndexes, key), value);
  EXPECT_EQ(Get(Cf::kIndexes, key.substr(0, 3)), std::nullopt);
  Put(Cf::kIndexes, "empty", "");
  EXPECT_EQ(Get(Cf::kIndexes, "empty"), "");
}

TEST_P(StoreConformanceTest, ColumnFamiliesAreSeparateKeySpaces) {
  for (int i = 0; i < kNumCfs; ++i) {
    Put(static_cast<Cf>(i), "same-key", "value-" + std::to_string(i));
  }
  for (int i = 0; i < kNumCfs; ++i) {
    EXPECT_EQ(Get(static_cast<Cf>(i), "same-key"), "value-" + std::to_string(i));
  }
  EXPECT_EQ(Scan(Cf::kHolds, "", "").size(), 1u);
}

TEST_P(StoreConformanceTest, BatchAppliesEveryOpAcrossColumnFamiliesInOrder) {
  Put(Cf::kState, "old", "x");
  WriteBatch b;
  b.Put(Cf::kRecords, "r", "record");
  b.Put(Cf::kAudit, "a", "entry");
  b.Put(Cf::kIndexes, "i", "index");
  b.Delete(Cf::kState, "old");
  b.Put(Cf::kHolds, "h", "first");
  b.Put(Cf::kHolds, "h", "second");  // later ops win
  b.Put(Cf::kAuditTree, "gone", "x");
  b.Delete(Cf::kAuditTree, "gone");
  ASSERT_TRUE(store_->Write(b, true).ok());
  EXPECT_EQ(Get(Cf::kRecords, "r"), "record");
  EXPECT_EQ(Get(Cf::kAudit, "a"), "entry");
  EXPECT_EQ(Get(Cf::kIndexes, "i"), "index");
  EXPECT_EQ(Get(Cf::kState, "old"), std::nullopt);
  EXPECT_EQ(Get(Cf::kHolds, "h"), "second");
  EXPECT_EQ(Get(Cf::kAuditTree, "gone"), std::nullopt);
}

// A sweep sorts its batches of distinct keys before writing them (the order RocksDB's memtable
// takes fastest): every operation keeps its own key, value and kind.
TEST_P(StoreConformanceTest, BatchSortedByKeyWritesTheSameOperations) {
  Put(Cf::kRecords, "m-old", "x");
  WriteBatch b;
  b.Put(Cf::kIndexes, "t2", "tomb-2");
  b.Delete(Cf::kRecords, "m-old");
  b.Put(Cf::kRecords, "c1", "content-1");
  b.Put(Cf::kIndexes, "p1", "index-1");
  b.Put(Cf::kRecords, "a0", "first");
  const size_t bytes = b.bytes();
  b.SortByKey();
  EXPECT_EQ(b.bytes(), bytes);
  std::vector<std::tuple<Cf, std::string, std::string>> order;
  for (const auto& op : b.ops()) order.emplace_back(op.cf, op.key, op.value);
  const std::vector<std::tuple<Cf, std::string, std::string>> want{
      {Cf::kRecords, "a0", "first"},
      {Cf::kRecords, "c1", "content-1"},
      {Cf::kRecords, "m-old", ""},
      {Cf::kIndexes, "p1", "index-1"},
      {Cf::kIndexes, "t2", "tomb-2"}};
  ASSERT_LT(static_cast<int>(Cf::kRecords), static_cast<int>(Cf::kIndexes));
  EXPECT_EQ(order, want);
  EXPECT_EQ(b.ops()[2].kind, WriteBatch::Kind::kDelete);
  ASSERT_TRUE(store_->Write(b, true).ok());
  EXPECT_EQ(Get(Cf::kRecords, "m-old"), std::nullopt);
  EXPECT_EQ(Get(Cf::kRecords, "c1"), "content-1");
  EXPECT_EQ(Get(Cf::kIndexes, "t2"), "tomb-2");
}

TEST_P(StoreConformanceTest, DeleteRangeRemovesExactlyTheHalfOpenRangeInBatchOrder) {
  using namespace std::string_literals;
  for (const std::string& k : {"e1\0a"s, "e1\0b"s, "e1\1"s, "e0\xff"s, "e2"s}) {
    Put(Cf::kIndexes, k, "v");
  }
  Put(Cf::kRecords, "e1\0a"s, "other column family");
  WriteBatch b;
  b.DeleteRange(Cf::kIndexes, "e1\0"s, "e1\1"s);
  b.Put(Cf::kIndexes, "e1\0z"s, "written after the range");
  ASSERT_TRUE(store_->Write(b, true).ok());
  EXPECT_EQ(Get(Cf::kIndexes, "e1\0a"s), std::nullopt);
  EXPECT_EQ(Get(Cf::kIndexes, "e1\0b"s), std::nullopt);
  EXPECT_EQ(Get(Cf::kIndexes, "e1\0z"s), "written after the range");
  EXPECT_EQ(Get(Cf::kIndexes, "e1\1"s), "v");  // the end is exclusive
  EXPECT_EQ(Get(Cf::kIndexes, "e0\xff"s), "v");
  EXPECT_EQ(Get(Cf::kIndexes, "e2"s), "v");
  EXPECT_EQ(Get(Cf::kRecords, "e1\0a"s), "other column family");
}

TEST_P(StoreConformanceTest, ScanNeverSeesHalfABatch) {
  // A writer keeps replacing a pair of keys in one batch; every scan must see equal values.
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; i < 300; ++i) {
      WriteBatch b;
      b.Put(Cf::kState, "pair/1", std::to_string(i));
      b.Put(Cf::kState, "pair/2", std::to_string(i));
      ASSERT_TRUE(store_->Write(b, false).ok());
    }
    stop = true;
  });
  int scans = 0;
  while (!stop || scans == 0) {
    auto kv = Scan(Cf::kState, "pair/", "pair0");
    if (kv.size() == 2) {
      EXPECT_EQ(kv[0].second, kv[1].second);
    }
    ++scans;
  }
  writer.join();
  EXPECT_EQ(Get(Cf::kState, "pair/1"), "299");
}

TEST_P(StoreConformanceTest, EmptyBatchIsAccepted) {
  EXPECT_TRUE(store_->Write(WriteBatch(), true).ok());
}

TEST_P(StoreConformanceTest, ScanHonoursBoundsAndOrder) {
  for (const char* k : {"d", "a", "c", "b", "e"}) Put(Cf::kIndexes, k, std::string("v") + k);
  Put(Cf::kRecords, "c", "other cf");

  EXPECT_EQ(Scan(Cf::kIndexes, "b", "d"), (std::vector<KV>{{"b", "vb"}, {"c", "vc"}}));
  EXPECT_EQ(Scan(Cf::kIndexes, "bb", "dd"), (std::vector<KV>{{"c", "vc"}, {"d", "vd"}}));
  EXPECT_EQ(Scan(Cf::kIndexes, "c", "").size(), 3u);  // no upper bound
  EXPECT_EQ(Scan(Cf::kIndexes, "", "").size(), 5u);
  EXPECT_EQ(Scan(Cf::kIndexes, "a", "", 2), (std::vector<KV>{{"a", "va"}, {"b", "vb"}}));
  EXPECT_TRUE(Scan(Cf::kIndexes, "f", "").empty());
  EXPECT_TRUE(Scan(Cf::kIndexes, "b", "b").empty());
}

TEST_P(StoreConformanceTest, ScanReverseHonoursBoundsAndOrder) {
  for (const char* k : {"d", "a", "c", "b", "e"}) Put(Cf::kIndexes, k, std::string("v") + k);
  Put(Cf::kRecords, "z", "other cf");

  EXPECT_EQ(ScanReverse(Cf::kIndexes, "b", "d"), (std::vector<KV>{{"c", "vc"}, {"b", "vb"}}));
  EXPECT_EQ(ScanReverse(Cf::kIndexes, "bb", "dd"), (std::vector<KV>{{"d", "vd"}, {"c", "vc"}}));
  EXPECT_EQ(ScanReverse(Cf::kIndexes, "", ""),
            (std::vector<KV>{{"e", "ve"}, {"d", "vd"}, {"c", "vc"}, {"b", "vb"}, {"a", "va"}}));
  EXPECT_EQ(ScanReverse(Cf::kIndexes, "", "", 1), (std::vector<KV>{{"e", "ve"}}));
  EXPECT_EQ(ScanReverse(Cf::kIndexes, "c", ""),
            (std::vector<KV>{{"e", "ve"}, {"d", "vd"}, {"c", "vc"}}));
  EXPECT_TRUE(ScanReverse(Cf::kIndexes, "", "a").empty());
}

TEST_P(StoreConformanceTest, PrefixScansWithBinaryKeys) {
  const std::string p1("p\x01", 2);
  const std::string p2("p\x02", 2);
  const std::string pff("p\xff", 2);
  Put(Cf::kIndexes, p1 + "x", "1");
  Put(Cf::kIndexes, p1 + std::string("\xff\xff", 2), "2");
  Put(Cf::kIndexes, p2, "3");
  Put(Cf::kIndexes, pff + std::string("\x00", 1), "4");
  EXPECT_EQ(Scan(Cf::kIndexes, p1, p2).size(), 2u);
  EXPECT_EQ(ScanReverse(Cf::kIndexes, p1, p2).front().second, "2");
  EXPECT_EQ(ScanReverse(Cf::kIndexes, pff, "q").front().second, "4");
}

TEST_P(StoreConformanceTest, SyncedWritesSurviveReopen) {
  WriteBatch b;
  b.Put(Cf::kRecords, "r", std::string(100000, 'r'));
  b.Put(Cf::kState, "s", "state");
  ASSERT_TRUE(store_->Write(b, true).ok());
  Put(Cf::kAudit, "a", "audit");
  WriteBatch del;
  del.Delete(Cf::kAudit, "a");
  ASSERT_TRUE(store_->Write(del, true).ok());

  store_.reset();
  store_ = Open();
  ASSERT_NE(store_, nullptr);
  EXPECT_EQ(Get(Cf::kRecords, "r"), std::string(100000, 'r'));
  EXPECT_EQ(Get(Cf::kState, "s"), "state");
  EXPECT_EQ(Get(Cf::kAudit, "a"), std::nullopt);
}

TEST_P(StoreConformanceTest, FlushAndCompactKeepLiveData) {
  for (int i = 0; i < 50; ++i) Put(Cf::kRecords, "k" + std::to_string(i), std::string(5000, 'x'));
  WriteBatch del;
  for (int i = 0; i < 50; i += 2) del.Delete(Cf::kRecords, "k" + std::to_string(i));
  ASSERT_TRUE(store_->Write(del, true).ok());
  ASSERT_TRUE(store_->Flush().ok());
  ASSERT_TRUE(store_->CompactAll().ok());
  EXPECT_EQ(Scan(Cf::kRecords, "", "").size(), 25u);
  EXPECT_EQ(Get(Cf::kRecords, "k1"), std::string(5000, 'x'));
  EXPECT_EQ(Get(Cf::kRecords, "k2"), std::nullopt);
}

TEST_P(StoreConformanceTest, SpaceReportsFreeBytesAndReserve) {
  Put(Cf::kRecords, "k", std::string(10000, 'x'));
  ASSERT_TRUE(store_->Flush().ok());
  auto space = store_->Space();
  ASSERT_TRUE(space.ok()) << space.status().ToString();
  EXPECT_GT(space->free_bytes, 0u);
  EXPECT_GT(space->live_data_bytes, 0u);
}

StatusOr<std::unique_ptr<Store>> OpenRocks(const std::string& dir) {
  RocksStoreOptions options;
  options.path = dir;
  options.reserve_bytes = 1 << 20;
  return OpenRocksStore(options);
}

INSTANTIATE_TEST_SUITE_P(Engines, StoreConformanceTest,
                         ::testing::Values(StoreEngine{"RocksDB", OpenRocks}),
                         [](const ::testing::TestParamInfo<StoreEngine>& p) {
                           return p.param.name;
                         });

}  // namespace
}  // namespace phivault::storage
