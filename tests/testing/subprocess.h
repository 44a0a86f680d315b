// Starting the project's binaries from tests as a user would: their own process, a clean
// environment, standard streams redirected to files.
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <sys/types.h>

#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <vector>

extern char** environ;

namespace phivault::testing {

// The caller's environment without the variables that would change how a phivault binary behaves
// (PHIVAULT_*, socket activation, notification, credentials, journald), plus `extra`.
inline std::vector<std::string> ChildEnvironment(const std::map<std::string, std::string>& extra) {
  auto inherited_control = [](std::string_view entry) {
    for (std::string_view prefix :
         {"PHIVAULT_", "LISTEN_FDS=", "LISTEN_PID=", "LISTEN_FDNAMES=", "NOTIFY_SOCKET=",
          "CREDENTIALS_DIRECTORY=", "JOURNAL_STREAM="}) {
      if (entry.rfind(prefix, 0) == 0) return true;
    }
    return false;
  };
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (!inherited_control(*e)) env.emplace_back(*e);
  }
  for (const auto& [k, v] : extra) env.push_back(k + "=" + v);
  return env;
}

// posix_spawn of argv (argv[0] is the executable's path) with ChildEnvironment(env) and
// stdin/stdout/stderr redirected to the given files (outputs created 0600). The child's pid, or
// -1 with `*error` set to the reason.
inline pid_t SpawnRedirected(std::vector<std::string> argv,
                             const std::map<std::string, std::string>& env,
                             const std::string& in_path, const std::string& out_path,
                             const std::string& err_path, std::string* error) {
  std::vector<std::string> env_strings = ChildEnvironment(env);
  auto pointers = [](std::vector<std::string>& strings) {
    std::vector<char*> p;
    for (auto& s : strings) p.push_back(s.data());
    p.push_back(nullptr);
    return p;
  };
  std::vector<char*> argv_p = pointers(argv), envp = pointers(env_strings);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, in_path.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv_p[0], &actions, nullptr, argv_p.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    *error = std::strerror(rc);
    return -1;
  }
  return pid;
}

}  // namespace phivault::testing
