#!/usr/bin/env bash
# The MEF outbox drain (docs/performance.md §8): how fast a backlog of queued credential
# deliveries reaches the MAF over loopback. The backlog is filled once through the store's own
# enrolment commit (bench/outbox_drain.cc, `mte_bench_outbox fill`: an entry and one
# CommitEnrolment per delivery, with the outbox item the MEF seals); each run then starts
# `mte serve --roles maf` and `mte serve --roles mef` on a copy of the filled store and times the
# MEF from its start until no outbox row is undelivered (`mte_bench_outbox drain`).
#
# usage: bench/outbox_drain.sh BUILD_DIR
# environment (defaults in brackets):
#   BENCH_DRAIN_COUNT [10000]  deliveries queued
#   BENCH_DRAIN_RUNS [3]       drains of the same backlog; the figures are their medians
#   BENCH_TMPDIR [/var/tmp]    where the data directory lives (a real disk: the MAF's commits
#                              are durable)
#   KEEP_TMP [0]               1: keep the data directory and logs
set -euo pipefail

BUILD=${1:?usage: outbox_drain.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
MTE="$BUILD/bin/mte"
TOOL="$BUILD/bench/mte_bench_outbox"
PORTS="$BUILD/bench/mte_bench_flowb"
for b in "$MTE" "$TOOL" "$PORTS"; do
  [[ -x "$b" ]] || { echo "outbox_drain: $b is not built" >&2; exit 1; }
done
COUNT=${BENCH_DRAIN_COUNT:-10000}
RUNS=${BENCH_DRAIN_RUNS:-3}

T=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/mte-drain.XXXXXX")
DATA="$T/mte"
SERVER_PIDS=()
cleanup() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${SERVER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ "${KEEP_TMP:-0}" != 1 ]]; then rm -rf "$T"; else echo "kept $T" >&2; fi
}
trap cleanup EXIT

echo "== OpenMTE outbox drain: $COUNT queued deliveries, MEF -> MAF over loopback, $RUNS runs"
echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "data directory: $T on $(findmnt -n -o FSTYPE --target "$T" 2>/dev/null || stat -f -c %T "$T")"
"$MTE" init --data "$DATA" --mef-fqdn mef.bench.test --maf-fqdn maf.bench.test >/dev/null
"$PORTS" ports --data "$DATA"
printf 'drain-%s\n' "$(openssl rand -hex 12)" |
  "$MTE" admin --data "$DATA" stakeholder add drain --password-stdin >/dev/null
# The fill is preparation, not measured: its durable commits run on a copy of the store in
# /dev/shm when there is one (tmpfs: no fsync wait), and the filled store is copied back.
mkdir "$T/filled"
if FILL=$(mktemp -d /dev/shm/mte-drain.XXXXXX 2>/dev/null); then
  cp -p "$DATA"/mte.db* "$FILL/"
  "$TOOL" fill --data "$DATA" --db "$FILL/mte.db" --count "$COUNT" --stakeholder drain
  cp -p "$FILL"/mte.db* "$T/filled/"
  rm -rf "$FILL"
else
  "$TOOL" fill --data "$DATA" --count "$COUNT" --stakeholder drain
  cp -p "$DATA"/mte.db* "$T/filled/"
fi

BENCH_NAME=outbox_drain
source "$(dirname "$0")/lib.sh"
stop() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${SERVER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  SERVER_PIDS=()
}

for run in $(seq "$RUNS"); do
  rm -f "$DATA"/mte.db*
  cp -p "$T"/filled/* "$DATA/"
  start maf "$T/maf.log"
  MAF_PID=${SERVER_PIDS[-1]}
  # The MEF starts delivering as soon as it runs: the clock starts with it.
  "$MTE" serve --data "$DATA" --roles mef >>"$T/mef.log" 2>&1 &
  SERVER_PIDS+=($!)
  MEF_PID=$!
  "$TOOL" drain --data "$DATA" --mef-pid "$MEF_PID" --maf-pid "$MAF_PID" >"$T/run-$run.out" || {
    tail -n 5 "$T/mef.log" "$T/maf.log" >&2
    exit 1
  }
  stop
  awk -F= -v run="$run" '{ v[$1] = $2 } END {
    printf "  run %d: %d deliveries in %.2f s (first after %.2f s): %d/s; CPU per delivery: MEF %d us, MAF %d us\n",
      run, v["outbox_drain_deliveries"], v["outbox_drain_s"], v["outbox_drain_first_s"],
      v["outbox_drain_per_s"], v["outbox_drain_mef_cpu_us"], v["outbox_drain_maf_cpu_us"] }' "$T/run-$run.out"
done

median() {
  sed -n "s/^$1=//p" "$T"/run-*.out | sort -n |
    awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
DRAIN_S=$(median outbox_drain_s)
echo "median of $RUNS runs: $COUNT deliveries in $DRAIN_S s, $(median outbox_drain_per_s) deliveries/s;" \
  "CPU per delivery: MEF $(median outbox_drain_mef_cpu_us) us, MAF $(median outbox_drain_maf_cpu_us) us"
echo "outbox_drain_s=$DRAIN_S"
