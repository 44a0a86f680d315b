#!/usr/bin/env bash
# The first command for a newcomer: installs what is missing, builds phivaultd and the phivault
# CLI into build/release, creates a development vault in var/dev (once), prints how to store and
# read a record, then runs phivaultd in the foreground (Ctrl-C stops it).
#
# The vault in var/dev is for synthetic data only: its master key is a plain file next to the
# data. A real installation uses the systemd units (docs/operations.md).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$root/build/release"
vault="$root/var/dev"
config="$vault/phivault.toml"
token_file="$vault/dev-token"
socket="$vault/phivault.sock"
phivaultd="$build/daemon/phivaultd"
cli="$build/tools/phivault"

"$root/scripts/install-deps.sh"

# scripts/test.sh builds in build/release too: keep whatever build type is already configured
# there, so that neither script recompiles everything the other just built.
build_type=()
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  build_type=(-DCMAKE_BUILD_TYPE=Release)
fi
echo "== building phivaultd and phivault in $build"
cmake -S "$root" -B "$build" -G Ninja "${build_type[@]}" >/dev/null
cmake --build "$build" --target phivaultd phivault

if [[ ! -f "$config" ]]; then
  echo "== creating a development vault in $vault"
  mkdir -p "$root/var"
  init_output=$("$cli" init --dir "$vault")
  printf '%s\n' "$init_output"
  token=$(grep -o 'pvt_[A-Za-z0-9_-]*' <<<"$init_output" | head -n 1)
  if [[ -z "$token" ]]; then
    echo "dev-vault: 'phivault init' printed no application token" >&2
    exit 1
  fi
  (umask 077 && printf '%s\n' "$token" >"$token_file")
  chmod 0600 "$token_file"
  echo "(The token is saved in $token_file, mode 0600.)"
elif [[ ! -f "$token_file" ]]; then
  echo "dev-vault: $token_file is missing; the token was shown only once. For a new one:" >&2
  echo "  rm $config && $0" >&2
  exit 1
fi

today=$(date +%F)
cat <<GUIDE

== how to store and read a record (synthetic data only)
In a second terminal:

  export PHIVAULT_SOCKET=$socket
  export PHIVAULT_TOKEN=\$(cat $token_file)

With the phivault CLI (put prints the new record's id):

  id=\$(echo 'BP 120/80, synthetic patient' | $cli --as dr.synthetic --role physician --purpose TREAT put --patient synthetic-0001 --category clinical_note --type text/plain --encounter-date $today --author 'Dr. Synthetic'); echo "\$id"
  $cli --as dr.synthetic --role physician --purpose TREAT get "\$id"
  $cli --as dr.synthetic --role physician --purpose TREAT ls --patient synthetic-0001
  $cli --as dr.synthetic --role physician status

With nothing but curl:

  resp=\$(curl -sS --unix-socket $socket http://localhost/v1/records -H "Authorization: Bearer \$PHIVAULT_TOKEN" -H 'X-Phivault-User: dr.synthetic' -H 'X-Phivault-Role: physician' -H 'X-Phivault-Purpose: TREAT' -H 'Content-Type: application/json' -d '{"patient_id":"synthetic-0001","category":"clinical_note","content_type":"text/plain","encounter_date":"$today","author":"Dr. Synthetic","content":"BP 120/80, synthetic patient"}'); echo "\$resp"
  id=\$(sed -n 's/.*"record_id": *"\\([^"]*\\)".*/\\1/p' <<<"\$resp")
  curl -sS --unix-socket $socket "http://localhost/v1/records/\$id" -H "Authorization: Bearer \$PHIVAULT_TOKEN" -H 'X-Phivault-User: dr.synthetic' -H 'X-Phivault-Role: physician' -H 'X-Phivault-Purpose: TREAT'; echo
  curl -sS --unix-socket $socket "http://localhost/v1/records/\$id/content" -H "Authorization: Bearer \$PHIVAULT_TOKEN" -H 'X-Phivault-User: dr.synthetic' -H 'X-Phivault-Role: physician' -H 'X-Phivault-Purpose: TREAT'; echo

(The first read returns metadata and content_base64 as JSON, the second only the content.)

Each put, get and ls leaves an entry in the audit log (status shows how many there are).

== running phivaultd --config $config (Ctrl-C stops it)
GUIDE

exec "$phivaultd" --config "$config"
