// phivault_bench: Google Benchmark's flags plus the large-log options below. docs/benchmarks.md.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "tools/bench/benchmarks.h"

namespace {

constexpr const char* kUsage =
    "phivault_bench [benchmark flags] [--db DIR] [--entries N] [--patients N] [--gen-threads N]\n"
    "  --db DIR         vault holding the large audit log (generated there on first use and\n"
    "                   reused by later runs); default: a scratch directory under $TMPDIR\n"
    "  --entries N      audit entries in the large log (default 10000000)\n"
    "  --patients N     synthetic patients they are spread over (default 100000)\n"
    "  --gen-threads N  concurrent clients while generating (default 128)\n"
    "  --policy-share   instead of the benchmarks: the access policy's share of audited reads\n"
    "                   (default and 200-rule policy, 1 and 16 threads), in one run\n"
    "  --share-rounds N, --share-seconds N  its rounds (default 3) and seconds per measurement\n"
    "                   (default 2)\n";

[[noreturn]] void Usage(const std::string& problem) {
  std::fprintf(stderr, "phivault_bench: %s\n%s", problem.c_str(), kUsage);
  std::exit(2);
}

uint64_t ParseCount(const std::string& flag, const std::string& value) {
  char* end = nullptr;
  const unsigned long long v = std::strtoull(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || v == 0) Usage(flag + " needs a positive integer");
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  phivault::bench::LargeLogOptions options;
  phivault::bench::PolicyShareOptions share;
  bool policy_share = false;
  // Our flags are taken out of argv before Google Benchmark sees the rest.
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--policy-share") {
      policy_share = true;
      continue;
    }
    const std::string_view names[] = {"--db",          "--entries",      "--patients",
                                      "--gen-threads", "--share-rounds", "--share-seconds"};
    bool ours = false;
    for (std::string_view name : names) {
      std::string value;
      if (arg == name) {
        if (i + 1 >= argc) Usage(std::string(name) + " needs a value");
        value = argv[++i];
      } else if (arg.starts_with(std::string(name) + "=")) {
        value = std::string(arg.substr(name.size() + 1));
      } else {
        continue;
      }
      ours = true;
      if (name == "--db") {
        if (value.empty()) Usage("--db needs a directory");
        options.db_dir = value;
      } else if (name == "--entries") {
        options.entries = ParseCount("--entries", value);
      } else if (name == "--patients") {
        options.patients = ParseCount("--patients", value);
      } else if (name == "--share-rounds") {
        share.rounds = static_cast<int>(ParseCount("--share-rounds", value));
      } else if (name == "--share-seconds") {
        share.seconds = static_cast<double>(ParseCount("--share-seconds", value));
      } else {
        options.generation_threads = static_cast<int>(ParseCount("--gen-threads", value));
      }
    }
    if (!ours) rest.push_back(argv[i]);
  }
  if (policy_share) {
    if (rest.size() > 1) Usage("--policy-share takes no benchmark flags");
    return phivault::bench::RunPolicyShare(share);
  }
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 2;

  phivault::bench::RegisterThroughputBenchmarks();
  phivault::bench::RegisterMerkleMicroBenchmarks();
  phivault::bench::RegisterLargeLogBenchmarks(options);
  benchmark::RunSpecifiedBenchmarks();
  phivault::bench::CloseLargeLog();
  benchmark::Shutdown();
  return 0;
}
