#include "storage/checkpoint.h"

#include <charconv>
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

}  // namespace

StatusOr<std::string> CheckpointText(const Checkpoint& checkpoint) {
  const auto valid_line = [](std::string_view line) {
    return !line.empty() && line.find('\n') == std::string_view::npos;
  };
  if (!valid_line(checkpoint.origin)) {
    return InvalidArgument("checkpoint origin must be one non-empty line");
  }
  std::string text = checkpoint.origin + "\n" + std::to_string(checkpoint.size) + "\n" +
                     crypto::Base64Encode(crypto::AsView(checkpoint.root)) + "\n";
  for (const std::string& line : checkpoint.extensions) {
    if (!valid_line(line)) {
      return InvalidArgument("checkpoint extension lines must be non-empty single lines");
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

}  // namespace phivault::storage
