#include "daemon/patient_state.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <mutex>

#include <nlohmann/json.hpp>

#include "crypto/hash.h"
#include "daemon/api_json.h"
#include "daemon/record_rules.h"
#include "policies/purpose_of_use.h"
#include "storage/records.h"

namespace phivault::daemon {
namespace {

using nlohmann::json;

constexpr std::string_view kRestrictionKind = "restriction";
constexpr std::string_view kWindowKind = "window";
constexpr std::string_view kAccessKind = "window-access";
constexpr std::string_view kRequestKind = "request";
constexpr std::string_view kContactKind = "contact";
constexpr std::string_view kPolicyKind = "policy";
constexpr std::string_view kHoldKind = "hold";
constexpr std::string_view kFactsKind = "facts";

constexpr size_t kMaxListEntries = 256;
constexpr size_t kMaxPolicyTextBytes = 1 << 20;

std::string Prefix(std::string_view kind) { return "ps/" + std::string(kind) + "/"; }

std::string Aad(std::string_view kind, std::string_view key) {
  return "phivault/patient-state/" + std::string(kind) + "/v1\n" + std::string(key);
}

// The form of record ids: 22 URL-safe characters, never starting with '-' or '_' (command lines).
std::string NewId() { return storage::NewRecordId(); }

std::string PolicyKey(int64_t from_us) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%020lld", static_cast<long long>(from_us));
  return Prefix(kPolicyKind) + buf;
}

Status ValidateOptionalText(std::string_view field, std::string_view text, size_t max_bytes) {
  return text.empty() ? Status::Ok() : ValidateText(field, text, max_bytes);
}

Status ValidateList(std::string_view field, const std::vector<std::string>& items,
                    const std::function<Status(const std::string& name, const std::string&)>& f) {
  if (items.size() > kMaxListEntries) {
    return InvalidArgument(std::string(field) + " must have at most " +
                           std::to_string(kMaxListEntries) + " entries");
  }
  for (size_t i = 0; i < items.size(); ++i) {
    PV_RETURN_IF_ERROR(f(std::string(field) + "[" + std::to_string(i) + "]", items[i]));
  }
  return Status::Ok();
}

template <typename T>
std::optional<T> OptionalMember(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return std::nullopt;
  return it->get<T>();
}

template <typename T>
void PutOptional(json& j, const char* name, const std::optional<T>& v) {
  if (v) j[name] = *v;
}

json ToJson(const Restriction& r) {
  json j = {{"id", r.id},
            {"patient_id", r.patient_id},
            {"purposes", r.purposes},
            {"record_ids", r.record_ids},
            {"categories", r.categories},
            {"recipient", r.recipient},
            {"note", r.note},
            {"created_us", r.created_us},
            {"created_by", r.created_by},
            {"ended_by", r.ended_by},
            {"end_reason", r.end_reason}};
  PutOptional(j, "ended_us", r.ended_us);
  return j;
}

Restriction RestrictionFromJson(const json& j) {
  Restriction r;
  r.id = j.at("id").get<std::string>();
  r.patient_id = j.at("patient_id").get<std::string>();
  r.purposes = j.at("purposes").get<std::vector<std::string>>();
  r.record_ids = j.at("record_ids").get<std::vector<std::string>>();
  r.categories = j.at("categories").get<std::vector<std::string>>();
  r.recipient = j.at("recipient").get<std::string>();
  r.note = j.at("note").get<std::string>();
  r.created_us = j.at("created_us").get<int64_t>();
  r.created_by = j.at("created_by").get<std::string>();
  r.ended_us = OptionalMember<int64_t>(j, "ended_us");
  r.ended_by = j.at("ended_by").get<std::string>();
  r.end_reason = j.at("end_reason").get<std::string>();
  return r;
}

// The access count is not part of the window's value: each access has its own key.
json ToJson(const BreakGlassWindow& w) {
  json j = {{"id", w.id},
            {"user", w.user},
            {"role", w.role},
            {"application", w.application},
            {"patient_id", w.patient_id},
            {"reason", w.reason},
            {"opened_us", w.opened_us},
            {"expires_us", w.expires_us},
            {"signed_off_by", w.signed_off_by},
            {"note", w.note}};
  PutOptional(j, "closed_us", w.closed_us);
  PutOptional(j, "signed_off_at_us", w.signed_off_at_us);
  return j;
}

BreakGlassWindow WindowFromJson(const json& j) {
  BreakGlassWindow w;
  w.id = j.at("id").get<std::string>();
  w.user = j.at("user").get<std::string>();
  w.role = j.at("role").get<std::string>();
  w.application = j.at("application").get<std::string>();
  w.patient_id = j.at("patient_id").get<std::string>();
  w.reason = j.at("reason").get<std::string>();
  w.opened_us = j.at("opened_us").get<int64_t>();
  w.expires_us = j.at("expires_us").get<int64_t>();
  w.closed_us = OptionalMember<int64_t>(j, "closed_us");
  w.signed_off_by = j.at("signed_off_by").get<std::string>();
  w.signed_off_at_us = OptionalMember<int64_t>(j, "signed_off_at_us");
  w.note = j.at("note").get<std::string>();
  return w;
}

json ToJson(const PatientRequest& r) {
  json j = {{"id", r.id},
            {"patient_id", r.patient_id},
            {"kind", RequestKindName(r.kind)},
            {"received", r.received},
            {"due", r.due},
            {"extended", r.extended},
            {"extension_reason", r.extension_reason},
            {"note", r.note},
            {"closed", r.closed},
            {"delivered", r.delivered},
            {"close_note", r.close_note}};
  if (r.outcome) j["outcome"] = RequestOutcomeName(*r.outcome);
  PutOptional(j, "closed_us", r.closed_us);
  return j;
}

StatusOr<PatientRequest> RequestFromJson(const json& j) {
  PatientRequest r;
  r.id = j.at("id").get<std::string>();
  r.patient_id = j.at("patient_id").get<std::string>();
  PV_ASSIGN_OR_RETURN(r.kind, ParseRequestKind(j.at("kind").get<std::string>()));
  r.received = j.at("received").get<std::string>();
  r.due = j.at("due").get<std::string>();
  r.extended = j.at("extended").get<bool>();
  r.extension_reason = j.at("extension_reason").get<std::string>();
  r.note = j.at("note").get<std::string>();
  r.closed = j.at("closed").get<bool>();
  if (auto o = OptionalMember<std::string>(j, "outcome")) {
    PV_ASSIGN_OR_RETURN(r.outcome, ParseRequestOutcome(*o));
  }
  r.closed_us = OptionalMember<int64_t>(j, "closed_us");
  r.delivered = j.at("delivered").get<std::string>();
  r.close_note = j.at("close_note").get<std::string>();
  return r;
}

json ToJson(const ConfidentialContact& c) {
  return {{"patient_id", c.patient_id},
          {"address", c.address},
          {"channel", ContactChannelName(c.channel)},
          {"note", c.note},
          {"updated_us", c.updated_us}};
}

StatusOr<ConfidentialContact> ContactFromJson(const json& j) {
  ConfidentialContact c;
  c.patient_id = j.at("patient_id").get<std::string>();
  c.address = j.at("address").get<std::string>();
  PV_ASSIGN_OR_RETURN(c.channel, ParseContactChannel(j.at("channel").get<std::string>()));
  c.note = j.at("note").get<std::string>();
  c.updated_us = j.at("updated_us").get<int64_t>();
  return c;
}

json ToJson(const PolicyVersion& p) {
  return {{"from_us", p.from_us},
          {"name", p.name},
          {"sha256", p.sha256_hex},
          {"text", p.text},
          {"audit_seq", p.audit_seq}};
}

PolicyVersion PolicyFromJson(const json& j) {
  PolicyVersion p;
  p.from_us = j.at("from_us").get<int64_t>();
  p.name = j.at("name").get<std::string>();
  p.sha256_hex = j.at("sha256").get<std::string>();
  p.text = j.at("text").get<std::string>();
  p.audit_seq = j.at("audit_seq").get<uint64_t>();
  return p;
}

json ToJson(const LegalHold& h) {
  json j = {{"id", h.id},
            {"matter", h.matter},
            {"reason", h.reason},
            {"patient_id", h.patient_id},
            {"scope", HoldScopeName(h.scope)},
            {"record_ids", h.record_ids},
            {"placed_by", h.placed_by},
            {"placed_us", h.placed_us},
            {"released_by", h.released_by},
            {"release_reason", h.release_reason}};
  PutOptional(j, "released_us", h.released_us);
  return j;
}

StatusOr<LegalHold> HoldFromJson(const json& j) {
  LegalHold h;
  h.id = j.at("id").get<std::string>();
  h.matter = j.at("matter").get<std::string>();
  h.reason = j.at("reason").get<std::string>();
  h.patient_id = j.at("patient_id").get<std::string>();
  PV_ASSIGN_OR_RETURN(h.scope, ParseHoldScope(j.at("scope").get<std::string>()));
  h.record_ids = j.at("record_ids").get<std::vector<std::string>>();
  h.placed_by = j.at("placed_by").get<std::string>();
  h.placed_us = j.at("placed_us").get<int64_t>();
  h.released_us = OptionalMember<int64_t>(j, "released_us");
  h.released_by = j.at("released_by").get<std::string>();
  h.release_reason = j.at("release_reason").get<std::string>();
  return h;
}

json ToJson(const PatientFacts& f) {
  json j = {
      {"patient_id", f.patient_id}, {"updated_us", f.updated_us}, {"updated_by", f.updated_by}};
  PutOptional(j, "date_of_birth", f.date_of_birth);
  PutOptional(j, "date_of_death", f.date_of_death);
  PutOptional(j, "last_encounter", f.last_encounter);
  return j;
}

PatientFacts FactsFromJson(const json& j) {
  PatientFacts f;
  f.patient_id = j.at("patient_id").get<std::string>();
  f.date_of_birth = OptionalMember<std::string>(j, "date_of_birth");
  f.date_of_death = OptionalMember<std::string>(j, "date_of_death");
  f.last_encounter = OptionalMember<std::string>(j, "last_encounter");
  f.updated_us = j.at("updated_us").get<int64_t>();
  f.updated_by = j.at("updated_by").get<std::string>();
  return f;
}

bool HoldOrder(const LegalHold& a, const LegalHold& b) {
  return a.placed_us != b.placed_us ? a.placed_us < b.placed_us : a.id < b.id;
}

std::string Sha256Hex(std::string_view text) {
  return crypto::HexEncode(crypto::AsView(crypto::Sha256(text)));
}

// What Load reads, built apart from the live maps so that a failed Load changes nothing.
struct Loaded {
  std::map<std::string, std::vector<Restriction>> restrictions;
  std::map<std::string, BreakGlassWindow, std::less<>> windows;
  std::map<std::string, PatientRequest, std::less<>> requests;
  std::map<std::string, ConfidentialContact> contacts;
  std::vector<PolicyVersion> policies;
  std::map<std::string, std::vector<LegalHold>, std::less<>> holds;
  std::map<std::string, PatientFacts> facts;
};

// Calls fn(key, plaintext) for every value of `kind`; DataLoss naming kind and key for a value
// that fails to open, fails to parse, or that `fn` rejects.
Status ScanKind(storage::Store& store, const crypto::Aead& aead, std::string_view kind,
                const std::function<Status(std::string_view key, const std::string&)>& fn) {
  const std::string begin = Prefix(kind);
  std::string end = begin;
  end.back() = static_cast<char>(end.back() + 1);
  Status inner;
  PV_RETURN_IF_ERROR(store.Scan(storage::Cf::kState, begin, end,
                                [&](std::string_view key, std::string_view value) {
                                  auto fail = [&](std::string_view what) {
                                    inner = DataLoss("stored " + std::string(kind) + " at key '" +
                                                     std::string(key) + "' " + std::string(what));
                                    return false;
                                  };
                                  auto plain = aead.Decrypt(value, Aad(kind, key));
                                  if (!plain.ok()) return fail("failed its integrity check");
                                  Status s;
                                  try {
                                    s = fn(key, *plain);
                                  } catch (const json::exception&) {
                                    return fail("does not decode");
                                  }
                                  if (!s.ok()) return fail("does not decode: " + s.message());
                                  return true;
                                }));
  return inner;
}

StatusOr<json> ParseObject(const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return DataLoss("not a JSON object");
  return j;
}

}  // namespace

const Restriction* FindBlocking(std::span<const Restriction> restrictions,
                                std::string_view record_id, std::string_view category,
                                std::string_view purpose) {
  for (const Restriction& r : restrictions) {
    if (!r.active()) continue;
    const bool covers =
        (r.record_ids.empty() && r.categories.empty()) ||
        std::find(r.record_ids.begin(), r.record_ids.end(), record_id) != r.record_ids.end() ||
        std::find(r.categories.begin(), r.categories.end(), category) != r.categories.end();
    if (!covers) continue;
    for (const std::string& p : r.purposes) {
      if (policies::PurposeIsA(purpose, p)) return &r;
    }
  }
  return nullptr;
}

std::string_view HoldScopeName(HoldScope scope) {
  return scope == HoldScope::kRecords ? "records" : "patient";
}

StatusOr<HoldScope> ParseHoldScope(std::string_view name) {
  if (name == "patient") return HoldScope::kPatient;
  if (name == "records") return HoldScope::kRecords;
  return InvalidArgument("scope must be one of patient, records");
}

bool HoldCovers(const LegalHold& hold, std::string_view patient_id, std::string_view record_id) {
  if (!hold.active() || hold.patient_id != patient_id) return false;
  return hold.scope == HoldScope::kPatient ||
         std::find(hold.record_ids.begin(), hold.record_ids.end(), record_id) !=
             hold.record_ids.end();
}

WindowStatus StatusOf(const BreakGlassWindow& window) {
  if (!window.closed_us) return WindowStatus::kOpen;
  return window.signed_off_at_us ? WindowStatus::kSignedOff : WindowStatus::kPending;
}

std::string_view WindowStatusName(WindowStatus status) {
  switch (status) {
    case WindowStatus::kOpen:
      return "open";
    case WindowStatus::kPending:
      return "pending";
    case WindowStatus::kSignedOff:
      return "signed_off";
  }
  return "open";
}

std::string_view RequestKindName(RequestKind kind) {
  switch (kind) {
    case RequestKind::kAccess:
      return "access";
    case RequestKind::kAmendment:
      return "amendment";
    case RequestKind::kAccounting:
      return "accounting";
  }
  return "access";
}

StatusOr<RequestKind> ParseRequestKind(std::string_view name) {
  for (RequestKind k : {RequestKind::kAccess, RequestKind::kAmendment, RequestKind::kAccounting}) {
    if (RequestKindName(k) == name) return k;
  }
  return InvalidArgument("kind must be one of access, amendment, accounting");
}

int DaysAllowed(RequestKind kind) { return kind == RequestKind::kAccess ? 30 : 60; }

std::string_view RequestOutcomeName(RequestOutcome outcome) {
  return outcome == RequestOutcome::kFulfilled ? "fulfilled" : "denied";
}

StatusOr<RequestOutcome> ParseRequestOutcome(std::string_view name) {
  if (name == "fulfilled") return RequestOutcome::kFulfilled;
  if (name == "denied") return RequestOutcome::kDenied;
  return InvalidArgument("outcome must be one of fulfilled, denied");
}

bool IsOverdue(const PatientRequest& request, std::string_view today) {
  // YYYY-MM-DD strings order as the dates do.
  return !request.closed && request.due < today;
}

StatusOr<std::string> AddCalendarDays(std::string_view field, std::string_view date, int days) {
  PV_RETURN_IF_ERROR(ValidateDate(field, date));
  auto num = [&](size_t pos, size_t len) {
    int v = 0;
    for (size_t i = pos; i < pos + len; ++i) v = v * 10 + (date[i] - '0');
    return v;
  };
  using namespace std::chrono;
  const sys_days start = year_month_day{year{num(0, 4)}, month{static_cast<unsigned>(num(5, 2))},
                                        day{static_cast<unsigned>(num(8, 2))}};
  const year_month_day end{start + std::chrono::days{days}};
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", static_cast<int>(end.year()),
                static_cast<unsigned>(end.month()), static_cast<unsigned>(end.day()));
  return std::string(buf);
}

std::string_view ContactChannelName(ContactChannel channel) {
  switch (channel) {
    case ContactChannel::kMail:
      return "mail";
    case ContactChannel::kEmail:
      return "email";
    case ContactChannel::kPhone:
      return "phone";
    case ContactChannel::kPortal:
      return "portal";
  }
  return "mail";
}

StatusOr<ContactChannel> ParseContactChannel(std::string_view name) {
  for (ContactChannel c : {ContactChannel::kMail, ContactChannel::kEmail, ContactChannel::kPhone,
                           ContactChannel::kPortal}) {
    if (ContactChannelName(c) == name) return c;
  }
  return InvalidArgument("channel must be one of mail, email, phone, portal");
}

PatientState::PatientState(storage::Store& store, const crypto::Aead& sealing_key,
                           BlindIdFn blind_id)
    : store_(store), key_(sealing_key), blind_id_(std::move(blind_id)) {}

void PatientState::StageSealed(std::string_view kind, std::string key, const std::string& plaintext,
                               storage::WriteBatch& batch) const {
  std::string sealed = key_.Encrypt(plaintext, Aad(kind, key));
  batch.Put(storage::Cf::kState, std::move(key), std::move(sealed));
}

std::string PatientState::PatientKey(std::string_view kind, std::string_view patient_id) const {
  return Prefix(kind) + crypto::HexEncode(blind_id_(patient_id));
}

Status PatientState::Load() {
  Loaded l;
  PV_RETURN_IF_ERROR(
      ScanKind(store_, key_, kRestrictionKind, [&](std::string_view, const std::string& plain) {
        PV_ASSIGN_OR_RETURN(json j, ParseObject(plain));
        Restriction r = RestrictionFromJson(j);
        l.restrictions[crypto::HexEncode(blind_id_(r.patient_id))].push_back(std::move(r));
        return Status::Ok();
      }));
  for (auto& [bid, list] : l.restrictions) {
    std::stable_sort(list.begin(), list.end(), [](const Restriction& a, const Restriction& b) {
      return a.created_us < b.created_us;
    });
  }
  PV_RETURN_IF_ERROR(
      ScanKind(store_, key_, kWindowKind, [&](std::string_view, const std::string& plain) {
        PV_ASSIGN_OR_RETURN(json j, ParseObject(plain));
        BreakGlassWindow w = WindowFromJson(j);
        std::string id = w.id;
        l.windows.emplace(std::move(id), std::move(w));
        return Status::Ok();
      }));
  PV_RETURN_IF_ERROR(
      ScanKind(store_, key_, kAccessKind, [&](std::string_view key, const std::string&) {
        std::string_view rest = key.substr(Prefix(kAccessKind).size());
        auto it = l.windows.find(rest.substr(0, rest.find('/')));
        if (it == l.windows.end()) return DataLoss("names no stored break-glass window");
        ++it->second.accesses;
        return Status::Ok();
      }));
  PV_RETURN_IF_ERROR(
      ScanKind(store_, key_, kRequestKind, [&](std::string_view, const std::string& plain) {
        PV_ASSIGN_OR_RETURN(json j, ParseObject(plain));
        PV_ASSIGN_OR_RETURN(PatientRequest r, RequestFromJson(j));
        std::string id = r.id;
        l.requests.emplace(std::move(id), std::move(r));
        return Status::Ok();
      }));
  PV_RETURN_IF_ERROR(
      ScanKind(store_, key_, kContactKind, [&](std::string_view key, const std::string& plain) {
        PV_ASSIGN_OR_RETURN(json j, ParseObject(plain));
        PV_ASSIGN_OR_RETURN(ConfidentialContact c, ContactFromJson(j));
        l.contacts[std::string(key.substr(Prefix(kContactKind).size()))] = std::move(c);
        return Status::Ok();
      }));
  PV_RETURN_IF_ERROR(
      ScanKind(store_, key_, kPolicyKind, [&](std::string_view, const std::string& plain) {
        PV_ASSIGN_OR_RETURN(json j, ParseObject(plain));
        PolicyVersion p = PolicyFromJson(j);
        if (Sha256Hex(p.text) != p.sha256_hex) {
          return DataLoss("policy text does not hash to its sha256");
        }
        l.policies.push_back(std::move(p));
        return Status::Ok();
      }));
  PV_RETURN_IF_ERROR(
      ScanKind(store_, key_, kHoldKind, [&](std::string_view key, const std::string& plain) {
        PV_ASSIGN_OR_RETURN(json j, ParseObject(plain));
        PV_ASSIGN_OR_RETURN(LegalHold h, HoldFromJson(j));
        if (key != PatientKey(kHoldKind, h.patient_id) + "/" + h.id) {
          return DataLoss("does not belong to its key");
        }
        l.holds[h.patient_id].push_back(std::move(h));
        return Status::Ok();
      }));
  for (auto& [patient, list] : l.holds) std::sort(list.begin(), list.end(), HoldOrder);
  PV_RETURN_IF_ERROR(
      ScanKind(store_, key_, kFactsKind, [&](std::string_view key, const std::string& plain) {
        PV_ASSIGN_OR_RETURN(json j, ParseObject(plain));
        PatientFacts f = FactsFromJson(j);
        if (key != PatientKey(kFactsKind, f.patient_id)) {
          return DataLoss("does not belong to its key");
        }
        l.facts[std::string(key.substr(Prefix(kFactsKind).size()))] = std::move(f);
        return Status::Ok();
      }));
  WriterMutexLock lock(mu_);
  restrictions_ = std::move(l.restrictions);
  windows_ = std::move(l.windows);
  taken_.clear();
  requests_ = std::move(l.requests);
  contacts_ = std::move(l.contacts);
  policies_ = std::move(l.policies);
  holds_ = std::move(l.holds);
  facts_ = std::move(l.facts);
  return Status::Ok();
}

// ---- Restrictions

StatusOr<Restriction> PatientState::StageAddRestriction(Restriction r,
                                                        storage::WriteBatch& batch) const {
  PV_RETURN_IF_ERROR(ValidatePatientId(r.patient_id));
  if (r.purposes.empty()) return InvalidArgument("purposes must not be empty");
  PV_RETURN_IF_ERROR(
      ValidateList("purposes", r.purposes, [](const std::string& name, const std::string& code) {
        auto known = policies::LookupPurposeOfUse(code);
        if (!known || known->category == policies::PurposeCategory::kAbstract) {
          return InvalidArgument(name + " must be an HL7 PurposeOfUse code");
        }
        return Status::Ok();
      }));
  PV_RETURN_IF_ERROR(
      ValidateList("record_ids", r.record_ids, [](const std::string& name, const std::string& id) {
        return storage::IsValidRecordId(id) ? Status::Ok()
                                            : InvalidArgument(name + " must be a record id");
      }));
  PV_RETURN_IF_ERROR(ValidateList(
      "categories", r.categories,
      [](const std::string& name, const std::string& c) { return ValidateText(name, c, 64); }));
  PV_RETURN_IF_ERROR(ValidateOptionalText("recipient", r.recipient, 512));
  PV_RETURN_IF_ERROR(ValidateOptionalText("note", r.note, 4096));
  PV_RETURN_IF_ERROR(ValidateText("created_by", r.created_by, 256));
  r.id = NewId();
  r.ended_us.reset();
  r.ended_by.clear();
  r.end_reason.clear();
  StageSealed(kRestrictionKind, PatientKey(kRestrictionKind, r.patient_id) + "/" + r.id,
              ToJson(r).dump(), batch);
  return r;
}

StatusOr<Restriction> PatientState::StageEndRestriction(std::string_view patient_id,
                                                        std::string_view id,
                                                        std::string_view ended_by,
                                                        std::string_view reason, int64_t ended_us,
                                                        storage::WriteBatch& batch) const {
  PV_RETURN_IF_ERROR(ValidateText("ended_by", ended_by, 256));
  PV_RETURN_IF_ERROR(ValidateText("reason", reason, 2048));
  const std::string patient_key = PatientKey(kRestrictionKind, patient_id);
  Restriction r;
  {
    ReaderMutexLock lock(mu_);
    auto list = restrictions_.find(patient_key.substr(Prefix(kRestrictionKind).size()));
    if (list == restrictions_.end()) return NotFound("no such restriction");
    auto it = std::find_if(list->second.begin(), list->second.end(),
                           [&](const Restriction& x) { return x.id == id; });
    if (it == list->second.end()) return NotFound("no such restriction");
    r = *it;
  }
  if (!r.active()) return FailedPrecondition("restriction already ended");
  r.ended_us = ended_us;
  r.ended_by = ended_by;
  r.end_reason = reason;
  StageSealed(kRestrictionKind, patient_key + "/" + r.id, ToJson(r).dump(), batch);
  return r;
}

void PatientState::ApplyRestriction(Restriction restriction) {
  const std::string bid = crypto::HexEncode(blind_id_(restriction.patient_id));
  WriterMutexLock lock(mu_);
  auto& list = restrictions_[bid];
  auto it = std::find_if(list.begin(), list.end(),
                         [&](const Restriction& x) { return x.id == restriction.id; });
  if (it != list.end()) {
    *it = std::move(restriction);
  } else {
    list.push_back(std::move(restriction));
  }
}

std::vector<Restriction> PatientState::RestrictionsOf(std::string_view patient_id,
                                                      bool include_ended) const {
  const std::string bid = crypto::HexEncode(blind_id_(patient_id));
  std::vector<Restriction> out;
  ReaderMutexLock lock(mu_);
  auto list = restrictions_.find(bid);
  if (list == restrictions_.end()) return out;
  for (const Restriction& r : list->second) {
    if (include_ended || r.active()) out.push_back(r);
  }
  return out;
}

// ---- Break-glass windows

StatusOr<BreakGlassWindow> PatientState::StageOpenWindow(BreakGlassWindow w,
                                                         storage::WriteBatch& batch) const {
  PV_RETURN_IF_ERROR(ValidateText("user", w.user, 256));
  PV_RETURN_IF_ERROR(ValidateText("role", w.role, 256));
  PV_RETURN_IF_ERROR(ValidateOptionalText("application", w.application, 256));
  PV_RETURN_IF_ERROR(ValidatePatientId(w.patient_id));
  PV_RETURN_IF_ERROR(ValidateText("reason", w.reason, 512));
  if (w.reason.find_first_of("\t\n") != std::string::npos) {
    return InvalidArgument("reason must not contain control characters");
  }
  if (w.expires_us <= w.opened_us) return InvalidArgument("expires must be after opened");
  if (FindOpen(w.user, w.patient_id, w.opened_us)) {
    return AlreadyExists("an open break-glass window exists for this user and patient");
  }
  w.id = NewId();
  w.closed_us.reset();
  w.accesses = 0;
  w.signed_off_by.clear();
  w.signed_off_at_us.reset();
  w.note.clear();
  StageSealed(kWindowKind, Prefix(kWindowKind) + w.id, ToJson(w).dump(), batch);
  return w;
}

void PatientState::ApplyOpenWindow(BreakGlassWindow window) {
  WriterMutexLock lock(mu_);
  std::string id = window.id;
  windows_.insert_or_assign(std::move(id), std::move(window));
}

std::optional<BreakGlassWindow> PatientState::FindOpen(std::string_view user,
                                                       std::string_view patient_id,
                                                       int64_t now_us) const {
  ReaderMutexLock lock(mu_);
  for (const auto& [id, w] : windows_) {
    if (w.user == user && w.patient_id == patient_id && !w.closed_us && now_us < w.expires_us) {
      return w;
    }
  }
  return std::nullopt;
}

Status PatientState::StageAccess(std::string_view window_id, storage::WriteBatch& batch) const {
  {
    ReaderMutexLock lock(mu_);
    if (!windows_.contains(window_id)) return NotFound("no such break-glass window");
  }
  StageSealed(kAccessKind,
              Prefix(kAccessKind) + std::string(window_id) + "/" +
                  crypto::HexEncode(crypto::RandomBytes(16)),
              "", batch);
  return Status::Ok();
}

void PatientState::ApplyAccess(std::string_view window_id) {
  WriterMutexLock lock(mu_);
  if (auto it = windows_.find(window_id); it != windows_.end()) ++it->second.accesses;
}

std::vector<BreakGlassWindow> PatientState::TakeExpired(int64_t now_us) {
  std::vector<BreakGlassWindow> out;
  WriterMutexLock lock(mu_);
  for (const auto& [id, w] : windows_) {
    if (!w.closed_us && w.expires_us <= now_us && !taken_.contains(id)) {
      taken_.insert(id);
      out.push_back(w);
    }
  }
  std::sort(out.begin(), out.end(), [](const BreakGlassWindow& a, const BreakGlassWindow& b) {
    return a.opened_us < b.opened_us;
  });
  return out;
}

void PatientState::ReleaseExpired(std::string_view window_id) {
  WriterMutexLock lock(mu_);
  if (auto it = taken_.find(window_id); it != taken_.end()) taken_.erase(it);
}

StatusOr<BreakGlassWindow> PatientState::StageCloseWindow(std::string_view window_id,
                                                          int64_t closed_us,
                                                          storage::WriteBatch& batch) const {
  auto w = GetWindow(window_id);
  if (!w) return NotFound("no such break-glass window");
  if (w->closed_us) return FailedPrecondition("break-glass window already closed");
  w->closed_us = closed_us;
  StageSealed(kWindowKind, Prefix(kWindowKind) + w->id, ToJson(*w).dump(), batch);
  return *std::move(w);
}

StatusOr<BreakGlassWindow> PatientState::StageSignOff(std::string_view window_id,
                                                      std::string_view by, std::string_view note,
                                                      int64_t at_us,
                                                      storage::WriteBatch& batch) const {
  PV_RETURN_IF_ERROR(ValidateText("signed_off_by", by, 256));
  PV_RETURN_IF_ERROR(ValidateOptionalText("note", note, 4096));
  auto w = GetWindow(window_id);
  if (!w) return NotFound("no such break-glass window");
  if (!w->closed_us) return FailedPrecondition("break-glass window is still open");
  if (w->signed_off_at_us) return FailedPrecondition("break-glass window already signed off");
  w->signed_off_by = by;
  w->signed_off_at_us = at_us;
  w->note = note;
  StageSealed(kWindowKind, Prefix(kWindowKind) + w->id, ToJson(*w).dump(), batch);
  return *std::move(w);
}

void PatientState::ApplyWindow(BreakGlassWindow window) {
  WriterMutexLock lock(mu_);
  auto it = windows_.find(window.id);
  if (it == windows_.end()) {
    std::string id = window.id;
    windows_.emplace(std::move(id), std::move(window));
    return;
  }
  window.accesses = it->second.accesses;
  if (window.closed_us) taken_.erase(window.id);
  it->second = std::move(window);
}

std::vector<BreakGlassWindow> PatientState::ListWindows(bool pending_only) const {
  std::vector<BreakGlassWindow> out;
  {
    ReaderMutexLock lock(mu_);
    for (const auto& [id, w] : windows_) {
      if (!pending_only || StatusOf(w) == WindowStatus::kPending) out.push_back(w);
    }
  }
  std::sort(out.begin(), out.end(), [](const BreakGlassWindow& a, const BreakGlassWindow& b) {
    return a.opened_us != b.opened_us ? a.opened_us < b.opened_us : a.id < b.id;
  });
  return out;
}

std::optional<BreakGlassWindow> PatientState::GetWindow(std::string_view window_id) const {
  ReaderMutexLock lock(mu_);
  auto it = windows_.find(window_id);
  if (it == windows_.end()) return std::nullopt;
  return it->second;
}

// ---- Patient requests

StatusOr<PatientRequest> PatientState::StageOpenRequest(std::string_view patient_id,
                                                        RequestKind kind, std::string_view received,
                                                        std::string_view note,
                                                        storage::WriteBatch& batch) const {
  PV_RETURN_IF_ERROR(ValidatePatientId(patient_id));
  PV_RETURN_IF_ERROR(ValidateOptionalText("note", note, 4096));
  PatientRequest r;
  PV_ASSIGN_OR_RETURN(r.due, AddCalendarDays("received", received, DaysAllowed(kind)));
  r.id = NewId();
  r.patient_id = patient_id;
  r.kind = kind;
  r.received = received;
  r.note = note;
  StageSealed(kRequestKind, Prefix(kRequestKind) + r.id, ToJson(r).dump(), batch);
  return r;
}

StatusOr<PatientRequest> PatientState::StageExtendRequest(std::string_view id,
                                                          std::string_view reason,
                                                          storage::WriteBatch& batch) const {
  PV_RETURN_IF_ERROR(ValidateText("reason", reason, 2048));
  auto r = GetRequest(id);
  if (!r) return NotFound("no such patient request");
  if (r->closed) return FailedPrecondition("patient request is closed");
  if (r->extended) return FailedPrecondition("patient request was already extended");
  PV_ASSIGN_OR_RETURN(r->due, AddCalendarDays("due", r->due, kExtensionDays));
  r->extended = true;
  r->extension_reason = reason;
  StageSealed(kRequestKind, Prefix(kRequestKind) + r->id, ToJson(*r).dump(), batch);
  return *std::move(r);
}

StatusOr<PatientRequest> PatientState::StageCloseRequest(std::string_view id,
                                                         RequestOutcome outcome,
                                                         std::string_view delivered,
                                                         std::string_view note, int64_t closed_us,
                                                         storage::WriteBatch& batch) const {
  PV_RETURN_IF_ERROR(ValidateText("delivered", delivered, 1024));
  PV_RETURN_IF_ERROR(ValidateOptionalText("note", note, 4096));
  auto r = GetRequest(id);
  if (!r) return NotFound("no such patient request");
  if (r->closed) return FailedPrecondition("patient request is closed");
  r->closed = true;
  r->outcome = outcome;
  r->closed_us = closed_us;
  r->delivered = delivered;
  r->close_note = note;
  StageSealed(kRequestKind, Prefix(kRequestKind) + r->id, ToJson(*r).dump(), batch);
  return *std::move(r);
}

void PatientState::ApplyRequest(PatientRequest request) {
  WriterMutexLock lock(mu_);
  std::string id = request.id;
  requests_.insert_or_assign(std::move(id), std::move(request));
}

std::optional<PatientRequest> PatientState::GetRequest(std::string_view id) const {
  ReaderMutexLock lock(mu_);
  auto it = requests_.find(id);
  if (it == requests_.end()) return std::nullopt;
  return it->second;
}

std::vector<PatientRequest> PatientState::ListRequests(const std::optional<std::string>& patient_id,
                                                       bool overdue_only, std::string_view today,
                                                       bool include_closed) const {
  std::vector<PatientRequest> out;
  {
    ReaderMutexLock lock(mu_);
    for (const auto& [id, r] : requests_) {
      if (patient_id && r.patient_id != *patient_id) continue;
      if (!include_closed && r.closed) continue;
      if (overdue_only && !IsOverdue(r, today)) continue;
      out.push_back(r);
    }
  }
  std::sort(out.begin(), out.end(), [](const PatientRequest& a, const PatientRequest& b) {
    return a.received != b.received ? a.received < b.received : a.id < b.id;
  });
  return out;
}

// ---- Confidential communications

StatusOr<ConfidentialContact> PatientState::StageSetContact(ConfidentialContact contact,
                                                            storage::WriteBatch& batch) const {
  PV_RETURN_IF_ERROR(ValidatePatientId(contact.patient_id));
  PV_RETURN_IF_ERROR(ValidateText("address", contact.address, 1024));
  PV_RETURN_IF_ERROR(ValidateOptionalText("note", contact.note, 2048));
  StageSealed(kContactKind, PatientKey(kContactKind, contact.patient_id), ToJson(contact).dump(),
              batch);
  return contact;
}

void PatientState::ApplyContact(ConfidentialContact contact) {
  std::string bid = crypto::HexEncode(blind_id_(contact.patient_id));
  WriterMutexLock lock(mu_);
  contacts_.insert_or_assign(std::move(bid), std::move(contact));
}

std::optional<ConfidentialContact> PatientState::GetContact(std::string_view patient_id) const {
  const std::string bid = crypto::HexEncode(blind_id_(patient_id));
  ReaderMutexLock lock(mu_);
  auto it = contacts_.find(bid);
  if (it == contacts_.end()) return std::nullopt;
  return it->second;
}

// ---- Legal holds

StatusOr<LegalHold> PatientState::StageHold(LegalHold h, storage::WriteBatch& batch) const {
  PV_RETURN_IF_ERROR(ValidateText("matter", h.matter, 256));
  if (h.matter.find_first_of("\t\n") != std::string::npos) {
    return InvalidArgument("matter must be one line");
  }
  PV_RETURN_IF_ERROR(ValidateText("reason", h.reason, 2048));
  PV_RETURN_IF_ERROR(ValidatePatientId(h.patient_id));
  if (h.scope == HoldScope::kPatient && !h.record_ids.empty()) {
    return InvalidArgument("record_ids must be empty when scope is patient");
  }
  if (h.scope == HoldScope::kRecords && h.record_ids.empty()) {
    return InvalidArgument("record_ids must not be empty when scope is records");
  }
  std::set<std::string_view> seen;
  PV_RETURN_IF_ERROR(
      ValidateList("record_ids", h.record_ids, [&](const std::string& name, const std::string& id) {
        if (!storage::IsValidRecordId(id)) return InvalidArgument(name + " must be a record id");
        if (!seen.insert(id).second) return InvalidArgument(name + " repeats an earlier entry");
        return Status::Ok();
      }));
  PV_RETURN_IF_ERROR(ValidateText("placed_by", h.placed_by, 256));
  h.id = NewId();
  h.released_us.reset();
  h.released_by.clear();
  h.release_reason.clear();
  StageSealed(kHoldKind, PatientKey(kHoldKind, h.patient_id) + "/" + h.id, ToJson(h).dump(), batch);
  return h;
}

StatusOr<LegalHold> PatientState::StageRelease(std::string_view id, std::string_view released_by,
                                               std::string_view reason, int64_t released_us,
                                               storage::WriteBatch& batch) const {
  PV_RETURN_IF_ERROR(ValidateText("released_by", released_by, 256));
  PV_RETURN_IF_ERROR(ValidateText("reason", reason, 2048));
  auto h = GetHold(id);
  if (!h) return NotFound("no such legal hold");
  if (!h->active()) return FailedPrecondition("legal hold already released");
  if (released_us < h->placed_us) {
    return InvalidArgument("released must not be before the hold was placed");
  }
  h->released_us = released_us;
  h->released_by = released_by;
  h->release_reason = reason;
  StageSealed(kHoldKind, PatientKey(kHoldKind, h->patient_id) + "/" + h->id, ToJson(*h).dump(),
              batch);
  return *std::move(h);
}

void PatientState::ApplyHold(LegalHold hold) {
  WriterMutexLock lock(mu_);
  auto& list = holds_[hold.patient_id];
  auto it =
      std::find_if(list.begin(), list.end(), [&](const LegalHold& x) { return x.id == hold.id; });
  if (it != list.end()) {
    *it = std::move(hold);
  } else {
    list.insert(std::upper_bound(list.begin(), list.end(), hold, HoldOrder), std::move(hold));
  }
}

std::optional<LegalHold> PatientState::GetHold(std::string_view id) const {
  ReaderMutexLock lock(mu_);
  for (const auto& [patient, list] : holds_) {
    for (const LegalHold& h : list) {
      if (h.id == id) return h;
    }
  }
  return std::nullopt;
}

std::vector<LegalHold> PatientState::ListHolds(const std::optional<std::string>& patient_id,
                                               bool include_released) const {
  std::vector<LegalHold> out;
  {
    ReaderMutexLock lock(mu_);
    for (const auto& [patient, list] : holds_) {
      if (patient_id && patient != *patient_id) continue;
      for (const LegalHold& h : list) {
        if (include_released || h.active()) out.push_back(h);
      }
    }
  }
  std::sort(out.begin(), out.end(), HoldOrder);
  return out;
}

std::vector<LegalHold> PatientState::IsHeld(std::string_view patient_id,
                                            std::string_view record_id) const {
  std::vector<LegalHold> out;
  ReaderMutexLock lock(mu_);
  auto list = holds_.find(patient_id);
  if (list == holds_.end()) return out;
  for (const LegalHold& h : list->second) {
    if (HoldCovers(h, patient_id, record_id)) out.push_back(h);
  }
  return out;
}

// ---- Patient facts

StatusOr<PatientFacts> PatientState::StageSetFacts(PatientFacts f, std::string_view today,
                                                   storage::WriteBatch& batch) const {
  PV_RETURN_IF_ERROR(ValidatePatientId(f.patient_id));
  PV_RETURN_IF_ERROR(ValidateDate("today", today));
  // YYYY-MM-DD strings order as the dates do.
  for (const auto& [field, date] :
       {std::pair{"date_of_birth", &f.date_of_birth}, std::pair{"date_of_death", &f.date_of_death},
        std::pair{"last_encounter", &f.last_encounter}}) {
    if (!*date) continue;
    PV_RETURN_IF_ERROR(ValidateDate(field, **date));
    if (**date > today) return InvalidArgument(std::string(field) + " must not be after today");
  }
  if (f.date_of_birth && f.date_of_death && *f.date_of_death < *f.date_of_birth) {
    return InvalidArgument("date_of_death must not be before date_of_birth");
  }
  if (f.date_of_birth && f.last_encounter && *f.last_encounter < *f.date_of_birth) {
    return InvalidArgument("last_encounter must not be before date_of_birth");
  }
  PV_RETURN_IF_ERROR(ValidateText("updated_by", f.updated_by, 256));
  StageSealed(kFactsKind, PatientKey(kFactsKind, f.patient_id), ToJson(f).dump(), batch);
  return f;
}

void PatientState::ApplyFacts(PatientFacts facts) {
  std::string bid = crypto::HexEncode(blind_id_(facts.patient_id));
  WriterMutexLock lock(mu_);
  facts_.insert_or_assign(std::move(bid), std::move(facts));
}

std::optional<PatientFacts> PatientState::GetFacts(std::string_view patient_id) const {
  const std::string bid = crypto::HexEncode(blind_id_(patient_id));
  ReaderMutexLock lock(mu_);
  auto it = facts_.find(bid);
  if (it == facts_.end()) return std::nullopt;
  return it->second;
}

// ---- Policy history

StatusOr<PolicyVersion> PatientState::StagePolicyVersion(std::string_view name,
                                                         std::string_view text, int64_t from_us,
                                                         storage::WriteBatch& batch) const {
  PV_RETURN_IF_ERROR(ValidateText("name", name, 256));
  if (text.empty()) return InvalidArgument("text must not be empty");
  if (text.size() > kMaxPolicyTextBytes) {
    return InvalidArgument("text must be at most " + std::to_string(kMaxPolicyTextBytes) +
                           " bytes");
  }
  if (!IsValidUtf8(text)) return InvalidArgument("text must be valid UTF-8");
  if (from_us < 0) return InvalidArgument("from must not be before 1970");
  {
    ReaderMutexLock lock(mu_);
    if (!policies_.empty() && from_us <= policies_.back().from_us) {
      return FailedPrecondition("policy versions must be added in time order");
    }
  }
  PolicyVersion p{from_us, std::string(name), Sha256Hex(text), std::string(text), 0};
  StageSealed(kPolicyKind, PolicyKey(from_us), ToJson(p).dump(), batch);
  return p;
}

Status PatientState::ApplyPolicyVersion(PolicyVersion version, uint64_t audit_seq) {
  version.audit_seq = audit_seq;
  storage::WriteBatch batch;
  StageSealed(kPolicyKind, PolicyKey(version.from_us), ToJson(version).dump(), batch);
  {
    WriterMutexLock lock(mu_);
    auto it =
        std::lower_bound(policies_.begin(), policies_.end(), version.from_us,
                         [](const PolicyVersion& p, int64_t from) { return p.from_us < from; });
    if (it != policies_.end() && it->from_us == version.from_us) {
      *it = version;
    } else {
      policies_.insert(it, version);
    }
  }
  return store_.Write(batch, /*sync=*/true);
}

std::vector<PolicyVersion> PatientState::PolicyHistory() const {
  ReaderMutexLock lock(mu_);
  return policies_;
}

std::optional<PolicyVersion> PatientState::PolicyAt(int64_t time_us) const {
  ReaderMutexLock lock(mu_);
  auto it = std::upper_bound(policies_.begin(), policies_.end(), time_us,
                             [](int64_t t, const PolicyVersion& p) { return t < p.from_us; });
  if (it == policies_.begin()) return std::nullopt;
  return *std::prev(it);
}

}  // namespace phivault::daemon
