// Ed25519 signatures and C2SP signed notes (https://c2sp.org/signed-note), used for audit
// checkpoints (https://c2sp.org/tlog-checkpoint).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "crypto/secret.h"

namespace phivault::crypto {

class Ed25519Signer {
 public:
  static constexpr size_t kSeedBytes = 32;
  // From a 32-byte seed. InvalidArgument "ed25519 seed must be 32 bytes".
  static StatusOr<std::unique_ptr<Ed25519Signer>> Create(SecretBytes seed);
  std::string Sign(std::string_view message) const;              // 64-byte detached signature
  const std::string& public_key() const { return public_key_; }  // 32 bytes

 private:
  Ed25519Signer(SecretBytes secret_key, std::string public_key)
      : secret_key_(std::move(secret_key)), public_key_(std::move(public_key)) {}
  SecretBytes secret_key_;  // libsodium's 64-byte secret key
  std::string public_key_;
};

// True only if `signature` is a valid Ed25519 signature of `message` under `public_key`.
[[nodiscard]] bool Ed25519Verify(std::string_view public_key, std::string_view message,
                                 std::string_view signature);

// Signed-note key id: the first 4 bytes of SHA-256(name || "\n" || 0x01 || public_key).
std::string NoteKeyId(std::string_view name, std::string_view public_key);
// Verifier key string "<name>+<hex key id>+<base64(0x01 || public_key)>".
std::string NoteVerifierKey(std::string_view name, std::string_view public_key);
struct NoteVerifier {
  std::string name;
  std::string public_key;  // 32 bytes
};
// Parses a verifier key string. InvalidArgument naming what is wrong (name, key id that does not
// match name and key, algorithm other than Ed25519, key length, encoding).
StatusOr<NoteVerifier> ParseNoteVerifierKey(std::string_view vkey);

// Signs `text` (must be non-empty UTF-8 ending in "\n", without a blank line or control
// characters other than newline) and returns the note:
// text + "\n" + "— <name> <base64(key id || signature)>\n". Key names are non-empty, without
// "+" or whitespace. InvalidArgument naming the broken rule.
StatusOr<std::string> SignNote(std::string_view text, std::string_view name,
                               const Ed25519Signer& signer);
// Splits a note, and returns its text if a signature line by `verifier` verifies. Lines by
// other keys are parsed but ignored. DataLoss "note signature does not verify" / NotFound
// "no signature by <name>" / InvalidArgument for a malformed note (as golang.org/x/mod/sumdb/note
// Open: at most 100 signature lines).
StatusOr<std::string> VerifyNote(std::string_view note, const NoteVerifier& verifier);

}  // namespace phivault::crypto
