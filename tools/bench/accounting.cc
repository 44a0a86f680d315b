// Report latency for one patient of a large audit log, and proofs over that log's Merkle tree
// (docs/benchmarks.md, parts 2 and 3).
//
// The log is generated through the service layer with the verifiable audit log, as phivaultd
// writes it: every entry is a real request's entry (blind patient id, sealed PHI fields, indexes,
// Merkle leaf). Many concurrent clients let the ledger's group commit batch the synced writes.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <vector>

#include "storage/records.h"
#include "tools/bench/bench_env.h"
#include "tools/bench/benchmarks.h"

namespace phivault::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kTargets = 10;            // patients whose reports are timed
constexpr uint64_t kEntriesPerTarget = 200;  // 1 create, 149 reads and lists, 50 disclosures
constexpr int kReportIterations = 200;       // each report call adds one entry to its patient
constexpr const char* kMetaFile = "bench-log.json";

std::string TargetPatient(uint64_t t) { return "bench-target-" + std::to_string(t); }
std::string FillerPatient(uint64_t p) { return "bench-patient-" + std::to_string(p); }

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Runs fn(i) for i in [0, count) on `threads` threads, printing progress every 10 s.
void ParallelFor(uint64_t count, int threads, const char* phase, storage::Ledger& ledger,
                 const std::function<void(uint64_t)>& fn) {
  std::atomic<uint64_t> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (uint64_t i = next++; i < count; i = next++) fn(i);
    });
  }
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::thread progress([&] {
    const auto start = Clock::now();
    const uint64_t start_size = ledger.size();
    std::unique_lock<std::mutex> lock(mu);
    while (!cv.wait_for(lock, std::chrono::seconds(10), [&] { return done; })) {
      const double s = Seconds(Clock::now() - start);
      const uint64_t made = std::min(next.load(), count);
      const double rate = static_cast<double>(ledger.size() - start_size) / s;
      std::fprintf(stderr, "phivault_bench: %s: %llu/%llu in %.0f s (%.0f entries/s, ETA %.0f s)\n",
                   phase, static_cast<unsigned long long>(made),
                   static_cast<unsigned long long>(count), s, rate,
                   rate > 0 ? static_cast<double>(count - made) / rate : 0.0);
    }
  });
  for (auto& t : pool) t.join();
  {
    std::lock_guard<std::mutex> lock(mu);
    done = true;
  }
  cv.notify_one();
  progress.join();
}

struct DisclosurePlan {
  const char* basis;
  const char* purpose;
  const char* recipient;
};
// A realistic mix: most accountable, treatment excluded from the accounting by 164.528(a)(1)(i).
constexpr DisclosurePlan kDisclosures[] = {
    {"public_health", "PUBHLTH", "Synthetic County Health Department"},
    {"law_enforcement", "HLEGAL", "Synthetic Police Department"},
    {"research", "HRESCH", "Synthetic University IRB Study 12"},
    {"judicial", "HLEGAL", "Synthetic County Court"},
    {"tpo_treatment", "TREAT", "Synthetic Cardiology Associates"},
    {"health_oversight", "HOPERAT", "Synthetic State Medical Board"},
};

class LargeLog {
 public:
  explicit LargeLog(const LargeLogOptions& options) : options_(options) {
    if (options_.db_dir.empty()) {
      scratch_ = std::make_unique<ScratchDir>("phivault-bench-log");
      options_.db_dir = scratch_->path();
    }
    env_ = ValueOrDie(VaultEnv::Open({options_.db_dir, /*merkle=*/true}), "opening the vault");
    const std::filesystem::path meta_path = std::filesystem::path(options_.db_dir) / kMetaFile;
    if (auto text = ReadFile(meta_path.string())) {
      auto meta = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
      // Every timed report appends its own entry, so a reused log only grows.
      if (!meta.is_object() || meta.value("entries", uint64_t{0}) > env_->ledger().size()) {
        Die("the vault in --db does not match its " + std::string(kMetaFile) +
            "; delete the directory");
      }
      if (env_->ledger().size() < options_.entries) {
        Die("the vault in --db holds fewer entries than --entries; use another directory");
      }
      generation_seconds_ = meta.value("generation_seconds", 0.0);
      generated_now_ = false;
    } else {
      if (env_->ledger().size() != 0) {
        Die("the vault in --db holds entries but no " + std::string(kMetaFile) +
            " (an interrupted generation?); delete the directory");
      }
      Generate();
      nlohmann::json meta = {{"entries", env_->ledger().size()},
                             {"patients", options_.patients},
                             {"targets", kTargets},
                             {"entries_per_target", kEntriesPerTarget},
                             {"generation_threads", options_.generation_threads},
                             {"generation_seconds", generation_seconds_}};
      WriteMeta(meta_path.string(), meta.dump(2) + "\n");
      generated_now_ = true;
    }
  }

  VaultEnv& env() { return *env_; }
  double generation_seconds() const { return generation_seconds_; }
  bool generated_now() const { return generated_now_; }

  // Entries in the patient index of target `t` (what a report has to read).
  uint64_t TargetEntries(uint64_t t) {
    const std::string blind_id =
        storage::RecordRepository(env_->store(), env_->keyring()).PatientBlindId(TargetPatient(t));
    uint64_t n = 0;
    CheckOk(storage::ScanPatientAuditEntries(env_->store(), blind_id,
                                             [&](const storage::AuditEntry&, std::string_view) {
                                               ++n;
                                               return Status::Ok();
                                             }),
            "scanning the patient index");
    return n;
  }

 private:
  static void WriteMeta(const std::string& path, const std::string& text) {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    const bool ok = f != nullptr && std::fwrite(text.data(), 1, text.size(), f) == text.size();
    if (f != nullptr && std::fclose(f) != 0) Die("cannot write " + path);
    if (!ok) Die("cannot write " + path);
  }

  [[noreturn]] static void Die(const std::string& message) {
    std::fprintf(stderr, "phivault_bench: %s\n", message.c_str());
    std::exit(1);
  }

  void Generate() {
    const uint64_t patients = options_.patients;
    const uint64_t setup = patients + kTargets;
    const uint64_t target_ops = kTargets * (kEntriesPerTarget - 1);
    if (options_.entries < setup + target_ops + 1) Die("--entries is too small for --patients");
    const uint64_t ops = options_.entries - setup;
    const uint64_t stride = ops / target_ops;
    const int threads = options_.generation_threads;
    daemon::VaultService& service = env_->service();
    std::fprintf(
        stderr, "phivault_bench: generating %llu audit entries (%llu patients, %d threads) in %s\n",
        static_cast<unsigned long long>(options_.entries),
        static_cast<unsigned long long>(patients), threads, options_.db_dir.c_str());
    const auto start = Clock::now();

    // One record per patient first: later requests read them.
    std::vector<std::string> records(setup);
    ParallelFor(setup, threads, "records", env_->ledger(), [&](uint64_t i) {
      auto ctx = Context("user-" + std::to_string(i % 2000), "physician", "TREAT");
      const std::string patient = i < kTargets ? TargetPatient(i) : FillerPatient(i - kTargets);
      records[i] =
          ValueOrDie(service.CreateRecord(ctx, SmallRecord(patient)), "CreateRecord").record_id;
    });

    // The targets' requests are spread evenly through the log, as a long-time patient's are.
    ParallelFor(ops, threads, "requests", env_->ledger(), [&](uint64_t i) {
      const uint64_t mix = SplitMix64(i);
      const bool nurse = (mix >> 40) % 3 == 0;
      auto ctx = Context("user-" + std::to_string((mix >> 20) % 2000),
                         nurse ? "nurse" : "physician", "TREAT");
      ctx.request_id = "gen-" + std::to_string(i);
      uint64_t patient = 0;
      uint64_t kind = 0;  // 0 disclosure, 1 list, 2 read
      uint64_t disclosure = 0;
      if (i % stride == stride / 2 && i / stride < target_ops) {
        const uint64_t j = i / stride;
        patient = j % kTargets;
        const uint64_t k = j / kTargets;  // the patient's k-th request
        kind = k % 4 == 0 ? 0 : (k % 4 == 3 ? 1 : 2);
        disclosure = k / 4;
      } else {
        patient = kTargets + mix % patients;
        const uint64_t r = (mix >> 32) % 100;
        kind = r < 2 ? 0 : (r < 6 ? 1 : 2);
        disclosure = 0;
      }
      const std::string patient_id =
          patient < kTargets ? TargetPatient(patient) : FillerPatient(patient - kTargets);
      if (kind == 2) {
        CheckOk(service.ReadRecord(ctx, records[patient], std::nullopt, true).status(),
                "ReadRecord");
      } else if (kind == 1) {
        CheckOk(service.ListRecords(ctx, patient_id).status(), "ListRecords");
      } else {
        const DisclosurePlan& plan = kDisclosures[disclosure % std::size(kDisclosures)];
        ctx.purpose = plan.purpose;
        daemon::DisclosureInfo info{plan.recipient, "1 Synthetic Way, Springfield", plan.basis,
                                    "visit notes and lab results", ""};
        if (disclosure % 2 == 0) {
          CheckOk(service.DiscloseRecord(ctx, records[patient], std::nullopt, info).status(),
                  "DiscloseRecord");
        } else {
          CheckOk(
              service.RecordDisclosure(ctx, {patient_id, {records[patient]}, std::nullopt, info})
                  .status(),
              "RecordDisclosure");
        }
      }
    });
    generation_seconds_ = Seconds(Clock::now() - start);
    std::fprintf(stderr, "phivault_bench: generated %llu entries in %.0f s (%.0f entries/s)\n",
                 static_cast<unsigned long long>(env_->ledger().size()), generation_seconds_,
                 static_cast<double>(env_->ledger().size()) / generation_seconds_);
  }

  LargeLogOptions options_;
  std::unique_ptr<ScratchDir> scratch_;  // only without --db; removed on exit
  std::unique_ptr<VaultEnv> env_;
  double generation_seconds_ = 0;
  bool generated_now_ = false;
};

LargeLogOptions g_options;
std::unique_ptr<LargeLog> g_log;

LargeLog& Log() {
  if (!g_log) g_log = std::make_unique<LargeLog>(g_options);
  return *g_log;
}

double Percentile(std::vector<double> sorted, double p) {
  std::sort(sorted.begin(), sorted.end());
  const size_t i = static_cast<size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

enum class Report { kAccounting, kAccess };

// One report per iteration, round robin over the target patients; manual time = call latency.
void PatientReport(benchmark::State& state, Report report) {
  LargeLog& log = Log();
  daemon::VaultService& service = log.env().service();
  auto ctx = Context("co.synthetic", "compliance_officer", "HOPERAT");
  double indexed = 0;
  for (uint64_t t = 0; t < kTargets; ++t) indexed += static_cast<double>(log.TargetEntries(t));
  std::vector<double> ms;
  size_t items = 0;
  size_t bytes = 0;
  uint64_t n = 0;
  for (auto _ : state) {
    const std::string patient = TargetPatient(n++ % kTargets);
    const auto start = Clock::now();
    auto rendered =
        report == Report::kAccounting
            ? service.AccountingOfDisclosures(ctx,
                                              {patient, std::nullopt, daemon::ReportFormat::kJson})
            : service.AccessReport(ctx, {patient, std::nullopt, daemon::ReportFormat::kJson});
    const double seconds = Seconds(Clock::now() - start);
    CheckOk(rendered.status(), "the report");
    state.SetIterationTime(seconds);
    ms.push_back(seconds * 1e3);
    if (n == 1) {
      bytes = rendered->body.size();
      auto j = nlohmann::json::parse(rendered->body, nullptr, /*allow_exceptions=*/false);
      const char* list = report == Report::kAccounting ? "disclosures" : "accesses";
      if (j.is_object() && j.contains(list) && j[list].is_array()) {
        // A summarised accounting line (164.528(b)(3)) stands for summary.count disclosures.
        for (const auto& item : j[list]) {
          items += item.contains("summary") ? item["summary"].value("count", size_t{1}) : 1;
        }
      }
    }
  }
  double sum = 0;
  for (double v : ms) sum += v;
  state.counters["audit_entries"] = static_cast<double>(log.env().ledger().size());
  state.counters["patient_entries"] = indexed / static_cast<double>(kTargets);
  state.counters["report_items"] = static_cast<double>(items);
  state.counters["report_bytes"] = static_cast<double>(bytes);
  state.counters["first_ms"] = ms.front();
  state.counters["mean_ms"] = sum / static_cast<double>(ms.size());
  state.counters["p50_ms"] = Percentile(ms, 0.50);
  state.counters["p99_ms"] = Percentile(ms, 0.99);
  state.counters["max_ms"] = *std::max_element(ms.begin(), ms.end());
  if (log.generated_now()) state.counters["generation_s"] = log.generation_seconds();
}

// Proofs read O(log^2 n) stored nodes; leaves are picked at random over the whole tree.
void InclusionProof(benchmark::State& state) {
  const storage::MerkleTree& tree = Log().env().audit_log()->tree();
  const uint64_t size = tree.size();
  uint64_t n = 0;
  for (auto _ : state) {
    auto proof = tree.InclusionProof(SplitMix64(++n) % size, size);
    CheckOk(proof.status(), "InclusionProof");
    benchmark::DoNotOptimize(proof);
  }
  state.counters["tree_size"] = static_cast<double>(size);
}

void ConsistencyProof(benchmark::State& state) {
  const storage::MerkleTree& tree = Log().env().audit_log()->tree();
  const uint64_t size = tree.size();
  uint64_t n = 0;
  for (auto _ : state) {
    auto proof = tree.ConsistencyProof(1 + SplitMix64(++n) % (size - 1), size);
    CheckOk(proof.status(), "ConsistencyProof");
    benchmark::DoNotOptimize(proof);
  }
  state.counters["tree_size"] = static_cast<double>(size);
}

}  // namespace

void RegisterLargeLogBenchmarks(const LargeLogOptions& options) {
  g_options = options;
  benchmark::RegisterBenchmark("Accounting/json", PatientReport, Report::kAccounting)
      ->Iterations(kReportIterations)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("AccessReport/json", PatientReport, Report::kAccess)
      ->Iterations(kReportIterations)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("MerkleProof/inclusion", InclusionProof)
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("MerkleProof/consistency", ConsistencyProof)
      ->Unit(benchmark::kMicrosecond);
}

void CloseLargeLog() { g_log.reset(); }

}  // namespace phivault::bench
