#include "policies/report_render.h"

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace phivault::policies {
namespace {

using nlohmann::json;
using testing::T;

constexpr char kPatient[] = "synthetic-patient-0001";
constexpr char kScript[] = "<script>alert(1)</script>";

// Minimal RFC 4180 reader, so tests check what a spreadsheet would see.
std::vector<std::vector<std::string>> ParseCsv(const std::string& text) {
  std::vector<std::vector<std::string>> rows(1);
  std::string field;
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field.push_back('"');
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field.push_back(c);
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      rows.back().push_back(field);
      field.clear();
    } else if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
      rows.back().push_back(field);
      field.clear();
      rows.emplace_back();
      ++i;
    } else {
      field.push_back(c);
    }
  }
  if (rows.back().empty() && field.empty()) rows.pop_back();
  return rows;
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

size_t Count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

Disclosure Make(int64_t time, std::string recipient, DisclosureKind kind) {
  Disclosure d;
  d.time_unix_us = time;
  d.patient_id = kPatient;
  d.recipient_name = std::move(recipient);
  d.purpose_code = "PUBHLTH";
  d.description = "Immunization record";
  d.record_ids = {"rec-1@1", "rec-2@3"};
  d.kind = kind;
  return d;
}

ReportContext Context() {
  return ReportContext{"Riverside Family Practice", "", "Privacy Officer, 555-0100",
                       T("2025-06-16T08:00:00Z")};
}

class RenderTest : public ::testing::Test {
 protected:
  Accounting Build(const std::vector<Disclosure>& ds, const std::vector<Suspension>& ss = {}) {
    StatusOr<Accounting> a = BuildAccounting({kPatient, now_, std::nullopt}, ds, ss);
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    return a.ok() ? *a : Accounting{};
  }
  Accounting Sample() {
    return Build(
        {Make(T("2021-01-05T00:00:00Z"), "County Health Dept", DisclosureKind::kPublicHealth),
         Make(T("2022-01-05T00:00:00Z"), "County Health Dept", DisclosureKind::kPublicHealth),
         Make(T("2023-04-05T00:00:00Z"), "County Health Dept", DisclosureKind::kPublicHealth),
         Make(T("2024-02-02T00:00:00Z"), "Clerk of Court", DisclosureKind::kJudicial)});
  }
  const int64_t now_ = T("2025-06-15T12:00:00Z");
};

TEST_F(RenderTest, AccountingCsvHasHeaderCrlfAndOneRowPerLine) {
  const std::string csv = RenderAccountingCsv(Sample());
  EXPECT_EQ(csv.rfind("date,recipient_name,recipient_address,description,purpose,purpose_code,"
                      "basis,authority,record_ids,disclosure_count,last_disclosure_date,"
                      "summarised\r\n",
                      0),
            0u);
  const auto rows = ParseCsv(csv);
  ASSERT_EQ(rows.size(), 3u);
  for (const auto& row : rows) EXPECT_EQ(row.size(), 12u);
  EXPECT_EQ(rows[1][0], "2021-01-05");
  EXPECT_EQ(rows[1][6], "public_health");
  EXPECT_EQ(rows[1][7], "45 CFR 164.512(b)");
  EXPECT_EQ(rows[1][8], "rec-1@1;rec-2@3");
  EXPECT_EQ(rows[1][9], "3");
  EXPECT_EQ(rows[1][10], "2023-04-05");
  EXPECT_EQ(rows[1][11], "yes");
  EXPECT_EQ(rows[2][9], "1");
  EXPECT_EQ(rows[2][11], "no");
}

TEST_F(RenderTest, CsvQuotesCommasQuotesAndNewlines) {
  Disclosure d =
      Make(T("2024-02-02T00:00:00Z"), "Smith, Jones & \"Partners\"", DisclosureKind::kJudicial);
  d.recipient_address = "Suite 5\r\n100 Court St";
  d.description = "Discharge summary\nand lab results";
  const std::string csv = RenderAccountingCsv(Build({d}));
  EXPECT_NE(csv.find("\"Smith, Jones & \"\"Partners\"\"\""), std::string::npos);
  const auto rows = ParseCsv(csv);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1][1], "Smith, Jones & \"Partners\"");
  EXPECT_EQ(rows[1][2], "Suite 5\r\n100 Court St");
  EXPECT_EQ(rows[1][3], "Discharge summary\nand lab results");
}

TEST_F(RenderTest, CsvKeepsUtf8ReplacesInvalidBytesAndDefusesFormulas) {
  Disclosure d =
      Make(T("2024-02-02T00:00:00Z"), "=HYPERLINK(\"http://x\")", DisclosureKind::kJudicial);
  d.description = "Zo\xC3\xAB M\xC3\xBCller \xFF\xC0\xAF end";
  const auto rows = ParseCsv(RenderAccountingCsv(Build({d})));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1][1], "'=HYPERLINK(\"http://x\")");
  EXPECT_EQ(rows[1][3], "Zo\xC3\xAB M\xC3\xBCller \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD end");
}

TEST_F(RenderTest, AccountingJsonCarriesEveryRequiredElement) {
  const json j = json::parse(RenderAccountingJson(Sample(), Context()));
  EXPECT_EQ(j["report"], "accounting_of_disclosures");
  EXPECT_EQ(j["patient"]["id"], kPatient);
  EXPECT_EQ(j["practice"]["name"], "Riverside Family Practice");
  EXPECT_EQ(j["period"]["start"], "2019-06-15T12:00:00.000000Z");
  EXPECT_EQ(j["period"]["end"], "2025-06-15T12:00:00.000000Z");
  ASSERT_EQ(j["disclosures"].size(), 2u);
  const json& summary = j["disclosures"][0];
  EXPECT_EQ(summary["recipient"]["name"], "County Health Dept");
  EXPECT_EQ(summary["description"], "Immunization record");
  EXPECT_EQ(summary["purpose"]["code"], "PUBHLTH");
  EXPECT_EQ(summary["purpose"]["display"], "public health");
  EXPECT_EQ(summary["summarised"], true);
  EXPECT_EQ(summary["summary"]["count"], 3);
  EXPECT_EQ(summary["summary"]["first_date"], "2021-01-05T00:00:00.000000Z");
  EXPECT_EQ(summary["summary"]["last_date"], "2023-04-05T00:00:00.000000Z");
  EXPECT_FALSE(j["disclosures"][1].contains("summary"));
  EXPECT_FALSE(j["disclosures"][1]["recipient"].contains("address"));
}

TEST_F(RenderTest, WithheldDisclosuresAppearInNoRendering) {
  Disclosure d = Make(T("2024-02-02T00:00:00Z"), "Office of Inspector General",
                      DisclosureKind::kHealthOversight);
  const Suspension s{"Office of Inspector General", T("2025-06-01T00:00:00Z"),
                     T("2025-12-01T00:00:00Z"), false, "Letter ref. 17"};
  const Accounting a = Build(
      {d, Make(T("2024-03-02T00:00:00Z"), "County Health Dept", DisclosureKind::kPublicHealth)},
      {s});
  ASSERT_EQ(a.withheld_under_suspension, 1u);
  for (const std::string& out : {RenderAccountingJson(a, Context()), RenderAccountingCsv(a),
                                 RenderAccountingHtml(a, Context())}) {
    EXPECT_EQ(out.find("Inspector General"), std::string::npos);
    EXPECT_EQ(Lower(out).find("suspen"), std::string::npos);
    EXPECT_EQ(Lower(out).find("withheld"), std::string::npos);
    EXPECT_NE(out.find("County Health Dept"), std::string::npos);
  }
}

TEST_F(RenderTest, HtmlIsAStandalonePrintablePage) {
  ReportContext ctx = Context();
  ctx.patient_display = "Jane Q. Synthetic (DOB 1970-01-01)";
  const std::string html = RenderAccountingHtml(Sample(), ctx);
  EXPECT_EQ(html.rfind("<!DOCTYPE html>\n<html lang=\"en\">", 0), 0u);
  EXPECT_NE(html.find("<meta charset=\"utf-8\">"), std::string::npos);
  EXPECT_NE(html.find("<title>Accounting of Disclosures</title>"), std::string::npos);
  EXPECT_NE(html.find("<h1>Accounting of Disclosures</h1>"), std::string::npos);
  EXPECT_NE(html.find("Jane Q. Synthetic (DOB 1970-01-01)"), std::string::npos);
  EXPECT_NE(html.find("Riverside Family Practice"), std::string::npos);
  EXPECT_NE(html.find("2019-06-15 to 2025-06-15"), std::string::npos);
  EXPECT_NE(html.find("@media print"), std::string::npos);
  EXPECT_NE(html.find("</html>\n"), std::string::npos);
  // Self-contained: nothing fetched, nothing executed.
  const std::string lower = Lower(html);
  for (const char* forbidden :
       {"<script", "<link", "<img", "<iframe", "src=", "url(", "@import", "http://", "https://"}) {
    EXPECT_EQ(lower.find(forbidden), std::string::npos) << forbidden;
  }
  EXPECT_NE(html.find("Content-Security-Policy"), std::string::npos);
  // The summarised line is marked in words, not only by colour, with count and last date.
  EXPECT_EQ(Count(html, "<tr class=\"summary\">"), 1u);
  EXPECT_NE(html.find("3 disclosures to this recipient for this purpose"), std::string::npos);
  EXPECT_NE(html.find("the last was on 2023-04-05"), std::string::npos);
  EXPECT_NE(html.find("Single disclosure"), std::string::npos);
  // Rights and exclusions in plain language.
  EXPECT_NE(html.find("45 CFR 164.528"), std::string::npos);
  EXPECT_NE(html.find("treatment, to obtain payment for your care"), std::string::npos);
  EXPECT_NE(html.find("limited data set"), std::string::npos);
  EXPECT_NE(html.find("12-month period is free"), std::string::npos);
}

TEST_F(RenderTest, EmptyAccountingSaysSoInPlainLanguage) {
  const std::string html = RenderAccountingHtml(Build({}), Context());
  EXPECT_NE(html.find("We made no disclosures of your health information during this period"),
            std::string::npos);
  EXPECT_EQ(html.find("<table>"), std::string::npos);
}

TEST_F(RenderTest, HtmlEscapesScriptInEveryAccountingField) {
  Disclosure d = Make(T("2024-02-02T00:00:00Z"), kScript, DisclosureKind::kJudicial);
  d.recipient_address = kScript;
  d.description = kScript;
  d.purpose_statement = kScript;
  Disclosure again = d;
  again.time_unix_us = T("2024-03-02T00:00:00Z");
  ReportContext ctx{kScript, kScript, kScript, T("2025-06-16T08:00:00Z")};
  const std::string html = RenderAccountingHtml(Build({d, again}), ctx);
  EXPECT_EQ(Lower(html).find("<script"), std::string::npos);
  // practice (header, footer, rights text), contact (header, footer), patient, recipient,
  // address, description, purpose.
  EXPECT_EQ(Count(html, "&lt;script&gt;alert(1)&lt;/script&gt;"), 10u);
}

TEST_F(RenderTest, HtmlEscapesQuotesAmpersandsAndControlCharacters) {
  Disclosure d =
      Make(T("2024-02-02T00:00:00Z"), "A&B \"Law\" 'Firm'\x01", DisclosureKind::kJudicial);
  const std::string html = RenderAccountingHtml(Build({d}), Context());
  EXPECT_NE(html.find("A&amp;B &quot;Law&quot; &#39;Firm&#39;\xEF\xBF\xBD"), std::string::npos);
}

// --- Access report
// ----------------------------------------------------------------------------------

AccessReport SampleAccessReport(const std::string& text) {
  AccessReport r;
  r.patient_id = kPatient;
  r.requested_at_unix_us = T("2025-06-15T12:00:00Z");
  r.period_start_unix_us = T("2022-06-15T12:00:00Z");
  r.period_end_unix_us = r.requested_at_unix_us;
  r.entries.push_back({T("2024-01-01T09:30:00Z"), text, text, text, text, text, text, false});
  r.entries.push_back({T("2024-02-01T02:00:00Z"), "dr.0007", "physician", "ehr-ed", "record.read",
                       "BTG", "success", true});
  return r;
}

TEST(AccessReportRender, CsvAndJsonListEveryAccess) {
  const AccessReport r = SampleAccessReport("clerk, \"front\" desk");
  const auto rows = ParseCsv(RenderAccessReportCsv(r));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0],
            (std::vector<std::string>{"time", "user", "role", "application", "action", "purpose",
                                      "purpose_display", "outcome", "break_glass"}));
  EXPECT_EQ(rows[1][1], "clerk, \"front\" desk");
  EXPECT_EQ(rows[2][5], "BTG");
  EXPECT_EQ(rows[2][6], "break the glass");
  EXPECT_EQ(rows[2][8], "yes");

  const json j = json::parse(RenderAccessReportJson(r, Context()));
  EXPECT_EQ(j["report"], "access_report");
  ASSERT_EQ(j["accesses"].size(), 2u);
  EXPECT_EQ(j["accesses"][1]["user"], "dr.0007");
  EXPECT_EQ(j["accesses"][1]["purpose"]["display"], "break the glass");
  EXPECT_EQ(j["accesses"][1]["break_glass"], true);
}

TEST(AccessReportRender, HtmlEscapesScriptInEveryFieldAndMarksOverrides) {
  const std::string html = RenderAccessReportHtml(SampleAccessReport(kScript), Context());
  EXPECT_EQ(Lower(html).find("<script"), std::string::npos);
  // user, role, application, action, purpose, outcome.
  EXPECT_EQ(Count(html, "&lt;script&gt;alert(1)&lt;/script&gt;"), 6u);
  EXPECT_NE(html.find("<title>Access Report</title>"), std::string::npos);
  EXPECT_NE(html.find("2024-01-01 09:30:00 UTC"), std::string::npos);
  EXPECT_NE(html.find("Emergency access</span><br>break the glass (BTG)"), std::string::npos);
  EXPECT_NE(html.find("2022-06-15 to 2025-06-15"), std::string::npos);
}

// A vault without a configured practice name must not tell the patient that a program, or
// nobody, made the disclosures.
TEST_F(RenderTest, HtmlWithoutAPracticeNameSpeaksForThePractice) {
  ReportContext ctx = Context();
  ctx.practice_name.clear();
  const Disclosure d = Make(T("2024-02-02T00:00:00Z"), "County Court", DisclosureKind::kJudicial);
  for (const std::string& html : {RenderAccountingHtml(Build({d}), ctx),
                                  RenderAccessReportHtml(SampleAccessReport("x"), ctx)}) {
    EXPECT_EQ(html.find("<p class=\"practice\">"), std::string::npos);
    EXPECT_EQ(html.find("Prepared by ."), std::string::npos);
    EXPECT_EQ(html.find("Prepared by Privacy"), std::string::npos);
    EXPECT_NE(html.find("Prepared by your health care provider. Questions about this report: "
                        "Privacy Officer, 555-0100."),
              std::string::npos);
    EXPECT_EQ(html.find("phivault"), std::string::npos);
  }
  EXPECT_NE(RenderAccountingHtml(Build({d}), ctx).find("health information that we made"),
            std::string::npos);
}

TEST(AuditEntriesCsv, RendersEveryFieldWithRecordsJoined) {
  DecodedAuditEntry e;
  e.seq = 42;
  e.time_unix_us = T("2025-01-02T03:04:05Z");
  e.request_id = "req-1";
  e.application = "ehr";
  e.user = "dr.0007";
  e.role = "physician";
  e.action = "record.disclose";
  e.outcome = "success";
  e.reason = "rule:disclose-public-health";
  e.purpose = "PUBHLTH";
  e.patient_id = kPatient;
  e.records = {"rec-1@2", "rec-9"};
  e.recipient = "County Health Dept, Epidemiology";
  DecodedAuditEntry bare;
  bare.seq = 43;
  bare.action = "policy.reload";
  const auto rows = ParseCsv(RenderAuditEntriesCsv(std::vector{e, bare}));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].size(), 15u);
  EXPECT_EQ(rows[1],
            (std::vector<std::string>{
                "42", "2025-01-02T03:04:05.000000Z", "req-1", "ehr", "dr.0007", "physician",
                "record.disclose", "success", "rule:disclose-public-health", "PUBHLTH", kPatient,
                "rec-1@2;rec-9", "County Health Dept, Epidemiology", "no", ""}));
  EXPECT_EQ(rows[2][10], "");
  EXPECT_EQ(rows[2][6], "policy.reload");
}

}  // namespace
}  // namespace phivault::policies
