#!/usr/bin/env bash
# Installs, by exact Debian 12 package name, whatever phivault needs that is missing.
# Safe to run again: it installs nothing when everything is present.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config ccache git curl ca-certificates
  libsodium-dev librocksdb-dev libpoco-dev libspdlog-dev libgtest-dev libgmock-dev
  libbenchmark-dev nlohmann-json3-dev libcli11-dev libtomlplusplus-dev
  systemd
)
# Extra packages for the test suite only (passed with --test).
test_packages=(clang-format)

if [[ "${1:-}" == "--test" ]]; then
  packages+=("${test_packages[@]}")
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
