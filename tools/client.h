// phivault::client — the one client library for phivaultd's socket API, used by the `phivault`
// CLI, the end-to-end tests and the benchmark.
//
// A Client speaks HTTP/1.1 over the daemon's Unix socket and nothing else: it never opens a
// network connection. It keeps one connection open between calls (keep-alive) and replaces it
// when the daemon has closed it. Every call returns a Result<T>: the value, or an Error carrying
// the HTTP status and the daemon's problem+json fields.
//
// Threads: a Client is NOT thread-safe; it owns one connection and calls on it are sequential.
// Use one Client per thread (they are cheap: a socket path, a token and one connection).
//
// SIGPIPE: the client writes with MSG_NOSIGNAL, so a daemon closing the socket never raises
// SIGPIPE in the calling process.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "crypto/status.h"

namespace phivault::client {

// Who is acting and why; sent as X-Phivault-User / -Role / -Purpose on every call except
// Health. `request_id`, if set, is sent as X-Request-Id and echoed in the daemon's audit entry
// and problem responses.
struct Actor {
  std::string user;
  std::string role;
  std::string purpose = "TREAT";  // HL7 PurposeOfUse code
  std::string request_id;
};

// What went wrong, as precisely as the caller needs to decide what to do next.
enum class ErrorKind {
  kUnavailable,      // could not connect, connection lost, timed out, or 503 (audit unavailable)
  kInvalid,          // 400: the request was malformed or a field was out of range
  kUnauthenticated,  // 401: missing or bad token / unknown peer
  kForbidden,        // 403: authenticated but not allowed
  kNotFound,         // 404
  kShredded,         // 410: the record existed and was destroyed
  kTooLarge,         // 413
  kIntegrity,        // 500 with type integrity-failure: stored bytes failed authentication
  kDiskFull,         // 507: the daemon's disk is below its reserve
  kServer,           // any other non-2xx response
  kProtocol,         // the daemon's response could not be understood
  kClient,           // the request could not be built (e.g. socket path too long)
};

// Stable lowercase name, e.g. "not-found".
std::string_view ErrorKindName(ErrorKind kind);

struct Error {
  ErrorKind kind = ErrorKind::kServer;
  int http_status = 0;     // 0 when no HTTP response was received
  std::string type;        // problem type URN ("urn:phivault:problem:forbidden"); may be empty
  std::string title;       // short, human readable; never empty
  std::string detail;      // may be empty
  std::string request_id;  // as reported by the daemon; may be empty

  // "<title>: <detail>", or "<title>" when there is no detail.
  std::string Message() const;
  // The closest phivault::Status (e.g. kForbidden -> PermissionDenied), message = Message().
  phivault::Status ToStatus() const;
};

// A value or an Error. Accessing the value of an error aborts (std::get).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Error& error() const { return std::get<Error>(v_); }
  // HTTP status of the failure, 0 for success or when no response was received.
  int http_status() const { return ok() ? 0 : error().http_status; }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Error> v_;
};

// Success without a value.
struct Empty {};

struct DiskStatus {
  uint64_t free_bytes = 0;
  uint64_t reserve_bytes = 0;
  uint64_t live_data_bytes = 0;
};

struct VaultStatus {
  std::string version;
  int64_t uptime_seconds = 0;
  uint64_t audit_entries = 0;
  uint64_t epochs = 0;
  DiskStatus disk;
};

struct RecordMetadata {
  std::string record_id;
  uint32_t version = 0;
  std::string patient_id;
  std::string category;
  std::string content_type;
  std::string encounter_date;  // YYYY-MM-DD
  std::string author;
  std::string created;  // RFC 3339, microseconds, UTC
  uint64_t content_bytes = 0;
  std::string amendment_reason;  // empty for version 1
};

struct Record {
  RecordMetadata metadata;
  std::string content;  // raw bytes
};

// Raw content as served by GET /v1/records/{id}/content.
struct Content {
  std::string content_type;
  std::string bytes;
};

struct NewRecord {
  std::string patient_id;
  std::string category;
  std::string content_type;
  std::string encounter_date;  // YYYY-MM-DD
  std::string author;
  std::string content;  // raw bytes; always sent base64-encoded, so binary is fine
};

struct Amendment {
  std::string reason;
  std::string content;                      // raw bytes
  std::optional<std::string> content_type;  // default: the previous version's
  std::optional<std::string> encounter_date;
  std::optional<std::string> author;
};

// JSON forms, exactly as the daemon's API spells them (for `--json` output and tests).
nlohmann::json ToJson(const RecordMetadata& m);
nlohmann::json ToJson(const VaultStatus& s);
// Parses the daemon's metadata object. kProtocol Error naming the missing/ill-typed field.
Result<RecordMetadata> MetadataFromJson(const nlohmann::json& j);

struct ClientOptions {
  std::string socket_path;
  std::string token;  // bearer token; empty for operators (recognised by peer uid)
  // Per-operation limit on connecting, sending and waiting for each chunk of the response.
  std::chrono::milliseconds timeout{60000};
  // Responses larger than this are refused as kProtocol (content is at most 64 MiB, which is
  // about 85 MiB as base64 in JSON).
  uint64_t max_response_bytes = 128ull << 20;
};

class Client {
 public:
  // Does not connect: the first call does. Never fails.
  explicit Client(ClientOptions options);
  Client(const std::string& socket_path, std::string token = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;

  // GET /v1/health: no actor headers, no token needed. Ok if the daemon answers {"status":"ok"}.
  Result<Empty> Health();
  // Calls Health every 10 ms until it succeeds or `timeout` has passed (for tests and scripts
  // that have just started the daemon). Returns the last failure on timeout.
  Result<Empty> WaitUntilHealthy(std::chrono::milliseconds timeout);
  // GET /v1/status.
  Result<VaultStatus> Status(const Actor& actor);
  // POST /v1/records: stores version 1 and returns its metadata.
  Result<RecordMetadata> CreateRecord(const Actor& actor, const NewRecord& record);
  // GET /v1/records/{id}[?version=N]: metadata and content in one audited read.
  Result<Record> ReadRecord(const Actor& actor, const std::string& record_id,
                            std::optional<uint32_t> version = std::nullopt);
  // GET /v1/records/{id}/content: the raw bytes and their content type.
  Result<Content> ReadContent(const Actor& actor, const std::string& record_id,
                              std::optional<uint32_t> version = std::nullopt);
  // GET /v1/records/{id}/metadata.
  Result<RecordMetadata> ReadMetadata(const Actor& actor, const std::string& record_id,
                                      std::optional<uint32_t> version = std::nullopt);
  // POST /v1/records/{id}/versions: adds a version and returns its metadata.
  Result<RecordMetadata> AmendRecord(const Actor& actor, const std::string& record_id,
                                     const Amendment& amendment);
  // POST /v1/records/_search: metadata of the latest version of each of a patient's records.
  Result<std::vector<RecordMetadata>> SearchPatient(const Actor& actor,
                                                    const std::string& patient_id);

  // Number of connections opened so far (keep-alive observability for tests and benchmarks).
  uint64_t connections_opened() const;
  // Closes the kept-alive connection, if any; the next call reconnects.
  void Disconnect();

  // A raw HTTP response, for tests of the API surface that the typed calls do not cover.
  struct RawResponse {
    int status = 0;
    std::string content_type;
    std::string body;
  };
  // Sends `method path` with the actor headers (unless `actor` is null) and `body` (JSON if
  // non-empty). Fails only when no complete HTTP response was received (kUnavailable,
  // kProtocol); non-2xx statuses are returned as RawResponse.
  Result<RawResponse> Send(const std::string& method, const std::string& path, const Actor* actor,
                           const std::string& body = {});

 private:
  class Connection;
  Result<RawResponse> Exchange(const std::string& method, const std::string& path,
                               const Actor* actor, const std::vector<std::string_view>& body);
  Result<Connection*> Connect();

  ClientOptions options_;
  std::unique_ptr<Connection> connection_;
  uint64_t connections_opened_ = 0;
};

// Maps a non-2xx response to an Error (problem+json parsed when present).
Error ErrorFromResponse(int http_status, const std::string& content_type, const std::string& body);

}  // namespace phivault::client
