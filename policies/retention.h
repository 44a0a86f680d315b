// Retention rules: how long a record must be kept, per record category, computed from a few patient
// facts. A pure module: no I/O, no clock. Nothing in the daemon calls it yet (docs/retention.md).
//
// A retention table is a shipped preset (policies/retention/*.toml, compiled in) plus the rules a
// practice adds in its own file (docs/retention.md). Every rule that applies to a record gives a
// date (or "permanent"); the longest wins. A practice may lengthen a preset's rule or add rules;
// it may never shorten or drop one, and a change from one table to another that would shorten any
// category's retention is found by FindShortenings, so that it can be refused.
//
// Calendar arithmetic is on whole UTC days: N years after 29 February is 28 February when the
// later year has no leap day, as daemon/record_rules.h RetentionEpochId does.
#pragma once

#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace phivault::policies {

// What a rule counts its years from.
enum class RetentionBasis {
  kService,        // the record's own encounter (date of service)
  kLastEncounter,  // the patient's last encounter
  kMajority,       // the patient's reaching the rule's age of majority; applies only to a patient
                   // who was under that age on the record's encounter date
  kDeath,          // the patient's death; applies only when a date of death is recorded
  kPermanent,      // never expires
};
// "service", "last_encounter", "majority", "death", "permanent".
std::string_view RetentionBasisName(RetentionBasis basis);

struct RetentionRule {
  std::string name;                     // unique within a table
  std::vector<std::string> categories;  // record categories, or {"*"} for every category
  RetentionBasis basis = RetentionBasis::kLastEncounter;
  int years = 0;            // 0..200; unused for kPermanent
  int age_of_majority = 0;  // kMajority only: 1..30
  std::string source;       // the legal source, as cited in the file (e.g. "42 CFR 482.24(b)(1)")
  std::string origin;       // "<file>:<line>" where the rule (or its lengthening) was written
  bool AppliesTo(std::string_view category) const;
};

// The facts a decision needs about one patient and one record. Dates are UTC calendar days.
struct RetentionFacts {
  std::optional<std::chrono::year_month_day> date_of_birth;
  std::optional<std::chrono::year_month_day> date_of_death;
  std::chrono::year_month_day last_encounter;    // the patient's latest encounter
  std::chrono::year_month_day record_encounter;  // this record's encounter (date of service)
};

enum class RetentionOutcome {
  kExpires,       // may be destroyed on or after `expires_on`
  kPermanent,     // kept forever
  kUndetermined,  // a fact a rule needs is missing (a minors' rule without a date of birth):
                  // keep the record; never destroy it on this decision
};

struct RetentionDecision {
  RetentionOutcome outcome = RetentionOutcome::kUndetermined;
  std::chrono::year_month_day expires_on{};  // kExpires only
  // The rules that decided: every rule giving the winning date (or permanence, or the rules that
  // could not be evaluated), in table order. Names point into the table: valid while it lives.
  std::vector<std::string_view> rules;
  // In words, naming the expiry date, each deciding rule, its source and basis, and no patient
  // fact: "expires 2036-03-15: rule 'tx-minor' (22 Tex. Admin. Code 165.1(b)): 3 years after the
  // patient reached the age of majority 18 (a minor at this record's encounter)".
  std::string reason;
};

// `years` calendar years after `day`; 29 February maps to 28 February in a non-leap year.
std::chrono::year_month_day AddCalendarYears(std::chrono::year_month_day day, int years);

class RetentionTable {
 public:
  // A practice's retention file (docs/retention.md): `[retention] preset = "<name>"` and optional
  // `[[rule]]` entries. A rule with a preset rule's name lengthens it (same basis and age of
  // majority, more years, or "permanent"; every category it covered); any other name adds a rule.
  // `categories` are the configured record categories: rules may name only these or "*".
  // InvalidArgument "<source>:<line>: ..." for a syntax error, an unknown key, preset, basis or
  // category, a missing or out-of-range field, a duplicate rule name, or a rule shorter than its
  // preset's ("rule 'x' would shorten preset us-tx rule 'x' (...)").
  static StatusOr<RetentionTable> Parse(std::string_view toml_text, std::string_view source_name,
                                        std::span<const std::string> categories);
  // A shipped preset by name, alone (as a practice file naming it and adding nothing).
  // NotFound naming the preset if there is no such preset.
  static StatusOr<RetentionTable> Preset(std::string_view preset_name);

  // How long a record of `category` must be kept, given `facts`. Pure; the longest rule wins. A
  // category no rule applies to is kUndetermined (kept). A date of death before birth or an
  // encounter before birth is not checked here: the facts are validated where they are set.
  RetentionDecision Decide(std::string_view category, const RetentionFacts& facts) const;

  const std::string& preset() const { return preset_; }
  const std::vector<RetentionRule>& rules() const { return rules_; }  // preset's first, in order

 private:
  RetentionTable() = default;
  std::string preset_;
  std::vector<RetentionRule> rules_;
};

// One way a new table would keep some category's records for less time than the old one.
struct RetentionShortening {
  std::string category;  // "*" for a category neither table names
  std::string old_rule;  // the old rule no new rule covers
  std::string reason;    // "rule 'x' (7 years after last_encounter) is not covered by ..."
};
// Every (category, old rule) where no single new rule is at least as long for every possible set
// of facts; empty when the change only keeps or lengthens. The check is sufficient, not exact: a
// change whose old rule is covered only by several new rules together is reported too (and so is
// refused; add a rule that covers it alone).
std::vector<RetentionShortening> FindShortenings(const RetentionTable& before,
                                                 const RetentionTable& after);

// The names of the shipped presets, in name order.
std::vector<std::string_view> RetentionPresetNames();

}  // namespace phivault::policies
