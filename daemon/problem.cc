#include "daemon/problem.h"

#include <nlohmann/json.hpp>

namespace phivault::daemon {
namespace {

std::string_view TitleOf(std::string_view type) {
  struct Entry {
    std::string_view type;
    std::string_view title;
  };
  static constexpr Entry kTitles[] = {
      {"invalid-request", "The request is invalid"},
      {"unauthenticated", "Authentication failed"},
      {"forbidden", "Not allowed"},
      {"not-found", "Not found"},
      {"method-not-allowed", "Method not allowed"},
      {"request-timeout", "The request was not received in time"},
      {"conflict", "Already exists"},
      {"failed-precondition", "The vault is not in a state to do this"},
      {"record-shredded", "The record was destroyed"},
      {"length-required", "Content-Length required"},
      {"payload-too-large", "The request is too large"},
      {"unsupported-media-type", "Unsupported media type"},
      {"header-fields-too-large", "The request headers are too large"},
      {"integrity-failure", "Stored data failed its integrity check"},
      {"internal", "Internal error"},
      {"audit-unavailable", "The audit log could not be written"},
      {"unavailable", "Temporarily unavailable"},
      {"too-many-connections", "Too many connections"},
      {"insufficient-storage", "Not enough disk space"},
      {"invalid-policy", "The policy file is invalid; the policy in force is unchanged"},
  };
  for (const auto& e : kTitles) {
    if (e.type == type) return e.title;
  }
  return "Error";
}

bool Says(const std::string& message, std::string_view phrase) {
  return message.find(phrase) != std::string::npos;
}

// The certificate id in "... (certificate <32 lowercase hex>)", or "" if there is none.
std::string CertificateIn(std::string_view message) {
  const size_t at = message.find(kCertificateMarker);
  if (at == std::string_view::npos) return {};
  const std::string_view id = message.substr(at + kCertificateMarker.size());
  constexpr size_t kIdDigits = 32;
  if (id.size() < kIdDigits + 1 || id[kIdDigits] != ')') return {};
  for (size_t i = 0; i < kIdDigits; ++i) {
    const char c = id[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return {};
  }
  return std::string(id.substr(0, kIdDigits));
}

}  // namespace

Problem MakeProblem(int http_status, std::string type, std::string detail) {
  Problem p;
  p.status = http_status;
  p.title = std::string(TitleOf(type));
  p.type = std::move(type);
  p.detail = std::move(detail);
  return p;
}

Problem ProblemFromStatus(const Status& status) {
  const std::string& m = status.message();
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
      if (Says(m, kInvalidPolicyMessage)) return MakeProblem(422, "invalid-policy", m);
      return MakeProblem(400, "invalid-request", m);
    case StatusCode::kUnauthenticated:
      return MakeProblem(401, "unauthenticated", m);
    case StatusCode::kPermissionDenied: {
      const size_t at = m.rfind(kRuleMarker);
      if (at == std::string::npos || m.back() != ']') return MakeProblem(403, "forbidden", m);
      Problem p = MakeProblem(403, "forbidden", m.substr(0, at));
      p.rule = m.substr(at + kRuleMarker.size(), m.size() - at - kRuleMarker.size() - 1);
      return p;
    }
    case StatusCode::kNotFound:
      return MakeProblem(404, "not-found", m);
    case StatusCode::kAlreadyExists:
      return MakeProblem(409, "conflict", m);
    case StatusCode::kFailedPrecondition:
      if (Says(m, kShreddedMessage)) {
        Problem p = MakeProblem(410, "record-shredded", m);
        p.certificate = CertificateIn(m);
        return p;
      }
      return MakeProblem(409, "failed-precondition", m);
    case StatusCode::kResourceExhausted:
      if (Says(m, kContentTooLargeMessage)) return MakeProblem(413, "payload-too-large", m);
      return MakeProblem(507, "insufficient-storage", m);
    case StatusCode::kDataLoss:
      return MakeProblem(500, "integrity-failure", m);
    case StatusCode::kUnavailable:
      if (Says(m, kAuditUnavailableMessage)) return MakeProblem(503, "audit-unavailable", m);
      return MakeProblem(503, "unavailable", m);
    case StatusCode::kOk:
    case StatusCode::kInternal:
      break;
  }
  return MakeProblem(500, "internal", m);
}

std::string ProblemJson(const Problem& problem, std::string_view request_id) {
  nlohmann::json j = {
      {"type", std::string(kProblemTypePrefix) + problem.type},
      {"title", problem.title},
      {"status", problem.status},
      {"detail", problem.detail},
      {"request_id", std::string(request_id)},
  };
  if (!problem.rule.empty()) j["rule"] = problem.rule;
  if (!problem.certificate.empty()) j["certificate"] = problem.certificate;
  // Replace, not throw, should a message ever contain bytes that are not UTF-8.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace phivault::daemon
