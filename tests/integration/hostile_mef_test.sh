#!/usr/bin/env bash
# Must show 5: hostile input at the MEF. Each probe must be answered with a clear error (TLS alert
# or oneM2M error response), leave the enrolee database, audit log, outbox and MAF key store exactly
# as they were, and leave a readable line in the server log. The server must keep serving. Finally,
# a second enrolment of an enrolled device is the documented re-enrolment: new KeID, generation 2,
# the previous Km removed at the MAF.
source "$(dirname "$0")/lib.sh"

init_mte
set_config handshakeTimeoutMs 2000  # room for slow legitimate handshakes on a loaded machine
KPM=$(openssl rand -hex 32)
KPM_ID="kpm-claimed@maker.it.test"
KPM_U=$(openssl rand -hex 32)
KPM_U_ID="kpm-unclaimed@maker.it.test"
add_device dev-claimed "$KPM_ID" "$KPM" CLAIM-HOSTILE-1
add_device dev-unclaimed "$KPM_U_ID" "$KPM_U" CLAIM-HOSTILE-2
add_stakeholder carol "pw-$(openssl rand -hex 8)"
claim carol dev-claimed CLAIM-HOSTILE-1
start_server
pass "mte serve running (MEF $MEF_PORT, handshake deadline 2000 ms)"

BEFORE=$(state_snapshot)
# unchanged WHAT: nothing in the store moved.
unchanged() {
  local now
  now=$(state_snapshot)
  [[ "$now" == "$BEFORE" ]] || { diff <(echo "$BEFORE") <(echo "$now") >&2; fail "$1: state changed"; }
}
# logged_line TEXT WHAT: the server log has a readable line with TEXT (polled: the line may land
# just after the peer saw the outcome).
logged_line() {
  local text=$1 what=$2
  wait_log "$text" || { tail -n 5 "$SERVE_LOG" >&2; fail "$what: no \"$text\" in serve.log"; }
}

http_request "$T/enrol.req" POST /enrolment '{}' "$MEF_FQDN"

# handshake_refused NAME ALERT_TEXT LOG_TEXT [s_client options]: the TLS handshake fails with the
# given alert, no HTTP response comes back, nothing changes, the log explains.
handshake_refused() {
  local name=$1 alert=$2 log_text=$3 out="$T/$1.out" rc=0
  shift 3
  ossl_client "$MEF_PORT" "$out" "$T/enrol.req" "$@" || rc=$?
  [[ $rc -ne 0 ]] || fail "$name: s_client succeeded"
  assert_file_lacks "$out" "HTTP/1.1" "$name: no HTTP response"
  assert_file_has "$out.err" "$alert" "$name: alert"
  logged_line "$log_text" "$name"
  unchanged "$name"
  pass "$name: handshake refused ($alert), logged \"$log_text\", no state change"
}

# request_refused NAME REQUEST_FILE STATUS RSC DBG_TEXT [LOG_TEXT]: the handshake with the claimed
# device succeeds, the request is answered with that oneM2M error, nothing changes.
request_refused() {
  local name=$1 req=$2 status=$3 rsc=$4 dbg=$5 log_text=${6:-} out="$T/$1.out"
  ossl_client "$MEF_PORT" "$out" "$req" -tls1_2 -cipher PSK-AES128-CBC-SHA256 -psk "$KPM" \
    -psk_identity "$KPM_ID" -servername "$MEF_FQDN" || { cat "$out.err" >&2; fail "$name: s_client failed"; }
  http_parse "$out"
  assert_eq "$(resp status)" "$status" "$name: HTTP status"
  assert_eq "$(resp header:x-m2m-rsc)" "$rsc" "$name: X-M2M-RSC"
  assert_eq "$(resp header:connection)" close "$name: answer carries Connection: close"
  local message
  message=$(resp json:m2m:dbg)
  [[ "$message" == *"$dbg"* ]] || fail "$name: m2m:dbg '$message' does not mention '$dbg'"
  [[ -z "$log_text" ]] || logged_line "$log_text" "$name"
  unchanged "$name"
  pass "$name: HTTP $status, RSC $rsc, \"$message\", no state change"
}

PSK12=(-tls1_2 -cipher PSK-AES128-CBC-SHA256)

# --- TLS-level refusals
handshake_refused unknown-kpmid "alert" "handshake with unknown KpmID 'nobody@maker.it.test'" \
  "${PSK12[@]}" -psk "$KPM" -psk_identity nobody@maker.it.test -servername "$MEF_FQDN"
logged_line "TLS handshake from 127.0.0.1 failed: unknown PSK identity" unknown-kpmid
handshake_refused unknown-kpmid-tls13 "alert" "handshake with unknown KpmID 'nobody13@maker.it.test'" \
  -tls1_3 -psk "$KPM" -psk_identity nobody13@maker.it.test -servername "$MEF_FQDN"
handshake_refused wrong-psk "alert bad record mac" "decryption failed or bad record mac" \
  "${PSK12[@]}" -psk "$(flip_hex "$KPM")" -psk_identity "$KPM_ID" -servername "$MEF_FQDN"
handshake_refused wrong-psk-tls13 "alert" "binder does not verify" \
  -tls1_3 -psk "$(flip_hex "$KPM")" -psk_identity "$KPM_ID" -servername "$MEF_FQDN"
# An unknown identity must look exactly like a wrong key to the peer (RFC 4279 §2: no oracle).
alert_of() { sed -nE 's/.*(SSL alert number [0-9]+).*/\1/p' "$T/$1.out.err" | head -n 1; }
assert_eq "$(alert_of unknown-kpmid)" "$(alert_of wrong-psk)" "TLS 1.2: unknown KpmID vs wrong Kpm"
assert_eq "$(alert_of unknown-kpmid-tls13)" "$(alert_of wrong-psk-tls13)" "TLS 1.3: unknown KpmID vs wrong Kpm"
pass "unknown KpmID and wrong Kpm are indistinguishable to the peer ($(alert_of unknown-kpmid) / $(alert_of unknown-kpmid-tls13))"
handshake_refused no-sni "unrecognized name" "client sent no server_name (SNI is required)" \
  "${PSK12[@]}" -psk "$KPM" -psk_identity "$KPM_ID" -noservername
handshake_refused no-sni-tls13 "unrecognized name" "client sent no server_name (SNI is required)" \
  -tls1_3 -psk "$KPM" -psk_identity "$KPM_ID" -noservername
handshake_refused wrong-sni "unrecognized name" \
  "client asked for server_name '$MAF_FQDN', this server is '$MEF_FQDN'" \
  "${PSK12[@]}" -psk "$KPM" -psk_identity "$KPM_ID" -servername "$MAF_FQDN"
handshake_refused tls1.0 "alert protocol version" "unsupported protocol" \
  -tls1 -cipher 'PSK-AES128-CBC-SHA:@SECLEVEL=0' -psk "$KPM" -psk_identity "$KPM_ID" -servername "$MEF_FQDN"
handshake_refused tls1.1 "alert protocol version" "unsupported protocol" \
  -tls1_1 -cipher 'PSK-AES128-CBC-SHA:@SECLEVEL=0' -psk "$KPM" -psk_identity "$KPM_ID" -servername "$MEF_FQDN"
handshake_refused non-psk-suite "alert handshake failure" "no shared cipher" \
  -tls1_2 -cipher 'AES128-SHA256:@SECLEVEL=0' -servername "$MEF_FQDN"

# --- the unclaimed device: the handshake succeeds (it is in the manifest), enrolment is refused.
out="$T/unclaimed.out"
ossl_client "$MEF_PORT" "$out" "$T/enrol.req" "${PSK12[@]}" -psk "$KPM_U" -psk_identity "$KPM_U_ID" \
  -servername "$MEF_FQDN" || fail "unclaimed: handshake failed"
http_parse "$out"
assert_eq "$(resp status)" 403 "unclaimed: HTTP status"
assert_eq "$(resp header:x-m2m-rsc)" 4103 "unclaimed: X-M2M-RSC ORIGINATOR_HAS_NO_PRIVILEGE"
assert_match "$(resp json:m2m:dbg)" "dev-unclaimed.*not been claimed.*proof of control" \
  "unclaimed: m2m:dbg"
logged_line "has not been claimed by a stakeholder" unclaimed
unchanged unclaimed
pass "unclaimed: HTTP 403, RSC 4103, \"$(resp json:m2m:dbg)\", no state change"

# --- HTTP-level refusals inside an authenticated session of the claimed (not yet enrolled) device.
http_request "$T/big.req" POST /enrolment '@json:70000' "$MEF_FQDN"
request_refused body-70000 "$T/big.req" 400 4000 "HTTP body exceeds the limit" "HTTP body exceeds the limit"
http_request "$T/big1.req" POST /enrolment '@json:65537' "$MEF_FQDN"
request_refused body-65537 "$T/big1.req" 400 4000 "HTTP body exceeds the limit"
# Exactly 64 KiB is within the limit: it reaches the JSON check (and is refused there).
http_request "$T/max.req" POST /enrolment '@json:65536' "$MEF_FQDN"
request_refused body-65536 "$T/max.req" 400 4000 "unknown member 'x'"
http_request "$T/hdr.req" POST /enrolment '{}' "$MEF_FQDN" "X-Padding: $(head -c 9000 /dev/zero | tr '\0' a)"
request_refused header-9000 "$T/hdr.req" 400 4000 "header block exceeds the limit"
http_request "$T/malformed.req" POST /enrolment '{"mafEnrolment": tru' "$MEF_FQDN"
request_refused malformed-json "$T/malformed.req" 400 4000 "not valid JSON" "request body is not valid JSON"
http_request "$T/array.req" POST /enrolment '[]' "$MEF_FQDN"
request_refused json-array "$T/array.req" 400 4000 "must be a JSON object"
http_request "$T/unknown.req" POST /enrolment '{"mafEnrolment": true, "sneaky": 1}' "$MEF_FQDN"
request_refused unknown-member "$T/unknown.req" 400 4000 "unknown member 'sneaky'"
http_request "$T/type.req" POST /enrolment '{"mafEnrolment": "yes"}' "$MEF_FQDN"
request_refused wrong-type "$T/type.req" 400 4000 "must be a boolean"
http_request "$T/ctype.req" POST /enrolment '{}' "$MEF_FQDN" "Content-Type: text/plain"
request_refused content-type "$T/ctype.req" 415 4015 "Content-Type must be application/json"
http_request "$T/get.req" GET /enrolment '' "$MEF_FQDN"
request_refused wrong-method "$T/get.req" 405 4005 "only POST"
assert_eq "$(resp header:allow)" POST "wrong-method: Allow header"
http_request "$T/path.req" POST /enrolment/../admin '{}' "$MEF_FQDN"
request_refused wrong-path "$T/path.req" 404 4004 "no such resource"
printf 'HELLO THERE\r\n\r\n' >"$T/nonhttp.req"
request_refused not-http-inside-tls "$T/nonhttp.req" 400 4000 "malformed HTTP"

# --- garbage instead of TLS, and clients that stall in the handshake (deadline 2000 ms).
cat >"$T/probe.py" <<'EOF'
import os, socket, sys, time
mode, port = sys.argv[1], int(sys.argv[2])
# A ClientHello record header announcing 512 bytes, then the start of the handshake message.
partial_hello = bytes.fromhex("1603010200" "010001fc" "0303") + os.urandom(32)
s = socket.create_connection(("127.0.0.1", port))
s.settimeout(15)
start = time.monotonic()
received = b""
try:
    if mode == "http":
        s.sendall(b"GET / HTTP/1.1\r\nHost: mef\r\n\r\n")
    elif mode == "random":
        s.sendall(os.urandom(517))
    elif mode == "bad-record":
        s.sendall(bytes.fromhex("1603010005") + b"hello")
    elif mode == "half-hello":
        s.sendall(partial_hello)
    elif mode == "trickle":
        # One byte every 100 ms: the deadline is for the whole handshake, not per read.
        s.setblocking(True)
        for b in partial_hello + os.urandom(400):
            s.sendall(bytes([b]))
            s.settimeout(0.1)
            try:
                chunk = s.recv(4096)
                if not chunk:
                    raise ConnectionResetError
                received += chunk
            except socket.timeout:
                pass
        raise SystemExit("trickle: still connected after %.1f s" % (time.monotonic() - start))
    # mode "silent": send nothing.
    s.settimeout(15)
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        received += chunk
except (ConnectionResetError, BrokenPipeError):
    pass
print("%.3f %s" % (time.monotonic() - start, received.hex()))
EOF

# probe MODE: prints "SECONDS HEX_RECEIVED".
probe() { python3 "$T/probe.py" "$1" "$MEF_PORT"; }

for mode in http random bad-record; do
  read -r secs got < <(probe "$mode")
  awk -v s="$secs" 'BEGIN { exit !(s < 1.8) }' ||
    fail "garbage-$mode: closed only after $secs s (the deadline, not the garbage)"
  [[ -z "${got:-}" || "$got" == 15* ]] || fail "garbage-$mode: answered with non-alert bytes $got"
  unchanged "garbage-$mode"
  pass "garbage-$mode: connection closed after ${secs} s (received: ${got:-nothing})"
done
logged_line "TLS handshake from 127.0.0.1 failed: TLS handshake failed: error:0A00009C:SSL routines::http request" garbage-http
logged_line "wrong version number" garbage-random

for mode in silent half-hello trickle; do
  read -r secs got < <(probe "$mode")
  awk -v s="$secs" 'BEGIN { exit !(s >= 1.5 && s <= 6) }' ||
    fail "stall-$mode: disconnected after $secs s, expected the 2 s handshake deadline"
  [[ -z "${got:-}" ]] || fail "stall-$mode: unexpected bytes $got"
  unchanged "stall-$mode"
  pass "stall-$mode: disconnected by the server after ${secs} s"
done
assert_eq "$(grep -c 'did not complete the TLS handshake within 2000 ms; closed' "$SERVE_LOG")" 3 \
  "each stalled client is logged"

# The server still serves: a well-formed request after all of that is answered.
request_refused still-serving "$T/get.req" 405 4005 "only POST"
pass "after the hostile clients the server still answers"
assert_eq "$(enrolee_field dev-claimed state)" pending "claimed device still pending"
assert_eq "$(enrolee_field dev-claimed keId)" "" "claimed device has no KeID"
assert_eq "$(db_query 'SELECT count(*) FROM maf_credentials')" 0 "no MAF credential appeared"

# --- re-enrolment of an enrolled device (defined behaviour: rotation).
enrol() {
  local out="$T/enrol-$1.out"
  ossl_client "$MEF_PORT" "$out" "$T/enrol.req" "${PSK12[@]}" -psk "$KPM" -psk_identity "$KPM_ID" \
    -servername "$MEF_FQDN" -keymatexport EXPORTER-oneM2M-Bootstrap -keymatexportlen 48 ||
    fail "enrolment $1 failed"
  http_parse "$out"
  assert_eq "$(resp status)" 201 "enrolment $1: HTTP status"
  EXPORT=$(exporter_hex "$out")
  KEID=$(resp json:keId)
  assert_eq "$KEID" "$(keid_of "$EXPORT")" "enrolment $1: keId from the exporter"
  KM=$(km_of "$EXPORT")
}
maf_session() {
  http_request "$T/session.req" GET /maf/v1/session '' "$MAF_FQDN"
  ossl_client "$MAF_PORT" "$T/maf-$1.out" "$T/session.req" "${PSK12[@]}" -psk "$3" \
    -psk_identity "$2" -servername "$MAF_FQDN"
}

enrol 1
KEID1=$KEID KM1=$KM
wait_delivered dev-claimed "$KEID1" || fail "first enrolment not delivered"
assert_eq "$(enrolee_field dev-claimed generation)" 1 "first enrolment: generation"
maf_session first "$KEID1" "$KM1" || fail "first Km does not open the MAF"
pass "first enrolment: generation 1, KeID $KEID1, Km works at the MAF"

enrol 2
KEID2=$KEID KM2=$KM
assert_ne "$KEID2" "$KEID1" "re-enrolment: new KeID"
wait_delivered dev-claimed "$KEID2" || fail "re-enrolment not delivered"
assert_eq "$(enrolee_field dev-claimed generation)" 2 "re-enrolment: generation"
assert_eq "$(enrolee_field dev-claimed credentialIds)" "[\"11-$KEID2\"]" "re-enrolment: credential IDs replaced"
maf_session second "$KEID2" "$KM2" || fail "new Km does not open the MAF"
assert_eq "$(http_field "$T/maf-second.out" json:kmId)" "$KEID2" "re-enrolment: MAF reports the new KmID"
rc=0
maf_session old "$KEID1" "$KM1" || rc=$?
[[ $rc -ne 0 ]] || fail "re-enrolment: the old Km still opens the MAF"
assert_file_lacks "$T/maf-old.out" "HTTP/1.1" "re-enrolment: no HTTP for the old Km"
logged_line "maf: handshake with unknown KmID '$KEID1'" "re-enrolment: old KmID gone"
assert_eq "$(db_query "SELECT km_id || ' ' || generation FROM maf_credentials")" "$KEID2 2" \
  "re-enrolment: the MAF holds only the new credential"
assert_eq "$(audit_list | grep -c 'enrolment.reenrol')" 1 "re-enrolment: audited as such"
pass "re-enrolment: KeID $KEID1 -> $KEID2, generation 2, old Km removed at the MAF"
