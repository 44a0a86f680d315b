#include "storage/vault_id.h"

namespace phivault::storage {

StatusOr<std::optional<std::string>> ReadVaultId(Store& store) {
  return store.Get(Cf::kState, kVaultIdKey);
}

Status BindVaultId(Store& store, std::string_view vault_id) {
  PV_ASSIGN_OR_RETURN(std::optional<std::string> stored, ReadVaultId(store));
  if (stored.has_value()) {
    if (*stored == vault_id) return Status::Ok();
    return FailedPrecondition("database belongs to vault " + *stored + ", not vault " +
                              std::string(vault_id));
  }
  WriteBatch batch;
  batch.Put(Cf::kState, std::string(kVaultIdKey), std::string(vault_id));
  return store.Write(batch, /*sync=*/true);
}

StatusOr<bool> HoldsVaultData(Store& store) {
  for (int i = 0; i < kNumCfs; ++i) {
    const Cf cf = static_cast<Cf>(i);
    bool found = false;
    PV_RETURN_IF_ERROR(store.Scan(cf, "", "", [&](std::string_view key, std::string_view) {
      found = !(cf == Cf::kState && key == kVaultIdKey);
      return !found;
    }));
    if (found) return true;
  }
  return false;
}

}  // namespace phivault::storage
