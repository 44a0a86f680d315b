#!/usr/bin/env bash
# The libFuzzer targets of tests/fuzz (docs/reliability.md, "Fuzzing"), built with clang, ASan and
# UBSan in build/fuzz.
#
#   scripts/fuzz.sh --smoke            every target for a short fixed time (3 minutes in all); fails
#                                      on any crash, leak, timeout or out-of-memory
#   scripts/fuzz.sh --long N [TARGET]  N executions of each target (or of TARGET only)
#   scripts/fuzz.sh --time S [TARGET]  S seconds of each target (or of TARGET only)
#   scripts/fuzz.sh --seeds            rewrites the generated seeds of tests/fuzz/corpus
#   scripts/fuzz.sh --build            only builds
#
# Each run starts from the committed seeds (tests/fuzz/corpus/<target>) plus what earlier runs
# found (build/fuzz/corpus/<target>, where new inputs go; the committed corpus is not changed).
# A crashing input is written to build/fuzz/artifacts/<target>/; the summary of the run (target,
# executions, seconds, crashes, corpus size) to build/fuzz/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=$root/build/fuzz

targets=(http_fuzzer api_json_fuzzer config_fuzzer policy_fuzzer retention_fuzzer keyring_fuzzer
  audit_verify_fuzzer certificate_fuzzer backup_manifest_fuzzer)
# 9 targets x 10 s, plus start-up (about 2 s each): under 2 minutes (PHIVAULT_FUZZ_SMOKE_SECONDS).
smoke_seconds=${PHIVAULT_FUZZ_SMOKE_SECONDS:-10}

usage() {
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

build_fuzzers() {
  if [[ ! -f $build/build.ninja ]]; then
    CC=clang-14 CXX=clang++-14 cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_COMPILER=clang++-14 -DPHIVAULT_FUZZ=ON -DPHIVAULT_BUILD_TESTS=OFF \
      -DPHIVAULT_BUILD_BENCHMARKS=OFF >/dev/null
  fi
  nice -n 5 cmake --build "$build" --target fuzzers
}

# run_target NAME LIBFUZZER-FLAGS...: one run, its line appended to the summary.
run_target() {
  local t=$1
  shift
  local work=$build/corpus/$t artifacts=$build/artifacts/$t log=$build/logs/$t.log
  mkdir -p "$work" "$artifacts" "$(dirname "$log")"
  local dict=()
  if [[ -f $root/tests/fuzz/${t%_fuzzer}.dict ]]; then
    dict=(-dict="$root/tests/fuzz/${t%_fuzzer}.dict")
  fi
  local start end rc=0 cpu
  start=$(date +%s.%N)
  # The scratch files some targets write (a config, a manifest, the HTTP socket) go to tmpfs.
  # CPU seconds are reported beside wall-clock ones: on a shared machine they are the figure
  # that says how long a run takes. ASan records two frames of each allocation's stack, not 30,
  # as ClusterFuzz does while fuzzing: detection is unchanged, the targets run 1.2-1.5 times as
  # many inputs per CPU second (measured on api_json_fuzzer and http_fuzzer), and a crash's
  # full allocation stack comes from running the target on its artifact (docs/reliability-fuzz.md).
  cpu=$({
    TIMEFORMAT='%U %S'
    time TMPDIR=${FUZZ_TMPDIR:-/dev/shm} \
      ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1:malloc_context_size=2 \
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      "$build/tests/fuzz/$t" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$artifacts/" "${dict[@]}" "$@" "$work" "$root/tests/fuzz/corpus/$t" \
      >"$log" 2>&1 || echo "rc=$?" >"$log.rc"
  } 2>&1)
  end=$(date +%s.%N)
  if [[ -f $log.rc ]]; then
    rc=$(sed 's/rc=//' "$log.rc")
    rm -f "$log.rc"
  fi
  local execs corpus crashes status
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  corpus=$(find "$work" "$root/tests/fuzz/corpus/$t" -type f | wc -l)
  crashes=$(find "$artifacts" -type f -newer "$log.start" 2>/dev/null | wc -l)
  status=ok
  if ((rc != 0)); then
    status="FAILED (exit $rc, $log)"
    failed=1
  fi
  printf '%-24s %12s %8.0f %8.0f %10.0f %8s %8s  %s\n' "$t" "${execs:-0}" \
    "$(awk "BEGIN { print $end - $start }")" "$(echo "$cpu" | awk '{ print $1 + $2 }')" \
    "$(echo "$cpu ${execs:-0}" | awk '{ print ($1 + $2 > 0) ? $3 / ($1 + $2) : 0 }')" \
    "$crashes" "$corpus" "$status" | tee -a "$build/summary.txt"
}

run_all() {
  local selected=("${targets[@]}")
  if [[ -n ${only:-} ]]; then selected=("$only"); fi
  build_fuzzers
  mkdir -p "$build/logs"
  printf '%-24s %12s %8s %8s %10s %8s %8s  %s\n' target execs seconds cpu-s execs/cpu-s crashes \
    corpus status |
    tee "$build/summary.txt"
  failed=0
  for t in "${selected[@]}"; do
    touch "$build/logs/$t.log.start"
    run_target "$t" "$@"
  done
  if ((failed)); then
    echo "fuzz: a target failed; its log and crashing input are named above" >&2
    exit 1
  fi
}

case "${1:-}" in
  --smoke)
    run_all -max_total_time="$smoke_seconds"
    ;;
  --long)
    [[ $# -ge 2 ]] || usage
    only=${3:-}
    run_all -runs="$2"
    ;;
  --time)
    [[ $# -ge 2 ]] || usage
    only=${3:-}
    run_all -max_total_time="$2"
    ;;
  --seeds)
    build_fuzzers
    "$build/tests/fuzz/fuzz_seeds" "$root/tests/fuzz/corpus"
    ;;
  --build)
    build_fuzzers
    ;;
  *)
    usage
    ;;
esac
