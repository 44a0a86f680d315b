// phivault_bench --policy-share: what access-policy evaluation costs an audited read, in one run
// (docs/benchmarks.md, "Access policy and audited reads").
//
// Two vaults, one with the shipped default policy and one with a generated 200-rule policy, are
// read alternately by 1 and by 16 client threads; each read is a VaultService::ReadRecord with
// content and its synced audit entry. Apart from that, the policy work one of those reads makes
// (the upfront check over the categories, the decision on the record with its break-glass lookup,
// and the patient's restriction lookup: what service.cc's DecideUpfront and Decide do) is timed on
// its own, single-threaded, with the same policy text and the same request.
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>

#include "daemon/patient_state.h"
#include "daemon/policy_loader.h"
#include "policies/access_policy.h"
#include "storage/records.h"
#include "tools/bench/bench_env.h"
#include "tools/bench/benchmarks.h"
#include "tools/bench/generated_policy.h"

namespace phivault::bench {
namespace {

using Clock = std::chrono::steady_clock;

int64_t ProcessCpuNs() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// The default policy's roles and rules appended to the generated ones, so that the configuration's
// roles are declared and the physician's read is decided after the generated "*" rules of its
// cell. 182 generated rules + the default's 18 = 200.
std::string LargePolicyText() {
  const std::string defaults(policies::DefaultPolicyToml());
  const size_t roles = defaults.find("[roles]\n") + std::string("[roles]\n").size();
  const size_t roles_end = defaults.find("\n[", roles) + 1;
  const size_t rules = std::min(defaults.find("[[permit]]"), defaults.find("[[forbid]]"));
  GeneratedPolicyOptions options;
  options.permits = 162;
  options.extra_roles = defaults.substr(roles, roles_end - roles);
  options.extra_rules = defaults.substr(rules);
  return GeneratePolicy(options);
}

struct ReadVault {
  ReadVault(std::string label, const std::string& policy_toml)
      : name(std::move(label)),
        dir("phivault-bench-policy-share"),
        env(ValueOrDie(VaultEnv::Open({dir.path(), true, policy_toml}), "opening the vault")),
        policy(ValueOrDie(policies::AccessPolicy::Parse(
                              policy_toml.empty() ? policies::DefaultPolicyToml() : policy_toml,
                              "bench-policy.toml", daemon::PolicyVocabularyFor(env->config())),
                          "parsing the policy")),
        state(env->store(), env->keyring().audit_key(), [this](std::string_view patient) {
          return storage::RecordRepository(env->store(), env->keyring()).PatientBlindId(patient);
        }) {
    const auto author = Context("dr.synthetic", "physician", "TREAT");
    record = ValueOrDie(env->service().CreateRecord(author, SmallRecord("bench-read-patient")),
                        "creating the record to read");
    CheckOk(state.Load(), "loading the patient state");
  }
  std::string name;
  ScratchDir dir;
  std::unique_ptr<VaultEnv> env;
  std::shared_ptr<const policies::AccessPolicy> policy;  // the same text as the service's
  daemon::PatientState state;
  storage::RecordMetadata record;
};

struct ReadRun {
  double reads_per_second = 0;
  double wall_us_per_read = 0;  // per client: threads * wall / reads
  double cpu_us_per_read = 0;   // process CPU (all threads, RocksDB's included) / reads
};

ReadRun AuditedReads(ReadVault& vault, int threads, double seconds) {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> reads{0};
  std::vector<std::thread> clients;
  const int64_t cpu_start = ProcessCpuNs();
  const auto start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    clients.emplace_back([&, t] {
      daemon::RequestContext ctx =
          Context("dr.synthetic-" + std::to_string(t), "physician", "TREAT");
      uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        ctx.request_id = "share-" + std::to_string(t) + "-" + std::to_string(++n);
        auto r = vault.env->service().ReadRecord(ctx, vault.record.record_id, std::nullopt, true);
        CheckOk(r.status(), "ReadRecord");
        benchmark::DoNotOptimize(r);
      }
      reads += n;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& c : clients) c.join();
  const double wall_ns = static_cast<double>((Clock::now() - start).count());
  const double cpu_ns = static_cast<double>(ProcessCpuNs() - cpu_start);
  const double n = static_cast<double>(reads.load());
  return {n / (wall_ns / 1e9), wall_ns * threads / n / 1e3, cpu_ns / n / 1e3};
}

// Nanoseconds per read of the policy work alone, as service.cc does it for the bench's read.
double PolicyWorkNs(const ReadVault& vault, uint64_t iterations) {
  const policies::AccessPolicy& policy = *vault.policy;
  const storage::RecordMetadata& record = vault.record;
  const daemon::RequestContext ctx = Context("dr.synthetic-0", "physician", "TREAT");
  const auto start = Clock::now();
  for (uint64_t i = 0; i < iterations; ++i) {
    // DecideUpfront: some category this role may read for this purpose.
    std::string upfront_rule;
    for (const std::string& category : policy.categories()) {
      policies::AccessRequest r{ctx.role,
                                "read",
                                ctx.purpose,
                                category,
                                true,
                                true,
                                policy.IsBreakGlassPurpose(ctx.purpose)};
      const policies::Decision d = policy.Decide(r);
      if (d.allowed) {
        upfront_rule = std::string(d.rule);
        break;
      }
    }
    // Decide on the record: the policy with the request's conditions, then the restrictions.
    policies::AccessRequest r{ctx.role, "read", ctx.purpose, record.category};
    r.is_author = !record.created_by.empty() && record.created_by == ctx.user;
    r.has_consent = !ctx.consent.empty();
    if (policy.IsBreakGlassPurpose(ctx.purpose)) {
      r.break_glass = !ctx.break_glass_reason.empty() ||
                      vault.state
                          .FindOpen(ctx.user, record.patient_id,
                                    std::chrono::duration_cast<std::chrono::microseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count())
                          .has_value();
    }
    const policies::Decision d = policy.Decide(r);
    std::string rule(d.rule);
    if (d.allowed) {
      const std::vector<daemon::Restriction> all =
          vault.state.RestrictionsOf(record.patient_id, false);
      if (!all.empty()) {
        benchmark::DoNotOptimize(
            daemon::FindBlocking(all, record.record_id, record.category, ctx.purpose));
      }
    }
    benchmark::DoNotOptimize(upfront_rule);
    benchmark::DoNotOptimize(rule);
  }
  return static_cast<double>((Clock::now() - start).count()) / static_cast<double>(iterations);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}
double Median(const std::vector<ReadRun>& runs, double ReadRun::*field) {
  std::vector<double> v;
  for (const ReadRun& r : runs) v.push_back(r.*field);
  return Median(std::move(v));
}

}  // namespace

int RunPolicyShare(const PolicyShareOptions& options) {
  ReadVault default_vault("default", "");
  ReadVault large_vault("200-rule", LargePolicyText());
  std::printf("policies: %s (%zu rules), %s (%zu rules); %d rounds of %.1f s per measurement\n",
              default_vault.policy->name().c_str(), default_vault.policy->rules().size(),
              large_vault.policy->name().c_str(), large_vault.policy->rules().size(),
              options.rounds, options.seconds);
  ReadVault* vaults[] = {&default_vault, &large_vault};
  const int thread_counts[] = {1, 16};
  // [vault][threads] per round, and the policy work per round.
  std::vector<ReadRun> runs[2][2];
  std::vector<double> policy_ns[2];
  for (int round = 1; round <= options.rounds; ++round) {
    for (int k = 0; k < 2; ++k) {
      const int tc = thread_counts[k];
      // Alternate which policy goes first, so that drift of the machine favours neither.
      for (int j = 0; j < 2; ++j) {
        const int v = (round + j) % 2;
        const ReadRun run = AuditedReads(*vaults[v], tc, options.seconds);
        runs[v][k].push_back(run);
        std::printf(
            "round %d  %-8s %2d threads: %8.0f reads/s  %8.1f us/read wall  %6.1f us/read CPU\n",
            round, vaults[v]->name.c_str(), tc, run.reads_per_second, run.wall_us_per_read,
            run.cpu_us_per_read);
      }
    }
    for (int v = 0; v < 2; ++v) {
      PolicyWorkNs(*vaults[v], options.policy_iterations / 10);  // warm-up
      policy_ns[v].push_back(PolicyWorkNs(*vaults[v], options.policy_iterations));
      std::printf("round %d  %-8s policy work alone: %.0f ns/read\n", round,
                  vaults[v]->name.c_str(), policy_ns[v].back());
    }
    std::fflush(stdout);
  }

  std::printf("\nmedians over %d rounds:\n", options.rounds);
  for (int v = 0; v < 2; ++v) {
    const double p = Median(policy_ns[v]);
    std::vector<double> share1, share16;
    for (int r = 0; r < options.rounds; ++r) {
      share1.push_back(policy_ns[v][r] / (runs[v][0][r].wall_us_per_read * 1e3));
      share16.push_back(policy_ns[v][r] / (runs[v][1][r].cpu_us_per_read * 1e3));
    }
    std::printf(
        "  %-8s policy %.0f ns/read; 1 thread: %.1f us/read, policy share %.3f%% of latency; "
        "16 threads: %.0f reads/s, %.1f us CPU/read, policy share %.3f%% of CPU\n",
        vaults[v]->name.c_str(), p, Median(runs[v][0], &ReadRun::wall_us_per_read),
        100 * Median(share1), Median(runs[v][1], &ReadRun::reads_per_second),
        Median(runs[v][1], &ReadRun::cpu_us_per_read), 100 * Median(share16));
  }
  for (int k = 0; k < 2; ++k) {
    std::vector<double> ratio;
    for (int r = 0; r < options.rounds; ++r) {
      ratio.push_back(runs[1][k][r].reads_per_second / runs[0][k][r].reads_per_second);
    }
    std::printf("  200-rule / default throughput, %2d threads: median %.3f (per round:",
                thread_counts[k], Median(ratio));
    for (double x : ratio) std::printf(" %.3f", x);
    std::printf(")\n");
  }
  return 0;
}

}  // namespace phivault::bench
