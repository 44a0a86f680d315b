// Renderings of a certificate of destruction (storage/destruction_certificate.h): JSON for
// programs and a printable HTML page for the practice's records, in the style of the accounting
// reports (report_render.h): one self-contained document, inline CSS with print styles, no
// scripts or external resources (kHtmlSecurityPolicyMeta), every value HTML-escaped.
//
// The renderings show a certificate; they do not vouch for it. Call
// storage::VerifyDestructionCertificate on the signed note first; the page shows the verifier
// key and says how to check the note offline.
//
// Both functions are pure and never fail: invalid UTF-8 in any field is replaced by U+FFFD.
#pragma once

#include <cstdint>
#include <string>

#include "storage/destruction_certificate.h"

namespace phivault::policies {

struct CertificateContext {
  std::string practice_name;     // shown as the page's author; may be empty
  std::string practice_contact;  // may be empty
  std::string verifier_key;      // the audit verifier key (crypto::NoteVerifierKey); may be empty
  int64_t generated_at_unix_us = 0;
};

// An object with "certificate", "standard", "id", "performed_by", "started", "finished",
// "sanitization" (type, technique, epoch_keys, method), "media", "destroyed" (counts,
// by_category, records), "verification" (method, result), "tool", "audit_seq", "verifier_key",
// "generated_at". Times as FormatUtcTimestamp.
std::string RenderDestructionCertificateJson(const storage::DestructionCertificate& certificate,
                                             const CertificateContext& context);
std::string RenderDestructionCertificateHtml(const storage::DestructionCertificate& certificate,
                                             const CertificateContext& context);

}  // namespace phivault::policies
