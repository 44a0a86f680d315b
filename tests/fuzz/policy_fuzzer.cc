// The access policy file (policies/access_policy.h AccessPolicy::Parse), against the vocabulary of
// the default configuration, as LoadAccessPolicy and POST /v1/policy/check read it; an accepted
// policy then decides a request.
#include "daemon/config.h"
#include "daemon/policy_loader.h"
#include "policies/access_policy.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

const phivault::policies::PolicyVocabulary& Vocabulary() {
  static const phivault::policies::PolicyVocabulary* vocabulary = [] {
    phivault::daemon::Config config;
    config.roles = phivault::daemon::DefaultRoles();
    config.categories = phivault::daemon::DefaultCategories();
    return new phivault::policies::PolicyVocabulary(phivault::daemon::PolicyVocabularyFor(config));
  }();
  return *vocabulary;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto policy = phivault::policies::AccessPolicy::Parse(phivault::fuzz::AsText(data, size),
                                                        "policy.toml", Vocabulary());
  if (policy.ok()) {
    phivault::policies::AccessRequest request;
    request.role = "physician";
    request.action = "record.read";
    request.category = "clinical-note";
    request.purpose = "TREAT";
    (void)(*policy)->Decide(request);
  }
  return 0;
}
