#include "daemon/record_rules.h"

#include <chrono>
#include <cstdio>

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

}  // namespace

Status ValidatePatientId(std::string_view patient_id) {
  if (patient_id.empty()) return InvalidArgument("patient_id must not be empty");
  if (patient_id.size() > 128) return InvalidArgument("patient_id must be at most 128 bytes");
  if (!IsValidUtf8(patient_id)) return InvalidArgument("patient_id must be valid UTF-8");
  for (unsigned char c : patient_id) {
    if (IsControl(c)) return InvalidArgument("patient_id must not contain control characters");
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
