#include "storage/file_scan.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "tests/testing/temp_dir.h"

namespace phivault::storage {
namespace {

namespace fs = std::filesystem;

// Random bytes: a needle of 16 of them cannot occur anywhere by chance.
std::string RandomBytes(size_t n) {
  static std::mt19937_64 rng(std::random_device{}());
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rng());
  return out;
}

void WriteFile(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

using HitSet = std::set<std::tuple<std::string, uint64_t, size_t>>;

HitSet AsSet(const std::vector<FileHit>& hits) {
  HitSet out;
  for (const auto& h : hits) out.emplace(h.path, h.offset, h.needle);
  return out;
}

class FileScanTest : public ::testing::Test {
 protected:
  std::string Path(const std::string& name) const { return dir_.Sub(name); }
  // A needle copied out of `bytes` at `offset`, expected at that offset of `path`.
  void Take(const std::string& path, const std::string& bytes, size_t offset, size_t len) {
    expected_.emplace(path, offset, needles_.size());
    needles_.push_back(bytes.substr(offset, len));
  }

  phivault::testing::TempDir dir_;
  std::vector<std::string> needles_;
  HitSet expected_;
};

TEST_F(FileScanTest, FindsNeedlesAtStartMiddleAndEndOfAFile) {
  const std::string file = Path("data");
  const std::string bytes = RandomBytes(100000);
  WriteFile(file, bytes);
  Take(file, bytes, 0, 16);
  Take(file, bytes, 0, 4096);
  Take(file, bytes, 4321, 33);
  Take(file, bytes, bytes.size() - 16, 16);
  Take(file, bytes, bytes.size() - 4096, 4096);
  needles_.push_back(RandomBytes(64));  // nowhere
  auto hits = FindInFiles(dir_.path().string(), needles_, 1000);
  ASSERT_TRUE(hits.ok()) << hits.status().ToString();
  EXPECT_EQ(AsSet(*hits), expected_);
  ASSERT_EQ(hits->size(), expected_.size());
  // Ordered by offset within the file.
  for (size_t i = 1; i < hits->size(); ++i) EXPECT_LE((*hits)[i - 1].offset, (*hits)[i].offset);
}

// A file is read in chunks of kFileScanChunkBytes with the longest needle's length - 1 carried
// over: every occurrence straddling a chunk end or a read end is found exactly once.
TEST_F(FileScanTest, FindsNeedlesAcrossChunkBoundariesExactlyOnce) {
  const std::string file = Path("big");
  const size_t chunk = kFileScanChunkBytes;
  const std::string bytes = RandomBytes(2 * chunk + 10000);
  WriteFile(file, bytes);
  const size_t keep = kMaxNeedleBytes - 1;  // a 4096-byte needle is among them
  std::set<std::pair<size_t, size_t>> taken;
  for (size_t boundary : {chunk, chunk + keep, 2 * chunk, 2 * chunk + keep}) {
    for (size_t len : {size_t{16}, size_t{17}, size_t{100}, kMaxNeedleBytes}) {
      for (size_t back : {len + 1, len, len - 1, len / 2, size_t{8}, size_t{1}, size_t{0}}) {
        const size_t offset = boundary - back;
        if (offset + len <= bytes.size() && taken.emplace(offset, len).second) {
          Take(file, bytes, offset, len);
        }
      }
    }
  }
  auto hits = FindInFiles(dir_.path().string(), needles_, 100000);
  ASSERT_TRUE(hits.ok()) << hits.status().ToString();
  EXPECT_EQ(hits->size(), expected_.size());
  EXPECT_EQ(AsSet(*hits), expected_);
}

TEST_F(FileScanTest, ManyNeedlesSharingPrefixesAreConfirmedInFull) {
  const std::string file = Path("data");
  std::string bytes = RandomBytes(3 << 20);
  WriteFile(file, bytes);
  for (int i = 0; i < 200; ++i) {
    Take(file, bytes, static_cast<size_t>(i) * 15013 + 7, 16 + static_cast<size_t>(i) % 200);
  }
  // One needle a prefix of another; one sharing the first 8 bytes of a present one but not the
  // rest; one equal to a present one except its last byte.
  Take(file, bytes, 999, 16);
  Take(file, bytes, 999, 40);
  needles_.push_back(bytes.substr(999, 8) + RandomBytes(24));
  std::string last_differs = bytes.substr(5555, 50);
  last_differs.back() = static_cast<char>(last_differs.back() ^ 1);
  needles_.push_back(last_differs);
  for (int i = 0; i < 100000; ++i) needles_.push_back(RandomBytes(16 + i % 48));
  auto hits = FindInFiles(dir_.path().string(), needles_, 100000);
  ASSERT_TRUE(hits.ok()) << hits.status().ToString();
  EXPECT_EQ(AsSet(*hits), expected_);
}

TEST_F(FileScanTest, SearchesNestedDirectoriesButFollowsNoSymbolicLink) {
  const std::string inside = RandomBytes(64);
  const std::string outside = RandomBytes(64);
  WriteFile(Path("a/b/c/deep"), RandomBytes(100) + inside);
  WriteFile(Path("a/top"), inside);
  WriteFile(Path("a/empty"), "");
  WriteFile(Path("a/tiny"), "0123456789");
  phivault::testing::TempDir elsewhere;
  WriteFile(elsewhere.path() / "d" / "secret", outside);
  fs::create_directory_symlink(elsewhere.path() / "d", Path("a/link-to-dir"));
  fs::create_symlink(elsewhere.path() / "d" / "secret", Path("a/link-to-file"));
  fs::create_symlink(Path("a/top"), Path("a/link-inside"));
  ASSERT_EQ(mkfifo(Path("a/fifo").c_str(), 0600), 0);  // never opened: it would block

  const std::vector<std::string> needles = {inside, outside};
  auto hits = FindInFiles(dir_.path().string(), needles);
  ASSERT_TRUE(hits.ok()) << hits.status().ToString();
  EXPECT_EQ(AsSet(*hits), (HitSet{{Path("a/b/c/deep"), 100, 0}, {Path("a/top"), 0, 0}}));
  EXPECT_EQ((*hits)[0].path, Path("a/b/c/deep"));  // name order: "b" before "top"
}

TEST_F(FileScanTest, StopsAtMaxHits) {
  const std::string needle = RandomBytes(20);
  std::string bytes;
  for (int i = 0; i < 10; ++i) bytes += RandomBytes(50) + needle;
  WriteFile(Path("one"), bytes);
  WriteFile(Path("two"), bytes);
  const std::vector<std::string> needles = {needle};
  auto three = FindInFiles(dir_.path().string(), needles, 3);
  ASSERT_TRUE(three.ok());
  ASSERT_EQ(three->size(), 3u);
  EXPECT_EQ((*three)[2].offset, 50u + 70u * 2);
  auto all = FindInFiles(dir_.path().string(), needles, 1000);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 20u);
  EXPECT_TRUE(FindInFiles(dir_.path().string(), needles, 0)->empty());
}

TEST_F(FileScanTest, RejectsNeedlesOutsideTheLengthLimits) {
  WriteFile(Path("f"), RandomBytes(10000));
  for (size_t bad : {size_t{0}, size_t{15}, size_t{4097}}) {
    const std::vector<std::string> needles = {RandomBytes(16), std::string(bad, 'x')};
    auto hits = FindInFiles(dir_.path().string(), needles);
    ASSERT_FALSE(hits.ok()) << bad;
    EXPECT_EQ(hits.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(hits.status().message(), "needle 1 must be 16 to 4096 bytes");
  }
  const std::vector<std::string> limits = {std::string(16, 'a'), std::string(4096, 'b')};
  EXPECT_TRUE(FindInFiles(dir_.path().string(), limits).ok());
}

TEST_F(FileScanTest, MissingDirectoryIsNotFound) {
  const std::vector<std::string> needles = {RandomBytes(16)};
  for (const auto& n : {needles, std::vector<std::string>{}}) {
    auto hits = FindInFiles(Path("nowhere"), n);
    ASSERT_FALSE(hits.ok());
    EXPECT_EQ(hits.status().code(), StatusCode::kNotFound);
  }
  EXPECT_TRUE(FindInFiles(dir_.path().string(), {})->empty());
}

TEST_F(FileScanTest, UnreadableFileIsUnavailableNamingIt) {
  WriteFile(Path("locked"), RandomBytes(100));
  fs::permissions(Path("locked"), fs::perms::none);
  fs::permissions(dir_.path(), fs::perms::owner_all | fs::perms::group_read |
                                   fs::perms::group_exec | fs::perms::others_read |
                                   fs::perms::others_exec);
  // Root reads files whatever their mode: search as nobody (the effective id only; the saved id
  // stays root, so it can be switched back).
  const bool root = geteuid() == 0;
  if (root) {
    ASSERT_EQ(seteuid(65534), 0);
  }
  const std::vector<std::string> needles = {RandomBytes(16)};
  auto hits = FindInFiles(dir_.path().string(), needles);
  if (root) {
    ASSERT_EQ(seteuid(0), 0);
  }
  ASSERT_FALSE(hits.ok());
  EXPECT_EQ(hits.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(hits.status().message().find(Path("locked")), std::string::npos)
      << hits.status().message();
}

// RocksDB creates and deletes files while a search runs: files and directories that vanish are
// skipped, never an error, and stable files are still searched.
TEST_F(FileScanTest, FilesVanishingDuringTheSearchAreSkipped) {
  const std::string needle = RandomBytes(32);
  WriteFile(Path("stable/file"), RandomBytes(1 << 20) + needle);
  std::atomic<bool> stop{false};
  std::thread churn([&] {
    const std::string filler = RandomBytes(256 << 10);
    for (int i = 0; !stop; ++i) {
      const fs::path sub = Path("churn/" + std::to_string(i % 7));
      std::error_code ec;
      fs::create_directories(sub, ec);
      for (int j = 0; j < 4; ++j) {
        std::ofstream(sub / std::to_string(j), std::ios::binary) << filler;
      }
      fs::remove_all(sub, ec);
    }
  });
  const std::vector<std::string> needles = {needle};
  for (int round = 0; round < 40; ++round) {
    auto hits = FindInFiles(dir_.path().string(), needles);
    ASSERT_TRUE(hits.ok()) << hits.status().ToString();
    ASSERT_EQ(hits->size(), 1u);
    EXPECT_EQ((*hits)[0].path, Path("stable/file"));
    EXPECT_EQ((*hits)[0].offset, uint64_t{1} << 20);
  }
  stop = true;
  churn.join();
}

// A scale sanity check (no timing): a million needles over 32 MiB in several files find exactly
// the planted ones.
TEST_F(FileScanTest, AMillionNeedlesOverSeveralFiles) {
  std::vector<std::string> files;
  for (int f = 0; f < 4; ++f) {
    const std::string path = Path("db/" + std::to_string(f) + ".sst");
    const std::string bytes = RandomBytes(8 << 20);
    WriteFile(path, bytes);
    for (size_t at = 12345; at + 64 < bytes.size(); at += 1 << 20) Take(path, bytes, at, 32);
  }
  while (needles_.size() < 1000000) needles_.push_back(RandomBytes(32));
  auto hits = FindInFiles(dir_.path().string(), needles_, 1000);
  ASSERT_TRUE(hits.ok()) << hits.status().ToString();
  EXPECT_EQ(AsSet(*hits), expected_);
}

}  // namespace
}  // namespace phivault::storage
