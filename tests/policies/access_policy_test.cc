#include "policies/access_policy.h"

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <new>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "crypto/hash.h"

// Counts allocations, so a test can show that deciding makes none.
namespace {
std::atomic<long> g_allocations{0};
}  // namespace

void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);
}
// Every form that can free what the ones above return, so that no allocation of the program (the
// sanitizer's own runtime included) is freed by another allocator's delete.
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

namespace phivault::policies {
namespace {

const PolicyVocabulary kVocabulary{
    {"clinical_note", "demographics", "psychotherapy_note", "substance_use"}, {"physician"}};

// Roles and protections shared by most tests; rules are appended.
constexpr std::string_view kHeader = R"toml([policy]
name = "test-policy"
description = "for tests"
[roles]
physician = "treats"
nurse = "cares"
clerk = "files"
[protected.psychotherapy_note]
require = "author"
citation = "45 CFR 164.508(a)(2)"
[protected.substance_use]
require = "consent"
exempt_purposes = ["PATRQT"]
citation = "42 CFR Part 2"
)toml";

std::string WithRules(std::string_view rules) { return std::string(kHeader) + std::string(rules); }

StatusOr<std::shared_ptr<const AccessPolicy>> ParseText(std::string_view text) {
  return AccessPolicy::Parse(text, "test.toml", kVocabulary);
}

std::shared_ptr<const AccessPolicy> MustParse(std::string_view text) {
  auto p = ParseText(text);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return p.ok() ? *p : nullptr;
}

// The 1-based line of the first occurrence of `needle` in `text` (0 if absent).
int LineOf(std::string_view text, std::string_view needle) {
  const size_t at = text.find(needle);
  if (at == std::string_view::npos) return 0;
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + at, '\n'));
}

Decision Ask(const AccessPolicy& p, std::string_view role, std::string_view action,
             std::string_view category, std::string_view purpose, RequestConditions c = {}) {
  return p.Decide({role, action, purpose, category, c.is_author, c.has_consent, c.break_glass});
}

constexpr RequestConditions kAuthor{true, false, false};
constexpr RequestConditions kConsent{false, true, false};
constexpr RequestConditions kBreakGlass{false, false, true};

TEST(AccessPolicyParse, KeepsNameRolesAndRulesInFileOrder) {
  const std::string text = WithRules(R"(
[[permit]]
name = "zeta"
description = "first in the file"
roles = ["physician"]
actions = ["read"]
categories = ["clinical_note"]
purposes = ["TREAT"]
[[forbid]]
name = "alpha"
roles = ["clerk"]
actions = ["read"]
categories = ["*"]
purposes = ["HMARKT"]
[[permit]]
name = "mid"
roles = ["*"]
actions = ["report"]
purposes = ["HOPERAT"]
)");
  auto p = MustParse(text);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->name(), "test-policy");
  EXPECT_EQ(p->roles(), (std::vector<std::string>{"physician", "nurse", "clerk"}));
  ASSERT_EQ(p->rules().size(), 3u);
  EXPECT_EQ(p->rules()[0].name, "zeta");
  EXPECT_EQ(p->rules()[0].description, "first in the file");
  EXPECT_EQ(p->rules()[0].line, LineOf(text, "name = \"zeta\"") - 1);
  EXPECT_EQ(p->rules()[1].name, "alpha");
  EXPECT_TRUE(p->rules()[1].forbid);
  EXPECT_EQ(p->rules()[2].name, "mid");
  EXPECT_EQ(p->text(), text);
  EXPECT_EQ(p->sha256_hex(), crypto::HexEncode(crypto::AsView(crypto::Sha256(text))));
  EXPECT_EQ(p->categories(), kVocabulary.categories);
  EXPECT_EQ(p->ProtectionOf("psychotherapy_note"), Protection::kAuthor);
  EXPECT_EQ(p->ProtectionOf("substance_use"), Protection::kConsent);
  EXPECT_EQ(p->ProtectionOf("clinical_note"), Protection::kNone);
  EXPECT_EQ(p->break_glass_window_seconds(), 3600);
  EXPECT_TRUE(p->IsBreakGlassPurpose("ETREAT"));
  EXPECT_TRUE(p->IsBreakGlassPurpose("BTG"));
  EXPECT_TRUE(p->IsBreakGlassPurpose("ERTREAT"));  // a specialisation of ETREAT
  EXPECT_FALSE(p->IsBreakGlassPurpose("TREAT"));
}

TEST(AccessPolicyParse, ASyntaxErrorNamesFileLineAndColumn) {
  auto p = ParseText("[policy]\nname = \"x\"\n[roles\n");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(p.status().message().rfind("test.toml:3:", 0), 0u) << p.status().message();
}

TEST(AccessPolicyParse, BreakGlassPurposesAndWindowAreConfigurable) {
  auto p = MustParse(WithRules(R"(
[break_glass]
purposes = ["BTG"]
window_minutes = 15
[[permit]]
name = "treat"
roles = ["physician"]
actions = ["read"]
categories = ["*"]
purposes = ["TREAT"]
)"));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->break_glass_window_seconds(), 15 * 60);
  EXPECT_TRUE(p->IsBreakGlassPurpose("BTG"));
  EXPECT_FALSE(p->IsBreakGlassPurpose("ETREAT"));
  // ETREAT is an ordinary specialisation of TREAT now; BTG still needs a break_glass rule.
  EXPECT_TRUE(Ask(*p, "physician", "read", "clinical_note", "ETREAT").allowed);
  EXPECT_FALSE(Ask(*p, "physician", "read", "clinical_note", "BTG", kBreakGlass).allowed);
}

TEST(AccessPolicyParse, LoadFileReadsTheFileAndNamesAMissingOne) {
  const std::string path = ::testing::TempDir() + "/access_policy_test_policy.toml";
  const std::string text = WithRules("");
  {
    std::ofstream out(path, std::ios::binary);
    out << text;
  }
  auto p = AccessPolicy::LoadFile(path, kVocabulary);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ((*p)->text(), text);
  std::filesystem::remove(path);
  auto missing = AccessPolicy::LoadFile(path, kVocabulary);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(path), std::string::npos);
}

struct BadPolicy {
  const char* what;     // the case
  std::string text;     // the whole file
  std::string at;       // text on the line the error must name
  std::string rule;     // the rule the error must name ("" for errors outside a rule)
  std::string message;  // what the error must say
};

std::string Rule(std::string_view kind, std::string_view name, std::string_view body) {
  return "[[" + std::string(kind) + "]]\nname = \"" + std::string(name) + "\"\n" +
         std::string(body);
}

constexpr std::string_view kReadBody =
    "roles = [\"physician\"]\nactions = [\"read\"]\ncategories = [\"clinical_note\"]\n"
    "purposes = [\"TREAT\"]\n";

std::vector<BadPolicy> BadPolicies() {
  std::vector<BadPolicy> cases;
  cases.push_back({"unknown top-level table", WithRules("[permits]\nname = \"x\"\n"), "[permits]",
                   "", "unknown key 'permits'"});
  cases.push_back({"unknown key in a rule (typo)",
                   WithRules(Rule("permit", "r",
                                  "roles = [\"physician\"]\nactions = [\"report\"]\n"
                                  "purposes = [\"TREAT\"]\npurpose = [\"HPAYMT\"]\n")),
                   "purpose = [\"HPAYMT\"]", "r", "unknown key 'purpose'"});
  cases.push_back({"unknown key in [policy]", "[policy]\nname = \"x\"\nnmae = \"y\"\n", "nmae", "",
                   "[policy]: unknown key 'nmae'"});
  cases.push_back({"unknown role",
                   WithRules(Rule("permit", "r",
                                  "roles = [\"surgeon\"]\nactions = [\"report\"]\n"
                                  "purposes = [\"TREAT\"]\n")),
                   "roles = [\"surgeon\"]", "r", "unknown role 'surgeon'"});
  cases.push_back({"unknown action",
                   WithRules(Rule("permit", "r",
                                  "roles = [\"physician\"]\nactions = [\"delete\"]\n"
                                  "purposes = [\"TREAT\"]\n")),
                   "actions = [\"delete\"]", "r", "unknown action 'delete'"});
  cases.push_back({"unknown category",
                   WithRules(Rule("permit", "r",
                                  "roles = [\"physician\"]\nactions = [\"read\"]\n"
                                  "categories = [\"radiology\"]\npurposes = [\"TREAT\"]\n")),
                   "categories = [\"radiology\"]", "r", "unknown category 'radiology'"});
  cases.push_back({"unknown purpose",
                   WithRules(Rule("permit", "r",
                                  "roles = [\"physician\"]\nactions = [\"report\"]\n"
                                  "purposes = [\"TREATMENT\"]\n")),
                   "purposes = [\"TREATMENT\"]", "r", "unknown purpose 'TREATMENT'"});
  cases.push_back({"the abstract root is not a purpose",
                   WithRules(Rule("permit", "r",
                                  "roles = [\"physician\"]\nactions = [\"report\"]\n"
                                  "purposes = [\"PurposeOfUse\"]\n")),
                   "purposes = [\"PurposeOfUse\"]", "r", "abstract root"});
  cases.push_back({"empty list",
                   WithRules(Rule("permit", "r",
                                  "roles = []\nactions = [\"report\"]\npurposes = [\"TREAT\"]\n")),
                   "roles = []", "r", "roles must not be empty"});
  cases.push_back({"categories on a rule with only non-record actions",
                   WithRules(Rule("permit", "r",
                                  "roles = [\"clerk\"]\nactions = [\"report\", \"audit\"]\n"
                                  "categories = [\"*\"]\npurposes = [\"HOPERAT\"]\n")),
                   "categories = [\"*\"]", "r", "categories can never match"});
  cases.push_back({"categories missing for record actions",
                   WithRules(Rule("permit", "r",
                                  "roles = [\"physician\"]\nactions = [\"read\"]\n"
                                  "purposes = [\"TREAT\"]\n")),
                   "[[permit]]", "r", "categories is required for record actions"});
  cases.push_back({"author_only on an action on no record",
                   WithRules(Rule("permit", "r",
                                  "roles = [\"physician\"]\nactions = [\"read\", \"report\"]\n"
                                  "categories = [\"*\"]\npurposes = [\"TREAT\"]\n"
                                  "author_only = true\n")),
                   "author_only = true", "r", "author_only applies only to record actions"});
  cases.push_back({"break_glass rule with an ordinary purpose",
                   WithRules(Rule("permit", "r",
                                  "roles = [\"physician\"]\nactions = [\"read\"]\n"
                                  "categories = [\"*\"]\npurposes = [\"ETREAT\", \"TREAT\"]\n"
                                  "break_glass = true\n")),
                   "purposes = [\"ETREAT\", \"TREAT\"]", "r",
                   "purpose 'TREAT' is not a break-glass purpose"});
  cases.push_back({"ordinary rule naming only break-glass purposes",
                   WithRules(Rule("permit", "r",
                                  "roles = [\"physician\"]\nactions = [\"read\"]\n"
                                  "categories = [\"*\"]\npurposes = [\"BTG\", \"ETREAT\"]\n")),
                   "purposes = [\"BTG\", \"ETREAT\"]", "r",
                   "all its purposes are break-glass purposes"});
  cases.push_back({"duplicate rule name",
                   WithRules(Rule("permit", "dup", kReadBody) + "description = \"one\"\n" +
                             Rule("forbid", "dup",
                                  "roles = [\"clerk\"]\nactions = [\"read\"]\n"
                                  "categories = [\"*\"]\npurposes = [\"HMARKT\"]\n")),
                   "[[forbid]]", "dup", "duplicate rule name"});
  cases.push_back({"a permit that forbids override everywhere",
                   WithRules(Rule("permit", "nurse-notes",
                                  "roles = [\"nurse\"]\nactions = [\"read\", \"list\"]\n"
                                  "categories = [\"clinical_note\"]\npurposes = [\"COC\"]\n") +
                             Rule("forbid", "no-reads",
                                  "roles = [\"*\"]\nactions = [\"read\"]\n"
                                  "categories = [\"*\"]\npurposes = [\"TREAT\"]\n") +
                             Rule("forbid", "no-lists",
                                  "roles = [\"nurse\"]\nactions = [\"list\"]\n"
                                  "categories = [\"clinical_note\"]\npurposes = [\"COC\"]\n")),
                   "[[permit]]", "nurse-notes",
                   "can never take effect: forbid rule(s) 'no-lists', 'no-reads' override it"});
  cases.push_back({"protected table for a category not configured",
                   WithRules("[protected.genetics]\nrequire = \"consent\"\n"),
                   "[protected.genetics]", "",
                   "[protected.genetics]: 'genetics' is not a configured record category"});
  cases.push_back({"required role not declared",
                   "[policy]\nname = \"x\"\n[roles]\nnurse = \"cares\"\n", "[roles]", "",
                   "policy does not declare role 'physician', which the configuration binds"});
  cases.push_back({"break-glass window out of range",
                   WithRules("[break_glass]\nwindow_minutes = 1441\n"), "window_minutes", "",
                   "window_minutes must be an integer between 1 and 1440"});
  cases.push_back({"any_author on a rule naming no author-protected category",
                   WithRules(Rule("permit", "r", std::string(kReadBody) + "any_author = true\n")),
                   "any_author = true", "r", "any_author has no effect"});
  return cases;
}

TEST(AccessPolicyParse, EveryValidationErrorNamesFileLineAndRule) {
  for (const BadPolicy& c : BadPolicies()) {
    SCOPED_TRACE(c.what);
    auto p = ParseText(c.text);
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
    // The last occurrence of `at` is the offending one (the header precedes the rules).
    const size_t at = c.text.rfind(c.at);
    ASSERT_NE(at, std::string::npos);
    const int line = 1 + static_cast<int>(std::count(c.text.begin(), c.text.begin() + at, '\n'));
    std::string prefix = "test.toml:" + std::to_string(line) + ": ";
    if (!c.rule.empty()) prefix += "rule '" + c.rule + "': ";
    EXPECT_EQ(p.status().message().rfind(prefix, 0), 0u)
        << p.status().message() << "\nwanted prefix: " << prefix;
    EXPECT_NE(p.status().message().find(c.message), std::string::npos) << p.status().message();
  }
}

TEST(AccessPolicyDecide, AForbidOverridesEveryPermitAndNamesItself) {
  auto p = MustParse(WithRules(R"(
[[permit]]
name = "treatment"
roles = ["physician"]
actions = ["read"]
categories = ["*"]
purposes = ["TREAT"]
[[forbid]]
name = "no-coordination-reads"
roles = ["physician"]
actions = ["read"]
categories = ["demographics"]
purposes = ["COC"]
)"));
  ASSERT_NE(p, nullptr);
  const Decision d = Ask(*p, "physician", "read", "demographics", "COC");
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.rule, "no-coordination-reads");
  EXPECT_TRUE(Ask(*p, "physician", "read", "demographics", "TREAT").allowed);
  EXPECT_TRUE(Ask(*p, "physician", "read", "clinical_note", "COC").allowed);
}

TEST(AccessPolicyDecide, TheFirstMatchingPermitInFileOrderDecides) {
  auto p = MustParse(WithRules(R"(
[[permit]]
name = "coordination"
roles = ["nurse"]
actions = ["read", "list"]
categories = ["clinical_note"]
purposes = ["COC"]
[[permit]]
name = "treatment"
roles = ["nurse", "physician"]
actions = ["read"]
categories = ["*"]
purposes = ["TREAT"]
)"));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(Ask(*p, "nurse", "read", "clinical_note", "COC").rule, "coordination");
  EXPECT_EQ(Ask(*p, "nurse", "read", "clinical_note", "TREAT").rule, "treatment");
  EXPECT_EQ(Ask(*p, "physician", "read", "clinical_note", "COC").rule, "treatment");
  const Decision none = Ask(*p, "clerk", "read", "clinical_note", "TREAT");
  EXPECT_FALSE(none.allowed);
  EXPECT_EQ(none.rule, "default-deny");
}

TEST(AccessPolicyDecide, UnknownNamesAndMisplacedCategoriesAreDeniedByDefault) {
  auto p = MustParse(WithRules(R"(
[[permit]]
name = "all"
roles = ["*"]
actions = ["read", "report"]
categories = ["*"]
purposes = ["*"]
)"));
  ASSERT_NE(p, nullptr);
  ASSERT_TRUE(Ask(*p, "clerk", "read", "clinical_note", "HOPERAT").allowed);
  ASSERT_TRUE(Ask(*p, "clerk", "report", "", "HOPERAT").allowed);
  for (const Decision& d : {
           Ask(*p, "surgeon", "read", "clinical_note", "HOPERAT"),
           Ask(*p, "clerk", "delete", "clinical_note", "HOPERAT"),
           Ask(*p, "clerk", "read", "radiology", "HOPERAT"),
           Ask(*p, "clerk", "read", "clinical_note", "hoperat"),
           Ask(*p, "clerk", "read", "clinical_note", "PurposeOfUse"),
           Ask(*p, "clerk", "read", "", "HOPERAT"),                 // a record action needs one
           Ask(*p, "clerk", "report", "clinical_note", "HOPERAT"),  // an action on no record
           Ask(*p, "clerk", "read", "clinical_note", "ETREAT"),     // "*" has no break-glass
       }) {
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.rule, "default-deny");
  }
}

TEST(AccessPolicyDecide, PsychotherapyNotesNeedTheirAuthorUnlessARuleSaysAnyAuthor) {
  auto p = MustParse(WithRules(R"(
[[permit]]
name = "everything-unprotected"
roles = ["physician", "nurse", "clerk"]
actions = ["read"]
categories = ["*"]
purposes = ["TREAT"]
[[permit]]
name = "own-notes"
roles = ["physician"]
actions = ["read"]
categories = ["psychotherapy_note"]
purposes = ["TREAT"]
[[permit]]
name = "supervision"
roles = ["nurse"]
actions = ["read"]
categories = ["psychotherapy_note"]
purposes = ["TREAT"]
any_author = true
)"));
  ASSERT_NE(p, nullptr);
  const Decision not_author = Ask(*p, "physician", "read", "psychotherapy_note", "TREAT");
  EXPECT_FALSE(not_author.allowed);
  EXPECT_EQ(not_author.rule, "protected:psychotherapy_note");
  EXPECT_EQ(Ask(*p, "physician", "read", "psychotherapy_note", "TREAT", kAuthor).rule, "own-notes");
  EXPECT_EQ(Ask(*p, "nurse", "read", "psychotherapy_note", "TREAT").rule, "supervision");
  // "*" never reaches a protected category, so nothing is missing but a rule.
  EXPECT_EQ(Ask(*p, "clerk", "read", "psychotherapy_note", "TREAT", kAuthor).rule, "default-deny");
}

TEST(AccessPolicyDecide, SubstanceUseRecordsNeedConsentExceptForThePatientsOwnRequest) {
  auto p = MustParse(WithRules(R"(
[[permit]]
name = "sud-treatment"
roles = ["physician"]
actions = ["read"]
categories = ["substance_use"]
purposes = ["TREAT", "PATRQT"]
)"));
  ASSERT_NE(p, nullptr);
  const Decision no_consent = Ask(*p, "physician", "read", "substance_use", "TREAT");
  EXPECT_FALSE(no_consent.allowed);
  EXPECT_EQ(no_consent.rule, "protected:substance_use");
  EXPECT_TRUE(Ask(*p, "physician", "read", "substance_use", "TREAT", kConsent).allowed);
  EXPECT_TRUE(Ask(*p, "physician", "read", "substance_use", "PATRQT").allowed);
  EXPECT_TRUE(Ask(*p, "physician", "read", "substance_use", "PWATRNY").allowed);
  // Only a missing requirement is reported as such: a nurse lacks a rule, not a consent.
  EXPECT_EQ(Ask(*p, "nurse", "read", "substance_use", "TREAT").rule, "default-deny");
  EXPECT_EQ(Ask(*p, "physician", "read", "substance_use", "HPAYMT").rule, "default-deny");
}

TEST(AccessPolicyDecide, AuthorOnlyRulesMatchOnlyTheAuthorsRecords) {
  auto p = MustParse(WithRules(R"(
[[permit]]
name = "correct-own"
roles = ["nurse"]
actions = ["amend"]
categories = ["clinical_note"]
purposes = ["TREAT"]
author_only = true
)"));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(Ask(*p, "nurse", "amend", "clinical_note", "TREAT").rule, "default-deny");
  EXPECT_EQ(Ask(*p, "nurse", "amend", "clinical_note", "TREAT", kAuthor).rule, "correct-own");
}

TEST(AccessPolicyDecide, BreakGlassPurposesAreMatchedOnlyByBreakGlassRulesUnderBreakGlass) {
  auto p = MustParse(WithRules(R"(
[[permit]]
name = "treatment"
roles = ["physician", "nurse"]
actions = ["read"]
categories = ["*"]
purposes = ["TREAT"]
[[permit]]
name = "emergency"
roles = ["physician"]
actions = ["read"]
categories = ["*"]
purposes = ["ETREAT"]
break_glass = true
)"));
  ASSERT_NE(p, nullptr);
  // ETREAT specialises TREAT, but the treatment rule does not reach it.
  EXPECT_EQ(Ask(*p, "nurse", "read", "clinical_note", "ETREAT", kBreakGlass).rule, "default-deny");
  EXPECT_EQ(Ask(*p, "physician", "read", "clinical_note", "ETREAT").rule, "default-deny");
  for (const char* purpose : {"ETREAT", "BTG", "ERTREAT"}) {
    const Decision d = Ask(*p, "physician", "read", "clinical_note", purpose, kBreakGlass);
    EXPECT_TRUE(d.allowed) << purpose;
    EXPECT_EQ(d.rule, "emergency") << purpose;
    EXPECT_TRUE(d.break_glass) << purpose;
  }
  const Decision ordinary = Ask(*p, "physician", "read", "clinical_note", "TREAT", kBreakGlass);
  EXPECT_EQ(ordinary.rule, "treatment");
  EXPECT_FALSE(ordinary.break_glass);
  EXPECT_EQ(Ask(*p, "physician", "read", "substance_use", "BTG", kBreakGlass).rule, "default-deny");
}

TEST(AccessPolicyDecide, APurposeMatchesItsSpecialisationsButNotItsParentOrSiblings) {
  auto p = MustParse(WithRules(R"(
[[permit]]
name = "operations"
roles = ["clerk"]
actions = ["report"]
purposes = ["HOPERAT"]
)"));
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(Ask(*p, "clerk", "report", "", "HOPERAT").allowed);
  EXPECT_TRUE(Ask(*p, "clerk", "report", "", "HSYSADMIN").allowed);
  EXPECT_TRUE(Ask(*p, "clerk", "report", "", "HLEGAL").allowed);
  EXPECT_FALSE(Ask(*p, "clerk", "report", "", "HPAYMT").allowed);
  EXPECT_FALSE(Ask(*p, "clerk", "report", "", "PurposeOfUse").allowed);
}

TEST(AccessPolicyDecide, DecidingAllocatesNothing) {
  auto p = MustParse(WithRules(R"(
[[forbid]]
name = "no-marketing"
roles = ["*"]
actions = ["read"]
categories = ["*"]
purposes = ["HMARKT"]
[[permit]]
name = "treatment"
roles = ["physician", "nurse"]
actions = ["read", "list"]
categories = ["*", "substance_use"]
purposes = ["TREAT"]
[[permit]]
name = "reports"
roles = ["clerk"]
actions = ["report"]
purposes = ["HOPERAT"]
)"));
  ASSERT_NE(p, nullptr);
  const std::vector<AccessRequest> requests = {
      {"physician", "read", "TREAT", "clinical_note"},
      {"nurse", "list", "COC", "substance_use", false, true},
      {"nurse", "read", "TREAT", "substance_use"},
      {"clerk", "read", "HMARKT", "demographics"},
      {"clerk", "report", "HSYSADMIN", ""},
      {"surgeon", "read", "TREAT", "clinical_note"},
      {"physician", "read", "NOTACODE", "clinical_note"},
  };
  int allowed = 0;
  const long before = g_allocations.load();
  for (int i = 0; i < 1000; ++i) {
    for (const AccessRequest& r : requests) allowed += p->Decide(r).allowed ? 1 : 0;
  }
  EXPECT_EQ(g_allocations.load() - before, 0);
  EXPECT_EQ(allowed, 3000);
}

std::string Describe(const PolicyDiffCell& c) {
  return c.role + " " + c.action + " " + (c.category.empty() ? "-" : c.category) + " " + c.purpose +
         " " + (c.conditions.is_author ? "A" : "a") + (c.conditions.has_consent ? "C" : "c") +
         (c.conditions.break_glass ? "B" : "b") + " " + (c.before_allowed ? "allow " : "deny ") +
         c.before_rule + " -> " + (c.after_allowed ? "allow " : "deny ") + c.after_rule;
}

TEST(DiffPolicies, ListsExactlyTheCellsWhoseOutcomeChanges) {
  const PolicyVocabulary vocabulary{{"note"}, {}};
  auto before = AccessPolicy::Parse(R"([policy]
name = "before"
[roles]
clerk = "files"
physician = "treats"
[[permit]]
name = "clerk-report"
roles = ["clerk"]
actions = ["report"]
purposes = ["HMARKT"]
[[permit]]
name = "physician-read"
roles = ["physician"]
actions = ["read"]
categories = ["note"]
purposes = ["COC"]
[[permit]]
name = "physician-list"
roles = ["physician"]
actions = ["list"]
categories = ["note"]
purposes = ["CLINTRL"]
)",
                                    "before.toml", vocabulary);
  auto after = AccessPolicy::Parse(R"([policy]
name = "after"
[roles]
physician = "treats"
nurse = "cares"
[[permit]]
name = "physician-read-own"
roles = ["physician"]
actions = ["read"]
categories = ["note"]
purposes = ["COC"]
author_only = true
[[permit]]
name = "renamed-list"
roles = ["physician"]
actions = ["list"]
categories = ["note"]
purposes = ["CLINTRL"]
[[permit]]
name = "nurse-list"
roles = ["nurse"]
actions = ["list"]
categories = ["note"]
purposes = ["POPHLTH"]
)",
                                   "after.toml", vocabulary);
  ASSERT_TRUE(before.ok()) << before.status().ToString();
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  std::vector<std::string> got;
  for (const PolicyDiffCell& c : DiffPolicies(**before, **after)) got.push_back(Describe(c));
  // Roles in name order (the union: clerk left, nurse arrived), then action, category, purpose
  // and the conditions (author, consent, break-glass) counted up from none. The renamed list
  // rule changes no outcome and is not listed.
  const std::vector<std::string> want = {
      "clerk report - HMARKT acb allow clerk-report -> deny default-deny",
      "clerk report - HMARKT acB allow clerk-report -> deny default-deny",
      "clerk report - HMARKT aCb allow clerk-report -> deny default-deny",
      "clerk report - HMARKT aCB allow clerk-report -> deny default-deny",
      "clerk report - HMARKT Acb allow clerk-report -> deny default-deny",
      "clerk report - HMARKT AcB allow clerk-report -> deny default-deny",
      "clerk report - HMARKT ACb allow clerk-report -> deny default-deny",
      "clerk report - HMARKT ACB allow clerk-report -> deny default-deny",
      "nurse list note POPHLTH acb deny default-deny -> allow nurse-list",
      "nurse list note POPHLTH acB deny default-deny -> allow nurse-list",
      "nurse list note POPHLTH aCb deny default-deny -> allow nurse-list",
      "nurse list note POPHLTH aCB deny default-deny -> allow nurse-list",
      "nurse list note POPHLTH Acb deny default-deny -> allow nurse-list",
      "nurse list note POPHLTH AcB deny default-deny -> allow nurse-list",
      "nurse list note POPHLTH ACb deny default-deny -> allow nurse-list",
      "nurse list note POPHLTH ACB deny default-deny -> allow nurse-list",
      "physician read note COC acb allow physician-read -> deny default-deny",
      "physician read note COC acB allow physician-read -> deny default-deny",
      "physician read note COC aCb allow physician-read -> deny default-deny",
      "physician read note COC aCB allow physician-read -> deny default-deny",
  };
  EXPECT_EQ(got, want);
  EXPECT_TRUE(DiffPolicies(**after, **after).empty());
}

constexpr std::string_view kCasesPolicy = R"(
[[permit]]
name = "treatment"
roles = ["physician"]
actions = ["read"]
categories = ["*"]
purposes = ["TREAT"]
[[permit]]
name = "sud"
roles = ["physician"]
actions = ["read"]
categories = ["substance_use"]
purposes = ["TREAT"]
)";

TEST(RunPolicyCases, ReportsEachCaseWithItsLineAndWhatWasExpected) {
  auto p = MustParse(WithRules(kCasesPolicy));
  ASSERT_NE(p, nullptr);
  const std::string cases = R"([[case]]
role = "physician"
action = "read"
category = "clinical_note"
purpose = "TREAT"
expect = "allow"
rule = "treatment"

[[case]]
role = "physician"
action = "read"
category = "substance_use"
purpose = "TREAT"
consent = true
expect = "deny"

[[case]]
role = "physician"
action = "read"
category = "substance_use"
purpose = "TREAT"
expect = "deny"
rule = "protected:substance_use"
)";
  auto results = RunPolicyCases(*p, cases, "cases.toml");
  ASSERT_TRUE(results.ok()) << results.status().ToString();
  ASSERT_EQ(results->size(), 3u);
  EXPECT_TRUE((*results)[0].passed);
  EXPECT_EQ((*results)[0].line, 1);
  EXPECT_EQ((*results)[0].description, "physician read clinical_note TREAT");
  EXPECT_EQ((*results)[0].expected, "allow, rule treatment");
  EXPECT_FALSE((*results)[1].passed);
  EXPECT_EQ((*results)[1].line, LineOf(cases, "consent = true") - 5);
  EXPECT_EQ((*results)[1].description, "physician read substance_use TREAT consent");
  EXPECT_EQ((*results)[1].expected, "deny");
  EXPECT_EQ((*results)[1].got.rule, "sud");
  EXPECT_TRUE((*results)[2].passed);
}

TEST(RunPolicyCases, AMalformedCaseNamesFileAndLine) {
  auto p = MustParse(WithRules(kCasesPolicy));
  ASSERT_NE(p, nullptr);
  const std::string unknown_role =
      "[[case]]\nrole = \"physician\"\naction = \"read\"\ncategory = \"clinical_note\"\n"
      "purpose = \"TREAT\"\nexpect = \"allow\"\n\n[[case]]\nrole = \"surgeon\"\n"
      "action = \"read\"\ncategory = \"clinical_note\"\npurpose = \"TREAT\"\nexpect = \"allow\"\n";
  auto r = RunPolicyCases(*p, unknown_role, "cases.toml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "cases.toml:9: case: the policy declares no role 'surgeon'");
  auto typo =
      RunPolicyCases(*p,
                     "[[case]]\nrole = \"physician\"\naction = \"read\"\n"
                     "category = \"clinical_note\"\npurpose = \"TREAT\"\nexpcet = \"allow\"\n",
                     "cases.toml");
  ASSERT_FALSE(typo.ok());
  EXPECT_EQ(typo.status().message(), "cases.toml:6: case: unknown key 'expcet'");
}

}  // namespace
}  // namespace phivault::policies
