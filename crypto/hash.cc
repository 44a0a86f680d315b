#include "crypto/hash.h"

#include <sodium.h>

namespace phivault::crypto {
namespace {

const unsigned char* Bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

StatusOr<std::string> DecodeBase64(std::string_view text, int variant, const char* what) {
  std::string out(text.size() / 4 * 3 + 3, '\0');
  size_t written = 0;
  // No ignore set and no end pointer: any stray character, bad padding or non-zero trailing
  // bits makes libsodium reject the whole input.
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                        text.size(), nullptr, &written, nullptr, variant) != 0) {
    return InvalidArgument(std::string("malformed ") + what);
  }
  out.resize(written);
  return out;
}

std::string EncodeBase64(std::string_view bytes, int variant) {
  std::string out(sodium_base64_encoded_len(bytes.size(), variant), '\0');
  sodium_bin2base64(out.data(), out.size(), Bytes(bytes), bytes.size(), variant);
  out.resize(out.size() - 1);  // drop the terminating NUL
  return out;
}

}  // namespace

Sha256Digest Sha256(std::string_view data) {
  Sha256Digest d;
  crypto_hash_sha256(d.data(), Bytes(data), data.size());
  return d;
}

Sha256Digest Sha256(std::initializer_list<std::string_view> parts) {
  crypto_hash_sha256_state state;
  crypto_hash_sha256_init(&state);
  for (std::string_view p : parts) crypto_hash_sha256_update(&state, Bytes(p), p.size());
  Sha256Digest d;
  crypto_hash_sha256_final(&state, d.data());
  return d;
}

StatusOr<std::unique_ptr<BlindIndex>> BlindIndex::Create(SecretBytes key) {
  if (key.size() != kKeyBytes) return InvalidArgument("blind index key must be 32 bytes");
  return std::unique_ptr<BlindIndex>(new BlindIndex(std::move(key)));
}

std::string BlindIndex::Compute(std::string_view domain, std::string_view value) const {
  static_assert(kOutputBytes >= crypto_generichash_BYTES_MIN &&
                kOutputBytes <= crypto_generichash_BYTES_MAX);
  // The domain is length-prefixed so that ("ab", "c") and ("a", "bc") hash differently.
  unsigned char domain_len[8];
  uint64_t n = domain.size();
  for (unsigned char& b : domain_len) {
    b = static_cast<unsigned char>(n & 0xff);
    n >>= 8;
  }
  crypto_generichash_state state;
  crypto_generichash_init(&state, key_.data(InsecureSecretKeyAccess::Get()), key_.size(),
                          kOutputBytes);
  crypto_generichash_update(&state, domain_len, sizeof domain_len);
  crypto_generichash_update(&state, Bytes(domain), domain.size());
  crypto_generichash_update(&state, Bytes(value), value.size());
  std::string out(kOutputBytes, '\0');
  crypto_generichash_final(&state, reinterpret_cast<unsigned char*>(out.data()), out.size());
  sodium_memzero(&state, sizeof state);
  return out;
}

std::string HexEncode(std::string_view bytes) {
  std::string out(bytes.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), Bytes(bytes), bytes.size());
  out.resize(bytes.size() * 2);
  return out;
}

StatusOr<std::string> HexDecode(std::string_view hex) {
  if (hex.size() % 2 != 0) return InvalidArgument("hex string must have an even length");
  std::string out(hex.size() / 2, '\0');
  size_t written = 0;
  if (sodium_hex2bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), hex.data(),
                     hex.size(), nullptr, &written, nullptr) != 0 ||
      written != out.size()) {
    return InvalidArgument("hex string contains a non-hex character");
  }
  return out;
}

std::string Base64Encode(std::string_view bytes) {
  return EncodeBase64(bytes, sodium_base64_VARIANT_ORIGINAL);
}

StatusOr<std::string> Base64Decode(std::string_view text) {
  return DecodeBase64(text, sodium_base64_VARIANT_ORIGINAL, "base64");
}

std::string Base64UrlEncode(std::string_view bytes) {
  return EncodeBase64(bytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

StatusOr<std::string> Base64UrlDecode(std::string_view text) {
  return DecodeBase64(text, sodium_base64_VARIANT_URLSAFE_NO_PADDING, "url-safe base64");
}

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (n > 0) randombytes_buf(out.data(), n);
  return out;
}

}  // namespace phivault::crypto

namespace phivault::crypto {

struct Blake2b256::State {
  crypto_generichash_state st;
};

Blake2b256::Blake2b256() : state_(std::make_unique<State>()) {
  crypto_generichash_init(&state_->st, nullptr, 0, kOutputBytes);
}

Blake2b256::~Blake2b256() = default;

void Blake2b256::Update(std::string_view data) {
  crypto_generichash_update(&state_->st, reinterpret_cast<const unsigned char*>(data.data()),
                            data.size());
}

std::string Blake2b256::Final() {
  std::string out(kOutputBytes, '\0');
  crypto_generichash_final(&state_->st, reinterpret_cast<unsigned char*>(out.data()), out.size());
  return out;
}

}  // namespace phivault::crypto
