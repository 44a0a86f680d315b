#include "daemon/policy_loader.h"

#include <algorithm>

namespace phivault::daemon {

policies::PolicyVocabulary PolicyVocabularyFor(const Config& config) {
  policies::PolicyVocabulary v;
  v.categories = config.categories;
  auto add = [&](const std::string& role) {
    if (std::find(v.required_roles.begin(), v.required_roles.end(), role) ==
        v.required_roles.end()) {
      v.required_roles.push_back(role);
    }
  };
  for (const auto& app : config.applications) {
    for (const auto& role : app.roles) add(role);
  }
  for (const auto& op : config.operators) add(op.role);
  return v;
}

StatusOr<std::shared_ptr<const policies::AccessPolicy>> LoadAccessPolicy(const Config& config) {
  const policies::PolicyVocabulary vocabulary = PolicyVocabularyFor(config);
  if (config.policy_file.empty()) {
    return policies::AccessPolicy::Parse(policies::DefaultPolicyToml(), "default policy",
                                         vocabulary);
  }
  return policies::AccessPolicy::LoadFile(config.policy_file, vocabulary);
}

}  // namespace phivault::daemon
