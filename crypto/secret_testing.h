// Test hooks for the locked-slot pool behind SecretBytes. Read-only: they report what the pool
// did with an address and never return key bytes, so linking them into production is harmless.
#pragma once

#include <cstddef>

namespace phivault::crypto {

enum class SecretSlotState {
  kNotInPool,     // not a slot of the pool (e.g. a secret above 64 bytes, own sodium_malloc)
  kInUse,         // a slot currently held by a SecretBytes
  kFreeAndWiped,  // a released slot whose every byte is zero
  kFreeNotWiped,  // a released slot still holding non-zero bytes: a bug
};

// The state of the pool slot starting at `address`. Takes the slot class's lock, so it may be
// called while other threads allocate and release.
SecretSlotState InspectSecretSlotForTesting(const void* address);

// Size in bytes of the slot class that serves a secret of `size` bytes, or 0 when such a secret
// bypasses the pool (size 0, or above the largest class).
size_t SecretSlotClassForTesting(size_t size);

}  // namespace phivault::crypto
