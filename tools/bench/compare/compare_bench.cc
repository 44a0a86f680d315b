// phivault_compare_bench: the alternatives a practice would otherwise use, driven by the same load
// generator and printing the same report as `phivault bench` (tools/loadgen.h), so that
// scripts/bench-compare.sh can set them side by side (docs/benchmarks.md, "Side by side").
//
//   raw        RocksDB in this process, content sealed with XChaCha20-Poly1305 (libsodium): create
//              = one synced put; read = get + open + one synced 300-byte audit put. The ceiling
//              of what phivault's storage path can reach, with no policy, index or audit chain.
//   pg-aes     PostgreSQL over its Unix socket, one connection per client: content encrypted by
//              pgcrypto's encrypt(..., 'aes'), an audit row in the same transaction as every
//              insert and every read, synchronous_commit on.
//   pg-pgp     the same with pgp_sym_encrypt_bytea / pgp_sym_decrypt_bytea.
//   sqlcipher  SQLCipher, one connection shared by all clients (serialised), WAL journal,
//              synchronous=FULL, the record and its audit row in one transaction.
//
// Every record's content is synthetic. Keys are random per run and kept in sodium_malloc'd
// memory; for PostgreSQL they travel as a query parameter over the local socket, as an
// application using pgcrypto would send them.
#include <libpq-fe.h>
#include <sodium.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/statistics.h>
#include <rocksdb/write_batch.h>
#include <CLI/CLI.hpp>

#include "tools/loadgen.h"

namespace phivault::compare {
namespace {

using loadgen::ServerSample;

constexpr size_t kKeyBytes = crypto_aead_xchacha20poly1305_ietf_KEYBYTES;
constexpr size_t kNonceBytes = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr size_t kTagBytes = crypto_aead_xchacha20poly1305_ietf_ABYTES;
constexpr size_t kAuditBytes = 300;

// One random key per run in locked, guarded memory, wiped when the program ends.
class RunKey {
 public:
  RunKey() : key_(static_cast<unsigned char*>(sodium_malloc(kKeyBytes))) {
    if (key_ == nullptr) {
      std::cerr << "phivault_compare_bench: sodium_malloc failed\n";
      std::exit(1);
    }
    randombytes_buf(key_, kKeyBytes);
  }
  ~RunKey() { sodium_free(key_); }
  RunKey(const RunKey&) = delete;
  RunKey& operator=(const RunKey&) = delete;
  const unsigned char* data() const { return key_; }
  std::string Hex() const {
    std::string hex(kKeyBytes * 2 + 1, '\0');
    sodium_bin2hex(hex.data(), hex.size(), key_, kKeyBytes);
    hex.pop_back();
    return hex;
  }

 private:
  unsigned char* key_;
};

// A ~300-byte audit entry naming who read or wrote what, as an audit trail would.
std::string AuditDetail(std::string_view action, std::string_view record_id,
                        std::string_view patient) {
  std::string s = R"({"actor":"dr.bench","role":"physician","purpose":"TREAT","action":")";
  s.append(action).append(R"(","record":")").append(record_id).append(R"(","patient":")");
  s.append(patient).append(R"(","outcome":"permitted","rule":"physician-treat"})");
  s.resize(kAuditBytes, ' ');
  return s;
}

// ---- raw: RocksDB + XChaCha20-Poly1305 --------------------------------------------------------

class RawTarget;

class RawSession final : public loadgen::Session {
 public:
  explicit RawSession(RawTarget& t) : t_(t) {}
  bool Create(const std::string& patient, std::string_view content, std::string* id,
              std::string* error) override;
  bool Read(const std::string& id, size_t expected_bytes, std::string* error) override;

 private:
  RawTarget& t_;
  std::string sealed_, value_, plain_;
};

class RawTarget final : public loadgen::Target, public loadgen::ServerProbe {
 public:
  static std::unique_ptr<RawTarget> Open(const std::string& dir, std::string* error) {
    rocksdb::Options options;
    options.create_if_missing = true;
    options.statistics = rocksdb::CreateDBStatistics();
    rocksdb::DB* db = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(options, dir + "/raw-rocksdb", &db);
    if (!s.ok()) {
      *error = "RocksDB: " + s.ToString();
      return nullptr;
    }
    return std::unique_ptr<RawTarget>(new RawTarget(dir, db, options.statistics));
  }

  std::unique_ptr<loadgen::Session> Connect(int, std::string*) override {
    return std::make_unique<RawSession>(*this);
  }

  ServerSample Sample() override {
    ServerSample s;
    s.cpu_us = loadgen::SelfCpuUs();
    s.rss_bytes = loadgen::ProcessRss(getpid());
    s.syncs = stats_->getTickerCount(rocksdb::WAL_FILE_SYNCED);
    s.disk_bytes = loadgen::DiskUsage(dir_ + "/raw-rocksdb");
    s.disk_apparent_bytes = loadgen::DiskUsage(dir_ + "/raw-rocksdb", /*apparent=*/true);
    return s;
  }
  std::optional<uint64_t> Rss() override { return loadgen::ProcessRss(getpid()); }
  std::string cpu_scope() const override {
    return "benchmark process (engine in-process, load generator included)";
  }

  rocksdb::DB& db() { return *db_; }
  const RunKey& key() const { return key_; }
  uint64_t NextId() { return next_id_.fetch_add(1) + 1; }
  uint64_t NextAudit() { return next_audit_.fetch_add(1) + 1; }

 private:
  RawTarget(std::string dir, rocksdb::DB* db, std::shared_ptr<rocksdb::Statistics> stats)
      : dir_(std::move(dir)), db_(db), stats_(std::move(stats)) {}

  std::string dir_;
  std::unique_ptr<rocksdb::DB> db_;
  std::shared_ptr<rocksdb::Statistics> stats_;
  RunKey key_;
  std::atomic<uint64_t> next_id_{0}, next_audit_{0};
};

std::string Be64(char prefix, uint64_t v) {
  std::string k(1, prefix);
  for (int i = 7; i >= 0; --i) k.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return k;
}

bool RawSession::Create(const std::string&, std::string_view content, std::string* id,
                        std::string* error) {
  const std::string key = Be64('r', t_.NextId());
  value_.resize(kNonceBytes + content.size() + kTagBytes);
  auto* out = reinterpret_cast<unsigned char*>(value_.data());
  randombytes_buf(out, kNonceBytes);
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      out + kNonceBytes, nullptr, reinterpret_cast<const unsigned char*>(content.data()),
      content.size(), reinterpret_cast<const unsigned char*>(key.data()), key.size(), nullptr, out,
      t_.key().data());
  rocksdb::WriteOptions wo;
  wo.sync = true;
  rocksdb::Status s = t_.db().Put(wo, key, value_);
  if (!s.ok()) {
    *error = s.ToString();
    return false;
  }
  *id = key;
  return true;
}

bool RawSession::Read(const std::string& id, size_t expected_bytes, std::string* error) {
  rocksdb::Status s = t_.db().Get(rocksdb::ReadOptions(), id, &sealed_);
  if (!s.ok()) {
    *error = s.ToString();
    return false;
  }
  if (sealed_.size() < kNonceBytes + kTagBytes) {
    *error = "stored value too short";
    return false;
  }
  plain_.resize(sealed_.size() - kNonceBytes - kTagBytes);
  const auto* in = reinterpret_cast<const unsigned char*>(sealed_.data());
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          reinterpret_cast<unsigned char*>(plain_.data()), nullptr, nullptr, in + kNonceBytes,
          sealed_.size() - kNonceBytes, reinterpret_cast<const unsigned char*>(id.data()),
          id.size(), in, t_.key().data()) != 0) {
    *error = "authentication failed";
    return false;
  }
  if (plain_.size() != expected_bytes) {
    *error = "wrong content size";
    return false;
  }
  // The audit entry is durable before the content is handed back.
  rocksdb::WriteOptions wo;
  wo.sync = true;
  s = t_.db().Put(wo, Be64('a', t_.NextAudit()), AuditDetail("record.read", "raw", "-"));
  if (!s.ok()) {
    *error = s.ToString();
    return false;
  }
  return true;
}

// ---- PostgreSQL + pgcrypto -------------------------------------------------------------------

struct PgConfig {
  std::string conninfo;  // "host=/tmp/x port=5432 dbname=bench user=bench"
  std::string data_dir;  // the cluster's directory: postmaster.pid, du
  bool pgp = false;
};

using PgConn = std::unique_ptr<PGconn, decltype(&PQfinish)>;
using PgResult = std::unique_ptr<PGresult, decltype(&PQclear)>;

PgConn PgConnect(const std::string& conninfo, std::string* error) {
  PgConn conn(PQconnectdb(conninfo.c_str()), &PQfinish);
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    *error = "PostgreSQL: " + std::string(PQerrorMessage(conn.get()));
    return PgConn(nullptr, &PQfinish);
  }
  return conn;
}

bool PgExec(PGconn* conn, const char* sql, std::string* error) {
  PgResult r(PQexec(conn, sql), &PQclear);
  const auto status = PQresultStatus(r.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    *error = "PostgreSQL: " + std::string(PQresultErrorMessage(r.get()));
    return false;
  }
  return true;
}

class PgSession final : public loadgen::Session {
 public:
  PgSession(PgConn conn, std::string key) : conn_(std::move(conn)), key_(std::move(key)) {}

  bool Prepare(bool pgp, std::string* error) {
    // One statement each, so that the record (or the read) and its audit row commit together,
    // and a read's row is committed (synchronous_commit on) before PQexecPrepared returns it.
    const std::string create =
        std::string("WITH r AS (INSERT INTO records (patient, content) VALUES ($1, ") +
        (pgp ? "pgp_sym_encrypt_bytea($2, $3)" : "encrypt($2, decode($3, 'hex'), 'aes')") +
        ") RETURNING id) INSERT INTO audit (action, record_id, detail) SELECT 'record.create', "
        "id, $4 FROM r RETURNING record_id";
    const std::string read = std::string(
                                 "WITH a AS (INSERT INTO audit (action, record_id, detail) VALUES "
                                 "('record.read', $1::bigint, $2) RETURNING record_id) SELECT ") +
                             (pgp ? "pgp_sym_decrypt_bytea(content, $3)"
                                  : "decrypt(content, decode($3, 'hex'), 'aes')") +
                             " FROM records WHERE id = (SELECT record_id FROM a)";
    for (const auto& [name, sql, n] : {std::tuple{"create", create, 4}, {"read", read, 3}}) {
      PgResult r(PQprepare(conn_.get(), name, sql.c_str(), n, nullptr), &PQclear);
      if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
        *error = "PostgreSQL prepare: " + std::string(PQresultErrorMessage(r.get()));
        return false;
      }
    }
    return true;
  }

  bool Create(const std::string& patient, std::string_view content, std::string* id,
              std::string* error) override {
    const std::string audit = AuditDetail("record.create", "new", patient);
    const char* values[4] = {patient.c_str(), content.data(), key_.c_str(), audit.c_str()};
    const int lengths[4] = {0, static_cast<int>(content.size()), 0, 0};
    const int formats[4] = {0, 1, 0, 0};
    PgResult r(PQexecPrepared(conn_.get(), "create", 4, values, lengths, formats, 0), &PQclear);
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK || PQntuples(r.get()) != 1) {
      *error = "PostgreSQL: " + std::string(PQresultErrorMessage(r.get()));
      return false;
    }
    *id = PQgetvalue(r.get(), 0, 0);
    return true;
  }

  bool Read(const std::string& id, size_t expected_bytes, std::string* error) override {
    const std::string audit = AuditDetail("record.read", id, "-");
    const char* values[3] = {id.c_str(), audit.c_str(), key_.c_str()};
    PgResult r(PQexecPrepared(conn_.get(), "read", 3, values, nullptr, nullptr, 1), &PQclear);
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK || PQntuples(r.get()) != 1) {
      *error = "PostgreSQL: " + std::string(PQresultErrorMessage(r.get()));
      return false;
    }
    if (static_cast<size_t>(PQgetlength(r.get(), 0, 0)) != expected_bytes) {
      *error = "wrong content size";
      return false;
    }
    return true;
  }

 private:
  PgConn conn_;
  std::string key_;  // hex for encrypt(), the passphrase for pgp_sym_encrypt
};

class PgTarget final : public loadgen::Target, public loadgen::ServerProbe {
 public:
  static std::unique_ptr<PgTarget> Open(PgConfig config, std::string* error) {
    PgConn conn = PgConnect(config.conninfo, error);
    if (!conn) return nullptr;
    // A fresh schema per run; the audit table has what an audit trigger would record.
    if (!PgExec(conn.get(),
                "CREATE EXTENSION IF NOT EXISTS pgcrypto; DROP TABLE IF EXISTS audit; "
                "DROP TABLE IF EXISTS records; "
                "CREATE TABLE records (id bigserial PRIMARY KEY, patient text NOT NULL, content "
                "bytea NOT NULL, created timestamptz NOT NULL DEFAULT now()); "
                "CREATE TABLE audit (seq bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT "
                "now(), action text NOT NULL, record_id bigint, detail text NOT NULL); "
                "SET synchronous_commit = on; CHECKPOINT;",
                error)) {
      return nullptr;
    }
    std::ifstream pidfile(config.data_dir + "/postmaster.pid");
    pid_t pid = 0;
    if (!(pidfile >> pid) || pid <= 0) {
      *error = "no postmaster.pid in " + config.data_dir;
      return nullptr;
    }
    return std::unique_ptr<PgTarget>(new PgTarget(std::move(config), std::move(conn), pid));
  }

  std::unique_ptr<loadgen::Session> Connect(int, std::string* error) override {
    PgConn conn = PgConnect(config_.conninfo, error);
    if (!conn || !PgExec(conn.get(), "SET synchronous_commit = on", error)) return nullptr;
    // The hex key for encrypt(); for PGP the same hex string is the passphrase.
    auto s = std::make_unique<PgSession>(std::move(conn), key_.Hex());
    if (!s->Prepare(config_.pgp, error)) return nullptr;
    return s;
  }

  ServerSample Sample() override {
    ServerSample s;
    double cpu = 0;
    uint64_t rss = 0;
    bool ok = true;
    for (pid_t p : Processes()) {
      auto c = loadgen::ProcessCpuUs(p);
      auto r = loadgen::ProcessRss(p);
      ok = ok && c && r;
      cpu += c.value_or(0);
      rss += r.value_or(0);
    }
    if (ok) {
      s.cpu_us = cpu;
      s.rss_bytes = rss;
    }
    PgResult r(PQexec(probe_.get(), "SELECT wal_sync FROM pg_stat_wal"), &PQclear);
    if (PQresultStatus(r.get()) == PGRES_TUPLES_OK && PQntuples(r.get()) == 1) {
      s.syncs = std::stoull(PQgetvalue(r.get(), 0, 0));
    }
    s.disk_bytes = loadgen::DiskUsage(config_.data_dir);
    s.disk_apparent_bytes = loadgen::DiskUsage(config_.data_dir, /*apparent=*/true);
    return s;
  }
  std::optional<uint64_t> Rss() override {
    uint64_t rss = 0;
    for (pid_t p : Processes()) rss += loadgen::ProcessRss(p).value_or(0);
    return rss;
  }
  std::string cpu_scope() const override {
    return "postgres server processes (postmaster and its children)";
  }

 private:
  PgTarget(PgConfig config, PgConn probe, pid_t postmaster)
      : config_(std::move(config)), probe_(std::move(probe)), postmaster_(postmaster) {}

  std::vector<pid_t> Processes() const {
    std::vector<pid_t> all = loadgen::ChildProcesses(postmaster_);
    all.push_back(postmaster_);
    return all;
  }

  PgConfig config_;
  PgConn probe_;
  pid_t postmaster_;
  RunKey key_;
};

// ---- SQLCipher --------------------------------------------------------------------------------

class SqlTarget;

class SqlSession final : public loadgen::Session {
 public:
  explicit SqlSession(SqlTarget& t) : t_(t) {}
  bool Create(const std::string& patient, std::string_view content, std::string* id,
              std::string* error) override;
  bool Read(const std::string& id, size_t expected_bytes, std::string* error) override;

 private:
  SqlTarget& t_;
};

class SqlTarget final : public loadgen::Target, public loadgen::ServerProbe {
 public:
  static std::unique_ptr<SqlTarget> Open(const std::string& dir, std::string* error) {
    const std::string path = dir + "/sqlcipher.db";
    std::remove(path.c_str());
    sqlite3* db = nullptr;
    if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) {
      *error = "SQLCipher: " + std::string(sqlite3_errmsg(db));
      sqlite3_close(db);
      return nullptr;
    }
    std::unique_ptr<SqlTarget> t(new SqlTarget(dir, db));
    const std::string pragma_key = "PRAGMA key = \"x'" + t->key_.Hex() + "'\";";
    if (!t->Exec(pragma_key.c_str(), error) ||
        !t->Exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; "
                 "CREATE TABLE records (id INTEGER PRIMARY KEY, patient TEXT NOT NULL, content "
                 "BLOB NOT NULL, created INTEGER NOT NULL); "
                 "CREATE TABLE audit (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, action TEXT "
                 "NOT NULL, record_id INTEGER, detail TEXT NOT NULL);",
                 error) ||
        !t->Prepare(&t->insert_record_,
                    "INSERT INTO records (patient, content, created) VALUES (?, ?, "
                    "strftime('%s','now'))",
                    error) ||
        !t->Prepare(&t->insert_audit_,
                    "INSERT INTO audit (at, action, record_id, detail) VALUES "
                    "(strftime('%s','now'), ?, ?, ?)",
                    error) ||
        !t->Prepare(&t->select_, "SELECT content FROM records WHERE id = ?", error) ||
        !t->Prepare(&t->begin_, "BEGIN IMMEDIATE", error) ||
        !t->Prepare(&t->commit_, "COMMIT", error) ||
        !t->Prepare(&t->rollback_, "ROLLBACK", error)) {
      return nullptr;
    }
    return t;
  }
  ~SqlTarget() override {
    for (sqlite3_stmt* s : {insert_record_, insert_audit_, select_, begin_, commit_, rollback_}) {
      sqlite3_finalize(s);
    }
    sqlite3_close(db_);
  }

  std::unique_ptr<loadgen::Session> Connect(int, std::string*) override {
    return std::make_unique<SqlSession>(*this);
  }
  ServerSample Sample() override {
    ServerSample s;
    s.cpu_us = loadgen::SelfCpuUs();
    s.rss_bytes = loadgen::ProcessRss(getpid());
    s.disk_bytes = DiskOfDb(false);
    s.disk_apparent_bytes = DiskOfDb(true);
    return s;
  }
  std::optional<uint64_t> Rss() override { return loadgen::ProcessRss(getpid()); }
  std::string cpu_scope() const override {
    return "benchmark process (engine in-process, load generator included)";
  }

  // One transaction: `audit_action` row (and with `content` a new record first); with `out` the
  // content of `record_id`, read after its audit row is in the transaction. Commit is durable
  // (synchronous=FULL) before this returns.
  bool Transaction(std::string_view patient, std::string_view content, int64_t record_id,
                   const std::string& audit, std::string* out, int64_t* new_id,
                   std::string* error) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!Step(begin_, error)) return false;
    bool ok = true;
    if (new_id != nullptr) {
      sqlite3_bind_text(insert_record_, 1, patient.data(), static_cast<int>(patient.size()),
                        SQLITE_STATIC);
      sqlite3_bind_blob(insert_record_, 2, content.data(), static_cast<int>(content.size()),
                        SQLITE_STATIC);
      ok = Step(insert_record_, error);
      record_id = sqlite3_last_insert_rowid(db_);
      *new_id = record_id;
    }
    if (ok) {
      const char* action = new_id != nullptr ? "record.create" : "record.read";
      sqlite3_bind_text(insert_audit_, 1, action, -1, SQLITE_STATIC);
      sqlite3_bind_int64(insert_audit_, 2, record_id);
      sqlite3_bind_text(insert_audit_, 3, audit.data(), static_cast<int>(audit.size()),
                        SQLITE_STATIC);
      ok = Step(insert_audit_, error);
    }
    if (ok && out != nullptr) {
      sqlite3_bind_int64(select_, 1, record_id);
      const int rc = sqlite3_step(select_);
      if (rc == SQLITE_ROW) {
        out->assign(static_cast<const char*>(sqlite3_column_blob(select_, 0)),
                    static_cast<size_t>(sqlite3_column_bytes(select_, 0)));
      } else {
        *error = "no such record";
        ok = false;
      }
      sqlite3_reset(select_);
    }
    if (!ok) {
      std::string ignored;
      Step(rollback_, &ignored);
      return false;
    }
    return Step(commit_, error);
  }

 private:
  SqlTarget(std::string dir, sqlite3* db) : dir_(std::move(dir)), db_(db) {}

  bool Exec(const char* sql, std::string* error) {
    char* msg = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &msg) != SQLITE_OK) {
      *error = "SQLCipher: " + std::string(msg != nullptr ? msg : "error");
      sqlite3_free(msg);
      return false;
    }
    return true;
  }
  bool Prepare(sqlite3_stmt** stmt, const char* sql, std::string* error) {
    if (sqlite3_prepare_v2(db_, sql, -1, stmt, nullptr) != SQLITE_OK) {
      *error = "SQLCipher: " + std::string(sqlite3_errmsg(db_));
      return false;
    }
    return true;
  }
  bool Step(sqlite3_stmt* stmt, std::string* error) {
    const int rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
      *error = "SQLCipher: " + std::string(sqlite3_errmsg(db_));
      return false;
    }
    return true;
  }
  std::optional<uint64_t> DiskOfDb(bool apparent) const {
    // The database, its WAL and shared-memory index sit next to each other in dir_.
    uint64_t total = 0;
    for (const char* suffix : {"", "-wal", "-shm"}) {
      const std::string path = dir_ + "/sqlcipher.db" + suffix;
      struct stat st;
      if (stat(path.c_str(), &st) == 0) {
        total += apparent ? static_cast<uint64_t>(st.st_size)
                          : static_cast<uint64_t>(st.st_blocks) * 512;
      }
    }
    return total;
  }

  std::string dir_;
  sqlite3* db_;
  RunKey key_;
  std::mutex mu_;
  sqlite3_stmt* insert_record_ = nullptr;  // GUARDED_BY(mu_) like every statement below
  sqlite3_stmt* insert_audit_ = nullptr;
  sqlite3_stmt* select_ = nullptr;
  sqlite3_stmt* begin_ = nullptr;
  sqlite3_stmt* commit_ = nullptr;
  sqlite3_stmt* rollback_ = nullptr;
};

bool SqlSession::Create(const std::string& patient, std::string_view content, std::string* id,
                        std::string* error) {
  int64_t new_id = 0;
  if (!t_.Transaction(patient, content, 0, AuditDetail("record.create", "new", patient), nullptr,
                      &new_id, error)) {
    return false;
  }
  *id = std::to_string(new_id);
  return true;
}

bool SqlSession::Read(const std::string& id, size_t expected_bytes, std::string* error) {
  std::string content;
  if (!t_.Transaction("", "", std::stoll(id), AuditDetail("record.read", id, "-"), &content,
                      nullptr, error)) {
    return false;
  }
  if (content.size() != expected_bytes) {
    *error = "wrong content size";
    return false;
  }
  return true;
}

int Main(int argc, char** argv) {
  CLI::App app{
      "phivault_compare_bench: the same workloads as `phivault bench` against the alternatives "
      "(docs/benchmarks.md)"};
  std::string backend, workload = "create", size = "1KiB", dir, pg_host, pg_db = "bench", pg_user,
                       pg_data;
  int pg_port = 5432;
  bool json = false;
  loadgen::Options o;
  app.add_option("--backend", backend, "raw, pg-aes, pg-pgp or sqlcipher")
      ->required()
      ->check(CLI::IsMember({"raw", "pg-aes", "pg-pgp", "sqlcipher"}));
  app.add_option("--workload", workload, "create, read or mixed")
      ->check(CLI::IsMember({"create", "read", "mixed"}))
      ->capture_default_str();
  app.add_option("--size", size, "1KiB, 64KiB, 1MiB or a byte count")->capture_default_str();
  app.add_option("--clients", o.clients, "concurrent clients")->capture_default_str();
  app.add_option("--duration", o.duration_s, "seconds of the measured phase")
      ->capture_default_str();
  app.add_option("--ops", o.ops, "total operations instead of a duration");
  app.add_option("--warmup-records", o.warmup_records, "records created before read/mixed");
  app.add_option("--data-dir", dir, "raw, sqlcipher: directory for the database (must exist)");
  app.add_option("--pg-host", pg_host, "pg-*: PostgreSQL's Unix-socket directory");
  app.add_option("--pg-port", pg_port, "pg-*: its port number")->capture_default_str();
  app.add_option("--pg-db", pg_db, "pg-*: database")->capture_default_str();
  app.add_option("--pg-user", pg_user, "pg-*: user");
  app.add_option("--pg-data", pg_data, "pg-*: the cluster's data directory (postmaster.pid, du)");
  app.add_flag("--json", json, "JSON output");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  auto usage = [](const std::string& problem) {
    std::cerr << "phivault_compare_bench: " << problem << "\n";
    return 2;
  };
  o.workload = *loadgen::ParseWorkload(workload);
  auto parsed_size = loadgen::ParseSize(size);
  if (!parsed_size) return usage("--size must be 1KiB, 64KiB, 1MiB or a positive byte count");
  o.size = *parsed_size;
  if (std::string problem = loadgen::CheckOptions(o); !problem.empty()) return usage(problem);
  const bool pg = backend.rfind("pg-", 0) == 0;
  if (!pg && dir.empty()) return usage("--data-dir is required for " + backend);
  if (pg && (pg_host.empty() || pg_user.empty() || pg_data.empty())) {
    return usage("--pg-host, --pg-user and --pg-data are required for " + backend);
  }
  if (sodium_init() < 0) {
    std::cerr << "phivault_compare_bench: libsodium failed to initialise\n";
    return 1;
  }

  std::string error;
  std::unique_ptr<loadgen::Target> target;
  loadgen::ServerProbe* probe = nullptr;
  if (backend == "raw") {
    auto t = RawTarget::Open(dir, &error);
    probe = t.get();
    target = std::move(t);
  } else if (backend == "sqlcipher") {
    auto t = SqlTarget::Open(dir, &error);
    probe = t.get();
    target = std::move(t);
  } else {
    PgConfig config{.conninfo = "host=" + pg_host + " port=" + std::to_string(pg_port) +
                                " dbname=" + pg_db + " user=" + pg_user +
                                " options='-c client_min_messages=warning'",
                    .data_dir = pg_data,
                    .pgp = backend == "pg-pgp"};
    auto t = PgTarget::Open(std::move(config), &error);
    probe = t.get();
    target = std::move(t);
  }
  if (target == nullptr) {
    std::cerr << "phivault_compare_bench: " << backend << ": " << error << "\n";
    return 1;
  }
  const loadgen::Report report = loadgen::Run(backend, *target, probe, o);
  if (json) {
    std::cout << loadgen::ToJson(report).dump(2) << "\n";
  } else {
    std::cout << loadgen::ToTable(report);
  }
  if (report.errors > 0) {
    std::cerr << "phivault_compare_bench: " << report.errors
              << " operations failed; the first: " << report.first_error << "\n";
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace phivault::compare

int main(int argc, char** argv) { return phivault::compare::Main(argc, argv); }
