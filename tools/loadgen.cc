#include "tools/loadgen.h"

#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <latch>
#include <mutex>
#include <sstream>
#include <thread>

#include "base/mutex.h"

namespace phivault::loadgen {
namespace {

using Clock = std::chrono::steady_clock;

// A small, fast generator per thread: the client must stay cheap.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t Next() {
    s_ ^= s_ << 13;
    s_ ^= s_ >> 7;
    s_ ^= s_ << 17;
    return s_;
  }

 private:
  uint64_t s_;
};

// `size` printable synthetic bytes (JSON-safe: letters and digits only).
std::string SyntheticContent(size_t size, uint64_t seed) {
  static constexpr char kAlphabet[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  Rng rng(seed);
  std::string s(size, ' ');
  for (char& c : s) c = kAlphabet[rng.Next() % (sizeof(kAlphabet) - 1)];
  return s;
}

std::string Patient(int client, uint64_t n) {
  return "bench-synthetic-" + std::to_string(client) + "-" + std::to_string(n % 50);
}

double Percentile(const std::vector<uint64_t>& sorted_ns, double p) {
  if (sorted_ns.empty()) return 0;
  const size_t idx =
      std::min(sorted_ns.size() - 1, static_cast<size_t>(std::ceil(p * sorted_ns.size())) - 1);
  return static_cast<double>(sorted_ns[idx]) / 1000.0;
}

struct ErrorSink {
  std::atomic<uint64_t> count{0};
  Mutex mu;
  std::string first GUARDED_BY(mu);
  void Add(const std::string& e) {
    if (count.fetch_add(1) == 0) {
      MutexLock lock(mu);
      first = e;
    }
  }
};

// A thread gives up after this many failures in a row (the engine is gone), so that a dead
// engine does not turn the run into a busy loop of errors.
constexpr int kMaxConsecutiveErrors = 100;

std::vector<std::string> Warmup(Target& target, const Options& o, uint64_t n, ErrorSink& errors,
                                uint64_t* bytes) {
  const int threads = static_cast<int>(std::min<uint64_t>(o.clients, n));
  std::vector<std::vector<std::string>> ids(threads);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::string error;
      auto session = target.Connect(t, &error);
      if (session == nullptr) return errors.Add("warm-up: " + error);
      const std::string content = SyntheticContent(o.size, 1000 + t);
      int consecutive = 0;
      for (uint64_t i = t; i < n && consecutive < kMaxConsecutiveErrors; i += threads) {
        std::string id;
        if (session->Create(Patient(t, i), content, &id, &error)) {
          ids[t].push_back(std::move(id));
          consecutive = 0;
        } else {
          errors.Add("warm-up create: " + error);
          ++consecutive;
        }
      }
    });
  }
  for (auto& w : workers) w.join();
  std::vector<std::string> all;
  for (auto& v : ids) {
    for (auto& id : v) all.push_back(std::move(id));
  }
  *bytes += all.size() * o.size;
  return all;
}

std::optional<double> Diff(std::optional<double> a, std::optional<double> b) {
  if (!a || !b) return std::nullopt;
  return *b - *a;
}

}  // namespace

std::optional<Workload> ParseWorkload(std::string_view name) {
  if (name == "create") return Workload::kCreate;
  if (name == "read") return Workload::kRead;
  if (name == "mixed") return Workload::kMixed;
  if (name == "ping") return Workload::kPing;
  return std::nullopt;
}

std::string_view WorkloadName(Workload w) {
  switch (w) {
    case Workload::kCreate:
      return "create";
    case Workload::kRead:
      return "read";
    case Workload::kMixed:
      return "mixed";
    case Workload::kPing:
      return "ping";
  }
  return "create";
}

std::optional<size_t> ParseSize(std::string_view text) {
  if (text == "1KiB") return 1024;
  if (text == "64KiB") return 64 * 1024;
  if (text == "1MiB") return 1024 * 1024;
  if (text.empty() || text.size() > 9) return std::nullopt;
  size_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<size_t>(c - '0');
  }
  if (v == 0) return std::nullopt;
  return v;
}

std::string CheckOptions(const Options& o) {
  if (o.clients < 1 || o.clients > 1024) return "--clients must be between 1 and 1024";
  if (o.size == 0 || o.size > (32u << 20)) return "--size must be between 1 byte and 32 MiB";
  if (o.ops == 0 && !(o.duration_s > 0 && o.duration_s <= 86400)) {
    return "--duration must be more than 0 and at most 86400 seconds";
  }
  return "";
}

uint64_t WarmupRecords(const Options& o) {
  if (o.workload == Workload::kCreate || o.workload == Workload::kPing) return 0;
  if (o.warmup_records > 0) return o.warmup_records;
  const uint64_t by_size = std::max<uint64_t>(1, (64ull << 20) / o.size);
  return std::max<uint64_t>(o.clients, std::min<uint64_t>(1000, by_size));
}

Report Run(const std::string& backend, Target& target, ServerProbe* probe, const Options& o) {
  Report r;
  r.backend = backend;
  r.options = o;
  if (probe != nullptr) r.cpu_scope = probe->cpu_scope();
  ErrorSink errors;
  const ServerSample idle = probe != nullptr ? probe->Sample() : ServerSample{};

  std::vector<std::string> read_ids;
  const uint64_t warmup = WarmupRecords(o);
  if (warmup > 0) read_ids = Warmup(target, o, warmup, errors, &r.content_bytes_written);
  r.warmup_records = read_ids.size();
  if ((o.workload == Workload::kRead || o.workload == Workload::kMixed) && read_ids.empty()) {
    errors.Add("warm-up stored no record to read");
  }

  std::vector<std::unique_ptr<Session>> sessions(o.clients);
  for (int c = 0; c < o.clients; ++c) {
    std::string error;
    sessions[c] = target.Connect(c, &error);
    if (sessions[c] == nullptr) errors.Add("connect: " + error);
  }

  std::vector<std::vector<uint64_t>> latencies(o.clients);
  std::vector<uint64_t> creates(o.clients, 0), reads(o.clients, 0), pings(o.clients, 0);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> issued{0};
  std::latch start(o.clients + 1);
  std::vector<std::thread> workers;
  const bool can_read = !read_ids.empty();
  for (int c = 0; c < o.clients; ++c) {
    workers.emplace_back([&, c] {
      Session* session = sessions[c].get();
      const std::string content = SyntheticContent(o.size, 1 + c);
      Rng rng(7 + c);
      auto& lat = latencies[c];
      lat.reserve(o.ops > 0 ? o.ops / o.clients + 1 : 1 << 16);
      start.arrive_and_wait();
      if (session == nullptr) return;
      int consecutive = 0;
      std::string id, error;
      for (uint64_t n = 0; consecutive < kMaxConsecutiveErrors; ++n) {
        if (o.ops > 0 ? issued.fetch_add(1, std::memory_order_relaxed) >= o.ops
                      : stop.load(std::memory_order_relaxed)) {
          break;
        }
        enum { kCreateOp, kReadOp, kPingOp } op = kReadOp;
        if (o.workload == Workload::kPing) {
          op = kPingOp;
        } else if (o.workload == Workload::kCreate ||
                   (o.workload == Workload::kMixed && rng.Next() % 10 == 0) || !can_read) {
          op = kCreateOp;
        }
        const auto t0 = Clock::now();
        bool ok = false;
        switch (op) {
          case kCreateOp:
            ok = session->Create(Patient(c, n), content, &id, &error);
            break;
          case kReadOp:
            ok = session->Read(read_ids[rng.Next() % read_ids.size()], o.size, &error);
            break;
          case kPingOp:
            ok = session->Ping(&error);
            break;
        }
        const auto t1 = Clock::now();
        if (!ok) {
          static constexpr const char* kWhat[] = {"create: ", "read: ", "ping: "};
          errors.Add(kWhat[op] + error);
          ++consecutive;
          continue;
        }
        consecutive = 0;
        lat.push_back(static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
        ++(op == kCreateOp ? creates[c] : op == kReadOp ? reads[c] : pings[c]);
      }
    });
  }

  const ServerSample before = probe != nullptr ? probe->Sample() : ServerSample{};
  std::optional<uint64_t> peak = before.rss_bytes;
  std::mutex sampler_mu;
  std::condition_variable sampler_cv;
  bool sampler_done = false;
  std::thread sampler([&] {
    if (probe == nullptr) return;
    std::unique_lock<std::mutex> lock(sampler_mu);
    while (
        !sampler_cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return sampler_done; })) {
      if (auto rss = probe->Rss()) peak = std::max(peak.value_or(0), *rss);
    }
  });

  const double client_cpu_before = SelfCpuUs();
  const auto t0 = Clock::now();
  start.arrive_and_wait();
  if (o.ops == 0) {
    std::this_thread::sleep_for(std::chrono::duration<double>(o.duration_s));
    stop = true;
  }
  for (auto& w : workers) w.join();
  r.elapsed_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const double client_cpu_us = SelfCpuUs() - client_cpu_before;
  {
    std::lock_guard<std::mutex> lock(sampler_mu);
    sampler_done = true;
  }
  sampler_cv.notify_all();
  sampler.join();
  const ServerSample after = probe != nullptr ? probe->Sample() : ServerSample{};
  sessions.clear();

  std::vector<uint64_t> all;
  for (int c = 0; c < o.clients; ++c) {
    r.creates += creates[c];
    r.reads += reads[c];
    r.pings += pings[c];
    all.insert(all.end(), latencies[c].begin(), latencies[c].end());
  }
  std::sort(all.begin(), all.end());
  r.ops = r.creates + r.reads + r.pings;
  r.errors = errors.count.load();
  {
    MutexLock lock(errors.mu);
    r.first_error = errors.first;
  }
  r.ops_per_s = r.elapsed_s > 0 ? static_cast<double>(r.ops) / r.elapsed_s : 0;
  r.p50_us = Percentile(all, 0.50);
  r.p95_us = Percentile(all, 0.95);
  r.p99_us = Percentile(all, 0.99);
  r.max_us = all.empty() ? 0 : static_cast<double>(all.back()) / 1000.0;
  r.content_bytes_written += r.creates * o.size;
  if (r.ops > 0) {
    r.client_cpu_us_per_op = client_cpu_us / static_cast<double>(r.ops);
    if (auto cpu = Diff(before.cpu_us, after.cpu_us)) r.cpu_us_per_op = *cpu / r.ops;
    if (before.syncs && after.syncs) {
      r.syncs_per_op = static_cast<double>(*after.syncs - *before.syncs) / r.ops;
    }
  }
  r.rss_before = idle.rss_bytes;
  r.rss_after = after.rss_bytes;
  if (after.rss_bytes) peak = std::max(peak.value_or(0), *after.rss_bytes);
  r.rss_peak = peak;
  r.disk_before = idle.disk_bytes;
  r.disk_after = after.disk_bytes;
  r.apparent_before = idle.disk_apparent_bytes;
  r.apparent_after = after.disk_apparent_bytes;
  auto per_byte = [&r](std::optional<uint64_t> a, std::optional<uint64_t> b) {
    std::optional<double> out;
    if (a && b && r.content_bytes_written > 0) {
      out = (static_cast<double>(*b) - static_cast<double>(*a)) /
            static_cast<double>(r.content_bytes_written);
    }
    return out;
  };
  r.disk_bytes_per_content_byte = per_byte(r.disk_before, r.disk_after);
  r.apparent_bytes_per_content_byte = per_byte(r.apparent_before, r.apparent_after);
  return r;
}

nlohmann::json ToJson(const Report& r) {
  auto opt = [](const auto& v) -> nlohmann::json {
    if (v) return *v;
    return nullptr;
  };
  nlohmann::json j = {
      {"backend", r.backend},
      {"workload", WorkloadName(r.options.workload)},
      {"size_bytes", r.options.size},
      {"clients", r.options.clients},
      {"duration_s",
       r.options.ops > 0 ? nlohmann::json(nullptr) : nlohmann::json(r.options.duration_s)},
      {"ops_requested", r.options.ops > 0 ? nlohmann::json(r.options.ops) : nullptr},
      {"warmup_records", r.warmup_records},
      {"elapsed_s", r.elapsed_s},
      {"ops", r.ops},
      {"creates", r.creates},
      {"reads", r.reads},
      {"pings", r.pings},
      {"errors", r.errors},
      {"first_error",
       r.first_error.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.first_error)},
      {"ops_per_s", r.ops_per_s},
      {"latency_us", {{"p50", r.p50_us}, {"p95", r.p95_us}, {"p99", r.p99_us}, {"max", r.max_us}}},
      {"server",
       {{"cpu_scope", r.cpu_scope},
        {"cpu_us_per_op", opt(r.cpu_us_per_op)},
        {"syncs_per_op", opt(r.syncs_per_op)},
        {"rss_bytes",
         {{"before", opt(r.rss_before)}, {"after", opt(r.rss_after)}, {"peak", opt(r.rss_peak)}}}}},
      {"client", {{"cpu_us_per_op", r.client_cpu_us_per_op}}},
      {"disk",
       {{"bytes_before", opt(r.disk_before)},
        {"bytes_after", opt(r.disk_after)},
        {"apparent_bytes_before", opt(r.apparent_before)},
        {"apparent_bytes_after", opt(r.apparent_after)},
        {"content_bytes_written", r.content_bytes_written},
        {"bytes_per_content_byte", opt(r.disk_bytes_per_content_byte)},
        {"apparent_bytes_per_content_byte", opt(r.apparent_bytes_per_content_byte)}}},
  };
  return j;
}

std::string ToTable(const Report& r) {
  auto num = [](double v, int decimals) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return std::string(buf);
  };
  auto mib = [&num](const std::optional<uint64_t>& b) {
    return b ? num(static_cast<double>(*b) / (1 << 20), 1) + " MiB" : std::string("n/a");
  };
  std::vector<std::pair<std::string, std::string>> rows = {
      {"backend", r.backend},
      {"workload", std::string(WorkloadName(r.options.workload))},
      {"record size", std::to_string(r.options.size) + " B"},
      {"clients", std::to_string(r.options.clients)},
      {"elapsed", num(r.elapsed_s, 2) + " s"},
      {"operations", std::to_string(r.ops) + " (" + std::to_string(r.creates) + " create, " +
                         std::to_string(r.reads) + " read" +
                         (r.pings > 0 ? ", " + std::to_string(r.pings) + " ping" : "") + "; " +
                         std::to_string(r.warmup_records) + " warm-up records)"},
      {"errors",
       std::to_string(r.errors) + (r.first_error.empty() ? "" : " (first: " + r.first_error + ")")},
      {"throughput", num(r.ops_per_s, 0) + " ops/s"},
      {"latency p50/p95/p99/max", num(r.p50_us, 0) + " / " + num(r.p95_us, 0) + " / " +
                                      num(r.p99_us, 0) + " / " + num(r.max_us, 0) + " us"},
      {"server CPU per op",
       r.cpu_us_per_op ? num(*r.cpu_us_per_op, 1) + " us (" + r.cpu_scope + ")" : "n/a"},
      {"client CPU per op", num(r.client_cpu_us_per_op, 1) + " us (this process)"},
      {"syncs per op", r.syncs_per_op ? num(*r.syncs_per_op, 3) : "n/a"},
      {"server RSS before/after/peak",
       mib(r.rss_before) + " / " + mib(r.rss_after) + " / " + mib(r.rss_peak)},
      {"disk bytes per content byte",
       r.disk_bytes_per_content_byte
           ? num(*r.disk_bytes_per_content_byte, 2) + " allocated (" + mib(r.disk_before) + " -> " +
                 mib(r.disk_after) + "), " + num(r.apparent_bytes_per_content_byte.value_or(0), 2) +
                 " apparent (" + mib(r.apparent_before) + " -> " + mib(r.apparent_after) + ")"
           : "n/a"},
  };
  size_t width = 0;
  for (const auto& [k, v] : rows) width = std::max(width, k.size());
  std::string out;
  for (const auto& [k, v] : rows) out += k + std::string(width - k.size() + 2, ' ') + v + "\n";
  return out;
}

std::optional<double> ProcessCpuUs(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(line.substr(close + 2));
  std::string field;
  // Fields 3.. follow; utime and stime are fields 14 and 15.
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  static const double kTicks = static_cast<double>(sysconf(_SC_CLK_TCK));
  return static_cast<double>(utime + stime) * 1e6 / kTicks;
}

std::optional<uint64_t> ProcessRss(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return std::nullopt;
}

std::vector<pid_t> ChildProcesses(pid_t pid) {
  std::vector<pid_t> out;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return out;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream in(std::string("/proc/") + e->d_name + "/stat");
    std::string line;
    if (!std::getline(in, line)) continue;
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream fields(line.substr(close + 2));
    std::string state;
    long ppid = 0;
    if (fields >> state >> ppid && ppid == pid)
      out.push_back(static_cast<pid_t>(std::stol(e->d_name)));
  }
  closedir(dir);
  return out;
}

std::optional<uint64_t> DiskUsage(const std::string& dir, bool apparent) {
  std::error_code ec;
  uint64_t total = 0;
  std::filesystem::recursive_directory_iterator it(dir, ec), end;
  if (ec) return std::nullopt;
  for (; it != end; it.increment(ec)) {
    if (ec) return std::nullopt;
    struct stat st;
    if (lstat(it->path().c_str(), &st) != 0) continue;
    if (apparent) {
      if (S_ISREG(st.st_mode)) total += static_cast<uint64_t>(st.st_size);
    } else {
      total += static_cast<uint64_t>(st.st_blocks) * 512;
    }
  }
  return total;
}

double SelfCpuUs() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto us = [](const timeval& t) { return static_cast<double>(t.tv_sec) * 1e6 + t.tv_usec; };
  return us(u.ru_utime) + us(u.ru_stime);
}

}  // namespace phivault::loadgen
