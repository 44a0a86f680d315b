// `phivault keyring export`: one keyring copy sealed for offline custody (a safe, a second site),
// and its way back. The export is the one artefact besides the live keyring and its mirrors that
// holds the epoch keys: losing every copy loses the data, and a copy kept past its time defeats
// every crypto-shredding done since it was taken (docs/keys.md).
//
// Sealed under the master key of the time of export (no second secret to keep): the keyring's
// slots are already sealed under it, and the export adds an authenticated envelope that binds
// the generation, the vault id and the time, so an export cannot be passed off as another.
// An export taken before a master-key rotation opens only with the old key.
//
// Format (little-endian): "PVKX" | u32 version (1) | u64 keyring generation | i64 exported
// unix time | vault id (16) | XChaCha20-Poly1305 of the keyring copy under
// crypto_kdf(master key, subkey 1, context "pvkexpt1"), AAD "phivault/keyring-export/v1" ||
// everything before it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"
#include "crypto/keyring.h"
#include "crypto/keyring_file.h"
#include "crypto/secret.h"

namespace phivault::crypto {

struct KeyringExportInfo {
  Keyring::CopyInfo copy;
  int64_t exported_unix = 0;
};

// Seals `keyring_copy` (the bytes of a keyring file) after checking it under `master_key`
// (Keyring::InspectCopy: FailedPrecondition for another key, DataLoss for a damaged or torn
// copy); what is sealed is the clean copy. `info`, if not null, describes it.
[[nodiscard]] StatusOr<std::string> SealKeyringExport(std::string_view keyring_copy,
                                                      const SecretBytes& master_key,
                                                      int64_t now_unix, KeyringExportInfo* info);

// The keyring copy inside an export, authenticated and checked. InvalidArgument "not a keyring
// export" for anything else; FailedPrecondition "the export does not open under this master key
// (an export opens only with the master key of its time)"; DataLoss if altered.
[[nodiscard]] StatusOr<std::string> OpenKeyringExport(std::string_view export_bytes,
                                                      const SecretBytes& master_key,
                                                      KeyringExportInfo* info);

// Writes the keyring inside an export to `path` as a new keyring file (mode 0600, created
// exclusively: from then on it is updated in place like any keyring copy). AlreadyExists if
// anything is at `path` (an import never overwrites a keyring); otherwise as OpenKeyringExport,
// or Unavailable from the file layer (`files` null: the real file system).
[[nodiscard]] Status ImportKeyringExport(std::string_view export_bytes,
                                         const SecretBytes& master_key, const std::string& path,
                                         KeyringFiles* files, KeyringExportInfo* info);

}  // namespace phivault::crypto
