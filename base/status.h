// Status and StatusOr<T>: errors as values, shared by every phivault module.
//
// A Status is either OK or carries a code and a message that names the violated
// constraint ("key length must be 32 bytes"). Messages never contain PHI or key bytes.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace phivault {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,     // the caller's input is malformed or out of range
  kNotFound,            // the thing asked for does not exist
  kAlreadyExists,       // refusing to overwrite something that exists
  kUnauthenticated,     // no or bad credentials
  kPermissionDenied,    // authenticated, but not allowed
  kFailedPrecondition,  // the system is not in a state where this can be done
  kResourceExhausted,   // a limit was hit (disk reserve, body size, connections)
  kDataLoss,            // stored bytes failed an integrity check (tampering or corruption)
  kUnavailable,         // a dependency (disk, audit log) could not do its part; retryable
  kInternal,            // a bug or an impossible state
};

// Stable lowercase name of a code, used in problem+json types and logs.
std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "<code name>: <message>", or "ok".
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
inline Status Unauthenticated(std::string m) {
  return {StatusCode::kUnauthenticated, std::move(m)};
}
inline Status PermissionDenied(std::string m) {
  return {StatusCode::kPermissionDenied, std::move(m)};
}
inline Status FailedPrecondition(std::string m) {
  return {StatusCode::kFailedPrecondition, std::move(m)};
}
inline Status ResourceExhausted(std::string m) {
  return {StatusCode::kResourceExhausted, std::move(m)};
}
inline Status DataLoss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

// Either a value or a non-OK Status. Accessing the value of an error aborts.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(const Status& status) : v_(status) { assert(!status.ok()); }  // NOLINT
  StatusOr(Status&& status) : v_(std::move(status)) {                    // NOLINT
    assert(!std::get<Status>(v_).ok());
  }
  StatusOr(const T& value) : v_(value) {}        // NOLINT
  StatusOr(T&& value) : v_(std::move(value)) {}  // NOLINT

  bool ok() const { return std::holds_alternative<T>(v_); }
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<Status, T> v_;
};

}  // namespace phivault

// Propagates a non-OK Status from an expression returning Status.
#define PV_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::phivault::Status pv_status_ = (expr);  \
    if (!pv_status_.ok()) return pv_status_; \
  } while (0)

#define PV_CONCAT_INNER(a, b) a##b
#define PV_CONCAT(a, b) PV_CONCAT_INNER(a, b)
// PV_ASSIGN_OR_RETURN(auto x, MakeX()); assigns the value or returns the error.
#define PV_ASSIGN_OR_RETURN(lhs, expr) \
  PV_ASSIGN_OR_RETURN_IMPL(PV_CONCAT(pv_so_, __LINE__), lhs, expr)
#define PV_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()
