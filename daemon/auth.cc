#include "daemon/auth.h"

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include "crypto/hash.h"
#include "crypto/secret.h"
#include "daemon/api_json.h"
#include "policies/purpose_of_use.h"

namespace phivault::daemon {
namespace {

constexpr size_t kMaxTokenBytes = 512;

// getpwuid_r/getgrnam_r want a caller-supplied buffer; grow it while they say ERANGE. `lookup`
// must copy what it needs out of the entry: the buffer dies on return.
template <typename Entry, typename Fn>
bool LookupWithBuffer(Entry& entry, Fn lookup) {
  std::vector<char> buf(1024);
  for (;;) {
    Entry* result = nullptr;
    const int rc = lookup(&entry, buf.data(), buf.size(), &result);
    if (rc == ERANGE && buf.size() < (1u << 20)) {
      buf.resize(buf.size() * 2);
      continue;
    }
    return rc == 0 && result != nullptr;
  }
}

std::optional<uint32_t> GroupIdOf(const std::string& name) {
  struct group gr {};
  std::optional<uint32_t> gid;
  LookupWithBuffer(gr, [&](struct group* e, char* b, size_t n, struct group** r) {
    const int rc = getgrnam_r(name.c_str(), e, b, n, r);
    if (rc == 0 && *r != nullptr) gid = (*r)->gr_gid;
    return rc;
  });
  return gid;
}

bool IsPrintableAscii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

bool IsAsciiAlnum(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool IsWellFormedUser(std::string_view u) {
  return !u.empty() && u.size() <= kMaxActingUserBytes && IsAsciiAlnum(u.front()) &&
         u.back() != ' ' && std::all_of(u.begin(), u.end(), [](char c) {
           return IsAsciiAlnum(c) || c == ' ' || c == '.' || c == '_' || c == '@' || c == '+' ||
                  c == '-';
         });
}

bool IsWellFormedRole(std::string_view r) {
  return !r.empty() && r.size() <= kMaxActingRoleBytes &&
         ((r.front() >= 'a' && r.front() <= 'z') || (r.front() >= '0' && r.front() <= '9')) &&
         std::all_of(r.begin(), r.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
         });
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace

StatusOr<PeerCredentials> GetPeerCredentials(int fd) {
  struct ucred cred {};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof(cred)) {
    return Unavailable(std::string("cannot read the peer credentials of the socket: ") +
                       std::strerror(errno));
  }
  PeerCredentials p;
  p.pid = cred.pid;
  p.uid = cred.uid;
  p.gid = cred.gid;
  return p;
}

std::string AccountNameOf(uint32_t uid) {
  struct passwd pw {};
  std::string name;
  const bool found =
      LookupWithBuffer(pw, [&](struct passwd* e, char* b, size_t n, struct passwd** r) {
        const int rc = getpwuid_r(uid, e, b, n, r);
        if (rc == 0 && *r != nullptr && (*r)->pw_name != nullptr) name = (*r)->pw_name;
        return rc;
      });
  if (!found || name.empty()) return "uid:" + std::to_string(uid);
  return name;
}

std::vector<uint32_t> SystemGroupsOf(uint32_t uid, uint32_t primary_gid) {
  struct passwd pw {};
  std::string name;
  const bool found =
      LookupWithBuffer(pw, [&](struct passwd* e, char* b, size_t n, struct passwd** r) {
        const int rc = getpwuid_r(uid, e, b, n, r);
        if (rc == 0 && *r != nullptr) name = (*r)->pw_name;
        return rc;
      });
  if (!found) return {primary_gid};
  int count = 32;
  std::vector<gid_t> groups(static_cast<size_t>(count));
  while (getgrouplist(name.c_str(), primary_gid, groups.data(), &count) < 0) {
    groups.resize(static_cast<size_t>(count) + 1);
    count = static_cast<int>(groups.size());
  }
  std::vector<uint32_t> out(groups.begin(), groups.begin() + count);
  if (std::find(out.begin(), out.end(), primary_gid) == out.end()) out.push_back(primary_gid);
  return out;
}

StatusOr<std::unique_ptr<Authenticator>> Authenticator::Create(const Config& config,
                                                               GroupsOfFn groups_of) {
  std::vector<Operator> ops;
  for (size_t i = 0; i < config.operators.size(); ++i) {
    Operator op{config.operators[i], std::nullopt};
    if (!op.config.uid.has_value()) {
      op.gid = GroupIdOf(op.config.group);
      if (!op.gid.has_value()) {
        return InvalidArgument(config.config_path + ": operators[" + std::to_string(i) +
                               "].group names a group that does not exist on this system");
      }
    }
    ops.push_back(std::move(op));
  }
  return std::unique_ptr<Authenticator>(
      new Authenticator(config.applications, std::move(ops), std::move(groups_of)));
}

StatusOr<Principal> Authenticator::Authenticate(const PeerCredentials& peer,
                                                std::optional<std::string_view> authorization,
                                                std::string_view requested_role) const {
  if (authorization.has_value()) return AuthenticateApplication(peer, *authorization);
  return AuthenticateOperator(peer, requested_role);
}

StatusOr<Principal> Authenticator::AuthenticateApplication(const PeerCredentials& peer,
                                                           std::string_view authorization) const {
  constexpr std::string_view kScheme = "Bearer";
  const size_t space = authorization.find(' ');
  if (space == std::string_view::npos ||
      !EqualsIgnoreCase(authorization.substr(0, space), kScheme)) {
    return Unauthenticated("the Authorization header must use the Bearer scheme");
  }
  std::string_view token = authorization.substr(space + 1);
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  if (token.empty() || token.size() > kMaxTokenBytes || !IsPrintableAscii(token)) {
    return Unauthenticated("the bearer token is malformed");
  }
  const std::string presented = crypto::HexEncode(crypto::AsView(crypto::Sha256(token)));
  // Every application is compared, so the time taken does not depend on which one matched.
  const ApplicationConfig* match = nullptr;
  for (const auto& app : applications_) {
    if (crypto::ConstantTimeEquals(presented, app.token_sha256_hex)) match = &app;
  }
  if (match == nullptr ||
      std::find(match->uids.begin(), match->uids.end(), peer.uid) == match->uids.end()) {
    return Unauthenticated("the bearer token is not valid for this peer");
  }
  Principal p;
  p.kind = Principal::Kind::kApplication;
  p.name = match->name;
  p.uid = peer.uid;
  p.actions = match->actions;
  p.roles = match->roles;
  p.purposes = match->purposes;
  return p;
}

StatusOr<Principal> Authenticator::AuthenticateOperator(const PeerCredentials& peer,
                                                        std::string_view requested_role) const {
  // Uid entries before group entries; the peer's groups are looked up only when no uid entry
  // has the requested role.
  const Operator* match = nullptr;
  for (const auto& op : operators_) {
    if (!op.config.uid.has_value() || *op.config.uid != peer.uid) continue;
    if (op.config.role == requested_role) return OperatorPrincipal(peer, op);
    if (match == nullptr) match = &op;
  }
  std::vector<uint32_t> groups;
  for (const auto& op : operators_) {
    if (!op.gid.has_value()) continue;
    if (groups.empty()) groups = groups_of_(peer.uid, peer.gid);
    if (std::find(groups.begin(), groups.end(), *op.gid) == groups.end()) continue;
    if (op.config.role == requested_role) return OperatorPrincipal(peer, op);
    if (match == nullptr) match = &op;
  }
  if (match == nullptr) {
    return Unauthenticated("no bearer token, and peer uid " + std::to_string(peer.uid) +
                           " is not a configured operator");
  }
  return OperatorPrincipal(peer, *match);
}

Principal Authenticator::OperatorPrincipal(const PeerCredentials& peer, const Operator& op) {
  Principal p;
  p.kind = Principal::Kind::kOperator;
  p.name = "cli:" + std::to_string(peer.uid);
  p.uid = peer.uid;
  p.actions = op.config.actions;
  p.operator_role = op.config.role;
  p.roles = {op.config.role};
  p.account = AccountNameOf(peer.uid);
  return p;
}

const std::vector<std::string_view>& PurposeOfUseCodes() {
  static const std::vector<std::string_view> kCodes = [] {
    std::vector<std::string_view> codes;
    for (const auto& c : policies::AllPurposeOfUseCodes()) {
      if (c.category != policies::PurposeCategory::kAbstract) codes.push_back(c.code);
    }
    return codes;
  }();
  return kCodes;
}

bool IsKnownPurposeOfUse(std::string_view code) {
  const auto entry = policies::LookupPurposeOfUse(code);
  return entry.has_value() && entry->category != policies::PurposeCategory::kAbstract;
}

Status CheckActingPartyHeaders(const ActingPartyHeaders& h) {
  if (h.user == nullptr || h.user->empty()) {
    return InvalidArgument("the X-Phivault-User header is required");
  }
  if (!IsWellFormedUser(*h.user)) {
    return InvalidArgument(
        "the X-Phivault-User header must be 1 to 128 ASCII letters, digits, spaces and . _ @ + "
        "-, beginning with a letter or digit and not ending in a space");
  }
  if (h.role == nullptr || h.role->empty()) {
    return InvalidArgument("the X-Phivault-Role header is required");
  }
  if (!IsWellFormedRole(*h.role)) {
    return InvalidArgument(
        "the X-Phivault-Role header must be 1 to 64 characters from [a-z0-9_-], beginning with a "
        "letter or digit");
  }
  if (h.purpose == nullptr || h.purpose->empty()) {
    return InvalidArgument("the X-Phivault-Purpose header is required");
  }
  if (h.purpose->size() > kMaxActingPurposeBytes ||
      !std::all_of(h.purpose->begin(), h.purpose->end(),
                   [](char c) { return c >= 'A' && c <= 'Z'; })) {
    return InvalidArgument(
        "the X-Phivault-Purpose header must be an HL7 PurposeOfUse code: 1 to 32 upper-case "
        "letters");
  }
  return Status::Ok();
}

namespace {
// Well-formed UTF-8 (daemon/api_json.h) without C0/C1 control characters or DEL: in UTF-8 the
// C1 controls U+0080..U+009F are exactly the two-byte sequences C2 80..C2 9F.
bool IsPrintableUtf8(std::string_view s) {
  if (!IsValidUtf8(s)) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) return false;
    if (c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) < 0xa0) return false;
  }
  return true;
}
}  // namespace

Status CheckRequestConditionHeaders(const RequestConditionHeaders& h) {
  if (h.break_glass_reason != nullptr &&
      (h.break_glass_reason->empty() || h.break_glass_reason->size() > kMaxBreakGlassReasonBytes ||
       !IsPrintableUtf8(*h.break_glass_reason))) {
    return InvalidArgument(
        "the X-Phivault-Break-Glass-Reason header must be 1 to 512 bytes of UTF-8 text without "
        "control characters");
  }
  if (h.consent != nullptr && (h.consent->empty() || h.consent->size() > kMaxConsentBytes ||
                               !std::all_of(h.consent->begin(), h.consent->end(), [](char c) {
                                 return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
                                        c == '.' || c == '_' || c == ':' || c == '/' || c == '-';
                               }))) {
    return InvalidArgument(
        "the X-Phivault-Consent header must be 1 to 128 characters from [A-Za-z0-9._:/-]");
  }
  return Status::Ok();
}

Status AuthorizeActingParty(const std::string& role, const std::string& purpose,
                            const std::vector<std::string>& roles) {
  if (std::find(roles.begin(), roles.end(), role) == roles.end()) {
    return PermissionDenied("the X-Phivault-Role header names a role that is not configured");
  }
  if (!IsKnownPurposeOfUse(purpose)) {
    return PermissionDenied("the X-Phivault-Purpose header is not an HL7 PurposeOfUse code");
  }
  return Status::Ok();
}

Status CheckBoundClaims(const Principal& principal, const std::string& role,
                        const std::string& purpose) {
  if (principal.kind != Principal::Kind::kApplication) return Status::Ok();
  const auto& roles = principal.roles;
  if (std::find(roles.begin(), roles.end(), role) == roles.end()) {
    return PermissionDenied("application " + principal.name + " may not assert role " + role +
                            " (config:application_roles)");
  }
  const auto& purposes = principal.purposes;
  if (!purposes.empty() && std::find(purposes.begin(), purposes.end(), purpose) == purposes.end()) {
    return PermissionDenied("application " + principal.name + " may not assert purpose " + purpose +
                            " (config:application_purposes)");
  }
  return Status::Ok();
}

Status CheckOperatorRole(const Principal& principal, const std::string& role) {
  if (principal.kind != Principal::Kind::kOperator || role == principal.operator_role) {
    return Status::Ok();
  }
  // Said in full because the usual cause is an application that forgot its token while running
  // under a uid that is also an operator's: its role is then not the problem at all.
  return PermissionDenied("no bearer token was sent, and the operator entry for peer uid " +
                          std::to_string(principal.uid) + " allows role \"" +
                          principal.operator_role + "\" only (X-Phivault-Role names \"" + role +
                          "\"); operators act only in their configured role");
}

std::string SanitizeClaimForAudit(std::string_view value, size_t max_bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (const char c : value) {
    const auto u = static_cast<unsigned char>(c);
    std::string piece;
    if (c == '\\') {
      piece = "\\\\";
    } else if (u >= 0x20 && u < 0x7f) {
      piece = std::string(1, c);
    } else {
      piece = {'\\', 'x', kHex[u >> 4], kHex[u & 0xf]};
    }
    if (out.size() + piece.size() > max_bytes)
      return out + "\xe2\x80\xa6";  // U+2026, never part of a well-formed value
    out += piece;
  }
  return out;
}

}  // namespace phivault::daemon
