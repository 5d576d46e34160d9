#!/usr/bin/env bash
# Installs the Debian 12 packages OpenMTE needs to build, test and run its demo.
#   install-deps.sh          build
#   install-deps.sh --test   build, the test suite (which includes the fuzzing corpora's replay)
#   install-deps.sh --fuzz   build and the libFuzzer targets
#   install-deps.sh --bench  build and the benchmarks (make bench, make bench-instructions)
# Idempotent: does nothing when every package is already installed. Needs root (or sudo).
set -euo pipefail

build_pkgs=(g++ cmake ninja-build make pkg-config
  libssl-dev openssl libboost1.81-dev libexpected-dev nlohmann-json3-dev
  libsqlite3-dev sqlite3 libpq-dev libpqxx-dev libspdlog-dev libfmt-dev libcli11-dev
  libargon2-dev libgtest-dev libgmock-dev libbenchmark-dev
  libqrencode-dev libzbar-dev libpng-dev libjpeg62-turbo-dev)
# nginx with its stream module is the plain TCP load balancer of the scale-out test (the test
# starts its own instance on loopback; the packaged service is stopped and disabled below).
# Independent QR tools (qrencode, zbarimg, netpbm, cjpeg, rsvg-convert) for the QR tests; the
# browser tests: Debian's Chromium driven by playwright-core (from npm, below), and tesseract to
# read the screenshots back; oathtool (RFC 4226/6238) for the second-factor tests; the PostgreSQL
# 15 server that tests/testlib/with_postgres.sh starts for the store's PostgreSQL tests (the
# versioned package: the `postgresql` metapackage would also pull in postgresql-contrib).
test_pkgs=(gnutls-bin curl procps python3 jq postgresql-15
  qrencode zbar-tools netpbm libjpeg-turbo-progs librsvg2-bin file
  chromium tesseract-ocr tesseract-ocr-eng oathtool
  nginx libnginx-mod-stream)

# The libFuzzer targets (docs/fuzzing.md): clang and its runtimes (libFuzzer, ASan, UBSan), which
# clang only recommends.
fuzz_pkgs=(clang libclang-rt-14-dev)

# The benchmarks: valgrind's callgrind counts instructions (make bench-instructions); python3 and
# openssl drive and prepare the loads.
bench_pkgs=(valgrind python3 procps util-linux)

want=("${build_pkgs[@]}")
if [[ "${1:-}" == "--test" || "${1:-}" == "--fuzz" ]]; then
  want+=("${fuzz_pkgs[@]}")
fi
if [[ "${1:-}" == "--bench" ]]; then
  want+=("${bench_pkgs[@]}")
fi
if [[ "${1:-}" == "--test" ]]; then
  want+=("${test_pkgs[@]}")
  # Node.js 20 or later comes with the machine; Debian's own is only a fallback.
  command -v npm >/dev/null || want+=(nodejs npm)
fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "install-deps: installing ${missing[*]}" >&2
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Packages that start a system service (nginx on port 80): the tests start their own.
  for service in nginx; do
    if [[ " ${missing[*]} " == *" $service "* ]] && command -v systemctl >/dev/null; then
      "${sudo_cmd[@]}" systemctl disable --now "$service" >/dev/null 2>&1 || true
    fi
  done
fi

# The Node test packages, pinned by tests/browser/package-lock.json: playwright-core (it uses
# /usr/bin/chromium; it never downloads a browser of its own), @apidevtools/swagger-parser and ajv
# (the OpenAPI document's test).
if [[ "${1:-}" == "--test" ]]; then
  browser_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
  node_missing=0
  for pkg in playwright-core @apidevtools/swagger-parser ajv; do
    [[ -f "$browser_dir/node_modules/$pkg/package.json" ]] || node_missing=1
  done
  if [[ $node_missing -eq 1 ]]; then
    echo "install-deps: npm ci in tests/browser" >&2
    (cd "$browser_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
fi
