#!/usr/bin/env bash
# The concurrency tests under ThreadSanitizer (docs/reliability-concurrency.md): builds only the
# libraries, phivaultd, phivault and the tsan_* test binaries of tests/tsan into build/tsan with
# clang -fsanitize=thread, runs the tests that exercise threads against shared state, and fails
# on the first data race, lock-order inversion or other report of any process (the e2e tests'
# phivaultd included). PHIVAULT_TSAN_DIR overrides the build directory; --build-only stops after
# the build.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${PHIVAULT_TSAN_DIR:-build/tsan}
jobs=$(nproc)

# -O1 -g1: TSan's own slowdown dominates; more optimisation buys little and costs compile time,
# line tables are enough for the reports. No benchmarks, no other test folders.
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE= -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_CXX_FLAGS="-fsanitize=thread -O1 -g1" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" \
  -DPHIVAULT_BUILD_BENCHMARKS=OFF -DPHIVAULT_TEST_DIRS=tsan >/dev/null
cmake --build "$dir" -j "$jobs" --target tsan_crypto_test tsan_storage_test tsan_service_test \
  tsan_e2e_test
if [[ "${1:-}" == "--build-only" ]]; then exit 0; fi

reports=$(realpath "$dir")/tsan-reports
rm -rf "$reports"
mkdir -p "$reports"
# Every process writes its reports to $reports/report.<pid>: the daemons the e2e tests start
# inherit this environment, and their stderr is not shown otherwise.
# ignore_noninstrumented_modules: Debian's RocksDB is not built with TSan, and its write group
# (WriteThread) hands the merged batch from leader to leader with atomics TSan cannot see; the
# memcpy calls libstdc++ makes on RocksDB's behalf were then reported as races between two
# phivault threads calling Store::Write. Accesses made by phivault's own (instrumented) code are
# still checked.
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ignore_noninstrumented_modules=1 \
log_path=$reports/report suppressions=$PWD/scripts/tsan-suppressions.txt"

failed=0
run() {
  local binary=$1 filter=$2
  echo "== $binary"
  if ! "$dir/tests/tsan/$binary" --gtest_filter="$filter" --gtest_brief=1; then
    failed=1
  fi
}
run tsan_crypto_test 'KeyringTest.ConcurrentGetOrCreateYieldsOneKey:SecretPoolTest.Concurrent*'
run tsan_storage_test 'LedgerTest.Concurrent*:LedgerFullDiskTest.*:LedgerTest.ReadingAndScanning*:AuditLogTest.CheckpointsSignedWhileEntriesAreAppended*'
run tsan_service_test 'ServiceTest.ConcurrentAmendments*:RetentionServiceTest.ASweepRunsBesideTraffic*:PolicyReloadTest.ReloadsBesideTraffic*'
run tsan_e2e_test 'E2eBackupTest.OnlineBackupWhileClientsWriteLosesNothing:E2eKeyCustodyTest.RotationUnderLoad*'

if compgen -G "$reports/report.*" >/dev/null; then
  echo "tsan: ThreadSanitizer reports:" >&2
  cat "$reports"/report.* >&2
  failed=1
fi
if ((failed)); then
  echo "tsan: FAILED" >&2
  exit 1
fi
echo "tsan: no reports"
