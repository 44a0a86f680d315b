// A RocksDB file system for tests that simulates what a power cut and a failing disk do to the
// files under it, the way LevelDB's fault_injection_test and RocksDB's FaultInjectionTestFS do:
// it forwards to the real file system, remembers per file what was made durable (its size at
// the last Sync/Fsync; its name once its directory was fsynced after the create, rename or
// link), and after a cut puts the disk into the state a machine would find when it boots again.
//
// What a cut loses (DropUnsynced):
//   - every byte appended after the file's last Sync/Fsync (RangeSync is sync_file_range, which
//     makes nothing durable, so it does not count), or with a seed a random prefix of them
//     survives, as when the disk wrote part of its cache;
//   - the bytes of a sync that failed, even if a later sync succeeded (Linux marks pages clean
//     after a writeback error, so the later fsync reports success for data never written);
//   - a file created or linked since its directory was last fsynced (removed);
//   - a rename since its directory was last fsynced (undone: the old content of the target comes
//     back; the source name only if it was durable itself).
// Not simulated: deletes are durable at once (a deleted file never comes back), and directories
// are durable once created.
//
// Failing storage (Fail): chosen kinds of operation fail with an I/O error, after skipping some,
// for a count, or each with a probability (seeded). An injected failure changes nothing, except
// that a failed sync loses its bytes as above.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <rocksdb/file_system.h>

#include "tests/testing/power_switch.h"

namespace phivault::storage::testing {

enum class FsOp : uint32_t {
  kAppend = 1u << 0,  // Append, PositionedAppend, Truncate of an open file
  kSync = 1u << 1,    // Sync, Fsync of a file
  kOpen = 1u << 2,    // creating or reopening a file for writing
  kDirSync = 1u << 3,
  kRename = 1u << 4,
  kDelete = 1u << 5,
  kLink = 1u << 6,
};
inline constexpr uint32_t operator|(FsOp a, FsOp b) {
  return static_cast<uint32_t>(a) | static_cast<uint32_t>(b);
}

struct FsFault {
  uint32_t ops = 0;             // FsOp bits
  uint64_t skip = 0;            // matching operations that pass first
  uint64_t count = UINT64_MAX;  // then this many fail (each with `probability`)
  double probability = 1.0;
  uint64_t seed = 1;
};

struct DropReport {
  uint64_t files_truncated = 0;
  uint64_t bytes_dropped = 0;
  uint64_t files_removed = 0;
  uint64_t renames_undone = 0;
  uint64_t lost_ranges_zeroed = 0;
};

class PowerCutFs final : public rocksdb::FileSystemWrapper {
 public:
  explicit PowerCutFs(std::shared_ptr<phivault::testing::PowerSwitch> power,
                      std::shared_ptr<rocksdb::FileSystem> base = rocksdb::FileSystem::Default());
  const char* Name() const override { return "PowerCutFs"; }

  // Only once nothing uses the files any more (the store is closed; the power is off so that
  // closing wrote nothing): makes the disk what a reboot would find (see above). With `seed`,
  // a random part of each file's unsynced tail survives. Forgets every file's history: what is
  // on disk now is durable.
  DropReport DropUnsynced(std::optional<uint64_t> seed);

  // Injects failures (replacing any earlier fault); Clear stops them.
  void Fail(const FsFault& fault);
  void Clear();
  uint64_t failures_injected() const;

  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReuseWritableFile(const std::string& f, const std::string& old,
                                      const rocksdb::FileOptions& o,
                                      std::unique_ptr<rocksdb::FSWritableFile>* r,
                                      rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus NewRandomRWFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSRandomRWFile>* r,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus NewDirectory(const std::string& name, const rocksdb::IOOptions& o,
                                 std::unique_ptr<rocksdb::FSDirectory>* r,
                                 rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus DeleteFile(const std::string& f, const rocksdb::IOOptions& o,
                               rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus RenameFile(const std::string& src, const std::string& dst,
                               const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus LinkFile(const std::string& src, const std::string& dst,
                             const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus Truncate(const std::string& f, size_t size, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* dbg) override;

  // For the wrapped files and directories.
  rocksdb::IOStatus Check(FsOp op, const std::string& what);
  void Appended(const std::string& path, uint64_t size);
  void Truncated(const std::string& path, uint64_t size);
  void Synced(const std::string& path, bool ok);
  void DirSynced(const std::string& dir);

 private:
  struct FileState {
    uint64_t size = 0;
    uint64_t synced = 0;
    bool durable_name = true;
    std::vector<std::pair<uint64_t, uint64_t>> lost;  // [from, to) of failed syncs
    // A rename not yet made durable: the source name and whether it was durable, and what the
    // target held before (if it existed).
    std::optional<std::string> renamed_from;
    bool source_name_durable = false;
    std::optional<std::string> old_target;
  };
  FileState& Track(const std::string& path);  // REQUIRES(mu_)

  const std::shared_ptr<phivault::testing::PowerSwitch> power_;
  mutable std::mutex mu_;
  std::map<std::string, FileState> files_;  // GUARDED_BY(mu_)
  std::optional<FsFault> fault_;            // GUARDED_BY(mu_)
  uint64_t fault_seen_ = 0;                 // GUARDED_BY(mu_)
  uint64_t failures_ = 0;                   // GUARDED_BY(mu_)
  std::mt19937_64 fault_rng_;               // GUARDED_BY(mu_)
};

}  // namespace phivault::storage::testing
