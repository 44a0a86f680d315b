// Helpers shared by the crypto tests: temporary directories and hex literals.
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>

#include "crypto/hash.h"
#include "crypto/secret.h"
#include "tests/testing/temp_dir.h"

namespace phivault::crypto::testing {

using phivault::testing::TempDir;

// Decodes a hex literal from a test vector; aborts on a typo in the test itself.
inline std::string Unhex(std::string_view hex) {
  auto bytes = HexDecode(hex);
  if (!bytes.ok()) std::abort();
  return *bytes;
}

inline std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void WriteFileBytes(const std::string& path, std::string_view bytes, mode_t mode) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  ::chmod(path.c_str(), mode);
}

inline mode_t FileMode(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

inline SecretBytes Secret(std::string_view bytes) {
  return SecretBytes::CopyFrom(bytes, InsecureSecretKeyAccess::Get());
}

}  // namespace phivault::crypto::testing
