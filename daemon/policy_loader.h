// Loading the access policy the configuration names, against the configuration's vocabulary.
#pragma once

#include <memory>

#include "base/status.h"
#include "daemon/config.h"
#include "policies/access_policy.h"

namespace phivault::daemon {

// What a policy must fit: the configured categories, and every role the configuration binds a
// principal to (the configured roles, each application's roles, each operator's role and the
// compliance role) must be declared.
policies::PolicyVocabulary PolicyVocabularyFor(const Config& config);

// The policy of `config.policy_file`, or the shipped default policy when none is named.
// InvalidArgument naming the file, line and rule if it does not validate.
StatusOr<std::shared_ptr<const policies::AccessPolicy>> LoadAccessPolicy(const Config& config);

}  // namespace phivault::daemon
