// Authenticated encryption: XChaCha20-Poly1305 (IETF), nonces made inside, never by callers.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"
#include "crypto/secret.h"

namespace phivault::crypto {

class Aead {
 public:
  static constexpr size_t kKeyBytes = 32;
  static constexpr size_t kNonceBytes = 24;
  static constexpr size_t kTagBytes = 16;
  // Bytes that Encrypt adds to the plaintext: nonce + tag.
  static constexpr size_t kOverhead = kNonceBytes + kTagBytes;

  // Takes ownership of `key`. Fails with InvalidArgument "key length must be 32 bytes".
  static StatusOr<std::unique_ptr<Aead>> Create(SecretBytes key);
  // A fresh random key.
  static std::unique_ptr<Aead> Generate();

  Aead(const Aead&) = delete;
  Aead& operator=(const Aead&) = delete;

  // Returns nonce(24) || ciphertext || tag(16). The nonce is random (192 bits), so the same key
  // may seal any number of messages. Never fails.
  std::string Encrypt(std::string_view plaintext, std::string_view associated_data) const;

  // Inverse of Encrypt. DataLoss "ciphertext failed authentication" if anything (ciphertext,
  // tag, nonce, associated data or key) differs; InvalidArgument if too short to be a ciphertext.
  [[nodiscard]] StatusOr<std::string> Decrypt(std::string_view ciphertext,
                                              std::string_view associated_data) const;

  // Test-only hook for known-answer tests: encrypts with a caller-chosen nonce. Not for
  // production code: the name and token make every use greppable.
  std::string EncryptWithNonceForTesting(std::string_view nonce, std::string_view plaintext,
                                         std::string_view associated_data,
                                         InsecureSecretKeyAccess) const;

  const SecretBytes& key(InsecureSecretKeyAccess) const { return key_; }

 private:
  explicit Aead(SecretBytes key) : key_(std::move(key)) {}
  SecretBytes key_;
};

// Seals `key` (a data-encryption key) under `kek` with `associated_data`; the result is what
// gets stored ("wrapped DEK"). UnwrapKey is its inverse and fails with DataLoss on any change,
// InvalidArgument if `wrapped` is not longer than kOverhead. The key is unwrapped straight
// into secret memory.
std::string WrapKey(const Aead& kek, const SecretBytes& key, std::string_view associated_data);
[[nodiscard]] StatusOr<SecretBytes> UnwrapKey(const Aead& kek, std::string_view wrapped,
                                              std::string_view associated_data);

}  // namespace phivault::crypto
