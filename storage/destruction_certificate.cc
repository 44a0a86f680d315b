#include "storage/destruction_certificate.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <map>
#include <optional>
#include <tuple>
#include <unordered_set>

#include "crypto/hash.h"
#include "storage/checkpoint.h"
#include "storage/records.h"

namespace phivault::storage {
namespace {

constexpr std::string_view kFormatLine = "phivault destruction certificate v1";
constexpr std::string_view kMethodPrefix = "purge by cryptographic erase of epoch keys ";
constexpr std::string_view kMethodSuffix = ", then deletion and compaction of the ciphertext";
constexpr std::string_view kEpochSeparator = ", ";
constexpr size_t kMaxCategory = 64;

Status Bad(std::string_view what) { return InvalidArgument("certificate " + std::string(what)); }

bool IsLowerHex(std::string_view s, size_t size) {
  return s.size() == size && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

bool IsText(std::string_view s) {
  return !s.empty() && s.front() != ' ' && s.back() != ' ' &&
         std::none_of(s.begin(), s.end(), [](char c) {
           const auto u = static_cast<unsigned char>(c);
           return u < 0x20 || u == 0x7f;
         });
}

bool IsToken(std::string_view s) { return IsText(s) && s.find(' ') == std::string_view::npos; }

bool IsEpochId(std::string_view s) {
  if (s.size() == 9 && s[0] == 'd') {
    return std::all_of(s.begin() + 1, s.end(), [](char c) { return c >= '0' && c <= '9'; });
  }
  return s.size() >= 2 && s.size() <= 41 && s[0] == 'h' &&
         std::all_of(s.begin() + 1, s.end(), [](char c) {
           return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
         });
}

// The daemon's rule for configured category names (daemon/config.cc).
bool IsCategory(std::string_view s) {
  const auto letter_or_digit = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
  };
  return !s.empty() && s.size() <= kMaxCategory && letter_or_digit(s[0]) &&
         std::all_of(s.begin(), s.end(),
                     [&](char c) { return letter_or_digit(c) || c == '_' || c == '-'; });
}

// "YYYY-MM-DDThh:mm:ss.ffffffZ"; "" outside the years 1970-9999.
std::string FormatMicros(int64_t unix_us) {
  if (unix_us < 0) return "";
  const std::string seconds = Rfc3339Utc(unix_us / 1'000'000);
  if (seconds.empty()) return "";
  char fraction[8];
  std::snprintf(fraction, sizeof fraction, ".%06lld", static_cast<long long>(unix_us % 1'000'000));
  return seconds.substr(0, 19) + fraction + "Z";
}

template <typename T>
bool ParseDecimal(std::string_view s, T& out) {
  if (s.empty() || (s.size() > 1 && s[0] == '0')) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

// Unix microseconds of exactly what FormatMicros writes; nullopt for any other text.
std::optional<int64_t> ParseMicros(std::string_view s) {
  if (s.size() != 27 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
      s[16] != ':' || s[19] != '.' || s[26] != 'Z') {
    return std::nullopt;
  }
  const auto digits = [&](size_t at, size_t len, int64_t& out) {
    out = 0;
    for (size_t i = at; i < at + len; ++i) {
      if (s[i] < '0' || s[i] > '9') return false;
      out = out * 10 + (s[i] - '0');
    }
    return true;
  };
  int64_t y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, us = 0;
  if (!digits(0, 4, y) || !digits(5, 2, mo) || !digits(8, 2, d) || !digits(11, 2, h) ||
      !digits(14, 2, mi) || !digits(17, 2, sec) || !digits(20, 6, us)) {
    return std::nullopt;
  }
  using namespace std::chrono;
  const year_month_day ymd{year(static_cast<int>(y)), month(static_cast<unsigned>(mo)),
                           day(static_cast<unsigned>(d))};
  if (!ymd.ok() || h > 23 || mi > 59 || sec > 59) return std::nullopt;
  const int64_t t = (duration_cast<seconds>(sys_days(ymd).time_since_epoch()).count() + h * 3600 +
                     mi * 60 + sec) *
                        1'000'000 +
                    us;
  if (FormatMicros(t) != s) return std::nullopt;  // e.g. a year before 1970
  return t;
}

bool RecordLess(const DestroyedRecordVersion& a, const DestroyedRecordVersion& b) {
  return std::tie(a.record_id, a.version) < std::tie(b.record_id, b.version);
}

std::string CountsLine(const DestructionCounts& counts) {
  return "records=" + std::to_string(counts.records) +
         " versions=" + std::to_string(counts.versions) +
         " patients=" + std::to_string(counts.patients);
}

// Checks every field of `c`, whose records and epoch ids are already sorted.
Status Validate(const DestructionCertificate& c) {
  if (!IsLowerHex(c.id, 32)) return Bad("id must be 32 lowercase hex digits");
  if (!IsText(c.principal)) return Bad("principal must be non-empty text on one line");
  if (!IsText(c.user)) return Bad("user must be non-empty text on one line");
  if (!IsText(c.role)) return Bad("role must be non-empty text on one line");
  if (FormatMicros(c.started_unix_us).empty()) {
    return Bad("started must be in the years 1970-9999");
  }
  if (FormatMicros(c.finished_unix_us).empty()) {
    return Bad("finished must be in the years 1970-9999");
  }
  if (c.finished_unix_us < c.started_unix_us) return Bad("finished must not be before started");
  if (c.epoch_ids.empty()) return Bad("method must name at least one epoch key");
  for (size_t i = 0; i < c.epoch_ids.size(); ++i) {
    if (!IsEpochId(c.epoch_ids[i])) return Bad("method names a malformed epoch id");
    if (i > 0 && c.epoch_ids[i - 1] >= c.epoch_ids[i]) {
      return Bad("method must name each epoch key once, in ascending order");
    }
  }
  if (!IsText(c.media)) return Bad("media must be non-empty text on one line");
  if (c.records.empty()) return Bad("must name at least one record");
  for (size_t i = 0; i < c.records.size(); ++i) {
    const DestroyedRecordVersion& r = c.records[i];
    if (!IsValidRecordId(r.record_id)) return Bad("record id is malformed");
    if (r.version == 0) return Bad("record version must be at least 1");
    if (!IsCategory(r.category))
      return Bad("record category must be 1-64 of [a-z0-9_-], starting with a letter or digit");
    if (!IsLowerHex(r.patient_bid, 64)) {
      return Bad("patient blind id must be 64 lowercase hex digits (never a patient id)");
    }
    if (i > 0 && !RecordLess(c.records[i - 1], r)) {
      return Bad("must name each record version once, in ascending order");
    }
  }
  if (!IsText(c.verification)) return Bad("verification must be non-empty text on one line");
  if (!IsText(c.verification_result)) return Bad("result must be non-empty text on one line");
  if (!IsToken(c.tool_name)) return Bad("tool name must be non-empty, without spaces");
  if (!IsToken(c.tool_version)) return Bad("tool version must be non-empty, without spaces");
  if (c.audit_seq_last < c.audit_seq_first) {
    return Bad("audit-seq range must not end before it starts");
  }
  return Status::Ok();
}

// The lines of a note text, in order, and which one is next.
class LineReader {
 public:
  LineReader(std::vector<std::string_view> lines, size_t next)
      : lines_(std::move(lines)), next_(next) {}

  bool done() const { return next_ >= lines_.size(); }
  bool NextHas(std::string_view key) const {
    return !done() && lines_[next_].substr(0, key.size() + 1) == std::string(key) + " ";
  }
  // The value of the next line, which must be "<key> <value>".
  StatusOr<std::string_view> Take(std::string_view key) {
    if (!NextHas(key)) {
      return Bad("line " + std::to_string(next_ + 1) + " must be '" + std::string(key) + " ...'");
    }
    return lines_[next_++].substr(key.size() + 1);
  }

 private:
  std::vector<std::string_view> lines_;
  size_t next_;
};

StatusOr<std::string> TakeText(LineReader& in, std::string_view key) {
  PV_ASSIGN_OR_RETURN(std::string_view value, in.Take(key));
  if (!IsText(value)) return Bad(std::string(key) + " must be non-empty text on one line");
  return std::string(value);
}

StatusOr<int64_t> TakeTime(LineReader& in, std::string_view key) {
  PV_ASSIGN_OR_RETURN(std::string_view value, in.Take(key));
  const std::optional<int64_t> t = ParseMicros(value);
  if (!t) return Bad(std::string(key) + " must be YYYY-MM-DDThh:mm:ss.ffffffZ");
  return *t;
}

StatusOr<std::vector<std::string>> ParseMethod(std::string_view value) {
  const auto bad = [] {
    return Bad("method must be '" + std::string(kMethodPrefix) + "<ids>" +
               std::string(kMethodSuffix) + "'");
  };
  if (!value.starts_with(kMethodPrefix) || !value.ends_with(kMethodSuffix)) return bad();
  std::string_view ids = value.substr(kMethodPrefix.size(),
                                      value.size() - kMethodPrefix.size() - kMethodSuffix.size());
  std::vector<std::string> out;
  while (true) {
    const size_t sep = ids.find(kEpochSeparator);
    out.emplace_back(ids.substr(0, sep));
    if (sep == std::string_view::npos) break;
    ids.remove_prefix(sep + kEpochSeparator.size());
  }
  return out;
}

StatusOr<DestroyedRecordVersion> ParseRecord(std::string_view value) {
  std::vector<std::string_view> parts;
  while (true) {
    const size_t space = value.find(' ');
    parts.push_back(value.substr(0, space));
    if (space == std::string_view::npos) break;
    value.remove_prefix(space + 1);
  }
  if (parts.size() != 4) {
    return Bad("record line must be 'record <id> <version> <category> <patient blind id>'");
  }
  DestroyedRecordVersion r{std::string(parts[0]), 0, std::string(parts[2]), std::string(parts[3])};
  if (!ParseDecimal(parts[1], r.version)) return Bad("record version is malformed");
  return r;
}

StatusOr<std::pair<std::string_view, std::string_view>> SplitPair(std::string_view value,
                                                                  std::string_view what) {
  const size_t space = value.find(' ');
  if (space == std::string_view::npos || value.find(' ', space + 1) != std::string_view::npos) {
    return Bad(std::string(what) + " line must hold exactly two values");
  }
  return std::pair{value.substr(0, space), value.substr(space + 1)};
}

}  // namespace

std::string NewDestructionCertificateId() { return crypto::HexEncode(crypto::RandomBytes(16)); }

std::string MethodStatement(const DestructionCertificate& certificate) {
  std::vector<std::string> ids = certificate.epoch_ids;
  std::sort(ids.begin(), ids.end());
  std::string out(kMethodPrefix);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) out += kEpochSeparator;
    out += ids[i];
  }
  out += kMethodSuffix;
  return out;
}

DestructionCounts CountDestroyed(const DestructionCertificate& certificate) {
  // A sweep's certificate names up to millions of versions, sorted by record: its records are
  // counted by comparing neighbours; hash sets otherwise (and for the patients).
  const auto& list = certificate.records;
  const bool sorted = std::is_sorted(list.begin(), list.end(), RecordLess);
  std::unordered_set<std::string_view> records, patients;
  if (!sorted) records.reserve(list.size());
  uint64_t distinct = 0;
  std::map<std::string, uint64_t> by_category;
  for (size_t i = 0; i < list.size(); ++i) {
    const DestroyedRecordVersion& r = list[i];
    if (sorted) {
      distinct += i == 0 || list[i - 1].record_id != r.record_id ? 1 : 0;
    } else {
      records.insert(r.record_id);
    }
    patients.insert(r.patient_bid);
    ++by_category[r.category];
  }
  return DestructionCounts{sorted ? distinct : records.size(),
                           list.size(),
                           patients.size(),
                           {by_category.begin(), by_category.end()}};
}

StatusOr<std::string> DestructionCertificateText(const DestructionCertificate& certificate,
                                                 std::string_view origin) {
  if (!IsToken(origin)) return Bad("origin must be a key name: non-empty, without spaces");
  // A sweep passes its records sorted already: no copy of a million of them then.
  std::optional<DestructionCertificate> sorted;
  if (!std::is_sorted(certificate.epoch_ids.begin(), certificate.epoch_ids.end()) ||
      !std::is_sorted(certificate.records.begin(), certificate.records.end(), RecordLess)) {
    sorted = certificate;
    std::sort(sorted->epoch_ids.begin(), sorted->epoch_ids.end());
    std::sort(sorted->records.begin(), sorted->records.end(), RecordLess);
  }
  const DestructionCertificate& c = sorted ? *sorted : certificate;
  PV_RETURN_IF_ERROR(Validate(c));
  std::string text = std::string(origin) + "\n" + std::string(kFormatLine) + "\n";
  const auto line = [&](std::string_view key, std::string_view value) {
    text.append(key).append(" ").append(value).append("\n");
  };
  line("id", c.id);
  line("principal", c.principal);
  line("user", c.user);
  line("role", c.role);
  line("started", FormatMicros(c.started_unix_us));
  line("finished", FormatMicros(c.finished_unix_us));
  line("method", MethodStatement(c));
  line("media", c.media);
  text.reserve(text.size() + c.records.size() * 128);
  for (const DestroyedRecordVersion& r : c.records) {
    text.append("record ").append(r.record_id).append(" ").append(std::to_string(r.version));
    text.append(" ").append(r.category).append(" ").append(r.patient_bid).append("\n");
  }
  line("counts", CountsLine(CountDestroyed(c)));
  line("verification", c.verification);
  line("result", c.verification_result);
  line("tool", c.tool_name + " " + c.tool_version);
  line("audit-seq", std::to_string(c.audit_seq_first) + " " + std::to_string(c.audit_seq_last));
  return text;
}

StatusOr<DestructionCertificate> ParseDestructionCertificateText(std::string_view text,
                                                                 std::string* origin) {
  if (text.empty() || text.back() != '\n') return Bad("text must end in a newline");
  std::vector<std::string_view> lines;
  for (std::string_view rest = text; !rest.empty();) {
    const size_t nl = rest.find('\n');
    lines.push_back(rest.substr(0, nl));
    rest.remove_prefix(nl + 1);
  }
  if (lines.size() < 2 || !IsToken(lines[0])) return Bad("line 1 must be the origin");
  if (lines[1] != kFormatLine) return Bad("line 2 must be '" + std::string(kFormatLine) + "'");
  const std::string parsed_origin(lines[0]);
  LineReader in(std::move(lines), 2);

  DestructionCertificate c;
  PV_ASSIGN_OR_RETURN(std::string_view id, in.Take("id"));
  c.id = std::string(id);
  PV_ASSIGN_OR_RETURN(c.principal, TakeText(in, "principal"));
  PV_ASSIGN_OR_RETURN(c.user, TakeText(in, "user"));
  PV_ASSIGN_OR_RETURN(c.role, TakeText(in, "role"));
  PV_ASSIGN_OR_RETURN(c.started_unix_us, TakeTime(in, "started"));
  PV_ASSIGN_OR_RETURN(c.finished_unix_us, TakeTime(in, "finished"));
  PV_ASSIGN_OR_RETURN(std::string_view method, in.Take("method"));
  PV_ASSIGN_OR_RETURN(c.epoch_ids, ParseMethod(method));
  PV_ASSIGN_OR_RETURN(c.media, TakeText(in, "media"));
  while (in.NextHas("record")) {
    PV_ASSIGN_OR_RETURN(std::string_view value, in.Take("record"));
    PV_ASSIGN_OR_RETURN(DestroyedRecordVersion r, ParseRecord(value));
    c.records.push_back(std::move(r));
  }
  PV_ASSIGN_OR_RETURN(std::string_view counts, in.Take("counts"));
  PV_ASSIGN_OR_RETURN(c.verification, TakeText(in, "verification"));
  PV_ASSIGN_OR_RETURN(c.verification_result, TakeText(in, "result"));
  PV_ASSIGN_OR_RETURN(std::string_view tool, in.Take("tool"));
  PV_ASSIGN_OR_RETURN(auto tool_parts, SplitPair(tool, "tool"));
  c.tool_name = std::string(tool_parts.first);
  c.tool_version = std::string(tool_parts.second);
  PV_ASSIGN_OR_RETURN(std::string_view audit, in.Take("audit-seq"));
  PV_ASSIGN_OR_RETURN(auto audit_parts, SplitPair(audit, "audit-seq"));
  if (!ParseDecimal(audit_parts.first, c.audit_seq_first) ||
      !ParseDecimal(audit_parts.second, c.audit_seq_last)) {
    return Bad("audit-seq values must be decimal without sign or leading zeroes");
  }
  if (!in.done()) return Bad("has lines after audit-seq");
  PV_RETURN_IF_ERROR(Validate(c));
  if (counts != CountsLine(CountDestroyed(c))) {
    return Bad("counts line does not match the record lines");
  }
  if (origin != nullptr) *origin = parsed_origin;
  return c;
}

StatusOr<std::string> SignDestructionCertificate(const DestructionCertificate& certificate,
                                                 const crypto::Ed25519Signer& signer,
                                                 std::string_view origin) {
  PV_ASSIGN_OR_RETURN(std::string text, DestructionCertificateText(certificate, origin));
  return crypto::SignNote(text, origin, signer);
}

StatusOr<DestructionCertificate> VerifyDestructionCertificate(
    std::string_view note, const crypto::NoteVerifier& verifier) {
  // A signed note is its text, a blank line, then signature lines (as crypto::VerifyNote splits).
  const size_t split = note.rfind("\n\n");
  if (split == std::string_view::npos) {
    return DataLoss("certificate is malformed: not a signed note (no blank line)");
  }
  std::string origin;
  StatusOr<DestructionCertificate> parsed =
      ParseDestructionCertificateText(note.substr(0, split + 1), &origin);
  if (!parsed.ok()) return DataLoss("certificate is malformed: " + parsed.status().message());
  if (origin != verifier.name) {
    return DataLoss("certificate origin is not the verifier's key name");
  }
  const StatusOr<std::string> text = crypto::VerifyNote(note, verifier);
  if (text.ok()) return parsed;
  switch (text.status().code()) {
    case StatusCode::kNotFound:
      return DataLoss("certificate is not signed by " + verifier.name);
    case StatusCode::kDataLoss:
      return DataLoss("certificate signature does not verify (the text was altered after signing)");
    default:
      return DataLoss("certificate is malformed: " + text.status().message());
  }
}

}  // namespace phivault::storage
