#include "policies/certificate_render.h"

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace phivault::policies {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::T;

constexpr char kScript[] = "<script>alert(1)</script>";
constexpr char kBid[] = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

storage::DestructionCertificate Sample() {
  storage::DestructionCertificate c;
  c.id = "00112233445566778899aabbccddeeff";
  c.principal = "system:retention-sweep";
  c.user = "sweeper";
  c.role = "records-officer";
  c.started_unix_us = T("2026-12-01T11:07:38.123456Z");
  c.finished_unix_us = T("2026-12-01T11:08:21.000001Z");
  c.epoch_ids = {"d20261130", "h-matter_7"};
  c.media = "vault data directory and keyring copies";
  c.records = {{"Bbbbbbbbbbbbbbbbbbbbbw", 1, "lab", kBid},
               {"Bbbbbbbbbbbbbbbbbbbbbw", 2, "lab", kBid},
               {"Cccccccccccccccccccccg", 1, "imaging", kBid}};
  c.verification = "decrypt of each destroyed version; byte scan of live files";
  c.verification_result = "passed";
  c.tool_name = "phivault";
  c.tool_version = "0.9.0";
  c.audit_seq_first = 4107;
  c.audit_seq_last = 4111;
  return c;
}

CertificateContext Context() {
  return {"Synthetic Family Practice", "1 Example St",
          "vault.example/audit+01234567+AQ==", T("2026-12-02T09:00:00Z")};
}

TEST(CertificateRenderTest, HtmlShowsEveryField) {
  const std::string html = RenderDestructionCertificateHtml(Sample(), Context());
  for (const char* expected :
       {"00112233445566778899aabbccddeeff",
        "system:retention-sweep",
        "sweeper",
        "records-officer",
        "2026-12-01 11:07:38.123456 UTC",
        "2026-12-01 11:08:21.000001 UTC",
        "purge by cryptographic erase of epoch keys d20261130, h-matter_7, then deletion and "
        "compaction of the ciphertext",
        "<code>d20261130</code>, <code>h-matter_7</code>",
        "Purge",
        "vault data directory and keyring copies",
        "Bbbbbbbbbbbbbbbbbbbbbw",
        "Cccccccccccccccccccccg",
        kBid,
        "Category imaging</dt><dd>1 version",
        "Category lab</dt><dd>2 versions",
        "Records</dt><dd>2",
        "Record versions</dt><dd>3",
        "Patients (by blind id)</dt><dd>1",
        "decrypt of each destroyed version; byte scan of live files",
        "Verification result</dt><dd>passed",
        "phivault 0.9.0",
        "seq 4107 to 4111",
        "vault.example/audit+01234567+AQ==",
        "Synthetic Family Practice",
        "1 Example St",
        "2026-12-02",
        "NIST SP 800-88 Rev. 1"}) {
    EXPECT_THAT(html, HasSubstr(expected));
  }
  EXPECT_THAT(html, HasSubstr("content=\"default-src 'none'; style-src 'unsafe-inline'\""));
  EXPECT_THAT(html, Not(HasSubstr("<script")));
}

TEST(CertificateRenderTest, HtmlEscapesHostileStrings) {
  storage::DestructionCertificate c = Sample();
  c.principal = kScript;
  c.user = "\"><img src=x onerror=alert(1)>";
  c.role = "a&b";
  c.media = kScript;
  c.verification = "it's <b>fine</b>";
  c.verification_result = std::string("bad utf-8 \xC0\xAF and \x01 control");
  c.tool_name = "<tool>";
  c.tool_version = "<v>";
  c.records[0].category = "<cat>";
  c.epoch_ids[0] = "<epoch>";
  c.id = "<id>";
  CertificateContext context = Context();
  context.practice_name = kScript;
  context.practice_contact = "</p><script>x</script>";
  context.verifier_key = "<key>";
  const std::string html = RenderDestructionCertificateHtml(c, context);
  EXPECT_THAT(html, Not(HasSubstr("<script")));
  EXPECT_THAT(html, Not(HasSubstr("<img")));
  for (const char* raw : {"<b>", "<tool>", "<v>", "<cat>", "<epoch>", "<id>", "<key>", "\x01"}) {
    EXPECT_THAT(html, Not(HasSubstr(raw))) << raw;
  }
  EXPECT_THAT(html, HasSubstr("&lt;script&gt;alert(1)&lt;/script&gt;"));
  EXPECT_THAT(html, HasSubstr("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
  EXPECT_THAT(html, HasSubstr("a&amp;b"));
  EXPECT_THAT(html, HasSubstr("it&#39;s &lt;b&gt;fine&lt;/b&gt;"));
  EXPECT_THAT(html, HasSubstr("bad utf-8 \xEF\xBF\xBD\xEF\xBF\xBD and \xEF\xBF\xBD control"));
}

TEST(CertificateRenderTest, JsonHoldsEveryField) {
  const json j = json::parse(RenderDestructionCertificateJson(Sample(), Context()));
  EXPECT_EQ(j["certificate"], "destruction");
  EXPECT_THAT(j["standard"].get<std::string>(), HasSubstr("Appendix G"));
  EXPECT_EQ(j["id"], "00112233445566778899aabbccddeeff");
  EXPECT_EQ(j["performed_by"], (json{{"principal", "system:retention-sweep"},
                                     {"user", "sweeper"},
                                     {"role", "records-officer"}}));
  EXPECT_EQ(j["started"], "2026-12-01T11:07:38.123456Z");
  EXPECT_EQ(j["finished"], "2026-12-01T11:08:21.000001Z");
  EXPECT_EQ(j["sanitization"]["type"], "purge");
  EXPECT_EQ(j["sanitization"]["technique"], "cryptographic erase");
  EXPECT_EQ(j["sanitization"]["epoch_keys"], (json{"d20261130", "h-matter_7"}));
  EXPECT_THAT(j["sanitization"]["method"].get<std::string>(),
              HasSubstr("then deletion and compaction of the ciphertext"));
  EXPECT_EQ(j["media"], "vault data directory and keyring copies");
  EXPECT_EQ(j["destroyed"]["counts"], (json{{"records", 2}, {"versions", 3}, {"patients", 1}}));
  EXPECT_EQ(j["destroyed"]["by_category"], (json{{"imaging", 1}, {"lab", 2}}));
  ASSERT_EQ(j["destroyed"]["records"].size(), 3u);
  EXPECT_EQ(j["destroyed"]["records"][1], (json{{"record_id", "Bbbbbbbbbbbbbbbbbbbbbw"},
                                                {"version", 2},
                                                {"category", "lab"},
                                                {"patient_bid", kBid}}));
  EXPECT_EQ(j["verification"],
            (json{{"method", "decrypt of each destroyed version; byte scan of live files"},
                  {"result", "passed"}}));
  EXPECT_EQ(j["tool"], (json{{"name", "phivault"}, {"version", "0.9.0"}}));
  EXPECT_EQ(j["audit_seq"], (json{{"first", 4107}, {"last", 4111}}));
  EXPECT_EQ(j["verifier_key"], "vault.example/audit+01234567+AQ==");
  EXPECT_EQ(j["generated_at"], "2026-12-02T09:00:00.000000Z");
}

TEST(CertificateRenderTest, JsonReplacesInvalidUtf8) {
  storage::DestructionCertificate c = Sample();
  c.user = "bad \xC0\xAF";
  const json j = json::parse(RenderDestructionCertificateJson(c, Context()));
  EXPECT_EQ(j["performed_by"]["user"], "bad \xEF\xBF\xBD\xEF\xBF\xBD");
}

}  // namespace
}  // namespace phivault::policies
