// The RocksDB engine's test hook: OpenRocksStore (storage/store.h) on a file system other than
// the real one, for fault injection and simulated power cuts (tests/storage/power_cut_fs.h).
// Production code never calls it.
#pragma once

#include <memory>

#include "base/status.h"
#include "storage/store.h"

namespace rocksdb {
class FileSystem;
}

namespace phivault::storage {

// OpenRocksStore with every file operation of RocksDB (its WAL, tables, MANIFEST, checkpoints,
// and the deletions of its SstFileManager) going through `file_system`, which must outlive the
// store. Errors as OpenRocksStore.
StatusOr<std::unique_ptr<Store>> OpenRocksStoreOn(const RocksStoreOptions& options,
                                                  std::shared_ptr<rocksdb::FileSystem> file_system);

}  // namespace phivault::storage
