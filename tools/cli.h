// The `phivault` command line: argument parsing, one function per subcommand, exit codes.
#pragma once

#include <string_view>

#include "tools/client.h"

namespace phivault::tools {

// Exit codes, stable for scripts (documented in `phivault --help` and docs/cli.md).
enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,         // any other error
  kExitUsage = 2,         // bad command line
  kExitDenied = 3,        // 401 / 403
  kExitNotFound = 4,      // 404 / 410 (shredded)
  kExitUnavailable = 5,   // cannot connect, connection lost, or 503
  kExitIntegrity = 6,     // 500 integrity-failure
  kExitVerifyFailed = 7,  // an audit export, proof or checkpoint failed verification
};

ExitCode ExitCodeFor(const client::Error& error);

// True for a real calendar date written YYYY-MM-DD.
bool IsCalendarDate(std::string_view date);

// Runs the CLI; returns the process exit code. Writes results to stdout and errors to stderr
// as "phivault: <title>: <detail>".
int RunCli(int argc, char** argv);

}  // namespace phivault::tools
