#!/usr/bin/env bash
# The certificate RSPF's revocation checks (TS-0003 §8.3.2.2; RFC 6960 OCSP, RFC 5280 CRL) with
# the real binaries: a loopback OCSP responder (`openssl ocsp` behind ocsp_responder.py), device
# certificates from `mte admin pki`, Flow A through `mte-enrolee enrol --cert`.
# A good device enrols and the audit names the OCSP outcome; revoked and unknown devices are
# refused with a clear reason and nothing recorded; a responder that is down refuses by default and
# accepts under a fail-open device CA (audited as such); a silent responder costs ocspTimeoutMs and
# holds up nobody else (PPSK and CRL-checked enrolments finish first); garbage and huge answers are
# unusable and the server stays healthy; CRL source: good, revoked, and reloaded when replaced.
source "$(dirname "$0")/lib.sh"

START=$(now_ms)
init_mte
set_config ocspTimeoutMs 1500
add_stakeholder olga "pw-$(openssl rand -hex 8)"

# --- device PKI: CA "maker" (OCSP, fail-closed), "lenient" (OCSP, fail-open), "crlca" (CRL)
device_ca maker
device_ca lenient
device_ca crlca
start_ocsp ocsp "$T/index.txt" "$T/maker"
OCSP_PID_MAIN=$OCSP_PID URL_MAIN=$OCSP_URL
# Devices whose responder will be down, and a silent one, each on its own responder.
start_ocsp down "$T/index-down.txt" "$T/maker"
DOWN_PID=$OCSP_PID URL_DOWN=$OCSP_URL
start_ocsp lenient "$T/index-lenient.txt" "$T/lenient"
LENIENT_PID=$OCSP_PID URL_LENIENT=$OCSP_URL
start_ocsp silent "$T/index-silent.txt" "$T/maker" --mode silent
URL_SILENT=$OCSP_URL

# cert_dev ID CA URL INDEX STATE: issues, lists in the responder's index (good|revoked|none),
# imports by certSha256 and claims.
cert_dev() {
  local id=$1 ca=$2 url=$3 index=$4 state=$5
  issue_cert "$id" "$T/$ca" --ocsp-url "$url"
  case $state in
    good) index_good "$index" "$SERIAL" ;;
    revoked) index_revoked "$index" "$SERIAL" ;;
  esac
  add_cert_device "$id" certSha256 "$CERT_SHA" "CLAIM-$id"
  claim olga "$id" "CLAIM-$id"
}
cert_dev good-1 maker "$URL_MAIN" "$T/index.txt" good
GOOD1_SHA=$CERT_SHA
cert_dev revoked-1 maker "$URL_MAIN" "$T/index.txt" revoked
cert_dev unknown-1 maker "$URL_MAIN" "$T/index.txt" none
cert_dev garbage-1 maker "$URL_MAIN" "$T/index.txt" good
cert_dev huge-1 maker "$URL_MAIN" "$T/index.txt" good
cert_dev http500-1 maker "$URL_MAIN" "$T/index.txt" good
cert_dev after-1 maker "$URL_MAIN" "$T/index.txt" good
cert_dev down-1 maker "$URL_DOWN" "$T/index-down.txt" good
cert_dev open-1 lenient "$URL_LENIENT" "$T/index-lenient.txt" good
for i in 1 2 3; do cert_dev "silent-$i" maker "$URL_SILENT" "$T/index-silent.txt" good; done

# CRL: an openssl ca database for the CRL device CA.
crl_ca_db "$T/crldb" "$T/crlca"
for id in crl-good crl-rev crl-late crl-fast; do
  issue_cert "$id" "$T/crlca"
  add_cert_device "$id" certSha256 "$CERT_SHA" "CLAIM-$id"
  claim olga "$id" "CLAIM-$id"
done
openssl ca -batch -config "$T/crldb/ca.cnf" -revoke "$T/crl-rev/device.crt" -crl_reason keyCompromise 2>/dev/null
openssl ca -batch -config "$T/crldb/ca.cnf" -gencrl -out "$T/crl-v1.pem" 2>/dev/null
cp "$T/crl-v1.pem" "$T/ca.crl"

"$MTE" admin --data "$DATA" device-ca add "$T/maker/ca.crt" --name maker >/dev/null
"$MTE" admin --data "$DATA" device-ca add "$T/lenient/ca.crt" --name lenient --ocsp-fail-open \
  >/dev/null 2>&1
"$MTE" admin --data "$DATA" device-ca add "$T/crlca/ca.crt" --name crlca --crl "$T/ca.crl" >/dev/null

# A PPSK device for the concurrency check.
KPM=$(openssl rand -hex 32)
add_device psk-1 kpm-psk-1@maker.it.test "$KPM" CLAIM-psk-1
claim olga psk-1 CLAIM-psk-1
start_server
MTE_PID=${SERVER_PIDS[-1]}
pass "mte serve running (MEF $MEF_PORT), OCSP responder at $URL_MAIN, ocspTimeoutMs 1500"

# accepted NAME ID AUDIT_TEXT...: the device enrols; its audit entry holds every AUDIT_TEXT.
accepted() {
  local name=$1 id=$2 rc text
  shift 2
  rc=$(enrol_cert "$T/$name.out" "$T/$id/device.crt" "$T/$id/device.key")
  [[ "$rc" == 0 ]] || { cat "$T/$name.out" >&2; tail -n 5 "$SERVE_LOG" >&2; fail "$name: enrolment exited $rc"; }
  assert_file_has "$T/$name.out" "(RSPF CERT)" "$name: mte-enrolee output"
  assert_eq "$(enrolee_field "$id" state)" enrolled "$name: state"
  # The newest enrolment entry of this device (a re-enrolment is audited as enrolment.reenrol).
  audit_list | grep -aE "enrolment\.(commit|reenrol) .*device $id " | tail -n 1 >"$T/$name.audit"
  [[ -s "$T/$name.audit" ]] || fail "$name: no audit entry for $id"
  for text in "$@"; do assert_file_has "$T/$name.audit" "$text" "$name: audit"; done
  pass "$name: enrolled; audit: $(grep -o 'RSPF CERT.*' "$T/$name.audit" | cut -c1-160)"
}

# refused NAME ID REASON: the device is refused (HTTP 403 / RSC 4103 as mte-enrolee reports it)
# with REASON in the m2m:dbg text, the MEF log explains, nothing is recorded.
refused() {
  local name=$1 id=$2 reason=$3 rc before after
  before=$(state_snapshot)
  rc=$(enrol_cert "$T/$name.out" "$T/$id/device.crt" "$T/$id/device.key")
  assert_ne "$rc" 0 "$name: mte-enrolee exit status"
  assert_file_has "$T/$name.out" "$reason" "$name: reason reported to the device"
  assert_file_has "$T/$name.out" "4103" "$name: RSC"
  assert_file_has "$T/$name.out" "403" "$name: HTTP status"
  wait_log "mef: enrolment refused for" || fail "$name: no refusal in the MEF log"
  grep -aF "mef: enrolment refused for" "$SERVE_LOG" | grep -qaF "$reason" ||
    { tail -n 5 "$SERVE_LOG" >&2; fail "$name: the MEF log does not give the reason '$reason'"; }
  after=$(state_snapshot)
  [[ "$before" == "$after" ]] || { diff <(echo "$before") <(echo "$after") >&2; fail "$name: state changed"; }
  assert_eq "$(enrolee_field "$id" state)" pending "$name: entry state"
  pass "$name: refused: $(grep -ao "$reason.*" "$T/$name.out" | head -n 1 | cut -c1-150)"
}

# --- good, revoked, unknown
accepted good-1 good-1 "RSPF CERT, certificate sha256 $GOOD1_SHA, device CA 'maker', OCSP good from $URL_MAIN, thisUpdate "
refused revoked-1 revoked-1 "device certificate revoked (OCSP, at 2026-12-01T00:00:00Z"
refused unknown-1 unknown-1 "device certificate status unknown to the OCSP responder"

# --- responder down: fail-closed by default, fail-open for the lenient CA
kill -TERM "$DOWN_PID" "$LENIENT_PID"
wait "$DOWN_PID" "$LENIENT_PID" 2>/dev/null || true
refused down-1 down-1 "device certificate status could not be checked: OCSP responder $URL_DOWN"
accepted open-1 open-1 "device CA 'lenient', revocation status unavailable (OCSP responder $URL_LENIENT" \
  "accepted: device CA 'lenient' is fail-open"

# --- a silent responder: each waits ocspTimeoutMs (1.5 s); meanwhile PPSK and CRL devices enrol
BEFORE_AUDIT=$(audit_list | grep -c enrolment || true)
t0=$(now_ms)
for i in 1 2 3; do
  ( rc=$(enrol_cert "$T/silent-$i.out" "$T/silent-$i/device.crt" "$T/silent-$i/device.key")
    echo "$rc $(now_ms)" >"$T/silent-$i.done" ) &
done
sleep 0.2  # the three are in their OCSP wait (1.5 s) by now
timeout 20 "$ENROLEE" enrol --mef "127.0.0.1:$MEF_PORT" --mef-fqdn "$MEF_FQDN" --kpm-id kpm-psk-1@maker.it.test \
  --kpm-hex "$KPM" --state "$T/psk-1.state" >"$T/psk-1.out" 2>&1 || { cat "$T/psk-1.out" >&2; fail "PPSK enrolment during the silent OCSP waits"; }
t_psk=$(now_ms)
rc=$(enrol_cert "$T/crl-fast.out" "$T/crl-fast/device.crt" "$T/crl-fast/device.key")
[[ "$rc" == 0 ]] || { cat "$T/crl-fast.out" >&2; fail "CRL enrolment during the silent OCSP waits"; }
t_crl=$(now_ms)
wait_for "[[ -s '$T/silent-1.done' && -s '$T/silent-2.done' && -s '$T/silent-3.done' ]]" 100 ||
  fail "the silent-responder enrolments did not finish"
for i in 1 2 3; do
  read -r rc t_end <"$T/silent-$i.done"
  assert_ne "$rc" 0 "silent-$i: exit status"
  assert_file_has "$T/silent-$i.out" "device certificate status could not be checked: OCSP responder $URL_SILENT" "silent-$i"
  (( t_end - t0 >= 1300 && t_end - t0 <= 4000 )) || fail "silent-$i: refused after $((t_end - t0)) ms, not ~1500"
  (( t_psk < t_end && t_crl < t_end )) || fail "silent-$i finished at +$((t_end - t0)) ms, before PPSK (+$((t_psk - t0))) / CRL (+$((t_crl - t0)))"
  assert_eq "$(enrolee_field "silent-$i" state)" pending "silent-$i: entry state"
done
assert_eq "$(enrolee_field psk-1 state)" enrolled "PPSK device"
assert_eq "$(enrolee_field crl-fast state)" enrolled "CRL device"
grep -a "enrolment\..*device silent-" <(audit_list) && fail "an audit entry for a silent-responder device"
pass "silent responder: 3 refused after $(( $(cut -d' ' -f2 "$T/silent-1.done") - t0 )) ms ($(grep -ao 'could not be checked: .*' "$T/silent-1.out" | cut -c1-100)); PPSK done at +$((t_psk - t0)) ms, CRL at +$((t_crl - t0)) ms"

# --- unusable answers; the server stays healthy
ocsp_mode ocsp garbage
refused garbage-1 garbage-1 "device certificate status could not be checked: unusable answer from OCSP responder $URL_MAIN: OCSP response is not valid DER"
ocsp_mode ocsp huge
refused huge-1 huge-1 "device certificate status could not be checked: OCSP responder $URL_MAIN: OCSP responder 127.0.0.1:$(cat "$T/ocsp.port"): HTTP body exceeds the limit"
ocsp_mode ocsp http500
refused http500-1 http500-1 "device certificate status could not be checked: OCSP responder $URL_MAIN: answered HTTP 500"
ocsp_mode ocsp good
kill -0 "$MTE_PID" 2>/dev/null || fail "mte serve died"
accepted after-1 after-1 "device CA 'maker', OCSP good from $URL_MAIN"
pass "after garbage, huge and HTTP 500 answers the server still enrols"

# --- CRL source
accepted crl-good crl-good "device CA 'crlca', CRL good, thisUpdate "
refused crl-rev crl-rev "device certificate revoked (CRL, at "
assert_file_has "$T/crl-rev.out" "keyCompromise)" "crl-rev: the revocation reason"
accepted crl-late crl-late "device CA 'crlca', CRL good"
# Revoke crl-late and replace the CRL file while the server runs: a re-enrolment is refused.
openssl ca -batch -config "$T/crldb/ca.cnf" -revoke "$T/crl-late/device.crt" 2>/dev/null
openssl ca -batch -config "$T/crldb/ca.cnf" -gencrl -out "$T/crl-v2.pem" 2>/dev/null
cp "$T/crl-v2.pem" "$T/ca.crl.new" && mv "$T/ca.crl.new" "$T/ca.crl"
before=$(state_snapshot)
rc=$(enrol_cert "$T/crl-late-2.out" "$T/crl-late/device.crt" "$T/crl-late/device.key")
assert_ne "$rc" 0 "crl-late after the CRL was replaced"
assert_file_has "$T/crl-late-2.out" "device certificate revoked (CRL, at " "crl-late after the CRL was replaced"
[[ "$before" == "$(state_snapshot)" ]] || fail "crl-late: state changed by the refused re-enrolment"
assert_eq "$(enrolee_field crl-late generation)" 1 "crl-late generation"
pass "CRL replaced while running: crl-late's re-enrolment refused ($(grep -ao 'device certificate revoked.*' "$T/crl-late-2.out" | cut -c1-100))"
# The good device is still good under the new CRL.
accepted crl-good-2 crl-good "CRL good"
assert_eq "$(enrolee_field crl-good generation)" 2 "crl-good re-enrolment generation"

kill -0 "$MTE_PID" 2>/dev/null || fail "mte serve died"
echo "cert_ocsp_test: all passed in $(( ($(now_ms) - START) / 1000 )) s"
