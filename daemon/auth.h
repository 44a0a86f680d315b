// Who is on the other end of the socket, and on whose behalf they act.
//
// Applications present a bearer token (the config keeps only its SHA-256) and must connect from
// one of their configured uids (SO_PEERCRED). People using the CLI send no token and are
// recognised by their peer uid, or by a group their uid belongs to. Each request also names the
// acting user, role and HL7 PurposeOfUse; see ValidateActingParty.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "daemon/config.h"
#include "daemon/service.h"

namespace phivault::daemon {

// The credentials of the process at the other end of a Unix socket, as of connect().
struct PeerCredentials {
  pid_t pid = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
};

// getsockopt(SO_PEERCRED) on a connected Unix socket. Unavailable with the errno text on failure.
StatusOr<PeerCredentials> GetPeerCredentials(int fd);

// The groups `uid` belongs to: `primary_gid` plus the supplementary groups of its passwd entry
// (getgrouplist). Just {primary_gid} if the uid has no passwd entry.
std::vector<uint32_t> SystemGroupsOf(uint32_t uid, uint32_t primary_gid);

class Authenticator {
 public:
  using GroupsOfFn = std::function<std::vector<uint32_t>(uint32_t uid, uint32_t primary_gid)>;

  // Resolves every operator group name to its gid. InvalidArgument naming the config key if a
  // group does not exist. `config` is copied; `groups_of` is how a peer's groups are found.
  static StatusOr<std::unique_ptr<Authenticator>> Create(const Config& config,
                                                         GroupsOfFn groups_of = SystemGroupsOf);

  // `authorization` is the Authorization header, std::nullopt if the request had none.
  // With a header: it must be "Bearer <token>", and SHA-256(token) must equal (constant time)
  // the hash of an application that lists peer.uid. Without one: an operator entry matching the
  // peer — by uid before by group — preferring the first whose role is `requested_role` (the
  // X-Phivault-Role header), so that one person may hold several roles through several entries;
  // if no matching entry has that role, the first matching entry (whose role then refuses the
  // request); its account name (AccountNameOf) is its acting user. Unauthenticated otherwise;
  // the message never contains the token.
  StatusOr<Principal> Authenticate(const PeerCredentials& peer,
                                   std::optional<std::string_view> authorization,
                                   std::string_view requested_role = {}) const;

 private:
  struct Operator {
    OperatorConfig config;
    std::optional<uint32_t> gid;  // resolved group, for group entries
  };
  Authenticator(std::vector<ApplicationConfig> apps, std::vector<Operator> ops, GroupsOfFn fn)
      : applications_(std::move(apps)), operators_(std::move(ops)), groups_of_(std::move(fn)) {}

  StatusOr<Principal> AuthenticateApplication(const PeerCredentials& peer,
                                              std::string_view authorization) const;
  StatusOr<Principal> AuthenticateOperator(const PeerCredentials& peer,
                                           std::string_view requested_role) const;
  static Principal OperatorPrincipal(const PeerCredentials& peer, const Operator& op);

  std::vector<ApplicationConfig> applications_;
  std::vector<Operator> operators_;
  GroupsOfFn groups_of_;
};

// Every code of the HL7 v3 PurposeOfUse value set (OID 2.16.840.1.113883.1.11.20448) that may be
// used in a request, i.e. all but the abstract root; the list is policies/purpose_of_use.h's.
const std::vector<std::string_view>& PurposeOfUseCodes();
bool IsKnownPurposeOfUse(std::string_view code);

// The acting-party headers of a request as sent (nullptr: the header is absent).
struct ActingPartyHeaders {
  const std::string* user = nullptr;     // X-Phivault-User
  const std::string* role = nullptr;     // X-Phivault-Role
  const std::string* purpose = nullptr;  // X-Phivault-Purpose
};

// Longest well-formed acting-party values, in bytes.
inline constexpr size_t kMaxActingUserBytes = 128;
inline constexpr size_t kMaxActingRoleBytes = 64;
inline constexpr size_t kMaxActingPurposeBytes = 32;

// The form of each acting-party header, checked before anything else is decided about a request
// so that whatever it claims can be written into the audit entry of its refusal verbatim:
//   user:    1..128 of ASCII letters, digits, space and . _ @ + -, beginning with a letter or
//            digit and not ending in a space (a CSV export's cell never starts like a formula);
//   role:    1..64 of [a-z0-9_-], beginning with a letter or digit (the form of `roles`);
//   purpose: 1..32 upper-case ASCII letters (the form of HL7 PurposeOfUse codes).
// InvalidArgument naming the header and its rule if one is missing or malformed; the message
// never quotes the value.
Status CheckActingPartyHeaders(const ActingPartyHeaders& headers);

// The optional headers that change what a request may do (nullptr: absent).
struct RequestConditionHeaders {
  const std::string* break_glass_reason = nullptr;  // X-Phivault-Break-Glass-Reason
  const std::string* consent = nullptr;             // X-Phivault-Consent
};
inline constexpr size_t kMaxBreakGlassReasonBytes = 512;
inline constexpr size_t kMaxConsentBytes = 128;
// Their form: a break-glass reason is 1..512 bytes of valid UTF-8 without control characters
// (it is sealed into the audit entry and shown on the review list); a consent id is 1..128 of
// [A-Za-z0-9._:/-]. InvalidArgument naming the header, never quoting it.
Status CheckRequestConditionHeaders(const RequestConditionHeaders& headers);

// For well-formed headers: PermissionDenied if the role is not one of `roles` or the purpose is
// not a PurposeOfUse code.
Status AuthorizeActingParty(const std::string& role, const std::string& purpose,
                            const std::vector<std::string>& roles);

// What the principal's config entry binds it to: PermissionDenied naming the rule if an
// application asserts a role its `roles` does not list ("config:application_roles") or a purpose
// its `purposes` does not list ("config:application_purposes"). Operators are checked by
// CheckOperatorRole. `role` and `purpose` are well-formed (CheckActingPartyHeaders), so the
// message may quote them.
Status CheckBoundClaims(const Principal& principal, const std::string& role,
                        const std::string& purpose);

// The account name of `uid` (its passwd entry), "uid:<n>" if it has none: an operator's acting
// user.
std::string AccountNameOf(uint32_t uid);

// A person at the CLI acts in the role of their operator entry. `principal` was authenticated
// without a token (an operator); PermissionDenied that says so, and which role the entry allows,
// if `role` is another one.
Status CheckOperatorRole(const Principal& principal, const std::string& role);

// `value` made fit for an audit entry when it may be anything a stranger sent: printable ASCII
// other than backslash is kept, a backslash becomes "\\" and every other byte "\xHH", and the
// result is cut to `max_bytes` with "…" (U+2026) appended. Always valid UTF-8, and
// unchanged for every value CheckActingPartyHeaders accepts when `max_bytes` is its limit.
std::string SanitizeClaimForAudit(std::string_view value, size_t max_bytes);

}  // namespace phivault::daemon
