// phivault_retention_bench: issue 9's retention benchmarks on a real RocksDB store, keyring and
// audit log, wired as phivaultd wires them (synced writes, Merkle audit log).
//
//   --mode=sweep   a dry-run and then a real sweep over --records expired records (default 1M)
//   --mode=erase   Keyring::DestroyEpoch of an epoch holding --records records (default 100k),
//                  then a real sweep of another such epoch, whose erase phase is timed
//   --mode=rewrap  NewVaultService re-settling --records records (default 100k) after a retention
//                  table lengthens a rule, against a baseline open without a change
//   --mode=load    --clients threads (default 16) of audited CreateRecord + ReadRecord, alone and
//                  beside a real sweep of --records expired records (default 200k)
//
// Set-up is not measured: the expired records are staged with RecordRepository::StageVersion in
// large unsynced batches straight into the store, each under the epoch the service would choose
// (DecideTarget under the us-federal preset, on a day in 2012 before any of them expired); a
// probe vault checks that the service, with its clock set to that day, picks the same epochs.
// The service then runs on the real clock, years later, so that everything staged has expired.
// docs/benchmarks.md, "Retention sweeps".
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "crypto/keyring.h"
#include "crypto/secret.h"
#include "daemon/config.h"
#include "daemon/retention_loader.h"
#include "daemon/retention_targets.h"
#include "daemon/service.h"
#include "storage/audit_log.h"
#include "storage/records.h"
#include "storage/store.h"
#include "tools/bench/bench_env.h"

namespace phivault::bench {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::sys_days;
using std::chrono::year_month_day;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The day the synthetic records were "stored": their retention decisions are made as of it.
constexpr const char* kStagedOn = "2012-06-01";
// The first encounter day; records spread over `days` days from it.
constexpr const char* kFirstEncounter = "2012-03-01";

constexpr const char* kLengthenedRetention =
    "[retention]\npreset = \"us-federal\"\n\n[[rule]]\nname = \"federal-medicare-service\"\n"
    "years = 30\n";

int64_t UnixMicros(year_month_day day) {
  return std::chrono::duration_cast<std::chrono::microseconds>(sys_days(day).time_since_epoch())
      .count();
}

year_month_day Day(const char* text) { return *daemon::ParseDay(text); }

std::string PatientId(uint64_t p) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "bench-patient-%07llu", static_cast<unsigned long long>(p));
  return buf;
}

// Record j of patient p meets the patient on this day: a patient's records spread over the
// whole window, so that every day epoch holds records of many patients.
year_month_day EncounterDay(uint64_t p, uint64_t j, uint64_t days, uint64_t first_day = 0) {
  return year_month_day{sys_days(Day(kFirstEncounter)) +
                        std::chrono::days(static_cast<int>(first_day + (p + j * 3) % days))};
}

std::string SyntheticContent(size_t bytes) {
  static constexpr const char kLine[] =
      "Synthetic follow-up visit. BP 128/82, HR 71. HbA1c 6.1%. Continue metformin 500 mg. ";
  std::string out;
  while (out.size() < bytes) out += kLine;
  out.resize(bytes);
  return out;
}

uint64_t DirBytes(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code size_ec;
    if (it->is_regular_file(size_ec)) {
      const auto size = it->file_size(size_ec);
      if (!size_ec) total += size;
    }
  }
  return total;
}

double MiB(uint64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

daemon::RequestContext Physician(std::string user) {
  daemon::RequestContext ctx = Context(std::move(user), "physician", "TREAT");
  ctx.principal.roles = daemon::DefaultRoles();
  return ctx;
}

// A vault in a directory: keyring, store and audit log stay open across service restarts.
class Vault {
 public:
  explicit Vault(std::string dir) : dir_(std::move(dir)) {
    CheckOk(crypto::InitSodium(), "InitSodium");
    config_.categories = daemon::DefaultCategories();
    config_.roles = daemon::DefaultRoles();
    config_.data_dir = dir_;
    keyring_ = ValueOrDie(
        crypto::Keyring::Create({dir_ + "/keyring", {}}, crypto::SecretBytes::Random(32)),
        "Keyring::Create");
    storage::RocksStoreOptions store_options;
    store_options.path = dir_ + "/db";
    store_ = ValueOrDie(storage::OpenRocksStore(store_options), "OpenRocksStore");
    audit_log_ =
        ValueOrDie(storage::AuditLog::Open(*store_, keyring_->audit_signer(), config_.audit_origin),
                   "AuditLog::Open");
    records_ = std::make_unique<storage::RecordRepository>(*store_, *keyring_);
  }

  // (Re)starts the service, as phivaultd does on start-up; `clock` null: the system clock.
  // Returns the time NewVaultService took.
  double StartService(std::optional<daemon::LoadedRetention> retention,
                      std::function<int64_t()> clock = nullptr) {
    service_.reset();
    const auto start = Clock::now();
    service_ = ValueOrDie(daemon::NewVaultService({&config_, store_.get(), &audit_log_->ledger(),
                                                   keyring_.get(), audit_log_.get(), nullptr,
                                                   std::move(clock), std::move(retention)}),
                          "NewVaultService");
    return SecondsSince(start);
  }

  daemon::LoadedRetention Retention(const char* text = nullptr) const {
    if (text == nullptr) return ValueOrDie(daemon::LoadRetention(config_), "LoadRetention");
    return ValueOrDie(daemon::ParseRetention(config_, "retention.toml", text), "ParseRetention");
  }

  daemon::VaultService& service() { return *service_; }
  storage::Store& store() { return *store_; }
  crypto::Keyring& keyring() { return *keyring_; }
  storage::RecordRepository& records() { return *records_; }
  uint64_t DbBytes() const { return DirBytes(dir_ + "/db"); }

 private:
  std::string dir_;
  daemon::Config config_;
  std::unique_ptr<crypto::Keyring> keyring_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<storage::AuditLog> audit_log_;
  std::unique_ptr<storage::RecordRepository> records_;
  std::unique_ptr<daemon::VaultService> service_;
};

struct StagedRecord {
  std::string record_id;
  uint64_t patient = 0;
  std::string encounter_date;
};

struct PopulateOptions {
  uint64_t records = 0;
  uint64_t per_patient = 10;
  uint64_t days = 30;
  size_t content_bytes = 1024;
  uint64_t first_patient = 0;  // patient numbers continue from here
  uint64_t first_day = 0;      // days after kFirstEncounter the window starts
  int threads = 2;
};

// The epoch the service would give record j of patient p when stored on kStagedOn.
std::string EpochFor(const policies::RetentionTable& table, const storage::RecordMetadata& meta,
                     uint64_t p, const PopulateOptions& o) {
  std::optional<year_month_day> last;
  for (uint64_t j = 0; j < o.per_patient; ++j) {
    const year_month_day d = EncounterDay(p, j, o.days, o.first_day);
    if (!last || sys_days(d) > sys_days(*last)) last = d;
  }
  return daemon::DecideTarget(table, meta, std::nullopt, last, {}, Day(kStagedOn)).epoch_id;
}

storage::Record SyntheticRecord(const policies::RetentionTable& table, uint64_t p, uint64_t j,
                                const PopulateOptions& o, const std::string& content) {
  storage::Record r;
  r.meta.record_id = storage::NewRecordId();
  r.meta.version = 1;
  r.meta.patient_id = PatientId(p);
  r.meta.category = "clinical_note";
  r.meta.content_type = "text/plain";
  r.meta.encounter_date = daemon::FormatDay(EncounterDay(p, j, o.days, o.first_day));
  r.meta.author = "Dr. Synthetic";
  r.meta.created_by = "dr.synthetic";
  r.meta.created_unix_us = UnixMicros(Day(kStagedOn));
  r.meta.content_bytes = content.size();
  r.meta.epoch_id = EpochFor(table, r.meta, p, o);
  r.content = content;
  return r;
}

// Stages o.records records (o.per_patient per patient) straight into the store.
std::vector<StagedRecord> Populate(Vault& vault, const PopulateOptions& o) {
  const auto start = Clock::now();
  const daemon::LoadedRetention retention = vault.Retention();
  const std::string content = SyntheticContent(o.content_bytes);
  const uint64_t patients = (o.records + o.per_patient - 1) / o.per_patient;
  std::vector<StagedRecord> staged(o.records);
  std::atomic<uint64_t> next_patient{0};
  constexpr uint64_t kPatientsPerBatch = 200;
  auto worker = [&] {
    for (;;) {
      const uint64_t first = next_patient.fetch_add(kPatientsPerBatch);
      if (first >= patients) return;
      storage::WriteBatch batch;
      for (uint64_t p = first; p < std::min(patients, first + kPatientsPerBatch); ++p) {
        for (uint64_t j = 0; j < o.per_patient && p * o.per_patient + j < o.records; ++j) {
          const uint64_t patient = o.first_patient + p;
          storage::Record r = SyntheticRecord(*retention.table, patient, j, o, content);
          CheckOk(vault.records().StageVersion(r, batch), "StageVersion");
          staged[p * o.per_patient + j] = {r.meta.record_id, patient, r.meta.encounter_date};
        }
      }
      CheckOk(vault.store().Write(batch, /*sync=*/false), "Store::Write");
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < o.threads; ++t) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  CheckOk(vault.store().Write(storage::WriteBatch(), /*sync=*/true), "Store::Write (sync)");
  std::printf("set-up: staged %llu records of %llu patients (%zu-byte content) in %.1f s\n",
              static_cast<unsigned long long>(o.records), static_cast<unsigned long long>(patients),
              o.content_bytes, SecondsSince(start));
  return staged;
}

// Creates one patient's records through a service whose clock says kStagedOn, and checks they
// land in the epochs Populate computes for them. Exits on a mismatch (the set-up would not be
// what the service makes).
void ProbeEpochs(const PopulateOptions& o) {
  ScratchDir dir("phivault-retention-probe");
  Vault vault(dir.path());
  const int64_t staged_on = UnixMicros(Day(kStagedOn));
  vault.StartService(std::nullopt, [staged_on] { return staged_on; });
  const daemon::LoadedRetention retention = vault.Retention();
  const daemon::RequestContext ctx = Physician("dr.synthetic");
  constexpr uint64_t kPatient = 7;
  std::vector<std::pair<std::string, std::string>> made;  // record id, expected epoch
  for (uint64_t j = 0; j < o.per_patient; ++j) {
    storage::Record expected = SyntheticRecord(*retention.table, kPatient, j, o, "probe");
    auto meta = ValueOrDie(
        vault.service().CreateRecord(
            ctx, {expected.meta.patient_id, expected.meta.category, expected.meta.content_type,
                  expected.meta.encounter_date, expected.meta.author, "probe"}),
        "probe CreateRecord");
    made.emplace_back(meta.record_id, expected.meta.epoch_id);
  }
  for (const auto& [id, epoch] : made) {
    auto read = ValueOrDie(vault.service().ReadRecord(ctx, id, std::nullopt, false), "probe read");
    if (read.meta.epoch_id != epoch) {
      std::fprintf(stderr, "probe: the service put a record in %s, the set-up would use %s\n",
                   read.meta.epoch_id.c_str(), epoch.c_str());
      std::exit(1);
    }
  }
  std::printf("probe: %zu records created through the service are in the epochs set-up uses\n",
              made.size());
}

// CPU seconds of the whole process (every thread, RocksDB's included), user plus system: the
// phases' cost that does not depend on what else the machine runs.
double ProcessCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return seconds(u.ru_utime) + seconds(u.ru_stime);
}

// The sweep's progress reports with when each arrived; phases are cut where the reported phase
// changes ("verify" occurs twice: reading back erased records, then the byte search).
class PhaseTimer {
 public:
  PhaseTimer() : start_(Clock::now()), start_cpu_s_(ProcessCpuSeconds()) {}
  daemon::SweepProgressFn Callback() {
    return [this](const daemon::SweepProgress& p) {
      std::lock_guard<std::mutex> lock(mu_);
      if (events_.empty() || events_.back().phase != p.phase) {
        events_.push_back({p.phase, SecondsSince(start_), 0, ProcessCpuSeconds(), p.done, p.total});
      }
      Event& e = events_.back();
      e.last_s = SecondsSince(start_);
      e.done = p.done;
      e.total = p.total;
    };
  }
  // Prints one line per phase; `total_s` is when the sweep returned.
  void Print(double total_s) const {
    const double end_cpu_s = ProcessCpuSeconds();
    std::lock_guard<std::mutex> lock(mu_);
    std::printf("  %-12s %9s %9s %9s %9s  %s\n", "phase", "start_s", "dur_s", "in-phase", "cpu_s",
                "done/total");
    if (!events_.empty() && events_.front().start_s > 0.0005) {
      std::printf("  %-12s %9.3f %9.3f %9s %9.3f  (journal, expired epochs)\n", "(before)", 0.0,
                  events_.front().start_s, "", events_.front().cpu_s - start_cpu_s_);
    }
    for (size_t i = 0; i < events_.size(); ++i) {
      const Event& e = events_[i];
      const double end = i + 1 < events_.size() ? events_[i + 1].start_s : total_s;
      const double end_cpu = i + 1 < events_.size() ? events_[i + 1].cpu_s : end_cpu_s;
      std::printf("  %-12s %9.3f %9.3f %9.3f %9.3f  %llu/%llu\n", e.phase.c_str(), e.start_s,
                  end - e.start_s, e.last_s - e.start_s, end_cpu - e.cpu_s,
                  static_cast<unsigned long long>(e.done),
                  static_cast<unsigned long long>(e.total));
    }
  }
  // Seconds from the phase's first report to its last (for "erase": the key destruction alone).
  double InPhase(const std::string& phase) const {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Event& e : events_) {
      if (e.phase == phase) return e.last_s - e.start_s;
    }
    return 0;
  }

 private:
  struct Event {
    std::string phase;
    double start_s = 0;
    double last_s = 0;
    double cpu_s = 0;  // the process's CPU time (all threads, user + system) at the first report
    uint64_t done = 0;
    uint64_t total = 0;
  };
  Clock::time_point start_;
  double start_cpu_s_;
  mutable std::mutex mu_;
  std::vector<Event> events_;
};

daemon::SweepResult TimedSweep(Vault& vault, bool dry_run, const char* label, uint64_t expect) {
  PhaseTimer timer;
  const auto start = Clock::now();
  daemon::SweepRequest req;
  req.dry_run = dry_run;
  daemon::SweepResult r = ValueOrDie(vault.service().Sweep(nullptr, req, timer.Callback()), label);
  const double total = SecondsSince(start);
  std::printf("%s: %.2f s, %llu records (%llu versions) %s, %zu epochs, %.0f records/s\n", label,
              total, static_cast<unsigned long long>(r.destroyed_records),
              static_cast<unsigned long long>(r.destroyed_versions),
              dry_run ? "would be destroyed" : "destroyed", r.epochs_destroyed.size(),
              static_cast<double>(r.destroyed_records) / total);
  timer.Print(total);
  if (!dry_run) std::printf("  verification: %s\n", r.verification_result.c_str());
  if (r.destroyed_records != expect || r.rewrapped_records != 0 || r.held_records != 0) {
    std::fprintf(stderr, "%s: expected %llu destroyed and none kept, got %llu (%llu kept)\n", label,
                 static_cast<unsigned long long>(expect),
                 static_cast<unsigned long long>(r.destroyed_records),
                 static_cast<unsigned long long>(r.rewrapped_records + r.held_records));
    std::exit(1);
  }
  return r;
}

struct Options {
  std::string mode = "sweep";
  std::optional<uint64_t> records;
  uint64_t per_patient = 10;
  std::optional<uint64_t> days;
  size_t content_bytes = 1024;
  int populate_threads = 2;
  bool compact_setup = true;
  int clients = 16;
  double load_seconds = 20;
};

void SettleSetUp(Vault& vault, const Options& o) {
  if (!o.compact_setup) return;
  const auto start = Clock::now();
  CheckOk(vault.store().CompactAll(), "CompactAll (set-up)");
  std::printf("set-up: compacted the store in %.1f s\n", SecondsSince(start));
}

PopulateOptions PopulateFor(const Options& o, uint64_t default_records, uint64_t default_days) {
  PopulateOptions p;
  p.records = o.records.value_or(default_records);
  p.per_patient = o.per_patient;
  p.days = o.days.value_or(default_days);
  p.content_bytes = o.content_bytes;
  p.threads = o.populate_threads;
  return p;
}

int RunSweepMode(const Options& o) {
  const PopulateOptions p = PopulateFor(o, 1'000'000, 30);
  ProbeEpochs(p);
  ScratchDir dir("phivault-retention-sweep");
  Vault vault(dir.path());
  Populate(vault, p);
  SettleSetUp(vault, o);
  vault.StartService(std::nullopt);
  const uint64_t before = vault.DbBytes();
  std::printf("db before: %.1f MiB\n", MiB(before));
  TimedSweep(vault, /*dry_run=*/true, "dry run", p.records);
  TimedSweep(vault, /*dry_run=*/false, "real sweep", p.records);
  const uint64_t after = vault.DbBytes();
  std::printf("db after: %.1f MiB (before %.1f MiB)\n", MiB(after), MiB(before));
  return 0;
}

int RunEraseMode(const Options& o) {
  // Two epochs of --records records each: one destroyed directly, one by a sweep.
  PopulateOptions p = PopulateFor(o, 100'000, 1);
  p.days = 1;
  ScratchDir dir("phivault-retention-erase");
  Vault vault(dir.path());
  const std::vector<StagedRecord> first = Populate(vault, p);
  const std::string direct_epoch =
      ValueOrDie(vault.records().ReadVersion(first.front().record_id, 1, false), "ReadVersion")
          .meta.epoch_id;
  // The second set meets other patients a week later: another epoch.
  PopulateOptions later = p;
  later.first_patient = (p.records + p.per_patient - 1) / p.per_patient;
  later.first_day = 7;
  const std::vector<StagedRecord> second = Populate(vault, later);
  const std::string swept_epoch =
      ValueOrDie(vault.records().ReadVersion(second.front().record_id, 1, false), "ReadVersion")
          .meta.epoch_id;
  if (direct_epoch == swept_epoch) {
    std::fprintf(stderr, "erase: both record sets landed in %s\n", direct_epoch.c_str());
    return 1;
  }
  uint64_t in_direct = 0;
  CheckOk(vault.records().ScanEpoch(direct_epoch,
                                    [&](std::string_view, uint32_t) {
                                      ++in_direct;
                                      return true;
                                    }),
          "ScanEpoch");
  SettleSetUp(vault, o);

  auto start = Clock::now();
  CheckOk(vault.keyring().DestroyEpoch(direct_epoch), "DestroyEpoch");
  const double destroy_s = SecondsSince(start);
  std::printf("Keyring::DestroyEpoch(%s) holding %llu records: %.3f ms\n", direct_epoch.c_str(),
              static_cast<unsigned long long>(in_direct), destroy_s * 1e3);
  auto read = vault.records().ReadVersion(first.front().record_id, 1, false);
  std::printf("  a record of it now reads: %s\n", read.status().ToString().c_str());
  // The keyring never looks at records: more epochs, empty, show the spread.
  std::vector<double> empty_ms;
  for (int i = 0; i < 10; ++i) {
    const std::string id = "d209901" + std::to_string(10 + i);  // d20990110 ... d20990119
    CheckOk(vault.keyring().GetOrCreateEpoch(id).status(), "GetOrCreateEpoch");
    start = Clock::now();
    CheckOk(vault.keyring().DestroyEpoch(id), "DestroyEpoch");
    empty_ms.push_back(SecondsSince(start) * 1e3);
  }
  std::sort(empty_ms.begin(), empty_ms.end());
  std::printf("  DestroyEpoch of 10 empty epochs: min %.3f  median %.3f  max %.3f ms\n",
              empty_ms.front(), empty_ms[empty_ms.size() / 2], empty_ms.back());

  vault.StartService(std::nullopt);
  TimedSweep(vault, /*dry_run=*/false, "real sweep of the other epoch", later.records);
  return 0;
}

int RunRewrapMode(const Options& o) {
  const PopulateOptions p = PopulateFor(o, 100'000, 30);
  ScratchDir dir("phivault-retention-rewrap");
  Vault vault(dir.path());
  const std::vector<StagedRecord> staged = Populate(vault, p);
  SettleSetUp(vault, o);
  const double first_s = vault.StartService(std::nullopt);
  const double baseline_s = vault.StartService(std::nullopt);
  const daemon::LoadedRetention lengthened = vault.Retention(kLengthenedRetention);
  const double change_s = vault.StartService(lengthened);
  std::printf(
      "NewVaultService: first open (installs us-federal) %.3f s, reopen unchanged %.3f s,"
      " reopen with federal-medicare-service = 30 years %.3f s\n",
      first_s, baseline_s, change_s);
  std::printf("re-wrap of %zu records: %.2f s (%.0f records/s)\n", staged.size(),
              change_s - baseline_s, static_cast<double>(staged.size()) / (change_s - baseline_s));
  // Every record is where the new table puts it, and still opens.
  const auto start = Clock::now();
  const daemon::RequestContext ctx = Physician("dr.synthetic");
  const auto today = daemon::DayOf(std::chrono::duration_cast<std::chrono::microseconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count());
  uint64_t wrong = 0;
  for (size_t i = 0; i < staged.size(); ++i) {
    const StagedRecord& s = staged[i];
    auto rec = ValueOrDie(vault.records().ReadVersion(s.record_id, 1, i % 1000 == 0), "read");
    std::optional<year_month_day> last;
    for (uint64_t j = 0; j < p.per_patient; ++j) {
      const year_month_day d = EncounterDay(s.patient, j, p.days, p.first_day);
      if (!last || sys_days(d) > sys_days(*last)) last = d;
    }
    const std::string expected =
        daemon::DecideTarget(*lengthened.table, rec.meta, std::nullopt, last, {}, today).epoch_id;
    if (rec.meta.epoch_id != expected) {
      if (wrong++ == 0) {
        std::fprintf(stderr, "record %s is in %s, expected %s\n", s.record_id.c_str(),
                     rec.meta.epoch_id.c_str(), expected.c_str());
      }
    }
  }
  auto sample = ValueOrDie(vault.service().ReadRecord(ctx, staged.front().record_id, std::nullopt,
                                                      /*with_content=*/true),
                           "ReadRecord");
  std::printf(
      "checked: %llu of %zu records not in their new epoch (sample: %s, %zu bytes)"
      " in %.1f s\n",
      static_cast<unsigned long long>(wrong), staged.size(), sample.meta.epoch_id.c_str(),
      sample.content.size(), SecondsSince(start));
  return wrong == 0 ? 0 : 1;
}

struct LoadResult {
  uint64_t creates = 0;
  uint64_t reads = 0;
  uint64_t failures = 0;
  std::string first_failure;
  std::vector<double> create_ms, read_ms;  // latency of each counted request
};

double PercentileMs(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))];
}

// `clients` threads, each creating a record for one of its patients and reading it back, until
// `stop`. Ops counted only while `counting`.
class Load {
 public:
  Load(daemon::VaultService& service, int clients, std::string tag)
      : service_(service), tag_(std::move(tag)) {
    for (int c = 0; c < clients; ++c) threads_.emplace_back([this, c] { Client(c); });
  }
  void StartCounting() { counting_ = true; }
  LoadResult Stop() {
    counting_ = false;
    stop_ = true;
    for (auto& t : threads_) t.join();
    std::lock_guard<std::mutex> lock(mu_);
    return result_;
  }

 private:
  void Client(int c) {
    const daemon::RequestContext ctx = Physician("dr.load-" + std::to_string(c));
    const std::string content = SyntheticContent(1024);
    uint64_t creates = 0, reads = 0, failures = 0, n = 0;
    std::string first_failure;
    std::vector<double> create_ms, read_ms;
    const auto ms_since = [](Clock::time_point t) {
      return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
    };
    auto fail = [&](const Status& s) {
      ++failures;
      if (first_failure.empty()) first_failure = s.ToString();
    };
    while (!stop_) {
      daemon::CreateRecordRequest req =
          SmallRecord("load-" + tag_ + "-c" + std::to_string(c) + "-p" + std::to_string(n++ % 100));
      req.content = content;
      auto t = Clock::now();
      auto meta = service_.CreateRecord(ctx, std::move(req));
      const bool count = counting_;
      if (!meta.ok()) {
        fail(meta.status());
        continue;
      }
      if (count) {
        ++creates;
        create_ms.push_back(ms_since(t));
      }
      t = Clock::now();
      auto read = service_.ReadRecord(ctx, meta->record_id, std::nullopt, true);
      if (!read.ok()) {
        fail(read.status());
      } else if (count && counting_) {
        ++reads;
        read_ms.push_back(ms_since(t));
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    result_.creates += creates;
    result_.reads += reads;
    result_.failures += failures;
    if (result_.first_failure.empty()) result_.first_failure = first_failure;
    result_.create_ms.insert(result_.create_ms.end(), create_ms.begin(), create_ms.end());
    result_.read_ms.insert(result_.read_ms.end(), read_ms.begin(), read_ms.end());
  }

  daemon::VaultService& service_;
  std::string tag_;
  std::atomic<bool> counting_{false};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  LoadResult result_;
  std::vector<std::thread> threads_;
};

void PrintLoad(const char* label, const LoadResult& r, double seconds) {
  std::printf(
      "%s: %.1f s, %.0f creates/s + %.0f reads/s = %.0f ops/s, %llu failed requests%s%s\n", label,
      seconds, static_cast<double>(r.creates) / seconds, static_cast<double>(r.reads) / seconds,
      static_cast<double>(r.creates + r.reads) / seconds,
      static_cast<unsigned long long>(r.failures), r.failures ? ": " : "", r.first_failure.c_str());
  std::printf("  latency ms: create p50 %.2f p99 %.2f max %.1f; read p50 %.2f p99 %.2f max %.1f\n",
              PercentileMs(r.create_ms, 0.5), PercentileMs(r.create_ms, 0.99),
              PercentileMs(r.create_ms, 1.0), PercentileMs(r.read_ms, 0.5),
              PercentileMs(r.read_ms, 0.99), PercentileMs(r.read_ms, 1.0));
}

int RunLoadMode(const Options& o) {
  const PopulateOptions p = PopulateFor(o, 200'000, 30);
  ProbeEpochs(p);
  ScratchDir dir("phivault-retention-load");
  Vault vault(dir.path());
  Populate(vault, p);
  SettleSetUp(vault, o);
  vault.StartService(std::nullopt);

  // The machine is shared: runs without the sweep before and after it bracket the one beside it.
  const auto run_alone = [&](const char* label, const char* tag) {
    Load load(vault.service(), o.clients, tag);
    std::this_thread::sleep_for(std::chrono::seconds(2));  // warm-up
    load.StartCounting();
    const auto start = Clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(o.load_seconds));
    const LoadResult r = load.Stop();
    const double seconds = SecondsSince(start);
    PrintLoad(label, r, seconds);
    return std::make_pair(r, static_cast<double>(r.creates + r.reads) / seconds);
  };
  const auto [alone, alone_before_ops] = run_alone("load alone, before the sweep", "a");
  Load load(vault.service(), o.clients, "b");
  std::this_thread::sleep_for(std::chrono::seconds(2));
  load.StartCounting();
  const auto start = Clock::now();
  PhaseTimer timer;
  daemon::SweepRequest req;
  req.dry_run = false;
  auto swept = vault.service().Sweep(nullptr, req, timer.Callback());
  const double sweep_s = SecondsSince(start);
  const LoadResult beside = load.Stop();
  const double seconds = SecondsSince(start);
  PrintLoad("load beside the sweep", beside, seconds);
  const daemon::SweepResult r = ValueOrDie(std::move(swept), "Sweep beside the load");
  std::printf("sweep beside the load: %.2f s, %llu records destroyed (%llu kept), %.0f records/s\n",
              sweep_s, static_cast<unsigned long long>(r.destroyed_records),
              static_cast<unsigned long long>(r.rewrapped_records + r.held_records),
              static_cast<double>(r.destroyed_records) / sweep_s);
  timer.Print(sweep_s);
  const auto [after, alone_after_ops] = run_alone("load alone, after the sweep", "c");
  const double alone_ops = (alone_before_ops + alone_after_ops) / 2;
  const double beside_ops = static_cast<double>(beside.creates + beside.reads) / seconds;
  std::printf(
      "throughput drop during the sweep: %.1f%% (mean of the runs alone %.0f ops/s ->"
      " %.0f ops/s beside it)\n",
      100.0 * (1.0 - beside_ops / alone_ops), alone_ops, beside_ops);
  const uint64_t failures = alone.failures + beside.failures + after.failures;
  return failures == 0 && r.destroyed_records == p.records ? 0 : 1;
}

}  // namespace
}  // namespace phivault::bench

int main(int argc, char** argv) {
  using phivault::bench::Options;
  Options o;
  CLI::App app{"phivault retention benchmarks (docs/benchmarks.md, \"Retention sweeps\")"};
  app.add_option("--mode", o.mode, "sweep | erase | rewrap | load")
      ->check(CLI::IsMember({"sweep", "erase", "rewrap", "load"}));
  app.add_option("--records", o.records,
                 "records staged (default: sweep 1000000, erase 100000 per epoch, rewrap 100000, "
                 "load 200000)");
  app.add_option("--per-patient", o.per_patient, "records per synthetic patient")
      ->check(CLI::Range(1, 1000));
  app.add_option("--days", o.days, "encounter days the records spread over (one epoch each)")
      ->check(CLI::Range(1, 300));
  app.add_option("--content-bytes", o.content_bytes, "content size of each record")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--populate-threads", o.populate_threads)->check(CLI::Range(1, 64));
  app.add_option("--compact-setup", o.compact_setup,
                 "compact the store after staging, as a vault that has been running would be");
  app.add_option("--clients", o.clients, "load mode: client threads")->check(CLI::Range(1, 256));
  app.add_option("--load-seconds", o.load_seconds, "load mode: length of the run without sweep")
      ->check(CLI::Range(1.0, 3600.0));
  CLI11_PARSE(app, argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (o.mode == "sweep") return phivault::bench::RunSweepMode(o);
  if (o.mode == "erase") return phivault::bench::RunEraseMode(o);
  if (o.mode == "rewrap") return phivault::bench::RunRewrapMode(o);
  return phivault::bench::RunLoadMode(o);
}
