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

namespace {

using phivault::policies::AccessPolicy;
using phivault::policies::AccessRequest;
using Clock = std::chrono::steady_clock;

const std::vector<std::string> kCategories = {
    "demographics",   "insurance",          "clinical_note", "lab_result",
    "imaging",        "medication",         "billing",       "consent",
    "correspondence", "psychotherapy_note", "substance_use"};
constexpr int kUnprotected = 9;  // the first nine categories
constexpr int kRoles = 20;
constexpr int kPermits = 180;
constexpr int kForbids = 20;

std::string Role(int i) { return "r" + std::to_string(i % kRoles); }

std::string List(const std::vector<std::string>& items) {
  std::string out = "[";
  for (const std::string& s : items) out += (out.size() > 1 ? ", \"" : "\"") + s + "\"";
  return out + "]";
}

// 180 permits over 20 roles (a third of them for every role) and 20 forbids.
std::string GeneratePolicy() {
  const std::vector<std::string> record = {"create", "read", "amend", "list", "disclose", "export"};
  const std::vector<std::string> other = {"account",  "report",  "audit",   "review",
                                          "restrict", "request", "contact", "suspend",
                                          "hold",     "sweep",   "policy",  "admin"};
  const std::vector<std::string> purposes = {"TREAT", "HPAYMT",  "HOPERAT", "PATRQT",
                                             "COC",   "CAREMGT", "ELIGVER"};
  std::string t = "[policy]\nname = \"bench-200\"\n[roles]\n";
  for (int i = 0; i < kRoles; ++i) t += Role(i) + " = \"generated\"\n";
  t += "[protected.psychotherapy_note]\nrequire = \"author\"\n";
  t += "[protected.substance_use]\nrequire = \"consent\"\nexempt_purposes = [\"PATRQT\"]\n";
  for (int i = 0; i < kPermits; ++i) {
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
  return t;
}

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
  const std::string text = GeneratePolicy();
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
