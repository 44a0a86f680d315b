// A stand-in for phivaultd in the client's unit tests: a Poco HTTPServer on a temporary Unix
// socket that records every request and answers with whatever the test scripts.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerRequestImpl.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/StreamCopier.h>

namespace phivault::testing {

struct SeenRequest {
  std::string method;
  std::string uri;
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;
  bool has(const std::string& name) const { return headers.count(name) != 0; }
};

struct Reply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  bool close = false;  // send "Connection: close"
  // Send the body in chunked transfer encoding, in pieces of at most `chunk_bytes`.
  bool chunked = false;
  size_t chunk_bytes = 4096;
  // With `chunked`: cut the connection after the body, before the final zero-size chunk (what
  // phivaultd does when an export fails after it began).
  bool cut_before_end = false;
};

// A problem+json reply as phivaultd sends it.
inline Reply Problem(int status, const std::string& name, const std::string& title,
                     const std::string& detail) {
  return Reply{.status = status,
               .content_type = "application/problem+json",
               .body = "{\"type\":\"urn:phivault:problem:" + name + "\",\"title\":\"" + title +
                       "\",\"status\":" + std::to_string(status) + ",\"detail\":\"" + detail +
                       "\",\"request_id\":\"req-42\"}"};
}

// A 403 problem+json naming the deciding policy rule, as phivaultd sends it (issue 8).
inline Reply Forbidden(const std::string& detail, const std::string& rule) {
  return Reply{.status = 403,
               .content_type = "application/problem+json",
               .body =
                   "{\"type\":\"urn:phivault:problem:forbidden\",\"title\":\"Forbidden\","
                   "\"status\":403,\"detail\":\"" +
                   detail + "\",\"rule\":\"" + rule + "\",\"request_id\":\"req-43\"}"};
}

class FakeDaemon {
 public:
  using Handler = std::function<Reply(const SeenRequest&)>;

  // Serves on `socket_path`. `keep_alive_timeout_ms` is how long the server keeps an idle
  // connection open.
  explicit FakeDaemon(std::string socket_path, int keep_alive_timeout_ms = 5000)
      : path_(std::move(socket_path)) {
    auto* params = new Poco::Net::HTTPServerParams;
    params->setKeepAlive(true);
    params->setKeepAliveTimeout(Poco::Timespan(0, keep_alive_timeout_ms * 1000));
    params->setMaxThreads(4);
    Poco::Net::ServerSocket socket(
        Poco::Net::SocketAddress(Poco::Net::SocketAddress::UNIX_LOCAL, path_));
    server_ = std::make_unique<Poco::Net::HTTPServer>(new Factory(this), socket, params);
    server_->start();
  }
  ~FakeDaemon() {
    // Poco's acceptor wakes every 250 ms to notice a stop; connecting wakes it at once, which
    // keeps a suite of many short-lived fake daemons fast.
    std::atomic<bool> stopped{false};
    std::thread stopper([this, &stopped] {
      server_->stopAll(true);
      stopped = true;
    });
    while (!stopped) {
      try {
        Poco::Net::StreamSocket poke(
            Poco::Net::SocketAddress(Poco::Net::SocketAddress::UNIX_LOCAL, path_));
      } catch (const Poco::Exception&) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    stopper.join();
  }
  FakeDaemon(const FakeDaemon&) = delete;
  FakeDaemon& operator=(const FakeDaemon&) = delete;

  void SetHandler(Handler h) {
    std::lock_guard<std::mutex> lock(mu_);
    handler_ = std::move(h);
  }
  // Answers 413 and closes, without reading the body, when a body is larger than `bytes`.
  void RejectBodiesOver(int64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    reject_over_ = bytes;
  }
  std::vector<SeenRequest> requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  SeenRequest last() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_.empty() ? SeenRequest{} : requests_.back();
  }
  // Connections accepted so far, and those still open.
  int connections() const { return server_->totalConnections(); }
  int open_connections() const { return server_->currentConnections(); }
  const std::string& path() const { return path_; }

 private:
  class Handle : public Poco::Net::HTTPRequestHandler {
   public:
    explicit Handle(FakeDaemon* d) : d_(d) {}
    void handleRequest(Poco::Net::HTTPServerRequest& req,
                       Poco::Net::HTTPServerResponse& resp) override {
      int64_t reject_over = -1;
      {
        std::lock_guard<std::mutex> lock(d_->mu_);
        reject_over = d_->reject_over_;
      }
      if (reject_over >= 0 && req.getContentLength64() > reject_over) {
        Reply r = Problem(413, "payload-too-large", "The request is too large", "body over limit");
        resp.setStatus(Poco::Net::HTTPResponse::HTTP_REQUEST_ENTITY_TOO_LARGE);
        resp.setContentType(r.content_type);
        resp.setKeepAlive(false);
        resp.sendBuffer(r.body.data(), r.body.size());
        return;
      }
      SeenRequest seen;
      seen.method = req.getMethod();
      seen.uri = req.getURI();
      for (const auto& [name, value] : req) {
        std::string lower = name;
        for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        seen.headers[lower] = value;
      }
      Poco::StreamCopier::copyToString(req.stream(), seen.body);
      Handler handler;
      {
        std::lock_guard<std::mutex> lock(d_->mu_);
        d_->requests_.push_back(seen);
        handler = d_->handler_;
      }
      Reply reply = handler ? handler(seen) : Reply{.body = R"({"status":"ok"})"};
      resp.setStatus(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(reply.status));
      resp.setContentType(reply.content_type);
      if (reply.close) resp.setKeepAlive(false);
      if (!reply.chunked) {
        resp.setContentLength64(static_cast<Poco::Int64>(reply.body.size()));
        resp.send().write(reply.body.data(), static_cast<std::streamsize>(reply.body.size()));
        return;
      }
      resp.setChunkedTransferEncoding(true);
      std::ostream& out = resp.send();
      for (size_t pos = 0; pos < reply.body.size(); pos += reply.chunk_bytes) {
        out.write(reply.body.data() + pos, static_cast<std::streamsize>(std::min(
                                               reply.chunk_bytes, reply.body.size() - pos)));
        out.flush();
      }
      if (reply.cut_before_end) {
        dynamic_cast<Poco::Net::HTTPServerRequestImpl&>(req).socket().shutdown();
      }
    }

   private:
    FakeDaemon* d_;
  };
  class Factory : public Poco::Net::HTTPRequestHandlerFactory {
   public:
    explicit Factory(FakeDaemon* d) : d_(d) {}
    Poco::Net::HTTPRequestHandler* createRequestHandler(
        const Poco::Net::HTTPServerRequest&) override {
      return new Handle(d_);
    }

   private:
    FakeDaemon* d_;
  };

  std::string path_;
  mutable std::mutex mu_;
  Handler handler_;
  int64_t reject_over_ = -1;
  std::vector<SeenRequest> requests_;
  std::unique_ptr<Poco::Net::HTTPServer> server_;
};

}  // namespace phivault::testing
