#include "tests/storage/power_cut_fs.h"

#include <filesystem>
#include <fstream>
#include <iterator>

namespace phivault::storage::testing {
namespace {

namespace fs = std::filesystem;

std::string Parent(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

std::string WithoutTrailingSlash(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

std::optional<std::string> ReadWhole(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteWhole(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

uint64_t SizeOnDisk(const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  return ec ? 0 : size;
}

class PowerCutFile final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  PowerCutFile(PowerCutFs& fs, std::string path, std::unique_ptr<rocksdb::FSWritableFile> target)
      : FSWritableFileOwnerWrapper(std::move(target)), fs_(fs), path_(std::move(path)) {}

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                           rocksdb::IODebugContext* dbg) override {
    auto s = fs_.Check(FsOp::kAppend, path_);
    if (s.ok()) s = target()->Append(data, o, dbg);
    if (s.ok()) fs_.Appended(path_, data.size());
    return s;
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                           const rocksdb::DataVerificationInfo&,
                           rocksdb::IODebugContext* dbg) override {
    return Append(data, o, dbg);
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& o,
                                     rocksdb::IODebugContext* dbg) override {
    auto s = fs_.Check(FsOp::kAppend, path_);
    if (s.ok()) s = target()->PositionedAppend(data, offset, o, dbg);
    if (s.ok()) fs_.Truncated(path_, offset + data.size());
    return s;
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& o,
                                     const rocksdb::DataVerificationInfo&,
                                     rocksdb::IODebugContext* dbg) override {
    return PositionedAppend(data, offset, o, dbg);
  }
  rocksdb::IOStatus Truncate(uint64_t size, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* dbg) override {
    auto s = fs_.Check(FsOp::kAppend, path_);
    if (s.ok()) s = target()->Truncate(size, o, dbg);
    if (s.ok()) fs_.Truncated(path_, size);
    return s;
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    return DoSync([&] { return target()->Sync(o, dbg); });
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    return DoSync([&] { return target()->Fsync(o, dbg); });
  }

 private:
  template <typename Fn>
  rocksdb::IOStatus DoSync(Fn&& sync) {
    auto s = fs_.Check(FsOp::kSync, path_);
    if (s.ok()) s = sync();
    fs_.Synced(path_, s.ok());
    return s;
  }

  PowerCutFs& fs_;
  const std::string path_;
};

class PowerCutDir final : public rocksdb::FSDirectoryWrapper {
 public:
  PowerCutDir(PowerCutFs& fs, std::string dir, std::unique_ptr<rocksdb::FSDirectory> target)
      : FSDirectoryWrapper(std::move(target)), fs_(fs), dir_(std::move(dir)) {}

  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    auto s = fs_.Check(FsOp::kDirSync, dir_);
    if (s.ok()) s = FSDirectoryWrapper::Fsync(o, dbg);
    if (s.ok()) fs_.DirSynced(dir_);
    return s;
  }
  rocksdb::IOStatus FsyncWithDirOptions(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg,
                                        const rocksdb::DirFsyncOptions& d) override {
    auto s = fs_.Check(FsOp::kDirSync, dir_);
    if (s.ok()) s = FSDirectoryWrapper::FsyncWithDirOptions(o, dbg, d);
    if (s.ok()) fs_.DirSynced(dir_);
    return s;
  }

 private:
  PowerCutFs& fs_;
  const std::string dir_;
};

}  // namespace

PowerCutFs::PowerCutFs(std::shared_ptr<phivault::testing::PowerSwitch> power,
                       std::shared_ptr<rocksdb::FileSystem> base)
    : FileSystemWrapper(base), power_(std::move(power)) {}

rocksdb::IOStatus PowerCutFs::Check(FsOp op, const std::string& what) {
  if (!power_->Step()) return rocksdb::IOStatus::IOError("power cut", what);
  std::lock_guard<std::mutex> lock(mu_);
  if (!fault_ || (fault_->ops & static_cast<uint32_t>(op)) == 0) return rocksdb::IOStatus::OK();
  const uint64_t seen = fault_seen_++;
  if (seen < fault_->skip || seen - fault_->skip >= fault_->count) return rocksdb::IOStatus::OK();
  if (fault_->probability < 1.0 &&
      std::uniform_real_distribution<double>(0, 1)(fault_rng_) >= fault_->probability) {
    return rocksdb::IOStatus::OK();
  }
  ++failures_;
  return rocksdb::IOStatus::IOError("injected I/O error", what);
}

void PowerCutFs::Fail(const FsFault& fault) {
  std::lock_guard<std::mutex> lock(mu_);
  fault_ = fault;
  fault_seen_ = 0;
  fault_rng_.seed(fault.seed);
}

void PowerCutFs::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  fault_.reset();
}

uint64_t PowerCutFs::failures_injected() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failures_;
}

PowerCutFs::FileState& PowerCutFs::Track(const std::string& path) {
  auto it = files_.find(path);
  if (it != files_.end()) return it->second;
  FileState st;
  st.size = st.synced = SizeOnDisk(path);
  return files_.emplace(path, std::move(st)).first->second;
}

void PowerCutFs::Appended(const std::string& path, uint64_t size) {
  std::lock_guard<std::mutex> lock(mu_);
  Track(path).size += size;
}

void PowerCutFs::Truncated(const std::string& path, uint64_t size) {
  std::lock_guard<std::mutex> lock(mu_);
  FileState& st = Track(path);
  st.size = size;
  st.synced = std::min(st.synced, size);
}

void PowerCutFs::Synced(const std::string& path, bool ok) {
  std::lock_guard<std::mutex> lock(mu_);
  FileState& st = Track(path);
  if (ok) {
    st.synced = st.size;
  } else if (st.size > st.synced) {
    st.lost.emplace_back(st.synced, st.size);
  }
}

void PowerCutFs::DirSynced(const std::string& dir) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [path, st] : files_) {
    if (Parent(path) != dir) continue;
    st.durable_name = true;
    st.renamed_from.reset();
    st.old_target.reset();
  }
}

rocksdb::IOStatus PowerCutFs::NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                              std::unique_ptr<rocksdb::FSWritableFile>* r,
                                              rocksdb::IODebugContext* dbg) {
  auto s = Check(FsOp::kOpen, f);
  if (!s.ok()) return s;
  std::error_code ec;
  const bool existed = fs::exists(f, ec);
  std::unique_ptr<rocksdb::FSWritableFile> file;
  s = target()->NewWritableFile(f, o, &file, dbg);
  if (!s.ok()) return s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    FileState st;
    st.durable_name = existed;
    files_[f] = std::move(st);
  }
  *r = std::make_unique<PowerCutFile>(*this, f, std::move(file));
  return s;
}

rocksdb::IOStatus PowerCutFs::ReopenWritableFile(const std::string& f,
                                                 const rocksdb::FileOptions& o,
                                                 std::unique_ptr<rocksdb::FSWritableFile>* r,
                                                 rocksdb::IODebugContext* dbg) {
  auto s = Check(FsOp::kOpen, f);
  if (!s.ok()) return s;
  std::unique_ptr<rocksdb::FSWritableFile> file;
  s = target()->ReopenWritableFile(f, o, &file, dbg);
  if (!s.ok()) return s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Track(f);
  }
  *r = std::make_unique<PowerCutFile>(*this, f, std::move(file));
  return s;
}

rocksdb::IOStatus PowerCutFs::ReuseWritableFile(const std::string&, const std::string&,
                                                const rocksdb::FileOptions&,
                                                std::unique_ptr<rocksdb::FSWritableFile>*,
                                                rocksdb::IODebugContext*) {
  // The store never recycles WAL files (storage/rocks_store.cc); if it started to, this says so.
  return rocksdb::IOStatus::NotSupported("PowerCutFs does not recycle files");
}

rocksdb::IOStatus PowerCutFs::NewRandomRWFile(const std::string& f, const rocksdb::FileOptions& o,
                                              std::unique_ptr<rocksdb::FSRandomRWFile>* r,
                                              rocksdb::IODebugContext* dbg) {
  auto s = Check(FsOp::kOpen, f);
  if (!s.ok()) return s;
  return target()->NewRandomRWFile(f, o, r, dbg);
}

rocksdb::IOStatus PowerCutFs::NewDirectory(const std::string& name, const rocksdb::IOOptions& o,
                                           std::unique_ptr<rocksdb::FSDirectory>* r,
                                           rocksdb::IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSDirectory> dir;
  auto s = target()->NewDirectory(name, o, &dir, dbg);
  if (!s.ok()) return s;
  *r = std::make_unique<PowerCutDir>(*this, WithoutTrailingSlash(name), std::move(dir));
  return s;
}

rocksdb::IOStatus PowerCutFs::DeleteFile(const std::string& f, const rocksdb::IOOptions& o,
                                         rocksdb::IODebugContext* dbg) {
  auto s = Check(FsOp::kDelete, f);
  if (s.ok()) s = target()->DeleteFile(f, o, dbg);
  if (s.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    files_.erase(f);
  }
  return s;
}

rocksdb::IOStatus PowerCutFs::RenameFile(const std::string& src, const std::string& dst,
                                         const rocksdb::IOOptions& o,
                                         rocksdb::IODebugContext* dbg) {
  auto s = Check(FsOp::kRename, src + " -> " + dst);
  if (!s.ok()) return s;
  std::error_code ec;
  if (fs::is_directory(src, ec)) return target()->RenameFile(src, dst, o, dbg);  // durable at once
  std::optional<std::string> old_target;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = files_.find(dst);
    if (it == files_.end() || it->second.durable_name) old_target = ReadWhole(dst);
  }
  s = target()->RenameFile(src, dst, o, dbg);
  if (!s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  FileState st = Track(src);
  files_.erase(src);
  if (!st.renamed_from) {
    st.renamed_from = src;
    st.source_name_durable = st.durable_name;
  }
  st.durable_name = false;
  st.old_target = std::move(old_target);
  files_[dst] = std::move(st);
  return s;
}

rocksdb::IOStatus PowerCutFs::LinkFile(const std::string& src, const std::string& dst,
                                       const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) {
  auto s = Check(FsOp::kLink, src + " -> " + dst);
  if (s.ok()) s = target()->LinkFile(src, dst, o, dbg);
  if (!s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  FileState st = Track(src);
  st.durable_name = false;
  st.renamed_from.reset();
  st.old_target.reset();
  files_[dst] = std::move(st);
  return s;
}

rocksdb::IOStatus PowerCutFs::Truncate(const std::string& f, size_t size,
                                       const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) {
  auto s = Check(FsOp::kAppend, f);
  if (s.ok()) s = target()->Truncate(f, size, o, dbg);
  if (s.ok()) Truncated(f, size);
  return s;
}

DropReport PowerCutFs::DropUnsynced(std::optional<uint64_t> seed) {
  std::lock_guard<std::mutex> lock(mu_);
  std::mt19937_64 rng(seed.value_or(0));
  DropReport report;
  std::error_code ec;
  for (auto& [path, st] : files_) {
    if (!st.durable_name) {
      if (st.renamed_from) {
        ++report.renames_undone;
        if (st.source_name_durable) {
          std::string bytes = ReadWhole(path).value_or("");
          bytes.resize(std::min<uint64_t>(bytes.size(), st.synced));
          WriteWhole(*st.renamed_from, bytes);
        }
      } else {
        ++report.files_removed;
      }
      fs::remove(path, ec);
      if (st.old_target) WriteWhole(path, *st.old_target);
      continue;
    }
    uint64_t keep = st.synced;
    if (seed && st.size > st.synced) keep += rng() % (st.size - st.synced + 1);
    const uint64_t on_disk = SizeOnDisk(path);
    if (on_disk > keep) {
      ++report.files_truncated;
      report.bytes_dropped += on_disk - keep;
      fs::resize_file(path, keep, ec);
    }
    for (const auto& [from, to] : st.lost) {
      if (from >= keep) continue;
      std::fstream out(path, std::ios::binary | std::ios::in | std::ios::out);
      out.seekp(static_cast<std::streamoff>(from));
      const std::string zeros(std::min(to, keep) - from, '\0');
      out.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
      ++report.lost_ranges_zeroed;
    }
  }
  files_.clear();
  return report;
}

}  // namespace phivault::storage::testing
