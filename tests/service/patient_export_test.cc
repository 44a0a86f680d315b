// The right-of-access archive: what TarStreamWriter streams is read back with libarchive's own
// reader (names, bytes, sizes, times), unsafe paths never reach it, and an export that was cut off
// never reads back as complete.
#include "daemon/patient_export.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace phivault::daemon {
namespace {

struct TarFile {
  std::string path;
  int64_t size = 0;
  int64_t mtime = 0;
  std::string bytes;
};

struct ReadBack {
  std::vector<TarFile> files;
  bool complete = false;  // every header and all data read, ending in ARCHIVE_EOF
};

ReadBack ReadTar(const std::string& tar) {
  ReadBack out;
  std::unique_ptr<struct archive, decltype(&archive_read_free)> a(archive_read_new(),
                                                                  archive_read_free);
  archive_read_support_format_tar(a.get());
  if (archive_read_open_memory(a.get(), tar.data(), tar.size()) != ARCHIVE_OK) return out;
  struct archive_entry* entry = nullptr;
  int r;
  while ((r = archive_read_next_header(a.get(), &entry)) == ARCHIVE_OK) {
    TarFile f;
    f.path = archive_entry_pathname(entry);
    f.size = archive_entry_size(entry);
    f.mtime = archive_entry_mtime(entry);
    char buf[8192];
    la_ssize_t n;
    while ((n = archive_read_data(a.get(), buf, sizeof buf)) > 0) {
      f.bytes.append(buf, static_cast<size_t>(n));
    }
    out.files.push_back(std::move(f));
    if (n < 0) return out;
  }
  out.complete = r == ARCHIVE_EOF;
  return out;
}

std::unique_ptr<TarStreamWriter> Writer(std::string& out) {
  auto w = TarStreamWriter::Create([&out](std::string_view bytes) {
    out.append(bytes);
    return true;
  });
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  return w.ok() ? std::move(*w) : nullptr;
}

TEST(TarStreamWriterTest, WhatIsWrittenReadsBackWithNamesBytesSizesAndTimes) {
  std::string tar;
  auto w = Writer(tar);
  ASSERT_TRUE(w);
  const std::string big(3 * 1024 * 1024 + 17, 'x');  // several write chunks
  const std::string long_path =
      "records/" + std::string(120, 'r') + "/v1.txt";  // beyond ustar's 100-byte name field
  ASSERT_TRUE(w->AddFile("manifest.json", "{\"records\":[]}\n", 1'790'000'000).ok());
  ASSERT_TRUE(w->AddFile("records/AAAAAAAAAAAAAAAAAAAAAA/v1.txt", "BP 120/80", 1'790'000'001).ok());
  ASSERT_TRUE(w->AddFile("records/AAAAAAAAAAAAAAAAAAAAAA/v2.bin", big, 1'790'000'002).ok());
  ASSERT_TRUE(w->AddFile(long_path, "long", 1'790'000'003).ok());
  ASSERT_TRUE(w->AddFile("records/notes/empty.txt", "", 1'790'000'004).ok());
  ASSERT_TRUE(w->Finish().ok());

  const ReadBack back = ReadTar(tar);
  EXPECT_TRUE(back.complete);
  ASSERT_EQ(back.files.size(), 5u);
  EXPECT_EQ(back.files[0].path, "manifest.json");
  EXPECT_EQ(back.files[0].bytes, "{\"records\":[]}\n");
  EXPECT_EQ(back.files[0].size, 15);
  EXPECT_EQ(back.files[0].mtime, 1'790'000'000);
  EXPECT_EQ(back.files[1].path, "records/AAAAAAAAAAAAAAAAAAAAAA/v1.txt");
  EXPECT_EQ(back.files[1].bytes, "BP 120/80");
  EXPECT_EQ(back.files[2].size, static_cast<int64_t>(big.size()));
  EXPECT_EQ(back.files[2].bytes, big);
  EXPECT_EQ(back.files[3].path, long_path);
  EXPECT_EQ(back.files[3].bytes, "long");
  EXPECT_EQ(back.files[4].path, "records/notes/empty.txt");
  EXPECT_EQ(back.files[4].size, 0);
  EXPECT_EQ(tar.size() % 512, 0u);
}

TEST(TarStreamWriterTest, UnsafePathsAreRefusedAndLeaveTheArchiveIntact) {
  std::string tar;
  auto w = Writer(tar);
  ASSERT_TRUE(w);
  for (const char* path : {"", "/etc/passwd", "..", "../x", "records/../../x", "records/..", "a//b",
                           "a/", "./a", "a/./b", "a\\b", "a\nb",
                           "a\x01"
                           "b",
                           "\xff\xfe", "records/é.txt", "a b", "C:x", "a/b/"}) {
    SCOPED_TRACE(path);
    Status s = w->AddFile(path, "bytes", 0);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_FALSE(IsSafeArchivePath(path));
  }
  EXPECT_EQ(w->AddFile(std::string(1025, 'a'), "bytes", 0).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(w->AddFile("records/ok.txt", "ok", 0).ok());
  ASSERT_TRUE(w->Finish().ok());
  const ReadBack back = ReadTar(tar);
  EXPECT_TRUE(back.complete);
  ASSERT_EQ(back.files.size(), 1u);
  EXPECT_EQ(back.files[0].path, "records/ok.txt");
}

TEST(TarStreamWriterTest, AfterFinishNothingMoreCanBeAdded) {
  std::string tar;
  auto w = Writer(tar);
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->Finish().ok());
  EXPECT_EQ(w->AddFile("late.txt", "x", 0).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(w->Finish().code(), StatusCode::kFailedPrecondition);
  const ReadBack back = ReadTar(tar);
  EXPECT_TRUE(back.files.empty());
}

TEST(TarStreamWriterTest, ASinkThatRefusesAbortsTheExport) {
  std::string tar;
  size_t calls = 0;
  auto w = TarStreamWriter::Create([&](std::string_view bytes) {
    if (++calls > 1) return false;
    tar.append(bytes);
    return true;
  });
  ASSERT_TRUE(w.ok());
  const std::string big(64 * 1024, 'y');
  Status s = (*w)->AddFile("records/a.bin", big, 0);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_EQ((*w)->AddFile("records/b.bin", "b", 0).code(), StatusCode::kUnavailable);
  EXPECT_EQ((*w)->Finish().code(), StatusCode::kUnavailable);
  w->reset();
  EXPECT_FALSE(ReadTar(tar).complete);
}

TEST(TarStreamWriterTest, AnAbandonedExportNeverReadsBackAsComplete) {
  std::string tar;
  auto w = Writer(tar);
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->AddFile("manifest.json", "{}", 0).ok());
  ASSERT_TRUE(w->AddFile("records/a.bin", std::string(50'000, 'z'), 0).ok());
  w.reset();  // e.g. reading the next record failed: Finish is never called
  const ReadBack back = ReadTar(tar);
  EXPECT_FALSE(back.complete);
}

TEST(ExportFileExtensionTest, MapsContentTypesIgnoringParametersAndCase) {
  EXPECT_EQ(ExportFileExtension("text/plain"), "txt");
  EXPECT_EQ(ExportFileExtension("text/plain; charset=utf-8"), "txt");
  EXPECT_EQ(ExportFileExtension("Application/PDF"), "pdf");
  EXPECT_EQ(ExportFileExtension("application/fhir+json"), "json");
  EXPECT_EQ(ExportFileExtension("application/fhir+json;fhirVersion=4.0"), "json");
  EXPECT_EQ(ExportFileExtension("image/png"), "png");
  EXPECT_EQ(ExportFileExtension("image/jpeg"), "jpg");
  EXPECT_EQ(ExportFileExtension("application/dicom"), "dcm");
  EXPECT_EQ(ExportFileExtension("application/x-unknown"), "bin");
  EXPECT_EQ(ExportFileExtension(""), "bin");
  EXPECT_EQ(ExportRecordPath("AAAAAAAAAAAAAAAAAAAAAA", 3, "application/pdf"),
            "records/AAAAAAAAAAAAAAAAAAAAAA/v3.pdf");
  EXPECT_TRUE(IsSafeArchivePath(ExportRecordPath("AAAAAAAAAAAAAAAAAAAAAA", 3, "text/plain")));
}

TEST(ExportManifestTest, NamesEveryFileAndWhereTheExportIsToBeDelivered) {
  ExportManifest m;
  m.patient_id = "synthetic-0001";
  m.generated_us = 1'790'000'000LL * 1'000'000;
  m.practice = "Synthetic Family Practice";
  m.records.push_back({"AAAAAAAAAAAAAAAAAAAAAA", 2, "clinical_note", "text/plain", "2026-11-02",
                       "Dr. Synthetic", 1'789'000'000LL * 1'000'000,
                       "records/AAAAAAAAAAAAAAAAAAAAAA/v2.txt", std::string(64, 'a')});
  m.withheld = 1;
  m.withheld_reason = "psychotherapy notes are excluded from the right of access";

  auto j = nlohmann::json::parse(BuildExportManifestJson(m));
  EXPECT_EQ(j["patient_id"], "synthetic-0001");
  EXPECT_EQ(j["generated"], "2026-09-21T14:13:20.000000Z");
  EXPECT_EQ(j["practice"], "Synthetic Family Practice");
  EXPECT_TRUE(j["deliver_to"].is_null());
  ASSERT_EQ(j["records"].size(), 1u);
  const auto& r = j["records"][0];
  EXPECT_EQ(r["record_id"], "AAAAAAAAAAAAAAAAAAAAAA");
  EXPECT_EQ(r["version"], 2);
  EXPECT_EQ(r["category"], "clinical_note");
  EXPECT_EQ(r["content_type"], "text/plain");
  EXPECT_EQ(r["encounter_date"], "2026-11-02");
  EXPECT_EQ(r["author"], "Dr. Synthetic");
  EXPECT_EQ(r["created"], "2026-09-10T00:26:40.000000Z");
  EXPECT_EQ(r["file"], "records/AAAAAAAAAAAAAAAAAAAAAA/v2.txt");
  EXPECT_EQ(r["sha256"], std::string(64, 'a'));
  EXPECT_EQ(j["withheld"], 1);
  EXPECT_EQ(j["withheld_reason"], m.withheld_reason);

  m.deliver_to =
      ConfidentialContact{"synthetic-0001", "PO Box 1", ContactChannel::kMail, "", m.generated_us};
  j = nlohmann::json::parse(BuildExportManifestJson(m));
  EXPECT_EQ(j["deliver_to"]["address"], "PO Box 1");
  EXPECT_EQ(j["deliver_to"]["channel"], "mail");
  EXPECT_TRUE(j["deliver_to"]["note"].is_null());
  EXPECT_EQ(j["deliver_to"]["updated"], "2026-09-21T14:13:20.000000Z");
  EXPECT_FALSE(j["deliver_to"].contains("patient_id"));
}

}  // namespace
}  // namespace phivault::daemon
