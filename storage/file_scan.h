// Byte search over every file of a directory tree: the proof step of a destruction. Once a
// record is shredded and the store compacted, none of its stored bytes
// (RecordRepository::Fingerprints) may remain in any live file of the database directory.
// Searching the files rather than asking the engine also covers its WAL, blob files, MANIFEST
// and logs. (Freed disk blocks are out of reach of any search: that is what destroying the keys
// is for.)
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"

namespace phivault::storage {

struct FileHit {
  std::string path;     // the file, as reached from `dir`
  uint64_t offset = 0;  // where the needle begins in it
  size_t needle = 0;    // index into `needles`
};

// Needles are 16 to 4096 bytes long; a file is read this many bytes at a time (plus the longest
// needle's length - 1 carried over, so that no occurrence is split).
inline constexpr size_t kMinNeedleBytes = 16;
inline constexpr size_t kMaxNeedleBytes = 4096;
inline constexpr size_t kFileScanChunkBytes = size_t{4} << 20;
// Files are searched this many at a time (no more than the machine's cores), sharing one index.
inline constexpr size_t kFileScanThreads = 2;

// Every occurrence of any of `needles` in the regular files under `dir`, recursively. Symbolic
// links below `dir` are never followed (to files or directories); other file types are not read.
// Files are visited in name order within each directory, hits in offset order within each file
// (several needles may begin at one offset); the search stops after `max_hits` hits. A file or
// directory that vanishes during the search is skipped (RocksDB deletes files at any time).
// InvalidArgument "needle <i> must be 16 to 4096 bytes" (nothing is read); NotFound if `dir` does
// not exist; Unavailable naming the path if a file or directory cannot be opened or read.
// The first error found (in file order) is returned, even if a later file was searched too.
// Needles are indexed by their first 8 bytes (a Bloom filter in front of an open-addressing hash
// table), so each file is read once whatever the number of needles; the index of a million
// needles takes about 36 MB. Measured on the 2-vCPU build machine: about 450 MB of file per CPU
// second with a thousand needles, 125 MB with a million (the filter then leaves the L2 cache);
// kFileScanThreads files are searched at once.
StatusOr<std::vector<FileHit>> FindInFiles(const std::string& dir,
                                           std::span<const std::string> needles,
                                           size_t max_hits = 100);

}  // namespace phivault::storage
