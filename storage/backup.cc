#include "storage/backup.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <utility>

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <nlohmann/json.hpp>

#include "crypto/hash.h"
#include "storage/checkpoint.h"
#include "storage/vault_id.h"

namespace phivault::storage {
namespace fs = std::filesystem;
namespace {

constexpr std::string_view kManifestMagic = "phivault-backup 1";
constexpr size_t kMaxManifestBytes = 64u << 20;
constexpr size_t kMaxMarkerBytes = 64u << 10;
constexpr size_t kChunk = 1u << 20;
constexpr std::array<Cf, kNumCfs> kAllCfs = {
    Cf::kRecords, Cf::kIndexes, Cf::kAudit, Cf::kAuditTree, Cf::kHolds, Cf::kState, Cf::kArchive};

int64_t Now(const std::function<int64_t()>& clock) {
  if (clock) return clock();
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Errno(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

// "2026-12-01T20:30:00Z" -> unix seconds; nullopt unless exactly that form.
std::optional<int64_t> ParseRfc3339Utc(std::string_view s) {
  if (s.size() != 20) return std::nullopt;
  std::tm tm{};
  char tail = 0;
  const std::string copy(s);
  if (std::sscanf(copy.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &tail) != 7 ||
      tail != 'Z') {
    return std::nullopt;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  const int64_t t = timegm(&tm);
  if (Rfc3339Utc(t) != s) return std::nullopt;
  return t;
}

std::optional<uint64_t> ParseU64(std::string_view s) {
  if (s.empty() || s.size() > 20 || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  uint64_t v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return std::nullopt;
    const uint64_t d = static_cast<uint64_t>(ch - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

bool IsLowerHex(std::string_view s, size_t n) {
  return s.size() == n && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

bool IsBackupId(std::string_view s) {
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '-';
  });
}

// A relative path of plain components: no "..", ".", empty component or control character.
bool IsSafeRelativePath(std::string_view p) {
  if (p.empty() || p.front() == '/' || p.back() == '/') return false;
  size_t at = 0;
  while (at <= p.size()) {
    const size_t slash = std::min(p.find('/', at), p.size());
    const std::string_view part = p.substr(at, slash - at);
    if (part.empty() || part == "." || part == "..") return false;
    at = slash + 1;
  }
  return std::none_of(p.begin(), p.end(),
                      [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

StatusOr<MerkleHash> DecodeRoot(std::string_view b64) {
  auto raw = crypto::Base64Decode(b64);
  if (!raw.ok() || raw->size() != 32) return InvalidArgument("not the base64 of 32 bytes");
  MerkleHash h{};
  std::memcpy(h.data(), raw->data(), 32);
  return h;
}

std::string EncodeRoot(const MerkleHash& h) {
  return crypto::Base64Encode({reinterpret_cast<const char*>(h.data()), h.size()});
}

// Reads a whole small file; NotFound if it does not exist.
StatusOr<std::string> ReadSmallFile(const std::string& path, size_t limit) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) return NotFound("no such file: " + path);
    return Unavailable(Errno("cannot open", path));
  }
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      const Status s = Unavailable(Errno("cannot read", path));
      ::close(fd);
      return s;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > limit) {
      ::close(fd);
      return InvalidArgument(path + " is larger than " + std::to_string(limit) + " bytes");
    }
  }
  ::close(fd);
  return out;
}

Status FsyncPath(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return Unavailable(Errno("cannot open", path));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Unavailable(Errno("cannot sync", path));
  return Status::Ok();
}

// Writes `data` to a new file `path` (mode 0600), synced, then syncs its directory.
Status WriteFileDurably(const std::string& path, std::string_view data) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Unavailable(Errno("cannot create", tmp));
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const Status s = Unavailable(Errno("cannot write", tmp));
      ::close(fd);
      ::unlink(tmp.c_str());
      return s;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const Status s = Unavailable(Errno("cannot sync", tmp));
    ::unlink(tmp.c_str());
    return s;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const Status s = Unavailable(Errno("cannot rename to", path));
    ::unlink(tmp.c_str());
    return s;
  }
  return FsyncPath(fs::path(path).parent_path().string(), /*directory=*/true);
}

struct Hashed {
  uint64_t size = 0;
  std::string blake2b;
};

// Hashes `src`; with `dst`, also copies it there (created 0600, synced). `on_bytes` is called
// with each chunk's size.
StatusOr<Hashed> HashFile(const std::string& src, const std::string* dst,
                          const std::function<void(uint64_t)>& on_bytes) {
  const int in = ::open(src.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (in < 0) return Unavailable(Errno("cannot open", src));
  int out = -1;
  if (dst != nullptr) {
    out = ::open(dst->c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
      ::close(in);
      return Unavailable(Errno("cannot create", *dst));
    }
  }
  auto fail = [&](Status s) {
    ::close(in);
    if (out >= 0) ::close(out);
    return s;
  };
  crypto::Blake2b256 hasher;
  Hashed h;
  std::string buf(kChunk, '\0');
  for (;;) {
    const ssize_t n = ::read(in, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(Unavailable(Errno("cannot read", src)));
    if (n == 0) break;
    const std::string_view chunk(buf.data(), static_cast<size_t>(n));
    hasher.Update(chunk);
    h.size += chunk.size();
    if (out >= 0) {
      size_t done = 0;
      while (done < chunk.size()) {
        const ssize_t w = ::write(out, chunk.data() + done, chunk.size() - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return fail(Unavailable(Errno("cannot write", *dst)));
        done += static_cast<size_t>(w);
      }
    }
    if (on_bytes) on_bytes(chunk.size());
  }
  if (out >= 0 && ::fsync(out) != 0) return fail(Unavailable(Errno("cannot sync", *dst)));
  ::close(in);
  if (out >= 0 && ::close(out) != 0) return Unavailable(Errno("cannot close", *dst));
  h.blake2b = crypto::HexEncode(hasher.Final());
  return h;
}

// RocksDB's info log goes nowhere: opening a database read-only must not write into it.
class SilentLogger final : public rocksdb::Logger {
 public:
  using rocksdb::Logger::Logv;
  void Logv(const char*, va_list) override {}
};

// A database opened read-only (no writes to its directory, no lock taken): for reading the
// audit head and vault id of a backup copy or of a stopped vault.
class ReadOnlyRocksStore final : public Store {
 public:
  static StatusOr<std::unique_ptr<ReadOnlyRocksStore>> Open(const std::string& path) {
    rocksdb::DBOptions db;
    db.info_log = std::make_shared<SilentLogger>();
    db.paranoid_checks = true;
    // A database written before a column family existed (e.g. the archive's) lacks it, and a
    // read-only open cannot create it: such a family reads as empty.
    std::vector<std::string> existing;
    rocksdb::DB::ListColumnFamilies(db, path, &existing).PermitUncheckedError();
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    descriptors.emplace_back(rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions());
    std::array<int, kNumCfs> slot{};
    for (Cf cf : kAllCfs) {
      const std::string name(CfName(cf));
      const bool present = std::find(existing.begin(), existing.end(), name) != existing.end();
      slot[static_cast<size_t>(cf)] = present ? static_cast<int>(descriptors.size()) : -1;
      if (present) descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    const rocksdb::Status s =
        rocksdb::DB::OpenForReadOnly(db, path, descriptors, &handles, &raw, false);
    if (!s.ok()) return Unavailable("cannot open the database at " + path + ": " + s.ToString());
    return std::unique_ptr<ReadOnlyRocksStore>(
        new ReadOnlyRocksStore(std::unique_ptr<rocksdb::DB>(raw), std::move(handles), slot));
  }
  ~ReadOnlyRocksStore() override {
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
    db_->Close().PermitUncheckedError();
  }

  StatusOr<std::optional<std::string>> Get(Cf cf, std::string_view key) override {
    if (Handle(cf) == nullptr) return std::optional<std::string>();
    std::string value;
    const rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), Handle(cf),
                                       rocksdb::Slice(key.data(), key.size()), &value);
    if (s.IsNotFound()) return std::optional<std::string>();
    if (!s.ok()) return Unavailable("rocksdb: " + s.ToString());
    return std::optional<std::string>(std::move(value));
  }
  Status Write(const WriteBatch&, bool) override { return FailedPrecondition("read-only store"); }
  Status Scan(Cf cf, std::string_view begin, std::string_view end, const ScanFn& fn) override {
    if (Handle(cf) == nullptr) return Status::Ok();
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), Handle(cf)));
    for (it->Seek(rocksdb::Slice(begin.data(), begin.size())); it->Valid(); it->Next()) {
      const std::string_view k(it->key().data(), it->key().size());
      if (!end.empty() && k >= end) break;
      if (!fn(k, std::string_view(it->value().data(), it->value().size()))) break;
    }
    return it->status().ok() ? Status::Ok() : Unavailable("rocksdb: " + it->status().ToString());
  }
  Status ScanReverse(Cf cf, std::string_view begin, std::string_view end,
                     const ScanFn& fn) override {
    if (Handle(cf) == nullptr) return Status::Ok();
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), Handle(cf)));
    if (end.empty()) {
      it->SeekToLast();
    } else {
      it->SeekForPrev(rocksdb::Slice(end.data(), end.size()));
      if (it->Valid() && std::string_view(it->key().data(), it->key().size()) >= end) it->Prev();
    }
    for (; it->Valid(); it->Prev()) {
      const std::string_view k(it->key().data(), it->key().size());
      if (k < begin) break;
      if (!fn(k, std::string_view(it->value().data(), it->value().size()))) break;
    }
    return it->status().ok() ? Status::Ok() : Unavailable("rocksdb: " + it->status().ToString());
  }
  Status Flush() override { return FailedPrecondition("read-only store"); }
  Status CompactAll() override { return FailedPrecondition("read-only store"); }
  StatusOr<SpaceInfo> Space() override { return FailedPrecondition("read-only store"); }

 private:
  ReadOnlyRocksStore(std::unique_ptr<rocksdb::DB> db,
                     std::vector<rocksdb::ColumnFamilyHandle*> handles,
                     std::array<int, kNumCfs> slot)
      : db_(std::move(db)), handles_(std::move(handles)), slot_(slot) {}
  // nullptr for a column family the database does not have.
  rocksdb::ColumnFamilyHandle* Handle(Cf cf) {
    const int i = slot_[static_cast<size_t>(cf)];
    return i < 0 ? nullptr : handles_[static_cast<size_t>(i)];
  }
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::array<int, kNumCfs> slot_;
};

struct DbFacts {
  std::optional<std::string> vault_id;
  uint64_t audit_size = 0;
  MerkleHash audit_root{};
  std::unique_ptr<MerkleTree> tree;
  std::optional<std::string> latest_checkpoint;  // the newest stored signed checkpoint note
};

StatusOr<DbFacts> ReadDbFacts(Store& store) {
  DbFacts f;
  PV_ASSIGN_OR_RETURN(f.vault_id, ReadVaultId(store));
  PV_ASSIGN_OR_RETURN(f.tree, MerkleTree::Open(store));
  f.audit_size = f.tree->size();
  f.audit_root = f.tree->Root();
  PV_RETURN_IF_ERROR(
      store.ScanReverse(Cf::kAuditTree, "c", "d", [&](std::string_view, std::string_view value) {
        f.latest_checkpoint = std::string(value);
        return false;
      }));
  return f;
}

std::string NewBackupId(int64_t now) {
  std::string t = Rfc3339Utc(now);  // 2026-12-01T20:30:00Z
  t.erase(std::remove_if(t.begin(), t.end(), [](char c) { return c == '-' || c == ':'; }), t.end());
  return t + "-" + crypto::HexEncode(crypto::RandomBytes(4));
}

// Every entry under `root` as a path relative to it, split into regular files and others
// (symlinks, devices, ...; directories are not listed).
struct Tree {
  std::vector<std::string> files;
  std::vector<std::string> others;
};
StatusOr<Tree> ListTree(const std::string& root) {
  Tree t;
  std::error_code ec;
  fs::recursive_directory_iterator it(root, fs::directory_options::none, ec);
  if (ec) return Unavailable("cannot list " + root + ": " + ec.message());
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) return Unavailable("cannot list " + root + ": " + ec.message());
    const fs::file_status st = it->symlink_status(ec);
    if (ec) return Unavailable("cannot stat " + it->path().string() + ": " + ec.message());
    const std::string rel = fs::relative(it->path(), root, ec).generic_string();
    if (fs::is_directory(st)) continue;
    (fs::is_regular_file(st) ? t.files : t.others).push_back(rel);
  }
  std::sort(t.files.begin(), t.files.end());
  std::sort(t.others.begin(), t.others.end());
  return t;
}

// The manifest a note's text claims, signature NOT checked.
StatusOr<BackupManifest> ParseManifestNote(std::string_view note) {
  const size_t blank = note.find("\n\n");
  if (note.empty() || blank == std::string_view::npos || note.back() != '\n') {
    return InvalidArgument(
        "the manifest is cut short or is not a signed note (it ends before its signature line)");
  }
  return ParseBackupManifestText(note.substr(0, blank + 1));
}

// Passes a progress report on when the phase changes, at its end, and when it has advanced by a
// percent: a report per MiB copied would flood a terminal or an NDJSON stream.
class ProgressThrottle {
 public:
  explicit ProgressThrottle(const BackupProgressFn& fn) : fn_(fn) {}
  void operator()(std::string_view phase, uint64_t done, uint64_t total) {
    if (!fn_) return;
    const uint64_t percent =
        total == 0 ? 100 : static_cast<uint64_t>(static_cast<double>(done) * 100.0 / total);
    const bool same_phase = phase == phase_;
    if (same_phase && done == done_) return;
    if (same_phase && percent == percent_ && done != total) return;
    phase_ = std::string(phase);
    percent_ = percent;
    done_ = done;
    fn_(phase, done, total);
  }

 private:
  const BackupProgressFn& fn_;
  std::string phase_;
  uint64_t percent_ = 0;
  uint64_t done_ = 0;
};

// The files of the backups in `dir` by (BLAKE2b-256, size), as paths; the newest backup's copy
// when several hold one. Only files whose size on disk is the manifest's are offered.
std::map<std::pair<std::string, uint64_t>, std::string> ShareableFiles(const std::string& dir) {
  std::map<std::pair<std::string, uint64_t>, std::string> out;
  auto listing = ListBackups(dir);
  if (!listing.ok()) return out;
  for (const BackupListing& b : *listing) {
    if (!b.manifest) continue;
    for (const BackupFile& f : b.manifest->files) {
      const std::string path = b.dir + "/" + f.path;
      struct stat st {};
      if (::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
          static_cast<uint64_t>(st.st_size) == f.size) {
        out[{f.blake2b, f.size}] = path;
      }
    }
  }
  return out;
}

}  // namespace

uint64_t BackupManifest::TotalBytes() const {
  uint64_t n = 0;
  for (const auto& f : files) n += f.size;
  return n;
}

std::string BackupManifestText(const BackupManifest& m) {
  std::string out(kManifestMagic);
  out += "\nid " + m.id + "\nvault " + m.vault_id + "\ncreated " + Rfc3339Utc(m.created_unix) +
         "\nkeyring-generation " + std::to_string(m.keyring_generation) + "\naudit " +
         std::to_string(m.audit_size) + " " + EncodeRoot(m.audit_root) + "\nkey " + m.verifier_key +
         "\n";
  for (const auto& f : m.files) {
    out += "file " + f.blake2b + " " + std::to_string(f.size) + " " + f.path + "\n";
  }
  return out;
}

StatusOr<BackupManifest> ParseBackupManifestText(std::string_view text) {
  BackupManifest m;
  if (text.empty() || text.back() != '\n') return InvalidArgument("manifest does not end a line");
  std::vector<std::string_view> lines;
  for (size_t at = 0; at < text.size();) {
    const size_t nl = text.find('\n', at);
    lines.push_back(text.substr(at, nl - at));
    at = nl + 1;
  }
  if (!lines.empty() && lines[0].rfind("phivault-backup ", 0) == 0 && lines[0] != kManifestMagic) {
    const auto format = ParseU64(lines[0].substr(std::string_view("phivault-backup ").size()));
    if (format && *format > 1) {
      return FailedPrecondition("the backup is in format " + std::to_string(*format) +
                                ", newer than this phivault reads (format 1): use the phivault "
                                "version that made it, or a later one");
    }
  }
  if (lines.empty() || lines[0] != kManifestMagic) {
    return InvalidArgument("manifest line 1 is not \"" + std::string(kManifestMagic) + "\"");
  }
  std::set<std::string> seen;
  std::set<std::string> paths;
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::string_view line = lines[i];
    const std::string where = "manifest line " + std::to_string(i + 1);
    const size_t sp = line.find(' ');
    if (sp == std::string_view::npos) return InvalidArgument(where + " has no value");
    const std::string key(line.substr(0, sp));
    const std::string_view value = line.substr(sp + 1);
    if (key != "file" && !seen.insert(key).second)
      return InvalidArgument(where + " repeats " + key);
    if (key == "id") {
      if (!IsBackupId(value)) return InvalidArgument(where + ": malformed backup id");
      m.id = std::string(value);
    } else if (key == "vault") {
      if (!IsLowerHex(value, 32)) return InvalidArgument(where + ": vault id must be 32 hex");
      m.vault_id = std::string(value);
    } else if (key == "created") {
      auto t = ParseRfc3339Utc(value);
      if (!t) return InvalidArgument(where + ": created must be RFC 3339 UTC");
      m.created_unix = *t;
    } else if (key == "keyring-generation") {
      auto g = ParseU64(value);
      if (!g) return InvalidArgument(where + ": malformed keyring generation");
      m.keyring_generation = *g;
    } else if (key == "audit") {
      const size_t sp2 = value.find(' ');
      auto size = ParseU64(value.substr(0, sp2));
      if (sp2 == std::string_view::npos || !size) {
        return InvalidArgument(where + ": audit needs a tree size and a root");
      }
      auto root = DecodeRoot(value.substr(sp2 + 1));
      if (!root.ok()) return InvalidArgument(where + ": audit root " + root.status().message());
      m.audit_size = *size;
      m.audit_root = *root;
    } else if (key == "key") {
      auto parsed = crypto::ParseNoteVerifierKey(value);
      if (!parsed.ok()) return InvalidArgument(where + ": " + parsed.status().message());
      m.verifier_key = std::string(value);
    } else if (key == "file") {
      const size_t a = value.find(' ');
      const size_t b = a == std::string_view::npos ? a : value.find(' ', a + 1);
      if (b == std::string_view::npos)
        return InvalidArgument(where + ": file needs hash size path");
      BackupFile f;
      f.blake2b = std::string(value.substr(0, a));
      auto size = ParseU64(value.substr(a + 1, b - a - 1));
      f.path = std::string(value.substr(b + 1));
      if (!IsLowerHex(f.blake2b, 64) || !size) {
        return InvalidArgument(where + ": malformed file hash or size");
      }
      if (!IsSafeRelativePath(f.path) || f.path == kBackupManifestName ||
          !paths.insert(f.path).second) {
        return InvalidArgument(where + ": file path is not a plain relative path, or repeats");
      }
      f.size = *size;
      m.files.push_back(std::move(f));
    } else {
      return InvalidArgument(where + ": unknown field " + key);
    }
  }
  for (const char* required : {"id", "vault", "created", "keyring-generation", "audit", "key"}) {
    if (seen.count(required) == 0) {
      return InvalidArgument("manifest has no " + std::string(required) + " line");
    }
  }
  return m;
}

StatusOr<uint64_t> PeekKeyringGeneration(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(path, ec))) return NotFound("no keyring at " + path);
  PV_ASSIGN_OR_RETURN(std::string head, ReadSmallFile(path, 64u << 20));
  std::optional<uint64_t> best;
  for (size_t region : {size_t{0}, size_t{8192}}) {
    if (head.size() < region + 16 || head.compare(region, 4, "PVK2") != 0) continue;
    uint64_t g = 0;
    for (int i = 7; i >= 0; --i) {
      g = (g << 8) | static_cast<unsigned char>(head[region + 8 + static_cast<size_t>(i)]);
    }
    best = std::max(best.value_or(0), g);
  }
  if (!best) return DataLoss(path + " holds no keyring header");
  return *best;
}

StatusOr<BackupManifest> CreateBackup(Store& store, const CreateBackupOptions& options) {
  if (options.signer == nullptr) return InvalidArgument("a backup needs the audit signing key");
  if (options.dir.empty() || options.dir.front() != '/') {
    return InvalidArgument("the backup directory must be an absolute path");
  }
  std::error_code ec;
  if (fs::exists(fs::path(options.dir) / kBackupManifestName, ec)) {
    return InvalidArgument(options.dir +
                           " is a backup, not a backups directory: give the directory holding it");
  }
  fs::create_directories(options.dir, ec);
  if (ec) return Unavailable("cannot create " + options.dir + ": " + ec.message());
  // What the earlier backups here hold, by content, to hard-link instead of copying.
  const std::map<std::pair<std::string, uint64_t>, std::string> shareable =
      ShareableFiles(options.dir);
  const int64_t now = Now(options.clock);
  BackupManifest m;
  m.id = NewBackupId(now);
  // Ids order the backups (newest, prune): within one second the suffix must sort after the
  // newest one's.
  for (const auto& e : fs::directory_iterator(options.dir, ec)) {
    const std::string name = e.path().filename().string();
    if (IsBackupId(name) && name.size() == m.id.size() && name.compare(0, 17, m.id, 0, 17) == 0 &&
        name >= m.id && IsLowerHex(name.substr(17), 8)) {
      char next[9];
      std::snprintf(next, sizeof next, "%08lx",
                    (std::stoul(name.substr(17), nullptr, 16) + 1) & 0xffffffffUL);
      m.id = m.id.substr(0, 17) + next;
    }
  }
  m.created_unix = now;
  const std::string bdir = (fs::path(options.dir) / m.id).string();
  if (::mkdir(bdir.c_str(), 0700) != 0) return Unavailable(Errno("cannot create", bdir));
  const std::string staging =
      options.staging_dir.empty() ? bdir + "/.checkpoint" : options.staging_dir;
  ProgressThrottle report(options.progress);
  auto made = [&]() -> Status {
    fs::remove_all(staging, ec);  // a crash during an earlier backup may have left it
    report("checkpoint", 0, 1);
    PV_RETURN_IF_ERROR(store.CreateCheckpoint(staging));
    report("checkpoint", 1, 1);
    {
      // The audit head of the copy itself, not of the live log: writes go on meanwhile.
      PV_ASSIGN_OR_RETURN(auto copy, ReadOnlyRocksStore::Open(staging));
      PV_ASSIGN_OR_RETURN(DbFacts facts, ReadDbFacts(*copy));
      if (!facts.vault_id) return FailedPrecondition("the database is not bound to a keyring");
      m.vault_id = *facts.vault_id;
      m.audit_size = facts.audit_size;
      m.audit_root = facts.audit_root;
    }
    PV_ASSIGN_OR_RETURN(m.keyring_generation, PeekKeyringGeneration(options.keyring_path));
    m.verifier_key = crypto::NoteVerifierKey(options.origin, options.signer->public_key());
    PV_ASSIGN_OR_RETURN(Tree tree, ListTree(staging));
    if (!tree.others.empty()) return Internal("the checkpoint holds a file that is not regular");
    uint64_t total = 0;
    for (const auto& rel : tree.files) total += fs::file_size(staging + "/" + rel, ec);
    uint64_t done = 0;
    for (const auto& rel : tree.files) {
      const std::string src = staging + "/" + rel;
      const std::string dst = bdir + "/db/" + rel;
      fs::create_directories(fs::path(dst).parent_path(), ec);
      if (ec) return Unavailable("cannot create " + fs::path(dst).parent_path().string());
      const uint64_t base = done;
      PV_ASSIGN_OR_RETURN(Hashed h, HashFile(src, nullptr, [&](uint64_t n) {
                            done += n;
                            report("backup", std::min(done, total), total);
                          }));
      // An identical file an earlier backup holds is linked, not written again; else the
      // checkpoint's own file is linked when the backups are on the database's filesystem, and
      // copied (re-hashed as it is written) otherwise.
      bool stored = false;
      if (auto it = shareable.find({h.blake2b, h.size}); it != shareable.end()) {
        stored = ::link(it->second.c_str(), dst.c_str()) == 0;
        if (stored) m.shared_bytes += h.size;
      }
      if (!stored) stored = ::link(src.c_str(), dst.c_str()) == 0;
      if (!stored) {
        PV_ASSIGN_OR_RETURN(Hashed copied, HashFile(src, &dst, nullptr));
        if (copied.size != h.size || copied.blake2b != h.blake2b) {
          return DataLoss("db/" + rel + " changed while it was backed up");
        }
      }
      done = base + h.size;
      m.files.push_back({"db/" + rel, h.size, h.blake2b});
    }
    report("backup", total, total);
    fs::remove_all(staging, ec);
    if (ec) return Unavailable("cannot remove " + staging + ": " + ec.message());
    PV_RETURN_IF_ERROR(FsyncPath(bdir + "/db", /*directory=*/true));
    PV_ASSIGN_OR_RETURN(std::string note,
                        crypto::SignNote(BackupManifestText(m), options.origin, *options.signer));
    return WriteFileDurably(bdir + "/" + std::string(kBackupManifestName), note);
  }();
  if (!made.ok()) {
    fs::remove_all(staging, ec);
    fs::remove_all(bdir, ec);
    return made;
  }
  PV_RETURN_IF_ERROR(FsyncPath(options.dir, /*directory=*/true));
  return m;
}

StatusOr<std::string> ResolveBackupDir(const std::string& dir, const std::string& id) {
  std::error_code ec;
  const auto has_manifest = [&](const fs::path& p) {
    return fs::is_regular_file(fs::symlink_status(p / kBackupManifestName, ec));
  };
  if (!id.empty()) {
    if (!IsBackupId(id)) return InvalidArgument("malformed backup id " + id);
    const fs::path p = fs::path(dir) / id;
    if (!fs::is_directory(p, ec)) return NotFound("no backup " + id + " in " + dir);
    return p.string();
  }
  if (has_manifest(dir)) return dir;
  if (!fs::is_directory(dir, ec)) return NotFound("no such directory: " + dir);
  std::string newest;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_directory(ec) && has_manifest(e.path()) && IsBackupId(e.path().filename().string())) {
      newest = std::max(newest, e.path().filename().string());
    }
  }
  if (newest.empty()) return NotFound("no backup in " + dir);
  return (fs::path(dir) / newest).string();
}

StatusOr<BackupVerification> VerifyBackup(const std::string& backup_dir,
                                          const std::optional<crypto::NoteVerifier>& key,
                                          const BackupProgressFn& progress) {
  BackupVerification v;
  v.backup_dir = backup_dir;
  std::error_code ec;
  if (!fs::is_directory(backup_dir, ec)) return NotFound("no such directory: " + backup_dir);
  auto note = ReadSmallFile(backup_dir + "/" + std::string(kBackupManifestName), kMaxManifestBytes);
  if (!note.ok()) {
    v.problems.push_back({note.status().code() == StatusCode::kNotFound ? "missing" : "manifest",
                          std::string(kBackupManifestName), note.status().message()});
    return v;
  }
  auto manifest = ParseManifestNote(*note);
  if (!manifest.ok()) {
    v.problems.push_back(
        {"manifest", std::string(kBackupManifestName), manifest.status().message()});
    return v;
  }
  v.manifest = std::move(manifest).value();
  crypto::NoteVerifier verifier;
  if (key) {
    verifier = *key;
    v.key_source = "key given";
  } else {
    auto named = crypto::ParseNoteVerifierKey(v.manifest->verifier_key);
    if (named.ok()) verifier = *named;
    v.key_source = "key named in the manifest";
  }
  auto opened = crypto::VerifyNote(*note, verifier);
  if (!opened.ok() || *opened != BackupManifestText(*v.manifest)) {
    v.problems.push_back(
        {"signature", std::string(kBackupManifestName),
         opened.ok() ? "the signed text is not in canonical form" : opened.status().message()});
  } else if (key &&
             v.manifest->verifier_key != crypto::NoteVerifierKey(key->name, key->public_key)) {
    v.problems.push_back(
        {"signature", std::string(kBackupManifestName), "the manifest names another key"});
  } else {
    v.signature_ok = true;
  }
  const uint64_t total = v.manifest->TotalBytes();
  ProgressThrottle report(progress);
  std::set<std::string> listed;
  for (const BackupFile& f : v.manifest->files) {
    listed.insert(f.path);
    const std::string path = backup_dir + "/" + f.path;
    const fs::file_status st = fs::symlink_status(path, ec);
    if (!fs::exists(st)) {
      v.problems.push_back({"missing", f.path, "listed in the manifest, not in the backup"});
      v.bytes_checked += f.size;
      continue;
    }
    if (!fs::is_regular_file(st)) {
      v.problems.push_back({"altered", f.path, "not a regular file"});
      v.bytes_checked += f.size;
      continue;
    }
    const uint64_t base = v.bytes_checked;
    auto h = HashFile(path, nullptr, [&](uint64_t n) {
      v.bytes_checked += n;
      report("verify", std::min(v.bytes_checked, total), total);
    });
    v.bytes_checked = base + f.size;
    ++v.files_checked;
    if (!h.ok()) {
      v.problems.push_back({"altered", f.path, h.status().message()});
    } else if (h->size < f.size) {
      v.problems.push_back({"truncated", f.path,
                            std::to_string(h->size) + " of " + std::to_string(f.size) + " bytes"});
    } else if (h->size != f.size || !crypto::ConstantTimeEquals(h->blake2b, f.blake2b)) {
      v.problems.push_back({"altered", f.path, "BLAKE2b-256 or size differs from the manifest"});
    }
  }
  report("verify", total, total);
  PV_ASSIGN_OR_RETURN(Tree tree, ListTree(backup_dir));
  for (const auto& rel : tree.files) {
    if (rel != kBackupManifestName && listed.count(rel) == 0) {
      v.problems.push_back({"foreign", rel, "not listed in the manifest"});
    }
  }
  for (const auto& rel : tree.others) {
    v.problems.push_back({"foreign", rel, "not a regular file, not listed in the manifest"});
  }
  return v;
}

StatusOr<std::vector<BackupListing>> ListBackups(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return NotFound("no such directory: " + dir);
  std::vector<std::string> dirs;
  if (fs::exists(fs::path(dir) / kBackupManifestName, ec)) {
    dirs.push_back(dir);
  } else {
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      if (e.is_directory(ec) && fs::exists(e.path() / kBackupManifestName, ec)) {
        dirs.push_back(e.path().string());
      }
    }
    std::sort(dirs.begin(), dirs.end());
  }
  std::vector<BackupListing> out;
  for (const auto& d : dirs) {
    BackupListing l;
    l.dir = d;
    auto note = ReadSmallFile(d + "/" + std::string(kBackupManifestName), kMaxManifestBytes);
    if (!note.ok()) {
      l.error = note.status().message();
    } else if (auto m = ParseManifestNote(*note); m.ok()) {
      l.manifest = std::move(m).value();
    } else {
      l.error = m.status().message();
    }
    out.push_back(std::move(l));
  }
  // Shared = the same inode as a file of an earlier backup (CreateBackup's hard links).
  std::set<std::pair<dev_t, ino_t>> earlier;
  for (BackupListing& l : out) {
    if (!l.manifest) continue;
    std::vector<std::pair<dev_t, ino_t>> mine;
    for (const BackupFile& f : l.manifest->files) {
      struct stat st {};
      if (::lstat((l.dir + "/" + f.path).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      const std::pair<dev_t, ino_t> inode{st.st_dev, st.st_ino};
      (earlier.count(inode) != 0 ? l.shared_bytes : l.new_bytes) += f.size;
      if (st.st_nlink == 1) l.unique_bytes += f.size;
      mine.push_back(inode);
    }
    earlier.insert(mine.begin(), mine.end());
  }
  return out;
}

StatusOr<PruneReport> PruneBackups(const std::string& dir, size_t keep, bool dry_run) {
  if (keep == 0) return InvalidArgument("--keep must be at least 1");
  std::error_code ec;
  if (fs::exists(fs::path(dir) / kBackupManifestName, ec)) {
    return InvalidArgument(dir + " is one backup, not a backups directory");
  }
  PV_ASSIGN_OR_RETURN(std::vector<BackupListing> listing, ListBackups(dir));
  std::vector<std::string> ids;
  for (const BackupListing& l : listing) {
    const std::string name = fs::path(l.dir).filename().string();
    if (IsBackupId(name)) ids.push_back(name);
  }
  PruneReport r;
  const size_t remove = ids.size() > keep ? ids.size() - keep : 0;
  r.removed.assign(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(remove));
  r.kept.assign(ids.begin() + static_cast<std::ptrdiff_t>(remove), ids.end());
  // A file is freed when every one of its links is in a backup that goes.
  struct Links {
    nlink_t in_removed = 0;
    nlink_t total = 0;
    uint64_t size = 0;
  };
  std::map<std::pair<dev_t, ino_t>, Links> links;
  for (const std::string& id : r.removed) {
    PV_ASSIGN_OR_RETURN(Tree tree, ListTree((fs::path(dir) / id).string()));
    for (const std::string& rel : tree.files) {
      struct stat st {};
      if (::lstat((fs::path(dir) / id / rel).c_str(), &st) != 0) continue;
      Links& l = links[{st.st_dev, st.st_ino}];
      ++l.in_removed;
      l.total = st.st_nlink;
      l.size = static_cast<uint64_t>(st.st_size);
    }
  }
  for (const auto& [inode, l] : links) {
    if (l.in_removed >= l.total) r.freed_bytes += l.size;
  }
  if (dry_run) return r;
  for (const std::string& id : r.removed) {
    fs::remove_all(fs::path(dir) / id, ec);
    if (ec)
      return Unavailable("cannot remove " + (fs::path(dir) / id).string() + ": " + ec.message());
  }
  PV_RETURN_IF_ERROR(FsyncPath(dir, /*directory=*/true));
  return r;
}

namespace {

// Holds RocksDB's lock on <db>/LOCK (the one phivaultd takes) while alive.
class DbLock {
 public:
  static StatusOr<std::unique_ptr<DbLock>> Take(const std::string& db_dir) {
    rocksdb::FileLock* lock = nullptr;
    const rocksdb::Status s = rocksdb::Env::Default()->LockFile(db_dir + "/LOCK", &lock);
    if (!s.ok()) {
      return FailedPrecondition(
          "the database at " + db_dir +
          " is in use (is phivaultd running? stop it first): " + s.ToString());
    }
    return std::unique_ptr<DbLock>(new DbLock(lock));
  }
  ~DbLock() { rocksdb::Env::Default()->UnlockFile(lock_).PermitUncheckedError(); }
  DbLock(const DbLock&) = delete;
  DbLock& operator=(const DbLock&) = delete;

 private:
  explicit DbLock(rocksdb::FileLock* lock) : lock_(lock) {}
  rocksdb::FileLock* lock_;
};

}  // namespace

StatusOr<RestoreReport> RestoreBackup(const RestoreOptions& options) {
  RestoreReport r;
  std::error_code ec;
  if (options.data_dir.empty()) return InvalidArgument("--data-dir must not be empty");
  fs::create_directories(options.data_dir, ec);
  if (ec) return Unavailable("cannot create " + options.data_dir + ": " + ec.message());
  const std::string db_dir = options.data_dir + "/db";
  ProgressThrottle report(options.progress);

  // What is there now, read without writing to it; the lock keeps a daemon from starting on it.
  std::unique_ptr<DbLock> lock;
  std::optional<DbFacts> previous;
  if (fs::exists(db_dir + "/CURRENT", ec)) {
    PV_ASSIGN_OR_RETURN(lock, DbLock::Take(db_dir));
    PV_ASSIGN_OR_RETURN(auto current, ReadOnlyRocksStore::Open(db_dir));
    PV_ASSIGN_OR_RETURN(DbFacts facts, ReadDbFacts(*current));
    previous = std::move(facts);
    previous->tree.reset();  // it reads through `current`, which closes here
    r.had_database = true;
  }

  // The key: given, or the manifest's own if the vault's stored checkpoints are signed by it.
  std::optional<crypto::NoteVerifier> key = options.key;
  if (!key) {
    auto listing = ListBackups(options.backup_dir);
    if (!listing.ok() || listing->size() != 1 || !(*listing)[0].manifest) {
      return FailedPrecondition("the backup's manifest cannot be read");
    }
    auto named = crypto::ParseNoteVerifierKey((*listing)[0].manifest->verifier_key);
    if (!named.ok() || !previous || !previous->latest_checkpoint ||
        !crypto::VerifyNote(*previous->latest_checkpoint, *named).ok()) {
      return FailedPrecondition(
          "no verifier key: pass --pubkey with the audit verifier key (`phivault audit pubkey`); "
          "without it the manifest's own key is trusted only if the database already in the "
          "data directory carries a checkpoint signed by it");
    }
    key = std::move(named).value();
  }
  PV_ASSIGN_OR_RETURN(BackupVerification v,
                      VerifyBackup(options.backup_dir, key, options.progress));
  if (!v.ok()) {
    std::string why;
    for (const auto& p : v.problems) {
      why += (why.empty() ? "" : "; ") + p.kind + (p.path.empty() ? "" : " " + p.path);
      if (p.kind == "manifest" || p.kind == "signature") why += ": " + p.detail;
    }
    return FailedPrecondition("the backup does not verify (" + why + "); nothing was restored");
  }
  r.manifest = *v.manifest;
  r.key_source = options.key ? "key given"
                             : "key named in the manifest, which signed the vault's "
                               "own latest checkpoint";
  if (previous && previous->vault_id && *previous->vault_id != r.manifest.vault_id) {
    return FailedPrecondition("the backup is of vault " + r.manifest.vault_id +
                              " but the database at " + db_dir + " is of vault " +
                              *previous->vault_id + "; nothing was restored");
  }
  auto generation = PeekKeyringGeneration(options.data_dir + "/keyring");
  if (generation.ok()) {
    r.keyring_generation = *generation;
    if (*generation < r.manifest.keyring_generation) {
      return FailedPrecondition(
          "the keyring at " + options.data_dir + "/keyring is at generation " +
          std::to_string(*generation) + ", older than the backup needs (" +
          std::to_string(r.manifest.keyring_generation) +
          "): put the current keyring there (keys made after that copy would be missing); nothing "
          "was restored");
    }
  } else if (generation.status().code() != StatusCode::kNotFound) {
    return FailedPrecondition("the keyring at " + options.data_dir +
                              "/keyring cannot be read: " + generation.status().message());
  }

  // Copy, re-hashing every byte written, into a directory of our own.
  const std::string staging = options.data_dir + "/db.restoring-" + r.manifest.id;
  fs::remove_all(staging, ec);
  if (::mkdir(staging.c_str(), 0700) != 0) return Unavailable(Errno("cannot create", staging));
  auto copied = [&]() -> Status {
    const uint64_t total = r.manifest.TotalBytes();
    uint64_t done = 0;
    for (const BackupFile& f : r.manifest.files) {
      if (f.path.rfind("db/", 0) != 0) return FailedPrecondition("manifest lists " + f.path);
      const std::string dst = staging + "/" + f.path.substr(3);
      fs::create_directories(fs::path(dst).parent_path(), ec);
      PV_ASSIGN_OR_RETURN(Hashed h,
                          HashFile(options.backup_dir + "/" + f.path, &dst, [&](uint64_t n) {
                            done += n;
                            report("copy", std::min(done, total), total);
                          }));
      if (h.size != f.size || !crypto::ConstantTimeEquals(h.blake2b, f.blake2b)) {
        return DataLoss(f.path + " changed while it was restored");
      }
    }
    PV_RETURN_IF_ERROR(FsyncPath(staging, /*directory=*/true));
    PV_ASSIGN_OR_RETURN(auto restored, ReadOnlyRocksStore::Open(staging));
    PV_ASSIGN_OR_RETURN(DbFacts facts, ReadDbFacts(*restored));
    if (facts.audit_size != r.manifest.audit_size || facts.audit_root != r.manifest.audit_root ||
        facts.vault_id != r.manifest.vault_id) {
      return DataLoss("the restored database's audit log or vault id is not the manifest's");
    }
    if (previous) {
      r.previous_audit_size = previous->audit_size;
      if (previous->audit_size >= facts.audit_size) {
        // Re-open the previous tree to ask for its root at the backup's size.
        PV_ASSIGN_OR_RETURN(auto current, ReadOnlyRocksStore::Open(db_dir));
        PV_ASSIGN_OR_RETURN(auto tree, MerkleTree::Open(*current));
        auto root = tree->RootAt(facts.audit_size);
        r.previous_extends_backup = root.ok() && *root == facts.audit_root;
        r.lacking_entries = previous->audit_size - facts.audit_size;
      }
    }
    return Status::Ok();
  }();
  if (!copied.ok()) {
    fs::remove_all(staging, ec);
    return Status(copied.code(), copied.message() + "; nothing was restored");
  }
  if (r.had_database) {
    std::string aside = options.data_dir + "/db.before-restore-" + r.manifest.id;
    for (int n = 2; fs::exists(aside, ec); ++n) {
      aside = options.data_dir + "/db.before-restore-" + r.manifest.id + "-" + std::to_string(n);
    }
    if (::rename(db_dir.c_str(), aside.c_str()) != 0) {
      const Status s = Unavailable(Errno("cannot move the previous database to", aside));
      fs::remove_all(staging, ec);
      return s;
    }
    r.set_aside = aside;
  }
  if (::rename(staging.c_str(), db_dir.c_str()) != 0) {
    return Unavailable(Errno("cannot move the restored database to", db_dir) +
                       (r.set_aside.empty() ? "" : "; the previous one is at " + r.set_aside));
  }
  PV_RETURN_IF_ERROR(FsyncPath(options.data_dir, /*directory=*/true));
  lock.reset();

  RestoreMarker marker;
  marker.backup_id = r.manifest.id;
  marker.audit_size = r.manifest.audit_size;
  marker.audit_root = r.manifest.audit_root;
  marker.previous_audit_size = r.previous_audit_size;
  marker.previous_extends_backup = r.previous_extends_backup;
  marker.lacking_entries = r.lacking_entries;
  marker.set_aside = r.set_aside.empty() ? "" : fs::path(r.set_aside).filename().string();
  marker.restored_unix = Now(options.clock);
  r.marker_path = options.data_dir + "/" + std::string(kRestoreMarkerName);
  PV_RETURN_IF_ERROR(WriteFileDurably(r.marker_path, RestoreMarkerJson(marker)));
  return r;
}

StatusOr<std::unique_ptr<Store>> OpenDatabaseReadOnly(const std::string& path) {
  PV_ASSIGN_OR_RETURN(auto store, ReadOnlyRocksStore::Open(path));
  return std::unique_ptr<Store>(std::move(store));
}

StatusOr<std::vector<std::string>> RemoveStaleStaging(const std::string& data_dir) {
  std::vector<std::string> removed;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(data_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name != kBackupStagingName && name.rfind(kRestoringPrefix, 0) != 0) continue;
    std::error_code rm;
    fs::remove_all(entry.path(), rm);
    if (rm) return Unavailable("cannot remove " + entry.path().string() + ": " + rm.message());
    removed.push_back(entry.path().string());
  }
  if (ec) return Unavailable("cannot list " + data_dir + ": " + ec.message());
  if (!removed.empty()) PV_RETURN_IF_ERROR(FsyncPath(data_dir, /*directory=*/true));
  return removed;
}

std::string RestoreMarkerJson(const RestoreMarker& m) {
  return nlohmann::json{{"backup_id", m.backup_id},
                        {"audit_size", m.audit_size},
                        {"audit_root", EncodeRoot(m.audit_root)},
                        {"previous_audit_size", m.previous_audit_size},
                        {"previous_extends_backup", m.previous_extends_backup},
                        {"lacking_entries", m.lacking_entries},
                        {"set_aside", m.set_aside},
                        {"restored_unix", m.restored_unix}}
             .dump() +
         "\n";
}

StatusOr<std::optional<RestoreMarker>> ReadRestoreMarker(const std::string& data_dir) {
  auto text = ReadSmallFile(data_dir + "/" + std::string(kRestoreMarkerName), kMaxMarkerBytes);
  if (!text.ok()) {
    if (text.status().code() == StatusCode::kNotFound) return std::optional<RestoreMarker>();
    return InvalidArgument("restore marker: " + text.status().message());
  }
  const auto j = nlohmann::json::parse(*text, nullptr, false);
  const auto bad = [](const char* why) {
    return InvalidArgument(std::string("restore marker: ") + why);
  };
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  RestoreMarker m;
  try {
    m.backup_id = j.at("backup_id").get<std::string>();
    m.audit_size = j.at("audit_size").get<uint64_t>();
    auto root = DecodeRoot(j.at("audit_root").get<std::string>());
    if (!root.ok()) return bad("audit_root is not the base64 of 32 bytes");
    m.audit_root = *root;
    m.previous_audit_size = j.at("previous_audit_size").get<uint64_t>();
    m.previous_extends_backup = j.at("previous_extends_backup").get<bool>();
    m.lacking_entries = j.at("lacking_entries").get<uint64_t>();
    m.set_aside = j.at("set_aside").get<std::string>();
    m.restored_unix = j.at("restored_unix").get<int64_t>();
  } catch (const nlohmann::json::exception&) {
    return bad("a field is missing or of the wrong type");
  }
  if (!IsBackupId(m.backup_id)) return bad("malformed backup_id");
  if (!m.set_aside.empty() &&
      (m.set_aside.rfind("db.before-restore-", 0) != 0 ||
       !IsBackupId(m.set_aside.substr(std::string_view("db.before-restore-").size())))) {
    return bad("malformed set_aside");
  }
  if (m.lacking_entries > m.previous_audit_size) return bad("lacking_entries out of range");
  return std::optional<RestoreMarker>(std::move(m));
}

Status RemoveRestoreMarker(const std::string& data_dir) {
  const std::string path = data_dir + "/" + std::string(kRestoreMarkerName);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    return Unavailable(Errno("cannot remove", path));
  return FsyncPath(data_dir, /*directory=*/true);
}

}  // namespace phivault::storage
