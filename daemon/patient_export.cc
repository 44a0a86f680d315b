#include "daemon/patient_export.h"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <utility>

#include <nlohmann/json.hpp>

#include "policies/time_format.h"

namespace phivault::daemon {
namespace {

constexpr size_t kMaxArchivePathBytes = 1024;
// libarchive's write calls take at most this much at once, so a multi-gigabyte record never
// needs a size that does not fit la_ssize_t.
constexpr size_t kWriteChunkBytes = 1 << 20;

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

}  // namespace

// Hands libarchive's output to the sink; once the sink refuses, every later write fails too.
struct TarStreamWriterCallbacks {
  static la_ssize_t Write(struct archive* a, void* client, const void* buffer, size_t length) {
    auto* w = static_cast<TarStreamWriter*>(client);
    if (!w->sink_refused_ && w->sink_(std::string_view(static_cast<const char*>(buffer), length))) {
      return static_cast<la_ssize_t>(length);
    }
    w->sink_refused_ = true;
    archive_set_error(a, ECANCELED, "export stream aborted");
    return -1;
  }
};

bool IsSafeArchivePath(std::string_view path) {
  if (path.empty() || path.size() > kMaxArchivePathBytes) return false;
  size_t start = 0;
  while (true) {
    const size_t slash = path.find('/', start);
    const std::string_view segment = path.substr(
        start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (segment.empty() || segment == "." || segment == "..") return false;
    for (char c : segment) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-';
      if (!ok) return false;
    }
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

StatusOr<std::unique_ptr<TarStreamWriter>> TarStreamWriter::Create(Sink sink) {
  std::unique_ptr<TarStreamWriter> w(new TarStreamWriter(std::move(sink)));
  w->archive_ = archive_write_new();
  if (w->archive_ == nullptr) return Internal("libarchive could not allocate a writer");
  if (archive_write_set_format_pax_restricted(w->archive_) != ARCHIVE_OK ||
      archive_write_add_filter_none(w->archive_) != ARCHIVE_OK) {
    return w->Failed("could not select the tar format");
  }
  if (archive_write_open2(w->archive_, w.get(), nullptr, TarStreamWriterCallbacks::Write, nullptr,
                          nullptr) != ARCHIVE_OK) {
    return w->Failed("could not open the tar stream");
  }
  return w;
}

TarStreamWriter::~TarStreamWriter() {
  if (archive_ == nullptr) return;
  // An unfinished archive must not end with the end-of-archive blocks that freeing would write:
  // a truncated export would then read back as a complete one.
  if (!finished_) sink_refused_ = true;
  archive_write_free(archive_);
}

Status TarStreamWriter::Failed(std::string_view what) {
  if (sink_refused_) return Unavailable("the export stream was aborted");
  const char* detail = archive_ != nullptr ? archive_error_string(archive_) : nullptr;
  return Internal("tar writer: " + std::string(what) +
                  (detail != nullptr ? ": " + std::string(detail) : std::string()));
}

Status TarStreamWriter::AddFile(std::string_view path, std::string_view bytes,
                                int64_t mtime_unix_s) {
  if (finished_) return FailedPrecondition("the export archive is already finished");
  if (sink_refused_) return Unavailable("the export stream was aborted");
  if (!IsSafeArchivePath(path)) return InvalidArgument("unsafe archive path");
  std::unique_ptr<struct archive_entry, decltype(&archive_entry_free)> entry(archive_entry_new(),
                                                                             archive_entry_free);
  if (!entry) return Internal("libarchive could not allocate an entry");
  const std::string name(path);
  archive_entry_copy_pathname(entry.get(), name.c_str());
  archive_entry_set_filetype(entry.get(), AE_IFREG);
  archive_entry_set_perm(entry.get(), 0644);
  archive_entry_set_size(entry.get(), static_cast<la_int64_t>(bytes.size()));
  archive_entry_set_mtime(entry.get(), static_cast<time_t>(mtime_unix_s), 0);
  archive_entry_set_uid(entry.get(), 0);
  archive_entry_set_gid(entry.get(), 0);
  if (archive_write_header(archive_, entry.get()) != ARCHIVE_OK) {
    return Failed("could not write a file header");
  }
  while (!bytes.empty()) {
    const size_t n = std::min(bytes.size(), kWriteChunkBytes);
    const la_ssize_t written = archive_write_data(archive_, bytes.data(), n);
    if (written <= 0) return Failed("could not write file data");
    bytes.remove_prefix(static_cast<size_t>(written));
  }
  if (archive_write_finish_entry(archive_) != ARCHIVE_OK) return Failed("could not end a file");
  return Status::Ok();
}

Status TarStreamWriter::Finish() {
  if (finished_) return FailedPrecondition("the export archive is already finished");
  if (sink_refused_) return Unavailable("the export stream was aborted");
  finished_ = true;
  if (archive_write_close(archive_) != ARCHIVE_OK) return Failed("could not end the archive");
  return Status::Ok();
}

std::string_view ExportFileExtension(std::string_view content_type) {
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 18> kExtensions = {{
      {"text/plain", "txt"},
      {"text/html", "html"},
      {"text/csv", "csv"},
      {"text/markdown", "md"},
      {"text/xml", "xml"},
      {"text/rtf", "rtf"},
      {"application/rtf", "rtf"},
      {"application/pdf", "pdf"},
      {"application/json", "json"},
      {"application/fhir+json", "json"},
      {"application/xml", "xml"},
      {"application/fhir+xml", "xml"},
      {"application/dicom", "dcm"},
      {"image/png", "png"},
      {"image/jpeg", "jpg"},
      {"image/gif", "gif"},
      {"image/tiff", "tif"},
      {"image/webp", "webp"},
  }};
  std::string_view essence = content_type.substr(0, content_type.find(';'));
  while (!essence.empty() && essence.back() == ' ') essence.remove_suffix(1);
  const std::string lower = Lower(essence);
  for (const auto& [type, ext] : kExtensions) {
    if (type == lower) return ext;
  }
  return "bin";
}

std::string ExportRecordPath(std::string_view record_id, uint32_t version,
                             std::string_view content_type) {
  return "records/" + std::string(record_id) + "/v" + std::to_string(version) + "." +
         std::string(ExportFileExtension(content_type));
}

std::string BuildExportManifestJson(const ExportManifest& m) {
  nlohmann::json records = nlohmann::json::array();
  for (const ExportManifestRecord& r : m.records) {
    records.push_back({{"record_id", r.record_id},
                       {"version", r.version},
                       {"category", r.category},
                       {"content_type", r.content_type},
                       {"encounter_date", r.encounter_date},
                       {"author", r.author},
                       {"created", policies::FormatUtcTimestamp(r.created_us)},
                       {"file", r.file},
                       {"sha256", r.sha256_hex}});
  }
  nlohmann::json deliver_to = nullptr;
  if (m.deliver_to) {
    deliver_to = {{"address", m.deliver_to->address},
                  {"channel", ContactChannelName(m.deliver_to->channel)},
                  {"note", m.deliver_to->note.empty() ? nlohmann::json(nullptr)
                                                      : nlohmann::json(m.deliver_to->note)},
                  {"updated", policies::FormatUtcTimestamp(m.deliver_to->updated_us)}};
  }
  const nlohmann::json j = {{"patient_id", m.patient_id},
                            {"generated", policies::FormatUtcTimestamp(m.generated_us)},
                            {"practice", m.practice},
                            {"deliver_to", std::move(deliver_to)},
                            {"records", std::move(records)},
                            {"withheld", m.withheld},
                            {"withheld_reason", m.withheld_reason}};
  // Invalid UTF-8 (which record validation keeps out) becomes U+FFFD rather than an exception.
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace phivault::daemon
