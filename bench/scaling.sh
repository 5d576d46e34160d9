#!/usr/bin/env bash
# make bench-scaling: Flow B enrolments/s against the number of MEF processes on one PostgreSQL
# database (docs/scaling.md). A PostgreSQL 15 server with durable commits (fsync on) is started
# for the run under BENCH_TMPDIR (a real disk) by tests/testlib/with_postgres.sh; `mte init
# --store` gives its database the schema; one data directory per process, copied from the first.
# For each count K of SCALING_MEFS, K `mte serve --roles mef` processes serve, one `--roles
# portal,maf` process issues the tokens and takes the Km deliveries, and mte_bench_flowb drives
# Flow B enrolments at SCALING_CONCURRENCY, connecting to the K MEF ports in turn (no balancer:
# its CPU would be counted against the MEFs on this machine). Unpinned: every process shares all
# CPUs. Printed per K: enrolments/s, the MEFs' CPU per enrolment (summed over the K processes),
# the database server's, the portal+MAF process's, and p50/p99 latency. The same load on the
# embedded SQLite store (one MEF process) comes first, for comparison.
#
# usage: bench/scaling.sh BUILD_DIR
# environment: SCALING_MEFS [1,2,4]  SCALING_CONCURRENCY [16]  SCALING_ROUNDS [3]
#              SCALING_PER_ROUND [150]  BENCH_TMPDIR [/var/tmp]  KEEP_TMP [0]
set -euo pipefail
BUILD=$(cd "${1:?usage: scaling.sh BUILD_DIR}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
if [[ -z "${MTE_TEST_POSTGRES_URI:-}" ]]; then
  export MTE_POSTGRES_DURABLE=1 TMPDIR=${BENCH_TMPDIR:-/var/tmp}
  exec bash "$HERE/../tests/testlib/with_postgres.sh" bash "$0" "$@"
fi
MTE="$BUILD/bin/mte"
FLOWB="$BUILD/bench/mte_bench_flowb"
for b in "$MTE" "$FLOWB"; do [[ -x "$b" ]] || { echo "scaling: $b is not built" >&2; exit 1; }; done
IFS=, read -r -a COUNTS <<<"${SCALING_MEFS:-1,2,4}"
C=${SCALING_CONCURRENCY:-16}
ROUNDS=${SCALING_ROUNDS:-3}
PER_ROUND=${SCALING_PER_ROUND:-150}
PER_RUN=$(( ROUNDS * PER_ROUND ))
RUNS=$(( ${#COUNTS[@]} + 1 ))

T=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/mte-scaling.XXXXXX")
SERVER_PIDS=()
cleanup() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${SERVER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ "${KEEP_TMP:-0}" != 1 ]]; then rm -rf "$T"; else echo "kept $T" >&2; fi
}
trap cleanup EXIT
BENCH_NAME=scaling
source "$HERE/lib.sh"
set_key() {  # set_key DIR KEY JSON
  python3 -c 'import json,sys; p=sys.argv[1]; c=json.load(open(p)); c[sys.argv[2]]=json.loads(sys.argv[3]); json.dump(c,open(p,"w"),indent=2)' \
    "$1/mte.json" "$2" "$3"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

DB=mte_scaling
psql "$MTE_TEST_POSTGRES_URI" -qAt -c "CREATE DATABASE $DB" >/dev/null
URI=${MTE_TEST_POSTGRES_URI/\/postgres\?//$DB?}  # the same server, database $DB
PG_VERSION=$(psql "$URI" -qAt -c "SHOW server_version")
PG_FSYNC=$(psql "$URI" -qAt -c "SHOW fsync")
PG_SYNC=$(psql "$URI" -qAt -c "SHOW synchronous_commit")

echo "== OpenMTE scaling: Flow B enrolments/s against MEF processes on one PostgreSQL database"
echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "PostgreSQL $PG_VERSION (fsync $PG_FSYNC, synchronous_commit $PG_SYNC) on" \
  "$(findmnt -n -o FSTYPE --target "$MTE_TEST_POSTGRES_DIR" 2>/dev/null || echo '?');" \
  "load: C=$C, $ROUNDS rounds x $PER_ROUND enrolments per configuration, unpinned"

# One manifest per run (distinct devices), one stakeholder.
"$FLOWB" manifest --out "$T/all.json" --count $(( RUNS * PER_RUN ))
python3 - "$T/all.json" "$RUNS" "$PER_RUN" "$T" <<'EOF'
import json, sys
devices, runs, per, out = json.load(open(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
for r in range(runs):
    json.dump(devices[r * per:(r + 1) * per], open(f"{out}/manifest-{r}.json", "w"))
EOF
PASSWORD="bench-$(openssl rand -hex 12)"
printf '%s\n' "$PASSWORD" >"$T/password"
chmod 600 "$T/password"

# init_base DIR [--store URI]: a data directory with fixed ports for the portal and the MAF.
init_base() {
  local dir=$1
  shift
  "$MTE" init --data "$dir" --mef-fqdn mef.bench.test --maf-fqdn maf.bench.test "$@" >/dev/null
  set_key "$dir" portalPort "$(free_port)"
  set_key "$dir" mafPort "$(free_port)"
  set_key "$dir" mafDeliveryPort "$(free_port)"
  set_key "$dir" mefPort "$(free_port)"
  "$MTE" admin --data "$dir" stakeholder add bench --password-stdin <"$T/password" >/dev/null
}

# run NAME DATA_BASE K MANIFEST [db pids]: K MEF processes (copies of DATA_BASE, own ports) and one
# portal,maf process; the load; prints the figures, keeps $T/NAME.out.
run() {
  local name=$1 base=$2 k=$3 manifest=$4 i dir pids=() ports=() db_pids
  "$MTE" admin --data "$base" device import "$manifest" >/dev/null
  DATA=$base
  start portal,maf "$T/$name-front.log"
  local front=${SERVER_PIDS[-1]}
  for (( i = 1; i <= k; i++ )); do
    dir="$T/$name-mef$i"
    if [[ "$name" == sqlite ]]; then
      dir=$base  # SQLite is a file in the data directory: the MEF must serve that directory
    else
      rm -rf "$dir"
      cp -a "$base" "$dir"
      rm -f "$dir/serve.json" "$dir"/serve-*.lock
      set_key "$dir" mefPort "$(free_port)"
    fi
    ports+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["mefPort"])' "$dir/mte.json")")
    DATA=$dir
    start mef "$T/$name-mef$i.log"
    pids+=("${SERVER_PIDS[-1]}")
  done
  db_pids=$(pgrep -d, -u postgres postgres || true)
  "$FLOWB" run --data "$base" --manifest "$manifest" --stakeholder bench \
    --password-file "$T/password" --mef-pid "$(IFS=,; echo "${pids[*]}")" --other-pid "$front" \
    --mef-ports "$(IFS=,; echo "${ports[*]}")" ${db_pids:+--db-pid "$db_pids"} \
    --concurrency "$C" --rounds "$ROUNDS" --per-round "$PER_ROUND" >"$T/$name.out" ||
    { tail -n 20 "$T/$name.out" "$T/$name-mef1.log" >&2; exit 1; }
  grep -E '^  C=' "$T/$name.out" | sed "s/^/  [$name] /"
  for pid in "${pids[@]}" "$front"; do kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; done
  SERVER_PIDS=()
}

echo
echo "== the embedded SQLite store, 1 MEF process (for comparison)"
init_base "$T/sqlite"
run sqlite "$T/sqlite" 1 "$T/manifest-0.json"

init_base "$T/pg" --store "$URI"
r=1
for k in "${COUNTS[@]}"; do
  echo
  echo "== PostgreSQL, $k MEF process(es)"
  run "pg-$k" "$T/pg" "$k" "$T/manifest-$r.json"
  r=$(( r + 1 ))
done

echo
echo "== summary (C=$C; CPU in us per enrolment; the machine has $(nproc) CPUs)"
printf '%-22s %10s %10s %10s %10s %12s %9s %9s\n' store "enrol/s" "delivered" "MEF CPU" "DB CPU" \
  "portal+MAF" "p50 ms" "p99 ms"
line() {  # line LABEL FILE
  local f=$1; shift
  local key=flowb_c$C
  printf '%-22s %10s %10s %10s %10s %12s %9s %9s\n' "$1" \
    "$(sed -n "s/^${key}_enrolments_per_s=//p" "$f")" "$(sed -n "s/^${key}_delivered_per_s=//p" "$f")" \
    "$(sed -n "s/^${key}_mef_cpu_us=//p" "$f")" "$(sed -n "s/^${key}_db_cpu_us=//p" "$f" | grep . || echo -)" \
    "$(sed -n "s/^${key}_other_cpu_us=//p" "$f")" "$(sed -n "s/^${key}_p50_ms=//p" "$f")" \
    "$(sed -n "s/^${key}_p99_ms=//p" "$f")"
}
line "$T/sqlite.out" "SQLite, 1 MEF"
for k in "${COUNTS[@]}"; do line "$T/pg-$k.out" "PostgreSQL, $k MEF"; done
for k in "${COUNTS[@]}"; do
  echo "scaling_pg_mef${k}_enrolments_per_s=$(sed -n "s/^flowb_c${C}_enrolments_per_s=//p" "$T/pg-$k.out")"
done
