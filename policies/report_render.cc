#include "policies/report_render.h"

#include <string_view>

#include <nlohmann/json.hpp>

#include "policies/html.h"
#include "policies/purpose_of_use.h"
#include "policies/time_format.h"

namespace phivault::policies {
namespace {

using nlohmann::json;

std::string CsvField(std::string_view raw) {
  std::string s = SanitizeUtf8(raw);
  if (!s.empty() &&
      (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@' || s[0] == '\t' || s[0] == '\r')) {
    s.insert(s.begin(), '\'');
  }
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"') out.push_back('"');
    out.push_back(ch);
  }
  out.push_back('"');
  return out;
}

void CsvRow(std::string& out, std::initializer_list<std::string_view> fields) {
  bool first = true;
  for (std::string_view f : fields) {
    if (!first) out.push_back(',');
    first = false;
    out += CsvField(f);
  }
  out += "\r\n";
}

std::string Join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += sep;
    out += items[i];
  }
  return out;
}

std::string HumanTime(int64_t us) {
  const std::string t = FormatUtcTimestamp(us);
  return t.substr(0, 10) + " " + t.substr(11, 8) + " UTC";
}

std::string PurposeDisplay(std::string_view code) {
  const std::optional<PurposeOfUseCode> p = LookupPurposeOfUse(code);
  return p ? std::string(p->display) : std::string();
}

std::string Dump(const json& j) { return j.dump(2, ' ', false, json::error_handler_t::replace); }

std::string PatientLabel(const ReportContext& context, const std::string& patient_id) {
  return context.patient_display.empty() ? patient_id : context.patient_display;
}

json Header(std::string_view report, const std::string& patient_id, int64_t requested_at,
            int64_t start, int64_t end, const ReportContext& context) {
  json deliver_to = nullptr;
  if (!context.deliver_to_address.empty()) {
    deliver_to = {{"address", context.deliver_to_address}, {"channel", context.deliver_to_channel}};
  }
  return json{
      {"report", report},
      {"practice", {{"name", context.practice_name}, {"contact", context.practice_contact}}},
      {"patient", {{"id", patient_id}, {"display", PatientLabel(context, patient_id)}}},
      {"deliver_to", std::move(deliver_to)},
      {"requested_at", FormatUtcTimestamp(requested_at)},
      {"period", {{"start", FormatUtcTimestamp(start)}, {"end", FormatUtcTimestamp(end)}}},
      {"generated_at", FormatUtcTimestamp(context.generated_at_unix_us)}};
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
dl.meta dd { margin: 0; }
table { border-collapse: collapse; width: 100%; font-size: .95rem; }
caption { text-align: left; font-weight: bold; padding: .3rem 0; }
th, td { border: 1px solid #777; padding: .35rem .5rem; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; }
thead th { background: #e8e8e8; }
td:first-child { white-space: nowrap; }
tr.summary td { background: #fbf5dc; }
tr.override td { background: #fbe3e3; }
.tag { display: inline-block; font-size: .75rem; font-weight: bold; letter-spacing: .05em;
       text-transform: uppercase; border: 1px solid #111; padding: 0 .3rem; margin-bottom: .2rem; }
.address { display: block; color: #333; font-size: .9rem; white-space: pre-line; }
.empty { font-style: italic; }
.rights { border-top: 1px solid #777; margin-top: 2rem; font-size: .95rem; }
footer { margin-top: 2rem; font-size: .85rem; color: #333; }
@page { margin: 15mm; }
@media print {
  body { max-width: none; margin: 0; padding: 0; font-size: 10.5pt; }
  thead { display: table-header-group; }
  tr { break-inside: avoid; page-break-inside: avoid; }
  tr.summary td, tr.override td, thead th { background: none; }
  tr.summary td:first-child, tr.override td:first-child { border-left: 3px solid #111; }
}
)";

void OpenPage(std::string& out, std::string_view title, const ReportContext& context,
              const std::string& patient_id, int64_t requested_at, int64_t start, int64_t end) {
  out += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  out += kHtmlSecurityPolicyMeta;
  out += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  out += "<title>" + HtmlEscape(title) + "</title>\n<style>" + std::string(kStyle) + "</style>\n";
  out += "</head>\n<body>\n<header>\n";
  // Without a configured name the page names no author rather than the software's name.
  if (!context.practice_name.empty()) {
    out += "<p class=\"practice\">" + HtmlEscape(context.practice_name) + "</p>\n";
  }
  if (!context.practice_contact.empty()) {
    out += "<p class=\"contact\">" + HtmlEscape(context.practice_contact) + "</p>\n";
  }
  out += "<h1>" + HtmlEscape(title) + "</h1>\n<dl class=\"meta\">\n";
  out += "<dt>Patient</dt><dd>" + HtmlEscape(PatientLabel(context, patient_id)) + "</dd>\n";
  if (!context.deliver_to_address.empty()) {
    out += "<dt>Deliver only to</dt><dd>" + HtmlEscape(context.deliver_to_address) + " (" +
           HtmlEscape(context.deliver_to_channel) +
           ", the patient's request for confidential communications)</dd>\n";
  }
  out += "<dt>Period covered</dt><dd>" + FormatUtcDate(start) + " to " + FormatUtcDate(end) +
         "</dd>\n";
  out += "<dt>Date of request</dt><dd>" + FormatUtcDate(requested_at) + "</dd>\n";
  out += "<dt>Prepared on</dt><dd>" + FormatUtcDate(context.generated_at_unix_us) + "</dd>\n";
  out += "</dl>\n</header>\n<main>\n";
}

void ClosePage(std::string& out, const ReportContext& context) {
  out += "</main>\n<footer>\n<p>Prepared by " + (context.practice_name.empty()
                                                     ? std::string("your health care provider")
                                                     : HtmlEscape(context.practice_name));
  if (!context.practice_contact.empty()) {
    out += ". Questions about this report: " + HtmlEscape(context.practice_contact);
  }
  out += ".</p>\n</footer>\n</body>\n</html>\n";
}

}  // namespace

std::string RenderAccountingJson(const Accounting& a, const ReportContext& context) {
  json j = Header("accounting_of_disclosures", a.patient_id, a.requested_at_unix_us,
                  a.period_start_unix_us, a.period_end_unix_us, context);
  j["regulation"] = "45 CFR 164.528";
  json list = json::array();
  for (const AccountingEntry& e : a.entries) {
    const Disclosure& d = e.first;
    json recipient = {{"name", d.recipient_name}};
    if (d.recipient_address) recipient["address"] = *d.recipient_address;
    json item = {{"date", FormatUtcTimestamp(d.time_unix_us)},
                 {"recipient", std::move(recipient)},
                 {"description", d.description},
                 {"purpose",
                  {{"statement", e.purpose},
                   {"code", d.purpose_code},
                   {"display", PurposeDisplay(d.purpose_code)}}},
                 {"basis", DisclosureKindName(d.kind)},
                 {"authority", DisclosureKindCitation(d.kind)},
                 {"record_ids", d.record_ids},
                 {"summarised", e.summarised()}};
    if (e.summarised()) {
      item["summary"] = {{"count", e.count},
                         {"first_date", FormatUtcTimestamp(d.time_unix_us)},
                         {"last_date", FormatUtcTimestamp(e.last_time_unix_us)}};
    }
    list.push_back(std::move(item));
  }
  j["disclosures"] = std::move(list);
  return Dump(j);
}

std::string RenderAccountingCsv(const Accounting& a) {
  std::string out;
  CsvRow(out, {"date", "recipient_name", "recipient_address", "description", "purpose",
               "purpose_code", "basis", "authority", "record_ids", "disclosure_count",
               "last_disclosure_date", "summarised"});
  for (const AccountingEntry& e : a.entries) {
    const Disclosure& d = e.first;
    CsvRow(out, {FormatUtcDate(d.time_unix_us), d.recipient_name, d.recipient_address.value_or(""),
                 d.description, e.purpose, d.purpose_code, DisclosureKindName(d.kind),
                 DisclosureKindCitation(d.kind), Join(d.record_ids, ";"), std::to_string(e.count),
                 FormatUtcDate(e.last_time_unix_us), e.summarised() ? "yes" : "no"});
  }
  return out;
}

std::string RenderAccountingHtml(const Accounting& a, const ReportContext& context) {
  std::string out;
  OpenPage(out, "Accounting of Disclosures", context, a.patient_id, a.requested_at_unix_us,
           a.period_start_unix_us, a.period_end_unix_us);
  if (a.entries.empty()) {
    out +=
        "<p class=\"empty\">We made no disclosures of your health information during this "
        "period that the law requires us to list.</p>\n";
  } else {
    out +=
        "<table>\n<caption>Disclosures of your health information</caption>\n<thead><tr>"
        "<th scope=\"col\">Date</th><th scope=\"col\">Recipient</th>"
        "<th scope=\"col\">Information disclosed</th><th scope=\"col\">Purpose</th>"
        "<th scope=\"col\">Repeated disclosures</th></tr></thead>\n<tbody>\n";
    for (const AccountingEntry& e : a.entries) {
      const Disclosure& d = e.first;
      out += e.summarised() ? "<tr class=\"summary\">" : "<tr>";
      out += "<td>" + FormatUtcDate(d.time_unix_us) + "</td><td>" + HtmlEscape(d.recipient_name);
      if (d.recipient_address && !d.recipient_address->empty()) {
        out += "<span class=\"address\">" + HtmlEscape(*d.recipient_address) + "</span>";
      }
      out += "</td><td>" + HtmlEscape(d.description) + "</td><td>" + HtmlEscape(e.purpose) +
             "</td><td>";
      if (e.summarised()) {
        out += "<span class=\"tag\">Summary</span><br>" + std::to_string(e.count) +
               " disclosures to this recipient for this purpose. The first is shown; the last "
               "was on " +
               FormatUtcDate(e.last_time_unix_us) + ".";
      } else {
        out += "Single disclosure";
      }
      out += "</td></tr>\n";
    }
    out += "</tbody>\n</table>\n";
  }
  const std::string practice =
      context.practice_name.empty() ? std::string("we") : HtmlEscape(context.practice_name);
  out += "<section class=\"rights\">\n<h2>About this accounting and your rights</h2>\n";
  out +=
      "<p>Under the HIPAA Privacy Rule (45 CFR 164.528) you have the right to a list of "
      "certain disclosures of your health information that " +
      practice +
      " made in the six years before your request (or a shorter period if you asked for "
      "one). This list covers the period shown above, including disclosures made by our "
      "business associates on our behalf.</p>\n";
  out +=
      "<p>The law does not require this list to include disclosures:</p>\n<ul>\n"
      "<li>to carry out your treatment, to obtain payment for your care, or for our health "
      "care operations;</li>\n"
      "<li>to you, or that you authorized in writing;</li>\n"
      "<li>that were incidental to another permitted use or disclosure;</li>\n"
      "<li>for our facility directory, to family members, friends or others involved in your "
      "care, or for notification purposes;</li>\n"
      "<li>for national security or intelligence purposes;</li>\n"
      "<li>to correctional institutions or law enforcement officials who had you in "
      "custody;</li>\n"
      "<li>as part of a limited data set, from which information that directly identifies "
      "you was removed.</li>\n</ul>\n";
  out +=
      "<p>Where we disclosed your information to the same recipient for the same purpose more "
      "than once, the list shows the first disclosure in full, the number of disclosures and "
      "the date of the last one; such lines are marked <span class=\"tag\">Summary</span>.</p>\n";
  out +=
      "<p>The first accounting you request in any 12-month period is free. For further "
      "requests within 12 months we may charge a reasonable, cost-based fee; we will tell you "
      "the fee in advance so that you can withdraw or change your request.</p>\n";
  out +=
      "<p>If you believe your privacy rights have been violated, you may complain to us or to "
      "the Secretary of the U.S. Department of Health and Human Services. We will not "
      "retaliate against you for filing a complaint.</p>\n</section>\n";
  ClosePage(out, context);
  return out;
}

std::string RenderAccessReportJson(const AccessReport& r, const ReportContext& context) {
  json j = Header("access_report", r.patient_id, r.requested_at_unix_us, r.period_start_unix_us,
                  r.period_end_unix_us, context);
  json list = json::array();
  for (const AccessReportEntry& e : r.entries) {
    list.push_back({{"time", FormatUtcTimestamp(e.time_unix_us)},
                    {"user", e.user},
                    {"role", e.role},
                    {"application", e.application},
                    {"action", e.action},
                    {"purpose", {{"code", e.purpose}, {"display", PurposeDisplay(e.purpose)}}},
                    {"outcome", e.outcome},
                    {"break_glass", e.break_glass}});
  }
  j["accesses"] = std::move(list);
  return Dump(j);
}

std::string RenderAccessReportCsv(const AccessReport& r) {
  std::string out;
  CsvRow(out, {"time", "user", "role", "application", "action", "purpose", "purpose_display",
               "outcome", "break_glass"});
  for (const AccessReportEntry& e : r.entries) {
    CsvRow(out, {FormatUtcTimestamp(e.time_unix_us), e.user, e.role, e.application, e.action,
                 e.purpose, PurposeDisplay(e.purpose), e.outcome, e.break_glass ? "yes" : "no"});
  }
  return out;
}

std::string RenderAccessReportHtml(const AccessReport& r, const ReportContext& context) {
  std::string out;
  OpenPage(out, "Access Report", context, r.patient_id, r.requested_at_unix_us,
           r.period_start_unix_us, r.period_end_unix_us);
  if (r.entries.empty()) {
    out += "<p class=\"empty\">No access to your records was recorded during this period.</p>\n";
  } else {
    out +=
        "<table>\n<caption>Recorded access to your health records</caption>\n<thead><tr>"
        "<th scope=\"col\">Date and time</th><th scope=\"col\">User</th>"
        "<th scope=\"col\">Role</th><th scope=\"col\">Application</th>"
        "<th scope=\"col\">Action</th><th scope=\"col\">Purpose</th>"
        "<th scope=\"col\">Outcome</th></tr></thead>\n<tbody>\n";
    for (const AccessReportEntry& e : r.entries) {
      const std::string display = PurposeDisplay(e.purpose);
      out += e.break_glass ? "<tr class=\"override\">" : "<tr>";
      out += "<td>" + HumanTime(e.time_unix_us) + "</td><td>" + HtmlEscape(e.user) + "</td><td>" +
             HtmlEscape(e.role) + "</td><td>" + HtmlEscape(e.application) + "</td><td>" +
             HtmlEscape(e.action) + "</td><td>";
      if (e.break_glass) out += "<span class=\"tag\">Emergency access</span><br>";
      out += HtmlEscape(display.empty() ? e.purpose : display + " (" + e.purpose + ")");
      out += "</td><td>" + HtmlEscape(e.outcome) + "</td></tr>\n";
    }
    out += "</tbody>\n</table>\n";
  }
  out +=
      "<section class=\"rights\">\n<h2>About this report</h2>\n<p>This report lists every "
      "recorded access to your health records kept in this system during the three years "
      "before your request, including access for your treatment, for payment and for our "
      "health care operations, and attempts that were refused. Times are in UTC. Lines marked "
      "<span class=\"tag\">Emergency access</span> were emergency overrides, each of which is "
      "reviewed.</p>\n</section>\n";
  ClosePage(out, context);
  return out;
}

std::string RenderAuditEntriesCsv(std::span<const DecodedAuditEntry> entries) {
  std::string out;
  CsvRow(out,
         {"seq", "time", "request_id", "application", "user", "role", "action", "outcome", "reason",
          "purpose", "patient_id", "records", "recipient", "break_glass", "break_glass_reason"});
  for (const DecodedAuditEntry& e : entries) {
    CsvRow(out, {std::to_string(e.seq), FormatUtcTimestamp(e.time_unix_us), e.request_id,
                 e.application, e.user, e.role, e.action, e.outcome, e.reason, e.purpose,
                 e.patient_id.value_or(""), Join(e.records, ";"), e.recipient.value_or(""),
                 e.break_glass ? "yes" : "no", e.break_glass_reason.value_or("")});
  }
  return out;
}

}  // namespace phivault::policies
