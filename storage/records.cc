#include "storage/records.h"

#include <sodium.h>

#include <algorithm>
#include <utility>

#include <nlohmann/json.hpp>

#include "crypto/aead.h"
#include "crypto/hash.h"
#include "crypto/secret.h"
#include "storage/archive_codec.h"
#include "storage/key_encoding.h"

namespace phivault::storage {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kDekAad = "phivault/dek/v1";
constexpr std::string_view kMetaAad = "phivault/meta/v1";
constexpr std::string_view kContentAad = "phivault/content/v1";
// Archived-compressed format v1 (storage/archive_codec.h): its own AAD domain, so that a value
// cannot be moved between the formats (or between the 'c' and 'z' keys) and still open.
constexpr std::string_view kArchivedContentAad = "phivault/content/archived-zstd/v1";
constexpr std::string_view kPatientDomain = "patient";
// Keyed tags on record heads: a head cannot be forged to point at an older version.
constexpr std::string_view kHeadDomain = "record-head";
// Keyed tags on tombstones, under the head tag's key but in their own domain, so that neither tag
// can stand in for the other.
constexpr std::string_view kTombstoneDomain = "record-tombstone";
// The same words as daemon/problem.h kShreddedMessage, which maps them to HTTP 410.
constexpr std::string_view kShreddedMessage = "record was crypto-shredded";
constexpr size_t kCertificateIdChars = 32;
constexpr size_t kFingerprintBytes = 32;
constexpr char kHeaderFormat = 0x01;
constexpr size_t kRawIdBytes = 16;
constexpr size_t kRecordIdChars = 22;
constexpr size_t kDekBytes = 32;

// Wipes a plaintext buffer when it goes out of scope.
struct Wipe {
  std::string& s;
  ~Wipe() { sodium_memzero(s.data(), s.size()); }
};

// Deliberately the same message for every kind of damage: it must not hint at what was changed,
// and never carries record content or patient data.
Status IntegrityFailure() { return DataLoss("record failed integrity check"); }

StatusOr<std::string> RawId(std::string_view record_id) {
  if (!IsValidRecordId(record_id)) return InvalidArgument("record id is malformed");
  auto raw = crypto::Base64UrlDecode(record_id);
  if (!raw.ok() || raw->size() != kRawIdBytes) return InvalidArgument("record id is malformed");
  return std::move(*raw);
}

std::string VersionKey(char kind, std::string_view raw_id, uint32_t version) {
  std::string key(1, kind);
  key.append(raw_id);
  key += BigEndian32(version);
  return key;
}

std::string EpochIndexKey(std::string_view epoch_id, std::string_view raw_id, uint32_t version) {
  std::string key = "e" + std::string(epoch_id);
  key += '\0';
  key.append(raw_id);
  key += BigEndian32(version);
  return key;
}

std::string TombstoneKey(std::string_view raw_id) { return "x" + std::string(raw_id); }

bool IsValidCertificateId(std::string_view id) {
  return id.size() == kCertificateIdChars && std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::string DekAad(std::string_view raw_id, uint32_t version, std::string_view epoch_id) {
  std::string aad(kDekAad);
  aad.append(raw_id);
  aad += BigEndian32(version);
  aad.append(epoch_id);
  return aad;
}

std::string SealAad(std::string_view domain, std::string_view raw_id, uint32_t version,
                    std::string_view blind_id) {
  std::string aad(domain);
  aad.append(raw_id);
  aad += BigEndian32(version);
  aad.append(blind_id);
  return aad;
}

struct Header {
  std::string epoch_id;
  std::string wrapped_dek;
  std::string blind_id;
  std::string sealed_meta;
};

std::string EncodeHeader(const Header& h) {
  std::string out(1, kHeaderFormat);
  for (const std::string* field : {&h.epoch_id, &h.wrapped_dek, &h.blind_id, &h.sealed_meta}) {
    out += BigEndian32(static_cast<uint32_t>(field->size()));
    out += *field;
  }
  return out;
}

std::optional<Header> DecodeHeader(std::string_view in) {
  if (in.empty() || in[0] != kHeaderFormat) return std::nullopt;
  in.remove_prefix(1);
  Header h;
  for (std::string* field : {&h.epoch_id, &h.wrapped_dek, &h.blind_id, &h.sealed_meta}) {
    if (in.size() < 4) return std::nullopt;
    const uint32_t n = ReadBigEndian32(in);
    in.remove_prefix(4);
    if (in.size() < n) return std::nullopt;
    field->assign(in.substr(0, n));
    in.remove_prefix(n);
  }
  if (!in.empty() || h.blind_id.size() != crypto::BlindIndex::kOutputBytes) return std::nullopt;
  return h;
}

// The stored header of a version the authenticated head covers: missing or malformed is damage.
StatusOr<Header> ReadHeader(Store& store, std::string_view raw_id, uint32_t version) {
  PV_ASSIGN_OR_RETURN(auto stored, store.Get(Cf::kRecords, VersionKey('m', raw_id, version)));
  if (!stored) return IntegrityFailure();
  auto header = DecodeHeader(*stored);
  if (!header) return IntegrityFailure();
  return std::move(*header);
}

// The version's DEK, unwrapped under its epoch key with the AAD that binds it to this record,
// version and epoch.
StatusOr<crypto::SecretBytes> UnwrapDek(const crypto::Keyring& keyring, std::string_view raw_id,
                                        uint32_t version, const Header& header) {
  auto epoch_key = keyring.GetEpoch(header.epoch_id);
  if (!epoch_key.ok()) {
    if (epoch_key.status().code() == StatusCode::kFailedPrecondition) {
      return FailedPrecondition(std::string(kShreddedMessage));
    }
    // A header naming an epoch that never existed (or a malformed one) was altered.
    return IntegrityFailure();
  }
  auto dek =
      crypto::UnwrapKey(**epoch_key, header.wrapped_dek, DekAad(raw_id, version, header.epoch_id));
  if (!dek.ok()) return IntegrityFailure();
  return std::move(*dek);
}

// InvalidArgument (the keyring's message) for a malformed epoch id; any well-formed id passes,
// whether its key exists, is live or was destroyed.
Status CheckEpochId(const crypto::Keyring& keyring, std::string_view epoch_id) {
  auto key = keyring.GetEpoch(epoch_id);
  if (!key.ok() && key.status().code() == StatusCode::kInvalidArgument) return key.status();
  return Status::Ok();
}

StatusOr<std::string> MetadataToJson(const RecordMetadata& m) {
  Json j = {
      {"record_id", m.record_id},
      {"version", m.version},
      {"patient_id", m.patient_id},
      {"category", m.category},
      {"content_type", m.content_type},
      {"encounter_date", m.encounter_date},
      {"author", m.author},
      {"created_us", m.created_unix_us},
      {"content_bytes", m.content_bytes},
      {"amendment_reason", m.amendment_reason},
  };
  if (!m.created_by.empty()) j["created_by"] = m.created_by;
  try {
    return j.dump(-1, ' ', false, Json::error_handler_t::strict);
  } catch (const Json::exception&) {
    return InvalidArgument("record metadata is not valid UTF-8");
  }
}

// Reads the metadata document with nlohmann's SAX interface: no DOM is built (the sweep and every
// read open one of these per version, and the DOM's allocations were most of the cost). The same
// document is accepted as before: an object whose known members have the right types (the last
// of duplicated members counts), unknown members of any shape ignored.
class MetadataSax {
 public:
  using Json = nlohmann::json;
  explicit MetadataSax(RecordMetadata& m) : m_(m) {}

  bool null() { return Scalar(Kind::kOther); }
  bool boolean(bool) { return Scalar(Kind::kOther); }
  bool number_integer(Json::number_integer_t v) {
    if (Top()) {
      signed_ = v;
      return Scalar(Kind::kSigned);
    }
    return true;
  }
  bool number_unsigned(Json::number_unsigned_t v) {
    if (Top()) {
      unsigned_ = v;
      return Scalar(Kind::kUnsigned);
    }
    return true;
  }
  bool number_float(Json::number_float_t, const Json::string_t&) { return Scalar(Kind::kOther); }
  bool string(Json::string_t& v) {
    if (Top()) {
      if (std::string* out = StringField(field_)) {
        *out = std::move(v);
        seen_[field_] = true;
        bad_[field_] = false;
        field_ = kNone;
        return true;
      }
      if (field_ == kCreatedBy) {
        m_.created_by = std::move(v);
        seen_[field_] = true;
        bad_[field_] = false;
        field_ = kNone;
        return true;
      }
    }
    return Scalar(Kind::kOther);
  }
  bool binary(Json::binary_t&) { return Scalar(Kind::kOther); }
  bool start_object(std::size_t) { return Open(); }
  bool end_object() { return Close(); }
  bool start_array(std::size_t) {
    if (depth_ == 0) return false;  // the document must be an object
    return Open();
  }
  bool end_array() { return Close(); }
  bool key(Json::string_t& name) {
    if (depth_ == 1) field_ = FieldOf(name);
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) {
    return false;
  }

  // Whether every required member was present with its type, and the optional one with its.
  bool Complete() const {
    for (int f = 0; f < kCreatedBy; ++f) {
      if (!seen_[f]) return false;
    }
    return !bad_[kCreatedBy] && done_;
  }

 private:
  enum Field : int {
    kRecordId,
    kPatientId,
    kCategory,
    kContentType,
    kEncounterDate,
    kAuthor,
    kAmendmentReason,
    kVersion,
    kCreatedUs,
    kContentBytes,
    kCreatedBy,  // optional; everything before it is required
    kNone,
  };
  enum class Kind { kSigned, kUnsigned, kOther };

  static Field FieldOf(std::string_view name) {
    static constexpr std::pair<std::string_view, Field> kNames[] = {
        {"record_id", kRecordId},
        {"patient_id", kPatientId},
        {"category", kCategory},
        {"content_type", kContentType},
        {"encounter_date", kEncounterDate},
        {"author", kAuthor},
        {"amendment_reason", kAmendmentReason},
        {"version", kVersion},
        {"created_us", kCreatedUs},
        {"content_bytes", kContentBytes},
        {"created_by", kCreatedBy},
    };
    for (const auto& [n, f] : kNames) {
      if (n == name) return f;
    }
    return kNone;
  }
  std::string* StringField(Field f) {
    switch (f) {
      case kRecordId:
        return &m_.record_id;
      case kPatientId:
        return &m_.patient_id;
      case kCategory:
        return &m_.category;
      case kContentType:
        return &m_.content_type;
      case kEncounterDate:
        return &m_.encounter_date;
      case kAuthor:
        return &m_.author;
      case kAmendmentReason:
        return &m_.amendment_reason;
      default:
        return nullptr;
    }
  }
  bool Top() const { return depth_ == 1 && field_ != kNone; }

  // A member's value that is not a string, or a nested value's start: decides the member.
  bool Scalar(Kind kind) {
    if (depth_ == 0) return false;  // the document must be an object
    if (depth_ != 1 || field_ == kNone) return true;
    bool ok = false;
    switch (field_) {
      case kVersion:
        ok = kind == Kind::kUnsigned && unsigned_ <= UINT32_MAX;
        if (ok) m_.version = static_cast<uint32_t>(unsigned_);
        break;
      case kCreatedUs:
        ok = kind == Kind::kSigned || kind == Kind::kUnsigned;
        if (ok) {
          m_.created_unix_us = kind == Kind::kSigned ? signed_ : static_cast<int64_t>(unsigned_);
        }
        break;
      case kContentBytes:
        ok = kind == Kind::kUnsigned;
        if (ok) m_.content_bytes = unsigned_;
        break;
      default:
        break;  // a string member with another type
    }
    seen_[field_] = ok;
    bad_[field_] = !ok;
    field_ = kNone;
    return true;
  }
  bool Open() {
    if (depth_ == 1 && field_ != kNone) Scalar(Kind::kOther);
    ++depth_;
    return true;
  }
  bool Close() {
    if (--depth_ == 0) done_ = true;
    return true;
  }

  RecordMetadata& m_;
  int depth_ = 0;
  Field field_ = kNone;
  int64_t signed_ = 0;
  uint64_t unsigned_ = 0;
  bool seen_[kNone] = {};
  bool bad_[kNone] = {};
  bool done_ = false;
};

}  // namespace

std::optional<RecordMetadata> MetadataFromJson(std::string_view text) {
  RecordMetadata m;
  MetadataSax sax(m);
  const bool parsed = Json::sax_parse(text.begin(), text.end(), &sax,
                                      nlohmann::detail::input_format_t::json, /*strict=*/true);
  if (!parsed || !sax.Complete()) return std::nullopt;
  return m;
}

std::string NewRecordId() {
  // Ids never start with '-' or '_', so that command lines do not read them as options. This
  // costs under 2 bits of the 128.
  for (;;) {
    std::string id = crypto::Base64UrlEncode(crypto::RandomBytes(kRawIdBytes));
    if (id[0] != '-' && id[0] != '_') return id;
  }
}

bool IsValidRecordId(std::string_view id) {
  if (id.size() != kRecordIdChars) return false;
  for (char c : id) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    if (!ok) return false;
  }
  // 128 bits fill 21 characters and 2 bits of the 22nd; its other 4 bits must be zero.
  const char last = id.back();
  return last == 'A' || last == 'Q' || last == 'g' || last == 'w';
}

RecordRepository::RecordRepository(Store& store, crypto::Keyring& keyring)
    : store_(store), keyring_(keyring) {}

std::string RecordRepository::PatientBlindId(std::string_view patient_id) const {
  return keyring_.blind_index().Compute(kPatientDomain, patient_id);
}

Status RecordRepository::StageVersion(const Record& record, WriteBatch& batch) {
  const RecordMetadata& meta = record.meta;
  PV_ASSIGN_OR_RETURN(std::string raw_id, RawId(meta.record_id));
  if (meta.version == 0) return InvalidArgument("record version must be at least 1");
  if (meta.content_bytes != record.content.size()) {
    return InvalidArgument("content_bytes must equal the size of the content");
  }
  PV_ASSIGN_OR_RETURN(std::string meta_json, MetadataToJson(meta));
  PV_ASSIGN_OR_RETURN(auto epoch_key, keyring_.GetOrCreateEpoch(meta.epoch_id));

  Header h;
  h.epoch_id = meta.epoch_id;
  h.blind_id = PatientBlindId(meta.patient_id);
  crypto::SecretBytes dek = crypto::SecretBytes::Random(kDekBytes);
  h.wrapped_dek = crypto::WrapKey(*epoch_key, dek, DekAad(raw_id, meta.version, meta.epoch_id));
  PV_ASSIGN_OR_RETURN(auto aead, crypto::Aead::Create(std::move(dek)));
  h.sealed_meta = aead->Encrypt(meta_json, SealAad(kMetaAad, raw_id, meta.version, h.blind_id));
  std::string sealed_content =
      aead->Encrypt(record.content, SealAad(kContentAad, raw_id, meta.version, h.blind_id));

  batch.Put(Cf::kRecords, VersionKey('m', raw_id, meta.version), EncodeHeader(h));
  batch.Put(Cf::kRecords, VersionKey('c', raw_id, meta.version), std::move(sealed_content));
  if (meta.version == 1) {
    batch.Put(Cf::kIndexes, "p" + h.blind_id + raw_id,
              BigEndian64(static_cast<uint64_t>(meta.created_unix_us)));
  }
  batch.Put(Cf::kRecords, "h" + raw_id, EncodeHead(raw_id, meta.version));
  batch.Put(Cf::kIndexes, EpochIndexKey(meta.epoch_id, raw_id, meta.version), "");
  return Status::Ok();
}

std::string RecordRepository::EncodeHead(std::string_view raw_id, uint32_t version) const {
  const std::string v = BigEndian32(version);
  return v + keyring_.blind_index().Compute(kHeadDomain, std::string(raw_id) + v);
}

StatusOr<uint32_t> RecordRepository::LatestVersion(std::string_view record_id) {
  PV_ASSIGN_OR_RETURN(std::string raw_id, RawId(record_id));
  PV_ASSIGN_OR_RETURN(auto head, store_.Get(Cf::kRecords, "h" + raw_id));
  if (!head) {
    PV_ASSIGN_OR_RETURN(auto certificate, ReadTombstone(raw_id));
    if (certificate) {
      return FailedPrecondition(std::string(kShreddedMessage) + " (certificate " + *certificate +
                                ")");
    }
    // Without a head or a tombstone the record does not exist, unless its head was deleted.
    const std::string prefix = "m" + raw_id;
    bool any_version = false;
    PV_RETURN_IF_ERROR(store_.Scan(Cf::kRecords, prefix, PrefixEnd(prefix),
                                   [&](std::string_view, std::string_view) {
                                     any_version = true;
                                     return false;
                                   }));
    if (any_version) return IntegrityFailure();
    return NotFound("no such record");
  }
  return DecodeHead(raw_id, *head);
}

StatusOr<uint32_t> RecordRepository::DecodeHead(std::string_view raw_id,
                                                std::string_view head) const {
  if (head.size() != 4 + crypto::BlindIndex::kOutputBytes) return IntegrityFailure();
  const uint32_t version = ReadBigEndian32(head);
  if (version == 0 || !crypto::ConstantTimeEquals(head, EncodeHead(raw_id, version))) {
    return IntegrityFailure();
  }
  return version;
}

StatusOr<Record> RecordRepository::ReadVersion(std::string_view record_id, uint32_t version,
                                               bool with_content) {
  if (!with_content) return ReadVersionGated(record_id, version, nullptr);
  return ReadVersionGated(record_id, version, [](const RecordMetadata&) { return Status::Ok(); });
}

namespace {

// A version's metadata, opened from its stored header, and the AEAD of its DEK (for the content).
struct OpenedMeta {
  RecordMetadata meta;
  std::unique_ptr<crypto::Aead> aead;
};
StatusOr<OpenedMeta> OpenMeta(const crypto::Keyring& keyring, const RecordRepository& repo,
                              std::string_view record_id, std::string_view raw_id, uint32_t version,
                              const Header& header) {
  PV_ASSIGN_OR_RETURN(crypto::SecretBytes dek, UnwrapDek(keyring, raw_id, version, header));
  auto aead = crypto::Aead::Create(std::move(dek));
  if (!aead.ok()) return IntegrityFailure();
  auto meta_json =
      (*aead)->Decrypt(header.sealed_meta, SealAad(kMetaAad, raw_id, version, header.blind_id));
  if (!meta_json.ok()) return IntegrityFailure();
  auto meta = MetadataFromJson(*meta_json);
  if (!meta || meta->record_id != record_id || meta->version != version ||
      !crypto::ConstantTimeEquals(repo.PatientBlindId(meta->patient_id), header.blind_id)) {
    return IntegrityFailure();
  }
  meta->epoch_id = header.epoch_id;
  return OpenedMeta{std::move(*meta), std::move(*aead)};
}

}  // namespace

StatusOr<Record> RecordRepository::ReadVersionGated(std::string_view record_id, uint32_t version,
                                                    const ContentGate& gate) {
  const bool with_content = static_cast<bool>(gate);
  PV_ASSIGN_OR_RETURN(std::string raw_id, RawId(record_id));
  PV_ASSIGN_OR_RETURN(auto stored, store_.Get(Cf::kRecords, VersionKey('m', raw_id, version)));
  if (!stored) {
    // Versions are never deleted one by one: a missing version the head covers was removed.
    PV_ASSIGN_OR_RETURN(uint32_t latest, LatestVersion(record_id));
    return version <= latest ? IntegrityFailure() : NotFound("no such version");
  }
  auto header = DecodeHeader(*stored);
  if (!header) return IntegrityFailure();
  PV_ASSIGN_OR_RETURN(OpenedMeta opened,
                      OpenMeta(keyring_, *this, record_id, raw_id, version, *header));
  auto& aead = opened.aead;

  Record record;
  record.meta = std::move(opened.meta);
  if (with_content) {
    PV_RETURN_IF_ERROR(gate(record.meta));
    ContentForm form = ContentForm::kLive;
    PV_ASSIGN_OR_RETURN(auto sealed, GetContent(raw_id, version, &form));
    if (!sealed) return IntegrityFailure();
    record.archived = form != ContentForm::kLive;
    PV_ASSIGN_OR_RETURN(record.content, OpenContent(*aead, raw_id, version, header->blind_id,
                                                    *sealed, form, record.meta.content_bytes));
  }
  return record;
}

StatusOr<std::vector<RecordMetadata>> RecordRepository::ListPatient(std::string_view patient_id) {
  return ListPatientExcept(patient_id, {});
}

StatusOr<std::vector<RecordMetadata>> RecordRepository::ListPatientExcept(
    std::string_view patient_id, const std::vector<std::string_view>& known) {
  const std::string prefix = "p" + PatientBlindId(patient_id);
  std::vector<std::pair<uint64_t, std::string>> found;  // (created_us of version 1, raw id)
  bool malformed = false;
  PV_RETURN_IF_ERROR(store_.Scan(
      Cf::kIndexes, prefix, PrefixEnd(prefix), [&](std::string_view key, std::string_view value) {
        if (key.size() != prefix.size() + kRawIdBytes || value.size() != 8) {
          malformed = true;
          return false;
        }
        found.emplace_back(ReadBigEndian64(value), key.substr(prefix.size()));
        return true;
      }));
  if (malformed) return IntegrityFailure();
  std::sort(found.begin(), found.end());

  std::vector<RecordMetadata> out;
  out.reserve(found.size());
  for (const auto& [created, raw_id] : found) {
    const std::string id = crypto::Base64UrlEncode(raw_id);
    if (std::binary_search(known.begin(), known.end(), std::string_view(id))) continue;
    auto latest = LatestVersion(id);
    if (!latest.ok()) {
      // Deletion removes the index entry with the record: an entry for a record that is gone
      // (never stored, or shredded) was put back.
      const StatusCode code = latest.status().code();
      const bool gone = code == StatusCode::kNotFound || code == StatusCode::kFailedPrecondition;
      return gone ? IntegrityFailure() : latest.status();
    }
    auto record = ReadVersion(id, *latest, /*with_content=*/false);
    // Shredded records are gone for every reader; the retention sweep removes their index keys.
    if (!record.ok() && record.status().code() == StatusCode::kFailedPrecondition) continue;
    if (!record.ok()) return record.status();
    // An index key pointing at another patient's record would leak it into this list.
    if (record->meta.patient_id != patient_id) return IntegrityFailure();
    out.push_back(std::move(record->meta));
  }
  return out;
}

StatusOr<uint32_t> RecordRepository::StageRewrap(std::string_view record_id,
                                                 std::string_view new_epoch_id, WriteBatch& batch) {
  PV_ASSIGN_OR_RETURN(std::string raw_id, RawId(record_id));
  PV_RETURN_IF_ERROR(CheckEpochId(keyring_, new_epoch_id));
  PV_ASSIGN_OR_RETURN(uint32_t latest, LatestVersion(record_id));

  struct Move {
    uint32_t version;
    Header header;
    crypto::SecretBytes dek;
  };
  std::vector<Move> moves;
  for (uint32_t version = 1; version <= latest; ++version) {
    PV_ASSIGN_OR_RETURN(Header header, ReadHeader(store_, raw_id, version));
    if (header.epoch_id == new_epoch_id) continue;
    PV_ASSIGN_OR_RETURN(crypto::SecretBytes dek, UnwrapDek(keyring_, raw_id, version, header));
    moves.push_back({version, std::move(header), std::move(dek)});
  }
  if (moves.empty()) return 0u;

  PV_ASSIGN_OR_RETURN(auto new_key, keyring_.GetOrCreateEpoch(new_epoch_id));
  WriteBatch own;
  for (Move& move : moves) {
    const std::string old_index = EpochIndexKey(move.header.epoch_id, raw_id, move.version);
    move.header.epoch_id = std::string(new_epoch_id);
    move.header.wrapped_dek =
        crypto::WrapKey(*new_key, move.dek, DekAad(raw_id, move.version, new_epoch_id));
    own.Put(Cf::kRecords, VersionKey('m', raw_id, move.version), EncodeHeader(move.header));
    own.Delete(Cf::kIndexes, old_index);
    own.Put(Cf::kIndexes, EpochIndexKey(new_epoch_id, raw_id, move.version), "");
  }
  batch.Append(std::move(own));
  return static_cast<uint32_t>(moves.size());
}

Status RecordRepository::ScanEpoch(
    std::string_view epoch_id,
    const std::function<bool(std::string_view record_id, uint32_t version)>& fn) {
  PV_RETURN_IF_ERROR(CheckEpochId(keyring_, epoch_id));
  const std::string prefix = "e" + std::string(epoch_id) + std::string(1, '\0');
  bool malformed = false;
  PV_RETURN_IF_ERROR(store_.Scan(
      Cf::kIndexes, prefix, PrefixEnd(prefix), [&](std::string_view key, std::string_view value) {
        key.remove_prefix(prefix.size());
        if (key.size() != kRawIdBytes + 4 || !value.empty()) {
          malformed = true;
          return false;
        }
        const uint32_t version = ReadBigEndian32(key.substr(kRawIdBytes));
        if (version == 0) {
          malformed = true;
          return false;
        }
        return fn(crypto::Base64UrlEncode(key.substr(0, kRawIdBytes)), version);
      }));
  if (malformed) return IntegrityFailure();
  return Status::Ok();
}

StatusOr<std::vector<std::string>> RecordRepository::Fingerprints(
    std::string_view record_id, std::optional<uint32_t> known_latest) {
  uint32_t latest = 0;
  if (known_latest) {
    latest = *known_latest;
  } else {
    PV_ASSIGN_OR_RETURN(latest, LatestVersion(record_id));
  }
  PV_ASSIGN_OR_RETURN(StoredVersions stored, ReadStoredVersions(record_id, latest));
  return std::move(stored.fingerprints);
}

StatusOr<RecordRepository::StoredVersions> RecordRepository::ReadStoredVersions(
    std::string_view record_id, uint32_t latest) {
  PV_ASSIGN_OR_RETURN(std::string raw_id, RawId(record_id));
  StoredVersions stored;
  stored.epoch_ids.reserve(latest);
  std::vector<std::string>& out = stored.fingerprints;
  out.reserve(size_t{3} * latest);
  for (uint32_t version = 1; version <= latest; ++version) {
    PV_ASSIGN_OR_RETURN(Header header, ReadHeader(store_, raw_id, version));
    ContentForm form = ContentForm::kLive;
    PV_ASSIGN_OR_RETURN(auto content, GetContent(raw_id, version, &form));
    if (!content || content->size() < kFingerprintBytes ||
        header.sealed_meta.size() < kFingerprintBytes ||
        header.wrapped_dek.size() < kFingerprintBytes) {
      return IntegrityFailure();
    }
    out.push_back(content->substr(0, kFingerprintBytes));
    out.push_back(header.sealed_meta.substr(0, kFingerprintBytes));
    out.push_back(std::move(header.wrapped_dek));
    stored.epoch_ids.push_back(std::move(header.epoch_id));
  }
  return stored;
}

std::vector<StatusOr<RecordRepository::SweepRead>> RecordRepository::ReadLatestForSweep(
    const std::vector<std::string>& record_ids) {
  const size_t n = record_ids.size();
  std::vector<StatusOr<SweepRead>> out(n, Internal("not read"));
  std::vector<std::string> raw_ids(n);
  std::vector<uint32_t> latest(n, 0);
  std::vector<std::string> head_keys;
  head_keys.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    auto raw = RawId(record_ids[i]);
    if (raw.ok()) raw_ids[i] = std::move(*raw);
    head_keys.push_back("h" + raw_ids[i]);
    if (!raw.ok()) out[i] = raw.status();
  }
  auto heads = store_.MultiGet(Cf::kRecords, head_keys);
  if (!heads.ok()) return std::vector<StatusOr<SweepRead>>(n, heads.status());
  std::vector<std::string> m_keys, c_keys;
  std::vector<size_t> first(n + 1, 0);  // record i's versions are [first[i], first[i + 1])
  for (size_t i = 0; i < n; ++i) {
    first[i] = m_keys.size();
    if (raw_ids[i].empty()) continue;
    auto version = (*heads)[i] ? DecodeHead(raw_ids[i], *(*heads)[i])
                               : LatestVersion(record_ids[i]);  // a tombstone, or damage
    if (!version.ok()) {
      out[i] = version.status();
      continue;
    }
    latest[i] = *version;
    for (uint32_t v = 1; v <= latest[i]; ++v) {
      m_keys.push_back(VersionKey('m', raw_ids[i], v));
      c_keys.push_back(VersionKey('c', raw_ids[i], v));
    }
  }
  first[n] = m_keys.size();
  auto headers = store_.MultiGet(Cf::kRecords, m_keys);
  auto contents = headers.ok() ? store_.MultiGet(Cf::kRecords, c_keys) : headers;
  if (!contents.ok()) return std::vector<StatusOr<SweepRead>>(n, contents.status());
  for (size_t i = 0; i < n; ++i) {
    if (latest[i] == 0) continue;
    auto read = [&]() -> StatusOr<SweepRead> {
      SweepRead r;
      r.stored.epoch_ids.reserve(latest[i]);
      r.stored.fingerprints.reserve(size_t{3} * latest[i]);
      std::optional<Header> newest;
      for (uint32_t v = 1; v <= latest[i]; ++v) {
        const size_t k = first[i] + v - 1;
        if (!(*headers)[k]) return IntegrityFailure();
        auto header = DecodeHeader(*(*headers)[k]);
        if (!header) return IntegrityFailure();
        std::optional<std::string>& content = (*contents)[k];
        if (!content) {
          ContentForm form = ContentForm::kLive;  // archived: not in the batch
          PV_ASSIGN_OR_RETURN(content, GetContent(raw_ids[i], v, &form));
        }
        if (!content || content->size() < kFingerprintBytes ||
            header->sealed_meta.size() < kFingerprintBytes ||
            header->wrapped_dek.size() < kFingerprintBytes) {
          return IntegrityFailure();
        }
        r.stored.fingerprints.push_back(content->substr(0, kFingerprintBytes));
        r.stored.fingerprints.push_back(header->sealed_meta.substr(0, kFingerprintBytes));
        r.stored.fingerprints.push_back(header->wrapped_dek);
        r.stored.epoch_ids.push_back(header->epoch_id);
        if (v == latest[i]) newest = std::move(header);
      }
      PV_ASSIGN_OR_RETURN(OpenedMeta opened,
                          OpenMeta(keyring_, *this, record_ids[i], raw_ids[i], latest[i], *newest));
      r.meta = std::move(opened.meta);
      return r;
    };
    out[i] = read();
  }
  return out;
}

StatusOr<std::vector<RecordRepository::ErasureCheck>> RecordRepository::CheckErased(
    const std::vector<std::string>& record_ids) {
  std::vector<std::string> raw_ids;
  std::vector<std::string> head_keys;
  raw_ids.reserve(record_ids.size());
  head_keys.reserve(record_ids.size());
  for (const auto& id : record_ids) {
    PV_ASSIGN_OR_RETURN(std::string raw, RawId(id));
    head_keys.push_back("h" + raw);
    raw_ids.push_back(std::move(raw));
  }
  PV_ASSIGN_OR_RETURN(auto heads, store_.MultiGet(Cf::kRecords, head_keys));
  std::vector<ErasureCheck> out(record_ids.size());
  std::vector<std::string> version_keys;
  std::vector<std::pair<size_t, uint32_t>> version_of;  // (record index, version)
  for (size_t i = 0; i < record_ids.size(); ++i) {
    const auto& head = heads[i];
    uint32_t latest = 0;
    if (!head) {
      // No head: LatestVersion tells a tombstone, a missing record and a deleted head apart.
      PV_ASSIGN_OR_RETURN(latest, LatestVersion(record_ids[i]));
    } else {
      PV_ASSIGN_OR_RETURN(latest, DecodeHead(raw_ids[i], *head));
    }
    out[i].latest = latest;
    out[i].erased = true;
    for (uint32_t v = 1; v <= latest; ++v) {
      version_keys.push_back(VersionKey('m', raw_ids[i], v));
      version_of.emplace_back(i, v);
    }
  }
  PV_ASSIGN_OR_RETURN(auto versions, store_.MultiGet(Cf::kRecords, version_keys));
  for (size_t k = 0; k < versions.size(); ++k) {
    const auto [i, v] = version_of[k];
    auto fail = [&, i = i, v = v](std::string_view why) {
      return DataLoss("record " + record_ids[i] + " version " + std::to_string(v) + " " +
                      std::string(why));
    };
    if (!versions[k]) return fail("is missing");
    auto header = DecodeHeader(*versions[k]);
    if (!header) return fail("is malformed");
    auto dek = UnwrapDek(keyring_, raw_ids[i], v, *header);
    if (dek.ok()) {
      out[i].erased = false;
    } else if (dek.status().code() != StatusCode::kFailedPrecondition) {
      return fail("neither opens nor reads as erased: " + dek.status().message());
    }
  }
  return out;
}

Status RecordRepository::StageShred(std::string_view record_id, std::string_view certificate_id,
                                    int64_t destroyed_unix_us, WriteBatch& batch) {
  PV_ASSIGN_OR_RETURN(std::string raw_id, RawId(record_id));
  if (!IsValidCertificateId(certificate_id)) {
    return InvalidArgument("certificate id must be 32 lowercase hex digits");
  }
  if (destroyed_unix_us < 0) return InvalidArgument("destruction time must not be negative");
  PV_ASSIGN_OR_RETURN(auto shredded, ReadTombstone(raw_id));
  if (shredded) return Status::Ok();
  PV_ASSIGN_OR_RETURN(uint32_t latest, LatestVersion(record_id));

  // The headers are read without their epoch keys (which may be destroyed already): they only
  // name index keys of this record, so a damaged one can at worst leave an index entry behind.
  WriteBatch own;
  std::vector<std::string> blind_ids;
  for (uint32_t version = 1; version <= latest; ++version) {
    PV_ASSIGN_OR_RETURN(Header header, ReadHeader(store_, raw_id, version));
    own.Delete(Cf::kIndexes, EpochIndexKey(header.epoch_id, raw_id, version));
    if (std::find(blind_ids.begin(), blind_ids.end(), header.blind_id) == blind_ids.end()) {
      blind_ids.push_back(std::move(header.blind_id));
    }
  }
  for (const std::string& blind_id : blind_ids) {
    own.Delete(Cf::kIndexes, "p" + blind_id + raw_id);
  }
  // Every stored version and content value, by key (no iterator: a sweep shreds a million
  // records). The head counts every version a write ever committed (StageVersion puts a version
  // and its head in one batch); a value beyond it could only have been planted, is never read,
  // and is not the record's.
  const bool archive = ArchiveMayHoldContent();
  for (uint32_t version = 1; version <= latest; ++version) {
    own.Delete(Cf::kRecords, VersionKey('m', raw_id, version));
    own.Delete(Cf::kRecords, VersionKey('c', raw_id, version));
    if (archive) {
      own.Delete(Cf::kArchive, VersionKey('c', raw_id, version));
      own.Delete(Cf::kArchive, VersionKey('z', raw_id, version));
    }
  }
  own.Delete(Cf::kRecords, "h" + raw_id);
  own.Put(Cf::kIndexes, TombstoneKey(raw_id),
          EncodeTombstone(raw_id, certificate_id, destroyed_unix_us));
  batch.Append(std::move(own));
  return Status::Ok();
}

Status RecordRepository::StageShredErased(std::string_view record_id, uint32_t versions,
                                          std::string_view patient_blind_id,
                                          std::string_view certificate_id,
                                          int64_t destroyed_unix_us, WriteBatch& batch) {
  PV_ASSIGN_OR_RETURN(std::string raw_id, RawId(record_id));
  if (!IsValidCertificateId(certificate_id)) {
    return InvalidArgument("certificate id must be 32 lowercase hex digits");
  }
  if (destroyed_unix_us < 0) return InvalidArgument("destruction time must not be negative");
  if (versions == 0) return InvalidArgument("a record has at least one version");
  if (patient_blind_id.size() != crypto::BlindIndex::kOutputBytes) {
    return InvalidArgument("patient blind id must be " +
                           std::to_string(crypto::BlindIndex::kOutputBytes) + " bytes");
  }
  batch.Delete(Cf::kIndexes, "p" + std::string(patient_blind_id) + raw_id);
  const bool archive = ArchiveMayHoldContent();
  for (uint32_t version = 1; version <= versions; ++version) {
    batch.Delete(Cf::kRecords, VersionKey('m', raw_id, version));
    batch.Delete(Cf::kRecords, VersionKey('c', raw_id, version));
    if (archive) {
      batch.Delete(Cf::kArchive, VersionKey('c', raw_id, version));
      batch.Delete(Cf::kArchive, VersionKey('z', raw_id, version));
    }
  }
  batch.Delete(Cf::kRecords, "h" + raw_id);
  batch.Put(Cf::kIndexes, TombstoneKey(raw_id),
            EncodeTombstone(raw_id, certificate_id, destroyed_unix_us));
  return Status::Ok();
}

Status RecordRepository::StageEpochIndexErase(std::string_view epoch_id, WriteBatch& batch) {
  PV_RETURN_IF_ERROR(CheckEpochId(keyring_, epoch_id));
  const std::string prefix = "e" + std::string(epoch_id) + std::string(1, '\0');
  batch.DeleteRange(Cf::kIndexes, prefix, PrefixEnd(prefix));
  return Status::Ok();
}

StatusOr<std::optional<std::string>> RecordRepository::GetContent(std::string_view raw_id,
                                                                  uint32_t version,
                                                                  ContentForm* form) {
  const std::string key = VersionKey('c', raw_id, version);
  auto got = store_.Get(Cf::kRecords, key);
  // Damage the engine itself found (a checksum, a blob reference outside its file) is this
  // record's integrity failure, said the way a failed seal says it, not in the engine's words
  // (which name its files).
  if (!got.ok() && got.status().code() == StatusCode::kDataLoss) return IntegrityFailure();
  PV_ASSIGN_OR_RETURN(auto live, std::move(got));
  *form = ContentForm::kLive;
  if (live) return live;
  // Compressed first: what an archive run leaves for text-like content.
  PV_ASSIGN_OR_RETURN(auto compressed, store_.Get(Cf::kArchive, VersionKey('z', raw_id, version)));
  if (compressed) {
    *form = ContentForm::kArchivedCompressed;
    return compressed;
  }
  PV_ASSIGN_OR_RETURN(auto stored, store_.Get(Cf::kArchive, key));
  if (stored) *form = ContentForm::kArchivedRaw;
  return stored;
}

StatusOr<std::string> RecordRepository::OpenContent(const crypto::Aead& aead,
                                                    std::string_view raw_id, uint32_t version,
                                                    std::string_view blind_id,
                                                    std::string_view sealed, ContentForm form,
                                                    uint64_t content_bytes) {
  if (form != ContentForm::kArchivedCompressed) {
    auto content = aead.Decrypt(sealed, SealAad(kContentAad, raw_id, version, blind_id));
    if (!content.ok() || content->size() != content_bytes) return IntegrityFailure();
    return std::move(*content);
  }
  auto payload = aead.Decrypt(sealed, SealAad(kArchivedContentAad, raw_id, version, blind_id));
  if (!payload.ok()) return IntegrityFailure();
  Wipe wipe{*payload};
  // Authenticated, so only a vault's own (buggy) writer could have made a bad frame; still
  // decoded within the known size, and refused as damage.
  auto content = DecodeArchivePayload(*payload, content_bytes);
  if (!content.ok()) return IntegrityFailure();
  return std::move(*content);
}

StatusOr<uint32_t> RecordRepository::StageArchive(std::string_view record_id, WriteBatch& batch) {
  PV_ASSIGN_OR_RETURN(std::string raw_id, RawId(record_id));
  PV_ASSIGN_OR_RETURN(uint32_t latest, LatestVersion(record_id));
  WriteBatch own;
  uint32_t moved = 0;
  for (uint32_t version = 1; version <= latest; ++version) {
    std::string key = VersionKey('c', raw_id, version);
    PV_ASSIGN_OR_RETURN(auto value, store_.Get(Cf::kRecords, key));
    if (!value) {
      ContentForm form = ContentForm::kLive;
      PV_ASSIGN_OR_RETURN(auto there, GetContent(raw_id, version, &form));
      if (!there) return IntegrityFailure();
      continue;
    }
    // Compress before sealing: open the content under its DEK, as a read does.
    PV_ASSIGN_OR_RETURN(Header header, ReadHeader(store_, raw_id, version));
    PV_ASSIGN_OR_RETURN(crypto::SecretBytes dek, UnwrapDek(keyring_, raw_id, version, header));
    auto aead = crypto::Aead::Create(std::move(dek));
    if (!aead.ok()) return IntegrityFailure();
    auto content = (*aead)->Decrypt(*value, SealAad(kContentAad, raw_id, version, header.blind_id));
    if (!content.ok()) return IntegrityFailure();
    Wipe wipe_content{*content};
    PV_ASSIGN_OR_RETURN(std::optional<std::string> payload, EncodeArchivePayload(*content));
    own.Delete(Cf::kRecords, key);
    if (payload) {
      Wipe wipe_payload{*payload};
      // Same DEK, a fresh nonce (Encrypt makes it), the archived format's own AAD.
      own.Put(Cf::kArchive, VersionKey('z', raw_id, version),
              (*aead)->Encrypt(*payload,
                               SealAad(kArchivedContentAad, raw_id, version, header.blind_id)));
    } else {
      own.Put(Cf::kArchive, std::move(key), std::move(*value));
    }
    ++moved;
  }
  if (moved > 0) archive_state_.store(kArchiveUsed);
  batch.Append(std::move(own));
  return moved;
}

StatusOr<uint32_t> RecordRepository::StageUnarchive(std::string_view record_id, WriteBatch& batch) {
  PV_ASSIGN_OR_RETURN(std::string raw_id, RawId(record_id));
  PV_ASSIGN_OR_RETURN(uint32_t latest, LatestVersion(record_id));
  WriteBatch own;
  uint32_t moved = 0;
  for (uint32_t version = 1; version <= latest; ++version) {
    std::string key = VersionKey('c', raw_id, version);
    ContentForm form = ContentForm::kLive;
    PV_ASSIGN_OR_RETURN(auto value, GetContent(raw_id, version, &form));
    if (!value) return IntegrityFailure();
    if (form == ContentForm::kLive) continue;
    if (form == ContentForm::kArchivedRaw) {
      own.Delete(Cf::kArchive, key);
      own.Put(Cf::kRecords, std::move(key), std::move(*value));
      ++moved;
      continue;
    }
    // Back in the live tier's one format: opened, decompressed and sealed again as content v1
    // (same DEK, fresh nonce). Needs the version's size, from its metadata.
    PV_ASSIGN_OR_RETURN(Header header, ReadHeader(store_, raw_id, version));
    PV_ASSIGN_OR_RETURN(OpenedMeta opened,
                        OpenMeta(keyring_, *this, record_id, raw_id, version, header));
    PV_ASSIGN_OR_RETURN(std::string content,
                        OpenContent(*opened.aead, raw_id, version, header.blind_id, *value,
                                    ContentForm::kArchivedCompressed, opened.meta.content_bytes));
    Wipe wipe{content};
    own.Delete(Cf::kArchive, VersionKey('z', raw_id, version));
    own.Put(Cf::kRecords, std::move(key),
            opened.aead->Encrypt(content, SealAad(kContentAad, raw_id, version, header.blind_id)));
    ++moved;
  }
  batch.Append(std::move(own));
  return moved;
}

Status RecordRepository::ForEachRecord(
    const std::function<Status(const std::string& record_id, int64_t created_unix_us)>& fn) {
  constexpr size_t kPiece = 4096;
  const size_t key_size = 1 + crypto::BlindIndex::kOutputBytes + kRawIdBytes;
  std::string from = "p";
  const std::string end = PrefixEnd("p");
  for (;;) {
    std::vector<std::pair<std::string, int64_t>> piece;
    std::string last;
    bool malformed = false;
    PV_RETURN_IF_ERROR(
        store_.Scan(Cf::kIndexes, from, end, [&](std::string_view key, std::string_view value) {
          if (key.size() != key_size || value.size() != 8) {
            malformed = true;
            return false;
          }
          piece.emplace_back(crypto::Base64UrlEncode(key.substr(key_size - kRawIdBytes)),
                             static_cast<int64_t>(ReadBigEndian64(value)));
          last.assign(key);
          return piece.size() < kPiece;
        }));
    if (malformed) return IntegrityFailure();
    for (const auto& [id, created] : piece) PV_RETURN_IF_ERROR(fn(id, created));
    if (piece.size() < kPiece) return Status::Ok();
    from = last + std::string(1, '\0');
  }
}

StatusOr<bool> RecordRepository::IsArchived(std::string_view record_id, uint32_t version) {
  PV_ASSIGN_OR_RETURN(std::string raw_id, RawId(record_id));
  if (!ArchiveMayHoldContent()) return false;
  PV_ASSIGN_OR_RETURN(auto compressed, store_.Get(Cf::kArchive, VersionKey('z', raw_id, version)));
  if (compressed) return true;
  PV_ASSIGN_OR_RETURN(auto stored, store_.Get(Cf::kArchive, VersionKey('c', raw_id, version)));
  return stored.has_value();
}

bool RecordRepository::ArchiveMayHoldContent() {
  const int state = archive_state_.load();
  if (state != kArchiveUnknown) return state == kArchiveUsed;
  bool any = false;
  const Status scanned = store_.Scan(Cf::kArchive, "", "", [&](std::string_view, std::string_view) {
    any = true;
    return false;
  });
  int expected = kArchiveUnknown;
  // Only from unknown: a StageArchive meanwhile has already said "used", and that stands.
  archive_state_.compare_exchange_strong(expected,
                                         any || !scanned.ok() ? kArchiveUsed : kArchiveEmpty);
  return archive_state_.load() == kArchiveUsed;
}

StatusOr<std::vector<bool>> RecordRepository::ReadAsShredded(
    const std::vector<std::string>& record_ids) {
  std::vector<std::string> raw_ids;
  std::vector<std::string> head_keys;
  std::vector<std::string> tombstone_keys;
  raw_ids.reserve(record_ids.size());
  head_keys.reserve(record_ids.size());
  tombstone_keys.reserve(record_ids.size());
  for (const auto& id : record_ids) {
    PV_ASSIGN_OR_RETURN(std::string raw, RawId(id));
    head_keys.push_back("h" + raw);
    tombstone_keys.push_back(TombstoneKey(raw));
    raw_ids.push_back(std::move(raw));
  }
  PV_ASSIGN_OR_RETURN(auto heads, store_.MultiGet(Cf::kRecords, head_keys));
  PV_ASSIGN_OR_RETURN(auto tombstones, store_.MultiGet(Cf::kIndexes, tombstone_keys));
  std::vector<bool> out(record_ids.size(), false);
  for (size_t i = 0; i < record_ids.size(); ++i) {
    out[i] = !heads[i] && tombstones[i] && OpenTombstone(raw_ids[i], *tombstones[i]).has_value();
  }
  return out;
}

StatusOr<std::optional<std::string>> RecordRepository::ShreddedBy(std::string_view record_id) {
  PV_ASSIGN_OR_RETURN(std::string raw_id, RawId(record_id));
  return ReadTombstone(raw_id);
}

std::string RecordRepository::EncodeTombstone(std::string_view raw_id,
                                              std::string_view certificate_id,
                                              int64_t destroyed_unix_us) const {
  std::string body(certificate_id);
  body += BigEndian64(static_cast<uint64_t>(destroyed_unix_us));
  return body + keyring_.blind_index().Compute(kTombstoneDomain, std::string(raw_id) + body);
}

StatusOr<std::optional<std::string>> RecordRepository::ReadTombstone(std::string_view raw_id) {
  PV_ASSIGN_OR_RETURN(auto stored, store_.Get(Cf::kIndexes, TombstoneKey(raw_id)));
  if (!stored) return std::optional<std::string>();
  const std::optional<std::string_view> certificate = OpenTombstone(raw_id, *stored);
  if (!certificate) return IntegrityFailure();
  return std::optional<std::string>(*certificate);
}

std::optional<std::string_view> RecordRepository::OpenTombstone(std::string_view raw_id,
                                                                std::string_view stored) const {
  constexpr size_t kBody = kCertificateIdChars + 8;
  if (stored.size() != kBody + crypto::BlindIndex::kOutputBytes) return std::nullopt;
  const std::string_view certificate = stored.substr(0, kCertificateIdChars);
  const int64_t destroyed =
      static_cast<int64_t>(ReadBigEndian64(stored.substr(kCertificateIdChars)));
  if (!IsValidCertificateId(certificate) || destroyed < 0 ||
      !crypto::ConstantTimeEquals(stored, EncodeTombstone(raw_id, certificate, destroyed))) {
    return std::nullopt;
  }
  return certificate;
}

}  // namespace phivault::storage
