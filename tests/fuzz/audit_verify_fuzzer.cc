// An audit export fed to the offline verifier (storage/audit_verify.h VerifyAuditExport, what
// `phivault audit verify` runs). Input: the verifier key on the first line, then the export.
// The same export is also checked against a trusted checkpoint taken from itself, as a user who
// kept an earlier checkpoint checks a new export.
#include <sstream>

#include <nlohmann/json.hpp>

#include "crypto/signing.h"
#include "storage/audit_verify.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  phivault::fuzz::InitOrDie();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view key_line, export_text;
  phivault::fuzz::SplitFirstLine(phivault::fuzz::AsText(data, size), &key_line, &export_text);
  auto verifier = phivault::crypto::ParseNoteVerifierKey(key_line);
  if (!verifier.ok()) return 0;
  std::istringstream in{std::string(export_text)};
  auto report = phivault::storage::VerifyAuditExport(in, *verifier);
  if (!report.ok() || !report->ok) return 0;
  // A verified export: verify it again with its first checkpoint as the trusted one.
  std::string trusted;
  std::istringstream lines{std::string(export_text)};
  for (std::string text; trusted.empty() && std::getline(lines, text);) {
    auto line = nlohmann::json::parse(text, nullptr, false);
    if (line.is_object() && line.value("type", "") == "checkpoint" && line["note"].is_string()) {
      trusted = line["note"].get<std::string>();
    }
  }
  if (trusted.empty()) return 0;
  phivault::storage::AuditVerifyOptions options;
  options.trusted.push_back({"trusted", trusted});
  options.origin = verifier->name;
  std::istringstream again{std::string(export_text)};
  (void)phivault::storage::VerifyAuditExport(again, *verifier, options);
  return 0;
}
