#include "crypto/keyring_export.h"

#include <sodium.h>

#include "crypto/aead.h"
#include "crypto/hash.h"
#include "crypto/master_key.h"

namespace phivault::crypto {
namespace {

constexpr std::string_view kMagic = "PVKX";
constexpr uint32_t kVersion = 1;
constexpr size_t kVaultIdBytes = 16;
constexpr size_t kHeaderBytes = 4 + 4 + 8 + 8 + kVaultIdBytes;
constexpr std::string_view kAad = "phivault/keyring-export/v1";
constexpr char kKdfContext[crypto_kdf_CONTEXTBYTES] = {'p', 'v', 'k', 'e', 'x', 'p', 't', '1'};

void PutLe(std::string& out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t GetLe(std::string_view s, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(s[i])) << (8 * i);
  return v;
}

StatusOr<std::unique_ptr<Aead>> ExportKey(const SecretBytes& master_key) {
  if (master_key.size() != kMasterKeyBytes) return InvalidArgument("master key must be 32 bytes");
  PV_RETURN_IF_ERROR(InitSodium());
  SecretBytes key = SecretBytes::Zeros(Aead::kKeyBytes);
  if (crypto_kdf_derive_from_key(key.mutable_data(InsecureSecretKeyAccess::Get()), key.size(), 1,
                                 kKdfContext,
                                 master_key.data(InsecureSecretKeyAccess::Get())) != 0) {
    return Internal("keyring export key derivation failed");
  }
  return Aead::Create(std::move(key));
}

}  // namespace

StatusOr<std::string> SealKeyringExport(std::string_view keyring_copy,
                                        const SecretBytes& master_key, int64_t now_unix,
                                        KeyringExportInfo* info) {
  PV_ASSIGN_OR_RETURN(std::unique_ptr<Aead> key, ExportKey(master_key));
  std::string clean;
  PV_ASSIGN_OR_RETURN(Keyring::CopyInfo copy,
                      Keyring::InspectCopy(keyring_copy, master_key, &clean));
  PV_ASSIGN_OR_RETURN(std::string vault_id, HexDecode(copy.vault_id));
  std::string out(kMagic);
  PutLe(out, kVersion, 4);
  PutLe(out, copy.generation, 8);
  PutLe(out, static_cast<uint64_t>(now_unix), 8);
  out.append(vault_id);
  std::string aad(kAad);
  aad.append(out);
  out.append(key->Encrypt(clean, aad));
  if (info != nullptr) *info = KeyringExportInfo{copy, now_unix};
  return out;
}

StatusOr<std::string> OpenKeyringExport(std::string_view export_bytes,
                                        const SecretBytes& master_key, KeyringExportInfo* info) {
  if (export_bytes.size() < kHeaderBytes + Aead::kOverhead || export_bytes.substr(0, 4) != kMagic) {
    return InvalidArgument("not a keyring export (it must start with PVKX)");
  }
  if (GetLe(export_bytes.substr(4), 4) != kVersion) {
    return InvalidArgument("keyring export version " +
                           std::to_string(GetLe(export_bytes.substr(4), 4)) +
                           " is not supported by this version");
  }
  PV_ASSIGN_OR_RETURN(std::unique_ptr<Aead> key, ExportKey(master_key));
  std::string aad(kAad);
  aad.append(export_bytes.substr(0, kHeaderBytes));
  auto copy = key->Decrypt(export_bytes.substr(kHeaderBytes), aad);
  if (!copy.ok()) {
    return FailedPrecondition(
        "the export does not open under this master key (an export opens only with the master key "
        "of its time), or it was altered");
  }
  PV_ASSIGN_OR_RETURN(Keyring::CopyInfo inspected,
                      Keyring::InspectCopy(*copy, master_key, nullptr));
  const uint64_t generation = GetLe(export_bytes.substr(8), 8);
  if (inspected.generation != generation ||
      inspected.vault_id != HexEncode(export_bytes.substr(24, kVaultIdBytes))) {
    return DataLoss("the keyring export's envelope does not describe the keyring inside it");
  }
  if (info != nullptr) {
    *info = KeyringExportInfo{inspected, static_cast<int64_t>(GetLe(export_bytes.substr(16), 8))};
  }
  return std::move(*copy);
}

Status ImportKeyringExport(std::string_view export_bytes, const SecretBytes& master_key,
                           const std::string& path, KeyringFiles* files, KeyringExportInfo* info) {
  KeyringFiles& fs = files != nullptr ? *files : PosixKeyringFiles();
  if (fs.Exists(path)) {
    return AlreadyExists("something is at " + path + "; an import never overwrites a keyring");
  }
  PV_ASSIGN_OR_RETURN(std::string copy, OpenKeyringExport(export_bytes, master_key, info));
  return fs.Create(path, copy);
}

}  // namespace phivault::crypto
