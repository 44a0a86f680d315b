#include "daemon/handlers.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <initializer_list>
#include <istream>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <Poco/Exception.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerRequestImpl.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/HTTPServerSession.h>
#include <Poco/Net/HTTPStream.h>
#include <Poco/Net/StreamSocket.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "crypto/hash.h"
#include "crypto/signing.h"
#include "daemon/api_json.h"
#include "daemon/auth_failures.h"
#include "daemon/http_server.h"
#include "daemon/logging.h"
#include "daemon/memory.h"
#include "daemon/problem.h"
#include "daemon/router.h"
#include "policies/certificate_render.h"
#include "storage/destruction_certificate.h"
#include "storage/records.h"

namespace phivault::daemon {
namespace {

// Decodes %XX escapes (and nothing else: '+' stays '+'). False for a malformed escape.
bool PercentDecode(std::string_view in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size() || !std::isxdigit(static_cast<unsigned char>(in[i + 1])) ||
        !std::isxdigit(static_cast<unsigned char>(in[i + 2]))) {
      return false;
    }
    out += static_cast<char>(std::stoi(std::string(in.substr(i + 1, 2)), nullptr, 16));
    i += 2;
  }
  return true;
}

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

using nlohmann::json;
using Poco::Net::HTTPServerRequest;
using Poco::Net::HTTPServerResponse;

// ReadJsonBody's first buffer: the Content-Length, but at most kMaxFirstBodyBuffer so that a
// client declaring more than it sends costs no more than that; it then doubles as bytes arrive.
constexpr size_t kMaxFirstBodyBuffer = 1 << 20;
constexpr size_t kMaxRequestIdBytes = 64;
// Bodies above this go out with the headers in one write (SendWholeResponse); below it, headers
// and body fit Poco's one 4 KiB buffer, which already sends them together.
constexpr size_t kWholeSendFromBytes = 3072;

// State of one request, for the response headers and the log line.
struct Exchange {
  std::string request_id;
  std::string_view route = "-";
  std::string principal = "-";
  int status = 0;
  std::string problem;
  bool body_pending = false;  // the request has a body that has not been read
  bool close = false;         // end the connection after this response
  bool head = false;          // a HEAD request: its response has no body
  bool sent_whole = false;    // SendBytes wrote the response itself (SendWholeResponse)
  bool peer_known = false;    // SO_PEERCRED succeeded: refusals can be budgeted by peer uid
  // The route's body limit and the configuration key that sets it (BodyLimitOf), and what the
  // body read holds of the server's budget of request bytes in flight.
  uint64_t body_limit = 0;
  std::string_view body_limit_key = "limits.max_small_body_bytes";
  BudgetLease body_lease;
};

// Only the routes that carry record content take bodies up to limits.max_body_bytes; every other
// route's body is a small JSON object, held to limits.max_small_body_bytes, so that a huge body
// sent to a search or report route is refused before it is read.
bool TakesLargeBody(RouteId id) {
  return id == RouteId::kCreateRecord || id == RouteId::kAmendRecord;
}

bool IsValidRequestId(std::string_view id) {
  return !id.empty() && id.size() <= kMaxRequestIdBytes &&
         std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
         });
}

std::string_view MethodForLog(const std::string& method) {
  static constexpr std::string_view kKnown[] = {"GET",  "POST",    "PUT",   "DELETE",
                                                "HEAD", "OPTIONS", "PATCH", "TRACE"};
  for (auto m : kKnown) {
    if (m == method) return m;
  }
  return "other";
}

// A decimal number below 2^64 with nothing else around it (no sign, no space), or nullopt.
std::optional<uint64_t> ParseDecimal(std::string_view digits) {
  uint64_t v = 0;
  if (digits.empty() ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      std::from_chars(digits.data(), digits.data() + digits.size(), v).ec != std::errc()) {
    return std::nullopt;
  }
  return v;
}

const std::string* HeaderOrNull(const HTTPServerRequest& req, const std::string& name) {
  return req.has(name) ? &req.get(name) : nullptr;
}

bool IsSafeContentType(std::string_view ct) {
  return !ct.empty() && ct.size() <= 127 && ct.find('/') != std::string_view::npos &&
         std::all_of(ct.begin(), ct.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

bool IsJsonContentType(std::string ct) {
  std::transform(ct.begin(), ct.end(), ct.begin(), [](char c) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  });
  ct.erase(std::remove(ct.begin(), ct.end(), ' '), ct.end());
  return ct == "application/json" || ct == "application/json;charset=utf-8";
}

// The media types of an Accept header in the order given, lowercased, without parameters (the
// weights are not ranked: the API offers at most three forms and clients ask for one).
std::vector<std::string> AcceptedTypes(const HTTPServerRequest& req) {
  std::vector<std::string> out;
  const std::string header = req.get("Accept", "");
  std::string_view accept = header;
  while (!accept.empty()) {
    const size_t comma = accept.find(',');
    std::string_view item = accept.substr(0, comma);
    accept = comma == std::string_view::npos ? std::string_view() : accept.substr(comma + 1);
    item = item.substr(0, item.find(';'));
    std::string type;
    for (char c : item) {
      if (c != ' ' && c != '\t') {
        type += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      }
    }
    if (!type.empty()) out.push_back(std::move(type));
  }
  return out;
}

bool Accepts(const HTTPServerRequest& req, std::string_view type) {
  const auto types = AcceptedTypes(req);
  return std::find(types.begin(), types.end(), type) != types.end();
}

// A certificate's form: the first of text/plain (the signed note), text/html and
// application/json named by Accept; the signed note when none is.
enum class CertificateForm { kNote, kHtml, kJson };
CertificateForm CertificateFormFor(const HTTPServerRequest& req) {
  for (const std::string& type : AcceptedTypes(req)) {
    if (type == "text/plain") return CertificateForm::kNote;
    if (type == "text/html") return CertificateForm::kHtml;
    if (type == "application/json") return CertificateForm::kJson;
  }
  return CertificateForm::kNote;
}

bool IsCertificateId(std::string_view id) {
  return id.size() == 32 && std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

size_t HeaderBytes(const HTTPServerRequest& req) {
  size_t n = req.getMethod().size() + req.getURI().size() + req.getVersion().size() + 4;
  for (const auto& [name, value] : req) n += name.size() + value.size() + 4;
  return n;
}

class ApiHandler final : public Poco::Net::HTTPRequestHandler {
 public:
  ApiHandler(const ApiDeps& deps, AuthFailureLimiter* auth_failures)
      : deps_(deps), auth_failures_(auth_failures) {}

  void handleRequest(HTTPServerRequest& req, HTTPServerResponse& resp) override {
    const auto start = std::chrono::steady_clock::now();
    Exchange ex;
    const std::string id_header = req.get("X-Request-Id", "");
    ex.request_id =
        IsValidRequestId(id_header) ? id_header : crypto::HexEncode(crypto::RandomBytes(12));
    ex.head = req.getMethod() == Poco::Net::HTTPRequest::HTTP_HEAD;
    try {
      ex.body_pending = req.getChunkedTransferEncoding() ||
                        (req.hasContentLength() && req.getContentLength64() != 0);
      Serve(req, resp, ex);
    } catch (const std::exception& e) {
      // Poco (I/O, framing), nlohmann or std exceptions must not escape into Poco's connection
      // loop. Their messages name the failure, not request data.
      spdlog::error("request id={} failed with an exception: {}", ex.request_id, e.what());
      ex.body_pending = true;
      if (!resp.sent() && !ex.sent_whole) {
        try {
          SendProblem(resp, ex, MakeProblem(500, "internal", "the request failed unexpectedly"));
        } catch (const std::exception&) {
          ex.status = 500;
        }
      }
    }
    LogRequest({ex.request_id, MethodForLog(req.getMethod()), ex.route, ex.status,
                std::chrono::duration_cast<std::chrono::microseconds>(
                    std::chrono::steady_clock::now() - start),
                ex.principal, ex.problem});
  }

 private:
  void Serve(HTTPServerRequest& req, HTTPServerResponse& resp, Exchange& ex) {
    if (HeaderBytes(req) > deps_.config->limits.max_header_bytes) {
      return SendProblem(
          resp, ex,
          MakeProblem(431, "header-fields-too-large",
                      "the request line and headers exceed " +
                          std::to_string(deps_.config->limits.max_header_bytes) + " bytes"));
    }
    std::string_view target = req.getURI();
    // Absolute-form targets ("http://localhost/v1/...") are allowed by HTTP/1.1.
    if (const size_t scheme = target.find("://");
        scheme != std::string_view::npos && target.front() != '/') {
      const size_t path_start = target.find('/', scheme + 3);
      target = path_start == std::string_view::npos ? "/" : target.substr(path_start);
    }
    if (target.empty() || target.front() != '/') {
      return SendProblem(resp, ex, MakeProblem(400, "invalid-request", "malformed request target"));
    }
    const size_t qmark = target.find('?');
    const std::string_view path = target.substr(0, qmark);
    const std::string_view query =
        qmark == std::string_view::npos ? std::string_view() : target.substr(qmark + 1);

    const RouteMatch match = MatchRoute(req.getMethod(), path);
    if (match.route == nullptr) {
      if (!match.allowed_methods.empty()) {
        std::string allow;
        for (auto m : match.allowed_methods) allow += (allow.empty() ? "" : ", ") + std::string(m);
        resp.set("Allow", allow);
        return SendProblem(resp, ex,
                           MakeProblem(405, "method-not-allowed", "this route allows " + allow));
      }
      return SendProblem(resp, ex, MakeProblem(404, "not-found", "no such route"));
    }
    const RouteSpec& route = *match.route;
    ex.route = route.path;
    if (TakesLargeBody(route.id)) {
      ex.body_limit = deps_.config->limits.max_body_bytes;
      ex.body_limit_key = "limits.max_body_bytes";
    } else {
      ex.body_limit = deps_.config->limits.max_small_body_bytes;
    }

    if (route.access == RouteSpec::Access::kPublic) {
      if (!CheckNoBodyOrQuery(resp, ex, query)) return;
      return SendJson(resp, ex, 200, json{{"status", "ok"}});
    }

    RequestContext ctx;
    ctx.request_id = ex.request_id;
    if (!Authenticate(req, resp, ex, route, ctx)) return;
    Dispatch(req, resp, ex, route, match.params, query, ctx);
  }

  // Who is asking and on whose behalf; false once a refusal has been sent. The order is chosen
  // so that every refusal can be audited: the peer's credentials first (they go into every
  // entry), then the form of the acting-party headers, which is reported before anything about
  // the credentials (a refusal's entry may then quote what they claim) but after the credentials
  // have been checked, so that the entry still names the application if the token was good.
  bool Authenticate(HTTPServerRequest& req, HTTPServerResponse& resp, Exchange& ex,
                    const RouteSpec& route, RequestContext& ctx) {
    auto& impl = dynamic_cast<Poco::Net::HTTPServerRequestImpl&>(req);
    const auto peer = GetPeerCredentials(impl.socket().impl()->sockfd());
    if (!peer.ok()) {
      // No uid to budget by: audited on its own entry, and the connection ends.
      ex.close = true;
      Reject(req, resp, ex, route, ctx, Unauthenticated("cannot identify the peer of the socket"));
      return false;
    }
    ex.peer_known = true;
    ctx.peer_uid = peer->uid;
    ctx.peer_pid = peer->pid;
    ctx.principal.uid = peer->uid;

    std::optional<std::string_view> authorization;
    if (req.has("Authorization")) authorization = req.get("Authorization");
    // The role header picks among an operator's entries (one person, several roles).
    auto principal =
        deps_.authenticator->Authenticate(*peer, authorization, req.get("X-Phivault-Role", ""));
    if (principal.ok()) {
      ex.principal = principal->name;
      ctx.principal = std::move(principal).value();
    }
    if (const ConnectionState* connection = CurrentConnection();
        connection != nullptr && connection->received_byte_ff) {
      // Poco dropped the byte, so the headers are not what was sent; every later request on the
      // connection would be refused the same way.
      ex.close = true;
      Reject(req, resp, ex, route, ctx,
             InvalidArgument("the request holds a byte 0xFF, which is valid neither in UTF-8 nor "
                             "in an HTTP header field"));
      return false;
    }
    const ActingPartyHeaders headers{HeaderOrNull(req, "X-Phivault-User"),
                                     HeaderOrNull(req, "X-Phivault-Role"),
                                     HeaderOrNull(req, "X-Phivault-Purpose")};
    if (Status s = CheckActingPartyHeaders(headers); !s.ok()) {
      Reject(req, resp, ex, route, ctx, s);
      return false;
    }
    if (!principal.ok()) {
      resp.set("WWW-Authenticate", "Bearer realm=\"phivault\"");
      Reject(req, resp, ex, route, ctx, principal.status());
      return false;
    }
    if (Status s = AuthorizeActingParty(*headers.role, *headers.purpose, deps_.config->roles);
        !s.ok()) {
      Reject(req, resp, ex, route, ctx, s);
      return false;
    }
    if (Status s = CheckBoundClaims(ctx.principal, *headers.role, *headers.purpose); !s.ok()) {
      Reject(req, resp, ex, route, ctx, s);
      return false;
    }
    if (Status s = CheckOperatorRole(ctx.principal, *headers.role); !s.ok()) {
      Reject(req, resp, ex, route, ctx, s);
      return false;
    }
    // An operator is a person known by the uid they connect with, so their account name is who
    // acts; X-Phivault-User (checked for form above, as for everyone) is ignored rather than
    // refused, so that a CLI run with --as keeps working and is audited as the real account.
    ctx.user =
        ctx.principal.kind == Principal::Kind::kOperator ? ctx.principal.account : *headers.user;
    ctx.role = *headers.role;
    ctx.purpose = *headers.purpose;
    const RequestConditionHeaders conditions{HeaderOrNull(req, "X-Phivault-Break-Glass-Reason"),
                                             HeaderOrNull(req, "X-Phivault-Consent")};
    if (Status s = CheckRequestConditionHeaders(conditions); !s.ok()) {
      Reject(req, resp, ex, route, ctx, s);
      return false;
    }
    if (conditions.break_glass_reason != nullptr) {
      ctx.break_glass_reason = *conditions.break_glass_reason;
    }
    if (conditions.consent != nullptr) ctx.consent = *conditions.consent;
    return true;
  }

  // Answers a request refused before it reached the service. On PHI routes the refusal is
  // audited (best effort: the request is refused either way), with what the acting-party headers
  // claim made fit for the entry. Refusals of unauthenticated requests go through the per-uid
  // budget of failed authentications, and end the connection once it or the connection's own
  // allowance is spent.
  void Reject(HTTPServerRequest& req, HTTPServerResponse& resp, Exchange& ex,
              const RouteSpec& route, RequestContext& ctx, const Status& status) {
    const Problem problem = ProblemFromStatus(status);
    const bool audited_route = route.access == RouteSpec::Access::kPhi;
    if (audited_route) {
      ctx.user = ClaimForAudit(req, "X-Phivault-User", kMaxActingUserBytes);
      ctx.role = ClaimForAudit(req, "X-Phivault-Role", kMaxActingRoleBytes);
      ctx.purpose = ClaimForAudit(req, "X-Phivault-Purpose", kMaxActingPurposeBytes);
    }
    const std::string action = audited_route ? std::string(route.action) : std::string();
    const std::string reason = problem.type + ": " + status.message();
    Status audited;
    if (ctx.principal.name.empty() && ex.peer_known) {
      const auto outcome = auth_failures_->RecordFailure(ctx, action, reason);
      audited = outcome.audit;
      ConnectionState* connection = CurrentConnection();
      const bool connection_spent =
          connection != nullptr &&
          ++connection->failed_authentications >= deps_.config->limits.auth_failures_per_connection;
      if (outcome.throttled || connection_spent) ex.close = true;
    } else if (audited_route) {
      audited = deps_.service->AuditRejected(ctx, action, reason, 1);
    }
    if (!audited.ok()) {
      spdlog::error("request id={} rejection could not be audited: {}", ex.request_id,
                    StatusCodeName(audited.code()));
    }
    SendProblem(resp, ex, problem);
  }

  static std::string ClaimForAudit(const HTTPServerRequest& req, const std::string& name,
                                   size_t max_bytes) {
    return req.has(name) ? SanitizeClaimForAudit(req.get(name), max_bytes) : std::string();
  }

  void Dispatch(HTTPServerRequest& req, HTTPServerResponse& resp, Exchange& ex,
                const RouteSpec& route, const std::vector<std::string>& params,
                std::string_view query, const RequestContext& ctx) {
    VaultService& service = *deps_.service;
    const uint64_t max_content = deps_.config->max_content_bytes;
    switch (route.id) {
      case RouteId::kHealth:
        break;
      case RouteId::kStatus: {
        if (!CheckNoBodyOrQuery(resp, ex, query)) return;
        auto status = service.GetStatus(ctx);
        if (!status.ok()) return SendProblem(resp, ex, ProblemFromStatus(status.status()));
        json body = EncodeStatus(*status);
        const MemoryFigures memory = ReadMemoryFigures();
        body["memory"] = {
            {"allocator", AllocatorName()},
            {"rss_bytes", memory.rss_bytes},
            {"heap_in_use_bytes", memory.heap_in_use_bytes},
            {"heap_free_bytes", memory.heap_free_bytes},
            {"block_cache_bytes", deps_.config->memory.block_cache_bytes},
            {"memtable_budget_bytes", deps_.config->memory.memtable_budget_bytes},
            {"encounter_cache_patients", status->encounter_cache_patients},
            {"encounter_cache_capacity", status->encounter_cache_capacity},
        };
        return SendJson(resp, ex, 200, body);
      }
      case RouteId::kCreateRecord: {
        std::string body;
        if (!CheckNoQuery(resp, ex, query) || !ReadJsonBody(req, resp, ex, body)) return;
        auto decoded = DecodeCreateRecord(body, max_content);
        if (!decoded.ok()) return SendProblem(resp, ex, ProblemFromStatus(decoded.status()));
        auto meta = service.CreateRecord(ctx, std::move(decoded).value());
        if (!meta.ok()) return SendProblem(resp, ex, ProblemFromStatus(meta.status()));
        resp.set("Location", "/v1/records/" + meta->record_id);
        return SendJson(resp, ex, 201, EncodeMetadata(*meta));
      }
      case RouteId::kSearchRecords: {
        std::string body;
        if (!CheckNoQuery(resp, ex, query) || !ReadJsonBody(req, resp, ex, body)) return;
        auto patient_id = DecodeSearchRecords(body);
        if (!patient_id.ok()) return SendProblem(resp, ex, ProblemFromStatus(patient_id.status()));
        auto list = service.ListRecords(ctx, *patient_id);
        if (!list.ok()) return SendProblem(resp, ex, ProblemFromStatus(list.status()));
        json records = json::array();
        for (const auto& m : list->records) records.push_back(EncodeMetadata(m));
        return SendJson(resp, ex, 200,
                        json{{"records", std::move(records)}, {"withheld", list->withheld}});
      }
      case RouteId::kReadRecord:
      case RouteId::kReadContent:
      case RouteId::kReadMetadata: {
        std::optional<uint32_t> version;
        if (!CheckRecordId(resp, ex, params) || !ParseVersionQuery(resp, ex, query, version) ||
            !CheckNoBody(resp, ex)) {
          return;
        }
        const bool with_content = route.id != RouteId::kReadMetadata;
        auto record = service.ReadRecord(ctx, params[0], version, with_content);
        if (!record.ok()) return SendProblem(resp, ex, ProblemFromStatus(record.status()));
        if (route.id == RouteId::kReadContent) {
          if (record->archived) resp.set("X-Phivault-Archived", "true");
          return SendContent(resp, ex, *record);
        }
        json j = EncodeMetadata(record->meta);
        if (with_content) j["content_base64"] = crypto::Base64Encode(record->content);
        j["archived"] = record->archived;
        return SendJson(resp, ex, 200, j);
      }
      case RouteId::kAmendRecord: {
        std::string body;
        if (!CheckRecordId(resp, ex, params) || !CheckNoQuery(resp, ex, query) ||
            !ReadJsonBody(req, resp, ex, body)) {
          return;
        }
        auto decoded = DecodeAmendRecord(body, max_content);
        if (!decoded.ok()) return SendProblem(resp, ex, ProblemFromStatus(decoded.status()));
        auto meta = service.AmendRecord(ctx, params[0], std::move(decoded).value());
        if (!meta.ok()) return SendProblem(resp, ex, ProblemFromStatus(meta.status()));
        resp.set("Location",
                 "/v1/records/" + meta->record_id + "?version=" + std::to_string(meta->version));
        return SendJson(resp, ex, 201, EncodeMetadata(*meta));
      }
      case RouteId::kDiscloseRecord: {
        std::string body;
        if (!CheckRecordId(resp, ex, params) || !CheckNoQuery(resp, ex, query) ||
            !ReadJsonBody(req, resp, ex, body)) {
          return;
        }
        auto decoded = DecodeDiscloseRecord(body);
        if (!decoded.ok()) return SendProblem(resp, ex, ProblemFromStatus(decoded.status()));
        auto record = service.DiscloseRecord(ctx, params[0], decoded->version, decoded->disclosure);
        if (!record.ok()) return SendProblem(resp, ex, ProblemFromStatus(record.status()));
        json j = EncodeMetadata(record->meta);
        j["content_base64"] = crypto::Base64Encode(record->content);
        j["archived"] = record->archived;
        return SendJson(resp, ex, 200, j);
      }
      case RouteId::kRecordDisclosure: {
        std::string body;
        if (!CheckNoQuery(resp, ex, query) || !ReadJsonBody(req, resp, ex, body)) return;
        auto decoded = DecodeRecordDisclosure(body);
        if (!decoded.ok()) return SendProblem(resp, ex, ProblemFromStatus(decoded.status()));
        return SendAuditSeq(resp, ex, service.RecordDisclosure(ctx, std::move(decoded).value()));
      }
      case RouteId::kAddSuspension: {
        std::string body;
        if (!CheckNoQuery(resp, ex, query) || !ReadJsonBody(req, resp, ex, body)) return;
        auto decoded = DecodeSuspension(body);
        if (!decoded.ok()) return SendProblem(resp, ex, ProblemFromStatus(decoded.status()));
        return SendAuditSeq(resp, ex,
                            service.AddDisclosureSuspension(ctx, std::move(decoded).value()));
      }
      case RouteId::kAccountingReport:
      case RouteId::kAccessReport: {
        std::string body;
        if (!CheckNoQuery(resp, ex, query) || !ReadJsonBody(req, resp, ex, body)) return;
        const bool accounting = route.id == RouteId::kAccountingReport;
        auto decoded = accounting ? DecodeAccountingReport(body) : DecodeAccessReport(body);
        if (!decoded.ok()) return SendProblem(resp, ex, ProblemFromStatus(decoded.status()));
        auto report = accounting ? service.AccountingOfDisclosures(ctx, *decoded)
                                 : service.AccessReport(ctx, *decoded);
        if (!report.ok()) return SendProblem(resp, ex, ProblemFromStatus(report.status()));
        return SendBytes(resp, ex, 200, report->content_type, report->body);
      }
      case RouteId::kAuditExport: {
        std::string body;
        std::vector<uint64_t> trusted_sizes;
        if (!ParseTrustedSizes(resp, ex, query, trusted_sizes) ||
            !ReadJsonBody(req, resp, ex, body)) {
          return;
        }
        auto decoded = DecodeAuditExport(body);
        if (!decoded.ok()) return SendProblem(resp, ex, ProblemFromStatus(decoded.status()));
        decoded->trusted_sizes = std::move(trusted_sizes);
        return StreamExport(req, resp, ex, ctx, *decoded);
      }
      case RouteId::kAuditVerifierKey: {
        if (!CheckNoBodyOrQuery(resp, ex, query)) return;
        auto key = service.AuditVerifierKey(ctx);
        if (!key.ok()) return SendProblem(resp, ex, ProblemFromStatus(key.status()));
        return SendJson(resp, ex, 200, json{{"verifier_key", *key}});
      }
      case RouteId::kAuditCheckpoint: {
        if (!CheckNoBodyOrQuery(resp, ex, query)) return;
        return SendCheckpoint(resp, ex, 200, service.AuditCheckpoint(ctx, /*fresh=*/false));
      }
      case RouteId::kAuditNewCheckpoint: {
        if (!CheckNoQuery(resp, ex, query)) return;
        if (ex.body_pending) {
          std::string body;
          if (!ReadJsonBody(req, resp, ex, body)) return;
          if (Status s = DecodeEmptyObject(body); !s.ok()) {
            return SendProblem(resp, ex, ProblemFromStatus(s));
          }
        }
        return SendCheckpoint(resp, ex, 201, service.AuditCheckpoint(ctx, /*fresh=*/true));
      }
      case RouteId::kAuditInclusionProof: {
        QueryNumbers q;
        if (!CheckNoBody(resp, ex) ||
            !ParseNumberQuery(resp, ex, query, {"seq", "tree_size"}, {"seq"}, q)) {
          return;
        }
        const uint64_t seq = *q.Get("seq");
        auto proof = service.AuditInclusionProof(ctx, seq, q.Get("tree_size"));
        if (!proof.ok()) return SendProblem(resp, ex, ProblemFromStatus(proof.status()));
        return SendJson(resp, ex, 200, EncodeInclusionProof(seq, *proof));
      }
      case RouteId::kAuditConsistencyProof: {
        QueryNumbers q;
        if (!CheckNoBody(resp, ex) ||
            !ParseNumberQuery(resp, ex, query, {"from", "to"}, {"from", "to"}, q)) {
          return;
        }
        const uint64_t from = *q.Get("from");
        const uint64_t to = *q.Get("to");
        auto path = service.AuditConsistencyProof(ctx, from, to);
        if (!path.ok()) return SendProblem(resp, ex, ProblemFromStatus(path.status()));
        return SendJson(resp, ex, 200, EncodeConsistencyProof(from, to, *path));
      }
      case RouteId::kPolicyReload: {
        std::string body;
        if (!CheckNoQuery(resp, ex, query) || !ReadJsonBody(req, resp, ex, body)) return;
        if (Status s = DecodeEmptyObject(body); !s.ok()) {
          return SendProblem(resp, ex, ProblemFromStatus(s));
        }
        auto info = service.ReloadPolicy(&ctx);
        if (!info.ok()) return SendProblem(resp, ex, ProblemFromStatus(info.status()));
        json j = EncodePolicyInfo(*info, false);
        j["rules"] = info->rules;
        j["changed"] = info->changed;
        return SendJson(resp, ex, 200, j);
      }
      case RouteId::kPolicyShow: {
        if (!CheckNoBody(resp, ex)) return;
        std::optional<int64_t> at;
        if (!query.empty()) {
          constexpr std::string_view kAt = "at=";
          if (query.rfind(kAt, 0) != 0 || query.find('&') != std::string_view::npos) {
            return SendProblem(
                resp, ex,
                MakeProblem(400, "invalid-request", "this route takes one query parameter: at"));
          }
          std::string text;
          if (!PercentDecode(query.substr(kAt.size()), text)) {
            return SendProblem(resp, ex, MakeProblem(400, "invalid-request", "'at' is malformed"));
          }
          auto t = ParseRequestTime("at", text);
          if (!t.ok()) return SendProblem(resp, ex, ProblemFromStatus(t.status()));
          at = *t;
        }
        auto info = service.PolicyAt(ctx, at);
        if (!info.ok()) return SendProblem(resp, ex, ProblemFromStatus(info.status()));
        return SendJson(resp, ex, 200, EncodePolicyInfo(*info, true));
      }
      case RouteId::kPolicyHistory: {
        if (!CheckNoBodyOrQuery(resp, ex, query)) return;
        auto history = service.PolicyHistory(ctx);
        if (!history.ok()) return SendProblem(resp, ex, ProblemFromStatus(history.status()));
        json versions = json::array();
        for (size_t i = 0; i < history->size(); ++i) {
          PolicyInfo info = (*history)[i];
          if (i + 1 < history->size()) {
            info.in_force_until_unix_us = (*history)[i + 1].in_force_from_unix_us;
          }
          versions.push_back(EncodePolicyInfo(info, false));
        }
        return SendJson(resp, ex, 200, json{{"versions", std::move(versions)}});
      }
      case RouteId::kPolicyCheck: {
        std::string body;
        if (!CheckNoQuery(resp, ex, query) || !ReadJsonBody(req, resp, ex, body)) return;
        auto decoded = DecodePolicyCheck(body);
        if (!decoded.ok()) return SendProblem(resp, ex, ProblemFromStatus(decoded.status()));
        auto result = service.CheckPolicy(ctx, *decoded);
        if (!result.ok()) return SendProblem(resp, ex, ProblemFromStatus(result.status()));
        return SendJson(resp, ex, 200, EncodePolicyCheck(*result));
      }
      case RouteId::kAuditReview: {
        std::string body;
        if (!CheckNoQuery(resp, ex, query) || !ReadJsonBody(req, resp, ex, body)) return;
        auto pending = DecodeReviewQuery(body);
        if (!pending.ok()) return SendProblem(resp, ex, ProblemFromStatus(pending.status()));
        auto windows = service.ReviewBreakGlass(ctx, *pending);
        if (!windows.ok()) return SendProblem(resp, ex, ProblemFromStatus(windows.status()));
        json events = json::array();
        for (const auto& w : *windows) events.push_back(EncodeWindow(w));
        return SendJson(resp, ex, 200, json{{"events", std::move(events)}});
      }
      case RouteId::kAuditSignOff: {
        std::string body;
        if (!CheckObjectId(resp, ex, params) || !CheckNoQuery(resp, ex, query) ||
            !ReadJsonBody(req, resp, ex, body)) {
          return;
        }
        auto note = DecodeSignOff(body);
        if (!note.ok()) return SendProblem(resp, ex, ProblemFromStatus(note.status()));
        auto w = service.SignOffBreakGlass(ctx, params[0], *note);
        if (!w.ok()) return SendProblem(resp, ex, ProblemFromStatus(w.status()));
        json j = EncodeWindow(w->first);
        j["audit_seq"] = w->second;
        return SendJson(resp, ex, 200, j);
      }
      case RouteId::kAddRestriction: {
        std::string body;
        if (!CheckNoQuery(resp, ex, query) || !ReadJsonBody(req, resp, ex, body)) return;
        auto decoded = DecodeAddRestriction(body);
        if (!decoded.ok()) return SendProblem(resp, ex, ProblemFromStatus(decoded.status()));
        auto added = service.AddRestriction(ctx, std::move(decoded).value());
        if (!added.ok()) return SendProblem(resp, ex, ProblemFromStatus(added.status()));
        return SendJson(resp, ex, 201, json{{"id", added->first.id}, {"audit_seq", added->second}});
      }
      case RouteId::kSearchRestrictions: {
        std::string body;
        if (!CheckNoQuery(resp, ex, query) || !ReadJsonBody(req, resp, ex, body)) return;
        auto decoded = DecodeRestrictionSearch(body);
        if (!decoded.ok()) return SendProblem(resp, ex, ProblemFromStatus(decoded.status()));
        auto list = service.ListRestrictions(ctx, decoded->patient_id, decoded->include_ended);
        if (!list.ok()) return SendProblem(resp, ex, ProblemFromStatus(list.status()));
        json out = json::array();
        for (const auto& r : *list) out.push_back(EncodeRestriction(r));
        return SendJson(resp, ex, 200, json{{"restrictions", std::move(out)}});
      }
      case RouteId::kEndRestriction: {
        std::string body;
        if (!CheckObjectId(resp, ex, params) || !CheckNoQuery(resp, ex, query) ||
            !ReadJsonBody(req, resp, ex, body)) {
          return;
        }
        auto decoded = DecodeEndRestriction(body);
        if (!decoded.ok()) return SendProblem(resp, ex, ProblemFromStatus(decoded.status()));
        auto ended = service.EndRestriction(ctx, decoded->patient_id, params[0], decoded->reason);
        if (!ended.ok()) return SendProblem(resp, ex, ProblemFromStatus(ended.status()));
        return SendJson(resp, ex, 200,
                        json{{"id", ended->first.id},
                             {"ended", FormatRfc3339Micros(ended->first.ended_us.value_or(0))},
                             {"audit_seq", ended->second}});
      }
      case RouteId::kPatientExport: {
        std::string body;
        if (!CheckNoQuery(resp, ex, query) || !ReadJsonBody(req, resp, ex, body)) return;
        auto decoded = DecodePatientExport(body);
        if (!decoded.ok()) return SendProblem(resp, ex, ProblemFromStatus(decoded.status()));
        return StreamBody(req, resp, ex, "application/x-tar", [&](const ExportSink& sink) {
          return deps_.service->ExportPatient(ctx, *decoded, sink);
        });
      }
      case RouteId::kOpenPatientRequest: {
        std::string body;
        if (!CheckNoQuery(resp, ex, query) || !ReadJsonBody(req, resp, ex, body)) return;
        auto d = DecodeOpenRequest(body);
        if (!d.ok()) return SendProblem(resp, ex, ProblemFromStatus(d.status()));
        auto opened = service.OpenPatientRequest(ctx, d->patient_id, d->kind, d->received, d->note);
        if (!opened.ok()) return SendProblem(resp, ex, ProblemFromStatus(opened.status()));
        return SendJson(resp, ex, 201,
                        json{{"id", opened->first.id},
                             {"due", opened->first.due},
                             {"audit_seq", opened->second}});
      }
      case RouteId::kExtendPatientRequest: {
        std::string body;
        if (!CheckObjectId(resp, ex, params) || !CheckNoQuery(resp, ex, query) ||
            !ReadJsonBody(req, resp, ex, body)) {
          return;
        }
        auto reason = DecodeExtendRequest(body);
        if (!reason.ok()) return SendProblem(resp, ex, ProblemFromStatus(reason.status()));
        auto extended = service.ExtendPatientRequest(ctx, params[0], *reason);
        if (!extended.ok()) return SendProblem(resp, ex, ProblemFromStatus(extended.status()));
        return SendJson(resp, ex, 200,
                        json{{"id", extended->first.id},
                             {"due", extended->first.due},
                             {"audit_seq", extended->second}});
      }
      case RouteId::kClosePatientRequest: {
        std::string body;
        if (!CheckObjectId(resp, ex, params) || !CheckNoQuery(resp, ex, query) ||
            !ReadJsonBody(req, resp, ex, body)) {
          return;
        }
        auto d = DecodeCloseRequest(body);
        if (!d.ok()) return SendProblem(resp, ex, ProblemFromStatus(d.status()));
        auto closed =
            service.ClosePatientRequest(ctx, params[0], d->outcome, d->delivered, d->note);
        if (!closed.ok()) return SendProblem(resp, ex, ProblemFromStatus(closed.status()));
        return SendJson(resp, ex, 200,
                        json{{"id", closed->first.id},
                             {"closed", FormatRfc3339Micros(closed->first.closed_us.value_or(0))},
                             {"audit_seq", closed->second}});
      }
      case RouteId::kSearchPatientRequests: {
        std::string body;
        if (!CheckNoQuery(resp, ex, query) || !ReadJsonBody(req, resp, ex, body)) return;
        auto d = DecodeRequestSearch(body);
        if (!d.ok()) return SendProblem(resp, ex, ProblemFromStatus(d.status()));
        auto list = service.ListPatientRequests(ctx, d->patient_id, d->overdue, d->include_closed);
        if (!list.ok()) return SendProblem(resp, ex, ProblemFromStatus(list.status()));
        const std::string today = FormatRfc3339Micros(NowMicros()).substr(0, 10);
        json out = json::array();
        for (const auto& r : *list) out.push_back(EncodePatientRequest(r, today));
        return SendJson(resp, ex, 200, json{{"requests", std::move(out)}});
      }
      case RouteId::kSetContact: {
        std::string body;
        if (!CheckNoQuery(resp, ex, query) || !ReadJsonBody(req, resp, ex, body)) return;
        auto c = DecodeSetContact(body);
        if (!c.ok()) return SendProblem(resp, ex, ProblemFromStatus(c.status()));
        auto seq = service.SetContact(ctx, std::move(c).value());
        if (!seq.ok()) return SendProblem(resp, ex, ProblemFromStatus(seq.status()));
        return SendJson(resp, ex, 200, json{{"audit_seq", *seq}});
      }
      case RouteId::kGetContact: {
        std::string body;
        if (!CheckNoQuery(resp, ex, query) || !ReadJsonBody(req, resp, ex, body)) return;
        auto patient_id = DecodeSearchRecords(body);
        if (!patient_id.ok()) return SendProblem(resp, ex, ProblemFromStatus(patient_id.status()));
        auto c = service.GetContact(ctx, *patient_id);
        if (!c.ok()) return SendProblem(resp, ex, ProblemFromStatus(c.status()));
        return SendJson(resp, ex, 200, EncodeContact(*c));
      }
      case RouteId::kSetPatientFacts: {
        std::string body;
        if (!CheckNoQuery(resp, ex, query) || !ReadJsonBody(req, resp, ex, body)) return;
        auto update = DecodePatientFacts(body);
        if (!update.ok()) return SendProblem(resp, ex, ProblemFromStatus(update.status()));
        auto facts = service.SetPatientFacts(ctx, *update);
        if (!facts.ok()) return SendProblem(resp, ex, ProblemFromStatus(facts.status()));
        return SendJson(
            resp, ex, 200,
            json{{"facts", EncodePatientFacts(facts->first)}, {"audit_seq", facts->second}});
      }
      case RouteId::kGetPatientFacts: {
        std::string body;
        if (!CheckNoQuery(resp, ex, query) || !ReadJsonBody(req, resp, ex, body)) return;
        auto patient_id = DecodeSearchRecords(body);
        if (!patient_id.ok()) return SendProblem(resp, ex, ProblemFromStatus(patient_id.status()));
        auto facts = service.GetPatientFacts(ctx, *patient_id);
        if (!facts.ok()) return SendProblem(resp, ex, ProblemFromStatus(facts.status()));
        return SendJson(resp, ex, 200, json{{"facts", EncodePatientFacts(*facts)}});
      }
      case RouteId::kPatientRetention: {
        std::string body;
        if (!CheckNoQuery(resp, ex, query) || !ReadJsonBody(req, resp, ex, body)) return;
        auto patient_id = DecodeSearchRecords(body);
        if (!patient_id.ok()) return SendProblem(resp, ex, ProblemFromStatus(patient_id.status()));
        auto records = service.PatientRetention(ctx, *patient_id);
        if (!records.ok()) return SendProblem(resp, ex, ProblemFromStatus(records.status()));
        json out = json::array();
        for (const auto& r : *records) out.push_back(EncodeRecordRetention(r));
        return SendJson(resp, ex, 200, json{{"records", std::move(out)}});
      }
      case RouteId::kRetentionRules: {
        if (!CheckNoBodyOrQuery(resp, ex, query)) return;
        auto table = service.RetentionRules(ctx);
        if (!table.ok()) return SendProblem(resp, ex, ProblemFromStatus(table.status()));
        return SendJson(resp, ex, 200, EncodeRetentionTable(*table));
      }
      case RouteId::kPlaceHold: {
        std::string body;
        if (!CheckNoQuery(resp, ex, query) || !ReadJsonBody(req, resp, ex, body)) return;
        auto decoded = DecodePlaceHold(body);
        if (!decoded.ok()) return SendProblem(resp, ex, ProblemFromStatus(decoded.status()));
        auto placed = service.PlaceHold(ctx, *decoded);
        if (!placed.ok()) return SendProblem(resp, ex, ProblemFromStatus(placed.status()));
        return SendJson(resp, ex, 201,
                        json{{"hold", EncodeHold(placed->first)}, {"audit_seq", placed->second}});
      }
      case RouteId::kReleaseHold: {
        std::string body;
        if (!CheckObjectId(resp, ex, params) || !CheckNoQuery(resp, ex, query) ||
            !ReadJsonBody(req, resp, ex, body)) {
          return;
        }
        auto reason = DecodeReleaseHold(body);
        if (!reason.ok()) return SendProblem(resp, ex, ProblemFromStatus(reason.status()));
        auto released = service.ReleaseHold(ctx, params[0], *reason);
        if (!released.ok()) return SendProblem(resp, ex, ProblemFromStatus(released.status()));
        return SendJson(
            resp, ex, 200,
            json{{"hold", EncodeHold(released->first)}, {"audit_seq", released->second}});
      }
      case RouteId::kSearchHolds: {
        std::string body;
        if (!CheckNoQuery(resp, ex, query) || !ReadJsonBody(req, resp, ex, body)) return;
        auto decoded = DecodeHoldSearch(body);
        if (!decoded.ok()) return SendProblem(resp, ex, ProblemFromStatus(decoded.status()));
        auto holds = service.ListHolds(ctx, decoded->patient_id, decoded->include_released);
        if (!holds.ok()) return SendProblem(resp, ex, ProblemFromStatus(holds.status()));
        json out = json::array();
        for (const auto& h : *holds) out.push_back(EncodeHold(h));
        return SendJson(resp, ex, 200, json{{"holds", std::move(out)}});
      }
      case RouteId::kSweep: {
        std::string body;
        if (!CheckNoQuery(resp, ex, query) || !ReadJsonBody(req, resp, ex, body)) return;
        auto decoded = DecodeSweep(body);
        if (!decoded.ok()) return SendProblem(resp, ex, ProblemFromStatus(decoded.status()));
        if (Accepts(req, "application/x-ndjson")) return StreamSweep(req, resp, ex, ctx, *decoded);
        auto result = service.Sweep(&ctx, *decoded, [](const SweepProgress&) {});
        if (!result.ok()) return SendProblem(resp, ex, ProblemFromStatus(result.status()));
        return SendJson(resp, ex, 200, EncodeSweepResult(*result));
      }
      case RouteId::kListCertificates: {
        if (!CheckNoBodyOrQuery(resp, ex, query)) return;
        auto list = service.ListCertificates(ctx);
        if (!list.ok()) return SendProblem(resp, ex, ProblemFromStatus(list.status()));
        json out = json::array();
        for (const auto& c : *list) out.push_back(EncodeCertificateSummary(c));
        return SendJson(resp, ex, 200, json{{"certificates", std::move(out)}});
      }
      case RouteId::kRotateMasterKey: {
        std::string body;
        if (!CheckNoQuery(resp, ex, query) || !ReadJsonBody(req, resp, ex, body)) return;
        auto decoded = DecodeKeyRotate(std::move(body));
        if (!decoded.ok()) return SendProblem(resp, ex, ProblemFromStatus(decoded.status()));
        auto rotated = service.RotateMasterKey(ctx, std::move(*decoded));
        if (!rotated.ok()) return SendProblem(resp, ex, ProblemFromStatus(rotated.status()));
        return SendJson(resp, ex, 200, EncodeKeyRotateResult(*rotated));
      }
      case RouteId::kGetCertificate: {
        if (params.size() != 1 || !IsCertificateId(params[0])) {
          return SendProblem(
              resp, ex,
              MakeProblem(400, "invalid-request", "a certificate id is 32 lowercase hex digits"));
        }
        if (!CheckNoBodyOrQuery(resp, ex, query)) return;
        return SendCertificate(resp, ex, ctx, params[0], CertificateFormFor(req));
      }
      case RouteId::kCreateBackup: {
        std::string body;
        if (!CheckNoQuery(resp, ex, query) || !ReadJsonBody(req, resp, ex, body)) return;
        auto decoded = DecodeBackupRequest(body);
        if (!decoded.ok()) return SendProblem(resp, ex, ProblemFromStatus(decoded.status()));
        if (Accepts(req, "application/x-ndjson")) {
          return StreamBackup(req, resp, ex, ctx, std::move(*decoded));
        }
        auto made = service.CreateBackup(ctx, *decoded);
        if (!made.ok()) return SendProblem(resp, ex, ProblemFromStatus(made.status()));
        return SendJson(resp, ex, 201, EncodeBackupManifest(*made, decoded->dir));
      }
      case RouteId::kArchiveRun: {
        std::string body;
        if (!CheckNoQuery(resp, ex, query) || !ReadJsonBody(req, resp, ex, body)) return;
        auto decoded = DecodeArchiveRequest(body);
        if (!decoded.ok()) return SendProblem(resp, ex, ProblemFromStatus(decoded.status()));
        auto run = service.RunArchive(ctx, *decoded);
        if (!run.ok()) return SendProblem(resp, ex, ProblemFromStatus(run.status()));
        return SendJson(resp, ex, 200, EncodeArchiveResult(*run));
      }
    }
    SendProblem(resp, ex, MakeProblem(500, "internal", "unhandled route"));
  }

  // A sweep asked for as NDJSON (StreamWithProgress).
  void StreamSweep(HTTPServerRequest& req, HTTPServerResponse& resp, Exchange& ex,
                   const RequestContext& ctx, const SweepRequest& sweep) {
    StreamWithProgress(req, resp, ex, "sweep", [&](const SweepProgressFn& progress) {
      auto result = deps_.service->Sweep(&ctx, sweep, progress);
      return result.ok() ? StatusOr<json>(EncodeSweepResult(*result))
                         : StatusOr<json>(result.status());
    });
  }

  // A backup asked for as NDJSON (StreamWithProgress); the result is what the plain 201 holds.
  void StreamBackup(HTTPServerRequest& req, HTTPServerResponse& resp, Exchange& ex,
                    const RequestContext& ctx, BackupRequest backup) {
    StreamWithProgress(req, resp, ex, "backup", [&](const SweepProgressFn& progress) {
      backup.progress = [&](std::string_view phase, uint64_t done, uint64_t total) {
        progress(SweepProgress{std::string(phase), done, total});
      };
      auto made = deps_.service->CreateBackup(ctx, backup);
      return made.ok() ? StatusOr<json>(EncodeBackupManifest(*made, backup.dir))
                       : StatusOr<json>(made.status());
    });
  }

  // A long operation streamed as NDJSON: a {"progress":...} line per progress report, then
  // {"result":...}, chunked, the status line going out with the first line. An operation refused
  // before it reports anything is a problem response; one that fails after that ends with an
  // {"error": <problem>} line instead of a result (the status cannot change any more). A client
  // that stops reading does not stop it: it runs to its end or fails closed.
  void StreamWithProgress(HTTPServerRequest& req, HTTPServerResponse& resp, Exchange& ex,
                          std::string_view what,
                          const std::function<StatusOr<json>(const SweepProgressFn&)>& run) {
    std::ostream* out = nullptr;
    bool client_gone = false;
    const auto send_line = [&](const json& line) {
      if (out == nullptr) {
        PrepareHeaders(resp, ex, 200);
        resp.setContentType("application/x-ndjson");
        resp.setChunkedTransferEncoding(true);
        out = &resp.send();
      }
      if (client_gone) return;
      const std::string text = DumpJson(line) + "\n";
      out->write(text.data(), static_cast<std::streamsize>(text.size()));
      out->flush();
      client_gone = !out->good();
    };
    auto result = run([&](const SweepProgress& progress) {
      send_line(json{{"progress", EncodeSweepProgress(progress)}});
    });
    if (!result.ok() && out == nullptr) {
      return SendProblem(resp, ex, ProblemFromStatus(result.status()));
    }
    if (result.ok()) {
      send_line(json{{"result", *result}});
    } else {
      const Problem problem = ProblemFromStatus(result.status());
      ex.problem = problem.type;
      spdlog::error("request id={} {} failed after it began: {}", ex.request_id, what,
                    StatusCodeName(result.status().code()));
      send_line(json{{"error", json::parse(ProblemJson(problem, ex.request_id))}});
    }
    if (client_gone) {
      ex.problem = "client-gone";
      spdlog::warn("request id={} the client stopped reading the {}'s progress", ex.request_id,
                   what);
      try {
        dynamic_cast<Poco::Net::HTTPServerRequestImpl&>(req).socket().shutdown();
      } catch (const Poco::Exception&) {
        // Already disconnected.
      }
    }
  }

  // A certificate of destruction as its signed note, or rendered (policies/certificate_render.h)
  // after it has been verified with the audit verifier key: a page is only ever made of a
  // certificate the vault's key vouches for.
  void SendCertificate(HTTPServerResponse& resp, Exchange& ex, const RequestContext& ctx,
                       const std::string& id, CertificateForm form) {
    auto note = deps_.service->GetCertificate(ctx, id);
    if (!note.ok()) return SendProblem(resp, ex, ProblemFromStatus(note.status()));
    if (form == CertificateForm::kNote) {
      return SendBytes(resp, ex, 200, "text/plain; charset=utf-8", *note);
    }
    auto key = deps_.service->AuditVerifierKey(ctx);
    if (!key.ok()) return SendProblem(resp, ex, ProblemFromStatus(key.status()));
    auto verifier = crypto::ParseNoteVerifierKey(*key);
    if (!verifier.ok()) {
      return SendProblem(resp, ex,
                         ProblemFromStatus(Internal("the audit verifier key is malformed")));
    }
    auto certificate = storage::VerifyDestructionCertificate(*note, *verifier);
    if (!certificate.ok()) return SendProblem(resp, ex, ProblemFromStatus(certificate.status()));
    const policies::CertificateContext context{.practice_name = deps_.config->practice_name,
                                               .verifier_key = *key,
                                               .generated_at_unix_us = NowMicros()};
    if (form == CertificateForm::kHtml) {
      return SendBytes(resp, ex, 200, "text/html; charset=utf-8",
                       policies::RenderDestructionCertificateHtml(*certificate, context));
    }
    SendBytes(resp, ex, 200, "application/json",
              policies::RenderDestructionCertificateJson(*certificate, context));
  }

  // The ids of restrictions, break-glass windows and patient requests have a record id's form.
  bool CheckObjectId(HTTPServerResponse& resp, Exchange& ex,
                     const std::vector<std::string>& params) {
    if (params.size() == 1 && storage::IsValidRecordId(params[0])) return true;
    SendProblem(resp, ex,
                MakeProblem(400, "invalid-request", "an id is 22 characters from [A-Za-z0-9_-]"));
    return false;
  }

  void SendAuditSeq(HTTPServerResponse& resp, Exchange& ex, const StatusOr<uint64_t>& seq) {
    if (!seq.ok()) return SendProblem(resp, ex, ProblemFromStatus(seq.status()));
    SendJson(resp, ex, 201, json{{"audit_seq", *seq}});
  }

  void SendCheckpoint(HTTPServerResponse& resp, Exchange& ex, int status,
                      const StatusOr<std::string>& note) {
    if (!note.ok()) return SendProblem(resp, ex, ProblemFromStatus(note.status()));
    SendBytes(resp, ex, status, "text/plain; charset=utf-8", *note);
  }

  // The export goes out as it is produced, in chunked transfer encoding. The status line is
  // only sent with the first chunk, so a refusal before that is still a problem response. A
  // failure after it can no longer change the status: the connection is cut before the final
  // chunk, so that no client can take a truncated export for a complete one.
  void StreamExport(HTTPServerRequest& req, HTTPServerResponse& resp, Exchange& ex,
                    const RequestContext& ctx, const AuditExportRequest& export_request) {
    StreamBody(req, resp, ex, ExportContentType(export_request.format),
               [&](const ExportSink& sink) {
                 return deps_.service->ExportAudit(ctx, export_request, sink);
               });
  }

  void StreamBody(HTTPServerRequest& req, HTTPServerResponse& resp, Exchange& ex,
                  std::string_view content_type,
                  const std::function<Status(const ExportSink&)>& produce) {
    std::ostream* out = nullptr;
    bool client_gone = false;
    const ExportSink sink = [&](std::string_view chunk) {
      if (out == nullptr) {
        PrepareHeaders(resp, ex, 200);
        resp.setContentType(std::string(content_type));
        resp.setChunkedTransferEncoding(true);
        out = &resp.send();
      }
      out->write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
      out->flush();
      client_gone = !out->good();
      return !client_gone;
    };
    const Status status = produce(sink);
    if (out == nullptr) {
      if (!status.ok()) return SendProblem(resp, ex, ProblemFromStatus(status));
      sink({});
      return;
    }
    if (status.ok() && !client_gone) return;
    if (client_gone) {
      ex.problem = "client-gone";
      spdlog::warn("request id={} export stopped: the client stopped reading", ex.request_id);
    } else {
      ex.problem = ProblemFromStatus(status).type;
      spdlog::error("request id={} export failed after it began: {}", ex.request_id,
                    StatusCodeName(status.code()));
    }
    try {
      dynamic_cast<Poco::Net::HTTPServerRequestImpl&>(req).socket().shutdown();
    } catch (const Poco::Exception&) {
      // Already disconnected: the client cannot mistake the export for a complete one either.
    }
  }

  bool CheckRecordId(HTTPServerResponse& resp, Exchange& ex,
                     const std::vector<std::string>& params) {
    if (params.size() == 1 && storage::IsValidRecordId(params[0])) return true;
    SendProblem(
        resp, ex,
        MakeProblem(400, "invalid-request", "a record id is 22 characters from [A-Za-z0-9_-]"));
    return false;
  }

  bool CheckNoQuery(HTTPServerResponse& resp, Exchange& ex, std::string_view query) {
    if (query.empty()) return true;
    SendProblem(resp, ex,
                MakeProblem(400, "invalid-request", "this route takes no query parameters"));
    return false;
  }

  bool CheckNoBody(HTTPServerResponse& resp, Exchange& ex) {
    if (!ex.body_pending) return true;
    SendProblem(resp, ex, MakeProblem(400, "invalid-request", "this route takes no body"));
    return false;
  }

  bool CheckNoBodyOrQuery(HTTPServerResponse& resp, Exchange& ex, std::string_view query) {
    return CheckNoQuery(resp, ex, query) && CheckNoBody(resp, ex);
  }

  // Decimal query parameters by name.
  struct QueryNumbers {
    std::vector<std::pair<std::string_view, uint64_t>> values;
    std::optional<uint64_t> Get(std::string_view name) const {
      for (const auto& [n, v] : values) {
        if (n == name) return v;
      }
      return std::nullopt;
    }
  };

  // "name=N&..." with each name from `allowed` at most once, every `required` one present, and
  // N a decimal number that fits 64 bits. Values are never quoted back.
  bool ParseNumberQuery(HTTPServerResponse& resp, Exchange& ex, std::string_view query,
                        std::initializer_list<std::string_view> allowed,
                        std::initializer_list<std::string_view> required, QueryNumbers& out) {
    const auto bad = [&](std::string detail) {
      SendProblem(resp, ex, MakeProblem(400, "invalid-request", std::move(detail)));
      return false;
    };
    for (bool more = !query.empty(); more;) {
      const size_t amp = query.find('&');
      const std::string_view pair = query.substr(0, amp);
      more = amp != std::string_view::npos;
      if (more) query.remove_prefix(amp + 1);
      const size_t eq = pair.find('=');
      const std::string_view name = pair.substr(0, eq);
      const auto known = std::find(allowed.begin(), allowed.end(), name);
      if (known == allowed.end()) {
        std::string names;
        for (auto a : allowed) names += (names.empty() ? "" : ", ") + std::string(a);
        return bad("unknown query parameter; this route takes " + names);
      }
      const std::string quoted = "query parameter '" + std::string(name) + "'";
      if (out.Get(name)) return bad(quoted + " is given twice");
      const std::optional<uint64_t> v =
          ParseDecimal(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
      if (!v) return bad(quoted + " must be a decimal number below 2^64");
      out.values.emplace_back(*known, *v);
    }
    for (auto r : required) {
      if (!out.Get(r)) return bad("query parameter '" + std::string(r) + "' is required");
    }
    return true;
  }

  // The audit export's query: "trusted_size=N", repeatable (at most kMaxTrustedSizes, each a
  // decimal below 2^64), or nothing. Each size costs the export one consistency proof.
  static constexpr size_t kMaxTrustedSizes = 32;
  bool ParseTrustedSizes(HTTPServerResponse& resp, Exchange& ex, std::string_view query,
                         std::vector<uint64_t>& out) {
    const auto bad = [&](std::string detail) {
      SendProblem(resp, ex, MakeProblem(400, "invalid-request", std::move(detail)));
      return false;
    };
    constexpr std::string_view kKey = "trusted_size=";
    for (bool more = !query.empty(); more;) {
      const size_t amp = query.find('&');
      const std::string_view pair = query.substr(0, amp);
      more = amp != std::string_view::npos;
      if (more) query.remove_prefix(amp + 1);
      if (pair.substr(0, kKey.size()) != kKey) {
        return bad("unknown query parameter; this route takes trusted_size");
      }
      const std::optional<uint64_t> v = ParseDecimal(pair.substr(kKey.size()));
      if (!v) return bad("query parameter 'trusted_size' must be a decimal number below 2^64");
      if (out.size() == kMaxTrustedSizes) {
        return bad("at most " + std::to_string(kMaxTrustedSizes) +
                   " trusted_size parameters are taken");
      }
      out.push_back(*v);
    }
    return true;
  }

  // "version=N" (N in 1..4294967295) or nothing.
  bool ParseVersionQuery(HTTPServerResponse& resp, Exchange& ex, std::string_view query,
                         std::optional<uint32_t>& version) {
    if (query.empty()) return true;
    constexpr std::string_view kKey = "version=";
    const auto bad = [&] {
      SendProblem(resp, ex,
                  MakeProblem(400, "invalid-request",
                              "the only query parameter is version, a number from 1 to "
                              "4294967295"));
      return false;
    };
    if (query.substr(0, kKey.size()) != kKey) return bad();
    const std::string_view digits = query.substr(kKey.size());
    if (digits.empty() || digits.size() > 10 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return bad();
    }
    uint64_t v = 0;
    std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (v < 1 || v > 4294967295ull) return bad();
    version = static_cast<uint32_t>(v);
    return true;
  }

  // Reads the whole body within the route's limit (Exchange::body_limit), holding it against the
  // server's budget of request bytes in flight. On failure the response is sent and the
  // connection will be closed (the rest of the body is unread).
  bool ReadJsonBody(HTTPServerRequest& req, HTTPServerResponse& resp, Exchange& ex,
                    std::string& body) {
    const uint64_t max = ex.body_limit;
    if (!IsJsonContentType(req.getContentType())) {
      SendProblem(resp, ex,
                  MakeProblem(415, "unsupported-media-type",
                              "the body must be sent as Content-Type: application/json"));
      return false;
    }
    const bool chunked = req.getChunkedTransferEncoding();
    if (!chunked && !req.hasContentLength()) {
      SendProblem(resp, ex,
                  MakeProblem(411, "length-required",
                              "a body needs Content-Length (or chunked transfer encoding)"));
      return false;
    }
    const auto too_large = [&] {
      SendProblem(resp, ex,
                  MakeProblem(413, "payload-too-large",
                              "the body exceeds " + std::string(ex.body_limit_key) + " (" +
                                  std::to_string(max) + " bytes) for this route"));
      return false;
    };
    const auto over_budget = [&] {
      resp.set("Retry-After", "1");
      SendProblem(resp, ex,
                  MakeProblem(503, "server-busy",
                              "the server holds too many request bytes at the moment "
                              "(limits.max_inflight_body_bytes); retry shortly"));
      return false;
    };
    ConnectionState* connection = CurrentConnection();
    const auto incomplete = [&](std::string detail) {
      if (connection != nullptr && connection->timed_out) {
        SendProblem(resp, ex,
                    MakeProblem(408, "request-timeout",
                                "the request did not arrive within limits.request_timeout_ms "
                                "or limits.min_body_bytes_per_second"));
      } else {
        SendProblem(resp, ex, MakeProblem(400, "invalid-request", std::move(detail)));
      }
      return false;
    };
    ex.body_lease.Bind(connection != nullptr ? connection->budget : nullptr);

    if (chunked) {
      // Poco's own chunked stream takes a body cut short for a complete one; this reads the raw
      // bytes after the header section and insists on the full framing. What it may have read
      // ahead of the next request is lost, so the connection ends after this response.
      ex.close = true;
      auto& impl = dynamic_cast<Poco::Net::HTTPServerRequestImpl&>(req);
      Poco::Net::HTTPInputStream raw(impl.session());
      switch (ReadChunkedBody(raw, max, ex.body_lease, body)) {
        case ChunkedResult::kOk:
          break;
        case ChunkedResult::kTooLarge:
          return too_large();
        case ChunkedResult::kOverBudget:
          return over_budget();
        case ChunkedResult::kMalformed:
          return incomplete("the chunked body is malformed or incomplete");
      }
      ex.body_pending = false;
      return true;
    }

    const int64_t declared = req.getContentLength64();
    if (declared < 0 || static_cast<uint64_t>(declared) > max) return too_large();
    if (!ex.body_lease.Grow(static_cast<uint64_t>(declared))) return over_budget();

    // Reads straight into `body`, sized to what is declared or has arrived: resize zero-fills
    // (std::string has no uninitialised resize before C++23), so a 1 KiB body costs a 1 KiB
    // memset rather than a fresh 1 MiB buffer, and no body makes us allocate more than twice
    // what it sent (or kMaxFirstBodyBuffer).
    const auto capacity = static_cast<uint64_t>(declared);
    std::istream& in = req.stream();
    size_t filled = 0;
    body.resize(static_cast<size_t>(std::min<uint64_t>(capacity, kMaxFirstBodyBuffer)));
    while (filled < body.size()) {
      in.read(body.data() + filled, static_cast<std::streamsize>(body.size() - filled));
      const auto got = static_cast<size_t>(in.gcount());
      if (got == 0) break;
      filled += got;
      if (filled == body.size() && filled < capacity) {
        body.resize(static_cast<size_t>(std::min<uint64_t>(capacity, uint64_t{filled} * 2)));
      }
    }
    body.resize(filled);
    if (in.bad() || body.size() != capacity) {
      return incomplete("the body ended before Content-Length bytes arrived");
    }
    ex.body_pending = false;
    return true;
  }

  void PrepareHeaders(HTTPServerResponse& resp, Exchange& ex, int status) {
    ex.status = status;
    // Poco's setStatus keeps the reason phrase it had ("OK"); this sets the standard one.
    resp.setStatusAndReason(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(status));
    resp.set("X-Request-Id", ex.request_id);
    resp.set("Cache-Control", "no-store");
    resp.set("X-Content-Type-Options", "nosniff");
    // Unread body bytes would be taken for the next request: close instead.
    if (ex.body_pending || ex.close) resp.setKeepAlive(false);
    if (ex.body_pending) {
      if (ConnectionState* c = CurrentConnection(); c != nullptr) c->linger_before_close = true;
    }
    // The server is stopping: this is the connection's last response.
    if (const ConnectionState* c = CurrentConnection(); c != nullptr && c->stop_requested.load()) {
      resp.setKeepAlive(false);
    }
  }

  void SendBytes(HTTPServerResponse& resp, Exchange& ex, int status, std::string_view type,
                 const std::string& bytes) {
    PrepareHeaders(resp, ex, status);
    resp.setContentType(std::string(type));
    resp.setContentLength64(static_cast<Poco::Int64>(bytes.size()));
    // Poco's own writes go out 4 KiB at a time: anything larger (record content, reports) is
    // sent whole, the headers still formatted by Poco.
    if (bytes.size() > kWholeSendFromBytes && !ex.head) {
      const WholeSend sent = SendWholeResponse(resp, bytes);
      if (sent != WholeSend::kNoSocket) {
        ex.sent_whole = true;
        if (sent == WholeSend::kFailed) ex.close = true;
        return;
      }
    }
    resp.sendBuffer(bytes.data(), bytes.size());
  }

  void SendJson(HTTPServerResponse& resp, Exchange& ex, int status, const json& j) {
    SendBytes(resp, ex, status, "application/json", DumpJson(j));
  }

  void SendProblem(HTTPServerResponse& resp, Exchange& ex, const Problem& p) {
    ex.problem = p.type;
    SendBytes(resp, ex, p.status, kProblemContentType, ProblemJson(p, ex.request_id));
  }

  void SendContent(HTTPServerResponse& resp, Exchange& ex, const storage::Record& record) {
    resp.set("X-Phivault-Record-Id", record.meta.record_id);
    resp.set("X-Phivault-Version", std::to_string(record.meta.version));
    SendBytes(resp, ex, 200,
              IsSafeContentType(record.meta.content_type) ? record.meta.content_type
                                                          : "application/octet-stream",
              record.content);
  }

  ApiDeps deps_;
  AuthFailureLimiter* auth_failures_;
};

AuthFailureOptions AuthFailureOptionsOf(const Limits& limits) {
  AuthFailureOptions o;
  o.burst = limits.auth_failure_burst;
  o.refill = std::chrono::milliseconds(limits.auth_failure_refill_ms);
  o.summary_window = std::chrono::milliseconds(limits.auth_failure_summary_ms);
  return o;
}

class ApiHandlerFactory final : public Poco::Net::HTTPRequestHandlerFactory,
                                public ServerStopListener {
 public:
  explicit ApiHandlerFactory(const ApiDeps& deps)
      : deps_(deps), auth_failures_(AuthFailureOptionsOf(deps.config->limits), deps.service) {}
  Poco::Net::HTTPRequestHandler* createRequestHandler(const HTTPServerRequest&) override {
    return new ApiHandler(deps_, &auth_failures_);
  }
  // phivaultd exits without destructors when requests outlast the shutdown grace period: the
  // summaries counted so far are written now, not only when the factory is destroyed.
  void OnServerStopped() override {
    if (const uint64_t lost = auth_failures_.FlushDue(/*all=*/true); lost > 0) {
      spdlog::error("{} failed authentication attempts could not be audited at shutdown", lost);
    }
  }

 private:
  ApiDeps deps_;
  AuthFailureLimiter auth_failures_;  // its destructor writes the summaries still pending
};

}  // namespace

Poco::Net::HTTPRequestHandlerFactory::Ptr NewApiHandlerFactory(const ApiDeps& deps) {
  return new ApiHandlerFactory(deps);
}

}  // namespace phivault::daemon
