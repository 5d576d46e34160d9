#!/usr/bin/env bash
# Enrolment request indications (TS-0003 Table 8.3.2.1-1) at the MEF, driven by openssl s_client.
# The MEF accepts {"mafEnrolment": false} as a valid request (no MAF credential wanted). Whatever
# the defined outcome is, it must be a clean one: either an enrolment without a MAF instruction,
# outbox item or MAF credential (HTTP 201) that, being a re-enrolment, also retires the previous
# generation's Km, or a clear refusal (4xx, or 501/5001 NOT_IMPLEMENTED) that changes nothing.
# Never an internal error (500/5000), and never internal details in the answer.
source "$(dirname "$0")/lib.sh"

init_mte
KPM=$(openssl rand -hex 32)
add_device dev-ind kpm-ind@maker.it.test "$KPM" CLAIM-IND-1
add_stakeholder frank "pw-$(openssl rand -hex 8)"
claim frank dev-ind CLAIM-IND-1
start_server

enrol() {  # enrol NAME BODY: sets EXPORT and fills RESP
  http_request "$T/$1.req" POST /enrolment "$2" "$MEF_FQDN"
  ossl_client "$MEF_PORT" "$T/$1.out" "$T/$1.req" -tls1_2 -cipher PSK-AES128-CBC-SHA256 -psk "$KPM" \
    -psk_identity kpm-ind@maker.it.test -servername "$MEF_FQDN" \
    -keymatexport EXPORTER-oneM2M-Bootstrap -keymatexportlen 48 || fail "$1: s_client failed"
  EXPORT=$(exporter_hex "$T/$1.out")
  http_parse "$T/$1.out"
}

# Explicit mafEnrolment: true is the default behaviour.
enrol explicit-true '{"mafEnrolment": true}'
assert_eq "$(resp status)" 201 "mafEnrolment true: HTTP status"
assert_eq "$(resp json:keId)" "$(keid_of "$EXPORT")" "mafEnrolment true: keId"
assert_match "$(resp json:instructions)" '"type": "mafEnrolment"' "mafEnrolment true: MAF instruction"
wait_delivered dev-ind "$(resp json:keId)" || fail "mafEnrolment true: not delivered"
pass "mafEnrolment true: enrolled with a MAF instruction, delivered"
KEID1=$(resp json:keId) KM1=$(km_of "$EXPORT")

BEFORE=$(state_snapshot)
enrol no-maf '{"mafEnrolment": false}'
status=$(resp status)
[[ "$status" == 201 || "$status" == 4?? || "$status/$(resp header:x-m2m-rsc)" == 501/5001 ]] ||
  fail "mafEnrolment false: HTTP $status RSC $(resp header:x-m2m-rsc) \"$(resp json:m2m:dbg)\" (expected 201, a 4xx refusal or 501/5001 NOT_IMPLEMENTED)"
[[ "$(resp body)" != *"commit enrolment"* && "$(resp body)" != *"outbox"* ]] ||
  fail "mafEnrolment false: internal details in the answer: $(resp body)"
if [[ "$status" == 201 ]]; then
  KEID2=$(resp json:keId)
  assert_eq "$KEID2" "$(keid_of "$EXPORT")" "mafEnrolment false: keId"
  assert_eq "$(resp json:instructions)" "[]" "mafEnrolment false: no MAF instruction"
  assert_eq "$(enrolee_field dev-ind keId)" "$KEID2" "mafEnrolment false: enrolee updated"
  # A re-enrolment without MAF enrolment delivers a retirement of the previous Km (documented).
  assert_eq "$(db_query 'SELECT count(*) FROM outbox WHERE generation = 2')" 1 "mafEnrolment false: one retirement queued"
  wait_for '[[ "$(enrolee_field dev-ind mafDelivery)" == delivered ]]' || fail "mafEnrolment false: retirement not delivered"
  assert_eq "$(db_query 'SELECT count(*) FROM maf_credentials')" 0 "mafEnrolment false: no MAF credential left"
  assert_eq "$(enrolee_field dev-ind credentialIds)" "[]" "mafEnrolment false: no Credential-IDs"
  pass "mafEnrolment false: enrolled (KeID $KEID2) without a MAF credential; the old one retired"
  # This was a re-enrolment: Ke of generation 1 is superseded and the enrolee's Credential-IDs no
  # longer list its KmID, so the Km derived from it must not open the MAF any more.
  http_request "$T/session.req" GET /maf/v1/session '' "$MAF_FQDN"
  rc=0
  ossl_client "$MAF_PORT" "$T/old-km.out" "$T/session.req" -tls1_2 -cipher PSK-AES128-CBC-SHA256 \
    -psk "$KM1" -psk_identity "$KEID1" -servername "$MAF_FQDN" || rc=$?
  [[ $rc -ne 0 ]] || fail "mafEnrolment false: the superseded generation-1 Km ($KEID1) still opens the MAF"
  pass "mafEnrolment false: the superseded generation-1 Km no longer opens the MAF"
else
  assert_eq "$(state_snapshot)" "$BEFORE" "mafEnrolment false: refusal changed the state"
  pass "mafEnrolment false: refused with HTTP $status \"$(resp json:m2m:dbg)\", nothing changed"
fi
