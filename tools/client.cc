#include "tools/client.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <istream>
#include <thread>

#include <Poco/Exception.h>
#include <Poco/Net/HTTPChunkedStream.h>
#include <Poco/Net/HTTPFixedLengthStream.h>
#include <Poco/Net/HTTPHeaderStream.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSession.h>
#include <Poco/Net/HTTPStream.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/URI.h>

#include "crypto/hash.h"

namespace phivault::client {
namespace {

constexpr std::string_view kProblemPrefix = "urn:phivault:problem:";

Error MakeError(ErrorKind kind, std::string title, std::string detail = {}) {
  Error e;
  e.kind = kind;
  e.title = std::move(title);
  e.detail = std::move(detail);
  return e;
}

Error UnavailableError(std::string detail) {
  return MakeError(ErrorKind::kUnavailable, "daemon unavailable", std::move(detail));
}

Error ProtocolError(std::string detail) {
  return MakeError(ErrorKind::kProtocol, "unexpected response from daemon", std::move(detail));
}

ErrorKind KindForStatus(int status, std::string_view type) {
  switch (status) {
    case 400:
      return ErrorKind::kInvalid;
    case 401:
      return ErrorKind::kUnauthenticated;
    case 403:
      return ErrorKind::kForbidden;
    case 404:
      return ErrorKind::kNotFound;
    case 410:
      return ErrorKind::kShredded;
    case 413:
      return ErrorKind::kTooLarge;
    case 503:
      return ErrorKind::kUnavailable;
    case 507:
      return ErrorKind::kDiskFull;
    case 500:
      if (type == std::string(kProblemPrefix) + "integrity-failure") return ErrorKind::kIntegrity;
      return ErrorKind::kServer;
    default:
      return ErrorKind::kServer;
  }
}

// Header values travel verbatim; CR/LF would let a caller inject headers.
bool IsSafeHeaderValue(std::string_view v) {
  for (char c : v) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return false;
  }
  return true;
}

std::string RecordPath(const std::string& record_id, std::string_view suffix,
                       std::optional<uint32_t> version) {
  std::string path = "/v1/records/";
  Poco::URI::encode(record_id, "/?#[]@!$&'()*+,;=%", path);
  path += suffix;
  if (version) path += "?version=" + std::to_string(*version);
  return path;
}

template <typename T>
Result<T> Field(const nlohmann::json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end()) return ProtocolError(std::string("missing field \"") + name + "\"");
  try {
    return it->get<T>();
  } catch (const nlohmann::json::exception&) {
    return ProtocolError(std::string("field \"") + name + "\" has the wrong type");
  }
}

Result<nlohmann::json> ParseJsonObject(const std::string& body) {
  nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return ProtocolError("body is not a JSON object");
  return j;
}

// JSON body "{<fields>, "content_base64": "<b64>"}" as three slices, so that a 64 MiB content
// is not copied once more into a JSON string and again into a request buffer.
struct ContentBody {
  std::string head;
  std::string base64;
  std::string tail = "\"}";
  std::vector<std::string_view> Parts() const { return {head, base64, tail}; }
};

Result<ContentBody> MakeContentBody(const nlohmann::json& fields, std::string_view content) {
  ContentBody body;
  try {
    body.head = fields.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
  } catch (const nlohmann::json::exception&) {
    return MakeError(ErrorKind::kClient, "invalid request", "a text field is not valid UTF-8");
  }
  body.head.pop_back();  // the closing brace
  if (!fields.empty()) body.head += ',';
  body.head += "\"content_base64\":\"";
  body.base64 = crypto::Base64Encode(content);
  return body;
}

}  // namespace

std::string_view ErrorKindName(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kUnavailable:
      return "unavailable";
    case ErrorKind::kInvalid:
      return "invalid";
    case ErrorKind::kUnauthenticated:
      return "unauthenticated";
    case ErrorKind::kForbidden:
      return "forbidden";
    case ErrorKind::kNotFound:
      return "not-found";
    case ErrorKind::kShredded:
      return "shredded";
    case ErrorKind::kTooLarge:
      return "too-large";
    case ErrorKind::kIntegrity:
      return "integrity-failure";
    case ErrorKind::kDiskFull:
      return "disk-full";
    case ErrorKind::kServer:
      return "server-error";
    case ErrorKind::kProtocol:
      return "protocol-error";
    case ErrorKind::kClient:
      return "client-error";
  }
  return "unknown";
}

std::string Error::Message() const {
  if (detail.empty()) return title;
  return title + ": " + detail;
}

Status Error::ToStatus() const {
  StatusCode code = StatusCode::kInternal;
  switch (kind) {
    case ErrorKind::kUnavailable:
      code = StatusCode::kUnavailable;
      break;
    case ErrorKind::kInvalid:
    case ErrorKind::kClient:
      code = StatusCode::kInvalidArgument;
      break;
    case ErrorKind::kUnauthenticated:
      code = StatusCode::kUnauthenticated;
      break;
    case ErrorKind::kForbidden:
      code = StatusCode::kPermissionDenied;
      break;
    case ErrorKind::kNotFound:
    case ErrorKind::kShredded:
      code = StatusCode::kNotFound;
      break;
    case ErrorKind::kTooLarge:
    case ErrorKind::kDiskFull:
      code = StatusCode::kResourceExhausted;
      break;
    case ErrorKind::kIntegrity:
      code = StatusCode::kDataLoss;
      break;
    case ErrorKind::kServer:
    case ErrorKind::kProtocol:
      code = StatusCode::kInternal;
      break;
  }
  return {code, Message()};
}

Error ErrorFromResponse(int http_status, const std::string& content_type, const std::string& body) {
  Error e;
  e.http_status = http_status;
  if (content_type.find("json") != std::string::npos) {
    nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (j.is_object()) {
      auto str = [&j](const char* key) -> std::string {
        auto it = j.find(key);
        return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
      };
      e.type = str("type");
      e.title = str("title");
      e.detail = str("detail");
      e.request_id = str("request_id");
    }
  }
  e.kind = KindForStatus(http_status, e.type);
  if (e.title.empty()) {
    e.title = Poco::Net::HTTPResponse::getReasonForStatus(
        static_cast<Poco::Net::HTTPResponse::HTTPStatus>(http_status));
  }
  return e;
}

nlohmann::json ToJson(const RecordMetadata& m) {
  nlohmann::json j = {
      {"record_id", m.record_id},
      {"version", m.version},
      {"patient_id", m.patient_id},
      {"category", m.category},
      {"content_type", m.content_type},
      {"encounter_date", m.encounter_date},
      {"author", m.author},
      {"created", m.created},
      {"content_bytes", m.content_bytes},
  };
  if (m.version > 1) j["amendment_reason"] = m.amendment_reason;
  return j;
}

nlohmann::json ToJson(const VaultStatus& s) {
  return {{"version", s.version},
          {"uptime_seconds", s.uptime_seconds},
          {"audit_entries", s.audit_entries},
          {"epochs", s.epochs},
          {"disk",
           {{"free_bytes", s.disk.free_bytes},
            {"reserve_bytes", s.disk.reserve_bytes},
            {"live_data_bytes", s.disk.live_data_bytes}}}};
}

#define PV_CLIENT_ASSIGN(lhs, expr)        \
  do {                                     \
    auto pv_r_ = (expr);                   \
    if (!pv_r_.ok()) return pv_r_.error(); \
    lhs = std::move(pv_r_).value();        \
  } while (0)

Result<RecordMetadata> MetadataFromJson(const nlohmann::json& j) {
  if (!j.is_object()) return ProtocolError("record metadata is not a JSON object");
  RecordMetadata m;
  PV_CLIENT_ASSIGN(m.record_id, Field<std::string>(j, "record_id"));
  PV_CLIENT_ASSIGN(m.version, Field<uint32_t>(j, "version"));
  PV_CLIENT_ASSIGN(m.patient_id, Field<std::string>(j, "patient_id"));
  PV_CLIENT_ASSIGN(m.category, Field<std::string>(j, "category"));
  PV_CLIENT_ASSIGN(m.content_type, Field<std::string>(j, "content_type"));
  PV_CLIENT_ASSIGN(m.encounter_date, Field<std::string>(j, "encounter_date"));
  PV_CLIENT_ASSIGN(m.author, Field<std::string>(j, "author"));
  PV_CLIENT_ASSIGN(m.created, Field<std::string>(j, "created"));
  PV_CLIENT_ASSIGN(m.content_bytes, Field<uint64_t>(j, "content_bytes"));
  if (j.contains("amendment_reason")) {
    PV_CLIENT_ASSIGN(m.amendment_reason, Field<std::string>(j, "amendment_reason"));
  }
  return m;
}

// One kept-alive HTTP/1.1 connection over the Unix socket. Deriving from HTTPSession gives
// Poco's header parser and body streams without HTTPClientSession's automatic reconnect, which
// would open a TCP connection to its host name: this class can only ever talk to the socket.
class Client::Connection : public Poco::Net::HTTPSession {
 public:
  explicit Connection(const Poco::Net::StreamSocket& socket) : HTTPSession(socket, true) {}

  // True if the daemon has closed the idle connection (or sent unsolicited bytes).
  bool Stale() {
    if (buffered() > 0) return true;
    try {
      return socket().poll(Poco::Timespan(0),
                           Poco::Net::Socket::SELECT_READ | Poco::Net::Socket::SELECT_ERROR);
    } catch (const Poco::Exception&) {
      return true;
    }
  }

  // Writes every byte; false if the connection failed. MSG_NOSIGNAL: no SIGPIPE.
  bool SendAll(std::string_view data) {
    const int fd = socket().impl()->sockfd();
    while (!data.empty()) {
      ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  struct Received {
    Result<RawResponse> response;
    bool nothing = false;   // the connection ended before any response byte
    bool reusable = false;  // the connection may carry another request
  };

  // Reads one complete response.
  Received Receive(uint64_t limit) {
    Received r{.response = UnavailableError("no response")};
    Poco::Net::HTTPResponse response;
    try {
      Poco::Net::HTTPHeaderInputStream header_in(*this);
      response.read(header_in);
    } catch (const Poco::Net::NoMessageException&) {
      // The header stream reports a socket error (e.g. a receive timeout) as "no message".
      if (dynamic_cast<const Poco::TimeoutException*>(networkException()) != nullptr) {
        r.response = UnavailableError("timed out waiting for the daemon's response");
      } else {
        r.nothing = true;
        r.response = UnavailableError("the daemon closed the connection without answering");
      }
      return r;
    } catch (const Poco::TimeoutException&) {
      r.response = UnavailableError("timed out waiting for the daemon's response");
      return r;
    } catch (const Poco::Net::MessageException& e) {
      r.response = ProtocolError(e.displayText());
      return r;
    } catch (const Poco::Exception& e) {
      r.response = UnavailableError("connection to the daemon was lost: " + e.displayText());
      return r;
    }

    RawResponse raw;
    raw.status = static_cast<int>(response.getStatus());
    raw.content_type = response.getContentType();
    try {
      auto read = ReadBody(response, limit);
      if (!read) {
        r.response = ProtocolError("response larger than " + std::to_string(limit) + " bytes");
        return r;
      }
      raw.body = std::move(*read);
    } catch (const Poco::TimeoutException&) {
      r.response = UnavailableError("timed out reading the daemon's response");
      return r;
    } catch (const Poco::Exception& e) {
      r.response = UnavailableError("connection to the daemon was lost: " + e.displayText());
      return r;
    }
    r.reusable = response.getKeepAlive() &&
                 (response.hasContentLength() || response.getChunkedTransferEncoding());
    r.response = std::move(raw);
    return r;
  }

 private:
  // The body after the headers in `response` have been read. Throws Poco exceptions on I/O
  // failure; returns nullopt if the body exceeds `limit`.
  std::optional<std::string> ReadBody(const Poco::Net::HTTPResponse& response, uint64_t limit) {
    std::string body;
    std::unique_ptr<std::istream> in;
    if (response.getChunkedTransferEncoding()) {
      in = std::make_unique<Poco::Net::HTTPChunkedInputStream>(*this);
    } else if (response.hasContentLength()) {
      const auto length = static_cast<uint64_t>(response.getContentLength64());
      if (length > limit) return std::nullopt;
      body.reserve(length);
      in = std::make_unique<Poco::Net::HTTPFixedLengthInputStream>(*this, length);
    } else {
      in = std::make_unique<Poco::Net::HTTPInputStream>(*this);
    }
    char buf[65536];
    while (in->read(buf, sizeof(buf)) || in->gcount() > 0) {
      body.append(buf, static_cast<size_t>(in->gcount()));
      if (body.size() > limit) return std::nullopt;
    }
    if (networkException() != nullptr) networkException()->rethrow();
    if (response.hasContentLength() &&
        body.size() != static_cast<uint64_t>(response.getContentLength64())) {
      throw Poco::Net::MessageException("response body shorter than its Content-Length");
    }
    return body;
  }
};

Client::Client(ClientOptions options) : options_(std::move(options)) {}
Client::Client(const std::string& socket_path, std::string token)
    : Client(ClientOptions{.socket_path = socket_path, .token = std::move(token)}) {}
Client::~Client() = default;
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;

uint64_t Client::connections_opened() const { return connections_opened_; }

void Client::Disconnect() { connection_.reset(); }

Result<Client::Connection*> Client::Connect() {
  const std::string& path = options_.socket_path;
  Poco::Net::SocketAddress address;
  try {
    address = Poco::Net::SocketAddress(Poco::Net::SocketAddress::UNIX_LOCAL, path);
  } catch (const Poco::Exception&) {
    return MakeError(ErrorKind::kClient, "invalid socket path",
                     "\"" + path + "\" is not a usable Unix socket path");
  }
  const Poco::Timespan timeout(
      std::chrono::duration_cast<std::chrono::microseconds>(options_.timeout).count());
  try {
    Poco::Net::StreamSocket socket(Poco::Net::SocketAddress::UNIX_LOCAL);
    socket.connect(address, timeout);
    socket.setReceiveTimeout(timeout);
    socket.setSendTimeout(timeout);
    connection_ = std::make_unique<Connection>(socket);
  } catch (const Poco::TimeoutException&) {
    return UnavailableError("timed out connecting to " + path);
  } catch (const Poco::Net::ConnectionRefusedException&) {
    return UnavailableError("nothing is listening on " + path + " (is phivaultd running?)");
  } catch (const Poco::Exception& e) {
    const int code = e.code();
    if (code == ENOENT) return UnavailableError("no daemon socket at " + path);
    if (code == EACCES) return UnavailableError("permission denied on " + path);
    if (code == ECONNREFUSED) {
      return UnavailableError("nothing is listening on " + path + " (is phivaultd running?)");
    }
    return UnavailableError("cannot connect to " + path + ": " + e.displayText());
  }
  ++connections_opened_;
  return connection_.get();
}

Result<Client::RawResponse> Client::Exchange(const std::string& method, const std::string& path,
                                             const Actor* actor,
                                             const std::vector<std::string_view>& body) {
  std::string head = method + " " + path + " HTTP/1.1\r\nHost: localhost\r\n";
  auto add_header = [&head](std::string_view name, std::string_view value) -> bool {
    if (!IsSafeHeaderValue(value)) return false;
    head.append(name).append(": ").append(value).append("\r\n");
    return true;
  };
  bool headers_ok = true;
  if (actor != nullptr) {
    if (!options_.token.empty())
      headers_ok &= add_header("Authorization", "Bearer " + options_.token);
    headers_ok &= add_header("X-Phivault-User", actor->user);
    headers_ok &= add_header("X-Phivault-Role", actor->role);
    headers_ok &= add_header("X-Phivault-Purpose", actor->purpose);
    if (!actor->request_id.empty()) headers_ok &= add_header("X-Request-Id", actor->request_id);
  }
  if (!headers_ok) {
    return MakeError(ErrorKind::kClient, "invalid request",
                     "token, user, role, purpose and request id must not contain control "
                     "characters");
  }
  size_t body_size = 0;
  for (std::string_view part : body) body_size += part.size();
  if (body_size > 0 || method == "POST") {
    head +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body_size) + "\r\n";
  }
  head += "Accept: application/json, application/problem+json, */*\r\n\r\n";

  // One retry, only when a kept-alive connection turns out to have been closed by the daemon
  // before it could have acted on the request: nothing came back, and either the request could
  // not be sent or it was a GET.
  for (int attempt = 0;; ++attempt) {
    bool reused = false;
    if (connection_ != nullptr && connection_->Stale()) connection_.reset();
    if (connection_ != nullptr) {
      reused = true;
    } else {
      auto connected = Connect();
      if (!connected.ok()) return connected.error();
    }
    Connection& conn = *connection_;

    bool sent = conn.SendAll(head);
    for (std::string_view part : body) sent = sent && conn.SendAll(part);
    // Even when sending failed, the daemon may have answered before it stopped reading (e.g.
    // 413 for an oversized body): that answer is what the caller needs to see.
    Connection::Received received = conn.Receive(options_.max_response_bytes);
    if (received.response.ok()) {
      if (!sent || !received.reusable) connection_.reset();
      return std::move(received.response);
    }
    connection_.reset();
    if (received.nothing && reused && attempt == 0 && (!sent || method == "GET")) continue;
    if (received.nothing && !sent) {
      return UnavailableError("connection to the daemon was lost while sending the request");
    }
    return received.response.error();
  }
}

Result<Client::RawResponse> Client::Send(const std::string& method, const std::string& path,
                                         const Actor* actor, const std::string& body) {
  std::vector<std::string_view> parts;
  if (!body.empty()) parts.push_back(body);
  return Exchange(method, path, actor, parts);
}

namespace {

// 2xx with a JSON object body, or the Error the response stands for.
Result<nlohmann::json> JsonOrError(Result<Client::RawResponse> r) {
  if (!r.ok()) return r.error();
  if (r->status < 200 || r->status > 299) {
    return ErrorFromResponse(r->status, r->content_type, r->body);
  }
  return ParseJsonObject(r->body);
}

Result<RecordMetadata> MetadataOrError(Result<Client::RawResponse> r) {
  auto j = JsonOrError(std::move(r));
  if (!j.ok()) return j.error();
  return MetadataFromJson(*j);
}

}  // namespace

Result<Empty> Client::Health() {
  auto j = JsonOrError(Exchange("GET", "/v1/health", nullptr, {}));
  if (!j.ok()) return j.error();
  auto status = j->find("status");
  if (status == j->end() || *status != "ok") return ProtocolError("health status is not \"ok\"");
  return Empty{};
}

Result<Empty> Client::WaitUntilHealthy(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto r = Health();
    if (r.ok() || std::chrono::steady_clock::now() >= deadline) return r;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

Result<VaultStatus> Client::Status(const Actor& actor) {
  auto j = JsonOrError(Exchange("GET", "/v1/status", &actor, {}));
  if (!j.ok()) return j.error();
  VaultStatus s;
  PV_CLIENT_ASSIGN(s.version, Field<std::string>(*j, "version"));
  PV_CLIENT_ASSIGN(s.uptime_seconds, Field<int64_t>(*j, "uptime_seconds"));
  PV_CLIENT_ASSIGN(s.audit_entries, Field<uint64_t>(*j, "audit_entries"));
  PV_CLIENT_ASSIGN(s.epochs, Field<uint64_t>(*j, "epochs"));
  nlohmann::json disk;
  PV_CLIENT_ASSIGN(disk, Field<nlohmann::json>(*j, "disk"));
  PV_CLIENT_ASSIGN(s.disk.free_bytes, Field<uint64_t>(disk, "free_bytes"));
  PV_CLIENT_ASSIGN(s.disk.reserve_bytes, Field<uint64_t>(disk, "reserve_bytes"));
  PV_CLIENT_ASSIGN(s.disk.live_data_bytes, Field<uint64_t>(disk, "live_data_bytes"));
  return s;
}

Result<RecordMetadata> Client::CreateRecord(const Actor& actor, const NewRecord& record) {
  const nlohmann::json fields = {{"patient_id", record.patient_id},
                                 {"category", record.category},
                                 {"content_type", record.content_type},
                                 {"encounter_date", record.encounter_date},
                                 {"author", record.author}};
  auto body = MakeContentBody(fields, record.content);
  if (!body.ok()) return body.error();
  return MetadataOrError(Exchange("POST", "/v1/records", &actor, body->Parts()));
}

Result<Record> Client::ReadRecord(const Actor& actor, const std::string& record_id,
                                  std::optional<uint32_t> version) {
  auto j = JsonOrError(Exchange("GET", RecordPath(record_id, "", version), &actor, {}));
  if (!j.ok()) return j.error();
  Record record;
  PV_CLIENT_ASSIGN(record.metadata, MetadataFromJson(*j));
  std::string encoded;
  PV_CLIENT_ASSIGN(encoded, Field<std::string>(*j, "content_base64"));
  auto decoded = crypto::Base64Decode(encoded);
  if (!decoded.ok()) return ProtocolError("content_base64 is not valid base64");
  record.content = std::move(decoded).value();
  return record;
}

Result<Content> Client::ReadContent(const Actor& actor, const std::string& record_id,
                                    std::optional<uint32_t> version) {
  auto r = Exchange("GET", RecordPath(record_id, "/content", version), &actor, {});
  if (!r.ok()) return r.error();
  if (r->status < 200 || r->status > 299) {
    return ErrorFromResponse(r->status, r->content_type, r->body);
  }
  return Content{.content_type = std::move(r->content_type), .bytes = std::move(r->body)};
}

Result<RecordMetadata> Client::ReadMetadata(const Actor& actor, const std::string& record_id,
                                            std::optional<uint32_t> version) {
  return MetadataOrError(Exchange("GET", RecordPath(record_id, "/metadata", version), &actor, {}));
}

Result<RecordMetadata> Client::AmendRecord(const Actor& actor, const std::string& record_id,
                                           const Amendment& amendment) {
  nlohmann::json fields = {{"reason", amendment.reason}};
  if (amendment.content_type) fields["content_type"] = *amendment.content_type;
  if (amendment.encounter_date) fields["encounter_date"] = *amendment.encounter_date;
  if (amendment.author) fields["author"] = *amendment.author;
  auto body = MakeContentBody(fields, amendment.content);
  if (!body.ok()) return body.error();
  return MetadataOrError(
      Exchange("POST", RecordPath(record_id, "/versions", std::nullopt), &actor, body->Parts()));
}

Result<std::vector<RecordMetadata>> Client::SearchPatient(const Actor& actor,
                                                          const std::string& patient_id) {
  std::string body;
  try {
    body = nlohmann::json{{"patient_id", patient_id}}.dump(-1, ' ', false,
                                                           nlohmann::json::error_handler_t::strict);
  } catch (const nlohmann::json::exception&) {
    return MakeError(ErrorKind::kClient, "invalid request", "patient id is not valid UTF-8");
  }
  auto j = JsonOrError(Exchange("POST", "/v1/records/_search", &actor, {body}));
  if (!j.ok()) return j.error();
  auto records = j->find("records");
  if (records == j->end() || !records->is_array()) {
    return ProtocolError("missing array \"records\"");
  }
  std::vector<RecordMetadata> out;
  out.reserve(records->size());
  for (const auto& item : *records) {
    RecordMetadata m;
    PV_CLIENT_ASSIGN(m, MetadataFromJson(item));
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace phivault::client
