#include "daemon/api_json.h"

// RapidJSON's 16-byte string scan needs only SSE2, which every x86-64 has.
#if defined(__SSE2__) && !defined(RAPIDJSON_SSE2)
#define RAPIDJSON_SSE2
#endif
#include <rapidjson/reader.h>

#include <sodium.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <initializer_list>
#include <set>
#include <vector>

#include "crypto/hash.h"
#include "daemon/problem.h"
#include "policies/accounting.h"
#include "policies/purpose_of_use.h"
#include "policies/retention.h"
#include "policies/time_format.h"
#include "storage/checkpoint.h"

namespace phivault::daemon {
namespace {

using nlohmann::json;

constexpr int kMaxDepth = 8;

// Member names go into error messages only when they look like field names; anything else
// could be arbitrary client bytes.
std::string Quoted(std::string_view name) {
  const bool plain =
      !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-';
      });
  return plain ? "'" + std::string(name) + "'" : "(name not shown)";
}

Status CheckMembers(const json& obj, std::initializer_list<std::string_view> allowed) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (std::find(allowed.begin(), allowed.end(), it.key()) == allowed.end()) {
      return InvalidArgument("unknown field " + Quoted(it.key()));
    }
  }
  return Status::Ok();
}

// Reads a string member into `out`. Absent: error if required, else `out` is left alone and
// false is returned through `present`.
Status GetString(const json& obj, std::string_view name, bool required, std::string& out,
                 bool* present = nullptr) {
  const auto it = obj.find(name);
  if (present != nullptr) *present = it != obj.end();
  if (it == obj.end()) {
    return required ? InvalidArgument("field '" + std::string(name) + "' is required")
                    : Status::Ok();
  }
  if (!it->is_string())
    return InvalidArgument("field '" + std::string(name) + "' must be a string");
  out = it->get_ref<const std::string&>();
  return Status::Ok();
}

Status GetOptionalString(const json& obj, std::string_view name, std::optional<std::string>& out) {
  std::string value;
  bool present = false;
  PV_RETURN_IF_ERROR(GetString(obj, name, false, value, &present));
  if (present) out = std::move(value);
  return Status::Ok();
}

Status GetTime(const json& obj, std::string_view name, bool required, std::optional<int64_t>& out) {
  std::string text;
  bool present = false;
  PV_RETURN_IF_ERROR(GetString(obj, name, required, text, &present));
  if (!present) return Status::Ok();
  PV_ASSIGN_OR_RETURN(out, ParseRequestTime(name, text));
  return Status::Ok();
}

Status GetBool(const json& obj, std::string_view name, bool& out) {
  const auto it = obj.find(name);
  if (it == obj.end()) return Status::Ok();
  if (!it->is_boolean()) {
    return InvalidArgument("field '" + std::string(name) + "' must be true or false");
  }
  out = it->get<bool>();
  return Status::Ok();
}

Status GetVersion(const json& obj, std::string_view name, std::optional<uint32_t>& out) {
  const auto it = obj.find(name);
  if (it == obj.end()) return Status::Ok();
  if (!it->is_number_unsigned() || it->get<uint64_t>() < 1 || it->get<uint64_t>() > 4294967295ull) {
    return InvalidArgument("field '" + std::string(name) +
                           "' must be an integer from 1 to 4294967295");
  }
  out = static_cast<uint32_t>(it->get<uint64_t>());
  return Status::Ok();
}

Status GetStringArray(const json& obj, std::string_view name, std::vector<std::string>& out) {
  const auto it = obj.find(name);
  if (it == obj.end()) return Status::Ok();
  const bool ok = it->is_array() &&
                  std::all_of(it->begin(), it->end(), [](const json& e) { return e.is_string(); });
  if (!ok) return InvalidArgument("field '" + std::string(name) + "' must be an array of strings");
  for (const auto& e : *it) out.push_back(e.get<std::string>());
  return Status::Ok();
}

template <typename Enum>
struct EnumName {
  std::string_view name;
  Enum value;
};

// An optional enum member; `out` keeps its default when absent.
template <typename Enum, size_t N>
Status GetEnum(const json& obj, std::string_view name, const EnumName<Enum> (&names)[N],
               Enum& out) {
  std::string text;
  bool present = false;
  PV_RETURN_IF_ERROR(GetString(obj, name, false, text, &present));
  if (!present) return Status::Ok();
  std::string allowed;
  for (const auto& n : names) {
    if (n.name == text) {
      out = n.value;
      return Status::Ok();
    }
    allowed += (allowed.empty() ? "" : ", ") + std::string(n.name);
  }
  return InvalidArgument("field '" + std::string(name) + "' must be one of: " + allowed);
}

constexpr EnumName<ReportFormat> kReportFormats[] = {
    {"json", ReportFormat::kJson}, {"csv", ReportFormat::kCsv}, {"html", ReportFormat::kHtml}};
constexpr EnumName<ExportFormat> kExportFormats[] = {{"jsonl", ExportFormat::kJsonLines},
                                                     {"fhir", ExportFormat::kFhir},
                                                     {"csv", ExportFormat::kCsv}};

// The members every disclosure has (they must also be allowed by the caller's CheckMembers).
Status GetDisclosure(const json& obj, DisclosureInfo& out) {
  PV_RETURN_IF_ERROR(GetString(obj, "recipient_name", true, out.recipient_name));
  PV_RETURN_IF_ERROR(GetOptionalString(obj, "recipient_address", out.recipient_address));
  PV_RETURN_IF_ERROR(GetString(obj, "basis", false, out.basis));
  if (obj.contains("basis") && !policies::ParseDisclosureKind(out.basis).ok()) {
    return InvalidArgument("field 'basis' is not a known disclosure basis (e.g. public_health)");
  }
  PV_RETURN_IF_ERROR(GetString(obj, "purpose", false, out.purpose));
  if (obj.contains("purpose") && !policies::LookupPurposeOfUse(out.purpose)) {
    return InvalidArgument("field 'purpose' is not an HL7 PurposeOfUse code (e.g. HLEGAL)");
  }
  PV_RETURN_IF_ERROR(GetString(obj, "description", true, out.description));
  return GetString(obj, "purpose_statement", false, out.purpose_statement);
}

// Moves a string member out of `obj` (the member is left empty): for the large fields.
Status TakeString(json& obj, std::string_view name, std::string& out, bool& present) {
  const auto it = obj.find(name);
  present = it != obj.end();
  if (!present) return Status::Ok();
  if (!it->is_string())
    return InvalidArgument("field '" + std::string(name) + "' must be a string");
  out = std::move(it->get_ref<std::string&>());
  return Status::Ok();
}

Status GetContent(json& obj, uint64_t max_content_bytes, std::string& out) {
  bool has_text = false;
  bool has_b64 = false;
  std::string text;
  std::string b64;
  PV_RETURN_IF_ERROR(TakeString(obj, "content", text, has_text));
  PV_RETURN_IF_ERROR(TakeString(obj, "content_base64", b64, has_b64));
  if (has_text == has_b64) {
    return InvalidArgument("exactly one of the fields 'content' and 'content_base64' is required");
  }
  if (has_b64) {
    auto decoded = crypto::Base64Decode(b64);
    if (!decoded.ok()) {
      return InvalidArgument("field 'content_base64' must be standard base64 with padding");
    }
    out = std::move(decoded).value();
  } else {
    out = std::move(text);
  }
  if (out.size() > max_content_bytes) {
    return ResourceExhausted(std::string(kContentTooLargeMessage) + " (" +
                             std::to_string(max_content_bytes) + " bytes)");
  }
  return Status::Ok();
}

}  // namespace

bool IsValidUtf8(std::string_view s, size_t* error_at) {
  size_t i = 0;
  const size_t n = s.size();
  auto fail = [&](size_t at) {
    if (error_at != nullptr) *error_at = at;
    return false;
  };
  auto cont = [&](size_t at) {
    return at < n && (static_cast<unsigned char>(s[at]) & 0xC0) == 0x80;
  };
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return fail(i);
    }
    for (size_t k = 1; k < len; ++k) {
      if (!cont(i + k)) return fail(i);
      cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    }
    const bool overlong = (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return fail(i);
    i += len;
  }
  return true;
}

namespace {

// Builds the document from nlohmann's SAX events, stopping at the first event that breaks a
// rule: nesting deeper than kMaxDepth, more than kMaxValues values, a duplicate member name, or a
// number that is not finite. The document is therefore never larger than what the rules allow,
// whatever the body holds after the offending byte. Strings are moved into the document, not
// copied.
class StrictDomBuilder {
 public:
  using number_integer_t = json::number_integer_t;
  using number_unsigned_t = json::number_unsigned_t;
  using number_float_t = json::number_float_t;
  using string_t = json::string_t;
  using binary_t = json::binary_t;

  explicit StrictDomBuilder(json& root) : root_(root) {}

  bool null() { return Add(json(nullptr)); }
  bool boolean(bool v) { return Add(json(v)); }
  bool number_integer(number_integer_t v) { return Add(json(v)); }
  bool number_unsigned(number_unsigned_t v) { return Add(json(v)); }
  bool number_float(number_float_t v, const string_t&) {
    if (!std::isfinite(v)) return Fail("the body holds a number out of range");
    return Add(json(v));
  }
  bool string(string_t& v) { return Add(json(std::move(v))); }
  bool binary(binary_t&) { return Fail("the body is not valid JSON"); }
  bool start_object(std::size_t) { return Open(json::object()); }
  bool start_array(std::size_t) { return Open(json::array()); }
  bool end_object() { return Close(); }
  bool end_array() { return Close(); }
  bool key(string_t& k) {
    if (stack_.back()->contains(k)) return Fail("the body has a duplicate field");
    key_ = std::move(k);
    return true;
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception&) {
    // nlohmann's own message quotes the input, which may be PHI: report the position only.
    return Fail("the body is not valid JSON (error at byte " + std::to_string(position) + ")");
  }

  const std::string& error() const { return error_; }

 private:
  static constexpr size_t kMaxValues = 100000;

  bool Fail(std::string message) {
    if (error_.empty()) error_ = std::move(message);
    return false;
  }

  // Places `v` where the parser is; the placed value, or nullptr after Fail.
  json* Place(json&& v) {
    if (++values_ > kMaxValues) {
      Fail("the body holds more than " + std::to_string(kMaxValues) + " values");
      return nullptr;
    }
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    json& parent = *stack_.back();
    if (parent.is_object()) return &(parent[std::move(key_)] = std::move(v));
    parent.push_back(std::move(v));
    return &parent.back();
  }
  bool Add(json&& v) { return Place(std::move(v)) != nullptr; }
  bool Open(json&& v) {
    if (stack_.size() + 1 > kMaxDepth) return Fail("the body is nested too deeply");
    json* placed = Place(std::move(v));
    if (placed == nullptr) return false;
    stack_.push_back(placed);
    return true;
  }
  bool Close() {
    stack_.pop_back();
    return true;
  }

  json& root_;
  std::vector<json*> stack_;
  std::string key_;
  size_t values_ = 0;
  std::string error_;
};

}  // namespace

StatusOr<json> ParseJsonObject(std::string_view body) {
  size_t bad = 0;
  if (!IsValidUtf8(body, &bad)) {
    return InvalidArgument("the body is not valid UTF-8 (byte " + std::to_string(bad) + ")");
  }
  // Duplicate names are rejected rather than silently keeping the last one: two readers of the
  // same document must not see different values.
  json j;
  StrictDomBuilder builder(j);
  bool ok = false;
  try {
    ok = json::sax_parse(body.begin(), body.end(), &builder);
  } catch (const json::exception&) {
    ok = false;
  }
  if (!ok) {
    return InvalidArgument(builder.error().empty() ? "the body is not valid JSON"
                                                   : builder.error());
  }
  if (!j.is_object()) return InvalidArgument("the body must be a JSON object");
  return j;
}

namespace {

// RapidJSON's SAX events for the one shape FastFlatStringObject takes: a single object whose
// members are distinct strings. Any other event stops the parse.
class FlatStringsHandler final
    : public rapidjson::BaseReaderHandler<rapidjson::UTF8<>, FlatStringsHandler> {
 public:
  explicit FlatStringsHandler(json& out) : out_(out) {}
  bool Default() { return false; }  // null, booleans, numbers, arrays
  bool StartObject() { return depth_++ == 0; }
  bool EndObject(rapidjson::SizeType) {
    --depth_;
    return true;
  }
  bool Key(const char* s, rapidjson::SizeType n, bool) {
    key_.assign(s, n);
    return ++members_ <= kMaxMembers && !out_.contains(key_);
  }
  bool String(const char* s, rapidjson::SizeType n, bool) {
    if (depth_ != 1) return false;
    out_[std::move(key_)] = std::string(s, n);
    return true;
  }

 private:
  static constexpr size_t kMaxMembers = 16;
  json& out_;
  int depth_ = 0;
  size_t members_ = 0;
  std::string key_;
};

}  // namespace

// Why a second parser: a create or amend body carries the record's content as one
// JSON string of up to limits.max_body_bytes, and nlohmann's lexer reads it a byte at a time
// (about 8 ms of a 1 MiB create, docs/benchmarks.md, 2026-12-04); RapidJSON (Debian's
// rapidjson-dev) copies unescaped runs 16 bytes at a time, as a stream: no document index, so
// memory stays proportional to the strings. It is only asked about the plainest documents so
// that it can never accept what the strict parser refuses or read a string differently: "\u"
// escapes are where JSON parsers disagree (unpaired surrogates), a NUL would end RapidJSON's
// stream early, and every other rule (depth, duplicates, member count, numbers) is checked
// before anything is taken. tests/daemon/api_json_test.cc and the api_json fuzz target check
// that whatever it takes, the strict path takes too, as the same document.
std::optional<json> FastFlatStringObject(std::string_view body) {
  // A control character other than the three whitespace ones is invalid anywhere in JSON; the
  // strict parser refuses it. RapidJSON 1.1's 16-byte string scan misses 0x1A-0x1F (it compares
  // with 0x19), so such a body must never reach it (found by the differential check of the
  // api_json fuzz target). NUL is among them: it would also end RapidJSON's stream early.
  // Branch-free, so that the compiler can vectorise it: it reads the whole content once.
  unsigned control = 0;
  for (const char c : body) {
    const auto u = static_cast<unsigned char>(c);
    control |= static_cast<unsigned>(u < 0x20) & static_cast<unsigned>(u != '\t') &
               static_cast<unsigned>(u != '\n') & static_cast<unsigned>(u != '\r');
  }
  if (control != 0 || body.find("\\u") != std::string_view::npos || !IsValidUtf8(body)) {
    return std::nullopt;
  }
  // NUL-terminated, with 16 more bytes: RapidJSON's SIMD scan reads aligned 16-byte blocks and
  // stops at the terminator, so it never reads past this buffer. A copy, because in situ parsing
  // writes into it.
  std::string padded;
  padded.reserve(body.size() + 16);
  padded.assign(body);
  padded.append(16, '\0');
  json out = json::object();
  FlatStringsHandler handler(out);
  // In situ: strings are decoded within `padded`, so the reader never uses its own stack (whose
  // first push in RapidJSON 1.1 does pointer arithmetic on null, which UBSan reports).
  rapidjson::Reader reader;
  rapidjson::InsituStringStream stream(padded.data());
  if (reader.Parse<rapidjson::kParseInsituFlag>(stream, handler).IsError()) return std::nullopt;
  return out;
}

namespace {

// The body of a route that carries record content: the fast path, else the strict one.
StatusOr<json> ParseContentBody(std::string_view body) {
  if (std::optional<json> flat = FastFlatStringObject(body)) return std::move(*flat);
  return ParseJsonObject(body);
}

}  // namespace

StatusOr<CreateRecordRequest> DecodeCreateRecord(std::string_view body,
                                                 uint64_t max_content_bytes) {
  PV_ASSIGN_OR_RETURN(json j, ParseContentBody(body));
  PV_RETURN_IF_ERROR(CheckMembers(j, {"patient_id", "category", "content_type", "encounter_date",
                                      "author", "content", "content_base64"}));
  CreateRecordRequest req;
  PV_RETURN_IF_ERROR(GetString(j, "patient_id", true, req.patient_id));
  PV_RETURN_IF_ERROR(GetString(j, "category", true, req.category));
  PV_RETURN_IF_ERROR(GetString(j, "content_type", true, req.content_type));
  PV_RETURN_IF_ERROR(GetString(j, "encounter_date", true, req.encounter_date));
  PV_RETURN_IF_ERROR(GetString(j, "author", true, req.author));
  PV_RETURN_IF_ERROR(GetContent(j, max_content_bytes, req.content));
  return req;
}

StatusOr<AmendRecordRequest> DecodeAmendRecord(std::string_view body, uint64_t max_content_bytes) {
  PV_ASSIGN_OR_RETURN(json j, ParseContentBody(body));
  PV_RETURN_IF_ERROR(CheckMembers(
      j, {"reason", "content", "content_base64", "content_type", "encounter_date", "author"}));
  AmendRecordRequest req;
  PV_RETURN_IF_ERROR(GetString(j, "reason", true, req.reason));
  PV_RETURN_IF_ERROR(GetContent(j, max_content_bytes, req.content));
  for (auto [name, field] :
       {std::pair{"content_type", &req.content_type},
        std::pair{"encounter_date", &req.encounter_date}, std::pair{"author", &req.author}}) {
    std::string value;
    bool present = false;
    PV_RETURN_IF_ERROR(GetString(j, name, false, value, &present));
    if (present) *field = std::move(value);
  }
  return req;
}

StatusOr<std::string> DecodeSearchRecords(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  PV_RETURN_IF_ERROR(CheckMembers(j, {"patient_id"}));
  std::string patient_id;
  PV_RETURN_IF_ERROR(GetString(j, "patient_id", true, patient_id));
  return patient_id;
}

StatusOr<int64_t> ParseRequestTime(std::string_view field, std::string_view text) {
  auto t = policies::ParseUtcTimestamp(text);
  if (!t.ok()) {
    // The parser's reason names the defect, never the text.
    return InvalidArgument("field '" + std::string(field) +
                           "' must be an RFC 3339 time (e.g. 2026-11-29T15:47:09Z) or a date "
                           "(YYYY-MM-DD): " +
                           t.status().message());
  }
  return *t;
}

StatusOr<RecordDisclosureRequest> DecodeRecordDisclosure(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  PV_RETURN_IF_ERROR(CheckMembers(
      j, {"patient_id", "record_ids", "disclosed_at", "recipient_name", "recipient_address",
          "basis", "purpose", "description", "purpose_statement"}));
  RecordDisclosureRequest req;
  PV_RETURN_IF_ERROR(GetString(j, "patient_id", true, req.patient_id));
  PV_RETURN_IF_ERROR(GetStringArray(j, "record_ids", req.record_ids));
  PV_RETURN_IF_ERROR(GetTime(j, "disclosed_at", false, req.disclosed_at_unix_us));
  PV_RETURN_IF_ERROR(GetDisclosure(j, req.disclosure));
  return req;
}

StatusOr<DiscloseRecordBody> DecodeDiscloseRecord(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  PV_RETURN_IF_ERROR(CheckMembers(j, {"version", "recipient_name", "recipient_address", "basis",
                                      "purpose", "description", "purpose_statement"}));
  DiscloseRecordBody req;
  PV_RETURN_IF_ERROR(GetVersion(j, "version", req.version));
  PV_RETURN_IF_ERROR(GetDisclosure(j, req.disclosure));
  return req;
}

StatusOr<SuspensionRequest> DecodeSuspension(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  PV_RETURN_IF_ERROR(CheckMembers(j, {"agency", "start", "end", "oral", "statement"}));
  SuspensionRequest req;
  PV_RETURN_IF_ERROR(GetString(j, "agency", true, req.agency));
  std::optional<int64_t> start;
  PV_RETURN_IF_ERROR(GetTime(j, "start", true, start));
  req.start_unix_us = *start;
  PV_RETURN_IF_ERROR(GetTime(j, "end", false, req.end_unix_us));
  PV_RETURN_IF_ERROR(GetBool(j, "oral", req.oral));
  PV_RETURN_IF_ERROR(GetString(j, "statement", true, req.statement));
  return req;
}

StatusOr<ReportRequest> DecodeAccountingReport(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  PV_RETURN_IF_ERROR(CheckMembers(j, {"patient_id", "from", "format"}));
  ReportRequest req;
  PV_RETURN_IF_ERROR(GetString(j, "patient_id", true, req.patient_id));
  PV_RETURN_IF_ERROR(GetTime(j, "from", false, req.period_start_unix_us));
  PV_RETURN_IF_ERROR(GetEnum(j, "format", kReportFormats, req.format));
  return req;
}

StatusOr<ReportRequest> DecodeAccessReport(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  PV_RETURN_IF_ERROR(CheckMembers(j, {"patient_id", "format"}));
  ReportRequest req;
  PV_RETURN_IF_ERROR(GetString(j, "patient_id", true, req.patient_id));
  PV_RETURN_IF_ERROR(GetEnum(j, "format", kReportFormats, req.format));
  return req;
}

StatusOr<AuditExportRequest> DecodeAuditExport(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  PV_RETURN_IF_ERROR(
      CheckMembers(j, {"format", "from", "to", "patient_id", "user", "action", "outcome"}));
  AuditExportRequest req;
  PV_RETURN_IF_ERROR(GetEnum(j, "format", kExportFormats, req.format));
  PV_RETURN_IF_ERROR(GetTime(j, "from", false, req.from_unix_us));
  PV_RETURN_IF_ERROR(GetTime(j, "to", false, req.to_unix_us));
  if (req.from_unix_us && req.to_unix_us && *req.from_unix_us >= *req.to_unix_us) {
    return InvalidArgument("field 'to' must be later than 'from'");
  }
  PV_RETURN_IF_ERROR(GetOptionalString(j, "patient_id", req.patient_id));
  PV_RETURN_IF_ERROR(GetOptionalString(j, "user", req.user));
  PV_RETURN_IF_ERROR(GetOptionalString(j, "action", req.action));
  PV_RETURN_IF_ERROR(GetOptionalString(j, "outcome", req.outcome));
  return req;
}

std::string_view ExportContentType(ExportFormat format) {
  switch (format) {
    case ExportFormat::kFhir:
      return "application/fhir+json";
    case ExportFormat::kCsv:
      return "text/csv; charset=utf-8";
    case ExportFormat::kJsonLines:
      break;
  }
  return "application/x-ndjson";
}

Status DecodeEmptyObject(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  return CheckMembers(j, {});
}

std::string FormatRfc3339Micros(int64_t unix_us) {
  int64_t secs = unix_us / 1000000;
  int64_t micros = unix_us % 1000000;
  if (micros < 0) {
    micros += 1000000;
    --secs;
  }
  const auto t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(micros));
  return buf;
}

json EncodeMetadata(const storage::RecordMetadata& meta) {
  json j = {
      {"record_id", meta.record_id},
      {"version", meta.version},
      {"patient_id", meta.patient_id},
      {"category", meta.category},
      {"content_type", meta.content_type},
      {"encounter_date", meta.encounter_date},
      {"author", meta.author},
      {"created", FormatRfc3339Micros(meta.created_unix_us)},
      {"content_bytes", meta.content_bytes},
  };
  if (meta.version > 1) j["amendment_reason"] = meta.amendment_reason;
  return j;
}

json EncodeStatus(const VaultStatus& status) {
  return {
      {"version", status.version},
      {"uptime_seconds", status.uptime_seconds},
      {"audit_entries", status.audit_entries},
      {"epochs", status.epochs},
      {"records", status.records},
      {"patients", status.patients},
      {"synced_writes", status.synced_writes},
      {"disk",
       {
           {"free_bytes", status.space.free_bytes},
           {"reserve_bytes", status.space.reserve_bytes},
           {"live_data_bytes", status.space.live_data_bytes},
           {"table_bytes", status.space.table_bytes},
           {"blob_bytes", status.space.blob_bytes},
           {"log_bytes", status.space.log_bytes},
       }},
  };
}

json EncodeInclusionProof(uint64_t seq, const InclusionProofResult& proof) {
  return {
      {"seq", seq},
      {"leaf_index", proof.leaf_index},
      {"tree_size", proof.tree_size},
      {"leaf_hash", proof.leaf_hash_hex},
      {"path", proof.path_hex},
  };
}

json EncodeConsistencyProof(uint64_t from, uint64_t to, const std::vector<std::string>& path_hex) {
  return {{"from", from}, {"to", to}, {"path", path_hex}};
}

std::string DumpJson(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

StatusOr<PolicyCheckRequest> DecodePolicyCheck(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  PV_RETURN_IF_ERROR(CheckMembers(j, {"as_user", "role", "purpose", "action", "record_id",
                                      "version", "category", "author", "consent", "break_glass"}));
  PolicyCheckRequest req;
  PV_RETURN_IF_ERROR(GetString(j, "as_user", true, req.as_user));
  PV_RETURN_IF_ERROR(GetString(j, "role", true, req.role));
  PV_RETURN_IF_ERROR(GetString(j, "purpose", true, req.purpose));
  PV_RETURN_IF_ERROR(GetString(j, "action", true, req.action));
  PV_RETURN_IF_ERROR(GetOptionalString(j, "record_id", req.record_id));
  PV_RETURN_IF_ERROR(GetVersion(j, "version", req.version));
  PV_RETURN_IF_ERROR(GetOptionalString(j, "category", req.category));
  PV_RETURN_IF_ERROR(GetBool(j, "author", req.author));
  PV_RETURN_IF_ERROR(GetBool(j, "consent", req.consent));
  PV_RETURN_IF_ERROR(GetBool(j, "break_glass", req.break_glass));
  if (req.author && !req.category) {
    return InvalidArgument(
        "field 'author' needs field 'category' (a stored record's author is known)");
  }
  if (req.record_id && req.category) {
    return InvalidArgument("give either field 'record_id' or field 'category', not both");
  }
  return req;
}

StatusOr<bool> DecodeReviewQuery(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  PV_RETURN_IF_ERROR(CheckMembers(j, {"status"}));
  std::string status = "pending";
  PV_RETURN_IF_ERROR(GetString(j, "status", false, status));
  if (status != "pending" && status != "all") {
    return InvalidArgument("field 'status' must be one of: pending, all");
  }
  return status == "pending";
}

StatusOr<std::string> DecodeSignOff(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  PV_RETURN_IF_ERROR(CheckMembers(j, {"note"}));
  std::string note;
  PV_RETURN_IF_ERROR(GetString(j, "note", true, note));
  return note;
}

StatusOr<Restriction> DecodeAddRestriction(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  PV_RETURN_IF_ERROR(
      CheckMembers(j, {"patient_id", "purposes", "record_ids", "categories", "recipient", "note"}));
  Restriction r;
  PV_RETURN_IF_ERROR(GetString(j, "patient_id", true, r.patient_id));
  if (!j.contains("purposes")) return InvalidArgument("field 'purposes' is required");
  PV_RETURN_IF_ERROR(GetStringArray(j, "purposes", r.purposes));
  PV_RETURN_IF_ERROR(GetStringArray(j, "record_ids", r.record_ids));
  PV_RETURN_IF_ERROR(GetStringArray(j, "categories", r.categories));
  PV_RETURN_IF_ERROR(GetString(j, "recipient", false, r.recipient));
  PV_RETURN_IF_ERROR(GetString(j, "note", false, r.note));
  return r;
}

StatusOr<RestrictionSearch> DecodeRestrictionSearch(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  PV_RETURN_IF_ERROR(CheckMembers(j, {"patient_id", "include_ended"}));
  RestrictionSearch r;
  PV_RETURN_IF_ERROR(GetString(j, "patient_id", true, r.patient_id));
  PV_RETURN_IF_ERROR(GetBool(j, "include_ended", r.include_ended));
  return r;
}

StatusOr<EndRestrictionBody> DecodeEndRestriction(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  PV_RETURN_IF_ERROR(CheckMembers(j, {"patient_id", "reason"}));
  EndRestrictionBody r;
  PV_RETURN_IF_ERROR(GetString(j, "patient_id", true, r.patient_id));
  PV_RETURN_IF_ERROR(GetString(j, "reason", true, r.reason));
  return r;
}

StatusOr<PatientExportRequest> DecodePatientExport(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  PV_RETURN_IF_ERROR(CheckMembers(j, {"patient_id", "request_id"}));
  PatientExportRequest r;
  PV_RETURN_IF_ERROR(GetString(j, "patient_id", true, r.patient_id));
  PV_RETURN_IF_ERROR(GetString(j, "request_id", false, r.request_id));
  return r;
}

StatusOr<OpenRequestBody> DecodeOpenRequest(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  PV_RETURN_IF_ERROR(CheckMembers(j, {"patient_id", "kind", "received", "note"}));
  OpenRequestBody r;
  PV_RETURN_IF_ERROR(GetString(j, "patient_id", true, r.patient_id));
  PV_RETURN_IF_ERROR(GetString(j, "kind", true, r.kind));
  PV_RETURN_IF_ERROR(GetOptionalString(j, "received", r.received));
  PV_RETURN_IF_ERROR(GetString(j, "note", false, r.note));
  return r;
}

StatusOr<std::string> DecodeExtendRequest(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  PV_RETURN_IF_ERROR(CheckMembers(j, {"reason"}));
  std::string reason;
  PV_RETURN_IF_ERROR(GetString(j, "reason", true, reason));
  return reason;
}

StatusOr<CloseRequestBody> DecodeCloseRequest(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  PV_RETURN_IF_ERROR(CheckMembers(j, {"outcome", "delivered", "note"}));
  CloseRequestBody r;
  PV_RETURN_IF_ERROR(GetString(j, "outcome", true, r.outcome));
  PV_RETURN_IF_ERROR(GetString(j, "delivered", true, r.delivered));
  PV_RETURN_IF_ERROR(GetString(j, "note", false, r.note));
  return r;
}

StatusOr<RequestSearch> DecodeRequestSearch(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  PV_RETURN_IF_ERROR(CheckMembers(j, {"patient_id", "overdue", "include_closed"}));
  RequestSearch r;
  PV_RETURN_IF_ERROR(GetOptionalString(j, "patient_id", r.patient_id));
  PV_RETURN_IF_ERROR(GetBool(j, "overdue", r.overdue));
  PV_RETURN_IF_ERROR(GetBool(j, "include_closed", r.include_closed));
  return r;
}

StatusOr<ConfidentialContact> DecodeSetContact(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  PV_RETURN_IF_ERROR(CheckMembers(j, {"patient_id", "address", "channel", "note"}));
  ConfidentialContact c;
  PV_RETURN_IF_ERROR(GetString(j, "patient_id", true, c.patient_id));
  PV_RETURN_IF_ERROR(GetString(j, "address", true, c.address));
  std::string channel;
  PV_RETURN_IF_ERROR(GetString(j, "channel", true, channel));
  PV_ASSIGN_OR_RETURN(c.channel, ParseContactChannel(channel));
  PV_RETURN_IF_ERROR(GetString(j, "note", false, c.note));
  return c;
}

namespace {
json OptionalTime(const std::optional<int64_t>& t) {
  return t ? json(FormatRfc3339Micros(*t)) : json(nullptr);
}
json OptionalText(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }
}  // namespace

json EncodePolicyInfo(const PolicyInfo& info, bool with_text) {
  json j = {{"name", info.name},
            {"sha256", info.sha256_hex},
            {"in_force_from", FormatRfc3339Micros(info.in_force_from_unix_us)},
            {"in_force_until", OptionalTime(info.in_force_until_unix_us)},
            {"audit_seq", info.audit_seq}};
  if (with_text) j["text"] = info.text;
  return j;
}

json EncodePolicyCheck(const PolicyCheckResult& r) {
  return {{"allowed", r.allowed},
          {"rule", r.rule},
          {"explanation", r.explanation},
          {"category", r.category},
          {"is_author", r.is_author}};
}

json EncodeWindow(const BreakGlassWindow& w) {
  return {{"id", w.id},
          {"user", w.user},
          {"role", w.role},
          {"application", w.application},
          {"patient_id", w.patient_id},
          {"reason", w.reason},
          {"opened", FormatRfc3339Micros(w.opened_us)},
          {"expires", FormatRfc3339Micros(w.expires_us)},
          {"closed", OptionalTime(w.closed_us)},
          {"accesses", w.accesses},
          {"status", std::string(WindowStatusName(StatusOf(w)))},
          {"signed_off_by", OptionalText(w.signed_off_by)},
          {"signed_off_at", OptionalTime(w.signed_off_at_us)},
          {"note", OptionalText(w.note)}};
}

json EncodeRestriction(const Restriction& r) {
  return {{"id", r.id},
          {"purposes", r.purposes},
          {"record_ids", r.record_ids},
          {"categories", r.categories},
          {"recipient", r.recipient},
          {"note", r.note},
          {"created", FormatRfc3339Micros(r.created_us)},
          {"created_by", r.created_by},
          {"ended", OptionalTime(r.ended_us)},
          {"ended_by", OptionalText(r.ended_by)},
          {"end_reason", OptionalText(r.end_reason)}};
}

json EncodePatientRequest(const PatientRequest& r, std::string_view today) {
  return {
      {"id", r.id},
      {"patient_id", r.patient_id},
      {"kind", std::string(RequestKindName(r.kind))},
      {"received", r.received},
      {"due", r.due},
      {"extended", r.extended},
      {"extension_reason", OptionalText(r.extension_reason)},
      {"note", OptionalText(r.note)},
      {"status", r.closed ? "closed" : "open"},
      {"outcome", r.outcome ? json(std::string(RequestOutcomeName(*r.outcome))) : json(nullptr)},
      {"closed", OptionalTime(r.closed_us)},
      {"delivered", OptionalText(r.delivered)},
      {"overdue", IsOverdue(r, today)}};
}

json EncodeContact(const ConfidentialContact& c) {
  return {{"patient_id", c.patient_id},
          {"address", c.address},
          {"channel", std::string(ContactChannelName(c.channel))},
          {"note", OptionalText(c.note)},
          {"updated", FormatRfc3339Micros(c.updated_us)}};
}

namespace {

// A fact date of PUT /v1/patients/facts: absent keeps `out` unset, null or a string sets it
// ("" clears).
Status GetFactDate(const json& obj, std::string_view name, std::optional<std::string>& out) {
  const auto it = obj.find(name);
  if (it == obj.end()) return Status::Ok();
  if (it->is_null()) {
    out = std::string();
    return Status::Ok();
  }
  if (!it->is_string()) {
    return InvalidArgument("field '" + std::string(name) +
                           "' must be a date (YYYY-MM-DD), or null or \"\" to clear it");
  }
  out = it->get<std::string>();
  return Status::Ok();
}

json DateOrNull(const std::optional<std::string>& date) {
  return date && !date->empty() ? json(*date) : json(nullptr);
}

}  // namespace

StatusOr<PatientFactsUpdate> DecodePatientFacts(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  PV_RETURN_IF_ERROR(
      CheckMembers(j, {"patient_id", "date_of_birth", "date_of_death", "last_encounter"}));
  PatientFactsUpdate u;
  PV_RETURN_IF_ERROR(GetString(j, "patient_id", true, u.patient_id));
  PV_RETURN_IF_ERROR(GetFactDate(j, "date_of_birth", u.date_of_birth));
  PV_RETURN_IF_ERROR(GetFactDate(j, "date_of_death", u.date_of_death));
  PV_RETURN_IF_ERROR(GetFactDate(j, "last_encounter", u.last_encounter));
  return u;
}

StatusOr<PlaceHoldRequest> DecodePlaceHold(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  PV_RETURN_IF_ERROR(CheckMembers(j, {"patient_id", "matter", "reason", "record_ids"}));
  PlaceHoldRequest r;
  PV_RETURN_IF_ERROR(GetString(j, "patient_id", true, r.patient_id));
  PV_RETURN_IF_ERROR(GetString(j, "matter", true, r.matter));
  PV_RETURN_IF_ERROR(GetString(j, "reason", true, r.reason));
  PV_RETURN_IF_ERROR(GetStringArray(j, "record_ids", r.record_ids));
  return r;
}

StatusOr<std::string> DecodeReleaseHold(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  PV_RETURN_IF_ERROR(CheckMembers(j, {"reason"}));
  std::string reason;
  PV_RETURN_IF_ERROR(GetString(j, "reason", true, reason));
  return reason;
}

StatusOr<HoldSearch> DecodeHoldSearch(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  PV_RETURN_IF_ERROR(CheckMembers(j, {"patient_id", "include_released"}));
  HoldSearch r;
  PV_RETURN_IF_ERROR(GetOptionalString(j, "patient_id", r.patient_id));
  PV_RETURN_IF_ERROR(GetBool(j, "include_released", r.include_released));
  return r;
}

StatusOr<KeyRotateRequest> DecodeKeyRotate(std::string body) {
  const crypto::InsecureSecretKeyAccess access = crypto::InsecureSecretKeyAccess::Get();
  auto wipe = [](std::string& s) { sodium_memzero(s.data(), s.size()); };
  auto parsed = ParseJsonObject(body);
  wipe(body);
  PV_RETURN_IF_ERROR(parsed.status());
  json& j = *parsed;
  PV_RETURN_IF_ERROR(CheckMembers(j, {"new_passphrase"}));
  KeyRotateRequest r;
  std::optional<std::string> passphrase;
  Status got = GetOptionalString(j, "new_passphrase", passphrase);
  if (passphrase) {
    r.new_passphrase = crypto::SecretBytes::CopyFrom(*passphrase, access);
    wipe(*passphrase);
  }
  if (j.contains("new_passphrase") && j["new_passphrase"].is_string()) {
    wipe(j["new_passphrase"].get_ref<std::string&>());
  }
  PV_RETURN_IF_ERROR(got);
  return r;
}

json EncodeKeyRotateResult(const KeyRotateResult& result) {
  return json{{"source", result.source},
              {"keyring_generation", result.keyring_generation},
              {"keyring_copies", result.keyring_copies},
              {"pending_key_path",
               result.pending_key_path.empty() ? json(nullptr) : json(result.pending_key_path)},
              {"audit_seq", result.audit_seq}};
}

StatusOr<SweepRequest> DecodeSweep(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  PV_RETURN_IF_ERROR(CheckMembers(j, {"dry_run", "until"}));
  if (!j.contains("dry_run")) {
    return InvalidArgument(
        "field 'dry_run' is required: true to list what would be destroyed, false to destroy it");
  }
  SweepRequest r;
  PV_RETURN_IF_ERROR(GetBool(j, "dry_run", r.dry_run));
  PV_RETURN_IF_ERROR(GetOptionalString(j, "until", r.until));
  return r;
}

json EncodePatientFacts(const PatientFacts& f) {
  return {{"patient_id", f.patient_id},
          {"date_of_birth", DateOrNull(f.date_of_birth)},
          {"date_of_death", DateOrNull(f.date_of_death)},
          {"last_encounter", DateOrNull(f.last_encounter)},
          {"updated_at", FormatRfc3339Micros(f.updated_us)},
          {"updated_by", f.updated_by}};
}

json EncodeRecordRetention(const RecordRetention& r) {
  return {{"record_id", r.record_id}, {"versions", r.versions},
          {"category", r.category},   {"epoch_id", r.epoch_id},
          {"outcome", r.outcome},     {"expires_on", OptionalText(r.expires_on)},
          {"reason", r.reason},       {"hold_ids", r.hold_ids}};
}

json EncodeRetentionTable(const RetentionTableInfo& table) {
  json rules = json::array();
  for (const auto& rule : table.rules) {
    json j = {{"name", rule.name},
              {"categories", rule.categories},
              {"basis", std::string(policies::RetentionBasisName(rule.basis))},
              {"years", rule.years},
              {"source", rule.source},
              {"origin", rule.origin}};
    if (rule.basis == policies::RetentionBasis::kMajority) {
      j["age_of_majority"] = rule.age_of_majority;
    }
    rules.push_back(std::move(j));
  }
  return {{"preset", table.preset},
          {"source", table.source},
          {"sha256", table.sha256_hex},
          {"rules", std::move(rules)}};
}

json EncodeHold(const LegalHold& h) {
  return {{"id", h.id},
          {"matter", h.matter},
          {"reason", h.reason},
          {"patient_id", h.patient_id},
          {"scope", std::string(HoldScopeName(h.scope))},
          {"record_ids", h.record_ids},
          {"placed_by", h.placed_by},
          {"placed_at", FormatRfc3339Micros(h.placed_us)},
          {"released_at", OptionalTime(h.released_us)},
          {"released_by", h.released_by},
          {"release_reason", h.release_reason},
          {"active", h.active()}};
}

json EncodeSweepProgress(const SweepProgress& p) {
  return {{"phase", p.phase}, {"done", p.done}, {"total", p.total}};
}

json EncodeSweepResult(const SweepResult& r) {
  json destroyed = json::array();
  for (const auto& c : r.destroyed) {
    destroyed.push_back({{"record_id", c.record_id},
                         {"versions", c.versions},
                         {"category", c.category},
                         {"patient_bid", c.patient_bid},
                         {"epoch_id", c.epoch_id},
                         {"expires_on", c.expires_on},
                         {"reason", c.reason}});
  }
  return {{"sweep_id", r.sweep_id},
          {"dry_run", r.dry_run},
          {"until", r.until},
          {"destroyed", std::move(destroyed)},
          {"destroyed_records", r.destroyed_records},
          {"destroyed_versions", r.destroyed_versions},
          {"rewrapped_records", r.rewrapped_records},
          {"held_records", r.held_records},
          {"epochs_destroyed", r.epochs_destroyed},
          {"resumed", r.resumed},
          {"certificate_id", OptionalText(r.certificate_id)},
          {"verification_result", r.verification_result},
          {"audit_seq", r.audit_seq}};
}

json EncodeCertificateSummary(const CertificateSummary& c) {
  return {{"id", c.id},
          {"started_at", FormatRfc3339Micros(c.started_unix_us)},
          {"finished_at", FormatRfc3339Micros(c.finished_unix_us)},
          {"records", c.records},
          {"versions", c.versions},
          {"patients", c.patients},
          {"epoch_ids", c.epoch_ids}};
}

StatusOr<BackupRequest> DecodeBackupRequest(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  PV_RETURN_IF_ERROR(CheckMembers(j, {"dir"}));
  BackupRequest r;
  PV_RETURN_IF_ERROR(GetString(j, "dir", /*required=*/true, r.dir));
  if (r.dir.empty() || r.dir.front() != '/') {
    return InvalidArgument("field 'dir' must be an absolute path");
  }
  return r;
}

StatusOr<ArchiveRequest> DecodeArchiveRequest(std::string_view body) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
  PV_RETURN_IF_ERROR(CheckMembers(j, {"dry_run"}));
  if (!j.contains("dry_run")) {
    return InvalidArgument(
        "field 'dry_run' is required: true to count what is due for the archive, false to move "
        "it");
  }
  ArchiveRequest r;
  PV_RETURN_IF_ERROR(GetBool(j, "dry_run", r.dry_run));
  return r;
}

json EncodeArchiveResult(const ArchiveResult& r) {
  return {{"dry_run", r.dry_run},
          {"cutoff", r.cutoff},
          {"audit_entries_read", r.audit_entries_read},
          {"examined_records", r.examined_records},
          {"archived_records", r.archived_records},
          {"archived_versions", r.archived_versions},
          {"already_archived", r.already_archived},
          {"compacted", r.compacted},
          {"compaction_error", OptionalText(r.compaction_error)},
          {"audit_seq", r.audit_seq}};
}

json EncodeBackupManifest(const storage::BackupManifest& m, const std::string& dir) {
  std::string path = dir;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return {{"id", m.id},
          {"path", path + "/" + m.id},
          {"vault_id", m.vault_id},
          {"created", storage::Rfc3339Utc(m.created_unix)},
          {"keyring_generation", m.keyring_generation},
          {"audit_size", m.audit_size},
          {"audit_root", crypto::Base64Encode(crypto::AsView(m.audit_root))},
          {"verifier_key", m.verifier_key},
          {"files", m.files.size()},
          {"bytes", m.TotalBytes()},
          {"shared_bytes", m.shared_bytes}};
}

}  // namespace phivault::daemon
