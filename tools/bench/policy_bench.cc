// phivault_policy_bench: latency of AccessPolicy::Decide on a generated 200-rule policy.
//
// Each Decide call is timed on its own with std::chrono::steady_clock (one now() before and one
// after), over a fixed mix of 4096 random requests, more than half of them denied, which scans
// every rule listed for their (role, action, category). The timer's own cost, measured the same way
// around an empty statement, is reported alongside and is included in the per-call figures. A
// second pass times the whole run at once for the mean without timer overhead. docs/benchmarks.md.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "policies/access_policy.h"
#include "policies/purpose_of_use.h"
#include "tools/bench/generated_policy.h"

namespace {

using phivault::policies::AccessPolicy;
using phivault::policies::AccessRequest;
using Clock = std::chrono::steady_clock;

const std::vector<std::string>& kCategories = phivault::bench::GeneratedPolicyCategories();
constexpr int kRoles = 20;

std::string Role(int i) { return "r" + std::to_string(i % kRoles); }

struct OwnedRequest {
  std::string role, action, purpose, category;
  bool author, consent, break_glass;
};

int64_t Percentile(const std::vector<int64_t>& sorted, double q) {
  return sorted[static_cast<size_t>(q * static_cast<double>(sorted.size() - 1))];
}

}  // namespace

int main(int argc, char** argv) {
  const uint64_t calls = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 2'000'000;
  if (calls == 0) {
    std::fprintf(stderr, "usage: phivault_policy_bench [calls (default 2000000)]\n");
    return 2;
  }
  const std::string text = phivault::bench::GeneratePolicy();
  const auto parse_start = Clock::now();
  auto parsed = AccessPolicy::Parse(text, "bench-200.toml", {kCategories, {}});
  const auto parse_ns = (Clock::now() - parse_start).count();
  if (!parsed.ok()) {
    std::fprintf(stderr, "%s\n", parsed.status().ToString().c_str());
    return 1;
  }
  const AccessPolicy& policy = **parsed;

  std::mt19937_64 rng(20261201);
  const auto codes = phivault::policies::AllPurposeOfUseCodes();
  const auto actions = phivault::policies::PolicyActions();
  std::vector<OwnedRequest> owned(4096);
  for (OwnedRequest& r : owned) {
    r.role = rng() % 50 == 0 ? "unknown-role" : Role(static_cast<int>(rng() % kRoles));
    r.action = std::string(actions[rng() % actions.size()]);
    r.purpose = std::string(codes[1 + rng() % (codes.size() - 1)].code);
    if (phivault::policies::IsRecordAction(r.action)) r.category = kCategories[rng() % 11];
    r.author = rng() % 2;
    r.consent = rng() % 2;
    r.break_glass = rng() % 4 == 0;
  }
  std::vector<AccessRequest> requests;
  for (const OwnedRequest& r : owned) {
    requests.push_back(
        {r.role, r.action, r.purpose, r.category, r.author, r.consent, r.break_glass});
  }

  uint64_t allowed = 0;
  for (const AccessRequest& r : requests) allowed += policy.Decide(r).allowed;  // warm-up

  std::vector<int64_t> ns(calls);
  for (uint64_t i = 0; i < calls; ++i) {
    const AccessRequest& r = requests[i % requests.size()];
    const auto start = Clock::now();
    const bool a = policy.Decide(r).allowed;
    ns[i] = (Clock::now() - start).count();
    allowed += a;
  }
  std::vector<int64_t> timer(calls / 4 + 1);
  for (int64_t& t : timer) {
    const auto start = Clock::now();
    t = (Clock::now() - start).count();
  }
  const auto batch_start = Clock::now();
  for (uint64_t i = 0; i < calls; ++i)
    allowed += policy.Decide(requests[i % requests.size()]).allowed;
  const double batch_mean =
      static_cast<double>((Clock::now() - batch_start).count()) / static_cast<double>(calls);

  std::sort(ns.begin(), ns.end());
  std::sort(timer.begin(), timer.end());
  std::printf("policy: %zu rules, %d roles, %zu categories; parsed and validated in %.1f ms\n",
              policy.rules().size(), kRoles, kCategories.size(),
              static_cast<double>(parse_ns) / 1e6);
  std::printf(
      "Decide, %llu calls over %zu requests (%.1f%% allowed):\n",
      static_cast<unsigned long long>(calls), requests.size(),
      100.0 * static_cast<double>(allowed) / static_cast<double>(2 * calls + requests.size()));
  std::printf("  per call: p50 %lld ns  p99 %lld ns  p99.9 %lld ns  max %lld ns\n",
              static_cast<long long>(Percentile(ns, 0.50)),
              static_cast<long long>(Percentile(ns, 0.99)),
              static_cast<long long>(Percentile(ns, 0.999)), static_cast<long long>(ns.back()));
  std::printf("  timer alone (included above): p50 %lld ns  p99 %lld ns\n",
              static_cast<long long>(Percentile(timer, 0.50)),
              static_cast<long long>(Percentile(timer, 0.99)));
  std::printf("  mean over one untimed run of %llu calls: %.1f ns\n",
              static_cast<unsigned long long>(calls), batch_mean);
  return 0;
}
