// A certificate of destruction (storage/destruction_certificate.h), as `phivault certificate
// verify` checks one offline. Input: the verifier key on the first line, then the signed note.
// The note's text is also parsed on its own, as the daemon parses stored certificates.
#include "crypto/signing.h"
#include "storage/destruction_certificate.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  phivault::fuzz::InitOrDie();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view key_line, note;
  phivault::fuzz::SplitFirstLine(phivault::fuzz::AsText(data, size), &key_line, &note);
  std::string origin;
  auto parsed = phivault::storage::ParseDestructionCertificateText(note, &origin);
  if (parsed.ok()) {
    (void)phivault::storage::CountDestroyed(*parsed);
    (void)phivault::storage::MethodStatement(*parsed);
    (void)phivault::storage::DestructionCertificateText(*parsed, origin);
  }
  auto verifier = phivault::crypto::ParseNoteVerifierKey(key_line);
  if (!verifier.ok()) return 0;
  auto certificate = phivault::storage::VerifyDestructionCertificate(note, *verifier);
  if (certificate.ok()) (void)phivault::storage::CountDestroyed(*certificate);
  return 0;
}
