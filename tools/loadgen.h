// The load generator behind `phivault bench` and `phivault_compare_bench`: N client threads, each
// with its own session (connection), running a create, read or 90/10 read/create workload (or, for
// the daemon only, a ping: the transport's floor) for a duration or an operation count, and the
// report both print (a table, or JSON with the same fields for every backend: docs/benchmarks.md).
//
// The driver measures what it can from outside the engine (ops/s, latency percentiles, content
// bytes written); what only the engine's side knows (CPU, syncs, memory, bytes on disk) comes
// from a ServerProbe sampled before, during and after the measured phase.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace phivault::loadgen {

// mixed: 90% read, 10% create. ping: a request that touches no record, no store and no audit log
// (the daemon's GET /v1/health), so that its cost is the HTTP server's and the client's alone.
enum class Workload { kCreate, kRead, kMixed, kPing };

// "create", "read", "mixed", "ping"; nullopt for anything else.
std::optional<Workload> ParseWorkload(std::string_view name);
std::string_view WorkloadName(Workload w);
// "1KiB", "64KiB", "1MiB" or a plain byte count ("1024"); nullopt (0 included) otherwise.
std::optional<size_t> ParseSize(std::string_view text);

struct Options {
  Workload workload = Workload::kCreate;
  size_t size = 1024;      // content bytes per record
  int clients = 16;        // concurrent sessions, one thread each
  double duration_s = 10;  // measured phase, when ops == 0
  uint64_t ops = 0;        // if > 0: total operations over all clients instead of a duration
  // Records created before the measured phase for read and mixed to read (0: the default,
  // max(clients, min(1000, 64 MiB / size))).
  uint64_t warmup_records = 0;
};

// A usage problem with `o` ("--clients must be between 1 and 1024"), or "" if it is valid.
std::string CheckOptions(const Options& o);
uint64_t WarmupRecords(const Options& o);

// One client's connection to the engine. Used by one thread only.
class Session {
 public:
  virtual ~Session() = default;
  // Stores a new record holding `content` (for a synthetic patient `patient`); its id in `*id`.
  // False with `*error` set if it was not stored.
  virtual bool Create(const std::string& patient, std::string_view content, std::string* id,
                      std::string* error) = 0;
  // Reads the record `id` (audited where the engine audits); false with `*error` set if it could
  // not be read or did not hold `expected_bytes` bytes.
  virtual bool Read(const std::string& id, size_t expected_bytes, std::string* error) = 0;
  // A request that reads and writes nothing (the ping workload); false with `*error` set if it
  // was not answered. Engines without one keep this default.
  virtual bool Ping(std::string* error) {
    *error = "this backend has no ping request";
    return false;
  }
};

class Target {
 public:
  virtual ~Target() = default;
  // A new session for client number `client`; nullptr with `*error` set on failure.
  virtual std::unique_ptr<Session> Connect(int client, std::string* error) = 0;
};

// The engine's own side, read before and after the measured phase (and RSS sampled during it).
// Each field is nullopt where the engine cannot tell.
struct ServerSample {
  std::optional<double> cpu_us;  // user + system CPU of the engine's processes so far
  std::optional<uint64_t> rss_bytes;
  std::optional<uint64_t> syncs;       // log syncs so far
  std::optional<uint64_t> disk_bytes;  // bytes allocated on disk by its data directory (du)
  // The sum of its files' sizes: logs preallocated ahead of writes (RocksDB's WAL) count only as
  // far as written, which is what a short run can see.
  std::optional<uint64_t> disk_apparent_bytes;
};

class ServerProbe {
 public:
  virtual ~ServerProbe() = default;
  virtual ServerSample Sample() = 0;
  // Only RSS, cheap enough to call every 100 ms during the run.
  virtual std::optional<uint64_t> Rss() = 0;
  // What the CPU figure covers ("daemon process", "postgres server processes", ...).
  virtual std::string cpu_scope() const = 0;
};

struct Report {
  std::string backend;
  Options options;
  uint64_t warmup_records = 0;
  double elapsed_s = 0;
  uint64_t ops = 0, creates = 0, reads = 0, pings = 0, errors = 0;
  std::string first_error;
  double ops_per_s = 0;
  double p50_us = 0, p95_us = 0, p99_us = 0, max_us = 0;
  std::string cpu_scope;
  std::optional<double> cpu_us_per_op;
  // This process's CPU over the measured phase, per operation: the load generator's own cost
  // (for in-process engines, the engine's too).
  double client_cpu_us_per_op = 0;
  std::optional<double> syncs_per_op;
  std::optional<uint64_t> rss_before, rss_after, rss_peak;
  std::optional<uint64_t> disk_before, disk_after;
  std::optional<uint64_t> apparent_before, apparent_after;
  uint64_t content_bytes_written = 0;  // warm-up and measured phase
  std::optional<double> disk_bytes_per_content_byte;
  std::optional<double> apparent_bytes_per_content_byte;
};

// Warm-up (read and mixed: creates WarmupRecords(options) records, spread over the clients),
// then the measured phase with `options.clients` sessions, sampling `probe` (may be null) around
// it. Connection failures count as errors; a client whose session cannot be made does not run.
Report Run(const std::string& backend, Target& target, ServerProbe* probe, const Options& options);

nlohmann::json ToJson(const Report& r);
// Two columns, "field  value", for a terminal.
std::string ToTable(const Report& r);

// --- Helpers for probes: /proc and the filesystem ----------------------------------------------

// utime + stime of process `pid` in µs (all its threads), from /proc/<pid>/stat.
std::optional<double> ProcessCpuUs(pid_t pid);
// VmRSS of `pid` in bytes, from /proc/<pid>/status.
std::optional<uint64_t> ProcessRss(pid_t pid);
// The processes whose parent is `pid` (from /proc/*/stat).
std::vector<pid_t> ChildProcesses(pid_t pid);
// st_blocks * 512 summed over every file under `dir` (like du), or with `apparent` the files'
// sizes (du --apparent-size); nullopt if it cannot be read.
std::optional<uint64_t> DiskUsage(const std::string& dir, bool apparent = false);
// CPU of this process (getrusage RUSAGE_SELF) in µs.
double SelfCpuUs();

}  // namespace phivault::loadgen
