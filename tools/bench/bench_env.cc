#include "tools/bench/bench_env.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "crypto/secret.h"
#include "daemon/policy_loader.h"
#include "policies/access_policy.h"

namespace phivault::bench {
namespace {

constexpr size_t kMasterKeyBytes = 32;

StatusOr<crypto::SecretBytes> LoadOrCreateMasterKey(const std::string& path) {
  if (auto bytes = ReadFile(path)) {
    if (bytes->size() != kMasterKeyBytes) return DataLoss(path + " is not a 32-byte master key");
    return crypto::SecretBytes::CopyFrom(*bytes, crypto::InsecureSecretKeyAccess::Get());
  }
  crypto::SecretBytes key = crypto::SecretBytes::Random(kMasterKeyBytes);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Unavailable("cannot create " + path);
  const auto view = key.view(crypto::InsecureSecretKeyAccess::Get());
  const bool written = ::write(fd, view.data(), view.size()) == static_cast<ssize_t>(view.size());
  const bool closed = ::close(fd) == 0;
  if (!written || !closed) return Unavailable("cannot write " + path);
  return key;
}

}  // namespace

ScratchDir::ScratchDir(std::string_view prefix) {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/" +
                     std::string(prefix) + "-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    std::fprintf(stderr, "phivault_bench: cannot create a directory under $TMPDIR\n");
    std::exit(1);
  }
  path_ = tmpl;
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

StatusOr<std::unique_ptr<VaultEnv>> VaultEnv::Open(const VaultEnvOptions& options) {
  PV_RETURN_IF_ERROR(crypto::InitSodium());
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) return Unavailable("cannot create " + options.dir + ": " + ec.message());
  const std::filesystem::path dir(options.dir);

  std::unique_ptr<VaultEnv> env(new VaultEnv());
  env->config_.categories = daemon::DefaultCategories();
  env->config_.roles = daemon::DefaultRoles();
  PV_ASSIGN_OR_RETURN(crypto::SecretBytes master,
                      LoadOrCreateMasterKey((dir / "master.key").string()));
  // The bench reuses its directory across runs: open the keyring it made, or make the first.
  const crypto::KeyringOptions keyring_options{(dir / "keyring").string(), {}};
  const auto access = crypto::InsecureSecretKeyAccess::Get();
  auto keyring = crypto::Keyring::Open(keyring_options,
                                       crypto::SecretBytes::CopyFrom(master.view(access), access));
  if (!keyring.ok() && keyring.status().code() == StatusCode::kNotFound) {
    keyring = crypto::Keyring::Create(keyring_options, std::move(master));
  }
  PV_ASSIGN_OR_RETURN(env->keyring_, std::move(keyring));
  storage::RocksStoreOptions store_options;
  store_options.path = (dir / "db").string();
  PV_ASSIGN_OR_RETURN(env->store_, storage::OpenRocksStore(store_options));
  if (options.merkle) {
    PV_ASSIGN_OR_RETURN(env->audit_log_,
                        storage::AuditLog::Open(*env->store_, env->keyring_->audit_signer(),
                                                env->config_.audit_origin));
  } else {
    PV_ASSIGN_OR_RETURN(env->ledger_, storage::Ledger::Open(*env->store_));
  }
  std::shared_ptr<const policies::AccessPolicy> policy;
  if (!options.policy_toml.empty()) {
    PV_ASSIGN_OR_RETURN(policy,
                        policies::AccessPolicy::Parse(options.policy_toml, "bench-policy.toml",
                                                      daemon::PolicyVocabularyFor(env->config_)));
  }
  PV_ASSIGN_OR_RETURN(
      env->service_,
      daemon::NewVaultService({&env->config_, env->store_.get(), &env->ledger(),
                               env->keyring_.get(), env->audit_log_.get(), std::move(policy)}));
  return env;
}

VaultEnv::~VaultEnv() = default;

daemon::RequestContext Context(std::string user, std::string role, std::string purpose) {
  daemon::RequestContext ctx;
  ctx.request_id = "bench";
  ctx.principal.name = "bench-app";
  ctx.principal.actions = daemon::KnownActions();
  ctx.user = std::move(user);
  ctx.role = std::move(role);
  ctx.purpose = std::move(purpose);
  return ctx;
}

daemon::CreateRecordRequest SmallRecord(std::string patient_id) {
  return {std::move(patient_id),
          "clinical_note",
          "text/plain",
          "2026-10-01",
          "Dr. Synthetic",
          "Synthetic follow-up visit. BP 128/82, HR 71. HbA1c 6.1%. Continue metformin 500 mg."};
}

std::optional<std::string> ReadFile(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return std::nullopt;
  std::string out;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) return std::nullopt;
  return out;
}

void CheckOk(const Status& status, std::string_view what) {
  if (status.ok()) return;
  std::fprintf(stderr, "phivault_bench: %.*s failed: %s\n", static_cast<int>(what.size()),
               what.data(), status.ToString().c_str());
  std::exit(1);
}

}  // namespace phivault::bench
