#!/usr/bin/env bash
# Installs, by exact Debian 12 package name, whatever phivault needs that is missing.
# Safe to run again: it installs nothing when everything is present.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config ccache git curl ca-certificates
  libsodium-dev librocksdb-dev libpoco-dev libspdlog-dev libgtest-dev libgmock-dev
  libbenchmark-dev nlohmann-json3-dev rapidjson-dev libcli11-dev libtomlplusplus-dev libarchive-dev libgfshare-dev libzstd-dev libjemalloc-dev
  systemd
)
# Extra packages for the test suite only (passed with --test): clang-format for the format check,
# chromium to render the HTML reports headless (tests/compliance_e2e), jq for the guide
# walk-throughs (tests/tools/dev_vault_test.cc), faketime to run the daemon days or years ahead
# (tests/e2e/retention_e2e_test.cc: records expire), and curl already above. PostgreSQL 15
# (pgcrypto is in postgresql-15), libpq, SQLCipher and gnuplot for the side-by-side benchmark's
# smoke run (scripts/bench-compare.sh --smoke, ctest bench_compare_smoke; docs/benchmarks.md).
# clang (14) with its sanitizer and libFuzzer runtimes (libclang-rt-14-dev) and llvm-symbolizer
# (llvm-14): the ThreadSanitizer build, the -Wthread-safety check and the fuzz targets
# (scripts/tsan.sh, scripts/fuzz.sh; docs/reliability-concurrency.md, docs/reliability-fuzz.md).
test_packages=(clang-format chromium jq faketime postgresql-15 libpq-dev libsqlcipher-dev gnuplot-nox
  clang clang-14 libclang-rt-14-dev llvm-14)
# Node.js runs the FHIR R4 schema validator of tests/compliance_e2e; a machine may already have a
# newer Node.js from elsewhere, so Debian's is added only when `node` is absent.
node_packages=(nodejs npm)

with_tests=0
if [[ "${1:-}" == "--test" ]]; then
  with_tests=1
  packages+=("${test_packages[@]}")
  if ! command -v node >/dev/null 2>&1; then
    packages+=("${node_packages[@]}")
  fi
fi

# npm packages of the tests, pinned by tests/compliance_e2e/package-lock.json, into build/npm
# (PHIVAULT_NPM_PREFIX overrides; the compliance_e2e tests look there). `npm ci` runs only when
# the installed lock differs from the committed one.
install_test_npm_packages() {
  local root prefix
  root=$(cd "$(dirname "$0")/.." && pwd)
  prefix=${PHIVAULT_NPM_PREFIX:-$root/build/npm}
  if cmp -s "$root/tests/compliance_e2e/package-lock.json" "$prefix/node_modules/.package-lock.json.installed"; then
    return 0
  fi
  echo "install-deps: installing the tests' npm packages into $prefix" >&2
  mkdir -p "$prefix"
  cp "$root/tests/compliance_e2e/package.json" "$root/tests/compliance_e2e/package-lock.json" "$prefix/"
  (cd "$prefix" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
  cp "$root/tests/compliance_e2e/package-lock.json" "$prefix/node_modules/.package-lock.json.installed"
}

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} > 0)); then
  echo "install-deps: installing ${missing[*]}" >&2
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ((with_tests)); then
  install_test_npm_packages
fi
