// The request handlers: turn each HTTP request on a route of daemon/router.h into one call of
// the VaultService, and its result into a JSON or problem+json response.
//
// Order for every request: request id (X-Request-Id if well-formed, else a fresh one; always
// echoed), header size limit, route (404/405), then for non-public routes: the peer's
// credentials (SO_PEERCRED, into every audit entry), the form of the acting-party headers (400,
// daemon/auth.h CheckActingPartyHeaders; reported before anything about the credentials, which
// are nevertheless checked first so that the refusal's entry names a genuine application),
// authentication (401), the configured role and purpose (403), an operator's role (403) — all
// refusals on PHI routes are reported to VaultService::AuditRejected — then path and query
// parameters, the body (411/413/415/400) and the service call. No path or query text ever
// reaches the service unvalidated, and nothing is called on the service for a malformed request.
// One log line per request (daemon/logging.h).
//
// Failed authentications are budgeted per peer uid (daemon/auth_failures.h, limits.auth_failure_*):
// beyond the budget they are summarised in one audit entry per window instead of one each, and
// the connection is closed; it is also closed after limits.auth_failures_per_connection failures.
// The factory owns that budget and writes the pending summaries when the server stops
// (HttpServer::Stop, daemon/http_server.h ServerStopListener) and when it is destroyed.
//
// The audit and patient exports are streamed: chunked, the status line sent with the first
// chunk; a failure after that closes the connection before the final chunk. A retention sweep
// asked for with "Accept: application/x-ndjson" streams one progress line per step the same
// way, and ends with a {"result": ...} line, or, if it fails after its first line, with an
// {"error": <problem>} line in a complete response.
//
// GET /v1/certificates/{id} answers with the signed note (text/plain), or, by Accept, with its
// printable HTML or JSON rendering, made only after the note has been verified with the audit
// verifier key (VaultService::AuditVerifierKey, so those two forms need action audit.verify too).
#pragma once

#include <Poco/Net/HTTPRequestHandlerFactory.h>

#include "daemon/auth.h"
#include "daemon/config.h"
#include "daemon/service.h"

namespace phivault::daemon {

struct ApiDeps {
  const Config* config;                // roles, limits, max_content_bytes
  VaultService* service;               // thread-safe
  const Authenticator* authenticator;  // thread-safe (const)
};

// All three must outlive every connection the factory serves, and the factory itself.
Poco::Net::HTTPRequestHandlerFactory::Ptr NewApiHandlerFactory(const ApiDeps& deps);

}  // namespace phivault::daemon
