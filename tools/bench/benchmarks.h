// The benchmark families of phivault_bench, registered with Google Benchmark by main.cc.
// docs/benchmarks.md has the command lines, the numbers and what they mean.
#pragma once

#include <cstdint>
#include <string>

namespace phivault::bench {

// AuditedRead/* and AuditedCreate/*: audited service requests per second on a fresh vault, each
// appending one synced audit entry; "ledger_only" (plain ledger, no audit log) against
// "ledger_merkle" (the verifiable audit log as phivaultd runs it), 1 and 16 client threads.
void RegisterThroughputBenchmarks();

struct LargeLogOptions {
  std::string db_dir;             // the generated vault; reused when it already holds the entries
  uint64_t entries = 10'000'000;  // audit entries to generate (targets included)
  uint64_t patients = 100'000;    // synthetic patients the entries are spread over
  int generation_threads = 128;   // concurrent clients while generating (group commit batches them)
};

// Accounting/* and AccessReport/*: report latency for one patient of a large audit log, generated
// on first use; MerkleProof/* on the same log's tree.
void RegisterLargeLogBenchmarks(const LargeLogOptions& options);
// Closes the large log's vault if a benchmark opened it (and removes it if it was a scratch one).
void CloseLargeLog();

// MerkleAppend, MerkleLeafHash: per-entry cost of the Merkle tree on its own.
void RegisterMerkleMicroBenchmarks();

struct PolicyShareOptions {
  int rounds = 3;                       // each measures every variant once
  double seconds = 2;                   // per throughput measurement
  uint64_t policy_iterations = 200000;  // policy work alone, per round and policy
};
// --policy-share (not a Google Benchmark family): audited reads with the default and a 200-rule
// policy at 1 and 16 threads, and the policy work of one read timed alone, in alternating rounds;
// prints each measurement and the policy's share of a read. Returns the process exit status.
int RunPolicyShare(const PolicyShareOptions& options);

}  // namespace phivault::bench
