// Runs the built `phivault` binary as a user would: its own process, a chosen environment and
// standard input, standard output and error captured.
#pragma once

#include <sys/wait.h>

#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "tests/testing/subprocess.h"

namespace phivault::testing {

struct CliRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary) << data;
}

// Runs `program` with `args`, ChildEnvironment(env) (tests/testing/subprocess.h), and the file
// `stdin_path` on standard input. Output goes through files in `work_dir`.
inline CliRun RunProgram(const std::string& program, const std::vector<std::string>& args,
                         const std::map<std::string, std::string>& env,
                         const std::string& stdin_path, const std::string& work_dir) {
  const std::string out_path = work_dir + "/stdout", err_path = work_dir + "/stderr";
  std::vector<std::string> argv = {program};
  argv.insert(argv.end(), args.begin(), args.end());
  CliRun run;
  std::string error;
  const pid_t pid = SpawnRedirected(argv, env, stdin_path, out_path, err_path, &error);
  if (pid < 0) return run;
  int status = 0;
  if (waitpid(pid, &status, 0) == pid && WIFEXITED(status)) run.exit_code = WEXITSTATUS(status);
  run.out = ReadFile(out_path);
  run.err = ReadFile(err_path);
  return run;
}

// `phivault args...` with `input` on standard input.
inline CliRun RunPhivault(const std::vector<std::string>& args,
                          const std::map<std::string, std::string>& env, const std::string& input,
                          const std::string& work_dir) {
  const std::string in_path = work_dir + "/stdin";
  WriteFile(in_path, input);
  return RunProgram(PHIVAULT_BINARY, args, env, in_path, work_dir);
}

}  // namespace phivault::testing
