#!/usr/bin/env bash
# HTTP framing on the listeners (RFC 9112 §6): a transfer coding other than a lone `chunked` is
# refused at the header block (501 for one we do not implement, 400 for an unframeable list), as
# are Transfer-Encoding with Content-Length and a second Authorization; the connection is closed
# after the answer, so nothing pipelined behind it is read. Stock `openssl s_client` as the
# client; the device is not enrolled by a refused request.
source "$(dirname "$0")/lib.sh"

init_mte
KPM=$(openssl rand -hex 32)
KPM_ID="kpm-frame@maker.it.test"
add_device dev-frame "$KPM_ID" "$KPM" CLAIM-FRAME-1
add_stakeholder alice "pw-$(openssl rand -hex 8)"
claim alice dev-frame CLAIM-FRAME-1
start_server

# raw_request FILE LINES...: writes the lines joined by CRLF (the last one is the body, after an
# empty line when it is not empty).
raw_request() {
  local file=$1
  shift
  printf '%s\r\n' "$@" >"$file"
}

# The MEF, in a PSK session: `gzip, chunked` was read as if the body were plain JSON.
raw_request "$T/gzip.req" "POST /enrolment HTTP/1.1" "Host: $MEF_FQDN" \
  "Content-Type: application/json" "X-M2M-Origin: Cit-device" "X-M2M-RI: frame-1" "X-M2M-RVI: 3" \
  "Transfer-Encoding: gzip, chunked" "" "2" "{}" "0" ""
ossl_client "$MEF_PORT" "$T/gzip.out" "$T/gzip.req" -psk "$KPM" -psk_identity "$KPM_ID" \
  -servername "$MEF_FQDN" || true
http_parse "$T/gzip.out"
assert_eq "$(resp status)" 501 "MEF: Transfer-Encoding gzip, chunked"
assert_eq "$(enrolee_field dev-frame state)" pending "the device is not enrolled"
pass "the MEF answers 501 to a transfer coding it does not implement, and enrols nothing"

raw_request "$T/xchunked.req" "POST /enrolment HTTP/1.1" "Host: $MEF_FQDN" \
  "Content-Type: application/json" "X-M2M-Origin: Cit-device" "X-M2M-RI: frame-2" "X-M2M-RVI: 3" \
  "Transfer-Encoding: xchunked" "Content-Length: 2" "" "{}"
ossl_client "$MEF_PORT" "$T/xchunked.out" "$T/xchunked.req" -psk "$KPM" -psk_identity "$KPM_ID" \
  -servername "$MEF_FQDN" || true
http_parse "$T/xchunked.out"
assert_eq "$(resp status)" 400 "MEF: Transfer-Encoding xchunked with Content-Length"
assert_eq "$(enrolee_field dev-frame state)" pending "the device is still not enrolled"
pass "the MEF answers 400 to Transfer-Encoding that does not end with chunked"

# The portal: the request behind a refused one on the same connection is not answered.
raw_request "$T/portal.req" "POST /api/v1/login HTTP/1.1" "Host: localhost" \
  "Content-Type: application/json" "Transfer-Encoding: xchunked" "Content-Length: 5" "" \
  "hello" "GET /api/v1/health HTTP/1.1" "Host: localhost" "" ""
timeout 20 openssl s_client -connect "127.0.0.1:$PORTAL_PORT" -servername localhost -quiet \
  -ign_eof <"$T/portal.req" >"$T/portal.out" 2>"$T/portal.err" || true
assert_match "$(head -n1 "$T/portal.out" | tr -d '\r')" "^HTTP/1.1 400" "portal: xchunked with Content-Length"
assert_eq "$(grep -c '^HTTP/1.1' "$T/portal.out")" 1 "one answer on the connection"
grep -qi '^Connection: close' "$T/portal.out" || fail "portal: the 400 does not close: $(cat "$T/portal.out")"
pass "the portal refuses Transfer-Encoding with Content-Length and closes before the pipelined request"

raw_request "$T/auth.req" "GET /api/v1/enrolees HTTP/1.1" "Host: localhost" \
  "Authorization: Bearer first" "Authorization: Bearer second" "" ""
timeout 20 openssl s_client -connect "127.0.0.1:$PORTAL_PORT" -servername localhost -quiet \
  -ign_eof <"$T/auth.req" >"$T/auth.out" 2>"$T/auth.err" || true
assert_match "$(head -n1 "$T/auth.out" | tr -d '\r')" "^HTTP/1.1 400" "portal: two Authorization fields"
assert_file_has "$T/auth.out" "more than one Authorization" "portal: the reason"
pass "the portal refuses a request with two Authorization fields"
