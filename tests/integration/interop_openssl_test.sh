#!/usr/bin/env bash
# Must show 1: interoperability with a TLS stack we did not write. openssl s_client enrols a device
# at a running `mte serve` over TLS-PSK (psk_identity = KpmID), the KeID is checked against the
# exporter output that openssl itself printed, Km is computed with `openssl dgst`, and s_client
# then completes the MAF handshake with KmID/Km; a wrong Km fails. Repeated over TLS 1.3 (external
# PSK) and TLS 1.2 ECDHE-PSK: each is a documented re-enrolment that rotates Ke/KeID, after which
# the previous Km no longer opens the MAF.
source "$(dirname "$0")/lib.sh"

init_mte
KPM=$(openssl rand -hex 32)
KPM_ID="kpm-ossl@maker.it.test"
add_device dev-ossl "$KPM_ID" "$KPM" CLAIM-OSSL-1
add_stakeholder alice "pw-$(openssl rand -hex 8)"
claim alice dev-ossl CLAIM-OSSL-1
start_server
pass "mte serve running (MEF $MEF_PORT, MAF $MAF_PORT)"

http_request "$T/enrol.req" POST /enrolment '{}' "$MEF_FQDN"
http_request "$T/session.req" GET /maf/v1/session '' "$MAF_FQDN"

# enrol_with NAME GENERATION PROTOCOL CIPHER KX [s_client options]: enrols over the given TLS
# options (KX: "psk" = plain PSK, "dhe" = ephemeral (EC)DHE with the PSK), checks everything that
# can be checked from the outside, and sets EXPORT, KEID, KM.
enrol_with() {
  local name=$1 generation=$2 protocol=$3 cipher=$4 kx=$5 out="$T/mef-$1.out"
  shift 5
  ossl_client "$MEF_PORT" "$out" "$T/enrol.req" -psk "$KPM" -psk_identity "$KPM_ID" \
    -servername "$MEF_FQDN" -keymatexport EXPORTER-oneM2M-Bootstrap -keymatexportlen 48 "$@" ||
    { cat "$out" "$out.err" >&2; fail "$name: s_client enrolment failed"; }
  assert_file_has "$out" "Cipher is $cipher" "$name: negotiated cipher (client view)"
  if [[ $kx == dhe ]]; then
    assert_file_has "$out" "Server Temp Key: X25519" "$name: ephemeral ECDHE share"
  else
    assert_file_lacks "$out" "Server Temp Key" "$name: plain PSK key exchange"
  fi
  EXPORT=$(exporter_hex "$out")
  assert_match "$EXPORT" '^[0-9A-F]{96}$' "$name: 48 octets of keying material from s_client"
  http_parse "$out"
  assert_eq "$(resp status)" 201 "$name: HTTP status"
  assert_eq "$(resp header:x-m2m-rsc)" 2001 "$name: X-M2M-RSC"
  assert_eq "$(resp header:x-m2m-ri)" it-req-1 "$name: X-M2M-RI echoed"
  KEID=$(resp json:keId)
  assert_eq "$KEID" "$(keid_of "$EXPORT")" "$name: keId = UPPERCASE-HEX(exporter octets 0-15)@MEF-FQDN"
  assert_eq "$(resp json:credentialIds)" "[\"11-$KEID\"]" "$name: Credential-ID (KmID type 11)"
  assert_file_has "$SERVE_LOG" "with KeID $KEID over $protocol $cipher" "$name: server view of the session"
  pass "$name: $protocol $cipher, keId $KEID matches the exporter"
  KM=$(km_of "$EXPORT")
  wait_delivered dev-ossl "$KEID" || fail "$name: MAF delivery did not complete: $(enrolee_json)"
  assert_eq "$(enrolee_field dev-ossl generation)" "$generation" "$name: enrolment generation"
  assert_eq "$(enrolee_field dev-ossl state)" enrolled "$name: state"
  pass "$name: enrolee at generation $generation, mafDelivery delivered"
}

# 1. TLS 1.2, TLS_PSK_WITH_AES_128_CBC_SHA256 (TS-0003 §10.2.2).
enrol_with tls12-psk 1 TLSv1.2 PSK-AES128-CBC-SHA256 psk -tls1_2 -cipher PSK-AES128-CBC-SHA256
KEID1=$KEID KM1=$KM
maf_ossl_ok tls12-psk "$KEID1" "$KM1" -tls1_2 -cipher PSK-AES128-CBC-SHA256
maf_ossl_ok tls13-psk-gen1 "$KEID1" "$KM1" -tls1_3
maf_ossl_refused wrong-km "$KEID1" "$(flip_hex "$KM1")" -tls1_2 -cipher PSK-AES128-CBC-SHA256
maf_ossl_refused wrong-km-tls13 "$KEID1" "$(flip_hex "$KM1")" -tls1_3
maf_ossl_refused ke-instead-of-km "$KEID1" "${EXPORT:32:64}" -tls1_2 -cipher PSK-AES128-CBC-SHA256
assert_file_has "$SERVE_LOG" "maf: handshake with KmID $KEID1" "MAF logged the good handshake"

# 2. TLS 1.3 external PSK (s_client uses TLS_AES_128_GCM_SHA256 for -psk; psk_dhe_ke, so the
#    server answers with a key share): a re-enrolment.
enrol_with tls13-psk 2 TLSv1.3 TLS_AES_128_GCM_SHA256 dhe -tls1_3
KEID2=$KEID KM2=$KM
assert_ne "$KEID2" "$KEID1" "re-enrolment rotates the KeID"
maf_ossl_ok tls13-psk "$KEID2" "$KM2" -tls1_3
maf_ossl_refused old-km-after-tls13 "$KEID1" "$KM1" -tls1_2 -cipher PSK-AES128-CBC-SHA256
assert_file_has "$SERVE_LOG" "maf: handshake with unknown KmID '$KEID1'" "old KmID removed from the MAF"
pass "the generation-1 Km no longer opens the MAF (its KmID is unknown there)"

# 3. TLS 1.2 ECDHE-PSK-AES128-CBC-SHA256 (forward secrecy): another re-enrolment.
enrol_with tls12-ecdhe-psk 3 TLSv1.2 ECDHE-PSK-AES128-CBC-SHA256 dhe -tls1_2 \
  -cipher ECDHE-PSK-AES128-CBC-SHA256
KEID3=$KEID KM3=$KM
assert_ne "$KEID3" "$KEID2" "second re-enrolment rotates the KeID"
assert_ne "$KEID3" "$KEID1" "KeIDs never repeat"
maf_ossl_ok tls12-ecdhe-psk "$KEID3" "$KM3" -tls1_2 -cipher ECDHE-PSK-AES128-CBC-SHA256
maf_ossl_refused old-km-after-ecdhe "$KEID2" "$KM2" -tls1_3
maf_ossl_refused oldest-km-after-ecdhe "$KEID1" "$KM1" -tls1_3

# The MAF holds exactly the current credential of this enrolee; the audit trail shows the story.
assert_eq "$(db_query "SELECT km_id || ' ' || generation FROM maf_credentials")" "$KEID3 3" \
  "MAF key store holds only the generation-3 credential"
audit=$(audit_list)
assert_eq "$(grep -c 'enrolment.commit' <<<"$audit")" 1 "audit: one first enrolment"
assert_eq "$(grep -c 'enrolment.reenrol' <<<"$audit")" 2 "audit: two re-enrolments"
assert_eq "$(grep -c 'credential.receive' <<<"$audit")" 3 "audit: three MAF receipts"
pass "MAF key store and audit trail match three generations"
