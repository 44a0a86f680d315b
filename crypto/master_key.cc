#include "crypto/master_key.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace phivault::crypto {
namespace {

Status ErrnoStatus(const std::string& what, const std::string& path, int err) {
  std::string msg = what + " " + path + ": " + std::strerror(err);
  switch (err) {
    case ENOENT:
      return NotFound(std::move(msg));
    case EEXIST:
      return AlreadyExists(std::move(msg));
    case EACCES:
    case EPERM:
      return PermissionDenied(std::move(msg));
    default:
      return Unavailable(std::move(msg));
  }
}

std::string ParentDir(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Status FsyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("cannot open directory", dir, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoStatus("cannot fsync directory", dir, err);
  return Status::Ok();
}

Status WriteAll(int fd, const uint8_t* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Unavailable(std::string("write failed: ") + std::strerror(errno));
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status WriteKeyFile(int fd, const SecretBytes& key) {
  if (::fchmod(fd, S_IRUSR) != 0) {
    return Unavailable(std::string("fchmod failed: ") + std::strerror(errno));
  }
  PV_RETURN_IF_ERROR(WriteAll(fd, key.data(InsecureSecretKeyAccess::Get()), key.size()));
  if (::fsync(fd) != 0) return Unavailable(std::string("fsync failed: ") + std::strerror(errno));
  return Status::Ok();
}

StatusOr<SecretBytes> LoadKey(const std::string& path, bool check_mode) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("cannot open master key file", path, errno);
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};

  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoStatus("cannot stat master key file", path, errno);
  if (!S_ISREG(st.st_mode)) return InvalidArgument("master key file must be a regular file");
  if (check_mode && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    return PermissionDenied("master key file must not be readable by group or others");
  }
  if (st.st_size != static_cast<off_t>(kMasterKeyBytes)) {
    return InvalidArgument("master key file must be exactly 32 bytes");
  }
  SecretBytes key = SecretBytes::Zeros(kMasterKeyBytes);
  uint8_t* dst = key.mutable_data(InsecureSecretKeyAccess::Get());
  size_t got = 0;
  while (got < kMasterKeyBytes) {
    const ssize_t n = ::read(fd, dst + got, kMasterKeyBytes - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("cannot read master key file", path, errno);
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  // The size may have changed since fstat; a short or growing file is not a key file.
  uint8_t extra = 0;
  if (got != kMasterKeyBytes || ::read(fd, &extra, 1) != 0) {
    return InvalidArgument("master key file must be exactly 32 bytes");
  }
  return key;
}

}  // namespace

Status CreateMasterKeyFile(const std::string& path) {
  return WriteMasterKeyFile(path, SecretBytes::Random(kMasterKeyBytes));
}

Status WriteMasterKeyFile(const std::string& path, const SecretBytes& key) {
  if (key.size() != kMasterKeyBytes) return InvalidArgument("master key must be 32 bytes");
  const int fd =
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, S_IRUSR);
  if (fd < 0) {
    if (errno == EEXIST) return AlreadyExists("master key file already exists: " + path);
    return ErrnoStatus("cannot create master key file", path, errno);
  }
  Status written = WriteKeyFile(fd, key);
  if (::close(fd) != 0 && written.ok()) {
    written = Unavailable(std::string("close failed: ") + std::strerror(errno));
  }
  if (!written.ok()) {
    // A partial key file would block the next attempt (O_EXCL) and is useless anyway.
    ::unlink(path.c_str());
    return Unavailable("cannot write master key file " + path + ": " + written.message());
  }
  return FsyncDir(ParentDir(path));
}

StatusOr<SecretBytes> LoadMasterKeyFile(const std::string& path) { return LoadKey(path, true); }

std::string PendingMasterKeyPath(const std::string& data_dir) {
  return data_dir + "/master-key.next";
}

Status ShredMasterKeyFile(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return ErrnoStatus("cannot stat", path, errno);
  }
  if (!S_ISREG(st.st_mode)) return InvalidArgument("not a regular file: " + path);
  // The owner may write a file it made read-only once it makes it writable again.
  if (::chmod(path.c_str(), S_IRUSR | S_IWUSR) != 0) {
    return ErrnoStatus("cannot make writable", path, errno);
  }
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return ErrnoStatus("cannot open", path, errno);
  const std::string zeros(static_cast<size_t>(st.st_size), '\0');
  Status s = WriteAll(fd, reinterpret_cast<const uint8_t*>(zeros.data()), zeros.size());
  if (s.ok() && ::fdatasync(fd) != 0) s = ErrnoStatus("cannot sync", path, errno);
  ::close(fd);
  PV_RETURN_IF_ERROR(s);
  if (::unlink(path.c_str()) != 0) return ErrnoStatus("cannot remove", path, errno);
  return FsyncDir(ParentDir(path));
}

StatusOr<SecretBytes> LoadMasterKeyCredential(const std::string& name) {
  const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
  if (dir == nullptr || *dir == '\0') {
    return FailedPrecondition("CREDENTIALS_DIRECTORY is not set (no systemd credentials)");
  }
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) {
    return InvalidArgument("credential name must be a plain file name");
  }
  return LoadKey(std::string(dir) + "/" + name, false);
}

StatusOr<SecretBytes> DeriveMasterKeyFromPassphrase(std::string_view passphrase,
                                                    const PassphraseParams& params) {
  if (params.salt.size() != crypto_pwhash_SALTBYTES) {
    return InvalidArgument("passphrase salt must be 16 bytes");
  }
  if (passphrase.empty()) return InvalidArgument("passphrase must not be empty");
  if (passphrase.size() > crypto_pwhash_argon2id_passwd_max()) {
    return InvalidArgument("passphrase is too long");
  }
  if (params.opslimit < crypto_pwhash_argon2id_opslimit_min() ||
      params.opslimit > crypto_pwhash_argon2id_opslimit_max()) {
    return InvalidArgument("argon2id opslimit is outside libsodium's bounds");
  }
  if (params.memlimit < crypto_pwhash_argon2id_memlimit_min() ||
      params.memlimit > crypto_pwhash_argon2id_memlimit_max()) {
    return InvalidArgument("argon2id memlimit is outside libsodium's bounds");
  }
  SecretBytes key = SecretBytes::Zeros(kMasterKeyBytes);
  if (crypto_pwhash(key.mutable_data(InsecureSecretKeyAccess::Get()), key.size(), passphrase.data(),
                    passphrase.size(), reinterpret_cast<const unsigned char*>(params.salt.data()),
                    params.opslimit, static_cast<size_t>(params.memlimit),
                    crypto_pwhash_ALG_ARGON2ID13) != 0) {
    return ResourceExhausted("argon2id derivation failed (out of memory)");
  }
  return key;
}

}  // namespace phivault::crypto
