// A deliberately dumb HTTP/1.1 client over a Unix socket for the daemon tests: it sends exactly
// the bytes it is given (malformed ones included) and parses one response.
#pragma once

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>
#include <optional>
#include <string>

namespace phivault::daemon::testing {

struct RawResponse {
  bool received = false;  // false: the server closed (or timed out) without a full response
  int status = 0;
  std::string reason;                          // the status line's reason phrase
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;
  bool chunked = false;  // Transfer-Encoding: chunked
  size_t chunks = 0;     // non-empty chunks received, if chunked

  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

class RawConnection {
 public:
  // Connects to `path`; check connected() before use.
  explicit RawConnection(const std::string& path, int timeout_ms = 5000) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    if (connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
      close(fd_);
      fd_ = -1;
      return;
    }
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~RawConnection() {
    if (fd_ >= 0) close(fd_);
  }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool connected() const { return fd_ >= 0; }

  bool Send(const std::string& bytes) {
    size_t off = 0;
    while (off < bytes.size()) {
      const ssize_t n = send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }

  void ShutdownWrite() { shutdown(fd_, SHUT_WR); }

  // Reads one response, Content-Length framed or chunked. A chunked body that ends without its
  // final zero-length chunk leaves `received` false.
  RawResponse Read() {
    RawResponse r;
    size_t header_end;
    while ((header_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill()) return r;
    }
    const std::string head = buffer_.substr(0, header_end);
    buffer_.erase(0, header_end + 4);
    size_t line_end = head.find("\r\n");
    const std::string status_line = head.substr(0, line_end);
    if (status_line.size() < 12) return r;
    r.status = std::stoi(status_line.substr(9, 3));
    if (status_line.size() > 13) r.reason = status_line.substr(13);
    while (line_end != std::string::npos) {
      const size_t start = line_end + 2;
      line_end = head.find("\r\n", start);
      const std::string line = head.substr(start, line_end - start);
      const size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      std::transform(name.begin(), name.end(), name.begin(),
                     [](char c) { return static_cast<char>(std::tolower(c)); });
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      r.headers[name] = value;
    }
    if (r.headers.count("transfer-encoding") != 0) {
      r.chunked = r.headers["transfer-encoding"] == "chunked";
      if (!r.chunked || !ReadChunkedBody(r)) return r;
      r.received = true;
      return r;
    }
    const size_t length =
        r.headers.count("content-length") != 0 ? std::stoul(r.headers["content-length"]) : 0;
    while (buffer_.size() < length) {
      if (!Fill()) return r;
    }
    r.body = buffer_.substr(0, length);
    buffer_.erase(0, length);
    r.received = true;
    return r;
  }

  // Reads until `marker` has arrived (it and what follows stay buffered); false if the
  // connection ends or times out first.
  bool ReadUntil(const std::string& marker) {
    while (buffer_.find(marker) == std::string::npos) {
      if (!Fill()) return false;
    }
    return true;
  }

  // True once the server has closed the connection (reads EOF within the timeout).
  bool WaitClosed() {
    char c;
    for (;;) {
      const ssize_t n = recv(fd_, &c, 1, 0);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
    }
  }

  RawResponse RoundTrip(const std::string& request) {
    if (!Send(request)) return {};
    return Read();
  }

 private:
  bool Fill() {
    char buf[65536];
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    buffer_.append(buf, static_cast<size_t>(n));
    return true;
  }

  // Appends each chunk to r.body until the zero-length chunk; false if the connection ends (or
  // the framing breaks) first.
  bool ReadChunkedBody(RawResponse& r) {
    for (;;) {
      size_t line_end;
      while ((line_end = buffer_.find("\r\n")) == std::string::npos) {
        if (!Fill()) return false;
      }
      const std::string size_line = buffer_.substr(0, line_end);
      if (size_line.empty() ||
          size_line.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
        return false;
      }
      const size_t size = std::stoul(size_line, nullptr, 16);
      buffer_.erase(0, line_end + 2);
      while (buffer_.size() < size + 2) {
        if (!Fill()) return false;
      }
      if (buffer_.compare(size, 2, "\r\n") != 0) return false;
      if (size == 0) {
        buffer_.erase(0, 2);
        return true;
      }
      r.body.append(buffer_, 0, size);
      ++r.chunks;
      buffer_.erase(0, size + 2);
    }
  }

  int fd_ = -1;
  std::string buffer_;
};

}  // namespace phivault::daemon::testing
