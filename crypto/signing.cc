#include "crypto/signing.h"

#include <sodium.h>

#include "crypto/hash.h"

namespace phivault::crypto {
namespace {

static_assert(Ed25519Signer::kSeedBytes == crypto_sign_SEEDBYTES);

constexpr char kAlgEd25519 = 0x01;
constexpr std::string_view kSigPrefix = "\xe2\x80\x94 ";  // U+2014 EM DASH, space
constexpr size_t kMaxSignatures = 100;                    // as golang.org/x/mod/sumdb/note

const unsigned char* Bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

// Calls f on each code point of `s`; false if `s` is not valid UTF-8 or f returns false.
template <typename F>
bool ForEachCodePoint(std::string_view s, F f) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t len = 1;
    uint32_t cp = c;
    if (c >= 0x80) {
      if ((c & 0xe0) == 0xc0) {
        len = 2;
        cp = c & 0x1f;
      } else if ((c & 0xf0) == 0xe0) {
        len = 3;
        cp = c & 0x0f;
      } else if ((c & 0xf8) == 0xf0) {
        len = 4;
        cp = c & 0x07;
      } else {
        return false;
      }
      if (i + len > s.size()) return false;
      for (size_t k = 1; k < len; ++k) {
        const auto cc = static_cast<unsigned char>(s[i + k]);
        if ((cc & 0xc0) != 0x80) return false;
        cp = (cp << 6) | (cc & 0x3f);
      }
      const bool overlong =
          (len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
      if (overlong || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    }
    if (!f(cp)) return false;
    i += len;
  }
  return true;
}

// Unicode White_Space, as Go's unicode.IsSpace.
bool IsSpace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0d) || cp == 0x20 || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
         cp == 0x205f || cp == 0x3000;
}

// Key names (C2SP signed-note): non-empty UTF-8, no "+", no whitespace or control characters.
bool IsValidName(std::string_view name) {
  return !name.empty() && ForEachCodePoint(name, [](uint32_t cp) {
    return cp >= 0x20 && cp != 0x7f && cp != '+' && !IsSpace(cp);
  });
}

// Valid UTF-8 without ASCII control characters other than newline (what a note may contain).
bool IsValidNoteText(std::string_view s) {
  return ForEachCodePoint(s, [](uint32_t cp) { return cp >= 0x20 || cp == '\n'; });
}

}  // namespace

StatusOr<std::unique_ptr<Ed25519Signer>> Ed25519Signer::Create(SecretBytes seed) {
  if (seed.size() != kSeedBytes) return InvalidArgument("ed25519 seed must be 32 bytes");
  SecretBytes secret_key = SecretBytes::Zeros(crypto_sign_SECRETKEYBYTES);
  std::string public_key(crypto_sign_PUBLICKEYBYTES, '\0');
  crypto_sign_seed_keypair(reinterpret_cast<unsigned char*>(public_key.data()),
                           secret_key.mutable_data(InsecureSecretKeyAccess::Get()),
                           seed.data(InsecureSecretKeyAccess::Get()));
  return std::unique_ptr<Ed25519Signer>(
      new Ed25519Signer(std::move(secret_key), std::move(public_key)));
}

std::string Ed25519Signer::Sign(std::string_view message) const {
  std::string signature(crypto_sign_BYTES, '\0');
  crypto_sign_detached(reinterpret_cast<unsigned char*>(signature.data()), nullptr, Bytes(message),
                       message.size(), secret_key_.data(InsecureSecretKeyAccess::Get()));
  return signature;
}

bool Ed25519Verify(std::string_view public_key, std::string_view message,
                   std::string_view signature) {
  if (public_key.size() != crypto_sign_PUBLICKEYBYTES || signature.size() != crypto_sign_BYTES) {
    return false;
  }
  return crypto_sign_verify_detached(Bytes(signature), Bytes(message), message.size(),
                                     Bytes(public_key)) == 0;
}

std::string NoteKeyId(std::string_view name, std::string_view public_key) {
  const Sha256Digest d = Sha256({name, "\n", std::string_view(&kAlgEd25519, 1), public_key});
  return std::string(AsView(d).substr(0, 4));
}

std::string NoteVerifierKey(std::string_view name, std::string_view public_key) {
  std::string key(1, kAlgEd25519);
  key.append(public_key);
  return std::string(name) + "+" + HexEncode(NoteKeyId(name, public_key)) + "+" + Base64Encode(key);
}

StatusOr<NoteVerifier> ParseNoteVerifierKey(std::string_view vkey) {
  const size_t plus1 = vkey.find('+');
  const size_t plus2 = plus1 == std::string_view::npos ? plus1 : vkey.find('+', plus1 + 1);
  if (plus2 == std::string_view::npos) {
    return InvalidArgument("verifier key must be <name>+<key id>+<key>");
  }
  const std::string_view name = vkey.substr(0, plus1);
  const std::string_view id_hex = vkey.substr(plus1 + 1, plus2 - plus1 - 1);
  if (!IsValidName(name)) return InvalidArgument("verifier key has an invalid name");
  auto id = HexDecode(id_hex);
  if (id_hex.size() != 8 || !id.ok()) {
    return InvalidArgument("verifier key id must be 8 hex digits");
  }
  auto key = Base64Decode(vkey.substr(plus2 + 1));
  if (!key.ok()) return InvalidArgument("verifier key is not valid base64");
  if (key->empty() || (*key)[0] != kAlgEd25519) {
    return InvalidArgument("verifier key algorithm must be Ed25519 (0x01)");
  }
  if (key->size() != 1 + crypto_sign_PUBLICKEYBYTES) {
    return InvalidArgument("verifier key must hold a 32-byte Ed25519 public key");
  }
  NoteVerifier v{std::string(name), key->substr(1)};
  if (NoteKeyId(v.name, v.public_key) != *id) {
    return InvalidArgument("verifier key id does not match its name and key");
  }
  return v;
}

StatusOr<std::string> SignNote(std::string_view text, std::string_view name,
                               const Ed25519Signer& signer) {
  if (text.empty() || text.back() != '\n') return InvalidArgument("note text must end in newline");
  if (text.find("\n\n") != std::string_view::npos) {
    return InvalidArgument("note text must not contain a blank line");
  }
  if (!IsValidNoteText(text)) {
    return InvalidArgument("note text must be UTF-8 without control characters");
  }
  if (!IsValidName(name)) return InvalidArgument("note key name is invalid");
  std::string note(text);
  note += '\n';
  note += kSigPrefix;
  note += name;
  note += ' ';
  note += Base64Encode(NoteKeyId(name, signer.public_key()) + signer.Sign(text));
  note += '\n';
  return note;
}

StatusOr<std::string> VerifyNote(std::string_view note, const NoteVerifier& verifier) {
  if (!IsValidNoteText(note)) {
    return InvalidArgument("note must be UTF-8 without control characters");
  }
  const size_t split = note.rfind("\n\n");
  if (split == std::string_view::npos) {
    return InvalidArgument("note has no signature block after a blank line");
  }
  const std::string_view text = note.substr(0, split + 1);
  std::string_view sigs = note.substr(split + 2);
  if (sigs.empty() || sigs.back() != '\n') {
    return InvalidArgument("note signature block must end in newline");
  }
  const std::string key_id = NoteKeyId(verifier.name, verifier.public_key);
  bool found = false;
  size_t count = 0;
  while (!sigs.empty()) {
    const size_t eol = sigs.find('\n');
    std::string_view line = sigs.substr(0, eol);
    sigs.remove_prefix(eol + 1);
    if (++count > kMaxSignatures) return InvalidArgument("note has too many signatures");
    if (line.substr(0, kSigPrefix.size()) != kSigPrefix) {
      return InvalidArgument("note signature line must start with an em dash");
    }
    line.remove_prefix(kSigPrefix.size());
    const size_t space = line.find(' ');
    if (space == std::string_view::npos) return InvalidArgument("malformed note signature line");
    const std::string_view name = line.substr(0, space);
    auto sig = Base64Decode(line.substr(space + 1));
    if (!IsValidName(name) || !sig.ok() || sig->size() < 5) {
      return InvalidArgument("malformed note signature line");
    }
    if (name != verifier.name || sig->substr(0, 4) != key_id) continue;
    if (!Ed25519Verify(verifier.public_key, text, sig->substr(4))) {
      return DataLoss("note signature does not verify");
    }
    found = true;
  }
  if (!found) return NotFound("no signature by " + verifier.name);
  return std::string(text);
}

}  // namespace phivault::crypto
