#!/usr/bin/env bash
# phivault side by side with what a practice would otherwise use (docs/benchmarks.md, "Side by
# side"), in ONE run: the same workloads and client counts against
#   phivault   a temporary vault (`phivault init`) served by phivaultd, over its socket
#   raw        RocksDB in-process + XChaCha20-Poly1305, synced puts (the ceiling)
#   pg-aes     PostgreSQL 15 + pgcrypto encrypt(..., 'aes') + an audit row per operation
#   pg-pgp     PostgreSQL 15 + pgcrypto pgp_sym_encrypt_bytea + an audit row per operation
#   sqlcipher  SQLCipher, one connection, audit table, synchronous=FULL
# PostgreSQL runs from a temporary cluster listening only on a Unix socket; everything is stopped
# and removed at the end. Writes OUT/results.json (every report), OUT/results.md (the table at
# --table-clients with the ratios phivault / each alternative) and OUT/throughput-vs-clients.png.
#
# Usage: scripts/bench-compare.sh [--smoke] [--out DIR] [--duration S] [--clients "1 4 16 64"]
#          [--table-clients N] [--workloads "create read"] [--size 1KiB] [--backends "..."]
#          [--no-install] [--no-build]
#   --smoke        seconds in all: 1 s per run, 2 clients, 50 warm-up records (for CI)
#   --no-install   do not install missing Debian packages (fail instead)
#   --no-build     use the binaries already in the build directory (PHIVAULT_BUILD_DIR, default
#                  build/release)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${PHIVAULT_BUILD_DIR:-$root/build/release}
out=$root/build/bench-compare
duration=10
clients="1 4 16 64"
table_clients=16
workloads="create read"
size=1KiB
backends="phivault raw pg-aes pg-pgp sqlcipher"
warmup=  # records created before each read run (empty: the load generator's default)
install=1
do_build=1
smoke=0

die() {
  echo "bench-compare: $*" >&2
  exit 1
}

while (($# > 0)); do
  case $1 in
    --smoke) smoke=1 ;;
    --out) out=$2; shift ;;
    --duration) duration=$2; shift ;;
    --clients) clients=$2; shift ;;
    --table-clients) table_clients=$2; shift ;;
    --workloads) workloads=$2; shift ;;
    --size) size=$2; shift ;;
    --backends) backends=$2; shift ;;
    --no-install) install=0 ;;
    --no-build) do_build=0 ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "bench-compare: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if ((smoke)); then
  duration=1
  clients=2
  table_clients=2
  warmup=50
fi
[[ " $clients " == *" $table_clients "* ]] || die "--table-clients $table_clients is not one of --clients \"$clients\""

# ---- packages -------------------------------------------------------------------------------
pg_bin=/usr/lib/postgresql/15/bin
packages=(postgresql-15 libpq-dev libsqlcipher-dev gnuplot-nox jq)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} > 0)); then
  ((install)) || die "missing Debian packages: ${missing[*]} (run without --no-install)"
  echo "== installing ${missing[*]}" >&2
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ---- build ----------------------------------------------------------------------------------
if ((do_build)); then
  echo "== building phivaultd, phivault and phivault_compare_bench in $build" >&2
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPHIVAULT_BUILD_BENCHMARKS=ON >/dev/null
  cmake --build "$build" -j "${PHIVAULT_BUILD_JOBS:-2}" --target phivaultd phivault phivault_compare_bench
fi
phivaultd=$build/daemon/phivaultd
cli=$build/tools/phivault
compare=$build/tools/bench/compare/phivault_compare_bench
for b in "$phivaultd" "$cli" "$compare"; do [[ -x $b ]] || die "$b is not built"; done

# ---- a temporary PostgreSQL cluster and a temporary vault --------------------------------------
# Socket paths must fit in sun_path (108 bytes): a short directory under /tmp.
tmp=$(mktemp -d /tmp/pvbench.XXXXXX)
pg_pid_started=0
daemon_pid=
cleanup() {
  set +e
  if [[ -n $daemon_pid ]]; then
    kill "$daemon_pid" 2>/dev/null
    wait "$daemon_pid" 2>/dev/null
  fi
  if ((pg_pid_started)); then as_pg "$pg_bin/pg_ctl" -D "$tmp/pg" -m fast -w stop >/dev/null 2>&1; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# PostgreSQL refuses to run as root: run it as nobody then, in directories nobody owns.
pg_user_os=$(id -un)
if [[ $(id -u) -eq 0 ]]; then pg_user_os=nobody; fi
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u "$pg_user_os" -- "$@"; else "$@"; fi
}
mkdir -p "$tmp/pg" "$tmp/pgsock" "$tmp/pglog" "$tmp/raw" "$tmp/sqlcipher"
chmod 0711 "$tmp"
if [[ $(id -u) -eq 0 ]]; then chown "$pg_user_os" "$tmp/pg" "$tmp/pgsock" "$tmp/pglog"; fi
if [[ $backends == *pg-* ]]; then
  echo "== starting PostgreSQL 15 on $tmp/pgsock" >&2
  as_pg "$pg_bin/initdb" -D "$tmp/pg" -U bench --auth=trust -E UTF8 >"$tmp/initdb.log" 2>&1 ||
    { cat "$tmp/initdb.log" >&2; die "initdb failed"; }
  # Durable commits (fsync, synchronous_commit on, full_page_writes: the defaults, spelled out),
  # no TCP listener, room for 64 clients plus the probe.
  as_pg "$pg_bin/pg_ctl" -D "$tmp/pg" -l "$tmp/pglog/pg.log" -w \
    -o "-c listen_addresses='' -c unix_socket_directories=$tmp/pgsock -c port=5432 -c max_connections=200 -c fsync=on -c synchronous_commit=on -c full_page_writes=on" \
    start >/dev/null || { cat "$tmp/pglog/pg.log" >&2; die "PostgreSQL did not start"; }
  pg_pid_started=1
  as_pg "$pg_bin/createdb" -h "$tmp/pgsock" -U bench bench
fi

if [[ $backends == *phivault* ]]; then
  echo "== starting phivaultd (a temporary vault in $tmp/vault)" >&2
  "$cli" init --dir "$tmp/vault" >/dev/null
  # 64 clients plus the probe's status requests need more than the default 64 connections.
  sed -i 's/^\[limits\]$/[limits]\nmax_connections = 256/' "$tmp/vault/phivault.toml"
  "$phivaultd" --config "$tmp/vault/phivault.toml" >"$tmp/phivaultd.log" 2>&1 &
  daemon_pid=$!
  export PHIVAULT_SOCKET=$tmp/vault/phivault.sock
  PHIVAULT_TOKEN=$(cat "$tmp/vault/dev-token")
  export PHIVAULT_TOKEN
  for _ in $(seq 100); do
    "$cli" --as dr.bench --role physician status >/dev/null 2>&1 && break
    kill -0 "$daemon_pid" 2>/dev/null || { cat "$tmp/phivaultd.log" >&2; die "phivaultd exited"; }
    sleep 0.1
  done
  "$cli" --as dr.bench --role physician status >/dev/null || die "phivaultd does not answer"
fi

# ---- the runs -------------------------------------------------------------------------------
mkdir -p "$out"
runs=$tmp/runs
mkdir -p "$runs"
run_one() {  # backend workload clients
  local backend=$1 workload=$2 n=$3 file
  file=$runs/$backend-$workload-$n.json
  local common=(--workload "$workload" --size "$size" --clients "$n" --duration "$duration")
  [[ -z $warmup ]] || common+=(--warmup-records "$warmup")
  echo "== $backend $workload $size, $n clients, ${duration}s" >&2
  case $backend in
    phivault)
      "$cli" --as dr.bench --role physician --purpose TREAT --json bench "${common[@]}" \
        --data-dir "$tmp/vault/data" --daemon-pid "$daemon_pid" >"$file" ;;
    raw | sqlcipher)
      rm -rf "${tmp:?}/$backend" && mkdir -p "$tmp/$backend"
      "$compare" --backend "$backend" --json "${common[@]}" --data-dir "$tmp/$backend" >"$file" ;;
    pg-*)
      "$compare" --backend "$backend" --json "${common[@]}" --pg-host "$tmp/pgsock" \
        --pg-user bench --pg-db bench --pg-data "$tmp/pg" >"$file" ;;
  esac
}
failed=0
for workload in $workloads; do
  for n in $clients; do
    for backend in $backends; do
      # A run with failed operations still reports them; a run with no report is dropped.
      run_one "$backend" "$workload" "$n" || failed=$((failed + 1))
      f=$runs/$backend-$workload-$n.json
      jq -e .ops "$f" >/dev/null 2>&1 || { echo "bench-compare: $backend $workload $n clients gave no report" >&2; rm -f "$f"; }
    done
  done
done

jq -s --arg size "$size" --argjson table_clients "$table_clients" \
  '{size: $size, table_clients: $table_clients, machine: {nproc: '"$(nproc)"', kernel: "'"$(uname -r)"'"}, runs: .}' \
  "$runs"/*.json >"$out/results.json"

# ---- the table with ratios ------------------------------------------------------------------
ops() {  # backend workload clients -> ops/s (integer)
  jq -r --arg b "$1" --arg w "$2" --argjson c "$3" \
    '.runs[] | select(.backend == $b and .workload == $w and .clients == $c) | .ops_per_s | floor' \
    "$out/results.json"
}
field() {  # backend workload clients jq-path -> value
  jq -r --arg b "$1" --arg w "$2" --argjson c "$3" \
    ".runs[] | select(.backend == \$b and .workload == \$w and .clients == \$c) | $4" "$out/results.json"
}
{
  echo "| $table_clients clients, $size | $(for w in $workloads; do printf '%s/s | p99 µs | CPU µs/op | syncs/op | ' "$w"; done)"
  echo "|---|$(for _ in $workloads; do printf -- '---|---|---|---|'; done)"
  for backend in $backends; do
    printf '| %s |' "$backend"
    for w in $workloads; do
      printf ' %s | %s | %s | %s |' "$(ops "$backend" "$w" "$table_clients")" \
        "$(field "$backend" "$w" "$table_clients" '.latency_us.p99 | floor')" \
        "$(field "$backend" "$w" "$table_clients" 'if .server.cpu_us_per_op == null then "n/a" else (.server.cpu_us_per_op | floor) end')" \
        "$(field "$backend" "$w" "$table_clients" 'if .server.syncs_per_op == null then "n/a" else (.server.syncs_per_op * 1000 | floor) / 1000 end')"
    done
    echo
  done
  if [[ $backends == *phivault* ]]; then
    echo
    echo "| phivault / alternative | $(for w in $workloads; do printf '%s | ' "$w"; done)"
    echo "|---|$(for _ in $workloads; do printf -- '---|'; done)"
    for backend in $backends; do
      [[ $backend == phivault ]] && continue
      printf '| phivault / %s |' "$backend"
      for w in $workloads; do
        printf ' %s |' "$(jq -rn --argjson a "$(ops phivault "$w" "$table_clients")" \
          --argjson b "$(ops "$backend" "$w" "$table_clients")" \
          'if $b == 0 then "n/a" else ($a / $b * 100 | round) / 100 end')"
      done
      echo
    done
  fi
} >"$out/results.md"

# ---- the chart: throughput against client count --------------------------------------------
plot=$tmp/plot.gp
{
  echo "set terminal pngcairo size 1200,500 font ',10'"
  echo "set output '$out/throughput-vs-clients.png'"
  echo "set multiplot layout 1,$(wc -w <<<"$workloads") title 'ops/s against concurrent clients, $size records (scripts/bench-compare.sh)'"
  echo "set logscale x 2; set xlabel 'clients'; set ylabel 'ops/s'; set key top left; set grid"
  echo "set xtics ($(tr ' ' ',' <<<"$clients" | sed 's/,$//'))"
  for w in $workloads; do
    data=$tmp/$w.dat
    for n in $clients; do
      printf '%s' "$n"
      for backend in $backends; do printf ' %s' "$(ops "$backend" "$w" "$n")"; done
      echo
    done >"$data"
    echo "set title '$w'"
    col=2
    printf 'plot '
    for backend in $backends; do
      ((col > 2)) && printf ', '
      printf "'%s' using 1:%d with linespoints lw 2 title '%s'" "$data" "$col" "$backend"
      col=$((col + 1))
    done
    echo
  done
  echo "unset multiplot"
} >"$plot"
gnuplot "$plot"

cat "$out/results.md"
echo "bench-compare: results in $out (results.json, results.md, throughput-vs-clients.png)" >&2
errors=$(jq '[.runs[].errors] | add // 0' "$out/results.json")
((errors == 0 && failed == 0)) || die "$failed runs failed, $errors operations failed (see .first_error in $out/results.json)"
