#include "daemon/retention_targets.h"

#include <cstdio>

namespace phivault::daemon {

using std::chrono::days;
using std::chrono::sys_days;
using std::chrono::year_month_day;

bool RetentionTarget::ExpiredBy(year_month_day until) const {
  return outcome == "expires" && expires && sys_days(*expires) <= sys_days(until);
}

std::optional<year_month_day> ParseDay(std::string_view text) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return std::nullopt;
  int y = 0;
  unsigned m = 0;
  unsigned d = 0;
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9}) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
  }
  y = (text[0] - '0') * 1000 + (text[1] - '0') * 100 + (text[2] - '0') * 10 + (text[3] - '0');
  m = static_cast<unsigned>((text[5] - '0') * 10 + (text[6] - '0'));
  d = static_cast<unsigned>((text[8] - '0') * 10 + (text[9] - '0'));
  const year_month_day day{std::chrono::year(y), std::chrono::month(m), std::chrono::day(d)};
  if (!day.ok()) return std::nullopt;
  return day;
}

std::string FormatDay(year_month_day day) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", static_cast<int>(day.year()),
                static_cast<unsigned>(day.month()), static_cast<unsigned>(day.day()));
  return buf;
}

std::string DayEpochId(year_month_day day) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "d%04d%02u%02u", static_cast<int>(day.year()),
                static_cast<unsigned>(day.month()), static_cast<unsigned>(day.day()));
  return buf;
}

std::optional<year_month_day> EpochDay(std::string_view epoch_id) {
  if (epoch_id.size() != 9 || epoch_id[0] != 'd') return std::nullopt;
  const std::string text = std::string(epoch_id.substr(1, 4)) + "-" +
                           std::string(epoch_id.substr(5, 2)) + "-" +
                           std::string(epoch_id.substr(7, 2));
  return ParseDay(text);
}

year_month_day DayOf(int64_t unix_us) {
  using namespace std::chrono;
  return year_month_day{floor<days>(sys_time<microseconds>(microseconds(unix_us)))};
}

RetentionTarget DecideTarget(const policies::RetentionTable& table,
                             const storage::RecordMetadata& latest,
                             const std::optional<PatientFacts>& facts,
                             std::optional<year_month_day> patient_last_encounter,
                             const std::vector<LegalHold>& holds, year_month_day today) {
  policies::RetentionFacts f;
  // The service validates encounter dates on the way in; a record without a readable one is
  // decided on today (its retention counts from no earlier than now).
  f.record_encounter = ParseDay(latest.encounter_date).value_or(today);
  f.last_encounter = f.record_encounter;
  if (patient_last_encounter && sys_days(*patient_last_encounter) > sys_days(f.last_encounter)) {
    f.last_encounter = *patient_last_encounter;
  }
  if (facts) {
    if (facts->date_of_birth) f.date_of_birth = ParseDay(*facts->date_of_birth);
    if (facts->date_of_death) f.date_of_death = ParseDay(*facts->date_of_death);
    if (facts->last_encounter) {
      if (auto last = ParseDay(*facts->last_encounter);
          last && sys_days(*last) > sys_days(f.last_encounter)) {
        f.last_encounter = *last;
      }
    }
  }
  policies::RetentionDecision d = table.Decide(latest.category, f);
  if (d.outcome == policies::RetentionOutcome::kUndetermined && !f.date_of_birth) {
    // The youngest the patient can have been: born on this record's encounter date.
    f.date_of_birth = f.record_encounter;
    d = table.Decide(latest.category, f);
    if (d.outcome == policies::RetentionOutcome::kExpires) {
      d.reason +=
          " (no date of birth is recorded: decided as if the patient was born on this "
          "record's encounter date, the latest the age of majority can fall)";
    }
  }
  RetentionTarget t;
  t.reason = d.reason;
  switch (d.outcome) {
    case policies::RetentionOutcome::kExpires: {
      t.outcome = "expires";
      t.expires = d.expires_on;
      const year_month_day tomorrow{sys_days(today) + days(1)};
      t.epoch_id =
          DayEpochId(sys_days(d.expires_on) > sys_days(tomorrow) ? d.expires_on : tomorrow);
      break;
    }
    case policies::RetentionOutcome::kPermanent:
      t.outcome = "permanent";
      t.epoch_id = std::string(kPermanentEpoch);
      break;
    case policies::RetentionOutcome::kUndetermined:
      t.outcome = "undetermined";
      t.epoch_id = std::string(kPermanentEpoch);
      if (t.reason.empty()) t.reason = "no retention rule covers this category: kept";
      break;
  }
  if (!holds.empty()) {
    for (const auto& h : holds) t.hold_ids.push_back(h.id);
    t.outcome = "held";
    t.epoch_id = "h" + holds.front().id;
  }
  return t;
}

RetentionGate::Section::~Section() {
  if (gate_ == nullptr) return;
  MutexLock lock(gate_->mu_);
  if (generation_ != gate_->generation_ && --gate_->before_watch_ == 0) gate_->cv_.SignalAll();
  if (--gate_->active_ == 0) gate_->cv_.SignalAll();
}

RetentionGate::Section RetentionGate::Enter(std::string_view patient_id) {
  MutexLock lock(mu_);
  while (closed_ || closing_) cv_.Wait(mu_);
  ++active_;
  if (watching_ && !patient_id.empty()) touched_.emplace(patient_id);
  return Section(this, generation_);
}

void RetentionGate::Touch(std::string_view patient_id) {
  MutexLock lock(mu_);
  if (watching_ && !patient_id.empty()) touched_.emplace(patient_id);
}

void RetentionGate::TouchAll() {
  MutexLock lock(mu_);
  if (watching_) touched_all_ = true;
}

void RetentionGate::Watch() {
  MutexLock lock(mu_);
  watching_ = true;
  touched_all_ = false;
  touched_.clear();
  // Sections of the previous generation that are still running did not announce their patient
  // to this watch; the sweep reads nothing until they are done.
  ++generation_;
  before_watch_ = active_;
  while (before_watch_ != 0) cv_.Wait(mu_);
}

std::set<std::string> RetentionGate::TakeTouched(bool* all) {
  MutexLock lock(mu_);
  if (all != nullptr) *all = touched_all_;
  return std::exchange(touched_, {});
}

void RetentionGate::Unwatch() {
  MutexLock lock(mu_);
  watching_ = false;
  touched_all_ = false;
  touched_.clear();
}

void RetentionGate::Close() {
  MutexLock lock(mu_);
  closing_ = true;
  while (active_ != 0) cv_.Wait(mu_);
  closing_ = false;
  closed_ = true;
}

void RetentionGate::Open() {
  MutexLock lock(mu_);
  closed_ = false;
  cv_.SignalAll();
}

}  // namespace phivault::daemon
