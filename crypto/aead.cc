#include "crypto/aead.h"

#include <sodium.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace phivault::crypto {
namespace {

static_assert(Aead::kKeyBytes == crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
static_assert(Aead::kNonceBytes == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
static_assert(Aead::kTagBytes == crypto_aead_xchacha20poly1305_ietf_ABYTES);

const unsigned char* Bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

void SealWithNonce(const SecretBytes& key, const unsigned char* nonce, std::string_view plaintext,
                   std::string_view associated_data, unsigned char* out) {
  unsigned long long written = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      out, &written, Bytes(plaintext), plaintext.size(), Bytes(associated_data),
      associated_data.size(), nullptr, nonce, key.data(InsecureSecretKeyAccess::Get()));
}

// Opens nonce || ciphertext || tag into `out`, which must hold size - kOverhead bytes.
Status Open(const SecretBytes& key, std::string_view sealed, std::string_view associated_data,
            unsigned char* out) {
  const auto* nonce = Bytes(sealed);
  const auto* body = nonce + Aead::kNonceBytes;
  const size_t body_size = sealed.size() - Aead::kNonceBytes;
  unsigned long long written = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          out, &written, nullptr, body, body_size, Bytes(associated_data), associated_data.size(),
          nonce, key.data(InsecureSecretKeyAccess::Get())) != 0) {
    return DataLoss("ciphertext failed authentication");
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::unique_ptr<Aead>> Aead::Create(SecretBytes key) {
  if (key.size() != kKeyBytes) return InvalidArgument("key length must be 32 bytes");
  return std::unique_ptr<Aead>(new Aead(std::move(key)));
}

std::unique_ptr<Aead> Aead::Generate() {
  return std::unique_ptr<Aead>(new Aead(SecretBytes::Random(kKeyBytes)));
}

std::string Aead::Encrypt(std::string_view plaintext, std::string_view associated_data) const {
  std::string out(kOverhead + plaintext.size(), '\0');
  auto* nonce = reinterpret_cast<unsigned char*>(out.data());
  randombytes_buf(nonce, kNonceBytes);
  SealWithNonce(key_, nonce, plaintext, associated_data, nonce + kNonceBytes);
  return out;
}

StatusOr<std::string> Aead::Decrypt(std::string_view ciphertext,
                                    std::string_view associated_data) const {
  if (ciphertext.size() < kOverhead) {
    return InvalidArgument("ciphertext must be at least 40 bytes (nonce and tag)");
  }
  std::string plaintext(ciphertext.size() - kOverhead, '\0');
  unsigned char spare = 0;  // a valid pointer for an empty plaintext
  auto* out = plaintext.empty() ? &spare : reinterpret_cast<unsigned char*>(plaintext.data());
  PV_RETURN_IF_ERROR(Open(key_, ciphertext, associated_data, out));
  return plaintext;
}

std::string Aead::EncryptWithNonceForTesting(std::string_view nonce, std::string_view plaintext,
                                             std::string_view associated_data,
                                             InsecureSecretKeyAccess) const {
  if (nonce.size() != kNonceBytes) {
    std::fputs("phivault: EncryptWithNonceForTesting needs a 24-byte nonce\n", stderr);
    std::abort();
  }
  std::string out(kOverhead + plaintext.size(), '\0');
  auto* dst = reinterpret_cast<unsigned char*>(out.data());
  std::copy(nonce.begin(), nonce.end(), out.begin());
  SealWithNonce(key_, dst, plaintext, associated_data, dst + kNonceBytes);
  return out;
}

std::string WrapKey(const Aead& kek, const SecretBytes& key, std::string_view associated_data) {
  return kek.Encrypt(key.view(InsecureSecretKeyAccess::Get()), associated_data);
}

StatusOr<SecretBytes> UnwrapKey(const Aead& kek, std::string_view wrapped,
                                std::string_view associated_data) {
  if (wrapped.size() <= Aead::kOverhead) {
    return InvalidArgument("wrapped key must be longer than 40 bytes (nonce and tag)");
  }
  // Decrypt straight into secret memory so the key never sits in an ordinary buffer.
  SecretBytes key = SecretBytes::Zeros(wrapped.size() - Aead::kOverhead);
  PV_RETURN_IF_ERROR(Open(kek.key(InsecureSecretKeyAccess::Get()), wrapped, associated_data,
                          key.mutable_data(InsecureSecretKeyAccess::Get())));
  return key;
}

}  // namespace phivault::crypto
