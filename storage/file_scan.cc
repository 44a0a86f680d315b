#include "storage/file_scan.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

namespace phivault::storage {
namespace {

namespace fs = std::filesystem;

constexpr size_t kKeyBytes = 8;
constexpr uint64_t kFilterMul = 0x9e3779b97f4a7c15ull;
constexpr uint64_t kSlotMul = 0xc2b2ae3d27d4eb4full;

uint64_t Load64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The needles by their first 8 bytes. A blocked Bloom filter (two bits in one 64-bit word per
// needle, kFilterBitsPerNeedle bits each and at least kMinFilterBits, so that it stays in cache)
// rejects almost every file position with one load; positions are tested 8 at a time without
// branches so that the loads overlap. The few that pass probe a linear-probing table whose slots
// hold the 8-byte key and the needle, and then the whole needle is compared.
class NeedleIndex {
 public:
  explicit NeedleIndex(std::span<const std::string> needles) : needles_(needles) {
    const unsigned filter_bits =
        std::max(kMinFilterBits,
                 static_cast<unsigned>(std::bit_width(needles.size() * kFilterBitsPerNeedle - 1)));
    word_shift_ = 64 - (filter_bits - 6);
    filter_.assign(size_t{1} << (filter_bits - 6), 0);
    const unsigned slot_bits =
        std::max(4u, static_cast<unsigned>(std::bit_width(needles.size() * 2 - 1)));
    slot_shift_ = 64 - slot_bits;
    slots_.assign(size_t{1} << slot_bits, Slot{});
    for (size_t i = 0; i < needles.size(); ++i) {
      const uint64_t key = Load64(needles[i].data());
      const uint64_t h = key * kFilterMul;
      filter_[h >> word_shift_] |= FilterBits(h);
      size_t s = SlotOf(key);
      while (slots_[s].needle_plus_one != 0) s = (s + 1) & (slots_.size() - 1);
      slots_[s] = {key, static_cast<uint32_t>(i + 1)};
    }
  }

  // Calls `on_match(p, i)` for every needle i that begins at `buf + p`, for p in [0, limit) in
  // order, where the bytes up to `end` are there (at least 8 after each p). Stops and returns
  // false as soon as `on_match` does.
  template <typename F>
  bool Scan(const char* buf, size_t limit, const char* end, F&& on_match) const {
    const uint64_t* const filter = filter_.data();
    const unsigned shift = word_shift_;
    auto passes = [&](size_t p) -> uint32_t {
      const uint64_t h = Load64(buf + p) * kFilterMul;
      const uint64_t bits = FilterBits(h);
      return (filter[h >> shift] & bits) == bits ? 1 : 0;
    };
    size_t p = 0;
    for (; p + 8 <= limit; p += 8) {
      uint32_t mask = 0;
      for (size_t j = 0; j < 8; ++j) mask |= passes(p + j) << j;
      if (mask == 0) [[likely]] {
        continue;
      }
      for (; mask != 0; mask &= mask - 1) {
        if (!Confirm(buf, p + static_cast<size_t>(std::countr_zero(mask)), end, on_match)) {
          return false;
        }
      }
    }
    for (; p < limit; ++p) {
      if (passes(p) != 0 && !Confirm(buf, p, end, on_match)) return false;
    }
    return true;
  }

 private:
  static constexpr size_t kFilterBitsPerNeedle = 32;
  static constexpr unsigned kMinFilterBits = 16;

  struct Slot {
    uint64_t key = 0;
    uint32_t needle_plus_one = 0;  // 0: empty
  };

  // The two bits of a word that a hash sets; the word index comes from its top bits.
  static uint64_t FilterBits(uint64_t h) {
    return (uint64_t{1} << ((h >> 20) & 63)) | (uint64_t{1} << ((h >> 26) & 63));
  }
  size_t SlotOf(uint64_t key) const { return static_cast<size_t>((key * kSlotMul) >> slot_shift_); }

  template <typename F>
  bool Confirm(const char* buf, size_t p, const char* end, F& on_match) const {
    const uint64_t key = Load64(buf + p);
    for (size_t s = SlotOf(key); slots_[s].needle_plus_one != 0;
         s = (s + 1) & (slots_.size() - 1)) {
      if (slots_[s].key != key) continue;
      const size_t i = slots_[s].needle_plus_one - 1;
      const std::string& needle = needles_[i];
      if (needle.size() <= static_cast<size_t>(end - (buf + p)) &&
          std::memcmp(buf + p, needle.data(), needle.size()) == 0 && !on_match(p, i)) {
        return false;
      }
    }
    return true;
  }

  std::span<const std::string> needles_;
  std::vector<uint64_t> filter_;
  unsigned word_shift_ = 0;
  std::vector<Slot> slots_;
  unsigned slot_shift_ = 0;
};

std::string ErrnoText(int error) { return std::generic_category().message(error); }

bool Vanished(int error) { return error == ENOENT || error == ENOTDIR; }

// Lists the regular files under a directory tree, in name order within each directory.
Status ListFiles(const fs::path& dir, bool is_root, std::vector<std::string>& out) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) {
    if (!is_root && Vanished(ec.value())) return Status::Ok();
    if (is_root && ec.value() == ENOENT) return NotFound("no such directory: " + dir.string());
    return Unavailable("cannot read directory " + dir.string() + ": " + ec.message());
  }
  std::vector<std::pair<fs::path, bool>> entries;  // (path, is directory)
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    const fs::file_type type = it->symlink_status(ec).type();
    if (ec) {
      if (Vanished(ec.value())) continue;
      return Unavailable("cannot stat " + it->path().string() + ": " + ec.message());
    }
    if (type == fs::file_type::directory || type == fs::file_type::regular) {
      entries.emplace_back(it->path(), type == fs::file_type::directory);
    }
  }
  if (ec && !Vanished(ec.value())) {
    return Unavailable("cannot read directory " + dir.string() + ": " + ec.message());
  }
  std::sort(entries.begin(), entries.end());
  for (const auto& [path, is_directory] : entries) {
    if (is_directory) {
      PV_RETURN_IF_ERROR(ListFiles(path, false, out));
    } else {
      out.push_back(path.string());
    }
  }
  return Status::Ok();
}

// Searches one file at a time with its own buffer; several may share one index.
class FileSearcher {
 public:
  FileSearcher(const NeedleIndex& index, size_t max_len, size_t max_hits)
      : index_(index), keep_(max_len - 1), max_hits_(max_hits) {}

  // The file's hits, at most max_hits, in offset order.
  StatusOr<std::vector<FileHit>> File(const std::string& path) {
    hits_.clear();
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
      // Gone, or replaced by a symbolic link (ELOOP) since the directory was read.
      if (errno == ENOENT || errno == ELOOP) return std::vector<FileHit>();
      return Unavailable("cannot open " + path + ": " + ErrnoText(errno));
    }
    Status s = Read(fd, path);
    close(fd);
    PV_RETURN_IF_ERROR(s);
    return std::move(hits_);
  }

 private:
  bool full() const { return hits_.size() >= max_hits_; }

  Status Read(int fd, const std::string& path) {
    struct stat st {};
    if (fstat(fd, &st) != 0) return Unavailable("cannot stat " + path + ": " + ErrnoText(errno));
    if (!S_ISREG(st.st_mode)) return Status::Ok();
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    buffer_.resize(keep_ + kFileScanChunkBytes);
    char* const buf = buffer_.data();
    size_t have = 0;    // bytes in the buffer
    uint64_t base = 0;  // file offset of buf[0]
    bool eof = false;
    while (!eof) {
      while (have < buffer_.size()) {
        const ssize_t n = read(fd, buf + have, buffer_.size() - have);
        if (n < 0) {
          if (errno == EINTR) continue;
          return Unavailable("cannot read " + path + ": " + ErrnoText(errno));
        }
        if (n == 0) {
          eof = true;
          break;
        }
        have += static_cast<size_t>(n);
      }
      // Positions checked now: every one where the longest needle fits, or at the end of the
      // file every one where the shortest does. The rest are carried into the next chunk.
      size_t limit = 0;
      if (!eof) {
        limit = have - keep_;
      } else if (have >= kMinNeedleBytes) {
        limit = have - kMinNeedleBytes + 1;
      }
      const bool more = index_.Scan(buf, limit, buf + have, [&](size_t p, size_t needle) {
        hits_.push_back({path, base + p, needle});
        return !full();
      });
      if (!more) return Status::Ok();
      if (!eof) {
        std::memmove(buf, buf + limit, have - limit);
        base += limit;
        have -= limit;
      }
    }
    return Status::Ok();
  }

  const NeedleIndex& index_;
  const size_t keep_;
  const size_t max_hits_;
  std::string buffer_;
  std::vector<FileHit> hits_;
};

}  // namespace

StatusOr<std::vector<FileHit>> FindInFiles(const std::string& dir,
                                           std::span<const std::string> needles, size_t max_hits) {
  size_t max_len = kMinNeedleBytes;
  for (size_t i = 0; i < needles.size(); ++i) {
    if (needles[i].size() < kMinNeedleBytes || needles[i].size() > kMaxNeedleBytes) {
      return InvalidArgument("needle " + std::to_string(i) + " must be 16 to 4096 bytes");
    }
    max_len = std::max(max_len, needles[i].size());
  }
  static_assert(kMinNeedleBytes >= kKeyBytes, "needles are indexed by their first 8 bytes");
  if (needles.size() >= UINT32_MAX) return InvalidArgument("too many needles");
  if (max_hits == 0 || needles.empty()) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return NotFound("no such directory: " + dir);
    return std::vector<FileHit>();
  }
  std::vector<std::string> files;
  PV_RETURN_IF_ERROR(ListFiles(dir, /*is_root=*/true, files));
  const NeedleIndex index(needles);
  // Files are taken in order; once the files taken so far hold max_hits hits, no more are taken,
  // so every file before the last one taken was searched and the first max_hits in file order
  // are exact.
  std::vector<StatusOr<std::vector<FileHit>>> per_file(files.size(), std::vector<FileHit>());
  std::atomic<size_t> next{0};
  std::atomic<size_t> found{0};
  std::atomic<bool> failed{false};
  auto work = [&] {
    FileSearcher searcher(index, max_len, max_hits);
    for (size_t i = next++; i < files.size() && found < max_hits && !failed; i = next++) {
      per_file[i] = searcher.File(files[i]);
      if (!per_file[i].ok()) {
        failed = true;
      } else {
        found += per_file[i]->size();
      }
    }
  };
  const size_t threads =
      std::min<size_t>({kFileScanThreads, std::max(1u, std::thread::hardware_concurrency()),
                        std::max<size_t>(1, files.size())});
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  std::vector<FileHit> hits;
  for (auto& file_hits : per_file) {
    PV_RETURN_IF_ERROR(file_hits.status());
    for (auto& hit : *file_hits) {
      if (hits.size() == max_hits) return hits;
      hits.push_back(std::move(hit));
    }
  }
  return hits;
}

}  // namespace phivault::storage
