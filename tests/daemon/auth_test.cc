// Authentication at the socket: application tokens (hash + peer uid), operators by uid or group,
// peer credentials from the kernel, and the acting-party headers.
#include "daemon/auth.h"

#include <grp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "crypto/hash.h"
#include "crypto/secret.h"

namespace phivault::daemon {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kEhrToken[] = "pvt_synthetic-ehr-token";
constexpr char kBillingToken[] = "pvt_synthetic-billing-token";

std::string HashOf(const std::string& token) {
  return crypto::HexEncode(crypto::AsView(crypto::Sha256(token)));
}

std::string OwnGroupName() {
  const struct group* g = getgrgid(getgid());
  return g == nullptr ? "" : g->gr_name;
}

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(crypto::InitSodium().ok());
    config_.config_path = "phivault.toml";
    config_.roles = DefaultRoles();
    ApplicationConfig ehr{
        "ehr", HashOf(kEhrToken), {998, 999}, {"record.create", "record.read"}, {"physician"}, {}};
    ApplicationConfig billing{"billing",       HashOf(kBillingToken), {997},
                              {"record.list"}, {"billing"},           {"HPAYMT"}};
    config_.applications = {ehr, billing};
  }

  std::unique_ptr<Authenticator> Make(Authenticator::GroupsOfFn fn = SystemGroupsOf) {
    auto a = Authenticator::Create(config_, std::move(fn));
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    return a.ok() ? std::move(a).value() : nullptr;
  }

  static PeerCredentials Peer(uint32_t uid, uint32_t gid = 5000) { return {1234, uid, gid}; }

  Config config_;
};

TEST_F(AuthTest, TokenOfAnApplicationFromOneOfItsUidsIsAccepted) {
  auto auth = Make();
  auto p = auth->Authenticate(Peer(999), std::string("Bearer ") + kEhrToken);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->kind, Principal::Kind::kApplication);
  EXPECT_EQ(p->name, "ehr");
  EXPECT_EQ(p->uid, 999u);
  EXPECT_EQ(p->actions, (std::vector<std::string>{"record.create", "record.read"}));
  EXPECT_EQ(p->roles, (std::vector<std::string>{"physician"}));
  EXPECT_TRUE(p->purposes.empty());

  auto b = auth->Authenticate(Peer(997), std::string("bearer ") + kBillingToken);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->name, "billing");
}

TEST_F(AuthTest, TokenFromAnotherUidIsRejected) {
  auto auth = Make();
  // The billing app's uid presenting the EHR's token: a stolen token is useless elsewhere.
  auto p = auth->Authenticate(Peer(997), std::string("Bearer ") + kEhrToken);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kUnauthenticated);
  EXPECT_THAT(p.status().message(), Not(HasSubstr(kEhrToken)));
}

TEST_F(AuthTest, WrongOrMalformedTokensAreRejected) {
  auto auth = Make();
  for (const std::string& header :
       {std::string("Bearer pvt_synthetic-ehr-tokeN"), std::string("Basic dXNlcjpwdw=="),
        std::string("Bearer "), std::string("Bearer"), std::string(kEhrToken),
        std::string("Bearer ") + kEhrToken + " extra", std::string("Bearer ") + HashOf(kEhrToken),
        "Bearer " + std::string(600, 'a')}) {
    SCOPED_TRACE(header);
    auto p = auth->Authenticate(Peer(999), header);
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.status().code(), StatusCode::kUnauthenticated);
  }
}

TEST_F(AuthTest, OperatorIsFoundByUid) {
  config_.operators.push_back(OperatorConfig{1000, "", "physician", {"status"}});
  auto auth = Make();
  auto p = auth->Authenticate(Peer(1000), std::nullopt);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->kind, Principal::Kind::kOperator);
  EXPECT_EQ(p->name, "cli:1000");
  EXPECT_EQ(p->operator_role, "physician");
  EXPECT_EQ(p->actions, std::vector<std::string>{"status"});

  auto other = auth->Authenticate(Peer(1001), std::nullopt);
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), StatusCode::kUnauthenticated);
}

TEST_F(AuthTest, OperatorIsFoundByPrimaryGroup) {
  const std::string group = OwnGroupName();
  ASSERT_FALSE(group.empty());
  config_.operators.push_back(OperatorConfig{std::nullopt, group, "vault_admin", {"status"}});
  auto auth = Make([](uint32_t, uint32_t primary) { return std::vector<uint32_t>{primary}; });
  auto p = auth->Authenticate(Peer(4321, getgid()), std::nullopt);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->name, "cli:4321");
  EXPECT_EQ(p->operator_role, "vault_admin");
  EXPECT_FALSE(auth->Authenticate(Peer(4321, getgid() + 1), std::nullopt).ok());
}

TEST_F(AuthTest, OperatorIsFoundBySupplementaryGroup) {
  const std::string group = OwnGroupName();
  ASSERT_FALSE(group.empty());
  config_.operators.push_back(OperatorConfig{std::nullopt, group, "vault_admin", {"status"}});
  const uint32_t gid = getgid();
  auto auth = Make([gid](uint32_t uid, uint32_t primary) {
    return uid == 4321 ? std::vector<uint32_t>{primary, gid} : std::vector<uint32_t>{primary};
  });
  EXPECT_TRUE(auth->Authenticate(Peer(4321, gid + 1), std::nullopt).ok());
  EXPECT_FALSE(auth->Authenticate(Peer(4322, gid + 1), std::nullopt).ok());
}

TEST_F(AuthTest, UidEntryWinsOverGroupEntry) {
  config_.operators.push_back(
      OperatorConfig{std::nullopt, OwnGroupName(), "vault_admin", {"status"}});
  config_.operators.push_back(OperatorConfig{4321, "", "physician", {"record.read"}});
  auto auth = Make([](uint32_t, uint32_t primary) { return std::vector<uint32_t>{primary}; });
  auto p = auth->Authenticate(Peer(4321, getgid()), std::nullopt);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->operator_role, "physician");
}

TEST_F(AuthTest, UnknownOperatorGroupFailsAtCreation) {
  config_.operators.push_back(
      OperatorConfig{std::nullopt, "phivault-no-such-group-xyz", "vault_admin", {"status"}});
  auto a = Authenticator::Create(config_);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(a.status().message(), HasSubstr("operators[0].group"));
}

TEST(PeerCredentialsTest, AreThoseOfTheConnectedProcess) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  auto peer = GetPeerCredentials(fds[0]);
  close(fds[0]);
  close(fds[1]);
  ASSERT_TRUE(peer.ok()) << peer.status().ToString();
  EXPECT_EQ(peer->uid, getuid());
  EXPECT_EQ(peer->gid, getgid());
  EXPECT_EQ(peer->pid, getpid());
}

TEST(PeerCredentialsTest, FailOnANonSocket) { EXPECT_FALSE(GetPeerCredentials(-1).ok()); }

TEST(SystemGroupsTest, IncludeThePrimaryGroup) {
  const auto groups = SystemGroupsOf(getuid(), getgid());
  EXPECT_THAT(groups, ::testing::Contains(getgid()));
}

TEST(PurposeOfUseTest, KnowsTheValueSetCaseSensitively) {
  for (const char* code : {"TREAT", "ETREAT", "BTG", "HPAYMT", "HOPERAT", "PATRQT", "HLEGAL",
                           "PUBHLTH", "HRESCH", "COC", "POPHLTH", "HSYSADMIN"}) {
    EXPECT_TRUE(IsKnownPurposeOfUse(code)) << code;
  }
  for (const char* code : {"treat", "PurposeOfUse", "", "TREAT ", "CURIOSITY"}) {
    EXPECT_FALSE(IsKnownPurposeOfUse(code)) << code;
  }
  EXPECT_EQ(PurposeOfUseCodes().size(), 59u);
}

Status Check(const std::string* user, const std::string* role, const std::string* purpose) {
  return CheckActingPartyHeaders(ActingPartyHeaders{user, role, purpose});
}

TEST(ActingPartyTest, MissingOrMalformedHeadersAreInvalid) {
  const std::string user = "nurse.synthetic";
  const std::string role = "nurse";
  const std::string purpose = "TREAT";
  EXPECT_TRUE(Check(&user, &role, &purpose).ok());

  const std::string empty;
  EXPECT_EQ(Check(nullptr, &role, &purpose).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Check(&empty, &role, &purpose).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Check(&user, nullptr, &purpose).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Check(&user, &empty, &purpose).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Check(&user, &role, nullptr).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Check(&user, &role, &empty).code(), StatusCode::kInvalidArgument);

  for (const std::string& good :
       std::vector<std::string>{"a", "dr.synthetic", "jane.doe@clinic.example", "J Doe",
                                "x+tag_1-2", "7", std::string(128, 'u')}) {
    EXPECT_TRUE(Check(&good, &role, &purpose).ok()) << good;
  }
  for (const std::string& bad : std::vector<std::string>{
           "nurse\x01", "bad\xffuser", "Zo\xc3\xab", "=cmd|' /C calc'!A0", "+1", "-x", "@sum",
           ".hidden", " lead", "trail ", "tab\there", "back\\slash", "semi;colon", "a\r\nX-Role: x",
           std::string(129, 'u')}) {
    const Status s = Check(&bad, &role, &purpose);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("X-Phivault-User"), std::string::npos);
    EXPECT_EQ(s.message().find(bad), std::string::npos) << "the value is quoted back";
  }
  for (const std::string& bad :
       std::vector<std::string>{"Nurse", "-nurse", "nurse.x", "nur se", std::string(65, 'r')}) {
    EXPECT_EQ(Check(&user, &bad, &purpose).code(), StatusCode::kInvalidArgument) << bad;
  }
  for (const std::string& bad :
       std::vector<std::string>{"treat", "TREAT ", "TRE4T", std::string(33, 'T')}) {
    EXPECT_EQ(Check(&user, &role, &bad).code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(ActingPartyTest, UnknownRoleOrPurposeIsForbidden) {
  const auto roles = DefaultRoles();
  EXPECT_TRUE(AuthorizeActingParty("nurse", "TREAT", roles).ok());
  EXPECT_EQ(AuthorizeActingParty("wizard", "TREAT", roles).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(AuthorizeActingParty("nurse", "CURIOSITY", roles).code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(AuthorizeActingParty("nurse", "PURPOSEOFUSE", roles).code(),
            StatusCode::kPermissionDenied);
}

TEST(ActingPartyTest, OperatorInAnotherRoleIsToldAboutTheMissingToken) {
  Principal op;
  op.kind = Principal::Kind::kOperator;
  op.name = "cli:1000";
  op.uid = 1000;
  op.operator_role = "vault_admin";
  EXPECT_TRUE(CheckOperatorRole(op, "vault_admin").ok());
  const Status s = CheckOperatorRole(op, "nurse");
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(),
            "no bearer token was sent, and the operator entry for peer uid 1000 allows role "
            "\"vault_admin\" only (X-Phivault-Role names \"nurse\"); operators act only in "
            "their configured role");
  Principal app = op;
  app.kind = Principal::Kind::kApplication;
  EXPECT_TRUE(CheckOperatorRole(app, "nurse").ok());
}

TEST(ActingPartyTest, ApplicationAssertsOnlyItsBoundRolesAndPurposes) {
  Principal app;
  app.kind = Principal::Kind::kApplication;
  app.name = "ehr";
  app.roles = {"physician", "nurse"};
  EXPECT_TRUE(CheckBoundClaims(app, "nurse", "ETREAT").ok());  // no `purposes`: any
  Status s = CheckBoundClaims(app, "compliance_officer", "HOPERAT");
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(),
            "application ehr may not assert role compliance_officer (config:application_roles)");
  app.purposes = {"TREAT"};
  EXPECT_TRUE(CheckBoundClaims(app, "physician", "TREAT").ok());
  s = CheckBoundClaims(app, "physician", "HMARKT");
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(),
            "application ehr may not assert purpose HMARKT (config:application_purposes)");
  // Operators are bound by CheckOperatorRole instead.
  Principal op;
  op.kind = Principal::Kind::kOperator;
  op.operator_role = "vault_admin";
  EXPECT_TRUE(CheckBoundClaims(op, "vault_admin", "HOPERAT").ok());
}

TEST_F(AuthTest, OperatorIsBoundToItsEntrysRoleAndActsAsItsAccount) {
  config_.operators.push_back(OperatorConfig{getuid(), "", "physician", {"status"}});
  auto auth = Make();
  auto p = auth->Authenticate(Peer(getuid()), std::nullopt, "physician");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->roles, (std::vector<std::string>{"physician"}));
  EXPECT_EQ(p->account, AccountNameOf(getuid()));
}

TEST(ActingPartyTest, AccountNameIsThePasswdNameOrTheUid) {
  EXPECT_EQ(AccountNameOf(0), "root");
  // No passwd entry has this uid (the largest valid one).
  EXPECT_EQ(AccountNameOf(4294967294u), "uid:4294967294");
}

TEST(ActingPartyTest, ClaimsAreSanitisedIntoValidUtf8) {
  EXPECT_EQ(SanitizeClaimForAudit("dr.synthetic", 128), "dr.synthetic");
  EXPECT_EQ(SanitizeClaimForAudit("bad\xffuser", 128), "bad\\xffuser");
  EXPECT_EQ(SanitizeClaimForAudit("a\\b", 128), "a\\\\b");
  EXPECT_EQ(SanitizeClaimForAudit("a\r\nb", 128), "a\\x0d\\x0ab");
  EXPECT_EQ(SanitizeClaimForAudit("Zo\xc3\xab", 128), "Zo\\xc3\\xab");
  EXPECT_EQ(SanitizeClaimForAudit(std::string(128, 'u'), 128), std::string(128, 'u'));
  EXPECT_EQ(SanitizeClaimForAudit(std::string(129, 'u'), 128),
            std::string(128, 'u') + "\xe2\x80\xa6");
  // An escape is never cut in half.
  EXPECT_EQ(SanitizeClaimForAudit("abc\xff", 5), "abc\xe2\x80\xa6");
  const std::string all_bytes = [] {
    std::string s;
    for (int i = 0; i < 256; ++i) s += static_cast<char>(i);
    return s;
  }();
  const std::string cleaned = SanitizeClaimForAudit(all_bytes, 4096);
  EXPECT_TRUE(std::all_of(cleaned.begin(), cleaned.end(), [](char c) {
    return static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f;
  }));
}

// The two optional headers are refused (400) unless well-formed, so that what is sealed into an
// audit entry and shown on the review list is text, and a consent id is an id.
TEST(RequestConditionTest, BreakGlassReasonIsPrintableUtf8AndConsentAnId) {
  auto reason_ok = [](const std::string& r) {
    return CheckRequestConditionHeaders({&r, nullptr}).ok();
  };
  auto consent_ok = [](const std::string& c) {
    return CheckRequestConditionHeaders({nullptr, &c}).ok();
  };
  EXPECT_TRUE(CheckRequestConditionHeaders({}).ok());
  EXPECT_TRUE(reason_ok("unconscious patient, ED admission"));
  EXPECT_TRUE(reason_ok("Patientin bewusstlos, Notaufnahme \xc3\xa4"));  // U+00E4
  EXPECT_TRUE(reason_ok(std::string(kMaxBreakGlassReasonBytes, 'x')));
  EXPECT_FALSE(reason_ok(""));
  EXPECT_FALSE(reason_ok(std::string(kMaxBreakGlassReasonBytes + 1, 'x')));
  EXPECT_FALSE(reason_ok("line\nbreak"));
  EXPECT_FALSE(reason_ok("del\x7f"));
  EXPECT_FALSE(reason_ok("c1 \xc2\x85 next-line"));  // U+0085, a C1 control
  EXPECT_FALSE(reason_ok("bad \xff byte"));
  EXPECT_FALSE(reason_ok("overlong \xc0\xaf"));
  EXPECT_FALSE(reason_ok("truncated \xe2\x82"));
  EXPECT_TRUE(consent_ok("consent:2026/0042-A_b.1"));
  EXPECT_FALSE(consent_ok(""));
  EXPECT_FALSE(consent_ok(std::string(kMaxConsentBytes + 1, 'a')));
  EXPECT_FALSE(consent_ok("has space"));
  EXPECT_FALSE(consent_ok("semi;colon"));
  const std::string spaced = "a b";
  const Status s = CheckRequestConditionHeaders({nullptr, &spaced});
  EXPECT_NE(s.message().find("X-Phivault-Consent"), std::string::npos);
  EXPECT_EQ(s.message().find("a b"), std::string::npos) << "never quotes the value";
}

}  // namespace
}  // namespace phivault::daemon
