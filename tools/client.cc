#include "tools/client.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <string>
#include <thread>

#include <Poco/Exception.h>
#include <Poco/Net/HTTPHeaderStream.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSession.h>
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
    case 409:
      return ErrorKind::kConflict;
    case 422:
      return ErrorKind::kInvalidPolicy;
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

// `prefix` + the id as one path segment + `suffix`.
std::string IdPath(std::string_view prefix, const std::string& id, std::string_view suffix) {
  std::string path(prefix);
  Poco::URI::encode(id, "/?#[]@!$&'()*+,;=%", path);
  path += suffix;
  return path;
}

std::string RecordPath(const std::string& record_id, std::string_view suffix,
                       std::optional<uint32_t> version) {
  std::string path = IdPath("/v1/records/", record_id, suffix);
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
    case ErrorKind::kConflict:
      return "conflict";
    case ErrorKind::kInvalidPolicy:
      return "invalid-policy";
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
  std::string out = detail.empty() ? title : title + ": " + detail;
  if (!rule.empty()) out += " (rule: " + rule + ")";
  return out;
}

Status Error::ToStatus() const {
  StatusCode code = StatusCode::kInternal;
  switch (kind) {
    case ErrorKind::kUnavailable:
      code = StatusCode::kUnavailable;
      break;
    case ErrorKind::kInvalid:
    case ErrorKind::kInvalidPolicy:
    case ErrorKind::kClient:
      code = StatusCode::kInvalidArgument;
      break;
    case ErrorKind::kConflict:
      code = StatusCode::kFailedPrecondition;
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
      e.rule = str("rule");
      e.certificate = str("certificate");
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

nlohmann::json ToJson(const InclusionProofResult& p) {
  return {{"seq", p.seq},
          {"leaf_index", p.leaf_index},
          {"tree_size", p.tree_size},
          {"leaf_hash", p.leaf_hash_hex},
          {"path", p.path_hex}};
}

nlohmann::json ToJson(const ConsistencyProofResult& p) {
  return {{"from", p.from}, {"to", p.to}, {"path", p.path_hex}};
}

nlohmann::json ToJson(const VaultStatus& s) {
  return {{"version", s.version},
          {"uptime_seconds", s.uptime_seconds},
          {"audit_entries", s.audit_entries},
          {"epochs", s.epochs},
          {"records", s.records},
          {"patients", s.patients},
          {"disk",
           {{"free_bytes", s.disk.free_bytes},
            {"reserve_bytes", s.disk.reserve_bytes},
            {"live_data_bytes", s.disk.live_data_bytes},
            {"table_bytes", s.disk.table_bytes},
            {"blob_bytes", s.disk.blob_bytes},
            {"log_bytes", s.disk.log_bytes}}}};
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

  // Reads one complete response. The body of a 2xx response goes to `sink` if it is set.
  Received Receive(uint64_t limit, const ChunkSink* sink) {
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
    const bool streamed = sink != nullptr && raw.status >= 200 && raw.status <= 299;
    const ChunkSink buffer = [&raw, limit](std::string_view piece) {
      raw.body.append(piece);
      return raw.body.size() <= limit;
    };
    try {
      switch (ReadBody(response, streamed ? *sink : buffer)) {
        case BodyEnd::kComplete:
          break;
        case BodyEnd::kStopped:
          r.response =
              streamed ? MakeError(ErrorKind::kClient, "output failed",
                                   "the response could not be written out; it is incomplete")
                       : ProtocolError("response larger than " + std::to_string(limit) + " bytes");
          return r;
        case BodyEnd::kTruncated:
          r.response = UnavailableError(
              "response incomplete: the daemon ended it early (for an export: it failed after "
              "it began; what was received is truncated)");
          return r;
      }
    } catch (const Poco::TimeoutException&) {
      r.response = UnavailableError("timed out reading the daemon's response");
      return r;
    } catch (const Poco::Net::MessageException& e) {
      r.response = ProtocolError(e.displayText());
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
  enum class BodyEnd { kComplete, kStopped, kTruncated };

  // Reads the body after the headers in `response`, passing it to `consume` piece by piece.
  // Chunked bodies are decoded here, strictly: a body that ends without its final zero-size
  // chunk is kTruncated (Poco's decoder would take it for a complete one). Throws Poco
  // exceptions on I/O failure and MessageException on malformed framing.
  BodyEnd ReadBody(const Poco::Net::HTTPResponse& response, const ChunkSink& consume) {
    char buf[65536];
    if (response.getChunkedTransferEncoding()) {
      for (;;) {
        std::optional<std::string> line = ReadLine();
        if (!line) return BodyEnd::kTruncated;
        const std::string_view digits = std::string_view(*line).substr(0, line->find(';'));
        uint64_t size = 0;
        const auto [end, ec] =
            std::from_chars(digits.data(), digits.data() + digits.size(), size, 16);
        if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size()) {
          throw Poco::Net::MessageException("malformed chunk size in the daemon's response");
        }
        if (size == 0) {
          // Trailer fields, if any, up to the blank line that ends the message.
          for (;;) {
            line = ReadLine();
            if (!line) return BodyEnd::kTruncated;
            if (line->empty()) return BodyEnd::kComplete;
          }
        }
        for (uint64_t left = size; left > 0;) {
          const int n =
              read(buf, static_cast<std::streamsize>(std::min<uint64_t>(left, sizeof buf)));
          if (n <= 0) return BodyEnd::kTruncated;
          if (!consume(std::string_view(buf, static_cast<size_t>(n)))) return BodyEnd::kStopped;
          left -= static_cast<uint64_t>(n);
        }
        line = ReadLine();
        if (!line) return BodyEnd::kTruncated;
        if (!line->empty()) throw Poco::Net::MessageException("chunk longer than its size");
      }
    }
    if (response.hasContentLength()) {
      for (auto left = static_cast<uint64_t>(response.getContentLength64()); left > 0;) {
        const int n = read(buf, static_cast<std::streamsize>(std::min<uint64_t>(left, sizeof buf)));
        if (n <= 0) return BodyEnd::kTruncated;
        if (!consume(std::string_view(buf, static_cast<size_t>(n)))) return BodyEnd::kStopped;
        left -= static_cast<uint64_t>(n);
      }
      return BodyEnd::kComplete;
    }
    // Neither length nor chunking: the body ends when the daemon closes the connection.
    for (;;) {
      const int n = read(buf, sizeof buf);
      if (n <= 0) return BodyEnd::kComplete;
      if (!consume(std::string_view(buf, static_cast<size_t>(n)))) return BodyEnd::kStopped;
    }
  }

  // One CRLF- (or LF-) terminated line without its terminator; nullopt at end of stream.
  std::optional<std::string> ReadLine() {
    constexpr size_t kMaxLine = 4096;
    std::string line;
    for (;;) {
      const int ch = get();
      if (ch == std::char_traits<char>::eof()) return std::nullopt;
      if (ch == '\n') break;
      if (line.size() == kMaxLine) {
        throw Poco::Net::MessageException("chunk framing line too long in the daemon's response");
      }
      line.push_back(static_cast<char>(ch));
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return line;
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
                                             const std::vector<std::string_view>& body,
                                             const ChunkSink* sink, std::string_view accept) {
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
    if (actor->break_glass_reason) {
      headers_ok &= add_header("X-Phivault-Break-Glass-Reason", *actor->break_glass_reason);
    }
    if (actor->consent) headers_ok &= add_header("X-Phivault-Consent", *actor->consent);
  }
  if (!headers_ok) {
    return MakeError(ErrorKind::kClient, "invalid request",
                     "token, user, role, purpose, request id, break-glass reason and consent "
                     "must not contain control characters");
  }
  size_t body_size = 0;
  for (std::string_view part : body) body_size += part.size();
  if (body_size > 0 || method == "POST") {
    head +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body_size) + "\r\n";
  }
  head += "Accept: ";
  head += accept.empty() ? "application/json, application/problem+json, */*" : accept;
  head += "\r\n\r\n";

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
    Connection::Received received = conn.Receive(options_.max_response_bytes, sink);
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

// The request body for `fields`; kClient if a text field is not valid UTF-8.
Result<std::string> DumpBody(const nlohmann::json& fields) {
  try {
    return fields.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
  } catch (const nlohmann::json::exception&) {
    return MakeError(ErrorKind::kClient, "invalid request", "a text field is not valid UTF-8");
  }
}

// 2xx with any body, or the Error the response stands for.
Result<Client::RawResponse> OkOrError(Result<Client::RawResponse> r) {
  if (!r.ok()) return r.error();
  if (r->status < 200 || r->status > 299) {
    return ErrorFromResponse(r->status, r->content_type, r->body);
  }
  return r;
}

Result<Record> RecordFromJson(const nlohmann::json& j) {
  Record record;
  PV_CLIENT_ASSIGN(record.metadata, MetadataFromJson(j));
  std::string encoded;
  PV_CLIENT_ASSIGN(encoded, Field<std::string>(j, "content_base64"));
  auto decoded = crypto::Base64Decode(encoded);
  if (!decoded.ok()) return ProtocolError("content_base64 is not valid base64");
  record.content = std::move(decoded).value();
  // Daemons before the archive tier do not send it.
  if (auto a = j.find("archived"); a != j.end() && a->is_boolean()) {
    record.archived = a->get<bool>();
  }
  return record;
}

Result<uint64_t> AuditSeqOrError(Result<Client::RawResponse> r) {
  auto j = JsonOrError(std::move(r));
  if (!j.ok()) return j.error();
  return Field<uint64_t>(*j, "audit_seq");
}

bool IsHashHex(std::string_view hex) {
  return hex.size() == 64 && std::all_of(hex.begin(), hex.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
         });
}

Result<std::vector<std::string>> HashPath(const nlohmann::json& j) {
  std::vector<std::string> path;
  PV_CLIENT_ASSIGN(path, Field<std::vector<std::string>>(j, "path"));
  for (const std::string& h : path) {
    if (!IsHashHex(h)) return ProtocolError("a proof hash is not 64 hex digits");
  }
  return path;
}

void PutOptional(nlohmann::json& j, const char* name, const std::optional<std::string>& v) {
  if (v) j[name] = *v;
}

nlohmann::json DisclosureFields(const Disclosure& d) {
  nlohmann::json j = {{"recipient_name", d.recipient_name}, {"description", d.description}};
  PutOptional(j, "recipient_address", d.recipient_address);
  PutOptional(j, "basis", d.basis);
  PutOptional(j, "purpose", d.purpose);
  PutOptional(j, "purpose_statement", d.purpose_statement);
  return j;
}

Result<Report> ReportOrError(Result<Client::RawResponse> r) {
  auto ok = OkOrError(std::move(r));
  if (!ok.ok()) return ok.error();
  return Report{.content_type = std::move(ok->content_type), .body = std::move(ok->body)};
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
  PV_CLIENT_ASSIGN(s.records, Field<uint64_t>(*j, "records"));
  PV_CLIENT_ASSIGN(s.patients, Field<uint64_t>(*j, "patients"));
  nlohmann::json disk;
  PV_CLIENT_ASSIGN(disk, Field<nlohmann::json>(*j, "disk"));
  PV_CLIENT_ASSIGN(s.disk.free_bytes, Field<uint64_t>(disk, "free_bytes"));
  PV_CLIENT_ASSIGN(s.disk.reserve_bytes, Field<uint64_t>(disk, "reserve_bytes"));
  PV_CLIENT_ASSIGN(s.disk.live_data_bytes, Field<uint64_t>(disk, "live_data_bytes"));
  PV_CLIENT_ASSIGN(s.disk.table_bytes, Field<uint64_t>(disk, "table_bytes"));
  PV_CLIENT_ASSIGN(s.disk.blob_bytes, Field<uint64_t>(disk, "blob_bytes"));
  PV_CLIENT_ASSIGN(s.disk.log_bytes, Field<uint64_t>(disk, "log_bytes"));
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
  return RecordFromJson(*j);
}

Result<Content> Client::ReadContent(const Actor& actor, const std::string& record_id,
                                    std::optional<uint32_t> version) {
  auto r = OkOrError(Exchange("GET", RecordPath(record_id, "/content", version), &actor, {}));
  if (!r.ok()) return r.error();
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
  auto r = SearchPatientRecords(actor, patient_id);
  if (!r.ok()) return r.error();
  return std::move(r->records);
}

Result<PatientRecords> Client::SearchPatientRecords(const Actor& actor,
                                                    const std::string& patient_id) {
  auto body = DumpBody(nlohmann::json{{"patient_id", patient_id}});
  if (!body.ok()) return body.error();
  auto j = JsonOrError(Exchange("POST", "/v1/records/_search", &actor, {*body}));
  if (!j.ok()) return j.error();
  auto records = j->find("records");
  if (records == j->end() || !records->is_array()) {
    return ProtocolError("missing array \"records\"");
  }
  PatientRecords out;
  out.records.reserve(records->size());
  for (const auto& item : *records) {
    RecordMetadata m;
    PV_CLIENT_ASSIGN(m, MetadataFromJson(item));
    out.records.push_back(std::move(m));
  }
  // Daemons before issue 8 withhold nothing and do not send the count.
  if (j->contains("withheld")) PV_CLIENT_ASSIGN(out.withheld, Field<uint64_t>(*j, "withheld"));
  return out;
}

Result<Record> Client::DiscloseRecord(const Actor& actor, const std::string& record_id,
                                      std::optional<uint32_t> version,
                                      const Disclosure& disclosure) {
  nlohmann::json fields = DisclosureFields(disclosure);
  if (version) fields["version"] = *version;
  auto body = DumpBody(fields);
  if (!body.ok()) return body.error();
  auto j = JsonOrError(
      Exchange("POST", RecordPath(record_id, "/disclosures", std::nullopt), &actor, {*body}));
  if (!j.ok()) return j.error();
  return RecordFromJson(*j);
}

Result<uint64_t> Client::RecordDisclosure(const Actor& actor, const DisclosureRecord& record) {
  nlohmann::json fields = DisclosureFields(record.disclosure);
  fields["patient_id"] = record.patient_id;
  if (!record.record_ids.empty()) fields["record_ids"] = record.record_ids;
  PutOptional(fields, "disclosed_at", record.disclosed_at);
  auto body = DumpBody(fields);
  if (!body.ok()) return body.error();
  return AuditSeqOrError(Exchange("POST", "/v1/disclosures", &actor, {*body}));
}

Result<uint64_t> Client::AddSuspension(const Actor& actor, const Suspension& suspension) {
  nlohmann::json fields = {{"agency", suspension.agency},
                           {"start", suspension.start},
                           {"oral", suspension.oral},
                           {"statement", suspension.statement}};
  PutOptional(fields, "end", suspension.end);
  auto body = DumpBody(fields);
  if (!body.ok()) return body.error();
  return AuditSeqOrError(Exchange("POST", "/v1/disclosure-suspensions", &actor, {*body}));
}

Result<Report> Client::AccountingReport(const Actor& actor, const std::string& patient_id,
                                        const std::optional<std::string>& from,
                                        const std::string& format) {
  nlohmann::json fields = {{"patient_id", patient_id}, {"format", format}};
  PutOptional(fields, "from", from);
  auto body = DumpBody(fields);
  if (!body.ok()) return body.error();
  return ReportOrError(Exchange("POST", "/v1/reports/accounting", &actor, {*body}));
}

Result<Report> Client::AccessReport(const Actor& actor, const std::string& patient_id,
                                    const std::string& format) {
  auto body = DumpBody(nlohmann::json{{"patient_id", patient_id}, {"format", format}});
  if (!body.ok()) return body.error();
  return ReportOrError(Exchange("POST", "/v1/reports/access", &actor, {*body}));
}

Result<ExportInfo> Client::ExportAudit(const Actor& actor, const AuditExportQuery& query,
                                       const ChunkSink& sink) {
  nlohmann::json fields = {{"format", query.format}};
  PutOptional(fields, "from", query.from);
  PutOptional(fields, "to", query.to);
  PutOptional(fields, "patient_id", query.patient_id);
  PutOptional(fields, "user", query.user);
  PutOptional(fields, "action", query.action);
  PutOptional(fields, "outcome", query.outcome);
  auto body = DumpBody(fields);
  if (!body.ok()) return body.error();
  uint64_t bytes = 0;
  const ChunkSink counting = [&sink, &bytes](std::string_view chunk) {
    bytes += chunk.size();
    return sink(chunk);
  };
  std::string path = "/v1/audit/export";
  for (size_t i = 0; i < query.trusted_sizes.size(); ++i) {
    path += (i == 0 ? "?trusted_size=" : "&trusted_size=") + std::to_string(query.trusted_sizes[i]);
  }
  auto r = OkOrError(Exchange("POST", path, &actor, {*body}, &counting));
  if (!r.ok()) return r.error();
  return ExportInfo{.content_type = std::move(r->content_type), .bytes = bytes};
}

Result<ExportInfo> Client::ExportAudit(const Actor& actor, const AuditExportQuery& query,
                                       std::ostream& out) {
  auto r = ExportAudit(actor, query, [&out](std::string_view chunk) {
    out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    return out.good();
  });
  if (!r.ok()) return r;
  out.flush();
  if (!out.good()) {
    return MakeError(ErrorKind::kClient, "output failed",
                     "the response could not be written out; it is incomplete");
  }
  return r;
}

Result<std::string> Client::AuditVerifierKey(const Actor& actor) {
  auto j = JsonOrError(Exchange("GET", "/v1/audit/pubkey", &actor, {}));
  if (!j.ok()) return j.error();
  return Field<std::string>(*j, "verifier_key");
}

Result<std::string> Client::AuditCheckpoint(const Actor& actor, bool fresh) {
  auto r = fresh ? OkOrError(Exchange("POST", "/v1/audit/checkpoints", &actor, {"{}"}))
                 : OkOrError(Exchange("GET", "/v1/audit/checkpoint", &actor, {}));
  if (!r.ok()) return r.error();
  if (r->content_type.rfind("text/plain", 0) != 0) {
    return ProtocolError("a checkpoint must come as text/plain");
  }
  return std::move(r->body);
}

Result<InclusionProofResult> Client::InclusionProof(const Actor& actor, uint64_t seq,
                                                    std::optional<uint64_t> tree_size) {
  std::string path = "/v1/audit/proofs/inclusion?seq=" + std::to_string(seq);
  if (tree_size) path += "&tree_size=" + std::to_string(*tree_size);
  auto j = JsonOrError(Exchange("GET", path, &actor, {}));
  if (!j.ok()) return j.error();
  InclusionProofResult p;
  PV_CLIENT_ASSIGN(p.seq, Field<uint64_t>(*j, "seq"));
  PV_CLIENT_ASSIGN(p.leaf_index, Field<uint64_t>(*j, "leaf_index"));
  PV_CLIENT_ASSIGN(p.tree_size, Field<uint64_t>(*j, "tree_size"));
  PV_CLIENT_ASSIGN(p.leaf_hash_hex, Field<std::string>(*j, "leaf_hash"));
  PV_CLIENT_ASSIGN(p.path_hex, HashPath(*j));
  if (p.seq != seq || p.leaf_index + 1 != seq) {
    return ProtocolError("the inclusion proof is for another entry");
  }
  if (tree_size && p.tree_size != *tree_size) {
    return ProtocolError("the inclusion proof is for another tree size");
  }
  if (!IsHashHex(p.leaf_hash_hex)) return ProtocolError("leaf_hash is not 64 hex digits");
  return p;
}

Result<ConsistencyProofResult> Client::ConsistencyProof(const Actor& actor, uint64_t from,
                                                        uint64_t to) {
  auto j = JsonOrError(Exchange(
      "GET",
      "/v1/audit/proofs/consistency?from=" + std::to_string(from) + "&to=" + std::to_string(to),
      &actor, {}));
  if (!j.ok()) return j.error();
  ConsistencyProofResult p;
  PV_CLIENT_ASSIGN(p.from, Field<uint64_t>(*j, "from"));
  PV_CLIENT_ASSIGN(p.to, Field<uint64_t>(*j, "to"));
  PV_CLIENT_ASSIGN(p.path_hex, HashPath(*j));
  if (p.from != from || p.to != to) {
    return ProtocolError("the consistency proof is for other tree sizes");
  }
  return p;
}

namespace {

// A member that may be absent or null (nullopt), else must be a string.
Result<std::optional<std::string>> NullableString(const nlohmann::json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) {
    return ProtocolError(std::string("field \"") + name + "\" has the wrong type");
  }
  return std::optional<std::string>(it->get<std::string>());
}

// A string list that may be absent or null (empty).
Result<std::vector<std::string>> OptionalList(const nlohmann::json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return std::vector<std::string>();
  return Field<std::vector<std::string>>(j, name);
}

nlohmann::json Nullable(const std::optional<std::string>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

// Each element of the array `name` of a 2xx JSON response, parsed by `parse`.
template <typename T, typename Parse>
Result<std::vector<T>> ListOrError(Result<Client::RawResponse> r, const char* name, Parse parse) {
  auto j = JsonOrError(std::move(r));
  if (!j.ok()) return j.error();
  auto items = j->find(name);
  if (items == j->end() || !items->is_array()) {
    return ProtocolError(std::string("missing array \"") + name + "\"");
  }
  std::vector<T> out;
  out.reserve(items->size());
  for (const auto& item : *items) {
    if (!item.is_object()) {
      return ProtocolError(std::string("an element of \"") + name + "\" is not an object");
    }
    T value;
    PV_CLIENT_ASSIGN(value, parse(item));
    out.push_back(std::move(value));
  }
  return out;
}

Result<PolicyVersion> PolicyVersionFromJson(const nlohmann::json& j) {
  PolicyVersion v;
  PV_CLIENT_ASSIGN(v.name, Field<std::string>(j, "name"));
  PV_CLIENT_ASSIGN(v.sha256, Field<std::string>(j, "sha256"));
  PV_CLIENT_ASSIGN(v.in_force_from, Field<std::string>(j, "in_force_from"));
  PV_CLIENT_ASSIGN(v.in_force_until, NullableString(j, "in_force_until"));
  PV_CLIENT_ASSIGN(v.audit_seq, Field<uint64_t>(j, "audit_seq"));
  if (j.contains("text")) PV_CLIENT_ASSIGN(v.text, Field<std::string>(j, "text"));
  return v;
}

Result<BreakGlassEvent> BreakGlassEventFromJson(const nlohmann::json& j) {
  BreakGlassEvent e;
  PV_CLIENT_ASSIGN(e.id, Field<std::string>(j, "id"));
  PV_CLIENT_ASSIGN(e.user, Field<std::string>(j, "user"));
  PV_CLIENT_ASSIGN(e.role, Field<std::string>(j, "role"));
  PV_CLIENT_ASSIGN(e.application, Field<std::string>(j, "application"));
  PV_CLIENT_ASSIGN(e.patient_id, Field<std::string>(j, "patient_id"));
  PV_CLIENT_ASSIGN(e.reason, Field<std::string>(j, "reason"));
  PV_CLIENT_ASSIGN(e.opened, Field<std::string>(j, "opened"));
  PV_CLIENT_ASSIGN(e.expires, Field<std::string>(j, "expires"));
  PV_CLIENT_ASSIGN(e.closed, NullableString(j, "closed"));
  PV_CLIENT_ASSIGN(e.accesses, Field<uint64_t>(j, "accesses"));
  PV_CLIENT_ASSIGN(e.status, Field<std::string>(j, "status"));
  PV_CLIENT_ASSIGN(e.signed_off_by, NullableString(j, "signed_off_by"));
  PV_CLIENT_ASSIGN(e.signed_off_at, NullableString(j, "signed_off_at"));
  PV_CLIENT_ASSIGN(e.note, NullableString(j, "note"));
  return e;
}

Result<Restriction> RestrictionFromJson(const nlohmann::json& j) {
  Restriction r;
  PV_CLIENT_ASSIGN(r.id, Field<std::string>(j, "id"));
  PV_CLIENT_ASSIGN(r.purposes, Field<std::vector<std::string>>(j, "purposes"));
  PV_CLIENT_ASSIGN(r.record_ids, OptionalList(j, "record_ids"));
  PV_CLIENT_ASSIGN(r.categories, OptionalList(j, "categories"));
  PV_CLIENT_ASSIGN(r.recipient, Field<std::string>(j, "recipient"));
  PV_CLIENT_ASSIGN(r.note, NullableString(j, "note"));
  PV_CLIENT_ASSIGN(r.created, Field<std::string>(j, "created"));
  PV_CLIENT_ASSIGN(r.created_by, Field<std::string>(j, "created_by"));
  PV_CLIENT_ASSIGN(r.ended, NullableString(j, "ended"));
  PV_CLIENT_ASSIGN(r.ended_by, NullableString(j, "ended_by"));
  PV_CLIENT_ASSIGN(r.end_reason, NullableString(j, "end_reason"));
  return r;
}

Result<PatientRequest> PatientRequestFromJson(const nlohmann::json& j) {
  PatientRequest r;
  PV_CLIENT_ASSIGN(r.id, Field<std::string>(j, "id"));
  PV_CLIENT_ASSIGN(r.patient_id, Field<std::string>(j, "patient_id"));
  PV_CLIENT_ASSIGN(r.kind, Field<std::string>(j, "kind"));
  PV_CLIENT_ASSIGN(r.received, Field<std::string>(j, "received"));
  PV_CLIENT_ASSIGN(r.due, Field<std::string>(j, "due"));
  PV_CLIENT_ASSIGN(r.extended, Field<bool>(j, "extended"));
  PV_CLIENT_ASSIGN(r.extension_reason, NullableString(j, "extension_reason"));
  PV_CLIENT_ASSIGN(r.status, Field<std::string>(j, "status"));
  PV_CLIENT_ASSIGN(r.outcome, NullableString(j, "outcome"));
  PV_CLIENT_ASSIGN(r.closed, NullableString(j, "closed"));
  PV_CLIENT_ASSIGN(r.delivered, NullableString(j, "delivered"));
  PV_CLIENT_ASSIGN(r.overdue, Field<bool>(j, "overdue"));
  return r;
}

}  // namespace

nlohmann::json ToJson(const PolicyVersion& v) {
  nlohmann::json j = {{"name", v.name},
                      {"sha256", v.sha256},
                      {"in_force_from", v.in_force_from},
                      {"in_force_until", Nullable(v.in_force_until)},
                      {"audit_seq", v.audit_seq}};
  if (!v.text.empty()) j["text"] = v.text;
  return j;
}

nlohmann::json ToJson(const PolicyCheckResult& r) {
  return {{"allowed", r.allowed},
          {"rule", r.rule},
          {"explanation", r.explanation},
          {"category", r.category},
          {"is_author", r.is_author}};
}

nlohmann::json ToJson(const BreakGlassEvent& e) {
  return {{"id", e.id},
          {"user", e.user},
          {"role", e.role},
          {"application", e.application},
          {"patient_id", e.patient_id},
          {"reason", e.reason},
          {"opened", e.opened},
          {"expires", e.expires},
          {"closed", Nullable(e.closed)},
          {"accesses", e.accesses},
          {"status", e.status},
          {"signed_off_by", Nullable(e.signed_off_by)},
          {"signed_off_at", Nullable(e.signed_off_at)},
          {"note", Nullable(e.note)}};
}

nlohmann::json ToJson(const Restriction& r) {
  return {{"id", r.id},
          {"purposes", r.purposes},
          {"record_ids", r.record_ids},
          {"categories", r.categories},
          {"recipient", r.recipient},
          {"note", Nullable(r.note)},
          {"created", r.created},
          {"created_by", r.created_by},
          {"ended", Nullable(r.ended)},
          {"ended_by", Nullable(r.ended_by)},
          {"end_reason", Nullable(r.end_reason)}};
}

nlohmann::json ToJson(const PatientRequest& r) {
  return {{"id", r.id},
          {"patient_id", r.patient_id},
          {"kind", r.kind},
          {"received", r.received},
          {"due", r.due},
          {"extended", r.extended},
          {"extension_reason", Nullable(r.extension_reason)},
          {"status", r.status},
          {"outcome", Nullable(r.outcome)},
          {"closed", Nullable(r.closed)},
          {"delivered", Nullable(r.delivered)},
          {"overdue", r.overdue}};
}

nlohmann::json ToJson(const ConfidentialContact& c) {
  return {{"patient_id", c.patient_id},
          {"address", c.address},
          {"channel", c.channel},
          {"note", Nullable(c.note)},
          {"updated", c.updated}};
}

Result<PolicyReloadResult> Client::ReloadPolicy(const Actor& actor) {
  auto j = JsonOrError(Exchange("POST", "/v1/policy/reload", &actor, {"{}"}));
  if (!j.ok()) return j.error();
  PolicyReloadResult r;
  PV_CLIENT_ASSIGN(r.name, Field<std::string>(*j, "name"));
  PV_CLIENT_ASSIGN(r.sha256, Field<std::string>(*j, "sha256"));
  PV_CLIENT_ASSIGN(r.rules, Field<uint64_t>(*j, "rules"));
  PV_CLIENT_ASSIGN(r.changed, Field<bool>(*j, "changed"));
  PV_CLIENT_ASSIGN(r.audit_seq, Field<uint64_t>(*j, "audit_seq"));
  return r;
}

Result<PolicyVersion> Client::ShowPolicy(const Actor& actor, const std::optional<std::string>& at) {
  std::string path = "/v1/policy";
  if (at) {
    path += "?at=";
    Poco::URI::encode(*at, "/?#[]@!$&'()*+,;=%", path);
  }
  auto j = JsonOrError(Exchange("GET", path, &actor, {}));
  if (!j.ok()) return j.error();
  PolicyVersion v;
  PV_CLIENT_ASSIGN(v, PolicyVersionFromJson(*j));
  PV_CLIENT_ASSIGN(v.text, Field<std::string>(*j, "text"));
  return v;
}

Result<std::vector<PolicyVersion>> Client::PolicyHistory(const Actor& actor) {
  return ListOrError<PolicyVersion>(Exchange("GET", "/v1/policy/history", &actor, {}), "versions",
                                    PolicyVersionFromJson);
}

Result<PolicyCheckResult> Client::CheckPolicy(const Actor& actor, const PolicyCheckQuery& query) {
  nlohmann::json fields = {{"as_user", query.as_user}, {"role", query.role},
                           {"purpose", query.purpose}, {"action", query.action},
                           {"consent", query.consent}, {"break_glass", query.break_glass}};
  PutOptional(fields, "record_id", query.record_id);
  if (query.version) fields["version"] = *query.version;
  PutOptional(fields, "category", query.category);
  if (query.author) fields["author"] = true;
  auto body = DumpBody(fields);
  if (!body.ok()) return body.error();
  auto j = JsonOrError(Exchange("POST", "/v1/policy/check", &actor, {*body}));
  if (!j.ok()) return j.error();
  PolicyCheckResult r;
  PV_CLIENT_ASSIGN(r.allowed, Field<bool>(*j, "allowed"));
  PV_CLIENT_ASSIGN(r.rule, Field<std::string>(*j, "rule"));
  PV_CLIENT_ASSIGN(r.explanation, Field<std::string>(*j, "explanation"));
  PV_CLIENT_ASSIGN(r.category, Field<std::string>(*j, "category"));
  PV_CLIENT_ASSIGN(r.is_author, Field<bool>(*j, "is_author"));
  return r;
}

Result<std::vector<BreakGlassEvent>> Client::ListBreakGlassEvents(const Actor& actor,
                                                                  bool include_all) {
  auto body = DumpBody(nlohmann::json{{"status", include_all ? "all" : "pending"}});
  if (!body.ok()) return body.error();
  return ListOrError<BreakGlassEvent>(Exchange("POST", "/v1/audit/review", &actor, {*body}),
                                      "events", BreakGlassEventFromJson);
}

Result<SignOffResult> Client::SignOffBreakGlass(const Actor& actor, const std::string& event_id,
                                                const std::string& note) {
  auto body = DumpBody(nlohmann::json{{"note", note}});
  if (!body.ok()) return body.error();
  auto j = JsonOrError(
      Exchange("POST", IdPath("/v1/audit/review/", event_id, "/sign-off"), &actor, {*body}));
  if (!j.ok()) return j.error();
  SignOffResult r;
  PV_CLIENT_ASSIGN(r.id, Field<std::string>(*j, "id"));
  PV_CLIENT_ASSIGN(r.signed_off_by, Field<std::string>(*j, "signed_off_by"));
  PV_CLIENT_ASSIGN(r.signed_off_at, Field<std::string>(*j, "signed_off_at"));
  PV_CLIENT_ASSIGN(r.audit_seq, Field<uint64_t>(*j, "audit_seq"));
  return r;
}

Result<Created> Client::AddRestriction(const Actor& actor, const NewRestriction& restriction) {
  nlohmann::json fields = {{"patient_id", restriction.patient_id},
                           {"purposes", restriction.purposes},
                           {"recipient", restriction.recipient}};
  if (!restriction.record_ids.empty()) fields["record_ids"] = restriction.record_ids;
  if (!restriction.categories.empty()) fields["categories"] = restriction.categories;
  PutOptional(fields, "note", restriction.note);
  auto body = DumpBody(fields);
  if (!body.ok()) return body.error();
  auto j = JsonOrError(Exchange("POST", "/v1/restrictions", &actor, {*body}));
  if (!j.ok()) return j.error();
  Created c;
  PV_CLIENT_ASSIGN(c.id, Field<std::string>(*j, "id"));
  PV_CLIENT_ASSIGN(c.audit_seq, Field<uint64_t>(*j, "audit_seq"));
  return c;
}

Result<std::vector<Restriction>> Client::ListRestrictions(const Actor& actor,
                                                          const std::string& patient_id,
                                                          bool include_ended) {
  auto body =
      DumpBody(nlohmann::json{{"patient_id", patient_id}, {"include_ended", include_ended}});
  if (!body.ok()) return body.error();
  return ListOrError<Restriction>(Exchange("POST", "/v1/restrictions/_search", &actor, {*body}),
                                  "restrictions", RestrictionFromJson);
}

Result<RestrictionEnded> Client::EndRestriction(const Actor& actor, const std::string& patient_id,
                                                const std::string& restriction_id,
                                                const std::string& reason) {
  auto body = DumpBody(nlohmann::json{{"patient_id", patient_id}, {"reason", reason}});
  if (!body.ok()) return body.error();
  auto j = JsonOrError(
      Exchange("POST", IdPath("/v1/restrictions/", restriction_id, "/end"), &actor, {*body}));
  if (!j.ok()) return j.error();
  RestrictionEnded r;
  PV_CLIENT_ASSIGN(r.id, Field<std::string>(*j, "id"));
  PV_CLIENT_ASSIGN(r.ended, Field<std::string>(*j, "ended"));
  PV_CLIENT_ASSIGN(r.audit_seq, Field<uint64_t>(*j, "audit_seq"));
  return r;
}

Result<ExportInfo> Client::ExportPatient(const Actor& actor, const std::string& patient_id,
                                         const std::optional<std::string>& request_id,
                                         const ChunkSink& sink) {
  nlohmann::json fields = {{"patient_id", patient_id}};
  PutOptional(fields, "request_id", request_id);
  auto body = DumpBody(fields);
  if (!body.ok()) return body.error();
  uint64_t bytes = 0;
  const ChunkSink counting = [&sink, &bytes](std::string_view chunk) {
    bytes += chunk.size();
    return sink(chunk);
  };
  auto r = OkOrError(Exchange("POST", "/v1/patients/export", &actor, {*body}, &counting));
  if (!r.ok()) return r.error();
  return ExportInfo{.content_type = std::move(r->content_type), .bytes = bytes};
}

Result<ExportInfo> Client::ExportPatient(const Actor& actor, const std::string& patient_id,
                                         const std::optional<std::string>& request_id,
                                         std::ostream& out) {
  auto r = ExportPatient(actor, patient_id, request_id, [&out](std::string_view chunk) {
    out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    return out.good();
  });
  if (!r.ok()) return r;
  out.flush();
  if (!out.good()) {
    return MakeError(ErrorKind::kClient, "output failed",
                     "the response could not be written out; it is incomplete");
  }
  return r;
}

Result<PatientRequestOpened> Client::OpenPatientRequest(const Actor& actor,
                                                        const NewPatientRequest& request) {
  nlohmann::json fields = {{"patient_id", request.patient_id}, {"kind", request.kind}};
  PutOptional(fields, "received", request.received);
  PutOptional(fields, "note", request.note);
  auto body = DumpBody(fields);
  if (!body.ok()) return body.error();
  auto j = JsonOrError(Exchange("POST", "/v1/patient-requests", &actor, {*body}));
  if (!j.ok()) return j.error();
  PatientRequestOpened r;
  PV_CLIENT_ASSIGN(r.id, Field<std::string>(*j, "id"));
  PV_CLIENT_ASSIGN(r.due, Field<std::string>(*j, "due"));
  PV_CLIENT_ASSIGN(r.audit_seq, Field<uint64_t>(*j, "audit_seq"));
  return r;
}

Result<PatientRequestExtended> Client::ExtendPatientRequest(const Actor& actor,
                                                            const std::string& request_id,
                                                            const std::string& reason) {
  auto body = DumpBody(nlohmann::json{{"reason", reason}});
  if (!body.ok()) return body.error();
  auto j = JsonOrError(
      Exchange("POST", IdPath("/v1/patient-requests/", request_id, "/extend"), &actor, {*body}));
  if (!j.ok()) return j.error();
  PatientRequestExtended r;
  PV_CLIENT_ASSIGN(r.id, Field<std::string>(*j, "id"));
  PV_CLIENT_ASSIGN(r.due, Field<std::string>(*j, "due"));
  return r;
}

Result<PatientRequestClosed> Client::ClosePatientRequest(const Actor& actor,
                                                         const std::string& request_id,
                                                         const PatientRequestClosure& closure) {
  nlohmann::json fields = {{"outcome", closure.outcome}, {"delivered", closure.delivered}};
  PutOptional(fields, "note", closure.note);
  auto body = DumpBody(fields);
  if (!body.ok()) return body.error();
  auto j = JsonOrError(
      Exchange("POST", IdPath("/v1/patient-requests/", request_id, "/close"), &actor, {*body}));
  if (!j.ok()) return j.error();
  PatientRequestClosed r;
  PV_CLIENT_ASSIGN(r.id, Field<std::string>(*j, "id"));
  PV_CLIENT_ASSIGN(r.closed, Field<std::string>(*j, "closed"));
  PV_CLIENT_ASSIGN(r.audit_seq, Field<uint64_t>(*j, "audit_seq"));
  return r;
}

Result<std::vector<PatientRequest>> Client::ListPatientRequests(const Actor& actor,
                                                                const PatientRequestQuery& query) {
  nlohmann::json fields = {{"overdue", query.overdue}, {"include_closed", query.include_closed}};
  PutOptional(fields, "patient_id", query.patient_id);
  auto body = DumpBody(fields);
  if (!body.ok()) return body.error();
  return ListOrError<PatientRequest>(
      Exchange("POST", "/v1/patient-requests/_search", &actor, {*body}), "requests",
      PatientRequestFromJson);
}

Result<uint64_t> Client::SetContact(const Actor& actor, const ConfidentialContact& contact) {
  nlohmann::json fields = {{"patient_id", contact.patient_id},
                           {"address", contact.address},
                           {"channel", contact.channel}};
  PutOptional(fields, "note", contact.note);
  auto body = DumpBody(fields);
  if (!body.ok()) return body.error();
  return AuditSeqOrError(Exchange("PUT", "/v1/patients/contact", &actor, {*body}));
}

Result<ConfidentialContact> Client::GetContact(const Actor& actor, const std::string& patient_id) {
  auto body = DumpBody(nlohmann::json{{"patient_id", patient_id}});
  if (!body.ok()) return body.error();
  auto j = JsonOrError(Exchange("POST", "/v1/patients/contact/_get", &actor, {*body}));
  if (!j.ok()) return j.error();
  ConfidentialContact c;
  PV_CLIENT_ASSIGN(c.patient_id, Field<std::string>(*j, "patient_id"));
  PV_CLIENT_ASSIGN(c.address, Field<std::string>(*j, "address"));
  PV_CLIENT_ASSIGN(c.channel, Field<std::string>(*j, "channel"));
  PV_CLIENT_ASSIGN(c.note, NullableString(*j, "note"));
  PV_CLIENT_ASSIGN(c.updated, Field<std::string>(*j, "updated"));
  return c;
}

// ---- retention, legal holds, sweeps, certificates (issue 9) ----

namespace {

nlohmann::json FactDate(const std::optional<std::string>& v) {
  return v->empty() ? nlohmann::json(nullptr) : nlohmann::json(*v);
}

Result<PatientFacts> PatientFactsFromJson(const nlohmann::json& j) {
  if (!j.is_object()) return ProtocolError("\"facts\" is not an object");
  PatientFacts f;
  PV_CLIENT_ASSIGN(f.patient_id, Field<std::string>(j, "patient_id"));
  PV_CLIENT_ASSIGN(f.date_of_birth, NullableString(j, "date_of_birth"));
  PV_CLIENT_ASSIGN(f.date_of_death, NullableString(j, "date_of_death"));
  PV_CLIENT_ASSIGN(f.last_encounter, NullableString(j, "last_encounter"));
  PV_CLIENT_ASSIGN(f.updated_at, Field<std::string>(j, "updated_at"));
  PV_CLIENT_ASSIGN(f.updated_by, Field<std::string>(j, "updated_by"));
  return f;
}

Result<RecordRetention> RecordRetentionFromJson(const nlohmann::json& j) {
  RecordRetention r;
  PV_CLIENT_ASSIGN(r.record_id, Field<std::string>(j, "record_id"));
  PV_CLIENT_ASSIGN(r.versions, Field<uint32_t>(j, "versions"));
  PV_CLIENT_ASSIGN(r.category, Field<std::string>(j, "category"));
  PV_CLIENT_ASSIGN(r.epoch_id, Field<std::string>(j, "epoch_id"));
  PV_CLIENT_ASSIGN(r.outcome, Field<std::string>(j, "outcome"));
  PV_CLIENT_ASSIGN(r.expires_on, NullableString(j, "expires_on"));
  PV_CLIENT_ASSIGN(r.reason, Field<std::string>(j, "reason"));
  PV_CLIENT_ASSIGN(r.hold_ids, OptionalList(j, "hold_ids"));
  return r;
}

Result<RetentionRule> RetentionRuleFromJson(const nlohmann::json& j) {
  RetentionRule r;
  PV_CLIENT_ASSIGN(r.name, Field<std::string>(j, "name"));
  PV_CLIENT_ASSIGN(r.categories, Field<std::vector<std::string>>(j, "categories"));
  PV_CLIENT_ASSIGN(r.basis, Field<std::string>(j, "basis"));
  PV_CLIENT_ASSIGN(r.years, Field<int>(j, "years"));
  if (j.contains("age_of_majority")) {
    PV_CLIENT_ASSIGN(r.age_of_majority, Field<int>(j, "age_of_majority"));
  }
  PV_CLIENT_ASSIGN(r.source, Field<std::string>(j, "source"));
  PV_CLIENT_ASSIGN(r.origin, Field<std::string>(j, "origin"));
  return r;
}

Result<LegalHold> LegalHoldFromJson(const nlohmann::json& j) {
  if (!j.is_object()) return ProtocolError("a hold is not an object");
  LegalHold h;
  PV_CLIENT_ASSIGN(h.id, Field<std::string>(j, "id"));
  PV_CLIENT_ASSIGN(h.matter, Field<std::string>(j, "matter"));
  PV_CLIENT_ASSIGN(h.reason, Field<std::string>(j, "reason"));
  PV_CLIENT_ASSIGN(h.patient_id, Field<std::string>(j, "patient_id"));
  PV_CLIENT_ASSIGN(h.scope, Field<std::string>(j, "scope"));
  PV_CLIENT_ASSIGN(h.record_ids, OptionalList(j, "record_ids"));
  PV_CLIENT_ASSIGN(h.placed_by, Field<std::string>(j, "placed_by"));
  PV_CLIENT_ASSIGN(h.placed_at, Field<std::string>(j, "placed_at"));
  PV_CLIENT_ASSIGN(h.released_at, NullableString(j, "released_at"));
  PV_CLIENT_ASSIGN(h.released_by, Field<std::string>(j, "released_by"));
  PV_CLIENT_ASSIGN(h.release_reason, Field<std::string>(j, "release_reason"));
  PV_CLIENT_ASSIGN(h.active, Field<bool>(j, "active"));
  return h;
}

Result<HoldChanged> HoldChangedOrError(Result<Client::RawResponse> r) {
  auto j = JsonOrError(std::move(r));
  if (!j.ok()) return j.error();
  HoldChanged out;
  nlohmann::json hold;
  PV_CLIENT_ASSIGN(hold, Field<nlohmann::json>(*j, "hold"));
  PV_CLIENT_ASSIGN(out.hold, LegalHoldFromJson(hold));
  PV_CLIENT_ASSIGN(out.audit_seq, Field<uint64_t>(*j, "audit_seq"));
  return out;
}

Result<SweepProgress> SweepProgressFromJson(const nlohmann::json& j) {
  if (!j.is_object()) return ProtocolError("\"progress\" is not an object");
  SweepProgress p;
  PV_CLIENT_ASSIGN(p.phase, Field<std::string>(j, "phase"));
  PV_CLIENT_ASSIGN(p.done, Field<uint64_t>(j, "done"));
  PV_CLIENT_ASSIGN(p.total, Field<uint64_t>(j, "total"));
  return p;
}

Result<SweepCandidate> SweepCandidateFromJson(const nlohmann::json& j) {
  SweepCandidate c;
  PV_CLIENT_ASSIGN(c.record_id, Field<std::string>(j, "record_id"));
  PV_CLIENT_ASSIGN(c.versions, Field<uint32_t>(j, "versions"));
  PV_CLIENT_ASSIGN(c.category, Field<std::string>(j, "category"));
  PV_CLIENT_ASSIGN(c.patient_bid, Field<std::string>(j, "patient_bid"));
  PV_CLIENT_ASSIGN(c.epoch_id, Field<std::string>(j, "epoch_id"));
  PV_CLIENT_ASSIGN(c.expires_on, Field<std::string>(j, "expires_on"));
  PV_CLIENT_ASSIGN(c.reason, Field<std::string>(j, "reason"));
  return c;
}

Result<SweepResult> SweepResultFromJson(const nlohmann::json& j) {
  if (!j.is_object()) return ProtocolError("the sweep result is not an object");
  SweepResult r;
  PV_CLIENT_ASSIGN(r.sweep_id, Field<std::string>(j, "sweep_id"));
  PV_CLIENT_ASSIGN(r.dry_run, Field<bool>(j, "dry_run"));
  PV_CLIENT_ASSIGN(r.until, Field<std::string>(j, "until"));
  auto destroyed = j.find("destroyed");
  if (destroyed == j.end() || !destroyed->is_array()) {
    return ProtocolError("missing array \"destroyed\"");
  }
  for (const auto& item : *destroyed) {
    if (!item.is_object()) return ProtocolError("an element of \"destroyed\" is not an object");
    SweepCandidate c;
    PV_CLIENT_ASSIGN(c, SweepCandidateFromJson(item));
    r.destroyed.push_back(std::move(c));
  }
  PV_CLIENT_ASSIGN(r.destroyed_records, Field<uint64_t>(j, "destroyed_records"));
  PV_CLIENT_ASSIGN(r.destroyed_versions, Field<uint64_t>(j, "destroyed_versions"));
  PV_CLIENT_ASSIGN(r.rewrapped_records, Field<uint64_t>(j, "rewrapped_records"));
  PV_CLIENT_ASSIGN(r.held_records, Field<uint64_t>(j, "held_records"));
  PV_CLIENT_ASSIGN(r.epochs_destroyed, OptionalList(j, "epochs_destroyed"));
  PV_CLIENT_ASSIGN(r.resumed, Field<bool>(j, "resumed"));
  PV_CLIENT_ASSIGN(r.certificate_id, NullableString(j, "certificate_id"));
  PV_CLIENT_ASSIGN(r.verification_result, Field<std::string>(j, "verification_result"));
  PV_CLIENT_ASSIGN(r.audit_seq, Field<uint64_t>(j, "audit_seq"));
  return r;
}

Result<CertificateSummary> CertificateSummaryFromJson(const nlohmann::json& j) {
  CertificateSummary c;
  PV_CLIENT_ASSIGN(c.id, Field<std::string>(j, "id"));
  PV_CLIENT_ASSIGN(c.started_at, Field<std::string>(j, "started_at"));
  PV_CLIENT_ASSIGN(c.finished_at, Field<std::string>(j, "finished_at"));
  PV_CLIENT_ASSIGN(c.records, Field<uint64_t>(j, "records"));
  PV_CLIENT_ASSIGN(c.versions, Field<uint64_t>(j, "versions"));
  PV_CLIENT_ASSIGN(c.patients, Field<uint64_t>(j, "patients"));
  PV_CLIENT_ASSIGN(c.epoch_ids, OptionalList(j, "epoch_ids"));
  return c;
}

Result<std::string> SweepBody(bool dry_run, const std::optional<std::string>& until) {
  nlohmann::json fields = {{"dry_run", dry_run}};
  PutOptional(fields, "until", until);
  return DumpBody(fields);
}

// Reads a streamed operation's NDJSON lines (a sweep's, a backup's) as they arrive: progress
// goes to the callback, the result or error line is kept. The first malformed line is kept as
// the outcome, and the rest of the stream is read (so that the connection stays usable) but
// ignored.
template <typename T>
class ProgressStreamReader {
 public:
  using Parse = Result<T> (*)(const nlohmann::json&);
  ProgressStreamReader(const SweepProgressCallback& on_progress, Parse parse,
                       std::string ended_without_result)
      : on_progress_(on_progress),
        parse_(parse),
        ended_without_result_(std::move(ended_without_result)) {}

  bool Consume(std::string_view chunk) {
    pending_.append(chunk);
    for (size_t newline; (newline = pending_.find('\n')) != std::string::npos;) {
      Line(std::string_view(pending_).substr(0, newline));
      pending_.erase(0, newline + 1);
    }
    return true;
  }

  bool has_outcome() const { return outcome_.has_value(); }

  // The operation's outcome once the response has ended.
  Result<T> Finish() {
    if (!outcome_ && !pending_.empty()) Line(pending_);
    if (outcome_) return std::move(*outcome_);
    return UnavailableError(ended_without_result_);
  }

 private:
  void Line(std::string_view line) {
    if (outcome_ || line.empty()) return;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      outcome_.emplace(ProtocolError("a progress line is not a JSON object"));
    } else if (auto p = j.find("progress"); p != j.end()) {
      auto progress = SweepProgressFromJson(*p);
      if (!progress.ok()) {
        outcome_.emplace(progress.error());
      } else if (on_progress_) {
        on_progress_(*progress);
      }
    } else if (auto r = j.find("result"); r != j.end()) {
      outcome_.emplace(parse_(*r));
    } else if (auto e = j.find("error"); e != j.end() && e->is_object()) {
      const int status = e->value("status", 500);
      outcome_.emplace(ErrorFromResponse(status, "application/problem+json", e->dump()));
    } else {
      outcome_.emplace(ProtocolError("unknown line in a progress stream"));
    }
  }

  const SweepProgressCallback& on_progress_;
  Parse parse_;
  std::string ended_without_result_;
  std::string pending_;
  std::optional<Result<T>> outcome_;
};

Result<BackupCreated> BackupCreatedFromJson(const nlohmann::json& j) {
  if (!j.is_object()) return ProtocolError("the backup is not an object");
  BackupCreated b;
  PV_CLIENT_ASSIGN(b.id, Field<std::string>(j, "id"));
  PV_CLIENT_ASSIGN(b.path, Field<std::string>(j, "path"));
  PV_CLIENT_ASSIGN(b.vault_id, Field<std::string>(j, "vault_id"));
  PV_CLIENT_ASSIGN(b.created, Field<std::string>(j, "created"));
  PV_CLIENT_ASSIGN(b.keyring_generation, Field<uint64_t>(j, "keyring_generation"));
  PV_CLIENT_ASSIGN(b.audit_size, Field<uint64_t>(j, "audit_size"));
  PV_CLIENT_ASSIGN(b.audit_root, Field<std::string>(j, "audit_root"));
  PV_CLIENT_ASSIGN(b.verifier_key, Field<std::string>(j, "verifier_key"));
  PV_CLIENT_ASSIGN(b.files, Field<uint64_t>(j, "files"));
  PV_CLIENT_ASSIGN(b.bytes, Field<uint64_t>(j, "bytes"));
  PV_CLIENT_ASSIGN(b.shared_bytes, Field<uint64_t>(j, "shared_bytes"));
  return b;
}

}  // namespace

nlohmann::json ToJson(const PatientFacts& f) {
  return {{"patient_id", f.patient_id},
          {"date_of_birth", Nullable(f.date_of_birth)},
          {"date_of_death", Nullable(f.date_of_death)},
          {"last_encounter", Nullable(f.last_encounter)},
          {"updated_at", f.updated_at},
          {"updated_by", f.updated_by}};
}

nlohmann::json ToJson(const RecordRetention& r) {
  return {{"record_id", r.record_id}, {"versions", r.versions},
          {"category", r.category},   {"epoch_id", r.epoch_id},
          {"outcome", r.outcome},     {"expires_on", Nullable(r.expires_on)},
          {"reason", r.reason},       {"hold_ids", r.hold_ids}};
}

nlohmann::json ToJson(const RetentionRules& t) {
  nlohmann::json rules = nlohmann::json::array();
  for (const auto& r : t.rules) {
    nlohmann::json j = {{"name", r.name},   {"categories", r.categories}, {"basis", r.basis},
                        {"years", r.years}, {"source", r.source},         {"origin", r.origin}};
    if (r.age_of_majority) j["age_of_majority"] = *r.age_of_majority;
    rules.push_back(std::move(j));
  }
  return {{"preset", t.preset}, {"source", t.source}, {"sha256", t.sha256}, {"rules", rules}};
}

nlohmann::json ToJson(const LegalHold& h) {
  return {{"id", h.id},
          {"matter", h.matter},
          {"reason", h.reason},
          {"patient_id", h.patient_id},
          {"scope", h.scope},
          {"record_ids", h.record_ids},
          {"placed_by", h.placed_by},
          {"placed_at", h.placed_at},
          {"released_at", Nullable(h.released_at)},
          {"released_by", h.released_by},
          {"release_reason", h.release_reason},
          {"active", h.active}};
}

nlohmann::json ToJson(const SweepProgress& p) {
  return {{"phase", p.phase}, {"done", p.done}, {"total", p.total}};
}

nlohmann::json ToJson(const SweepResult& r) {
  nlohmann::json destroyed = nlohmann::json::array();
  for (const auto& c : r.destroyed) {
    destroyed.push_back({{"record_id", c.record_id},
                         {"versions", c.versions},
                         {"category", c.category},
                         {"patient_bid", c.patient_bid},
                         {"epoch_id", c.epoch_id},
                         {"expires_on", c.expires_on},
                         {"reason", c.reason}});
  }
  return {{"sweep_id", r.sweep_id},
          {"dry_run", r.dry_run},
          {"until", r.until},
          {"destroyed", destroyed},
          {"destroyed_records", r.destroyed_records},
          {"destroyed_versions", r.destroyed_versions},
          {"rewrapped_records", r.rewrapped_records},
          {"held_records", r.held_records},
          {"epochs_destroyed", r.epochs_destroyed},
          {"resumed", r.resumed},
          {"certificate_id", Nullable(r.certificate_id)},
          {"verification_result", r.verification_result},
          {"audit_seq", r.audit_seq}};
}

nlohmann::json ToJson(const CertificateSummary& c) {
  return {{"id", c.id},
          {"started_at", c.started_at},
          {"finished_at", c.finished_at},
          {"records", c.records},
          {"versions", c.versions},
          {"patients", c.patients},
          {"epoch_ids", c.epoch_ids}};
}

Result<PatientFactsSet> Client::SetPatientFacts(const Actor& actor,
                                                const PatientFactsChange& change) {
  nlohmann::json fields = {{"patient_id", change.patient_id}};
  if (change.date_of_birth) fields["date_of_birth"] = FactDate(change.date_of_birth);
  if (change.date_of_death) fields["date_of_death"] = FactDate(change.date_of_death);
  if (change.last_encounter) fields["last_encounter"] = FactDate(change.last_encounter);
  auto body = DumpBody(fields);
  if (!body.ok()) return body.error();
  auto j = JsonOrError(Exchange("PUT", "/v1/patients/facts", &actor, {*body}));
  if (!j.ok()) return j.error();
  PatientFactsSet out;
  nlohmann::json facts;
  PV_CLIENT_ASSIGN(facts, Field<nlohmann::json>(*j, "facts"));
  PV_CLIENT_ASSIGN(out.facts, PatientFactsFromJson(facts));
  PV_CLIENT_ASSIGN(out.audit_seq, Field<uint64_t>(*j, "audit_seq"));
  return out;
}

Result<PatientFacts> Client::GetPatientFacts(const Actor& actor, const std::string& patient_id) {
  auto body = DumpBody(nlohmann::json{{"patient_id", patient_id}});
  if (!body.ok()) return body.error();
  auto j = JsonOrError(Exchange("POST", "/v1/patients/facts/_get", &actor, {*body}));
  if (!j.ok()) return j.error();
  nlohmann::json facts;
  PV_CLIENT_ASSIGN(facts, Field<nlohmann::json>(*j, "facts"));
  return PatientFactsFromJson(facts);
}

Result<std::vector<RecordRetention>> Client::PatientRetention(const Actor& actor,
                                                              const std::string& patient_id) {
  auto body = DumpBody(nlohmann::json{{"patient_id", patient_id}});
  if (!body.ok()) return body.error();
  return ListOrError<RecordRetention>(Exchange("POST", "/v1/retention/_patient", &actor, {*body}),
                                      "records", RecordRetentionFromJson);
}

Result<RetentionRules> Client::GetRetentionRules(const Actor& actor) {
  auto j = JsonOrError(Exchange("GET", "/v1/retention/rules", &actor, {}));
  if (!j.ok()) return j.error();
  RetentionRules t;
  PV_CLIENT_ASSIGN(t.preset, Field<std::string>(*j, "preset"));
  PV_CLIENT_ASSIGN(t.source, Field<std::string>(*j, "source"));
  PV_CLIENT_ASSIGN(t.sha256, Field<std::string>(*j, "sha256"));
  auto rules = j->find("rules");
  if (rules == j->end() || !rules->is_array()) return ProtocolError("missing array \"rules\"");
  for (const auto& item : *rules) {
    if (!item.is_object()) return ProtocolError("an element of \"rules\" is not an object");
    RetentionRule r;
    PV_CLIENT_ASSIGN(r, RetentionRuleFromJson(item));
    t.rules.push_back(std::move(r));
  }
  return t;
}

Result<HoldChanged> Client::PlaceHold(const Actor& actor, const NewHold& hold) {
  nlohmann::json fields = {
      {"patient_id", hold.patient_id}, {"matter", hold.matter}, {"reason", hold.reason}};
  if (!hold.record_ids.empty()) fields["record_ids"] = hold.record_ids;
  auto body = DumpBody(fields);
  if (!body.ok()) return body.error();
  return HoldChangedOrError(Exchange("POST", "/v1/holds", &actor, {*body}));
}

Result<HoldChanged> Client::ReleaseHold(const Actor& actor, const std::string& hold_id,
                                        const std::string& reason) {
  auto body = DumpBody(nlohmann::json{{"reason", reason}});
  if (!body.ok()) return body.error();
  return HoldChangedOrError(
      Exchange("POST", IdPath("/v1/holds/", hold_id, "/release"), &actor, {*body}));
}

Result<std::vector<LegalHold>> Client::ListHolds(const Actor& actor,
                                                 const std::optional<std::string>& patient_id,
                                                 bool include_released) {
  nlohmann::json fields = {{"include_released", include_released}};
  PutOptional(fields, "patient_id", patient_id);
  auto body = DumpBody(fields);
  if (!body.ok()) return body.error();
  return ListOrError<LegalHold>(Exchange("POST", "/v1/holds/_search", &actor, {*body}), "holds",
                                LegalHoldFromJson);
}

Result<KeyRotation> Client::RotateMasterKey(const Actor& actor,
                                            const crypto::SecretBytes* new_passphrase) {
  const crypto::InsecureSecretKeyAccess access = crypto::InsecureSecretKeyAccess::Get();
  // The passphrase goes into the body from locked memory: escaped in a locked buffer, never in
  // a std::string of this process.
  crypto::SecretBytes escaped;
  std::vector<std::string_view> body;
  if (new_passphrase != nullptr) {
    const std::string_view p = new_passphrase->view(access);
    escaped = crypto::SecretBytes::Zeros(6 * p.size() + 1);
    char* out = reinterpret_cast<char*>(escaped.mutable_data(access));
    size_t n = 0;
    static constexpr char kHex[] = "0123456789abcdef";
    for (char ch : p) {
      const auto c = static_cast<unsigned char>(ch);
      if (c == '"' || c == '\\') {
        out[n++] = '\\';
        out[n++] = static_cast<char>(c);
      } else if (c < 0x20) {
        for (char e : {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]}) out[n++] = e;
      } else {
        out[n++] = static_cast<char>(c);
      }
    }
    body = {"{\"new_passphrase\":\"", std::string_view(out, n), "\"}"};
  } else {
    body = {"{}"};
  }
  auto j = JsonOrError(Exchange("POST", "/v1/keys/rotate", &actor, body));
  if (!j.ok()) return j.error();
  if (!j->is_object()) return ProtocolError("the rotation result is not an object");
  KeyRotation r;
  PV_CLIENT_ASSIGN(r.source, Field<std::string>(*j, "source"));
  PV_CLIENT_ASSIGN(r.keyring_generation, Field<uint64_t>(*j, "keyring_generation"));
  PV_CLIENT_ASSIGN(r.keyring_copies, Field<uint64_t>(*j, "keyring_copies"));
  PV_CLIENT_ASSIGN(r.pending_key_path, NullableString(*j, "pending_key_path"));
  PV_CLIENT_ASSIGN(r.audit_seq, Field<uint64_t>(*j, "audit_seq"));
  return r;
}

Result<SweepResult> Client::Sweep(const Actor& actor, bool dry_run,
                                  const std::optional<std::string>& until) {
  auto body = SweepBody(dry_run, until);
  if (!body.ok()) return body.error();
  auto j = JsonOrError(Exchange("POST", "/v1/retention/sweep", &actor, {*body}));
  if (!j.ok()) return j.error();
  return SweepResultFromJson(*j);
}

Result<SweepResult> Client::Sweep(const Actor& actor, bool dry_run,
                                  const std::optional<std::string>& until,
                                  const SweepProgressCallback& on_progress) {
  auto body = SweepBody(dry_run, until);
  if (!body.ok()) return body.error();
  ProgressStreamReader<SweepResult> reader(
      on_progress, SweepResultFromJson,
      "the sweep's progress stream ended without its result: whether the sweep finished is not "
      "known (see `phivault certificate ls` and the audit log)");
  const ChunkSink sink = [&reader](std::string_view chunk) { return reader.Consume(chunk); };
  auto r = OkOrError(Exchange("POST", "/v1/retention/sweep", &actor, {*body}, &sink,
                              "application/x-ndjson, application/problem+json"));
  if (!r.ok()) {
    // A stream cut short after its result or error line still says how the sweep ended.
    if (reader.has_outcome()) return reader.Finish();
    return r.error();
  }
  if (r->content_type.rfind("application/x-ndjson", 0) != 0) {
    return ProtocolError("a streamed sweep must come as application/x-ndjson");
  }
  return reader.Finish();
}

Result<std::vector<CertificateSummary>> Client::ListCertificates(const Actor& actor) {
  return ListOrError<CertificateSummary>(Exchange("GET", "/v1/certificates", &actor, {}),
                                         "certificates", CertificateSummaryFromJson);
}

Result<Report> Client::GetCertificate(const Actor& actor, const std::string& certificate_id,
                                      CertificateFormat format) {
  std::string_view accept = "text/plain, application/problem+json";
  if (format == CertificateFormat::kHtml) accept = "text/html, application/problem+json";
  if (format == CertificateFormat::kJson) accept = "application/json, application/problem+json";
  return ReportOrError(Exchange("GET", IdPath("/v1/certificates/", certificate_id, ""), &actor, {},
                                nullptr, accept));
}

nlohmann::json ToJson(const BackupCreated& b) {
  return {{"id", b.id},
          {"path", b.path},
          {"vault_id", b.vault_id},
          {"created", b.created},
          {"keyring_generation", b.keyring_generation},
          {"audit_size", b.audit_size},
          {"audit_root", b.audit_root},
          {"verifier_key", b.verifier_key},
          {"files", b.files},
          {"bytes", b.bytes},
          {"shared_bytes", b.shared_bytes}};
}

Result<BackupCreated> Client::CreateBackup(const Actor& actor, const std::string& dir) {
  auto body = DumpBody(nlohmann::json{{"dir", dir}});
  if (!body.ok()) return body.error();
  auto j = JsonOrError(Exchange("POST", "/v1/admin/backups", &actor, {*body}));
  if (!j.ok()) return j.error();
  return BackupCreatedFromJson(*j);
}

Result<BackupCreated> Client::CreateBackup(const Actor& actor, const std::string& dir,
                                           const SweepProgressCallback& on_progress) {
  auto body = DumpBody(nlohmann::json{{"dir", dir}});
  if (!body.ok()) return body.error();
  ProgressStreamReader<BackupCreated> reader(
      on_progress, BackupCreatedFromJson,
      "the backup's progress stream ended without its result: whether the backup was made is "
      "not known (see `phivault backup ls` and the audit log)");
  const ChunkSink sink = [&reader](std::string_view chunk) { return reader.Consume(chunk); };
  auto r = OkOrError(Exchange("POST", "/v1/admin/backups", &actor, {*body}, &sink,
                              "application/x-ndjson, application/problem+json"));
  if (!r.ok()) {
    if (reader.has_outcome()) return reader.Finish();
    return r.error();
  }
  if (r->content_type.rfind("application/x-ndjson", 0) != 0) {
    return ProtocolError("a streamed backup must come as application/x-ndjson");
  }
  return reader.Finish();
}

nlohmann::json ToJson(const ArchiveRun& r) {
  return {{"dry_run", r.dry_run},
          {"cutoff", r.cutoff},
          {"audit_entries_read", r.audit_entries_read},
          {"examined_records", r.examined_records},
          {"archived_records", r.archived_records},
          {"archived_versions", r.archived_versions},
          {"already_archived", r.already_archived},
          {"compacted", r.compacted},
          {"compaction_error", r.compaction_error.empty() ? nlohmann::json(nullptr)
                                                          : nlohmann::json(r.compaction_error)},
          {"audit_seq", r.audit_seq}};
}

Result<ArchiveRun> Client::RunArchive(const Actor& actor, bool dry_run) {
  auto body = DumpBody(nlohmann::json{{"dry_run", dry_run}});
  if (!body.ok()) return body.error();
  auto j = JsonOrError(Exchange("POST", "/v1/admin/archive/run", &actor, {*body}));
  if (!j.ok()) return j.error();
  ArchiveRun r;
  PV_CLIENT_ASSIGN(r.dry_run, Field<bool>(*j, "dry_run"));
  PV_CLIENT_ASSIGN(r.cutoff, Field<std::string>(*j, "cutoff"));
  PV_CLIENT_ASSIGN(r.audit_entries_read, Field<uint64_t>(*j, "audit_entries_read"));
  PV_CLIENT_ASSIGN(r.examined_records, Field<uint64_t>(*j, "examined_records"));
  PV_CLIENT_ASSIGN(r.archived_records, Field<uint64_t>(*j, "archived_records"));
  PV_CLIENT_ASSIGN(r.archived_versions, Field<uint64_t>(*j, "archived_versions"));
  PV_CLIENT_ASSIGN(r.already_archived, Field<uint64_t>(*j, "already_archived"));
  PV_CLIENT_ASSIGN(r.compacted, Field<bool>(*j, "compacted"));
  if (auto e = j->find("compaction_error"); e != j->end() && e->is_string()) {
    r.compaction_error = e->get<std::string>();
  }
  PV_CLIENT_ASSIGN(r.audit_seq, Field<uint64_t>(*j, "audit_seq"));
  return r;
}

}  // namespace phivault::client
