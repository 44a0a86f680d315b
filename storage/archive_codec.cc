#include "storage/archive_codec.h"

#include <sodium.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <memory>

#define ZSTD_STATIC_LINKING_ONLY  // ZSTD_customMem: work memory wiped when zstd frees it
#include <zstd.h>

#include "storage/key_encoding.h"

namespace phivault::storage {
namespace {

constexpr size_t kLengthBytes = 4;

Status Malformed() { return DataLoss("archived content is malformed"); }

// zstd's work memory holds tables derived from the plaintext: wiped before it is freed. Each
// block carries its size in front.
void* WipingAlloc(void*, size_t size) {
  auto* block = static_cast<unsigned char*>(std::malloc(size + alignof(std::max_align_t)));
  if (block == nullptr) return nullptr;
  *reinterpret_cast<size_t*>(block) = size;
  return block + alignof(std::max_align_t);
}
void WipingFree(void*, void* address) {
  if (address == nullptr) return;
  auto* block = static_cast<unsigned char*>(address) - alignof(std::max_align_t);
  sodium_memzero(address, *reinterpret_cast<size_t*>(block));
  std::free(block);
}
constexpr ZSTD_customMem kWipingMem = {WipingAlloc, WipingFree, nullptr};

struct CCtxFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DCtxFree {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

}  // namespace

size_t ArchivePaddedSize(size_t n) {
  if (n == 0) return kArchivePadGranule;
  const size_t granule = std::max(kArchivePadGranule, std::bit_floor(n) / 16);
  return (n + granule - 1) / granule * granule;
}

StatusOr<std::optional<std::string>> EncodeArchivePayload(std::string_view content) {
  // Nothing up to one granule can shrink (its bucket is the granule), and trying would cost a
  // level-19 context (allocated and wiped) per record.
  if (content.size() <= kArchivePadGranule || content.size() > UINT32_MAX) {
    return std::optional<std::string>();
  }
  const size_t bound = ZSTD_compressBound(content.size());
  std::string payload(kLengthBytes + bound, '\0');
  std::unique_ptr<ZSTD_CCtx, CCtxFree> cctx(ZSTD_createCCtx_advanced(kWipingMem));
  if (!cctx) return Internal("zstd: cannot create a compression context");
  if (ZSTD_isError(
          ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, kArchiveZstdLevel)) ||
      ZSTD_isError(ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_contentSizeFlag, 1)) ||
      ZSTD_isError(ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 0))) {
    return Internal("zstd: cannot set the compression parameters");
  }
  const size_t frame = ZSTD_compress2(cctx.get(), payload.data() + kLengthBytes, bound,
                                      content.data(), content.size());
  if (ZSTD_isError(frame)) {
    sodium_memzero(payload.data(), payload.size());
    return Internal(std::string("zstd: ") + ZSTD_getErrorName(frame));
  }
  const size_t padded = ArchivePaddedSize(kLengthBytes + frame);
  if (padded >= content.size()) {
    sodium_memzero(payload.data(), payload.size());
    return std::optional<std::string>();
  }
  const std::string length = BigEndian32(static_cast<uint32_t>(frame));
  std::copy(length.begin(), length.end(), payload.begin());
  // The unused tail of the bound, zeroed, is the padding.
  std::fill(payload.begin() + static_cast<std::ptrdiff_t>(kLengthBytes + frame), payload.end(),
            '\0');
  payload.resize(padded);  // padded < content.size() <= bound
  return std::optional<std::string>(std::move(payload));
}

StatusOr<std::string> DecodeArchivePayload(std::string_view payload, uint64_t content_bytes) {
  if (payload.size() < kLengthBytes) return Malformed();
  const size_t frame = ReadBigEndian32(payload);
  if (frame == 0 || frame > payload.size() - kLengthBytes ||
      payload.size() != ArchivePaddedSize(kLengthBytes + frame)) {
    return Malformed();
  }
  const std::string_view padding = payload.substr(kLengthBytes + frame);
  if (std::any_of(padding.begin(), padding.end(), [](char c) { return c != '\0'; })) {
    return Malformed();
  }
  const std::string_view in = payload.substr(kLengthBytes, frame);
  // One frame, exactly the length given, declaring exactly the authenticated size.
  if (ZSTD_findFrameCompressedSize(in.data(), in.size()) != in.size()) return Malformed();
  const unsigned long long declared = ZSTD_getFrameContentSize(in.data(), in.size());
  if (declared == ZSTD_CONTENTSIZE_UNKNOWN || declared == ZSTD_CONTENTSIZE_ERROR ||
      declared != content_bytes) {
    return Malformed();
  }
  std::unique_ptr<ZSTD_DCtx, DCtxFree> dctx(ZSTD_createDCtx_advanced(kWipingMem));
  if (!dctx) return Internal("zstd: cannot create a decompression context");
  // The output buffer is the bound: zstd stops with an error rather than write beyond it.
  std::string out(static_cast<size_t>(content_bytes), '\0');
  const size_t made = ZSTD_decompressDCtx(dctx.get(), out.data(), out.size(), in.data(), in.size());
  if (ZSTD_isError(made) || made != content_bytes) {
    sodium_memzero(out.data(), out.size());
    return Malformed();
  }
  return out;
}

}  // namespace phivault::storage
