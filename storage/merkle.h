// The audit log's Merkle tree: RFC 9162 (Certificate Transparency v2) section 2.1 hashing,
// proofs and their verification, and an incremental tree persisted in the store.
//
// Leaf i of the tree is audit entry seq i + 1. Hashes:
//   leaf hash = SHA-256(0x00 || entry bytes)
//   node hash = SHA-256(0x01 || left || right)
//   MTH({})   = SHA-256("")
// A "perfect subtree" node (level, index) is the root over the 2^level leaves
// [index * 2^level, (index + 1) * 2^level). Every other subtree an RFC 9162 proof needs (the right
// edge of a tree whose size is not a power of two) is folded from perfect ones.
//
// Keys MerkleTree writes in Cf::kAuditTree (no other prefix 'n' may be used there):
//   'n' level(1 byte) BE64(index) -> 32-byte node hash, for every completed perfect subtree
//                                   (level 0: the leaf hashes).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "crypto/hash.h"
#include "storage/ledger.h"
#include "storage/store.h"

namespace phivault::storage {

using MerkleHash = crypto::Sha256Digest;

// SHA-256(0x00 || entry).
MerkleHash MerkleLeafHash(std::string_view entry);
// SHA-256(0x01 || left || right).
MerkleHash MerkleNodeHash(const MerkleHash& left, const MerkleHash& right);
// The root of the empty tree, SHA-256 of no bytes.
MerkleHash MerkleEmptyRoot();

// MTH over `leaf_hashes` by the recursive definition of RFC 9162 section 2.1.1. O(n) hashing:
// the reference the incremental tree is tested against, not for production paths.
MerkleHash MerkleReferenceRoot(std::span<const MerkleHash> leaf_hashes);

// The root of a tree given its compact range: the roots of the perfect subtrees that [0, size)
// splits into, largest (leftmost) first. The empty range gives MerkleEmptyRoot().
MerkleHash RootFromCompactRange(std::span<const MerkleHash> nodes);

// The root that an inclusion proof implies for `leaf_hash` at `leaf_index` in a tree of
// `tree_size` leaves (RFC 9162 section 2.1.3.2). InvalidArgument "leaf index N is not below tree
// size M"; DataLoss "inclusion proof has the wrong length" when the proof has too few or too
// many hashes for the position.
StatusOr<MerkleHash> RootFromInclusionProof(uint64_t leaf_index, uint64_t tree_size,
                                            const MerkleHash& leaf_hash,
                                            std::span<const MerkleHash> proof);
// OK only if the proof shows `leaf_hash` at `leaf_index` in the tree with `root`. Errors as
// RootFromInclusionProof, and DataLoss "inclusion proof does not lead to the root".
Status VerifyInclusionProof(uint64_t leaf_index, uint64_t tree_size, const MerkleHash& leaf_hash,
                            std::span<const MerkleHash> proof, const MerkleHash& root);

// OK only if the tree of `size1` leaves with `root1` is a prefix of the tree of `size2` leaves
// with `root2` (RFC 9162 section 2.1.4.2). Equal sizes need equal roots and an empty proof;
// size1 = 0 needs an empty proof. InvalidArgument "tree size 5 is below 8" if size2 < size1;
// DataLoss naming the failed check otherwise.
Status VerifyConsistencyProof(uint64_t size1, uint64_t size2, std::span<const MerkleHash> proof,
                              const MerkleHash& root1, const MerkleHash& root2);

// The compact range [0, size) in memory: O(log n) hashes, from which the root follows and to
// which leaves are appended with O(log n) work (amortised O(1)).
class CompactRange {
 public:
  CompactRange() = default;  // the empty tree
  // From the perfect-subtree roots of [0, size), largest first (as MerkleTree stores them).
  // InvalidArgument if `nodes` does not have one hash per set bit of `size`.
  static StatusOr<CompactRange> FromNodes(uint64_t size, std::vector<MerkleHash> nodes);

  // Called for every perfect subtree an append completes, the new leaf (level 0) included.
  using NodeFn = std::function<void(uint8_t level, uint64_t index, const MerkleHash& hash)>;
  // Appends a leaf hash; reports the nodes it completes to `on_node` if set.
  void Append(const MerkleHash& leaf_hash, const NodeFn& on_node = nullptr);

  uint64_t size() const { return size_; }
  const std::vector<MerkleHash>& nodes() const { return nodes_; }
  MerkleHash Root() const { return RootFromCompactRange(nodes_); }

 private:
  uint64_t size_ = 0;
  std::vector<MerkleHash> nodes_;  // one per set bit of size_, highest bit first
};

// The persistent, incremental tree over the audit entries. Appends are staged into the caller's
// WriteBatch (the same batch as the entries, so tree and log are durable together) and become
// visible only on Commit; Abort forgets them. Reads (size, roots, proofs) see committed state
// only and may run on any thread concurrently with one writer thread doing Append/Commit/Abort.
class MerkleTree {
 public:
  // Recovers the committed size (the last stored leaf) and the compact range from `store`, which
  // must outlive the tree. DataLoss if a node of the compact range is missing or not 32 bytes;
  // the store's error (e.g. Unavailable) if it cannot be read.
  static StatusOr<std::unique_ptr<MerkleTree>> Open(Store& store);
  MerkleTree(const MerkleTree&) = delete;
  MerkleTree& operator=(const MerkleTree&) = delete;

  // Stages leaf `pending_size()` with `leaf_hash`: puts it and every perfect subtree it
  // completes into `batch` (O(log n) puts, amortised O(1)). Returns the leaf's index.
  uint64_t Append(const MerkleHash& leaf_hash, WriteBatch& batch);
  // The staged leaves are durable: they become part of the committed tree.
  void Commit();
  // The batch holding the staged leaves was not written: forget them.
  void Abort();

  // Committed leaves, and committed plus staged leaves.
  uint64_t size() const;
  uint64_t pending_size() const;
  // Root of the committed tree, from memory.
  MerkleHash Root() const;
  // Root of the committed tree's first `tree_size` leaves: O(log n) reads. InvalidArgument if
  // tree_size exceeds size(); DataLoss if a stored node is missing or malformed.
  StatusOr<MerkleHash> RootAt(uint64_t tree_size) const;
  // RFC 9162 inclusion proof (section 2.1.3.1) of `leaf_index` in the tree of `tree_size`
  // leaves, lowest sibling first: O(log^2 n) reads at worst. InvalidArgument unless
  // leaf_index < tree_size <= size(); DataLoss as RootAt.
  StatusOr<std::vector<MerkleHash>> InclusionProof(uint64_t leaf_index, uint64_t tree_size) const;
  // RFC 9162 consistency proof (section 2.1.4.1) from `size1` to `size2` leaves; empty if
  // size1 is 0 or equals size2. InvalidArgument unless size1 <= size2 <= size(); DataLoss as
  // RootAt.
  StatusOr<std::vector<MerkleHash>> ConsistencyProof(uint64_t size1, uint64_t size2) const;

  // Storage key of node (level, index) in Cf::kAuditTree.
  static std::string NodeKey(uint8_t level, uint64_t index);

 private:
  MerkleTree(Store& store, CompactRange committed)
      : store_(store), committed_(std::move(committed)) {}
  StatusOr<MerkleHash> ReadNode(uint8_t level, uint64_t index) const;
  StatusOr<MerkleHash> SubtreeRoot(uint64_t begin, uint64_t end) const;
  Status AppendInclusionPath(uint64_t leaf, uint64_t begin, uint64_t end,
                             std::vector<MerkleHash>& out) const;
  Status AppendConsistencyPath(uint64_t size1, uint64_t begin, uint64_t end, bool whole,
                               std::vector<MerkleHash>& out) const;

  Store& store_;
  mutable Mutex mu_;
  CompactRange committed_ GUARDED_BY(mu_);
  std::optional<CompactRange> pending_ GUARDED_BY(mu_);  // set while leaves are staged
};

// Feeds every audit entry the ledger writes into a MerkleTree, in the ledger's batch: leaf
// seq - 1 = MerkleLeafHash(entry bytes). The tree must hold exactly the entries already in the
// ledger when the ledger opens (both live in the same batches; see BackfillMerkleTree for a log
// written before the tree existed).
class MerkleLedgerObserver : public LedgerObserver {
 public:
  // `tree` must outlive the observer.
  explicit MerkleLedgerObserver(MerkleTree& tree) : tree_(tree) {}

  // Internal "merkle tree is out of step with the ledger" if seq is not the next leaf: the
  // group then fails and nothing is written.
  Status OnAppend(uint64_t seq, std::string_view entry_bytes, WriteBatch& batch) override;
  void OnCommitted(uint64_t last_seq) override;
  void OnAborted() override;

 private:
  MerkleTree& tree_;
};

// Appends to `tree` the ledger entries it lacks (seq tree.size() + 1 .. ledger_size), reading
// them from `store` and writing the nodes in batches of at most `batch_entries` entries.
// FailedPrecondition if the tree is larger than the ledger; the store's or the ledger reader's
// error otherwise (what was written stays consistent: the next call resumes).
Status BackfillMerkleTree(Store& store, MerkleTree& tree, uint64_t ledger_size,
                          uint64_t batch_entries = 4096);

}  // namespace phivault::storage
