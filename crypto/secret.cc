#include "crypto/secret.h"

#include <sodium.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "base/mutex.h"
#include "crypto/secret_testing.h"

#if defined(__SANITIZE_ADDRESS__)
#define PHIVAULT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PHIVAULT_ASAN 1
#endif
#endif

#if defined(PHIVAULT_ASAN)
#include <sanitizer/asan_interface.h>
#endif

namespace phivault::crypto {
namespace {

// Free slots are poisoned under ASan so that reading a released key is reported, not silently
// served from a wiped slot; a live slot is unpoisoned only for the bytes its secret owns.
void Poison([[maybe_unused]] const void* p, [[maybe_unused]] size_t n) {
#if defined(PHIVAULT_ASAN)
  ASAN_POISON_MEMORY_REGION(p, n);
#endif
}

void Unpoison([[maybe_unused]] const void* p, [[maybe_unused]] size_t n) {
#if defined(PHIVAULT_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(p, n);
#endif
}

// sodium_malloc needs sodium_init (it reads the page size). A function-local static makes the
// first allocation initialise libsodium exactly once, even when callers forgot InitSodium.
void EnsureSodiumInitialised() {
  static const bool ok = sodium_init() >= 0;
  if (!ok) {
    std::fputs("phivault: libsodium failed to initialise\n", stderr);
    std::abort();
  }
}

// 16 KiB: 512 data keys or 256 signing keys per slab, and few pages against RLIMIT_MEMLOCK.
constexpr size_t kSlabBytes = 16 * 1024;

// Fixed-size slots carved from locked slabs. Invariant: every free slot is all zero bytes (and
// poisoned under ASan), so a released key is gone before its slot can be handed out again.
class SlotPool {
 public:
  explicit SlotPool(size_t slot_bytes) : slot_bytes_(slot_bytes) {}
  SlotPool(const SlotPool&) = delete;
  SlotPool& operator=(const SlotPool&) = delete;

  size_t slot_bytes() const { return slot_bytes_; }

  // A zeroed slot with its first `size` bytes usable, or nullptr if no slab can be mapped.
  uint8_t* Allocate(size_t size) EXCLUDES(mu_) {
    MutexLock lock(mu_);
    if (free_.empty() && !AddSlabLocked()) return nullptr;
    uint8_t* slot = free_.back();
    free_.pop_back();
    // Under the lock, so InspectSecretSlotForTesting never sees a slot half-handed-out.
    Unpoison(slot, size);
    return slot;
  }

  // Wipes the slot, then makes it available again. The wipe happens before the slot is on the
  // free list, so no other thread can be handed it with key bytes still in it.
  void Release(uint8_t* slot) EXCLUDES(mu_) {
    Unpoison(slot, slot_bytes_);
    sodium_memzero(slot, slot_bytes_);
    Poison(slot, slot_bytes_);
    MutexLock lock(mu_);
    free_.push_back(slot);
  }

  SecretSlotState Inspect(const uint8_t* address) EXCLUDES(mu_) {
    MutexLock lock(mu_);
    // Compared as integers: `address` may point anywhere, even outside every slab.
    const auto a = reinterpret_cast<uintptr_t>(address);
    const bool in_slab = std::any_of(slabs_.begin(), slabs_.end(), [&](const uint8_t* slab) {
      const auto start = reinterpret_cast<uintptr_t>(slab);
      return a >= start && a < start + kSlabBytes && (a - start) % slot_bytes_ == 0;
    });
    if (!in_slab) return SecretSlotState::kNotInPool;
    if (std::find(free_.begin(), free_.end(), address) == free_.end()) {
      return SecretSlotState::kInUse;
    }
    Unpoison(address, slot_bytes_);
    const bool wiped = sodium_is_zero(address, slot_bytes_) == 1;
    Poison(address, slot_bytes_);
    return wiped ? SecretSlotState::kFreeAndWiped : SecretSlotState::kFreeNotWiped;
  }

 private:
  bool AddSlabLocked() REQUIRES(mu_) {
    // One sodium_malloc per slab instead of per key: guard pages around the slab, mlock'd on a
    // best-effort basis (beyond RLIMIT_MEMLOCK it is still wiped, just swappable) and excluded
    // from core dumps (MADV_DONTDUMP). sodium_malloc fills with garbage, hence the wipe.
    auto* slab = static_cast<uint8_t*>(sodium_malloc(kSlabBytes));
    if (slab == nullptr) return false;
    sodium_memzero(slab, kSlabBytes);
    Poison(slab, kSlabBytes);
    slabs_.push_back(slab);
    const size_t slots = kSlabBytes / slot_bytes_;
    free_.reserve(free_.size() + slots);
    // The free list is a stack: the most recently wiped slot is reused first, which keeps the
    // slots in use on few cache lines.
    for (size_t i = slots; i > 0; --i) free_.push_back(slab + (i - 1) * slot_bytes_);
    return true;
  }

  const size_t slot_bytes_;
  Mutex mu_;
  std::vector<uint8_t*> free_ GUARDED_BY(mu_);
  std::vector<uint8_t*> slabs_ GUARDED_BY(mu_);
};

// The slot classes, smallest first: 32 bytes for AEAD, KDF and master keys, 64 for Ed25519
// secret keys. Intentionally leaked: a SecretBytes with static storage may be destroyed after any
// pool object would be, and the slabs stay mapped until exit anyway.
std::span<SlotPool* const> Pools() {
  static SlotPool* const pools[] = {new SlotPool(32), new SlotPool(64)};
  return pools;
}

// The pool serving a secret of `size` bytes, or nullptr if it gets its own sodium_malloc.
SlotPool* PoolFor(size_t size) {
  if (size == 0) return nullptr;
  for (SlotPool* pool : Pools()) {
    if (size <= pool->slot_bytes()) return pool;
  }
  return nullptr;
}

uint8_t* AllocateSecret(size_t size) {
  if (SlotPool* pool = PoolFor(size)) return pool->Allocate(size);
  return static_cast<uint8_t*>(sodium_malloc(size));
}

void FreeSecret(uint8_t* data, size_t size) {
  if (data == nullptr) return;
  if (SlotPool* pool = PoolFor(size)) {
    pool->Release(data);
  } else {
    sodium_free(data);
  }
}

}  // namespace

SecretSlotState InspectSecretSlotForTesting(const void* address) {
  const auto* p = static_cast<const uint8_t*>(address);
  for (SlotPool* pool : Pools()) {
    const SecretSlotState state = pool->Inspect(p);
    if (state != SecretSlotState::kNotInPool) return state;
  }
  return SecretSlotState::kNotInPool;
}

size_t SecretSlotClassForTesting(size_t size) {
  const SlotPool* pool = PoolFor(size);
  return pool == nullptr ? 0 : pool->slot_bytes();
}

SecretBytes::SecretBytes(size_t size) : size_(size) {
  if (size == 0) return;
  EnsureSodiumInitialised();
  data_ = AllocateSecret(size);
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
    FreeSecret(data_, size_);
    data_ = other.data_;
    size_ = other.size_;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

SecretBytes::~SecretBytes() { FreeSecret(data_, size_); }

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
