#!/usr/bin/env bash
# make bench: measures, in one run on this machine,
#  (a) bare OpenSSL nested handshakes (outer TLS 1.3 ECDSA P-256 + X25519, inner TLS 1.2
#      PSK-AES128-CBC-SHA256), server CPU per handshake (bench/bare_nested.cc), half of the
#      repetitions before (b) and half after;
#  (a2) for information, the same handshakes through OpenMTE's TLS engine (bench/engine_nested.cc);
#  (b) full Flow B enrolments through a real `mte serve` over loopback with durable commits, with
#      the MEF in its own process (`--roles mef`) so that its CPU can be read from /proc, and the
#      portal and MAF in another (`--roles portal,maf`) (bench/flowb_load.cc); by default the MEF
#      runs pinned to CPU 0 with one I/O thread, everything else on the other CPUs;
#  (a3) the socket floor: the same nested handshakes (suites, groups, certificates, exporters) over
#      loopback TCP, served by a minimal blocking server with no HTTP, JSON or store, in a process
#      of its own pinned like the MEF, at the same concurrency levels and rounds as (b), its
#      server CPU per handshake read from /proc as the MEF's is (bench/socket_floor.cc);
#  (c) p50/p99 enrolment latency at each stated concurrency;
#  (d) the portal's Enrolment-Token issuance rate (durable), timed while (b) prepares its tokens;
#  (a-cert), (b-cert) the same for the certificate RSPF: the inner handshake is a mutual-certificate
#      TLS 1.2 ECDHE-ECDSA-AES128-SHA256 one (a P-256 device certificate of a device CA whose
#      revocation status the MEF reads from its CRL).
# The summary ends with `cert_enrolment_vs_bare_ratio=R` and `enrolment_vs_bare_ratio=R`, R = (a)
# server CPU per handshake / (b) MEF CPU per enrolment at the highest stated concurrency (for
# information), then `cert_enrolment_vs_floor_ratio=R` and, as the last line,
# `enrolment_vs_floor_ratio=R`, R = (a3) server CPU per handshake / (b) MEF CPU per enrolment at
# the highest stated concurrency, for the certificate RSPF and for PPSK. docs/performance.md
# explains the method.
#
# usage: bench/run_bench.sh BUILD_DIR
# environment (defaults in brackets):
#   BENCH_CONCURRENCY [4,8]  BENCH_ROUNDS [3]  BENCH_PER_ROUND [150]   Flow B load
#   BENCH_CERT_CONCURRENCY [the last level of BENCH_CONCURRENCY]     Flow B load, certificate RSPF
#   BENCH_BARE_REPS [7]  BENCH_BARE_HANDSHAKES [200]                   bare handshakes
#   BENCH_FLOOR_PER_ROUND [3 x BENCH_PER_ROUND]  socket floor connections per round (the server
#                             CPU is read in clock ticks of 10 ms: more connections, finer figures)
#   BENCH_PIN [1]             1: the MEF process on CPU 0, the portal+MAF process and the load
#                             generator on the other CPUs (needs 2 or more CPUs)
#   BENCH_IO_THREADS [1 when pinned, else the mte.json default]  ioThreads of both processes
#   BENCH_TMPDIR [/var/tmp]   where the MTE data directory lives (must be a real disk: fsync)
#   BENCH_PROFILE [0]         1: perf record the MEF process during (b), the PPSK run (cpu-clock, DWARF call
#                             graphs; BENCH_PROFILE_HZ [999], BENCH_PROFILE_STACK [65528]) and
#                             write BUILD/bench/mef-profile.txt: the MEF's CPU per enrolment by
#                             thread and cause. Profiling costs CPU: not for the reported figures.
#   KEEP_TMP [0]              1: keep the data directory, logs and perf data
set -euo pipefail

BUILD=${1:?usage: run_bench.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
MTE="$BUILD/bin/mte"
BARE="$BUILD/bench/mte_bench_bare"
ENGINE="$BUILD/bench/mte_bench_engine"
FLOWB="$BUILD/bench/mte_bench_flowb"
FLOOR="$BUILD/bench/mte_bench_floor"
for b in "$MTE" "$BARE" "$ENGINE" "$FLOWB" "$FLOOR"; do
  [[ -x "$b" ]] || { echo "run_bench: $b is not built" >&2; exit 1; }
done

BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD/CMakeCache.txt")
case "$BUILD_TYPE" in
  Release|RelWithDebInfo) ;;
  *) echo "run_bench: $BUILD is a '$BUILD_TYPE' build; benchmark a Release or RelWithDebInfo build" >&2; exit 1 ;;
esac

CONCURRENCY=${BENCH_CONCURRENCY:-4,8}
ROUNDS=${BENCH_ROUNDS:-3}
PER_ROUND=${BENCH_PER_ROUND:-150}
BARE_REPS=${BENCH_BARE_REPS:-7}
BARE_HANDSHAKES=${BENCH_BARE_HANDSHAKES:-200}
FLOOR_PER_ROUND=${BENCH_FLOOR_PER_ROUND:-$(( 3 * PER_ROUND ))}
PROFILE=${BENCH_PROFILE:-0}
IFS=, read -r -a LEVELS <<<"$CONCURRENCY"
PRIMARY=${LEVELS[-1]}
TOTAL=$(( ${#LEVELS[@]} * ROUNDS * PER_ROUND ))
CERT_CONCURRENCY=${BENCH_CERT_CONCURRENCY:-$PRIMARY}
IFS=, read -r -a CERT_LEVELS <<<"$CERT_CONCURRENCY"
CERT_PRIMARY=${CERT_LEVELS[-1]}
CERT_TOTAL=$(( ${#CERT_LEVELS[@]} * ROUNDS * PER_ROUND ))

T=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/mte-bench.XXXXXX")
DATA="$T/mte"
SERVER_PIDS=()
PERF_PID=""
cleanup() {
  local pid
  [[ -n "$PERF_PID" ]] && kill -INT "$PERF_PID" 2>/dev/null || true
  for pid in "${SERVER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${SERVER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ "${KEEP_TMP:-0}" != 1 ]]; then rm -rf "$T"; else echo "kept $T" >&2; fi
}
trap cleanup EXIT

START=$(date +%s)
echo "== OpenMTE benchmark (make bench)"
echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)," \
  "kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "software: $(openssl version), SQLite $(sqlite3 --version 2>/dev/null | cut -d' ' -f1 || echo '?')," \
  "build $BUILD_TYPE"
echo "data directory: $T on $(findmnt -n -o FSTYPE --target "$T" 2>/dev/null || stat -f -c %T "$T") (SQLite WAL, synchronous=FULL)"

# ---------------------------------------------------------------- (a) bare nested handshakes
echo
echo "== (a) bare OpenSSL nested handshakes: outer TLS 1.3 ECDSA P-256 + X25519, inner TLS 1.2" \
  "PSK-AES128-CBC-SHA256, in-process memory BIOs, CPU per side (CLOCK_THREAD_CPUTIME_ID)"
# Half of the repetitions now and half after (b), so that (a) sees the same stretch of a noisy
# machine as (b); the figure is the median over all of them.
BARE_BEFORE=$(( (BARE_REPS + 1) / 2 ))
BARE_AFTER=$(( BARE_REPS - BARE_BEFORE ))
"$BARE" --reps "$BARE_BEFORE" --handshakes "$BARE_HANDSHAKES" --warmup 50 | tee "$T/bare.out"

echo
echo "== (a-cert) the same with the certificate RSPF's inner handshake: TLS 1.2" \
  "ECDHE-ECDSA-AES128-SHA256, the MEF certificate and a P-256 device certificate verified by the server"
"$BARE" --inner cert --reps "$BARE_BEFORE" --handshakes "$BARE_HANDSHAKES" --warmup 50 | tee "$T/bare-cert.out"

echo
echo "== (a2) the same nested handshakes through OpenMTE's TlsEngine + TlsStack, plus the MEF's two" \
  "exporters (for information: the engine's own overhead over (a))"
"$ENGINE" --reps "$BARE_REPS" --handshakes "$BARE_HANDSHAKES" --warmup 50 | tee "$T/engine.out"
ENGINE_US=$(sed -n 's/^engine_server_cpu_us=//p' "$T/engine.out")

# ---------------------------------------------------------------- (a3) the socket floor
echo
echo "== (a3) the socket floor: the same nested handshakes and exporters over loopback TCP, a" \
  "minimal blocking server (no HTTP, JSON or store) in its own process, $ROUNDS rounds x" \
  "$FLOOR_PER_ROUND connections at each of C=$CONCURRENCY"
FLOOR_PIN=$([[ "${BENCH_PIN:-1}" == 1 && $(nproc) -ge 2 ]] && echo 1 || echo 0)
"$FLOOR" --concurrency "$CONCURRENCY" --rounds "$ROUNDS" --per-round "$FLOOR_PER_ROUND" \
  --pin "$FLOOR_PIN" | tee "$T/floor.out"
"$FLOOR" --inner cert --concurrency "$CERT_CONCURRENCY" --rounds "$ROUNDS" \
  --per-round "$FLOOR_PER_ROUND" --pin "$FLOOR_PIN" | tee "$T/floor-cert.out"
FLOOR_US=$(sed -n "s/^floor_c${PRIMARY}_server_cpu_us=//p" "$T/floor.out")
CERT_FLOOR_US=$(sed -n "s/^floor_cert_c${CERT_PRIMARY}_server_cpu_us=//p" "$T/floor-cert.out")

# ---------------------------------------------------------------- (b) Flow B through mte serve
echo
echo "== (b) Flow B enrolments through mte serve over loopback (MEF: --roles mef;" \
  "portal+MAF: --roles portal,maf)"
"$MTE" init --data "$DATA" --mef-fqdn mef.bench.test --maf-fqdn maf.bench.test >/dev/null
"$FLOWB" ports --data "$DATA"
PIN=${BENCH_PIN:-1}
# Pinned, the MEF has one CPU: one I/O thread, as an operator would configure it.
IO_THREADS=${BENCH_IO_THREADS:-$([[ "$PIN" == 1 && $(nproc) -ge 2 ]] && echo 1 || true)}
if [[ -n "$IO_THREADS" ]]; then
  echo "ioThreads = $IO_THREADS (mte.json)"
  python3 -c 'import json,sys; p=sys.argv[1]; c=json.load(open(p)); c["ioThreads"]=int(sys.argv[2]); json.dump(c,open(p,"w"),indent=2)' \
    "$DATA/mte.json" "$IO_THREADS"
fi
"$FLOWB" manifest --out "$T/manifest.json" --count "$TOTAL"
t0=$(date +%s.%N)
"$MTE" admin --data "$DATA" device import "$T/manifest.json" >/dev/null
t1=$(date +%s.%N)
echo "imported $TOTAL devices in one manifest in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s (not measured)"
# The certificate devices: a maker's device CA with an (empty) CRL, one certificate per device.
"$MTE" admin pki init-device-ca --out "$T/device-ca" --name "Bench Maker Device CA" >/dev/null
"$MTE" admin pki revoke-device --ca "$T/device-ca" >/dev/null
"$MTE" admin --data "$DATA" device-ca add "$T/device-ca/ca.crt" --name bench-maker \
  --crl "$T/device-ca/crl.pem" >/dev/null
"$FLOWB" manifest --rspf cert --device-ca "$T/device-ca" --cert-dir "$T/device-certs" \
  --out "$T/cert-manifest.json" --count "$CERT_TOTAL"
"$MTE" admin --data "$DATA" device import "$T/cert-manifest.json" >/dev/null
echo "imported $CERT_TOTAL certificate devices of one device CA (revocation: its CRL) (not measured)"
PASSWORD="bench-$(openssl rand -hex 12)"
printf '%s\n' "$PASSWORD" >"$T/password"
chmod 600 "$T/password"
"$MTE" admin --data "$DATA" stakeholder add bench --password-stdin <"$T/password" >/dev/null

BENCH_NAME=run_bench
source "$(dirname "$0")/lib.sh"
start portal,maf "$T/portal-maf.log"
OTHER_PID=${SERVER_PIDS[-1]}
start mef "$T/mef.log"
MEF_PID=${SERVER_PIDS[-1]}
LOAD_PREFIX=()
if [[ "$PIN" == 1 && $(nproc) -ge 2 ]]; then
  # The MEF on CPU 0; the portal+MAF process and the load generator on the other CPUs.
  OTHERS=$(( $(nproc) - 1 ))
  (( OTHERS > 1 )) && OTHERS="1-$OTHERS"
  taskset -a -p -c 0 "$MEF_PID" >/dev/null
  taskset -a -p -c "$OTHERS" "$OTHER_PID" >/dev/null
  LOAD_PREFIX=(taskset -c "$OTHERS")
  echo "pinned: MEF on CPU 0; portal+MAF and the load generator on CPUs $OTHERS"
fi
echo "mte serve --roles mef: pid $MEF_PID; mte serve --roles portal,maf: pid $OTHER_PID;" \
  "load: $ROUNDS rounds x $PER_ROUND enrolments at each of C=$CONCURRENCY"

if [[ "$PROFILE" == 1 ]]; then
  # DWARF unwinding: the release build has no frame pointers. Costs CPU; use for analysis only.
  perf record -F ${BENCH_PROFILE_HZ:-999} -e cpu-clock --call-graph dwarf,${BENCH_PROFILE_STACK:-65528} -p "$MEF_PID" -o "$T/perf.data" \
    >/dev/null 2>&1 &
  PERF_PID=$!
fi
set +e
"${LOAD_PREFIX[@]}" "$FLOWB" run --data "$DATA" --manifest "$T/manifest.json" --stakeholder bench \
  --password-file "$T/password" --mef-pid "$MEF_PID" --other-pid "$OTHER_PID" \
  --concurrency "$CONCURRENCY" --rounds "$ROUNDS" --per-round "$PER_ROUND" | tee "$T/flowb.out"
rc=${PIPESTATUS[0]}
set -e
if [[ -n "$PERF_PID" ]]; then
  kill -INT "$PERF_PID" 2>/dev/null || true
  wait "$PERF_PID" 2>/dev/null || true
  PERF_PID=""
  perf report -i "$T/perf.data" --no-children --sort dso,symbol --stdio -g none \
    --percent-limit 0.3 2>/dev/null | grep -v '^#' | grep -v '^$' | cut -c1-160 \
    >"$BUILD/bench/mef-profile-flat.txt" || true
  # Every sample classified by its thread and call stack, in us per enrolment.
  perf script -i "$T/perf.data" -F tid,time,ip,sym,dso 2>/dev/null >"$T/perf.script" || true
  python3 -S - "$T/perf.script" "$TOTAL" "${BENCH_PROFILE_HZ:-999}" "$MEF_PID" \
    >"$BUILD/bench/mef-profile.txt" <<'PY' || true
import collections, re, sys
path, enrolments, hz, pid = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
samples, cur = [], None
for line in open(path, errors="replace"):
    if not line.strip():
        if cur: samples.append(cur)
        cur = None
    elif not line.startswith("\t"):  # a sample's header line (the tid may be space-padded)
        cur = {"tid": line.split()[0], "frames": []}
    elif cur is not None:
        m = re.match(r"\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)$", line.rstrip("\n"))
        if m: cur["frames"].append(m.group(1))
if cur: samples.append(cur)
def cat(s):
    f = s["frames"]
    has = lambda *p: any(x in fr for fr in f for x in p)
    if has("OutboxWorker::Loop"):
        if has("MarkDelivered"): return "outbox: MarkDelivered (write transaction)"
        if has("DueOutbox"): return "outbox: DueOutbox (read)"
        if has("KeyEncryptionKey::Open"): return "outbox: KEK open of the payload"
        if has("TlsEngine", "SSL_"): return "outbox: mutual-TLS session to the MAF (OpenSSL)"
        if has("Socket::", "__libc_send", "__libc_recv", "connect", "__close", "socket"):
            return "outbox: TCP send/recv (incl. loopback kernel work)"
        return "outbox: other (logging, HTTP)"
    if has("sqlite3", "SqliteStore", "fdatasync"):
        if has("LookupPsk"): return "connections: SQLite in the PSK lookup (FindDeviceByKpmId)"
        if has("CommitEnrolment"): return "connections: SQLite CommitEnrolment (write transaction + fsync)"
        if has("SqliteStore::Audit"): return "connections: SQLite Audit after the commit"
        if has("FindToken"): return "connections: SQLite FindToken"
        return "connections: SQLite reads in Mef::Enrol"
    if has("KeyEncryptionKey"): return "connections: KEK seal/open"
    if has("spdlog"): return "connections: logging"
    if has("TlsEngine", "SSL_"): return "connections: TLS server, outer + inner (handshakes, records, exporters)"
    if has("Decoder", "Serialize", "nlohmann", "Mef::"): return "connections: HTTP, JSON, handler logic"
    if has("__libc_send", "__libc_recv", "sendmsg", "recvmsg", "accept", "shutdown", "__close", "__write", "__read"):
        return "connections: socket syscalls (incl. loopback kernel work)"
    return "connections: asio (epoll, strands, coroutines), other"
counts = collections.Counter(cat(s) for s in samples)
n = max(len(samples), 1)
print(f"MEF CPU by thread and call stack: {len(samples)} samples at {hz:.0f} Hz, {enrolments} enrolments")
for k, v in sorted(counts.items()):
    print(f"{v / hz * 1e6 / enrolments:7.0f} us/enrolment {100 * v / n:5.1f}%  {k}")
print(f"{len(samples) / hz * 1e6 / enrolments:7.0f} us/enrolment in total")
PY
  echo "MEF profile: $BUILD/bench/mef-profile.txt (by cause), $BUILD/bench/mef-profile-flat.txt"
fi
if [[ $rc -ne 0 ]]; then
  echo "run_bench: the Flow B load generator failed (exit $rc); MEF log tail:" >&2
  tail -n 20 "$T/mef.log" >&2
  exit 1
fi

echo
echo "== (b-cert) Flow B enrolments with the certificate RSPF through the same mte serve processes" \
  "($ROUNDS rounds x $PER_ROUND enrolments at each of C=$CERT_CONCURRENCY)"
set +e
"${LOAD_PREFIX[@]}" "$FLOWB" run --rspf cert --cert-dir "$T/device-certs" --data "$DATA" \
  --manifest "$T/cert-manifest.json" --stakeholder bench --password-file "$T/password" \
  --mef-pid "$MEF_PID" --other-pid "$OTHER_PID" --concurrency "$CERT_CONCURRENCY" \
  --rounds "$ROUNDS" --per-round "$PER_ROUND" | tee "$T/flowb-cert.out"
rc=${PIPESTATUS[0]}
set -e
if [[ $rc -ne 0 ]]; then
  echo "run_bench: the certificate Flow B load generator failed (exit $rc); MEF log tail:" >&2
  tail -n 20 "$T/mef.log" >&2
  exit 1
fi
if (( BARE_AFTER > 0 )); then
  echo
  echo "== (a) and (a-cert) continued after (b): $BARE_AFTER more repetitions each"
  "$BARE" --reps "$BARE_AFTER" --handshakes "$BARE_HANDSHAKES" --warmup 50 | tee "$T/bare-after.out"
  "$BARE" --inner cert --reps "$BARE_AFTER" --handshakes "$BARE_HANDSHAKES" --warmup 50 |
    tee "$T/bare-cert-after.out"
fi
# The median of every repetition's server figure in the given outputs, before and after.
bare_median() {
  local f files=()
  for f in "$@"; do [[ -f "$f" ]] && files+=("$f"); done
  cat "${files[@]}" |
    sed -n 's/^  rep [0-9]*: .* server \([0-9.]*\) us\/hs.*/\1/p' | sort -n |
    awk '{ v[NR] = $1 } END { if (NR == 0) exit 1; print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
BARE_US=$(bare_median "$T/bare.out" "$T/bare-after.out")
CERT_BARE_US=$(bare_median "$T/bare-cert.out" "$T/bare-cert-after.out")
echo "(a) server CPU, median of all $BARE_REPS repetitions: $BARE_US us; (a-cert): $CERT_BARE_US us"
MEF_US=$(sed -n "s/^flowb_c${PRIMARY}_mef_cpu_us=//p" "$T/flowb.out")
P50=$(sed -n "s/^flowb_c${PRIMARY}_p50_ms=//p" "$T/flowb.out")
P99=$(sed -n "s/^flowb_c${PRIMARY}_p99_ms=//p" "$T/flowb.out")
RATE=$(sed -n "s/^flowb_c${PRIMARY}_enrolments_per_s=//p" "$T/flowb.out")
TOKEN_RATE=$(sed -n "s/^flowb_token_issuance_per_s=//p" "$T/flowb.out")
CERT_MEF_US=$(sed -n "s/^flowb_cert_c${CERT_PRIMARY}_mef_cpu_us=//p" "$T/flowb-cert.out")
CERT_P50=$(sed -n "s/^flowb_cert_c${CERT_PRIMARY}_p50_ms=//p" "$T/flowb-cert.out")
CERT_P99=$(sed -n "s/^flowb_cert_c${CERT_PRIMARY}_p99_ms=//p" "$T/flowb-cert.out")
CERT_RATE=$(sed -n "s/^flowb_cert_c${CERT_PRIMARY}_enrolments_per_s=//p" "$T/flowb-cert.out")

# ---------------------------------------------------------------- summary
echo
echo "== summary ($(( $(date +%s) - START )) s)"
awk -v bare="$BARE_US" -v floor="$FLOOR_US" -v cfloor="$CERT_FLOOR_US" -v engine="$ENGINE_US" -v mef="$MEF_US" -v c="$PRIMARY" -v p50="$P50" -v p99="$P99" -v rate="$RATE" -v tokens="$TOKEN_RATE" \
  -v cbare="$CERT_BARE_US" -v cmef="$CERT_MEF_US" -v cc="$CERT_PRIMARY" -v cp50="$CERT_P50" -v cp99="$CERT_P99" -v crate="$CERT_RATE" 'BEGIN {
  r = bare / mef
  cr = cbare / cmef
  f = floor / mef
  cf = cfloor / cmef
  printf "PPSK RSPF:\n"
  printf "(a) bare nested handshake: server CPU %.0f us (%.0f handshakes/s per core)\n", bare, 1e6 / bare
  printf "(a3) socket floor at C=%d: server CPU %.0f us (%.0f handshakes/s per core)\n", c, floor, 1e6 / floor
  printf "(a2) the same through the OpenMTE TLS engine: server CPU %.0f us (%.2f x (a))\n", engine, engine / bare
  printf "(b) Flow B enrolment at C=%d: MEF CPU %.0f us (%.0f enrolments/s per MEF core); %.0f enrolments/s measured\n", c, mef, 1e6 / mef, rate
  printf "(c) latency at C=%d: p50 %.1f ms, p99 %.1f ms\n", c, p50, p99
  printf "(d) portal token issuance (POST /api/v1/enrolees/{id}/tokens, durable, 4 client threads): %.0f tokens/s, beside %.0f enrolments/s\n", tokens, rate
  printf "ratio (a)/(b) = %.3f (for information)\n", r
  printf "ratio (a3)/(b) = %.3f, target >= 0.6: %s\n", f, (f >= 0.6 ? "met" : "NOT met")
  printf "certificate RSPF:\n"
  printf "(a-cert) bare nested handshake: server CPU %.0f us (%.0f handshakes/s per core)\n", cbare, 1e6 / cbare
  printf "(a3-cert) socket floor at C=%d: server CPU %.0f us\n", cc, cfloor
  printf "(b-cert) Flow B enrolment at C=%d: MEF CPU %.0f us (%.0f enrolments/s per MEF core); %.0f enrolments/s measured\n", cc, cmef, 1e6 / cmef, crate
  printf "(c-cert) latency at C=%d: p50 %.1f ms, p99 %.1f ms\n", cc, cp50, cp99
  printf "ratio (a-cert)/(b-cert) = %.3f, ratio (a3-cert)/(b-cert) = %.3f\n", cr, cf
  printf "token_issuance_per_s=%.0f\n", tokens
  printf "cert_enrolment_vs_bare_ratio=%.2f\n", cr
  printf "enrolment_vs_bare_ratio=%.2f\n", r
  printf "cert_enrolment_vs_floor_ratio=%.2f\n", cf
  printf "enrolment_vs_floor_ratio=%.2f\n", f
}'
