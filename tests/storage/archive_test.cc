// The archive tier of storage/records.h: content that compresses is opened, zstd-compressed,
// padded and sealed again in Cf::kArchive (archived-compressed format v1), content that does not
// moves byte for byte; reads find it there, say so and refuse any tampering cleanly, and shredding
// leaves nothing of an archived record in any file.
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
#include <zstd.h>

#include "crypto/aead.h"
#include "crypto/hash.h"
#include "crypto/keyring.h"
#include "storage/archive_codec.h"
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

// Synthetic clinical-note-like text of about `bytes` bytes (no real patient): the phrases,
// numbers and dates a progress note repeats, which compress the way real notes do.
std::string SyntheticNote(size_t bytes) {
  static const std::vector<std::string> phrases = {"Patient seen for follow-up of ",
                                                   "hypertension",
                                                   "type 2 diabetes mellitus",
                                                   "chronic low back pain",
                                                   ". Reports ",
                                                   "no chest pain, no shortness of breath",
                                                   "intermittent headaches",
                                                   "improved sleep",
                                                   ". Vitals: BP ",
                                                   " mmHg, HR ",
                                                   " bpm, T ",
                                                   " C, SpO2 ",
                                                   "%. Medications reviewed: ",
                                                   "metformin 500 mg twice daily",
                                                   "lisinopril 10 mg daily",
                                                   "ibuprofen as needed",
                                                   ". Assessment: stable. Plan: ",
                                                   "continue current regimen",
                                                   "recheck HbA1c in 3 months",
                                                   "refer to physiotherapy",
                                                   ". Next visit on 20",
                                                   "-",
                                                   ". Counselled on diet and exercise. "};
  std::string out = "SUBJECTIVE: ";
  uint32_t n = 0;
  while (out.size() < bytes) {
    const std::string r = crypto::RandomBytes(2);
    n = static_cast<uint8_t>(r[0]) | (static_cast<uint8_t>(r[1]) << 8);
    out += phrases[n % phrases.size()];
    out += std::to_string(60 + n % 120);
  }
  out.resize(bytes);
  return out;
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
  // The key of archived-compressed content.
  std::string CompressedKey(const std::string& id, uint32_t version) {
    return "z" + *crypto::Base64UrlDecode(id) + BE32(version);
  }
  void Put(Cf cf, const std::string& key, const std::string& value) {
    WriteBatch b;
    b.Put(cf, key, value);
    ASSERT_TRUE(store_->Write(b, true).ok());
  }
  void Delete(Cf cf, const std::string& key) {
    WriteBatch b;
    b.Delete(cf, key);
    ASSERT_TRUE(store_->Write(b, true).ok());
  }
  // Seals `payload` as the archived-compressed value of (id, version) with the version's own DEK,
  // from the documented layouts (storage/records.h): what only a holder of the epoch key can do.
  std::string SealArchived(const std::string& id, uint32_t version, const std::string& payload) {
    const std::string raw = *crypto::Base64UrlDecode(id);
    const std::string header = *Stored(Cf::kRecords, "m" + raw + BE32(version));
    std::string_view h = header;
    EXPECT_EQ(h[0], 0x01);
    h.remove_prefix(1);
    std::vector<std::string> fields;
    for (int i = 0; i < 4; ++i) {
      const uint32_t n = (static_cast<uint32_t>(static_cast<uint8_t>(h[0])) << 24) |
                         (static_cast<uint32_t>(static_cast<uint8_t>(h[1])) << 16) |
                         (static_cast<uint32_t>(static_cast<uint8_t>(h[2])) << 8) |
                         static_cast<uint8_t>(h[3]);
      fields.emplace_back(h.substr(4, n));
      h.remove_prefix(4 + n);
    }
    auto epoch = keyring_->GetEpoch(fields[0]);
    EXPECT_TRUE(epoch.ok());
    auto dek =
        crypto::UnwrapKey(**epoch, fields[1], "phivault/dek/v1" + raw + BE32(version) + fields[0]);
    EXPECT_TRUE(dek.ok());
    auto aead = crypto::Aead::Create(std::move(*dek));
    return (*aead)->Encrypt(payload,
                            "phivault/content/archived-zstd/v1" + raw + BE32(version) + fields[2]);
  }
  void ExpectIntegrityFailure(const std::string& id, uint32_t version) {
    auto read = repo_->ReadVersion(id, version, true);
    EXPECT_EQ(read.status().code(), StatusCode::kDataLoss) << read.status().ToString();
    EXPECT_EQ(read.status().message(), "record failed integrity check");
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

// Text-like content is compressed before it is sealed: stored smaller, under the 'z' key, sealed
// anew (not the live bytes), and read back identical, also through a reopened store.
TEST_F(ArchiveTest, CompressibleRecordsArchiveSmallerAndRoundTripIdentical) {
  const std::string patient = "synthetic-patient-" + RandomHex(8);
  Record small = MakeRecord(patient, SyntheticNote(1200));
  Record large1 = MakeRecord(patient, SyntheticNote(60000));  // a blob file while live
  Record large2 = MakeRecord(patient, SyntheticNote(9000), 2, large1.meta.record_id);
  for (const Record* r : {&small, &large1, &large2}) StoreRecord(*r);
  const std::string& id = large1.meta.record_id;
  const std::string sealed1 = *Stored(Cf::kRecords, ContentKey(id, 1));

  EXPECT_EQ(Move(id, /*to_archive=*/true), 2u);
  EXPECT_EQ(Stored(Cf::kRecords, ContentKey(id, 1)), std::nullopt);
  EXPECT_EQ(Stored(Cf::kArchive, ContentKey(id, 1)), std::nullopt);
  auto z1 = Stored(Cf::kArchive, CompressedKey(id, 1));
  auto z2 = Stored(Cf::kArchive, CompressedKey(id, 2));
  ASSERT_TRUE(z1 && z2);
  EXPECT_LT(z1->size(), sealed1.size() / 2) << "clinical text compresses at least 2:1";
  EXPECT_EQ(z1->size(),
            ArchivePaddedSize(z1->size() - crypto::Aead::kOverhead) + crypto::Aead::kOverhead)
      << "the sealed payload is a padded bucket size";
  EXPECT_EQ(z1->find(sealed1.substr(0, 32)), std::string::npos) << "sealed anew";
  // The fingerprints name the stored archived bytes (what the byte search must find).
  auto fingerprints = repo_->Fingerprints(id);
  ASSERT_TRUE(fingerprints.ok());
  EXPECT_EQ((*fingerprints)[0], z1->substr(0, 32));
  EXPECT_EQ((*fingerprints)[3], z2->substr(0, 32));

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
  EXPECT_EQ(repo_->ListPatient(patient)->size(), 2u);

  // Archiving twice moves nothing; an amendment lands in the live tier beside archived versions.
  EXPECT_EQ(Move(id, true), 0u);
  Record large3 = MakeRecord(patient, SyntheticNote(3000), 3, id);
  StoreRecord(large3);
  EXPECT_FALSE(repo_->ReadVersion(id, 3, true)->archived);
  EXPECT_TRUE(repo_->ReadVersion(id, 1, true)->archived);
  EXPECT_EQ(Move(id, true), 1u);
  EXPECT_EQ(repo_->ReadVersion(id, 3, true)->content, large3.content);

  // And back: sealed again in the live format (same DEK, fresh nonce), identical content.
  EXPECT_EQ(Move(id, false), 3u);
  for (uint32_t v = 1; v <= 3; ++v) {
    EXPECT_EQ(Stored(Cf::kArchive, CompressedKey(id, v)), std::nullopt);
    auto back = Stored(Cf::kRecords, ContentKey(id, v));
    ASSERT_TRUE(back.has_value());
  }
  EXPECT_NE(*Stored(Cf::kRecords, ContentKey(id, 1)), sealed1);
  for (const Record* r : {&large1, &large2, &large3}) {
    auto read = repo_->ReadVersion(id, r->meta.version, true);
    ASSERT_TRUE(read.ok());
    EXPECT_EQ(read->content, r->content);
    EXPECT_FALSE(read->archived);
  }
  EXPECT_EQ(Move(id, false), 0u);
}

// Content that would not shrink (random bytes, tiny notes) keeps the old move: the very sealed
// bytes under the same key, and back.
TEST_F(ArchiveTest, IncompressibleRecordsMoveByteForByteAndRoundTrip) {
  const std::string patient = "synthetic-patient-" + RandomHex(8);
  Record scan = MakeRecord(patient, crypto::RandomBytes(30000));
  Record tiny = MakeRecord(patient, "Synthetic note.");
  for (const Record* r : {&scan, &tiny}) {
    StoreRecord(*r);
    const std::string& id = r->meta.record_id;
    const std::string sealed = *Stored(Cf::kRecords, ContentKey(id, 1));
    EXPECT_EQ(Move(id, true), 1u);
    EXPECT_EQ(Stored(Cf::kArchive, ContentKey(id, 1)), sealed);
    EXPECT_EQ(Stored(Cf::kArchive, CompressedKey(id, 1)), std::nullopt);
    auto read = repo_->ReadVersion(id, 1, true);
    ASSERT_TRUE(read.ok());
    EXPECT_EQ(read->content, r->content);
    EXPECT_TRUE(read->archived);
    EXPECT_EQ(Move(id, false), 1u);
    EXPECT_EQ(Stored(Cf::kRecords, ContentKey(id, 1)), sealed);
    EXPECT_EQ(repo_->ReadVersion(id, 1, true)->content, r->content);
  }
}

// A data directory altered by someone without the keys: a flipped byte, the value moved to the
// other format's key, the live format's value under the compressed key, a zstd bomb planted in
// place of the value. Each reads as an integrity failure, never a crash or a wrong answer.
TEST_F(ArchiveTest, TamperedArchivedValuesAreRefused) {
  const std::string patient = "synthetic-patient-" + RandomHex(8);
  Record r = MakeRecord(patient, SyntheticNote(20000));
  StoreRecord(r);
  const std::string& id = r.meta.record_id;
  const std::string live_sealed = *Stored(Cf::kRecords, ContentKey(id, 1));
  ASSERT_EQ(Move(id, true), 1u);
  const std::string good = *Stored(Cf::kArchive, CompressedKey(id, 1));
  for (size_t at : {size_t{0}, size_t{30}, good.size() / 2, good.size() - 1}) {
    std::string bad = good;
    bad[at] = static_cast<char>(bad[at] ^ 0x20);
    Put(Cf::kArchive, CompressedKey(id, 1), bad);
    ExpectIntegrityFailure(id, 1);
  }
  // The format marker swapped: the compressed value under the byte-for-byte key.
  Delete(Cf::kArchive, CompressedKey(id, 1));
  Put(Cf::kArchive, ContentKey(id, 1), good);
  ExpectIntegrityFailure(id, 1);
  // ... and the live format's value under the compressed key.
  Delete(Cf::kArchive, ContentKey(id, 1));
  Put(Cf::kArchive, CompressedKey(id, 1), live_sealed);
  ExpectIntegrityFailure(id, 1);
  // A zstd bomb (64 MiB of zeros in a few KiB), planted raw and behind a random "nonce".
  const std::string zeros(64u << 20, '\0');
  std::string bomb(ZSTD_compressBound(zeros.size()), '\0');
  bomb.resize(ZSTD_compress(bomb.data(), bomb.size(), zeros.data(), zeros.size(), 1));
  ASSERT_LT(bomb.size(), 64u << 10);
  Put(Cf::kArchive, CompressedKey(id, 1), bomb);
  ExpectIntegrityFailure(id, 1);
  Put(Cf::kArchive, CompressedKey(id, 1), crypto::RandomBytes(24) + bomb);
  ExpectIntegrityFailure(id, 1);
  // Even sealed with the record's own DEK (beyond what a thief of the directory can do), a frame
  // claiming more than the record's authenticated size is refused before it is decompressed.
  std::string payload = BE32(static_cast<uint32_t>(bomb.size())) + bomb;
  payload.resize(ArchivePaddedSize(payload.size()), '\0');
  Put(Cf::kArchive, CompressedKey(id, 1), SealArchived(id, 1, payload));
  ExpectIntegrityFailure(id, 1);
  // The right value again reads back.
  Put(Cf::kArchive, CompressedKey(id, 1), good);
  auto read = repo_->ReadVersion(id, 1, true);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->content, r.content);
}

// The payload codec on its own: padding buckets, and every malformed form refused as DataLoss
// within the known size (a frame without a declared size, a wrong size, two frames, garbage).
TEST(ArchiveCodecTest, PadsToBucketsAndRefusesMalformedPayloads) {
  EXPECT_EQ(ArchivePaddedSize(1), 256u);
  EXPECT_EQ(ArchivePaddedSize(256), 256u);
  EXPECT_EQ(ArchivePaddedSize(257), 512u);
  EXPECT_EQ(ArchivePaddedSize(4096), 4096u);
  EXPECT_EQ(ArchivePaddedSize(4097), 4352u);        // granule 256 up to 8 KiB
  EXPECT_EQ(ArchivePaddedSize(8193), 8704u);        // granule 512 from 8 KiB
  EXPECT_EQ(ArchivePaddedSize(1000000), 1015808u);  // granule 32 KiB
  for (size_t n = 1; n < 3000000; n = n * 3 + 7) {
    const size_t p = ArchivePaddedSize(n);
    EXPECT_GE(p, n);
    EXPECT_LE(p, std::max(n + 255, n + n / 16));
  }

  const std::string note = SyntheticNote(50000);
  auto payload = EncodeArchivePayload(note);
  ASSERT_TRUE(payload.ok() && payload->has_value());
  EXPECT_LT((*payload)->size(), note.size() / 2);
  EXPECT_EQ(*DecodeArchivePayload(**payload, note.size()), note);
  EXPECT_FALSE(EncodeArchivePayload(crypto::RandomBytes(5000))->has_value());
  EXPECT_FALSE(EncodeArchivePayload("tiny")->has_value());

  auto refused = [](const std::string& p, uint64_t size) {
    auto d = DecodeArchivePayload(p, size);
    EXPECT_EQ(d.status().code(), StatusCode::kDataLoss) << d.status().ToString();
  };
  refused(**payload, note.size() - 1);
  refused(**payload, note.size() + 1);
  refused("", 0);
  refused(std::string(3, '\0'), 10);
  refused(std::string(256, '\0'), 10);               // frame length 0
  refused(BE32(1000) + std::string(252, '\0'), 10);  // frame beyond the payload
  std::string padded = **payload;
  padded.back() = 1;  // non-zero padding
  refused(padded, note.size());
  refused(**payload + std::string(256, '\0'), note.size());  // not its bucket size
  // A frame without a declared content size.
  std::string frame(ZSTD_compressBound(note.size()), '\0');
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0);
  ZSTD_outBuffer out{frame.data(), frame.size(), 0};
  ZSTD_inBuffer in{note.data(), note.size(), 0};
  // Streaming with no pledged size leaves the size out of the header.
  ASSERT_EQ(ZSTD_compressStream2(cctx, &out, &in, ZSTD_e_end), 0u);
  ZSTD_freeCCtx(cctx);
  frame.resize(out.pos);
  auto wrap = [](const std::string& f) {
    std::string p = BE32(static_cast<uint32_t>(f.size())) + f;
    p.resize(ArchivePaddedSize(p.size()), '\0');
    return p;
  };
  ASSERT_EQ(ZSTD_getFrameContentSize(frame.data(), frame.size()), ZSTD_CONTENTSIZE_UNKNOWN);
  refused(wrap(frame), note.size());
  // Two frames, each of half the size.
  std::string half(ZSTD_compressBound(note.size() / 2), '\0');
  half.resize(ZSTD_compress(half.data(), half.size(), note.data(), note.size() / 2, 3));
  refused(wrap(half + half), note.size());
  // A damaged frame that still declares the right size.
  std::string one(ZSTD_compressBound(note.size()), '\0');
  one.resize(ZSTD_compress(one.data(), one.size(), note.data(), note.size(), 3));
  for (size_t at = 8; at < one.size(); at += one.size() / 7) {
    std::string bad = one;
    bad[at] = static_cast<char>(bad[at] ^ 0x5a);
    auto d = DecodeArchivePayload(wrap(bad), note.size());
    if (d.ok()) {
      // A flip zstd cannot detect (no checksum: the AEAD is the integrity check) must at least
      // give the declared size; the record layer never gets here with an unauthenticated value.
      EXPECT_EQ(d->size(), note.size());
    } else {
      EXPECT_EQ(d.status().code(), StatusCode::kDataLoss);
    }
  }
  for (int i = 0; i < 200; ++i) {
    auto d = DecodeArchivePayload(wrap(crypto::RandomBytes(300 + i)), note.size());
    EXPECT_FALSE(d.ok());
  }
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

// Both shred paths delete archived content (compressed and byte for byte), and after compaction
// no byte of it is in any file of the database — found there before, so the search can see the
// archive's tables.
TEST_F(ArchiveTest, ArchivedRecordsShredLeavingNoStoredByteInAnyFile) {
  const std::string patient = "synthetic-patient-" + RandomHex(8);
  Record a = MakeRecord(patient, "Synthetic note " + RandomHex(300), 1, NewRecordId(), "d20300103");
  Record b1 =
      MakeRecord(patient, "Synthetic scan " + RandomHex(20000), 1, NewRecordId(), "d20300103");
  // Random bytes do not compress: archived byte for byte beside b1's compressed version.
  Record b2 = MakeRecord(patient, crypto::RandomBytes(20000), 2, b1.meta.record_id, "d20300103");
  Record kept =
      MakeRecord(patient, "Synthetic kept " + RandomHex(300), 1, NewRecordId(), "d20300104");
  for (const Record* r : {&a, &b1, &b2, &kept}) StoreRecord(*r);
  for (const Record* r : {&a, &b1, &kept}) ASSERT_GT(Move(r->meta.record_id, true), 0u);
  ASSERT_TRUE(store_->CompactAll().ok());
  ASSERT_TRUE(Stored(Cf::kArchive, CompressedKey(b1.meta.record_id, 1)).has_value());
  ASSERT_TRUE(Stored(Cf::kArchive, ContentKey(b1.meta.record_id, 2)).has_value());

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
      EXPECT_EQ(Stored(Cf::kArchive, CompressedKey(r->meta.record_id, v)), std::nullopt);
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
  EXPECT_EQ(OpsIn(used, Cf::kArchive), 2u);  // both archive forms: 'c' and 'z'

  RecordRepository reopened(*store_, *keyring_);
  WriteBatch later;
  ASSERT_TRUE(reopened.StageShredErased(r.meta.record_id, 1, bid, cert, 0, later).ok());
  EXPECT_EQ(OpsIn(later, Cf::kArchive), 2u);
}

// Bytes on disk per stored content byte, live tier versus archive (docs/benchmarks.md), and the
// CPU an archive run spends per record (StageArchive: open, compress, seal, write). Each row: N
// records of synthetic clinical-note text (or random bytes) stored and compacted, then all
// archived and compacted again; the whole database is counted (tables, blob files, WAL).
// PHIVAULT_ARCHIVE_FOOTPRINT_RECORDS sets N (default 2000, so that the test stays quick). The
// archive must not take more room than the live tier it replaces, and the byte search must see
// every archived value as stored.
TEST_F(ArchiveTest, FootprintPerStoredByte) {
  const char* env = std::getenv("PHIVAULT_ARCHIVE_FOOTPRINT_RECORDS");
  const size_t n = env != nullptr ? std::strtoull(env, nullptr, 10) : 2000;
  std::printf("%-7s %8s %8s %12s %9s %11s %13s %14s %7s\n", "content", "bytes", "records",
              "content MiB", "live B/B", "archive B/B", "archive us/rec", "compact CPU s",
              "hidden");
  struct Row {
    const char* kind;
    size_t size;
  };
  for (Row row : {Row{"text", 16}, Row{"text", 256}, Row{"text", 2048}, Row{"text", 16384},
                  Row{"random", 2048}}) {
    const bool text = std::string_view(row.kind) == "text";
    store_.reset();
    repo_.reset();
    std::filesystem::remove_all(db_path_);
    Open();
    repo_ = std::make_unique<RecordRepository>(*store_, *keyring_);
    std::vector<std::string> ids;
    uint64_t content_bytes = 0;
    for (size_t i = 0; i < n; ++i) {
      Record r = MakeRecord("synthetic-patient-" + std::to_string(i % 97),
                            text ? SyntheticNote(row.size) : crypto::RandomBytes(row.size));
      content_bytes += r.content.size();
      ids.push_back(r.meta.record_id);
      WriteBatch b;
      ASSERT_TRUE(repo_->StageVersion(r, b).ok());
      ASSERT_TRUE(store_->Write(b, /*sync=*/false).ok());
    }
    ASSERT_TRUE(store_->CompactAll().ok());
    const uint64_t live = store_->Space()->live_data_bytes;
    const std::clock_t move0 = std::clock();
    for (const std::string& id : ids) {
      WriteBatch b;
      ASSERT_TRUE(repo_->StageArchive(id, b).ok());
      ASSERT_TRUE(store_->Write(b, false).ok());
    }
    const double move_us =
        static_cast<double>(std::clock() - move0) * 1e6 / CLOCKS_PER_SEC / static_cast<double>(n);
    const std::clock_t cpu0 = std::clock();
    ASSERT_TRUE(store_->CompactAll().ok());
    const double cpu = static_cast<double>(std::clock() - cpu0) / CLOCKS_PER_SEC;
    const uint64_t archived = store_->Space()->live_data_bytes;
    const double per_live = static_cast<double>(live) / static_cast<double>(content_bytes);
    const double per_archive = static_cast<double>(archived) / static_cast<double>(content_bytes);
    std::vector<std::string> needles;
    for (size_t i = 0; i < ids.size(); i += 10) {
      auto f = repo_->Fingerprints(ids[i]);
      ASSERT_TRUE(f.ok());
      needles.push_back(f->front());  // the stored archived value's first 32 bytes
    }
    auto hits = FindInFiles(db_path_, needles, needles.size() * 4);
    ASSERT_TRUE(hits.ok());
    std::set<size_t> seen;
    for (const auto& hit : *hits) seen.insert(hit.needle);
    const size_t hidden = needles.size() - seen.size();
    std::printf("%-7s %8zu %8zu %12.2f %9.4f %11.4f %13.1f %14.2f %7zu\n", row.kind, row.size, n,
                static_cast<double>(content_bytes) / (1 << 20), per_live, per_archive, move_us, cpu,
                hidden);
    EXPECT_EQ(hidden, 0u) << row.size << "-byte records: archived values the search cannot see";
    EXPECT_LE(per_archive, per_live * 1.01) << row.size << "-byte records";
    if (text && row.size >= 2048) {
      EXPECT_LT(per_archive, per_live * 0.7) << row.size;
    }
    auto read = repo_->ReadVersion(ids.front(), 1, true);
    ASSERT_TRUE(read.ok());
    EXPECT_TRUE(read->archived);
  }
}

}  // namespace
}  // namespace phivault::storage
