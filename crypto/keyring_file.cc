#include "crypto/keyring_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace phivault::crypto {
namespace {

Status FileError(const std::string& path, const std::string& what, int err) {
  std::string message =
      "keyring copy " + path + ": " + what + " failed: " + std::string(std::strerror(err));
  if (err == ENOSPC || err == EDQUOT) return ResourceExhausted(std::move(message));
  return Unavailable(std::move(message));
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

Status PwriteFully(int fd, const std::string& path, uint64_t offset, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FileError(path, "write", errno);
    data.remove_prefix(static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

std::string ParentDir(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

class PosixFiles final : public KeyringFiles {
 public:
  StatusOr<std::string> Read(const std::string& path) override {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (fd.get() < 0) {
      if (errno == ENOENT) return NotFound("keyring copy " + path + " does not exist");
      return FileError(path, "open", errno);
    }
    std::string out;
    char buf[8192];
    for (;;) {
      const ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return FileError(path, "read", errno);
      if (n == 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

  bool Exists(const std::string& path) override {
    struct stat sb;
    return ::lstat(path.c_str(), &sb) == 0;
  }

  Status Create(const std::string& path, std::string_view data) override {
    Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (fd.get() < 0) {
      if (errno == EEXIST) return AlreadyExists("keyring copy " + path + " already exists");
      return FileError(path, "create", errno);
    }
    if (::fchmod(fd.get(), 0600) != 0) return FileError(path, "fchmod", errno);
    PV_RETURN_IF_ERROR(PwriteFully(fd.get(), path, 0, data));
    if (::fsync(fd.get()) != 0) return FileError(path, "fsync", errno);
    Fd dir(::open(ParentDir(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir.get() < 0) return FileError(path, "open directory", errno);
    if (::fsync(dir.get()) != 0) return FileError(path, "fsync directory", errno);
    return Status::Ok();
  }

  Status WriteAt(const std::string& path, uint64_t offset, std::string_view data) override {
    Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
    if (fd.get() < 0) return FileError(path, "open for writing", errno);
    return PwriteFully(fd.get(), path, offset, data);
  }

  Status Sync(const std::string& path) override {
    // fdatasync reaches every dirty page of the inode, whichever descriptor wrote it.
    Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
    if (fd.get() < 0) return FileError(path, "open for syncing", errno);
    if (::fdatasync(fd.get()) != 0) return FileError(path, "fdatasync", errno);
    return Status::Ok();
  }

  Status Shred(const std::string& path) override {
    Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
    if (fd.get() < 0) {
      if (errno == ENOENT) return Status::Ok();
      return FileError(path, "open for shredding", errno);
    }
    struct stat sb;
    if (::fstat(fd.get(), &sb) != 0) return FileError(path, "fstat", errno);
    PV_RETURN_IF_ERROR(
        PwriteFully(fd.get(), path, 0, std::string(static_cast<size_t>(sb.st_size), '\0')));
    if (::fdatasync(fd.get()) != 0) return FileError(path, "fdatasync", errno);
    if (::unlink(path.c_str()) != 0) return FileError(path, "unlink", errno);
    return Status::Ok();
  }
};

}  // namespace

KeyringFiles& PosixKeyringFiles() {
  static PosixFiles* files = new PosixFiles();
  return *files;
}

}  // namespace phivault::crypto
