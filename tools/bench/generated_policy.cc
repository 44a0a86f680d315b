#include "tools/bench/generated_policy.h"

namespace phivault::bench {
namespace {

constexpr int kUnprotected = 9;  // the first nine categories
constexpr int kRoles = 20;
constexpr int kForbids = 20;

std::string Role(int i) { return "r" + std::to_string(i % kRoles); }

std::string List(const std::vector<std::string>& items) {
  std::string out = "[";
  for (const std::string& s : items) out += (out.size() > 1 ? ", \"" : "\"") + s + "\"";
  return out + "]";
}

}  // namespace

const std::vector<std::string>& GeneratedPolicyCategories() {
  static const std::vector<std::string> categories = {
      "demographics",   "insurance",          "clinical_note", "lab_result",
      "imaging",        "medication",         "billing",       "consent",
      "correspondence", "psychotherapy_note", "substance_use"};
  return categories;
}

std::string GeneratePolicy(const GeneratedPolicyOptions& options) {
  const std::vector<std::string>& kCategories = GeneratedPolicyCategories();
  const std::vector<std::string> record = {"create", "read", "amend", "list", "disclose", "export"};
  const std::vector<std::string> other = {"account",  "report",  "audit",   "review",
                                          "restrict", "request", "contact", "suspend",
                                          "hold",     "sweep",   "policy",  "admin"};
  const std::vector<std::string> purposes = {"TREAT", "HPAYMT",  "HOPERAT", "PATRQT",
                                             "COC",   "CAREMGT", "ELIGVER"};
  std::string t = "[policy]\nname = \"" + options.name + "\"\n[roles]\n";
  for (int i = 0; i < kRoles; ++i) t += Role(i) + " = \"generated\"\n";
  t += options.extra_roles;
  t += "[protected.psychotherapy_note]\nrequire = \"author\"\n";
  t += "[protected.substance_use]\nrequire = \"consent\"\nexempt_purposes = [\"PATRQT\"]\n";
  for (int i = 0; i < options.permits; ++i) {
    t += "[[permit]]\nname = \"permit-" + std::to_string(i) + "\"\n";
    t += "roles = " + (i % 3 == 0 ? std::string("[\"*\"]") : List({Role(i), Role(i + 1 + i % 7)})) +
         "\n";
    if (i % 17 == 0) {
      t += "actions = [\"read\", \"list\"]\ncategories = [\"*\"]\npurposes = [\"ETREAT\"]\n";
      t += "break_glass = true\n";
      continue;
    }
    if (i % 5 == 4) {
      t += "actions = " + List({other[i % 12], other[(i + 5) % 12]}) + "\n";
    } else {
      t += "actions = " + List({record[i % 6], record[(i + 1) % 6]}) + "\n";
      std::vector<std::string> cats;
      if (i % 4 == 0) {
        cats = {"*"};
      } else {
        cats = {kCategories[i % kUnprotected], kCategories[(i + 3) % kUnprotected]};
      }
      if (i % 10 == 1) cats.push_back("substance_use");
      if (i % 10 == 2) cats.push_back("psychotherapy_note");
      t += "categories = " + List(cats) + "\n";
      if (i % 11 == 3) t += "author_only = true\n";
    }
    t += "purposes = " + List({purposes[i % 7], purposes[(i + 2) % 7]}) + "\n";
  }
  for (int j = 0; j < kForbids; ++j) {
    t += "[[forbid]]\nname = \"forbid-" + std::to_string(j) + "\"\n";
    t += "roles = " + List({Role(j)}) + "\nactions = [\"read\", \"disclose\"]\n";
    t += "categories = " + List({kCategories[j % kUnprotected]}) + "\n";
    t += "purposes = [\"HMARKT\", \"HRESCH\"]\n";
  }
  return t + options.extra_rules;
}

}  // namespace phivault::bench
