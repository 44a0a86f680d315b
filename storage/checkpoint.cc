#include "storage/checkpoint.h"

#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "crypto/hash.h"

namespace phivault::storage {
namespace {

// Splits `text` into its lines; false unless it is non-empty and ends in "\n".
bool SplitLines(std::string_view text, std::vector<std::string_view>& lines) {
  if (text.empty() || text.back() != '\n') return false;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    lines.push_back(text.substr(0, nl));
    text.remove_prefix(nl + 1);
  }
  return true;
}

StatusOr<uint64_t> ParseSize(std::string_view line) {
  const auto bad = [] { return InvalidArgument("checkpoint tree size line is malformed"); };
  if (line.empty() || (line.size() > 1 && line[0] == '0')) return bad();
  uint64_t size = 0;
  const auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), size);
  if (ec != std::errc() || end != line.data() + line.size()) return bad();
  return size;
}

StatusOr<MerkleHash> ParseRoot(std::string_view line) {
  StatusOr<std::string> raw = crypto::Base64Decode(line);
  MerkleHash root;
  // Re-encoding rejects non-canonical base64, so one root has exactly one text form.
  if (!raw.ok() || raw->size() != root.size() || crypto::Base64Encode(*raw) != line) {
    return InvalidArgument("checkpoint root hash line is not the base64 of 32 bytes");
  }
  std::memcpy(root.data(), raw->data(), root.size());
  return root;
}

constexpr std::string_view kTimePrefix = "time ";

bool IsTimeLine(std::string_view line) { return line.substr(0, kTimePrefix.size()) == kTimePrefix; }

// Unix seconds of the "time" line's value; nullopt unless it is exactly what Rfc3339Utc writes
// (one text form per time, as for the root).
std::optional<int64_t> ParseRfc3339Utc(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SSZ
  if (text.size() != 20 || text[4] != '-' || text[7] != '-' || text[10] != 'T' || text[13] != ':' ||
      text[16] != ':' || text[19] != 'Z') {
    return std::nullopt;
  }
  const auto field = [&](size_t at, size_t len, int& out) {
    const auto [end, ec] = std::from_chars(text.data() + at, text.data() + at + len, out);
    return ec == std::errc() && end == text.data() + at + len &&
           std::isdigit(static_cast<unsigned char>(text[at])) != 0;
  };
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  if (!field(0, 4, y) || !field(5, 2, mo) || !field(8, 2, d) || !field(11, 2, h) ||
      !field(14, 2, mi) || !field(17, 2, s)) {
    return std::nullopt;
  }
  using namespace std::chrono;
  const year_month_day ymd{year(y), month(static_cast<unsigned>(mo)),
                           day(static_cast<unsigned>(d))};
  if (!ymd.ok() || h > 23 || mi > 59 || s > 59) return std::nullopt;
  const int64_t t = duration_cast<seconds>(sys_days(ymd).time_since_epoch()).count() +
                    int64_t{h} * 3600 + int64_t{mi} * 60 + s;
  if (Rfc3339Utc(t) != text) return std::nullopt;  // e.g. a year before 1970
  return t;
}

}  // namespace

std::string Rfc3339Utc(int64_t t) {
  using namespace std::chrono;
  constexpr int64_t kYear10000 = 253402300800;  // 10000-01-01T00:00:00Z
  if (t < 0 || t >= kYear10000) return "";
  const sys_seconds at{seconds(t)};
  const sys_days days = floor<std::chrono::days>(at);
  const year_month_day ymd(days);
  const hh_mm_ss<seconds> hms(at - days);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02dZ", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                static_cast<int>(hms.seconds().count()));
  return buf;
}

StatusOr<std::string> CheckpointText(const Checkpoint& checkpoint) {
  const auto valid_line = [](std::string_view line) {
    return !line.empty() && line.find('\n') == std::string_view::npos;
  };
  if (!valid_line(checkpoint.origin)) {
    return InvalidArgument("checkpoint origin must be one non-empty line");
  }
  std::string text = checkpoint.origin + "\n" + std::to_string(checkpoint.size) + "\n" +
                     crypto::Base64Encode(crypto::AsView(checkpoint.root)) + "\n";
  if (checkpoint.time_unix_seconds) {
    const std::string time = Rfc3339Utc(*checkpoint.time_unix_seconds);
    if (time.empty()) return InvalidArgument("checkpoint time must be in the years 1970-9999");
    text += std::string(kTimePrefix) + time + "\n";
  }
  for (const std::string& line : checkpoint.extensions) {
    if (!valid_line(line)) {
      return InvalidArgument("checkpoint extension lines must be non-empty single lines");
    }
    if (IsTimeLine(line)) {
      return InvalidArgument("checkpoint time goes in time_unix_seconds, not an extension line");
    }
    text += line + "\n";
  }
  return text;
}

StatusOr<Checkpoint> ParseCheckpointText(std::string_view text) {
  std::vector<std::string_view> lines;
  if (!SplitLines(text, lines) || lines.size() < 3) {
    return InvalidArgument("checkpoint text must be at least three lines, each ending in newline");
  }
  Checkpoint checkpoint;
  if (lines[0].empty()) return InvalidArgument("checkpoint origin line is empty");
  checkpoint.origin = std::string(lines[0]);
  PV_ASSIGN_OR_RETURN(checkpoint.size, ParseSize(lines[1]));
  PV_ASSIGN_OR_RETURN(checkpoint.root, ParseRoot(lines[2]));
  for (size_t i = 3; i < lines.size(); ++i) {
    if (lines[i].empty()) return InvalidArgument("checkpoint extension line is empty");
    if (IsTimeLine(lines[i])) {
      if (checkpoint.time_unix_seconds) {
        return InvalidArgument("checkpoint has more than one time line");
      }
      checkpoint.time_unix_seconds = ParseRfc3339Utc(lines[i].substr(kTimePrefix.size()));
      if (!checkpoint.time_unix_seconds) {
        return InvalidArgument("checkpoint time line is not 'time YYYY-MM-DDTHH:MM:SSZ'");
      }
      continue;
    }
    checkpoint.extensions.emplace_back(lines[i]);
  }
  return checkpoint;
}

StatusOr<std::string> SignCheckpoint(const Checkpoint& checkpoint, std::string_view key_name,
                                     const crypto::Ed25519Signer& signer) {
  PV_ASSIGN_OR_RETURN(std::string text, CheckpointText(checkpoint));
  return crypto::SignNote(text, key_name, signer);
}

StatusOr<Checkpoint> OpenCheckpoint(std::string_view note, const crypto::NoteVerifier& verifier) {
  PV_ASSIGN_OR_RETURN(std::string text, crypto::VerifyNote(note, verifier));
  return ParseCheckpointText(text);
}

StatusOr<Checkpoint> ParseUnverifiedCheckpoint(std::string_view note) {
  // A signed note is its text, a blank line, then signature lines.
  const size_t end = note.find("\n\n");
  if (end == std::string_view::npos) return InvalidArgument("not a signed note (no blank line)");
  return ParseCheckpointText(note.substr(0, end + 1));
}

}  // namespace phivault::storage
