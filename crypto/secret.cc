#include "crypto/secret.h"

#include <sodium.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace phivault::crypto {
namespace {

// sodium_malloc needs sodium_init (it reads the page size). A function-local static makes the
// first allocation initialise libsodium exactly once, even when callers forgot InitSodium.
void EnsureSodiumInitialised() {
  static const bool ok = sodium_init() >= 0;
  if (!ok) {
    std::fputs("phivault: libsodium failed to initialise\n", stderr);
    std::abort();
  }
}

}  // namespace

SecretBytes::SecretBytes(size_t size) : size_(size) {
  if (size == 0) return;
  EnsureSodiumInitialised();
  // sodium_malloc mlocks on a best-effort basis: beyond RLIMIT_MEMLOCK the memory is still
  // guarded and wiped, just swappable. Only a failed allocation is fatal.
  data_ = static_cast<uint8_t*>(sodium_malloc(size));
  if (data_ == nullptr) {
    std::fputs("phivault: out of memory for secret key material\n", stderr);
    std::abort();
  }
}

SecretBytes SecretBytes::Random(size_t size) {
  SecretBytes s(size);
  if (size > 0) randombytes_buf(s.data_, size);
  return s;
}

SecretBytes SecretBytes::Zeros(size_t size) {
  SecretBytes s(size);
  if (size > 0) sodium_memzero(s.data_, size);
  return s;
}

SecretBytes SecretBytes::CopyFrom(std::string_view bytes, InsecureSecretKeyAccess) {
  SecretBytes s(bytes.size());
  if (!bytes.empty()) std::memcpy(s.data_, bytes.data(), bytes.size());
  return s;
}

SecretBytes::SecretBytes(SecretBytes&& other) noexcept : data_(other.data_), size_(other.size_) {
  other.data_ = nullptr;
  other.size_ = 0;
}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) sodium_free(data_);
    data_ = other.data_;
    size_ = other.size_;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

SecretBytes::~SecretBytes() {
  if (data_ != nullptr) sodium_free(data_);
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

Status InitSodium() {
  if (sodium_init() < 0) return Internal("libsodium failed to initialise");
  return Status::Ok();
}

Status InitAndHardenProcess() {
  PV_RETURN_IF_ERROR(InitSodium());
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return Internal(std::string("prctl(PR_SET_DUMPABLE, 0) failed: ") + std::strerror(errno));
  }
  const struct rlimit no_core = {0, 0};
  if (setrlimit(RLIMIT_CORE, &no_core) != 0) {
    return Internal(std::string("setrlimit(RLIMIT_CORE, 0) failed: ") + std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace phivault::crypto
