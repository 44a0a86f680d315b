// HTTP requests to the daemon's API as it serves them: the real Poco server on a Unix socket with
// the daemon's connection handling (daemon/http_server.h: framing checks, chunked bodies, byte
// 0xFF detection, timeouts), the real router, authenticator and handlers (daemon/handlers.h: the
// acting-party headers, path, query and body validation), in front of a VaultService that refuses
// every call (a NiceMock whose every result is Unavailable): the target is everything up to the
// service. Each input is the byte stream of one connection (possibly several pipelined requests);
// the harness half-closes it, reads the answer to the end and waits until the server has let the
// connection go, so that each input is served completely before the next.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <thread>

#include <gmock/gmock.h>

#include "crypto/hash.h"
#include "daemon/auth.h"
#include "daemon/config.h"
#include "daemon/handlers.h"
#include "daemon/http_server.h"
#include "daemon/mock_service.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

namespace d = phivault::daemon;

// The token of the seeds' Authorization headers (tests/fuzz/http.dict).
constexpr char kToken[] = "pvt_fuzz-synthetic-token";

template <typename T>
T Refused() {
  return phivault::Unavailable("fuzz: no vault behind the API");
}
template <typename... T>
void RefuseEvery() {
  (::testing::DefaultValue<phivault::StatusOr<T>>::SetFactory(&Refused<phivault::StatusOr<T>>),
   ...);
}

struct Server {
  d::Config config;
  std::unique_ptr<::testing::NiceMock<d::MockVaultService>> service;
  std::unique_ptr<d::Authenticator> auth;
  std::unique_ptr<d::HttpServer> server;
  std::string socket_path;
};

Server* StartServer() {
  auto* s = new Server();
  d::Config& c = s->config;
  c.config_path = "fuzz.toml";
  c.roles = d::DefaultRoles();
  c.categories = d::DefaultCategories();
  c.max_content_bytes = 1000;
  c.limits.max_body_bytes = 4096;
  c.limits.max_small_body_bytes = 4096;
  c.limits.max_header_bytes = 2048;
  c.limits.max_connections = 64;
  c.limits.idle_timeout_ms = 500;
  c.limits.request_timeout_ms = 2000;
  c.limits.auth_failure_burst = 1u << 30;
  d::ApplicationConfig app;
  app.name = "ehr";
  app.token_sha256_hex =
      phivault::crypto::HexEncode(phivault::crypto::AsView(phivault::crypto::Sha256(kToken)));
  app.uids = {getuid()};
  app.actions = d::KnownActions();
  app.roles = d::DefaultRoles();
  c.applications.push_back(app);

  using namespace phivault::daemon;
  using phivault::storage::Record;
  using phivault::storage::RecordMetadata;
  RefuseEvery<ConfidentialContact, InclusionProofResult, KeyRotateResult, PatientFacts,
              PolicyCheckResult, PolicyInfo, RecordList, RenderedReport, RetentionTableInfo,
              SweepResult, VaultStatus, std::string, std::vector<BreakGlassWindow>,
              std::vector<CertificateSummary>, std::vector<LegalHold>, std::vector<PatientRequest>,
              std::vector<PolicyInfo>, std::vector<RecordRetention>, std::vector<Restriction>,
              std::vector<std::string>, Record, RecordMetadata, uint64_t,
              std::pair<BreakGlassWindow, uint64_t>, std::pair<Restriction, uint64_t>,
              std::pair<PatientRequest, uint64_t>, std::pair<PatientFacts, uint64_t>,
              std::pair<LegalHold, uint64_t>, phivault::storage::BackupManifest>();
  s->service = std::make_unique<::testing::NiceMock<d::MockVaultService>>();

  auto auth = d::Authenticator::Create(c);
  if (!auth.ok()) std::abort();
  s->auth = std::move(auth).value();
  s->socket_path = phivault::fuzz::ScratchDir() + "/phivault.sock";
  d::HttpServerOptions options;
  options.socket_path = s->socket_path;
  options.limits = c.limits;
  auto server = d::HttpServer::Start(
      options, d::NewApiHandlerFactory(d::ApiDeps{&s->config, s->service.get(), s->auth.get()}));
  if (!server.ok()) std::abort();
  s->server = std::move(server).value();
  return s;
}

Server* g_server = nullptr;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  phivault::fuzz::InitOrDie();
  signal(SIGPIPE, SIG_IGN);
  g_server = StartServer();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) std::abort();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, g_server->socket_path.c_str(), sizeof(addr.sun_path) - 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) std::abort();
  // The server may answer and close before it has read everything (a refused header, say):
  // what it did not read is not sent.
  for (size_t sent = 0; sent < size;) {
    const ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  shutdown(fd, SHUT_WR);
  // Every input ends in a half-closed connection, which the server must close within its request
  // timeout (2 s); one it keeps open for 5 s is a hang. The harness counts its own waits rather
  // than reading the clock, so that a process stopped for a while (SIGSTOP, a busy machine) is not
  // taken for a hang: 50 empty polls of 100 ms, then 250,000 naps of at least 20 µs (5 s) waiting
  // for the server to let the connection go.
  char buf[16384];
  for (int empty_polls = 0;;) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) == 0) {
      if (++empty_polls == 50) __builtin_trap();
      continue;
    }
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
  }
  close(fd);
  for (int naps = 0; g_server->server->active_connections() != 0;) {
    if (++naps == 250000) __builtin_trap();
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  return 0;
}
