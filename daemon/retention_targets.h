// Where a record's DEKs belong: the retention epoch its expiry falls in, or the epoch of a legal
// hold that covers it. Pure functions over the retention table and a patient's facts, plus the
// gate that keeps a retention sweep's erasure from racing changes that move records.
//
// A record's expiry is decided on its latest version (category, encounter date) and the
// patient's facts (date of birth, date of death, last encounter: the latest of the recorded fact
// and every encounter of the patient's records). The longest applicable rule wins
// (policies/retention.h). Two choices keep records longer, never shorter:
//   - a minors' rule without a recorded date of birth is decided as if the patient had been born
//     on this record's encounter date: the latest the patient's majority can be, so the bound is
//     finite (a copy made now dies at a known date) and never too early;
//   - the epoch day is never today or earlier: a record is (re)wrapped into the epoch of
//     max(expiry, tomorrow), so no sweep that is running (or ran today) can be erasing the epoch
//     a record is moving into.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/mutex.h"
#include "daemon/patient_state.h"
#include "policies/retention.h"
#include "storage/records.h"

namespace phivault::daemon {

// The epoch of records kept forever (a permanent rule, or no rule covering the category).
inline constexpr std::string_view kPermanentEpoch = "d99991231";

struct RetentionTarget {
  // "expires", "permanent", "held", "undetermined" (no rule covers the category: kept forever).
  std::string outcome;
  std::optional<std::chrono::year_month_day> expires;  // expires, and held records that would
  std::string reason;                                  // no patient facts in it
  std::vector<std::string> hold_ids;                   // active holds covering the record
  // The epoch the record's DEKs belong under: "h<first hold id>", kPermanentEpoch, or the day
  // max(expires, tomorrow). Destroyed days are skipped by the caller (it knows the keyring).
  std::string epoch_id;

  // True if the record may be destroyed by a sweep that erases epochs up to `until`.
  bool ExpiredBy(std::chrono::year_month_day until) const;
};

// "YYYY-MM-DD" -> the day, nullopt if malformed.
std::optional<std::chrono::year_month_day> ParseDay(std::string_view text);
std::string FormatDay(std::chrono::year_month_day day);
// "d" + YYYYMMDD.
std::string DayEpochId(std::chrono::year_month_day day);
// The day of a "dYYYYMMDD" epoch id; nullopt for hold epochs and malformed ids.
std::optional<std::chrono::year_month_day> EpochDay(std::string_view epoch_id);
// The UTC day of `unix_us`.
std::chrono::year_month_day DayOf(int64_t unix_us);

// The decision for `latest` (the record's latest version) of a patient with `facts` (if any
// are recorded) whose latest known encounter is `patient_last_encounter`, under `holds` (the
// active holds covering this record, as PatientState::IsHeld orders them), on `today`.
RetentionTarget DecideTarget(const policies::RetentionTable& table,
                             const storage::RecordMetadata& latest,
                             const std::optional<PatientFacts>& facts,
                             std::optional<std::chrono::year_month_day> patient_last_encounter,
                             const std::vector<LegalHold>& holds,
                             std::chrono::year_month_day today);

// Changes that can move records' retention (a record, an amendment, patient facts, a hold, a new
// retention table) run inside a shared section; a sweep's erasure runs alone (Close ... Open),
// after rechecking the patients touched while it was rechecking. Shared sections are short and
// never wait for one another; a waiting Close keeps new shared sections out, so it cannot starve.
class RetentionGate {
 public:
  class Section {
   public:
    Section(RetentionGate* gate, uint64_t generation) : gate_(gate), generation_(generation) {}
    Section(Section&& other) noexcept : gate_(other.gate_), generation_(other.generation_) {
      other.gate_ = nullptr;
    }
    Section(const Section&) = delete;
    Section& operator=(const Section&) = delete;
    Section& operator=(Section&&) = delete;
    ~Section();

   private:
    RetentionGate* gate_;
    uint64_t generation_;  // the gate's watch generation when the section began
  };
  // Enters a shared section for a change to `patient_id`'s records (remembered while a sweep
  // watches). Waits while a sweep is erasing.
  Section Enter(std::string_view patient_id);

  // Remembers `patient_id` as touched (while a sweep watches) by a section that learned it late.
  void Touch(std::string_view patient_id);
  // Remembers that every patient may have been touched (a retention table change), while a
  // sweep watches.
  void TouchAll();
  // Sweep side: remember touched patients from now on, then wait until every section that began
  // before has ended, so that what the sweep reads afterwards is either final or remembered.
  void Watch();
  // What was touched so far; `all` is set (and stays set until the next Watch) after TouchAll.
  std::set<std::string> TakeTouched(bool* all = nullptr);
  void Unwatch();
  // Waits until no shared section is running and keeps new ones out until Open().
  void Close();
  void Open();

 private:
  Mutex mu_;
  CondVar cv_;
  int active_ GUARDED_BY(mu_) = 0;
  bool closed_ GUARDED_BY(mu_) = false;
  bool closing_ GUARDED_BY(mu_) = false;
  bool watching_ GUARDED_BY(mu_) = false;
  bool touched_all_ GUARDED_BY(mu_) = false;
  std::set<std::string> touched_ GUARDED_BY(mu_);
  uint64_t generation_ GUARDED_BY(mu_) = 0;  // one more at each Watch
  int before_watch_ GUARDED_BY(mu_) = 0;     // active sections of an earlier generation
};

}  // namespace phivault::daemon
