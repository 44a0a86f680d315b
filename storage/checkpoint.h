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
//
// phivault writes one extension line, the signing time, first after the root:
//
//   time <RFC 3339 UTC, seconds, e.g. 2026-12-01T11:07:38Z>\n
//
// It is inside the signed text, so whoever holds a checkpoint knows when the vault vouched for
// that tree. Notes without it (made before it existed, or by other tools) still parse.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "crypto/signing.h"
#include "storage/merkle.h"

namespace phivault::storage {

struct Checkpoint {
  std::string origin;
  uint64_t size = 0;
  MerkleHash root{};
  std::vector<std::string> extensions;  // other extension lines, opaque, in order
  // The signing time (unix seconds, UTC), from the "time" extension line; nullopt if absent.
  std::optional<int64_t> time_unix_seconds;

  bool operator==(const Checkpoint&) const = default;
};

// The note text of `checkpoint`: the time line (if set) before the other extension lines.
// InvalidArgument if the origin is empty, an origin or extension line is empty or holds a
// newline (it would frame a different checkpoint), an extension line starts with "time " (the
// time has its own member), or the time is before 1970 or after 9999.
StatusOr<std::string> CheckpointText(const Checkpoint& checkpoint);
// Parses a checkpoint note text (as returned by crypto::VerifyNote). InvalidArgument naming the
// line that is malformed: a missing or empty origin, a size with a sign, leading zero or
// overflow, a root that is not the canonical base64 of 32 bytes, an empty extension line, a
// "time " line that is not exactly the form CheckpointText writes, or more than one of them.
StatusOr<Checkpoint> ParseCheckpointText(std::string_view text);

// The signed note for `checkpoint`, signed by `signer` under `key_name`. Errors as
// CheckpointText and crypto::SignNote.
StatusOr<std::string> SignCheckpoint(const Checkpoint& checkpoint, std::string_view key_name,
                                     const crypto::Ed25519Signer& signer);
// Verifies `note` against `verifier` and parses its text. The errors of crypto::VerifyNote
// (NotFound: no signature by that key; DataLoss: the signature does not verify;
// InvalidArgument: a malformed note), then those of ParseCheckpointText.
StatusOr<Checkpoint> OpenCheckpoint(std::string_view note, const crypto::NoteVerifier& verifier);

// The checkpoint a signed note claims to be, WITHOUT checking its signature: for choosing what to
// ask the daemon for (e.g. the sizes of saved checkpoints), never for trusting it.
// InvalidArgument if the note has no text part, then the errors of ParseCheckpointText.
StatusOr<Checkpoint> ParseUnverifiedCheckpoint(std::string_view note);

// "2026-12-01T11:07:38Z" for unix seconds `t` (the form of the "time" line); "" outside the
// years 1970-9999.
std::string Rfc3339Utc(int64_t t);

}  // namespace phivault::storage
