// The archive tier of storage/records.h: content moves byte for byte to Cf::kArchive, reads find
// it there and say so, and shredding leaves nothing of an archived record in any file.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "crypto/hash.h"
#include "crypto/keyring.h"
#include "storage/file_scan.h"
#include "storage/records.h"
#include "tests/storage/file_search.h"
#include "tests/testing/temp_dir.h"

namespace phivault::storage {
namespace {

using testing::FilesContaining;

std::string RandomHex(size_t bytes) { return crypto::HexEncode(crypto::RandomBytes(bytes)); }

std::string BE32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

class ArchiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(crypto::InitSodium().ok());
    Open();
    auto keyring =
        crypto::Keyring::Create({dir_.Sub("keyring"), {}}, crypto::SecretBytes::Random(32));
    ASSERT_TRUE(keyring.ok()) << keyring.status().ToString();
    keyring_ = std::move(*keyring);
    repo_ = std::make_unique<RecordRepository>(*store_, *keyring_);
  }

  void Open() {
    RocksStoreOptions options;
    options.path = db_path_;
    options.reserve_bytes = 1 << 20;
    auto store = OpenRocksStore(options);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
  }

  Record MakeRecord(const std::string& patient, std::string content, uint32_t version = 1,
                    std::string id = NewRecordId(), std::string epoch = "d20361129") {
    Record r;
    r.meta.record_id = std::move(id);
    r.meta.version = version;
    r.meta.patient_id = patient;
    r.meta.category = "clinical_note";
    r.meta.content_type = "text/plain";
    r.meta.encounter_date = "2019-03-02";
    r.meta.author = "dr.synthetic";
    r.meta.created_unix_us = 1550000000000000 + next_time_++;
    r.meta.content_bytes = content.size();
    r.meta.amendment_reason = version > 1 ? "corrected dosage" : "";
    r.meta.epoch_id = std::move(epoch);
    r.content = std::move(content);
    return r;
  }
  void StoreRecord(const Record& r) {
    WriteBatch b;
    ASSERT_TRUE(repo_->StageVersion(r, b).ok());
    ASSERT_TRUE(store_->Write(b, true).ok());
  }
  // Stages and writes a move; returns the versions moved.
  uint32_t Move(const std::string& id, bool to_archive) {
    WriteBatch b;
    auto moved = to_archive ? repo_->StageArchive(id, b) : repo_->StageUnarchive(id, b);
    EXPECT_TRUE(moved.ok()) << moved.status().ToString();
    if (!moved.ok()) return 0;
    EXPECT_EQ(b.empty(), *moved == 0);
    EXPECT_TRUE(store_->Write(b, true).ok());
    return *moved;
  }
  std::string ContentKey(const std::string& id, uint32_t version) {
    return "c" + *crypto::Base64UrlDecode(id) + BE32(version);
  }
  std::optional<std::string> Stored(Cf cf, const std::string& key) { return *store_->Get(cf, key); }
  static size_t OpsIn(const WriteBatch& b, Cf cf) {
    size_t n = 0;
    for (const auto& op : b.ops()) n += op.cf == cf ? 1 : 0;
    return n;
  }

  phivault::testing::TempDir dir_;
  const std::string db_path_ = dir_.Sub("db");
  std::unique_ptr<Store> store_;
  std::unique_ptr<crypto::Keyring> keyring_;
  std::unique_ptr<RecordRepository> repo_;
  int64_t next_time_ = 0;
};

TEST_F(ArchiveTest, ArchivedRecordsRoundTripWithTheSameSealedBytes) {
  const std::string patient = "synthetic-patient-" + RandomHex(8);
  Record small = MakeRecord(patient, "Synthetic note " + RandomHex(100));
  Record large1 = MakeRecord(patient, "Synthetic scan " + RandomHex(20000));  // a blob file
  Record large2 =
      MakeRecord(patient, "Synthetic rescan " + RandomHex(9000), 2, large1.meta.record_id);
  for (const Record* r : {&small, &large1, &large2}) StoreRecord(*r);
  const std::string& id = large1.meta.record_id;
  const std::string sealed1 = *Stored(Cf::kRecords, ContentKey(id, 1));
  const std::string sealed2 = *Stored(Cf::kRecords, ContentKey(id, 2));
  auto fingerprints = repo_->Fingerprints(id);
  ASSERT_TRUE(fingerprints.ok());

  EXPECT_EQ(Move(id, /*to_archive=*/true), 2u);
  // The very bytes that were sealed, under the same key: nothing was decrypted or re-sealed.
  EXPECT_EQ(Stored(Cf::kRecords, ContentKey(id, 1)), std::nullopt);
  EXPECT_EQ(Stored(Cf::kRecords, ContentKey(id, 2)), std::nullopt);
  EXPECT_EQ(Stored(Cf::kArchive, ContentKey(id, 1)), sealed1);
  EXPECT_EQ(Stored(Cf::kArchive, ContentKey(id, 2)), sealed2);
  EXPECT_EQ(*repo_->Fingerprints(id), *fingerprints);

  // Readable as before, through a reopened store too, and said to be archived.
  store_.reset();
  repo_.reset();
  Open();
  repo_ = std::make_unique<RecordRepository>(*store_, *keyring_);
  for (const Record* r : {&large1, &large2}) {
    auto read = repo_->ReadVersion(id, r->meta.version, /*with_content=*/true);
    ASSERT_TRUE(read.ok()) << read.status().ToString();
    EXPECT_EQ(read->content, r->content);
    EXPECT_TRUE(read->archived);
    EXPECT_TRUE(*repo_->IsArchived(id, r->meta.version));
  }
  auto live = repo_->ReadVersion(small.meta.record_id, 1, true);
  ASSERT_TRUE(live.ok());
  EXPECT_EQ(live->content, small.content);
  EXPECT_FALSE(live->archived);
  EXPECT_FALSE(*repo_->IsArchived(small.meta.record_id, 1));
  auto listed = repo_->ListPatient(patient);
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), 2u);

  // Archiving twice moves nothing; an amendment lands in the live tier beside archived versions.
  EXPECT_EQ(Move(id, true), 0u);
  Record large3 = MakeRecord(patient, "Synthetic addendum", 3, id);
  StoreRecord(large3);
  EXPECT_FALSE(repo_->ReadVersion(id, 3, true)->archived);
  EXPECT_TRUE(repo_->ReadVersion(id, 1, true)->archived);
  EXPECT_EQ(Move(id, true), 1u);
  EXPECT_EQ(repo_->ReadVersion(id, 3, true)->content, large3.content);

  // And back: the same bytes in the live tier, no longer archived.
  EXPECT_EQ(Move(id, false), 3u);
  EXPECT_EQ(Stored(Cf::kRecords, ContentKey(id, 1)), sealed1);
  EXPECT_EQ(Stored(Cf::kArchive, ContentKey(id, 1)), std::nullopt);
  auto back = repo_->ReadVersion(id, 2, true);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->content, large2.content);
  EXPECT_FALSE(back->archived);
  EXPECT_EQ(Move(id, false), 0u);
}

TEST_F(ArchiveTest, ContentInNeitherTierIsAnIntegrityFailureAndStagesNothing) {
  Record r = MakeRecord("synthetic-patient-7", "Synthetic note " + RandomHex(50));
  StoreRecord(r);
  WriteBatch del;
  del.Delete(Cf::kRecords, ContentKey(r.meta.record_id, 1));
  ASSERT_TRUE(store_->Write(del, true).ok());
  for (bool to_archive : {true, false}) {
    WriteBatch b;
    auto moved = to_archive ? repo_->StageArchive(r.meta.record_id, b)
                            : repo_->StageUnarchive(r.meta.record_id, b);
    EXPECT_EQ(moved.status().code(), StatusCode::kDataLoss);
    EXPECT_TRUE(b.empty());
  }
  WriteBatch b;
  EXPECT_EQ(repo_->StageArchive(NewRecordId(), b).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(repo_->StageArchive("short", b).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(b.empty());
}

// Both shred paths delete archived content, and after compaction no byte of it is in any file of
// the database — found there before, so the search can see the archive's (zstd) tables.
TEST_F(ArchiveTest, ArchivedRecordsShredLeavingNoStoredByteInAnyFile) {
  const std::string patient = "synthetic-patient-" + RandomHex(8);
  Record a = MakeRecord(patient, "Synthetic note " + RandomHex(300), 1, NewRecordId(), "d20300103");
  Record b1 =
      MakeRecord(patient, "Synthetic scan " + RandomHex(20000), 1, NewRecordId(), "d20300103");
  Record b2 = MakeRecord(patient, "Synthetic rescan " + RandomHex(20000), 2, b1.meta.record_id,
                         "d20300103");
  Record kept =
      MakeRecord(patient, "Synthetic kept " + RandomHex(300), 1, NewRecordId(), "d20300104");
  for (const Record* r : {&a, &b1, &b2, &kept}) StoreRecord(*r);
  for (const Record* r : {&a, &b1, &kept}) ASSERT_GT(Move(r->meta.record_id, true), 0u);
  ASSERT_TRUE(store_->CompactAll().ok());

  std::vector<std::string> dead;
  for (const Record* r : {&a, &b1}) {
    auto f = repo_->Fingerprints(r->meta.record_id);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    dead.insert(dead.end(), f->begin(), f->end());
  }
  auto before = FindInFiles(db_path_, dead, 1000);
  ASSERT_TRUE(before.ok());
  std::set<size_t> seen;
  for (const auto& hit : *before) seen.insert(hit.needle);
  EXPECT_EQ(seen.size(), dead.size()) << "the search must see archived bytes to prove them gone";

  // `a` as the API shreds it (reading), `b` as the sweep does once its epoch key is gone.
  const std::string certificate = RandomHex(16);
  WriteBatch shred;
  ASSERT_TRUE(repo_->StageShred(a.meta.record_id, certificate, 1800000000000000, shred).ok());
  ASSERT_TRUE(keyring_->DestroyEpoch("d20300103").ok());
  ASSERT_TRUE(repo_
                  ->StageShredErased(b1.meta.record_id, 2, repo_->PatientBlindId(patient),
                                     certificate, 1800000000000000, shred)
                  .ok());
  ASSERT_TRUE(repo_->StageEpochIndexErase("d20300103", shred).ok());
  ASSERT_TRUE(store_->Write(shred, true).ok());
  ASSERT_TRUE(store_->CompactAll().ok());

  auto after = FindInFiles(db_path_, dead, 1000);
  ASSERT_TRUE(after.ok());
  for (const auto& hit : *after) ADD_FAILURE() << "needle " << hit.needle << " in " << hit.path;
  for (const Record* r : {&a, &b1, &b2}) {
    EXPECT_EQ(FilesContaining(db_path_, r->content), std::vector<std::string>{});
    for (uint32_t v = 1; v <= r->meta.version; ++v) {
      EXPECT_EQ(Stored(Cf::kArchive, ContentKey(r->meta.record_id, v)), std::nullopt);
      auto read = repo_->ReadVersion(r->meta.record_id, v, true);
      EXPECT_EQ(read.status().message(),
                "record was crypto-shredded (certificate " + certificate + ")");
    }
  }
  auto survivor = repo_->ReadVersion(kept.meta.record_id, 1, true);
  ASSERT_TRUE(survivor.ok());
  EXPECT_EQ(survivor->content, kept.content);
  EXPECT_TRUE(survivor->archived);
}

// The read-free shred of a vault that never archived stages nothing for the archive (a sweep of
// a million records pays no extra delete); once anything was archived it deletes there too, also
// after a restart.
TEST_F(ArchiveTest, ShredStagesArchiveDeletesOnlyOnceTheArchiveIsUsed) {
  Record r = MakeRecord("synthetic-patient-9", "Synthetic note " + RandomHex(50));
  StoreRecord(r);
  const std::string bid = repo_->PatientBlindId("synthetic-patient-9");
  const std::string cert = RandomHex(16);
  WriteBatch unused;
  ASSERT_TRUE(repo_->StageShredErased(r.meta.record_id, 1, bid, cert, 0, unused).ok());
  EXPECT_EQ(OpsIn(unused, Cf::kArchive), 0u);

  Record other = MakeRecord("synthetic-patient-9", "Synthetic note " + RandomHex(50));
  StoreRecord(other);
  ASSERT_EQ(Move(other.meta.record_id, true), 1u);
  WriteBatch used;
  ASSERT_TRUE(repo_->StageShredErased(r.meta.record_id, 1, bid, cert, 0, used).ok());
  EXPECT_EQ(OpsIn(used, Cf::kArchive), 1u);

  RecordRepository reopened(*store_, *keyring_);
  WriteBatch later;
  ASSERT_TRUE(reopened.StageShredErased(r.meta.record_id, 1, bid, cert, 0, later).ok());
  EXPECT_EQ(OpsIn(later, Cf::kArchive), 1u);
}

// Bytes on disk per stored content byte, live tier versus archive (docs/benchmarks.md). Each
// size: N records stored and compacted, then all archived and compacted again; the whole
// database is counted (tables, blob files, WAL). PHIVAULT_ARCHIVE_FOOTPRINT_RECORDS sets N
// (default 2000, so that the test stays quick). The archive must not take more room than the
// live tier it replaces.
TEST_F(ArchiveTest, FootprintPerStoredByte) {
  const char* env = std::getenv("PHIVAULT_ARCHIVE_FOOTPRINT_RECORDS");
  const size_t n = env != nullptr ? std::strtoull(env, nullptr, 10) : 2000;
  std::printf("%-10s %8s %12s %10s %11s %14s %8s\n", "content", "records", "content MiB",
              "live B/B", "archive B/B", "compact CPU s", "hidden");
  for (size_t size : {16u, 256u, 2048u, 16384u}) {
    store_.reset();
    repo_.reset();
    std::filesystem::remove_all(db_path_);
    Open();
    repo_ = std::make_unique<RecordRepository>(*store_, *keyring_);
    std::vector<std::string> ids;
    uint64_t content_bytes = 0;
    for (size_t i = 0; i < n; ++i) {
      // Text-like content would compress; sealed, it is random whatever it was.
      Record r = MakeRecord("synthetic-patient-" + std::to_string(i % 97), RandomHex(size / 2));
      content_bytes += r.content.size();
      ids.push_back(r.meta.record_id);
      WriteBatch b;
      ASSERT_TRUE(repo_->StageVersion(r, b).ok());
      ASSERT_TRUE(store_->Write(b, /*sync=*/false).ok());
    }
    ASSERT_TRUE(store_->CompactAll().ok());
    const uint64_t live = store_->Space()->live_data_bytes;
    for (const std::string& id : ids) {
      WriteBatch b;
      ASSERT_TRUE(repo_->StageArchive(id, b).ok());
      ASSERT_TRUE(store_->Write(b, false).ok());
    }
    const std::clock_t cpu0 = std::clock();
    ASSERT_TRUE(store_->CompactAll().ok());
    const double cpu = static_cast<double>(std::clock() - cpu0) / CLOCKS_PER_SEC;
    const uint64_t archived = store_->Space()->live_data_bytes;
    const double per_live = static_cast<double>(live) / static_cast<double>(content_bytes);
    const double per_archive = static_cast<double>(archived) / static_cast<double>(content_bytes);
    // The destruction's byte search must see every archived value as stored: a compressed block
    // would hide its values from it.
    std::vector<std::string> needles;
    for (size_t i = 0; i < ids.size(); i += 10) {
      auto f = repo_->Fingerprints(ids[i]);
      ASSERT_TRUE(f.ok());
      needles.push_back(f->front());  // the sealed content's first 32 bytes
    }
    auto hits = FindInFiles(db_path_, needles, needles.size() * 4);
    ASSERT_TRUE(hits.ok());
    std::set<size_t> seen;
    for (const auto& hit : *hits) seen.insert(hit.needle);
    const size_t hidden = needles.size() - seen.size();
    std::printf("%-10zu %8zu %12.2f %10.4f %11.4f %14.2f %8zu\n", size, n,
                static_cast<double>(content_bytes) / (1 << 20), per_live, per_archive, cpu, hidden);
    EXPECT_EQ(hidden, 0u) << size << "-byte records: archived values the byte search cannot see";
    EXPECT_LE(per_archive, per_live * 1.01) << size << "-byte records";
    EXPECT_TRUE(repo_->ReadVersion(ids.front(), 1, true)->archived);
  }
}

}  // namespace
}  // namespace phivault::storage
