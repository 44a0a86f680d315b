// Signed checkpoints of the audit Merkle tree, in the C2SP tlog-checkpoint form
// (https://c2sp.org/tlog-checkpoint): a C2SP signed note (https://c2sp.org/signed-note) whose
// text is
//
//   <origin>\n
//   <tree size, decimal, no leading zeroes>\n
//   <base64 (RFC 4648 section 4) of the 32-byte RFC 9162 root hash>\n
//   [<extension line>\n ...]
//
// followed by a blank line and the Ed25519 signature line "— <key name> <base64(key id ||
// signature)>". The key name should equal the origin.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/signing.h"
#include "crypto/status.h"
#include "storage/merkle.h"

namespace phivault::storage {

struct Checkpoint {
  std::string origin;
  uint64_t size = 0;
  MerkleHash root{};
  std::vector<std::string> extensions;  // opaque extra lines; phivault writes none

  bool operator==(const Checkpoint&) const = default;
};

// The note text of `checkpoint`. InvalidArgument if the origin is empty or an origin or
// extension line is empty or holds a newline (it would frame a different checkpoint).
StatusOr<std::string> CheckpointText(const Checkpoint& checkpoint);
// Parses a checkpoint note text (as returned by crypto::VerifyNote). InvalidArgument naming the
// line that is malformed: a missing or empty origin, a size with a sign, leading zero or
// overflow, a root that is not the canonical base64 of 32 bytes, an empty extension line.
StatusOr<Checkpoint> ParseCheckpointText(std::string_view text);

// The signed note for `checkpoint`, signed by `signer` under `key_name`. Errors as
// CheckpointText and crypto::SignNote.
StatusOr<std::string> SignCheckpoint(const Checkpoint& checkpoint, std::string_view key_name,
                                     const crypto::Ed25519Signer& signer);
// Verifies `note` against `verifier` and parses its text. The errors of crypto::VerifyNote
// (NotFound: no signature by that key; DataLoss: the signature does not verify;
// InvalidArgument: a malformed note), then those of ParseCheckpointText.
StatusOr<Checkpoint> OpenCheckpoint(std::string_view note, const crypto::NoteVerifier& verifier);

}  // namespace phivault::storage
