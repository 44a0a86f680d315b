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
// id(16) is the raw 16 bytes behind the 22-character record id.
//
// Version header: format byte 0x01, then four fields, each BE32 length || bytes:
//   epoch id, wrapped DEK, patient blind id (32 raw bytes), sealed metadata.
// The epoch id lives only in the header (authenticated by the DEK wrap AAD), not in the sealed
// metadata, so moving a version to another epoch re-wraps its DEK without re-sealing anything.
// The sealed metadata is a JSON object of the RecordMetadata fields other than epoch_id.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
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
};

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
  // DataLoss "record failed integrity check" if the head was altered or deleted.
  StatusOr<uint32_t> LatestVersion(std::string_view record_id);

  // Opens one version. NotFound "no such record" / "no such version" (beyond the latest);
  // DataLoss "record failed integrity check" if any stored byte was changed or a version up to
  // the latest is missing; FailedPrecondition "record was crypto-shredded" if its epoch key was
  // destroyed.
  StatusOr<Record> ReadVersion(std::string_view record_id, uint32_t version, bool with_content);
  // As ReadVersion with content, but `gate` is called with the authenticated metadata before the
  // content is decrypted; if it returns an error, that error is returned and the content is never
  // read. The access policy's decision happens here, on the record, before its content.
  using ContentGate = std::function<Status(const RecordMetadata&)>;
  StatusOr<Record> ReadVersionGated(std::string_view record_id, uint32_t version,
                                    const ContentGate& gate);

  // Metadata of the latest version of each of the patient's records, oldest record first.
  // DataLoss as ReadVersion if any of them fails its integrity check.
  StatusOr<std::vector<RecordMetadata>> ListPatient(std::string_view patient_id);

 private:
  std::string EncodeHead(std::string_view raw_id, uint32_t version) const;

  Store& store_;
  crypto::Keyring& keyring_;
};

}  // namespace phivault::storage
