// Renderings of compliance reports: JSON for programs, CSV for spreadsheets, and a printable HTML
// page a compliance officer can hand to the patient.
//
// All functions are pure and never fail: invalid UTF-8 in any field is replaced by U+FFFD.
// CSV follows RFC 4180 (header row, CRLF line ends, fields with a comma, quote, CR or LF quoted,
// quotes doubled); a field starting with '=', '+', '-', '@', TAB or CR is prefixed with a single
// quote so spreadsheets do not evaluate it as a formula (OWASP "CSV injection").
// HTML is one self-contained document (inline CSS incl. print styles, no scripts, no external
// resources, a Content-Security-Policy forbidding both) with every value HTML-escaped.
// The accounting renderings never show disclosures withheld under a suspension, nor their number.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "policies/accounting.h"
#include "policies/audit_view.h"

namespace phivault::policies {

struct ReportContext {
  std::string practice_name;     // the covered entity, shown as the report's author; "" ->
                                 // the page says "we" / "your health care provider"
  std::string patient_display;   // how to name the patient (e.g. name and date of birth);
                                 // "" -> the patient id
  std::string practice_contact;  // address / phone for questions; may be empty
  int64_t generated_at_unix_us = 0;
  // Where the patient asked to receive communications (45 CFR 164.522(b)): the report is to be
  // sent there and only there. Empty: no such request is recorded.
  std::string deliver_to_address;
  std::string deliver_to_channel;  // "mail", "email", "phone", "portal"
};

std::string RenderAccountingJson(const Accounting& accounting, const ReportContext& context);
// Columns: date, recipient_name, recipient_address, description, purpose, purpose_code, basis,
// authority, record_ids (';'-separated), disclosure_count, last_disclosure_date, summarised.
std::string RenderAccountingCsv(const Accounting& accounting);
std::string RenderAccountingHtml(const Accounting& accounting, const ReportContext& context);

std::string RenderAccessReportJson(const AccessReport& report, const ReportContext& context);
// Columns: time, user, role, application, action, purpose, purpose_display, outcome, break_glass.
std::string RenderAccessReportCsv(const AccessReport& report);
std::string RenderAccessReportHtml(const AccessReport& report, const ReportContext& context);

// Columns: seq, time, request_id, application, user, role, action, outcome, reason, purpose,
// patient_id, records (';'-separated), recipient, break_glass, break_glass_reason.
std::string RenderAuditEntriesCsv(std::span<const DecodedAuditEntry> entries);

}  // namespace phivault::policies
