#include "daemon/api_json.h"

#include <algorithm>
#include <ctime>
#include <initializer_list>
#include <set>
#include <vector>

#include "crypto/hash.h"

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

Status GetContent(const json& obj, uint64_t max_content_bytes, std::string& out) {
  bool has_text = false;
  bool has_b64 = false;
  std::string text;
  std::string b64;
  PV_RETURN_IF_ERROR(GetString(obj, "content", false, text, &has_text));
  PV_RETURN_IF_ERROR(GetString(obj, "content_base64", false, b64, &has_b64));
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
    return ResourceExhausted("content exceeds max_content_bytes (" +
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

StatusOr<json> ParseJsonObject(std::string_view body) {
  size_t bad = 0;
  if (!IsValidUtf8(body, &bad)) {
    return InvalidArgument("the body is not valid UTF-8 (byte " + std::to_string(bad) + ")");
  }
  // Duplicate names are rejected rather than silently keeping the last one: two readers of the
  // same document must not see different values.
  std::vector<std::set<std::string>> open_objects;
  bool duplicate = false;
  bool too_deep = false;
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth > kMaxDepth) too_deep = true;
    switch (event) {
      case json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case json::parse_event_t::key:
        if (!open_objects.empty() &&
            !open_objects.back().insert(parsed.get<std::string>()).second) {
          duplicate = true;
        }
        break;
      default:
        break;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(body.begin(), body.end(), callback);
  } catch (const json::parse_error& e) {
    // nlohmann's own message quotes the input, which may be PHI: report the position only.
    return InvalidArgument("the body is not valid JSON (error at byte " + std::to_string(e.byte) +
                           ")");
  } catch (const json::exception&) {
    return InvalidArgument("the body is not valid JSON");
  }
  if (too_deep) return InvalidArgument("the body is nested too deeply");
  if (duplicate) return InvalidArgument("the body has a duplicate field");
  if (!j.is_object()) return InvalidArgument("the body must be a JSON object");
  return j;
}

StatusOr<CreateRecordRequest> DecodeCreateRecord(std::string_view body,
                                                 uint64_t max_content_bytes) {
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
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
  PV_ASSIGN_OR_RETURN(json j, ParseJsonObject(body));
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
      {"disk",
       {
           {"free_bytes", status.space.free_bytes},
           {"reserve_bytes", status.space.reserve_bytes},
           {"live_data_bytes", status.space.live_data_bytes},
       }},
  };
}

std::string DumpJson(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace phivault::daemon
