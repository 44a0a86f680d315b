// Secret key material: locked, guarded, wiped memory, and the one token that lets raw bytes out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/status.h"

namespace phivault::crypto {

// The only way to see raw key bytes. Every place that takes this token is a place where key
// material leaves its wrapper; `grep -rn InsecureSecretKeyAccess` lists them all.
class InsecureSecretKeyAccess {
 public:
  static InsecureSecretKeyAccess Get() { return InsecureSecretKeyAccess(); }

 private:
  InsecureSecretKeyAccess() = default;
};

// Fixed-size secret bytes in locked memory, wiped on destruction. Move-only. A moved-from
// SecretBytes is empty.
// Up to 64 bytes (every key phivault holds) live in a slot of a process-wide pool: slabs
// allocated once with sodium_malloc (guard pages around the slab, mlock'd, MADV_DONTDUMP) and
// carved into 32- and 64-byte slots, handed out under a mutex and sodium_memzero'd on release.
// This makes a per-request key cost a lock and a wipe instead of mmap/mprotect/munmap. Slabs
// are never unmapped, so the pool holds its peak number of live keys. Larger secrets get their
// own sodium_malloc region (guard pages, canary, sodium_free wipes). Under AddressSanitizer free
// slots and the unused tail of a slot are poisoned, so a use after free is reported.
// Locking is best effort: beyond RLIMIT_MEMLOCK the memory is still wiped, just swappable.
// Thread-safe: distinct SecretBytes may be created and destroyed from any thread concurrently.
class SecretBytes {
 public:
  SecretBytes() = default;
  // `size` random bytes from the OS CSPRNG. Aborts if the memory cannot be allocated.
  static SecretBytes Random(size_t size);
  // `size` zero bytes, to be filled in place (e.g. by a decryption).
  static SecretBytes Zeros(size_t size);
  // Copies `bytes` into fresh secret memory. The caller remains responsible for wiping its copy.
  static SecretBytes CopyFrom(std::string_view bytes, InsecureSecretKeyAccess);

  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  ~SecretBytes();

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const uint8_t* data(InsecureSecretKeyAccess) const { return data_; }
  uint8_t* mutable_data(InsecureSecretKeyAccess) { return data_; }
  std::string_view view(InsecureSecretKeyAccess) const {
    return {reinterpret_cast<const char*>(data_), size_};
  }

 private:
  explicit SecretBytes(size_t size);
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Constant-time comparison of two byte strings (lengths are not secret).
[[nodiscard]] bool ConstantTimeEquals(std::string_view a, std::string_view b);

// Initialises libsodium and hardens the process: not dumpable (PR_SET_DUMPABLE 0), no core
// files (RLIMIT_CORE 0). Call once at start of every binary that holds keys. Returns an error
// if libsodium cannot initialise.
[[nodiscard]] Status InitAndHardenProcess();

// Initialises libsodium only (tools and tests that want core dumps). Idempotent.
[[nodiscard]] Status InitSodium();

}  // namespace phivault::crypto
