// Store: the ordered key-value engine under the vault. Column families separate data by purpose;
// a WriteBatch is applied atomically across them. RocksDB is the embedded engine
// (OpenRocksStore below, storage/rocks_store.cc); a second engine (e.g. Ceph RADOS) must pass
// tests/storage's conformance suite.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "base/status.h"

namespace phivault::storage {

enum class Cf : uint8_t {
  kRecords = 0,  // record versions: sealed metadata, sealed content (blob files), wrapped DEK
  kIndexes,      // patient blind id -> record ids; epoch -> record versions
  kAudit,        // audit entries by sequence number
  kAuditTree,    // Merkle tree nodes and checkpoints over the audit entries
  kHolds,        // legal holds
  kState,        // counters and small vault-wide state
  kArchive,      // archived sealed content, same keys as in kRecords (storage/records.h)
};
inline constexpr int kNumCfs = 7;
std::string_view CfName(Cf cf);

// What a batch is for, which decides how far into the disk reserve Store::Write admits it.
enum class WriteClass : uint8_t {
  // Refused when it would leave less than the reserve free.
  kNormal = 0,
  // Audit entries that carry no changes (an audited read, a denial) and the audit log's signed
  // checkpoints (an export makes one): may use the reserve down to its last quarter, so that
  // reads keep working and keep being audited, and the log can be exported, on a full disk.
  // Nothing else may use this class, or record creates would eat the space kept for audits.
  kAuditOnly,
};

// An engine-neutral list of puts and deletes, applied all-or-nothing by Store::Write.
class WriteBatch {
 public:
  enum class Kind { kPut, kDelete, kDeleteRange };
  struct Op {
    Cf cf;
    Kind kind;
    std::string key;
    std::string value;  // kDeleteRange: the end of the range (exclusive)
  };
  void Put(Cf cf, std::string key, std::string value) {
    bytes_ += key.size() + value.size();
    ops_.push_back({cf, Kind::kPut, std::move(key), std::move(value)});
  }
  void Delete(Cf cf, std::string key) {
    bytes_ += key.size();
    ops_.push_back({cf, Kind::kDelete, std::move(key), {}});
  }
  // Every key in [begin, end) of `cf`, whether written before or in this batch (ops apply in
  // order). One operation however many keys the range holds.
  void DeleteRange(Cf cf, std::string begin, std::string end) {
    bytes_ += begin.size() + end.size();
    ops_.push_back({cf, Kind::kDeleteRange, std::move(begin), std::move(end)});
  }
  void Append(WriteBatch&& other) {
    for (auto& op : other.ops_) ops_.push_back(std::move(op));
    bytes_ += other.bytes_;
    other.ops_.clear();
    other.bytes_ = 0;
  }
  const std::vector<Op>& ops() const { return ops_; }
  size_t bytes() const { return bytes_; }
  bool empty() const { return ops_.empty(); }
  // kNormal unless set; Append leaves it as it is.
  WriteClass write_class() const { return class_; }
  void set_write_class(WriteClass c) { class_ = c; }
  // Unlogged: not written to the engine's log, so lost in a crash or power cut until the next
  // Flush() returns (cannot be synced). Only for work that a journal redoes until it is flushed,
  // such as a retention sweep's deletes. Engines without a log ignore it.
  bool unlogged() const { return unlogged_; }
  void set_unlogged(bool unlogged) { unlogged_ = unlogged; }
  // Puts the operations in the order of their keys (column family, then key), the order in
  // which the engine takes them fastest. Only for batches that write each key once: the order
  // of two operations on one key (or a range and a key in it) would otherwise change.
  void SortByKey() {
    std::sort(ops_.begin(), ops_.end(), [](const Op& a, const Op& b) {
      return std::tie(a.cf, a.key) < std::tie(b.cf, b.key);
    });
  }

 private:
  std::vector<Op> ops_;
  size_t bytes_ = 0;
  WriteClass class_ = WriteClass::kNormal;
  bool unlogged_ = false;
};

struct SpaceInfo {
  uint64_t free_bytes = 0;     // available to the vault's user on the data filesystem
  uint64_t reserve_bytes = 0;  // writes are refused when a write would leave less than this
  // What the engine's live data occupies on disk: table_bytes + blob_bytes + log_bytes. Files
  // already deleted but still held open (e.g. by a backup in progress) are not counted.
  uint64_t live_data_bytes = 0;
  uint64_t table_bytes = 0;  // sorted table files of the current version (RocksDB: SST)
  uint64_t blob_bytes = 0;   // large values kept apart from the tables (RocksDB: blob files)
  uint64_t log_bytes = 0;    // write-ahead log: writes not yet flushed into table or blob files
};

class Store {
 public:
  virtual ~Store() = default;

  // The value at `key`, std::nullopt if absent. Unavailable on an I/O error.
  virtual StatusOr<std::optional<std::string>> Get(Cf cf, std::string_view key) = 0;

  // The values of `keys`, in the order given, std::nullopt where absent: Get for each key in
  // one call (RocksStore batches the lookups, which costs far less per key on large reads such
  // as a sweep's). Unavailable on an I/O error. The default calls Get for each key.
  virtual StatusOr<std::vector<std::optional<std::string>>> MultiGet(
      Cf cf, const std::vector<std::string>& keys) {
    std::vector<std::optional<std::string>> out;
    out.reserve(keys.size());
    for (const auto& key : keys) {
      PV_ASSIGN_OR_RETURN(auto value, Get(cf, key));
      out.push_back(std::move(value));
    }
    return out;
  }

  // Applies `batch` atomically. With `sync`, returns only once the batch is durable (synced
  // WAL); concurrent synced writes share syncs. ResourceExhausted "disk space below reserve"
  // (nothing written) when free space minus what the batch and the not yet flushed data will
  // take would fall below the reserve (a quarter of it for WriteClass::kAuditOnly): refusing is
  // required because Debian's RocksDB aborts the process on ENOSPC. Engines without a reserve
  // ignore the class.
  [[nodiscard]] virtual Status Write(const WriteBatch& batch, bool sync) = 0;

  // Calls `fn(key, value)` for every key in [begin, end) in key order (end empty = no bound),
  // until `fn` returns false. The iteration does not outlive the call (no long-lived iterators:
  // they would keep shredded values alive).
  using ScanFn = std::function<bool(std::string_view key, std::string_view value)>;
  [[nodiscard]] virtual Status Scan(Cf cf, std::string_view begin, std::string_view end,
                                    const ScanFn& fn) = 0;
  // Like Scan, from the last key below `end` downwards to `begin`.
  [[nodiscard]] virtual Status ScanReverse(Cf cf, std::string_view begin, std::string_view end,
                                           const ScanFn& fn) = 0;

  // Flushes memtables to files.
  [[nodiscard]] virtual Status Flush() = 0;
  // Rewrites every file of every column family so that deleted values are gone from all live
  // files (bottommost level compaction forced, blob files garbage collected), and cuts the WAL so
  // that no WAL file holding them remains. ResourceExhausted "not enough free disk space to
  // compact" (nothing done) if free space is below the live data size (which a full compaction
  // may need) plus the reserve: a compaction must never eat the space kept for audited reads.
  [[nodiscard]] virtual Status CompactAll() = 0;
  // Stops (false) or resumes (true) the engine's own background compactions; flushes and
  // CompactAll go on. For a short burst of deletes that CompactAll will rewrite anyway (a
  // retention sweep's): compacting the deletes as they are flushed would rewrite the same data
  // twice. Not kept across a restart (the store opens with them running). The default does
  // nothing.
  [[nodiscard]] virtual Status SetAutoCompactions(bool enabled) {
    (void)enabled;
    return Status::Ok();
  }

  virtual StatusOr<SpaceInfo> Space() = 0;

  // Writes a consistent copy of the whole database, as of one moment, into `dir` (must not
  // exist; created), while writes go on: a directory the engine can open as a database of its
  // own (storage/backup.h builds backups on it). RocksDB: a Checkpoint (memtables flushed; table
  // files hard-linked when `dir` is on the same filesystem, copied otherwise). Engines without
  // it: FailedPrecondition "this store cannot make checkpoints".
  [[nodiscard]] virtual Status CreateCheckpoint(const std::string& dir) {
    (void)dir;
    return FailedPrecondition("this store cannot make checkpoints");
  }
  // Synced writes that succeeded since the store was opened (each one a sync of the log): with
  // group commit, requests per sync. Engines that do not count return 0.
  virtual uint64_t synced_writes() const { return 0; }
};

struct RocksStoreOptions {
  std::string path;  // data directory, created if missing
  // Refuse writes below this much free space (audit-only writes: below a quarter of it). Also
  // the compaction buffer of RocksDB's SstFileManager, so background compactions keep it free.
  uint64_t reserve_bytes = 256ull << 20;
  uint64_t min_blob_size = 4096;  // values at least this big go to blob files
  // The store's memory: one LRU block cache for data, index and filter blocks, and the part of
  // it the memtables of all column families may take together before the largest is flushed
  // (less than the cache). phivaultd sets both from [memory] (docs/configuration.md).
  uint64_t block_cache_bytes = 128ull << 20;
  uint64_t memtable_budget_bytes = 64ull << 20;
  bool create_if_missing = true;
  // Free bytes available on the filesystem holding `path`; empty = statvfs (f_bavail * f_frsize).
  // Replaceable where the filesystem's own numbers are not the limit (quotas) and in tests.
  std::function<StatusOr<uint64_t>(const std::string& path)> free_space;
};

// Opens (or creates) the RocksDB store with every column family and the purge-safe options:
// no WAL recycling, WAL_ttl_seconds = 0, WAL archive off, blob files (uncompressed, garbage
// collected by compaction) for large records. Unavailable with RocksDB's message if it cannot be
// opened (e.g. locked by another process, or missing without create_if_missing); DataLoss if its
// files are corrupt; FailedPrecondition if the database has a column family this version does not
// know.
StatusOr<std::unique_ptr<Store>> OpenRocksStore(const RocksStoreOptions& options);

}  // namespace phivault::storage
