#!/usr/bin/env bash
# Flow B (seed 8.y.4) with the certificate RSPF, with the real processes over loopback: `mte serve`,
# the portal over curl, `mte-enrolee await-obf --cert/--key` and `mte-obf deliver`. The inner
# handshake nested in the server-authenticated outer session is a mutual-certificate one.
# A certificate device enrols and reports RSPF CERT; the portal and `mte admin` show the entry
# enrolled with rspf CERT; the audit names the OCSP outcome. A revoked device is refused with the
# reason, nothing is recorded and the token stays active: the same bundle then enrols a device that
# holds both a Kpm and a certificate, which gets CERT (the MEF's default preference); with
# `rspfs: ["PPSK","CERT"]` in mte.json such a device gets PPSK.
source "$(dirname "$0")/lib.sh"

START=$(now_ms)
init_mte
PASSWORD="pw-$(openssl rand -hex 12)"
add_stakeholder fay "$PASSWORD"
device_ca maker
start_ocsp ocsp "$T/index.txt" "$T/maker"
"$MTE" admin --data "$DATA" device-ca add "$T/maker/ca.crt" --name maker >/dev/null

# Flow B needs no claim code; the manifest format requires one.
issue_cert fb-cert "$T/maker" --ocsp-url "$OCSP_URL"
index_good "$T/index.txt" "$SERIAL"
CERT_SHA_FB=$CERT_SHA
add_cert_device fb-cert certSha256 "$CERT_SHA" "CLAIM-$(openssl rand -hex 4)"
issue_cert fb-rev "$T/maker" --ocsp-url "$OCSP_URL"
index_revoked "$T/index.txt" "$SERIAL"
add_cert_device fb-rev certSha256 "$CERT_SHA" "CLAIM-$(openssl rand -hex 4)"
# Two devices with both credentials: a Kpm and a factory certificate.
declare -A MIXED_KPM
for id in fb-mixed1 fb-mixed2; do
  issue_cert "$id" "$T/maker" --ocsp-url "$OCSP_URL"
  index_good "$T/index.txt" "$SERIAL"
  MIXED_KPM[$id]=$(openssl rand -hex 32)
  printf '[{"deviceId":"%s","kpmId":"kpm-%s@maker.it.test","kpmHex":"%s","certSha256":"%s","claimCode":"C-%s"}]' \
    "$id" "$id" "${MIXED_KPM[$id]}" "$CERT_SHA" "$id" >"$T/manifest-$id.json"
  "$MTE" admin --data "$DATA" device import "$T/manifest-$id.json" >/dev/null
done
start_server
BEARER=$(portal_login fay "$PASSWORD")
[[ -n "$BEARER" ]] || fail "portal login"

snapshot() { { state_snapshot; db_query "SELECT id, enrolee_id, state, spent_at FROM tokens ORDER BY id;"; } >"$T/$1.snap"; }
same_snapshot() { cmp -s "$T/$1.snap" "$T/$2.snap" || { diff "$T/$1.snap" "$T/$2.snap" >&2; fail "$3: state changed"; }; }

# start_cert_device NAME DEVICE_ID SETUP_CODE [await-obf args]: start_device_with the device's
# certificate ($T/DEVICE_ID/device.crt, .key) and whatever else is given.
start_cert_device() {
  local name=$1 id=$2 code=$3
  shift 3
  start_device_with "$name" "$id" "$code" --cert "$T/$id/device.crt" --key "$T/$id/device.key" "$@"
}

# flow_b_ok NAME ENTRY BUNDLE DEVICE_ID RSPF [await-obf args]: one complete Flow B; checks the
# OBF, the device, the portal, `mte admin enrolee list` and the token; sets KEID.
flow_b_ok() {
  local name=$1 entry=$2 bundle=$3 id=$4 rspf=$5 code rc
  shift 5
  code=$("$ENROLEE" new-setup-code)
  start_cert_device "$name" "$id" "$code" "$@"
  rc=$(obf_deliver "$T/obf-$name.out" "$bundle" "$DEVICE_PORT" "$code")
  [[ "$rc" == 0 ]] || { cat "$T/obf-$name.out" "$T/$name.log" >&2; tail -n 5 "$SERVE_LOG" >&2; fail "$name: mte-obf deliver exited $rc"; }
  assert_file_has "$T/obf-$name.out" "outcome: device $id enrolled with KeID " "$name: OBF output"
  KEID=$(sed -nE 's/.*enrolled with KeID ([^ ]+).*/\1/p' "$T/obf-$name.out")
  assert_match "$KEID" "^[0-9A-F]{32}@$MEF_FQDN\$" "$name: KeID reported to the OBF"
  reap_server "$DEVICE_PID"
  assert_eq "$REAPED_STATUS" 0 "$name: device exit status"
  assert_file_has "$T/$name.log" "steps 13-17: token accepted, RSPF $rspf" "$name: device output"
  assert_file_has "$T/$name.log" "enrolled: KeID $KEID" "$name: device output"
  assert_eq "$(json_get "['flow']" <"$T/$name.state/enrolment.json")" B "$name: device state flow"
  assert_eq "$(portal_enrolee_field "$entry" state)" enrolled "$name: portal state"
  assert_eq "$(portal_enrolee_field "$entry" rspf)" "$rspf" "$name: portal rspf"
  assert_eq "$(portal_enrolee_field "$entry" deviceId)" "$id" "$name: the entry names the device"
  assert_eq "$(portal_enrolee_field "$entry" keId)" "$KEID" "$name: portal keId"
  assert_eq "$(enrolee_by_id "$entry" rspf)" "$rspf" "$name: mte admin enrolee list rspf"
  assert_eq "$(enrolee_by_id "$entry" state)" enrolled "$name: mte admin enrolee list state"
  assert_eq "$(token_state "$(bundle_token "$bundle")")" spent "$name: token"
  wait_delivered "$id" "$KEID" || fail "$name: Km not delivered to the MAF"
  "$ENROLEE" maf-check --maf "127.0.0.1:$MAF_PORT" --maf-fqdn "$MAF_FQDN" --state "$T/$name.state" \
    >"$T/$name.maf" 2>&1 || { cat "$T/$name.maf" >&2; fail "$name: maf-check"; }
  assert_file_has "$T/$name.maf" "MAF accepted KmID $KEID" "$name: maf-check"
  pass "$name: $id enrolled in Flow B with RSPF $rspf (KeID $KEID); portal, admin and MAF agree"
}

# --- a certificate device
E1=$(flowb_entry '{"label":"meter","deviceInfo":"hall, serial C1"}')
flowb_bundle "$E1" "$T/b1.json"
flow_b_ok cert1 "$E1" "$T/b1.json" fb-cert CERT
audit_list | grep -a "enrolment.commit .*device fb-cert " >"$T/fb-cert.audit" || fail "no audit entry for fb-cert"
assert_file_has "$T/fb-cert.audit" "flow B, token 1, RSPF CERT, certificate sha256 $CERT_SHA_FB, device CA 'maker', OCSP good from $OCSP_URL" \
  "audit of the Flow B certificate enrolment"

# --- a revoked device: refused, nothing recorded, the token stays active
E2=$(flowb_entry '{"label":"valve","deviceInfo":"yard, serial C2"}')
flowb_bundle "$E2" "$T/b2.json"
TOKEN2=$(bundle_token "$T/b2.json")
code=$("$ENROLEE" new-setup-code)
start_cert_device rev fb-rev "$code"
snapshot before-rev
rc=$(obf_deliver "$T/obf-rev.out" "$T/b2.json" "$DEVICE_PORT" "$code")
assert_ne "$rc" 0 "mte-obf with a revoked device"
assert_file_has "$T/obf-rev.out" "could not enrol" "mte-obf with a revoked device"
assert_file_has "$T/obf-rev.out" "MEF answered HTTP 403, RSC 4103: device certificate revoked (OCSP, at 2026-12-01T00:00:00Z" "mte-obf: the reason"
reap_server "$DEVICE_PID"
assert_ne "$REAPED_STATUS" 0 "revoked device: exit status"
assert_file_has "$T/rev.log" "device certificate revoked (OCSP" "revoked device: its output"
wait_log "mef: enrolment refused for" || fail "revoked device: no refusal in the MEF log"
snapshot after-rev
same_snapshot before-rev after-rev "revoked device in Flow B"
assert_eq "$(token_state "$TOKEN2")" active "token after the refused revoked device"
assert_eq "$(portal_enrolee_field "$E2" state)" pending "entry after the refused revoked device"
assert_eq "$(portal_enrolee_field "$E2" deviceId)" "" "entry device after the refused revoked device"
pass "revoked device refused in Flow B: $(grep -ao 'could not enrol: .*' "$T/obf-rev.out" | cut -c1-140); token still active"

# --- a setup-code file without a code is refused before anything is sent
: >"$T/empty.code"
rc=0; "$OBF" deliver --bundle "$T/b2.json" --device "127.0.0.1:1" --setup-code-file "$T/empty.code" \
  >"$T/obf-empty.out" 2>&1 || rc=$?
assert_ne "$rc" 0 "mte-obf with an empty setup-code file"
assert_file_has "$T/obf-empty.out" "holds no setup code" "mte-obf with an empty setup-code file"
rc=0; "$ENROLEE" await-obf --listen 127.0.0.1:0 --device-id x --setup-code-file "$T/empty.code" \
  --kpm-id k --kpm-hex 00112233445566778899aabbccddeeff --state "$T/empty.state" \
  >"$T/enrolee-empty.out" 2>&1 || rc=$?
assert_eq "$rc" 2 "mte-enrolee await-obf with an empty setup-code file"
assert_file_has "$T/enrolee-empty.out" "holds no setup code" "mte-enrolee with an empty setup-code file"
pass "an empty --setup-code-file is refused by mte-obf and mte-enrolee"

# --- the same bundle: a device with a Kpm and a certificate gets CERT (the default preference)
flow_b_ok mixed-cert "$E2" "$T/b2.json" fb-mixed1 CERT \
  --kpm-id kpm-fb-mixed1@maker.it.test --kpm-hex "${MIXED_KPM[fb-mixed1]}"

# --- with rspfs ["PPSK","CERT"], the same kind of device gets PPSK
pid=${SERVER_PIDS[-1]}
kill -TERM "$pid"
reap_server "$pid"
set_config rspfs '["PPSK","CERT"]'
start_server
BEARER=$(portal_login fay "$PASSWORD")
[[ -n "$BEARER" ]] || fail "portal login after the restart"
E3=$(flowb_entry '{"label":"pump","deviceInfo":"roof, serial C3"}')
flowb_bundle "$E3" "$T/b3.json"
flow_b_ok mixed-ppsk "$E3" "$T/b3.json" fb-mixed2 PPSK \
  --kpm-id kpm-fb-mixed2@maker.it.test --kpm-hex "${MIXED_KPM[fb-mixed2]}"
assert_eq "$(audit_list | grep -a "enrolment.commit .*device fb-mixed2 " | grep -c 'RSPF PPSK')" 1 "audit of the PPSK enrolment"

echo "flow_b_cert_test: all passed in $(( ($(now_ms) - START) / 1000 )) s"
