// The access policy: who may do what to which records, for which purpose. Default deny; a forbid
// rule overrides every permit; every decision names the rule that made it.
//
// A policy is a TOML file (docs/policy.md) parsed and validated completely by AccessPolicy::Parse
// into an immutable object. Deciding is a pure function of the policy and an AccessRequest: no
// I/O, no clock, no allocation, safe from any number of threads. The daemon holds the policy in
// force as a std::shared_ptr<const AccessPolicy> snapshot, swapped atomically on reload and taken
// once per request.
//
// The domain is finite (declared roles x the fixed actions x the configured categories x the HL7
// PurposeOfUse codes x three request conditions), so DiffPolicies can enumerate it exactly.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace phivault::policies {

// The actions a rule may name. Record actions act on one record and are decided on its category:
//   create, read, amend, list, disclose, export (the patient's right-of-access export).
// The others act on no record and are decided without a category:
//   account  (recording a disclosure made outside the vault, for the accounting)
//   report   (accounting of disclosures, access report)
//   audit    (audit log export, checkpoints, proofs)
//   unseal   (see the unsealed PHI fields — patient ids, recipients — in an audit export; only
//            for a role the principal is bound to)
//   review   (the break-glass review list and its sign-off)
//   restrict (patient restrictions), request (patient requests and their deadlines),
//   contact  (confidential communications), suspend (accounting suspensions),
//   hold, sweep (legal holds, retention sweeps),
//   policy   (show the policy in force and its history, explain a decision),
//   admin    (reload the policy, vault status and operations).
//
// Purposes: a rule's purpose matches that code and its specialisations (HOPERAT matches
// HSYSADMIN; policies/purpose_of_use.h), except that break-glass purposes (ETREAT, BTG and their
// specialisations; AccessPolicy::IsBreakGlassPurpose) are matched only by break_glass rules.
std::span<const std::string_view> PolicyActions();
bool IsPolicyAction(std::string_view action);
bool IsRecordAction(std::string_view action);

// What a policy is validated against: the vocabulary it must fit.
struct PolicyVocabulary {
  // The configured record categories: rules may name only these (or "*").
  std::vector<std::string> categories;
  // Roles the configuration binds principals to: the policy must declare every one of them.
  std::vector<std::string> required_roles;
};

// How a specially protected category restricts the permits that name it.
enum class Protection {
  kNone,
  kAuthor,   // only the record's author, unless the permit names the category and sets any_author
  kConsent,  // only with a consent or authorization id carried with the request, except for the
             // protection's exempt purposes (PATRQT: a patient's access to their own records)
};

struct AccessRequest {
  std::string_view role;
  std::string_view action;    // one of PolicyActions()
  std::string_view purpose;   // HL7 PurposeOfUse code
  std::string_view category;  // the record's category; empty for an action on no record
  bool is_author = false;     // the acting user created the record (version) decided on
  bool has_consent = false;   // the request carries a consent/authorization id
  bool break_glass = false;   // a break-glass window is open, or a reason to open one was given
};

struct Decision {
  bool allowed = false;
  // The rule that decided: a rule's name, "default-deny" when no rule permits, or
  // "protected:<category>" when a protected category's requirement is not met. Points into the
  // policy (valid as long as the snapshot is held).
  std::string_view rule;
  bool break_glass = false;  // allowed by a break-glass rule
};

// One rule as written in the file.
struct PolicyRule {
  std::string name;
  bool forbid = false;
  std::vector<std::string> roles;  // "*" for every declared role
  std::vector<std::string> actions;
  std::vector<std::string> categories;  // record actions only; "*": every unprotected category
  std::vector<std::string> purposes;    // "*" for every code
  bool author_only = false;             // only records the acting user authored
  bool any_author = false;              // a permit naming a kAuthor category: not only the author
  bool break_glass = false;             // matches only under break-glass (purposes ETREAT/BTG)
  std::string description;
  int line = 0;  // where the rule starts in its file
};

class AccessPolicy {
 public:
  // Parses and validates the whole file. InvalidArgument "<source>:<line>: rule '<name>': <what>"
  // for a syntax error, an unknown role, category, action or purpose, a rule that can never
  // match (or never take effect because forbids override it everywhere), a duplicate rule name,
  // or a required role the policy does not declare.
  static StatusOr<std::shared_ptr<const AccessPolicy>> Parse(std::string_view toml_text,
                                                             std::string_view source_name,
                                                             const PolicyVocabulary& vocabulary);
  // Reads `path` and parses it (NotFound / InvalidArgument naming the path).
  static StatusOr<std::shared_ptr<const AccessPolicy>> LoadFile(const std::string& path,
                                                                const PolicyVocabulary& vocabulary);

  // The decision for `request`. Forbids first (any match denies), then permits in file order
  // (the first match allows), else "default-deny". Unknown roles, actions, purposes or
  // categories are denied by "default-deny". Under 2 us at p99 for a 200-rule policy.
  Decision Decide(const AccessRequest& request) const;

  const std::string& name() const;                     // [policy] name
  const std::string& text() const;                     // the file as parsed
  const std::string& sha256_hex() const;               // SHA-256 of text()
  const std::vector<std::string>& roles() const;       // declared roles, in file order
  const std::vector<std::string>& categories() const;  // the vocabulary's categories
  const std::vector<PolicyRule>& rules() const;        // in file order
  Protection ProtectionOf(std::string_view category) const;
  // The PurposeOfUse codes that mean break-glass ([break_glass] purposes, default ETREAT, BTG)
  // and how long one window lasts ([break_glass] window_minutes, default 60).
  bool IsBreakGlassPurpose(std::string_view purpose) const;
  int64_t break_glass_window_seconds() const;

  ~AccessPolicy();
  AccessPolicy(const AccessPolicy&) = delete;
  AccessPolicy& operator=(const AccessPolicy&) = delete;

 private:
  struct Impl;
  explicit AccessPolicy(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The shipped default policy for a small practice (policies/default_policy.toml, compiled in).
std::string_view DefaultPolicyToml();

// The conditions a request may carry, enumerated by DiffPolicies and RunPolicyCases.
struct RequestConditions {
  bool is_author = false;
  bool has_consent = false;
  bool break_glass = false;
};

// One cell of the domain whose decision differs between two policies.
struct PolicyDiffCell {
  std::string role, action, category, purpose;  // category empty for actions on no record
  RequestConditions conditions;
  bool before_allowed = false, after_allowed = false;
  std::string before_rule, after_rule;
};
// Every cell (union of both policies' roles; the categories of `after`) whose allowed/denied
// outcome changes, in order role, action, category, purpose, conditions. Cells whose deciding
// rule changes but whose outcome does not are not listed. Roles are in name order, actions in
// PolicyActions() order, categories in `after`'s order ("" for actions on no record), purposes in
// AllPurposeOfUseCodes() order (the abstract root excluded), and conditions counted as the binary
// number (is_author, has_consent, break_glass) from 000 to 111.
std::vector<PolicyDiffCell> DiffPolicies(const AccessPolicy& before, const AccessPolicy& after);

// A table of expected decisions (TOML, `[[case]]` entries: role, action, purpose, category,
// author, consent, break_glass, expect = "allow"|"deny", optional rule) run against a policy.
struct PolicyCaseResult {
  int line = 0;
  std::string description;  // "physician read clinical_note TREAT"
  bool passed = false;
  Decision got;
  std::string expected;  // "allow" / "deny" (and ", rule X" when the case names one)
};
// InvalidArgument "<source>:<line>: ..." if the cases file is malformed or names something the
// policy does not know.
StatusOr<std::vector<PolicyCaseResult>> RunPolicyCases(const AccessPolicy& policy,
                                                       std::string_view cases_toml,
                                                       std::string_view source_name);

}  // namespace phivault::policies
