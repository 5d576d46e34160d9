#!/usr/bin/env bash
# Hostile and broken device certificates at the MEF (certificate RSPF, TS-0003 §8.3.2.2), in Flow A
# with stock `openssl s_client` as the device: each is refused clearly (HTTP 403, X-M2M-RSC 4103
# and the reason in m2m:dbg, or a failed handshake), logged, and leaves the store unchanged:
# expired, not yet valid, issued by an untrusted CA (though its certSha256 is in the manifest), a
# chain deeper than the device CA's --max-chain-depth, a certificate of no manifest device, an
# unclaimed device; a key that does not match the certificate (refused on the client side, by
# mte-enrolee and by s_client); OCSP answers about another certificate, stale, signed by another
# CA, and without the nonce. A self-signed certificate registered by spkiSha256 enrols by its key.
source "$(dirname "$0")/lib.sh"

START=$(now_ms)
init_mte
add_stakeholder hal "pw-$(openssl rand -hex 8)"
device_ca maker
device_ca rogue
device_ca deep
start_ocsp ocsp "$T/index.txt" "$T/maker"
URL=$OCSP_URL
# A second responder for the maker CA that signs with the rogue CA's key.
start_ocsp wrongsigner "$T/index.txt" "$T/maker" --rsigner "$T/rogue/ca.crt" --rkey "$T/rogue/ca.key"
URL_WRONG=$OCSP_URL
"$MTE" admin --data "$DATA" device-ca add "$T/maker/ca.crt" --name maker >/dev/null
"$MTE" admin --data "$DATA" device-ca add "$T/deep/ca.crt" --name deep --max-chain-depth 0 \
  --ocsp-url "$URL" >/dev/null

# ca_sign ID CA_DIR EXT START END [SUBJECT]: a new P-256 key in $T/ID/device.key and a certificate
# signed by the CA with `openssl ca` (explicit -startdate/-enddate, YYMMDDHHMMSSZ), extensions of
# section EXT (dev or ca); sets CERT_SHA and SERIAL.
cat >"$T/ca.cnf" <<'EOF'
[ca]
default_ca = any_ca
[any_ca]
database = $ENV::CA_DB
new_certs_dir = $ENV::CA_OUT
serial = $ENV::CA_OUT/serial
default_md = sha256
policy = policy_any
copy_extensions = none
unique_subject = no
[policy_any]
commonName = supplied
[dev]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
EOF
ca_sign() {
  local id=$1 ca=$2 ext=$3 start=$4 end=$5
  mkdir -p "$T/$id"
  openssl ecparam -name prime256v1 -genkey -noout -out "$T/$id/device.key" 2>/dev/null
  chmod 600 "$T/$id/device.key"
  openssl req -new -key "$T/$id/device.key" -subj "/CN=$id" -out "$T/$id/req.csr" 2>/dev/null
  [[ -f "$T/$id.db" ]] || : >"$T/$id.db"
  CA_DB="$T/$id.db" CA_OUT="$T/$id" openssl ca -batch -config "$T/ca.cnf" -cert "$ca/ca.crt" \
    -keyfile "$ca/ca.key" -rand_serial -extensions "$ext" -notext -startdate "$start" \
    -enddate "$end" -in "$T/$id/req.csr" -out "$T/$id/device.crt" >/dev/null 2>"$T/$id/ca.err" ||
    { cat "$T/$id/ca.err" >&2; fail "openssl ca for $id"; }
  CERT_SHA=$(openssl x509 -in "$T/$id/device.crt" -outform DER | sha256sum | cut -d' ' -f1)
  SERIAL=$(cert_serial "$T/$id/device.crt")
}
utc() { date -u -d "$1" +%y%m%d%H%M%SZ; }

# register ID: imports the device by its certificate and claims it.
register() { add_cert_device "$1" certSha256 "$CERT_SHA" "CLAIM-$1"; claim hal "$1" "CLAIM-$1"; }

# expired / not yet valid, signed by the maker CA and good at the responder
ca_sign expired "$T/maker" dev "$(utc '-10 days')" "$(utc '-1 day')"
index_good "$T/index.txt" "$SERIAL"; register expired
ca_sign future "$T/maker" dev "$(utc '+1 day')" "$(utc '+10 days')"
index_good "$T/index.txt" "$SERIAL"; register future
# from an untrusted CA, but its certSha256 is in the manifest
issue_cert rogue-dev "$T/rogue" --ocsp-url "$URL"
register rogue-dev
# deep: device CA 'deep' (max chain depth 0) -> intermediate -> device
ca_sign inter "$T/deep" ca_ext "$(utc '-1 hour')" "$(utc '+30 days')"
mv "$T/inter/device.crt" "$T/inter/ca.crt"; mv "$T/inter/device.key" "$T/inter/ca.key"
issue_cert deep-dev "$T/inter" --ocsp-url "$URL"
index_good "$T/index.txt" "$SERIAL"; register deep-dev
# in no manifest; in the manifest but unclaimed
issue_cert stranger "$T/maker" --ocsp-url "$URL"
index_good "$T/index.txt" "$SERIAL"
STRANGER_SHA=$CERT_SHA
issue_cert unclaimed "$T/maker" --ocsp-url "$URL"
index_good "$T/index.txt" "$SERIAL"
add_cert_device unclaimed certSha256 "$CERT_SHA" CLAIM-unclaimed
# a good device, for the key mismatch
issue_cert good "$T/maker" --ocsp-url "$URL"
index_good "$T/index.txt" "$SERIAL"; register good
# OCSP misbehaviour, one device each (the responder's mode is switched per case)
for id in othercert nononce stale; do
  issue_cert "oc-$id" "$T/maker" --ocsp-url "$URL"
  index_good "$T/index.txt" "$SERIAL"; register "oc-$id"
done
issue_cert oc-wrongsigner "$T/maker" --ocsp-url "$URL_WRONG"
index_good "$T/index.txt" "$SERIAL"; register oc-wrongsigner
# a self-signed device certificate, registered by its key
mkdir -p "$T/selfsigned"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=selfsigned" \
  -days 30 -sha256 -addext "basicConstraints=critical,CA:FALSE" \
  -addext "keyUsage=critical,digitalSignature" -addext "extendedKeyUsage=clientAuth" \
  -keyout "$T/selfsigned/device.key" -out "$T/selfsigned/device.crt" 2>/dev/null
chmod 600 "$T/selfsigned/device.key"
SELF_SPKI=$(openssl x509 -in "$T/selfsigned/device.crt" -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1)
add_cert_device selfsigned spkiSha256 "$SELF_SPKI" CLAIM-selfsigned
claim hal selfsigned CLAIM-selfsigned

start_server
pass "mte serve running (MEF $MEF_PORT); responders $URL and $URL_WRONG (signs with the rogue CA)"
http_request "$T/enrol.req" POST /enrolment '{}' "$MEF_FQDN"

# device_client NAME ID [s_client args]: s_client with the device's certificate and key.
device_client() {
  local name=$1 id=$2
  shift 2
  ossl_client "$MEF_PORT" "$T/$name.out" "$T/enrol.req" -tls1_2 -cipher ECDHE-ECDSA-AES128-SHA256 \
    -cert "$T/$id/device.crt" -key "$T/$id/device.key" -servername "$MEF_FQDN" \
    -CAfile "$DATA/pki/ca.crt" -verify_return_error "$@"
}

# refused NAME ID DBG_TEXT [s_client args]: the handshake completes, the MEF answers 403/4103 with
# DBG_TEXT in m2m:dbg, logs the refusal, and nothing changes.
refused() {
  local name=$1 id=$2 dbg=$3 before after message
  shift 3
  before=$(state_snapshot)
  device_client "$name" "$id" "$@" || { cat "$T/$name.out.err" >&2; fail "$name: s_client failed"; }
  http_parse "$T/$name.out"
  assert_eq "$(resp status)" 403 "$name: HTTP status"
  assert_eq "$(resp header:x-m2m-rsc)" 4103 "$name: X-M2M-RSC"
  message=$(resp json:m2m:dbg)
  [[ "$message" == *"$dbg"* ]] || fail "$name: m2m:dbg '$message' does not contain '$dbg'"
  wait_for "grep -aF 'mef: enrolment refused for' '$SERVE_LOG' | grep -qaF -- \"\$(printf %s '$dbg' | head -c 40)\"" 50 ||
    { tail -n 5 "$SERVE_LOG" >&2; fail "$name: no refusal with the reason in the MEF log"; }
  after=$(state_snapshot)
  [[ "$before" == "$after" ]] || { diff <(echo "$before") <(echo "$after") >&2; fail "$name: state changed"; }
  pass "$name: HTTP 403, RSC 4103, \"$(cut -c1-150 <<<"$message")\""
}

refused expired expired "device certificate has expired (notAfter "
refused not-yet-valid future "device certificate is not yet valid (notBefore "
refused untrusted-ca rogue-dev "device certificate was not issued by a trusted device CA"
refused too-deep deep-dev "device certificate chain is deeper than device CA " -cert_chain "$T/inter/ca.crt"
refused no-manifest stranger "device certificate matches no device of the manifest (certSha256 $STRANGER_SHA"
refused unclaimed unclaimed "not been claimed"

# --- a key that does not match the certificate: refused before anything reaches the MEF
before=$(state_snapshot)
rc=$(enrol_cert "$T/mismatch-enrolee.out" "$T/good/device.crt" "$T/stranger/device.key")
assert_ne "$rc" 0 "mte-enrolee with a mismatched key"
assert_file_has "$T/mismatch-enrolee.out" "mte-enrolee: " "mte-enrolee with a mismatched key"
grep -qaiE "does not match|mismatch" "$T/mismatch-enrolee.out" ||
  fail "mte-enrolee with a mismatched key does not say so: $(cat "$T/mismatch-enrolee.out")"
rc=0
ossl_client "$MEF_PORT" "$T/mismatch-ossl.out" "$T/enrol.req" -tls1_2 -cipher ECDHE-ECDSA-AES128-SHA256 \
  -cert "$T/good/device.crt" -key "$T/stranger/device.key" -servername "$MEF_FQDN" \
  -CAfile "$DATA/pki/ca.crt" || rc=$?
assert_ne "$rc" 0 "s_client with a mismatched key"
assert_file_lacks "$T/mismatch-ossl.out" "HTTP/1.1" "s_client with a mismatched key: no HTTP response"
assert_file_has "$T/mismatch-ossl.out.err" "key values mismatch" "s_client with a mismatched key"
[[ "$before" == "$(state_snapshot)" ]] || fail "key mismatch: state changed"
pass "mismatched key: $(grep -a 'mte-enrolee' "$T/mismatch-enrolee.out" | cut -c1-120); s_client: key values mismatch"

# --- OCSP answers that must not be believed
ocsp_mode ocsp othercert
refused ocsp-other-cert oc-othercert "device certificate status could not be checked: unusable answer from OCSP responder $URL: OCSP response is for another certificate"
ocsp_mode ocsp nononce
refused ocsp-no-nonce oc-nononce "device certificate status could not be checked: unusable answer from OCSP responder $URL: OCSP response has no nonce"
ocsp_mode ocsp stale
refused ocsp-stale oc-stale "device certificate status could not be checked: unusable answer from OCSP responder $URL: OCSP response is stale (nextUpdate "
ocsp_mode ocsp good
refused ocsp-wrong-signer oc-wrongsigner "device certificate status could not be checked: unusable answer from OCSP responder $URL_WRONG: OCSP response is not signed by the CA or a delegated responder"

# The same devices enrol once the responder answers properly: the refusals were about the answers.
device_client ocsp-good-again oc-nononce || fail "oc-nononce with a good responder: s_client failed"
http_parse "$T/ocsp-good-again.out"
assert_eq "$(resp status)" 201 "oc-nononce with a good responder"
pass "with good answers the same device enrols"

# --- a self-signed certificate registered by spkiSha256: accepted by its key
device_client selfsigned selfsigned || { cat "$T/selfsigned.out.err" >&2; fail "selfsigned: s_client failed"; }
http_parse "$T/selfsigned.out"
assert_eq "$(resp status)" 201 "selfsigned: HTTP status"
assert_eq "$(enrolee_field selfsigned state)" enrolled "selfsigned: state"
audit_list | grep -a "enrolment.commit .*device selfsigned " >"$T/selfsigned.audit" || fail "selfsigned: no audit entry"
assert_file_has "$T/selfsigned.audit" "RSPF CERT, accepted by its registered key (spkiSha256 $SELF_SPKI)" "selfsigned: audit"
pass "self-signed, registered by key: enrolled; audit: $(grep -ao 'accepted by its registered key.*' "$T/selfsigned.audit" | cut -c1-120)"

echo "cert_hostile_test: all passed in $(( ($(now_ms) - START) / 1000 )) s"
