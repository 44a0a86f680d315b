#include "crypto/keyring.h"

#include <sodium.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <set>

#include "crypto/master_key.h"

namespace phivault::crypto {
namespace {

constexpr std::string_view kMagic = "PVK2";
constexpr uint32_t kFormatVersion = 2;
constexpr size_t kIdBytes = 48;
constexpr size_t kSealedBytes = Aead::kOverhead + Aead::kKeyBytes;
constexpr size_t kMacBytes = 32;
constexpr size_t kSealedOffsetInSlot = kIdBytes + 4 + 8 + 8;  // id, state, created, destroyed
constexpr size_t kSlotMacOffset = kSealedOffsetInSlot + kSealedBytes;
constexpr size_t kSlotBytes = kSlotMacOffset + kMacBytes;
constexpr size_t kHeaderRegionBytes = 8192;
constexpr size_t kSlotsOffset = 2 * kHeaderRegionBytes;
constexpr size_t kHeaderFixedBytes = 4 + 4 + 8 + 4 + kSealedBytes;  // magic .. sealed check
constexpr size_t kMaxEntries = (kHeaderRegionBytes - kHeaderFixedBytes - kMacBytes) * 8;
constexpr uint32_t kStateLive = 1;
constexpr uint32_t kStateDestroyed = 2;

// Format 1 (rewritten by rename on every change), read only to migrate it.
constexpr std::string_view kMagicV1 = "PVKR";
constexpr size_t kHeaderBytesV1 = 4 + 4 + 4 + kSealedBytes;
constexpr size_t kSlotBytesV1 = kSealedOffsetInSlot + kSealedBytes;
constexpr size_t kTrailerBytesV1 = 32;

constexpr std::string_view kCheckAad = "phivault/keyring/check/v1";
constexpr std::string_view kCheckPlaintext = "phivault keyring check value v01";
static_assert(kCheckPlaintext.size() + Aead::kOverhead == kSealedBytes);
constexpr std::string_view kSlotAadPrefix = "phivault/keyring/slot/v1";
// MAC domains (keyed BLAKE2b under the keyring MAC key).
constexpr std::string_view kSlotMacDomain = "phivault/keyring/slot-mac/v2";
constexpr std::string_view kHeaderMacDomain = "phivault/keyring/header-mac/v2";
// crypto_kdf context and subkey id of the keyring MAC key.
constexpr char kKdfContext[crypto_kdf_CONTEXTBYTES] = {'p', 'v', 'k', 'r', 'i', 'n', 'g', '2'};
constexpr uint64_t kMacSubkeyId = 1;

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
void PutU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t GetLe(std::string_view s, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(s[i])) << (8 * i);
  return v;
}

// The keyring's state as every copy stores it, and where in the file each part lives.
struct Image {
  uint64_t generation = 0;
  int active_header = 0;  // 0 or 1: which header region holds this state
  std::string sealed_check;
  std::vector<Slot> slots;
  std::vector<uint8_t> halves;  // per slot: which of its two places holds it (0 or 1)
  bool format1 = false;         // read from a format-1 file (to be migrated)
};

size_t HeaderOffset(int which) { return static_cast<size_t>(which) * kHeaderRegionBytes; }
size_t SlotOffset(size_t index, uint8_t half) {
  return kSlotsOffset + (2 * index + half) * kSlotBytes;
}
size_t LayoutBytes(size_t count) { return kSlotsOffset + 2 * count * kSlotBytes; }

// The MAC key: a crypto_kdf subkey of the master key, so that only a master-key holder can
// write a slot, a tombstone or a header that authenticates.
StatusOr<std::unique_ptr<BlindIndex>> DeriveMacKey(const Aead& master) {
  SecretBytes mac_key = SecretBytes::Zeros(crypto_kdf_KEYBYTES);
  const SecretBytes& master_key = master.key(InsecureSecretKeyAccess::Get());
  if (crypto_kdf_derive_from_key(mac_key.mutable_data(InsecureSecretKeyAccess::Get()),
                                 mac_key.size(), kMacSubkeyId, kKdfContext,
                                 master_key.data(InsecureSecretKeyAccess::Get())) != 0) {
    return Internal("keyring MAC key derivation failed");
  }
  return BlindIndex::Create(std::move(mac_key));
}

std::string SlotBody(const Slot& s) {
  std::string out = s.id;
  out.resize(kIdBytes, '\0');
  PutU32(out, s.destroyed ? kStateDestroyed : kStateLive);
  PutU64(out, static_cast<uint64_t>(s.created_unix));
  PutU64(out, static_cast<uint64_t>(s.destroyed_unix));
  out.append(s.sealed);
  return out;
}

// The MAC binds a slot's bytes to its index, so slots cannot be swapped or moved.
std::string SlotMac(const BlindIndex& mac, size_t index, std::string_view body) {
  std::string msg;
  PutU64(msg, index);
  msg.append(body);
  return mac.Compute(kSlotMacDomain, msg);
}

std::string EncodeSlot(const BlindIndex& mac, size_t index, const Slot& s) {
  std::string out = SlotBody(s);
  out.append(SlotMac(mac, index, out));
  return out;
}

// Header: magic | u32 version | u64 generation | u32 slot count | sealed check |
// bitmap of halves (bit i = half of slot i) | MAC over all of it and every current slot's MAC.
std::string EncodeHeader(const BlindIndex& mac, const Image& image,
                         const std::vector<std::string>& slot_macs) {
  std::string out(kMagic);
  PutU32(out, kFormatVersion);
  PutU64(out, image.generation);
  PutU32(out, static_cast<uint32_t>(image.slots.size()));
  out.append(image.sealed_check);
  std::string bitmap((image.slots.size() + 7) / 8, '\0');
  for (size_t i = 0; i < image.halves.size(); ++i) {
    if (image.halves[i] != 0) bitmap[i / 8] = static_cast<char>(bitmap[i / 8] | (1 << (i % 8)));
  }
  out.append(bitmap);
  std::string covered = out;
  for (const std::string& m : slot_macs) covered.append(m);
  out.append(mac.Compute(kHeaderMacDomain, covered));
  return out;
}

// The bytes of a copy holding `image`, at least `min_size` long: everything that is not the
// active header or a current slot is zero.
std::string Render(const BlindIndex& mac, const Image& image, size_t min_size) {
  std::string out(std::max(min_size, LayoutBytes(image.slots.size())), '\0');
  std::vector<std::string> macs;
  for (size_t i = 0; i < image.slots.size(); ++i) {
    const std::string slot = EncodeSlot(mac, i, image.slots[i]);
    macs.push_back(slot.substr(kSlotMacOffset));
    out.replace(SlotOffset(i, image.halves[i]), kSlotBytes, slot);
  }
  const std::string header = EncodeHeader(mac, image, macs);
  out.replace(HeaderOffset(image.active_header), header.size(), header);
  return out;
}

Status ValidateSlot(const Slot& s, std::set<std::string, std::less<>>& seen) {
  if (s.id.empty() || !(IsValidEpochId(s.id) || IsServiceId(s.id)) || !seen.insert(s.id).second) {
    return DataLoss("keyring has a malformed or duplicate slot id");
  }
  return Status::Ok();
}

Slot DecodeSlotBody(std::string_view raw, uint32_t* state) {
  Slot s;
  const std::string_view id_field = raw.substr(0, kIdBytes);
  s.id = std::string(id_field.substr(0, id_field.find('\0')));
  *state = static_cast<uint32_t>(GetLe(raw.substr(kIdBytes), 4));
  s.destroyed = *state == kStateDestroyed;
  s.created_unix = static_cast<int64_t>(GetLe(raw.substr(kIdBytes + 4), 8));
  s.destroyed_unix = static_cast<int64_t>(GetLe(raw.substr(kIdBytes + 12), 8));
  s.sealed = std::string(raw.substr(kSealedOffsetInSlot, kSealedBytes));
  return s;
}

// One header region: the image it describes if it and every slot it names authenticate.
std::optional<Image> ParseHeader(const BlindIndex& mac, std::string_view file, int which) {
  const size_t base = HeaderOffset(which);
  if (file.size() < kSlotsOffset) return std::nullopt;
  const std::string_view h = file.substr(base, kHeaderRegionBytes);
  if (h.substr(0, 4) != kMagic || GetLe(h.substr(4), 4) != kFormatVersion) return std::nullopt;
  Image image;
  image.active_header = which;
  image.generation = GetLe(h.substr(8), 8);
  const uint64_t count = GetLe(h.substr(16), 4);
  if (count > kMaxEntries || file.size() < LayoutBytes(count)) return std::nullopt;
  image.sealed_check = std::string(h.substr(20, kSealedBytes));
  const size_t bitmap_bytes = (count + 7) / 8;
  const std::string_view bitmap = h.substr(kHeaderFixedBytes, bitmap_bytes);
  std::string covered(h.substr(0, kHeaderFixedBytes + bitmap_bytes));
  std::set<std::string, std::less<>> seen;
  for (size_t i = 0; i < count; ++i) {
    const uint8_t half = (static_cast<uint8_t>(bitmap[i / 8]) >> (i % 8)) & 1;
    const std::string_view raw = file.substr(SlotOffset(i, half), kSlotBytes);
    const std::string_view stored_mac = raw.substr(kSlotMacOffset);
    if (!ConstantTimeEquals(SlotMac(mac, i, raw.substr(0, kSlotMacOffset)), stored_mac)) {
      return std::nullopt;
    }
    covered.append(stored_mac);
    uint32_t state = 0;
    Slot s = DecodeSlotBody(raw, &state);
    // Only a master-key holder writes slots that authenticate, and it never writes these.
    if ((state != kStateLive && state != kStateDestroyed) || !ValidateSlot(s, seen).ok() ||
        (s.destroyed && !AllZero(s.sealed)) || (!s.destroyed && AllZero(s.sealed))) {
      return std::nullopt;
    }
    image.slots.push_back(std::move(s));
    image.halves.push_back(half);
  }
  const std::string_view stored = h.substr(kHeaderFixedBytes + bitmap_bytes, kMacBytes);
  if (!ConstantTimeEquals(mac.Compute(kHeaderMacDomain, covered), stored)) return std::nullopt;
  return image;
}

// Format 1: header, slots, SHA-256 trailer over everything with the sealed keys counted as
// zero. Its file may be followed by format-2 bytes when a migration was interrupted.
std::optional<Image> ParseV1(std::string_view bytes) {
  if (bytes.size() < kHeaderBytesV1 + kTrailerBytesV1 || bytes.substr(0, 4) != kMagicV1 ||
      GetLe(bytes.substr(4), 4) != 1) {
    return std::nullopt;
  }
  const uint64_t count = GetLe(bytes.substr(8), 4);
  const size_t body = kHeaderBytesV1 + count * kSlotBytesV1;
  if (count > kMaxEntries || bytes.size() < body + kTrailerBytesV1) return std::nullopt;
  std::string covered(bytes.substr(0, body));
  for (size_t off = kHeaderBytesV1; off + kSlotBytesV1 <= covered.size(); off += kSlotBytesV1) {
    std::fill_n(covered.begin() + static_cast<std::ptrdiff_t>(off + kSealedOffsetInSlot),
                kSealedBytes, '\0');
  }
  if (AsView(Sha256(covered)) != bytes.substr(body, kTrailerBytesV1)) return std::nullopt;
  Image image;
  image.format1 = true;
  image.active_header = 1;  // header region 0 overlaps the format-1 bytes: written last
  image.sealed_check = std::string(bytes.substr(12, kSealedBytes));
  std::set<std::string, std::less<>> seen;
  for (uint64_t i = 0; i < count; ++i) {
    const std::string_view raw = bytes.substr(kHeaderBytesV1 + i * kSlotBytesV1, kSlotBytesV1);
    uint32_t state = 0;
    Slot s = DecodeSlotBody(raw, &state);
    if ((state != kStateLive && state != kStateDestroyed) || !ValidateSlot(s, seen).ok()) {
      return std::nullopt;
    }
    // Format 1 completed an interrupted destruction from a zeroed key; it had no tombstones.
    if (!s.destroyed && AllZero(s.sealed)) {
      s.destroyed = true;
      s.destroyed_unix = NowUnix();
    }
    if (s.destroyed) s.sealed.assign(kSealedBytes, '\0');
    image.slots.push_back(std::move(s));
    image.halves.push_back(0);
  }
  return image;
}

// What one copy holds.
struct CopyRead {
  enum class Kind { kMissing, kValid, kCorrupt, kWrongKey };
  Kind kind = Kind::kMissing;
  Status error;  // kCorrupt: why
  Image image;   // kValid
  std::string bytes;
};

CopyRead ClassifyCopy(std::string bytes, const std::string& path, const Aead& master,
                      const BlindIndex& mac);

CopyRead ReadCopy(KeyringFiles& files, const std::string& path, const Aead& master,
                  const BlindIndex& mac) {
  CopyRead out;
  auto bytes = files.Read(path);
  if (!bytes.ok()) {
    if (bytes.status().code() == StatusCode::kNotFound) return out;
    out.kind = CopyRead::Kind::kCorrupt;
    out.error = bytes.status();
    return out;
  }
  return ClassifyCopy(std::move(*bytes), path, master, mac);
}

// What the bytes of one copy hold under `master`.
CopyRead ClassifyCopy(std::string bytes, const std::string& path, const Aead& master,
                      const BlindIndex& mac) {
  CopyRead out;
  out.bytes = std::move(bytes);
  std::optional<Image> best;
  for (int which : {0, 1}) {
    auto image = ParseHeader(mac, out.bytes, which);
    if (image && (!best || image->generation > best->generation)) best = std::move(image);
  }
  if (!best) best = ParseV1(out.bytes);
  if (best) {
    auto check = master.Decrypt(best->sealed_check, kCheckAad);
    if (check.ok() && *check == kCheckPlaintext) {
      out.kind = CopyRead::Kind::kValid;
      out.image = std::move(*best);
      return out;
    }
    if (best->format1) {  // format 1 is not MAC'd: a bad check means a wrong key
      out.kind = CopyRead::Kind::kWrongKey;
      return out;
    }
  }
  // Nothing authenticates. If anything in the file proves this master key wrote it, the file is
  // damaged; otherwise the key is the wrong one.
  bool key_fits = false;
  for (int which : {0, 1}) {
    if (out.bytes.size() < HeaderOffset(which) + kHeaderFixedBytes) continue;
    auto check =
        master.Decrypt(out.bytes.substr(HeaderOffset(which) + 20, kSealedBytes), kCheckAad);
    key_fits = key_fits || (check.ok() && *check == kCheckPlaintext);
  }
  for (size_t off = kSlotsOffset, i = 0; !key_fits && off + kSlotBytes <= out.bytes.size();
       off += kSlotBytes, ++i) {
    const std::string_view raw = std::string_view(out.bytes).substr(off, kSlotBytes);
    key_fits =
        !AllZero(raw) && ConstantTimeEquals(SlotMac(mac, i / 2, raw.substr(0, kSlotMacOffset)),
                                            raw.substr(kSlotMacOffset));
  }
  const bool has_magic =
      out.bytes.substr(0, 4) == kMagic ||
      (out.bytes.size() >= kSlotsOffset && out.bytes.substr(HeaderOffset(1), 4) == kMagic);
  if (!key_fits && has_magic) {
    out.kind = CopyRead::Kind::kWrongKey;
    return out;
  }
  out.kind = CopyRead::Kind::kCorrupt;
  out.error = DataLoss("keyring copy " + path +
                       " failed authentication (altered, zeroed, truncated or torn)");
  return out;
}

// Writes the bytes of `target` in [begin, end) that differ from `current` (what the file holds;
// bytes past its end always differ), then syncs. `current` is updated to match.
Status WriteChanged(KeyringFiles& files, const std::string& path, std::string& current,
                    const std::string& target, size_t begin, size_t end) {
  end = std::min(end, target.size());
  bool wrote = false;
  size_t i = begin;
  while (i < end) {
    if (i < current.size() && current[i] == target[i]) {
      ++i;
      continue;
    }
    size_t j = i + 1;
    size_t last_diff = i;
    // Runs closer than a slot apart become one write.
    while (j < end && j - last_diff < kSlotBytes) {
      if (j >= current.size() || current[j] != target[j]) last_diff = j;
      ++j;
    }
    PV_RETURN_IF_ERROR(
        files.WriteAt(path, i, std::string_view(target).substr(i, last_diff + 1 - i)));
    if (current.size() < last_diff + 1) current.resize(last_diff + 1, '\0');
    current.replace(i, last_diff + 1 - i, target, i, last_diff + 1 - i);
    wrote = true;
    i = last_diff + 1;
  }
  if (wrote) PV_RETURN_IF_ERROR(files.Sync(path));
  return Status::Ok();
}

}  // namespace

struct Keyring::State {
  KeyringOptions options;
  KeyringFiles* files = nullptr;
  std::unique_ptr<Aead> master;
  std::unique_ptr<BlindIndex> mac;
  Image image;
  struct Copy {
    std::string path;
    bool in_sync = false;  // `bytes` is what the file holds: Render(image) of its size
    std::string bytes;
  };
  std::vector<Copy> copies;                                                    // [0] is the primary
  std::map<std::string, std::shared_ptr<const Aead>, std::less<>> epoch_keys;  // live only
  bool copies_stale = false;  // some copy is not in sync

  // Brings a copy that is not in sync to Render(image): first everything but the inactive
  // header region, then that region (zeros). When the file held this image already, only
  // leftovers change, so a crash cannot hurt it; a format-1 file stays readable until the
  // new header is durable.
  Status Repair(Copy& c) {
    c.in_sync = false;
    auto read = files->Read(c.path);
    if (!read.ok() && read.status().code() != StatusCode::kNotFound) return read.status();
    if (!read.ok()) {
      const std::string target = Render(*mac, image, 0);
      PV_RETURN_IF_ERROR(files->Create(c.path, target));
      c.bytes = target;
      c.in_sync = true;
      return Status::Ok();
    }
    c.bytes = std::move(*read);
    const std::string target = Render(*mac, image, c.bytes.size());
    const size_t inactive = HeaderOffset(1 - image.active_header);
    PV_RETURN_IF_ERROR(WriteChanged(*files, c.path, c.bytes, target, 0, inactive));
    PV_RETURN_IF_ERROR(WriteChanged(*files, c.path, c.bytes, target, inactive + kHeaderRegionBytes,
                                    target.size()));
    PV_RETURN_IF_ERROR(
        WriteChanged(*files, c.path, c.bytes, target, inactive, inactive + kHeaderRegionBytes));
    c.in_sync = true;
    return Status::Ok();
  }

  // Moves an in-sync copy from `image` to `next` (rendered under `next_mac`) so that a crash
  // at any write leaves the old or the new state: (1) the changed and new slots into their
  // unused halves, (2) the new header into the inactive region, with the next generation,
  // (3) the old header zeroed, (4) the old halves zeroed — for a destruction, the sealed key.
  // *flipped tells whether step 2 completed (the copy holds `next`).
  Status Advance(Copy& c, const Image& next, const BlindIndex& next_mac, bool* flipped) {
    *flipped = false;
    c.in_sync = false;
    const std::string target = Render(next_mac, next, c.bytes.size());
    std::string step = c.bytes;
    step.resize(target.size(), '\0');
    auto take = [&](size_t off, size_t len) { step.replace(off, len, target, off, len); };
    std::vector<size_t> old_halves;
    for (size_t i = 0; i < next.slots.size(); ++i) {
      if (i < image.slots.size() && next.halves[i] == image.halves[i]) continue;
      take(SlotOffset(i, next.halves[i]), kSlotBytes);
      if (i < image.slots.size()) old_halves.push_back(SlotOffset(i, image.halves[i]));
    }
    PV_RETURN_IF_ERROR(WriteChanged(*files, c.path, c.bytes, step, 0, step.size()));
    take(HeaderOffset(next.active_header), kHeaderRegionBytes);
    PV_RETURN_IF_ERROR(WriteChanged(*files, c.path, c.bytes, step, 0, step.size()));
    *flipped = true;
    take(HeaderOffset(image.active_header), kHeaderRegionBytes);
    PV_RETURN_IF_ERROR(WriteChanged(*files, c.path, c.bytes, step, 0, step.size()));
    PV_RETURN_IF_ERROR(WriteChanged(*files, c.path, c.bytes, target, 0, target.size()));
    c.in_sync = true;
    return Status::Ok();
  }

  // Writes `next` to every copy, primary first. With `repair_behind_first`, copies that fell
  // behind are first repaired to the current state, so that the change itself is crash-safe on
  // them too; without it (Open, DestroyEpoch) they go straight to `next`, because the current
  // state may hold a key that `next` destroys. If the primary does not reach `next` and
  // `stop_if_primary_fails`, nothing is adopted and the mirrors are left alone: a mirror must
  // never be ahead of the primary. Otherwise `next` (with `next_mac` if given) becomes the
  // state, and copies that failed are repaired to it; such a repair after a failed write is not
  // itself crash-safe (a crash during it can leave that copy damaged, to be repaired from another
  // copy at the next Open). Returns the first failure; *primary_written tells whether the
  // primary holds `next`.
  Status Commit(Image next, std::unique_ptr<BlindIndex> next_mac, bool stop_if_primary_fails,
                bool repair_behind_first, bool* primary_written) {
    *primary_written = false;
    Status first = repair_behind_first ? SyncCopies() : Status::Ok();
    auto note = [&first](Status s) {
      if (first.ok() && !s.ok()) first = std::move(s);
    };
    if (!copies[0].in_sync && stop_if_primary_fails) return first;
    const BlindIndex& nm = next_mac ? *next_mac : *mac;
    for (size_t i = 0; i < copies.size(); ++i) {
      Copy& c = copies[i];
      if (!c.in_sync) continue;
      bool flipped = false;
      note(Advance(c, next, nm, &flipped));
      if (i == 0) {
        *primary_written = flipped;
        if (!flipped && stop_if_primary_fails) return first;
      }
    }
    image = std::move(next);
    if (next_mac) mac = std::move(next_mac);
    for (size_t i = 0; i < copies.size(); ++i) {
      if (copies[i].in_sync) continue;
      Status s = Repair(copies[i]);
      if (i == 0 && s.ok()) *primary_written = true;
      note(std::move(s));
    }
    copies_stale =
        std::any_of(copies.begin(), copies.end(), [](const Copy& c) { return !c.in_sync; });
    return first;
  }

  // Repairs every copy that is not in sync.
  Status SyncCopies() {
    Status first;
    for (Copy& c : copies) {
      if (c.in_sync) continue;
      Status s = Repair(c);
      if (first.ok() && !s.ok()) first = std::move(s);
    }
    copies_stale = !first.ok();
    return first;
  }

  std::optional<size_t> Find(std::string_view id) const {
    for (size_t i = 0; i < image.slots.size(); ++i) {
      if (image.slots[i].id == id) return i;
    }
    return std::nullopt;
  }

  // The next state: one generation on, in the other header region.
  Image NextImage() const {
    Image next = image;
    next.generation = image.generation + 1;
    next.active_header = 1 - image.active_header;
    return next;
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

std::vector<std::string> CopyPaths(const KeyringOptions& options) {
  std::vector<std::string> paths{options.path};
  paths.insert(paths.end(), options.mirrors.begin(), options.mirrors.end());
  return paths;
}

Slot NewServiceSlot(const Aead& master, std::string_view id, const SecretBytes& payload,
                    int64_t now) {
  return Slot{std::string(id), false, now, 0, WrapKey(master, payload, SlotAad(id))};
}

// The vault id slot's payload: the id, then zero padding up to a key's size.
Slot NewVaultIdSlot(const Aead& master, int64_t now) {
  SecretBytes payload = SecretBytes::Zeros(Aead::kKeyBytes);
  randombytes_buf(payload.mutable_data(InsecureSecretKeyAccess::Get()), kVaultIdBytes);
  return NewServiceSlot(master, kVaultIdId, payload, now);
}

bool SameState(const Image& a, const Image& b) {
  if (a.generation != b.generation || a.sealed_check != b.sealed_check ||
      a.slots.size() != b.slots.size()) {
    return false;
  }
  for (size_t i = 0; i < a.slots.size(); ++i) {
    const Slot& x = a.slots[i];
    const Slot& y = b.slots[i];
    if (x.id != y.id || x.destroyed != y.destroyed || x.created_unix != y.created_unix ||
        x.destroyed_unix != y.destroyed_unix || x.sealed != y.sealed) {
      return false;
    }
  }
  return true;
}

}  // namespace

StatusOr<std::unique_ptr<Keyring>> Keyring::Create(const KeyringOptions& options,
                                                   SecretBytes master_key) {
  PV_RETURN_IF_ERROR(ValidateOptions(options, master_key));
  KeyringFiles& files = options.files != nullptr ? *options.files : PosixKeyringFiles();
  for (const std::string& c : CopyPaths(options)) {
    if (files.Exists(c)) {
      return AlreadyExists("keyring copy " + c +
                           " already exists; a new keyring would orphan every key it holds");
    }
  }
  auto state = std::make_unique<State>();
  state->options = options;
  state->files = &files;
  PV_ASSIGN_OR_RETURN(state->master, Aead::Create(std::move(master_key)));
  PV_ASSIGN_OR_RETURN(state->mac, DeriveMacKey(*state->master));
  Image& image = state->image;
  image.generation = 1;
  image.sealed_check = state->master->Encrypt(kCheckPlaintext, kCheckAad);
  const int64_t now = NowUnix();
  for (std::string_view id : {kBlindIndexId, kAuditKeyId, kAuditSignId}) {
    image.slots.push_back(
        NewServiceSlot(*state->master, id, SecretBytes::Random(Aead::kKeyBytes), now));
  }
  image.slots.push_back(NewVaultIdSlot(*state->master, now));
  image.halves.assign(image.slots.size(), 0);
  const std::string bytes = Render(*state->mac, image, 0);
  for (const std::string& path : CopyPaths(options)) {
    PV_RETURN_IF_ERROR(files.Create(path, bytes));
    state->copies.push_back(State::Copy{path, true, bytes});
  }
  return Load(std::move(state));
}

StatusOr<std::unique_ptr<Keyring>> Keyring::Open(const KeyringOptions& options,
                                                 SecretBytes master_key) {
  PV_RETURN_IF_ERROR(ValidateOptions(options, master_key));
  KeyringFiles& files = options.files != nullptr ? *options.files : PosixKeyringFiles();
  const std::vector<std::string> paths = CopyPaths(options);
  if (!files.Exists(options.path)) {
    for (const std::string& m : options.mirrors) {
      if (files.Exists(m)) {
        return FailedPrecondition("keyring primary " + options.path + " is missing but mirror " +
                                  m + " exists; restore it first");
      }
    }
    return NotFound("no keyring at " + options.path + " or any mirror");
  }
  // Format 1 replaced its file through a temp file: one left behind is a full old copy.
  for (const std::string& path : paths) {
    PV_RETURN_IF_ERROR(files.Shred(path + ".tmp"));
  }

  auto state = std::make_unique<State>();
  State& st = *state;
  st.options = options;
  st.files = &files;
  PV_ASSIGN_OR_RETURN(st.master, Aead::Create(std::move(master_key)));
  PV_ASSIGN_OR_RETURN(st.mac, DeriveMacKey(*st.master));

  std::vector<CopyRead> reads;
  for (const std::string& path : paths) reads.push_back(ReadCopy(files, path, *st.master, *st.mac));
  std::optional<size_t> best;
  bool any_wrong_key = false, any_corrupt = false;
  for (size_t i = 0; i < reads.size(); ++i) {
    switch (reads[i].kind) {
      case CopyRead::Kind::kValid:
        if (!best || reads[i].image.generation > reads[*best].image.generation) best = i;
        break;
      case CopyRead::Kind::kWrongKey:
        any_wrong_key = true;
        break;
      case CopyRead::Kind::kCorrupt:
        any_corrupt = true;
        break;
      case CopyRead::Kind::kMissing:
        break;
    }
  }
  if (!best) {
    // A primary with no trace of this key says "wrong key" even when a mirror is damaged (by a
    // crash during a rotation, say): the right key opens the primary and repairs the mirror.
    if (reads[0].kind == CopyRead::Kind::kWrongKey || (any_wrong_key && !any_corrupt)) {
      return FailedPrecondition("master key does not match the keyring");
    }
    return reads[0].kind == CopyRead::Kind::kCorrupt
               ? reads[0].error
               : DataLoss("no copy of the keyring at " + options.path + " authenticates");
  }
  const CopyRead& primary = reads[0];
  if (primary.kind == CopyRead::Kind::kWrongKey) {
    // A mirror opens but the primary shows no trace of this key: most likely the primary was
    // rotated to a newer master key and the mirror was not; repairing it would undo that.
    return FailedPrecondition("master key does not match the keyring primary " + options.path +
                              ", but it matches mirror " + paths[*best] +
                              ": if the master key was rotated, use the new one; if the primary "
                              "is damaged, restore it from the mirror");
  }
  if (primary.kind == CopyRead::Kind::kValid &&
      reads[*best].image.generation > primary.image.generation) {
    return FailedPrecondition(
        "keyring mirror " + paths[*best] + " is newer (generation " +
        std::to_string(reads[*best].image.generation) + ") than the primary " + options.path +
        " (generation " + std::to_string(primary.image.generation) +
        "): the primary was rolled back or restored from an old copy, and using it would bring "
        "back destroyed keys; stop phivaultd, copy the newest mirror over the primary, and start "
        "again");
  }
  // The primary's state, or — when it does not authenticate — the newest copy's.
  st.image = primary.kind == CopyRead::Kind::kValid ? primary.image : reads[*best].image;
  for (size_t i = 0; i < paths.size(); ++i) {
    State::Copy c{paths[i], false, reads[i].bytes};
    c.in_sync = reads[i].kind == CopyRead::Kind::kValid && SameState(reads[i].image, st.image) &&
                reads[i].image.active_header == st.image.active_header &&
                reads[i].image.halves == st.image.halves && !reads[i].image.format1;
    st.copies.push_back(std::move(c));
  }
  // Copies that hold this state lose their leftovers (an interrupted update's halves or old
  // header): only bytes that should be zero change, so this is crash-safe.
  for (State::Copy& c : st.copies) {
    if (c.in_sync) PV_RETURN_IF_ERROR(st.Repair(c));
  }

  // Tombstones from every copy that authenticates: a destroyed key is never brought back. And
  // keys that only a diverged copy holds (same generation, other history) are kept, unless
  // destroyed somewhere: records may be sealed under them.
  Image next = st.NextImage();
  if (st.image.format1) {
    // No copy is in sync yet (all are repaired to `next`): keep header region 0, which
    // overlaps the format-1 bytes, for last.
    next.active_header = st.image.active_header;
  }
  next.format1 = false;
  st.image.format1 = false;
  bool changed = false;
  for (const CopyRead& r : reads) {
    if (r.kind != CopyRead::Kind::kValid) continue;
    for (const Slot& t : r.image.slots) {
      auto it = std::find_if(next.slots.begin(), next.slots.end(),
                             [&](const Slot& s) { return s.id == t.id; });
      if (!t.destroyed) {
        if (it == next.slots.end() && !IsServiceId(t.id)) {
          next.slots.push_back(t);
          next.halves.push_back(0);
          changed = true;
        }
        continue;
      }
      if (it == next.slots.end()) {
        next.slots.push_back(t);
        next.halves.push_back(0);
        changed = true;
      } else if (!it->destroyed) {
        if (IsServiceId(it->id)) return DataLoss("keyring service key " + it->id + " is destroyed");
        it->destroyed = true;
        it->destroyed_unix = t.destroyed_unix;
        it->sealed.assign(kSealedBytes, '\0');
        next.halves[static_cast<size_t>(it - next.slots.begin())] ^= 1;
        changed = true;
      }
    }
  }
  if (std::none_of(next.slots.begin(), next.slots.end(),
                   [](const Slot& s) { return s.id == kVaultIdId; })) {
    // Written before keyrings were bound to their database: give it its id once.
    next.slots.push_back(NewVaultIdSlot(*st.master, NowUnix()));
    next.halves.push_back(0);
    changed = true;
  }
  if (changed) {
    bool primary_written = false;
    PV_RETURN_IF_ERROR(st.Commit(std::move(next), nullptr, /*stop_if_primary_fails=*/false,
                                 /*repair_behind_first=*/false, &primary_written));
  }
  PV_RETURN_IF_ERROR(st.SyncCopies());
  return Load(std::move(state));
}

StatusOr<std::unique_ptr<Keyring>> Keyring::Load(std::unique_ptr<State> state) {
  std::unique_ptr<Keyring> keyring(new Keyring());
  MutexLock lock(keyring->mu_);  // uncontended: no other thread has `keyring` yet
  keyring->state_ = std::move(state);
  State& st = *keyring->state_;
  for (const Slot& s : st.image.slots) {
    if (s.destroyed) {
      if (IsServiceId(s.id)) return DataLoss("keyring service key " + s.id + " is destroyed");
      continue;
    }
    auto key = UnwrapKey(*st.master, s.sealed, SlotAad(s.id));
    if (!key.ok()) return DataLoss("keyring slot " + s.id + " failed authentication");
    if (s.id == kBlindIndexId) {
      PV_ASSIGN_OR_RETURN(keyring->blind_index_, BlindIndex::Create(std::move(*key)));
    } else if (s.id == kAuditKeyId) {
      PV_ASSIGN_OR_RETURN(keyring->audit_key_, Aead::Create(std::move(*key)));
    } else if (s.id == kAuditSignId) {
      PV_ASSIGN_OR_RETURN(keyring->audit_signer_, Ed25519Signer::Create(std::move(*key)));
    } else if (s.id == kVaultIdId) {
      const std::string_view payload = key->view(InsecureSecretKeyAccess::Get());
      if (!AllZero(payload.substr(kVaultIdBytes))) {
        return DataLoss("keyring vault id slot is malformed");
      }
      keyring->vault_id_ = HexEncode(payload.substr(0, kVaultIdBytes));
    } else if (IsServiceId(s.id)) {
      return DataLoss("keyring has an unknown service key " + s.id);
    } else {
      PV_ASSIGN_OR_RETURN(std::unique_ptr<Aead> aead, Aead::Create(std::move(*key)));
      st.epoch_keys.emplace(s.id, std::move(aead));
    }
  }
  if (!keyring->blind_index_ || !keyring->audit_key_ || !keyring->audit_signer_ ||
      keyring->vault_id_.empty()) {
    return DataLoss("keyring lacks a service key");
  }
  return keyring;
}

StatusOr<std::shared_ptr<const Aead>> Keyring::GetOrCreateEpoch(std::string_view epoch_id) {
  if (!IsValidEpochId(epoch_id)) {
    return InvalidArgument("epoch id must be d<YYYYMMDD> or h<hold id of 1-40 [A-Za-z0-9_-]>");
  }
  MutexLock lock(mu_);
  State& st = *state_;
  if (auto it = st.epoch_keys.find(epoch_id); it != st.epoch_keys.end()) {
    if (st.copies_stale) PV_RETURN_IF_ERROR(st.SyncCopies());
    return it->second;
  }
  if (st.Find(epoch_id)) return FailedPrecondition("epoch key was destroyed");
  if (st.image.slots.size() >= kMaxEntries) {
    return ResourceExhausted("keyring is full (" + std::to_string(kMaxEntries) + " slots)");
  }

  std::shared_ptr<const Aead> key = Aead::Generate();
  Image next = st.NextImage();
  next.slots.push_back(
      Slot{std::string(epoch_id), false, NowUnix(), 0,
           WrapKey(*st.master, key->key(InsecureSecretKeyAccess::Get()), SlotAad(epoch_id))});
  next.halves.push_back(0);
  bool primary_written = false;
  Status s = st.Commit(std::move(next), nullptr, /*stop_if_primary_fails=*/true,
                       /*repair_behind_first=*/true, &primary_written);
  if (!primary_written) return s;
  st.epoch_keys.emplace(std::string(epoch_id), key);
  if (!s.ok()) return s;
  return key;
}

StatusOr<std::shared_ptr<const Aead>> Keyring::GetEpoch(std::string_view epoch_id) const {
  if (!IsValidEpochId(epoch_id)) {
    return InvalidArgument("epoch id must be d<YYYYMMDD> or h<hold id of 1-40 [A-Za-z0-9_-]>");
  }
  MutexLock lock(mu_);
  if (auto it = state_->epoch_keys.find(epoch_id); it != state_->epoch_keys.end()) {
    return it->second;
  }
  if (state_->Find(epoch_id)) return FailedPrecondition("epoch key was destroyed");
  return NotFound("epoch key does not exist");
}

Status Keyring::DestroyEpoch(std::string_view epoch_id) {
  if (!IsValidEpochId(epoch_id)) {
    return InvalidArgument("epoch id must be d<YYYYMMDD> or h<hold id of 1-40 [A-Za-z0-9_-]>");
  }
  MutexLock lock(mu_);
  State& st = *state_;
  const std::optional<size_t> index = st.Find(epoch_id);
  if (!index) return NotFound("epoch key does not exist");
  if (st.image.slots[*index].destroyed) return st.copies_stale ? st.SyncCopies() : Status::Ok();
  st.epoch_keys.erase(st.epoch_keys.find(epoch_id));
  Image next = st.NextImage();
  Slot& slot = next.slots[*index];
  slot.destroyed = true;
  slot.destroyed_unix = NowUnix();
  slot.sealed.assign(kSealedBytes, '\0');
  next.halves[*index] ^= 1;
  bool primary_written = false;
  // Copies that fell behind go straight to the tombstone: repairing them to the current state
  // first would write the key being destroyed into them once more.
  return st.Commit(std::move(next), nullptr, /*stop_if_primary_fails=*/false,
                   /*repair_behind_first=*/false, &primary_written);
}

Status Keyring::DestroyEpochs(const std::vector<std::string>& epoch_ids) {
  for (const auto& id : epoch_ids) {
    if (!IsValidEpochId(id)) {
      return InvalidArgument("epoch id must be d<YYYYMMDD> or h<hold id of 1-40 [A-Za-z0-9_-]>");
    }
  }
  MutexLock lock(mu_);
  State& st = *state_;
  std::vector<size_t> live;
  for (const auto& id : epoch_ids) {
    const std::optional<size_t> index = st.Find(id);
    if (!index) return NotFound("epoch key " + id + " does not exist");
    if (!st.image.slots[*index].destroyed &&
        std::find(live.begin(), live.end(), *index) == live.end()) {
      live.push_back(*index);
    }
  }
  if (live.empty()) return st.copies_stale ? st.SyncCopies() : Status::Ok();
  Image next = st.NextImage();
  const int64_t now = NowUnix();
  for (size_t index : live) {
    st.epoch_keys.erase(st.image.slots[index].id);
    Slot& slot = next.slots[index];
    slot.destroyed = true;
    slot.destroyed_unix = now;
    slot.sealed.assign(kSealedBytes, '\0');
    next.halves[index] ^= 1;
  }
  bool primary_written = false;
  return st.Commit(std::move(next), nullptr, /*stop_if_primary_fails=*/false,
                   /*repair_behind_first=*/false, &primary_written);
}

Status Keyring::Rotate(SecretBytes new_master_key) {
  if (new_master_key.size() != kMasterKeyBytes) {
    return InvalidArgument("master key must be 32 bytes");
  }
  PV_ASSIGN_OR_RETURN(std::unique_ptr<Aead> new_master, Aead::Create(std::move(new_master_key)));
  PV_ASSIGN_OR_RETURN(std::unique_ptr<BlindIndex> new_mac, DeriveMacKey(*new_master));
  MutexLock lock(mu_);
  State& st = *state_;
  Image next = st.NextImage();
  for (size_t i = 0; i < next.slots.size(); ++i) {
    Slot& s = next.slots[i];
    // Every slot moves: live keys are re-sealed, and every MAC is under the new key.
    next.halves[i] ^= 1;
    if (s.destroyed) continue;
    auto key = UnwrapKey(*st.master, s.sealed, SlotAad(s.id));
    if (!key.ok()) return Internal("keyring slot " + s.id + " no longer opens in memory");
    s.sealed = WrapKey(*new_master, *key, SlotAad(s.id));
  }
  next.sealed_check = new_master->Encrypt(kCheckPlaintext, kCheckAad);
  bool primary_written = false;
  Status s = st.Commit(std::move(next), std::move(new_mac), /*stop_if_primary_fails=*/true,
                       /*repair_behind_first=*/true, &primary_written);
  if (primary_written) st.master = std::move(new_master);
  return s;
}

StatusOr<Keyring::CopyInfo> Keyring::InspectCopy(std::string_view bytes,
                                                 const SecretBytes& master_key,
                                                 std::string* clean) {
  if (master_key.size() != kMasterKeyBytes) return InvalidArgument("master key must be 32 bytes");
  PV_RETURN_IF_ERROR(InitSodium());
  PV_ASSIGN_OR_RETURN(
      std::unique_ptr<Aead> master,
      Aead::Create(SecretBytes::CopyFrom(master_key.view(InsecureSecretKeyAccess::Get()),
                                         InsecureSecretKeyAccess::Get())));
  PV_ASSIGN_OR_RETURN(std::unique_ptr<BlindIndex> mac, DeriveMacKey(*master));
  CopyRead read = ClassifyCopy(std::string(bytes), "(copy)", *master, *mac);
  switch (read.kind) {
    case CopyRead::Kind::kValid:
      break;
    case CopyRead::Kind::kWrongKey:
      return FailedPrecondition("master key does not match the keyring");
    case CopyRead::Kind::kMissing:
    case CopyRead::Kind::kCorrupt:
      return DataLoss(
          "the keyring copy failed authentication (altered, zeroed, truncated or "
          "torn)");
  }
  if (read.image.format1) {
    return FailedPrecondition("a format-1 keyring: open it with phivaultd once to migrate it");
  }
  CopyInfo info;
  info.generation = read.image.generation;
  for (const Slot& s : read.image.slots) {
    if (s.id == kVaultIdId && !s.destroyed) {
      auto payload = UnwrapKey(*master, s.sealed, SlotAad(s.id));
      if (!payload.ok()) return DataLoss("keyring vault id slot failed authentication");
      info.vault_id =
          HexEncode(payload->view(InsecureSecretKeyAccess::Get()).substr(0, kVaultIdBytes));
    } else if (!IsServiceId(s.id)) {
      if (!s.destroyed && !UnwrapKey(*master, s.sealed, SlotAad(s.id)).ok()) {
        return DataLoss("keyring slot " + s.id + " failed authentication");
      }
      ++(s.destroyed ? info.destroyed_epochs : info.live_epochs);
    }
  }
  if (info.vault_id.empty()) return DataLoss("the keyring copy has no vault id");
  if (clean != nullptr) *clean = Render(*mac, read.image, 0);
  return info;
}

std::vector<Keyring::EpochInfo> Keyring::ListEpochs() const {
  MutexLock lock(mu_);
  std::vector<EpochInfo> out;
  for (const Slot& s : state_->image.slots) {
    if (IsServiceId(s.id)) continue;
    out.push_back(EpochInfo{s.id, s.destroyed, s.created_unix, s.destroyed_unix});
  }
  return out;
}

uint64_t Keyring::generation() const {
  MutexLock lock(mu_);
  return state_->image.generation;
}

bool Keyring::SealedUnder(const SecretBytes& master_key) const {
  MutexLock lock(mu_);
  return ConstantTimeEquals(
      state_->master->key(InsecureSecretKeyAccess::Get()).view(InsecureSecretKeyAccess::Get()),
      master_key.view(InsecureSecretKeyAccess::Get()));
}

const Aead& Keyring::audit_key() const { return *audit_key_; }
const BlindIndex& Keyring::blind_index() const { return *blind_index_; }
const Ed25519Signer& Keyring::audit_signer() const { return *audit_signer_; }
const std::string& Keyring::vault_id() const { return vault_id_; }

}  // namespace phivault::crypto
