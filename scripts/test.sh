#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds (warnings are errors), runs every test;
# then, with clang, the fuzz targets for a short smoke run (AddressSanitizer +
# UndefinedBehaviorSanitizer + libFuzzer, scripts/fuzz.sh) and the concurrency tests under
# ThreadSanitizer (scripts/tsan.sh). Both clang builds also check the lock annotations
# (-Wthread-safety, as errors).
#
# PHIVAULT_SKIP_SANITIZERS=1 stops after the first part. PHIVAULT_FULL_ASAN=1 adds the long mode:
# the whole suite again under ASan + UBSan (GCC, Debug), which no longer fits CI's 40 minutes
# beside the fuzz and TSan builds (docs/reliability.md).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --test

jobs=$(nproc)
run_suite() {
  local dir=$1; shift
  cmake -S . -B "$dir" -G Ninja "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 600
}

# build/release is also where scripts/dev-vault.sh builds, with this same build type: the two
# never make each other recompile.
echo "== build and test (RelWithDebInfo)"
run_suite build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo

if [[ "${PHIVAULT_SKIP_SANITIZERS:-0}" != "1" ]]; then
  echo "== fuzz smoke (clang, AddressSanitizer + UndefinedBehaviorSanitizer + libFuzzer)"
  scripts/fuzz.sh --smoke
  echo "== concurrency tests (clang, ThreadSanitizer)"
  scripts/tsan.sh
fi

if [[ "${PHIVAULT_FULL_ASAN:-0}" == "1" ]]; then
  echo "== build and test (AddressSanitizer + UndefinedBehaviorSanitizer)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    run_suite build/asan -DCMAKE_BUILD_TYPE=Debug -DPHIVAULT_SANITIZE=ON -DPHIVAULT_BUILD_BENCHMARKS=OFF
fi
