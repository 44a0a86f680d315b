// phivaultd's configuration: a TOML file, validated completely before use. A config that fails
// validation never starts the daemon (and, on reload, never replaces the running one).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"

namespace phivault::daemon {

struct MasterKeySource {
  enum class Kind { kFile, kCredential, kPassphrase };
  Kind kind = Kind::kFile;
  std::string file;  // kFile: path (relative paths are relative to the config file)
  std::string credential = "phivault-master-key";  // kCredential: name in $CREDENTIALS_DIRECTORY
  std::string passphrase_env = "PHIVAULT_PASSPHRASE";  // kPassphrase: env var holding it
  std::string passphrase_file;  // kPassphrase: alternatively a file holding it (first line)
  std::string salt_base64;      // kPassphrase: 16 bytes
  uint64_t opslimit = 3;
  uint64_t memlimit = 268435456;
};

struct Limits {
  uint64_t max_body_bytes = 96ull << 20;  // must exceed max_content_bytes * 4/3 (base64)
  uint32_t max_header_bytes = 16384;
  uint32_t max_connections = 64;
  uint32_t idle_timeout_ms = 5000;
  uint64_t disk_reserve_bytes = 256ull << 20;
  // Failed authentications (daemon/auth_failures.h): each peer uid may fail this many times in a
  // row with an audit entry each; then one attempt is regained every auth_failure_refill_ms, and
  // the attempts beyond the budget are summarised, one entry per auth_failure_summary_ms.
  uint32_t auth_failure_burst = 5;
  uint32_t auth_failure_refill_ms = 10000;
  uint32_t auth_failure_summary_ms = 60000;
  // A connection is closed after this many failed authentications on it (and at once when its
  // uid's budget is spent), so a stranger must reconnect to keep guessing.
  uint32_t auth_failures_per_connection = 3;

  // Hostile clients (docs/reliability.md). A request's line, headers and body must all arrive
  // within request_timeout_ms of its first byte, and its body at no less than
  // min_body_bytes_per_second on average (after a first second; 0: no minimum rate); a slower
  // request is cut off (408 if it can still be told, else the connection is closed).
  uint32_t request_timeout_ms = 30000;
  uint64_t min_body_bytes_per_second = 65536;
  // Connections from one peer uid (SO_PEERCRED), operators excepted.
  uint32_t max_connections_per_uid = 32;
  // Of max_connections, this many are kept for operators: uid 0, the uid phivaultd runs as and
  // operator_uids. Others get 503 once only these are left.
  uint32_t reserved_operator_connections = 4;
  std::vector<uint32_t> operator_uids;
  // Body limit of the routes that carry no record content (searches, reports, holds, ...);
  // record create and amend take up to max_body_bytes.
  uint64_t max_small_body_bytes = 1ull << 20;
  // Request body bytes all connections together may hold at once; a request that would go over
  // gets 503 with Retry-After.
  uint64_t max_inflight_body_bytes = 256ull << 20;
};

// An application (EHR, practice-management software): a bearer token (only its SHA-256 is kept)
// that is valid only from the listed peer uids.
struct ApplicationConfig {
  std::string name;
  std::string token_sha256_hex;
  std::vector<uint32_t> uids;
  std::vector<std::string> actions;  // e.g. "record.create", "record.read", "status"
  // The roles its requests may assert in X-Phivault-Role (required; each a configured role),
  // and the HL7 PurposeOfUse codes they may assert (empty: any). Anything else is refused, so
  // an application cannot claim a role the practice did not give it.
  std::vector<std::string> roles;
  std::vector<std::string> purposes;
};

// A person using the CLI, recognised by the socket's peer credentials (uid, or a group the peer
// is in); no token needed.
struct OperatorConfig {
  std::optional<uint32_t> uid;
  std::string group;  // group name; matches the peer's primary or supplementary groups
  std::string role;
  std::vector<std::string> actions;
};

// [archive] (docs/archive.md).
struct ArchiveConfig {
  // Records whose last access and whose patient's last encounter are this many days old move to
  // the archive tier when `phivault archive run` runs; 0 (the default): no archive tier.
  uint32_t after_days = 0;
  // A read of an archived record moves it back to the live tier (after the read is audited).
  bool restore_on_read = false;
};

// [memory] (docs/configuration.md, "Memory"): what bounds the daemon's resident memory.
struct MemoryConfig {
  // RocksDB's one LRU block cache: data, index and filter blocks of every column family (the
  // archive's apart), with the memtables charged to it.
  uint64_t block_cache_bytes = 128ull << 20;
  // The part of the block cache all column families' memtables may take together before the
  // largest is flushed; less than block_cache_bytes.
  uint64_t memtable_budget_bytes = 64ull << 20;
  // Patients whose latest encounter the service keeps in memory (daemon/encounter_cache.h),
  // about 200 bytes each; least recently used first out. A retention sweep holds its candidate
  // patients in addition while it runs.
  uint32_t encounter_cache_patients = 50000;
  // After this many seconds without a request the daemon hands freed heap back to the kernel
  // (malloc_trim); 0: never.
  uint32_t release_after_idle_seconds = 5;
};

struct Config {
  std::string config_path;  // where it was loaded from
  std::string data_dir;     // RocksDB lives in <data_dir>/db, the keyring at <data_dir>/keyring
  std::vector<std::string> keyring_mirrors;
  std::string socket_path;
  uint32_t socket_mode = 0660;
  std::string socket_group;  // empty: the daemon's own group
  // The practice's retention file (docs/retention.md: a preset, lengthened), relative paths
  // relative to the config file; empty: the shipped us-federal preset alone. Read at start and on
  // reload; a file that would shorten the retention in force is refused.
  std::string retention_file;
  // When the daemon runs its own retention sweep each day, "HH:MM" UTC; empty: never (run
  // `phivault retention sweep`, or the phivault-sweep.timer unit).
  std::string retention_sweep_at;
  uint64_t max_content_bytes = 64ull << 20;
  std::vector<std::string> categories;  // default list if not given
  std::vector<std::string> roles;       // default list if not given
  // The role whose audit exports include unsealed PHI fields (patient ids, recipients).
  std::string compliance_role = "compliance_officer";
  // The access policy (docs/policy.md), relative paths relative to the config file; empty: the
  // shipped default policy (policies/default_policy.toml). Loaded at start, on SIGHUP and on
  // `phivault policy reload`; it must declare every role this configuration binds.
  std::string policy_file;
  // The author named on reports given to patients; empty (not configured): the reports name
  // none rather than the software.
  std::string practice_name;
  std::string audit_origin = "phivault/audit";       // the origin line of audit checkpoints
  uint32_t audit_checkpoint_interval_seconds = 300;  // 0: only on demand
  MasterKeySource master_key;
  Limits limits;
  std::string log_level = "info";
  std::string log_file;  // optional, in addition to stderr
  std::vector<ApplicationConfig> applications;
  std::vector<OperatorConfig> operators;
  ArchiveConfig archive;
  MemoryConfig memory;
};

std::vector<std::string> DefaultCategories();
std::vector<std::string> DefaultRoles();
// Every action name the daemon knows.
std::vector<std::string> KnownActions();

// Parses and validates the file. InvalidArgument naming the file, the key and the violated
// constraint ("phivault.toml: limits.max_connections must be between 1 and 4096").
StatusOr<Config> LoadConfig(const std::string& path);

}  // namespace phivault::daemon
