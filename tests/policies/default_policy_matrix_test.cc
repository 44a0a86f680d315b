// The whole decision matrix of the shipped default policy against a hand-written table of the
// cells it allows (default_policy_allow.tsv): a change to the policy that lets anything more or
// less through fails here until the table is updated on purpose.
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "policies/access_policy.h"
#include "policies/purpose_of_use.h"

namespace phivault::policies {
namespace {

const PolicyVocabulary kVocabulary{
    {"demographics", "insurance", "clinical_note", "lab_result", "imaging", "medication", "billing",
     "consent", "correspondence", "psychotherapy_note", "substance_use"},
    {"physician", "nurse", "medical_assistant", "front_office", "billing", "compliance_officer",
     "vault_admin"}};

std::shared_ptr<const AccessPolicy> DefaultPolicy() {
  auto p = AccessPolicy::Parse(DefaultPolicyToml(), "default_policy.toml", kVocabulary);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return p.ok() ? *p : nullptr;
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, sep);) out.push_back(item);
  return out;
}

std::string Key(std::string_view role, std::string_view action, std::string_view category,
                std::string_view purpose, int conditions) {
  return std::string(role) + " " + std::string(action) + " " +
         (category.empty() ? "-" : std::string(category)) + " " + std::string(purpose) + " " +
         std::to_string(conditions);
}

// Conditions as bits: 4 = author, 2 = consent, 1 = break-glass.
bool ConditionsMatch(const std::string& pattern, int bits) {
  for (int i = 0; i < 3; ++i) {
    const bool set = (bits & (4 >> i)) != 0;
    if (pattern[i] == '.') continue;
    if (set != (std::isupper(static_cast<unsigned char>(pattern[i])) != 0)) return false;
  }
  return true;
}

std::vector<std::string_view> ExpandPurpose(const std::string& item) {
  std::vector<std::string_view> out;
  const bool family = !item.empty() && item.back() == '+';
  const std::string code = family ? item.substr(0, item.size() - 1) : item;
  for (const PurposeOfUseCode& c : AllPurposeOfUseCodes()) {
    if (family ? PurposeIsA(c.code, code) : c.code == code) out.push_back(c.code);
  }
  return out;
}

// Cell key -> the rule expected to allow it.
std::map<std::string, std::string> LoadAllowTable(const AccessPolicy& policy) {
  std::map<std::string, std::string> allowed;
  std::ifstream in(PHIVAULT_DEFAULT_POLICY_ALLOW_TSV);
  EXPECT_TRUE(in.good()) << PHIVAULT_DEFAULT_POLICY_ALLOW_TSV;
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    const std::vector<std::string> f = Split(line, '\t');
    if (f.size() != 6 || f[4].size() != 3) {
      ADD_FAILURE() << "allow table line " << line_no << " is malformed";
      continue;
    }
    for (const std::string& role : Split(f[0], ',')) {
      EXPECT_NE(std::find(policy.roles().begin(), policy.roles().end(), role), policy.roles().end())
          << "line " << line_no << ": role " << role;
      for (const std::string& action : Split(f[1], ',')) {
        EXPECT_TRUE(IsPolicyAction(action)) << "line " << line_no << ": action " << action;
        EXPECT_EQ(IsRecordAction(action), f[2] != "-") << "line " << line_no;
        for (const std::string& cat : Split(f[2], ',')) {
          const std::string category = cat == "-" ? "" : cat;
          if (!category.empty()) {
            EXPECT_NE(
                std::find(kVocabulary.categories.begin(), kVocabulary.categories.end(), category),
                kVocabulary.categories.end())
                << "line " << line_no << ": category " << category;
          }
          for (const std::string& item : Split(f[3], ',')) {
            const std::vector<std::string_view> purposes = ExpandPurpose(item);
            EXPECT_FALSE(purposes.empty()) << "line " << line_no << ": purpose " << item;
            for (std::string_view purpose : purposes) {
              for (int bits = 0; bits < 8; ++bits) {
                if (!ConditionsMatch(f[4], bits)) continue;
                const bool fresh =
                    allowed.emplace(Key(role, action, category, purpose, bits), f[5]).second;
                EXPECT_TRUE(fresh)
                    << "line " << line_no
                    << " lists a cell twice: " << Key(role, action, category, purpose, bits);
              }
            }
          }
        }
      }
    }
  }
  return allowed;
}

TEST(DefaultPolicy, ParsesWithTheConfiguredVocabulary) {
  auto p = DefaultPolicy();
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->name(), "small-practice-default");
  EXPECT_EQ(p->roles(), kVocabulary.required_roles);
  EXPECT_EQ(p->ProtectionOf("psychotherapy_note"), Protection::kAuthor);
  EXPECT_EQ(p->ProtectionOf("substance_use"), Protection::kConsent);
  EXPECT_EQ(p->break_glass_window_seconds(), 3600);
}

TEST(DefaultPolicy, AllowsExactlyTheCellsOfTheAllowTable) {
  auto p = DefaultPolicy();
  ASSERT_NE(p, nullptr);
  const std::map<std::string, std::string> allowed = LoadAllowTable(*p);
  const std::vector<std::string> none = {""};
  size_t cells = 0, allowed_seen = 0, failures = 0;
  for (const std::string& role : p->roles()) {
    for (std::string_view action : PolicyActions()) {
      for (const std::string& category : IsRecordAction(action) ? p->categories() : none) {
        for (const PurposeOfUseCode& code : AllPurposeOfUseCodes()) {
          for (int bits = 0; bits < 8; ++bits) {
            ++cells;
            const Decision d = p->Decide({role, action, code.code, category, (bits & 4) != 0,
                                          (bits & 2) != 0, (bits & 1) != 0});
            const std::string key = Key(role, action, category, code.code, bits);
            const auto want = allowed.find(key);
            const bool ok =
                want == allowed.end() ? !d.allowed : d.allowed && d.rule == want->second;
            if (want != allowed.end()) ++allowed_seen;
            if (!ok && ++failures <= 40) {
              ADD_FAILURE() << key << " (conditions: 4 author, 2 consent, 1 break-glass): got "
                            << (d.allowed ? "allow " : "deny ") << d.rule << ", want "
                            << (want == allowed.end() ? "deny" : "allow " + want->second);
            }
          }
        }
      }
    }
  }
  EXPECT_EQ(failures, 0u);
  // 7 roles x (6 record actions x 11 categories + 13 others) x 60 codes x 8 conditions.
  EXPECT_EQ(cells, 7u * (6 * 11 + 13) * 60 * 8);
  EXPECT_EQ(allowed_seen, allowed.size()) << "the table lists cells outside the domain";
}

TEST(DefaultPolicy, DenialsNameWhatDecidedThem) {
  auto p = DefaultPolicy();
  ASSERT_NE(p, nullptr);
  auto rule = [&](std::string_view role, std::string_view action, std::string_view category,
                  std::string_view purpose, bool author = false, bool consent = false,
                  bool break_glass = false) {
    const Decision d = p->Decide({role, action, purpose, category, author, consent, break_glass});
    EXPECT_FALSE(d.allowed) << role << " " << action << " " << category << " " << purpose;
    return std::string(d.rule);
  };
  EXPECT_EQ(rule("front_office", "read", "clinical_note", "TREAT"), "default-deny");
  EXPECT_EQ(rule("nurse", "read", "substance_use", "TREAT"), "protected:substance_use");
  EXPECT_EQ(rule("physician", "read", "psychotherapy_note", "TREAT"),
            "protected:psychotherapy_note");
  EXPECT_EQ(rule("nurse", "read", "psychotherapy_note", "TREAT", true), "default-deny");
  EXPECT_EQ(rule("physician", "export", "psychotherapy_note", "PATRQT", true), "default-deny");
  EXPECT_EQ(rule("physician", "read", "clinical_note", "HMARKT"), "no-marketing");
  EXPECT_EQ(rule("physician", "disclose", "substance_use", "HMARKT", false, true), "no-marketing");
  EXPECT_EQ(rule("physician", "read", "clinical_note", "ETREAT"), "default-deny");
  EXPECT_EQ(rule("physician", "read", "substance_use", "BTG", false, false, true), "default-deny");
  EXPECT_EQ(rule("medical_assistant", "amend", "clinical_note", "TREAT"), "default-deny");
  EXPECT_EQ(rule("compliance_officer", "read", "clinical_note", "HOPERAT"), "default-deny");
  EXPECT_EQ(rule("vault_admin", "list", "demographics", "HSYSADMIN"), "default-deny");
  EXPECT_EQ(rule("billing", "read", "clinical_note", "TREAT"), "default-deny");
}

TEST(DefaultPolicy, BreakGlassAllowancesAreFlagged) {
  auto p = DefaultPolicy();
  ASSERT_NE(p, nullptr);
  const Decision d = p->Decide({"nurse", "read", "BTG", "lab_result", false, false, true});
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.rule, "emergency-access");
  EXPECT_TRUE(d.break_glass);
  EXPECT_FALSE(p->Decide({"nurse", "read", "TREAT", "lab_result", false, false, true}).break_glass);
}

}  // namespace
}  // namespace phivault::policies
