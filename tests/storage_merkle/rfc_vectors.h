// RFC 6962 / RFC 9162 Merkle tree test vectors shared by the Merkle tests.
//
// Source: transparency-dev/merkle, proof/verify_test.go (commit
// 02194e9afb6c1d95b5381350007963aa70fff472): the eight leaves, the roots of the trees of their
// first 1..8 leaves, and inclusion and consistency proofs over them (originally from
// google/certificate-transparency's C++ merkle tree tests).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "crypto/hash.h"
#include "storage/merkle.h"

namespace phivault::storage::testing {

inline MerkleHash Hex32(const std::string& hex) {
  StatusOr<std::string> raw = crypto::HexDecode(hex);
  MerkleHash h{};
  if (!raw.ok() || raw->size() != h.size()) std::abort();
  std::copy(raw->begin(), raw->end(), h.begin());
  return h;
}

inline std::string Unhex(const std::string& hex) {
  StatusOr<std::string> raw = crypto::HexDecode(hex);
  if (!raw.ok()) std::abort();
  return *raw;
}

// The leaf inputs (entry bytes), in order.
inline std::vector<std::string> RfcLeaves() {
  return {Unhex(""),
          Unhex("00"),
          Unhex("10"),
          Unhex("2021"),
          Unhex("3031"),
          Unhex("40414243"),
          Unhex("5051525354555657"),
          Unhex("606162636465666768696a6b6c6d6e6f")};
}

// RfcRoots()[n - 1] is the root of the tree of the first n leaves.
inline std::vector<MerkleHash> RfcRoots() {
  return {Hex32("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
          Hex32("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
          Hex32("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
          Hex32("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
          Hex32("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
          Hex32("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
          Hex32("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
          Hex32("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")};
}

struct InclusionVector {
  uint64_t leaf_index;  // 0-based (the source lists 1-based leaf numbers)
  uint64_t tree_size;
  std::vector<MerkleHash> proof;
};

inline std::vector<InclusionVector> RfcInclusionProofs() {
  return {
      {0, 1, {}},
      {0,
       8,
       {Hex32("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
        Hex32("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        Hex32("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")}},
      {5,
       8,
       {Hex32("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        Hex32("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
        Hex32("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")}},
      {2, 3, {Hex32("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")}},
      {1,
       5,
       {Hex32("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
        Hex32("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        Hex32("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")}},
  };
}

struct ConsistencyVector {
  uint64_t size1;
  uint64_t size2;
  std::vector<MerkleHash> proof;
};

inline std::vector<ConsistencyVector> RfcConsistencyProofs() {
  return {
      {1, 1, {}},
      {1,
       8,
       {Hex32("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
        Hex32("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        Hex32("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")}},
      {6,
       8,
       {Hex32("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        Hex32("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
        Hex32("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")}},
      {2,
       5,
       {Hex32("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        Hex32("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")}},
      {6,
       7,
       {Hex32("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        Hex32("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
        Hex32("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")}},
  };
}

}  // namespace phivault::storage::testing
