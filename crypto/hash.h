// Hashing, the keyed blind index, and byte encodings.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"
#include "crypto/secret.h"

namespace phivault::crypto {

using Sha256Digest = std::array<uint8_t, 32>;

Sha256Digest Sha256(std::string_view data);
// SHA-256 over the concatenation of parts, without building the concatenation.
Sha256Digest Sha256(std::initializer_list<std::string_view> parts);
inline std::string_view AsView(const Sha256Digest& d) {
  return {reinterpret_cast<const char*>(d.data()), d.size()};
}

// Unkeyed BLAKE2b-256 over data fed in pieces (the file hashes of backup manifests,
// storage/backup.h). Final returns the 32 raw bytes; the hasher is then spent.
class Blake2b256 {
 public:
  static constexpr size_t kOutputBytes = 32;
  Blake2b256();
  ~Blake2b256();
  Blake2b256(const Blake2b256&) = delete;
  Blake2b256& operator=(const Blake2b256&) = delete;
  void Update(std::string_view data);
  std::string Final();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Keyed BLAKE2b-256 of a patient identifier: lets storage index and find a patient's records
// without storing the identifier. Same key + same id -> same 32 bytes; without the key the
// output reveals nothing about the id.
class BlindIndex {
 public:
  static constexpr size_t kKeyBytes = 32;
  static constexpr size_t kOutputBytes = 32;
  // InvalidArgument "blind index key must be 32 bytes".
  static StatusOr<std::unique_ptr<BlindIndex>> Create(SecretBytes key);
  // 32 raw bytes. `domain` separates uses (e.g. "patient"), so one key serves several indexes.
  std::string Compute(std::string_view domain, std::string_view value) const;

 private:
  explicit BlindIndex(SecretBytes key) : key_(std::move(key)) {}
  SecretBytes key_;
};

std::string HexEncode(std::string_view bytes);
// InvalidArgument on odd length or a non-hex character.
StatusOr<std::string> HexDecode(std::string_view hex);
// Standard base64 with padding (RFC 4648 section 4). Decoding is strict: InvalidArgument on a
// character outside the alphabet, missing or extra padding, or non-zero trailing bits.
std::string Base64Encode(std::string_view bytes);
StatusOr<std::string> Base64Decode(std::string_view text);
// URL-safe base64 without padding (RFC 4648 section 5), used for record ids. Equally strict.
std::string Base64UrlEncode(std::string_view bytes);
StatusOr<std::string> Base64UrlDecode(std::string_view text);
// `n` random bytes (not secret memory; for ids, salts, tokens).
std::string RandomBytes(size_t n);

}  // namespace phivault::crypto
