// Every JSON request body decoder of the API (daemon/api_json.h), on the same bytes: each is the
// real entry point its route's handler calls with the request body.
#include "daemon/api_json.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  phivault::fuzz::InitOrDie();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace d = phivault::daemon;
  const std::string_view body = phivault::fuzz::AsText(data, size);
  constexpr uint64_t kMaxContent = 1 << 16;
  (void)d::IsValidUtf8(body);
  const auto strict = d::ParseJsonObject(body);
  // The content routes' fast parser may only take what the strict one takes, as the same
  // document: a body the two read differently would be a request smuggled past the checks.
  if (const auto fast = d::FastFlatStringObject(body); fast && (!strict.ok() || *fast != *strict)) {
    __builtin_trap();
  }
  (void)d::DecodeCreateRecord(body, kMaxContent);
  (void)d::DecodeAmendRecord(body, kMaxContent);
  (void)d::DecodeSearchRecords(body);
  (void)d::ParseRequestTime("since", body);
  (void)d::DecodeRecordDisclosure(body);
  (void)d::DecodeDiscloseRecord(body);
  (void)d::DecodeSuspension(body);
  (void)d::DecodeAccountingReport(body);
  (void)d::DecodeAccessReport(body);
  (void)d::DecodeAuditExport(body);
  (void)d::DecodePolicyCheck(body);
  (void)d::DecodeReviewQuery(body);
  (void)d::DecodeSignOff(body);
  (void)d::DecodeAddRestriction(body);
  (void)d::DecodeRestrictionSearch(body);
  (void)d::DecodeEndRestriction(body);
  (void)d::DecodePatientExport(body);
  (void)d::DecodeOpenRequest(body);
  (void)d::DecodeExtendRequest(body);
  (void)d::DecodeCloseRequest(body);
  (void)d::DecodeRequestSearch(body);
  (void)d::DecodeSetContact(body);
  (void)d::DecodePatientFacts(body);
  (void)d::DecodePlaceHold(body);
  (void)d::DecodeReleaseHold(body);
  (void)d::DecodeHoldSearch(body);
  (void)d::DecodeSweep(body);
  (void)d::DecodeKeyRotate(std::string(body));
  (void)d::DecodeEmptyObject(body);
  (void)d::DecodeBackupRequest(body);
  return 0;
}
