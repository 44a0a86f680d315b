// Byte search over every file under a directory: proves that a value is gone from all of an
// engine's files (SST, blob, WAL, MANIFEST, logs), not just unreadable through its API.
#pragma once

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

namespace phivault::storage::testing {

// Paths of the regular files under `dir` holding any part of `value`: 32-byte pieces taken every
// 256 bytes and at its end are searched for, because engines split values across blocks (a WAL
// record crossing a 32 KiB block boundary gets a header in the middle). `value` must be random
// (so that 32 bytes of it cannot occur by chance) and at least 32 bytes long.
inline std::vector<std::string> FilesContaining(const std::filesystem::path& dir,
                                                std::string_view value) {
  constexpr size_t kPiece = 32;
  constexpr size_t kStride = 256;
  std::vector<std::string_view> pieces;
  for (size_t at = 0; at + kPiece <= value.size(); at += kStride) {
    pieces.push_back(value.substr(at, kPiece));
  }
  if (value.size() >= kPiece) pieces.push_back(value.substr(value.size() - kPiece));
  std::vector<std::string> hits;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (std::string_view piece : pieces) {
      if (bytes.find(piece) != std::string::npos) {
        hits.push_back(entry.path().string());
        break;
      }
    }
  }
  return hits;
}

// Names of the files under `dir` whose name ends with `suffix`.
inline std::vector<std::string> FilesWithSuffix(const std::filesystem::path& dir,
                                                std::string_view suffix) {
  std::vector<std::string> out;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.size() >= suffix.size() && name.ends_with(suffix)) out.push_back(name);
  }
  return out;
}

}  // namespace phivault::storage::testing
