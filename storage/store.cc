#include "storage/store.h"

namespace phivault::storage {

std::string_view CfName(Cf cf) {
  switch (cf) {
    case Cf::kRecords:
      return "records";
    case Cf::kIndexes:
      return "indexes";
    case Cf::kAudit:
      return "audit";
    case Cf::kAuditTree:
      return "audit_tree";
    case Cf::kHolds:
      return "holds";
    case Cf::kState:
      return "state";
    case Cf::kArchive:
      return "archive";
  }
  return "unknown";
}

}  // namespace phivault::storage
