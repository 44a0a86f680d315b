// `phivault policy ...`: the access policy in force (check, show, history, reload) and, without
// a daemon, the policy engine itself on files (test, diff).
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "daemon/config.h"
#include "policies/access_policy.h"
#include "tools/cli_internal.h"

namespace phivault::tools {
namespace {

int RunCheck(client::Client& c, const client::Actor& actor, const Globals& g,
             const client::PolicyCheckQuery& query) {
  auto r = c.CheckPolicy(actor, query);
  if (!r.ok()) return Fail(r.error());
  if (g.json) {
    PrintJson(client::ToJson(*r));
  } else {
    std::cout << (r->allowed ? "allow" : "deny") << "\n"
              << "rule:        " << Printable(r->rule) << "\n"
              << "category:    " << Printable(r->category) << (r->is_author ? " (author)" : "")
              << "\n"
              << "explanation: " << Printable(r->explanation) << "\n";
  }
  return r->allowed ? kExitOk : kExitDenied;
}

std::string Until(const std::optional<std::string>& until) {
  return until ? Printable(*until) : "(in force)";
}

int RunShow(client::Client& c, const client::Actor& actor, const Globals& g,
            const std::string& at) {
  auto v = c.ShowPolicy(actor, Opt(at));
  if (!v.ok()) return Fail(v.error());
  if (g.json) {
    PrintJson(client::ToJson(*v));
    return kExitOk;
  }
  // The text alone on standard output, so that it can be saved and compared with `policy diff`.
  std::cerr << "phivault: policy \"" << Printable(v->name) << "\" (sha256 " << Printable(v->sha256)
            << "), in force from " << Printable(v->in_force_from) << " until "
            << Until(v->in_force_until) << ", audit seq " << v->audit_seq << "\n";
  std::cout << v->text;
  if (!v->text.empty() && v->text.back() != '\n') std::cout << "\n";
  return kExitOk;
}

int RunHistory(client::Client& c, const client::Actor& actor, const Globals& g) {
  auto versions = c.PolicyHistory(actor);
  if (!versions.ok()) return Fail(versions.error());
  if (g.json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& v : *versions) list.push_back(client::ToJson(v));
    PrintJson({{"versions", list}});
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "SHA256", "IN FORCE FROM", "UNTIL", "AUDIT SEQ"}};
  for (const auto& v : *versions) {
    rows.push_back({Printable(v.name), Printable(v.sha256), Printable(v.in_force_from),
                    Until(v.in_force_until), std::to_string(v.audit_seq)});
  }
  PrintTable(rows);
  return kExitOk;
}

int RunReload(client::Client& c, const client::Actor& actor, const Globals& g) {
  auto r = c.ReloadPolicy(actor);
  if (!r.ok()) return Fail(r.error());
  if (g.json) {
    PrintJson({{"name", r->name},
               {"sha256", r->sha256},
               {"rules", r->rules},
               {"changed", r->changed},
               {"audit_seq", r->audit_seq}});
    return kExitOk;
  }
  std::cout << (r->changed ? "reloaded" : "unchanged") << ": policy \"" << Printable(r->name)
            << "\" (sha256 " << Printable(r->sha256) << ", " << r->rules << " rules), audit seq "
            << r->audit_seq << "\n";
  return kExitOk;
}

// The vocabulary a policy file is checked against: the categories and roles of `config_path`,
// or the daemon's default categories and no required roles. Exit code in `*rc`.
std::optional<policies::PolicyVocabulary> Vocabulary(const std::string& config_path, int* rc) {
  *rc = kExitOk;
  if (config_path.empty()) {
    return policies::PolicyVocabulary{.categories = daemon::DefaultCategories()};
  }
  auto config = daemon::LoadConfig(config_path);
  if (!config.ok()) {
    *rc = UsageError("--config: " + config.status().message());
    return std::nullopt;
  }
  return policies::PolicyVocabulary{.categories = config->categories,
                                    .required_roles = config->roles};
}

// The policy in `path`, or nullptr once the reason it cannot be used (naming file:line) is printed.
std::shared_ptr<const policies::AccessPolicy> Load(const std::string& path,
                                                   const policies::PolicyVocabulary& vocabulary) {
  auto policy = policies::AccessPolicy::LoadFile(path, vocabulary);
  if (!policy.ok()) {
    PrintError("invalid policy", Printable(policy.status().message()));
    return nullptr;
  }
  return std::move(policy).value();
}

std::string Outcome(bool allowed, std::string_view rule) {
  return std::string(allowed ? "allow" : "deny") + " (rule: " + Printable(rule) + ")";
}

int RunTest(const Globals& g, const std::string& config, const std::string& policy_file,
            const std::string& cases_file) {
  int rc = kExitOk;
  auto vocabulary = Vocabulary(config, &rc);
  if (!vocabulary) return rc;
  const auto policy = Load(policy_file, *vocabulary);
  if (!policy) return kExitUsage;
  std::string error;
  auto cases = ReadInput(cases_file, &error);
  if (!cases) {
    PrintError("cannot read the cases", error);
    return kExitUsage;
  }
  auto results = policies::RunPolicyCases(*policy, *cases, cases_file);
  if (!results.ok()) {
    PrintError("invalid cases", Printable(results.status().message()));
    return kExitUsage;
  }
  size_t failed = 0;
  nlohmann::json list = nlohmann::json::array();
  for (const auto& r : *results) {
    if (!r.passed) ++failed;
    if (g.json) {
      list.push_back({{"line", r.line},
                      {"description", r.description},
                      {"passed", r.passed},
                      {"expected", r.expected},
                      {"got", {{"allowed", r.got.allowed}, {"rule", std::string(r.got.rule)}}}});
    } else if (!r.passed) {
      std::cout << "FAIL " << Printable(cases_file) << ":" << r.line << ": "
                << Printable(r.description) << ": expected " << Printable(r.expected) << ", got "
                << Outcome(r.got.allowed, r.got.rule) << "\n";
    }
  }
  if (g.json) {
    PrintJson({{"policy", policy->name()},
               {"sha256", policy->sha256_hex()},
               {"cases", results->size()},
               {"failed", failed},
               {"results", list}});
  } else {
    std::cout << results->size() << " cases, " << failed << " failed\n";
  }
  return failed == 0 ? kExitOk : kExitError;
}

// "role action category purpose [author] [consent] [break-glass]"; "-" for no category.
std::string Cell(const policies::PolicyDiffCell& d) {
  std::string out = Printable(d.role) + " " + Printable(d.action) + " " +
                    (d.category.empty() ? "-" : Printable(d.category)) + " " + Printable(d.purpose);
  if (d.conditions.is_author) out += " author";
  if (d.conditions.has_consent) out += " consent";
  if (d.conditions.break_glass) out += " break-glass";
  return out;
}

int RunDiff(const Globals& g, const std::string& config, const std::string& old_file,
            const std::string& new_file) {
  int rc = kExitOk;
  auto vocabulary = Vocabulary(config, &rc);
  if (!vocabulary) return rc;
  const auto before = Load(old_file, *vocabulary);
  if (!before) return kExitUsage;
  const auto after = Load(new_file, *vocabulary);
  if (!after) return kExitUsage;
  const std::vector<policies::PolicyDiffCell> cells = policies::DiffPolicies(*before, *after);
  size_t allowed = 0, denied = 0;
  nlohmann::json list = nlohmann::json::array();
  for (const auto& d : cells) {
    (d.after_allowed ? allowed : denied) += 1;
    if (g.json) {
      list.push_back(
          {{"role", d.role},
           {"action", d.action},
           {"category", d.category.empty() ? nlohmann::json(nullptr) : nlohmann::json(d.category)},
           {"purpose", d.purpose},
           {"author", d.conditions.is_author},
           {"consent", d.conditions.has_consent},
           {"break_glass", d.conditions.break_glass},
           {"before", {{"allowed", d.before_allowed}, {"rule", d.before_rule}}},
           {"after", {{"allowed", d.after_allowed}, {"rule", d.after_rule}}}});
    } else if (d.after_allowed) {
      std::cout << "+ allow  " << Cell(d) << "  (rule: " << Printable(d.after_rule) << ")\n";
    } else {
      std::cout << "- deny   " << Cell(d) << "  (rule: " << Printable(d.after_rule) << ", was rule "
                << Printable(d.before_rule) << ")\n";
    }
  }
  if (g.json) {
    PrintJson({{"newly_allowed", allowed}, {"newly_denied", denied}, {"cells", list}});
  } else {
    std::cout << allowed << " cells newly allowed, " << denied << " newly denied\n";
  }
  return cells.empty() ? kExitOk : kExitError;
}

}  // namespace

PolicyCommands::PolicyCommands(CLI::App& app) {
  CLI::App* policy = app.add_subcommand("policy", "the access policy");
  policy->require_subcommand(1);
  policy->fallthrough();

  check_ = policy->add_subcommand(
      "check",
      "what the policy in force decides for a user (exit 0 allow, 3 deny); reads no record "
      "content");
  check_->add_option("--as", a_.as_user, "the user whose access is checked")->required();
  check_->add_option("--role", a_.role, "their role")->required();
  check_->add_option("--purpose", a_.purpose, "the HL7 PurposeOfUse code they would act with")
      ->required();
  std::vector<std::string> actions;
  std::string action_list;
  for (std::string_view action : policies::PolicyActions()) {
    actions.emplace_back(action);
    action_list += (action_list.empty() ? "" : ", ") + std::string(action);
  }
  check_->add_option("--action", a_.action, "policy action: " + action_list)
      ->required()
      ->check(CLI::IsMember(actions));
  CLI::Option* record = check_->add_option("--record", a_.record, "decide on this record");
  check_->add_option("--version", a_.version, "the record's version (default: latest)")
      ->needs(record)
      ->check(CLI::Range(1u, 0xffffffffu));
  check_
      ->add_option("--category", a_.category,
                   "decide on a record category (neither: an action on no record)")
      ->excludes(record);
  check_->add_flag("--author", a_.author, "with --category: as if --as wrote the record")
      ->needs("--category");
  check_->add_flag("--consent", a_.consent, "as if the request carried a consent id");
  check_->add_flag("--break-glass", a_.break_glass, "as if a break-glass reason were given");

  show_ = policy->add_subcommand(
      "show", "print the policy in force (or in force at --at); its text goes to stdout");
  show_->add_option("--at", a_.at, "YYYY-MM-DD or RFC 3339 UTC (default: now)");
  history_ = policy->add_subcommand("history", "every policy version that was in force");
  reload_ =
      policy->add_subcommand("reload", "make the daemon re-read its policy file (kept if invalid)");

  test_ = policy->add_subcommand(
      "test",
      "run a table of expected decisions against a policy file, locally (exit 0 all passed, "
      "1 some failed, 2 invalid file)");
  test_->add_option("policy", a_.policy_file, "policy file (TOML)")->required();
  test_->add_option("cases", a_.cases_file, "cases file (TOML, [[case]] entries)")->required();
  diff_ = policy->add_subcommand(
      "diff",
      "every decision that changes between two policy files, locally (exit 0 none, 1 some, 2 "
      "invalid file)");
  diff_->add_option("old", a_.old_file, "the policy in force (e.g. saved by `policy show`)")
      ->required();
  diff_->add_option("new", a_.new_file, "the proposed policy")->required();
  for (CLI::App* cmd : {test_, diff_}) {
    cmd->add_option("--config", a_.config,
                    "take categories and required roles from this phivault.toml (default: the "
                    "default categories, no required roles)");
  }
}

std::optional<int> PolicyCommands::RunLocal(const Globals& g) const {
  if (!test_->parsed() && !diff_->parsed()) return std::nullopt;
  if (test_->parsed()) return RunTest(g, a_.config, a_.policy_file, a_.cases_file);
  return RunDiff(g, a_.config, a_.old_file, a_.new_file);
}

std::optional<int> PolicyCommands::Run(client::Client& c, const client::Actor& actor,
                                       const Globals& g) const {
  if (check_->parsed()) {
    if (!IsPurposeOfUseCode(a_.purpose)) {
      return UsageError("policy check --purpose " + Printable(a_.purpose) +
                        " is not an HL7 PurposeOfUse code; the usual ones are " +
                        PurposeOfUseCodeList());
    }
    client::PolicyCheckQuery query{.as_user = a_.as_user,
                                   .role = a_.role,
                                   .purpose = a_.purpose,
                                   .action = a_.action,
                                   .record_id = Opt(a_.record),
                                   .category = Opt(a_.category),
                                   .author = a_.author,
                                   .consent = a_.consent,
                                   .break_glass = a_.break_glass};
    if (a_.version != 0) query.version = a_.version;
    return RunCheck(c, actor, g, query);
  }
  if (show_->parsed()) return RunShow(c, actor, g, a_.at);
  if (history_->parsed()) return RunHistory(c, actor, g);
  if (reload_->parsed()) return RunReload(c, actor, g);
  return std::nullopt;
}

}  // namespace phivault::tools
