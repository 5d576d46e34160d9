#!/usr/bin/env bash
# Issue 3, Must show 2: the Ke of a Flow B enrolment equals the exporter output of the inner
# session as computed by a TLS stack we did not write, and the MAF accepts `openssl s_client -psk`
# with the Km derived from it by `openssl dgst`.
#
# Both TLS sessions of Flow B are openssl s_client processes (nested_relay.py): the OUTER one is
# server-authenticated to the MEF (the bundle's trust anchors, -verify_hostname MEF-FQDN), carries
# POST /enrolment/token -> 200 and GET /enrolment/rspf (Upgrade: oneM2M-RSPF) -> 101, and then the
# records of the INNER TLS-PSK session (psk_identity KpmID, SNI MEF-FQDN) as its application data.
# The inner s_client sends POST /enrolment with the outer session's RFC 9266 channel binding
# (EXPORTER-Channel-Binding, 32 octets, empty context) and prints EXPORTER-oneM2M-Bootstrap.
#
# Runs (one device each; Flow B entries created and tokens issued on the portal REST API):
#   1. outer TLS 1.3, inner TLS 1.2 PSK-AES128-CBC-SHA256; first with a channel binding that has
#      one hex digit flipped (refused, nothing recorded, token still active), then with the same
#      token correctly (retry-safe).
#   2. outer TLS 1.3, inner TLS 1.3 (external PSK).
#   3. outer TLS 1.2, inner TLS 1.2; first with s_client's own -keymatexport value, which for
#      TLS 1.2 is the exporter WITHOUT context and so not the binding (refused), then with the
#      empty-context value computed from the session's master secret.
#   4. outer TLS 1.2, inner TLS 1.3.
# After each enrolment: keId = UPPERCASE-HEX(inner exporter octets 0-15) "@" MEF-FQDN; the entry
# is enrolled and bound to the device with credentialIds ["11-<keId>"]; the token is spent; the
# MAF accepts s_client -psk PSK-AES128-CBC-SHA256 with KmID = keId and
# Km = HMAC-SHA-256(octets 16-47, label || MAF-ID) computed by `openssl dgst`. Runs 1 and 3 (one
# per outer TLS version) also: the MAF over TLS 1.3, a wrong Km and Ke refused, and, once a newer
# token was issued, a second redemption of the spent token refused at the token step (403, RSC
# 4103, "already been used and a newer one has been issued").
source "$(dirname "$0")/lib.sh"
RELAY="$(cd "$(dirname "$0")" && pwd)/nested_relay.py"

init_mte
PASSWORD="pw-$(openssl rand -hex 8)"
add_stakeholder carol "$PASSWORD"
declare -A KPM KPM_ID
manifest=""
for n in 1 2 3 4; do
  KPM[$n]=$(openssl rand -hex 32)
  KPM_ID[$n]="kpm-fb$n@maker.it.test"
  manifest+="${manifest:+,}{\"deviceId\":\"dev-fb$n\",\"kpmId\":\"${KPM_ID[$n]}\",\"kpmHex\":\"${KPM[$n]}\",\"claimCode\":\"UNUSED-$(openssl rand -hex 6)\"}"
done
printf '[%s]' "$manifest" >"$T/manifest.json"
"$MTE" admin --data "$DATA" device import "$T/manifest.json" >/dev/null
rm -f "$T/manifest.json"
start_server
pass "mte serve running (MEF $MEF_PORT, MAF $MAF_PORT, portal $PORTAL_PORT)"

BEARER=$(portal_login carol "$PASSWORD")
[[ -n "$BEARER" ]] || fail "portal login refused"
http_request "$T/session.req" GET /maf/v1/session '' "$MAF_FQDN"

# new_entry N: a Flow B entry (label + deviceInfo, no claim code) and an Enrolment-Token for it;
# sets ENTRY[N], TOKEN[N] and writes the bundle's trust anchors to $T/anchors-N.pem.
declare -A ENTRY TOKEN
new_entry() {
  local n=$1 status
  status=$(portal_call "$T/entry-$n.json" POST /api/v1/enrolees \
    "{\"label\":\"flow-b-$n\",\"deviceInfo\":\"sensor $n\"}" "$BEARER")
  assert_eq "$status" 201 "entry $n: POST /api/v1/enrolees"
  json_flat "$T/entry-$n.json"
  ENTRY[$n]=$(jf id)
  assert_eq "$(jf state)" pending "entry $n: state"
  assert_eq "$(jf deviceId)" "" "entry $n: no device yet"
  status=$(portal_call "$T/bundle-$n.json" POST "/api/v1/enrolees/${ENTRY[$n]}/tokens" "" "$BEARER")
  assert_eq "$status" 201 "entry $n: POST .../tokens"
  json_flat "$T/bundle-$n.json"
  TOKEN[$n]=$(jf token)
  assert_match "${TOKEN[$n]}" '^[A-Za-z0-9_-]{43}$' "entry $n: token is 256 bits base64url"
  assert_eq "$(jf mefUri)" "https://127.0.0.1:$MEF_PORT" "entry $n: mefUri"
  assert_eq "$(jf mefFqdn)" "$MEF_FQDN" "entry $n: mefFqdn"
  assert_eq "$(jf enroleeId)" "${ENTRY[$n]}" "entry $n: enroleeId"
  [[ -n "$(jf mefTrustAnchors.0)" ]] || fail "entry $n: no mefTrustAnchors"
  local i=0
  : >"$T/anchors-$n.pem"
  while [[ -n "$(jf "mefTrustAnchors.$i")" ]]; do
    printf '%s\n' "$(jf "mefTrustAnchors.$i")" >>"$T/anchors-$n.pem"
    i=$((i + 1))
  done
  pass "entry $n: Flow B entry ${ENTRY[$n]} pending, token issued"
}

# relay NAME N OUTER INNER BINDING [STOP_AFTER]: one nested run for device N with TOKEN[N]; the
# transcripts are in $T/NAME, the result is loaded into JF.
relay() {
  local name=$1 n=$2 outer=$3 inner=$4 binding=$5 stop=${6:-enrolment} rc=0
  python3 "$RELAY" --mef-port "$MEF_PORT" --mef-fqdn "$MEF_FQDN" --ca "$T/anchors-$n.pem" \
    --token="${TOKEN[$n]}" --kpm-id "${KPM_ID[$n]}" --kpm-hex "${KPM[$n]}" \
    --outer-tls "$outer" --inner-tls "$inner" --binding "$binding" --stop-after "$stop" \
    --out "$T/$name" --timeout 20 >/dev/null 2>"$T/$name.err" || rc=$?
  if [[ $rc -ne 0 ]]; then
    cat "$T/$name.err" >&2
    tail -n 20 "$SERVE_LOG" >&2
    fail "$name: nested run failed (exit $rc)"
  fi
  json_flat "$T/$name/result.json"
}

# check_outer NAME OUTER: the outer session as s_client saw it, and the steps 13-17 answers.
check_outer() {
  local name=$1 outer=$2 n=$3
  assert_eq "$(jf outer.protocol)" "TLSv$outer" "$name: outer protocol"
  assert_eq "$(jf outer.verifyReturnCode)" 0 "$name: outer certificate verified (bundle anchors)"
  assert_eq "$(jf outer.verifiedPeername)" "$MEF_FQDN" "$name: outer certificate names the MEF FQDN"
  assert_match "$(jf outer.bindingHex)" '^[0-9a-f]{64}$' "$name: 32-octet channel binding"
  if [[ $outer == 1.3 ]]; then
    assert_eq "$(jf outer.bindingHex)" "$(jf outer.keyingMaterial | tr A-F a-f)" \
      "$name: TLS 1.3 binding = s_client -keymatexport"
  else
    assert_ne "$(jf outer.bindingHex)" "$(jf outer.keyingMaterial | tr A-F a-f)" \
      "$name: TLS 1.2 empty-context binding differs from the no-context export"
  fi
  assert_eq "$(jf token.status)" 200 "$name: token accepted"
  assert_eq "$(jf token.headers.x-m2m-rsc)" 2000 "$name: token X-M2M-RSC"
  assert_eq "$(jf token.body.json.rspf)" PPSK "$name: RSPF selected"
  assert_eq "$(jf token.body.json.enroleeId)" "${ENTRY[$n]}" "$name: token's enrolee entry"
  assert_eq "$(jf upgrade.status)" 101 "$name: switching protocols"
  assert_eq "$(jf upgrade.headers.upgrade)" oneM2M-RSPF "$name: Upgrade header"
  assert_eq "$(jf upgrade.headers.connection)" Upgrade "$name: Connection header"
  assert_eq "$(jf relay.fromMefRecords.0)" 22 "$name: the MEF's first inner record is a handshake"
  assert_eq "$(jf relay.outerTrailer)" "closed" "$name: MEF closed the outer session cleanly"
}

# refused_binding NAME N OUTER INNER BINDING: the MEF refuses the inner Enrolment Exchange because
# of the channel binding, and nothing changes.
refused_binding() {
  local name=$1 n=$2 outer=$3 inner=$4 binding=$5 before after
  before=$(state_snapshot; db_query "SELECT id, enrolee_id, state, spent_at FROM tokens ORDER BY id")
  relay "$name" "$n" "$outer" "$inner" "$binding"
  check_outer "$name" "$outer" "$n"
  assert_ne "$(jf outer.bindingSentHex)" "$(jf outer.bindingHex)" "$name: a wrong binding was sent"
  assert_match "$(jf inner.keyingMaterial)" '^[0-9A-F]{96}$' "$name: the inner handshake completed"
  assert_eq "$(jf inner.response.status)" 403 "$name: HTTP status"
  assert_eq "$(jf inner.response.headers.x-m2m-rsc)" 4103 "$name: X-M2M-RSC"
  assert_match "$(jf inner.response.body.json.m2m:dbg)" "channel binding does not match" "$name: reason"
  wait_log "(flow B, enrolee ${ENTRY[$n]}): " || fail "$name: refusal not logged"
  after=$(state_snapshot; db_query "SELECT id, enrolee_id, state, spent_at FROM tokens ORDER BY id")
  assert_eq "$after" "$before" "$name: enrolee database, audit, outbox, MAF store and tokens unchanged"
  assert_eq "$(db_query "SELECT state || '|' || ifnull(device_id, '') || '|' || generation
                         FROM enrolees WHERE id = ${ENTRY[$n]}")" "pending||0" \
    "$name: entry still pending, no device bound"
  assert_eq "$(db_query "SELECT state FROM tokens WHERE enrolee_id = ${ENTRY[$n]}")" active \
    "$name: token still active"
  pass "$name: channel binding refused (403/4103), nothing recorded, token still active"
}

maf_accepts() {  # maf_accepts NAME KMID KM [s_client options]
  local name=$1 kmid=$2 km=$3 out="$T/maf-$1.out"
  shift 3
  ossl_client "$MAF_PORT" "$out" "$T/session.req" -psk "$km" -psk_identity "$kmid" \
    -servername "$MAF_FQDN" "$@" || { cat "$out" "$out.err" >&2; fail "$name: MAF handshake failed"; }
  assert_file_has "$out" $'HTTP/1.1 200' "$name: MAF HTTP status"
  assert_file_has "$out" "\"kmId\":\"$kmid\"" "$name: kmId reported by the MAF"
}

maf_refuses() {  # maf_refuses NAME KMID KM [s_client options]
  local name=$1 kmid=$2 km=$3 out="$T/maf-$1.out" rc=0
  shift 3
  ossl_client "$MAF_PORT" "$out" "$T/session.req" -psk "$km" -psk_identity "$kmid" \
    -servername "$MAF_FQDN" "$@" || rc=$?
  [[ $rc -ne 0 ]] || fail "$name: s_client succeeded with a wrong Km"
  assert_file_lacks "$out" "HTTP/1.1" "$name: no HTTP response"
}

# enrol NAME N OUTER INNER [full]: a complete Flow B enrolment over two s_client sessions, checked
# against s_client's inner exporter output, the MAF and the enrolee database. "full" adds the MAF
# over TLS 1.3 and with wrong keys, and a second redemption of the token.
enrol() {
  local name=$1 n=$2 outer=$3 inner=$4 full=${5:-} cipher export keid km
  relay "$name" "$n" "$outer" "$inner" correct
  check_outer "$name" "$outer" "$n"
  assert_eq "$(jf outer.bindingSentHex)" "$(jf outer.bindingHex)" "$name: binding sent"
  [[ $inner == 1.2 ]] && cipher=PSK-AES128-CBC-SHA256 || cipher=TLS_AES_128_GCM_SHA256
  assert_eq "$(jf inner.protocol)" "TLSv$inner" "$name: inner protocol"
  assert_eq "$(jf inner.cipher)" "$cipher" "$name: inner cipher"
  assert_eq "$(jf inner.response.status)" 201 "$name: enrolment HTTP status"
  assert_eq "$(jf inner.response.headers.x-m2m-rsc)" 2001 "$name: X-M2M-RSC"
  assert_eq "$(jf inner.response.headers.x-m2m-ri)" enrol-1 "$name: X-M2M-RI echoed"
  assert_eq "$(jf relay.innerExit)" 0 "$name: inner s_client exit status"
  assert_eq "$(jf relay.outerExit)" 0 "$name: outer s_client exit status"
  export=$(exporter_hex "$T/$name/inner.out")
  assert_match "$export" '^[0-9A-F]{96}$' "$name: 48 octets of inner keying material from s_client"
  keid=$(keid_of "$export")
  assert_eq "$(jf inner.response.body.json.keId)" "$keid" \
    "$name: keId = UPPERCASE-HEX(inner exporter octets 0-15)@MEF-FQDN"
  assert_eq "$(jf inner.response.body.json.credentialIds)" "[\"11-$keid\"]" "$name: credentialIds"
  assert_eq "$(jf inner.response.body.json.enroleeId)" "${ENTRY[$n]}" "$name: enroleeId"
  assert_eq "$(jf inner.response.body.json.instructions.0.type)" mafEnrolment "$name: instruction"
  assert_eq "$(jf inner.response.body.json.instructions.0.kmId)" "$keid" "$name: kmId = keId"
  assert_eq "$(jf inner.response.body.json.instructions.0.mafFqdn)" "$MAF_FQDN" "$name: mafFqdn"
  assert_eq "$(jf inner.response.body.json.instructions.0.mafId)" "$MAF_FQDN" "$name: mafId"
  assert_file_has "$SERVE_LOG" \
    "enrolled device 'dev-fb$n' (enrolee ${ENTRY[$n]}, generation 1, flow B) with KeID $keid over TLSv$inner $cipher" \
    "$name: server view of the inner session"
  pass "$name: outer TLSv$outer $(jf outer.cipher), inner TLSv$inner $cipher; keId $keid matches s_client's exporter"

  km=$(km_of "$export")
  wait_for "[[ \$(db_query 'SELECT maf_delivery FROM enrolees WHERE id = ${ENTRY[$n]}') == delivered ]]" 150 ||
    fail "$name: MAF delivery did not complete: $(enrolee_json)"
  enrolee_json >"$T/enrolees.json"
  json_flat "$T/enrolees.json"
  local i=0
  while [[ -n "$(jf "$i.id")" && "$(jf "$i.id")" != "${ENTRY[$n]}" ]]; do i=$((i + 1)); done
  assert_eq "$(jf "$i.id")" "${ENTRY[$n]}" "$name: entry in 'enrolee list'"
  assert_eq "$(jf "$i.state")" enrolled "$name: entry state"
  assert_eq "$(jf "$i.deviceId")" "dev-fb$n" "$name: device bound to the entry"
  assert_eq "$(jf "$i.keId")" "$keid" "$name: entry keId"
  assert_eq "$(jf "$i.credentialIds")" "[\"11-$keid\"]" "$name: entry credentialIds"
  assert_eq "$(jf "$i.rspf")" PPSK "$name: entry rspf"
  assert_eq "$(jf "$i.generation")" 1 "$name: entry generation"
  assert_eq "$(jf "$i.label")" "flow-b-$n" "$name: entry label kept"
  assert_eq "$(jf "$i.mafDelivery")" delivered "$name: entry mafDelivery"
  assert_eq "$(db_query "SELECT state FROM tokens WHERE enrolee_id = ${ENTRY[$n]}")" spent \
    "$name: token spent"
  pass "$name: entry ${ENTRY[$n]} enrolled, bound to dev-fb$n, mafDelivery delivered"

  maf_accepts "$name-maf12" "$keid" "$km" -tls1_2 -cipher PSK-AES128-CBC-SHA256
  if [[ $full != full ]]; then
    pass "$name: MAF accepts s_client -psk PSK-AES128-CBC-SHA256 with Km from openssl dgst"
    return 0
  fi
  maf_accepts "$name-maf13" "$keid" "$km" -tls1_3
  maf_refuses "$name-maf-wrong-km" "$keid" "$(flip_hex "$km")" -tls1_2 -cipher PSK-AES128-CBC-SHA256
  maf_refuses "$name-maf-ke" "$keid" "${export:32:64}" -tls1_3
  pass "$name: MAF accepts s_client -psk with Km from openssl dgst (TLS 1.2 and 1.3), refuses a wrong Km and Ke"

  # The device it enrolled could present the spent token again (a lost answer); once a newer token
  # exists for the entry, nobody can.
  flowb_bundle "${ENTRY[$n]}" "$T/newer-$n.json"
  relay "$name-replay" "$n" "$outer" "$inner" correct token
  assert_eq "$(jf token.status)" 403 "$name: second redemption HTTP status"
  assert_eq "$(jf token.headers.x-m2m-rsc)" 4103 "$name: second redemption X-M2M-RSC"
  assert_match "$(jf token.body.json.m2m:dbg)" "already been used and a newer one has been issued" \
    "$name: second redemption reason"
  [[ -z "$(jf upgrade.status)" ]] || fail "$name: the spent token reached the RSPF"
  pass "$name: the spent, superseded token is refused (403/4103 already been used)"
}

for n in 1 2 3 4; do new_entry "$n"; done

refused_binding run1-flipped 1 1.3 1.2 flip
enrol run1 1 1.3 1.2 full
enrol run2 2 1.3 1.3
refused_binding run3-no-context 3 1.2 1.2 no-context
enrol run3 3 1.2 1.2 full
enrol run4 4 1.2 1.3

audit=$(audit_list)
assert_eq "$(grep -c 'enrolment.commit' <<<"$audit")" 4 "audit: four enrolments"
assert_eq "$(grep 'enrolment.commit' <<<"$audit" | grep -c 'flow B')" 4 "audit: all of them flow B"
assert_eq "$(db_query "SELECT count(*) FROM maf_credentials")" 4 "MAF key store: four credentials"
pass "audit trail and MAF key store hold exactly the four enrolments"
