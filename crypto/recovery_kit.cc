#include "crypto/recovery_kit.h"

// libgfshare.h declares C functions without extern "C".
extern "C" {
#include <libgfshare.h>
}
#include <sodium.h>

#include <algorithm>
#include <array>
#include <map>
#include <mutex>
#include <set>

#include "crypto/hash.h"
#include "crypto/master_key.h"

namespace phivault::crypto {
namespace {

constexpr uint8_t kFormat = 1;
constexpr size_t kKitIdBytes = 4;
constexpr size_t kShareBytes = kMasterKeyBytes;
constexpr size_t kKcvBytes = 8;
constexpr size_t kChecksumBytes = 4;
constexpr size_t kBodyBytes = 1 + kKitIdBytes + 3 + kShareBytes + kKcvBytes;  // 48
constexpr size_t kPayloadBytes = kBodyBytes + kChecksumBytes;                 // 52
constexpr size_t kTextChars = (kPayloadBytes * 8 + 4) / 5;                    // 84
constexpr size_t kGroupChars = 4;
constexpr std::string_view kPrefix = "PVRK";
constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
constexpr std::string_view kKcvDomain = "phivault/recovery-kit/kcv/v1";
// Offsets in the payload.
constexpr size_t kOffKit = 1;
constexpr size_t kOffThreshold = kOffKit + kKitIdBytes;
constexpr size_t kOffCount = kOffThreshold + 1;
constexpr size_t kOffNumber = kOffCount + 1;
constexpr size_t kOffShare = kOffNumber + 1;
constexpr size_t kOffKcv = kOffShare + kShareBytes;

const InsecureSecretKeyAccess kAccess = InsecureSecretKeyAccess::Get();

void FillRandom(unsigned char* buf, unsigned int n) { randombytes_buf(buf, n); }

// libgfshare draws its polynomial coefficients from this global; it is NULL until set.
void UseSodiumRandomness() {
  static std::once_flag once;
  std::call_once(once, [] { gfshare_fill_rand = FillRandom; });
}

std::string Kcv(const SecretBytes& key, std::string_view kit_id) {
  std::string msg(kKcvDomain);
  msg.append(kit_id);
  std::array<unsigned char, 32> out;
  crypto_generichash(out.data(), out.size(), reinterpret_cast<const unsigned char*>(msg.data()),
                     msg.size(), key.data(kAccess), key.size());
  return std::string(reinterpret_cast<const char*>(out.data()), kKcvBytes);
}

void Checksum(const uint8_t* body, uint8_t* out) {
  std::array<unsigned char, 32> h;
  crypto_generichash(h.data(), h.size(), body, kBodyBytes, nullptr, 0);
  std::copy_n(h.begin(), kChecksumBytes, out);
}

// "PVRK-XXXX-XXXX-..." for the 52 payload bytes.
SecretBytes EncodeText(const SecretBytes& payload) {
  const size_t groups = kTextChars / kGroupChars;
  SecretBytes text = SecretBytes::Zeros(kPrefix.size() + groups * (kGroupChars + 1));
  char* out = reinterpret_cast<char*>(text.mutable_data(kAccess));
  size_t pos = 0;
  for (char c : kPrefix) out[pos++] = c;
  const uint8_t* in = payload.data(kAccess);
  uint32_t buffer = 0;
  int bits = 0;
  size_t chars = 0;
  auto emit = [&](uint32_t v) {
    if (chars % kGroupChars == 0) out[pos++] = '-';
    out[pos++] = kAlphabet[v & 31];
    ++chars;
  };
  for (size_t i = 0; i < kPayloadBytes; ++i) {
    buffer = (buffer << 8) | in[i];
    bits += 8;
    while (bits >= 5) {
      emit(buffer >> (bits - 5));
      bits -= 5;
    }
  }
  if (bits > 0) emit(buffer << (5 - bits));
  buffer = 0;
  return text;
}

std::string Named(int position) { return "share " + std::to_string(position); }

// The payload of a share's text, checksum verified.
StatusOr<SecretBytes> DecodeText(const SecretBytes& text, int position) {
  const std::string_view raw = text.view(kAccess);
  // Upper-cased, without separators.
  SecretBytes clean = SecretBytes::Zeros(raw.size() == 0 ? 1 : raw.size());
  char* c = reinterpret_cast<char*>(clean.mutable_data(kAccess));
  size_t n = 0;
  for (char ch : raw) {
    if (ch == ' ' || ch == '-' || ch == '\t' || ch == '\r' || ch == '\n') continue;
    c[n++] = (ch >= 'a' && ch <= 'z') ? static_cast<char>(ch - 'a' + 'A') : ch;
  }
  const std::string_view s(c, n);
  if (s.substr(0, kPrefix.size()) != kPrefix) {
    return InvalidArgument(Named(position) +
                           ": not a recovery-kit share (it must start with PVRK)");
  }
  const std::string_view code = s.substr(kPrefix.size());
  for (size_t i = 0; i < code.size(); ++i) {
    if (kAlphabet.find(code[i]) == std::string_view::npos) {
      const std::string shown =
          (code[i] >= 0x21 && code[i] <= 0x7e) ? std::string(1, code[i]) : std::string("?");
      std::string hint;
      if (code[i] == '0') hint = " (did you mean the letter O?)";
      if (code[i] == '1') hint = " (did you mean the letter I?)";
      if (code[i] == '8') hint = " (did you mean the letter B?)";
      return InvalidArgument(Named(position) + ": '" + shown + "' in group " +
                             std::to_string(i / kGroupChars + 1) +
                             " is not in the share alphabet (A-Z, 2-7)" + hint);
    }
  }
  if (code.size() != kTextChars) {
    return InvalidArgument(Named(position) + ": it has " + std::to_string(code.size()) +
                           " characters after PVRK, a share has " + std::to_string(kTextChars) +
                           " (a group is missing, extra or incomplete)");
  }
  SecretBytes payload = SecretBytes::Zeros(kPayloadBytes);
  uint8_t* out = payload.mutable_data(kAccess);
  uint32_t buffer = 0;
  int bits = 0;
  size_t got = 0;
  for (char ch : code) {
    buffer = (buffer << 5) | static_cast<uint32_t>(kAlphabet.find(ch));
    bits += 5;
    if (bits >= 8) {
      out[got++] = static_cast<uint8_t>(buffer >> (bits - 8));
      bits -= 8;
    }
    buffer &= 0xff;
  }
  std::array<uint8_t, kChecksumBytes> sum;
  Checksum(out, sum.data());
  const bool padding_zero = (buffer & ((1u << bits) - 1)) == 0;
  buffer = 0;
  if (got != kPayloadBytes || !padding_zero ||
      !ConstantTimeEquals(
          std::string_view(reinterpret_cast<const char*>(sum.data()), sum.size()),
          std::string_view(reinterpret_cast<const char*>(out + kBodyBytes), kChecksumBytes))) {
    return InvalidArgument(Named(position) +
                           ": checksum mismatch: a character is mistyped (compare it with the "
                           "printed share group by group)");
  }
  if (out[0] != kFormat) {
    return InvalidArgument(Named(position) + ": recovery-kit format " + std::to_string(out[0]) +
                           " is not supported by this version");
  }
  const int threshold = out[kOffThreshold], count = out[kOffCount], number = out[kOffNumber];
  if (threshold < 2 || threshold > count || number < 1 || number > count) {
    return InvalidArgument(Named(position) + ": its share number or threshold is malformed");
  }
  return payload;
}

RecoveryShareInfo InfoOf(const SecretBytes& payload) {
  const uint8_t* p = payload.data(kAccess);
  RecoveryShareInfo info;
  info.kit_id =
      HexEncode(std::string_view(reinterpret_cast<const char*>(p + kOffKit), kKitIdBytes));
  info.threshold = p[kOffThreshold];
  info.count = p[kOffCount];
  info.number = p[kOffNumber];
  return info;
}

struct GfshareCtx {
  gfshare_ctx* ctx;
  ~GfshareCtx() {
    if (ctx != nullptr) gfshare_ctx_free(ctx);
  }
};

}  // namespace

StatusOr<std::vector<SecretBytes>> CreateRecoveryKit(const SecretBytes& master_key, int count,
                                                     int threshold) {
  if (master_key.size() != kMasterKeyBytes) return InvalidArgument("master key must be 32 bytes");
  if (count > kMaxRecoveryShares) return InvalidArgument("at most 255 shares");
  if (threshold < 2) return InvalidArgument("threshold must be at least 2");
  if (threshold > count) return InvalidArgument("threshold must not exceed the number of shares");
  PV_RETURN_IF_ERROR(InitSodium());
  UseSodiumRandomness();

  const std::string kit_id = RandomBytes(kKitIdBytes);
  const std::string kcv = Kcv(master_key, kit_id);
  std::vector<unsigned char> numbers(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i)
    numbers[static_cast<size_t>(i)] = static_cast<unsigned char>(i + 1);
  GfshareCtx enc{gfshare_ctx_init_enc(numbers.data(), static_cast<unsigned int>(count),
                                      static_cast<unsigned char>(threshold), kShareBytes)};
  if (enc.ctx == nullptr) return ResourceExhausted("libgfshare could not allocate its context");
  SecretBytes secret = SecretBytes::CopyFrom(master_key.view(kAccess), kAccess);
  gfshare_ctx_enc_setsecret(enc.ctx, secret.mutable_data(kAccess));

  std::vector<SecretBytes> out;
  for (int i = 0; i < count; ++i) {
    SecretBytes payload = SecretBytes::Zeros(kPayloadBytes);
    uint8_t* p = payload.mutable_data(kAccess);
    p[0] = kFormat;
    std::copy(kit_id.begin(), kit_id.end(), p + kOffKit);
    p[kOffThreshold] = static_cast<uint8_t>(threshold);
    p[kOffCount] = static_cast<uint8_t>(count);
    p[kOffNumber] = static_cast<uint8_t>(i + 1);
    gfshare_ctx_enc_getshare(enc.ctx, static_cast<unsigned char>(i), p + kOffShare);
    std::copy(kcv.begin(), kcv.end(), p + kOffKcv);
    Checksum(p, p + kBodyBytes);
    out.push_back(EncodeText(payload));
  }
  return out;
}

StatusOr<RecoveryShareInfo> InspectRecoveryShare(const SecretBytes& text, int position) {
  PV_ASSIGN_OR_RETURN(SecretBytes payload, DecodeText(text, position));
  return InfoOf(payload);
}

StatusOr<SecretBytes> CombineRecoveryShares(const std::vector<SecretBytes>& texts) {
  if (texts.empty()) return FailedPrecondition("no shares given");
  std::vector<SecretBytes> payloads;
  std::vector<RecoveryShareInfo> infos;
  for (size_t i = 0; i < texts.size(); ++i) {
    PV_ASSIGN_OR_RETURN(SecretBytes payload, DecodeText(texts[i], static_cast<int>(i + 1)));
    infos.push_back(InfoOf(payload));
    payloads.push_back(std::move(payload));
  }
  const RecoveryShareInfo& first = infos[0];
  std::map<int, size_t> by_number;
  for (size_t i = 0; i < infos.size(); ++i) {
    const RecoveryShareInfo& info = infos[i];
    const std::string_view kcv_i(reinterpret_cast<const char*>(payloads[i].data(kAccess) + kOffKcv),
                                 kKcvBytes);
    const std::string_view kcv_0(reinterpret_cast<const char*>(payloads[0].data(kAccess) + kOffKcv),
                                 kKcvBytes);
    if (info.kit_id != first.kit_id || info.threshold != first.threshold ||
        info.count != first.count || kcv_i != kcv_0) {
      return InvalidArgument(
          Named(static_cast<int>(i + 1)) + " is from another recovery kit (kit " + info.kit_id +
          ", " + std::to_string(info.threshold) + " of " + std::to_string(info.count) +
          ") than share 1 (kit " + first.kit_id + ", " + std::to_string(first.threshold) + " of " +
          std::to_string(first.count) + ")");
    }
    auto [it, inserted] = by_number.emplace(info.number, i);
    if (!inserted) {
      return InvalidArgument(Named(static_cast<int>(it->second + 1)) + " and " +
                             Named(static_cast<int>(i + 1)) + " are both share number " +
                             std::to_string(info.number) + " of kit " + info.kit_id);
    }
  }
  const int threshold = first.threshold;
  if (static_cast<int>(payloads.size()) < threshold) {
    return FailedPrecondition(std::to_string(threshold) +
                              " shares are needed to restore the key, " +
                              std::to_string(payloads.size()) + " given");
  }
  PV_RETURN_IF_ERROR(InitSodium());
  UseSodiumRandomness();
  // Exactly `threshold` shares interpolate the polynomial; more add nothing.
  std::vector<unsigned char> numbers;
  for (int i = 0; i < threshold; ++i) {
    numbers.push_back(static_cast<unsigned char>(infos[static_cast<size_t>(i)].number));
  }
  GfshareCtx dec{
      gfshare_ctx_init_dec(numbers.data(), static_cast<unsigned int>(threshold), kShareBytes)};
  if (dec.ctx == nullptr) return ResourceExhausted("libgfshare could not allocate its context");
  for (int i = 0; i < threshold; ++i) {
    SecretBytes share = SecretBytes::CopyFrom(
        std::string_view(reinterpret_cast<const char*>(
                             payloads[static_cast<size_t>(i)].data(kAccess) + kOffShare),
                         kShareBytes),
        kAccess);
    gfshare_ctx_dec_giveshare(dec.ctx, static_cast<unsigned char>(i), share.mutable_data(kAccess));
  }
  SecretBytes key = SecretBytes::Zeros(kMasterKeyBytes);
  gfshare_ctx_dec_extract(dec.ctx, key.mutable_data(kAccess));
  const std::string kit_raw(reinterpret_cast<const char*>(payloads[0].data(kAccess) + kOffKit),
                            kKitIdBytes);
  const std::string_view kcv(reinterpret_cast<const char*>(payloads[0].data(kAccess) + kOffKcv),
                             kKcvBytes);
  if (!ConstantTimeEquals(Kcv(key, kit_raw), kcv)) {
    return FailedPrecondition(
        "the shares do not restore the key (key check value mismatch): not enough shares, or "
        "wrong shares");
  }
  return key;
}

}  // namespace phivault::crypto
