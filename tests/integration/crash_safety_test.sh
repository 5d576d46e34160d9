#!/usr/bin/env bash
# Must show 4 (server level): crash safety of the enrolment transaction and of the MAF outbox.
#  (a) The server dies right after the MAF stored a credential but before the outbox item is
#      marked delivered (crash point outbox-after-send): after a restart the delivery completes,
#      exactly once at the MAF, and the Km works.
#  (b) The MAF is down: the enrolment still commits, delivery stays pending through failed
#      attempts and a kill -9 of the MEF; once a MAF runs (separate process) and the MEF is back,
#      the credential is delivered exactly once.
#  (c) The MEF dies inside the enrolment before the commit (crash point mef-before-commit): nothing
#      was recorded (no KeID, no outbox item, no MAF credential), and a retry enrols normally.
source "$(dirname "$0")/lib.sh"

init_mte
# Fixed ports: in (b) the MEF and the MAF run in separate processes, and the MAF port must not
# change across restarts.
fixed_ports
add_stakeholder dora "pw-$(openssl rand -hex 8)"
for d in a b c; do
  eval "KPM_$d=\$(openssl rand -hex 32)"
  eval "add_device dev-$d kpm-$d@maker.it.test \"\$KPM_$d\" CLAIM-CRASH-$d"
  claim dora "dev-$d" "CLAIM-CRASH-$d"
done
CA="$DATA/pki/ca.crt"

# start ROLES [failpoint]: starts a server, remembers its pid in LAST_PID.
start() {
  if [[ -n "${2:-}" ]]; then
    MTE_FAILPOINT=$2 start_server --roles "$1"
  else
    start_server --roles "$1"
  fi
  LAST_PID=${SERVER_PIDS[-1]}
}
enrolee_id() { enrolee_field "$1" id; }
receipts_for() { audit_list | grep 'credential.receive' | grep -c "enrolee $1 " || true; }
maf_rows_for() { db_query "SELECT count(*) FROM maf_credentials WHERE enrolee_id = $1"; }
expect_exit_86() {
  local pid=$1 what=$2 rc
  wait_for "! kill -0 $pid 2>/dev/null" 100 || fail "$what: the server is still running"
  reap_server "$pid"
  rc=$REAPED_STATUS
  assert_eq "$rc" 86 "$what: exit status of the crash point"
}
maf_check() {
  "$ENROLEE" maf-check --maf "127.0.0.1:$P_MAF" --maf-fqdn "$MAF_FQDN" --state "$1" >"$T/maf-check.out" 2>&1 ||
    { cat "$T/maf-check.out" >&2; fail "maf-check with $1 failed"; }
}

# ---------------------------------------------------------------- (a) kill mid-delivery
start portal,mef,maf outbox-after-send
pass "(a) server running with crash point outbox-after-send (pid $LAST_PID)"
http_request "$T/enrol.req" POST /enrolment '{}' "$MEF_FQDN"
ossl_client "$P_MEF" "$T/a.out" "$T/enrol.req" -tls1_2 -cipher PSK-AES128-CBC-SHA256 -psk "$KPM_a" \
  -psk_identity kpm-a@maker.it.test -servername "$MEF_FQDN" \
  -keymatexport EXPORTER-oneM2M-Bootstrap -keymatexportlen 48 || true  # the server may die mid-answer
EXPORT_A=$(exporter_hex "$T/a.out")
[[ -n "$EXPORT_A" ]] || { cat "$T/a.out" "$T/a.out.err" >&2; fail "(a) no handshake with the MEF"; }
KEID_A=$(keid_of "$EXPORT_A")
http_parse "$T/a.out"
[[ -z "$(resp json:keId)" ]] || assert_eq "$(resp json:keId)" "$KEID_A" "(a) keId in the answer"
expect_exit_86 "$LAST_PID" "(a)"
ID_A=$(enrolee_id dev-a)
assert_eq "$(db_query "SELECT km_id FROM maf_credentials WHERE enrolee_id = $ID_A")" "$KEID_A" \
  "(a) at the crash the MAF had stored the credential"
assert_eq "$(db_query "SELECT delivered_at FROM outbox WHERE enrolee_id = $ID_A")" 0 \
  "(a) at the crash the outbox item was not marked delivered"
assert_eq "$(enrolee_field dev-a mafDelivery)" pending "(a) enrolee shows delivery pending"
pass "(a) server died (exit 86) between the MAF's store and the outbox mark"

start portal,mef,maf
wait_delivered dev-a "$KEID_A" || fail "(a) delivery did not complete after the restart: $(enrolee_json)"
wait_log "maf: credential KmID $KEID_A already stored (repeat delivery)" ||
  fail "(a) the restart did not redeliver"
assert_eq "$(receipts_for "$ID_A")" 1 "(a) credential.receive audit entries for the enrolee"
assert_eq "$(maf_rows_for "$ID_A")" 1 "(a) MAF credentials for the enrolee"
assert_eq "$(db_query "SELECT count(*) FROM outbox WHERE enrolee_id = $ID_A AND delivered_at > 0")" 1 \
  "(a) one outbox item, delivered"
http_request "$T/session.req" GET /maf/v1/session '' "$MAF_FQDN"
ossl_client "$P_MAF" "$T/a-maf.out" "$T/session.req" -tls1_2 -cipher PSK-AES128-CBC-SHA256 \
  -psk "$(km_of "$EXPORT_A")" -psk_identity "$KEID_A" -servername "$MAF_FQDN" ||
  fail "(a) the Km does not open the MAF"
http_parse "$T/a-maf.out"
assert_eq "$(resp json:kmId)" "$KEID_A" "(a) MAF session"
pass "(a) after the restart: delivered exactly once (repeat delivery absorbed), Km works at the MAF"
stop_servers

# ---------------------------------------------------------------- (b) MAF down, MEF killed
start portal,mef
pass "(b) MEF and portal running without a MAF"
"$ENROLEE" enrol --mef "127.0.0.1:$P_MEF" --mef-fqdn "$MEF_FQDN" --ca "$CA" \
  --kpm-id kpm-b@maker.it.test --kpm-hex "$KPM_b" --state "$T/dev-b" >"$T/b.out" 2>&1 ||
  { cat "$T/b.out" >&2; fail "(b) enrolment failed"; }
KEID_B=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["keId"])' "$T/dev-b/enrolment.json")
ID_B=$(enrolee_id dev-b)
assert_eq "$(enrolee_field dev-b keId)" "$KEID_B" "(b) committed without the MAF"
wait_for "[[ \$(db_query 'SELECT attempts FROM outbox WHERE enrolee_id = $ID_B') -ge 2 ]]" 100 ||
  fail "(b) no repeated delivery attempts"
assert_eq "$(enrolee_field dev-b mafDelivery)" pending "(b) delivery pending"
assert_match "$(db_query "SELECT last_error FROM outbox WHERE enrolee_id = $ID_B")" '.+' \
  "(b) the outbox records why the last attempt failed"
assert_eq "$(db_query "SELECT delivered_at FROM outbox WHERE enrolee_id = $ID_B")" 0 "(b) not delivered"
wait_log "outbox: delivery of enrolee $ID_B to the maf failed (attempt 2)" || fail "(b) failures not logged"
audit=$(audit_list)
assert_eq "$(grep 'enrolment.commit' <<<"$audit" | grep -c "enrolee $ID_B ")" 1 "(b) enrolment audited"
assert_eq "$(receipts_for "$ID_B")" 0 "(b) no receipt while the MAF is down"
pass "(b) failed attempts recorded, item kept pending"
kill9_server "$LAST_PID"
pass "(b) MEF killed with SIGKILL"

start maf
MAF_PID=$LAST_PID
start portal,mef
wait_delivered dev-b "$KEID_B" || fail "(b) delivery did not complete: $(enrolee_json)"
assert_eq "$(receipts_for "$ID_B")" 1 "(b) credential.receive audit entries for the enrolee"
assert_eq "$(maf_rows_for "$ID_B")" 1 "(b) MAF credentials for the enrolee"
assert_eq "$(db_query "SELECT count(*) FROM outbox WHERE enrolee_id = $ID_B AND delivered_at > 0")" 1 \
  "(b) one outbox item, delivered"
maf_check "$T/dev-b"
assert_file_has "$T/maf-check.out" "MAF accepted KmID $KEID_B " "(b) maf-check output"
kill -0 "$MAF_PID" || fail "(b) the MAF process died"
pass "(b) MAF in its own process: delivered exactly once after the restart, maf-check succeeds"
stop_servers

# ---------------------------------------------------------------- (c) death before the commit
start portal,mef,maf mef-before-commit
rc=0
"$ENROLEE" enrol --mef "127.0.0.1:$P_MEF" --mef-fqdn "$MEF_FQDN" --ca "$CA" \
  --kpm-id kpm-c@maker.it.test --kpm-hex "$KPM_c" --state "$T/dev-c" >"$T/c1.out" 2>&1 || rc=$?
[[ $rc -ne 0 ]] || fail "(c) enrolment succeeded although the MEF died before the commit"
expect_exit_86 "$LAST_PID" "(c)"
for f in ke km enrolment.json; do
  [[ ! -e "$T/dev-c/$f" ]] || fail "(c) the device stored $f from a failed enrolment"
done
pass "(c) MEF died before the commit (exit 86); the device kept nothing ($(head -c 120 "$T/c1.out"))"

start portal,mef,maf
ID_C=$(enrolee_id dev-c)
assert_eq "$(enrolee_field dev-c state)" pending "(c) state after the crash"
assert_eq "$(enrolee_field dev-c keId)" "" "(c) no KeID"
assert_eq "$(enrolee_field dev-c generation)" 0 "(c) generation"
assert_eq "$(enrolee_field dev-c mafDelivery)" none "(c) no delivery"
assert_eq "$(enrolee_field dev-c credentialIds)" "[]" "(c) no credential IDs"
assert_eq "$(db_query "SELECT count(*) FROM outbox WHERE enrolee_id = $ID_C")" 0 "(c) no outbox item"
assert_eq "$(maf_rows_for "$ID_C")" 0 "(c) no MAF credential"
assert_eq "$(audit_list | grep 'enrolment\.' | grep -c "enrolee $ID_C " || true)" 0 "(c) no enrolment audited"
pass "(c) after the restart: nothing of the interrupted enrolment was recorded"

"$ENROLEE" enrol --mef "127.0.0.1:$P_MEF" --mef-fqdn "$MEF_FQDN" --ca "$CA" \
  --kpm-id kpm-c@maker.it.test --kpm-hex "$KPM_c" --state "$T/dev-c" >"$T/c2.out" 2>&1 ||
  { cat "$T/c2.out" >&2; fail "(c) retry failed"; }
KEID_C=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["keId"])' "$T/dev-c/enrolment.json")
wait_delivered dev-c "$KEID_C" || fail "(c) retry not delivered"
assert_eq "$(enrolee_field dev-c generation)" 1 "(c) the retry is the first enrolment"
assert_eq "$(receipts_for "$ID_C")" 1 "(c) one MAF receipt"
maf_check "$T/dev-c"
pass "(c) retry enrolled (generation 1, KeID $KEID_C) and maf-check succeeds"

# Nothing of (a) and (b) was disturbed by the later crashes.
assert_eq "$(db_query "SELECT count(*) FROM maf_credentials")" 3 "one MAF credential per enrolee"
assert_eq "$(audit_list | grep -c 'credential.receive')" 3 "three receipts in total"
pass "exactly one delivery per enrolee across all crashes"
