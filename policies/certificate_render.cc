#include "policies/certificate_render.h"

#include <string_view>

#include <nlohmann/json.hpp>

#include "policies/html.h"
#include "policies/time_format.h"

namespace phivault::policies {
namespace {

using nlohmann::json;
using storage::DestroyedRecordVersion;

constexpr std::string_view kStandard =
    "NIST SP 800-88 Rev. 1, Guidelines for Media Sanitization, Appendix G";

std::string HumanTime(int64_t us) {
  const std::string t = FormatUtcTimestamp(us);
  return t.substr(0, 10) + " " + t.substr(11, 15) + " UTC";
}

constexpr std::string_view kStyle = R"(
body { font-family: Georgia, "Times New Roman", serif; color: #111; background: #fff;
       max-width: 62rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.7rem; margin: .2rem 0 1rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; }
.practice { font-size: 1.1rem; font-weight: bold; margin: 0; }
.contact { margin: 0; color: #333; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0 0 1.5rem; }
dl.meta dt { font-weight: bold; }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; font-size: .95rem; }
caption { text-align: left; font-weight: bold; padding: .3rem 0; }
th, td { border: 1px solid #777; padding: .35rem .5rem; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; }
thead th { background: #e8e8e8; }
code { font-family: "DejaVu Sans Mono", Menlo, monospace; font-size: .85rem; }
footer { margin-top: 2rem; font-size: .85rem; color: #333; }
@page { margin: 15mm; }
@media print {
  body { max-width: none; margin: 0; padding: 0; font-size: 10.5pt; }
  thead { display: table-header-group; }
  tr { break-inside: avoid; page-break-inside: avoid; }
  thead th { background: none; }
}
)";

void Item(std::string& out, std::string_view term, std::string_view value) {
  out += "<dt>" + HtmlEscape(term) + "</dt><dd>" + HtmlEscape(value) + "</dd>\n";
}

void CodeItem(std::string& out, std::string_view term, std::string_view value) {
  out += "<dt>" + HtmlEscape(term) + "</dt><dd><code>" + HtmlEscape(value) + "</code></dd>\n";
}

}  // namespace

std::string RenderDestructionCertificateJson(const storage::DestructionCertificate& c,
                                             const CertificateContext& context) {
  const storage::DestructionCounts counts = storage::CountDestroyed(c);
  json by_category = json::object();
  for (const auto& [category, n] : counts.versions_by_category) by_category[category] = n;
  json records = json::array();
  for (const DestroyedRecordVersion& r : c.records) {
    records.push_back({{"record_id", r.record_id},
                       {"version", r.version},
                       {"category", r.category},
                       {"patient_bid", r.patient_bid}});
  }
  const json j = {
      {"certificate", "destruction"},
      {"standard", kStandard},
      {"id", c.id},
      {"performed_by", {{"principal", c.principal}, {"user", c.user}, {"role", c.role}}},
      {"started", FormatUtcTimestamp(c.started_unix_us)},
      {"finished", FormatUtcTimestamp(c.finished_unix_us)},
      {"sanitization",
       {{"type", "purge"},
        {"technique", "cryptographic erase"},
        {"epoch_keys", c.epoch_ids},
        {"method", storage::MethodStatement(c)}}},
      {"media", c.media},
      {"destroyed",
       {{"counts",
         {{"records", counts.records},
          {"versions", counts.versions},
          {"patients", counts.patients}}},
        {"by_category", std::move(by_category)},
        {"records", std::move(records)}}},
      {"verification", {{"method", c.verification}, {"result", c.verification_result}}},
      {"tool", {{"name", c.tool_name}, {"version", c.tool_version}}},
      {"audit_seq", {{"first", c.audit_seq_first}, {"last", c.audit_seq_last}}},
      {"verifier_key", context.verifier_key},
      {"generated_at", FormatUtcTimestamp(context.generated_at_unix_us)}};
  return j.dump(2, ' ', false, json::error_handler_t::replace);
}

std::string RenderDestructionCertificateHtml(const storage::DestructionCertificate& c,
                                             const CertificateContext& context) {
  const storage::DestructionCounts counts = storage::CountDestroyed(c);
  std::string out = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  out += kHtmlSecurityPolicyMeta;
  out += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  out += "<title>Certificate of Destruction " + HtmlEscape(c.id) + "</title>\n<style>" +
         std::string(kStyle) + "</style>\n</head>\n<body>\n<header>\n";
  if (!context.practice_name.empty()) {
    out += "<p class=\"practice\">" + HtmlEscape(context.practice_name) + "</p>\n";
  }
  if (!context.practice_contact.empty()) {
    out += "<p class=\"contact\">" + HtmlEscape(context.practice_contact) + "</p>\n";
  }
  out += "<h1>Certificate of Destruction</h1>\n<dl class=\"meta\">\n";
  CodeItem(out, "Certificate id", c.id);
  Item(out, "Form", std::string(kStandard) + ", certificate of sanitization");
  out += "</dl>\n</header>\n<main>\n";

  out += "<h2>Person performing sanitization</h2>\n<dl class=\"meta\">\n";
  Item(out, "Principal", c.principal);
  Item(out, "User", c.user);
  Item(out, "Role", c.role);
  Item(out, "Started", HumanTime(c.started_unix_us));
  Item(out, "Finished", HumanTime(c.finished_unix_us));
  out += "</dl>\n";

  out += "<h2>Sanitization</h2>\n<dl class=\"meta\">\n";
  Item(out, "Media", c.media);
  Item(out, "Sanitization type", "Purge");
  Item(out, "Method", storage::MethodStatement(c));
  out += "<dt>Epoch keys erased</dt><dd>";
  for (size_t i = 0; i < c.epoch_ids.size(); ++i) {
    out += (i > 0 ? ", <code>" : "<code>") + HtmlEscape(c.epoch_ids[i]) + "</code>";
  }
  out += "</dd>\n";
  Item(out, "Tool", c.tool_name + " " + c.tool_version);
  Item(out, "Verification", c.verification);
  Item(out, "Verification result", c.verification_result);
  Item(out, "Audit entries",
       "seq " + std::to_string(c.audit_seq_first) + " to " + std::to_string(c.audit_seq_last));
  out += "</dl>\n";

  out += "<h2>What was destroyed</h2>\n<dl class=\"meta\">\n";
  Item(out, "Records", std::to_string(counts.records));
  Item(out, "Record versions", std::to_string(counts.versions));
  Item(out, "Patients (by blind id)", std::to_string(counts.patients));
  for (const auto& [category, n] : counts.versions_by_category) {
    Item(out, "Category " + category, std::to_string(n) + (n == 1 ? " version" : " versions"));
  }
  out +=
      "</dl>\n<table>\n<caption>Record versions destroyed</caption>\n<thead><tr>"
      "<th scope=\"col\">Record id</th><th scope=\"col\">Version</th>"
      "<th scope=\"col\">Category</th><th scope=\"col\">Patient blind id</th></tr></thead>\n"
      "<tbody>\n";
  for (const DestroyedRecordVersion& r : c.records) {
    out += "<tr><td><code>" + HtmlEscape(r.record_id) + "</code></td><td>" +
           std::to_string(r.version) + "</td><td>" + HtmlEscape(r.category) + "</td><td><code>" +
           HtmlEscape(r.patient_bid) + "</code></td></tr>\n";
  }
  out += "</tbody>\n</table>\n</main>\n<footer>\n";
  out +=
      "<p>This page shows a signed certificate; the signature, not the page, is the proof. "
      "Verify the certificate's signed note offline with the vault's audit verifier key";
  if (!context.verifier_key.empty()) {
    out += " <code>" + HtmlEscape(context.verifier_key) + "</code>";
  }
  out += ". Patients are named only by blind ids, which identify no one outside the vault.</p>\n";
  out += "<p>Prepared on " + FormatUtcDate(context.generated_at_unix_us);
  if (!context.practice_name.empty()) out += " by " + HtmlEscape(context.practice_name);
  out += ".</p>\n</footer>\n</body>\n</html>\n";
  return out;
}

}  // namespace phivault::policies
