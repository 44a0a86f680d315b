#include "policies/retention.h"

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <toml++/toml.h>

namespace phivault::policies {
namespace {

using std::chrono::year_month_day;

const std::vector<std::string> kCategories{"clinical_note", "psychotherapy_note", "substance_use"};

year_month_day Day(int y, unsigned m, unsigned d) {
  return std::chrono::year{y} / std::chrono::month{m} / std::chrono::day{d};
}

std::string Text(year_month_day d) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", static_cast<int>(d.year()),
                static_cast<unsigned>(d.month()), static_cast<unsigned>(d.day()));
  return buf;
}

StatusOr<RetentionTable> ParseText(std::string_view text) {
  return RetentionTable::Parse(text, "practice.toml", kCategories);
}

// The message of a file that must be refused.
std::string Refusal(std::string_view text) {
  StatusOr<RetentionTable> t = ParseText(text);
  EXPECT_FALSE(t.ok()) << text;
  if (t.ok()) return "";
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument) << t.status().ToString();
  return t.status().message();
}

RetentionTable MustParse(std::string_view text) {
  StatusOr<RetentionTable> t = ParseText(text);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return t.ok() ? *std::move(t) : *RetentionTable::Preset("us-federal");
}

TEST(RetentionCalendar, AddsWholeYearsAndClampsTheLeapDay) {
  EXPECT_EQ(AddCalendarYears(Day(2020, 6, 1), 7), Day(2027, 6, 1));
  EXPECT_EQ(AddCalendarYears(Day(2020, 2, 29), 1), Day(2021, 2, 28));
  EXPECT_EQ(AddCalendarYears(Day(2020, 2, 29), 4), Day(2024, 2, 29));
  EXPECT_EQ(AddCalendarYears(Day(2020, 2, 28), 1), Day(2021, 2, 28));
  EXPECT_EQ(AddCalendarYears(Day(2021, 3, 1), 3), Day(2024, 3, 1));
  EXPECT_EQ(AddCalendarYears(Day(2096, 2, 29), 4), Day(2100, 2, 28));  // 2100 is not a leap year
  EXPECT_EQ(AddCalendarYears(Day(2020, 12, 31), 0), Day(2020, 12, 31));
}

TEST(RetentionPresets, EveryShippedPresetLoadsAndCitesEveryRule) {
  const std::vector<std::string_view> expected{"us-ca", "us-federal", "us-fl", "us-ny", "us-tx"};
  EXPECT_EQ(RetentionPresetNames(), expected);
  for (std::string_view name : RetentionPresetNames()) {
    StatusOr<RetentionTable> t = RetentionTable::Preset(name);
    ASSERT_TRUE(t.ok()) << name << ": " << t.status().ToString();
    EXPECT_EQ(t->preset(), name);
    ASSERT_FALSE(t->rules().empty()) << name;
    for (const RetentionRule& r : t->rules()) {
      EXPECT_FALSE(r.source.empty()) << name << " rule " << r.name;
      EXPECT_NE(r.origin.find("policies/retention/"), std::string::npos) << r.origin;
    }
  }
}

TEST(RetentionPresets, EveryStatePresetIncludesTheFederalBaseline) {
  const RetentionTable federal = *RetentionTable::Preset("us-federal");
  for (std::string_view name : {"us-ca", "us-fl", "us-ny", "us-tx"}) {
    const RetentionTable state = *RetentionTable::Preset(name);
    EXPECT_TRUE(FindShortenings(federal, state).empty()) << name;
    for (const RetentionRule& f : federal.rules()) {
      EXPECT_TRUE(std::any_of(state.rules().begin(), state.rules().end(),
                              [&](const RetentionRule& r) { return r.name == f.name; }))
          << name << " lacks " << f.name;
    }
  }
}

TEST(RetentionPresets, UnknownPresetIsNotFound) {
  StatusOr<RetentionTable> t = RetentionTable::Preset("us-zz");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kNotFound);
  EXPECT_NE(t.status().message().find("us-federal"), std::string::npos) << t.status().message();
}

// Runs tests/policies/retention_cases.toml: each case names its line when it fails.
TEST(RetentionTableAsData, EveryCaseDecidesAsWritten) {
  std::ifstream in(PHIVAULT_RETENTION_CASES_TOML);
  ASSERT_TRUE(in) << PHIVAULT_RETENTION_CASES_TOML;
  std::ostringstream text;
  text << in.rdbuf();
  const std::string cases_text = text.str();
  toml::table root =
      toml::parse(std::string_view(cases_text), std::string_view("retention_cases.toml"));

  std::map<std::string, RetentionTable> tables;
  for (std::string_view name : RetentionPresetNames()) {
    tables.emplace(std::string(name), *RetentionTable::Preset(name));
  }
  for (const toml::node& n : *root["table"].as_array()) {
    const toml::table& t = *n.as_table();
    const std::string name = *t["name"].value<std::string>();
    StatusOr<RetentionTable> parsed =
        RetentionTable::Parse(*t["text"].value<std::string>(), name, kCategories);
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    tables.emplace(name, *std::move(parsed));
  }

  const auto day = [](const toml::table& c, std::string_view key) -> std::optional<year_month_day> {
    std::optional<toml::date> d = c[key].value<toml::date>();
    if (!d) return std::nullopt;
    return Day(d->year, d->month, d->day);
  };
  int cases = 0;
  for (const toml::node& n : *root["case"].as_array()) {
    const toml::table& c = *n.as_table();
    const std::string where = "retention_cases.toml:" + std::to_string(c.source().begin.line) +
                              ": " + c["what"].value_or(std::string());
    auto table = tables.find(*c["table"].value<std::string>());
    ASSERT_NE(table, tables.end()) << where;
    RetentionFacts facts;
    facts.date_of_birth = day(c, "born");
    facts.date_of_death = day(c, "died");
    ASSERT_TRUE(day(c, "last_encounter") && day(c, "encounter")) << where;
    facts.last_encounter = *day(c, "last_encounter");
    facts.record_encounter = *day(c, "encounter");

    const RetentionDecision d = table->second.Decide(*c["category"].value<std::string>(), facts);
    const std::string expect = *c["expect"].value<std::string>();
    if (expect == "permanent") {
      EXPECT_EQ(d.outcome, RetentionOutcome::kPermanent) << where << "\n" << d.reason;
    } else if (expect == "undetermined") {
      EXPECT_EQ(d.outcome, RetentionOutcome::kUndetermined) << where << "\n" << d.reason;
    } else {
      EXPECT_EQ(d.outcome, RetentionOutcome::kExpires) << where << "\n" << d.reason;
      EXPECT_EQ(Text(d.expires_on), expect) << where << "\n" << d.reason;
    }
    std::vector<std::string> expected_rules, got_rules(d.rules.begin(), d.rules.end());
    for (const toml::node& r : *c["rules"].as_array()) {
      expected_rules.push_back(*r.value<std::string>());
    }
    EXPECT_EQ(got_rules, expected_rules) << where << "\n" << d.reason;
    for (const std::string& r : expected_rules) {
      EXPECT_NE(d.reason.find("'" + r + "'"), std::string::npos) << where << "\n" << d.reason;
    }
    ++cases;
  }
  EXPECT_GE(cases, 25);
}

TEST(RetentionDecide, TheReasonNamesRuleAndSourceButNoPatientFact) {
  const RetentionTable tx = *RetentionTable::Preset("us-tx");
  RetentionFacts facts;
  facts.date_of_birth = Day(2015, 3, 15);
  facts.last_encounter = facts.record_encounter = Day(2020, 6, 1);
  const RetentionDecision d = tx.Decide("clinical_note", facts);
  EXPECT_EQ(d.reason,
            "expires 2036-03-15: rule 'tx-minor' (22 Tex. Admin. Code 165.1(b)): 3 years after "
            "the patient reached the age of majority 18 (a minor at this record's encounter)");
  EXPECT_EQ(d.reason.find("2015"), std::string::npos);
  EXPECT_EQ(d.reason.find("2020"), std::string::npos);
}

TEST(RetentionLengthening, APresetRuleMayBeLengthenedOrMadePermanent) {
  const RetentionTable t = MustParse(R"([retention]
preset = "us-tx"
[[rule]]
name = "tx-adult"
after = "permanent"
[[rule]]
name = "tx-minor"
age_of_majority = 21
years = 0
)");
  const auto adult = std::find_if(t.rules().begin(), t.rules().end(),
                                  [](const RetentionRule& r) { return r.name == "tx-adult"; });
  ASSERT_NE(adult, t.rules().end());
  EXPECT_EQ(adult->basis, RetentionBasis::kPermanent);
  EXPECT_EQ(adult->source, "22 Tex. Admin. Code 165.1(b)");  // the preset's citation is kept
  EXPECT_EQ(adult->origin, "practice.toml:3");
  EXPECT_TRUE(FindShortenings(*RetentionTable::Preset("us-tx"), t).empty());
}

TEST(RetentionLengthening, ShorteningAPresetRuleIsRefusedNamingFileLineAndRule) {
  EXPECT_EQ(Refusal(R"([retention]
preset = "us-tx"
[[rule]]
name = "tx-adult"
years = 5
)"),
            "practice.toml:3: rule 'tx-adult': would shorten preset 'us-tx' rule 'tx-adult' (7 "
            "years after last_encounter, 22 Tex. Admin. Code 165.1(b), "
            "policies/retention/us-tx.toml:11): 5 years after last_encounter is less");
  // Counting from the date of service is shorter than from the last encounter.
  EXPECT_NE(Refusal(R"([retention]
preset = "us-fl"
[[rule]]
name = "fl-physician"
after = "service"
years = 30
)")
                .find("practice.toml:3: rule 'fl-physician': would shorten"),
            std::string::npos);
  // A higher age of majority with fewer years ends sooner.
  EXPECT_NE(Refusal(R"([retention]
preset = "us-ny"
[[rule]]
name = "ny-minor"
age_of_majority = 21
years = 0
)")
                .find("would shorten preset 'us-ny' rule 'ny-minor'"),
            std::string::npos);
  // Fewer categories is shorter for the others.
  EXPECT_NE(Refusal(R"([retention]
preset = "us-ca"
[[rule]]
name = "ca-adult"
categories = ["clinical_note"]
years = 9
)")
                .find("it no longer covers category '*'"),
            std::string::npos);
}

TEST(RetentionValidation, ErrorsNameFileLineAndWhat) {
  EXPECT_EQ(Refusal("[retention]\npreset = \"us-tx\"\n[[rule]]\nname = \"x\"\ncategories = "
                    "[\"*\"]\nafter = \"last_encounter\"\nyears = 3\nextra = 1\n"),
            "practice.toml:8: rule 'x': unknown key 'extra'");
  EXPECT_EQ(Refusal("[retention]\npreset = \"us-zz\"\n"),
            "practice.toml:2: [retention]: no retention preset 'us-zz' (presets: us-ca, "
            "us-federal, us-fl, us-ny, us-tx)");
  EXPECT_EQ(Refusal("[retention]\n"), "practice.toml:1: [retention]: preset is required");
  EXPECT_EQ(Refusal("preset = \"us-tx\"\n"), "practice.toml:1: unknown key 'preset'");
  EXPECT_EQ(Refusal("[rule]\n"), "practice.toml:1: [retention] table is required");
  EXPECT_EQ(Refusal("[retention]\npreset = \"us-tx\"\n[[rule]]\nname = \"x\"\ncategories = "
                    "[\"labs\"]\nafter = \"service\"\nyears = 3\n"),
            "practice.toml:5: rule 'x': unknown category 'labs' (not a configured category)");
  EXPECT_EQ(Refusal("[retention]\npreset = \"us-tx\"\n[[rule]]\nname = \"x\"\ncategories = "
                    "[\"*\"]\nafter = \"birth\"\nyears = 3\n"),
            "practice.toml:6: rule 'x': unknown basis 'birth' (service, last_encounter, "
            "majority, death, permanent)");
  EXPECT_EQ(Refusal("[retention]\npreset = \"us-tx\"\n[[rule]]\nname = \"x\"\ncategories = "
                    "[\"*\"]\nafter = \"service\"\n"),
            "practice.toml:3: rule 'x': years is required");
  EXPECT_EQ(Refusal("[retention]\npreset = \"us-tx\"\n[[rule]]\nname = \"x\"\ncategories = "
                    "[\"*\"]\nafter = \"service\"\nyears = 201\n"),
            "practice.toml:7: rule 'x': years must be an integer from 0 to 200");
  EXPECT_EQ(Refusal("[retention]\npreset = \"us-tx\"\n[[rule]]\nname = \"x\"\ncategories = "
                    "[\"*\"]\nafter = \"service\"\nyears = -1\n"),
            "practice.toml:7: rule 'x': years must be an integer from 0 to 200");
  EXPECT_EQ(Refusal("[retention]\npreset = \"us-tx\"\n[[rule]]\nname = \"x\"\ncategories = "
                    "[\"*\"]\nafter = \"majority\"\nyears = 2\n"),
            "practice.toml:3: rule 'x': age_of_majority is required with after = \"majority\"");
  EXPECT_EQ(Refusal("[retention]\npreset = \"us-tx\"\n[[rule]]\nname = \"x\"\ncategories = "
                    "[\"*\"]\nafter = \"death\"\nyears = 2\nage_of_majority = 18\n"),
            "practice.toml:8: rule 'x': age_of_majority applies only to after = \"majority\"");
  EXPECT_EQ(Refusal("[retention]\npreset = \"us-tx\"\n[[rule]]\nname = \"x\"\ncategories = "
                    "[\"*\"]\nafter = \"permanent\"\nyears = 2\n"),
            "practice.toml:7: rule 'x': years does not apply to after = \"permanent\"");
  EXPECT_EQ(Refusal("[retention]\npreset = \"us-tx\"\n[[rule]]\nname = \"x\"\ncategories = "
                    "[\"*\"]\nafter = \"permanent\"\n[[rule]]\nname = \"x\"\ncategories = "
                    "[\"*\"]\nafter = \"permanent\"\n"),
            "practice.toml:7: rule 'x': is already defined at practice.toml:3");
  EXPECT_EQ(Refusal("[retention]\npreset = \"us-tx\"\n[[rule]]\nname = \"tx-adult\"\n"),
            "practice.toml:3: rule 'tx-adult': years is required to lengthen preset 'us-tx' "
            "rule 'tx-adult'");
  EXPECT_EQ(Refusal("[retention]\npreset = \"us-tx\"\n[[rule]]\ncategories = [\"*\"]\n"),
            "practice.toml:3: rule: name is required");
  EXPECT_EQ(Refusal("[retention]\npreset = \"us-tx\"\n[[rule]]\nname = \"x\"\ncategories = "
                    "[\"*\", \"*\"]\nafter = \"permanent\"\n"),
            "practice.toml:5: rule 'x': categories lists '*' twice");
  EXPECT_EQ(Refusal("[retention]\npreset = \"us-tx\"\n[[rule]]\nname = \"x\"\ncategories = "
                    "[]\nafter = \"permanent\"\n"),
            "practice.toml:5: rule 'x': categories must be a non-empty array of strings");
  const std::string syntax = Refusal("[retention]\npreset = \n");
  EXPECT_EQ(syntax.rfind("practice.toml:2:", 0), 0u) << syntax;
}

TEST(RetentionShortenings, ChangingToAShorterPresetIsFound) {
  const RetentionTable tx = *RetentionTable::Preset("us-tx");
  const RetentionTable fl = *RetentionTable::Preset("us-fl");
  const std::vector<RetentionShortening> s = FindShortenings(tx, fl);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].category, "*");
  EXPECT_EQ(s[0].old_rule, "tx-adult");
  EXPECT_EQ(s[1].old_rule, "tx-minor");
  EXPECT_EQ(s[0].reason,
            "rule 'tx-adult' (22 Tex. Admin. Code 165.1(b)) (7 years after last_encounter) is "
            "not covered by any rule of the new table (preset 'us-fl')");
  // The other way only lengthens.
  EXPECT_TRUE(FindShortenings(fl, tx).empty());
  EXPECT_TRUE(FindShortenings(tx, tx).empty());
}

TEST(RetentionShortenings, DroppingALengtheningOrACategoryRuleIsFound) {
  const RetentionTable longer = MustParse(R"([retention]
preset = "us-tx"
[[rule]]
name = "tx-adult"
years = 10
[[rule]]
name = "practice-substance-use"
categories = ["substance_use"]
after = "service"
years = 20
)");
  const RetentionTable tx = *RetentionTable::Preset("us-tx");
  const std::vector<RetentionShortening> s = FindShortenings(longer, tx);
  ASSERT_EQ(s.size(), 3u);
  // Categories in name order, then "*".
  EXPECT_EQ(s[0].category, "substance_use");
  EXPECT_EQ(s[0].old_rule, "tx-adult");
  EXPECT_EQ(s[1].category, "substance_use");
  EXPECT_EQ(s[1].old_rule, "practice-substance-use");
  EXPECT_EQ(s[2].category, "*");
  EXPECT_EQ(s[2].old_rule, "tx-adult");
  EXPECT_TRUE(FindShortenings(tx, longer).empty());
}

TEST(RetentionShortenings, APermanentRuleCoversEverythingAndIsCoveredOnlyByPermanence) {
  const RetentionTable permanent = MustParse(R"([retention]
preset = "us-federal"
[[rule]]
name = "keep-all"
categories = ["*"]
after = "permanent"
)");
  const RetentionTable ny = *RetentionTable::Preset("us-ny");
  EXPECT_TRUE(FindShortenings(ny, permanent).empty());
  const std::vector<RetentionShortening> s = FindShortenings(permanent, ny);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].old_rule, "keep-all");
}

}  // namespace
}  // namespace phivault::policies
