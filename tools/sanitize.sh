#!/usr/bin/env bash
# The test suite again under the compiler's sanitizers (called by `make test`):
#   tools/sanitize.sh asan   every test, built with AddressSanitizer (and LeakSanitizer) and
#                            UndefinedBehaviorSanitizer, in build-asan/
#   tools/sanitize.sh tsan   the server-level tests (the net/ unit tests and the integration
#                            tests named in TSAN_TESTS below) with ThreadSanitizer, in build-tsan/
# Each builds with -O1 and line tables only, runs ctest, and fails when a test failed or when any
# process, the servers the integration tests start in the background included, wrote a sanitizer
# report: every report goes to a file under <build>/sanitizer-reports/, so none is lost in a log.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: tools/sanitize.sh asan|tsan}
jobs=${JOBS:-2}

# Server-level tests for TSan: the listeners' I/O threads, the worker pool, the outbox worker and
# the certificate status checks, under concurrent clients, restarts and floods.
TSAN_TESTS='(^|/)(HttpFetch|Outbox|FlowB|FlowBStore|Mef|Maf|RevocationChecker|ServerConnection)Test\.|^integration\.(flow_b|token_rules|connection_flood|crash_safety|lockout|enrolment_indications|interop_openssl|request_deadline)_test$'

case $mode in
  asan) sanitize=address,undefined build=build-asan select=() ;;
  tsan) sanitize=thread build=build-tsan select=(-R "$TSAN_TESTS") ;;
  *) echo "tools/sanitize.sh: unknown mode '$mode' (asan or tsan)" >&2; exit 2 ;;
esac

start=$(date +%s)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DMTE_SANITIZE="$sanitize" -DMTE_WERROR=ON >/dev/null
cmake --build "$build" -j"$jobs"
built=$(date +%s)

reports="$PWD/$build/sanitizer-reports"
rm -rf "$reports"
mkdir -p "$reports"
export ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1:strict_string_checks=1"
export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=1"
export TSAN_OPTIONS="log_path=$reports/tsan:second_deadlock_stack=1"
rc=0
ctest --test-dir "$build" --output-on-failure -j"$jobs" --timeout 900 -E '^lint\.' "${select[@]}" || rc=$?

found=$(find "$reports" -type f | sort)
if [[ -n "$found" ]]; then
  echo "sanitize $mode: sanitizer reports:" >&2
  for f in $found; do echo "--- $f" >&2; head -n 60 "$f" >&2; done
  rc=1
fi
echo "sanitize $mode: build $((built - start)) s, tests $(($(date +%s) - built)) s, $(
  [[ $rc == 0 ]] && echo clean || echo FAILED)"
exit "$rc"
