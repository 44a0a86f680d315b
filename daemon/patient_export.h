// The right-of-access archive (45 CFR 164.524): a tar stream of manifest.json and
// records/<record_id>/v<N>.<ext>, written as it is produced so an export never sits whole in
// memory. Tar (POSIX pax, plain ustar headers where they suffice) is written by libarchive.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "daemon/patient_state.h"

struct archive;

namespace phivault::daemon {

// Writes one tar archive to `sink`. Not thread-safe; one writer per export.
class TarStreamWriter {
 public:
  // Receives the archive's bytes in order; returns false to abort the export (e.g. the client
  // went away), after which every call fails with Unavailable.
  using Sink = std::function<bool(std::string_view bytes)>;

  // Internal if libarchive cannot set up the writer. `sink` is called only from AddFile and
  // Finish.
  static StatusOr<std::unique_ptr<TarStreamWriter>> Create(Sink sink);
  ~TarStreamWriter();
  TarStreamWriter(const TarStreamWriter&) = delete;
  TarStreamWriter& operator=(const TarStreamWriter&) = delete;

  // Appends a regular file (mode 0644, owner 0:0) at `path` holding `bytes`.
  // InvalidArgument "unsafe archive path" unless IsSafeArchivePath(path); nothing is written
  // then. Unavailable "the export stream was aborted" if the sink refused bytes;
  // FailedPrecondition after Finish.
  [[nodiscard]] Status AddFile(std::string_view path, std::string_view bytes, int64_t mtime_unix_s);

  // Writes the end-of-archive blocks and flushes everything to the sink. The archive is complete
  // only if this returns OK; later calls fail with FailedPrecondition.
  [[nodiscard]] Status Finish();

 private:
  friend struct TarStreamWriterCallbacks;  // libarchive's write callback, in the .cc
  explicit TarStreamWriter(Sink sink) : sink_(std::move(sink)) {}
  Status Failed(std::string_view what);

  Sink sink_;
  struct archive* archive_ = nullptr;
  bool sink_refused_ = false;
  bool finished_ = false;
};

// True if `path` may name a file in an export archive: 1..1024 bytes of '/'-separated segments,
// each non-empty, not "." or "..", of ASCII letters, digits, '.', '_' and '-' only (so not
// absolute). ASCII only because export paths are built from record ids and versions, and because
// a name that means the same bytes in every locale cannot unpack somewhere unexpected.
bool IsSafeArchivePath(std::string_view path);

// The file name extension for a record's content type (parameters and case ignored):
// text/plain -> txt, application/pdf -> pdf, application/fhir+json and application/json -> json,
// image/png -> png, image/jpeg -> jpg, and so on; "bin" for anything not listed.
std::string_view ExportFileExtension(std::string_view content_type);

// "records/<record_id>/v<version>.<ext>".
std::string ExportRecordPath(std::string_view record_id, uint32_t version,
                             std::string_view content_type);

struct ExportManifestRecord {
  std::string record_id;
  uint32_t version = 0;
  std::string category;
  std::string content_type;
  std::string encounter_date;  // YYYY-MM-DD
  std::string author;
  int64_t created_us = 0;
  std::string file;        // the path in the archive (ExportRecordPath)
  std::string sha256_hex;  // of the file's bytes
};

struct ExportManifest {
  std::string patient_id;
  int64_t generated_us = 0;
  std::string practice;
  std::optional<ConfidentialContact> deliver_to;  // the patient's 164.522(b) contact, if any
  std::vector<ExportManifestRecord> records;
  uint64_t withheld = 0;        // records of the patient the policy kept out
  std::string withheld_reason;  // why, in words for the patient; never names the records
};

// manifest.json as issue 8 specifies: {"patient_id","generated","practice","deliver_to":
// null|{"address","channel","note","updated"},"records":[{"record_id","version","category",
// "content_type","encounter_date","author","created","file","sha256"}],"withheld",
// "withheld_reason"}; times RFC 3339 UTC. Pretty-printed (2 spaces), newline-terminated.
std::string BuildExportManifestJson(const ExportManifest& manifest);

}  // namespace phivault::daemon
