#!/usr/bin/env bash
# Chaos, bounded: 48 devices (half Flow A with their Kpm, half Flow B with a token bundle, all
# `mte-enrolee --retry-for`) enrol in four waves of 12 against a MEF (`--roles portal,mef`) and a
# MAF (`--roles maf`) in separate processes on one data directory. The MEF is killed with SIGKILL
# while waves 1, 3 and 4 enrol, the MAF while wave 2 enrols (an outage of at least 3 s follows,
# through waves 3 and 4) and again while the backlog drains after the outage; in between, a MEF
# dies at the crash point outbox-after-send (the MAF has stored a credential, the MEF has not
# marked it), which makes at least one repeat delivery certain. Then: 0 lost, 0 duplicated, all
# delivered.
#
# Why these checks catch a loss or a duplicate:
# - Lost enrolment: every device must exit 0 (it got a 201 and stored KeID/Ke/Km), and its stored
#   KeID must be the store's current KeID of its entry; a commit lost after its 201, or a 201
#   without a commit, breaks the equality.
# - Lost delivery: the outbox must end with no undelivered row, every entry `delivered`, and the
#   MAF must hold, for every entry, the credential of its current generation under its current
#   KeID. A row marked delivered that never reached the MAF leaves the MAF without that
#   credential (or with an older generation), and the Km the device holds then fails the MAF
#   handshake (maf-check for every device; for a sample, an openssl s_client whose Km is computed
#   by openssl dgst from the device's Ke).
# - Duplicate: one entry per device; one outbox row per generation (rows == sum of generations,
#   commits audited == sum of generations); exactly one MAF credential per entry; and exactly one
#   `credential.receive` audit entry per (KmID, generation). The MAF writes that entry in the
#   transaction that stores the credential, so a repeat delivery that the MAF took as new (or a
#   second insert) shows as a second entry. Repeat deliveries themselves are expected (a kill
#   between the MAF's commit and the MEF's mark); the MAF must absorb them.
# - Flow B: every token is spent exactly once. A Flow B device whose 201 was lost to a kill after
#   the commit retries with the same, spent, token, and enrols again with it (a re-enrolment,
#   protocol.md §9.7); the checks above hold for it too.
# Every wait is on a condition, bounded, with a message that says what did not happen.
source "$(dirname "$0")/lib.sh"

START=$(now_ms)
elapsed_s() { awk -v ms=$(( $(now_ms) - START )) 'BEGIN { printf "%.1f", ms / 1000 }'; }
N_WAVE=12  # devices per wave, alternately Flow A and Flow B; four waves
N=$(( 4 * N_WAVE ))

init_mte
fixed_ports
CA="$DATA/pki/ca.crt"
PASSWORD="pw-$(openssl rand -hex 8)"
add_stakeholder chaos "$PASSWORD"

# One manifest for all devices: dev-NN, even NN Flow A, odd NN Flow B. $T/devices: ID FLOW KPM.
python3 - "$N" "$T/manifest.json" "$T/devices" <<'EOF'
import json, os, sys
n, manifest, table = int(sys.argv[1]), sys.argv[2], sys.argv[3]
devices, lines = [], []
for i in range(n):
    d = f"dev-{i:02d}"
    kpm = os.urandom(32).hex()
    devices.append({"deviceId": d, "kpmId": f"kpm-{d}@maker.it.test", "kpmHex": kpm,
                    "claimCode": f"CLAIM-CHAOS-{d}"})
    lines.append(f"{d} {'AB'[i % 2]} {kpm}\n")
json.dump(devices, open(manifest, "w"))
open(table, "w").writelines(lines)
EOF
"$MTE" admin --data "$DATA" device import "$T/manifest.json" >/dev/null
declare -A FLOW KPM
IDS=()
while read -r id flow kpm; do IDS+=("$id"); FLOW[$id]=$flow; KPM[$id]=$kpm; done <"$T/devices"

start_maf() { start_server --roles maf; MAF_PID=${SERVER_PIDS[-1]}; }
start_mef() { start_server --roles portal,mef; MEF_PID=${SERVER_PIDS[-1]}; }
start_maf
start_mef
# The portal side in one process over one keep-alive connection (a claim for each Flow A device,
# an entry and a token bundle $T/ID.bundle for each Flow B device): one curl per call would cost
# more than the chaos itself.
python3 - "$P_PORTAL" "$CA" "$PASSWORD" "$T/devices" "$T" <<'PY'
import http.client, json, socket, ssl, sys
port, ca, password, table, out = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=ca)
class Portal(http.client.HTTPSConnection):
    def connect(self):
        self.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(port)), 20),
                                    server_hostname="localhost")
conn = Portal("localhost", int(port))
def call(path, body, want, bearer=None):
    headers = {"Content-Type": "application/json"}
    if bearer:
        headers["Authorization"] = "Bearer " + bearer
    conn.request("POST", path, json.dumps(body) if body is not None else "", headers)
    r = conn.getresponse()
    text = r.read().decode()
    if r.status != want:
        sys.exit(f"portal: POST {path} gave {r.status}: {text}")
    return text
bearer = json.loads(call("/api/v1/login", {"name": "chaos", "password": password}, 200))["token"]
for line in open(table):
    d, flow, _ = line.split()
    if flow == "A":
        call("/api/v1/enrolees", {"deviceId": d, "claimCode": f"CLAIM-CHAOS-{d}"}, 201, bearer)
    else:
        entry = json.loads(call("/api/v1/enrolees", {"label": d, "deviceInfo": "chaos rack"}, 201, bearer))
        open(f"{out}/{d}.bundle", "w").write(call(f"/api/v1/enrolees/{entry['id']}/tokens", None, 201, bearer))
PY
pass "$N devices imported, $(( N / 2 )) claimed (Flow A), $(( N / 2 )) token bundles (Flow B) ($(elapsed_s) s)"

# ---------------------------------------------------------------- the devices
mkdir -p "$T/dev"
# A device: `mte-enrolee` retrying transient failures for up to 45 s. Its output goes to
# $T/dev/ID.out, its exit status to $T/dev/ID.rc; the pid of a running mte-enrolee is in
# $T/dev/ID.pid, so that an early exit of the test stops it.
enrolee_run() {
  local id=$1 rc=0
  shift
  "$ENROLEE" "$@" --kpm-id "kpm-$id@maker.it.test" --kpm-hex "${KPM[$id]}" --state "$T/dev/$id" \
    --timeout-ms 10000 --retry-for 45s >>"$T/dev/$id.out" 2>&1 &
  echo $! >"$T/dev/$id.pid"
  wait $! || rc=$?
  rm -f "$T/dev/$id.pid"
  return "$rc"
}
enrol_a() { enrolee_run "$1" enrol --mef "127.0.0.1:$P_MEF" --mef-fqdn "$MEF_FQDN" --ca "$CA"; }
start_device() {
  local id=$1
  (
    rc=0
    if [[ "${FLOW[$id]}" == A ]]; then
      enrol_a "$id" || rc=$?
    else
      enrolee_run "$id" enrol-bundle --bundle "$T/$id.bundle" || rc=$?
    fi
    echo "$rc" >"$T/dev/$id.rc"
  ) &
}
stop_devices() {
  local f
  for f in "$T"/dev/*.pid; do [[ -f "$f" ]] && kill -TERM "$(cat "$f")" 2>/dev/null || true; done
}
trap 'stop_devices; cleanup' EXIT
start_wave() {
  local i
  for (( i = $1 * N_WAVE; i < ($1 + 1) * N_WAVE; i++ )); do start_device "${IDS[$i]}"; done
}

# ---------------------------------------------------------------- the chaos
commits() { db_query "SELECT coalesce(sum(generation), 0) FROM enrolees"; }
maf_rows() { db_query "SELECT count(*) FROM maf_credentials"; }
receipts() { db_query "SELECT count(*) FROM audit WHERE action = 'credential.receive'"; }
# wave N WHAT: starts wave N, then waits (polling every 20 ms, up to 30 s) until two more
# enrolments have committed, so that what follows hits the wave while it enrols.
wave() {
  local base
  base=$(commits)
  start_wave "$1"
  wait_for "(( \$(commits) >= base + 2 ))" 1500 0.02 ||
    fail "$2: no enrolment committed ($(commits) in all)"
}
# kill_mef WHAT [FAILPOINT]: SIGKILL, then a new MEF (with the crash point, if given).
kill_mef() {
  kill9_server "$MEF_PID"
  pass "MEF killed with SIGKILL ($1; $(commits) commits) at $(elapsed_s) s"
  if [[ -n "${2:-}" ]]; then MTE_FAILPOINT=$2 start_mef; else start_mef; fi
}

wave 0 "wave 1"
kill_mef "wave 1 enrolling"
wave 1 "wave 2"
kill9_server "$MAF_PID"
OUTAGE_MS=$(now_ms)
pass "MAF killed with SIGKILL (wave 2 enrolling; $(maf_rows) credentials at the MAF): outage from $(elapsed_s) s"
wave 2 "wave 3, MAF down"
kill_mef "wave 3 enrolling, MAF down"
wave 3 "wave 4, MAF down"
# This MEF dies right after its first successful delivery, before marking it (the crash point):
# the next one must deliver that item again, and the MAF must take it only once.
kill_mef "wave 4 enrolling, MAF down" outbox-after-send
wait_for "[[ \$(db_query 'SELECT count(*) FROM outbox WHERE attempts > 0') -gt 0 ]]" 300 ||
  fail "outage: no failed delivery attempt recorded"
# The outage lasts at least 3 s.
wait_for "(( \$(now_ms) - OUTAGE_MS >= 3000 ))" 100 || fail "the outage did not last 3 s"
BACKLOG=$(db_query "SELECT count(*) FROM outbox WHERE delivered_at = 0")
start_maf
pass "MAF restarted after a $(( $(now_ms) - OUTAGE_MS )) ms outage, $BACKLOG deliveries pending"
BEFORE=$(receipts)
wait_for "! kill -0 $MEF_PID 2>/dev/null" 300 || fail "the MEF did not reach its crash point after the outage"
reap_server "$MEF_PID"
assert_eq "$REAPED_STATUS" 86 "exit status of the MEF at its crash point"
pass "MEF died at its crash point after its first delivery at $(elapsed_s) s"
start_mef
# Waves 3 and 4 enrolled during the outage: at least 24 deliveries were pending.
wait_for "(( \$(receipts) > BEFORE + 1 ))" 1500 0.02 || fail "the MAF received nothing after the crash point"
kill9_server "$MAF_PID"
pass "MAF killed with SIGKILL while the backlog drains ($(maf_rows) credentials at the MAF) at $(elapsed_s) s"
start_maf

# ---------------------------------------------------------------- every device enrolled
wait_for "(( \$(ls '$T'/dev/*.rc 2>/dev/null | wc -l) == N ))" 600 ||
  fail "only $(ls "$T"/dev/*.rc 2>/dev/null | wc -l) of $N devices finished within 60 s"
for id in "${IDS[@]}"; do
  [[ "$(cat "$T/dev/$id.rc")" == 0 ]] || { tail -n 5 "$T/dev/$id.out" >&2; fail "device $id did not enrol"; }
done
RETRIED=$(grep -l "attempt 1 failed" "$T"/dev/*.out 2>/dev/null | wc -l)
REPRESENTED=$(audit_list | grep -c 'presented again' || true)
pass "all $N devices enrolled ($RETRIED retried a transient failure, $REPRESENTED Flow B" \
  "re-enrolments with a spent token after a lost 201) at $(elapsed_s) s"

wait_for "[[ \$(db_query 'SELECT count(*) FROM outbox WHERE delivered_at = 0') == 0 ]]" 450 ||
  fail "outbox not drained within 45 s: $(db_query "SELECT id, enrolee_id, generation, attempts,
        next_attempt_at, last_error FROM outbox WHERE delivered_at = 0")"
pass "outbox drained at $(elapsed_s) s"

# ---------------------------------------------------------------- 0 lost, 0 duplicated
q() { db_query "$1"; }
assert_eq "$(q "SELECT count(*) FROM enrolees")" "$N" "one entry per device"
assert_eq "$(q "SELECT count(*) FROM enrolees WHERE state = 'enrolled' AND maf_delivery = 'delivered'
                  AND device_id IS NOT NULL")" "$N" "entries enrolled, bound to a device, delivered"
GENERATIONS=$(q "SELECT sum(generation) FROM enrolees")
assert_eq "$(q "SELECT count(*) FROM outbox")" "$GENERATIONS" "one outbox row per committed generation"
assert_eq "$(q "SELECT count(*) FROM audit WHERE action IN ('enrolment.commit', 'enrolment.reenrol')")" \
  "$GENERATIONS" "one audited commit per generation"
assert_eq "$(q "SELECT count(*) FROM outbox WHERE delivered_at = 0")" 0 "undelivered outbox rows"
assert_eq "$(q "SELECT count(*) FROM maf_credentials")" "$N" "one MAF credential per entry"
assert_eq "$(q "SELECT count(*) FROM maf_credentials m JOIN enrolees e ON e.id = m.enrolee_id
                  AND e.generation = m.generation AND e.ke_id = m.km_id")" "$N" \
  "MAF credentials of the current generation under the current KeID"
assert_eq "$(q "SELECT count(*) FROM (SELECT 1 FROM audit WHERE action = 'credential.receive'
                  GROUP BY subject, detail HAVING count(*) > 1)")" 0 \
  "(KmID, generation) pairs the MAF took in more than once"
assert_eq "$(q "SELECT count(*) FROM enrolees e WHERE (SELECT count(*) FROM audit a
                  WHERE a.action = 'credential.receive' AND a.detail = 'generation ' || e.generation
                  AND a.subject = 'KmID ' || e.ke_id || ' enrolee ' || e.id) = 1")" "$N" \
  "entries whose current credential the MAF took in exactly once"
assert_eq "$(q "SELECT count(*) FROM tokens WHERE state = 'spent'")" "$(( N / 2 ))" "spent tokens"
assert_eq "$(q "SELECT count(*) FROM tokens")" "$(( N / 2 ))" "tokens issued"
REPEATS=$(grep -caF "(repeat delivery)" "$SERVE_LOG" || true)
(( REPEATS >= 1 )) || fail "no repeat delivery, although a MEF died between a delivery and its mark"
pass "store: $N entries, $GENERATIONS generations, every current Km at the MAF exactly once" \
  "($REPEATS repeat deliveries absorbed by the MAF)"

# Each device holds the current credential, and the MAF accepts it (all maf-checks at once).
q "SELECT device_id || ' ' || ke_id FROM enrolees ORDER BY device_id" >"$T/store-keids"
python3 -c '
import json, sys
for d in sys.argv[2:]:
    print(d, json.load(open(f"{sys.argv[1]}/{d}/enrolment.json"))["keId"])' "$T/dev" "${IDS[@]}" |
  sort >"$T/device-keids"
diff "$T/store-keids" "$T/device-keids" >&2 || fail "devices whose KeID is not the store's current one"
for id in "${IDS[@]}"; do
  ( "$ENROLEE" maf-check --maf "127.0.0.1:$P_MAF" --maf-fqdn "$MAF_FQDN" --state "$T/dev/$id" \
      --timeout-ms 20000 >"$T/dev/$id.maf" 2>&1; echo $? >"$T/dev/$id.maf-rc" ) &
done
wait_for "(( \$(ls '$T'/dev/*.maf-rc 2>/dev/null | wc -l) == N ))" 300 || fail "maf-checks did not finish within 30 s"
for id in "${IDS[@]}"; do
  [[ "$(cat "$T/dev/$id.maf-rc")" == 0 ]] || { cat "$T/dev/$id.maf" >&2; fail "maf-check of $id failed"; }
done
# A sample, independently: Km = HMAC-SHA-256(Ke, label || MAF-ID) by openssl dgst from the Ke
# the device stored, and an openssl s_client PSK handshake with it.
MAF_PORT=$P_MAF
for id in dev-00 dev-13 dev-26 dev-39 dev-46 dev-47; do
  keid=$(grep -F "$id " "$T/device-keids" | cut -d' ' -f2)
  km=$(km_from_ke "$(od -An -v -tx1 "$T/dev/$id/ke" | tr -d ' \n')")
  maf_ossl_ok "$id" "$keid" "$km" -tls1_2 -cipher PSK-AES128-CBC-SHA256 >/dev/null
done
pass "every device's KeID is the store's current one, and maf-check succeeds for all $N"
pass "sample of 6 (Flow A and B, every wave): Km from Ke by openssl dgst opens the MAF"
echo "chaos_test: all passed in $(elapsed_s) s"
