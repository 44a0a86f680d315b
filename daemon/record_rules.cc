#include "daemon/record_rules.h"

#include <chrono>
#include <cstdio>
#include <string_view>
#include <vector>

#include "daemon/api_json.h"

namespace phivault::daemon {
namespace {

bool IsControl(unsigned char c) { return c < 0x20 || c == 0x7f; }

bool IsTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsTokenChar(c)) return false;
  }
  return true;
}

// The code points of valid UTF-8 `s` (checked by the caller).
std::vector<char32_t> CodePoints(std::string_view s) {
  std::vector<char32_t> out;
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    const size_t len = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    char32_t cp = len == 1 ? b : len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
    for (size_t k = 1; k < len && i + k < s.size(); ++k) {
      cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    }
    out.push_back(cp);
    i += len;
  }
  return out;
}

// Characters that make two patient ids look alike while differing: invisible and format
// characters (zero-width, bidirectional controls, BOM), spaces other than U+0020, combining
// marks (a decomposed "é" next to a precomposed one), and the fullwidth/halfwidth forms.
bool IsDeceptive(char32_t cp) {
  return (cp >= 0x80 && cp <= 0x9F) || cp == 0xA0 || cp == 0xAD || (cp >= 0x300 && cp <= 0x36F) ||
         cp == 0x34F || cp == 0x61C || cp == 0x1680 || (cp >= 0x180B && cp <= 0x180E) ||
         (cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F) ||
         (cp >= 0x205F && cp <= 0x206F) || cp == 0x3000 || (cp >= 0xFE00 && cp <= 0xFE0F) ||
         cp == 0xFEFF || (cp >= 0xFF00 && cp <= 0xFFEF) || (cp >= 0xE0000 && cp <= 0xE01EF);
}

enum class Script { kOther, kLatin, kGreek, kCyrillic };
Script LetterScript(char32_t cp) {
  if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= 0xC0 && cp <= 0x24F)) {
    return Script::kLatin;
  }
  if (cp >= 0x370 && cp <= 0x3FF) return Script::kGreek;
  if (cp >= 0x400 && cp <= 0x52F) return Script::kCyrillic;
  return Script::kOther;
}

}  // namespace

Status ValidatePatientId(std::string_view patient_id) {
  if (patient_id.empty()) return InvalidArgument("patient_id must not be empty");
  if (patient_id.size() > 128) return InvalidArgument("patient_id must be at most 128 bytes");
  if (!IsValidUtf8(patient_id)) return InvalidArgument("patient_id must be valid UTF-8");
  for (unsigned char c : patient_id) {
    if (IsControl(c)) return InvalidArgument("patient_id must not contain control characters");
  }
  // Look-alikes: an id that could be mistaken for another patient's is refused, not stored.
  Script seen = Script::kOther;
  for (char32_t cp : CodePoints(patient_id)) {
    if (IsDeceptive(cp)) {
      return InvalidArgument(
          "patient_id must not contain invisible, spacing, combining or fullwidth characters");
    }
    const Script script = LetterScript(cp);
    if (script == Script::kOther) continue;
    if (seen != Script::kOther && script != seen) {
      return InvalidArgument("patient_id must not mix Latin, Greek and Cyrillic letters");
    }
    seen = script;
  }
  return Status::Ok();
}

Status ValidateContentType(std::string_view content_type) {
  if (content_type.empty() || content_type.size() > 127) {
    return InvalidArgument("content_type must be a MIME type of 1 to 127 bytes");
  }
  std::string_view essence = content_type.substr(0, content_type.find(';'));
  while (!essence.empty() && essence.back() == ' ') essence.remove_suffix(1);
  const size_t slash = essence.find('/');
  if (slash == std::string_view::npos || !IsToken(essence.substr(0, slash)) ||
      !IsToken(essence.substr(slash + 1))) {
    return InvalidArgument("content_type must have the form type/subtype");
  }
  for (unsigned char c : content_type) {
    if (IsControl(c)) return InvalidArgument("content_type must not contain control characters");
  }
  return Status::Ok();
}

Status ValidateDate(std::string_view field, std::string_view date) {
  const std::string name(field);
  auto bad = [&] { return InvalidArgument(name + " must be a calendar date YYYY-MM-DD"); };
  if (date.size() != 10 || date[4] != '-' || date[7] != '-') return bad();
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9}) {
    if (date[i] < '0' || date[i] > '9') return bad();
  }
  auto num = [&](size_t pos, size_t len) {
    int v = 0;
    for (size_t i = pos; i < pos + len; ++i) v = v * 10 + (date[i] - '0');
    return v;
  };
  const std::chrono::year_month_day ymd{std::chrono::year{num(0, 4)},
                                        std::chrono::month{static_cast<unsigned>(num(5, 2))},
                                        std::chrono::day{static_cast<unsigned>(num(8, 2))}};
  if (!ymd.ok() || ymd.year() < std::chrono::year{1900}) return bad();
  return Status::Ok();
}

Status ValidateText(std::string_view field, std::string_view text, size_t max_bytes) {
  const std::string name(field);
  if (text.empty()) return InvalidArgument(name + " must not be empty");
  if (text.size() > max_bytes) {
    return InvalidArgument(name + " must be at most " + std::to_string(max_bytes) + " bytes");
  }
  if (!IsValidUtf8(text)) return InvalidArgument(name + " must be valid UTF-8");
  for (unsigned char c : text) {
    if (IsControl(c) && c != '\t' && c != '\n') {
      return InvalidArgument(name + " must not contain control characters");
    }
  }
  return Status::Ok();
}

std::string RetentionEpochId(int64_t created_unix_us, uint32_t retention_years) {
  using namespace std::chrono;
  const sys_days day = floor<days>(sys_time<microseconds>(microseconds(created_unix_us)));
  year_month_day ymd{day};
  ymd = (ymd.year() + years(static_cast<int>(retention_years))) / ymd.month() / ymd.day();
  if (!ymd.ok()) ymd = ymd.year() / ymd.month() / last;
  char buf[32];
  std::snprintf(buf, sizeof buf, "d%04d%02u%02u", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()));
  return buf;
}

}  // namespace phivault::daemon
