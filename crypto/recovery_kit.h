// The recovery kit: the master key split into Shamir shares (libgfshare, GF(2^8)), each a line of
// text a person can read aloud and type back, so that any `threshold` of the `shares` holders
// together can restore the key, and fewer learn nothing about it (docs/keys.md).
//
// A share's text is "PVRK-" followed by 21 groups of 4 characters of RFC 4648 base32 (A-Z, 2-7),
// joined by '-', encoding 52 bytes:
//   u8 format (1) | kit id (4) | u8 threshold | u8 share count | u8 share number (1..count) |
//   share (32) | key check value (8) | checksum (4)
// The key check value is the first 8 bytes of keyed BLAKE2b-256 (key = the master key) of
// "phivault/recovery-kit/kcv/v1" || kit id: it lets `Combine` tell a restored key from the
// garbage that too few or mixed-up shares interpolate to, without revealing the key. The checksum
// is the first 4 bytes of unkeyed BLAKE2b-256 of the 48 bytes before it, so a mistyped character
// is caught and the share that holds it is named. On input, case, spaces and dashes are ignored.
//
// Share texts live in SecretBytes (locked memory). libgfshare keeps its working copy in ordinary
// heap memory for the duration of one call and overwrites it with random bytes when freed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "crypto/secret.h"

namespace phivault::crypto {

inline constexpr int kMaxRecoveryShares = 255;

struct RecoveryShareInfo {
  std::string kit_id;  // 8 lowercase hex characters, the same in every share of a kit
  int number = 0;      // 1..count
  int count = 0;
  int threshold = 0;
};

// Splits the 32-byte `master_key` into `count` shares of which any `threshold` restore it. Each
// share's text (as above) is returned in order of its number. InvalidArgument "threshold must be
// at least 2" / "threshold must not exceed the number of shares" / "at most 255 shares" / "master
// key must be 32 bytes".
[[nodiscard]] StatusOr<std::vector<SecretBytes>> CreateRecoveryKit(const SecretBytes& master_key,
                                                                   int count, int threshold);

// Decodes one share's text (`position` is its 1-based place in the caller's input, used only in
// messages). InvalidArgument naming the share for anything that is not a well-formed share:
// "share 2: not a recovery-kit share (it must start with PVRK)", "share 2: 'Q1' ... is not in the
// share alphabet", "share 2: it has 80 characters, a share has 84 (a group is missing or extra)",
// "share 2: checksum mismatch: a character is mistyped".
[[nodiscard]] StatusOr<RecoveryShareInfo> InspectRecoveryShare(const SecretBytes& text,
                                                               int position);

// Restores the master key from share texts (any order). InvalidArgument as InspectRecoveryShare,
// or naming the shares that are from another kit or repeat a share number.
// FailedPrecondition "3 shares are needed to restore the key, 2 given" when fewer than the kit's
// threshold are given; FailedPrecondition "the shares do not restore the key (key check value
// mismatch): not enough shares, or wrong shares" if what they interpolate to is not the key.
[[nodiscard]] StatusOr<SecretBytes> CombineRecoveryShares(const std::vector<SecretBytes>& texts);

}  // namespace phivault::crypto
