#include "daemon/http_server.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include <Poco/Net/HTTPServerConnection.h>
#include <Poco/Net/HTTPServerParams.h>
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
// (see ConnectionState::received_byte_ff). It works on its own dup() of the accepted fd, since a
// Poco socket cannot be given a new implementation; the original is closed by Poco's dispatcher
// right after the connection object is destroyed.
class ScanningSocketImpl final : public Poco::Net::StreamSocketImpl {
 public:
  ScanningSocketImpl(poco_socket_t fd, std::shared_ptr<ConnectionState> state)
      : StreamSocketImpl(fd), state_(std::move(state)) {}

  using StreamSocketImpl::receiveBytes;
  int receiveBytes(void* buffer, int length, int flags) override {
    const int n = StreamSocketImpl::receiveBytes(buffer, length, flags);
    if (n > 0 && std::memchr(buffer, 0xff, static_cast<size_t>(n)) != nullptr) {
      state_->received_byte_ff = true;
    }
    return n;
  }

 private:
  std::shared_ptr<ConnectionState> state_;
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
  ~CountedConnection() override { counter_->active.fetch_sub(1); }

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
    if (counter_->stopping.load()) {
      return new RefusedConnection(socket, "the server is shutting down");
    }
    size_t current = counter_->active.load();
    do {
      if (current >= counter_->limit) {
        return new RefusedConnection(socket, "the server is at its connection limit (" +
                                                 std::to_string(counter_->limit) + ")");
      }
    } while (!counter_->active.compare_exchange_weak(current, current + 1));
    const int fd = fcntl(socket.impl()->sockfd(), F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
      counter_->active.fetch_sub(1);
      return new RefusedConnection(socket, "the server has no file descriptor left for it");
    }
    auto state = std::make_shared<ConnectionState>();
    const Poco::Net::StreamSocket scanning(new ScanningSocketImpl(fd, state));
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

// Poco only lets its own HTTPServer raise serverStopped, the event that tells every live
// connection to finish its request and close; this wrapper raises it for ours.
class HttpServer::StoppableHandlerFactory final : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  explicit StoppableHandlerFactory(Poco::Net::HTTPRequestHandlerFactory::Ptr inner)
      : inner_(std::move(inner)) {}
  Poco::Net::HTTPRequestHandler* createRequestHandler(
      const Poco::Net::HTTPServerRequest& request) override {
    return inner_->createRequestHandler(request);
  }
  void NotifyStopped() { serverStopped.notify(this, false); }
  void NotifyStopListener() {
    if (auto* listener = dynamic_cast<ServerStopListener*>(inner_.get())) {
      listener->OnServerStopped();
    }
  }

 private:
  Poco::Net::HTTPRequestHandlerFactory::Ptr inner_;
};

StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(
    const HttpServerOptions& options, Poco::Net::HTTPRequestHandlerFactory::Ptr factory) {
  std::unique_ptr<HttpServer> server(new HttpServer());
  server->counter_ = std::make_shared<Counter>();
  server->counter_->limit = options.limits.max_connections;
  server->handler_factory_ = new StoppableHandlerFactory(std::move(factory));

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
  // Each connection finishes the request it is serving, then closes; idle ones close now.
  // Delivered from another thread so that a request that never finishes cannot hold us
  // beyond the grace period.
  std::thread notifier([factory = handler_factory_]() mutable {
    try {
      factory->NotifyStopped();
    } catch (const Poco::Exception& e) {
      spdlog::error("stopping connections failed: {}", e.displayText());
    }
  });
  while (counter_->active.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const bool all_done = counter_->active.load() == 0;
  if (all_done) {
    notifier.join();
  } else {
    notifier.detach();
  }
  handler_factory_->NotifyStopListener();
  return all_done;
}

HttpServer::~HttpServer() {
  Stop(std::chrono::milliseconds(0));
  tcp_server_.reset();
  if (pool_ != nullptr) pool_->joinAll();
}

}  // namespace phivault::daemon
