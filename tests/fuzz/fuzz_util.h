// Shared by the libFuzzer targets: a scratch directory for targets whose real entry point reads a
// file, and the fixed test master key of the keyring target and its seeds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>

#include "crypto/secret.h"
#include "tests/testing/temp_dir.h"

namespace phivault::fuzz {

// One directory for the whole run, removed at exit (scripts/fuzz.sh points TMPDIR at tmpfs).
inline const std::string& ScratchDir() {
  static const phivault::testing::TempDir dir;
  static const std::string path = dir.path().string();
  return path;
}

// Writes `bytes` to `path`, replacing it; aborts if it cannot (a broken environment, not a bug).
inline void WriteFileOrDie(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out.flush()) std::abort();
}

inline std::string_view AsText(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Splits "<first line>\n<rest>": the targets whose input is a signed note verified under a key
// take the verifier key from the input's first line, so that one corpus file is self-contained
// and the key parser is fuzzed too.
inline void SplitFirstLine(std::string_view in, std::string_view* first, std::string_view* rest) {
  const size_t nl = in.find('\n');
  *first = in.substr(0, nl);
  *rest = nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
}

// The master key of the keyring target (32 bytes of 0x42): its seed keyrings are sealed under it,
// so mutated copies reach the code past authentication only where the format lets them.
inline crypto::SecretBytes FuzzMasterKey() {
  return crypto::SecretBytes::CopyFrom(std::string(32, '\x42'),
                                       crypto::InsecureSecretKeyAccess::Get());
}

inline void InitOrDie() {
  if (!crypto::InitSodium().ok()) std::abort();
}

}  // namespace phivault::fuzz
