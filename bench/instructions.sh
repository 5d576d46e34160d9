#!/usr/bin/env bash
# make bench-instructions: instructions executed per nested handshake and per enrolment, counted by
# valgrind's callgrind (instruction counts repeat to within a few per mille on a noisy machine,
# unlike CPU time, so they judge a change):
#  (a) the server side of mte_bench_bare's in-process nested handshake (PPSK inner), counted only
#      inside its server-side functions (--toggle-collect);
#  (b) the whole `mte serve --roles mef` process serving Flow B enrolments (PPSK, durable
#      commits, Km delivered to the MAF through the outbox), one at a time.
# Both are measured as a difference of two runs, a short one and a long one, so that start-up,
# the first handshake's one-time work and shutdown cancel out:
#   per item = (Ir(long) - Ir(short)) / (N(long) - N(short)).
# The last line is `enrolment_vs_bare_instructions_ratio=R`, R = (a) / (b).
#
# usage: bench/instructions.sh BUILD_DIR
# environment: BENCH_INSTR_SHORT [10]  BENCH_INSTR_LONG [60]   enrolments (and handshakes) per run
#              BENCH_TMPDIR [/var/tmp]   KEEP_TMP [0]
set -euo pipefail

BUILD=$(cd "${1:?usage: instructions.sh BUILD_DIR}" && pwd)
MTE="$BUILD/bin/mte"
BARE="$BUILD/bench/mte_bench_bare"
FLOWB="$BUILD/bench/mte_bench_flowb"
for b in "$MTE" "$BARE" "$FLOWB"; do
  [[ -x "$b" ]] || { echo "instructions: $b is not built" >&2; exit 1; }
done
command -v valgrind >/dev/null || { echo "instructions: valgrind is not installed" >&2; exit 1; }
SHORT=${BENCH_INSTR_SHORT:-10}
LONG=${BENCH_INSTR_LONG:-60}
(( LONG > SHORT && SHORT >= 1 )) || { echo "instructions: need 1 <= SHORT < LONG" >&2; exit 1; }

T=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/mte-instr.XXXXXX")
SERVER_PIDS=()
cleanup() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${SERVER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ "${KEEP_TMP:-0}" != 1 ]]; then rm -rf "$T"; else echo "kept $T" >&2; fi
}
trap cleanup EXIT

# The total instruction count (Ir) of a callgrind output file.
total_ir() {
  local ir
  ir=$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$1" | head -n 1)
  [[ -n "$ir" ]] || ir=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$1" | head -n 1)
  [[ -n "$ir" ]] || { echo "instructions: no totals in $1" >&2; exit 1; }
  echo "$ir"
}

echo "== OpenMTE instruction counts (make bench-instructions): valgrind $(valgrind --version | sed 's/valgrind-//'), $(openssl version)"
echo
echo "== (a) bare nested handshake, server side only (mte_bench_bare, PPSK inner)"
for n in "$SHORT" "$LONG"; do
  valgrind --tool=callgrind --callgrind-out-file="$T/bare-$n.out" --collect-atstart=no \
    --toggle-collect='*ServerSideWork*' "$BARE" --reps 1 --handshakes "$n" --warmup 0 \
    >"$T/bare-$n.log" 2>&1 || { tail -n 20 "$T/bare-$n.log" >&2; exit 1; }
done
BARE_SHORT=$(total_ir "$T/bare-$SHORT.out")
BARE_LONG=$(total_ir "$T/bare-$LONG.out")
BARE_IR=$(( (BARE_LONG - BARE_SHORT) / (LONG - SHORT) ))
echo "  $SHORT+1 handshakes: $BARE_SHORT Ir; $LONG+1 handshakes: $BARE_LONG Ir"
echo "  server side: $BARE_IR instructions per nested handshake"

echo
echo "== (b) Flow B enrolments through mte serve --roles mef under callgrind (portal+MAF in" \
  "another process, not counted), one at a time"
BENCH_NAME=instructions
source "$(dirname "$0")/lib.sh"
START_WAIT_S=120
for n in "$SHORT" "$LONG"; do
  DATA="$T/mte-$n"
  "$MTE" init --data "$DATA" --mef-fqdn mef.bench.test --maf-fqdn maf.bench.test >/dev/null
  "$FLOWB" ports --data "$DATA"
  "$FLOWB" manifest --out "$T/manifest-$n.json" --count "$n"
  "$MTE" admin --data "$DATA" device import "$T/manifest-$n.json" >/dev/null
  PASSWORD="bench-$(openssl rand -hex 12)"
  printf '%s\n' "$PASSWORD" >"$T/password"
  chmod 600 "$T/password"
  "$MTE" admin --data "$DATA" stakeholder add bench --password-stdin <"$T/password" >/dev/null
  START_PREFIX=()
  start portal,maf "$T/portal-maf-$n.log"
  OTHER_PID=${SERVER_PIDS[-1]}
  START_PREFIX=(valgrind --tool=callgrind --callgrind-out-file="$T/mef-$n.out")
  start mef "$T/mef-$n.log"
  MEF_PID=${SERVER_PIDS[-1]}
  "$FLOWB" run --data "$DATA" --manifest "$T/manifest-$n.json" --stakeholder bench \
    --password-file "$T/password" --mef-pid "$MEF_PID" --other-pid "$OTHER_PID" \
    --concurrency 1 --rounds 1 --per-round "$n" >"$T/flowb-$n.out" ||
    { tail -n 20 "$T/flowb-$n.out" "$T/mef-$n.log" >&2; exit 1; }
  kill -TERM "$MEF_PID" "$OTHER_PID"
  wait "$MEF_PID" || { echo "instructions: the MEF exited with an error" >&2; tail -n 20 "$T/mef-$n.log" >&2; exit 1; }
  wait "$OTHER_PID" || true
  SERVER_PIDS=()
  echo "  $n enrolments: $(total_ir "$T/mef-$n.out") Ir in the MEF process (start to stop)"
done
MEF_SHORT=$(total_ir "$T/mef-$SHORT.out")
MEF_LONG=$(total_ir "$T/mef-$LONG.out")
MEF_IR=$(( (MEF_LONG - MEF_SHORT) / (LONG - SHORT) ))
echo "  MEF: $MEF_IR instructions per enrolment"

echo
echo "== summary"
awk -v a="$BARE_IR" -v b="$MEF_IR" 'BEGIN {
  r = a / b
  printf "(a) bare nested handshake, server side: %.2f M instructions\n", a / 1e6
  printf "(b) Flow B enrolment, MEF process: %.2f M instructions\n", b / 1e6
  printf "ratio (a)/(b) = %.3f, target >= 0.8: %s\n", r, (r >= 0.8 ? "met" : "NOT met")
  printf "bare_server_instructions=%d\n", a
  printf "mef_instructions_per_enrolment=%d\n", b
  printf "enrolment_vs_bare_instructions_ratio=%.2f\n", r
}'
