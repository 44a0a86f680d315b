#include "storage/records.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <random>
#include <set>

#include <gtest/gtest.h>

#include "crypto/aead.h"
#include "crypto/hash.h"
#include "crypto/keyring.h"
#include "storage/file_scan.h"
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

// The version header as documented in records.h: 0x01, then four BE32-length-prefixed fields.
struct Header {
  std::vector<std::string> fields;  // epoch id, wrapped DEK, blind id, sealed metadata
};
Header ParseHeader(std::string_view in) {
  Header h;
  EXPECT_EQ(in.at(0), '\x01');
  in.remove_prefix(1);
  while (!in.empty()) {
    uint32_t n = 0;
    for (int i = 0; i < 4; ++i) n = n << 8 | static_cast<uint8_t>(in[static_cast<size_t>(i)]);
    h.fields.emplace_back(in.substr(4, n));
    in.remove_prefix(4 + n);
  }
  EXPECT_EQ(h.fields.size(), 4u);
  return h;
}
std::string SerializeHeader(const Header& h) {
  std::string out(1, '\x01');
  for (const auto& f : h.fields) out += BE32(static_cast<uint32_t>(f.size())) + f;
  return out;
}

class RecordsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(crypto::InitSodium().ok());
    OpenStore();
    auto keyring =
        crypto::Keyring::Create({dir_.Sub("keyring"), {}}, crypto::SecretBytes::Random(32));
    ASSERT_TRUE(keyring.ok()) << keyring.status().ToString();
    keyring_ = std::move(*keyring);
    repo_ = std::make_unique<RecordRepository>(*store_, *keyring_);
  }

  // The store at db_path_ (opened again after a test closed it), and a repository over it once
  // the keyring exists.
  void OpenStore() {
    RocksStoreOptions options;
    options.path = db_path_;
    options.reserve_bytes = 1 << 20;
    auto store = OpenRocksStore(options);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    if (keyring_) repo_ = std::make_unique<RecordRepository>(*store_, *keyring_);
  }

  Record MakeRecord(std::string patient, std::string content, uint32_t version = 1,
                    std::string id = NewRecordId(), std::string epoch = "d20361129") {
    Record r;
    r.meta.record_id = std::move(id);
    r.meta.version = version;
    r.meta.patient_id = std::move(patient);
    r.meta.category = "clinical-note";
    r.meta.content_type = "text/plain";
    r.meta.encounter_date = "2026-11-02";
    r.meta.author = "dr.synthetic";
    r.meta.created_unix_us = 1700000000000000 + next_time_++;
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

  std::string RawKey(char kind, const std::string& id, uint32_t version) {
    return std::string(1, kind) + *crypto::Base64UrlDecode(id) + BE32(version);
  }
  std::string Value(const std::string& key) { return **store_->Get(Cf::kRecords, key); }
  std::optional<std::string> Stored(Cf cf, const std::string& key) { return *store_->Get(cf, key); }
  void PutRaw(Cf cf, const std::string& key, std::string value) {
    WriteBatch b;
    b.Put(cf, key, std::move(value));
    ASSERT_TRUE(store_->Write(b, true).ok());
  }
  void DeleteRaw(Cf cf, const std::string& key) {
    WriteBatch b;
    b.Delete(cf, key);
    ASSERT_TRUE(store_->Write(b, true).ok());
  }
  std::string TombstoneKey(const std::string& id) { return "x" + *crypto::Base64UrlDecode(id); }

  // Stages and writes a rewrap; returns the number of versions moved.
  uint32_t Rewrap(const std::string& id, const std::string& epoch) {
    WriteBatch b;
    auto moved = repo_->StageRewrap(id, epoch, b);
    EXPECT_TRUE(moved.ok()) << moved.status().ToString();
    if (!moved.ok()) return 0;
    EXPECT_EQ(b.empty(), *moved == 0);
    EXPECT_TRUE(store_->Write(b, true).ok());
    return *moved;
  }
  void Shred(const std::string& id, const std::string& certificate) {
    WriteBatch b;
    Status s = repo_->StageShred(id, certificate, 1800000000000000, b);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_TRUE(store_->Write(b, true).ok());
  }
  // (record id, version) of every entry in the epoch's index, in scan order.
  std::vector<std::pair<std::string, uint32_t>> EpochEntries(const std::string& epoch) {
    std::vector<std::pair<std::string, uint32_t>> out;
    Status s = repo_->ScanEpoch(epoch, [&](std::string_view id, uint32_t version) {
      out.emplace_back(id, version);
      return true;
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }
  void Overwrite(const std::string& key, std::string value) {
    WriteBatch b;
    b.Put(Cf::kRecords, key, std::move(value));
    ASSERT_TRUE(store_->Write(b, false).ok());
  }

  void ExpectIntegrityFailure(const std::string& id, uint32_t version, const std::string& what) {
    auto r = repo_->ReadVersion(id, version, /*with_content=*/true);
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << what;
    EXPECT_EQ(r.status().message(), "record failed integrity check") << what;
  }

  phivault::testing::TempDir dir_;
  const std::string db_path_ = dir_.Sub("db");
  std::unique_ptr<phivault::storage::Store> store_;
  std::unique_ptr<crypto::Keyring> keyring_;
  std::unique_ptr<RecordRepository> repo_;
  int64_t next_time_ = 0;
};

void ExpectSameMetadata(const RecordMetadata& a, const RecordMetadata& b) {
  EXPECT_EQ(a.record_id, b.record_id);
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.patient_id, b.patient_id);
  EXPECT_EQ(a.category, b.category);
  EXPECT_EQ(a.content_type, b.content_type);
  EXPECT_EQ(a.encounter_date, b.encounter_date);
  EXPECT_EQ(a.author, b.author);
  EXPECT_EQ(a.created_unix_us, b.created_unix_us);
  EXPECT_EQ(a.content_bytes, b.content_bytes);
  EXPECT_EQ(a.amendment_reason, b.amendment_reason);
  EXPECT_EQ(a.epoch_id, b.epoch_id);
}

TEST_F(RecordsTest, TextAndLargeBinaryRecordsRoundTrip) {
  Record text = MakeRecord("synthetic-patient-1", "Synthetic note: BP 120/80, péd. follow-up.");
  Record binary = MakeRecord("synthetic-patient-1", crypto::RandomBytes(5 << 20));
  binary.meta.content_type = "application/dicom";
  StoreRecord(text);
  StoreRecord(binary);

  for (const Record* r : {&text, &binary}) {
    auto read = repo_->ReadVersion(r->meta.record_id, 1, /*with_content=*/true);
    ASSERT_TRUE(read.ok()) << read.status().ToString();
    ExpectSameMetadata(read->meta, r->meta);
    EXPECT_TRUE(read->content == r->content);
    auto meta_only = repo_->ReadVersion(r->meta.record_id, 1, /*with_content=*/false);
    ASSERT_TRUE(meta_only.ok());
    ExpectSameMetadata(meta_only->meta, r->meta);
    EXPECT_TRUE(meta_only->content.empty());
    EXPECT_EQ(*repo_->LatestVersion(r->meta.record_id), 1u);
  }
}

TEST_F(RecordsTest, VersionsAreIndependent) {
  Record v1 = MakeRecord("synthetic-patient-2", "original");
  Record v2 = MakeRecord("synthetic-patient-2", "amended text", 2, v1.meta.record_id, "d20401231");
  StoreRecord(v1);
  StoreRecord(v2);
  EXPECT_EQ(*repo_->LatestVersion(v1.meta.record_id), 2u);
  auto r1 = repo_->ReadVersion(v1.meta.record_id, 1, true);
  auto r2 = repo_->ReadVersion(v1.meta.record_id, 2, true);
  ASSERT_TRUE(r1.ok() && r2.ok());
  EXPECT_EQ(r1->content, "original");
  EXPECT_EQ(r1->meta.epoch_id, "d20361129");
  EXPECT_EQ(r2->content, "amended text");
  EXPECT_EQ(r2->meta.epoch_id, "d20401231");
  EXPECT_EQ(r2->meta.amendment_reason, "corrected dosage");

  // Each version has its own DEK: shredding v1's epoch leaves v2 readable.
  ASSERT_TRUE(keyring_->DestroyEpoch("d20361129").ok());
  EXPECT_EQ(repo_->ReadVersion(v1.meta.record_id, 1, true).status().code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(repo_->ReadVersion(v1.meta.record_id, 2, true)->content, "amended text");
}

TEST_F(RecordsTest, MissingAndMalformedIdsAreReported) {
  Record r = MakeRecord("synthetic-patient-3", "x");
  StoreRecord(r);
  auto no_version = repo_->ReadVersion(r.meta.record_id, 2, true);
  EXPECT_EQ(no_version.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(no_version.status().message(), "no such version");
  auto no_record = repo_->ReadVersion(NewRecordId(), 1, true);
  EXPECT_EQ(no_record.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(no_record.status().message(), "no such record");
  EXPECT_EQ(repo_->LatestVersion(NewRecordId()).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(repo_->ReadVersion("not-an-id", 1, true).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(RecordsTest, StageVersionRejectsBadInputAndStagesNothing) {
  WriteBatch b;
  Record bad_id = MakeRecord("p", "x", 1, "short");
  EXPECT_EQ(repo_->StageVersion(bad_id, b).code(), StatusCode::kInvalidArgument);
  Record v0 = MakeRecord("p", "x", 0);
  EXPECT_EQ(repo_->StageVersion(v0, b).code(), StatusCode::kInvalidArgument);
  Record wrong_size = MakeRecord("p", "x");
  wrong_size.meta.content_bytes = 7;
  EXPECT_EQ(repo_->StageVersion(wrong_size, b).code(), StatusCode::kInvalidArgument);
  Record bad_epoch = MakeRecord("p", "x", 1, NewRecordId(), "tomorrow");
  EXPECT_EQ(repo_->StageVersion(bad_epoch, b).code(), StatusCode::kInvalidArgument);
  Record bad_utf8 = MakeRecord("p", "x");
  bad_utf8.meta.author = "\xff";
  EXPECT_EQ(repo_->StageVersion(bad_utf8, b).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(b.empty());
}

TEST_F(RecordsTest, ListPatientReturnsLatestVersionsOldestRecordFirst) {
  std::vector<Record> mine;
  for (int i = 0; i < 4; ++i) {
    mine.push_back(MakeRecord("synthetic-patient-4", "note " + std::to_string(i)));
    StoreRecord(mine.back());
  }
  StoreRecord(MakeRecord("synthetic-patient-5", "someone else's"));
  Record amended = MakeRecord("synthetic-patient-4", "note 1 amended", 2, mine[1].meta.record_id);
  StoreRecord(amended);

  auto list = repo_->ListPatient("synthetic-patient-4");
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ((*list)[i].record_id, mine[i].meta.record_id);
  EXPECT_EQ((*list)[1].version, 2u);
  EXPECT_EQ((*list)[0].version, 1u);
  EXPECT_EQ(repo_->ListPatient("synthetic-patient-5")->size(), 1u);
  EXPECT_TRUE(repo_->ListPatient("synthetic-patient-nobody")->empty());
}

TEST_F(RecordsTest, ListPatientExceptLeavesOutTheKnownRecords) {
  std::vector<Record> mine;
  for (int i = 0; i < 3; ++i) {
    mine.push_back(MakeRecord("synthetic-patient-30", "note " + std::to_string(i)));
    StoreRecord(mine.back());
  }
  std::vector<std::string_view> known = {mine[0].meta.record_id, mine[2].meta.record_id};
  std::sort(known.begin(), known.end());  // as ListPatientExcept expects
  auto rest = repo_->ListPatientExcept("synthetic-patient-30", known);
  ASSERT_TRUE(rest.ok()) << rest.status().ToString();
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_EQ((*rest)[0].record_id, mine[1].meta.record_id);
  EXPECT_EQ(repo_->ListPatientExcept("synthetic-patient-30", {})->size(), 3u);
}

TEST_F(RecordsTest, ReadStoredVersionsNamesEachVersionsEpochWithItsFingerprints) {
  Record v1 = MakeRecord("synthetic-patient-31", "first", 1, NewRecordId(), "d20400101");
  Record v2 = MakeRecord("synthetic-patient-31", "second", 2, v1.meta.record_id, "d20410101");
  StoreRecord(v1);
  StoreRecord(v2);
  auto stored = repo_->ReadStoredVersions(v1.meta.record_id, 2);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(stored->epoch_ids, (std::vector<std::string>{"d20400101", "d20410101"}));
  EXPECT_EQ(stored->fingerprints, *repo_->Fingerprints(v1.meta.record_id));
  // Read without the epoch keys: a destroyed epoch still names where the versions were.
  ASSERT_TRUE(keyring_->DestroyEpoch("d20400101").ok());
  auto after = repo_->ReadStoredVersions(v1.meta.record_id, 2);
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_EQ(after->epoch_ids[0], "d20400101");
}

TEST_F(RecordsTest, ListPatientSkipsShreddedRecords) {
  StoreRecord(MakeRecord("synthetic-patient-6", "kept", 1, NewRecordId(), "d20401231"));
  StoreRecord(MakeRecord("synthetic-patient-6", "shredded", 1, NewRecordId(), "d20300101"));
  ASSERT_TRUE(keyring_->DestroyEpoch("d20300101").ok());
  auto list = repo_->ListPatient("synthetic-patient-6");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].epoch_id, "d20401231");
}

TEST_F(RecordsTest, EveryFlippedByteIsAnIntegrityFailure) {
  Record r = MakeRecord("synthetic-patient-7", "Synthetic content that must not be altered.");
  StoreRecord(r);
  const std::string id = r.meta.record_id;
  for (char kind : {'m', 'c'}) {
    const std::string key = RawKey(kind, id, 1);
    const std::string original = Value(key);
    for (size_t i = 0; i < original.size(); ++i) {
      std::string damaged = original;
      damaged[i] = static_cast<char>(damaged[i] ^ 0x01);
      Overwrite(key, damaged);
      ExpectIntegrityFailure(id, 1, std::string(1, kind) + " byte " + std::to_string(i));
    }
    Overwrite(key, original.substr(0, original.size() - 1));
    ExpectIntegrityFailure(id, 1, std::string(1, kind) + " truncated");
    Overwrite(key, original);
  }
  EXPECT_TRUE(repo_->ReadVersion(id, 1, true).ok());
  WriteBatch del;
  del.Delete(Cf::kRecords, RawKey('c', id, 1));
  ASSERT_TRUE(store_->Write(del, true).ok());
  ExpectIntegrityFailure(id, 1, "content missing");
}

TEST_F(RecordsTest, SwappedValuesAndForeignBlindIdsAreDetected) {
  Record a = MakeRecord("synthetic-patient-8", "record a");
  Record b = MakeRecord("synthetic-patient-9", "record b");
  Record a2 = MakeRecord("synthetic-patient-8", "record a v2", 2, a.meta.record_id);
  StoreRecord(a);
  StoreRecord(b);
  StoreRecord(a2);
  const std::string& ida = a.meta.record_id;
  const std::string& idb = b.meta.record_id;

  // Content of another record, under this record's key.
  const std::string a_content = Value(RawKey('c', ida, 1));
  Overwrite(RawKey('c', ida, 1), Value(RawKey('c', idb, 1)));
  ExpectIntegrityFailure(ida, 1, "content of record b");
  Overwrite(RawKey('c', ida, 1), Value(RawKey('c', ida, 2)));
  ExpectIntegrityFailure(ida, 1, "content of version 2");
  Overwrite(RawKey('c', ida, 1), a_content);

  // Header of another version or record.
  const std::string a_header = Value(RawKey('m', ida, 1));
  Overwrite(RawKey('m', ida, 1), Value(RawKey('m', ida, 2)));
  ExpectIntegrityFailure(ida, 1, "header of version 2");
  Overwrite(RawKey('m', ida, 1), Value(RawKey('m', idb, 1)));
  ExpectIntegrityFailure(ida, 1, "header of record b");

  // This record's header re-labelled with another patient's blind id.
  Header h = ParseHeader(a_header);
  h.fields[2] = repo_->PatientBlindId("synthetic-patient-9");
  Overwrite(RawKey('m', ida, 1), SerializeHeader(h));
  ExpectIntegrityFailure(ida, 1, "foreign blind id");
  Overwrite(RawKey('m', ida, 1), a_header);
  ASSERT_TRUE(repo_->ReadVersion(ida, 1, true).ok());

  // An index key that files record a under patient 9 must not leak it into patient 9's list.
  WriteBatch idx;
  idx.Put(Cf::kIndexes,
          "p" + repo_->PatientBlindId("synthetic-patient-9") + *crypto::Base64UrlDecode(ida),
          std::string(8, '\0'));
  ASSERT_TRUE(store_->Write(idx, true).ok());
  auto list = repo_->ListPatient("synthetic-patient-9");
  ASSERT_FALSE(list.ok());
  EXPECT_EQ(list.status().code(), StatusCode::kDataLoss);
}

// Large content as the data directory holds it, edited by someone without the keys (or by bit
// rot): the sealed bytes in the blob file, or any byte of the table entry that locates them (its
// key, its type, the blob's file, offset, size and compression). Each reads as an integrity
// failure, in the vault's words, never as other bytes, a crash or a read past the file; the
// metadata in other blocks still reads, and so do other records. This is the test that refused
// reading large content without RocksDB's checksums (docs/benchmarks.md, 2026-12-04): with them
// off, the flipped type byte (+21) reached an assertion in RocksDB and aborted the process.
TEST_F(RecordsTest, EveryEditedByteOnTheWayToLargeContentIsAnIntegrityFailure) {
  namespace fs = std::filesystem;
  // Enough records that the target's table entry sits in a data block of 'c' keys only (the
  // version headers, read first, are in other blocks), and the target's key is the
  // first of them, stored whole: the smallest record id.
  std::vector<Record> records;
  WriteBatch all;
  for (int i = 0; i < 150; ++i) {
    records.push_back(MakeRecord("synthetic-patient-30", crypto::RandomBytes(5000 + i)));
    ASSERT_TRUE(repo_->StageVersion(records.back(), all).ok());
  }
  ASSERT_TRUE(store_->Write(all, true).ok());
  ASSERT_TRUE(store_->Flush().ok());
  const Record& target =
      *std::min_element(records.begin(), records.end(), [&](const Record& x, const Record& y) {
        return RawKey('c', x.meta.record_id, 1) < RawKey('c', y.meta.record_id, 1);
      });
  const std::string& id = target.meta.record_id;
  const Record& other = &target == &records[0] ? records[1] : records[0];
  const std::string content_key = RawKey('c', id, 1);
  const std::string sealed = Value(content_key);
  ASSERT_EQ(sealed.size(), target.content.size() + crypto::Aead::kOverhead);
  repo_.reset();
  store_.reset();

  auto read_file = [](const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  auto write_file = [](const fs::path& p, const std::string& bytes) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(out.good());
  };
  // The one place in the files of `suffix` holding `needle`.
  auto locate = [&](std::string_view suffix, const std::string& needle) {
    std::pair<fs::path, size_t> found{{}, std::string::npos};
    int hits = 0;
    for (const auto& e : fs::directory_iterator(db_path_)) {
      if (!e.path().string().ends_with(suffix)) continue;
      const std::string bytes = read_file(e.path());
      for (size_t at = bytes.find(needle); at != std::string::npos;
           at = bytes.find(needle, at + 1)) {
        found = {e.path(), at};
        ++hits;
      }
    }
    EXPECT_EQ(hits, 1) << suffix;
    return found;
  };
  // The file edited at `at` (XOR `mask`), reopened cold (nothing cached): the content does not
  // come back, the metadata (another block) still does, the store's own Get of the same key
  // reports the damage, and another record reads back whole or not at all.
  auto expect_refused = [&](const fs::path& file, size_t at, uint8_t mask,
                            const std::string& what) {
    const std::string original = read_file(file);
    std::string edited = original;
    edited[at] = static_cast<char>(edited[at] ^ mask);
    write_file(file, edited);
    OpenStore();
    if (store_) {
      ExpectIntegrityFailure(id, 1, what);
      EXPECT_TRUE(repo_->ReadVersion(id, 1, /*with_content=*/false).ok()) << what;
      EXPECT_EQ(store_->Get(Cf::kRecords, content_key).status().code(), StatusCode::kDataLoss)
          << what;
      auto fine = repo_->ReadVersion(other.meta.record_id, 1, true);
      if (fine.ok()) {
        EXPECT_TRUE(fine->content == other.content) << what;
      }
    }
    repo_.reset();
    store_.reset();
    write_file(file, original);
  };

  // The sealed bytes in the blob file: first (nonce), middle, last (tag).
  const auto [blob, blob_at] = locate(".blob", sealed);
  ASSERT_NE(blob_at, std::string::npos);
  for (size_t i : {size_t{0}, sealed.size() / 2, sealed.size() - 1}) {
    expect_refused(blob, blob_at + i, 0x40, "blob byte " + std::to_string(i));
  }

  // The table entry: the whole user key, then its 8-byte trailer (type 0x11, a blob index) and
  // the value length and blob index that follow it.
  const auto [sst, key_at] = locate(".sst", content_key + '\x11');
  ASSERT_NE(key_at, std::string::npos);
  // Each byte of the raw id and version (not the first key byte: the block's own entry header
  // precedes it), the type, and the 12 bytes after the trailer: the value's length and the blob
  // index (type, file number, offset, size, compression).
  std::vector<size_t> offsets;
  for (size_t i = 1; i < content_key.size(); ++i) offsets.push_back(key_at + i);
  offsets.push_back(key_at + content_key.size());
  for (size_t i = 8; i < 8 + 12; ++i) offsets.push_back(key_at + content_key.size() + i);
  for (size_t at : offsets) {
    for (uint8_t mask : {uint8_t{0x01}, uint8_t{0x80}, uint8_t{0xff}}) {
      expect_refused(sst, at, mask,
                     "table byte +" + std::to_string(at - key_at) + " ^" + std::to_string(mask));
    }
  }

  // Restored, it reads back whole.
  OpenStore();
  auto read = repo_->ReadVersion(id, 1, true);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_TRUE(read->content == target.content);
  EXPECT_EQ(Value(content_key), sealed);
}

// With write access to the database but no key, the newest version cannot be made to vanish
// (the previous one would silently become "latest") nor the head be forged back.
TEST_F(RecordsTest, DeletingTheNewestVersionOrForgingTheHeadIsAnIntegrityFailure) {
  Record v1 = MakeRecord("synthetic-patient-11", "original");
  Record v2 = MakeRecord("synthetic-patient-11", "amended", 2, v1.meta.record_id);
  Record v3 = MakeRecord("synthetic-patient-11", "amended again", 3, v1.meta.record_id);
  StoreRecord(v1);
  StoreRecord(v2);
  StoreRecord(v3);
  const std::string& id = v1.meta.record_id;
  const std::string raw = *crypto::Base64UrlDecode(id);
  ASSERT_EQ(*repo_->LatestVersion(id), 3u);
  EXPECT_EQ(repo_->ReadVersion(id, 4, false).status().code(), StatusCode::kNotFound);

  const std::string head = Value("h" + raw);
  WriteBatch del;
  del.Delete(Cf::kRecords, RawKey('m', id, 3));
  del.Delete(Cf::kRecords, RawKey('c', id, 3));
  ASSERT_TRUE(store_->Write(del, true).ok());
  EXPECT_EQ(repo_->LatestVersion(id).status().code(), StatusCode::kOk);
  ExpectIntegrityFailure(id, 3, "newest version deleted");
  EXPECT_EQ(repo_->ListPatient("synthetic-patient-11").status().code(), StatusCode::kDataLoss);

  // The head re-pointed at version 2 (its tag is keyed: it cannot be recomputed).
  Overwrite("h" + raw, BE32(2) + head.substr(4));
  EXPECT_EQ(repo_->LatestVersion(id).status().code(), StatusCode::kDataLoss);
  // Another record's genuine head does not fit this record.
  Record other = MakeRecord("synthetic-patient-11", "other");
  StoreRecord(other);
  Overwrite("h" + raw, Value("h" + *crypto::Base64UrlDecode(other.meta.record_id)));
  EXPECT_EQ(repo_->LatestVersion(id).status().code(), StatusCode::kDataLoss);
  // No head at all while versions exist.
  WriteBatch no_head;
  no_head.Delete(Cf::kRecords, "h" + raw);
  ASSERT_TRUE(store_->Write(no_head, true).ok());
  EXPECT_EQ(repo_->LatestVersion(id).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(repo_->LatestVersion(NewRecordId()).status().code(), StatusCode::kNotFound);
}

TEST_F(RecordsTest, DestroyedEpochMeansCryptoShredded) {
  Record r = MakeRecord("synthetic-patient-10", "to be shredded", 1, NewRecordId(), "d20300101");
  StoreRecord(r);
  ASSERT_TRUE(repo_->ReadVersion(r.meta.record_id, 1, true).ok());
  ASSERT_TRUE(keyring_->DestroyEpoch("d20300101").ok());
  for (bool with_content : {true, false}) {
    auto read = repo_->ReadVersion(r.meta.record_id, 1, with_content);
    ASSERT_FALSE(read.ok());
    EXPECT_EQ(read.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_EQ(read.status().message(), "record was crypto-shredded");
  }
  WriteBatch b;
  EXPECT_EQ(repo_
                ->StageVersion(
                    MakeRecord("synthetic-patient-10", "new", 2, r.meta.record_id, "d20300101"), b)
                .code(),
            StatusCode::kFailedPrecondition);
}

// The sweep's batched recheck read gives what ReadVersion and ReadStoredVersions give one by one.
TEST_F(RecordsTest, ReadLatestForSweepMatchesTheOneByOneReads) {
  Record a1 = MakeRecord("synthetic-patient-23", "first", 1, NewRecordId(), "d20300101");
  Record a2 = MakeRecord("synthetic-patient-23", "second", 2, a1.meta.record_id, "d20400101");
  Record b = MakeRecord("synthetic-patient-24", "other", 1, NewRecordId(), "d20400101");
  Record shredded = MakeRecord("synthetic-patient-25", "shredded", 1, NewRecordId(), "d20300202");
  for (const Record* r : {&a1, &a2, &b, &shredded}) StoreRecord(*r);
  ASSERT_TRUE(keyring_->DestroyEpoch("d20300202").ok());
  const std::vector<std::string> ids = {a1.meta.record_id, b.meta.record_id,
                                        shredded.meta.record_id, NewRecordId(), "not-an-id"};
  auto reads = repo_->ReadLatestForSweep(ids);
  ASSERT_EQ(reads.size(), ids.size());
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_TRUE(reads[i].ok()) << reads[i].status().ToString();
    const uint32_t latest = *repo_->LatestVersion(ids[i]);
    ExpectSameMetadata(reads[i]->meta, repo_->ReadVersion(ids[i], latest, false)->meta);
    auto stored = repo_->ReadStoredVersions(ids[i], latest);
    ASSERT_TRUE(stored.ok());
    EXPECT_EQ(reads[i]->stored.epoch_ids, stored->epoch_ids);
    EXPECT_EQ(reads[i]->stored.fingerprints, stored->fingerprints);
  }
  EXPECT_EQ(reads[0]->stored.epoch_ids, (std::vector<std::string>{"d20300101", "d20400101"}));
  EXPECT_EQ(reads[2].status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(reads[3].status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(reads[4].ok());

  // An older version without its content is damage, as ReadStoredVersions says too; the other
  // records of the batch are read as usual.
  DeleteRaw(Cf::kRecords, RawKey('c', a1.meta.record_id, 1));
  auto damaged = repo_->ReadLatestForSweep({a1.meta.record_id, b.meta.record_id});
  EXPECT_EQ(damaged[0].status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(damaged[1].ok());
}

// The sweep's read-back: a record counts as erased only if no version it has opens any more.
TEST_F(RecordsTest, CheckErasedTellsErasedRecordsFromOnesThatStillOpen) {
  Record gone = MakeRecord("synthetic-patient-20", "gone", 1, NewRecordId(), "d20300101");
  Record gone2 =
      MakeRecord("synthetic-patient-20", "gone too", 2, gone.meta.record_id, "d20300101");
  // One version still under a live epoch: the record still opens.
  Record half = MakeRecord("synthetic-patient-21", "half", 1, NewRecordId(), "d20300101");
  Record half2 = MakeRecord("synthetic-patient-21", "half v2", 2, half.meta.record_id, "d20400101");
  Record live = MakeRecord("synthetic-patient-22", "live", 1, NewRecordId(), "d20400101");
  for (const Record* r : {&gone, &gone2, &half, &half2, &live}) StoreRecord(*r);
  ASSERT_TRUE(keyring_->DestroyEpoch("d20300101").ok());

  auto checked =
      repo_->CheckErased({gone.meta.record_id, half.meta.record_id, live.meta.record_id});
  ASSERT_TRUE(checked.ok()) << checked.status().ToString();
  ASSERT_EQ(checked->size(), 3u);
  EXPECT_EQ((*checked)[0].latest, 2u);
  EXPECT_TRUE((*checked)[0].erased);
  EXPECT_EQ((*checked)[1].latest, 2u);
  EXPECT_FALSE((*checked)[1].erased);
  EXPECT_EQ((*checked)[2].latest, 1u);
  EXPECT_FALSE((*checked)[2].erased);
  EXPECT_TRUE(repo_->CheckErased({})->empty());

  // A forged head (pointing back at version 1) or a missing version is not taken for erased.
  const std::string raw = *crypto::Base64UrlDecode(gone.meta.record_id);
  const std::string head = Value("h" + raw);
  Overwrite("h" + raw, BE32(1) + head.substr(4));
  EXPECT_EQ(repo_->CheckErased({gone.meta.record_id}).status().code(), StatusCode::kDataLoss);
  Overwrite("h" + raw, head);
  DeleteRaw(Cf::kRecords, RawKey('m', gone.meta.record_id, 2));
  auto missing = repo_->CheckErased({live.meta.record_id, gone.meta.record_id});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(missing.status().message().find(gone.meta.record_id + " version 2 is missing"),
            std::string::npos)
      << missing.status().message();
  EXPECT_EQ(repo_->CheckErased({NewRecordId()}).status().code(), StatusCode::kNotFound);
}

TEST_F(RecordsTest, NoPlaintextPatientIdOrDekBytesInAnyStoreFile) {
  // Random, so that any 32-byte piece found in a file can only have come from these values.
  const std::string patient = "synthetic-patient-" + RandomHex(24);
  const std::string small_text = "Synthetic progress note " + RandomHex(200);
  const std::string large_text = "Synthetic imaging report " + RandomHex(40000);
  const std::string author = "dr.synthetic." + RandomHex(24);
  Record small = MakeRecord(patient, small_text);
  small.meta.author = author;
  Record large = MakeRecord(patient, large_text);
  StoreRecord(small);
  StoreRecord(large);
  const std::vector<std::string> plaintexts = {patient, small_text, large_text, author};

  // Recover each DEK the way a reader does (epoch key + documented AAD) to look for its bytes.
  std::vector<std::string> deks;
  for (const Record* r : {&small, &large}) {
    Header h = ParseHeader(Value(RawKey('m', r->meta.record_id, 1)));
    std::string aad = "phivault/dek/v1" + *crypto::Base64UrlDecode(r->meta.record_id) + BE32(1) +
                      r->meta.epoch_id;
    auto epoch = keyring_->GetEpoch(r->meta.epoch_id);
    ASSERT_TRUE(epoch.ok());
    auto dek = crypto::UnwrapKey(**epoch, h.fields[1], aad);
    ASSERT_TRUE(dek.ok()) << "wrapped DEK does not open with the documented AAD";
    deks.emplace_back(dek->view(crypto::InsecureSecretKeyAccess::Get()));
  }
  ASSERT_EQ(deks.size(), 2u);
  EXPECT_NE(deks[0], deks[1]);

  auto expect_absent = [&](const std::string& when) {
    for (const auto& p : plaintexts) {
      EXPECT_EQ(FilesContaining(db_path_, p), std::vector<std::string>{}) << when;
    }
    for (const auto& k : deks) {
      EXPECT_EQ(FilesContaining(db_path_, k), std::vector<std::string>{}) << when;
    }
  };
  expect_absent("in the WAL");
  ASSERT_TRUE(store_->Flush().ok());
  ASSERT_TRUE(store_->CompactAll().ok());
  expect_absent("after flush and compaction");
  // The search works on these files: the sealed content is there.
  EXPECT_FALSE(FilesContaining(db_path_, Value(RawKey('c', large.meta.record_id, 1))).empty());
}

// ---- Rewrap: moving versions between epochs (issue 9, retention and legal holds)

TEST_F(RecordsTest, RewrapMovesEveryVersionWithoutTouchingSealedBytes) {
  Record v1 = MakeRecord("synthetic-patient-20", "original", 1, NewRecordId(), "d20361129");
  Record v2 = MakeRecord("synthetic-patient-20", crypto::RandomBytes(10000), 2, v1.meta.record_id,
                         "d20401231");
  Record v3 = MakeRecord("synthetic-patient-20", "third", 3, v1.meta.record_id, "hcase-17");
  for (const Record* r : {&v1, &v2, &v3}) StoreRecord(*r);
  const std::string& id = v1.meta.record_id;
  std::vector<std::string> headers, contents;
  for (uint32_t v = 1; v <= 3; ++v) {
    headers.push_back(Value(RawKey('m', id, v)));
    contents.push_back(Value(RawKey('c', id, v)));
  }

  EXPECT_EQ(Rewrap(id, "hcase-17"), 2u);  // version 3 is there already
  for (uint32_t v = 1; v <= 3; ++v) {
    const Header before = ParseHeader(headers[v - 1]);
    const Header after = ParseHeader(Value(RawKey('m', id, v)));
    EXPECT_EQ(after.fields[0], "hcase-17");
    EXPECT_EQ(after.fields[1] == before.fields[1], v == 3) << "wrapped DEK of version " << v;
    EXPECT_EQ(after.fields[2], before.fields[2]) << "blind id";
    EXPECT_EQ(after.fields[3], before.fields[3]) << "sealed metadata";
    EXPECT_EQ(Value(RawKey('c', id, v)), contents[v - 1]) << "content is never re-encrypted";
  }
  EXPECT_TRUE(EpochEntries("d20361129").empty());
  EXPECT_TRUE(EpochEntries("d20401231").empty());
  EXPECT_EQ(EpochEntries("hcase-17"),
            (std::vector<std::pair<std::string, uint32_t>>{{id, 1}, {id, 2}, {id, 3}}));

  // The old epochs can go: every version still reads, identical but for its epoch.
  ASSERT_TRUE(keyring_->DestroyEpoch("d20361129").ok());
  ASSERT_TRUE(keyring_->DestroyEpoch("d20401231").ok());
  for (const Record* r : {&v1, &v2, &v3}) {
    auto read = repo_->ReadVersion(id, r->meta.version, true);
    ASSERT_TRUE(read.ok()) << read.status().ToString();
    Record expected = *r;
    expected.meta.epoch_id = "hcase-17";
    ExpectSameMetadata(read->meta, expected.meta);
    EXPECT_TRUE(read->content == r->content);
  }
  EXPECT_EQ(*repo_->LatestVersion(id), 3u);
  EXPECT_EQ(Rewrap(id, "hcase-17"), 0u);  // nothing left to do

  // And back again (a hold released): the DEK AAD names the new epoch each time.
  EXPECT_EQ(Rewrap(id, "d20500101"), 3u);
  ASSERT_TRUE(keyring_->DestroyEpoch("hcase-17").ok());
  EXPECT_EQ(repo_->ReadVersion(id, 2, true)->content, v2.content);
  EXPECT_EQ(repo_->ListPatient("synthetic-patient-20")->at(0).epoch_id, "d20500101");
}

TEST_F(RecordsTest, RewrapOntoADestroyedEpochFailsAndStagesNothing) {
  Record r = MakeRecord("synthetic-patient-21", "kept", 1, NewRecordId(), "d20361129");
  StoreRecord(r);
  ASSERT_TRUE(keyring_->GetOrCreateEpoch("d20300101").ok());
  ASSERT_TRUE(keyring_->DestroyEpoch("d20300101").ok());
  WriteBatch b;
  auto moved = repo_->StageRewrap(r.meta.record_id, "d20300101", b);
  ASSERT_FALSE(moved.ok());
  EXPECT_EQ(moved.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(repo_->ReadVersion(r.meta.record_id, 1, true)->content, "kept");
}

TEST_F(RecordsTest, RewrapAfterTheOldEpochWasDestroyedIsShredded) {
  Record v1 = MakeRecord("synthetic-patient-22", "gone", 1, NewRecordId(), "d20300101");
  Record v2 = MakeRecord("synthetic-patient-22", "kept", 2, v1.meta.record_id, "d20401231");
  StoreRecord(v1);
  StoreRecord(v2);
  ASSERT_TRUE(keyring_->DestroyEpoch("d20300101").ok());
  WriteBatch b;
  auto moved = repo_->StageRewrap(v1.meta.record_id, "hcase-18", b);
  ASSERT_FALSE(moved.ok());
  EXPECT_EQ(moved.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(moved.status().message(), "record was crypto-shredded");
  EXPECT_TRUE(b.empty()) << "version 2 is not moved alone";
  auto read = repo_->ReadVersion(v1.meta.record_id, 1, false);
  EXPECT_EQ(read.status().message(), "record was crypto-shredded");  // no certificate yet
  EXPECT_EQ(repo_->ReadVersion(v1.meta.record_id, 2, true)->content, "kept");
}

TEST_F(RecordsTest, RewrapRejectsBadInputAndDamage) {
  WriteBatch b;
  EXPECT_EQ(repo_->StageRewrap("short", "d20361129", b).status().code(),
            StatusCode::kInvalidArgument);
  Record r = MakeRecord("synthetic-patient-23", "x");
  Record r2 = MakeRecord("synthetic-patient-23", "x2", 2, r.meta.record_id, "d20401231");
  StoreRecord(r);
  StoreRecord(r2);
  const std::string& id = r.meta.record_id;
  for (const char* bad : {"tomorrow", "", "d2036112", "h"}) {
    EXPECT_EQ(repo_->StageRewrap(id, bad, b).status().code(), StatusCode::kInvalidArgument) << bad;
  }
  auto missing = repo_->StageRewrap(NewRecordId(), "d20361129", b);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "no such record");

  // A header claiming another epoch, or holding another version's wrapped DEK, does not unwrap.
  const std::string original = Value(RawKey('m', id, 1));
  Header h = ParseHeader(original);
  h.fields[0] = "d20401231";
  Overwrite(RawKey('m', id, 1), SerializeHeader(h));
  EXPECT_EQ(repo_->StageRewrap(id, "hcase-19", b).status().code(), StatusCode::kDataLoss);
  h = ParseHeader(original);
  h.fields[1] = ParseHeader(Value(RawKey('m', id, 2))).fields[1];
  Overwrite(RawKey('m', id, 1), SerializeHeader(h));
  EXPECT_EQ(repo_->StageRewrap(id, "hcase-19", b).status().code(), StatusCode::kDataLoss);
  DeleteRaw(Cf::kRecords, RawKey('m', id, 1));
  EXPECT_EQ(repo_->StageRewrap(id, "hcase-19", b).status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(b.empty());
  Overwrite(RawKey('m', id, 1), original);
  EXPECT_EQ(Rewrap(id, "hcase-19"), 2u);
}

TEST_F(RecordsTest, ScanEpochListsVersionsInKeyOrderAndStops) {
  std::vector<std::pair<std::string, uint32_t>> expected;
  for (int i = 0; i < 5; ++i) {
    Record r = MakeRecord("synthetic-patient-24", "n", 1, NewRecordId(), "d20361129");
    StoreRecord(r);
    StoreRecord(MakeRecord("synthetic-patient-24", "n2", 2, r.meta.record_id, "d20361129"));
    expected.emplace_back(r.meta.record_id, 1);
    expected.emplace_back(r.meta.record_id, 2);
  }
  StoreRecord(MakeRecord("synthetic-patient-24", "other", 1, NewRecordId(), "d20361130"));
  StoreRecord(MakeRecord("synthetic-patient-24", "held", 1, NewRecordId(), "hd20361129"));
  std::sort(expected.begin(), expected.end(), [](const auto& a, const auto& b) {
    return std::pair(*crypto::Base64UrlDecode(a.first), a.second) <
           std::pair(*crypto::Base64UrlDecode(b.first), b.second);
  });
  EXPECT_EQ(EpochEntries("d20361129"), expected);
  EXPECT_EQ(EpochEntries("d20361130").size(), 1u);
  EXPECT_TRUE(EpochEntries("d20990101").empty());  // never existed

  int calls = 0;
  ASSERT_TRUE(
      repo_->ScanEpoch("d20361129", [&](std::string_view, uint32_t) { return ++calls < 3; }).ok());
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(repo_->ScanEpoch("d2036", [](std::string_view, uint32_t) { return true; }).code(),
            StatusCode::kInvalidArgument);

  // A destroyed epoch's index is still listed: it is what the sweep deletes next.
  ASSERT_TRUE(keyring_->DestroyEpoch("d20361129").ok());
  EXPECT_EQ(EpochEntries("d20361129"), expected);
}

// ---- Shred: deletion after destruction, the tombstone, and the byte search that proves it

TEST_F(RecordsTest, ShreddedRecordLeavesNoStoredByteInAnyFile) {
  const std::string patient = "synthetic-patient-" + RandomHex(16);
  const std::string small_text = "Synthetic note " + RandomHex(100);
  const std::string large_text = "Synthetic imaging report " + RandomHex(20000);  // blob file
  Record small = MakeRecord(patient, small_text);
  Record large = MakeRecord(patient, "first draft " + RandomHex(3000), 1, NewRecordId());
  Record large2 = MakeRecord(patient, large_text, 2, large.meta.record_id);
  Record live = MakeRecord(patient, "Synthetic live note " + RandomHex(100));
  Record live_large = MakeRecord(patient, "Synthetic live scan " + RandomHex(20000));
  for (const Record* r : {&small, &large, &large2, &live, &live_large}) StoreRecord(*r);
  ASSERT_TRUE(store_->Flush().ok());

  std::vector<std::string> dead, alive;
  for (const Record* r : {&small, &large}) {
    auto f = repo_->Fingerprints(r->meta.record_id);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    dead.insert(dead.end(), f->begin(), f->end());
  }
  for (const Record* r : {&live, &live_large}) {
    auto f = repo_->Fingerprints(r->meta.record_id);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    alive.insert(alive.end(), f->begin(), f->end());
  }
  ASSERT_EQ(dead.size(), 9u);  // 3 versions x (content, metadata, wrapped DEK)
  ASSERT_EQ(alive.size(), 6u);
  auto before = FindInFiles(db_path_, dead, 1000);
  ASSERT_TRUE(before.ok());
  std::set<size_t> found_before;
  for (const auto& hit : *before) found_before.insert(hit.needle);
  EXPECT_EQ(found_before.size(), dead.size()) << "the search can see these bytes";

  const std::string certificate = RandomHex(16);
  WriteBatch b;
  ASSERT_TRUE(repo_->StageShred(small.meta.record_id, certificate, 1800000000000000, b).ok());
  ASSERT_TRUE(repo_->StageShred(large.meta.record_id, certificate, 1800000000000000, b).ok());
  ASSERT_TRUE(store_->Write(b, true).ok());
  ASSERT_TRUE(store_->CompactAll().ok());

  auto after = FindInFiles(db_path_, dead, 1000);
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  for (const auto& hit : *after) ADD_FAILURE() << "needle " << hit.needle << " in " << hit.path;
  for (const std::string& text : {small_text, large_text, large.content}) {
    EXPECT_EQ(FilesContaining(db_path_, text), std::vector<std::string>{});
  }
  auto still = FindInFiles(db_path_, alive, 1000);
  ASSERT_TRUE(still.ok());
  std::set<size_t> found_alive;
  for (const auto& hit : *still) found_alive.insert(hit.needle);
  EXPECT_EQ(found_alive.size(), alive.size()) << "a live record's bytes are still found";

  // Gone for every reader, with the certificate that says why.
  const std::string expected = "record was crypto-shredded (certificate " + certificate + ")";
  for (const Record* r : {&small, &large2}) {
    const std::string& id = r->meta.record_id;
    auto latest = repo_->LatestVersion(id);
    EXPECT_EQ(latest.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_EQ(latest.status().message(), expected);
    for (uint32_t v = 1; v <= r->meta.version; ++v) {
      for (bool with_content : {true, false}) {
        auto read = repo_->ReadVersion(id, v, with_content);
        EXPECT_EQ(read.status().code(), StatusCode::kFailedPrecondition);
        EXPECT_EQ(read.status().message(), expected);
      }
      bool gate_called = false;
      auto gated = repo_->ReadVersionGated(id, v, [&](const RecordMetadata&) {
        gate_called = true;
        return Status::Ok();
      });
      EXPECT_EQ(gated.status().message(), expected);
      EXPECT_FALSE(gate_called);
    }
    EXPECT_EQ(*repo_->ShreddedBy(id), std::optional<std::string>(certificate));
    EXPECT_EQ(repo_->Fingerprints(id).status().message(), expected);
    WriteBatch none;
    EXPECT_EQ(repo_->StageRewrap(id, "hcase-20", none).status().message(), expected);
  }
  auto list = repo_->ListPatient(patient);
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].record_id, live.meta.record_id);
  EXPECT_EQ((*list)[1].record_id, live_large.meta.record_id);
  EXPECT_EQ(EpochEntries("d20361129").size(), 2u);
  EXPECT_EQ(*repo_->ShreddedBy(live.meta.record_id), std::nullopt);
  EXPECT_EQ(*repo_->ReadAsShredded(
                {small.meta.record_id, live.meta.record_id, large2.meta.record_id, NewRecordId()}),
            (std::vector<bool>{true, false, true, false}));
  EXPECT_EQ(repo_->ReadAsShredded({"short"}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(repo_->ReadVersion(live_large.meta.record_id, 1, true)->content, live_large.content);
}

// A rewrap leaves the old header (with the DEK wrapped under the old, possibly still live epoch)
// in files until compaction; shredding and compacting removes it too, and the metadata
// fingerprint, the same in both headers, is what finds it.
TEST_F(RecordsTest, ShredAfterRewrapLeavesNoOldHeaderBehind) {
  Record r = MakeRecord("synthetic-patient-31", "Synthetic note " + RandomHex(100));
  StoreRecord(r);
  const std::string& id = r.meta.record_id;
  ASSERT_TRUE(store_->Flush().ok());
  const std::string old_wrap = ParseHeader(Value(RawKey('m', id, 1))).fields[1];
  EXPECT_EQ(Rewrap(id, "d20300101"), 1u);
  ASSERT_TRUE(store_->Flush().ok());
  auto fingerprints = repo_->Fingerprints(id);
  ASSERT_TRUE(fingerprints.ok());
  const std::vector<std::string> old_only = {old_wrap};
  EXPECT_FALSE(FindInFiles(db_path_, old_only)->empty()) << "the old header is still in a file";
  std::vector<size_t> found(3, 0);
  auto hits = FindInFiles(db_path_, *fingerprints, 1000);
  ASSERT_TRUE(hits.ok());
  for (const auto& hit : *hits) ++found.at(hit.needle);
  EXPECT_GE(found[0], 1u) << "content";
  EXPECT_GE(found[1], 2u) << "the metadata fingerprint is in the old and the new header";
  EXPECT_GE(found[2], 1u) << "new wrapped DEK";

  Shred(id, RandomHex(16));
  ASSERT_TRUE(store_->CompactAll().ok());
  EXPECT_TRUE(FindInFiles(db_path_, old_only)->empty());
  EXPECT_TRUE(FindInFiles(db_path_, *fingerprints)->empty());
}

TEST_F(RecordsTest, ShredNeedsNoEpochKeyAndDeletesEveryKeyOfTheRecord) {
  Record v1 = MakeRecord("synthetic-patient-25", "one", 1, NewRecordId(), "d20300101");
  Record v2 = MakeRecord("synthetic-patient-25", "two", 2, v1.meta.record_id, "d20300102");
  StoreRecord(v1);
  StoreRecord(v2);
  const std::string& id = v1.meta.record_id;
  const std::string raw = *crypto::Base64UrlDecode(id);
  ASSERT_TRUE(keyring_->DestroyEpoch("d20300101").ok());
  ASSERT_TRUE(keyring_->DestroyEpoch("d20300102").ok());
  EXPECT_EQ(repo_->Fingerprints(id)->size(), 6u);  // readable without the keys
  const std::string certificate = RandomHex(16);
  Shred(id, certificate);

  for (uint32_t v = 1; v <= 2; ++v) {
    EXPECT_EQ(Stored(Cf::kRecords, RawKey('m', id, v)), std::nullopt);
    EXPECT_EQ(Stored(Cf::kRecords, RawKey('c', id, v)), std::nullopt);
  }
  EXPECT_EQ(Stored(Cf::kRecords, "h" + raw), std::nullopt);
  EXPECT_EQ(Stored(Cf::kIndexes, "p" + repo_->PatientBlindId("synthetic-patient-25") + raw),
            std::nullopt);
  EXPECT_TRUE(EpochEntries("d20300101").empty());
  EXPECT_TRUE(EpochEntries("d20300102").empty());
  // Only the tombstone is left, in the layout records.h documents.
  const auto tombstone = Stored(Cf::kIndexes, TombstoneKey(id));
  ASSERT_TRUE(tombstone.has_value());
  ASSERT_EQ(tombstone->size(), 32u + 8 + 32);
  EXPECT_EQ(tombstone->substr(0, 32), certificate);
  EXPECT_EQ(tombstone->substr(32, 8), BE32(0x00066517) + BE32(0x28988000));  // BE64 of the time
  EXPECT_EQ(repo_->ReadVersion(id, 1, true).status().message(),
            "record was crypto-shredded (certificate " + certificate + ")");
  EXPECT_TRUE(repo_->ListPatient("synthetic-patient-25")->empty());
}

TEST_F(RecordsTest, ShredOfAnErasedRecordFromWhatTheSweepKnowsDeletesEveryKey) {
  Record v1 = MakeRecord("synthetic-patient-31", "one", 1, NewRecordId(), "d20300103");
  Record v2 = MakeRecord("synthetic-patient-31", "two", 2, v1.meta.record_id, "d20300103");
  Record other = MakeRecord("synthetic-patient-31", "kept", 1, NewRecordId(), "d20300104");
  StoreRecord(v1);
  StoreRecord(v2);
  StoreRecord(other);
  const std::string& id = v1.meta.record_id;
  const std::string raw = *crypto::Base64UrlDecode(id);
  const std::string bid = repo_->PatientBlindId("synthetic-patient-31");
  ASSERT_TRUE(keyring_->DestroyEpoch("d20300103").ok());
  const std::string certificate = RandomHex(16);
  WriteBatch b;
  ASSERT_TRUE(repo_->StageEpochIndexErase("d20300103", b).ok());
  ASSERT_TRUE(repo_->StageShredErased(id, 2, bid, certificate, 1800000000000000, b).ok());
  ASSERT_TRUE(store_->Write(b, true).ok());

  for (uint32_t v = 1; v <= 2; ++v) {
    EXPECT_EQ(Stored(Cf::kRecords, RawKey('m', id, v)), std::nullopt);
    EXPECT_EQ(Stored(Cf::kRecords, RawKey('c', id, v)), std::nullopt);
  }
  EXPECT_EQ(Stored(Cf::kRecords, "h" + raw), std::nullopt);
  EXPECT_EQ(Stored(Cf::kIndexes, "p" + bid + raw), std::nullopt);
  EXPECT_TRUE(EpochEntries("d20300103").empty());
  EXPECT_EQ(*repo_->ShreddedBy(id), std::optional<std::string>(certificate));
  EXPECT_EQ(repo_->ReadVersion(id, 2, true).status().message(),
            "record was crypto-shredded (certificate " + certificate + ")");
  // The patient's record in another epoch is untouched, index entries included.
  EXPECT_EQ(EpochEntries("d20300104").size(), 1u);
  auto listed = repo_->ListPatient("synthetic-patient-31");
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ(listed->front().record_id, other.meta.record_id);

  WriteBatch none;
  const std::string good = RandomHex(16);
  EXPECT_EQ(repo_->StageShredErased("short", 1, bid, good, 0, none).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(repo_->StageShredErased(id, 0, bid, good, 0, none).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(repo_->StageShredErased(id, 1, bid.substr(1), good, 0, none).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(repo_->StageShredErased(id, 1, bid, RandomHex(15), 0, none).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(repo_->StageShredErased(id, 1, bid, good, -1, none).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(repo_->StageEpochIndexErase("not an epoch", none).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(none.empty());
}

TEST_F(RecordsTest, ShredIsOnceAndRejectsBadInput) {
  Record r = MakeRecord("synthetic-patient-26", "x");
  StoreRecord(r);
  const std::string& id = r.meta.record_id;
  WriteBatch b;
  for (const std::string& bad : {RandomHex(15), RandomHex(17), std::string(32, 'A'),
                                 std::string(31, 'a') + "g", std::string()}) {
    EXPECT_EQ(repo_->StageShred(id, bad, 0, b).code(), StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(repo_->StageShred(id, RandomHex(16), -1, b).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(repo_->StageShred("short", RandomHex(16), 0, b).code(), StatusCode::kInvalidArgument);
  Status missing = repo_->StageShred(NewRecordId(), RandomHex(16), 0, b);
  EXPECT_EQ(missing.code(), StatusCode::kNotFound);
  EXPECT_EQ(missing.message(), "no such record");
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(repo_->ShreddedBy("short").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(*repo_->ShreddedBy(NewRecordId()), std::nullopt);

  const std::string first = RandomHex(16);
  Shred(id, first);
  ASSERT_TRUE(repo_->StageShred(id, RandomHex(16), 5, b).ok());
  EXPECT_TRUE(b.empty()) << "a second shred stages nothing";
  EXPECT_EQ(*repo_->ShreddedBy(id), std::optional<std::string>(first));
}

TEST_F(RecordsTest, AlteredOrForgedTombstoneIsAnIntegrityFailure) {
  Record a = MakeRecord("synthetic-patient-27", "a");
  Record b = MakeRecord("synthetic-patient-27", "b");
  StoreRecord(a);
  StoreRecord(b);
  Shred(a.meta.record_id, RandomHex(16));
  Shred(b.meta.record_id, RandomHex(16));
  const std::string key = TombstoneKey(a.meta.record_id);
  const std::string original = *Stored(Cf::kIndexes, key);
  auto expect_integrity_failure = [&](const std::string& what) {
    for (auto code : {repo_->LatestVersion(a.meta.record_id).status().code(),
                      repo_->ReadVersion(a.meta.record_id, 1, true).status().code(),
                      repo_->ShreddedBy(a.meta.record_id).status().code()}) {
      EXPECT_EQ(code, StatusCode::kDataLoss) << what;
    }
    // The sweep's batched check does not take it for destroyed either.
    EXPECT_EQ(*repo_->ReadAsShredded({a.meta.record_id, b.meta.record_id}),
              (std::vector<bool>{false, true}))
        << what;
    WriteBatch none;
    EXPECT_EQ(repo_->StageShred(a.meta.record_id, RandomHex(16), 0, none).code(),
              StatusCode::kDataLoss)
        << what;
  };
  for (size_t i = 0; i < original.size(); ++i) {
    std::string damaged = original;
    damaged[i] = static_cast<char>(damaged[i] ^ 0x01);
    PutRaw(Cf::kIndexes, key, damaged);
    expect_integrity_failure("byte " + std::to_string(i));
  }
  PutRaw(Cf::kIndexes, key, original.substr(1));
  expect_integrity_failure("truncated");
  PutRaw(Cf::kIndexes, key, *Stored(Cf::kIndexes, TombstoneKey(b.meta.record_id)));
  expect_integrity_failure("another record's tombstone");
  PutRaw(Cf::kIndexes, key, original);
  EXPECT_EQ(repo_->LatestVersion(a.meta.record_id).status().code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(*repo_->ReadAsShredded({a.meta.record_id}), std::vector<bool>{true});

  // Someone who deletes a live record and plants a tombstone cannot make it look destroyed.
  Record c = MakeRecord("synthetic-patient-27", "c");
  StoreRecord(c);
  const std::string raw_c = *crypto::Base64UrlDecode(c.meta.record_id);
  DeleteRaw(Cf::kRecords, "h" + raw_c);
  DeleteRaw(Cf::kRecords, RawKey('m', c.meta.record_id, 1));
  DeleteRaw(Cf::kRecords, RawKey('c', c.meta.record_id, 1));
  PutRaw(Cf::kIndexes, TombstoneKey(c.meta.record_id), original);
  EXPECT_EQ(repo_->ReadVersion(c.meta.record_id, 1, true).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(repo_->ShreddedBy(c.meta.record_id).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(*repo_->ReadAsShredded({c.meta.record_id}), std::vector<bool>{false});
  // Its patient index entry is still there: listing the patient reports the damage.
  EXPECT_EQ(repo_->ListPatient("synthetic-patient-27").status().code(), StatusCode::kDataLoss);
}

TEST_F(RecordsTest, DeletedTombstoneIsNotFoundOrDamageNeverShredded) {
  Record r = MakeRecord("synthetic-patient-28", "x");
  StoreRecord(r);
  const std::string& id = r.meta.record_id;
  const std::string header = Value(RawKey('m', id, 1));
  Shred(id, RandomHex(16));
  DeleteRaw(Cf::kIndexes, TombstoneKey(id));
  EXPECT_EQ(repo_->LatestVersion(id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(repo_->ReadVersion(id, 1, true).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(*repo_->ShreddedBy(id), std::nullopt);
  // A version put back without head or tombstone is damage, as before shredding existed.
  Overwrite(RawKey('m', id, 1), header);
  EXPECT_EQ(repo_->LatestVersion(id).status().code(), StatusCode::kDataLoss);
}

TEST_F(RecordsTest, PatientIndexEntryOfAShreddedRecordIsAnIntegrityFailure) {
  Record r = MakeRecord("synthetic-patient-29", "x");
  StoreRecord(r);
  const std::string key = "p" + repo_->PatientBlindId("synthetic-patient-29") +
                          *crypto::Base64UrlDecode(r.meta.record_id);
  const std::string entry = *Stored(Cf::kIndexes, key);
  Shred(r.meta.record_id, RandomHex(16));
  EXPECT_TRUE(repo_->ListPatient("synthetic-patient-29")->empty());
  PutRaw(Cf::kIndexes, key, entry);
  EXPECT_EQ(repo_->ListPatient("synthetic-patient-29").status().code(), StatusCode::kDataLoss);
}

TEST_F(RecordsTest, FingerprintsNameEachVersionsStoredBytes) {
  Record v1 = MakeRecord("synthetic-patient-30", "one");
  Record v2 = MakeRecord("synthetic-patient-30", "two", 2, v1.meta.record_id);
  StoreRecord(v1);
  StoreRecord(v2);
  const std::string& id = v1.meta.record_id;
  auto f = repo_->Fingerprints(id);
  ASSERT_TRUE(f.ok());
  ASSERT_EQ(f->size(), 6u);
  for (uint32_t v = 1; v <= 2; ++v) {
    const Header h = ParseHeader(Value(RawKey('m', id, v)));
    EXPECT_EQ((*f)[3 * (v - 1)], Value(RawKey('c', id, v)).substr(0, 32));
    EXPECT_EQ((*f)[3 * (v - 1) + 1], h.fields[3].substr(0, 32));
    EXPECT_EQ((*f)[3 * (v - 1) + 2], h.fields[1]);
  }
  EXPECT_EQ(std::set<std::string>(f->begin(), f->end()).size(), 6u);
  EXPECT_EQ(repo_->Fingerprints(NewRecordId()).status().code(), StatusCode::kNotFound);
  DeleteRaw(Cf::kRecords, RawKey('c', id, 1));
  EXPECT_EQ(repo_->Fingerprints(id).status().code(), StatusCode::kDataLoss);
}

TEST(RecordIdTest, NewIdsAreValidAndDistinct) {
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    std::string id = NewRecordId();
    EXPECT_TRUE(IsValidRecordId(id)) << id;
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 1000u);
}

TEST(RecordIdTest, RejectsMalformedIds) {
  const std::string good = "AAAAAAAAAAAAAAAAAAAAAA";
  EXPECT_TRUE(IsValidRecordId(good));
  EXPECT_TRUE(IsValidRecordId("_-_-_-_-_-_-_-_-_-_-_w"));
  EXPECT_FALSE(IsValidRecordId(""));
  EXPECT_FALSE(IsValidRecordId(good.substr(1)));
  EXPECT_FALSE(IsValidRecordId(good + "A"));
  EXPECT_FALSE(IsValidRecordId("AAAAAAAAAAAAAAAAAAAAAB"));  // non-zero trailing bits
  EXPECT_FALSE(IsValidRecordId("AAAAAAAAAAAAAAAAAAAA+A"));
  EXPECT_FALSE(IsValidRecordId("AAAAAAAAAAAAAAAAAAAA/A"));
  EXPECT_FALSE(IsValidRecordId("AAAAAAAAAAAAAAAAAAAAA="));
  EXPECT_FALSE(IsValidRecordId(std::string("AAAAAAAAAAAAAAAAAAAA\0A", 22)));
}

// The sealed metadata document: MetadataFromJson (a streaming parse, no DOM) takes exactly the
// documents with every member of its type, and refuses the rest.
constexpr std::string_view kMetaDoc =
    R"({"record_id":"AAAAAAAAAAAAAAAAAAAAAA","version":3,"patient_id":"synthetic-007",)"
    R"("category":"clinical-note","content_type":"text/plain","encounter_date":"2020-01-02",)"
    R"("author":"dr-synthetic","created_us":1700000000000000,"content_bytes":12,)"
    R"("amendment_reason":""})";

std::string WithMember(std::string_view doc, std::string_view member) {
  std::string out(doc.substr(0, doc.size() - 1));
  return out + "," + std::string(member) + "}";
}

TEST(MetadataJsonTest, ParsesEveryMember) {
  auto m = MetadataFromJson(kMetaDoc);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->record_id, "AAAAAAAAAAAAAAAAAAAAAA");
  EXPECT_EQ(m->version, 3u);
  EXPECT_EQ(m->patient_id, "synthetic-007");
  EXPECT_EQ(m->category, "clinical-note");
  EXPECT_EQ(m->content_type, "text/plain");
  EXPECT_EQ(m->encounter_date, "2020-01-02");
  EXPECT_EQ(m->author, "dr-synthetic");
  EXPECT_EQ(m->created_unix_us, 1700000000000000);
  EXPECT_EQ(m->content_bytes, 12u);
  EXPECT_EQ(m->amendment_reason, "");
  EXPECT_EQ(m->created_by, "");

  auto by = MetadataFromJson(WithMember(kMetaDoc, R"("created_by":"svc-import")"));
  ASSERT_TRUE(by.has_value());
  EXPECT_EQ(by->created_by, "svc-import");
  // Unknown members of any shape are skipped, their nested keys never taken for ours.
  auto extra = MetadataFromJson(
      WithMember(kMetaDoc, R"("future":{"version":"x","patient_id":[1,{"a":null}]},"n":-1.5)"));
  ASSERT_TRUE(extra.has_value());
  EXPECT_EQ(extra->version, 3u);
  EXPECT_EQ(extra->patient_id, "synthetic-007");
  // The last of duplicated members counts, as in a DOM parse.
  auto dup = MetadataFromJson(WithMember(kMetaDoc, R"("patient_id":"synthetic-008")"));
  ASSERT_TRUE(dup.has_value());
  EXPECT_EQ(dup->patient_id, "synthetic-008");
  auto negative = MetadataFromJson(WithMember(kMetaDoc, R"("created_us":-5)"));
  ASSERT_TRUE(negative.has_value());
  EXPECT_EQ(negative->created_unix_us, -5);
}

TEST(MetadataJsonTest, RefusesWrongShapes) {
  for (std::string_view bad : {
           std::string_view(""),
           std::string_view("null"),
           std::string_view("[]"),
           std::string_view("5"),
           std::string_view("\"x\""),
           std::string_view("{}"),
           std::string_view(R"({"record_id":"A"})"),
       }) {
    EXPECT_FALSE(MetadataFromJson(bad).has_value()) << bad;
  }
  const std::string doc(kMetaDoc);
  EXPECT_TRUE(MetadataFromJson(doc + " \n").has_value());  // trailing space is JSON
  EXPECT_FALSE(MetadataFromJson(doc + "{}").has_value());  // a second document
  EXPECT_FALSE(MetadataFromJson(doc.substr(0, doc.size() - 1)).has_value());  // truncated
  EXPECT_FALSE(MetadataFromJson("[" + doc + "]").has_value());
  for (std::string_view member : {
           R"("version":"3")",
           R"("version":-3)",
           R"("version":3.0)",
           R"("version":4294967296)",
           R"("created_us":"1")",
           R"("created_us":1.5)",
           R"("content_bytes":-1)",
           R"("content_bytes":null)",
           R"("patient_id":7)",
           R"("patient_id":null)",
           R"("patient_id":{"a":"b"})",
           R"("author":["x"])",
           R"("created_by":false)",
           R"("created_by":{})",
       }) {
    EXPECT_FALSE(MetadataFromJson(WithMember(kMetaDoc, member)).has_value()) << member;
  }
  // Every required member is required.
  for (std::string_view name :
       {"record_id", "version", "patient_id", "category", "content_type", "encounter_date",
        "author", "created_us", "content_bytes", "amendment_reason"}) {
    std::string without(kMetaDoc);
    const size_t at = without.find("\"" + std::string(name) + "\"");
    ASSERT_NE(at, std::string::npos);
    size_t end = without.find_first_of(",}", without.find(':', at));
    if (without[end] == ',') ++end;
    without.erase(at, end - at);
    if (without[without.size() - 2] == ',') without.erase(without.size() - 2, 1);
    EXPECT_FALSE(MetadataFromJson(without).has_value()) << name << ": " << without;
  }
}

}  // namespace
}  // namespace phivault::storage
