// The persistent incremental tree: roots and proofs against the reference, work per append,
// recovery on reopen, staged appends that are committed or forgotten, and the ledger hook.
#include <gtest/gtest.h>

#include <bit>
#include <string>
#include <vector>

#include "crypto/hash.h"
#include "storage/audit_entry.h"
#include "storage/ledger.h"
#include "storage/merkle.h"
#include "tests/storage_merkle/memory_store.h"
#include "tests/storage_merkle/rfc_vectors.h"

namespace phivault::storage {
namespace {

using testing::MemoryStore;

std::vector<MerkleHash> SyntheticLeaves(size_t n, const std::string& tag = "entry") {
  std::vector<MerkleHash> out;
  for (size_t i = 0; i < n; ++i) out.push_back(MerkleLeafHash(tag + " " + std::to_string(i)));
  return out;
}

std::unique_ptr<MerkleTree> OpenTree(Store& store) {
  StatusOr<std::unique_ptr<MerkleTree>> tree = MerkleTree::Open(store);
  if (!tree.ok()) {
    ADD_FAILURE() << tree.status().ToString();
    return nullptr;
  }
  return std::move(tree).value();
}

// Appends each leaf in its own durable batch, as the ledger does for single requests.
void AppendCommitted(MerkleTree& tree, Store& store, std::span<const MerkleHash> leaves) {
  for (const MerkleHash& leaf : leaves) {
    WriteBatch batch;
    tree.Append(leaf, batch);
    ASSERT_TRUE(store.Write(batch, true).ok());
    tree.Commit();
  }
}

TEST(MerkleTree, EmptyStoreOpensAsEmptyTree) {
  MemoryStore store;
  auto tree = OpenTree(store);
  ASSERT_NE(tree, nullptr);
  EXPECT_EQ(tree->size(), 0u);
  EXPECT_EQ(tree->Root(), MerkleEmptyRoot());
  StatusOr<MerkleHash> root0 = tree->RootAt(0);
  ASSERT_TRUE(root0.ok());
  EXPECT_EQ(*root0, MerkleEmptyRoot());
}

TEST(MerkleTree, MatchesReferenceRootForEverySizeUpTo300) {
  MemoryStore store;
  auto tree = OpenTree(store);
  const std::vector<MerkleHash> leaves = SyntheticLeaves(300);
  for (size_t n = 1; n <= leaves.size(); ++n) {
    AppendCommitted(*tree, store, std::span(leaves).subspan(n - 1, 1));
    ASSERT_EQ(tree->size(), n);
    ASSERT_EQ(tree->Root(), MerkleReferenceRoot(std::span(leaves).first(n))) << "size " << n;
  }
  // Every historical root, recomputed from the stored nodes.
  for (size_t n = 0; n <= leaves.size(); ++n) {
    StatusOr<MerkleHash> root = tree->RootAt(n);
    ASSERT_TRUE(root.ok()) << root.status().ToString();
    ASSERT_EQ(*root, MerkleReferenceRoot(std::span(leaves).first(n))) << "size " << n;
  }
}

TEST(MerkleTree, GeneratesThePublishedProofs) {
  MemoryStore store;
  auto tree = OpenTree(store);
  std::vector<MerkleHash> leaves;
  for (const std::string& entry : testing::RfcLeaves()) leaves.push_back(MerkleLeafHash(entry));
  AppendCommitted(*tree, store, leaves);
  EXPECT_EQ(tree->Root(), testing::RfcRoots()[7]);
  for (const auto& v : testing::RfcInclusionProofs()) {
    StatusOr<std::vector<MerkleHash>> proof = tree->InclusionProof(v.leaf_index, v.tree_size);
    ASSERT_TRUE(proof.ok()) << proof.status().ToString();
    EXPECT_EQ(*proof, v.proof) << "leaf " << v.leaf_index << " size " << v.tree_size;
  }
  for (const auto& v : testing::RfcConsistencyProofs()) {
    StatusOr<std::vector<MerkleHash>> proof = tree->ConsistencyProof(v.size1, v.size2);
    ASSERT_TRUE(proof.ok()) << proof.status().ToString();
    EXPECT_EQ(*proof, v.proof) << v.size1 << " -> " << v.size2;
  }
}

TEST(MerkleTree, EveryProofVerifiesForAllSizesUpTo64) {
  MemoryStore store;
  auto tree = OpenTree(store);
  const std::vector<MerkleHash> leaves = SyntheticLeaves(64);
  AppendCommitted(*tree, store, leaves);
  for (uint64_t n = 1; n <= leaves.size(); ++n) {
    const MerkleHash root = MerkleReferenceRoot(std::span(leaves).first(n));
    for (uint64_t i = 0; i < n; ++i) {
      StatusOr<std::vector<MerkleHash>> proof = tree->InclusionProof(i, n);
      ASSERT_TRUE(proof.ok()) << proof.status().ToString();
      ASSERT_TRUE(VerifyInclusionProof(i, n, leaves[i], *proof, root).ok())
          << "leaf " << i << " size " << n;
      // The same proof must not vouch for a neighbouring leaf.
      if (n > 1) {
        ASSERT_FALSE(VerifyInclusionProof(i, n, leaves[(i + 1) % n], *proof, root).ok());
      }
    }
    for (uint64_t m = 0; m <= n; ++m) {
      const MerkleHash old_root = MerkleReferenceRoot(std::span(leaves).first(m));
      StatusOr<std::vector<MerkleHash>> proof = tree->ConsistencyProof(m, n);
      ASSERT_TRUE(proof.ok()) << proof.status().ToString();
      ASSERT_TRUE(VerifyConsistencyProof(m, n, *proof, old_root, root).ok()) << m << " -> " << n;
      if (m > 0 && m < n) {
        // A tree that forked at leaf m - 1 is caught by the same proof.
        std::vector<MerkleHash> forked(leaves.begin(), leaves.begin() + m);
        forked.back() = MerkleLeafHash("forged");
        ASSERT_FALSE(VerifyConsistencyProof(m, n, *proof, MerkleReferenceRoot(forked), root).ok());
      }
    }
  }
}

TEST(MerkleTree, ProofArgumentsOutsideTheTreeAreRejected) {
  MemoryStore store;
  auto tree = OpenTree(store);
  AppendCommitted(*tree, store, SyntheticLeaves(10));
  EXPECT_EQ(tree->InclusionProof(10, 10).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(tree->InclusionProof(0, 11).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(tree->InclusionProof(0, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(tree->ConsistencyProof(5, 4).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(tree->ConsistencyProof(5, 11).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(tree->RootAt(11).status().code(), StatusCode::kInvalidArgument);
}

TEST(MerkleTree, AppendDoesLogarithmicWorkAndNoReads) {
  MemoryStore store;
  auto tree = OpenTree(store);
  const std::vector<MerkleHash> leaves = SyntheticLeaves(1024);
  const uint64_t gets_before = store.gets();
  for (size_t i = 0; i < leaves.size(); ++i) {
    WriteBatch batch;
    tree->Append(leaves[i], batch);
    // The leaf plus one node per perfect subtree it completes; never more than log2(n) + 1.
    ASSERT_EQ(batch.ops().size(), static_cast<size_t>(std::countr_one(i)) + 1);
    ASSERT_LE(batch.ops().size(), static_cast<size_t>(std::bit_width(i + 1)));
    ASSERT_TRUE(store.Write(batch, true).ok());
    tree->Commit();
  }
  EXPECT_EQ(store.gets(), gets_before);
  // All nodes of a perfect tree of 1024 leaves: 2 * 1024 - 1.
  EXPECT_EQ(store.count(Cf::kAuditTree), 2047u);
}

TEST(MerkleTree, ProofsReadPolylogarithmicallyManyNodes) {
  MemoryStore store;
  auto tree = OpenTree(store);
  const uint64_t n = 1000;  // not a power of two: right-edge subtrees are folded from pieces
  AppendCommitted(*tree, store, SyntheticLeaves(n));
  const uint64_t log_n = std::bit_width(n);
  for (uint64_t leaf : {uint64_t{0}, uint64_t{511}, uint64_t{998}, n - 1}) {
    const uint64_t before = store.gets();
    ASSERT_TRUE(tree->InclusionProof(leaf, n).ok());
    EXPECT_LE(store.gets() - before, log_n * log_n) << "leaf " << leaf;
  }
  const uint64_t before = store.gets();
  ASSERT_TRUE(tree->ConsistencyProof(333, n).ok());
  EXPECT_LE(store.gets() - before, log_n * log_n);
}

TEST(MerkleTree, ReopenRecoversTheFrontier) {
  MemoryStore store;
  const std::vector<MerkleHash> leaves = SyntheticLeaves(150);
  {
    auto tree = OpenTree(store);
    AppendCommitted(*tree, store, std::span(leaves).first(77));
  }
  auto reopened = OpenTree(store);
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(reopened->size(), 77u);
  EXPECT_EQ(reopened->Root(), MerkleReferenceRoot(std::span(leaves).first(77)));
  // Appending after the reopen continues the same tree.
  AppendCommitted(*reopened, store, std::span(leaves).subspan(77));
  EXPECT_EQ(reopened->Root(), MerkleReferenceRoot(leaves));
  StatusOr<std::vector<MerkleHash>> proof = reopened->InclusionProof(76, 150);
  ASSERT_TRUE(proof.ok());
  EXPECT_TRUE(VerifyInclusionProof(76, 150, leaves[76], *proof, reopened->Root()).ok());
}

TEST(MerkleTree, MissingOrDamagedFrontierNodeIsDataLoss) {
  MemoryStore store;
  {
    auto tree = OpenTree(store);
    AppendCommitted(*tree, store, SyntheticLeaves(6));  // frontier: (level 2, 0), (level 1, 2)
  }
  store.Corrupt(Cf::kAuditTree, MerkleTree::NodeKey(2, 0), "short");
  StatusOr<std::unique_ptr<MerkleTree>> tree = MerkleTree::Open(store);
  EXPECT_EQ(tree.status().code(), StatusCode::kDataLoss);
}

TEST(MerkleTree, StagedAppendsAreInvisibleUntilCommitAndForgottenOnAbort) {
  MemoryStore store;
  auto tree = OpenTree(store);
  const std::vector<MerkleHash> leaves = SyntheticLeaves(5);
  AppendCommitted(*tree, store, std::span(leaves).first(5));
  const MerkleHash committed_root = tree->Root();

  // A group of three staged in one batch, whose write fails.
  WriteBatch batch;
  for (const MerkleHash& leaf : SyntheticLeaves(3, "doomed")) {
    const uint64_t expected_index = tree->pending_size();
    EXPECT_EQ(tree->Append(leaf, batch), expected_index);
  }
  EXPECT_EQ(tree->pending_size(), 8u);
  EXPECT_EQ(tree->size(), 5u);
  EXPECT_EQ(tree->Root(), committed_root);
  store.set_fail_writes(true);
  ASSERT_FALSE(store.Write(batch, true).ok());
  store.set_fail_writes(false);
  tree->Abort();
  EXPECT_EQ(tree->size(), 5u);
  EXPECT_EQ(tree->pending_size(), 5u);
  EXPECT_EQ(tree->Root(), committed_root);

  // The next group reuses the positions; the tree, in memory and reopened, has only real leaves.
  std::vector<MerkleHash> all = leaves;
  const std::vector<MerkleHash> more = SyntheticLeaves(4, "kept");
  WriteBatch good;
  for (const MerkleHash& leaf : more) tree->Append(leaf, good);
  ASSERT_TRUE(store.Write(good, true).ok());
  tree->Commit();
  all.insert(all.end(), more.begin(), more.end());
  EXPECT_EQ(tree->Root(), MerkleReferenceRoot(all));
  auto reopened = OpenTree(store);
  EXPECT_EQ(reopened->Root(), MerkleReferenceRoot(all));
  for (uint64_t i = 0; i < all.size(); ++i) {
    StatusOr<std::vector<MerkleHash>> proof = reopened->InclusionProof(i, all.size());
    ASSERT_TRUE(proof.ok());
    EXPECT_TRUE(VerifyInclusionProof(i, all.size(), all[i], *proof, reopened->Root()).ok());
  }
}

AuditEntry SyntheticEntry(int i) {
  AuditEntry e;
  e.request_id = "req-" + std::to_string(i);
  e.application = "test-ehr";
  e.user = "clinician-7";
  e.role = "physician";
  e.action = "record.read";
  e.outcome = "success";
  e.reason = "rule:treat";
  e.purpose = "TREAT";
  return e;
}

TEST(MerkleLedgerObserver, TreeFollowsTheLedgerThroughFailedWrites) {
  MemoryStore store;
  auto tree = OpenTree(store);
  MerkleLedgerObserver observer(*tree);
  StatusOr<std::unique_ptr<Ledger>> ledger = Ledger::Open(store, &observer);
  ASSERT_TRUE(ledger.ok()) << ledger.status().ToString();

  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE((*ledger)->Commit({}, SyntheticEntry(i)).ok());
  }
  store.set_fail_writes(true);
  EXPECT_FALSE((*ledger)->Commit({}, SyntheticEntry(99)).ok());
  store.set_fail_writes(false);
  for (int i = 5; i < 9; ++i) {
    ASSERT_TRUE((*ledger)->Commit({}, SyntheticEntry(i)).ok());
  }

  ASSERT_EQ((*ledger)->size(), 9u);
  ASSERT_EQ(tree->size(), 9u);
  std::vector<MerkleHash> leaves;
  for (uint64_t seq = 1; seq <= 9; ++seq) {
    StatusOr<std::string> bytes = ReadAuditEntryBytes(store, seq);
    ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
    leaves.push_back(MerkleLeafHash(*bytes));
  }
  EXPECT_EQ(tree->Root(), MerkleReferenceRoot(leaves));
  auto reopened = OpenTree(store);
  EXPECT_EQ(reopened->Root(), MerkleReferenceRoot(leaves));
}

TEST(MerkleLedgerObserver, RefusesAnEntryThatIsNotTheNextLeaf) {
  MemoryStore store;
  auto tree = OpenTree(store);
  MerkleLedgerObserver observer(*tree);
  WriteBatch batch;
  Status s = observer.OnAppend(2, "entry two", batch);
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_TRUE(batch.empty());
  ASSERT_TRUE(observer.OnAppend(1, "entry one", batch).ok());
  ASSERT_TRUE(observer.OnAppend(2, "entry two", batch).ok());
  ASSERT_TRUE(store.Write(batch, true).ok());
  observer.OnCommitted(2);
  EXPECT_EQ(tree->Root(), MerkleNodeHash(MerkleLeafHash("entry one"), MerkleLeafHash("entry two")));
}

TEST(BackfillMerkleTree, BuildsTheTreeOfALogWrittenWithoutIt) {
  MemoryStore store;
  {
    StatusOr<std::unique_ptr<Ledger>> ledger = Ledger::Open(store);
    ASSERT_TRUE(ledger.ok());
    for (int i = 0; i < 23; ++i) ASSERT_TRUE((*ledger)->Commit({}, SyntheticEntry(i)).ok());
  }
  auto tree = OpenTree(store);
  ASSERT_EQ(tree->size(), 0u);
  ASSERT_TRUE(BackfillMerkleTree(store, *tree, 23, /*batch_entries=*/5).ok());
  std::vector<MerkleHash> leaves;
  for (uint64_t seq = 1; seq <= 23; ++seq) {
    leaves.push_back(MerkleLeafHash(*ReadAuditEntryBytes(store, seq)));
  }
  EXPECT_EQ(tree->size(), 23u);
  EXPECT_EQ(tree->Root(), MerkleReferenceRoot(leaves));
  // Asking for more entries than the log has fails without committing a partial batch.
  EXPECT_FALSE(BackfillMerkleTree(store, *tree, 30).ok());
  EXPECT_EQ(tree->size(), 23u);
  EXPECT_EQ(BackfillMerkleTree(store, *tree, 20).code(), StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace phivault::storage
