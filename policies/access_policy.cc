#include "policies/access_policy.h"

#include <algorithm>
#include <array>
#include <fstream>
#include <set>
#include <sstream>
#include <unordered_map>
#include <utility>

#include <toml++/toml.h>

#include "crypto/hash.h"
#include "policies/purpose_of_use.h"

namespace phivault::policies {
namespace {

constexpr std::array<std::string_view, 19> kActions{
    "create",  "read",  "amend",  "list",   "disclose", "export",  "account",
    "report",  "audit", "unseal", "review", "restrict", "request", "contact",
    "suspend", "hold",  "sweep",  "policy", "admin"};
constexpr size_t kRecordActionCount = 6;  // the first six of kActions
constexpr std::string_view kDefaultDeny = "default-deny";
constexpr size_t kMaxCategories = 64;  // a category is one bit of a rule's category mask
constexpr size_t kMaxRules = 65535;    // rule indexes are uint16_t

int ActionIndex(std::string_view action) {
  if (action.empty()) return -1;
  for (size_t i = 0; i < kActions.size(); ++i) {
    // The first letter rules out most names without a call to memcmp.
    if (kActions[i][0] == action[0] && kActions[i] == action) return static_cast<int>(i);
  }
  return -1;
}

// The PurposeOfUse codes a request may carry: every code of the value set except the abstract
// root, each one bit (59 codes fit a uint64_t).
class PurposeIndex {
 public:
  static const PurposeIndex& Get() {
    static const PurposeIndex index;
    return index;
  }
  int Find(std::string_view code) const {
    auto it = index_.find(code);
    return it == index_.end() ? -1 : it->second;
  }
  size_t size() const { return codes_.size(); }
  std::string_view code(size_t i) const { return codes_[i]; }
  // The bits of `code` and all its specialisations.
  uint64_t Family(std::string_view code) const {
    uint64_t bits = 0;
    for (size_t i = 0; i < codes_.size(); ++i) {
      if (PurposeIsA(codes_[i], code)) bits |= uint64_t{1} << i;
    }
    return bits;
  }
  uint64_t all() const { return codes_.size() == 64 ? ~uint64_t{0} : (uint64_t{1} << size()) - 1; }

 private:
  PurposeIndex() {
    for (const PurposeOfUseCode& c : AllPurposeOfUseCodes()) {
      if (c.category == PurposeCategory::kAbstract) continue;
      index_.emplace(c.code, static_cast<int>(codes_.size()));
      codes_.push_back(c.code);
    }
  }
  std::vector<std::string_view> codes_;
  std::unordered_map<std::string_view, int> index_;
};

bool ValidName(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

std::string Quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

std::string JoinNames(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) {
    if (!out.empty()) out += ", ";
    out += Quoted(n);
  }
  return out;
}

// A rule compiled to masks over the interned domain.
struct CompiledRule {
  uint64_t categories = 0;  // bit per category index (record actions only)
  uint64_t purposes = 0;    // bit per PurposeIndex code, break-glass codes already split out
  bool author_only = false;
  bool any_author = false;
  bool break_glass = false;
};

struct Conditions {
  bool is_author, has_consent, break_glass;
};

// The compiled policy (AccessPolicy::Impl).
struct PolicyData {
  std::string name, description, text, sha256_hex;
  std::vector<std::string> roles;
  std::vector<std::string> categories;
  std::vector<Protection> protection;            // per category
  std::vector<uint64_t> consent_exempt;          // per category: purposes that need no consent
  std::vector<std::string> protected_rule_name;  // per category: "protected:<category>"
  uint64_t break_glass_purposes = 0;
  int64_t break_glass_window_seconds = 3600;
  std::vector<PolicyRule> rules;
  std::vector<CompiledRule> compiled;  // parallel to rules
  // Per (role, action, category or none), rule indexes in file order: the rules that can match
  // there, so a decision scans only those.
  std::vector<std::vector<uint16_t>> forbids, permits;
  // Keys point into `roles` and `categories`, which never change after construction.
  std::unordered_map<std::string_view, uint16_t> role_index, category_index;

  // `category` is -1 for an action on no record.
  size_t Cell(size_t role, size_t action, int category) const {
    return (role * kActions.size() + action) * (categories.size() + 1) +
           static_cast<size_t>(category + 1);
  }

  static bool Matches(const CompiledRule& r, int category, uint64_t purpose_bit,
                      const Conditions& c) {
    if (category >= 0 && (r.categories & (uint64_t{1} << category)) == 0) return false;
    if ((r.purposes & purpose_bit) == 0) return false;
    if (r.break_glass && !c.break_glass) return false;
    if (r.author_only && !c.is_author) return false;
    return true;
  }

  // True if a permit that matches is held back only by `category`'s protection.
  bool ProtectionUnmet(const CompiledRule& r, int category, uint64_t purpose_bit,
                       const Conditions& c) const {
    if (category < 0) return false;
    switch (protection[category]) {
      case Protection::kNone:
        return false;
      case Protection::kAuthor:
        return !r.any_author && !c.is_author;
      case Protection::kConsent:
        return !c.has_consent && (consent_exempt[category] & purpose_bit) == 0;
    }
    return false;
  }

  // `category` is -1 for an action on no record; the caller has checked it fits the action.
  Decision DecideInterned(size_t role, size_t action, int category, size_t purpose,
                          const Conditions& c) const {
    const uint64_t purpose_bit = uint64_t{1} << purpose;
    const size_t cell = Cell(role, action, category);
    for (uint16_t i : forbids[cell]) {
      if (Matches(compiled[i], category, purpose_bit, c)) return {false, rules[i].name, false};
    }
    bool protection_unmet = false;
    for (uint16_t i : permits[cell]) {
      const CompiledRule& r = compiled[i];
      if (!Matches(r, category, purpose_bit, c)) continue;
      if (ProtectionUnmet(r, category, purpose_bit, c)) {
        protection_unmet = true;
        continue;
      }
      return {true, rules[i].name, r.break_glass};
    }
    if (protection_unmet) return {false, protected_rule_name[category], false};
    return {false, kDefaultDeny, false};
  }
};

// Reads and checks the TOML tree, naming the source and line in every error.
class PolicyReader {
 public:
  PolicyReader(std::string_view source, const PolicyVocabulary& vocabulary)
      : source_(source), vocabulary_(vocabulary) {}

  Status At(const toml::node& n, std::string_view what) const {
    return InvalidArgument(source_ + ":" + std::to_string(n.source().begin.line) + ": " +
                           std::string(what));
  }
  Status AtLine(int line, std::string_view what) const {
    return InvalidArgument(source_ + ":" + std::to_string(line) + ": " + std::string(what));
  }
  Status AtRule(const toml::node& n, std::string_view rule, std::string_view what) const {
    return At(n, "rule " + Quoted(rule) + ": " + std::string(what));
  }

  // Rejects keys not in `allowed`; `where` prefixes the message ("rule 'x': " or "[policy] ").
  Status CheckKeys(const toml::table& t, std::string_view where,
                   std::initializer_list<std::string_view> allowed) const {
    for (auto&& [k, v] : t) {
      if (std::find(allowed.begin(), allowed.end(), k.str()) == allowed.end()) {
        return At(v, std::string(where) + "unknown key '" + std::string(k.str()) + "'");
      }
    }
    return Status::Ok();
  }

  Status String(const toml::table& t, std::string_view where, std::string_view key,
                std::string& out, bool required) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) {
      return required ? At(t, std::string(where) + std::string(key) + " is required")
                      : Status::Ok();
    }
    const auto* s = n->as_string();
    if (s == nullptr) return At(*n, std::string(where) + std::string(key) + " must be a string");
    out = s->get();
    return Status::Ok();
  }

  Status Bool(const toml::table& t, std::string_view where, std::string_view key, bool& out) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return Status::Ok();
    const auto* b = n->as_boolean();
    if (b == nullptr)
      return At(*n, std::string(where) + std::string(key) + " must be true or false");
    out = b->get();
    return Status::Ok();
  }

  // A non-empty array of distinct strings; `*n_out` is the array node (null when absent).
  Status StringList(const toml::table& t, std::string_view where, std::string_view key,
                    std::vector<std::string>& out, const toml::node** n_out) const {
    const toml::node* n = t.get(key);
    *n_out = n;
    if (n == nullptr) return Status::Ok();
    const std::string name = std::string(where) + std::string(key);
    const auto* a = n->as_array();
    if (a == nullptr) return At(*n, name + " must be an array of strings");
    if (a->empty()) return At(*n, name + " must not be empty");
    std::set<std::string> seen;
    for (size_t i = 0; i < a->size(); ++i) {
      const auto* s = a->get(i)->as_string();
      if (s == nullptr) return At(*a->get(i), name + " must be an array of strings");
      if (!seen.insert(s->get()).second) {
        return At(*a->get(i), name + " lists '" + s->get() + "' twice");
      }
      out.push_back(s->get());
    }
    return Status::Ok();
  }

  const std::string& source() const { return source_; }
  const PolicyVocabulary& vocabulary() const { return vocabulary_; }

 private:
  std::string source_;
  const PolicyVocabulary& vocabulary_;
};

// A purpose a policy may name: a PurposeOfUse code other than the abstract root.
bool IsConcretePurpose(std::string_view code) { return PurposeIndex::Get().Find(code) >= 0; }

std::string UnknownPurpose(std::string_view code) {
  if (code == "PurposeOfUse") {
    return "purpose 'PurposeOfUse' is the abstract root of the value set, not a purpose";
  }
  return "unknown purpose '" + std::string(code) + "' (not an HL7 PurposeOfUse code)";
}

struct ParsedRule {
  PolicyRule rule;
  CompiledRule compiled;
  const toml::table* table = nullptr;
  std::vector<size_t> role_ids;
  std::vector<size_t> action_ids;
};

class Builder {
 public:
  Builder(const PolicyReader& reader, PolicyData& impl) : r_(reader), p_(impl) {}

  Status Build(const toml::table& root) {
    PV_RETURN_IF_ERROR(r_.CheckKeys(
        root, "", {"policy", "roles", "protected", "break_glass", "permit", "forbid"}));
    PV_RETURN_IF_ERROR(ParsePolicyTable(root));
    PV_RETURN_IF_ERROR(ParseRoles(root));
    PV_RETURN_IF_ERROR(ParseCategories());
    PV_RETURN_IF_ERROR(ParseProtected(root));
    PV_RETURN_IF_ERROR(ParseBreakGlass(root));
    PV_RETURN_IF_ERROR(ParseRules(root));
    PV_RETURN_IF_ERROR(CheckPermitsTakeEffect());
    Index();
    return Status::Ok();
  }

 private:
  Status ParsePolicyTable(const toml::table& root) {
    const toml::node* n = root.get("policy");
    if (n == nullptr) return r_.AtLine(1, "[policy] table is required");
    const toml::table* t = n->as_table();
    if (t == nullptr) return r_.At(*n, "policy must be a table");
    PV_RETURN_IF_ERROR(r_.CheckKeys(*t, "[policy]: ", {"name", "description"}));
    PV_RETURN_IF_ERROR(r_.String(*t, "[policy]: ", "name", p_.name, true));
    if (p_.name.empty()) return r_.At(*t->get("name"), "[policy]: name must not be empty");
    return r_.String(*t, "[policy]: ", "description", p_.description, false);
  }

  Status ParseRoles(const toml::table& root) {
    const toml::node* n = root.get("roles");
    if (n == nullptr) return r_.AtLine(1, "[roles] table is required");
    const toml::table* t = n->as_table();
    if (t == nullptr) return r_.At(*n, "roles must be a table");
    if (t->empty()) return r_.At(*t, "[roles] must declare at least one role");
    std::vector<std::pair<uint32_t, std::string>> by_line;
    for (auto&& [k, v] : *t) {
      const std::string role(k.str());
      if (!ValidName(role))
        return r_.At(v, "role " + Quoted(role) + ": name must match [a-z0-9_-]+");
      if (!v.is_string())
        return r_.At(v, "role " + Quoted(role) + ": value must be its description");
      by_line.emplace_back(v.source().begin.line, role);
    }
    // toml++ keeps keys sorted; the policy's order is the file's.
    std::stable_sort(by_line.begin(), by_line.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& [line, role] : by_line) p_.roles.push_back(std::move(role));
    for (const std::string& required : r_.vocabulary().required_roles) {
      if (std::find(p_.roles.begin(), p_.roles.end(), required) == p_.roles.end()) {
        return r_.At(*t, "policy does not declare role " + Quoted(required) +
                             ", which the configuration binds");
      }
    }
    return Status::Ok();
  }

  Status ParseCategories() {
    for (const std::string& c : r_.vocabulary().categories) {
      if (std::find(p_.categories.begin(), p_.categories.end(), c) == p_.categories.end()) {
        p_.categories.push_back(c);
      }
    }
    if (p_.categories.size() > kMaxCategories) {
      return r_.AtLine(1, "the configuration has more than 64 record categories");
    }
    p_.protection.assign(p_.categories.size(), Protection::kNone);
    p_.consent_exempt.assign(p_.categories.size(), 0);
    for (const std::string& c : p_.categories) p_.protected_rule_name.push_back("protected:" + c);
    return Status::Ok();
  }

  int CategoryId(std::string_view c) const {
    auto it = std::find(p_.categories.begin(), p_.categories.end(), c);
    return it == p_.categories.end() ? -1 : static_cast<int>(it - p_.categories.begin());
  }

  Status ParseProtected(const toml::table& root) {
    const toml::node* n = root.get("protected");
    if (n == nullptr) return Status::Ok();
    const toml::table* t = n->as_table();
    if (t == nullptr) return r_.At(*n, "protected must be a table of [protected.<category>]");
    for (auto&& [k, v] : *t) {
      const std::string category(k.str());
      const std::string where = "[protected." + category + "]: ";
      const int id = CategoryId(category);
      if (id < 0) {
        return r_.At(v, where + "'" + category + "' is not a configured record category");
      }
      const toml::table* pt = v.as_table();
      if (pt == nullptr) return r_.At(v, where + "must be a table");
      PV_RETURN_IF_ERROR(r_.CheckKeys(*pt, where, {"require", "citation", "exempt_purposes"}));
      std::string require, citation;
      PV_RETURN_IF_ERROR(r_.String(*pt, where, "require", require, true));
      PV_RETURN_IF_ERROR(r_.String(*pt, where, "citation", citation, false));
      if (require == "author") {
        p_.protection[id] = Protection::kAuthor;
      } else if (require == "consent") {
        p_.protection[id] = Protection::kConsent;
      } else {
        return r_.At(*pt->get("require"), where + "require must be \"author\" or \"consent\"");
      }
      std::vector<std::string> exempt;
      const toml::node* en = nullptr;
      PV_RETURN_IF_ERROR(r_.StringList(*pt, where, "exempt_purposes", exempt, &en));
      if (en != nullptr && p_.protection[id] != Protection::kConsent) {
        return r_.At(*en, where + "exempt_purposes applies only to require = \"consent\"");
      }
      for (const std::string& code : exempt) {
        if (!IsConcretePurpose(code)) return r_.At(*en, where + UnknownPurpose(code));
        p_.consent_exempt[id] |= PurposeIndex::Get().Family(code);
      }
    }
    return Status::Ok();
  }

  Status ParseBreakGlass(const toml::table& root) {
    std::vector<std::string> purposes = {"ETREAT", "BTG"};
    if (const toml::node* n = root.get("break_glass"); n != nullptr) {
      const toml::table* t = n->as_table();
      const std::string where = "[break_glass]: ";
      if (t == nullptr) return r_.At(*n, "break_glass must be a table");
      PV_RETURN_IF_ERROR(r_.CheckKeys(*t, where, {"purposes", "window_minutes"}));
      std::vector<std::string> listed;
      const toml::node* pn = nullptr;
      PV_RETURN_IF_ERROR(r_.StringList(*t, where, "purposes", listed, &pn));
      for (const std::string& code : listed) {
        if (!IsConcretePurpose(code)) return r_.At(*pn, where + UnknownPurpose(code));
      }
      if (pn != nullptr) purposes = listed;
      if (const toml::node* wn = t->get("window_minutes"); wn != nullptr) {
        const auto* i = wn->as_integer();
        if (i == nullptr || i->get() < 1 || i->get() > 1440) {
          return r_.At(*wn, where + "window_minutes must be an integer between 1 and 1440");
        }
        p_.break_glass_window_seconds = i->get() * 60;
      }
    }
    for (const std::string& code : purposes) {
      p_.break_glass_purposes |= PurposeIndex::Get().Family(code);
    }
    return Status::Ok();
  }

  Status ParseRules(const toml::table& root) {
    for (const bool forbid : {false, true}) {
      const char* key = forbid ? "forbid" : "permit";
      const toml::node* n = root.get(key);
      if (n == nullptr) continue;
      const toml::array* a = n->as_array();
      if (a == nullptr || !a->is_array_of_tables()) {
        return r_.At(*n, std::string(key) + " must be an array of tables ([[" + key + "]])");
      }
      for (const toml::node& e : *a) {
        ParsedRule pr;
        pr.rule.forbid = forbid;
        PV_RETURN_IF_ERROR(ParseRule(*e.as_table(), pr));
        parsed_.push_back(std::move(pr));
      }
    }
    if (parsed_.size() > kMaxRules) return r_.AtLine(1, "more than 65535 rules");
    // Permits and forbids live in two arrays; keep each rule's place in the file.
    std::stable_sort(parsed_.begin(), parsed_.end(), [](const ParsedRule& a, const ParsedRule& b) {
      return a.rule.line < b.rule.line;
    });
    std::set<std::string> names;
    for (const ParsedRule& pr : parsed_) {
      if (!names.insert(pr.rule.name).second) {
        return r_.AtRule(*pr.table, pr.rule.name, "duplicate rule name");
      }
    }
    return Status::Ok();
  }

  Status ParseRule(const toml::table& t, ParsedRule& pr) {
    PolicyRule& rule = pr.rule;
    pr.table = &t;
    rule.line = static_cast<int>(t.source().begin.line);
    const std::string kind = rule.forbid ? "[[forbid]]" : "[[permit]]";
    PV_RETURN_IF_ERROR(r_.String(t, kind + ": ", "name", rule.name, true));
    if (!ValidName(rule.name)) {
      return r_.At(*t.get("name"),
                   kind + ": name " + Quoted(rule.name) + " must match [a-z0-9_-]+");
    }
    const std::string where = "rule " + Quoted(rule.name) + ": ";
    PV_RETURN_IF_ERROR(r_.CheckKeys(t, where,
                                    {"name", "description", "roles", "actions", "categories",
                                     "purposes", "author_only", "any_author", "break_glass"}));
    PV_RETURN_IF_ERROR(r_.String(t, where, "description", rule.description, false));
    PV_RETURN_IF_ERROR(r_.Bool(t, where, "author_only", rule.author_only));
    PV_RETURN_IF_ERROR(r_.Bool(t, where, "any_author", rule.any_author));
    PV_RETURN_IF_ERROR(r_.Bool(t, where, "break_glass", rule.break_glass));
    CompiledRule& c = pr.compiled;
    c.author_only = rule.author_only;
    c.any_author = rule.any_author;
    c.break_glass = rule.break_glass;

    const toml::node* roles_n = nullptr;
    PV_RETURN_IF_ERROR(r_.StringList(t, where, "roles", rule.roles, &roles_n));
    if (roles_n == nullptr) return r_.At(t, where + "roles is required");
    for (const std::string& role : rule.roles) {
      if (role == "*") {
        if (rule.roles.size() != 1) return r_.At(*roles_n, where + "'*' must be the only role");
        for (size_t i = 0; i < p_.roles.size(); ++i) pr.role_ids.push_back(i);
        continue;
      }
      auto it = std::find(p_.roles.begin(), p_.roles.end(), role);
      if (it == p_.roles.end()) {
        return r_.At(*roles_n, where + "unknown role " + Quoted(role) + " (not in [roles])");
      }
      pr.role_ids.push_back(static_cast<size_t>(it - p_.roles.begin()));
    }

    const toml::node* actions_n = nullptr;
    PV_RETURN_IF_ERROR(r_.StringList(t, where, "actions", rule.actions, &actions_n));
    if (actions_n == nullptr) return r_.At(t, where + "actions is required");
    bool any_record = false, any_other = false;
    for (const std::string& action : rule.actions) {
      const int id = ActionIndex(action);
      if (id < 0) return r_.At(*actions_n, where + "unknown action " + Quoted(action));
      pr.action_ids.push_back(static_cast<size_t>(id));
      (IsRecordAction(action) ? any_record : any_other) = true;
    }

    const toml::node* cats_n = nullptr;
    PV_RETURN_IF_ERROR(r_.StringList(t, where, "categories", rule.categories, &cats_n));
    if (cats_n != nullptr && !any_record) {
      return r_.At(*cats_n, where +
                                "categories can never match: the rule names no record action "
                                "(create, read, amend, list, disclose, export)");
    }
    if (cats_n == nullptr && any_record) {
      return r_.At(t, where + "categories is required for record actions");
    }
    bool names_author_protected = false;
    for (const std::string& category : rule.categories) {
      if (category == "*") {
        for (size_t i = 0; i < p_.categories.size(); ++i) {
          if (p_.protection[i] == Protection::kNone) c.categories |= uint64_t{1} << i;
        }
        continue;
      }
      const int id = CategoryId(category);
      if (id < 0) {
        return r_.At(*cats_n, where + "unknown category " + Quoted(category) +
                                  " (not a configured record category)");
      }
      c.categories |= uint64_t{1} << id;
      names_author_protected |= p_.protection[id] == Protection::kAuthor;
    }
    if (any_record && c.categories == 0) {
      return r_.At(*cats_n, where +
                                "categories match no category: '*' covers only the unprotected "
                                "ones, and every configured category is protected");
    }
    if (rule.author_only && any_other) {
      return r_.At(*t.get("author_only"),
                   where + "author_only applies only to record actions, and the rule names " +
                       "actions on no record");
    }
    if (rule.any_author && rule.forbid) {
      return r_.At(*t.get("any_author"), where + "any_author applies only to permits");
    }
    if (rule.any_author && !names_author_protected) {
      return r_.At(*t.get("any_author"),
                   where +
                       "any_author has no effect: the rule names no category protected "
                       "with require = \"author\"");
    }

    const toml::node* purposes_n = nullptr;
    PV_RETURN_IF_ERROR(r_.StringList(t, where, "purposes", rule.purposes, &purposes_n));
    if (purposes_n == nullptr) return r_.At(t, where + "purposes is required");
    const PurposeIndex& index = PurposeIndex::Get();
    uint64_t purposes = 0;
    for (const std::string& code : rule.purposes) {
      if (code == "*") {
        if (rule.purposes.size() != 1) {
          return r_.At(*purposes_n, where + "'*' must be the only purpose");
        }
        purposes = index.all();
        if (rule.break_glass) {
          return r_.At(*purposes_n, where +
                                        "a break_glass rule may name only break-glass "
                                        "purposes, and '*' names them all");
        }
        continue;
      }
      const int id = index.Find(code);
      if (id < 0) return r_.At(*purposes_n, where + UnknownPurpose(code));
      if (rule.break_glass && (p_.break_glass_purposes & (uint64_t{1} << id)) == 0) {
        return r_.At(*purposes_n, where + "purpose " + Quoted(code) +
                                      " is not a break-glass purpose, and the rule sets "
                                      "break_glass = true");
      }
      purposes |= index.Family(code);
    }
    if (rule.break_glass) {
      c.purposes = purposes & p_.break_glass_purposes;
    } else {
      c.purposes = purposes & ~p_.break_glass_purposes;
      if (c.purposes == 0) {
        return r_.At(*purposes_n, where +
                                      "all its purposes are break-glass purposes, which only "
                                      "break_glass = true rules match");
      }
    }
    return Status::Ok();
  }

  // A permit that forbids override everywhere it would allow is a mistake in the file.
  Status CheckPermitsTakeEffect() const {
    for (const ParsedRule& permit : parsed_) {
      if (permit.rule.forbid) continue;
      std::set<std::string> overriding;
      if (TakesEffectSomewhere(permit, overriding)) continue;
      return r_.AtRule(
          *permit.table, permit.rule.name,
          "can never take effect: forbid rule(s) " +
              JoinNames(std::vector<std::string>(overriding.begin(), overriding.end())) +
              " override it wherever it matches");
    }
    return Status::Ok();
  }

  bool TakesEffectSomewhere(const ParsedRule& permit, std::set<std::string>& overriding) const {
    const CompiledRule& pc = permit.compiled;
    for (size_t role : permit.role_ids) {
      for (size_t action : permit.action_ids) {
        const bool record = action < kRecordActionCount;
        const int first = record ? 0 : -1;
        const int last = record ? static_cast<int>(p_.categories.size()) - 1 : -1;
        for (int category = first; category <= last; ++category) {
          if (category >= 0 && (pc.categories & (uint64_t{1} << category)) == 0) continue;
          for (int bits = 0; bits < 8; ++bits) {
            const Conditions cond{(bits & 4) != 0, (bits & 2) != 0, (bits & 1) != 0};
            if (pc.break_glass && !cond.break_glass) continue;
            if (pc.author_only && !cond.is_author) continue;
            uint64_t allows = pc.purposes;
            if (category >= 0) {
              if (p_.protection[category] == Protection::kAuthor && !pc.any_author &&
                  !cond.is_author) {
                continue;
              }
              if (p_.protection[category] == Protection::kConsent && !cond.has_consent) {
                allows &= p_.consent_exempt[category];
              }
            }
            for (const ParsedRule& forbid : parsed_) {
              if (!forbid.rule.forbid || !Names(forbid, role, action)) continue;
              const CompiledRule& fc = forbid.compiled;
              if (category >= 0 && (fc.categories & (uint64_t{1} << category)) == 0) continue;
              if ((fc.break_glass && !cond.break_glass) || (fc.author_only && !cond.is_author)) {
                continue;
              }
              if ((allows & fc.purposes) != 0) overriding.insert(forbid.rule.name);
              allows &= ~fc.purposes;
            }
            if (allows != 0) return true;
          }
        }
      }
    }
    return false;
  }

  static bool Names(const ParsedRule& r, size_t role, size_t action) {
    return std::find(r.role_ids.begin(), r.role_ids.end(), role) != r.role_ids.end() &&
           std::find(r.action_ids.begin(), r.action_ids.end(), action) != r.action_ids.end();
  }

  void Index() {
    const size_t cells = p_.roles.size() * kActions.size() * (p_.categories.size() + 1);
    p_.forbids.assign(cells, {});
    p_.permits.assign(cells, {});
    for (size_t i = 0; i < parsed_.size(); ++i) {
      const ParsedRule& pr = parsed_[i];
      auto& lists = pr.rule.forbid ? p_.forbids : p_.permits;
      for (size_t role : pr.role_ids) {
        for (size_t action : pr.action_ids) {
          if (action >= kRecordActionCount) {
            lists[p_.Cell(role, action, -1)].push_back(static_cast<uint16_t>(i));
            continue;
          }
          for (size_t c = 0; c < p_.categories.size(); ++c) {
            if ((pr.compiled.categories & (uint64_t{1} << c)) == 0) continue;
            lists[p_.Cell(role, action, static_cast<int>(c))].push_back(static_cast<uint16_t>(i));
          }
        }
      }
      p_.rules.push_back(pr.rule);
      p_.compiled.push_back(pr.compiled);
    }
    for (size_t i = 0; i < p_.roles.size(); ++i) {
      p_.role_index.emplace(p_.roles[i], static_cast<uint16_t>(i));
    }
    for (size_t i = 0; i < p_.categories.size(); ++i) {
      p_.category_index.emplace(p_.categories[i], static_cast<uint16_t>(i));
    }
  }

  const PolicyReader& r_;
  PolicyData& p_;
  std::vector<ParsedRule> parsed_;
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

}  // namespace

std::span<const std::string_view> PolicyActions() { return kActions; }
bool IsPolicyAction(std::string_view action) { return ActionIndex(action) >= 0; }
bool IsRecordAction(std::string_view action) {
  const int i = ActionIndex(action);
  return i >= 0 && static_cast<size_t>(i) < kRecordActionCount;
}

struct AccessPolicy::Impl : PolicyData {};

AccessPolicy::AccessPolicy(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AccessPolicy::~AccessPolicy() = default;

StatusOr<std::shared_ptr<const AccessPolicy>> AccessPolicy::Parse(
    std::string_view toml_text, std::string_view source_name, const PolicyVocabulary& vocabulary) {
  PV_ASSIGN_OR_RETURN(toml::table root, ParseToml(toml_text, source_name));
  auto impl = std::make_unique<Impl>();
  PolicyReader reader(source_name, vocabulary);
  Builder builder(reader, *impl);
  PV_RETURN_IF_ERROR(builder.Build(root));
  impl->text = std::string(toml_text);
  impl->sha256_hex = crypto::HexEncode(crypto::AsView(crypto::Sha256(toml_text)));
  return std::shared_ptr<const AccessPolicy>(new AccessPolicy(std::move(impl)));
}

StatusOr<std::shared_ptr<const AccessPolicy>> AccessPolicy::LoadFile(
    const std::string& path, const PolicyVocabulary& vocabulary) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": cannot open the policy file");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return InvalidArgument(path + ": cannot read the policy file");
  return Parse(text.str(), path, vocabulary);
}

Decision AccessPolicy::Decide(const AccessRequest& request) const {
  const Decision deny{false, kDefaultDeny, false};
  const auto role = impl_->role_index.find(request.role);
  if (role == impl_->role_index.end()) return deny;
  const int action = ActionIndex(request.action);
  if (action < 0) return deny;
  int category = -1;
  if (static_cast<size_t>(action) < kRecordActionCount) {
    const auto c = impl_->category_index.find(request.category);
    if (c == impl_->category_index.end()) return deny;
    category = c->second;
  } else if (!request.category.empty()) {
    return deny;
  }
  const int purpose = PurposeIndex::Get().Find(request.purpose);
  if (purpose < 0) return deny;
  return impl_->DecideInterned(role->second, static_cast<size_t>(action), category,
                               static_cast<size_t>(purpose),
                               {request.is_author, request.has_consent, request.break_glass});
}

const std::string& AccessPolicy::name() const { return impl_->name; }
const std::string& AccessPolicy::text() const { return impl_->text; }
const std::string& AccessPolicy::sha256_hex() const { return impl_->sha256_hex; }
const std::vector<std::string>& AccessPolicy::roles() const { return impl_->roles; }
const std::vector<std::string>& AccessPolicy::categories() const { return impl_->categories; }
const std::vector<PolicyRule>& AccessPolicy::rules() const { return impl_->rules; }

Protection AccessPolicy::ProtectionOf(std::string_view category) const {
  const auto c = impl_->category_index.find(category);
  return c == impl_->category_index.end() ? Protection::kNone : impl_->protection[c->second];
}

bool AccessPolicy::IsBreakGlassPurpose(std::string_view purpose) const {
  const int p = PurposeIndex::Get().Find(purpose);
  return p >= 0 && (impl_->break_glass_purposes & (uint64_t{1} << p)) != 0;
}

int64_t AccessPolicy::break_glass_window_seconds() const {
  return impl_->break_glass_window_seconds;
}

std::vector<PolicyDiffCell> DiffPolicies(const AccessPolicy& before, const AccessPolicy& after) {
  std::set<std::string> roles(before.roles().begin(), before.roles().end());
  roles.insert(after.roles().begin(), after.roles().end());
  const PurposeIndex& purposes = PurposeIndex::Get();
  std::vector<PolicyDiffCell> cells;
  const std::vector<std::string> no_category = {""};
  for (const std::string& role : roles) {
    for (std::string_view action : kActions) {
      const bool record = IsRecordAction(action);
      for (const std::string& category : record ? after.categories() : no_category) {
        for (size_t p = 0; p < purposes.size(); ++p) {
          for (int bits = 0; bits < 8; ++bits) {
            const AccessRequest request{role,           action,          purposes.code(p),
                                        category,       (bits & 4) != 0, (bits & 2) != 0,
                                        (bits & 1) != 0};
            const Decision b = before.Decide(request);
            const Decision a = after.Decide(request);
            if (a.allowed == b.allowed) continue;
            cells.push_back({role,
                             std::string(action),
                             category,
                             std::string(purposes.code(p)),
                             {request.is_author, request.has_consent, request.break_glass},
                             b.allowed,
                             a.allowed,
                             std::string(b.rule),
                             std::string(a.rule)});
          }
        }
      }
    }
  }
  return cells;
}

StatusOr<std::vector<PolicyCaseResult>> RunPolicyCases(const AccessPolicy& policy,
                                                       std::string_view cases_toml,
                                                       std::string_view source_name) {
  PV_ASSIGN_OR_RETURN(toml::table root, ParseToml(cases_toml, source_name));
  const PolicyVocabulary vocabulary;
  const PolicyReader r(source_name, vocabulary);
  PV_RETURN_IF_ERROR(r.CheckKeys(root, "", {"case"}));
  std::vector<PolicyCaseResult> results;
  const toml::node* n = root.get("case");
  if (n == nullptr) return results;
  const toml::array* cases = n->as_array();
  if (cases == nullptr || !cases->is_array_of_tables()) {
    return r.At(*n, "case must be an array of tables ([[case]])");
  }
  for (const toml::node& e : *cases) {
    const toml::table& t = *e.as_table();
    const std::string where = "case: ";
    PV_RETURN_IF_ERROR(r.CheckKeys(t, where,
                                   {"role", "action", "purpose", "category", "author", "consent",
                                    "break_glass", "expect", "rule"}));
    std::string role, action, purpose, category, expect, rule;
    AccessRequest request;
    PV_RETURN_IF_ERROR(r.String(t, where, "role", role, true));
    PV_RETURN_IF_ERROR(r.String(t, where, "action", action, true));
    PV_RETURN_IF_ERROR(r.String(t, where, "purpose", purpose, true));
    PV_RETURN_IF_ERROR(r.String(t, where, "category", category, false));
    PV_RETURN_IF_ERROR(r.String(t, where, "expect", expect, true));
    PV_RETURN_IF_ERROR(r.String(t, where, "rule", rule, false));
    PV_RETURN_IF_ERROR(r.Bool(t, where, "author", request.is_author));
    PV_RETURN_IF_ERROR(r.Bool(t, where, "consent", request.has_consent));
    PV_RETURN_IF_ERROR(r.Bool(t, where, "break_glass", request.break_glass));
    const auto& roles = policy.roles();
    if (std::find(roles.begin(), roles.end(), role) == roles.end()) {
      return r.At(*t.get("role"), where + "the policy declares no role " + Quoted(role));
    }
    if (!IsPolicyAction(action)) {
      return r.At(*t.get("action"), where + "unknown action " + Quoted(action));
    }
    if (!IsConcretePurpose(purpose))
      return r.At(*t.get("purpose"), where + UnknownPurpose(purpose));
    if (IsRecordAction(action)) {
      const auto& cats = policy.categories();
      if (std::find(cats.begin(), cats.end(), category) == cats.end()) {
        return r.At(t,
                    where + "a record action needs a configured category, not " + Quoted(category));
      }
    } else if (!category.empty()) {
      return r.At(*t.get("category"), where + "action " + Quoted(action) + " acts on no record");
    }
    if (expect != "allow" && expect != "deny") {
      return r.At(*t.get("expect"), where + "expect must be \"allow\" or \"deny\"");
    }
    request.role = role;
    request.action = action;
    request.purpose = purpose;
    request.category = category;
    PolicyCaseResult result;
    result.line = static_cast<int>(t.source().begin.line);
    result.description = role + " " + action + (category.empty() ? "" : " " + category) + " " +
                         purpose + (request.is_author ? " author" : "") +
                         (request.has_consent ? " consent" : "") +
                         (request.break_glass ? " break-glass" : "");
    result.got = policy.Decide(request);
    result.expected = expect + (rule.empty() ? "" : ", rule " + rule);
    result.passed =
        result.got.allowed == (expect == "allow") && (rule.empty() || result.got.rule == rule);
    results.push_back(std::move(result));
  }
  return results;
}

}  // namespace phivault::policies
