// phivaultd's operational log (spdlog): stderr, which systemd hands to journald, plus an optional
// file. Log lines carry request ids, route templates, status codes and principal names; never
// PHI (patient ids, names, content, concrete record paths) and never tokens.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "base/status.h"

namespace phivault::daemon {

// Installs the default logger. When stderr is the journal (JOURNAL_STREAM names it) lines are
// "<priority>message" (sd-daemon(3) prefixes, journald adds the time); otherwise each line starts
// with a UTC timestamp. `file`, if not empty, gets timestamped lines too. InvalidArgument for an
// unknown level, Unavailable if the file cannot be opened.
Status SetupLogging(const std::string& level, const std::string& file);

struct RequestLogEntry {
  std::string_view request_id;
  std::string_view method;
  std::string_view route;  // the route template, e.g. "/v1/records/{id}"; "-" if none matched
  int status = 0;
  std::chrono::microseconds duration{0};
  std::string_view principal;  // "-" if not authenticated
  std::string_view problem;    // problem type for errors, empty otherwise
};
// One line per request, at info level (warn for 5xx).
void LogRequest(const RequestLogEntry& e);

}  // namespace phivault::daemon
