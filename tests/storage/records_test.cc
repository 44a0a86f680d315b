#include "storage/records.h"

#include <random>
#include <set>

#include <gtest/gtest.h>

#include "crypto/aead.h"
#include "crypto/hash.h"
#include "crypto/keyring.h"
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
    RocksStoreOptions options;
    options.path = db_path_;
    options.reserve_bytes = 1 << 20;
    auto store = OpenRocksStore(options);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    auto keyring =
        crypto::Keyring::Create({dir_.Sub("keyring"), {}}, crypto::SecretBytes::Random(32));
    ASSERT_TRUE(keyring.ok()) << keyring.status().ToString();
    keyring_ = std::move(*keyring);
    repo_ = std::make_unique<RecordRepository>(*store_, *keyring_);
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

}  // namespace
}  // namespace phivault::storage
