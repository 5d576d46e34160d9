#!/usr/bin/env bash
# The certificate RSPF (TS-0003 §8.3.2.2) with TLS stacks we did not write. Flow A with stock
# `openssl s_client` (TLS 1.2, TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, device certificate and key)
# and `gnutls-cli` (TLS 1.3, device certificate): the keId equals the exporter octets 0-15 that the
# client itself printed, and the MAF accepts `openssl s_client -psk` with the Km computed by
# `openssl dgst`. Then OCSP stapling of the MEF certificate (RFC 6066 §8): without mefOcspUrl no
# staple is sent and `mte-enrolee --require-staple` refuses; with mefOcspUrl pointing at a
# responder that knows the MEF certificate, `s_client -status` shows a good staple and
# `--require-staple` enrols; with the MEF certificate revoked at the responder, the MEF staples
# nothing (and says so in its log), while enrolments without --require-staple still work.
source "$(dirname "$0")/lib.sh"

START=$(now_ms)
init_mte
add_stakeholder ivan "pw-$(openssl rand -hex 8)"
device_ca maker
start_ocsp devocsp "$T/index-dev.txt" "$T/maker"
DEV_OCSP=$OCSP_URL
issue_cert dev-x "$T/maker" --ocsp-url "$DEV_OCSP"
index_good "$T/index-dev.txt" "$SERIAL"
add_cert_device dev-x certSha256 "$CERT_SHA" CLAIM-X
claim ivan dev-x CLAIM-X
"$MTE" admin --data "$DATA" device-ca add "$T/maker/ca.crt" --name maker >/dev/null
DEV_CRT="$T/dev-x/device.crt" DEV_KEY="$T/dev-x/device.key"

# A responder for the MEF's own certificate: issuer and signer are the MTE's development CA.
for f in ca.crt ca.key mef.crt; do [[ -f "$DATA/pki/$f" ]] || fail "no $f in $DATA/pki"; done
MEF_SERIAL=$(cert_serial "$DATA/pki/mef.crt")
index_good "$T/index-mef.txt" "$MEF_SERIAL"
mkdir -p "$T/mtepki"
cp "$DATA/pki/ca.crt" "$DATA/pki/ca.key" "$T/mtepki/"
start_ocsp mefocsp "$T/index-mef.txt" "$T/mtepki"
MEF_OCSP=$OCSP_URL

start_server
pass "mte serve running (MEF $MEF_PORT, MAF $MAF_PORT), no mefOcspUrl"

http_request "$T/enrol.req" POST /enrolment '{}' "$MEF_FQDN"
http_request "$T/session.req" GET /maf/v1/session '' "$MAF_FQDN"

# check_enrolment NAME GENERATION EXPORT_SOURCE: the HTTP answer in $T/NAME.out against the
# exporter output in EXPORT_SOURCE; sets KEID and KM; waits for the MAF delivery.
check_enrolment() {
  local name=$1 generation=$2 source_file=$3
  EXPORT=$(exporter_hex "$source_file")
  assert_match "$EXPORT" '^[0-9A-F]{96}$' "$name: 48 octets of keying material from the client"
  http_parse "$T/$name.out"
  assert_eq "$(resp status)" 201 "$name: HTTP status"
  assert_eq "$(resp header:x-m2m-rsc)" 2001 "$name: X-M2M-RSC"
  KEID=$(resp json:keId)
  assert_eq "$KEID" "$(keid_of "$EXPORT")" "$name: keId = UPPERCASE-HEX(exporter octets 0-15)@MEF-FQDN"
  assert_eq "$(resp json:credentialIds)" "[\"11-$KEID\"]" "$name: Credential-ID (KmID type 11)"
  KM=$(km_of "$EXPORT")
  wait_delivered dev-x "$KEID" || fail "$name: MAF delivery did not complete: $(enrolee_json)"
  assert_eq "$(enrolee_field dev-x generation)" "$generation" "$name: generation"
  assert_eq "$(enrolee_field dev-x rspf)" CERT "$name: rspf of the entry"
  pass "$name: keId $KEID equals the client's exporter; generation $generation delivered to the MAF"
}

# --- 1. openssl s_client, TLS 1.2 ECDHE-ECDSA-AES128-SHA256 with the device certificate
ossl_client "$MEF_PORT" "$T/ossl12.out" "$T/enrol.req" -tls1_2 -cert "$DEV_CRT" -key "$DEV_KEY" \
  -cipher ECDHE-ECDSA-AES128-SHA256 -servername "$MEF_FQDN" -CAfile "$DATA/pki/ca.crt" \
  -verify_return_error -keymatexport EXPORTER-oneM2M-Bootstrap -keymatexportlen 48 ||
  { cat "$T/ossl12.out" "$T/ossl12.out.err" >&2; fail "s_client certificate enrolment failed"; }
assert_file_has "$T/ossl12.out" "Cipher is ECDHE-ECDSA-AES128-SHA256" "s_client: negotiated suite"
assert_file_has "$T/ossl12.out" "Verify return code: 0 (ok)" "s_client: the MEF certificate verifies"
check_enrolment ossl12 1 "$T/ossl12.out"
assert_file_has "$SERVE_LOG" "with KeID $KEID over TLSv1.2 ECDHE-ECDSA-AES128-SHA256 (RSPF CERT)" "server view"
maf_ossl_ok ossl12 "$KEID" "$KM" -tls1_2 -cipher PSK-AES128-CBC-SHA256
KEID1=$KEID

# --- 2. gnutls-cli, TLS 1.3 with the device certificate
gnutls_client "$MEF_PORT" "$T/gnutls13.out" "$T/enrol.req" --sni-hostname "$MEF_FQDN" \
  --verify-hostname "$MEF_FQDN" --x509certfile "$DEV_CRT" --x509keyfile "$DEV_KEY" \
  --x509cafile "$DATA/pki/ca.crt" \
  --priority 'NORMAL:-VERS-ALL:+VERS-TLS1.3' \
  --keymatexport EXPORTER-oneM2M-Bootstrap --keymatexportsize 48 ||
  { cat "$T/gnutls13.out" "$T/gnutls13.out.log" >&2; tail -n 20 "$T/gnutls13.out.err" >&2; fail "gnutls-cli certificate enrolment failed"; }
assert_file_has "$T/gnutls13.out.log" "- Description: (TLS1.3" "gnutls-cli: TLS 1.3"
check_enrolment gnutls13 2 "$T/gnutls13.out.log"
assert_ne "$KEID" "$KEID1" "re-enrolment rotates the KeID"
assert_file_has "$SERVE_LOG" "with KeID $KEID over TLSv1.3" "server view of the TLS 1.3 session"
maf_ossl_ok gnutls13 "$KEID" "$KM" -tls1_2 -cipher PSK-AES128-CBC-SHA256
audit_list | grep -a "enrolment.reenrol .*device dev-x " | tail -n 1 >"$T/reenrol.audit"
assert_file_has "$T/reenrol.audit" "RSPF CERT, certificate sha256 $CERT_SHA, device CA 'maker', OCSP good from $DEV_OCSP" \
  "audit of the gnutls-cli re-enrolment"

# --- 3. stapling: none without mefOcspUrl
ossl_client "$MEF_PORT" "$T/status-none.out" "$T/enrol.req" -status -tls1_2 -cert "$DEV_CRT" \
  -key "$DEV_KEY" -cipher ECDHE-ECDSA-AES128-SHA256 -servername "$MEF_FQDN" -CAfile "$DATA/pki/ca.crt" ||
  { cat "$T/status-none.out.err" >&2; fail "s_client -status without a staple failed"; }
assert_file_has "$T/status-none.out" "OCSP response: no response sent" "no mefOcspUrl: no staple"
rc=$(enrol_cert "$T/req-staple-none.out" "$DEV_CRT" "$DEV_KEY" --require-staple)
assert_ne "$rc" 0 "--require-staple without a staple"
assert_file_has "$T/req-staple-none.out" "staple" "--require-staple without a staple: the message"
pass "no mefOcspUrl: no staple; --require-staple refused: $(grep -a 'mte-enrolee' "$T/req-staple-none.out" | cut -c1-160)"

restart_with_staple() {
  stop_servers_mte
  set_config mefOcspUrl "\"$MEF_OCSP\""
  start_server
}
stop_servers_mte() {
  local pid=${SERVER_PIDS[-1]}
  kill -TERM "$pid"
  reap_server "$pid"
}

# --- 4. stapling with mefOcspUrl: a good staple
restart_with_staple
wait_log "mef: stapling the MEF certificate's OCSP status from $MEF_OCSP" ||
  fail "the MEF did not report stapling"
ossl_client "$MEF_PORT" "$T/status-good.out" "$T/enrol.req" -status -tls1_2 -cert "$DEV_CRT" \
  -key "$DEV_KEY" -cipher ECDHE-ECDSA-AES128-SHA256 -servername "$MEF_FQDN" -CAfile "$DATA/pki/ca.crt" ||
  { cat "$T/status-good.out.err" >&2; fail "s_client -status failed"; }
assert_file_has "$T/status-good.out" "OCSP Response Status: successful" "staple: response status"
assert_file_has "$T/status-good.out" "Cert Status: good" "staple: certificate status"
assert_file_has "$T/status-good.out" "Serial Number: $MEF_SERIAL" "staple: about the MEF certificate"
# (each s_client -status run above posts /enrolment too: a re-enrolment each time)
gen=$(enrolee_field dev-x generation)
rc=$(enrol_cert "$T/req-staple-good.out" "$DEV_CRT" "$DEV_KEY" --require-staple)
[[ "$rc" == 0 ]] || { cat "$T/req-staple-good.out" >&2; fail "--require-staple with a good staple exited $rc"; }
assert_file_has "$T/req-staple-good.out" "(RSPF CERT)" "--require-staple with a good staple"
assert_eq "$(enrolee_field dev-x generation)" $((gen + 1)) "generation after the stapled enrolment"
pass "mefOcspUrl: s_client sees a good staple for serial $MEF_SERIAL; --require-staple enrols"

# --- 5. the MEF certificate revoked at the responder: no staple at all
: >"$T/index-mef.txt"
index_revoked "$T/index-mef.txt" "$MEF_SERIAL"
ocsp_check=$(openssl ocsp -issuer "$DATA/pki/ca.crt" -cert "$DATA/pki/mef.crt" -url "$MEF_OCSP" \
  -CAfile "$DATA/pki/ca.crt" 2>&1 || true)
[[ "$ocsp_check" == *": revoked"* ]] || fail "the responder does not report the MEF certificate revoked: $ocsp_check"
stop_servers_mte
start_server
wait_log "mef: no OCSP staple yet from $MEF_OCSP: " || fail "the MEF did not report the missing staple"
assert_file_has "$SERVE_LOG" "the MEF certificate's OCSP status is revoked" "server log on a revoked MEF certificate"
ossl_client "$MEF_PORT" "$T/status-revoked.out" "$T/enrol.req" -status -tls1_2 -cert "$DEV_CRT" \
  -key "$DEV_KEY" -cipher ECDHE-ECDSA-AES128-SHA256 -servername "$MEF_FQDN" -CAfile "$DATA/pki/ca.crt" ||
  { cat "$T/status-revoked.out.err" >&2; fail "s_client -status (MEF revoked) failed"; }
assert_file_has "$T/status-revoked.out" "OCSP response: no response sent" "MEF revoked: no staple"
assert_file_lacks "$T/status-revoked.out" "Cert Status: revoked" "MEF revoked: never a revoked staple"
gen=$(enrolee_field dev-x generation)
rc=$(enrol_cert "$T/req-staple-revoked.out" "$DEV_CRT" "$DEV_KEY" --require-staple)
assert_ne "$rc" 0 "--require-staple with the MEF certificate revoked"
assert_eq "$(enrolee_field dev-x generation)" "$gen" "nothing recorded when --require-staple refuses"
assert_file_has "$T/req-staple-revoked.out" "staple" "--require-staple (MEF revoked): the message"
rc=$(enrol_cert "$T/no-staple-needed.out" "$DEV_CRT" "$DEV_KEY")
[[ "$rc" == 0 ]] || { cat "$T/no-staple-needed.out" >&2; fail "enrolment without --require-staple exited $rc"; }
assert_eq "$(enrolee_field dev-x generation)" $((gen + 1)) "generation after an unstapled enrolment"
pass "MEF certificate revoked: no staple sent ($(grep -ao 'no OCSP staple yet.*' "$SERVE_LOG" | cut -c1-120)); --require-staple refused"

echo "cert_interop_test: all passed in $(( ($(now_ms) - START) / 1000 )) s"
