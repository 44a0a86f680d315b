// Audited-request throughput with and without the Merkle tree (docs/benchmarks.md, part 1).
#include <benchmark/benchmark.h>

#include <memory>
#include <optional>
#include <string>

#include "tools/bench/bench_env.h"
#include "tools/bench/benchmarks.h"

namespace phivault::bench {
namespace {

enum class Operation { kRead, kCreate };

struct ThroughputVault {
  explicit ThroughputVault(bool merkle)
      : dir("phivault-bench-throughput"),
        env(ValueOrDie(VaultEnv::Open({dir.path(), merkle}), "opening the vault")) {
    auto ctx = Context("dr.synthetic", "physician", "TREAT");
    record_id = ValueOrDie(env->service().CreateRecord(ctx, SmallRecord("bench-read-patient")),
                           "creating the record to read")
                    .record_id;
  }
  ScratchDir dir;
  std::unique_ptr<VaultEnv> env;
  std::string record_id;
};

// Made by thread 0 before the benchmark loop and destroyed by it after: the loop starts and ends
// with a barrier across all threads, so no other thread touches it outside the loop.
std::unique_ptr<ThroughputVault> g_vault;

void AuditedRequests(benchmark::State& state, Operation operation, bool merkle) {
  if (state.thread_index() == 0) g_vault = std::make_unique<ThroughputVault>(merkle);
  const std::string thread = std::to_string(state.thread_index());
  daemon::RequestContext ctx = Context("dr.synthetic-" + thread, "physician", "TREAT");
  uint64_t n = 0;
  for (auto _ : state) {
    ctx.request_id = "bench-" + thread + "-" + std::to_string(++n);
    if (operation == Operation::kRead) {
      auto record = g_vault->env->service().ReadRecord(ctx, g_vault->record_id, std::nullopt,
                                                       /*with_content=*/true);
      CheckOk(record.status(), "ReadRecord");
      benchmark::DoNotOptimize(record);
    } else {
      auto meta = g_vault->env->service().CreateRecord(
          ctx, SmallRecord("bench-patient-" + thread + "-" + std::to_string(n % 1000)));
      CheckOk(meta.status(), "CreateRecord");
      benchmark::DoNotOptimize(meta);
    }
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    state.counters["audit_entries"] =
        benchmark::Counter(static_cast<double>(g_vault->env->ledger().size()));
    g_vault.reset();
  }
}

}  // namespace

void RegisterThroughputBenchmarks() {
  struct Variant {
    const char* name;
    Operation operation;
    bool merkle;
  };
  // Alternating with and without the tree, so that drift of the machine over the run (other load,
  // the disk's write cache) does not favour one side.
  const Variant variants[] = {
      {"AuditedRead/ledger_only", Operation::kRead, false},
      {"AuditedRead/ledger_merkle", Operation::kRead, true},
      {"AuditedCreate/ledger_only", Operation::kCreate, false},
      {"AuditedCreate/ledger_merkle", Operation::kCreate, true},
  };
  for (const Variant& v : variants) {
    benchmark::RegisterBenchmark(v.name, AuditedRequests, v.operation, v.merkle)
        ->Threads(1)
        ->Threads(16)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  }
}

}  // namespace phivault::bench
