#!/usr/bin/env bash
# Soak test (issue 12, a long mode: not run in CI). One temporary vault served by the real
# phivaultd; `phivault bench --workload mixed` (90% reads, 10% creates, every request audited and
# durable) runs back to back in one-minute rounds for --minutes; after each round the script
# records the round's throughput and p99 latency and the daemon's RSS, open file descriptors and
# threads. Descriptors of database files (SST tables, blob files, logs under the data directory)
# are counted apart: RocksDB keeps every table file open, so their number follows the amount of
# data stored, which grows all through a soak by design. At the end it fits a line to RSS and to
# the other descriptors (sockets, pipes, epoll, log files) over the second half of the run and
# fails if either keeps growing; it writes the samples (TSV, JSON) and a chart (PNG, gnuplot).
#
#   scripts/soak.sh [--minutes 60] [--clients 16] [--size 1KiB] [--round 60] [--out DIR]
#                   [--build DIR] [--no-build]
#
# Defaults: 60 one-minute rounds, 16 clients, 1 KiB records, results in docs/ as
# soak-<date>.{tsv,json,png}. A round's bench starts new connections; that reconnect is part of
# the load (real clients come and go).
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=60 clients=16 size=1KiB round=60 out=docs build=build/release do_build=1
while (($#)); do
  case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --round) round=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    -h | --help) sed -n 2,15p "$0"; exit 0 ;;
    *) echo "soak.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
die() { echo "soak.sh: $*" >&2; exit 1; }
[[ $minutes =~ ^[0-9]+$ && $minutes -ge 2 ]] || die "--minutes must be a whole number >= 2"
[[ $round =~ ^[0-9]+$ && $round -ge 5 ]] || die "--round must be a whole number of seconds >= 5"
command -v gnuplot >/dev/null || die "gnuplot is missing (scripts/install-deps.sh --test installs gnuplot-nox)"
command -v jq >/dev/null || die "jq is missing (scripts/install-deps.sh --test installs it)"
command -v curl >/dev/null || die "curl is missing (scripts/install-deps.sh installs it)"

if ((do_build)); then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" -j "$(nproc)" --target phivaultd phivault
fi
phivaultd=$build/daemon/phivaultd cli=$build/tools/phivault
for b in "$phivaultd" "$cli"; do [[ -x $b ]] || die "$b is not built"; done

tmp=$(mktemp -d /tmp/phivault-soak.XXXXXX)
daemon_pid=
cleanup() {
  if [[ -n $daemon_pid ]]; then kill "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

"$cli" init --dir "$tmp/vault" >/dev/null
"$phivaultd" --config "$tmp/vault/phivault.toml" >"$tmp/phivaultd.log" 2>&1 &
daemon_pid=$!
export PHIVAULT_SOCKET=$tmp/vault/phivault.sock
PHIVAULT_TOKEN=$(cat "$tmp/vault/dev-token")
export PHIVAULT_TOKEN
for _ in $(seq 100); do
  "$cli" --as dr.soak --role physician status >/dev/null 2>&1 && break
  kill -0 "$daemon_pid" 2>/dev/null || { cat "$tmp/phivaultd.log" >&2; die "phivaultd exited"; }
  sleep 0.1
done

proc_status() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$daemon_pid/status"; }
# Open descriptors, all and those of database files, counted from one listing: the daemon opens and
# closes files while it is read (a descriptor gone between the listing and its readlink is skipped).
count_fds() {
  local all=0 db=0 fd target
  for fd in "/proc/$daemon_pid/fd/"*; do
    target=$(readlink "$fd" 2>/dev/null) || continue
    all=$((all + 1))
    [[ $target == "$tmp/vault/data/"* ]] && db=$((db + 1))
  done
  echo "$all $db"
}
stamp=$(date -u +%F)
mkdir -p "$out"
tsv=$out/soak-$stamp.tsv
printf 'minute\tops_per_s\tp99_us\terrors\trss_kib\tfds\tthreads\tdb_files\theap_in_use_kib\theap_free_kib\n' >"$tsv"
echo "== soak: $minutes rounds of ${round}s, $clients clients, $size, daemon pid $daemon_pid" >&2
errors_total=0
for ((m = 1; m <= minutes; m++)); do
  "$cli" --as dr.soak --role physician --purpose TREAT --json bench --workload mixed \
    --size "$size" --clients "$clients" --duration "$round" --daemon-pid "$daemon_pid" \
    >"$tmp/round.json" || die "round $m: phivault bench failed: $(cat "$tmp/round.json")"
  kill -0 "$daemon_pid" 2>/dev/null || die "phivaultd died in round $m"
  ops=$(jq -r '.ops_per_s | floor' "$tmp/round.json")
  p99=$(jq -r '.latency_us.p99 | floor' "$tmp/round.json")
  errs=$(jq -r '.errors' "$tmp/round.json")
  errors_total=$((errors_total + errs))
  rss=$(proc_status VmRSS) threads=$(proc_status Threads)
  read -r all_fds db_files < <(count_fds)
  fds=$((all_fds - db_files))
  # What the allocator holds: in use by the daemon, and freed but kept (GET /v1/status's memory
  # object, which `phivault status` does not print).
  curl -sf --unix-socket "$PHIVAULT_SOCKET" -H "Authorization: Bearer $PHIVAULT_TOKEN" \
    -H 'X-Phivault-User: dr.soak' -H 'X-Phivault-Role: physician' -H 'X-Phivault-Purpose: TREAT' \
    http://localhost/v1/status >"$tmp/status.json" || die "round $m: GET /v1/status failed"
  heap_used=$(jq -r '(.memory.heap_in_use_bytes // 0) / 1024 | floor' "$tmp/status.json")
  heap_free=$(jq -r '(.memory.heap_free_bytes // 0) / 1024 | floor' "$tmp/status.json")
  printf '%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$m" "$ops" "$p99" "$errs" "$rss" "$fds" "$threads" \
    "$db_files" "$heap_used" "$heap_free" | tee -a "$tsv" >&2
done

# Growth over the second half (the first half includes the memtables, caches and connection
# pools filling up): a least-squares slope per minute, and the verdict against a bound.
verdict=$(awk -F'\t' -v half=$((minutes / 2)) '
  NR > 1 && $1 > half { n++; x += $1; xx += $1 * $1; r += $5; xr += $1 * $5; f += $6; xf += $1 * $6 }
  END {
    d = n * xx - x * x
    rs = d ? (n * xr - x * r) / d : 0; fs = d ? (n * xf - x * f) / d : 0
    mean_rss = r / n
    # Bounds: RSS may drift by at most 0.2% of its mean per minute (12% per hour), fds by at
    # most 0.05 per minute (3 per hour).
    ok = (rs <= 0.002 * mean_rss && fs <= 0.05)
    printf "%s rss_slope_kib_per_min=%.1f fd_slope_per_min=%.3f mean_rss_kib=%.0f\n", ok ? "ok" : "growing", rs, fs, mean_rss
  }' "$tsv")
echo "== $verdict; errors $errors_total" >&2

jq -R -s --arg verdict "$verdict" --argjson errors "$errors_total" \
  --arg clients "$clients" --arg size "$size" --arg round "$round" '
  split("\n") | map(select(length > 0) | split("\t")) | .[1:]
  | map({minute: (.[0] | tonumber), ops_per_s: (.[1] | tonumber), p99_us: (.[2] | tonumber),
         errors: (.[3] | tonumber), rss_kib: (.[4] | tonumber), fds: (.[5] | tonumber),
         threads: (.[6] | tonumber), db_files: (.[7] | tonumber),
         heap_in_use_kib: (.[8] | tonumber), heap_free_kib: (.[9] | tonumber)})
  | {clients: ($clients | tonumber), size: $size, round_s: ($round | tonumber),
     errors: $errors, verdict: $verdict, samples: .}' "$tsv" >"$out/soak-$stamp.json"

gnuplot <<EOF
set terminal png size 1000,700
set output "$out/soak-$stamp.png"
set multiplot layout 3,1 title "phivault soak, $stamp: mixed 90/10, $clients clients, $size, ${round}s rounds"
set xlabel "minute"
set ylabel "RSS (MiB)"
plot "$tsv" using 1:(\$5/1024) skip 1 with linespoints title "daemon RSS", "" using 1:(\$9/1024) skip 1 with linespoints title "heap in use", "" using 1:(\$10/1024) skip 1 with linespoints title "heap freed, held"
set ylabel "count"
plot "$tsv" using 1:6 skip 1 with linespoints title "open fds (not database files)", "" using 1:7 skip 1 with linespoints title "threads", "" using 1:8 skip 1 with linespoints title "open database files"
set ylabel "p99 (ms)"
set y2label "ops/s"
set y2tics
plot "$tsv" using 1:(\$3/1000) skip 1 with linespoints title "p99 latency", "" using 1:2 skip 1 axes x1y2 with linespoints title "throughput"
unset multiplot
EOF
echo "== wrote $tsv, $out/soak-$stamp.json, $out/soak-$stamp.png" >&2
[[ $verdict == ok* && $errors_total -eq 0 ]] || die "soak failed: $verdict, $errors_total errors"
