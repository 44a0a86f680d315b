// The vault id in the database: the same id the keyring holds (crypto/keyring.h), so that the
// daemon can tell at start whether a keyring belongs to this database. Stored in Cf::kState under
// kVaultIdKey as the keyring's 32 hex characters.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "storage/store.h"

namespace phivault::storage {

inline constexpr std::string_view kVaultIdKey = "vault/id";

// The stored vault id, std::nullopt if the database was never bound to a keyring. Unavailable
// on an I/O error.
StatusOr<std::optional<std::string>> ReadVaultId(Store& store);

// Stores `vault_id` durably (synced). Binding is once: FailedPrecondition naming both ids if a
// different id is stored already; OK if the same one is.
[[nodiscard]] Status BindVaultId(Store& store, std::string_view vault_id);

// True if any column family holds a key other than the vault id — records, indexes, audit
// entries, holds or state: a database a new keyring must never be created over.
StatusOr<bool> HoldsVaultData(Store& store);

}  // namespace phivault::storage
