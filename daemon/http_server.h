// HTTP/1.1 on a Unix socket (Poco), with the connection limits the daemon needs.
//
// Poco serves one connection per pool thread, so an idle keep-alive client holds a thread. The
// server therefore counts live connections itself: up to limits.max_connections are served, and
// each one beyond that gets an immediate 503 problem and is closed (the pool has a few spare
// threads for exactly that), instead of waiting silently in Poco's queue. Idle connections are
// closed after limits.idle_timeout_ms.
//
// Against hostile clients (docs/reliability.md, "Hostile clients"): a peer uid (SO_PEERCRED) may
// hold at most limits.max_connections_per_uid connections, and the last
// limits.reserved_operator_connections slots are kept for operators; every request must arrive
// within limits.request_timeout_ms of its first byte and its body at
// limits.min_body_bytes_per_second; framing that could be read two ways is refused before any
// handler runs (FramingError); request bodies draw on one RequestBytesBudget.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <istream>

#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/TCPServer.h>
#include <Poco/SharedPtr.h>
#include <Poco/ThreadPool.h>

#include "base/mutex.h"
#include "base/status.h"
#include "daemon/config.h"

namespace phivault::daemon {

// Request body bytes held by all connections together (limits.max_inflight_body_bytes). A
// request reserves its body before reading it (Content-Length, or chunk by chunk); a reservation
// that would go over the budget is refused, and the request is answered 503 with Retry-After.
class RequestBytesBudget {
 public:
  explicit RequestBytesBudget(uint64_t capacity) : capacity_(capacity) {}
  bool TryAcquire(uint64_t bytes);
  void Release(uint64_t bytes) { used_.fetch_sub(bytes); }
  uint64_t used() const { return used_.load(); }
  uint64_t capacity() const { return capacity_; }

 private:
  const uint64_t capacity_;
  std::atomic<uint64_t> used_{0};
};

// What one request holds of a RequestBytesBudget; released on destruction.
class BudgetLease {
 public:
  BudgetLease() = default;
  explicit BudgetLease(RequestBytesBudget* budget) : budget_(budget) {}
  // Releases what is held and draws from `budget` (nullptr: no budget) from now on.
  void Bind(RequestBytesBudget* budget) {
    Reset();
    budget_ = budget;
  }
  ~BudgetLease() { Reset(); }
  BudgetLease(const BudgetLease&) = delete;
  BudgetLease& operator=(const BudgetLease&) = delete;
  // False (and nothing more held) if the budget cannot give `bytes` more; true without a budget.
  bool Grow(uint64_t bytes);
  void Reset();

 private:
  RequestBytesBudget* budget_ = nullptr;
  uint64_t held_ = 0;
};

// What the server keeps about the connection a request arrived on. Poco serves a connection on
// one pool thread from its first request to its last, so the connection being served is the
// calling thread's: inside a request handler CurrentConnection() is its state (owned by the
// server, alive until the connection ends); on any other thread it is nullptr.
struct ConnectionState {
  uint32_t failed_authentications = 0;
  // Poco 1.11 reads request lines and headers with HTTPSession::get(), which returns a plain
  // (signed) char: a byte 0xFF comes back as EOF and is silently dropped, so "dr\xFFx" would
  // reach the handlers as "drx". The server therefore looks at every byte received on the
  // connection; no valid request holds 0xFF (it is not UTF-8, and bodies are JSON).
  bool received_byte_ff = false;
  // A read was cut off by limits.request_timeout_ms or limits.min_body_bytes_per_second; what
  // arrived of the request is incomplete.
  bool timed_out = false;
  RequestBytesBudget* budget = nullptr;  // the server's, outlives every connection

  // Kept by the server (the connection's own thread, except where atomic).
  int fd = -1;  // the connection's socket (the server's dup of it)
  // How long a response write may wait for the client to take more bytes (limits.idle_timeout_ms,
  // what Poco allows each of its own sends).
  std::chrono::milliseconds send_timeout{0};
  uid_t uid = static_cast<uid_t>(-1);
  bool operator_peer = false;
  std::chrono::steady_clock::time_point request_started{};  // {}: between requests
  std::chrono::steady_clock::time_point body_started{};     // {}: not in a handler
  uint64_t body_bytes = 0;                                  // received while in the handler
  std::atomic<bool> in_handler{false};
  std::atomic<bool> stop_requested{false};
  // The response is sent with body bytes still unread (a 413, a refused framing): the server
  // reads and drops what the client still sends for a moment before closing, so that the client,
  // still writing its request, reads the response instead of a reset connection.
  bool linger_before_close = false;
};
ConnectionState* CurrentConnection();

// Sends `response`'s status line and headers (as Poco formats them) and then `body`, from a
// request handler, in as few system calls as the socket allows: usually one. Poco writes a
// response through a 4 KiB stream buffer, one send() per 4 KiB, each of which can wake the
// client: 17 for a 64 KiB record, 257 for 1 MiB (docs/benchmarks.md, 2026-12-04). The caller
// sets the status and headers first (Content-Length included) and must not send anything else
// for this request afterwards; a HEAD response must not use it (it has no body). kNoSocket:
// nothing was sent (not on a server connection's thread); use Poco's sendBuffer. kFailed: the
// client stopped taking bytes within the connection's send timeout or went away; part of the
// response may be out, and the connection is closed after this request.
enum class WholeSend { kSent, kNoSocket, kFailed };
WholeSend SendWholeResponse(Poco::Net::HTTPServerResponse& response, std::string_view body);

// A request handler factory that also implements this is told once the server has stopped
// serving: Stop() calls OnServerStopped() just before it returns, whether or not every
// connection ended in time (the process may then exit without running destructors).
class ServerStopListener {
 public:
  virtual ~ServerStopListener() = default;
  virtual void OnServerStopped() = 0;
};

struct HttpServerOptions {
  std::string socket_path;       // bound and unlinked by the server unless listen_fd is given
  uint32_t socket_mode = 0660;   // applied to the socket file
  std::string socket_group;      // group of the socket file; empty: leave as created
  std::optional<int> listen_fd;  // an already listening socket (systemd socket activation)
  Limits limits;
  // Operators may use the limits.reserved_operator_connections slots and are not held to
  // limits.max_connections_per_uid: limits.operator_uids, plus uid 0 and the server's own uid
  // unless implicit_operators is false (tests).
  bool implicit_operators = true;
};

class HttpServer {
 public:
  // Binds the socket (or adopts listen_fd) and starts serving requests with `factory`.
  // A stale socket file at socket_path is replaced; FailedPrecondition if another server is
  // accepting on it or something other than a socket is there; InvalidArgument for an unknown
  // socket_group; Unavailable if binding fails.
  static StatusOr<std::unique_ptr<HttpServer>> Start(
      const HttpServerOptions& options, Poco::Net::HTTPRequestHandlerFactory::Ptr factory);

  // Stops accepting connections, lets requests in progress finish and closes idle connections
  // at once (each connection on its own: a slow request delays only its own connection),
  // waiting up to `grace` for every connection to end, then tells a ServerStopListener factory.
  // Returns false if some did not end in time. Removes the socket file it created. Idempotent.
  bool Stop(std::chrono::milliseconds grace);

  // Connections currently being served (not counting those refused with 503).
  size_t active_connections() const { return counter_->active.load(); }

  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Shared with the connection objects, which may outlive a Stop() that timed out.
  struct ConnectionCounter {
    std::atomic<size_t> active{0};
    std::atomic<bool> stopping{false};
    size_t limit = 0;
    size_t reserved = 0;  // of `limit`, for operators only
    size_t per_uid = 0;   // per non-operator uid
    std::vector<uid_t> operator_uids;
    std::chrono::milliseconds request_timeout{0};
    std::chrono::milliseconds idle_timeout{0};
    uint64_t min_body_rate = 0;  // bytes per second; 0: none
    RequestBytesBudget budget{0};
    Mutex mu;
    std::map<uid_t, size_t> by_uid GUARDED_BY(mu);
    std::set<std::shared_ptr<ConnectionState>> live GUARDED_BY(mu);
    explicit ConnectionCounter(uint64_t budget_bytes) : budget(budget_bytes) {}
  };

 private:
  class StoppableHandlerFactory;
  HttpServer() = default;

  std::shared_ptr<ConnectionCounter> counter_;
  Poco::SharedPtr<StoppableHandlerFactory> handler_factory_;
  std::unique_ptr<Poco::ThreadPool> pool_;
  std::unique_ptr<Poco::Net::TCPServer> tcp_server_;
  std::string owned_socket_path_;  // the socket file this server created ("" if adopted)
  ino_t owned_socket_inode_ = 0;
  bool stopped_ = false;
};

// The request's framing, checked before any handler sees it (RFC 9112 section 6): a version
// other than HTTP/1.1 or HTTP/1.0, a
// Transfer-Encoding other than exactly "chunked" (one field, case-insensitive), Transfer-Encoding
// together with Content-Length, more than one Content-Length field, or a Content-Length that is
// not a plain decimal number. The reason, or nullopt if the framing is sound.
std::optional<std::string> FramingError(const Poco::Net::HTTPServerRequest& request);

// Reads a chunked body (RFC 9112 section 7.1) from `raw`, the bytes after the header section,
// into `out`, growing `lease` as chunks arrive. Anything short of a complete body (truncated,
// malformed size line, missing CRLF, trailer too long) is kMalformed, never a shorter body.
enum class ChunkedResult { kOk, kMalformed, kTooLarge, kOverBudget };
ChunkedResult ReadChunkedBody(std::istream& raw, uint64_t max_bytes, BudgetLease& lease,
                              std::string& out);

}  // namespace phivault::daemon
