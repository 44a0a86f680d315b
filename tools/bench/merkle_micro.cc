// The Merkle tree's own per-entry cost, without the ledger or the service (docs/benchmarks.md,
// part 3).
#include <benchmark/benchmark.h>

#include <memory>
#include <string>

#include "storage/merkle.h"
#include "tools/bench/bench_env.h"
#include "tools/bench/benchmarks.h"

namespace phivault::bench {
namespace {

// About the size of a read's canonical audit entry (sealed PHI included).
std::string EntryBytes(uint64_t i) { return std::string(560, 'e') + std::to_string(i); }

void LeafHash(benchmark::State& state) {
  const std::string entry = EntryBytes(0);
  for (auto _ : state) benchmark::DoNotOptimize(storage::MerkleLeafHash(entry));
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(entry.size()));
}

// Append stages the leaf and the perfect subtrees it completes; one unsynced write per
// state.range(0) leaves, as the ledger writes one batch per group.
void Append(benchmark::State& state) {
  ScratchDir dir("phivault-bench-merkle");
  storage::RocksStoreOptions options;
  options.path = dir.path() + "/db";
  auto store = ValueOrDie(storage::OpenRocksStore(options), "opening the store");
  auto tree = ValueOrDie(storage::MerkleTree::Open(*store), "opening the tree");
  const auto group = static_cast<uint64_t>(state.range(0));
  const storage::MerkleHash leaf = storage::MerkleLeafHash(EntryBytes(0));
  storage::WriteBatch batch;
  for (auto _ : state) {
    tree->Append(leaf, batch);
    if (tree->pending_size() % group == 0) {
      CheckOk(store->Write(batch, /*sync=*/false), "writing the tree");
      tree->Commit();
      batch = storage::WriteBatch();
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["tree_size"] = static_cast<double>(tree->pending_size());
}

}  // namespace

void RegisterMerkleMicroBenchmarks() {
  benchmark::RegisterBenchmark("MerkleLeafHash", LeafHash);
  benchmark::RegisterBenchmark("MerkleAppend", Append)->Arg(1)->Arg(16)->Arg(1024);
}

}  // namespace phivault::bench
