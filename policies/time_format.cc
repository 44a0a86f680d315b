#include "policies/time_format.h"

#include <chrono>
#include <cstdio>

namespace phivault::policies {
namespace {

using std::chrono::days;
using std::chrono::sys_days;
using std::chrono::year_month_day;

// Floor division: negative timestamps (before 1970) still land on the right day.
int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

struct Civil {
  year_month_day date;
  int64_t micros_of_day;
};

Civil ToCivil(int64_t unix_us) {
  const int64_t day = FloorDiv(unix_us, kMicrosPerDay);
  return {year_month_day{sys_days{days{day}}}, unix_us - day * kMicrosPerDay};
}

int64_t FromCivil(const year_month_day& date, int64_t micros_of_day) {
  return static_cast<int64_t>(sys_days{date}.time_since_epoch().count()) * kMicrosPerDay +
         micros_of_day;
}

bool Digits(std::string_view s, size_t pos, size_t n, int* out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

}  // namespace

std::string FormatUtcTimestamp(int64_t unix_us) {
  const Civil c = ToCivil(unix_us);
  const int64_t secs = c.micros_of_day / kMicrosPerSecond;
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02u-%02uT%02lld:%02lld:%02lld.%06lldZ",
                static_cast<int>(c.date.year()), static_cast<unsigned>(c.date.month()),
                static_cast<unsigned>(c.date.day()), static_cast<long long>(secs / 3600),
                static_cast<long long>((secs / 60) % 60), static_cast<long long>(secs % 60),
                static_cast<long long>(c.micros_of_day % kMicrosPerSecond));
  return buf;
}

std::string FormatUtcDate(int64_t unix_us) {
  const Civil c = ToCivil(unix_us);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%04d-%02u-%02u", static_cast<int>(c.date.year()),
                static_cast<unsigned>(c.date.month()), static_cast<unsigned>(c.date.day()));
  return buf;
}

StatusOr<int64_t> ParseUtcTimestamp(std::string_view s) {
  int y = 0, mo = 0, d = 0;
  if (!Digits(s, 0, 4, &y) || s.size() < 10 || s[4] != '-' || !Digits(s, 5, 2, &mo) ||
      s[7] != '-' || !Digits(s, 8, 2, &d)) {
    return InvalidArgument("timestamp must start with a YYYY-MM-DD date");
  }
  const year_month_day date{std::chrono::year{y}, std::chrono::month{static_cast<unsigned>(mo)},
                            std::chrono::day{static_cast<unsigned>(d)}};
  if (!date.ok()) return InvalidArgument("timestamp names a date that does not exist");
  if (s.size() == 10) return FromCivil(date, 0);

  int hh = 0, mm = 0, ss = 0;
  if (s[10] != 'T' || !Digits(s, 11, 2, &hh) || s.size() < 19 || s[13] != ':' ||
      !Digits(s, 14, 2, &mm) || s[16] != ':' || !Digits(s, 17, 2, &ss)) {
    return InvalidArgument("timestamp time must be Thh:mm:ss");
  }
  if (hh > 23 || mm > 59 || ss > 59) return InvalidArgument("timestamp time is out of range");
  size_t pos = 19;
  int64_t frac_us = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    const size_t start = pos;
    int64_t scale = 100'000;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      frac_us += (s[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start || pos - start > 9) {
      return InvalidArgument("timestamp fraction must have 1 to 9 digits");
    }
  }
  int64_t offset_us = 0;
  if (pos < s.size() && s[pos] == 'Z') {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int oh = 0, om = 0;
    if (!Digits(s, pos + 1, 2, &oh) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
        !Digits(s, pos + 4, 2, &om) || oh > 23 || om > 59) {
      return InvalidArgument("timestamp offset must be +hh:mm or -hh:mm");
    }
    offset_us = (oh * 3600LL + om * 60LL) * kMicrosPerSecond * (s[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return InvalidArgument("timestamp needs a zone: Z or +hh:mm");
  }
  if (pos != s.size()) return InvalidArgument("timestamp has trailing characters");
  const int64_t tod = (hh * 3600LL + mm * 60LL + ss) * kMicrosPerSecond + frac_us;
  return FromCivil(date, tod) - offset_us;
}

int64_t SubtractCalendarYears(int64_t unix_us, int years) {
  const Civil c = ToCivil(unix_us);
  year_month_day earlier = c.date - std::chrono::years{years};
  if (!earlier.ok()) {
    earlier = year_month_day{std::chrono::year_month_day_last{
        earlier.year(), std::chrono::month_day_last{earlier.month()}}};
  }
  return FromCivil(earlier, c.micros_of_day);
}

}  // namespace phivault::policies
