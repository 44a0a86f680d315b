#include "storage/audit_entry.h"

#include <nlohmann/json.hpp>

#include "crypto/hash.h"

namespace phivault::storage {
namespace {

using Json = nlohmann::json;

constexpr size_t kNumFields = 24;

Status Missing(std::string_view field) {
  return DataLoss("audit entry field '" + std::string(field) +
                  "' is missing or has the wrong type");
}

Status GetUnsigned(const Json& j, const char* field, uint64_t& out) {
  auto it = j.find(field);
  if (it == j.end() || !it->is_number_unsigned()) return Missing(field);
  out = it->get<uint64_t>();
  return Status::Ok();
}

Status GetString(const Json& j, const char* field, std::string& out) {
  auto it = j.find(field);
  if (it == j.end() || !it->is_string()) return Missing(field);
  out = it->get<std::string>();
  return Status::Ok();
}

}  // namespace

StatusOr<std::string> EncodeAuditEntry(const AuditEntry& e) {
  Json j = Json::object();
  j["seq"] = e.seq;
  j["time_us"] = e.time_unix_us;
  j["prev"] = e.prev_hash;
  j["request_id"] = e.request_id;
  j["app"] = e.application;
  j["user"] = e.user;
  j["role"] = e.role;
  j["action"] = e.action;
  j["outcome"] = e.outcome;
  j["reason"] = e.reason;
  j["purpose"] = e.purpose;
  j["patient_bid"] = e.patient_bid;
  j["records"] = e.records;
  j["phi"] = e.sealed_phi;
  j["phi_commit"] = e.phi_commit;
  j["btg"] = e.break_glass;
  j["peer_uid"] = e.peer_uid;
  j["peer_pid"] = e.peer_pid;
  j["claimed_user"] = e.claimed_user;
  j["claimed_role"] = e.claimed_role;
  j["claimed_purpose"] = e.claimed_purpose;
  j["count"] = e.count;
  j["patient_prev"] = e.patient_prev;
  j["user_prev"] = e.user_prev;
  try {
    return j.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::strict);
  } catch (const Json::exception&) {
    // nlohmann does not say which string was bad; find it so the caller can fix its input.
    for (const auto& [key, value] : j.items()) {
      try {
        (void)value.dump(-1, ' ', false, Json::error_handler_t::strict);
      } catch (const Json::exception&) {
        return InvalidArgument("audit entry field '" + key + "' is not valid UTF-8");
      }
    }
    return InvalidArgument("audit entry is not valid UTF-8");
  }
}

StatusOr<AuditEntry> DecodeAuditEntry(std::string_view bytes) {
  Json j = Json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return DataLoss("audit entry is not a JSON object");
  if (j.size() != kNumFields) return DataLoss("audit entry has unknown or missing fields");

  AuditEntry e;
  PV_RETURN_IF_ERROR(GetUnsigned(j, "seq", e.seq));
  auto time = j.find("time_us");
  if (time == j.end() || !time->is_number_integer()) return Missing("time_us");
  e.time_unix_us = time->get<int64_t>();
  PV_RETURN_IF_ERROR(GetString(j, "prev", e.prev_hash));
  PV_RETURN_IF_ERROR(GetString(j, "request_id", e.request_id));
  PV_RETURN_IF_ERROR(GetString(j, "app", e.application));
  PV_RETURN_IF_ERROR(GetString(j, "user", e.user));
  PV_RETURN_IF_ERROR(GetString(j, "role", e.role));
  PV_RETURN_IF_ERROR(GetString(j, "action", e.action));
  PV_RETURN_IF_ERROR(GetString(j, "outcome", e.outcome));
  PV_RETURN_IF_ERROR(GetString(j, "reason", e.reason));
  PV_RETURN_IF_ERROR(GetString(j, "purpose", e.purpose));
  PV_RETURN_IF_ERROR(GetString(j, "patient_bid", e.patient_bid));
  PV_RETURN_IF_ERROR(GetString(j, "phi", e.sealed_phi));
  PV_RETURN_IF_ERROR(GetString(j, "phi_commit", e.phi_commit));
  PV_RETURN_IF_ERROR(GetString(j, "claimed_user", e.claimed_user));
  PV_RETURN_IF_ERROR(GetString(j, "claimed_role", e.claimed_role));
  PV_RETURN_IF_ERROR(GetString(j, "claimed_purpose", e.claimed_purpose));
  uint64_t peer_uid = 0;
  PV_RETURN_IF_ERROR(GetUnsigned(j, "peer_uid", peer_uid));
  if (peer_uid > UINT32_MAX) return Missing("peer_uid");
  e.peer_uid = static_cast<uint32_t>(peer_uid);
  uint64_t peer_pid = 0;
  PV_RETURN_IF_ERROR(GetUnsigned(j, "peer_pid", peer_pid));
  if (peer_pid > INT64_MAX) return Missing("peer_pid");
  e.peer_pid = static_cast<int64_t>(peer_pid);
  PV_RETURN_IF_ERROR(GetUnsigned(j, "count", e.count));
  PV_RETURN_IF_ERROR(GetUnsigned(j, "patient_prev", e.patient_prev));
  PV_RETURN_IF_ERROR(GetUnsigned(j, "user_prev", e.user_prev));
  auto records = j.find("records");
  if (records == j.end() || !records->is_array()) return Missing("records");
  for (const auto& r : *records) {
    if (!r.is_string()) return Missing("records");
    e.records.push_back(r.get<std::string>());
  }
  auto btg = j.find("btg");
  if (btg == j.end() || !btg->is_boolean()) return Missing("btg");
  e.break_glass = btg->get<bool>();

  // Equal entries must have equal bytes, or the hash chain and Merkle leaves would be ambiguous.
  auto canonical = EncodeAuditEntry(e);
  if (!canonical.ok() || *canonical != bytes) {
    return DataLoss("audit entry is not in canonical form");
  }
  return e;
}

std::string CanonicalPhiJson(const nlohmann::json& phi) {
  return phi.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
}

std::string PhiCommitment(std::string_view salt, const nlohmann::json& phi) {
  const std::string canonical = CanonicalPhiJson(phi);
  static constexpr std::string_view kDomain("phivault/audit/phi-commit/v1\0", 29);
  return crypto::HexEncode(crypto::AsView(crypto::Sha256({kDomain, salt, canonical})));
}

}  // namespace phivault::storage
