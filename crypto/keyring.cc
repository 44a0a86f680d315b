#include "crypto/keyring.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <set>

#include <sodium.h>

#include "crypto/master_key.h"

namespace phivault::crypto {
namespace {

constexpr std::string_view kMagic = "PVKR";
constexpr uint32_t kFormatVersion = 1;
constexpr size_t kIdBytes = 48;
constexpr size_t kSealedBytes = Aead::kOverhead + Aead::kKeyBytes;
constexpr size_t kHeaderBytes = 4 + 4 + 4 + kSealedBytes;     // magic, version, slot count, check
constexpr size_t kSealedOffsetInSlot = kIdBytes + 4 + 8 + 8;  // id, state, created, destroyed
constexpr size_t kSlotBytes = kSealedOffsetInSlot + kSealedBytes;
constexpr size_t kTrailerBytes = 32;
constexpr uint32_t kStateLive = 1;
constexpr uint32_t kStateDestroyed = 2;

constexpr std::string_view kCheckAad = "phivault/keyring/check/v1";
constexpr std::string_view kCheckPlaintext = "phivault keyring check value v01";
static_assert(kCheckPlaintext.size() + Aead::kOverhead == kSealedBytes);
constexpr std::string_view kSlotAadPrefix = "phivault/keyring/slot/v1";

constexpr std::string_view kBlindIndexId = "svc:blind-index";
constexpr std::string_view kAuditKeyId = "svc:audit";
constexpr std::string_view kAuditSignId = "svc:audit-sign";
constexpr std::string_view kVaultIdId = "svc:vault-id";
constexpr size_t kVaultIdBytes = 16;

struct Slot {
  std::string id;
  bool destroyed = false;
  int64_t created_unix = 0;
  int64_t destroyed_unix = 0;
  std::string sealed;  // kSealedBytes; all zero once destroyed
};

bool IsServiceId(std::string_view id) { return id.substr(0, 4) == "svc:"; }

// ^(d[0-9]{8}|h[A-Za-z0-9_-]{1,40})$
bool IsValidEpochId(std::string_view id) {
  if (id.size() == 9 && id[0] == 'd') {
    return std::all_of(id.begin() + 1, id.end(), [](char c) { return c >= '0' && c <= '9'; });
  }
  if (id.size() >= 2 && id.size() <= 41 && id[0] == 'h') {
    return std::all_of(id.begin() + 1, id.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '-';
    });
  }
  return false;
}

std::string SlotAad(std::string_view id) {
  std::string aad(kSlotAadPrefix);
  aad.append(id);
  return aad;
}

int64_t NowUnix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool AllZero(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == '\0'; });
}

void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutI64(std::string& out, int64_t v) {
  const auto u = static_cast<uint64_t>(v);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((u >> (8 * i)) & 0xff));
}
uint64_t GetLe(std::string_view s, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(s[i])) << (8 * i);
  return v;
}

// The trailer covers every byte except the sealed-key fields: those carry their own AEAD tags,
// and leaving them out lets a destruction zero a slot in place without invalidating the file.
std::string TrailerHash(std::string_view body) {
  std::string covered(body);
  for (size_t off = kHeaderBytes; off + kSlotBytes <= covered.size(); off += kSlotBytes) {
    std::fill_n(covered.begin() + static_cast<std::ptrdiff_t>(off + kSealedOffsetInSlot),
                kSealedBytes, '\0');
  }
  return std::string(AsView(Sha256(covered)));
}

std::string Serialize(std::string_view sealed_check, const std::vector<Slot>& slots) {
  std::string out(kMagic);
  PutU32(out, kFormatVersion);
  PutU32(out, static_cast<uint32_t>(slots.size()));
  out.append(sealed_check);
  for (const Slot& s : slots) {
    std::string id = s.id;
    id.resize(kIdBytes, '\0');
    out.append(id);
    PutU32(out, s.destroyed ? kStateDestroyed : kStateLive);
    PutI64(out, s.created_unix);
    PutI64(out, s.destroyed_unix);
    out.append(s.sealed);
  }
  out.append(TrailerHash(out));
  return out;
}

// Header and slot layout without the trailer check; enough to find slots by id.
struct Layout {
  std::string sealed_check;
  std::vector<Slot> slots;
};
StatusOr<Layout> ParseLayout(std::string_view bytes) {
  if (bytes.size() < kHeaderBytes + kTrailerBytes) return DataLoss("keyring file is truncated");
  if (bytes.substr(0, 4) != kMagic) return DataLoss("keyring file has a bad magic number");
  if (GetLe(bytes.substr(4), 4) != kFormatVersion) {
    return DataLoss("keyring file has an unsupported format version");
  }
  const uint64_t count = GetLe(bytes.substr(8), 4);
  if (bytes.size() != kHeaderBytes + count * kSlotBytes + kTrailerBytes) {
    return DataLoss("keyring file size does not match its slot count (truncated?)");
  }
  Layout layout;
  layout.sealed_check = std::string(bytes.substr(12, kSealedBytes));
  std::set<std::string, std::less<>> seen;
  for (uint64_t i = 0; i < count; ++i) {
    const std::string_view raw = bytes.substr(kHeaderBytes + i * kSlotBytes, kSlotBytes);
    Slot s;
    const std::string_view id_field = raw.substr(0, kIdBytes);
    s.id = std::string(id_field.substr(0, id_field.find('\0')));
    if (!AllZero(id_field.substr(s.id.size())) || s.id.empty() ||
        !(IsValidEpochId(s.id) || IsServiceId(s.id)) || !seen.insert(s.id).second) {
      return DataLoss("keyring file has a malformed or duplicate slot id");
    }
    const uint64_t state = GetLe(raw.substr(kIdBytes), 4);
    if (state != kStateLive && state != kStateDestroyed) {
      return DataLoss("keyring file has a slot with an unknown state");
    }
    s.destroyed = state == kStateDestroyed;
    s.created_unix = static_cast<int64_t>(GetLe(raw.substr(kIdBytes + 4), 8));
    s.destroyed_unix = static_cast<int64_t>(GetLe(raw.substr(kIdBytes + 12), 8));
    s.sealed = std::string(raw.substr(kSealedOffsetInSlot, kSealedBytes));
    layout.slots.push_back(std::move(s));
  }
  return layout;
}

StatusOr<Layout> Parse(std::string_view bytes) {
  PV_ASSIGN_OR_RETURN(Layout layout, ParseLayout(bytes));
  const size_t body = bytes.size() - kTrailerBytes;
  if (TrailerHash(bytes.substr(0, body)) != bytes.substr(body)) {
    return DataLoss("keyring file failed its integrity check");
  }
  return layout;
}

Status CopyError(const std::string& path, const std::string& what, int err) {
  return Unavailable("keyring copy " + path + ": " + what + " failed: " + std::strerror(err));
}

std::string ParentDir(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// NotFound if missing; Unavailable naming the file on any other error.
StatusOr<std::string> ReadFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return NotFound("keyring copy " + path + " does not exist");
    return CopyError(path, "open", errno);
  }
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return CopyError(path, "read", err);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

Status WriteFully(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status(StatusCode::kUnavailable, std::strerror(errno));
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

// Atomically replaces `path` with `bytes`: temp file in the same directory, fsync, rename,
// fsync the directory.
Status ReplaceFile(const std::string& path, std::string_view bytes) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return CopyError(path, "create temp file", errno);
  int err = 0;
  const char* step = nullptr;
  if (::fchmod(fd, 0600) != 0) {
    err = errno;
    step = "fchmod";
  } else if (Status w = WriteFully(fd, bytes); !w.ok()) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return Unavailable("keyring copy " + path + ": write failed: " + w.message());
  } else if (::fsync(fd) != 0) {
    err = errno;
    step = "fsync";
  }
  if (::close(fd) != 0 && step == nullptr) {
    err = errno;
    step = "close";
  }
  if (step == nullptr && ::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    step = "rename";
  }
  if (step != nullptr) {
    ::unlink(tmp.c_str());
    return CopyError(path, step, err);
  }
  const std::string dir = ParentDir(path);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return CopyError(path, "open directory", errno);
  const int rc = ::fsync(dfd);
  err = errno;
  ::close(dfd);
  if (rc != 0) return CopyError(path, "fsync directory", err);
  return Status::Ok();
}

// Overwrites, in place, the sealed key of every slot in the file at `path` whose id is in
// `destroyed`, and syncs. A missing file has nothing to scrub; a file that is not a keyring
// cannot be located by slot and is left for the replacement to supersede.
Status ScrubInPlace(const std::string& path, const std::set<std::string, std::less<>>& destroyed) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) return Status::Ok();
    return CopyError(path, "open for scrubbing", errno);
  }
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  std::string bytes;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return CopyError(path, "read for scrubbing", errno);
    if (n == 0) break;
    bytes.append(buf, static_cast<size_t>(n));
  }
  auto layout = ParseLayout(bytes);
  if (!layout.ok()) return Status::Ok();
  const std::string zeros(kSealedBytes, '\0');
  bool wrote = false;
  for (size_t i = 0; i < layout->slots.size(); ++i) {
    const Slot& s = layout->slots[i];
    if (destroyed.count(s.id) == 0 || AllZero(s.sealed)) continue;
    const auto off = static_cast<off_t>(kHeaderBytes + i * kSlotBytes + kSealedOffsetInSlot);
    if (::pwrite(fd, zeros.data(), zeros.size(), off) != static_cast<ssize_t>(zeros.size())) {
      return CopyError(path, "overwrite of destroyed key", errno);
    }
    wrote = true;
  }
  if (wrote && ::fdatasync(fd) != 0) return CopyError(path, "fdatasync after overwrite", errno);
  return Status::Ok();
}

}  // namespace

struct Keyring::State {
  KeyringOptions options;
  std::unique_ptr<Aead> master;
  std::string sealed_check;
  std::vector<Slot> slots;
  std::map<std::string, std::shared_ptr<const Aead>, std::less<>> epoch_keys;  // live only
  // A previous write reached the primary but not every mirror.
  bool copies_stale = false;
  std::unique_ptr<Aead> audit_key;
  std::unique_ptr<BlindIndex> blind_index;
  std::unique_ptr<Ed25519Signer> audit_signer;
  std::string vault_id;  // hex

  // Writes `new_slots` and `check` to every copy: first scrubs destroyed keys in place in
  // every existing copy (and leftover temp file), then replaces the primary, then each mirror.
  // Every copy is attempted unless the primary fails and `stop_if_primary_fails`. Returns the
  // first failure; *primary_written tells whether the primary now holds `new_slots`.
  Status Persist(std::string_view check, const std::vector<Slot>& new_slots,
                 bool stop_if_primary_fails, bool* primary_written) const {
    std::set<std::string, std::less<>> destroyed;
    for (const Slot& s : new_slots) {
      if (s.destroyed) destroyed.insert(s.id);
    }
    std::vector<std::string> copies{options.path};
    copies.insert(copies.end(), options.mirrors.begin(), options.mirrors.end());
    Status first;
    auto note = [&first](Status s) {
      if (first.ok() && !s.ok()) first = std::move(s);
    };
    if (!destroyed.empty()) {
      for (const std::string& c : copies) {
        note(ScrubInPlace(c, destroyed));
        note(ScrubInPlace(c + ".tmp", destroyed));
      }
    }
    const std::string bytes = Serialize(check, new_slots);
    Status primary = ReplaceFile(options.path, bytes);
    *primary_written = primary.ok();
    if (!primary.ok() && stop_if_primary_fails) return primary;
    note(std::move(primary));
    for (size_t i = 1; i < copies.size(); ++i) note(ReplaceFile(copies[i], bytes));
    return first;
  }

  // Rewrites every copy from the current state (used after a destruction and to repair).
  Status SyncCopies() {
    bool primary_written = false;
    Status s = Persist(sealed_check, slots, false, &primary_written);
    copies_stale = !s.ok();
    return s;
  }

  Slot* Find(std::string_view id) {
    for (Slot& s : slots) {
      if (s.id == id) return &s;
    }
    return nullptr;
  }
};

Keyring::Keyring() : state_(std::make_unique<State>()) {}
Keyring::~Keyring() = default;

namespace {

Status ValidateOptions(const KeyringOptions& options, const SecretBytes& master_key) {
  if (master_key.size() != kMasterKeyBytes) {
    return InvalidArgument("master key must be 32 bytes");
  }
  if (options.path.empty()) return InvalidArgument("keyring path must not be empty");
  for (size_t i = 0; i < options.mirrors.size(); ++i) {
    const std::string& m = options.mirrors[i];
    if (m.empty() || m == options.path ||
        std::find(options.mirrors.begin(), options.mirrors.begin() + static_cast<std::ptrdiff_t>(i),
                  m) != options.mirrors.begin() + static_cast<std::ptrdiff_t>(i)) {
      return InvalidArgument("keyring mirrors must be distinct from each other and the primary");
    }
  }
  return Status::Ok();
}

bool PathExists(const std::string& path) {
  struct stat sb;
  return ::lstat(path.c_str(), &sb) == 0;
}

// The vault id slot's payload: the id, then zero padding up to a key's size.
SecretBytes VaultIdPayload(std::string_view id) {
  std::string payload(id);
  payload.resize(Aead::kKeyBytes, '\0');
  SecretBytes out = SecretBytes::CopyFrom(payload, InsecureSecretKeyAccess::Get());
  sodium_memzero(payload.data(), payload.size());
  return out;
}

Slot NewServiceSlot(const Aead& master, std::string_view id, const SecretBytes& payload,
                    int64_t now) {
  return Slot{std::string(id), false, now, 0, WrapKey(master, payload, SlotAad(id))};
}

Slot NewVaultIdSlot(const Aead& master, int64_t now) {
  const SecretBytes id = SecretBytes::Random(kVaultIdBytes);
  return NewServiceSlot(master, kVaultIdId, VaultIdPayload(id.view(InsecureSecretKeyAccess::Get())),
                        now);
}

}  // namespace

StatusOr<std::unique_ptr<Keyring>> Keyring::Create(const KeyringOptions& options,
                                                   SecretBytes master_key) {
  PV_RETURN_IF_ERROR(ValidateOptions(options, master_key));
  std::vector<std::string> copies{options.path};
  copies.insert(copies.end(), options.mirrors.begin(), options.mirrors.end());
  for (const std::string& c : copies) {
    if (PathExists(c)) {
      return AlreadyExists("keyring copy " + c +
                           " already exists; a new keyring would orphan every key it holds");
    }
  }
  PV_ASSIGN_OR_RETURN(std::unique_ptr<Aead> master, Aead::Create(std::move(master_key)));
  std::vector<Slot> slots;
  const int64_t now = NowUnix();
  for (std::string_view id : {kBlindIndexId, kAuditKeyId, kAuditSignId}) {
    slots.push_back(NewServiceSlot(*master, id, SecretBytes::Random(Aead::kKeyBytes), now));
  }
  slots.push_back(NewVaultIdSlot(*master, now));
  auto state = std::make_unique<State>();
  state->options = options;
  state->sealed_check = master->Encrypt(kCheckPlaintext, kCheckAad);
  state->master = std::move(master);
  state->slots = std::move(slots);
  return Load(std::move(state), /*needs_write=*/true, "");
}

StatusOr<std::unique_ptr<Keyring>> Keyring::Open(const KeyringOptions& options,
                                                 SecretBytes master_key) {
  PV_RETURN_IF_ERROR(ValidateOptions(options, master_key));
  auto primary = ReadFile(options.path);
  if (!primary.ok() && primary.status().code() != StatusCode::kNotFound) return primary.status();
  if (!primary.ok()) {
    for (const std::string& m : options.mirrors) {
      if (PathExists(m)) {
        return FailedPrecondition("keyring primary " + options.path + " is missing but mirror " +
                                  m + " exists; restore it first");
      }
    }
    return NotFound("no keyring at " + options.path + " or any mirror");
  }
  PV_ASSIGN_OR_RETURN(std::unique_ptr<Aead> master, Aead::Create(std::move(master_key)));
  PV_ASSIGN_OR_RETURN(Layout layout, Parse(*primary));
  auto check = master->Decrypt(layout.sealed_check, kCheckAad);
  if (!check.ok() || *check != kCheckPlaintext) {
    return FailedPrecondition("master key does not match the keyring");
  }
  bool needs_write = false;
  const bool has_vault_id = std::any_of(layout.slots.begin(), layout.slots.end(),
                                        [](const Slot& s) { return s.id == kVaultIdId; });
  if (!has_vault_id) {
    // Written before keyrings were bound to their database: give it its id once.
    layout.slots.push_back(NewVaultIdSlot(*master, NowUnix()));
    needs_write = true;
  }
  auto state = std::make_unique<State>();
  state->options = options;
  state->master = std::move(master);
  state->sealed_check = std::move(layout.sealed_check);
  state->slots = std::move(layout.slots);
  return Load(std::move(state), needs_write, *primary);
}

StatusOr<std::unique_ptr<Keyring>> Keyring::Load(std::unique_ptr<State> state, bool needs_write,
                                                 std::string_view primary) {
  std::unique_ptr<Keyring> keyring(new Keyring());
  keyring->state_ = std::move(state);
  State& st = *keyring->state_;
  const KeyringOptions& options = st.options;

  for (Slot& s : st.slots) {
    if (!s.destroyed && AllZero(s.sealed)) {
      // A destruction was interrupted after its in-place overwrite: the key is gone already.
      s.destroyed = true;
      s.destroyed_unix = NowUnix();
      needs_write = true;
    }
    if (s.destroyed) {
      if (IsServiceId(s.id)) return DataLoss("keyring service key " + s.id + " is destroyed");
      if (!AllZero(s.sealed)) {
        s.sealed.assign(kSealedBytes, '\0');
        needs_write = true;
      }
      continue;
    }
    auto key = UnwrapKey(*st.master, s.sealed, SlotAad(s.id));
    if (!key.ok()) return DataLoss("keyring slot " + s.id + " failed authentication");
    if (s.id == kBlindIndexId) {
      PV_ASSIGN_OR_RETURN(st.blind_index, BlindIndex::Create(std::move(*key)));
    } else if (s.id == kAuditKeyId) {
      PV_ASSIGN_OR_RETURN(st.audit_key, Aead::Create(std::move(*key)));
    } else if (s.id == kAuditSignId) {
      PV_ASSIGN_OR_RETURN(st.audit_signer, Ed25519Signer::Create(std::move(*key)));
    } else if (s.id == kVaultIdId) {
      const std::string_view payload = key->view(InsecureSecretKeyAccess::Get());
      if (!AllZero(payload.substr(kVaultIdBytes))) {
        return DataLoss("keyring vault id slot is malformed");
      }
      st.vault_id = HexEncode(payload.substr(0, kVaultIdBytes));
    } else if (IsServiceId(s.id)) {
      return DataLoss("keyring has an unknown service key " + s.id);
    } else {
      PV_ASSIGN_OR_RETURN(std::unique_ptr<Aead> aead, Aead::Create(std::move(*key)));
      st.epoch_keys.emplace(s.id, std::move(aead));
    }
  }
  if (!st.blind_index || !st.audit_key || !st.audit_signer || st.vault_id.empty()) {
    return DataLoss("keyring lacks a service key");
  }

  if (!needs_write) {
    for (const std::string& m : options.mirrors) {
      auto mirror = ReadFile(m);
      if (!mirror.ok() || *mirror != primary) {
        needs_write = true;
        break;
      }
    }
  }
  if (needs_write) PV_RETURN_IF_ERROR(st.SyncCopies());
  return keyring;
}

StatusOr<std::shared_ptr<const Aead>> Keyring::GetOrCreateEpoch(std::string_view epoch_id) {
  if (!IsValidEpochId(epoch_id)) {
    return InvalidArgument("epoch id must be d<YYYYMMDD> or h<hold id of 1-40 [A-Za-z0-9_-]>");
  }
  std::lock_guard<std::mutex> lock(mu_);
  State& st = *state_;
  if (auto it = st.epoch_keys.find(epoch_id); it != st.epoch_keys.end()) {
    if (st.copies_stale) PV_RETURN_IF_ERROR(st.SyncCopies());
    return it->second;
  }
  if (st.Find(epoch_id) != nullptr) return FailedPrecondition("epoch key was destroyed");

  std::shared_ptr<const Aead> key = Aead::Generate();
  std::vector<Slot> slots = st.slots;
  slots.push_back(
      Slot{std::string(epoch_id), false, NowUnix(), 0,
           WrapKey(*st.master, key->key(InsecureSecretKeyAccess::Get()), SlotAad(epoch_id))});
  bool primary_written = false;
  Status s = st.Persist(st.sealed_check, slots, true, &primary_written);
  if (!primary_written) return s;
  st.slots = std::move(slots);
  st.epoch_keys.emplace(std::string(epoch_id), key);
  st.copies_stale = !s.ok();
  if (!s.ok()) return s;
  return key;
}

StatusOr<std::shared_ptr<const Aead>> Keyring::GetEpoch(std::string_view epoch_id) const {
  if (!IsValidEpochId(epoch_id)) {
    return InvalidArgument("epoch id must be d<YYYYMMDD> or h<hold id of 1-40 [A-Za-z0-9_-]>");
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = state_->epoch_keys.find(epoch_id); it != state_->epoch_keys.end()) {
    return it->second;
  }
  if (state_->Find(epoch_id) != nullptr) return FailedPrecondition("epoch key was destroyed");
  return NotFound("epoch key does not exist");
}

Status Keyring::DestroyEpoch(std::string_view epoch_id) {
  if (!IsValidEpochId(epoch_id)) {
    return InvalidArgument("epoch id must be d<YYYYMMDD> or h<hold id of 1-40 [A-Za-z0-9_-]>");
  }
  std::lock_guard<std::mutex> lock(mu_);
  State& st = *state_;
  Slot* slot = st.Find(epoch_id);
  if (slot == nullptr) return NotFound("epoch key does not exist");
  if (slot->destroyed) return st.copies_stale ? st.SyncCopies() : Status::Ok();
  st.epoch_keys.erase(st.epoch_keys.find(epoch_id));
  slot->destroyed = true;
  slot->destroyed_unix = NowUnix();
  slot->sealed.assign(kSealedBytes, '\0');
  return st.SyncCopies();
}

Status Keyring::Rotate(SecretBytes new_master_key) {
  if (new_master_key.size() != kMasterKeyBytes) {
    return InvalidArgument("master key must be 32 bytes");
  }
  PV_ASSIGN_OR_RETURN(std::unique_ptr<Aead> new_master, Aead::Create(std::move(new_master_key)));
  std::lock_guard<std::mutex> lock(mu_);
  State& st = *state_;
  std::vector<Slot> slots = st.slots;
  for (Slot& s : slots) {
    if (s.destroyed) continue;
    auto key = UnwrapKey(*st.master, s.sealed, SlotAad(s.id));
    if (!key.ok()) return Internal("keyring slot " + s.id + " no longer opens in memory");
    s.sealed = WrapKey(*new_master, *key, SlotAad(s.id));
  }
  const std::string check = new_master->Encrypt(kCheckPlaintext, kCheckAad);
  bool primary_written = false;
  Status s = st.Persist(check, slots, true, &primary_written);
  if (!primary_written) return s;
  st.master = std::move(new_master);
  st.sealed_check = check;
  st.slots = std::move(slots);
  st.copies_stale = !s.ok();
  return s;
}

std::vector<Keyring::EpochInfo> Keyring::ListEpochs() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<EpochInfo> out;
  for (const Slot& s : state_->slots) {
    if (IsServiceId(s.id)) continue;
    out.push_back(EpochInfo{s.id, s.destroyed, s.created_unix, s.destroyed_unix});
  }
  return out;
}

const Aead& Keyring::audit_key() const { return *state_->audit_key; }
const BlindIndex& Keyring::blind_index() const { return *state_->blind_index; }
const Ed25519Signer& Keyring::audit_signer() const { return *state_->audit_signer; }
const std::string& Keyring::vault_id() const { return state_->vault_id; }

}  // namespace phivault::crypto
