#!/usr/bin/env bash
# Mechanical checks of the layering and secret-handling rules (docs/conventions.md §1).
# Exits non-zero and names each violation.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
check() {  # check "rule" <grep -rnE args...>
  local rule=$1
  shift
  local hits
  hits=$(grep -rnE "$@" 2>/dev/null || true)
  if [[ -n "$hits" ]]; then
    echo "lint: $rule:"
    echo "$hits" | sed 's/^/  /'
    status=1
  fi
}
cores=(src/base src/crypto src/proto src/store src/mte src/mef src/maf src/portal src/client src/enrolee)
check "Asio/Beast sockets only in src/net and apps" '#include <boost/asio' "${cores[@]}"
check "Beast only in the HTTP codec" '#include <boost/beast' --exclude=http.cc "${cores[@]}"
check "socket headers stay out of the sans-IO cores" '#include <(sys/socket|netinet/|arpa/inet|netdb)' \
  src/base src/crypto src/proto src/store src/mte src/mef src/maf src/portal
check "sqlite3.h only in the store" '#include <sqlite3.h>' --exclude-dir=store src apps
check "OpenSSL *_free only in crypto/ossl.h" '\b[A-Z0-9_]+_free\(' --include='*.cc' --include='*.h' \
  --exclude=ossl.h src apps
check "no SSL_set_fd (sans-IO TLS)" 'SSL_set_fd' src apps
check "no memcmp on secrets (use ConstantTimeEqual)" '\bmemcmp\(' src
check "no std::cout/printf in libraries" '(std::cout|std::cerr|\bprintf\()' "${cores[@]}" src/net
check "no exposing secrets in log calls" 'spdlog::[a-z]+\(.*Expose\(' src apps
if [[ $status -eq 0 ]]; then echo "lint: ok"; fi
exit $status
