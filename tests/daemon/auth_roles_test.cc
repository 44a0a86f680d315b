// One person in several roles: several operator entries match the peer, and the request's role
// picks among them (the development vault `phivault init` makes gives its creator every role).
#include <grp.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "crypto/secret.h"
#include "daemon/auth.h"

namespace phivault::daemon {
namespace {

constexpr uint32_t kUid = 4242;
constexpr uint32_t kGid = 5000;

OperatorConfig ByUid(std::string role, std::vector<std::string> actions) {
  OperatorConfig op;
  op.uid = kUid;
  op.role = std::move(role);
  op.actions = std::move(actions);
  return op;
}

class OperatorRolesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(crypto::InitSodium().ok());
    config_.config_path = "phivault.toml";
    config_.roles = DefaultRoles();
  }

  // The peer is in group `kGid` only; group entries name the caller's own primary group, which
  // exists on every system.
  StatusOr<Principal> As(std::string_view role) {
    auto auth = Authenticator::Create(config_, [](uint32_t, uint32_t) {
      return std::vector<uint32_t>{static_cast<uint32_t>(::getgid())};
    });
    EXPECT_TRUE(auth.ok()) << auth.status().ToString();
    if (!auth.ok()) return auth.status();
    return (*auth)->Authenticate({1, kUid, kGid}, std::nullopt, role);
  }

  Config config_;
};

TEST_F(OperatorRolesTest, TheRequestedRolePicksTheEntry) {
  config_.operators = {ByUid("vault_admin", {"status"}),
                       ByUid("compliance_officer", {"audit.export"})};
  auto admin = As("vault_admin");
  ASSERT_TRUE(admin.ok()) << admin.status().ToString();
  EXPECT_EQ(admin->operator_role, "vault_admin");
  EXPECT_EQ(admin->actions, std::vector<std::string>{"status"});
  auto officer = As("compliance_officer");
  ASSERT_TRUE(officer.ok()) << officer.status().ToString();
  EXPECT_EQ(officer->operator_role, "compliance_officer");
  EXPECT_EQ(officer->actions, std::vector<std::string>{"audit.export"});
  EXPECT_EQ(officer->name, "cli:4242");
}

TEST_F(OperatorRolesTest, ARoleNoEntryHasGetsTheFirstEntryWhoseRoleThenRefuses) {
  config_.operators = {ByUid("vault_admin", {"status"}), ByUid("billing", {"record.list"})};
  auto p = As("physician");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->operator_role, "vault_admin");
  auto none = As("");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->operator_role, "vault_admin");
}

TEST_F(OperatorRolesTest, AGroupEntryWithTheRoleWinsOverAUidEntryWithout) {
  OperatorConfig group;
  group.role = "compliance_officer";
  group.actions = {"audit.export"};
  const struct group* g = ::getgrgid(::getgid());
  ASSERT_NE(g, nullptr);
  group.group = g->gr_name;
  config_.operators = {ByUid("vault_admin", {"status"}), group};
  auto officer = As("compliance_officer");
  ASSERT_TRUE(officer.ok()) << officer.status().ToString();
  EXPECT_EQ(officer->operator_role, "compliance_officer");
  // Without that role asked for, the uid entry still comes first.
  auto admin = As("nurse");
  ASSERT_TRUE(admin.ok());
  EXPECT_EQ(admin->operator_role, "vault_admin");
}

}  // namespace
}  // namespace phivault::daemon
