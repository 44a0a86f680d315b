// GoogleMock of VaultService, for tests of the layers above it (handlers, server).
#pragma once

#include <gmock/gmock.h>

#include "daemon/service.h"

namespace phivault::daemon {

class MockVaultService : public VaultService {
 public:
  MOCK_METHOD(StatusOr<storage::RecordMetadata>, CreateRecord,
              (const RequestContext& ctx, CreateRecordRequest req), (override));
  MOCK_METHOD(StatusOr<storage::Record>, ReadRecord,
              (const RequestContext& ctx, const std::string& record_id,
               std::optional<uint32_t> version, bool with_content),
              (override));
  MOCK_METHOD(StatusOr<storage::RecordMetadata>, AmendRecord,
              (const RequestContext& ctx, const std::string& record_id, AmendRecordRequest req),
              (override));
  MOCK_METHOD(StatusOr<RecordList>, ListRecords,
              (const RequestContext& ctx, const std::string& patient_id), (override));
  MOCK_METHOD(StatusOr<VaultStatus>, GetStatus, (const RequestContext& ctx), (override));
  MOCK_METHOD(StatusOr<storage::Record>, DiscloseRecord,
              (const RequestContext& ctx, const std::string& record_id,
               std::optional<uint32_t> version, const DisclosureInfo& disclosure),
              (override));
  MOCK_METHOD(StatusOr<uint64_t>, RecordDisclosure,
              (const RequestContext& ctx, RecordDisclosureRequest req), (override));
  MOCK_METHOD(StatusOr<uint64_t>, AddDisclosureSuspension,
              (const RequestContext& ctx, SuspensionRequest req), (override));
  MOCK_METHOD(StatusOr<RenderedReport>, AccountingOfDisclosures,
              (const RequestContext& ctx, const ReportRequest& req), (override));
  MOCK_METHOD(StatusOr<RenderedReport>, AccessReport,
              (const RequestContext& ctx, const ReportRequest& req), (override));
  MOCK_METHOD(Status, ExportAudit,
              (const RequestContext& ctx, const AuditExportRequest& req, const ExportSink& sink),
              (override));
  MOCK_METHOD(StatusOr<std::string>, AuditCheckpoint, (const RequestContext& ctx, bool fresh),
              (override));
  MOCK_METHOD(StatusOr<InclusionProofResult>, AuditInclusionProof,
              (const RequestContext& ctx, uint64_t seq, std::optional<uint64_t> tree_size),
              (override));
  MOCK_METHOD(StatusOr<std::vector<std::string>>, AuditConsistencyProof,
              (const RequestContext& ctx, uint64_t size1, uint64_t size2), (override));
  MOCK_METHOD(StatusOr<std::string>, AuditVerifierKey, (const RequestContext& ctx), (override));
  MOCK_METHOD(StatusOr<PolicyInfo>, ReloadPolicy, (const RequestContext* ctx), (override));
  MOCK_METHOD(StatusOr<PolicyInfo>, PolicyAt,
              (const RequestContext& ctx, std::optional<int64_t> at_unix_us), (override));
  MOCK_METHOD(StatusOr<std::vector<PolicyInfo>>, PolicyHistory, (const RequestContext& ctx),
              (override));
  MOCK_METHOD(StatusOr<PolicyCheckResult>, CheckPolicy,
              (const RequestContext& ctx, const PolicyCheckRequest& req), (override));
  MOCK_METHOD(StatusOr<std::vector<BreakGlassWindow>>, ReviewBreakGlass,
              (const RequestContext& ctx, bool pending_only), (override));
  using SignOffResult = std::pair<BreakGlassWindow, uint64_t>;
  MOCK_METHOD(StatusOr<SignOffResult>, SignOffBreakGlass,
              (const RequestContext& ctx, const std::string& window_id, const std::string& note),
              (override));
  MOCK_METHOD(Status, CloseExpiredBreakGlass, (), (override));
  using RestrictionResult = std::pair<Restriction, uint64_t>;
  using RequestResult = std::pair<PatientRequest, uint64_t>;
  MOCK_METHOD(StatusOr<RestrictionResult>, AddRestriction,
              (const RequestContext& ctx, Restriction draft), (override));
  MOCK_METHOD(StatusOr<std::vector<Restriction>>, ListRestrictions,
              (const RequestContext& ctx, const std::string& patient_id, bool include_ended),
              (override));
  MOCK_METHOD(StatusOr<RestrictionResult>, EndRestriction,
              (const RequestContext& ctx, const std::string& patient_id, const std::string& id,
               const std::string& reason),
              (override));
  MOCK_METHOD(Status, ExportPatient,
              (const RequestContext& ctx, const PatientExportRequest& req, const ExportSink& sink),
              (override));
  MOCK_METHOD(StatusOr<RequestResult>, OpenPatientRequest,
              (const RequestContext& ctx, const std::string& patient_id, const std::string& kind,
               const std::optional<std::string>& received, const std::string& note),
              (override));
  MOCK_METHOD(StatusOr<RequestResult>, ExtendPatientRequest,
              (const RequestContext& ctx, const std::string& id, const std::string& reason),
              (override));
  MOCK_METHOD(StatusOr<RequestResult>, ClosePatientRequest,
              (const RequestContext& ctx, const std::string& id, const std::string& outcome,
               const std::string& delivered, const std::string& note),
              (override));
  MOCK_METHOD(StatusOr<std::vector<PatientRequest>>, ListPatientRequests,
              (const RequestContext& ctx, const std::optional<std::string>& patient_id,
               bool overdue_only, bool include_closed),
              (override));
  MOCK_METHOD(StatusOr<uint64_t>, SetContact,
              (const RequestContext& ctx, ConfidentialContact contact), (override));
  MOCK_METHOD(StatusOr<ConfidentialContact>, GetContact,
              (const RequestContext& ctx, const std::string& patient_id), (override));
  MOCK_METHOD(StatusOr<KeyRotateResult>, RotateMasterKey,
              (const RequestContext& ctx, KeyRotateRequest req), (override));
  MOCK_METHOD(Status, AuditRejected,
              (const RequestContext& ctx, const std::string& action, const std::string& reason,
               uint64_t count),
              (override));
  MOCK_METHOD((StatusOr<std::pair<PatientFacts, uint64_t>>), SetPatientFacts,
              (const RequestContext& ctx, const PatientFactsUpdate& update), (override));
  MOCK_METHOD(StatusOr<PatientFacts>, GetPatientFacts,
              (const RequestContext& ctx, const std::string& patient_id), (override));
  MOCK_METHOD(StatusOr<std::vector<RecordRetention>>, PatientRetention,
              (const RequestContext& ctx, const std::string& patient_id), (override));
  MOCK_METHOD(StatusOr<RetentionTableInfo>, RetentionRules, (const RequestContext& ctx),
              (override));
  MOCK_METHOD((StatusOr<std::pair<LegalHold, uint64_t>>), PlaceHold,
              (const RequestContext& ctx, const PlaceHoldRequest& req), (override));
  MOCK_METHOD((StatusOr<std::pair<LegalHold, uint64_t>>), ReleaseHold,
              (const RequestContext& ctx, const std::string& hold_id, const std::string& reason),
              (override));
  MOCK_METHOD(StatusOr<std::vector<LegalHold>>, ListHolds,
              (const RequestContext& ctx, const std::optional<std::string>& patient_id,
               bool include_released),
              (override));
  MOCK_METHOD(StatusOr<SweepResult>, Sweep,
              (const RequestContext* ctx, const SweepRequest& req, const SweepProgressFn& progress),
              (override));
  MOCK_METHOD(StatusOr<std::vector<CertificateSummary>>, ListCertificates,
              (const RequestContext& ctx), (override));
  MOCK_METHOD(StatusOr<std::string>, GetCertificate,
              (const RequestContext& ctx, const std::string& certificate_id), (override));
};

}  // namespace phivault::daemon
