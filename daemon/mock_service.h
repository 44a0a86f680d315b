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
  MOCK_METHOD(Status, AuditRejected,
              (const RequestContext& ctx, const std::string& action, const std::string& reason,
               uint64_t count),
              (override));
};

}  // namespace phivault::daemon
