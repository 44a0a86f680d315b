// Writes the seeds of the fuzz targets that need signed or sealed inputs, made by the project's
// own code: fuzz_seeds <corpus root> (tests/fuzz/corpus). The HTTP, JSON, config, policy and
// retention seeds are plain text, kept as files.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "crypto/keyring.h"
#include "crypto/signing.h"
#include "storage/backup.h"
#include "storage/destruction_certificate.h"
#include "storage/vault_id.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/tools/real_audit_log.h"

namespace {

namespace fs = std::filesystem;
using namespace phivault;

std::string root;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::cerr << "fuzz_seeds: " << what << " failed\n";
    std::exit(1);
  }
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void Seed(const std::string& target, const std::string& name, const std::string& bytes) {
  fs::create_directories(root + "/" + target);
  fuzz::WriteFileOrDie(root + "/" + target + "/" + name, bytes);
}

void KeyringSeeds(const std::string& tmp) {
  crypto::KeyringOptions options;
  options.path = tmp + "/keyring";
  auto keyring = crypto::Keyring::Create(options, fuzz::FuzzMasterKey());
  Check(keyring.ok(), "Keyring::Create");
  Seed("keyring_fuzzer", "new", ReadFile(options.path));
  Check((*keyring)->GetOrCreateEpoch("d20261130").ok(), "GetOrCreateEpoch");
  Check((*keyring)->GetOrCreateEpoch("d20261201").ok(), "GetOrCreateEpoch");
  Check((*keyring)->GetOrCreateEpoch("hSYNTH_hold-1").ok(), "GetOrCreateEpoch");
  Check((*keyring)->DestroyEpoch("d20261130").ok(), "DestroyEpoch");
  Seed("keyring_fuzzer", "three-epochs-one-destroyed", ReadFile(options.path));
}

void AuditSeeds(const std::string& tmp) {
  fs::create_directories(tmp + "/audit");
  testing::RealAuditLog log(tmp + "/audit");
  const std::string key = log.VerifierKey() + "\n";
  log.Append(3);
  (void)log.Checkpoint();
  log.Append(2);
  (void)log.Checkpoint();
  Seed("audit_verify_fuzzer", "full", key + log.Export());
  Seed("audit_verify_fuzzer", "full-with-phi", key + log.Export(true));
  Seed("audit_verify_fuzzer", "filtered", key + log.FilteredExport({2, 4}, {3}));
}

void CertificateSeeds() {
  auto signer = crypto::Ed25519Signer::Create(crypto::SecretBytes::Random(32));
  Check(signer.ok(), "Ed25519Signer::Create");
  constexpr char kOrigin[] = "clinic.example/vault";
  storage::DestructionCertificate c;
  c.id = "00112233445566778899aabbccddeeff";
  c.principal = "system:retention-sweep";
  c.user = "retention-sweep";
  c.role = "system";
  c.started_unix_us = 1'796'123'258'123'456;
  c.finished_unix_us = 1'796'123'301'000'001;
  c.epoch_ids = {"d20261130", "d20261201"};
  c.media = "vault data directory (RocksDB files) and keyring copies";
  c.records = {
      {"Bbbbbbbbbbbbbbbbbbbbbw", 1, "lab",
       "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"},
      {"Cccccccccccccccccccccg", 1, "psychotherapy_notes",
       "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"},
  };
  c.verification = "decrypt of each destroyed version; byte scan of live database files";
  c.verification_result = "passed: 2 of 2 versions fail to decrypt; no ciphertext found";
  c.tool_name = "phivault";
  c.tool_version = "0.1.0";
  c.audit_seq_first = 4107;
  c.audit_seq_last = 4111;
  auto note = storage::SignDestructionCertificate(c, **signer, kOrigin);
  Check(note.ok(), "SignDestructionCertificate");
  Seed("certificate_fuzzer", "signed",
       crypto::NoteVerifierKey(kOrigin, (*signer)->public_key()) + "\n" + *note);
}

void BackupSeeds(const std::string& tmp) {
  const std::string data = tmp + "/data";
  fs::create_directories(data + "/db");
  auto store = storage::OpenRocksStore({.path = data + "/db", .reserve_bytes = 0});
  Check(store.ok(), "OpenRocksStore");
  Check(storage::BindVaultId(**store, "00112233445566778899aabbccddeeff").ok(), "BindVaultId");
  storage::WriteBatch batch;
  for (int i = 0; i < 5; ++i) {
    batch.Put(storage::Cf::kRecords, "k" + std::to_string(i), std::string(100, 'x'));
  }
  Check((*store)->Write(batch, true).ok(), "Write");
  crypto::KeyringOptions options;
  options.path = data + "/keyring";
  Check(crypto::Keyring::Create(options, fuzz::FuzzMasterKey()).ok(), "Keyring::Create");
  auto signer = crypto::Ed25519Signer::Create(crypto::SecretBytes::Random(32));
  Check(signer.ok(), "Ed25519Signer::Create");
  auto manifest = storage::CreateBackup(**store, {.dir = tmp + "/backups",
                                                  .keyring_path = options.path,
                                                  .signer = signer->get(),
                                                  .origin = "clinic.example/vault"});
  Check(manifest.ok(), "CreateBackup");
  Seed(
      "backup_manifest_fuzzer", "real",
      ReadFile(tmp + "/backups/" + manifest->id + "/" + std::string(storage::kBackupManifestName)));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: fuzz_seeds <corpus root>\n";
    return 2;
  }
  root = argv[1];
  fuzz::InitOrDie();
  const std::string tmp = fuzz::ScratchDir();
  KeyringSeeds(tmp);
  AuditSeeds(tmp);
  CertificateSeeds();
  BackupSeeds(tmp);
  return 0;
}
