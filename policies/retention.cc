#include "policies/retention.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <map>
#include <set>
#include <utility>

#include <toml++/toml.h>

#include "policies/retention_presets.h"

namespace phivault::policies {
namespace {

using std::chrono::year_month_day;

constexpr int kMaxYears = 200;
constexpr int kMinMajority = 1;
constexpr int kMaxMajority = 30;
constexpr int kMaxIncludeDepth = 4;

constexpr std::array<std::pair<std::string_view, RetentionBasis>, 5> kBases{{
    {"service", RetentionBasis::kService},
    {"last_encounter", RetentionBasis::kLastEncounter},
    {"majority", RetentionBasis::kMajority},
    {"death", RetentionBasis::kDeath},
    {"permanent", RetentionBasis::kPermanent},
}};

std::optional<RetentionBasis> BasisFromName(std::string_view name) {
  for (const auto& [n, b] : kBases) {
    if (n == name) return b;
  }
  return std::nullopt;
}

std::string Quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

// "7 years after last_encounter", "3 years after majority at 18", "permanent".
std::string Describe(const RetentionRule& r) {
  if (r.basis == RetentionBasis::kPermanent) return "permanent";
  std::string out = std::to_string(r.years) + (r.years == 1 ? " year" : " years") + " after " +
                    std::string(RetentionBasisName(r.basis));
  if (r.basis == RetentionBasis::kMajority) out += " at " + std::to_string(r.age_of_majority);
  return out;
}

std::string Cited(const RetentionRule& r) {
  return "rule " + Quoted(r.name) + " (" + (r.source.empty() ? "practice policy" : r.source) + ")";
}

// True if `n` keeps a record at least as long as `o` for every set of facts, in a category both
// apply to. A record's encounter is never after the patient's last encounter, so a count from
// the last encounter covers the same count from the date of service.
bool Covers(const RetentionRule& n, const RetentionRule& o) {
  if (n.basis == RetentionBasis::kPermanent) return true;
  if (o.basis == RetentionBasis::kPermanent) return false;
  switch (o.basis) {
    case RetentionBasis::kService:
      return (n.basis == RetentionBasis::kService || n.basis == RetentionBasis::kLastEncounter) &&
             n.years >= o.years;
    case RetentionBasis::kLastEncounter:
    case RetentionBasis::kDeath:
      return n.basis == o.basis && n.years >= o.years;
    case RetentionBasis::kMajority:
      // A higher age of majority applies to every patient the lower one does.
      return n.basis == RetentionBasis::kMajority && n.age_of_majority >= o.age_of_majority &&
             n.age_of_majority + n.years >= o.age_of_majority + o.years;
    case RetentionBasis::kPermanent:
      break;
  }
  return false;
}

// Reads and checks one file's TOML tree, naming the source and line in every error.
class Reader {
 public:
  explicit Reader(std::string_view source) : source_(source) {}

  Status At(const toml::node& n, std::string_view what) const {
    return InvalidArgument(Origin(n) + ": " + std::string(what));
  }
  std::string Origin(const toml::node& n) const {
    return source_ + ":" + std::to_string(n.source().begin.line);
  }

  Status CheckKeys(const toml::table& t, std::string_view where,
                   std::initializer_list<std::string_view> allowed) const {
    for (auto&& [k, v] : t) {
      if (std::find(allowed.begin(), allowed.end(), k.str()) == allowed.end()) {
        return At(v, std::string(where) + "unknown key '" + std::string(k.str()) + "'");
      }
    }
    return Status::Ok();
  }

  // `*present` says whether the key was there; a missing required key is an error.
  Status String(const toml::table& t, std::string_view where, std::string_view key,
                std::string& out, bool required, bool* present = nullptr) const {
    const toml::node* n = t.get(key);
    if (present != nullptr) *present = n != nullptr;
    if (n == nullptr) {
      return required ? At(t, std::string(where) + std::string(key) + " is required")
                      : Status::Ok();
    }
    const auto* s = n->as_string();
    if (s == nullptr || s->get().empty()) {
      return At(*n, std::string(where) + std::string(key) + " must be a non-empty string");
    }
    out = s->get();
    return Status::Ok();
  }

  Status Int(const toml::table& t, std::string_view where, std::string_view key, int lo, int hi,
             int& out, bool* present) const {
    const toml::node* n = t.get(key);
    *present = n != nullptr;
    if (n == nullptr) return Status::Ok();
    const auto* i = n->as_integer();
    if (i == nullptr || i->get() < lo || i->get() > hi) {
      return At(*n, std::string(where) + std::string(key) + " must be an integer from " +
                        std::to_string(lo) + " to " + std::to_string(hi));
    }
    out = static_cast<int>(i->get());
    return Status::Ok();
  }

  Status StringList(const toml::table& t, std::string_view where, std::string_view key,
                    std::vector<std::string>& out, bool* present) const {
    const toml::node* n = t.get(key);
    *present = n != nullptr;
    if (n == nullptr) return Status::Ok();
    const std::string name = std::string(where) + std::string(key);
    const auto* a = n->as_array();
    if (a == nullptr || a->empty()) return At(*n, name + " must be a non-empty array of strings");
    std::set<std::string> seen;
    for (const toml::node& e : *a) {
      const auto* s = e.as_string();
      if (s == nullptr) return At(e, name + " must be a non-empty array of strings");
      if (!seen.insert(s->get()).second) return At(e, name + " lists '" + s->get() + "' twice");
      out.push_back(s->get());
    }
    return Status::Ok();
  }

  const std::string& source() const { return source_; }

 private:
  std::string source_;
};

StatusOr<toml::table> ParseToml(std::string_view text, std::string_view source) {
  try {
    return toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    return InvalidArgument(std::string(source) + ":" + std::to_string(e.source().begin.line) + ":" +
                           std::to_string(e.source().begin.column) + ": " +
                           std::string(e.description()));
  }
}

// A [[rule]] entry as written: which fields were given, so a lengthening may leave some out.
struct WrittenRule {
  RetentionRule rule;
  bool has_categories = false, has_after = false, has_years = false, has_majority = false;
  const toml::table* table = nullptr;
};

// `known` is empty for a preset (presets name "*" or any category) and the configured categories
// for a practice file.
Status ReadRules(const Reader& r, const toml::table& root, bool is_preset,
                 std::span<const std::string> known, std::vector<WrittenRule>& out) {
  const toml::node* n = root.get("rule");
  if (n == nullptr) return Status::Ok();
  const toml::array* a = n->as_array();
  if (a == nullptr || !a->is_array_of_tables()) return r.At(*n, "rule must be an array of tables");
  for (const toml::node& e : *a) {
    const toml::table& t = *e.as_table();
    WrittenRule w;
    w.table = &t;
    RetentionRule& rule = w.rule;
    rule.origin = r.Origin(t);
    PV_RETURN_IF_ERROR(r.String(t, "rule: ", "name", rule.name, true));
    const std::string where = "rule " + Quoted(rule.name) + ": ";
    PV_RETURN_IF_ERROR(r.CheckKeys(
        t, where, {"name", "categories", "after", "years", "age_of_majority", "source", "note"}));
    PV_RETURN_IF_ERROR(r.StringList(t, where, "categories", rule.categories, &w.has_categories));
    for (size_t i = 0; i < rule.categories.size(); ++i) {
      const std::string& c = rule.categories[i];
      if (c == "*" || is_preset) continue;
      if (std::find(known.begin(), known.end(), c) == known.end()) {
        return r.At(*t.get("categories")->as_array()->get(i),
                    where + "unknown category " + Quoted(c) + " (not a configured category)");
      }
    }
    std::string after;
    PV_RETURN_IF_ERROR(r.String(t, where, "after", after, false, &w.has_after));
    if (w.has_after) {
      std::optional<RetentionBasis> b = BasisFromName(after);
      if (!b) {
        return r.At(*t.get("after"), where + "unknown basis " + Quoted(after) +
                                         " (service, last_encounter, majority, death, permanent)");
      }
      rule.basis = *b;
    }
    PV_RETURN_IF_ERROR(r.Int(t, where, "years", 0, kMaxYears, rule.years, &w.has_years));
    PV_RETURN_IF_ERROR(r.Int(t, where, "age_of_majority", kMinMajority, kMaxMajority,
                             rule.age_of_majority, &w.has_majority));
    bool has_source = false;
    PV_RETURN_IF_ERROR(r.String(t, where, "source", rule.source, is_preset, &has_source));
    std::string note;
    PV_RETURN_IF_ERROR(r.String(t, where, "note", note, false));
    out.push_back(std::move(w));
  }
  return Status::Ok();
}

// The fields a complete rule needs, given its basis.
Status CheckComplete(const Reader& r, const WrittenRule& w) {
  const std::string where = "rule " + Quoted(w.rule.name) + ": ";
  const toml::table& t = *w.table;
  if (!w.has_categories) return r.At(t, where + "categories is required");
  if (!w.has_after) return r.At(t, where + "after is required");
  const bool permanent = w.rule.basis == RetentionBasis::kPermanent;
  if (permanent && w.has_years) {
    return r.At(*t.get("years"), where + "years does not apply to after = \"permanent\"");
  }
  if (!permanent && !w.has_years) return r.At(t, where + "years is required");
  const bool majority = w.rule.basis == RetentionBasis::kMajority;
  if (majority && !w.has_majority) {
    return r.At(t, where + "age_of_majority is required with after = \"majority\"");
  }
  if (!majority && w.has_majority) {
    return r.At(*t.get("age_of_majority"),
                where + "age_of_majority applies only to after = \"majority\"");
  }
  return Status::Ok();
}

const RetentionPresetText* FindPresetText(std::string_view name) {
  for (const RetentionPresetText& p : ShippedRetentionPresets()) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

std::string PresetList() {
  std::string out;
  for (const RetentionPresetText& p : ShippedRetentionPresets()) {
    if (!out.empty()) out += ", ";
    out += p.name;
  }
  return out;
}

// A preset's rules, those of the presets it includes first.
Status LoadPresetRules(std::string_view name, int depth, std::vector<RetentionRule>& out) {
  const RetentionPresetText* p = FindPresetText(name);
  if (p == nullptr) {
    return NotFound("no retention preset " + Quoted(name) + " (presets: " + PresetList() + ")");
  }
  if (depth > kMaxIncludeDepth) {
    return InvalidArgument(std::string(p->file) + ": presets include each other too deeply");
  }
  PV_ASSIGN_OR_RETURN(toml::table root, ParseToml(p->text, p->file));
  const Reader r(p->file);
  PV_RETURN_IF_ERROR(r.CheckKeys(root, "", {"preset", "rule"}));
  const toml::node* pn = root.get("preset");
  if (pn == nullptr || !pn->is_table()) {
    return InvalidArgument(std::string(p->file) + ":1: [preset] table is required");
  }
  const toml::table& pt = *pn->as_table();
  PV_RETURN_IF_ERROR(r.CheckKeys(pt, "[preset]: ", {"name", "description", "includes"}));
  std::string declared;
  PV_RETURN_IF_ERROR(r.String(pt, "[preset]: ", "name", declared, true));
  if (declared != name) {
    return r.At(*pt.get("name"), "[preset]: name must be the file's name " + Quoted(name));
  }
  std::string description;
  PV_RETURN_IF_ERROR(r.String(pt, "[preset]: ", "description", description, true));
  std::vector<std::string> includes;
  bool has_includes = false;
  PV_RETURN_IF_ERROR(r.StringList(pt, "[preset]: ", "includes", includes, &has_includes));
  for (const std::string& inc : includes) {
    PV_RETURN_IF_ERROR(LoadPresetRules(inc, depth + 1, out));
  }
  std::vector<WrittenRule> written;
  PV_RETURN_IF_ERROR(ReadRules(r, root, /*is_preset=*/true, {}, written));
  for (WrittenRule& w : written) {
    PV_RETURN_IF_ERROR(CheckComplete(r, w));
    out.push_back(std::move(w.rule));
  }
  return Status::Ok();
}

Status CheckUniqueNames(const std::vector<RetentionRule>& rules) {
  std::map<std::string_view, const RetentionRule*> seen;
  for (const RetentionRule& rule : rules) {
    auto [it, inserted] = seen.emplace(rule.name, &rule);
    if (!inserted) {
      return InvalidArgument(rule.origin + ": rule " + Quoted(rule.name) +
                             " is already defined at " + it->second->origin);
    }
  }
  return Status::Ok();
}

std::string FormatDay(year_month_day d) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", static_cast<int>(d.year()),
                static_cast<unsigned>(d.month()), static_cast<unsigned>(d.day()));
  return buf;
}

// Why a rule gives its date, in words and without patient facts.
std::string Explain(const RetentionRule& r) {
  switch (r.basis) {
    case RetentionBasis::kService:
      return Cited(r) + ": " + Describe(r) + " (this record's date of service)";
    case RetentionBasis::kLastEncounter:
      return Cited(r) + ": " + Describe(r) + " (the patient's last encounter)";
    case RetentionBasis::kMajority:
      return Cited(r) + ": " + std::to_string(r.years) + " years after the patient reached the " +
             "age of majority " + std::to_string(r.age_of_majority) +
             " (a minor at this record's encounter)";
    case RetentionBasis::kDeath:
      return Cited(r) + ": " + Describe(r) + " (the patient's recorded death)";
    case RetentionBasis::kPermanent:
      return Cited(r) + ": kept permanently";
  }
  return Cited(r);
}

std::string JoinReasons(const std::vector<std::string>& reasons) {
  std::string out;
  for (const std::string& s : reasons) {
    if (!out.empty()) out += "; ";
    out += s;
  }
  return out;
}

}  // namespace

std::string_view RetentionBasisName(RetentionBasis basis) {
  for (const auto& [n, b] : kBases) {
    if (b == basis) return n;
  }
  return "unknown";
}

bool RetentionRule::AppliesTo(std::string_view category) const {
  return std::any_of(categories.begin(), categories.end(),
                     [&](const std::string& c) { return c == "*" || c == category; });
}

year_month_day AddCalendarYears(year_month_day day, int years) {
  year_month_day out = (day.year() + std::chrono::years(years)) / day.month() / day.day();
  if (!out.ok()) out = out.year() / out.month() / std::chrono::last;
  return out;
}

std::vector<std::string_view> RetentionPresetNames() {
  std::vector<std::string_view> names;
  for (const RetentionPresetText& p : ShippedRetentionPresets()) names.push_back(p.name);
  std::sort(names.begin(), names.end());
  return names;
}

StatusOr<RetentionTable> RetentionTable::Preset(std::string_view preset_name) {
  RetentionTable table;
  table.preset_ = std::string(preset_name);
  PV_RETURN_IF_ERROR(LoadPresetRules(preset_name, 0, table.rules_));
  PV_RETURN_IF_ERROR(CheckUniqueNames(table.rules_));
  return table;
}

StatusOr<RetentionTable> RetentionTable::Parse(std::string_view toml_text,
                                               std::string_view source_name,
                                               std::span<const std::string> categories) {
  PV_ASSIGN_OR_RETURN(toml::table root, ParseToml(toml_text, source_name));
  const Reader r(source_name);
  PV_RETURN_IF_ERROR(r.CheckKeys(root, "", {"retention", "rule"}));
  const toml::node* rn = root.get("retention");
  if (rn == nullptr) return InvalidArgument(r.source() + ":1: [retention] table is required");
  if (!rn->is_table()) return r.At(*rn, "retention must be a table");
  const toml::table& rt = *rn->as_table();
  PV_RETURN_IF_ERROR(r.CheckKeys(rt, "[retention]: ", {"preset", "description"}));
  std::string preset_name, description;
  PV_RETURN_IF_ERROR(r.String(rt, "[retention]: ", "preset", preset_name, true));
  PV_RETURN_IF_ERROR(r.String(rt, "[retention]: ", "description", description, false));
  StatusOr<RetentionTable> preset = Preset(preset_name);
  if (!preset.ok()) {
    if (preset.status().code() == StatusCode::kNotFound) {
      return r.At(*rt.get("preset"), "[retention]: " + preset.status().message());
    }
    return preset.status();  // a shipped preset that does not load is a bug, named by its file
  }
  RetentionTable table = std::move(*preset);

  std::vector<WrittenRule> written;
  PV_RETURN_IF_ERROR(ReadRules(r, root, /*is_preset=*/false, categories, written));
  std::map<std::string, std::string> practice_names;  // name -> origin
  for (WrittenRule& w : written) {
    const std::string where = "rule " + Quoted(w.rule.name) + ": ";
    if (auto [it, inserted] = practice_names.emplace(w.rule.name, w.rule.origin); !inserted) {
      return r.At(*w.table, where + "is already defined at " + it->second);
    }
    auto base = std::find_if(table.rules_.begin(), table.rules_.end(),
                             [&](const RetentionRule& p) { return p.name == w.rule.name; });
    if (base == table.rules_.end()) {
      PV_RETURN_IF_ERROR(CheckComplete(r, w));
      table.rules_.push_back(std::move(w.rule));
      continue;
    }
    // Lengthening a preset rule: what is left out is the preset's.
    RetentionRule longer = w.rule;
    if (!w.has_categories) longer.categories = base->categories;
    if (!w.has_after) longer.basis = base->basis;
    if (!w.has_majority) longer.age_of_majority = base->age_of_majority;
    if (longer.basis == RetentionBasis::kPermanent) {
      if (w.has_years) {
        return r.At(*w.table->get("years"),
                    where + "years does not apply to after = \"permanent\"");
      }
      longer.years = 0;
      longer.age_of_majority = 0;
    } else if (!w.has_years) {
      return r.At(*w.table, where + "years is required to lengthen preset " +
                                Quoted(table.preset_) + " rule " + Quoted(base->name));
    }
    if (longer.source.empty()) longer.source = base->source;
    if (longer.basis != RetentionBasis::kMajority && w.has_majority) {
      return r.At(*w.table->get("age_of_majority"),
                  where + "age_of_majority applies only to after = \"majority\"");
    }
    if (longer.basis != RetentionBasis::kMajority) longer.age_of_majority = 0;
    if (longer.basis == RetentionBasis::kMajority && longer.age_of_majority == 0) {
      return r.At(*w.table, where + "age_of_majority is required with after = \"majority\"");
    }
    const std::string shorter = where + "would shorten preset " + Quoted(table.preset_) + " rule " +
                                Quoted(base->name) + " (" + Describe(*base) + ", " + base->source +
                                ", " + base->origin + ")";
    if (!Covers(longer, *base))
      return r.At(*w.table, shorter + ": " + Describe(longer) + " is less");
    for (const std::string& c : base->categories) {
      if (!longer.AppliesTo(c)) {
        return r.At(*w.table, shorter + ": it no longer covers category " + Quoted(c));
      }
    }
    *base = std::move(longer);
  }
  return table;
}

RetentionDecision RetentionTable::Decide(std::string_view category,
                                         const RetentionFacts& facts) const {
  using std::chrono::sys_days;
  RetentionDecision d;
  const year_month_day last = sys_days(facts.last_encounter) < sys_days(facts.record_encounter)
                                  ? facts.record_encounter
                                  : facts.last_encounter;
  std::vector<const RetentionRule*> permanent, undetermined;
  std::optional<year_month_day> best;
  std::vector<const RetentionRule*> best_rules;
  for (const RetentionRule& rule : rules_) {
    if (!rule.AppliesTo(category)) continue;
    std::optional<year_month_day> until;
    switch (rule.basis) {
      case RetentionBasis::kPermanent:
        permanent.push_back(&rule);
        continue;
      case RetentionBasis::kService:
        until = AddCalendarYears(facts.record_encounter, rule.years);
        break;
      case RetentionBasis::kLastEncounter:
        until = AddCalendarYears(last, rule.years);
        break;
      case RetentionBasis::kDeath:
        if (!facts.date_of_death) continue;
        until = AddCalendarYears(*facts.date_of_death, rule.years);
        break;
      case RetentionBasis::kMajority: {
        if (!facts.date_of_birth) {
          undetermined.push_back(&rule);
          continue;
        }
        const year_month_day majority =
            AddCalendarYears(*facts.date_of_birth, rule.age_of_majority);
        if (sys_days(facts.record_encounter) >= sys_days(majority)) continue;  // not a minor then
        until = AddCalendarYears(*facts.date_of_birth, rule.age_of_majority + rule.years);
        break;
      }
    }
    if (!best || sys_days(*until) > sys_days(*best)) {
      best = until;
      best_rules.assign(1, &rule);
    } else if (sys_days(*until) == sys_days(*best)) {
      best_rules.push_back(&rule);
    }
  }

  std::vector<std::string> reasons;
  const auto decided_by = [&](const std::vector<const RetentionRule*>& rules) {
    for (const RetentionRule* rule : rules) {
      d.rules.push_back(rule->name);
      reasons.push_back(Explain(*rule));
    }
  };
  if (!permanent.empty()) {
    d.outcome = RetentionOutcome::kPermanent;
    decided_by(permanent);
    d.reason = JoinReasons(reasons);
  } else if (!undetermined.empty()) {
    d.outcome = RetentionOutcome::kUndetermined;
    decided_by(undetermined);
    d.reason = "kept until the patient's date of birth is recorded: " + JoinReasons(reasons);
  } else if (!best) {
    d.outcome = RetentionOutcome::kUndetermined;
    d.reason = "kept: no retention rule applies to category " + Quoted(category);
  } else {
    d.outcome = RetentionOutcome::kExpires;
    d.expires_on = *best;
    decided_by(best_rules);
    d.reason = "expires " + FormatDay(*best) + ": " + JoinReasons(reasons);
  }
  return d;
}

std::vector<RetentionShortening> FindShortenings(const RetentionTable& before,
                                                 const RetentionTable& after) {
  // Every category either table names, and "*" standing for every category neither names (rules
  // for "*" alone apply there).
  std::set<std::string> named;
  for (const RetentionTable* t : {&before, &after}) {
    for (const RetentionRule& rule : t->rules()) {
      for (const std::string& c : rule.categories) {
        if (c != "*") named.insert(c);
      }
    }
  }
  std::vector<std::string> categories(named.begin(), named.end());
  categories.emplace_back("*");

  std::vector<RetentionShortening> out;
  for (const std::string& category : categories) {
    for (const RetentionRule& o : before.rules()) {
      if (!o.AppliesTo(category)) continue;
      const bool covered = std::any_of(
          after.rules().begin(), after.rules().end(),
          [&](const RetentionRule& n) { return n.AppliesTo(category) && Covers(n, o); });
      if (covered) continue;
      out.push_back({category, o.name,
                     Cited(o) + " (" + Describe(o) + ") is not covered by any rule of the new " +
                         "table (preset " + Quoted(after.preset()) + ")"});
    }
  }
  return out;
}

}  // namespace phivault::policies
