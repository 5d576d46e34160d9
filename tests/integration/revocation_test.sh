#!/usr/bin/env bash
# Revoking an enrolee at a running `mte serve`: a device enrolled with stock `openssl s_client`
# opens the MAF with the Km computed by `openssl dgst`; the stakeholder revokes it over the REST
# API (curl); the outbox delivers the retirement and the MAF then refuses that KmID in the
# handshake; the MEF refuses the device (403, RSC 4103); `mte admin enrolee revoke` on it again
# changes nothing; a new Enrolment-Token re-arms the entry and the device enrols afresh. Revoking
# another stakeholder's enrolee answers 404.
source "$(dirname "$0")/lib.sh"

init_mte
KPM=$(openssl rand -hex 32)
KPM_ID="kpm-rev@maker.it.test"
add_device dev-rev "$KPM_ID" "$KPM" CLAIM-REV-1
PW="pw-$(openssl rand -hex 8)"
add_stakeholder alice "$PW"
add_stakeholder mallory "$PW"
claim alice dev-rev CLAIM-REV-1
start_server
http_request "$T/enrol.req" POST /enrolment '{}' "$MEF_FQDN"

# enrol NAME: a Flow A enrolment with s_client over TLS 1.2 PSK; writes $T/mef-NAME.out.
enrol() {
  ossl_client "$MEF_PORT" "$T/mef-$1.out" "$T/enrol.req" -psk "$KPM" -psk_identity "$KPM_ID" \
    -servername "$MEF_FQDN" -tls1_2 -cipher PSK-AES128-CBC-SHA256 \
    -keymatexport EXPORTER-oneM2M-Bootstrap -keymatexportlen 48
}

enrol first || { cat "$T/mef-first.out.err" >&2; fail "first enrolment: s_client failed"; }
http_parse "$T/mef-first.out"
assert_eq "$(resp status)" 201 "first enrolment"
EXPORT=$(exporter_hex "$T/mef-first.out")
KEID1=$(keid_of "$EXPORT") KM1=$(km_of "$EXPORT")
assert_eq "$(resp json:keId)" "$KEID1" "first enrolment: keId from the exporter"
wait_delivered dev-rev "$KEID1" || fail "first Km not delivered: $(enrolee_json)"
maf_ossl_ok before-revoke "$KEID1" "$KM1" -tls1_2 -cipher PSK-AES128-CBC-SHA256
ID=$(enrolee_field dev-rev id)

ALICE=$(portal_login alice "$PW")
MALLORY=$(portal_login mallory "$PW")
[[ -n "$ALICE" && -n "$MALLORY" ]] || fail "portal logins"
assert_eq "$(portal_call "$T/tok.json" POST "/api/v1/enrolees/$ID/tokens" '{}' "$ALICE")" 201 \
  "an unused token before the revocation"
TOKEN_HASH=$(json_get "['token']" <"$T/tok.json" | tr -d '\n' | openssl dgst -sha256 -hex | awk '{print $NF}')

# Another stakeholder cannot revoke it, or learn that it exists.
assert_eq "$(portal_call "$T/mal.json" POST "/api/v1/enrolees/$ID/revoke" '{}' "$MALLORY")" 404 \
  "mallory revokes alice's enrolee"
assert_eq "$(enrolee_field dev-rev state)" enrolled "after mallory's attempt"
pass "another stakeholder's revocation is answered 404 and changes nothing"

assert_eq "$(portal_call "$T/rev.json" POST "/api/v1/enrolees/$ID/revoke" '{}' "$ALICE")" 200 \
  "alice revokes"
assert_eq "$(json_get "['state']" <"$T/rev.json")" revoked "revoke answer: state"
assert_eq "$(db_query "SELECT state FROM tokens WHERE hex(token_hash) = upper('$TOKEN_HASH')")" \
  revoked "the unused token is revoked"
assert_eq "$(db_query "SELECT length(ke_sealed) FROM enrolees WHERE id = $ID")" 0 "Ke cleared"
wait_for "[[ \$(db_query 'SELECT count(*) FROM maf_credentials') == 0 ]]" 150 ||
  fail "the MAF still holds the Km: $(db_query 'SELECT km_id FROM maf_credentials')"
assert_eq "$(enrolee_field dev-rev mafDelivery)" delivered "the retirement was delivered"
maf_ossl_refused after-revoke "$KEID1" "$KM1" -tls1_2 -cipher PSK-AES128-CBC-SHA256
assert_file_has "$SERVE_LOG" "maf: handshake with unknown KmID '$KEID1'" "the MAF no longer knows the KmID"
pass "after the revocation the MAF refuses the revoked Km in the handshake"

enrol refused || true
http_parse "$T/mef-refused.out"
assert_eq "$(resp status)" 403 "the revoked device enrols"
assert_eq "$(resp header:x-m2m-rsc)" 4103 "the revoked device enrols: RSC"
assert_match "$(resp body)" "has been revoked by its stakeholder" "the revoked device enrols: reason"
assert_eq "$(enrolee_field dev-rev generation)" 2 "nothing recorded for the refused enrolment"
pass "the MEF refuses the revoked device: $(resp body | cut -c1-100)"

out=$("$MTE" admin --data "$DATA" enrolee revoke "$ID")
assert_match "$out" "was already revoked" "mte admin enrolee revoke, again"
assert_eq "$(db_query "SELECT count(*) FROM outbox WHERE enrolee_id = $ID")" 2 "no second retirement"
assert_eq "$(audit_list | grep -c 'enrolee.revoke')" 1 "one revocation in the audit trail"
pass "revoking again changes nothing"

assert_eq "$(portal_call "$T/tok2.json" POST "/api/v1/enrolees/$ID/tokens" '{}' "$ALICE")" 201 \
  "a new token re-arms the entry"
assert_eq "$(enrolee_field dev-rev state)" pending "re-armed"
enrol again || { cat "$T/mef-again.out.err" >&2; fail "re-armed enrolment: s_client failed"; }
http_parse "$T/mef-again.out"
assert_eq "$(resp status)" 201 "re-armed enrolment"
EXPORT=$(exporter_hex "$T/mef-again.out")
KEID3=$(keid_of "$EXPORT") KM3=$(km_of "$EXPORT")
wait_delivered dev-rev "$KEID3" || fail "new Km not delivered: $(enrolee_json)"
assert_eq "$(enrolee_field dev-rev generation)" 3 "generation after revocation and re-enrolment"
maf_ossl_ok re-armed "$KEID3" "$KM3" -tls1_2 -cipher PSK-AES128-CBC-SHA256
maf_ossl_refused old-km "$KEID1" "$KM1" -tls1_2 -cipher PSK-AES128-CBC-SHA256
pass "re-armed by a new token, the device enrols afresh and only the new Km opens the MAF"
