// The RocksDB engine behind Store.
#include <sys/statvfs.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/sst_file_manager.h>
#include <rocksdb/table.h>
#include <rocksdb/transaction_log.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_batch.h>
#include <rocksdb/write_buffer_manager.h>

#include "base/mutex.h"
#include "storage/rocks_store.h"
#include "storage/store.h"

namespace phivault::storage {
namespace {

constexpr std::array<Cf, kNumCfs> kAllCfs = {
    Cf::kRecords, Cf::kIndexes, Cf::kAudit, Cf::kAuditTree, Cf::kHolds, Cf::kState, Cf::kArchive};

// Free space is re-read from the filesystem at most this often, or sooner when this much was
// written since, or always for a batch at least kLargeBatch big.
constexpr auto kSpaceRefreshInterval = std::chrono::milliseconds(100);
constexpr uint64_t kSpaceRefreshBytes = 8ull << 20;
constexpr uint64_t kLargeBatch = 1ull << 20;

// The archive column family's table blocks (docs/archive.md).
constexpr size_t kArchiveBlockBytes = 256 << 10;

Status FromRocks(const rocksdb::Status& s) {
  if (s.ok()) return Status::Ok();
  std::string msg = "rocksdb: " + s.ToString();
  if (s.IsNoSpace()) return ResourceExhausted(std::move(msg));
  if (s.IsCorruption()) return DataLoss(std::move(msg));
  if (s.IsNotFound()) return NotFound(std::move(msg));
  if (s.IsInvalidArgument()) return InvalidArgument(std::move(msg));
  if (s.IsNotSupported()) return FailedPrecondition(std::move(msg));
  if (s.IsIOError() || s.IsBusy() || s.IsTimedOut() || s.IsTryAgain() || s.IsAborted() ||
      s.IsIncomplete() || s.IsShutdownInProgress()) {
    return Unavailable(std::move(msg));
  }
  return Internal(std::move(msg));
}

StatusOr<uint64_t> FreeBytes(const std::string& path) {
  struct statvfs st {};
  if (statvfs(path.c_str(), &st) != 0) return Unavailable("cannot read free disk space");
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

rocksdb::Slice ToSlice(std::string_view v) { return {v.data(), v.size()}; }
std::string_view ToView(const rocksdb::Slice& s) { return {s.data(), s.size()}; }

// Admits a write only if it leaves the reserve free (audit-only writes: the last quarter of it).
// The filesystem is asked cheaply often; in between, the bytes admitted since the last look count
// against the free space.
class SpaceGuard {
 public:
  using FreeSpaceFn = std::function<StatusOr<uint64_t>(const std::string& path)>;
  // `unflushed` returns the bytes held in memtables: data that is on disk only in the WAL and
  // that a flush (at the latest on shutdown or restart) will write again into table and blob files.
  SpaceGuard(std::string path, uint64_t reserve, FreeSpaceFn free_space,
             std::function<uint64_t()> unflushed)
      : path_(std::move(path)),
        reserve_(reserve),
        free_space_(free_space ? std::move(free_space) : FreeSpaceFn(FreeBytes)),
        unflushed_(std::move(unflushed)) {}

  Status Admit(uint64_t batch_bytes, WriteClass write_class) {
    MutexLock lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    if (!have_free_ || now - refreshed_ >= kSpaceRefreshInterval ||
        written_since_refresh_ >= kSpaceRefreshBytes || batch_bytes >= kLargeBatch) {
      PV_ASSIGN_OR_RETURN(free_, free_space_(path_));
      unflushed_at_refresh_ = unflushed_();
      have_free_ = true;
      refreshed_ = now;
      written_since_refresh_ = 0;
    }
    // Each byte lands twice before compaction can reclaim anything: WAL, then SST/blob file.
    // Bytes already in the WAL are in `free_`; their flush is still to come.
    const uint64_t used = unflushed_at_refresh_ + 2 * (written_since_refresh_ + batch_bytes);
    const uint64_t keep = write_class == WriteClass::kAuditOnly ? audit_floor() : reserve_;
    if (free_ < used || free_ - used < keep) {
      return ResourceExhausted("disk space below reserve");
    }
    written_since_refresh_ += batch_bytes;
    return Status::Ok();
  }

  uint64_t reserve() const { return reserve_; }
  // What no write may take: headroom for RocksDB's own files (MANIFEST, info log, a flush).
  uint64_t audit_floor() const { return reserve_ / 4; }
  StatusOr<uint64_t> FreeNow() const { return free_space_(path_); }

 private:
  const std::string path_;
  const uint64_t reserve_;
  const FreeSpaceFn free_space_;
  const std::function<uint64_t()> unflushed_;
  Mutex mu_;
  bool have_free_ GUARDED_BY(mu_) = false;
  uint64_t free_ GUARDED_BY(mu_) = 0;
  uint64_t unflushed_at_refresh_ GUARDED_BY(mu_) = 0;
  uint64_t written_since_refresh_ GUARDED_BY(mu_) = 0;
  std::chrono::steady_clock::time_point refreshed_ GUARDED_BY(mu_);
};

// Where a key goes in the memtable is found by a search down its skip list, the leader's largest
// serial cost per commit. Keys that arrive in order within a family (audit entries and Merkle
// nodes by sequence number, one user's audit index, a user's chain head rewritten each commit)
// are instead inserted next to the previous key of their family, which RocksDB remembers per
// prefix (memtable_insert_with_hint_prefix_extractor). The prefix is the key without its
// trailing BE64 sequence number, or the whole head key. Families keyed by random ids (records,
// patients, epochs) stay out of the domain: they would gain nothing and each prefix costs a
// hint of ~250 bytes per memtable.
class SequentialFamilyPrefix final : public rocksdb::SliceTransform {
 public:
  explicit SequentialFamilyPrefix(Cf cf) : cf_(cf) {}
  const char* Name() const override { return "phivault.SequentialFamilyPrefix"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    return {key.data(), PrefixSize(key)};
  }
  bool InDomain(const rocksdb::Slice& key) const override {
    return PrefixSize(key) != kOutOfDomain;
  }

 private:
  static constexpr size_t kOutOfDomain = SIZE_MAX;
  static constexpr size_t kSeqBytes = 8;
  size_t PrefixSize(const rocksdb::Slice& key) const {
    switch (cf_) {
      case Cf::kAudit:      // BE64(seq)
      case Cf::kAuditTree:  // 'n' level BE64(index), 'c' / 'k' BE64(size)
        return key.size() >= kSeqBytes ? key.size() - kSeqBytes : kOutOfDomain;
      case Cf::kIndexes:
        if (key.starts_with("au") && key.size() >= 3 + kSeqBytes) return key.size() - kSeqBytes;
        if (key.starts_with("hu")) return key.size();
        return kOutOfDomain;
      default:
        return kOutOfDomain;
    }
  }
  const Cf cf_;
};

// A failed write or sync of a database file, as RocksDB 7.8 (with paranoid_checks) takes it: a
// failed WAL write or sync is a fatal background error, and the database stays read-only until
// it is reopened — the daemon would need a restart after any transient disk fault. Flagged
// retryable, the same error is a hard error that DB::Resume() clears once the disk works again
// (ErrorRecovery below): it flushes every memtable, so the WAL that held the failed write is no
// longer needed, and writes on in a new WAL. That matters because a
// failed fsync loses the unsynced pages (Linux marks them clean) and a later fsync of the same
// file reports success: no write may be acknowledged on that log again. Out-of-space errors keep
// their own recovery (the SstFileManager's) and are left as they are.
rocksdb::IOStatus Retryable(rocksdb::IOStatus s) {
  if (s.IsIOError() && !s.IsNoSpace()) s.SetRetryable(true);
  return s;
}

class RetryableWritableFile final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  using FSWritableFileOwnerWrapper::FSWritableFileOwnerWrapper;
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                           rocksdb::IODebugContext* dbg) override {
    return Retryable(target()->Append(data, o, dbg));
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                           const rocksdb::DataVerificationInfo& info,
                           rocksdb::IODebugContext* dbg) override {
    return Retryable(target()->Append(data, o, info, dbg));
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& o,
                                     rocksdb::IODebugContext* dbg) override {
    return Retryable(target()->PositionedAppend(data, offset, o, dbg));
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& o,
                                     const rocksdb::DataVerificationInfo& info,
                                     rocksdb::IODebugContext* dbg) override {
    return Retryable(target()->PositionedAppend(data, offset, o, info, dbg));
  }
  rocksdb::IOStatus Flush(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    return Retryable(target()->Flush(o, dbg));
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    return Retryable(target()->Sync(o, dbg));
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    return Retryable(target()->Fsync(o, dbg));
  }
  rocksdb::IOStatus Close(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    return Retryable(target()->Close(o, dbg));
  }
};

class RetryableDirectory final : public rocksdb::FSDirectoryWrapper {
 public:
  using FSDirectoryWrapper::FSDirectoryWrapper;
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    return Retryable(FSDirectoryWrapper::Fsync(o, dbg));
  }
  rocksdb::IOStatus FsyncWithDirOptions(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg,
                                        const rocksdb::DirFsyncOptions& d) override {
    return Retryable(FSDirectoryWrapper::FsyncWithDirOptions(o, dbg, d));
  }
};

class RetryableWriteErrors final : public rocksdb::FileSystemWrapper {
 public:
  using FileSystemWrapper::FileSystemWrapper;
  const char* Name() const override { return "PhivaultRetryableWriteErrors"; }
  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override {
    std::unique_ptr<rocksdb::FSWritableFile> file;
    auto s = Retryable(target()->NewWritableFile(f, o, &file, dbg));
    if (s.ok()) *r = std::make_unique<RetryableWritableFile>(std::move(file));
    return s;
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext* dbg) override {
    std::unique_ptr<rocksdb::FSWritableFile> file;
    auto s = Retryable(target()->ReopenWritableFile(f, o, &file, dbg));
    if (s.ok()) *r = std::make_unique<RetryableWritableFile>(std::move(file));
    return s;
  }
  rocksdb::IOStatus NewDirectory(const std::string& name, const rocksdb::IOOptions& o,
                                 std::unique_ptr<rocksdb::FSDirectory>* r,
                                 rocksdb::IODebugContext* dbg) override {
    std::unique_ptr<rocksdb::FSDirectory> dir;
    auto s = target()->NewDirectory(name, o, &dir, dbg);
    if (s.ok()) *r = std::make_unique<RetryableDirectory>(std::move(dir));
    return s;
  }
  rocksdb::IOStatus RenameFile(const std::string& src, const std::string& dst,
                               const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    return Retryable(target()->RenameFile(src, dst, o, dbg));
  }
};

// Takes the database out of the read-only state a retryable error left it in, by DB::Resume()
// before a write, at most once per backoff interval (doubling up to kMaxResumeBackoff while the
// fault lasts). RocksDB's own retry thread (max_bgerror_resume_count) is not used: in 7.8 a
// DB::Close() while it runs against a disk that still fails waits for ever.
class ErrorRecovery {
 public:
  static constexpr auto kMinResumeBackoff = std::chrono::milliseconds(50);
  static constexpr auto kMaxResumeBackoff = std::chrono::seconds(5);

  void AfterWrite(const rocksdb::Status& s) {
    if (s.IsIOError() && !s.IsNoSpace()) failed_.store(true, std::memory_order_release);
  }

  bool failed() const { return failed_.load(std::memory_order_acquire); }

  // The database was reopened: it is writable (a fresh WAL, no background error).
  void Reopened() {
    std::lock_guard<std::mutex> lock(mu_);
    failed_.store(false, std::memory_order_release);
    backoff_ = kMinResumeBackoff;
  }

  // OK if the database is writable (again); otherwise Unavailable with the error that keeps it
  // read-only, or while waiting for the next attempt. Sets *reopen when only reopening the
  // database can make it writable again.
  Status BeforeWrite(rocksdb::DB& db, bool* reopen) {
    if (!failed_.load(std::memory_order_acquire)) return Status::Ok();
    std::lock_guard<std::mutex> lock(mu_);
    if (!failed_.load(std::memory_order_relaxed)) return Status::Ok();
    const auto now = std::chrono::steady_clock::now();
    if (now < next_attempt_) return Unavailable("storage is recovering from an I/O error");
    // Resume() moves to a new WAL only by flushing a memtable that holds something. With every
    // memtable empty (the error came right after a flush) it succeeds without doing so, and the
    // next write goes to the log writer that failed: Debian's RocksDB (built with assertions)
    // aborts there, a release build fails every write again. A memtable cannot be filled to
    // force the switch either (the flush first writes out the failed writer's buffer and fails
    // the same way). Only a new WAL from reopening the database recovers from that: the caller
    // reopens it (RocksStore::Reopen) when told so. Everything acknowledged is synced, so the
    // reopen loses nothing.
    uint64_t active = 0, immutable = 0;
    if (!db.GetAggregatedIntProperty(rocksdb::DB::Properties::kNumEntriesActiveMemTable, &active) ||
        !db.GetAggregatedIntProperty(rocksdb::DB::Properties::kNumEntriesImmMemTables,
                                     &immutable) ||
        active + immutable == 0) {
      if (reopen != nullptr) *reopen = true;
      next_attempt_ = now + backoff_;
      backoff_ = std::min<std::chrono::steady_clock::duration>(2 * backoff_, kMaxResumeBackoff);
      return Unavailable("storage failed with an I/O error right after a flush; reopening it");
    }
    rocksdb::Status s = db.Resume();
    if (s.ok()) {
      failed_.store(false, std::memory_order_release);
      backoff_ = kMinResumeBackoff;
      return Status::Ok();
    }
    next_attempt_ = now + backoff_;
    backoff_ = std::min<std::chrono::steady_clock::duration>(2 * backoff_, kMaxResumeBackoff);
    return Unavailable("storage is recovering from an I/O error: " + s.ToString());
  }

 private:
  std::atomic<bool> failed_{false};
  std::mutex mu_;
  std::chrono::steady_clock::time_point next_attempt_;               // GUARDED_BY(mu_)
  std::chrono::steady_clock::duration backoff_ = kMinResumeBackoff;  // GUARDED_BY(mu_)
};

rocksdb::ColumnFamilyOptions CfOptions(Cf cf, const RocksStoreOptions& options,
                                       const std::shared_ptr<rocksdb::Cache>& cache) {
  rocksdb::ColumnFamilyOptions o;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache;
  // Point lookups of keys that do not exist are common (the audit chain head of a patient's
  // first entry, an unknown record id's head): Bloom filters answer them without reading each
  // level's index and data blocks.
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  // Index and filter blocks count against the cache's bound instead of growing with the number
  // of table files; those of L0 (the newest, the most read) stay pinned.
  table.cache_index_and_filter_blocks = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  // Partitioned: a table file's index and filter are cut into 4 KiB blocks under a small top
  // level that stays pinned, so a point lookup brings one partition of each into the cache.
  // Whole index and filter blocks (hundreds of KiB to MiBs per 64 MiB table) did not fit the
  // cache beside the data once the store outgrew it: every lookup re-read and re-parsed them,
  // and a sweep's read-back of 1,000,000 records went from 8 s to 178 s (docs/benchmarks.md).
  table.index_type = rocksdb::BlockBasedTableOptions::kTwoLevelIndexSearch;
  table.partition_filters = true;
  table.metadata_block_size = 4096;
  table.pin_top_level_index_and_filter = true;
  table.cache_index_and_filter_blocks_with_high_priority = true;
  table.optimize_filters_for_memory = true;
  // What each open table file keeps in memory outside its blocks (its table reader: properties,
  // the pinned top-level index and filter partitions; and its file metadata) is charged to the
  // cache too, so that the cache's bound holds as the store grows file by file: without it, RSS
  // grew by about 190 KiB per table file opened (a 60-minute soak: +12 MiB for 63 files,
  // docs/reliability.md). The cache is not strict: a charge past its capacity evicts blocks.
  for (const auto role :
       {rocksdb::CacheEntryRole::kBlockBasedTableReader, rocksdb::CacheEntryRole::kFileMetadata}) {
    rocksdb::CacheEntryRoleOptions charged;
    charged.charged = rocksdb::CacheEntryRoleOptions::Decision::kEnabled;
    table.cache_usage_options.options_overrides.insert({role, charged});
  }
  if (cf == Cf::kArchive) {
    // Written once, read rarely (docs/archive.md): large blocks keep the index small, and their
    // reads bypass the shared cache so that an archive read does not push hot records out.
    table.block_size = kArchiveBlockBytes;
    table.no_block_cache = true;
    // RocksDB refuses cached index and filter blocks without a cache; the archive's are few
    // (large blocks) and stay with its table readers.
    table.cache_index_and_filter_blocks = false;
    table.pin_l0_filter_and_index_blocks_in_cache = false;
    // Partitions need a cache to live in; without one each lookup would read them again.
    table.index_type = rocksdb::BlockBasedTableOptions::kBinarySearch;
    table.partition_filters = false;
    table.pin_top_level_index_and_filter = false;
    table.cache_usage_options.options_overrides.clear();  // no cache to charge
  }
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  if (cf == Cf::kAudit || cf == Cf::kAuditTree || cf == Cf::kIndexes) {
    o.memtable_insert_with_hint_prefix_extractor = std::make_shared<SequentialFamilyPrefix>(cf);
  }
  if (cf == Cf::kArchive) {
    // No blob files (values sit in the tables, without blob headers and blob indexes) and no
    // compression. Sealed content is random bytes: zstd saved nothing measurable on it, cost
    // CPU at every full compaction, and where a block of small values did compress it hid their
    // sealed bytes from the destruction's byte search (docs/archive.md, measured).
    o.compression = rocksdb::kNoCompression;
    o.bottommost_compression = rocksdb::kNoCompression;
  } else if (cf == Cf::kRecords) {
    // Sealed values are random bytes: compression only costs CPU.
    o.compression = rocksdb::kNoCompression;
    o.bottommost_compression = rocksdb::kNoCompression;
    o.enable_blob_files = true;
    o.min_blob_size = options.min_blob_size;
    o.blob_compression_type = rocksdb::kNoCompression;
    // Compaction rewrites blob files too, so deleted content does not linger in old ones.
    o.enable_blob_garbage_collection = true;
  } else {
    o.compression = rocksdb::kLZ4Compression;
    o.bottommost_compression = rocksdb::kZSTD;
  }
  return o;
}

class RocksStore final : public Store {
 public:
  static StatusOr<std::unique_ptr<Store>> Open(const RocksStoreOptions& options,
                                               std::shared_ptr<rocksdb::FileSystem> file_system) {
    if (options.path.empty()) return InvalidArgument("store path must not be empty");
    std::error_code ec;
    if (options.create_if_missing) std::filesystem::create_directories(options.path, ec);
    if (ec) return Unavailable("cannot create store directory: " + ec.message());

    auto env = rocksdb::NewCompositeEnv(std::make_shared<RetryableWriteErrors>(
        file_system ? std::move(file_system) : rocksdb::FileSystem::Default()));

    std::unique_ptr<rocksdb::DB> db;
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    PV_RETURN_IF_ERROR(OpenDb(options, env.get(), db, handles));
    return std::unique_ptr<Store>(
        new RocksStore(options, std::move(env), std::move(db), std::move(handles)));
  }

  // Opens the database at options.path with the store's options; on success `db` and
  // `handles` hold it (handles[0] is the default column family).
  static Status OpenDb(const RocksStoreOptions& options, rocksdb::Env* env,
                       std::unique_ptr<rocksdb::DB>& out,
                       std::vector<rocksdb::ColumnFamilyHandle*>& handles) {
    rocksdb::DBOptions db;
    db.env = env;
    db.max_bgerror_resume_count = 0;  // ErrorRecovery resumes instead
    db.create_if_missing = options.create_if_missing;
    db.create_missing_column_families = true;
    db.paranoid_checks = true;
    // Purge safety: a recycled or archived WAL keeps deleted values readable.
    db.recycle_log_file_num = 0;
    db.WAL_ttl_seconds = 0;
    db.WAL_size_limit_MB = 0;
    // A rarely written column family would otherwise pin old WAL files (and their values).
    db.max_total_wal_size = 64ull << 20;
    db.avoid_flush_during_shutdown = false;
    db.max_background_jobs = 2;
    db.keep_log_file_num = 4;
    db.max_log_file_size = 4ull << 20;
    // With an SstFileManager, a background flush or compaction that hits ENOSPC leaves the
    // database writable again by itself once space returns (RocksDB's automatic recovery), and
    // after such an error compactions wait until the reserve is free beside their output. No
    // SetMaxAllowedSpaceUsage: reaching that limit is a hard error in RocksDB 7.8 that only a
    // manual Resume() clears, and the free space, not the database size, is what runs out; the
    // admission check in Write keeps writes below both.
    std::shared_ptr<rocksdb::SstFileManager> sfm(rocksdb::NewSstFileManager(db.env));
    sfm->SetCompactionBufferSize(options.reserve_bytes);
    db.sst_file_manager = sfm;

    // One memory bound for the whole store (docs/benchmarks.md, memory): the block cache holds
    // data, index and filter blocks, and every column family's memtables are charged to it
    // through one write-buffer budget. Without it each of the seven families could keep two
    // 64 MiB memtables, and the index and filter blocks of every table file lived outside the
    // cache: the soak's RSS rose with the data stored (77 -> 535 MiB in an hour).
    auto cache = rocksdb::NewLRUCache(options.block_cache_bytes);
    db.write_buffer_manager =
        std::make_shared<rocksdb::WriteBufferManager>(options.memtable_budget_bytes, cache);
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    descriptors.emplace_back(rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions());
    for (Cf cf : kAllCfs) {
      descriptors.emplace_back(std::string(CfName(cf)), CfOptions(cf, options, cache));
    }

    std::vector<std::string> existing;
    if (rocksdb::DB::ListColumnFamilies(db, options.path, &existing).ok()) {
      for (const auto& name : existing) {
        bool known = false;
        for (const auto& d : descriptors) known = known || d.name == name;
        if (!known) return FailedPrecondition("store has an unknown column family: " + name);
      }
    }

    rocksdb::DB* raw = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(db, options.path, descriptors, &handles, &raw);
    if (!s.ok()) {
      Status st = FromRocks(s);
      return st.code() == StatusCode::kDataLoss ? st : Unavailable(st.message());
    }
    out.reset(raw);
    return Status::Ok();
  }

  ~RocksStore() override {
    WriterMutexLock lock(db_mu_);
    CloseDb();
  }

  StatusOr<std::optional<std::string>> Get(Cf cf, std::string_view key) override {
    ReaderMutexLock lock(db_mu_);
    PV_RETURN_IF_ERROR(Ready());
    std::string value;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), Handle(cf), ToSlice(key), &value);
    if (s.IsNotFound()) return std::optional<std::string>();
    if (!s.ok()) return FromRocks(s);
    return std::optional<std::string>(std::move(value));
  }

  StatusOr<std::vector<std::optional<std::string>>> MultiGet(
      Cf cf, const std::vector<std::string>& keys) override {
    ReaderMutexLock lock(db_mu_);
    PV_RETURN_IF_ERROR(Ready());
    std::vector<rocksdb::Slice> slices;
    slices.reserve(keys.size());
    for (const auto& key : keys) slices.emplace_back(key);
    std::vector<rocksdb::PinnableSlice> values(keys.size());
    std::vector<rocksdb::Status> statuses(keys.size());
    db_->MultiGet(rocksdb::ReadOptions(), Handle(cf), keys.size(), slices.data(), values.data(),
                  statuses.data());
    std::vector<std::optional<std::string>> out(keys.size());
    for (size_t i = 0; i < keys.size(); ++i) {
      if (statuses[i].IsNotFound()) continue;
      if (!statuses[i].ok()) return FromRocks(statuses[i]);
      out[i] = values[i].ToString();
    }
    return out;
  }

  Status Write(const WriteBatch& batch, bool sync) override {
    if (batch.empty()) return Status::Ok();
    bool reopen = false;
    {
      ReaderMutexLock lock(db_mu_);
      if (db_ != nullptr) {
        Status ready = recovery_.BeforeWrite(*db_, &reopen);
        if (ready.ok()) return WriteLocked(batch, sync);
        if (!reopen) return ready;
      }
    }
    // Only a new WAL recovers (ErrorRecovery::BeforeWrite), or an earlier reopen failed.
    PV_RETURN_IF_ERROR(Reopen());
    ReaderMutexLock lock(db_mu_);
    PV_RETURN_IF_ERROR(Ready());
    return WriteLocked(batch, sync);
  }

  Status Scan(Cf cf, std::string_view begin, std::string_view end, const ScanFn& fn) override {
    ReaderMutexLock lock(db_mu_);
    PV_RETURN_IF_ERROR(Ready());
    return ScanLocked(cf, begin, end, fn);
  }

  Status ScanReverse(Cf cf, std::string_view begin, std::string_view end,
                     const ScanFn& fn) override {
    ReaderMutexLock lock(db_mu_);
    PV_RETURN_IF_ERROR(Ready());
    return ScanReverseLocked(cf, begin, end, fn);
  }

  Status Flush() override {
    ReaderMutexLock lock(db_mu_);
    PV_RETURN_IF_ERROR(Ready());
    return FlushLocked();
  }

  Status CompactAll() override {
    ReaderMutexLock lock(db_mu_);
    PV_RETURN_IF_ERROR(Ready());
    return CompactAllLocked();
  }

  // A reopen after an I/O error starts them again (OpenDb's options).
  Status SetAutoCompactions(bool enabled) override {
    ReaderMutexLock lock(db_mu_);
    PV_RETURN_IF_ERROR(Ready());
    const std::unordered_map<std::string, std::string> change{
        {"disable_auto_compactions", enabled ? "false" : "true"}};
    for (auto* h : handles_) PV_RETURN_IF_ERROR(FromRocks(db_->SetOptions(h, change)));
    return Status::Ok();
  }

  Status CreateCheckpoint(const std::string& dir) override {
    ReaderMutexLock lock(db_mu_);
    PV_RETURN_IF_ERROR(Ready());
    return CreateCheckpointLocked(dir);
  }

  uint64_t synced_writes() const override { return synced_writes_.load(std::memory_order_relaxed); }

  StatusOr<SpaceInfo> Space() override {
    ReaderMutexLock lock(db_mu_);
    PV_RETURN_IF_ERROR(Ready());
    return SpaceLocked();
  }

 private:
  // The database is open (a failed reopen leaves it closed until the next write reopens it).
  Status Ready() const REQUIRES_SHARED(db_mu_) {
    if (db_ == nullptr) {
      return Unavailable("storage is recovering from an I/O error: the database is closed");
    }
    return Status::Ok();
  }

  void CloseDb() REQUIRES(db_mu_) {
    if (db_ == nullptr) return;
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    handles_.clear();
    db_->Close().PermitUncheckedError();
    db_.reset();
  }

  // Closes and opens the database again, for a new WAL after a failed log write. Every
  // acknowledged write was synced, so nothing acknowledged is lost; what the failed write left
  // in its log is a torn tail that recovery drops. Waits for the backoff between attempts.
  Status Reopen() EXCLUDES(db_mu_) {
    WriterMutexLock lock(db_mu_);
    if (db_ != nullptr && !recovery_.failed()) return Status::Ok();  // another writer did it
    CloseDb();
    std::unique_ptr<rocksdb::DB> db;
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    RocksStoreOptions options = options_;
    options.create_if_missing = false;
    Status opened = OpenDb(options, env_.get(), db, handles);
    if (!opened.ok()) {
      return Unavailable(
          "storage is recovering from an I/O error: reopening the database failed: " +
          opened.message());
    }
    db_ = std::move(db);
    handles_ = std::move(handles);
    recovery_.Reopened();
    return Status::Ok();
  }

  Status WriteLocked(const WriteBatch& batch, bool sync) REQUIRES_SHARED(db_mu_) {
    if (sync && batch.unlogged()) return InvalidArgument("an unlogged write cannot be synced");
    PV_RETURN_IF_ERROR(space_.Admit(batch.bytes(), batch.write_class()));
    // Sized up front: a group's batch would otherwise grow by reallocating and copying.
    constexpr size_t kHeaderBytes = 12;
    constexpr size_t kPerOpBytes = 16;  // tag, column family and two varint lengths, at most
    rocksdb::WriteBatch wb(kHeaderBytes + batch.bytes() + kPerOpBytes * batch.ops().size());
    for (const auto& op : batch.ops()) {
      rocksdb::Status s;
      switch (op.kind) {
        case WriteBatch::Kind::kPut:
          s = wb.Put(Handle(op.cf), op.key, op.value);
          break;
        case WriteBatch::Kind::kDelete:
          s = wb.Delete(Handle(op.cf), op.key);
          break;
        case WriteBatch::Kind::kDeleteRange:
          s = wb.DeleteRange(Handle(op.cf), op.key, op.value);
          break;
      }
      if (!s.ok()) return FromRocks(s);
    }
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    wo.disableWAL = batch.unlogged();
    const rocksdb::Status rs = db_->Write(wo, &wb);
    recovery_.AfterWrite(rs);
    Status written = FromRocks(rs);
    if (sync && written.ok()) synced_writes_.fetch_add(1, std::memory_order_relaxed);
    return written;
  }

  Status ScanLocked(Cf cf, std::string_view begin, std::string_view end, const ScanFn& fn)
      REQUIRES_SHARED(db_mu_) {
    rocksdb::ReadOptions ro;
    rocksdb::Slice upper = ToSlice(end);
    if (!end.empty()) ro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, Handle(cf)));
    for (it->Seek(ToSlice(begin)); it->Valid(); it->Next()) {
      if (!fn(ToView(it->key()), ToView(it->value()))) break;
    }
    return FromRocks(it->status());
  }

  Status ScanReverseLocked(Cf cf, std::string_view begin, std::string_view end, const ScanFn& fn)
      REQUIRES_SHARED(db_mu_) {
    rocksdb::ReadOptions ro;
    rocksdb::Slice lower = ToSlice(begin);
    rocksdb::Slice upper = ToSlice(end);
    ro.iterate_lower_bound = &lower;
    if (!end.empty()) ro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, Handle(cf)));
    for (it->SeekToLast(); it->Valid(); it->Prev()) {
      if (!fn(ToView(it->key()), ToView(it->value()))) break;
    }
    return FromRocks(it->status());
  }

  Status FlushLocked() REQUIRES_SHARED(db_mu_) {
    rocksdb::FlushOptions fo;
    fo.wait = true;
    fo.allow_write_stall = true;
    return FromRocks(db_->Flush(fo, handles_));
  }

  Status CompactAllLocked() REQUIRES_SHARED(db_mu_) {
    // A full compaction may briefly need as much space again as the live data, and must leave
    // the reserve to audited reads.
    PV_ASSIGN_OR_RETURN(SpaceInfo space, SpaceLocked());
    if (space.free_bytes < space.live_data_bytes ||
        space.free_bytes - space.live_data_bytes < space.reserve_bytes) {
      return ResourceExhausted("not enough free disk space to compact");
    }
    // Flushing every column family at once lets every old WAL file become obsolete.
    PV_RETURN_IF_ERROR(FlushLocked());
    // The column families are compacted two at a time, largest first (the free-space check
    // above already allows for all of them at once). A manual compaction runs on RocksDB's
    // compaction pool, which max_background_jobs = 2 sizes to one thread, so the pool is
    // raised for the duration and lowered again after: automatic compactions are limited to
    // their usual share again, beside the vault's traffic. One CompactAll at a time.
    MutexLock one(compact_mu_);
    std::vector<std::pair<uint64_t, rocksdb::ColumnFamilyHandle*>> order;
    for (auto* h : handles_) {
      uint64_t sst = 0, blob = 0;
      db_->GetIntProperty(h, rocksdb::DB::Properties::kLiveSstFilesSize, &sst);
      db_->GetIntProperty(h, rocksdb::DB::Properties::kLiveBlobFileSize, &blob);
      order.emplace_back(sst + blob, h);
    }
    std::sort(order.begin(), order.end(),
              [](const auto& a, const auto& b) { return a.first > b.first; });
    rocksdb::DB* db = db_.get();
    // Only the speed depends on the pool's size: a failure to change it is not the compaction's.
    db->SetDBOptions({{"max_background_jobs", "4"}}).PermitUncheckedError();
    std::atomic<size_t> next{0};
    std::vector<rocksdb::Status> results(order.size());
    auto work = [&] {
      for (size_t i = next++; i < order.size(); i = next++) {
        rocksdb::CompactRangeOptions cro;
        cro.exclusive_manual_compaction = false;
        cro.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
        cro.blob_garbage_collection_policy = rocksdb::BlobGarbageCollectionPolicy::kForce;
        cro.blob_garbage_collection_age_cutoff = 1.0;
        results[i] = db->CompactRange(cro, order[i].second, nullptr, nullptr);
      }
    };
    {
      std::thread other(work);
      work();
      other.join();
    }
    db->SetDBOptions({{"max_background_jobs", "2"}}).PermitUncheckedError();
    for (const auto& r : results) PV_RETURN_IF_ERROR(FromRocks(r));
    return FromRocks(db->FlushWAL(/*sync=*/true));
  }

  Status CreateCheckpointLocked(const std::string& dir) REQUIRES_SHARED(db_mu_) {
    rocksdb::Checkpoint* raw = nullptr;
    PV_RETURN_IF_ERROR(FromRocks(rocksdb::Checkpoint::Create(db_.get(), &raw)));
    std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
    // log_size_for_flush 0: always flush, so that the copy holds table files, not a long WAL.
    return FromRocks(checkpoint->CreateCheckpoint(dir, /*log_size_for_flush=*/0));
  }

  StatusOr<SpaceInfo> SpaceLocked() REQUIRES_SHARED(db_mu_) {
    SpaceInfo info;
    PV_ASSIGN_OR_RETURN(info.free_bytes, space_.FreeNow());
    info.reserve_bytes = space_.reserve();
    // Current-version files only: files of older versions are deleted as soon as nothing
    // reads them. Until a memtable is flushed its data is on disk only in the WAL, so a vault
    // holding less than a memtable's worth of data has no table or blob files at all.
    if (!db_->GetAggregatedIntProperty(rocksdb::DB::Properties::kLiveSstFilesSize,
                                       &info.table_bytes) ||
        !db_->GetAggregatedIntProperty(rocksdb::DB::Properties::kLiveBlobFileSize,
                                       &info.blob_bytes)) {
      return Internal("the storage engine does not report its file sizes");
    }
    rocksdb::VectorLogPtr wal_files;
    PV_RETURN_IF_ERROR(FromRocks(db_->GetSortedWalFiles(wal_files)));
    for (const auto& f : wal_files) info.log_bytes += f->SizeFileBytes();
    info.live_data_bytes = info.table_bytes + info.blob_bytes + info.log_bytes;
    return info;
  }

  RocksStore(const RocksStoreOptions& options, std::unique_ptr<rocksdb::Env> env,
             std::unique_ptr<rocksdb::DB> db, std::vector<rocksdb::ColumnFamilyHandle*> handles)
      : options_(options),
        env_(std::move(env)),
        db_(std::move(db)),
        handles_(std::move(handles)),
        // Called by Admit, inside Write, with db_mu_ held.
        space_(options.path, options.reserve_bytes, options.free_space,
               [this]() NO_THREAD_SAFETY_ANALYSIS {
                 uint64_t bytes = 0;
                 return db_->GetAggregatedIntProperty(rocksdb::DB::Properties::kCurSizeAllMemTables,
                                                      &bytes)
                            ? bytes
                            : 0;
               }) {}

  // handles_[0] is the default column family; Cf values follow in declaration order.
  rocksdb::ColumnFamilyHandle* Handle(Cf cf) const REQUIRES_SHARED(db_mu_) {
    return handles_[static_cast<size_t>(cf) + 1];
  }

  const RocksStoreOptions options_;
  std::unique_ptr<rocksdb::Env> env_;  // outlives db_
  // Held shared by every use of the database, exclusively to reopen it (Reopen).
  mutable SharedMutex db_mu_;
  std::unique_ptr<rocksdb::DB> db_ GUARDED_BY(db_mu_);  // null after a failed reopen
  std::vector<rocksdb::ColumnFamilyHandle*> handles_ GUARDED_BY(db_mu_);
  Mutex compact_mu_;  // one CompactAll at a time (it raises and lowers the compaction pool)
  SpaceGuard space_;
  ErrorRecovery recovery_;
  std::atomic<uint64_t> synced_writes_{0};
};

}  // namespace

StatusOr<std::unique_ptr<Store>> OpenRocksStore(const RocksStoreOptions& options) {
  return RocksStore::Open(options, nullptr);
}

StatusOr<std::unique_ptr<Store>> OpenRocksStoreOn(
    const RocksStoreOptions& options, std::shared_ptr<rocksdb::FileSystem> file_system) {
  return RocksStore::Open(options, std::move(file_system));
}

}  // namespace phivault::storage
