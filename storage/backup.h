// Data backups of a vault (docs/backups.md): a consistent copy of the database made while the
// daemon serves, a manifest signed with the audit signing key, offline verification, and a
// restore that puts the database back as it was without ever bringing back a shredded record or
// silently rolling the audit log back.
//
// A backup is one directory, named by its id (e.g. 20261201T203000Z-3fa9c1d2):
//   db/                 the database at one moment (Store::CreateCheckpoint)
//   manifest.phivault   a C2SP signed note (crypto/signing.h), key name = the audit origin, whose
//                       text is
//     phivault-backup 1
//     id <backup id>
//     vault <vault id, 32 hex>
//     created <RFC 3339 UTC>
//     keyring-generation <the keyring's generation when the backup was made>
//     audit <tree size> <base64 RFC 9162 root of the audit log in db/>
//     key <the audit verifier key, as `phivault audit pubkey` prints it>
//     file <BLAKE2b-256 hex> <size> <path relative to the backup directory>   (one per file)
// A backup never holds the keyring or the master key: only ciphertext and DEKs wrapped under
// epoch keys, so once an epoch key is destroyed every copy of what it protected is unreadable.
//
// Restore (RestoreBackup) runs with the daemon stopped and writes
// <data_dir>/restore-marker.json, from which the daemon, at its next start, appends the
// `backup.restore` audit entry (ReadRestoreMarker). The marker carries only what the daemon can
// check against the database it opens (the backup's audit size and root) and counts the restore
// reported; a planted marker can at most add a restore entry that says it did not match.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "crypto/signing.h"
#include "storage/merkle.h"
#include "storage/store.h"

namespace phivault::storage {

inline constexpr std::string_view kBackupManifestName = "manifest.phivault";
inline constexpr std::string_view kRestoreMarkerName = "restore-marker.json";

struct BackupFile {
  std::string path;  // relative to the backup directory, e.g. "db/000012.sst"
  uint64_t size = 0;
  std::string blake2b;  // 64 lowercase hex digits
};

struct BackupManifest {
  std::string id;
  std::string vault_id;  // 32 hex
  int64_t created_unix = 0;
  uint64_t keyring_generation = 0;
  uint64_t audit_size = 0;
  MerkleHash audit_root{};
  std::string verifier_key;  // crypto::NoteVerifierKey form
  std::vector<BackupFile> files;
  uint64_t TotalBytes() const;
  // Not part of the manifest text: of TotalBytes(), what CreateBackup hard-linked from earlier
  // backups in the same directory instead of writing.
  uint64_t shared_bytes = 0;
};

// The manifest's note text (format above). Parse: InvalidArgument naming the line that is
// malformed, missing or repeated, or a file path that is absolute, climbs out ("..") or repeats.
std::string BackupManifestText(const BackupManifest& manifest);
StatusOr<BackupManifest> ParseBackupManifestText(std::string_view text);

// Progress of a long step: `phase` ("checkpoint", "backup", "verify", "copy"), bytes or files done
// of `total`.
using BackupProgressFn = std::function<void(std::string_view phase, uint64_t done, uint64_t total)>;

struct CreateBackupOptions {
  std::string dir;           // the backups directory; created if missing; must be absolute
  std::string keyring_path;  // the primary keyring, whose generation the manifest names
  const crypto::Ed25519Signer* signer = nullptr;  // the audit signing key
  std::string origin;                             // the audit log origin (the note's key name)
  // Where the checkpoint is made first: a directory (not existing, or left by an interrupted
  // backup, and then removed first) on the database's filesystem, so that the checkpoint is
  // hard links rather than a copy. Removed afterwards. Empty: inside the new backup.
  std::string staging_dir;
  BackupProgressFn progress;       // phases "checkpoint", then "backup" in bytes
  std::function<int64_t()> clock;  // unix seconds; null = the system clock
};

// Makes a backup of `store` (which may be serving writes) in a new directory under options.dir
// and returns its manifest; on any error the partial directory is removed. Incremental: a file
// identical (BLAKE2b-256 and size) to one an earlier backup in options.dir lists is hard-linked
// to it, not written again, so every backup stays complete on its own and removing one never
// breaks another. InvalidArgument for a relative dir or one that is itself a backup; Unavailable
// naming the path that could not be written; the store's errors.
StatusOr<BackupManifest> CreateBackup(Store& store, const CreateBackupOptions& options);

// A backup directory given either as the backup itself (holding a manifest) or as the backups
// directory with `id` (empty: its newest backup). NotFound naming what is missing.
StatusOr<std::string> ResolveBackupDir(const std::string& dir, const std::string& id);

struct BackupProblem {
  std::string kind;  // "missing", "altered", "truncated", "foreign", "signature", "manifest"
  std::string path;  // relative to the backup directory ("" for the manifest as a whole)
  std::string detail;
};

struct BackupVerification {
  std::string backup_dir;
  std::optional<BackupManifest> manifest;  // absent if the manifest could not be read at all
  bool signature_ok = false;
  // "key given" (the caller's verifier key) or "key named in the manifest" (self-consistency
  // only: anyone can sign a manifest naming their own key).
  std::string key_source;
  std::vector<BackupProblem> problems;
  uint64_t files_checked = 0;
  uint64_t bytes_checked = 0;
  bool ok() const { return signature_ok && problems.empty(); }
};

// Checks the backup at `backup_dir` offline (no keyring, no daemon): the manifest's signature
// under `key` (or, without one, under the key the manifest names), then every listed file's
// presence, size and BLAKE2b-256, and that no file is there that the manifest does not list.
// What fails is reported in `problems`; an error Status only if the directory cannot be read.
StatusOr<BackupVerification> VerifyBackup(const std::string& backup_dir,
                                          const std::optional<crypto::NoteVerifier>& key,
                                          const BackupProgressFn& progress = nullptr);

struct BackupListing {
  std::string dir;  // the backup directory
  std::optional<BackupManifest> manifest;
  std::string error;  // why the manifest could not be parsed (signature NOT checked)
  // Of the listed files present: bytes in no earlier backup of the listing (written for this
  // one), bytes shared with (hard links to) an earlier one, and bytes no other link holds (what
  // removing this backup frees).
  uint64_t new_bytes = 0;
  uint64_t shared_bytes = 0;
  uint64_t unique_bytes = 0;
};
// The backups in a backups directory (or the one backup `dir` is), oldest first, from their
// manifests WITHOUT checking signatures or files (that is VerifyBackup's job).
StatusOr<std::vector<BackupListing>> ListBackups(const std::string& dir);

struct PruneReport {
  std::vector<std::string> removed;  // backup ids, oldest first
  std::vector<std::string> kept;
  uint64_t freed_bytes = 0;  // files whose every link was in a removed backup
};
// Removes every backup in the backups directory `dir` but the newest `keep` (ids sort by time);
// `dry_run` only reports. The kept ones stay complete: what they share with a removed one is a
// hard link, which outlives it. Directories without a manifest are left alone. InvalidArgument
// for keep 0 or a dir that is one backup; NotFound for no directory; Unavailable naming what
// could not be removed.
StatusOr<PruneReport> PruneBackups(const std::string& dir, size_t keep, bool dry_run);

// The generation of the keyring file at `path` as its header says, without the master key (so
// not authenticated: advisory, for refusing a keyring copy evidently older than a backup).
// NotFound if there is no file; DataLoss if neither header region holds a keyring header.
StatusOr<uint64_t> PeekKeyringGeneration(const std::string& path);

struct RestoreOptions {
  std::string backup_dir;  // as ResolveBackupDir returns
  std::string data_dir;    // the vault's data_dir (db/ and keyring inside)
  std::optional<crypto::NoteVerifier> key;
  BackupProgressFn progress;
  std::function<int64_t()> clock;  // unix seconds; null = the system clock
};

struct RestoreReport {
  BackupManifest manifest;
  std::string key_source;
  bool had_database = false;         // a database was at <data_dir>/db before
  uint64_t previous_audit_size = 0;  // its audit log's size
  // The previous log extends the backup's (its first audit_size entries have the backup's root).
  bool previous_extends_backup = false;
  uint64_t lacking_entries = 0;                // entries of the previous log the restored one lacks
  std::string set_aside;                       // where the previous database was moved ("" if none)
  std::optional<uint64_t> keyring_generation;  // of <data_dir>/keyring; nullopt if absent
  std::string marker_path;
};

// Restores the backup into options.data_dir with the daemon stopped. Verifies the backup first
// (VerifyBackup); without a key, the manifest's own key is accepted only if the database already
// at <data_dir>/db has a stored audit checkpoint that verifies under it. Nothing in data_dir
// changes unless every check passes. FailedPrecondition naming the reason: the backup does not
// verify; no usable key; the database is in use (the daemon runs); it belongs to another vault;
// the keyring there is older than the backup needs. Then copies db/ (re-hashing every copy),
// checks the copy's audit log against the manifest, moves the previous database aside to
// <data_dir>/db.before-restore-<backup id>, puts the copy in place and writes the marker.
StatusOr<RestoreReport> RestoreBackup(const RestoreOptions& options);

// The database at `path` opened read-only (no writes, no lock): for the daemon's purge after a
// restore, which reads the tombstones and certificates of the database the restore set aside.
// Unavailable if it cannot be opened.
StatusOr<std::unique_ptr<Store>> OpenDatabaseReadOnly(const std::string& path);

// Where the daemon makes a backup's checkpoint (CreateBackupOptions::staging_dir), inside
// data_dir; and the prefix of a restore's copy in progress ("db.restoring-<backup id>").
inline constexpr std::string_view kBackupStagingName = "backup-staging";
inline constexpr std::string_view kRestoringPrefix = "db.restoring-";
// Removes what a crashed backup or restore left in `data_dir`: the backup staging directory
// (hard links to database files, which would keep ciphertext of records shredded later on disk
// where no sweep looks) and restore copies in progress. For the daemon's start, which holds the
// database lock (so neither can be running). Returns the paths removed; Unavailable naming one
// that could not be.
StatusOr<std::vector<std::string>> RemoveStaleStaging(const std::string& data_dir);

// What a restore left for the daemon (kRestoreMarkerName in data_dir).
struct RestoreMarker {
  std::string backup_id;
  uint64_t audit_size = 0;
  MerkleHash audit_root{};
  uint64_t previous_audit_size = 0;
  bool previous_extends_backup = false;
  uint64_t lacking_entries = 0;
  std::string set_aside;  // a directory name inside data_dir, or ""
  int64_t restored_unix = 0;
};
std::string RestoreMarkerJson(const RestoreMarker& marker);
// The marker in `data_dir`, nullopt if there is none. InvalidArgument if it is not a marker
// (malformed, oversized, fields out of form): the daemon records that too.
StatusOr<std::optional<RestoreMarker>> ReadRestoreMarker(const std::string& data_dir);
[[nodiscard]] Status RemoveRestoreMarker(const std::string& data_dir);

}  // namespace phivault::storage
