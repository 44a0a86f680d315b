// Records at rest: each record is an immutable chain of versions. A version is sealed with a
// fresh random DEK; the DEK is stored only wrapped under the version's epoch key.
//
//   DEK wrap AAD       = "phivault/dek/v1" || record id || version (BE32) || epoch id
//   metadata/content   = sealed under the DEK,
//                        AAD = "phivault/meta/v1" | "phivault/content/v1" || record id ||
//                              version (BE32) || patient blind id
//
// Storage keys hold only random ids, version numbers, blind ids and epoch ids: never PHI.
//   kRecords  'm' id(16) ver(BE32) -> version header (below)
//   kRecords  'c' id(16) ver(BE32) -> sealed content (large values land in blob files)
//   kRecords  'h' id(16)           -> head: BE32(latest version) || keyed BLAKE2b tag (32) of
//                                     id || version, so the newest version cannot be deleted
//                                     (or the head forged back) without an integrity failure
//   kIndexes  'p' blind id(32) id(16)            -> BE64(created_unix_us of version 1)
//                                                   (a patient's records; put by version 1 only)
//   kIndexes  'e' epoch id 0x00 id(16) ver(BE32) -> "" (what an epoch key protects)
//   kIndexes  'x' id(16) -> tombstone of a destroyed record: certificate id (32 lowercase hex) ||
//                           BE64(destroyed_unix_us) || keyed BLAKE2b tag (32, the head tag's key,
//                           its own domain) of id || certificate id || BE64, so that a forged
//                           tombstone cannot pass a deleted live record off as lawfully destroyed
// id(16) is the raw 16 bytes behind the 22-character record id.
//
// Version header: format byte 0x01, then four fields, each BE32 length || bytes:
//   epoch id, wrapped DEK, patient blind id (32 raw bytes), sealed metadata.
// The epoch id lives only in the header (authenticated by the DEK wrap AAD), not in the sealed
// metadata, so moving a version to another epoch re-wraps its DEK without re-sealing anything.
// The sealed metadata is a JSON object of the RecordMetadata fields other than epoch_id.
//
// Retention and destruction (docs/retention.md, docs/destruction.md) build on four steps here:
// StageRewrap moves a record's versions to another epoch (a legal hold, a changed retention day)
// without touching its ciphertext, ScanEpoch lists what an epoch key protects, Fingerprints names
// the stored bytes that must vanish, and StageShred deletes every key of the record and leaves an
// authenticated tombstone. A shredded record reads as FailedPrecondition "record was
// crypto-shredded" (the words of daemon/problem.h kShreddedMessage, HTTP 410), followed by
// " (certificate <id>)" once it is deleted.
//
// The archive tier (docs/archive.md): StageArchive moves a record's content to Cf::kArchive;
// everything else stays. Content that compresses is opened under its DEK, compressed, padded and
// sealed again under the same DEK (fresh nonce) in the archived-compressed format v1:
//   kArchive  'z' id(16) ver(BE32) -> sealed archive payload (storage/archive_codec.h),
//                                     AAD = "phivault/content/archived-zstd/v1" || record id ||
//                                           version (BE32) || patient blind id
// Content that would not shrink moves byte for byte:
//   kArchive  'c' id(16) ver(BE32) -> the live tier's sealed content, unchanged
// Reads find content in either family and form and say where (Record::archived); the shred steps
// delete every key of every form.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "crypto/keyring.h"
#include "storage/store.h"

namespace phivault::storage {

struct RecordMetadata {
  std::string record_id;   // URL-safe base64 (no padding) of 16 random bytes: 22 characters
  uint32_t version = 0;    // 1 for the original, +1 per amendment
  std::string patient_id;  // opaque, from the application
  std::string category;
  std::string content_type;    // a MIME type
  std::string encounter_date;  // YYYY-MM-DD
  std::string author;
  // The acting user (X-Phivault-User, or an operator's account) who created version 1: whom the
  // access policy treats as the record's author (author_only rules, psychotherapy notes). Kept
  // by every later version. Empty for records stored before it existed.
  std::string created_by;
  int64_t created_unix_us = 0;  // when this version was stored
  uint64_t content_bytes = 0;
  std::string amendment_reason;  // empty for version 1
  std::string epoch_id;          // the epoch key protecting this version (not PHI)
};

struct Record {
  RecordMetadata meta;
  std::string content;  // empty when read without content
  // The version's content was read from the archive column family (content reads only;
  // IsArchived answers it without the content).
  bool archived = false;
};

// The metadata of a version from its sealed JSON form (exposed for its tests): nullopt unless the
// document is an object with every member of RecordMetadata (created_by optional) of its type.
std::optional<RecordMetadata> MetadataFromJson(std::string_view text);

// A new random record id (16 bytes from the CSPRNG, URL-safe base64), never starting with '-' or
// '_' so that command lines cannot mistake it for an option.
std::string NewRecordId();
// True if `id` has the form NewRecordId produces (22 URL-safe base64 characters).
bool IsValidRecordId(std::string_view id);

class RecordRepository {
 public:
  // Both must outlive the repository.
  RecordRepository(Store& store, crypto::Keyring& keyring);

  // Blind id (32 raw bytes) of a patient id, via the keyring's blind index key.
  std::string PatientBlindId(std::string_view patient_id) const;

  // Seals `record` (record.meta.epoch_id names the epoch key; created on demand) and appends its
  // puts — both halves of the version and both index entries — to `batch`. Writes nothing itself.
  // InvalidArgument for a malformed record id or version 0.
  [[nodiscard]] Status StageVersion(const Record& record, WriteBatch& batch);

  // Highest version of `record_id`, from its authenticated head. NotFound "no such record";
  // DataLoss "record failed integrity check" if the head was altered or deleted, or the record's
  // tombstone does not authenticate; FailedPrecondition "record was crypto-shredded (certificate
  // <id>)" once StageShred's batch was written.
  StatusOr<uint32_t> LatestVersion(std::string_view record_id);

  // Opens one version. NotFound "no such record" / "no such version" (beyond the latest);
  // DataLoss "record failed integrity check" if any stored byte was changed or a version up to
  // the latest is missing; FailedPrecondition "record was crypto-shredded" if its epoch key was
  // destroyed, with " (certificate <id>)" appended once the record was deleted (StageShred).
  StatusOr<Record> ReadVersion(std::string_view record_id, uint32_t version, bool with_content);
  // As ReadVersion with content, but `gate` is called with the authenticated metadata before the
  // content is decrypted; if it returns an error, that error is returned and the content is never
  // read. The access policy's decision happens here, on the record, before its content.
  using ContentGate = std::function<Status(const RecordMetadata&)>;
  StatusOr<Record> ReadVersionGated(std::string_view record_id, uint32_t version,
                                    const ContentGate& gate);

  // Metadata of the latest version of each of the patient's records, oldest record first.
  // Records whose latest version's epoch key was destroyed are left out (their deletion is
  // pending); deleted records are not in the patient index. DataLoss as ReadVersion if any of
  // them fails its integrity check, or if the index names a record that was deleted.
  StatusOr<std::vector<RecordMetadata>> ListPatient(std::string_view patient_id);
  // As ListPatient, but the records named in `known` (ids whose latest metadata the caller has
  // already opened and checked to be this patient's; sorted) are neither read nor returned. A
  // retention sweep that opened a patient's expired records reads only the others for their
  // encounters.
  StatusOr<std::vector<RecordMetadata>> ListPatientExcept(
      std::string_view patient_id, const std::vector<std::string_view>& known);

  // Moves every version of the record to the epoch `new_epoch_id` (created on demand,
  // Keyring::GetOrCreateEpoch): stages, per version not already in it, its header with the DEK
  // unwrapped under the old epoch key (verifying the old wrap's AAD) and re-wrapped under the new
  // one, and its epoch index entry moved. Sealed metadata and content are untouched (content is
  // never re-encrypted). Returns the number of versions moved; 0 stages nothing. On any error
  // nothing is staged. InvalidArgument for a malformed record or epoch id; NotFound "no such
  // record"; DataLoss as ReadVersion; FailedPrecondition "record was crypto-shredded" if a
  // version's current epoch key was destroyed, or the keyring's error if `new_epoch_id` was.
  // The caller holds the record's lock (no version may be added meanwhile) and writes `batch`.
  // The old headers stay in the files until the next Store::CompactAll, and open under the old
  // epoch key: destroying only the new epoch shreds the record once that compaction has run.
  StatusOr<uint32_t> StageRewrap(std::string_view record_id, std::string_view new_epoch_id,
                                 WriteBatch& batch);

  // Calls `fn(record_id, version)` for every version in `epoch_id`'s index (live or destroyed
  // epoch) in key order (raw record id, then version; record_id as the 22-character id), until
  // `fn` returns false. InvalidArgument for a malformed epoch id; DataLoss "record failed
  // integrity check" for a malformed index key.
  [[nodiscard]] Status ScanEpoch(
      std::string_view epoch_id,
      const std::function<bool(std::string_view record_id, uint32_t version)>& fn);

  // Byte strings that a byte search of the database files (FindInFiles, storage/file_scan.h)
  // must no longer find once the record is destroyed: per version, the first 32 bytes of its
  // sealed content and of its sealed metadata, and its whole wrapped DEK. Each begins with a
  // random 24-byte nonce, so none occurs by chance elsewhere. A rewrap keeps the sealed metadata,
  // so its fingerprint also finds the headers (and old wrapped DEKs) that earlier rewraps left in
  // files not yet compacted. Read them before StageShred.
  // Needs no epoch key. Errors as LatestVersion; DataLoss if a version up to the latest is
  // missing or malformed. `latest`, if given, is LatestVersion's answer the caller just had under
  // the record's lock (saves reading the head again).
  StatusOr<std::vector<std::string>> Fingerprints(std::string_view record_id,
                                                  std::optional<uint32_t> latest = std::nullopt);
  // Fingerprints(record_id, latest) and, from the same stored headers, each version's epoch id
  // (epoch_ids[v - 1] for version v), read without any epoch key and unauthenticated: for a
  // sweep that opened the latest version moments ago and holds the record's lock, to learn where
  // its DEKs are now. Errors as Fingerprints.
  struct StoredVersions {
    std::vector<std::string> epoch_ids;
    std::vector<std::string> fingerprints;
  };
  StatusOr<StoredVersions> ReadStoredVersions(std::string_view record_id, uint32_t latest);

  // A sweep's read-back after destroying epoch keys, for each of `record_ids`: its latest version
  // (as LatestVersion reads it from the authenticated head) and whether none of its versions up
  // to that opens any more, because the epoch key its DEK is wrapped under is destroyed. A version
  // whose DEK still unwraps counts as not erased. Heads and versions are read in batches
  // (Store::MultiGet). Errors as LatestVersion's, and DataLoss naming the record and version if a
  // version is missing, malformed, or names an epoch that never existed.
  // A sweep's recheck, for each of `record_ids`: the latest version's metadata (as
  // ReadVersion(id, LatestVersion(id), false) opens it) and ReadStoredVersions of it, every key
  // read in batches (Store::MultiGet). A record's own error (crypto-shredded, integrity, not
  // found) is in its slot; a store error in every slot.
  struct SweepRead {
    RecordMetadata meta;
    StoredVersions stored;
  };
  std::vector<StatusOr<SweepRead>> ReadLatestForSweep(const std::vector<std::string>& record_ids);

  struct ErasureCheck {
    uint32_t latest = 0;
    bool erased = false;
  };
  StatusOr<std::vector<ErasureCheck>> CheckErased(const std::vector<std::string>& record_ids);

  // For each record, whether it reads as crypto-shredded now, as LatestVersion would say
  // (FailedPrecondition, shredded): no head, and a tombstone that authenticates. Two batched
  // reads (Store::MultiGet); a store error or a malformed id is returned for the whole batch.
  StatusOr<std::vector<bool>> ReadAsShredded(const std::vector<std::string>& record_ids);

  // Stages the deletion of everything stored for the record — every version's header and
  // content, its head, its patient index entry and its epoch index entries — and a tombstone
  // naming `certificate_id` (the destruction certificate, 32 lowercase hex digits) and
  // `destroyed_unix_us`. Works from the authenticated head and the stored headers; needs no
  // epoch key. On any error nothing is staged. InvalidArgument for a malformed record id,
  // certificate id or a negative time; NotFound "no such record"; DataLoss as LatestVersion or if
  // a version up to the latest is missing. A record that already has an authenticating tombstone
  // returns OK and stages nothing (its first certificate stands). The caller holds the record's
  // lock and writes `batch`; deleted values leave the files at the next Store::CompactAll.
  [[nodiscard]] Status StageShred(std::string_view record_id, std::string_view certificate_id,
                                  int64_t destroyed_unix_us, WriteBatch& batch);

  // StageShred for a record whose epoch keys are all destroyed, from what the caller already
  // knows instead of reads: `versions`, the count of the authenticated head read after the
  // erasure (no version can be added to a record that no longer opens), and `patient_blind_id`
  // (raw bytes, PatientBlindId of its patient; versions never change patient). Stages the
  // deletion of every version's header and content, the head and the patient index entry, and the
  // tombstone; its epoch index entries go with StageEpochIndexErase of the erased epochs. Reads
  // nothing, so a record already shredded gets its tombstone again (same certificate, new time).
  // InvalidArgument for a malformed record id, certificate id, blind id, a zero version count or
  // a negative time. The caller holds the record's lock and writes `batch`.
  [[nodiscard]] Status StageShredErased(std::string_view record_id, uint32_t versions,
                                        std::string_view patient_blind_id,
                                        std::string_view certificate_id, int64_t destroyed_unix_us,
                                        WriteBatch& batch);

  // Stages the deletion of `epoch_id`'s whole index, in one range operation: ScanEpoch finds
  // nothing in it afterwards. For an epoch whose key is destroyed. InvalidArgument for a
  // malformed epoch id.
  [[nodiscard]] Status StageEpochIndexErase(std::string_view epoch_id, WriteBatch& batch);

  // Moves the content of every version of the record that is not archived yet from Cf::kRecords
  // to Cf::kArchive: opened under its epoch key, zstd-compressed, padded and sealed again under
  // its DEK as a 'z' value (layout above), or, if that would not be smaller, the very sealed
  // bytes under the same 'c' key. Plaintext buffers are wiped. Returns the number of versions
  // moved; 0 stages nothing. Errors as LatestVersion; DataLoss "record failed integrity check"
  // if a version's content is in neither family or does not open; FailedPrecondition "record was
  // crypto-shredded" if a version's epoch key is destroyed. On any error nothing is staged. The
  // caller holds the record's lock and writes `batch`, which moves each value in one atomic step.
  // StageUnarchive moves them back: a byte-for-byte value as it is, a compressed one opened and
  // sealed again in the live format (content v1, fresh nonce), so the live tier has one format.
  StatusOr<uint32_t> StageArchive(std::string_view record_id, WriteBatch& batch);
  StatusOr<uint32_t> StageUnarchive(std::string_view record_id, WriteBatch& batch);

  // Calls `fn(record_id, created_unix_us of version 1)` for every record in the patient index,
  // in key order, until `fn` returns an error (which is returned). The index is read in pieces
  // and no iterator is open while `fn` runs, so `fn` may write (and take its time).
  [[nodiscard]] Status ForEachRecord(
      const std::function<Status(const std::string& record_id, int64_t created_unix_us)>& fn);

  // Whether the version's content lies in the archive. InvalidArgument for a malformed id.
  StatusOr<bool> IsArchived(std::string_view record_id, uint32_t version);

  // The certificate id in the record's tombstone; std::nullopt if it has none (never shredded,
  // or no such record). DataLoss "record failed integrity check" if the tombstone does not
  // authenticate. InvalidArgument for a malformed record id.
  StatusOr<std::optional<std::string>> ShreddedBy(std::string_view record_id);

 private:
  std::string EncodeHead(std::string_view raw_id, uint32_t version) const;
  // The version a stored head names, DataLoss if it does not authenticate for `raw_id`.
  StatusOr<uint32_t> DecodeHead(std::string_view raw_id, std::string_view head) const;
  // Tombstone value for `raw_id` (layout above); the tag covers the id and the body.
  std::string EncodeTombstone(std::string_view raw_id, std::string_view certificate_id,
                              int64_t destroyed_unix_us) const;
  // The certificate id of `raw_id`'s tombstone, std::nullopt if none; DataLoss if it does not
  // authenticate.
  StatusOr<std::optional<std::string>> ReadTombstone(std::string_view raw_id);
  // The certificate id a stored tombstone value names, std::nullopt unless it authenticates for
  // `raw_id` (ReadTombstone and ReadAsShredded).
  std::optional<std::string_view> OpenTombstone(std::string_view raw_id,
                                                std::string_view stored) const;

  enum class ContentForm { kLive, kArchivedRaw, kArchivedCompressed };
  // The stored content value of a version from whichever family and form holds it (records
  // first, then the archive's 'z', then its 'c'); `form` says which. std::nullopt if none does.
  StatusOr<std::optional<std::string>> GetContent(std::string_view raw_id, uint32_t version,
                                                  ContentForm* form);
  // The content of a stored value of `form`, exactly `content_bytes` long; DataLoss "record
  // failed integrity check" for anything else (a failed seal, a wrong size, a malformed or
  // oversized compressed frame).
  static StatusOr<std::string> OpenContent(const crypto::Aead& aead, std::string_view raw_id,
                                           uint32_t version, std::string_view blind_id,
                                           std::string_view sealed, ContentForm form,
                                           uint64_t content_bytes);
  // False only while Cf::kArchive is known to be empty, so that the read-free shred of a vault
  // that never archived stages no deletes in it. Turns true, for good, before the first
  // StageArchive stages anything (the caller's record lock orders that before any shred of the
  // record); an unreadable family counts as not empty.
  bool ArchiveMayHoldContent();

  Store& store_;
  crypto::Keyring& keyring_;
  enum : int { kArchiveUnknown, kArchiveEmpty, kArchiveUsed };
  std::atomic<int> archive_state_{kArchiveUnknown};
};

}  // namespace phivault::storage
