#!/usr/bin/env bash
# Scale-out on one PostgreSQL database (docs/scaling.md): 3 `mte serve --roles mef` and 2
# `--roles portal` processes, each with its own data directory, plus one `--roles maf`, behind a
# plain TCP load balancer (nginx's stream module, round robin over loopback ports; TLS passes
# through unchanged). The PostgreSQL server is started for the test (tests/testlib/
# with_postgres.sh) in a temporary directory and stopped afterwards.
#
# 1. Races: in each of MTE_SCALE_TRIALS trials (default 6; `make test-scale` runs 200), 64
#    devices redeem one Enrolment-Token at once through the load balancer, so that the MEF
#    processes race each other: exactly one device enrols, the 63 others are refused, the entry
#    has generation 1, one outbox row, one audited commit, and the token is spent.
# 2. Chaos: MTE_SCALE_ENROLMENTS Flow B devices (default 96; `make test-scale` runs 1000),
#    `mte-enrolee --retry-for`, enrol through the load balancer while a random MEF process is
#    killed with SIGKILL and restarted, again and again. Then: every device enrolled, one entry
#    and one outbox row per committed generation, every current Km at the MAF exactly once (one
#    `credential.receive` per (KmID, generation)), the outbox empty although several MEFs share
#    it (claims with a lease), and every device's Km opens the MAF.
# 3. The lockouts are shared: token guesses through the load balancer, which spreads them over
#    the MEF processes, lock the address at every MEF.
if [[ -z "${MTE_TEST_POSTGRES_URI:-}" ]]; then
  exec bash "$(dirname "$0")/../testlib/with_postgres.sh" bash "$0" "$@"
fi
source "$(dirname "$0")/lib.sh"

START=$(now_ms)
elapsed_s() { awk -v ms=$(( $(now_ms) - START )) 'BEGIN { printf "%.1f", ms / 1000 }'; }
TRIALS=${MTE_SCALE_TRIALS:-6}
RACERS=64
N_CHAOS=${MTE_SCALE_ENROLMENTS:-96}
N_MEF=3
N_PORTAL=2
command -v nginx >/dev/null || fail "nginx is not installed (tools/install-deps.sh --test)"
NGINX_STREAM=/usr/lib/nginx/modules/ngx_stream_module.so
[[ -f "$NGINX_STREAM" ]] || fail "nginx's stream module is not installed (libnginx-mod-stream)"
command -v psql >/dev/null || fail "psql is not installed (postgresql-client)"

# ---------------------------------------------------------------- the database
DB="mte_scale_$$"
psql "$MTE_TEST_POSTGRES_URI" -qAt -c "CREATE DATABASE $DB" >/dev/null
# with_postgres.sh names database postgres: the same server, database $DB.
URI=${MTE_TEST_POSTGRES_URI/\/postgres\?//$DB?}
[[ "$URI" == *"/$DB?"* ]] || fail "cannot derive the database URI from $MTE_TEST_POSTGRES_URI"
pg() { psql "$URI" -qAt -c "$1"; }

# ---------------------------------------------------------------- data directories
# One `mte init --store`, then one copy per process (the KEK, the PKI and the configuration are the
# deployment's; each process has its own directory for its lock file and serve.json), each with
# its own ports. The portals name the load balancer in the bundles they hand out.
BASE="$T/base"
"$MTE" init --data "$BASE" --store "$URI" --mef-fqdn "$MEF_FQDN" --maf-fqdn "$MAF_FQDN" \
  --mef-port 0 --maf-port 0 --maf-delivery-port 0 --portal-port 0 >/dev/null
assert_eq "$(pg "SELECT count(*) FROM pg_tables WHERE tablename = 'enrolees'")" 1 \
  "mte init --store applied the schema"
[[ ! -e "$BASE/mte.db" ]] || fail "mte init --store created an SQLite file too"
CA="$BASE/pki/ca.crt"
read -r -d '' LB_MEF LB_PORTAL P_MAF P_DELIVERY P_MEF1 P_MEF2 P_MEF3 P_PORTAL1 P_PORTAL2 \
  < <(free_ports 9) || true
P_MEFS=("$P_MEF1" "$P_MEF2" "$P_MEF3")
P_PORTALS=("$P_PORTAL1" "$P_PORTAL2")
cfg() {  # cfg DIR KEY JSON_VALUE
  DATA=$1 set_config "$2" "$3"
}
make_dir() {  # make_dir NAME MEF_PORT PORTAL_PORT
  cp -a "$BASE" "$T/$1"
  cfg "$T/$1" mefPort "$2"
  cfg "$T/$1" portalPort "$3"
  cfg "$T/$1" mafPort "$P_MAF"
  cfg "$T/$1" mafDeliveryPort "$P_DELIVERY"
  cfg "$T/$1" mefPublicHost '"127.0.0.1"'
  # A killed MEF's claimed deliveries go to the others 3 s later.
  cfg "$T/$1" outboxLeaseSeconds 3
}
make_dir maf 0 0
for i in 1 2 3; do make_dir "mef$i" "${P_MEFS[$((i - 1))]}" 0; done
for i in 1 2; do make_dir "portal$i" "$LB_MEF" "${P_PORTALS[$((i - 1))]}"; done

PASSWORD="pw-$(openssl rand -hex 8)"
DATA=$BASE add_stakeholder scale "$PASSWORD"

# Devices: RACERS + TRIALS - 1 for the races (each trial binds one; the losers race again) and
# N_CHAOS for the chaos. $T/devices: ID KPM.
N_DEVICES=$(( RACERS + TRIALS - 1 + N_CHAOS ))
python3 - "$N_DEVICES" "$T/manifest.json" "$T/devices" <<'EOF'
import json, os, sys
n, manifest, table = int(sys.argv[1]), sys.argv[2], sys.argv[3]
devices, lines = [], []
for i in range(n):
    d = f"dev-{i:04d}"
    kpm = os.urandom(32).hex()
    devices.append({"deviceId": d, "kpmId": f"kpm-{d}@maker.it.test", "kpmHex": kpm,
                    "claimCode": f"CLAIM-SCALE-{d}"})
    lines.append(f"{d} {kpm}\n")
json.dump(devices, open(manifest, "w"))
open(table, "w").writelines(lines)
EOF
"$MTE" admin --data "$BASE" device import "$T/manifest.json" >/dev/null
declare -A KPM
IDS=()
while read -r id kpm; do IDS+=("$id"); KPM[$id]=$kpm; done <"$T/devices"
pass "$N_DEVICES devices imported into PostgreSQL ($(elapsed_s) s)"

# ---------------------------------------------------------------- processes
start_in() {  # start_in DIR ROLES: sets STARTED_PID
  DATA=$1
  start_server --roles "$2"
  STARTED_PID=${SERVER_PIDS[-1]}
}
declare -A MEF_PID
start_in "$T/maf" maf
for i in 1 2 3; do start_in "$T/mef$i" mef; MEF_PID[$i]=$STARTED_PID; done
for i in 1 2; do start_in "$T/portal$i" portal; done
mkdir -p "$T/nginx/logs"
cat >"$T/nginx/nginx.conf" <<EOF
load_module $NGINX_STREAM;
worker_processes 1;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log warn;
events { worker_connections 8192; }
stream {
  upstream mef {
    server 127.0.0.1:$P_MEF1 max_fails=0;
    server 127.0.0.1:$P_MEF2 max_fails=0;
    server 127.0.0.1:$P_MEF3 max_fails=0;
  }
  upstream portal {
    server 127.0.0.1:$P_PORTAL1;
    server 127.0.0.1:$P_PORTAL2;
  }
  server { listen 127.0.0.1:$LB_MEF; proxy_pass mef; proxy_connect_timeout 2s; }
  server { listen 127.0.0.1:$LB_PORTAL; proxy_pass portal; proxy_connect_timeout 2s; }
}
EOF
nginx -p "$T/nginx" -c "$T/nginx/nginx.conf" -g 'daemon off;' >>"$T/nginx/stderr.log" 2>&1 &
SERVER_PIDS+=($!)
wait_for "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", $LB_PORTAL), 1)' 2>/dev/null" 100 ||
  { cat "$T/nginx/stderr.log" "$T/nginx/error.log" >&2 2>/dev/null; fail "nginx did not start"; }
pass "1 MAF, $N_MEF MEF and $N_PORTAL portal processes on one database, nginx stream in front ($(elapsed_s) s)"

# The portal side, through the load balancer: a fresh connection per entry, so that both portal
# processes serve; the bearer session of one is valid at the other (it is in the database).
# portal_bundles COUNT PREFIX: $T/PREFIX-N.bundle for N in 0..COUNT-1, and $T/PREFIX-N.entry.
portal_bundles() {
  python3 - "$LB_PORTAL" "$CA" "$PASSWORD" "$1" "$T/$2" <<'PY'
import http.client, json, socket, ssl, sys
port, ca, password, count, prefix = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
ctx = ssl.create_default_context(cafile=ca)
class Portal(http.client.HTTPSConnection):
    def connect(self):
        self.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(port)), 20),
                                    server_hostname="localhost")
def call(path, body, want, bearer=None):
    conn = Portal("localhost", int(port))
    headers = {"Content-Type": "application/json", "Connection": "close"}
    if bearer:
        headers["Authorization"] = "Bearer " + bearer
    conn.request("POST", path, json.dumps(body) if body is not None else "", headers)
    r = conn.getresponse()
    text = r.read().decode()
    conn.close()
    if r.status != want:
        sys.exit(f"portal: POST {path} gave {r.status}: {text}")
    return text
bearer = json.loads(call("/api/v1/login", {"name": "scale", "password": password}, 200))["token"]
for i in range(count):
    entry = json.loads(call("/api/v1/enrolees", {"label": f"scale-{i}", "deviceInfo": "rack"}, 201, bearer))
    open(f"{prefix}-{i}.entry", "w").write(str(entry["id"]))
    open(f"{prefix}-{i}.bundle", "w").write(call(f"/api/v1/enrolees/{entry['id']}/tokens", None, 201, bearer))
PY
}

# device DIRNAME ID BUNDLE [mte-enrolee options]: one Flow B enrolment; exit status to DIRNAME/ID.rc.
device() {
  local dir=$1 id=$2 bundle=$3 rc=0
  shift 3
  "$ENROLEE" enrol-bundle --bundle "$bundle" --kpm-id "kpm-$id@maker.it.test" \
    --kpm-hex "${KPM[$id]}" --state "$dir/$id" --timeout-ms 20000 "$@" >"$dir/$id.out" 2>&1 || rc=$?
  echo "$rc" >"$dir/$id.rc"
}

# ---------------------------------------------------------------- 1. races
portal_bundles "$TRIALS" race
[[ "$(head -c 1 "$T/race-0.bundle")" == "{" ]] || fail "no bundle from the portal"
python3 -c 'import json,sys; b=json.load(open(sys.argv[1])); assert b["mefUri"].endswith(":" + sys.argv[2]), b["mefUri"]' \
  "$T/race-0.bundle" "$LB_MEF" || fail "the bundles do not name the load balancer"
FREE=("${IDS[@]:0:$(( RACERS + TRIALS - 1 ))}")
for (( trial = 0; trial < TRIALS; trial++ )); do
  dir="$T/race/$trial"
  mkdir -p "$dir"
  racers=("${FREE[@]:0:$RACERS}")
  for id in "${racers[@]}"; do device "$dir" "$id" "$T/race-$trial.bundle" & done
  wait_for "(( \$(ls '$dir'/*.rc 2>/dev/null | wc -l) == RACERS ))" 1200 ||
    fail "trial $trial: only $(ls "$dir"/*.rc | wc -l) of $RACERS devices finished within 120 s"
  winners=()
  for id in "${racers[@]}"; do
    if [[ "$(cat "$dir/$id.rc")" == 0 ]]; then
      winners+=("$id")
    else
      assert_file_has "$dir/$id.out" "enrolment failed" "trial $trial: $id's refusal"
    fi
  done
  (( ${#winners[@]} == 1 )) || fail "trial $trial: ${#winners[@]} devices enrolled with one token: ${winners[*]}"
  entry=$(cat "$T/race-$trial.entry")
  assert_eq "$(pg "SELECT state || ' ' || generation || ' ' || device_id FROM enrolees WHERE id = $entry")" \
    "enrolled 1 ${winners[0]}" "trial $trial: the entry"
  assert_eq "$(pg "SELECT count(*) FROM outbox WHERE enrolee_id = $entry")" 1 "trial $trial: outbox rows"
  assert_eq "$(pg "SELECT count(*) FROM audit WHERE action IN ('enrolment.commit', 'enrolment.reenrol')
                     AND subject LIKE 'enrolee $entry %'")" 1 "trial $trial: audited commits"
  assert_eq "$(pg "SELECT state FROM tokens WHERE enrolee_id = $entry")" spent "trial $trial: the token"
  # The winner is bound now; the losers race again.
  kept=()
  for id in "${FREE[@]}"; do [[ "$id" == "${winners[0]}" ]] || kept+=("$id"); done
  FREE=("${kept[@]}")
done
pass "$TRIALS trials of $RACERS concurrent redemptions of one token through the load balancer:" \
  "exactly one enrolment each ($(elapsed_s) s)"

# ---------------------------------------------------------------- 2. chaos: kill -9 of MEF processes
CHAOS_IDS=("${IDS[@]:$(( RACERS + TRIALS - 1 ))}")
portal_bundles "$N_CHAOS" chaos
mkdir -p "$T/chaos"
declare -A CHAOS_BUNDLE
for (( i = 0; i < N_CHAOS; i++ )); do CHAOS_BUNDLE[${CHAOS_IDS[$i]}]="$T/chaos-$i.bundle"; done
commits() { pg "SELECT coalesce(sum(generation), 0) FROM enrolees"; }
BASE_COMMITS=$(commits)
# Devices start in waves of 16, each retrying transient failures (a MEF that died under it) for
# up to 90 s; a few milliseconds into each wave a random MEF is killed, and restarted at once.
WAVE=16
KILLS=0
next=0
restart_mef() {  # restart_mef I
  start_in "$T/mef$1" mef
  MEF_PID[$1]=$STARTED_PID
}
while (( next < N_CHAOS || $(ls "$T"/chaos/*.rc 2>/dev/null | wc -l) < N_CHAOS )); do
  for (( w = 0; w < WAVE && next < N_CHAOS; w++, next++ )); do
    id=${CHAOS_IDS[$next]}
    device "$T/chaos" "$id" "${CHAOS_BUNDLE[$id]}" --retry-for 90s &
  done
  # 10-60 ms into the wave: its devices are mid-session then (a wave takes about 30 ms here).
  sleep "0.0$(( RANDOM % 5 + 1 ))"
  victim=$(( RANDOM % N_MEF + 1 ))
  kill9_server "${MEF_PID[$victim]}"
  KILLS=$(( KILLS + 1 ))
  restart_mef "$victim"
  (( $(elapsed_s | cut -d. -f1) < ${MTE_SCALE_DEADLINE_S:-540} )) || fail "the chaos did not end in time"
done
wait_for "(( \$(ls '$T'/chaos/*.rc 2>/dev/null | wc -l) == N_CHAOS ))" 1200 ||
  fail "only $(ls "$T"/chaos/*.rc | wc -l) of $N_CHAOS devices finished"
for id in "${CHAOS_IDS[@]}"; do
  [[ "$(cat "$T/chaos/$id.rc")" == 0 ]] || { tail -n 5 "$T/chaos/$id.out" >&2; fail "device $id did not enrol"; }
done
RETRIED=$(grep -l "attempt 1 failed" "$T"/chaos/*.out 2>/dev/null | wc -l || true)
pass "all $N_CHAOS devices enrolled through the load balancer while MEF processes were killed" \
  "$KILLS times ($RETRIED devices retried) ($(elapsed_s) s)"

wait_for "[[ \$(pg 'SELECT count(*) FROM outbox WHERE delivered_at = 0') == 0 ]]" 600 ||
  fail "outbox not drained within 60 s: $(pg "SELECT id, enrolee_id, attempts, next_attempt_at, last_error FROM outbox WHERE delivered_at = 0")"
N_ALL=$(( TRIALS + N_CHAOS ))
assert_eq "$(pg "SELECT count(*) FROM enrolees")" "$N_ALL" "one entry per token"
assert_eq "$(pg "SELECT count(*) FROM enrolees WHERE state = 'enrolled' AND maf_delivery = 'delivered'
                   AND device_id IS NOT NULL")" "$N_ALL" "entries enrolled, bound, delivered"
GENERATIONS=$(commits)
assert_eq "$(pg "SELECT count(*) FROM outbox")" "$GENERATIONS" "one outbox row per committed generation"
assert_eq "$(pg "SELECT count(*) FROM audit WHERE action IN ('enrolment.commit', 'enrolment.reenrol')")" \
  "$GENERATIONS" "one audited commit per generation"
assert_eq "$(pg "SELECT count(*) FROM maf_credentials")" "$N_ALL" "one MAF credential per entry"
assert_eq "$(pg "SELECT count(*) FROM maf_credentials m JOIN enrolees e ON e.id = m.enrolee_id
                   AND e.generation = m.generation AND e.ke_id = m.km_id")" "$N_ALL" \
  "MAF credentials of the current generation under the current KeID"
assert_eq "$(pg "SELECT count(*) FROM (SELECT 1 FROM audit WHERE action = 'credential.receive'
                   GROUP BY subject, detail HAVING count(*) > 1) AS repeats")" 0 \
  "(KmID, generation) pairs the MAF took in more than once"
assert_eq "$(pg "SELECT count(*) FROM enrolees e WHERE (SELECT count(*) FROM audit a
                   WHERE a.action = 'credential.receive' AND a.detail = 'generation ' || e.generation
                   AND a.subject = 'KmID ' || e.ke_id || ' enrolee ' || e.id) = 1")" "$N_ALL" \
  "entries whose current credential the MAF took in exactly once"
pass "0 lost, 0 duplicated: $N_ALL entries, $(( GENERATIONS - BASE_COMMITS )) commits in the chaos," \
  "every current Km at the MAF exactly once"

# Every chaos device holds the store's current credential, and the MAF accepts it.
pg "SELECT device_id || ' ' || ke_id FROM enrolees WHERE device_id IN ($(printf "'%s'," "${CHAOS_IDS[@]}" | sed 's/,$//')) ORDER BY device_id" >"$T/store-keids"
python3 -c '
import json, sys
for d in sys.argv[2:]:
    print(d, json.load(open(f"{sys.argv[1]}/{d}/enrolment.json"))["keId"])' "$T/chaos" "${CHAOS_IDS[@]}" |
  sort >"$T/device-keids"
diff "$T/store-keids" "$T/device-keids" >&2 || fail "devices whose KeID is not the store's current one"
# 32 at a time (`wait` alone would wait for the servers too).
started=0
for id in "${CHAOS_IDS[@]}"; do
  ( "$ENROLEE" maf-check --maf "127.0.0.1:$P_MAF" --maf-fqdn "$MAF_FQDN" --state "$T/chaos/$id" \
      --timeout-ms 20000 >"$T/chaos/$id.maf" 2>&1; echo $? >"$T/chaos/$id.maf-rc" ) &
  started=$(( started + 1 ))
  if (( started % 32 == 0 || started == N_CHAOS )); then
    wait_for "(( \$(ls '$T'/chaos/*.maf-rc 2>/dev/null | wc -l) == started ))" 600 ||
      fail "maf-checks did not finish within 60 s"
  fi
done
for id in "${CHAOS_IDS[@]}"; do
  [[ "$(cat "$T/chaos/$id.maf-rc")" == 0 ]] || { cat "$T/chaos/$id.maf" >&2; fail "maf-check of $id failed"; }
done
MAF_PORT=$P_MAF
for id in "${CHAOS_IDS[0]}" "${CHAOS_IDS[-1]}"; do
  keid=$(grep -F "$id " "$T/device-keids" | cut -d' ' -f2)
  km=$(km_from_ke "$(od -An -v -tx1 "$T/chaos/$id/ke" | tr -d ' \n')")
  maf_ossl_ok "$id" "$keid" "$km" -tls1_2 -cipher PSK-AES128-CBC-SHA256 >/dev/null
done
pass "every chaos device's KeID is the store's current one; maf-check succeeds for all;" \
  "2 checked with openssl s_client and a Km from openssl dgst"

# ---------------------------------------------------------------- 3. shared lockouts
portal_bundles 1 lock
for i in $(seq 10); do
  python3 -c 'import json,secrets,sys; b=json.load(open(sys.argv[1])); b["token"]=secrets.token_urlsafe(32); json.dump(b, open(sys.argv[2],"w"))' \
    "$T/lock-0.bundle" "$T/guess-$i.bundle"
  device "$T" "${CHAOS_IDS[0]}" "$T/guess-$i.bundle" || true
  assert_file_has "$T/${CHAOS_IDS[0]}.out" "unknown Enrolment-Token" "guess $i"
done
for i in 1 2 3; do
  # Straight at each MEF, not through the balancer: every one refuses the address now.
  python3 -c 'import json,sys; b=json.load(open(sys.argv[1])); b["mefUri"]="https://127.0.0.1:"+sys.argv[3]; json.dump(b, open(sys.argv[2],"w"))' \
    "$T/lock-0.bundle" "$T/lock-mef$i.bundle" "${P_MEFS[$((i - 1))]}"
  device "$T" "${CHAOS_IDS[0]}" "$T/lock-mef$i.bundle" || true
  assert_file_has "$T/${CHAOS_IDS[0]}.out" "too many failed Enrolment-Token attempts" "MEF $i after 10 guesses"
done
pass "10 token guesses spread over the MEFs by the load balancer lock the address at all three"
echo "scale_out_test: all passed in $(elapsed_s) s"
