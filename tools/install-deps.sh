#!/usr/bin/env bash
# Installs the Debian 12 packages OpenMTE needs to build, test and run its demo.
# Idempotent: does nothing when every package is already installed. Needs root (or sudo).
set -euo pipefail

build_pkgs=(g++ cmake ninja-build make pkg-config
  libssl-dev openssl libboost1.81-dev libexpected-dev nlohmann-json3-dev
  libsqlite3-dev sqlite3 libspdlog-dev libfmt-dev libcli11-dev libargon2-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libqrencode-dev libzbar-dev libpng-dev libjpeg62-turbo-dev)
test_pkgs=(gnutls-bin curl procps python3
  qrencode zbar-tools netpbm libjpeg-turbo-progs librsvg2-bin file)

want=("${build_pkgs[@]}")
if [[ "${1:-}" == "--test" ]]; then want+=("${test_pkgs[@]}"); fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
