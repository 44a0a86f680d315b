#include "storage/audit_entry.h"

#include <nlohmann/json.hpp>

namespace phivault::storage {
namespace {

using Json = nlohmann::json;

constexpr size_t kNumFields = 15;

Status Missing(std::string_view field) {
  return DataLoss("audit entry field '" + std::string(field) +
                  "' is missing or has the wrong type");
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
  j["btg"] = e.break_glass;
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
  auto seq = j.find("seq");
  if (seq == j.end() || !seq->is_number_unsigned()) return Missing("seq");
  e.seq = seq->get<uint64_t>();
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

}  // namespace phivault::storage
