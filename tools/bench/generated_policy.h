// A generated large access policy for the benchmarks (docs/benchmarks.md): permits over 20
// generated roles (a third of them for every role), 20 forbids, break-glass, author-only and
// protected-category rules, in the file format of docs/policy.md.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace phivault::bench {

// The default record categories, the first nine of them unprotected.
const std::vector<std::string>& GeneratedPolicyCategories();

struct GeneratedPolicyOptions {
  std::string name = "bench-200";  // the [policy] name
  int permits = 180;               // generated [[permit]]s; 20 [[forbid]]s are always added
  // Lines added to [roles] ("name = \"description\"") and rules appended after the generated ones,
  // e.g. the default policy's, so that the configuration's roles are declared and can act.
  std::string extra_roles;
  std::string extra_rules;
};

// The policy text.
std::string GeneratePolicy(const GeneratedPolicyOptions& options = {});

}  // namespace phivault::bench
