#include "storage/ledger.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "crypto/hash.h"
#include "storage/key_encoding.h"
#include "tests/storage/fault_store.h"
#include "tests/testing/temp_dir.h"

namespace phivault::storage {
namespace {

using testing::FaultStore;

std::string HashHex(std::string_view bytes) {
  return crypto::HexEncode(crypto::AsView(crypto::Sha256(bytes)));
}

AuditEntry Entry(std::string request_id, std::string user = "dr.nowak") {
  AuditEntry e;
  e.request_id = std::move(request_id);
  e.application = "ehr";
  e.user = std::move(user);
  e.role = "physician";
  e.action = "record.create";
  e.outcome = "success";
  e.purpose = "TREAT";
  return e;
}

WriteBatch Change(const std::string& key) {
  WriteBatch b;
  b.Put(Cf::kRecords, key, "value of " + key);
  return b;
}

// Records what the ledger tells it, adds one key per entry, and can be told to fail.
class RecordingObserver final : public LedgerObserver {
 public:
  Status OnAppend(uint64_t seq, std::string_view entry_bytes, WriteBatch& batch) override {
    if (fail_next_append) {
      fail_next_append = false;
      return Internal("observer failed");
    }
    pending.push_back(seq);
    batch.Put(Cf::kAuditTree, "leaf/" + std::to_string(seq), HashHex(entry_bytes));
    return Status::Ok();
  }
  void OnCommitted(uint64_t last_seq) override {
    EXPECT_FALSE(pending.empty());
    EXPECT_EQ(pending.back(), last_seq);
    committed.insert(committed.end(), pending.begin(), pending.end());
    pending.clear();
  }
  void OnAborted() override {
    ++aborts;
    pending.clear();
  }

  bool fail_next_append = false;
  std::vector<uint64_t> pending;
  std::vector<uint64_t> committed;
  int aborts = 0;
};

class LedgerTest : public ::testing::Test {
 protected:
  void SetUp() override { OpenAll(); }

  void OpenAll() {
    RocksStoreOptions options;
    options.path = dir_.Sub("db");
    options.reserve_bytes = 1 << 20;
    auto store = OpenRocksStore(options);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    fault_ = std::make_unique<FaultStore>(*store_);
    auto ledger = Ledger::Open(*fault_, &observer_);
    ASSERT_TRUE(ledger.ok()) << ledger.status().ToString();
    ledger_ = std::move(*ledger);
  }

  void CloseAll() {
    ledger_.reset();
    fault_.reset();
    store_.reset();
  }

  std::optional<std::string> Get(Cf cf, const std::string& key) {
    auto v = store_->Get(cf, key);
    EXPECT_TRUE(v.ok());
    return v.ok() ? *v : std::nullopt;
  }

  // Every stored entry in order, checking the hash chain on the way.
  std::vector<AuditEntry> ReadChain() {
    std::vector<AuditEntry> out;
    std::string prev_bytes;
    Status s = ScanAuditEntries(*store_, 1, UINT64_MAX, [&](const AuditEntry& e, auto bytes) {
      EXPECT_EQ(e.seq, out.size() + 1);
      EXPECT_EQ(e.prev_hash, out.empty() ? "" : HashHex(prev_bytes)) << "seq " << e.seq;
      if (!out.empty()) {
        EXPECT_GE(e.time_unix_us, out.back().time_unix_us);
      }
      prev_bytes = bytes;
      out.push_back(e);
      return true;
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }

  phivault::testing::TempDir dir_;
  RecordingObserver observer_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<FaultStore> fault_;
  std::unique_ptr<Ledger> ledger_;
};

TEST_F(LedgerTest, ConcurrentCommitsGetGaplessChainedSequenceNumbers) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 200;
  std::mutex mu;
  std::map<std::string, uint64_t> seq_of;  // request id -> seq returned to its caller
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string id = std::to_string(t) + "/" + std::to_string(i);
        auto seq = ledger_->Commit(Change("rec/" + id), Entry(id, "user" + std::to_string(t)));
        ASSERT_TRUE(seq.ok()) << seq.status().ToString();
        std::lock_guard<std::mutex> lock(mu);
        seq_of[id] = *seq;
      }
    });
  }
  for (auto& th : threads) th.join();

  constexpr uint64_t kTotal = kThreads * kPerThread;
  ASSERT_EQ(seq_of.size(), kTotal);
  std::set<uint64_t> seqs;
  for (const auto& [id, seq] : seq_of) seqs.insert(seq);
  EXPECT_EQ(seqs.size(), kTotal);
  EXPECT_EQ(*seqs.begin(), 1u);
  EXPECT_EQ(*seqs.rbegin(), kTotal);
  EXPECT_EQ(ledger_->size(), kTotal);

  const std::vector<AuditEntry> chain = ReadChain();
  ASSERT_EQ(chain.size(), kTotal);
  for (const AuditEntry& e : chain) {
    EXPECT_EQ(seq_of.at(e.request_id), e.seq);  // the caller got its own entry's number
    EXPECT_EQ(Get(Cf::kRecords, "rec/" + e.request_id), "value of rec/" + e.request_id);
    EXPECT_EQ(Get(Cf::kAuditTree, "leaf/" + std::to_string(e.seq)),
              HashHex(*ReadAuditEntryBytes(*store_, e.seq)));
  }
  EXPECT_EQ(observer_.committed.size(), kTotal);
  EXPECT_TRUE(std::is_sorted(observer_.committed.begin(), observer_.committed.end()));
  EXPECT_EQ(observer_.aborts, 0);
}

TEST_F(LedgerTest, ReopenContinuesTheSequenceAndChain) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(ledger_->Commit({}, Entry("r" + std::to_string(i))).ok());
  const std::string tail = *ReadAuditEntryBytes(*store_, 5);
  CloseAll();
  OpenAll();
  EXPECT_EQ(ledger_->size(), 5u);
  auto seq = ledger_->Commit(Change("after"), Entry("after-reopen"));
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(*seq, 6u);
  auto e = ReadAuditEntry(*store_, 6);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->prev_hash, HashHex(tail));
  EXPECT_EQ(ReadChain().size(), 6u);
}

TEST_F(LedgerTest, FailedWriteFailsTheCommitAndConsumesNoSequenceNumber) {
  ASSERT_EQ(*ledger_->Commit(Change("one"), Entry("one")), 1u);
  ASSERT_EQ(*ledger_->Commit(Change("two"), Entry("two")), 2u);

  fault_->FailNextWrites(1, Unavailable("injected write failure"));
  auto failed = ledger_->Commit(Change("lost"), Entry("lost"));
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(failed.status().message(), "injected write failure");
  EXPECT_EQ(Get(Cf::kRecords, "lost"), std::nullopt);
  EXPECT_EQ(ReadAuditEntry(*store_, 3).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(Get(Cf::kAuditTree, "leaf/3"), std::nullopt);
  EXPECT_EQ(ledger_->size(), 2u);
  EXPECT_EQ(observer_.aborts, 1);

  auto next = ledger_->Commit(Change("three"), Entry("three"));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, 3u);
  EXPECT_EQ(Get(Cf::kRecords, "three"), "value of three");
  EXPECT_EQ(ReadChain().size(), 3u);
  EXPECT_EQ(observer_.committed, (std::vector<uint64_t>{1, 2, 3}));

  // The state survives a restart as if the failed commit never happened.
  CloseAll();
  OpenAll();
  EXPECT_EQ(*ledger_->Commit({}, Entry("four")), 4u);
}

TEST_F(LedgerTest, ConcurrentCommitsWithFailingWritesStayGapless) {
  std::atomic<int> succeeded{0};
  std::mutex mu;
  std::vector<std::string> failed_ids;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 60; ++i) {
        if (t == 0 && i % 5 == 0) fault_->FailNextWrites(1, Unavailable("injected"));
        const std::string id = std::to_string(t) + "/" + std::to_string(i);
        auto seq = ledger_->Commit(Change(id), Entry(id));
        if (seq.ok()) {
          ++succeeded;
        } else {
          EXPECT_EQ(seq.status().code(), StatusCode::kUnavailable);
          std::lock_guard<std::mutex> lock(mu);
          failed_ids.push_back(id);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_FALSE(failed_ids.empty());
  const std::vector<AuditEntry> chain = ReadChain();
  EXPECT_EQ(chain.size(), static_cast<size_t>(succeeded.load()));
  EXPECT_EQ(ledger_->size(), chain.size());
  for (const auto& id : failed_ids) EXPECT_EQ(Get(Cf::kRecords, id), std::nullopt) << id;
  for (const auto& e : chain) EXPECT_TRUE(Get(Cf::kRecords, e.request_id).has_value());
}

// A retention sweep's bulk entries: one call, one synced write, consecutive numbers, even with
// other requests committing at the same time.
TEST_F(LedgerTest, CommitAllWritesItsEntriesInOneSyncedWriteWithConsecutiveNumbers) {
  ASSERT_TRUE(ledger_->Commit(Change("first"), Entry("first")).ok());
  std::vector<std::pair<WriteBatch, AuditEntry>> bulk;
  for (int i = 0; i < 300; ++i) {
    const std::string id = "bulk/" + std::to_string(i);
    bulk.emplace_back(i % 2 == 0 ? Change(id) : WriteBatch{}, Entry(id, "system"));
  }
  const uint64_t synced_before = store_->synced_writes();
  auto seqs = ledger_->CommitAll(std::move(bulk));
  EXPECT_EQ(store_->synced_writes(), synced_before + 1);
  ASSERT_EQ(seqs.size(), 300u);
  for (size_t i = 0; i < seqs.size(); ++i) {
    ASSERT_TRUE(seqs[i].ok()) << seqs[i].status().ToString();
    EXPECT_EQ(*seqs[i], 2 + i);
  }

  std::atomic<bool> stop{false};
  std::thread other([&] {
    for (int i = 0; !stop; ++i) {
      const std::string id = "other/" + std::to_string(i);
      ASSERT_TRUE(ledger_->Commit(Change(id), Entry(id)).ok());
    }
  });
  for (int round = 0; round < 20; ++round) {
    std::vector<std::pair<WriteBatch, AuditEntry>> more;
    for (int i = 0; i < 50; ++i) {
      const std::string id = "round/" + std::to_string(round) + "/" + std::to_string(i);
      more.emplace_back(Change(id), Entry(id, "system"));
    }
    auto got = ledger_->CommitAll(std::move(more));
    ASSERT_EQ(got.size(), 50u);
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_TRUE(got[i].ok());
      EXPECT_EQ(*got[i], *got[0] + i) << "round " << round;  // nobody else's entry in between
    }
  }
  stop = true;
  other.join();

  const std::vector<AuditEntry> chain = ReadChain();
  EXPECT_EQ(chain.size(), ledger_->size());
  for (const AuditEntry& e : chain) {
    const bool audit_only =
        e.request_id.rfind("bulk/", 0) == 0 && std::stoi(e.request_id.substr(5)) % 2 == 1;
    EXPECT_EQ(Get(Cf::kRecords, e.request_id).has_value(), !audit_only) << e.request_id;
  }
  EXPECT_EQ(observer_.committed.size(), chain.size());
}

TEST_F(LedgerTest, CommitAllFailsABadEntryAloneAndAFailedWriteWhole) {
  std::vector<std::pair<WriteBatch, AuditEntry>> bulk;
  bulk.emplace_back(Change("a"), Entry("a"));
  bulk.emplace_back(Change("bad"), Entry("bad", std::string("nul\0user", 8)));
  bulk.emplace_back(Change("b"), Entry("b"));
  auto seqs = ledger_->CommitAll(std::move(bulk));
  ASSERT_EQ(seqs.size(), 3u);
  EXPECT_EQ(*seqs[0], 1u);
  EXPECT_EQ(seqs[1].status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(*seqs[2], 2u);  // the bad entry's number went to the next one
  EXPECT_EQ(Get(Cf::kRecords, "bad"), std::nullopt);
  EXPECT_EQ(Get(Cf::kRecords, "b"), "value of b");

  fault_->FailNextWrites(1, Unavailable("injected write failure"));
  std::vector<std::pair<WriteBatch, AuditEntry>> lost;
  lost.emplace_back(Change("lost1"), Entry("lost1"));
  lost.emplace_back(Change("lost2"), Entry("lost2"));
  auto failed = ledger_->CommitAll(std::move(lost));
  ASSERT_EQ(failed.size(), 2u);
  for (const auto& f : failed) EXPECT_EQ(f.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(Get(Cf::kRecords, "lost1"), std::nullopt);
  EXPECT_EQ(Get(Cf::kRecords, "lost2"), std::nullopt);
  EXPECT_EQ(ledger_->size(), 2u);
  EXPECT_EQ(*ledger_->Commit({}, Entry("after")), 3u);
  EXPECT_EQ(ReadChain().size(), 3u);
  EXPECT_TRUE(ledger_->CommitAll({}).empty());
}

// On a disk whose free space is inside the reserve, commits with changes (record creates) are
// refused while audit-only commits (audited reads) go through, also when the ledger groups both
// into one write.
TEST(LedgerFullDiskTest, AuditOnlyCommitsUseTheReserveThatChangesMayNot) {
  phivault::testing::TempDir dir;
  RocksStoreOptions options;
  options.path = dir.Sub("db");
  options.reserve_bytes = 1ull << 30;  // audit-only floor 256 MiB
  options.free_space = [](const std::string&) -> StatusOr<uint64_t> { return 512ull << 20; };
  auto store = OpenRocksStore(options);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  RecordingObserver observer;
  auto ledger = Ledger::Open(**store, &observer);
  ASSERT_TRUE(ledger.ok()) << ledger.status().ToString();

  std::atomic<int> reads_failed{0};
  std::atomic<int> creates_admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        const std::string id = std::to_string(t) + "/" + std::to_string(i);
        if (t % 2 == 0) {
          auto seq = (*ledger)->Commit(Change(id), Entry(id));
          if (seq.ok()) {
            ++creates_admitted;
          } else {
            EXPECT_EQ(seq.status().code(), StatusCode::kResourceExhausted);
          }
        } else {
          auto seq = (*ledger)->Commit({}, Entry(id));
          if (!seq.ok()) {
            ++reads_failed;
            ADD_FAILURE() << seq.status().ToString();
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(creates_admitted.load(), 0);
  EXPECT_EQ(reads_failed.load(), 0);
  EXPECT_EQ((*ledger)->size(), 400u);
  std::set<uint64_t> committed(observer.committed.begin(), observer.committed.end());
  EXPECT_EQ(committed.size(), 400u);
  Status scanned = ScanAuditEntries(**store, 1, UINT64_MAX, [&](const AuditEntry& e, auto) {
    EXPECT_EQ(std::stoi(e.request_id.substr(0, e.request_id.find('/'))) % 2, 1) << e.request_id;
    return true;
  });
  EXPECT_TRUE(scanned.ok()) << scanned.ToString();
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(*(*store)->Get(Cf::kRecords, "0/" + std::to_string(i)), std::nullopt);
  }
}

TEST_F(LedgerTest, ObserverFailureFailsTheCommitAndWritesNothing) {
  observer_.fail_next_append = true;
  auto seq = ledger_->Commit(Change("x"), Entry("x"));
  ASSERT_FALSE(seq.ok());
  EXPECT_EQ(seq.status().code(), StatusCode::kInternal);
  EXPECT_EQ(Get(Cf::kRecords, "x"), std::nullopt);
  EXPECT_EQ(observer_.aborts, 1);
  EXPECT_EQ(fault_->writes(), 0);
  EXPECT_EQ(*ledger_->Commit(Change("y"), Entry("y")), 1u);
}

TEST_F(LedgerTest, UnencodableEntryIsRejectedAlone) {
  AuditEntry bad = Entry("bad");
  bad.reason = "\xc3\x28";  // invalid UTF-8
  auto seq = ledger_->Commit(Change("bad"), bad);
  ASSERT_FALSE(seq.ok());
  EXPECT_EQ(seq.status().code(), StatusCode::kInvalidArgument);
  AuditEntry nul_user = Entry("nul", std::string("a\0b", 3));
  EXPECT_EQ(ledger_->Commit({}, nul_user).status().code(), StatusCode::kInvalidArgument);
  AuditEntry short_bid = Entry("bid");
  short_bid.patient_bid = "abcd";
  EXPECT_EQ(ledger_->Commit({}, short_bid).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Get(Cf::kRecords, "bad"), std::nullopt);
  EXPECT_EQ(*ledger_->Commit({}, Entry("good")), 1u);
}

TEST_F(LedgerTest, IndexesEntriesByPatientAndUser) {
  const std::string bid_hex(64, 'a');
  const std::string bid_raw(32, '\xaa');
  AuditEntry with_patient = Entry("p1", "alice");
  with_patient.patient_bid = bid_hex;
  ASSERT_EQ(*ledger_->Commit({}, with_patient), 1u);
  ASSERT_EQ(*ledger_->Commit({}, Entry("np", "alice")), 2u);
  with_patient.user = "bob";
  ASSERT_EQ(*ledger_->Commit({}, with_patient), 3u);

  auto seqs_under = [&](const std::string& prefix) {
    std::vector<uint64_t> out;
    std::string end = prefix;
    end.back() = static_cast<char>(end.back() + 1);
    EXPECT_TRUE(store_
                    ->Scan(Cf::kIndexes, prefix, end,
                           [&](std::string_view key, std::string_view) {
                             uint64_t v = 0;
                             for (unsigned char c : key.substr(key.size() - 8)) v = v << 8 | c;
                             out.push_back(v);
                             return true;
                           })
                    .ok());
    return out;
  };
  EXPECT_EQ(seqs_under("ap" + bid_raw), (std::vector<uint64_t>{1, 3}));
  EXPECT_EQ(seqs_under(std::string("aualice") + '\0'), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(seqs_under(std::string("aubob") + '\0'), (std::vector<uint64_t>{3}));
}

TEST_F(LedgerTest, OpenDetectsATamperedTail) {
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(ledger_->Commit({}, Entry("r" + std::to_string(i))).ok());
  ledger_.reset();
  AuditEntry forged = *ReadAuditEntry(*store_, 3);
  forged.outcome = "denied";
  WriteBatch b;
  b.Put(Cf::kAudit, AuditKey(3), *EncodeAuditEntry(forged));
  ASSERT_TRUE(store_->Write(b, true).ok());
  auto reopened = Ledger::Open(*store_);
  ASSERT_FALSE(reopened.ok());
  EXPECT_EQ(reopened.status().code(), StatusCode::kDataLoss);
}

TEST_F(LedgerTest, OpenDetectsEntriesBeyondTheHeadOrAMissingHead) {
  ASSERT_TRUE(ledger_->Commit({}, Entry("r")).ok());
  ledger_.reset();
  WriteBatch extra;
  extra.Put(Cf::kAudit, AuditKey(2), *ReadAuditEntryBytes(*store_, 1));
  ASSERT_TRUE(store_->Write(extra, true).ok());
  EXPECT_EQ(Ledger::Open(*store_).status().code(), StatusCode::kDataLoss);

  WriteBatch no_head;
  no_head.Delete(Cf::kAudit, AuditKey(2));
  no_head.Delete(Cf::kState, std::string(kLedgerHeadKey));
  ASSERT_TRUE(store_->Write(no_head, true).ok());
  EXPECT_EQ(Ledger::Open(*store_).status().code(), StatusCode::kDataLoss);
}

TEST_F(LedgerTest, ReadingAndScanningReportMissingAndDamagedEntries) {
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(ledger_->Commit({}, Entry("r" + std::to_string(i))).ok());
  EXPECT_EQ(ReadAuditEntry(*store_, 0).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(ReadAuditEntry(*store_, 5).status().code(), StatusCode::kNotFound);

  std::vector<uint64_t> seen;
  ASSERT_TRUE(ScanAuditEntries(*store_, 2, 3, [&](const AuditEntry& e, std::string_view) {
                seen.push_back(e.seq);
                return true;
              }).ok());
  EXPECT_EQ(seen, (std::vector<uint64_t>{2, 3}));

  WriteBatch b;
  b.Delete(Cf::kAudit, AuditKey(2));
  b.Put(Cf::kAudit, AuditKey(4), *ReadAuditEntryBytes(*store_, 3));  // wrong seq inside
  ASSERT_TRUE(store_->Write(b, true).ok());
  auto all = [](const AuditEntry&, std::string_view) { return true; };
  EXPECT_EQ(ScanAuditEntries(*store_, 1, 10, all).code(), StatusCode::kDataLoss);
  EXPECT_EQ(ReadAuditEntry(*store_, 4).status().code(), StatusCode::kDataLoss);
}

// Seqs a chained scan delivers, or its error.
StatusOr<std::vector<uint64_t>> PatientSeqs(Store& store, const std::string& bid_raw) {
  std::vector<uint64_t> seqs;
  PV_RETURN_IF_ERROR(
      ScanPatientAuditEntries(store, bid_raw, [&](const AuditEntry& e, std::string_view) {
        seqs.push_back(e.seq);
        return Status::Ok();
      }));
  return seqs;
}

class LedgerChainTest : public LedgerTest {
 protected:
  // Entries 1..6: the patient in 1, 3, 4 (one group of concurrent commits) and 6; user bob in 2
  // and 5.
  void CommitHistory() {
    ASSERT_EQ(*ledger_->Commit({}, PatientEntry("p1")), 1u);
    ASSERT_EQ(*ledger_->Commit({}, Entry("b1", "bob")), 2u);
    std::thread a([&] { ASSERT_TRUE(ledger_->Commit({}, PatientEntry("p2")).ok()); });
    std::thread b([&] { ASSERT_TRUE(ledger_->Commit({}, PatientEntry("p3")).ok()); });
    a.join();
    b.join();
    ASSERT_EQ(*ledger_->Commit({}, Entry("b2", "bob")), 5u);
    ASSERT_EQ(*ledger_->Commit({}, PatientEntry("p4")), 6u);
  }
  AuditEntry PatientEntry(std::string request_id) {
    AuditEntry e = Entry(std::move(request_id), "alice");
    e.patient_bid = std::string(64, 'a');
    return e;
  }
  void Delete(const std::string& key) {
    WriteBatch b;
    b.Delete(Cf::kIndexes, key);
    ASSERT_TRUE(store_->Write(b, true).ok());
  }
  const std::string bid_raw_ = std::string(32, '\xaa');
};

TEST_F(LedgerChainTest, EntriesLinkToTheirPatientsAndUsersPreviousEntry) {
  CommitHistory();
  EXPECT_EQ(ReadAuditEntry(*store_, 1)->patient_prev, 0u);
  EXPECT_EQ(ReadAuditEntry(*store_, 6)->patient_prev, 4u);
  EXPECT_EQ(ReadAuditEntry(*store_, 4)->patient_prev, 3u);  // linked within one group
  EXPECT_EQ(ReadAuditEntry(*store_, 3)->patient_prev, 1u);
  EXPECT_EQ(ReadAuditEntry(*store_, 5)->user_prev, 2u);
  EXPECT_EQ(ReadAuditEntry(*store_, 2)->user_prev, 0u);
  EXPECT_EQ(ReadAuditEntry(*store_, 2)->patient_prev, 0u);  // names no patient
  EXPECT_EQ(*PatientSeqs(*store_, bid_raw_), (std::vector<uint64_t>{1, 3, 4, 6}));

  // The links survive a restart (the heads are stored, not only cached).
  ledger_.reset();
  ledger_ = std::move(Ledger::Open(*store_)).value();
  ASSERT_EQ(*ledger_->Commit({}, PatientEntry("p5")), 7u);
  EXPECT_EQ(ReadAuditEntry(*store_, 7)->patient_prev, 6u);
  std::vector<uint64_t> bob;
  ASSERT_TRUE(ScanUserAuditEntries(*store_, "bob", [&](const AuditEntry& e, std::string_view) {
                bob.push_back(e.seq);
                return Status::Ok();
              }).ok());
  EXPECT_EQ(bob, (std::vector<uint64_t>{2, 5}));
}

TEST_F(LedgerChainTest, ADeletedIndexKeyIsDataLossNamingTheEntry) {
  CommitHistory();
  for (uint64_t hidden : {1u, 3u, 6u}) {  // the oldest, one in the middle, the newest
    SCOPED_TRACE(hidden);
    const std::string key = "ap" + bid_raw_ + BigEndian64(hidden);
    Delete(key);
    auto seqs = PatientSeqs(*store_, bid_raw_);
    ASSERT_FALSE(seqs.ok());
    EXPECT_EQ(seqs.status().code(), StatusCode::kDataLoss);
    EXPECT_NE(seqs.status().message().find("missing entry " + std::to_string(hidden)),
              std::string::npos)
        << seqs.status().message();
    WriteBatch restore;
    restore.Put(Cf::kIndexes, key, "");
    ASSERT_TRUE(store_->Write(restore, true).ok());
    EXPECT_TRUE(PatientSeqs(*store_, bid_raw_).ok());
  }
}

TEST_F(LedgerChainTest, ADeletedHeadOrAForeignIndexKeyIsDataLoss) {
  CommitHistory();
  WriteBatch foreign;  // entry 2 (bob's, no patient) slipped into the patient's index
  foreign.Put(Cf::kIndexes, "ap" + bid_raw_ + BigEndian64(2), "");
  ASSERT_TRUE(store_->Write(foreign, true).ok());
  EXPECT_EQ(PatientSeqs(*store_, bid_raw_).status().code(), StatusCode::kDataLoss);
  Delete("ap" + bid_raw_ + BigEndian64(2));
  ASSERT_TRUE(PatientSeqs(*store_, bid_raw_).ok());

  Delete("hp" + bid_raw_);
  auto seqs = PatientSeqs(*store_, bid_raw_);
  EXPECT_EQ(seqs.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(seqs.status().message().find("no head"), std::string::npos);

  Delete("au" + std::string("bob") + '\0' + BigEndian64(2));
  EXPECT_EQ(ScanUserAuditEntries(*store_, "bob",
                                 [&](const AuditEntry&, std::string_view) { return Status::Ok(); })
                .code(),
            StatusCode::kDataLoss);
}

}  // namespace
}  // namespace phivault::storage
