// HTTP/1.1 on a Unix socket (Poco), with the connection limits the daemon needs.
//
// Poco serves one connection per pool thread, so an idle keep-alive client holds a thread. The
// server therefore counts live connections itself: up to limits.max_connections are served, and
// each one beyond that gets an immediate 503 problem and is closed (the pool has a few spare
// threads for exactly that), instead of waiting silently in Poco's queue. Idle connections are
// closed after limits.idle_timeout_ms.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/TCPServer.h>
#include <Poco/SharedPtr.h>
#include <Poco/ThreadPool.h>

#include "base/status.h"
#include "daemon/config.h"

namespace phivault::daemon {

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
};
ConnectionState* CurrentConnection();

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
};

class HttpServer {
 public:
  // Binds the socket (or adopts listen_fd) and starts serving requests with `factory`.
  // A stale socket file at socket_path is replaced; FailedPrecondition if another server is
  // accepting on it or something other than a socket is there; InvalidArgument for an unknown
  // socket_group; Unavailable if binding fails.
  static StatusOr<std::unique_ptr<HttpServer>> Start(
      const HttpServerOptions& options, Poco::Net::HTTPRequestHandlerFactory::Ptr factory);

  // Stops accepting connections, lets requests in progress finish and closes idle connections,
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

}  // namespace phivault::daemon
