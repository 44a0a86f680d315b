// PatientState: the vault's patient-rights and break-glass state — restrictions (45 CFR
// 164.522(a)), confidential communications (164.522(b)), patient requests and their deadlines
// (164.524, 164.526, 164.528), break-glass windows awaiting review, and the history of the access
// policy in force; and, for retention (issue 9), legal holds and the patient facts that
// retention rules read.
//
// Storage: every value lives in Cf::kState under a "ps/" key, sealed (AEAD) with an associated
// data string that names its kind and contains its key, so a value can be neither altered nor
// moved to another key or kind without failing to open. Keys carry no PHI: patients appear as
// their 32-byte blind id (hex), objects as random ids.
//
// Mutations are two steps, so that the caller commits each one atomically with its audit entry
// (storage::Ledger::Commit): Stage...(..., batch) validates, adds the sealed puts to `batch` and
// returns the new value without changing memory; after the commit succeeds, Apply...(value)
// makes it visible. If the commit fails, drop the value: nothing changed. The caller serialises
// Stage -> Commit -> Apply of the same object (the service holds one mutation mutex for this
// state); reads may run concurrently with everything.
//
// Reads are from memory, filled by Load(). Messages name fields, never their values (PHI).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "crypto/aead.h"
#include "storage/store.h"

namespace phivault::daemon {

// ---- Restrictions, 45 CFR 164.522(a) ---------------------------------------------------------

// A restriction the practice agreed to (or must honour, 164.522(a)(1)(vi)): uses or disclosures
// for `purposes` of the covered records are refused.
struct Restriction {
  std::string id;  // random, in the form of a record id (22 URL-safe characters)
  std::string patient_id;
  std::vector<std::string> purposes;    // HL7 PurposeOfUse codes; non-empty
  std::vector<std::string> record_ids;  // covered records; with `categories` both empty = all
  std::vector<std::string> categories;  // covered record categories
  std::string recipient;                // optional: e.g. the health plan it protects from
  std::string note;                     // optional
  int64_t created_us = 0;
  std::string created_by;
  std::optional<int64_t> ended_us;  // set once ended (164.522(a)(2) termination)
  std::string ended_by;
  std::string end_reason;

  bool active() const { return !ended_us.has_value(); }
};

// The first active restriction in `restrictions` that covers the record (named in record_ids, or
// its category in categories, or all records when both are empty) and whose purposes include
// `purpose` or an ancestor of it in the PurposeOfUse tree (a restriction on HPAYMT covers
// ELIGVER). nullptr if none. The pointer is into `restrictions`.
const Restriction* FindBlocking(std::span<const Restriction> restrictions,
                                std::string_view record_id, std::string_view category,
                                std::string_view purpose);

// ---- Break-glass windows ------------------------------------------------------------------------

// Emergency access by one user to one patient's records, from opened_us until expires_us (or
// an earlier close), reviewed afterwards by a privacy officer.
struct BreakGlassWindow {
  std::string id;  // random, URL-safe; set by StageOpenWindow
  std::string user;
  std::string role;
  std::string application;
  std::string patient_id;
  std::string reason;  // the X-Phivault-Break-Glass-Reason text
  int64_t opened_us = 0;
  int64_t expires_us = 0;
  std::optional<int64_t> closed_us;
  uint64_t accesses = 0;  // record accesses made under the window
  std::string signed_off_by;
  std::optional<int64_t> signed_off_at_us;
  std::string note;  // the reviewer's
};

enum class WindowStatus {
  kOpen,       // not closed yet (possibly expired, awaiting TakeExpired)
  kPending,    // closed, not signed off
  kSignedOff,  // reviewed
};
WindowStatus StatusOf(const BreakGlassWindow& window);
// "open", "pending", "signed_off".
std::string_view WindowStatusName(WindowStatus status);

// ---- Patient requests: access 164.524, amendment 164.526, accounting 164.528 -------------------

enum class RequestKind { kAccess, kAmendment, kAccounting };
// "access", "amendment", "accounting"; ParseRequestKind is its inverse (InvalidArgument naming
// field 'kind' otherwise).
std::string_view RequestKindName(RequestKind kind);
StatusOr<RequestKind> ParseRequestKind(std::string_view name);
// Days the practice has to act: access 30 (164.524(b)(2)), amendment 60 (164.526(b)(2)),
// accounting 60 (164.528(c)(1)). Each may be extended once by 30 days with a written reason.
int DaysAllowed(RequestKind kind);
inline constexpr int kExtensionDays = 30;

enum class RequestOutcome { kFulfilled, kDenied };
// "fulfilled", "denied"; ParseRequestOutcome is its inverse (InvalidArgument naming 'outcome').
std::string_view RequestOutcomeName(RequestOutcome outcome);
StatusOr<RequestOutcome> ParseRequestOutcome(std::string_view name);

struct PatientRequest {
  std::string id;  // random, URL-safe; set by StageOpenRequest
  std::string patient_id;
  RequestKind kind = RequestKind::kAccess;
  std::string received;  // YYYY-MM-DD
  std::string due;       // YYYY-MM-DD: received + DaysAllowed(kind) (+ kExtensionDays)
  bool extended = false;
  std::string extension_reason;
  std::string note;  // optional, given when opened
  bool closed = false;
  std::optional<RequestOutcome> outcome;  // set once closed
  std::optional<int64_t> closed_us;
  std::string delivered;   // what was delivered: an export's sha256, a report's audit seq, ...
  std::string close_note;  // optional, given when closed
};

// True if `request` is open and its due date is before `today` (YYYY-MM-DD): due on the 10th,
// overdue from the 11th.
bool IsOverdue(const PatientRequest& request, std::string_view today);

// The calendar date `days` days after `date` (YYYY-MM-DD), by real calendar arithmetic:
// 2026-01-31 + 30 = 2026-03-02, 2028-01-31 + 30 = 2028-03-01. InvalidArgument naming `field`
// if `date` is not a real date.
StatusOr<std::string> AddCalendarDays(std::string_view field, std::string_view date, int days);

// ---- Confidential communications, 45 CFR 164.522(b) ---------------------------------------------

enum class ContactChannel { kMail, kEmail, kPhone, kPortal };
// "mail", "email", "phone", "portal"; ParseContactChannel is its inverse (InvalidArgument naming
// 'channel').
std::string_view ContactChannelName(ContactChannel channel);
StatusOr<ContactChannel> ParseContactChannel(std::string_view name);

// Where and how the patient asked to be contacted; every patient-addressed output names it.
struct ConfidentialContact {
  std::string patient_id;
  std::string address;
  ContactChannel channel = ContactChannel::kMail;
  std::string note;  // optional
  int64_t updated_us = 0;
};

// ---- Policy history
// ------------------------------------------------------------------------------

// One version of the access policy, in force from `from_us` until the next version's from_us.
struct PolicyVersion {
  int64_t from_us = 0;
  std::string name;
  std::string sha256_hex;  // lowercase hex SHA-256 of `text`
  std::string text;
  // The audit entry that recorded the change; 0 while not yet known (between Stage and Apply, or
  // if the write of ApplyPolicyVersion failed after the commit).
  uint64_t audit_seq = 0;
};

// ---- Legal holds -------------------------------------------------------------------------------

// What a legal hold covers: every record of its patient, or only the records it lists (all of
// them that patient's).
enum class HoldScope { kPatient, kRecords };
// "patient", "records"; ParseHoldScope is its inverse (InvalidArgument naming 'scope').
std::string_view HoldScopeName(HoldScope scope);
StatusOr<HoldScope> ParseHoldScope(std::string_view name);

// A legal hold placed for a matter (litigation, investigation, audit). While it is active nothing
// it covers may be destroyed, whatever the record's retention says; releasing it ends that.
struct LegalHold {
  std::string id;      // random, in the form of a record id; set by StageHold
  std::string matter;  // the matter's name, one line
  std::string reason;
  std::string patient_id;
  HoldScope scope = HoldScope::kPatient;
  std::vector<std::string> record_ids;  // kRecords: non-empty, no repeats; kPatient: empty
  std::string placed_by;
  int64_t placed_us = 0;
  std::optional<int64_t> released_us;  // set once released
  std::string released_by;
  std::string release_reason;

  bool active() const { return !released_us.has_value(); }
};

// True if `hold` is active, belongs to `patient_id` and covers `record_id` (its scope is the
// patient, or it lists the record).
bool HoldCovers(const LegalHold& hold, std::string_view patient_id, std::string_view record_id);

// ---- Patient facts for retention ----------------------------------------------------------------

// The facts retention rules are computed from (issue 9): "N years after the last encounter",
// "after the age of majority", "after death". Each date is YYYY-MM-DD, absent when not known.
struct PatientFacts {
  std::string patient_id;
  std::optional<std::string> date_of_birth;
  std::optional<std::string> date_of_death;
  std::optional<std::string> last_encounter;
  int64_t updated_us = 0;
  std::string updated_by;
};

// ---- The state ---------------------------------------------------------------------------------

class PatientState {
 public:
  // 32 raw bytes naming a patient without revealing the id (storage::RecordRepository::
  // PatientBlindId). Used for keys only.
  using BlindIdFn = std::function<std::string(std::string_view patient_id)>;

  // `store` and `sealing_key` (the keyring's audit key in phivaultd) must outlive this object.
  // Empty until Load().
  PatientState(storage::Store& store, const crypto::Aead& sealing_key, BlindIdFn blind_id);
  PatientState(const PatientState&) = delete;
  PatientState& operator=(const PatientState&) = delete;

  // Reads every stored value into memory, replacing what was there. DataLoss naming the kind and
  // key if a value fails to open or decode, if a policy version's text does not hash to its
  // sha256, if an access marker names no stored window, or if a hold or facts value is stored
  // under another patient's key — a tampered value is never skipped.
  // The store's error if it cannot be read. On error the memory is left as it was.
  [[nodiscard]] Status Load();

  // -- Restrictions
  // Validates `draft` (patient_id, purposes, record_ids, categories, recipient, note,
  // created_by; created_us as given), gives it a fresh id and stages it. InvalidArgument naming
  // the field. The ended fields of `draft` are ignored.
  StatusOr<Restriction> StageAddRestriction(Restriction draft, storage::WriteBatch& batch) const;
  // Stages the end of restriction `id` of `patient_id`. NotFound "no such restriction" if the
  // patient has none with that id; FailedPrecondition "restriction already ended";
  // InvalidArgument for an empty or oversized `ended_by` or `reason`.
  StatusOr<Restriction> StageEndRestriction(std::string_view patient_id, std::string_view id,
                                            std::string_view ended_by, std::string_view reason,
                                            int64_t ended_us, storage::WriteBatch& batch) const;
  // Makes a staged add or end visible (inserts or replaces by id).
  void ApplyRestriction(Restriction restriction);
  // The patient's restrictions, oldest first; ended ones only with `include_ended`. Pass the
  // result to FindBlocking on every read, list, disclose and export.
  std::vector<Restriction> RestrictionsOf(std::string_view patient_id, bool include_ended) const;

  // -- Break-glass windows
  // Validates `draft` (user, role, patient_id, reason 1..512 bytes without control characters,
  // expires_us > opened_us), gives it a fresh id and stages it; accesses, closed and sign-off
  // fields are ignored. AlreadyExists if the user already has an open, unexpired window for the
  // patient (use it: FindOpen).
  StatusOr<BreakGlassWindow> StageOpenWindow(BreakGlassWindow draft,
                                             storage::WriteBatch& batch) const;
  void ApplyOpenWindow(BreakGlassWindow window);
  // The user's window for the patient that is not closed and has not expired at `now_us`.
  std::optional<BreakGlassWindow> FindOpen(std::string_view user, std::string_view patient_id,
                                           int64_t now_us) const;
  // Stages one access under window `window_id` (its own key, so concurrent accesses never lose a
  // count); ApplyAccess counts it in memory. NotFound "no such break-glass window".
  [[nodiscard]] Status StageAccess(std::string_view window_id, storage::WriteBatch& batch) const;
  void ApplyAccess(std::string_view window_id);
  // Windows not closed whose expiry is at or before `now_us`, oldest first, each returned by one
  // call only: the caller writes each one's end audit entry with StageCloseWindow and applies it.
  // If that commit fails, ReleaseExpired hands the window back to a later TakeExpired. After a
  // restart every such window is returned again.
  std::vector<BreakGlassWindow> TakeExpired(int64_t now_us);
  void ReleaseExpired(std::string_view window_id);
  // Stages closing window `window_id` at `closed_us`. NotFound; FailedPrecondition "break-glass
  // window already closed".
  StatusOr<BreakGlassWindow> StageCloseWindow(std::string_view window_id, int64_t closed_us,
                                              storage::WriteBatch& batch) const;
  // Stages the review sign-off. NotFound; FailedPrecondition "break-glass window is still open"
  // (not closed: close expired windows with TakeExpired first) or "break-glass window already
  // signed off"; InvalidArgument for an empty `by` or an oversized note (4096 bytes).
  StatusOr<BreakGlassWindow> StageSignOff(std::string_view window_id, std::string_view by,
                                          std::string_view note, int64_t at_us,
                                          storage::WriteBatch& batch) const;
  // Makes a staged close or sign-off visible (replaces by id, keeping the access count).
  void ApplyWindow(BreakGlassWindow window);
  // Every window, oldest first; with `pending_only` only those closed and not signed off. An
  // expired window stays kOpen until closed: call TakeExpired (and close what it returns) first.
  std::vector<BreakGlassWindow> ListWindows(bool pending_only) const;
  std::optional<BreakGlassWindow> GetWindow(std::string_view window_id) const;

  // -- Patient requests
  // Stages a new open request received on `received` (YYYY-MM-DD), due DaysAllowed(kind) later.
  // InvalidArgument naming patient_id, received or note (at most 4096 bytes).
  StatusOr<PatientRequest> StageOpenRequest(std::string_view patient_id, RequestKind kind,
                                            std::string_view received, std::string_view note,
                                            storage::WriteBatch& batch) const;
  // Stages the one permitted extension: due += kExtensionDays. NotFound "no such patient
  // request"; FailedPrecondition "patient request is closed" or "patient request was already
  // extended"; InvalidArgument if `reason` is empty or over 2048 bytes.
  StatusOr<PatientRequest> StageExtendRequest(std::string_view id, std::string_view reason,
                                              storage::WriteBatch& batch) const;
  // Stages closing the request. NotFound; FailedPrecondition "patient request is closed";
  // InvalidArgument if `delivered` is empty or over 1024 bytes, or `note` over 4096.
  StatusOr<PatientRequest> StageCloseRequest(std::string_view id, RequestOutcome outcome,
                                             std::string_view delivered, std::string_view note,
                                             int64_t closed_us, storage::WriteBatch& batch) const;
  // Makes a staged open, extension or close visible (inserts or replaces by id).
  void ApplyRequest(PatientRequest request);
  std::optional<PatientRequest> GetRequest(std::string_view id) const;
  // Requests ordered by received date then id; only `patient_id`'s if given; only open ones
  // unless `include_closed`; only those overdue on `today` (YYYY-MM-DD) if `overdue_only`.
  std::vector<PatientRequest> ListRequests(const std::optional<std::string>& patient_id,
                                           bool overdue_only, std::string_view today,
                                           bool include_closed) const;

  // -- Confidential communications
  // Validates (patient_id; address 1..1024 bytes; note at most 2048) and stages `contact`,
  // replacing the patient's previous one.
  StatusOr<ConfidentialContact> StageSetContact(ConfidentialContact contact,
                                                storage::WriteBatch& batch) const;
  void ApplyContact(ConfidentialContact contact);
  std::optional<ConfidentialContact> GetContact(std::string_view patient_id) const;

  // -- Legal holds
  // Validates `draft` (matter: one line, 1..256 bytes; reason 1..2048; patient_id; record_ids:
  // 1..256 distinct record ids for kRecords, none for kPatient; placed_by 1..256; placed_us as
  // given), gives it a fresh id and stages it. InvalidArgument naming the field, never its value.
  // The released fields of `draft` are ignored.
  StatusOr<LegalHold> StageHold(LegalHold draft, storage::WriteBatch& batch) const;
  // Stages the release of hold `id` at `released_us`. NotFound "no such legal hold";
  // FailedPrecondition "legal hold already released"; InvalidArgument for an empty or oversized
  // `released_by` (256 bytes) or `reason` (2048), or a release before the hold was placed.
  StatusOr<LegalHold> StageRelease(std::string_view id, std::string_view released_by,
                                   std::string_view reason, int64_t released_us,
                                   storage::WriteBatch& batch) const;
  // Makes a staged hold or release visible (inserts or replaces by id).
  void ApplyHold(LegalHold hold);
  std::optional<LegalHold> GetHold(std::string_view id) const;
  // Holds ordered by placed_us then id; only `patient_id`'s if given; released ones only with
  // `include_released`.
  std::vector<LegalHold> ListHolds(const std::optional<std::string>& patient_id,
                                   bool include_released) const;
  // The active holds covering record `record_id` of `patient_id` (HoldCovers), ordered as
  // ListHolds; empty if none. A record for which this is non-empty must not be destroyed.
  std::vector<LegalHold> IsHeld(std::string_view patient_id, std::string_view record_id) const;

  // -- Patient facts
  // Validates and stages `facts`, replacing the patient's previous facts (to change one date,
  // start from GetFacts). InvalidArgument naming the field: patient_id; updated_by 1..256; each
  // date given must be a real date (YYYY-MM-DD), not after `today` (itself a real date, named
  // 'today'); date_of_death and last_encounter must not be before date_of_birth.
  StatusOr<PatientFacts> StageSetFacts(PatientFacts facts, std::string_view today,
                                       storage::WriteBatch& batch) const;
  void ApplyFacts(PatientFacts facts);
  // nullopt if no facts were ever set for the patient.
  std::optional<PatientFacts> GetFacts(std::string_view patient_id) const;

  // -- Policy history
  // Stages a new version (sha256 computed here, audit_seq 0) in force from `from_us`.
  // InvalidArgument for an empty name (or over 256 bytes), or text that is empty, over 1 MiB or
  // not valid UTF-8; FailedPrecondition
  // "policy versions must be added in time order" unless `from_us` is after the newest version.
  StatusOr<PolicyVersion> StagePolicyVersion(std::string_view name, std::string_view text,
                                             int64_t from_us, storage::WriteBatch& batch) const;
  // Makes the committed version visible with the seq its audit entry got, then rewrites the
  // stored version with that seq (a plain synced write: the seq is known only after the commit).
  // Memory is updated even if that write fails; the stored version then keeps audit_seq 0.
  [[nodiscard]] Status ApplyPolicyVersion(PolicyVersion version, uint64_t audit_seq);
  // Every version, oldest first.
  std::vector<PolicyVersion> PolicyHistory() const;
  // The version in force at `time_us`: the newest with from_us <= time_us; nullopt before the
  // first.
  std::optional<PolicyVersion> PolicyAt(int64_t time_us) const;

 private:
  // Seals `plaintext` for `key` of `kind` and adds the put to `batch`.
  void StageSealed(std::string_view kind, std::string key, const std::string& plaintext,
                   storage::WriteBatch& batch) const;
  std::string PatientKey(std::string_view prefix, std::string_view patient_id) const;

  storage::Store& store_;
  const crypto::Aead& key_;
  const BlindIdFn blind_id_;

  mutable SharedMutex mu_;
  // Keyed by hex blind id; each vector oldest first.
  std::map<std::string, std::vector<Restriction>> restrictions_ GUARDED_BY(mu_);
  std::map<std::string, BreakGlassWindow, std::less<>> windows_ GUARDED_BY(mu_);
  std::set<std::string, std::less<>> taken_ GUARDED_BY(mu_);
  std::map<std::string, PatientRequest, std::less<>> requests_ GUARDED_BY(mu_);
  std::map<std::string, ConfidentialContact> contacts_ GUARDED_BY(mu_);
  std::vector<PolicyVersion> policies_ GUARDED_BY(mu_);
  // Keyed by patient id (not its blind id: IsHeld runs once per record in a sweep); each vector
  // ordered as ListHolds.
  std::map<std::string, std::vector<LegalHold>, std::less<>> holds_ GUARDED_BY(mu_);
  std::map<std::string, PatientFacts> facts_ GUARDED_BY(mu_);
};

}  // namespace phivault::daemon
