#!/usr/bin/env bash
# The first command for a newcomer: installs what is missing, builds phivaultd and the phivault
# CLI into build/release, creates a development vault in var/dev (once; its application token
# goes to var/dev/dev-token, mode 0600), prints how to store and read a record, then runs
# phivaultd in the foreground (Ctrl-C stops it).
#
# The vault in var/dev is for synthetic data only: its master key is a plain file next to the
# data, and its application and operator may do everything. A real installation uses the
# systemd units (docs/operations.md).
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

# scripts/test.sh builds in build/release too, with the same build type: one build type per
# folder, so that the test run reuses everything built here instead of compiling it again.
echo "== building phivaultd and phivault in $build"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target phivaultd phivault

# `phivault init` writes the application token only to $token_file (mode 0600), never to its
# output, which may be going to a log.
if [[ ! -f "$config" ]]; then
  echo "== creating a development vault in $vault (synthetic data only)"
  mkdir -p "$root/var"
  "$cli" init --dir "$vault"
elif [[ ! -f "$token_file" ]]; then
  echo "dev-vault: $token_file is missing. For a new token (the key and the data are kept):" >&2
  echo "  $cli init --dir $vault --force-config" >&2
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

Your login is also an operator of this vault, in every role and with no token (--role picks
the role), so the guides in docs/ work as written; for the compliance officer's guide
(docs/compliance.md), in a shell without PHIVAULT_TOKEN:

  export PHIVAULT_SOCKET=$socket PHIVAULT_ROLE=compliance_officer PHIVAULT_PURPOSE=HOPERAT
  $cli status

== running phivaultd --config $config (Ctrl-C stops it)
GUIDE

exec "$phivaultd" --config "$config"
