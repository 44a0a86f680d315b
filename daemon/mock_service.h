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
  MOCK_METHOD(StatusOr<std::vector<storage::RecordMetadata>>, ListRecords,
              (const RequestContext& ctx, const std::string& patient_id), (override));
  MOCK_METHOD(StatusOr<VaultStatus>, GetStatus, (const RequestContext& ctx), (override));
  MOCK_METHOD(Status, AuditRejected,
              (const RequestContext& ctx, const std::string& action, const std::string& reason),
              (override));
};

}  // namespace phivault::daemon
