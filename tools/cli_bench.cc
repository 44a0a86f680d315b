// `phivault bench`: the load generator over the daemon's socket (docs/cli.md, docs/benchmarks.md).
//
// The client side is kept cheap because it shares the machine with the daemon: each client thread
// owns one keep-alive Unix-socket connection, writes a request assembled from a fixed head and
// the content (one writev, no base64, no JSON library) and reads the response with a minimal
// HTTP/1.1 reader (status line, Content-Length or chunked framing). The general client library
// (tools/client.h) parses every response into JSON objects through Poco streams, which would bill
// its own cost to the measurement.
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "tools/cli_internal.h"
#include "tools/loadgen.h"

namespace phivault::tools {
namespace {

std::string TodayUtc() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

struct HttpResponse {
  int status = 0;
  std::string body;
  bool close = false;  // the daemon closes the connection after this response
};

// Bodies above this are received straight into the response (Connection::Take).
constexpr size_t kDirectBodyBytes = 16384;

// One keep-alive HTTP/1.1 connection to the daemon's Unix socket.
class Connection {
 public:
  ~Connection() { Close(); }

  bool Open(const std::string& path, std::string* error) {
    Close();
    sockaddr_un addr{};
    if (path.size() >= sizeof(addr.sun_path)) {
      *error = "socket path too long";
      return false;
    }
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
      *error = std::string("socket: ") + std::strerror(errno);
      return false;
    }
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      *error = "cannot connect to " + path + ": " + std::strerror(errno);
      Close();
      return false;
    }
    buf_.clear();
    pos_ = 0;
    return true;
  }

  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool open() const { return fd_ >= 0; }

  // The daemon's pid from the socket's peer credentials (the process that listens).
  std::optional<pid_t> PeerPid() const {
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(fd_, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.pid <= 0) {
      return std::nullopt;
    }
    return cred.pid;
  }

  // Sends `parts` in order and reads one response. False with `*error` on an I/O or framing
  // failure (the connection is then closed).
  bool Exchange(std::vector<iovec> parts, HttpResponse* response, std::string* error) {
    if (!SendAll(parts, error) || !ReadResponse(response, error)) {
      Close();
      return false;
    }
    if (response->close) Close();
    return true;
  }

 private:
  bool SendAll(std::vector<iovec>& parts, std::string* error) {
    size_t first = 0;
    while (first < parts.size()) {
      msghdr msg{};
      msg.msg_iov = parts.data() + first;
      msg.msg_iovlen = parts.size() - first;
      const ssize_t n = sendmsg(fd_, &msg, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        *error = std::string("send: ") + std::strerror(errno);
        return false;
      }
      size_t left = static_cast<size_t>(n);
      while (first < parts.size() && left >= parts[first].iov_len) {
        left -= parts[first].iov_len;
        ++first;
      }
      if (left > 0) {
        parts[first].iov_base = static_cast<char*>(parts[first].iov_base) + left;
        parts[first].iov_len -= left;
      }
    }
    return true;
  }

  // Makes at least `n` unread bytes available in buf_[pos_..].
  bool Fill(size_t n, std::string* error) {
    while (buf_.size() - pos_ < n) {
      if (pos_ > 0 && pos_ == buf_.size()) {
        buf_.clear();
        pos_ = 0;
      }
      const size_t old = buf_.size();
      const size_t want = std::max<size_t>(16384, n - (old - pos_));
      buf_.resize(old + want);
      const ssize_t got = recv(fd_, buf_.data() + old, want, 0);
      buf_.resize(old + (got > 0 ? static_cast<size_t>(got) : 0));
      if (got == 0) {
        *error = "the daemon closed the connection";
        return false;
      }
      if (got < 0) {
        if (errno == EINTR) continue;
        *error = std::string("recv: ") + std::strerror(errno);
        return false;
      }
    }
    return true;
  }

  // The next line (without CRLF) into `*line`.
  bool Line(std::string* line, std::string* error) {
    for (;;) {
      const size_t eol = buf_.find("\r\n", pos_);
      if (eol != std::string::npos) {
        line->assign(buf_, pos_, eol - pos_);
        pos_ = eol + 2;
        return true;
      }
      if (buf_.size() - pos_ > 65536) {
        *error = "response line too long";
        return false;
      }
      if (!Fill(buf_.size() - pos_ + 1, error)) return false;
    }
  }

  bool Take(size_t n, std::string* out, std::string* error) {
    if (n <= kDirectBodyBytes) {
      if (!Fill(n, error)) return false;
      out->append(buf_, pos_, n);
      pos_ += n;
      return true;
    }
    // A large body (a 64 KiB or 1 MiB record): what is buffered, then the rest received straight
    // into `out`, instead of into buf_ and copied from there; that copy was a third of the
    // client's CPU per 64 KiB read (perf), CPU the daemon it measures shares.
    const size_t buffered = std::min(n, buf_.size() - pos_);
    const size_t start = out->size();
    out->append(buf_, pos_, buffered);
    pos_ += buffered;
    out->resize(start + n);
    for (size_t got = buffered; got < n;) {
      const ssize_t r = recv(fd_, out->data() + start + got, n - got, 0);
      if (r == 0) {
        *error = "the daemon closed the connection";
        return false;
      }
      if (r < 0) {
        if (errno == EINTR) continue;
        *error = std::string("recv: ") + std::strerror(errno);
        return false;
      }
      got += static_cast<size_t>(r);
    }
    return true;
  }

  bool ReadResponse(HttpResponse* r, std::string* error) {
    std::string line;
    if (!Line(&line, error)) return false;
    if (line.size() < 12 || line.compare(0, 5, "HTTP/") != 0) {
      *error = "not an HTTP response";
      return false;
    }
    r->status = std::atoi(line.c_str() + 9);
    r->close = line.compare(0, 8, "HTTP/1.0") == 0;
    r->body.clear();
    std::optional<size_t> length;
    bool chunked = false;
    for (;;) {
      if (!Line(&line, error)) return false;
      if (line.empty()) break;
      const size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string_view name(line.data(), colon);
      std::string_view value(line);
      value.remove_prefix(colon + 1);
      while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      if (EqualsIgnoreCase(name, "content-length")) {
        length = std::strtoull(std::string(value).c_str(), nullptr, 10);
      } else if (EqualsIgnoreCase(name, "transfer-encoding")) {
        chunked = EqualsIgnoreCase(value, "chunked");
      } else if (EqualsIgnoreCase(name, "connection")) {
        r->close = EqualsIgnoreCase(value, "close");
      }
    }
    if (chunked) {
      for (;;) {
        if (!Line(&line, error)) return false;
        const size_t size = std::strtoull(line.c_str(), nullptr, 16);
        if (size == 0) {
          do {
            if (!Line(&line, error)) return false;
          } while (!line.empty());
          return true;
        }
        if (!Take(size, &r->body, error) || !Line(&line, error)) return false;
      }
    }
    if (length) return Take(*length, &r->body, error);
    r->close = true;  // framed by the end of the connection
    while (Fill(buf_.size() - pos_ + 1, error)) {
    }
    r->body.append(buf_, pos_, std::string::npos);
    pos_ = buf_.size();
    error->clear();
    return true;
  }

  int fd_ = -1;
  std::string buf_;
  size_t pos_ = 0;
};

// What every request of the run carries: credentials and the fixed parts of the create body.
struct RequestParts {
  std::string socket;
  std::string auth_headers;  // Authorization (if a token) and X-Phivault-User/Role/Purpose
  std::string encounter_date;
};

std::string ErrorText(const HttpResponse& r) {
  std::string detail;
  try {
    const auto j = nlohmann::json::parse(r.body);
    if (j.is_object()) {
      detail = j.value("title", "");
      const std::string d = j.value("detail", "");
      if (!d.empty()) detail += ": " + d;
    }
  } catch (const nlohmann::json::exception&) {
  }
  return "HTTP " + std::to_string(r.status) + (detail.empty() ? "" : " " + Printable(detail));
}

class DaemonSession final : public loadgen::Session {
 public:
  explicit DaemonSession(const RequestParts& parts) : parts_(parts) {}

  bool Connect(std::string* error) { return conn_.Open(parts_.socket, error); }
  Connection& connection() { return conn_; }

  bool Create(const std::string& patient, std::string_view content, std::string* id,
              std::string* error) override {
    const std::string prefix = R"({"patient_id":")" + patient +
                               R"(","category":"clinical_note","content_type":"text/plain",)"
                               R"("encounter_date":")" +
                               parts_.encounter_date +
                               R"(","author":"Bench Synthetic","content":")";
    static constexpr std::string_view kSuffix = "\"}";
    const size_t length = prefix.size() + content.size() + kSuffix.size();
    const std::string head =
        "POST /v1/records HTTP/1.1\r\nHost: localhost\r\n" + parts_.auth_headers +
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(length) + "\r\n\r\n";
    std::vector<iovec> iov = {Iov(head), Iov(prefix), Iov(content), Iov(kSuffix)};
    HttpResponse r;
    if (!Send(std::move(iov), &r, error)) return false;
    if (r.status != 201) {
      *error = ErrorText(r);
      return false;
    }
    static constexpr std::string_view kKey = "\"record_id\"";
    const size_t key = r.body.find(kKey);
    const size_t open = key == std::string::npos ? key : r.body.find('"', key + kKey.size());
    const size_t close = open == std::string::npos ? open : r.body.find('"', open + 1);
    if (close == std::string::npos) {
      *error = "the 201 response has no record_id";
      return false;
    }
    id->assign(r.body, open + 1, close - open - 1);
    return true;
  }

  bool Read(const std::string& id, size_t expected_bytes, std::string* error) override {
    const std::string head = "GET /v1/records/" + id + "/content HTTP/1.1\r\nHost: localhost\r\n" +
                             parts_.auth_headers + "\r\n";
    HttpResponse r;
    if (!Send({Iov(head)}, &r, error)) return false;
    if (r.status != 200) {
      *error = ErrorText(r);
      return false;
    }
    if (r.body.size() != expected_bytes) {
      *error = "read " + std::to_string(r.body.size()) + " bytes, expected " +
               std::to_string(expected_bytes);
      return false;
    }
    return true;
  }

  // GET /v1/health: no credentials checked, nothing read, stored or audited.
  bool Ping(std::string* error) override {
    static constexpr std::string_view kHead = "GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n";
    HttpResponse r;
    if (!Send({Iov(kHead)}, &r, error)) return false;
    if (r.status != 200) {
      *error = ErrorText(r);
      return false;
    }
    return true;
  }

  // GET /v1/status as parsed JSON, or nullopt with `*error` set.
  std::optional<nlohmann::json> Status(std::string* error) {
    const std::string head =
        "GET /v1/status HTTP/1.1\r\nHost: localhost\r\n" + parts_.auth_headers + "\r\n";
    HttpResponse r;
    if (!Send({Iov(head)}, &r, error)) return std::nullopt;
    if (r.status != 200) {
      *error = ErrorText(r);
      return std::nullopt;
    }
    try {
      return nlohmann::json::parse(r.body);
    } catch (const nlohmann::json::exception&) {
      *error = "GET /v1/status did not return JSON";
      return std::nullopt;
    }
  }

 private:
  static iovec Iov(std::string_view s) {
    return iovec{const_cast<char*>(s.data()), s.size()};  // sendmsg does not write to it
  }

  // One reconnect when the daemon had closed the kept-alive connection.
  bool Send(std::vector<iovec> iov, HttpResponse* r, std::string* error) {
    if (!conn_.open() && !Connect(error)) return false;
    return conn_.Exchange(std::move(iov), r, error);
  }

  const RequestParts& parts_;
  Connection conn_;
};

class DaemonTarget final : public loadgen::Target {
 public:
  explicit DaemonTarget(const RequestParts& parts) : parts_(parts) {}
  std::unique_ptr<loadgen::Session> Connect(int, std::string* error) override {
    auto s = std::make_unique<DaemonSession>(parts_);
    if (!s->Connect(error)) return nullptr;
    return s;
  }

 private:
  const RequestParts& parts_;
};

// The daemon seen from outside: /proc for CPU and memory, GET /v1/status for its synced writes
// (through a short-lived connection, so that it takes no connection slot during the run), du of
// the data directory.
class DaemonProbe final : public loadgen::ServerProbe {
 public:
  DaemonProbe(const RequestParts& parts, pid_t pid, std::string data_dir)
      : parts_(parts), pid_(pid), data_dir_(std::move(data_dir)) {}

  loadgen::ServerSample Sample() override {
    loadgen::ServerSample s;
    s.cpu_us = loadgen::ProcessCpuUs(pid_);
    s.rss_bytes = loadgen::ProcessRss(pid_);
    s.syncs = SyncedWrites();
    if (!data_dir_.empty()) {
      s.disk_bytes = loadgen::DiskUsage(data_dir_);
      s.disk_apparent_bytes = loadgen::DiskUsage(data_dir_, /*apparent=*/true);
    }
    return s;
  }
  std::optional<uint64_t> Rss() override { return loadgen::ProcessRss(pid_); }
  std::string cpu_scope() const override { return "daemon process"; }
  // Why the sync count is missing, if it is.
  const std::string& sync_error() const { return sync_error_; }

 private:
  std::optional<uint64_t> SyncedWrites() {
    std::string error;
    // The warm-up's connections may still hold slots for a moment after they close.
    for (int attempt = 0; attempt < 20; ++attempt) {
      DaemonSession session(parts_);
      auto status = session.Status(&error);
      if (status) {
        auto it = status->find("synced_writes");
        if (it != status->end() && it->is_number_unsigned()) return it->get<uint64_t>();
        sync_error_ = "the daemon's GET /v1/status has no synced_writes (an older phivaultd)";
        return std::nullopt;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    sync_error_ = "GET /v1/status: " + error;
    return std::nullopt;
  }

  const RequestParts& parts_;
  const pid_t pid_;
  const std::string data_dir_;
  std::string sync_error_;
};

}  // namespace

BenchCommand::BenchCommand(CLI::App& app) {
  cmd_ = app.add_subcommand(
      "bench",
      "load generator: N keep-alive clients create and/or read synthetic records over the "
      "socket; reports throughput, latency, daemon CPU, syncs, memory and disk per request "
      "(docs/benchmarks.md). Every create and read is a real, audited one: use a development "
      "vault");
  cmd_->add_option("--workload", a_.workload,
                   "create, read, mixed (90% read, 10% create), or ping (GET /v1/health: no "
                   "store, no audit; the HTTP server's own cost per request)")
      ->check(CLI::IsMember({"create", "read", "mixed", "ping"}))
      ->default_str("create");
  cmd_->add_option("--size", a_.size, "content bytes per record: 1KiB, 64KiB, 1MiB or a number")
      ->default_str("1KiB");
  cmd_->add_option("--clients", a_.clients, "concurrent clients, one connection each")
      ->default_str("16");
  cmd_->add_option("--duration", a_.duration_s, "seconds of the measured phase")->default_str("10");
  cmd_->add_option("--ops", a_.ops, "total operations instead of a duration");
  cmd_->add_option("--warmup-records", a_.warmup_records,
                   "records created before a read or mixed run (default max(clients, min(1000, "
                   "64 MiB / size)))");
  cmd_->add_option("--data-dir", a_.data_dir,
                   "the daemon's data directory, to report bytes on disk per byte stored");
  cmd_->add_option("--daemon-pid", a_.daemon_pid,
                   "the daemon's pid (default: the socket's peer credentials, which under "
                   "systemd socket activation name the service manager instead)");
}

std::optional<int> BenchCommand::Run(const Globals& g) const {
  if (!cmd_->parsed()) return std::nullopt;
  loadgen::Options o;
  o.workload = *loadgen::ParseWorkload(a_.workload);
  auto size = loadgen::ParseSize(a_.size);
  if (!size) return UsageError("--size must be 1KiB, 64KiB, 1MiB or a positive byte count");
  o.size = *size;
  o.clients = a_.clients;
  o.duration_s = a_.duration_s;
  o.ops = a_.ops;
  o.warmup_records = a_.warmup_records;
  if (std::string problem = loadgen::CheckOptions(o); !problem.empty()) {
    return UsageError(problem);
  }
  if (!a_.data_dir.empty() && !loadgen::DiskUsage(a_.data_dir)) {
    return UsageError("--data-dir " + Printable(a_.data_dir) + " is not a readable directory");
  }

  RequestParts parts{.socket = g.socket, .encounter_date = TodayUtc()};
  if (!g.token.empty()) parts.auth_headers += "Authorization: Bearer " + g.token + "\r\n";
  parts.auth_headers += "X-Phivault-User: " + g.user + "\r\nX-Phivault-Role: " + g.role +
                        "\r\nX-Phivault-Purpose: " + g.purpose + "\r\n";
  for (const std::string* v : {&g.token, &g.user, &g.role}) {
    for (char c : *v) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        return UsageError("--token, --as and --role must not contain control characters");
      }
    }
  }

  // The daemon must answer before anything is measured; its pid comes from this connection.
  DaemonSession first(parts);
  std::string error;
  auto status = first.Status(&error);
  if (!status) {
    PrintError("bench", "GET /v1/status failed: " + error);
    return error.rfind("HTTP 40", 0) == 0 ? kExitDenied : kExitUnavailable;
  }
  pid_t pid = a_.daemon_pid;
  if (pid <= 0) {
    auto peer = first.connection().PeerPid();
    if (!peer) {
      PrintError("bench", "the socket's peer credentials carry no pid; give --daemon-pid");
      return kExitError;
    }
    pid = *peer;
  }
  first.connection().Close();

  DaemonTarget target(parts);
  DaemonProbe probe(parts, pid, a_.data_dir);
  loadgen::Report report = loadgen::Run("phivault", target, &probe, o);
  if (!probe.sync_error().empty()) PrintError("bench", probe.sync_error());
  if (g.json) {
    std::cout << loadgen::ToJson(report).dump(2) << "\n";
  } else {
    std::cout << loadgen::ToTable(report);
  }
  if (report.errors > 0) {
    PrintError("bench", std::to_string(report.errors) +
                            " requests failed; the first: " + report.first_error);
    return kExitError;
  }
  return kExitOk;
}

}  // namespace phivault::tools
