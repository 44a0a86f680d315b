#include "storage/merkle.h"
#include "storage/key_encoding.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace phivault::storage {
namespace {

constexpr char kNodePrefix = 'n';
constexpr size_t kNodeKeyBytes = 1 + 1 + 8;

std::string_view View(const MerkleHash& h) { return crypto::AsView(h); }

// Largest power of two strictly below n (n >= 2): the split point k of RFC 9162 section 2.1.1.
uint64_t SplitPoint(uint64_t n) { return std::bit_floor(n - 1); }

// Clears the least significant bits of (fn, sn) while fn's lowest bit is set, as steps 4/6 of
// the RFC 9162 verification algorithms do.
void ShiftWhileOdd(uint64_t& fn, uint64_t& sn) {
  while ((fn & 1) != 0) {
    fn >>= 1;
    sn >>= 1;
  }
}

// Climbs past the levels where fn is a right edge without a sibling (fn even, fn < sn is false).
void ShiftUntilOddOrZero(uint64_t& fn, uint64_t& sn) {
  while ((fn & 1) == 0 && fn != 0) {
    fn >>= 1;
    sn >>= 1;
  }
}

}  // namespace

MerkleHash MerkleLeafHash(std::string_view entry) {
  static constexpr char kLeafPrefix = 0x00;
  return crypto::Sha256({std::string_view(&kLeafPrefix, 1), entry});
}

MerkleHash MerkleNodeHash(const MerkleHash& left, const MerkleHash& right) {
  static constexpr char kNodeHashPrefix = 0x01;
  return crypto::Sha256({std::string_view(&kNodeHashPrefix, 1), View(left), View(right)});
}

MerkleHash MerkleEmptyRoot() { return crypto::Sha256(std::string_view()); }

MerkleHash MerkleReferenceRoot(std::span<const MerkleHash> leaf_hashes) {
  const uint64_t n = leaf_hashes.size();
  if (n == 0) return MerkleEmptyRoot();
  if (n == 1) return leaf_hashes[0];
  const uint64_t k = SplitPoint(n);
  return MerkleNodeHash(MerkleReferenceRoot(leaf_hashes.subspan(0, k)),
                        MerkleReferenceRoot(leaf_hashes.subspan(k)));
}

MerkleHash RootFromCompactRange(std::span<const MerkleHash> nodes) {
  if (nodes.empty()) return MerkleEmptyRoot();
  MerkleHash root = nodes.back();
  for (size_t i = nodes.size() - 1; i-- > 0;) root = MerkleNodeHash(nodes[i], root);
  return root;
}

StatusOr<MerkleHash> RootFromInclusionProof(uint64_t leaf_index, uint64_t tree_size,
                                            const MerkleHash& leaf_hash,
                                            std::span<const MerkleHash> proof) {
  if (leaf_index >= tree_size) {
    return InvalidArgument("leaf index " + std::to_string(leaf_index) + " is not below tree size " +
                           std::to_string(tree_size));
  }
  uint64_t fn = leaf_index;
  uint64_t sn = tree_size - 1;
  MerkleHash r = leaf_hash;
  for (const MerkleHash& p : proof) {
    if (sn == 0) return DataLoss("inclusion proof has the wrong length");
    if ((fn & 1) != 0 || fn == sn) {
      r = MerkleNodeHash(p, r);
      ShiftUntilOddOrZero(fn, sn);
    } else {
      r = MerkleNodeHash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) return DataLoss("inclusion proof has the wrong length");
  return r;
}

Status VerifyInclusionProof(uint64_t leaf_index, uint64_t tree_size, const MerkleHash& leaf_hash,
                            std::span<const MerkleHash> proof, const MerkleHash& root) {
  PV_ASSIGN_OR_RETURN(MerkleHash computed,
                      RootFromInclusionProof(leaf_index, tree_size, leaf_hash, proof));
  if (computed != root) return DataLoss("inclusion proof does not lead to the root");
  return Status::Ok();
}

Status VerifyConsistencyProof(uint64_t size1, uint64_t size2, std::span<const MerkleHash> proof,
                              const MerkleHash& root1, const MerkleHash& root2) {
  if (size2 < size1) {
    return InvalidArgument("tree size " + std::to_string(size2) + " is below " +
                           std::to_string(size1));
  }
  if (size1 == size2) {
    if (!proof.empty()) return DataLoss("consistency proof between equal sizes must be empty");
    if (root1 != root2) return DataLoss("roots of equal tree sizes differ");
    return Status::Ok();
  }
  if (size1 == 0) {
    if (!proof.empty()) return DataLoss("consistency proof from the empty tree must be empty");
    return Status::Ok();
  }
  if (proof.empty()) return DataLoss("consistency proof is empty");

  // RFC 9162 section 2.1.4.2; when size1 is a power of two its root is the proof's implicit
  // first element.
  std::vector<MerkleHash> path;
  path.reserve(proof.size() + 1);
  if (std::has_single_bit(size1)) path.push_back(root1);
  path.insert(path.end(), proof.begin(), proof.end());

  uint64_t fn = size1 - 1;
  uint64_t sn = size2 - 1;
  ShiftWhileOdd(fn, sn);
  MerkleHash fr = path[0];
  MerkleHash sr = path[0];
  for (size_t i = 1; i < path.size(); ++i) {
    const MerkleHash& c = path[i];
    if (sn == 0) return DataLoss("consistency proof has the wrong length");
    if ((fn & 1) != 0 || fn == sn) {
      fr = MerkleNodeHash(c, fr);
      sr = MerkleNodeHash(c, sr);
      ShiftUntilOddOrZero(fn, sn);
    } else {
      sr = MerkleNodeHash(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) return DataLoss("consistency proof has the wrong length");
  if (fr != root1) return DataLoss("consistency proof does not lead to the first root");
  if (sr != root2) return DataLoss("consistency proof does not lead to the second root");
  return Status::Ok();
}

StatusOr<CompactRange> CompactRange::FromNodes(uint64_t size, std::vector<MerkleHash> nodes) {
  if (nodes.size() != static_cast<size_t>(std::popcount(size))) {
    return InvalidArgument("a compact range of size " + std::to_string(size) + " has " +
                           std::to_string(std::popcount(size)) + " nodes, not " +
                           std::to_string(nodes.size()));
  }
  CompactRange range;
  range.size_ = size;
  range.nodes_ = std::move(nodes);
  return range;
}

void CompactRange::Append(const MerkleHash& leaf_hash, const NodeFn& on_node) {
  MerkleHash hash = leaf_hash;
  uint64_t index = size_;
  uint8_t level = 0;
  if (on_node) on_node(level, index, hash);
  // Each trailing one bit of the old size is a perfect subtree of the same height waiting, on
  // the left, for the one just completed.
  for (uint64_t s = size_; (s & 1) != 0; s >>= 1) {
    hash = MerkleNodeHash(nodes_.back(), hash);
    nodes_.pop_back();
    ++level;
    index >>= 1;
    if (on_node) on_node(level, index, hash);
  }
  nodes_.push_back(hash);
  ++size_;
}

std::string MerkleTree::NodeKey(uint8_t level, uint64_t index) {
  std::string key(kNodeKeyBytes, '\0');
  key[0] = kNodePrefix;
  key[1] = static_cast<char>(level);
  key.replace(2, 8, BigEndian64(index));
  return key;
}

StatusOr<std::unique_ptr<MerkleTree>> MerkleTree::Open(Store& store) {
  // The last leaf key gives the size: level-0 keys sort by index.
  std::optional<std::string> last_leaf;
  const std::string begin = NodeKey(0, 0);
  const std::string end = {kNodePrefix, '\x01'};
  PV_RETURN_IF_ERROR(
      store.ScanReverse(Cf::kAuditTree, begin, end, [&](std::string_view key, std::string_view) {
        last_leaf = std::string(key);
        return false;
      }));
  uint64_t size = 0;
  if (last_leaf) {
    if (last_leaf->size() != kNodeKeyBytes) return DataLoss("merkle leaf key is malformed");
    for (int i = 0; i < 8; ++i) {
      size = (size << 8) | static_cast<uint8_t>((*last_leaf)[2 + i]);
    }
    ++size;
  }
  auto tree = std::unique_ptr<MerkleTree>(new MerkleTree(store, CompactRange()));
  std::vector<MerkleHash> nodes;
  uint64_t offset = 0;
  for (int level = 63; level >= 0; --level) {
    if (((size >> level) & 1) == 0) continue;
    PV_ASSIGN_OR_RETURN(MerkleHash node,
                        tree->ReadNode(static_cast<uint8_t>(level), offset >> level));
    nodes.push_back(node);
    offset += uint64_t{1} << level;
  }
  PV_ASSIGN_OR_RETURN(CompactRange committed, CompactRange::FromNodes(size, std::move(nodes)));
  MutexLock lock(tree->mu_);  // uncontended: no other thread has `tree` yet
  tree->committed_ = std::move(committed);
  return tree;
}

uint64_t MerkleTree::Append(const MerkleHash& leaf_hash, WriteBatch& batch) {
  MutexLock lock(mu_);
  if (!pending_) pending_ = committed_;
  const uint64_t index = pending_->size();
  pending_->Append(leaf_hash, [&](uint8_t level, uint64_t node_index, const MerkleHash& hash) {
    batch.Put(Cf::kAuditTree, NodeKey(level, node_index), std::string(View(hash)));
  });
  return index;
}

void MerkleTree::Commit() {
  MutexLock lock(mu_);
  if (!pending_) return;
  committed_ = std::move(*pending_);
  pending_.reset();
}

void MerkleTree::Abort() {
  MutexLock lock(mu_);
  pending_.reset();
}

uint64_t MerkleTree::size() const {
  MutexLock lock(mu_);
  return committed_.size();
}

uint64_t MerkleTree::pending_size() const {
  MutexLock lock(mu_);
  return pending_ ? pending_->size() : committed_.size();
}

MerkleHash MerkleTree::Root() const {
  MutexLock lock(mu_);
  return committed_.Root();
}

StatusOr<MerkleHash> MerkleTree::ReadNode(uint8_t level, uint64_t index) const {
  PV_ASSIGN_OR_RETURN(std::optional<std::string> value,
                      store_.Get(Cf::kAuditTree, NodeKey(level, index)));
  const std::string where =
      "merkle node (level " + std::to_string(level) + ", index " + std::to_string(index) + ")";
  if (!value) return DataLoss(where + " is missing");
  MerkleHash hash;
  if (value->size() != hash.size()) return DataLoss(where + " is not 32 bytes");
  std::memcpy(hash.data(), value->data(), hash.size());
  return hash;
}

// Only called with ranges an RFC 9162 recursion produces: `begin` is a multiple of the smallest
// power of two >= end - begin, so the greedy split below yields aligned perfect subtrees of
// strictly decreasing height, whose right-to-left fold is MTH(D[begin:end]).
StatusOr<MerkleHash> MerkleTree::SubtreeRoot(uint64_t begin, uint64_t end) const {
  std::vector<MerkleHash> nodes;
  while (begin < end) {
    const int level = std::bit_width(end - begin) - 1;
    PV_ASSIGN_OR_RETURN(MerkleHash node, ReadNode(static_cast<uint8_t>(level), begin >> level));
    nodes.push_back(node);
    begin += uint64_t{1} << level;
  }
  return RootFromCompactRange(nodes);
}

StatusOr<MerkleHash> MerkleTree::RootAt(uint64_t tree_size) const {
  const uint64_t committed = size();
  if (tree_size > committed) {
    return InvalidArgument("tree size " + std::to_string(tree_size) + " exceeds the log size " +
                           std::to_string(committed));
  }
  return SubtreeRoot(0, tree_size);
}

Status MerkleTree::AppendInclusionPath(uint64_t leaf, uint64_t begin, uint64_t end,
                                       std::vector<MerkleHash>& out) const {
  if (end - begin == 1) return Status::Ok();
  const uint64_t mid = begin + SplitPoint(end - begin);
  if (leaf < mid) {
    PV_RETURN_IF_ERROR(AppendInclusionPath(leaf, begin, mid, out));
    PV_ASSIGN_OR_RETURN(MerkleHash sibling, SubtreeRoot(mid, end));
    out.push_back(sibling);
  } else {
    PV_RETURN_IF_ERROR(AppendInclusionPath(leaf, mid, end, out));
    PV_ASSIGN_OR_RETURN(MerkleHash sibling, SubtreeRoot(begin, mid));
    out.push_back(sibling);
  }
  return Status::Ok();
}

StatusOr<std::vector<MerkleHash>> MerkleTree::InclusionProof(uint64_t leaf_index,
                                                             uint64_t tree_size) const {
  const uint64_t committed = size();
  if (leaf_index >= tree_size || tree_size > committed) {
    return InvalidArgument("inclusion proof needs leaf index < tree size <= log size, got " +
                           std::to_string(leaf_index) + ", " + std::to_string(tree_size) + ", " +
                           std::to_string(committed));
  }
  std::vector<MerkleHash> proof;
  PV_RETURN_IF_ERROR(AppendInclusionPath(leaf_index, 0, tree_size, proof));
  return proof;
}

// SUBPROOF(m, D[begin:end], whole) of RFC 9162 section 2.1.4.1, with m = size1 absolute.
Status MerkleTree::AppendConsistencyPath(uint64_t size1, uint64_t begin, uint64_t end, bool whole,
                                         std::vector<MerkleHash>& out) const {
  if (size1 == end) {
    if (!whole) {
      PV_ASSIGN_OR_RETURN(MerkleHash node, SubtreeRoot(begin, end));
      out.push_back(node);
    }
    return Status::Ok();
  }
  const uint64_t mid = begin + SplitPoint(end - begin);
  if (size1 <= mid) {
    PV_RETURN_IF_ERROR(AppendConsistencyPath(size1, begin, mid, whole, out));
    PV_ASSIGN_OR_RETURN(MerkleHash right, SubtreeRoot(mid, end));
    out.push_back(right);
  } else {
    PV_RETURN_IF_ERROR(AppendConsistencyPath(size1, mid, end, false, out));
    PV_ASSIGN_OR_RETURN(MerkleHash left, SubtreeRoot(begin, mid));
    out.push_back(left);
  }
  return Status::Ok();
}

StatusOr<std::vector<MerkleHash>> MerkleTree::ConsistencyProof(uint64_t size1,
                                                               uint64_t size2) const {
  const uint64_t committed = size();
  if (size1 > size2 || size2 > committed) {
    return InvalidArgument("consistency proof needs size1 <= size2 <= log size, got " +
                           std::to_string(size1) + ", " + std::to_string(size2) + ", " +
                           std::to_string(committed));
  }
  std::vector<MerkleHash> proof;
  if (size1 == 0 || size1 == size2) return proof;
  PV_RETURN_IF_ERROR(AppendConsistencyPath(size1, 0, size2, true, proof));
  return proof;
}

Status MerkleLedgerObserver::OnAppend(uint64_t seq, std::string_view entry_bytes,
                                      WriteBatch& batch) {
  const uint64_t next = tree_.pending_size();
  if (seq != next + 1) {
    return Internal("merkle tree is out of step with the ledger: entry " + std::to_string(seq) +
                    " but the tree expects " + std::to_string(next + 1));
  }
  tree_.Append(MerkleLeafHash(entry_bytes), batch);
  return Status::Ok();
}

void MerkleLedgerObserver::OnCommitted(uint64_t last_seq) {
  // The ledger commits exactly what it appended; anything else is a bug that would make every
  // later proof wrong, so stop here rather than serve it.
  if (tree_.pending_size() != last_seq) {
    std::fputs("merkle tree is out of step with the committed ledger\n", stderr);
    std::abort();
  }
  tree_.Commit();
}

void MerkleLedgerObserver::OnAborted() { tree_.Abort(); }

Status BackfillMerkleTree(Store& store, MerkleTree& tree, uint64_t ledger_size,
                          uint64_t batch_entries) {
  if (tree.size() > ledger_size) {
    return FailedPrecondition("merkle tree has " + std::to_string(tree.size()) +
                              " leaves but the ledger only " + std::to_string(ledger_size) +
                              " entries");
  }
  if (batch_entries == 0) return InvalidArgument("batch_entries must be positive");
  while (tree.size() < ledger_size) {
    const uint64_t from = tree.size() + 1;
    const uint64_t to = std::min(ledger_size, tree.size() + batch_entries);
    WriteBatch batch;
    Status scanned =
        ScanAuditEntries(store, from, to, [&](const AuditEntry&, std::string_view bytes) {
          tree.Append(MerkleLeafHash(bytes), batch);
          return true;
        });
    if (scanned.ok() && tree.pending_size() != to) {
      scanned = DataLoss("audit log ends at entry " + std::to_string(tree.pending_size()) +
                         ", expected " + std::to_string(to));
    }
    if (scanned.ok()) scanned = store.Write(batch, /*sync=*/true);
    if (!scanned.ok()) {
      tree.Abort();
      return scanned;
    }
    tree.Commit();
  }
  return Status::Ok();
}

}  // namespace phivault::storage
