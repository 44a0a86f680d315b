#include "daemon/http_server.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <poll.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <sstream>
#include <string_view>
#include <thread>

#include <Poco/Exception.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPServerConnection.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/ServerSocketImpl.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Net/StreamSocketImpl.h>
#include <Poco/Net/TCPServerConnection.h>
#include <Poco/Net/TCPServerConnectionFactory.h>
#include <Poco/Net/TCPServerParams.h>
#include <spdlog/spdlog.h>

#include "crypto/hash.h"
#include "daemon/problem.h"

namespace phivault::daemon {
namespace {

using Counter = HttpServer::ConnectionCounter;

// Threads beyond max_connections, used only to answer refused connections with a 503.
constexpr int kRefusalThreads = 4;

// Poco has no public way to wrap an inherited listening fd; these reach the protected hooks.
class AdoptedServerSocketImpl final : public Poco::Net::ServerSocketImpl {
 public:
  explicit AdoptedServerSocketImpl(int fd) { reset(fd); }
};

class AdoptedServerSocket final : public Poco::Net::ServerSocket {
 public:
  explicit AdoptedServerSocket(int fd) : ServerSocket(new AdoptedServerSocketImpl(fd), true) {}
};

thread_local ConnectionState* current_connection = nullptr;

// The connection's socket as Poco's HTTP session reads it, noting a 0xFF byte in what arrives
// (see ConnectionState::received_byte_ff) and holding each request to its deadline: from its
// first byte, the whole request must arrive within limits.request_timeout_ms, and once a handler
// reads the body, it must arrive at limits.min_body_bytes_per_second on average (after a first
// second). A read past the deadline throws Poco::TimeoutException, which ends the request. It
// works on its own dup() of the accepted fd, since a Poco socket cannot be given a new
// implementation; the original is closed by Poco's dispatcher right after the connection object
// is destroyed.
class ScanningSocketImpl final : public Poco::Net::StreamSocketImpl {
 public:
  ScanningSocketImpl(poco_socket_t fd, std::shared_ptr<ConnectionState> state,
                     std::shared_ptr<Counter> counter)
      : StreamSocketImpl(fd), state_(std::move(state)), counter_(std::move(counter)) {}

  using StreamSocketImpl::receiveBytes;
  int receiveBytes(void* buffer, int length, int flags) override {
    using Clock = std::chrono::steady_clock;
    ConnectionState& st = *state_;
    if (st.request_started != Clock::time_point{}) WaitWithinDeadline();
    const int n = StreamSocketImpl::receiveBytes(buffer, length, flags);
    if (n > 0) {
      if (std::memchr(buffer, 0xff, static_cast<size_t>(n)) != nullptr) {
        st.received_byte_ff = true;
      }
      if (st.request_started == Clock::time_point{}) st.request_started = Clock::now();
      if (st.in_handler.load(std::memory_order_relaxed)) st.body_bytes += static_cast<size_t>(n);
    }
    return n;
  }

 private:
  // Returns once the socket is readable; throws if the request's deadline passes first.
  void WaitWithinDeadline() {
    using Clock = std::chrono::steady_clock;
    ConnectionState& st = *state_;
    Clock::time_point deadline = st.request_started + counter_->request_timeout;
    if (counter_->min_body_rate > 0 && st.body_started != Clock::time_point{}) {
      const auto allowed =
          std::chrono::seconds(1) +
          std::chrono::microseconds(st.body_bytes * 1000000 / counter_->min_body_rate);
      deadline = std::min(deadline, st.body_started + allowed);
    }
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) break;
      pollfd p{sockfd(), POLLIN, 0};
      const int rc = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count() + 1, 1 << 30)));
      if (rc > 0) return;
      if (rc < 0 && errno != EINTR) return;  // let the read report it
    }
    st.timed_out = true;
    throw Poco::TimeoutException("the request did not arrive in time");
  }

  std::shared_ptr<ConnectionState> state_;
  std::shared_ptr<Counter> counter_;
};

// An HTTP connection that holds one of the counted slots for its whole life, and whose state
// its requests find through CurrentConnection().
class CountedConnection final : public Poco::Net::HTTPServerConnection {
 public:
  CountedConnection(const Poco::Net::StreamSocket& socket, std::shared_ptr<ConnectionState> state,
                    Poco::Net::HTTPServerParams::Ptr params,
                    Poco::Net::HTTPRequestHandlerFactory::Ptr factory,
                    std::shared_ptr<Counter> counter)
      : HTTPServerConnection(socket, std::move(params), std::move(factory)),
        counter_(std::move(counter)),
        state_(std::move(state)) {}
  ~CountedConnection() override {
    {
      MutexLock lock(counter_->mu);
      counter_->live.erase(state_);
      if (!state_->operator_peer) {
        auto it = counter_->by_uid.find(state_->uid);
        if (it != counter_->by_uid.end() && --it->second == 0) counter_->by_uid.erase(it);
      }
      state_->fd = -1;
    }
    counter_->active.fetch_sub(1);
  }

  void run() override {
    current_connection = state_.get();
    try {
      HTTPServerConnection::run();
    } catch (...) {
      current_connection = nullptr;
      throw;
    }
    current_connection = nullptr;
  }

 private:
  std::shared_ptr<Counter> counter_;
  std::shared_ptr<ConnectionState> state_;
};

// A lingering close (RFC 9112 §9.6): the client may still be sending its request when the
// server answers it early and closes. Closing with that data unread, or before it arrives, resets
// the connection and the client never reads the answer; read and drop what comes for a moment
// instead, bounded in time (100 ms in all) and bytes (1 MiB). Ends early once the client closes.
void DrainBeforeClose(int fd) {
  using Clock = std::chrono::steady_clock;
  constexpr auto kLinger = std::chrono::milliseconds(100);
  constexpr size_t kMaxBytes = size_t{1} << 20;
  const Clock::time_point deadline = Clock::now() + kLinger;
  char sink[16384];
  for (size_t drained = 0; drained < kMaxBytes;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return;
    pollfd p{fd, POLLIN, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(left));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) return;
    const ssize_t n = ::recv(fd, sink, sizeof sink, MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (n <= 0) return;
    drained += static_cast<size_t>(n);
  }
}

// Answers a connection over the limit (or arriving during shutdown) with 503 and closes it.
class RefusedConnection final : public Poco::Net::TCPServerConnection {
 public:
  RefusedConnection(const Poco::Net::StreamSocket& socket, std::string detail)
      : TCPServerConnection(socket), detail_(std::move(detail)) {}

  void run() override {
    const std::string request_id = crypto::HexEncode(crypto::RandomBytes(12));
    const std::string body =
        ProblemJson(MakeProblem(503, "too-many-connections", detail_), request_id);
    const std::string response =
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: " +
        std::string(kProblemContentType) + "\r\n" +
        "Content-Length: " + std::to_string(body.size()) + "\r\n" + "X-Request-Id: " + request_id +
        "\r\n" +
        "Retry-After: 1\r\n"
        "Connection: close\r\n\r\n" +
        body;
    try {
      socket().sendBytes(response.data(), static_cast<int>(response.size()));
      socket().shutdownSend();
      DrainBeforeClose(socket().impl()->sockfd());
    } catch (const Poco::Exception&) {
      // The client is gone; nothing to tell it.
    }
    spdlog::warn("connection refused: {}", detail_);
  }

 private:
  std::string detail_;
};

class CountingConnectionFactory final : public Poco::Net::TCPServerConnectionFactory {
 public:
  CountingConnectionFactory(Poco::Net::HTTPServerParams::Ptr params,
                            Poco::Net::HTTPRequestHandlerFactory::Ptr factory,
                            std::shared_ptr<Counter> counter)
      : params_(std::move(params)), factory_(std::move(factory)), counter_(std::move(counter)) {}

  Poco::Net::TCPServerConnection* createConnection(const Poco::Net::StreamSocket& socket) override {
    ucred cred{};
    socklen_t len = sizeof(cred);
    const bool known =
        getsockopt(socket.impl()->sockfd(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0;
    const uid_t uid = known ? cred.uid : static_cast<uid_t>(-1);
    const bool is_operator =
        known && std::find(counter_->operator_uids.begin(), counter_->operator_uids.end(), uid) !=
                     counter_->operator_uids.end();
    auto state = std::make_shared<ConnectionState>();
    state->uid = uid;
    state->operator_peer = is_operator;
    state->send_timeout = counter_->idle_timeout;
    state->budget = &counter_->budget;
    {
      MutexLock lock(counter_->mu);
      if (counter_->stopping.load()) {
        return new RefusedConnection(socket, "the server is shutting down");
      }
      const size_t active = counter_->active.load();
      if (active >= counter_->limit) {
        return new RefusedConnection(socket, "the server is at its connection limit (" +
                                                 std::to_string(counter_->limit) + ")");
      }
      if (!is_operator && active + counter_->reserved >= counter_->limit) {
        return new RefusedConnection(
            socket, "the server's remaining connections are reserved for operators");
      }
      size_t& mine = counter_->by_uid[uid];
      if (!is_operator && mine >= counter_->per_uid) {
        if (mine == 0) counter_->by_uid.erase(uid);
        return new RefusedConnection(socket, "this user already has " +
                                                 std::to_string(counter_->per_uid) +
                                                 " connections (limits.max_connections_per_uid)");
      }
      const int fd = fcntl(socket.impl()->sockfd(), F_DUPFD_CLOEXEC, 0);
      if (fd < 0) {
        if (mine == 0) counter_->by_uid.erase(uid);
        return new RefusedConnection(socket, "the server has no file descriptor left for it");
      }
      if (is_operator) {
        if (mine == 0) counter_->by_uid.erase(uid);
      } else {
        ++mine;
      }
      counter_->active.fetch_add(1);
      state->fd = fd;
      counter_->live.insert(state);
    }
    const Poco::Net::StreamSocket scanning(new ScanningSocketImpl(state->fd, state, counter_));
    return new CountedConnection(scanning, std::move(state), params_, factory_, counter_);
  }

 private:
  Poco::Net::HTTPServerParams::Ptr params_;
  Poco::Net::HTTPRequestHandlerFactory::Ptr factory_;
  std::shared_ptr<Counter> counter_;
};

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

// True if a server accepts connections at `path`.
bool SomeoneListens(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), std::min(path.size(), sizeof(addr.sun_path) - 1));
  const bool ok = connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

Status RemoveStaleSocket(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return Unavailable(Errno("cannot inspect " + path));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return FailedPrecondition(path + " exists and is not a socket; refusing to replace it");
  }
  if (SomeoneListens(path)) {
    return FailedPrecondition("another server is already listening on " + path);
  }
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Unavailable(Errno("cannot remove the stale socket " + path));
  }
  return Status::Ok();
}

StatusOr<std::optional<gid_t>> ResolveGroup(const std::string& name) {
  if (name.empty()) return std::optional<gid_t>();
  std::vector<char> buf(1024);
  for (;;) {
    struct group gr {};
    struct group* result = nullptr;
    const int rc = getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &result);
    if (rc == ERANGE && buf.size() < (1u << 20)) {
      buf.resize(buf.size() * 2);
      continue;
    }
    if (rc != 0 || result == nullptr) {
      return InvalidArgument("socket_group names a group that does not exist on this system");
    }
    return std::optional<gid_t>(result->gr_gid);
  }
}

}  // namespace

ConnectionState* CurrentConnection() { return current_connection; }

WholeSend SendWholeResponse(Poco::Net::HTTPServerResponse& response, std::string_view body) {
  ConnectionState* c = CurrentConnection();
  if (c == nullptr || c->fd < 0) return WholeSend::kNoSocket;
  response.setChunkedTransferEncoding(false);
  std::ostringstream head_stream;
  response.write(head_stream);
  const std::string head = std::move(head_stream).str();
  iovec parts[2] = {{const_cast<char*>(head.data()), head.size()},
                    {const_cast<char*>(body.data()), body.size()}};
  size_t first = 0;
  // Non-blocking sends with a poll between them, so that a client that stops reading is given
  // up on after the send timeout without relying on the socket's own options; MSG_NOSIGNAL: a
  // client gone is an error here, not a SIGPIPE.
  while (first < 2) {
    if (parts[first].iov_len == 0) {
      ++first;
      continue;
    }
    msghdr msg{};
    msg.msg_iov = parts + first;
    msg.msg_iovlen = 2 - first;
    const ssize_t sent = ::sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent >= 0) {
      size_t left = static_cast<size_t>(sent);
      while (first < 2 && left >= parts[first].iov_len) left -= parts[first++].iov_len;
      if (first < 2) {
        parts[first].iov_base = static_cast<char*>(parts[first].iov_base) + left;
        parts[first].iov_len -= left;
      }
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) break;
    pollfd p{c->fd, POLLOUT, 0};
    // No timeout configured: wait as Poco's own sends would (no SO_SNDTIMEO).
    const int wait_ms = c->send_timeout.count() > 0
                            ? static_cast<int>(std::min<int64_t>(c->send_timeout.count(), 1 << 30))
                            : -1;
    const int ready = ::poll(&p, 1, wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0 || (p.revents & (POLLERR | POLLHUP)) != 0) break;
  }
  if (first == 2) return WholeSend::kSent;
  response.setKeepAlive(false);
  ::shutdown(c->fd, SHUT_RDWR);
  return WholeSend::kFailed;
}

bool RequestBytesBudget::TryAcquire(uint64_t bytes) {
  uint64_t used = used_.load();
  do {
    if (bytes > capacity_ || used > capacity_ - bytes) return false;
  } while (!used_.compare_exchange_weak(used, used + bytes));
  return true;
}

bool BudgetLease::Grow(uint64_t bytes) {
  if (budget_ == nullptr) return true;
  if (!budget_->TryAcquire(bytes)) return false;
  held_ += bytes;
  return true;
}

void BudgetLease::Reset() {
  if (budget_ != nullptr && held_ > 0) budget_->Release(held_);
  held_ = 0;
}

namespace {

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace

std::optional<std::string> FramingError(const Poco::Net::HTTPServerRequest& request) {
  size_t te_fields = 0;
  size_t cl_fields = 0;
  bool te_chunked = false;
  bool cl_plain = true;
  for (const auto& [name, value] : request) {
    if (IEquals(name, "Transfer-Encoding")) {
      ++te_fields;
      te_chunked = IEquals(value, "chunked");
    } else if (IEquals(name, "Content-Length")) {
      ++cl_fields;
      cl_plain =
          cl_plain && !value.empty() && value.size() <= 18 &&
          std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
    }
  }
  // Poco takes any version string ("HTXP/1.1", "HTTP/9.9") for HTTP/1.x.
  if (const std::string& v = request.getVersion(); v != "HTTP/1.1" && v != "HTTP/1.0") {
    return "only HTTP/1.1 and HTTP/1.0 are spoken here";
  }
  if (te_fields > 0 && cl_fields > 0) {
    return "Transfer-Encoding and Content-Length together are refused (RFC 9112 section 6.1)";
  }
  if (te_fields > 1 || (te_fields == 1 && !te_chunked)) {
    return "the only Transfer-Encoding accepted is a single \"chunked\"";
  }
  if (cl_fields > 1) return "more than one Content-Length field";
  if (!cl_plain) return "Content-Length must be a decimal number";
  return std::nullopt;
}

namespace {

constexpr size_t kMaxChunkLine = 1024;
constexpr size_t kMaxTrailerBytes = 8192;

// One line ending in CRLF (without it), at most kMaxChunkLine bytes; false if it does not end so.
bool ReadCrlfLine(std::istream& in, std::string& line, size_t max = kMaxChunkLine) {
  line.clear();
  for (;;) {
    const int c = in.get();
    if (c == std::char_traits<char>::eof()) return false;
    if (c == '\r') return in.get() == '\n';
    if (c == '\n' || line.size() >= max) return false;
    line += static_cast<char>(c);
  }
}

}  // namespace

ChunkedResult ReadChunkedBody(std::istream& raw, uint64_t max_bytes, BudgetLease& lease,
                              std::string& out) {
  out.clear();
  std::string line;
  for (;;) {
    if (!ReadCrlfLine(raw, line)) return ChunkedResult::kMalformed;
    size_t digits = 0;
    uint64_t size = 0;
    while (digits < line.size() && std::isxdigit(static_cast<unsigned char>(line[digits]))) {
      if (digits >= 15) return ChunkedResult::kMalformed;  // beyond any body we take
      const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(line[digits])));
      size = size * 16 + static_cast<uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
      ++digits;
    }
    if (digits == 0 || (digits < line.size() && line[digits] != ';')) {
      return ChunkedResult::kMalformed;
    }
    if (size == 0) break;
    if (size > max_bytes || out.size() > max_bytes - size) return ChunkedResult::kTooLarge;
    if (!lease.Grow(size)) return ChunkedResult::kOverBudget;
    const size_t at = out.size();
    out.resize(at + static_cast<size_t>(size));
    raw.read(out.data() + at, static_cast<std::streamsize>(size));
    if (static_cast<uint64_t>(raw.gcount()) != size) return ChunkedResult::kMalformed;
    if (raw.get() != '\r' || raw.get() != '\n') return ChunkedResult::kMalformed;
  }
  // Trailer fields (ignored), then the empty line that ends the body.
  size_t trailer = 0;
  for (;;) {
    if (!ReadCrlfLine(raw, line)) return ChunkedResult::kMalformed;
    if (line.empty()) return ChunkedResult::kOk;
    trailer += line.size() + 2;
    if (trailer > kMaxTrailerBytes) return ChunkedResult::kMalformed;
  }
}

namespace {

void SendFramingProblem(Poco::Net::HTTPServerResponse& response, const std::string& detail) {
  const std::string request_id = crypto::HexEncode(crypto::RandomBytes(12));
  const std::string body = ProblemJson(MakeProblem(400, "invalid-framing", detail), request_id);
  response.setStatusAndReason(Poco::Net::HTTPResponse::HTTP_BAD_REQUEST);
  response.set("X-Request-Id", request_id);
  response.set("Cache-Control", "no-store");
  response.setContentType(std::string(kProblemContentType));
  response.setContentLength64(static_cast<Poco::Int64>(body.size()));
  response.setKeepAlive(false);
  response.sendBuffer(body.data(), body.size());
}

// Runs the real handler with the connection's request clock and shutdown state kept: the body
// deadline starts when the handler does, a connection asked to stop closes after this response,
// and a request with unsound framing never reaches the handler.
class GuardedHandler final : public Poco::Net::HTTPRequestHandler {
 public:
  GuardedHandler(Poco::Net::HTTPRequestHandlerFactory& inner, std::shared_ptr<Counter> counter)
      : inner_(inner), counter_(std::move(counter)) {}

  void handleRequest(Poco::Net::HTTPServerRequest& request,
                     Poco::Net::HTTPServerResponse& response) override {
    using Clock = std::chrono::steady_clock;
    ConnectionState* c = CurrentConnection();
    if (std::optional<std::string> error = FramingError(request); error.has_value()) {
      spdlog::warn("request refused: {}", *error);
      SendFramingProblem(response, *error);
      if (c != nullptr && c->fd >= 0) DrainBeforeClose(c->fd);
      return;
    }
    if (c != nullptr) {
      if (c->request_started == Clock::time_point{}) c->request_started = Clock::now();
      c->body_started = Clock::now();
      c->body_bytes = 0;
      c->in_handler.store(true);
    }
    if (counter_->stopping.load()) response.setKeepAlive(false);
    std::unique_ptr<Poco::Net::HTTPRequestHandler> handler(inner_.createRequestHandler(request));
    struct Done {
      ConnectionState* c;
      ~Done() {
        if (c == nullptr) return;
        c->in_handler.store(false);
        c->request_started = {};
        c->body_started = {};
        // Asked to stop while this request ran: nothing more is read on this connection.
        if (c->stop_requested.load() && c->fd >= 0) ::shutdown(c->fd, SHUT_RD);
      }
    } done{c};
    if (c != nullptr) c->linger_before_close = false;
    if (handler != nullptr) handler->handleRequest(request, response);
    // The handler answered with part of the body unread (it is not kept alive then).
    if (c != nullptr && c->linger_before_close && c->fd >= 0 && !response.getKeepAlive()) {
      c->linger_before_close = false;
      DrainBeforeClose(c->fd);
    }
  }

 private:
  Poco::Net::HTTPRequestHandlerFactory& inner_;
  std::shared_ptr<Counter> counter_;
};

}  // namespace

class HttpServer::StoppableHandlerFactory final : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  StoppableHandlerFactory(Poco::Net::HTTPRequestHandlerFactory::Ptr inner,
                          std::shared_ptr<Counter> counter)
      : inner_(std::move(inner)), counter_(std::move(counter)) {}
  Poco::Net::HTTPRequestHandler* createRequestHandler(
      const Poco::Net::HTTPServerRequest&) override {
    return new GuardedHandler(*inner_, counter_);
  }
  void NotifyStopListener() {
    if (auto* listener = dynamic_cast<ServerStopListener*>(inner_.get())) {
      listener->OnServerStopped();
    }
  }

 private:
  Poco::Net::HTTPRequestHandlerFactory::Ptr inner_;
  std::shared_ptr<Counter> counter_;
};

StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(
    const HttpServerOptions& options, Poco::Net::HTTPRequestHandlerFactory::Ptr factory) {
  std::unique_ptr<HttpServer> server(new HttpServer());
  const Limits& l = options.limits;
  server->counter_ = std::make_shared<Counter>(l.max_inflight_body_bytes);
  server->counter_->limit = l.max_connections;
  server->counter_->reserved = std::min<size_t>(l.reserved_operator_connections,
                                                l.max_connections > 0 ? l.max_connections - 1 : 0);
  server->counter_->per_uid = l.max_connections_per_uid;
  server->counter_->request_timeout = std::chrono::milliseconds(l.request_timeout_ms);
  server->counter_->idle_timeout = std::chrono::milliseconds(l.idle_timeout_ms);
  server->counter_->min_body_rate = l.min_body_bytes_per_second;
  server->counter_->operator_uids.assign(l.operator_uids.begin(), l.operator_uids.end());
  if (options.implicit_operators) {
    server->counter_->operator_uids.push_back(0);
    server->counter_->operator_uids.push_back(geteuid());
  }
  server->handler_factory_ = new StoppableHandlerFactory(std::move(factory), server->counter_);

  Poco::Net::ServerSocket socket;
  try {
    if (options.listen_fd.has_value()) {
      socket = AdoptedServerSocket(*options.listen_fd);
    } else {
      PV_ASSIGN_OR_RETURN(std::optional<gid_t> gid, ResolveGroup(options.socket_group));
      PV_RETURN_IF_ERROR(RemoveStaleSocket(options.socket_path));
      // Created owner-only, then opened up to socket_mode: no window where others can connect.
      const mode_t old_umask = umask(0177);
      try {
        socket = Poco::Net::ServerSocket(
            Poco::Net::SocketAddress(Poco::Net::SocketAddress::UNIX_LOCAL, options.socket_path),
            128);
      } catch (...) {
        umask(old_umask);
        throw;
      }
      umask(old_umask);
      if (gid.has_value() &&
          chown(options.socket_path.c_str(), static_cast<uid_t>(-1), *gid) != 0) {
        unlink(options.socket_path.c_str());
        return Unavailable(Errno("cannot give " + options.socket_path + " to socket_group"));
      }
      if (chmod(options.socket_path.c_str(), options.socket_mode) != 0) {
        unlink(options.socket_path.c_str());
        return Unavailable(Errno("cannot set the mode of " + options.socket_path));
      }
      struct stat st {};
      if (stat(options.socket_path.c_str(), &st) == 0) server->owned_socket_inode_ = st.st_ino;
      server->owned_socket_path_ = options.socket_path;
    }
  } catch (const Poco::Exception& e) {
    return Unavailable("cannot listen on " + options.socket_path + ": " + e.displayText());
  }

  const Limits& limits = options.limits;
  const auto idle =
      Poco::Timespan(static_cast<Poco::Timespan::TimeDiff>(limits.idle_timeout_ms) * 1000);
  Poco::Net::HTTPServerParams::Ptr params = new Poco::Net::HTTPServerParams();
  params->setKeepAlive(true);
  params->setKeepAliveTimeout(idle);
  params->setTimeout(idle);
  params->setMaxKeepAliveRequests(0);
  params->setSoftwareVersion("");
  const int max_threads = static_cast<int>(limits.max_connections) + kRefusalThreads;
  params->setMaxThreads(max_threads);
  params->setMaxQueued(max_threads);
  params->setThreadIdleTime(Poco::Timespan(10, 0));

  try {
    server->pool_ = std::make_unique<Poco::ThreadPool>("phivault-http", 2, max_threads + 2, 60);
    server->tcp_server_ = std::make_unique<Poco::Net::TCPServer>(
        new CountingConnectionFactory(params, server->handler_factory_, server->counter_),
        *server->pool_, socket, params);
    server->tcp_server_->start();
  } catch (const Poco::Exception& e) {
    if (!server->owned_socket_path_.empty()) unlink(server->owned_socket_path_.c_str());
    return Unavailable("cannot start the HTTP server: " + e.displayText());
  }
  return server;
}

bool HttpServer::Stop(std::chrono::milliseconds grace) {
  if (stopped_ || tcp_server_ == nullptr) return true;
  stopped_ = true;
  const auto deadline = std::chrono::steady_clock::now() + grace;
  counter_->stopping.store(true);
  tcp_server_->stop();
  // A socket file nobody accepts on any more is only misleading; a newer server's file is left.
  if (!owned_socket_path_.empty()) {
    struct stat st {};
    if (stat(owned_socket_path_.c_str(), &st) == 0 && st.st_ino == owned_socket_inode_) {
      unlink(owned_socket_path_.c_str());
    }
  }
  // Each connection finishes the request it is serving, then closes; idle ones (and those still
  // sending a request's head) close now. No connection waits on another: each is told on its
  // own, without taking any lock a request in progress holds.
  {
    MutexLock lock(counter_->mu);
    for (const auto& c : counter_->live) {
      c->stop_requested.store(true);
      if (!c->in_handler.load() && c->fd >= 0) ::shutdown(c->fd, SHUT_RD);
    }
  }
  while (counter_->active.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const bool all_done = counter_->active.load() == 0;
  handler_factory_->NotifyStopListener();
  return all_done;
}

HttpServer::~HttpServer() {
  Stop(std::chrono::milliseconds(0));
  tcp_server_.reset();
  if (pool_ != nullptr) pool_->joinAll();
}

}  // namespace phivault::daemon
