// RFC 9162 hashing and proof verification against published vectors, and the in-memory compact
// range against the reference tree hash.
#include <gtest/gtest.h>

#include <bit>
#include <string>
#include <vector>

#include "storage/merkle.h"
#include "tests/storage_merkle/rfc_vectors.h"

namespace phivault::storage {
namespace {

using testing::Hex32;
using testing::RfcConsistencyProofs;
using testing::RfcInclusionProofs;
using testing::RfcLeaves;
using testing::RfcRoots;

std::vector<MerkleHash> LeafHashes(const std::vector<std::string>& entries) {
  std::vector<MerkleHash> out;
  for (const std::string& e : entries) out.push_back(MerkleLeafHash(e));
  return out;
}

std::vector<MerkleHash> SyntheticLeaves(size_t n) {
  std::vector<MerkleHash> out;
  for (size_t i = 0; i < n; ++i) out.push_back(MerkleLeafHash("entry " + std::to_string(i)));
  return out;
}

// A hash that appears nowhere in the vectors (the "sha256SomeHash" of the source tests).
const MerkleHash kSomeHash =
    Hex32("abacaba000000000000000000000000000000000000000000060061e00123456");

TEST(MerkleHashing, EmptyTreeRootIsSha256OfNothing) {
  // SHA-256("") (FIPS 180-2 / RFC 9162 section 2.1.1: MTH({}) = HASH()).
  EXPECT_EQ(MerkleEmptyRoot(),
            Hex32("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
  EXPECT_EQ(MerkleReferenceRoot({}), MerkleEmptyRoot());
  EXPECT_EQ(RootFromCompactRange({}), MerkleEmptyRoot());
}

TEST(MerkleHashing, LeafAndNodeHashesAreDomainSeparated) {
  // The one-leaf tree over the empty entry is SHA-256(0x00), the first published root.
  EXPECT_EQ(MerkleLeafHash(""), RfcRoots()[0]);
  const MerkleHash a = MerkleLeafHash("a");
  const MerkleHash b = MerkleLeafHash("b");
  EXPECT_NE(MerkleNodeHash(a, b), MerkleNodeHash(b, a));
  // A node over (a, b) is not the leaf hash of the 64 bytes a || b.
  std::string concat(crypto::AsView(a));
  concat += crypto::AsView(b);
  EXPECT_NE(MerkleNodeHash(a, b), MerkleLeafHash(concat));
}

TEST(MerkleHashing, ReferenceRootMatchesPublishedRoots) {
  const std::vector<MerkleHash> leaves = LeafHashes(RfcLeaves());
  const std::vector<MerkleHash> roots = RfcRoots();
  for (size_t n = 1; n <= leaves.size(); ++n) {
    EXPECT_EQ(MerkleReferenceRoot(std::span(leaves).first(n)), roots[n - 1]) << "size " << n;
  }
}

TEST(CompactRange, MatchesReferenceRootForEverySizeUpTo300) {
  const std::vector<MerkleHash> leaves = SyntheticLeaves(300);
  CompactRange range;
  for (size_t n = 1; n <= leaves.size(); ++n) {
    range.Append(leaves[n - 1]);
    ASSERT_EQ(range.size(), n);
    ASSERT_EQ(range.nodes().size(), static_cast<size_t>(std::popcount(n)));
    ASSERT_EQ(range.Root(), MerkleReferenceRoot(std::span(leaves).first(n))) << "size " << n;
  }
}

TEST(CompactRange, ReportsEveryCompletedPerfectSubtree) {
  const std::vector<MerkleHash> leaves = SyntheticLeaves(64);
  CompactRange range;
  for (size_t i = 0; i < leaves.size(); ++i) {
    std::vector<std::pair<uint8_t, uint64_t>> reported;
    range.Append(leaves[i], [&](uint8_t level, uint64_t index, const MerkleHash& hash) {
      reported.emplace_back(level, index);
      const uint64_t width = uint64_t{1} << level;
      EXPECT_EQ(hash, MerkleReferenceRoot(std::span(leaves).subspan(index * width, width)))
          << "level " << int(level) << " index " << index;
    });
    // Leaf i completes the leaf itself plus one subtree per trailing one bit of i.
    ASSERT_EQ(reported.size(), static_cast<size_t>(std::countr_one(i)) + 1) << "leaf " << i;
    EXPECT_EQ(reported.front(), std::make_pair(uint8_t{0}, uint64_t{i}));
  }
}

TEST(CompactRange, FromNodesRejectsWrongNodeCount) {
  EXPECT_FALSE(CompactRange::FromNodes(5, {kSomeHash}).ok());
  EXPECT_FALSE(CompactRange::FromNodes(0, {kSomeHash}).ok());
  const std::vector<MerkleHash> leaves = SyntheticLeaves(5);
  CompactRange built;
  for (const MerkleHash& l : leaves) built.Append(l);
  StatusOr<CompactRange> copy = CompactRange::FromNodes(5, built.nodes());
  ASSERT_TRUE(copy.ok());
  EXPECT_EQ(copy->Root(), built.Root());
}

// Variations of a valid inclusion proof that must all fail (after the source tests'
// corruptInclusionProof).
TEST(InclusionProof, PublishedProofsVerifyAndCorruptionsFail) {
  const std::vector<MerkleHash> leaves = LeafHashes(RfcLeaves());
  const std::vector<MerkleHash> roots = RfcRoots();
  for (const auto& v : RfcInclusionProofs()) {
    SCOPED_TRACE("leaf " + std::to_string(v.leaf_index) + " size " + std::to_string(v.tree_size));
    const MerkleHash& leaf = leaves[v.leaf_index];
    const MerkleHash& root = roots[v.tree_size - 1];
    StatusOr<MerkleHash> implied = RootFromInclusionProof(v.leaf_index, v.tree_size, leaf, v.proof);
    ASSERT_TRUE(implied.ok()) << implied.status().ToString();
    EXPECT_EQ(*implied, root);
    EXPECT_TRUE(VerifyInclusionProof(v.leaf_index, v.tree_size, leaf, v.proof, root).ok());

    const auto fails = [&](uint64_t index, uint64_t size, const MerkleHash& l,
                           const std::vector<MerkleHash>& proof, const MerkleHash& r) {
      return !VerifyInclusionProof(index, size, l, proof, r).ok();
    };
    EXPECT_TRUE(fails(v.leaf_index - 1, v.tree_size, leaf, v.proof, root));
    EXPECT_TRUE(fails(v.leaf_index + 1, v.tree_size, leaf, v.proof, root));
    EXPECT_TRUE(fails(v.leaf_index ^ 2, v.tree_size, leaf, v.proof, root));
    EXPECT_TRUE(fails(v.leaf_index, v.tree_size * 2, leaf, v.proof, root));
    EXPECT_TRUE(fails(v.leaf_index, v.tree_size / 2, leaf, v.proof, root));
    EXPECT_TRUE(fails(v.leaf_index, v.tree_size, MerkleLeafHash("WrongLeaf"), v.proof, root));
    EXPECT_TRUE(fails(v.leaf_index, v.tree_size, leaf, v.proof, MerkleEmptyRoot()));
    EXPECT_TRUE(fails(v.leaf_index, v.tree_size, leaf, v.proof, kSomeHash));
    std::vector<MerkleHash> longer = v.proof;
    longer.push_back(root);
    EXPECT_TRUE(fails(v.leaf_index, v.tree_size, leaf, longer, root));
    longer = v.proof;
    longer.insert(longer.begin(), root);
    EXPECT_TRUE(fails(v.leaf_index, v.tree_size, leaf, longer, root));
    for (size_t i = 0; i < v.proof.size(); ++i) {
      std::vector<MerkleHash> flipped = v.proof;
      flipped[i][0] ^= 8;
      EXPECT_TRUE(fails(v.leaf_index, v.tree_size, leaf, flipped, root)) << "flipped " << i;
    }
    if (!v.proof.empty()) {
      std::vector<MerkleHash> shorter(v.proof.begin(), v.proof.end() - 1);
      EXPECT_TRUE(fails(v.leaf_index, v.tree_size, leaf, shorter, root));
    }
    if (v.proof.size() > 1) {
      std::vector<MerkleHash> inserted = v.proof;
      inserted.insert(inserted.begin() + 1, kSomeHash);
      EXPECT_TRUE(fails(v.leaf_index, v.tree_size, leaf, inserted, root));
    }
  }
}

TEST(InclusionProof, IndexOutsideTreeIsRejected) {
  for (auto [index, size] : std::vector<std::pair<uint64_t, uint64_t>>{{0, 0}, {1, 0}, {2, 1}}) {
    Status s = VerifyInclusionProof(index, size, kSomeHash, {}, MerkleEmptyRoot());
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << index << "/" << size;
  }
  // A one-leaf tree: the root is the leaf hash and the proof is empty.
  EXPECT_TRUE(VerifyInclusionProof(0, 1, kSomeHash, {}, kSomeHash).ok());
  EXPECT_FALSE(VerifyInclusionProof(0, 1, kSomeHash, {}, MerkleEmptyRoot()).ok());
}

TEST(ConsistencyProof, PublishedProofsVerifyAndCorruptionsFail) {
  const std::vector<MerkleHash> roots = RfcRoots();
  for (const auto& v : RfcConsistencyProofs()) {
    SCOPED_TRACE(std::to_string(v.size1) + " -> " + std::to_string(v.size2));
    const MerkleHash& root1 = roots[v.size1 - 1];
    const MerkleHash& root2 = roots[v.size2 - 1];
    Status ok = VerifyConsistencyProof(v.size1, v.size2, v.proof, root1, root2);
    ASSERT_TRUE(ok.ok()) << ok.ToString();
    if (v.proof.empty()) continue;

    const auto fails = [&](uint64_t s1, uint64_t s2, const MerkleHash& r1, const MerkleHash& r2,
                           const std::vector<MerkleHash>& proof) {
      return !VerifyConsistencyProof(s1, s2, proof, r1, r2).ok();
    };
    EXPECT_TRUE(fails(v.size1 - 1, v.size2, root1, root2, v.proof));
    EXPECT_TRUE(fails(v.size1 + 1, v.size2, root1, root2, v.proof));
    EXPECT_TRUE(fails(v.size1 ^ 2, v.size2, root1, root2, v.proof));
    EXPECT_TRUE(fails(v.size1, v.size2 * 2, root1, root2, v.proof));
    EXPECT_TRUE(fails(v.size1, v.size2 / 2, root1, root2, v.proof));
    EXPECT_TRUE(fails(v.size1, v.size2, kSomeHash, root2, v.proof));
    EXPECT_TRUE(fails(v.size1, v.size2, root1, kSomeHash, v.proof));
    EXPECT_TRUE(fails(v.size1, v.size2, root2, root1, v.proof));
    EXPECT_TRUE(fails(v.size1, v.size2, root1, root2, {}));
    for (const MerkleHash& extra : {MerkleEmptyRoot(), root1, root2}) {
      std::vector<MerkleHash> longer = v.proof;
      longer.push_back(extra);
      EXPECT_TRUE(fails(v.size1, v.size2, root1, root2, longer));
      longer = v.proof;
      longer.insert(longer.begin(), extra);
      EXPECT_TRUE(fails(v.size1, v.size2, root1, root2, longer));
    }
    std::vector<MerkleHash> doubled = v.proof;
    doubled.insert(doubled.begin(), v.proof[0]);
    EXPECT_TRUE(fails(v.size1, v.size2, root1, root2, doubled));
    std::vector<MerkleHash> shorter(v.proof.begin(), v.proof.end() - 1);
    EXPECT_TRUE(fails(v.size1, v.size2, root1, root2, shorter));
    for (size_t i = 0; i < v.proof.size(); ++i) {
      std::vector<MerkleHash> flipped = v.proof;
      flipped[i][0] ^= 16;
      EXPECT_TRUE(fails(v.size1, v.size2, root1, root2, flipped)) << "flipped " << i;
    }
  }
}

// The edge cases of the source tests' TestVerifyConsistency.
TEST(ConsistencyProof, TrivialSizes) {
  const MerkleHash r1 = MerkleLeafHash("don't care 1");
  const MerkleHash r2 = MerkleLeafHash("don't care 2");
  const std::vector<MerkleHash> none;
  const std::vector<MerkleHash> one = {MerkleEmptyRoot()};
  EXPECT_FALSE(VerifyConsistencyProof(0, 0, none, r1, r2).ok());
  EXPECT_FALSE(VerifyConsistencyProof(1, 1, none, r1, r2).ok());
  EXPECT_TRUE(VerifyConsistencyProof(0, 0, none, r1, r1).ok());
  EXPECT_TRUE(VerifyConsistencyProof(0, 1, none, r1, r2).ok());
  EXPECT_TRUE(VerifyConsistencyProof(1, 1, none, r2, r2).ok());
  EXPECT_EQ(VerifyConsistencyProof(1, 0, none, r1, r2).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(VerifyConsistencyProof(2, 1, none, r1, r2).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(VerifyConsistencyProof(1, 2, none, r1, r2).ok());
  const MerkleHash empty = MerkleEmptyRoot();
  EXPECT_FALSE(VerifyConsistencyProof(0, 0, none, empty, r2).ok());
  EXPECT_FALSE(VerifyConsistencyProof(1, 1, none, empty, r2).ok());
  EXPECT_FALSE(VerifyConsistencyProof(0, 0, one, empty, empty).ok());
  EXPECT_FALSE(VerifyConsistencyProof(0, 1, one, empty, empty).ok());
  EXPECT_FALSE(VerifyConsistencyProof(1, 1, one, empty, empty).ok());
}

}  // namespace
}  // namespace phivault::storage
