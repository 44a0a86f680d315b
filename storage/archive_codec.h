// The plaintext of the archive tier's compressed format (docs/archive.md, "archived-compressed
// format v1"): what RecordRepository::StageArchive seals, under the version's own DEK, into a
// Cf::kArchive 'z' value instead of moving the live sealed content byte for byte.
//
//   payload = BE32(frame length) || one zstd frame (content size in its header) || zero bytes
//   |payload| = ArchivePaddedSize(4 + frame length)
//
// Compression happens before sealing because sealed bytes are random and no compressor shrinks
// them; the padding keeps the stored length from telling more than a size bucket (1/16 of a power
// of two, at least 256 bytes) about how well the content compressed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"

namespace phivault::storage {

// zstd level of the archive: archiving runs rarely and in the background, reads decompress at
// the same speed whatever the level.
inline constexpr int kArchiveZstdLevel = 19;
// The smallest padding granule: every payload is a multiple of it.
inline constexpr size_t kArchivePadGranule = 256;

// The padded payload size for `n` bytes (n >= 1): n rounded up to a multiple of
// max(256, 2^floor(log2 n) / 16). At most 256 bytes or 1/16 (6.25 %) more than n.
size_t ArchivePaddedSize(size_t n);

// The payload for `content`, or std::nullopt if it would not be smaller than `content` itself
// (incompressible or tiny content is then archived byte for byte, as before). The caller seals it
// and wipes it. Internal if zstd fails (out of memory).
StatusOr<std::optional<std::string>> EncodeArchivePayload(std::string_view content);

// The content of `payload`, which must decompress to exactly `content_bytes` bytes (the
// version's authenticated size). Never allocates more than `content_bytes` for the output, so a
// frame that claims or produces more (a decompression bomb) is refused, not decompressed. DataLoss
// "archived content is malformed" for anything not EncodeArchivePayload's form: a short payload, a
// length beyond it, non-zero or wrong-sized padding, a frame without its content size, a size
// other than `content_bytes`, more than one frame, a damaged frame.
StatusOr<std::string> DecodeArchivePayload(std::string_view payload, uint64_t content_bytes);

}  // namespace phivault::storage
