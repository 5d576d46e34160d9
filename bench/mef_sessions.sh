#!/usr/bin/env bash
# Many open outer sessions in one MEF process: opens N TLS 1.3 sessions to `mte serve --roles mef`
# (the device's outer session: SNI = the MEF FQDN, the MEF certificate verified against the
# development CA, handshake complete, then idle, as devices that have not yet sent their request),
# reads the MEF process's resident set size (VmRSS, /proc/PID/status) before and with them open,
# and while they are open runs legitimate Flow B enrolments one at a time through the portal and
# the MEF (bench/flowb_load.cc) and reports the slowest. Then closes the sessions and reads the RSS
# once more. Part of `make bench`.
# The requirement: 10,000 sessions at <= 40 KiB each, and an enrolment completing within 1 s while
# they are open.
#
# usage: bench/mef_sessions.sh BUILD_DIR [N]   (N defaults to 10000; raises the descriptor limit)
# Prints mef_session_rss_bytes=B and enrolment_during_sessions_max_ms=M as its last lines.
set -euo pipefail
BUILD=$(cd "${1:?usage: mef_sessions.sh BUILD_DIR [N]}" && pwd)
N=${2:-10000}
ENROLMENTS=${BENCH_SESSION_ENROLMENTS:-5}
# Each process (the MEF, the client) holds N descriptors and some more.
WANT_FDS=$((N + 1024))
HARD_FDS=$(ulimit -Hn)
if [[ "$HARD_FDS" != unlimited ]] && (( HARD_FDS < WANT_FDS )); then
  echo "mef_sessions: needs $WANT_FDS open files per process; the hard limit is $HARD_FDS" >&2
  exit 1
fi
ulimit -n "$WANT_FDS"
MTE="$BUILD/bin/mte"
FLOWB="$BUILD/bench/mte_bench_flowb"
T=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/mte-sessions.XXXXXX")
DATA="$T/mte"
SERVER_PIDS=()
CLIENT_PID=
cleanup() {
  local pid
  [[ -n "$CLIENT_PID" ]] && kill "$CLIENT_PID" 2>/dev/null || true
  for pid in "${SERVER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${SERVER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ "${KEEP_TMP:-0}" != 1 ]]; then rm -rf "$T"; else echo "kept $T" >&2; fi
}
trap cleanup EXIT

"$MTE" init --data "$DATA" --mef-fqdn mef.bench.test --maf-fqdn maf.bench.test >/dev/null
"$FLOWB" ports --data "$DATA"
python3 - "$DATA/mte.json" "$N" <<'PY'
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
c = json.load(open(path))
c.update(maxConnections=n + 100, maxConnectionsPerAddress=n + 100, handshakeTimeoutMs=600000,
         idleTimeoutMs=600000, requestTimeoutMs=600000)
json.dump(c, open(path, "w"), indent=2)
PY
"$FLOWB" manifest --out "$T/manifest.json" --count "$ENROLMENTS"
"$MTE" admin --data "$DATA" device import "$T/manifest.json" >/dev/null
PASSWORD="bench-$(openssl rand -hex 12)"
printf '%s\n' "$PASSWORD" >"$T/password"
chmod 600 "$T/password"
"$MTE" admin --data "$DATA" stakeholder add bench --password-stdin <"$T/password" >/dev/null
BENCH_NAME=mef_sessions
source "$(dirname "$0")/lib.sh"
start portal,maf "$T/portal-maf.log"
OTHER_PID=${SERVER_PIDS[-1]}
start mef "$T/mef.log"
MEF_PID=${SERVER_PIDS[-1]}
MEF_PORT=$(python3 -c "import json;print(json.load(open('$DATA/mte.json'))['mefPort'])")
rss() { awk '/VmRSS/ {print $2}' "/proc/$MEF_PID/status"; }

echo "== $N outer TLS sessions held open to one MEF process (mte serve --roles mef, pid $MEF_PID)"
sleep 3
RSS_BEFORE=$(rss)
# The client holds the sessions until its stdin closes; it says "open" once all handshakes are done.
mkfifo "$T/ctl" "$T/state"
cat >"$T/client.py" <<'PY'
import socket, ssl, sys
port, n, ca = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_verify_locations(ca)
sessions = []
for _ in range(n):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="mef.bench.test")
    sessions.append(s)
print(f"open {sessions[0].version()} {sessions[0].cipher()[0]}", flush=True)
sys.stdin.read()
for s in sessions:
    s.close()
print("closed", flush=True)
PY
python3 -S "$T/client.py" "$MEF_PORT" "$N" "$DATA/pki/ca.crt" <"$T/ctl" >"$T/state" \
  2>"$T/client.err" &
CLIENT_PID=$!
exec 3>"$T/ctl" 4<"$T/state"
t0=$(date +%s.%N)
read -r -u 4 STATE || { cat "$T/client.err" >&2; echo "mef_sessions: the client failed" >&2; exit 1; }
t1=$(date +%s.%N)
echo "  $N sessions $STATE, handshakes took $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s"
sleep 6
RSS_OPEN=$(rss)
OPEN_NOW=$(ls /proc/"$MEF_PID"/fd | wc -l)
echo "  MEF RSS: $RSS_BEFORE KiB before, $RSS_OPEN KiB with the sessions open ($OPEN_NOW descriptors)"
if (( OPEN_NOW < N )); then
  echo "mef_sessions: the MEF holds only $OPEN_NOW descriptors; the sessions did not stay open" >&2
  exit 1
fi

echo "  $ENROLMENTS Flow B enrolments, one at a time, while the sessions are open:"
"$FLOWB" run --data "$DATA" --manifest "$T/manifest.json" --stakeholder bench \
  --password-file "$T/password" --mef-pid "$MEF_PID" --other-pid "$OTHER_PID" \
  --concurrency 1 --rounds 1 --per-round "$ENROLMENTS" >"$T/flowb.out" ||
  { tail -n 20 "$T/flowb.out" "$T/mef.log" >&2; exit 1; }
grep -E '^  C=1 round' "$T/flowb.out" | sed 's/^/  /'
MAX_MS=$(sed -n 's/^flowb_c1_p99_ms=//p' "$T/flowb.out")  # p99 of 5 = the slowest
exec 3>&-
read -r -u 4 STATE || true
CLIENT_PID=
sleep 6
RSS_AFTER=$(rss)
echo "  MEF RSS after the sessions closed: $RSS_AFTER KiB"
awk -v n="$N" -v b="$RSS_BEFORE" -v o="$RSS_OPEN" -v m="$MAX_MS" 'BEGIN {
  per = (o - b) * 1024 / n
  printf "per open outer session: %.0f bytes (%.1f KiB), target <= 40 KiB: %s\n", per, per / 1024, (per <= 40 * 1024 ? "met" : "NOT met")
  printf "slowest enrolment while they were open: %.1f ms, target < 1000 ms: %s\n", m, (m < 1000 ? "met" : "NOT met")
  printf "mef_session_rss_bytes=%.0f\n", per
  printf "enrolment_during_sessions_max_ms=%.1f\n", m
}'
