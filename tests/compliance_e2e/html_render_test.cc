// The HTML accounting of disclosures, as `phivault report accounting --format html` writes it,
// renders in a real browser (Debian's headless Chromium): the rendered DOM shows the title, the
// recipient with its address and the summarised count, and a screenshot is taken.
#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/compliance_e2e/compliance_harness.h"

namespace phivault::compliance_e2e {
namespace {

using e2e::ReadFile;

using ComplianceE2eHtmlTest = ComplianceVaultTest;

TEST_F(ComplianceE2eHtmlTest, AccountingRendersInHeadlessChromium) {
  ASSERT_TRUE(IsExecutable(PHIVAULT_CHROMIUM))
      << "Chromium is not installed (looked for '" << PHIVAULT_CHROMIUM
      << "'): run scripts/install-deps.sh --test (Debian package 'chromium'), then re-run cmake";

  const PracticeDay day = RecordPracticeDay(vault_);
  ASSERT_FALSE(HasFailure());
  const std::string html_path = vault_.ScratchPath("accounting.html");
  auto html = Officer(vault_, {"report", "accounting", "--patient", day.patient, "--format", "html",
                               "-o", html_path});
  ASSERT_EQ(html.exit_code, 0) << Describe(html);

  // A private profile and home, so the browser neither reads nor leaves anything elsewhere; no
  // network features (the page itself has no external resources).
  e2e::ShortTempDir profile;
  const std::map<std::string, std::string> env = {{"HOME", profile.path()},
                                                  {"XDG_CONFIG_HOME", profile.Sub("config")},
                                                  {"XDG_CACHE_HOME", profile.Sub("cache")}};
  auto chromium = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {PHIVAULT_CHROMIUM,
                                     "--headless",
                                     "--no-sandbox",
                                     "--disable-gpu",
                                     "--disable-quic",
                                     "--no-first-run",
                                     "--disable-background-networking",
                                     "--disable-component-update",
                                     "--disable-sync",
                                     "--user-data-dir=" + profile.Sub("profile")};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back("file://" + html_path);
    return e2e::RunProcess(argv, vault_.ScratchPath(""), env, "", std::chrono::seconds(120));
  };

  auto dom = chromium({"--dump-dom"});
  ASSERT_EQ(dom.exit_code, 0) << Describe(dom);
  EXPECT_NE(dom.out.find("Accounting of Disclosures"), std::string::npos) << Describe(dom);
  EXPECT_NE(dom.out.find(day.health_department), std::string::npos) << Describe(dom);
  EXPECT_NE(dom.out.find(day.health_department_address), std::string::npos) << Describe(dom);
  EXPECT_NE(dom.out.find(day.registry), std::string::npos) << Describe(dom);
  EXPECT_NE(dom.out.find(std::to_string(PracticeDay::kRegistryDisclosures) +
                         " disclosures to this recipient"),
            std::string::npos)
      << Describe(dom);
  EXPECT_EQ(dom.out.find(day.referral_clinic), std::string::npos) << "TPO disclosure shown";

  const std::string png_path = vault_.ScratchPath("accounting.png");
  auto shot =
      chromium({"--hide-scrollbars", "--window-size=1000,1400", "--screenshot=" + png_path});
  EXPECT_EQ(shot.exit_code, 0) << Describe(shot);
  const std::string png = ReadFile(png_path);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8)) << "no PNG screenshot";
  EXPECT_GT(png.size(), 10000u) << "a page of text compresses to more than this";

  // For a person to look at (e.g. CI artifacts): PHIVAULT_TEST_ARTIFACTS_DIR gets both files.
  if (const char* dir = std::getenv("PHIVAULT_TEST_ARTIFACTS_DIR"); dir != nullptr && *dir) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    for (const auto& [from, name] :
         {std::pair{html_path, "accounting.html"}, std::pair{png_path, "accounting.png"}}) {
      std::filesystem::copy_file(from, std::string(dir) + "/" + name,
                                 std::filesystem::copy_options::overwrite_existing, ec);
      EXPECT_FALSE(ec) << "cannot copy " << name << " to " << dir << ": " << ec.message();
    }
  }
}

}  // namespace
}  // namespace phivault::compliance_e2e
