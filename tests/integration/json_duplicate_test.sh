#!/usr/bin/env bash
# Duplicate members in a JSON body (RFC 8259 §4: names SHOULD be unique; parsers disagree on which
# one wins) are refused, so two components never read one request two ways: the MEF's enrolment
# request and the portal's REST bodies answer 400 naming the member, and nothing changes.
source "$(dirname "$0")/lib.sh"

init_mte
KPM=$(openssl rand -hex 32)
KPM_ID="kpm-dup@maker.it.test"
add_device dev-dup "$KPM_ID" "$KPM" CLAIM-DUP-1
PW="pw-$(openssl rand -hex 8)"
add_stakeholder alice "$PW"
claim alice dev-dup CLAIM-DUP-1
start_server

# The MEF, in a PSK session: mafEnrolment false, then true.
BODY='{"mafEnrolment":false,"mafEnrolment":true}'
printf '%s\r\n' "POST /enrolment HTTP/1.1" "Host: $MEF_FQDN" "Content-Type: application/json" \
  "X-M2M-Origin: Cit-device" "X-M2M-RI: dup-1" "X-M2M-RVI: 3" "Content-Length: ${#BODY}" "" \
  >"$T/mef.req"
printf '%s' "$BODY" >>"$T/mef.req"
ossl_client "$MEF_PORT" "$T/mef.out" "$T/mef.req" -psk "$KPM" -psk_identity "$KPM_ID" \
  -servername "$MEF_FQDN" || true
http_parse "$T/mef.out"
assert_eq "$(resp status)" 400 "MEF: duplicate mafEnrolment"
assert_file_has "$T/mef.out" "duplicate member 'mafEnrolment'" "MEF: the reason names the member"
assert_eq "$(enrolee_field dev-dup state)" pending "the device is not enrolled"
pass "the MEF refuses an enrolment request with a duplicate member and enrols nothing"

# The portal: a login whose password appears twice is refused before any password check.
code=$(portal_call "$T/login.out" POST /api/v1/login \
  "{\"name\":\"alice\",\"password\":\"wrong\",\"password\":\"$PW\"}")
assert_eq "$code" 400 "portal: duplicate password member"
assert_file_has "$T/login.out" "duplicate member 'password'" "portal: the reason"
TOKEN=$(portal_login alice "$PW")
[[ -n "$TOKEN" ]] || fail "the owner cannot sign in after the refused request"
pass "the portal refuses a login body with a duplicate member"

before=$(enrolee_json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
code=$(portal_call "$T/add.out" POST /api/v1/enrolees \
  '{"deviceId":"dev-x","deviceId":"dev-dup","claimCode":"CLAIM-DUP-1"}' "$TOKEN")
assert_eq "$code" 400 "portal: duplicate deviceId"
assert_file_has "$T/add.out" "duplicate member 'deviceId'" "portal: the reason"
after=$(enrolee_json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
assert_eq "$after" "$before" "no enrolee is added"
pass "the portal refuses an enrolee body with a duplicate member and adds nothing"
