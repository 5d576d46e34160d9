#!/usr/bin/env bash
# Must show 2: the same interoperability with a second independent stack, GnuTLS (gnutls-cli).
# gnutls-cli enrols over TLS 1.2 PSK-AES128-CBC-SHA256 and over TLS 1.3 external PSK (psk_ke and
# psk_dhe_ke); the keId must equal GnuTLS's own exporter output; Km is computed with `openssl
# dgst` from that output and gnutls-cli completes the MAF handshake with it; a wrong Km fails.
#
# Not covered here: TLS 1.2 ECDHE-PSK with gnutls-cli. gnutls-cli 3.7.9 (Debian 12) completes that
# handshake but then crashes in its own session printout (SIGSEGV in
# gnutls_psk_server_get_username called on a client session), against openssl s_server too, before
# it sends any data. That suite is covered by interop_openssl_test.sh.
source "$(dirname "$0")/lib.sh"

init_mte
KPM=$(openssl rand -hex 32)
KPM_ID="kpm-gnutls@maker.it.test"
add_device dev-gnutls "$KPM_ID" "$KPM" CLAIM-GNUTLS-1
add_stakeholder bob "pw-$(openssl rand -hex 8)"
claim bob dev-gnutls CLAIM-GNUTLS-1
start_server
pass "mte serve running (MEF $MEF_PORT, MAF $MAF_PORT)"

http_request "$T/enrol.req" POST /enrolment '{}' "$MEF_FQDN"
http_request "$T/session.req" GET /maf/v1/session '' "$MAF_FQDN"

TLS12_PSK='NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+PSK:-CIPHER-ALL:+AES-128-CBC:-MAC-ALL:+SHA256'
TLS13_PSK_KE='NORMAL:-VERS-ALL:+VERS-TLS1.3:-KX-ALL:+PSK'
TLS13_PSK_DHE_KE='NORMAL:-VERS-ALL:+VERS-TLS1.3:-KX-ALL:+ECDHE-PSK'
TLS13_BOTH='NORMAL:-VERS-ALL:+VERS-TLS1.3:-KX-ALL:+PSK:+ECDHE-PSK'

# enrol_with NAME GENERATION PRIORITY DESCRIPTION KEY_SHARE(yes|no): enrols with gnutls-cli at
# debug level 4 (to see whether the server answered with a key share), sets EXPORT, KEID, KM.
enrol_with() {
  local name=$1 generation=$2 priority=$3 description=$4 key_share=$5 out="$T/mef-$1.out"
  gnutls_client "$MEF_PORT" "$out" "$T/enrol.req" -d 4 --sni-hostname "$MEF_FQDN" \
    --pskusername "$KPM_ID" --pskkey "$KPM" --priority "$priority" \
    --keymatexport EXPORTER-oneM2M-Bootstrap --keymatexportsize 48 ||
    { cat "$out" "$out.log" >&2; tail -n 30 "$out.err" >&2; fail "$name: gnutls-cli enrolment failed"; }
  assert_file_has "$out.log" "- Description: $description" "$name: negotiated parameters"
  assert_file_has "$out.log" "- PSK authentication. Connected as '$KPM_ID'" "$name: PSK identity"
  if [[ $key_share == yes ]]; then
    assert_file_has "$out.err" "Parsing extension 'Key Share/51'" "$name: server key share (psk_dhe_ke)"
  else
    assert_file_lacks "$out.err" "Parsing extension 'Key Share/51'" "$name: no server key share (psk_ke)"
  fi
  EXPORT=$(exporter_hex "$out.log")
  assert_match "$EXPORT" '^[0-9A-F]{96}$' "$name: 48 octets of keying material from gnutls-cli"
  http_parse "$out"
  assert_eq "$(resp status)" 201 "$name: HTTP status"
  assert_eq "$(resp header:x-m2m-rsc)" 2001 "$name: X-M2M-RSC"
  KEID=$(resp json:keId)
  assert_eq "$KEID" "$(keid_of "$EXPORT")" "$name: keId = UPPERCASE-HEX(GnuTLS exporter octets 0-15)@MEF-FQDN"
  assert_eq "$(resp json:credentialIds)" "[\"11-$KEID\"]" "$name: Credential-ID"
  pass "$name: keId $KEID matches GnuTLS's exporter"
  KM=$(km_of "$EXPORT")
  wait_delivered dev-gnutls "$KEID" || fail "$name: MAF delivery did not complete: $(enrolee_json)"
  assert_eq "$(enrolee_field dev-gnutls generation)" "$generation" "$name: enrolment generation"
  pass "$name: enrolee at generation $generation, mafDelivery delivered"
}

# maf_ok NAME KMID KM PRIORITY: gnutls-cli completes the MAF handshake; the MAF names this KmID.
maf_ok() {
  local name=$1 kmid=$2 km=$3 priority=$4 out="$T/maf-$1.out"
  gnutls_client "$MAF_PORT" "$out" "$T/session.req" --sni-hostname "$MAF_FQDN" \
    --pskusername "$kmid" --pskkey "$km" --priority "$priority" ||
    { cat "$out" "$out.log" "$out.err" >&2; fail "$name: MAF handshake failed"; }
  assert_file_has "$out.log" "- PSK authentication. Connected as '$kmid'" "$name: PSK identity"
  http_parse "$out"
  assert_eq "$(resp status)" 200 "$name: MAF HTTP status"
  assert_eq "$(resp json:kmId)" "$kmid" "$name: kmId reported by the MAF"
  pass "$name: gnutls-cli MAF handshake with KmID/Km ($(resp json:tlsVersion) $(resp json:cipher))"
}

# maf_refused NAME KMID KM PRIORITY: the handshake fails, no HTTP response.
maf_refused() {
  local name=$1 kmid=$2 km=$3 priority=$4 out="$T/maf-$1.out" rc=0
  gnutls_client "$MAF_PORT" "$out" "$T/session.req" --sni-hostname "$MAF_FQDN" \
    --pskusername "$kmid" --pskkey "$km" --priority "$priority" || rc=$?
  [[ $rc -ne 0 ]] || fail "$name: gnutls-cli succeeded"
  assert_file_lacks "$out" "HTTP/1.1" "$name: no HTTP response"
  assert_file_lacks "$out.log" "- Handshake was completed" "$name: handshake not completed"
  pass "$name: MAF refused the handshake (gnutls-cli exit $rc, no HTTP response)"
}

# 1. TLS 1.2 PSK-AES128-CBC-SHA256.
enrol_with tls12-psk 1 "$TLS12_PSK" "(TLS1.2-X.509)-(PSK)-(AES-128-CBC)-(SHA256)" no
KEID1=$KEID KM1=$KM EXPORT1=$EXPORT
maf_ok tls12-psk "$KEID1" "$KM1" "$TLS12_PSK"
maf_ok tls13-gen1 "$KEID1" "$KM1" "$TLS13_PSK_DHE_KE"
maf_refused wrong-km "$KEID1" "$(flip_hex "$KM1")" "$TLS12_PSK"
maf_refused wrong-km-tls13 "$KEID1" "$(flip_hex "$KM1")" "$TLS13_PSK_DHE_KE"
maf_refused ke-instead-of-km "$KEID1" "${EXPORT1:32:64}" "$TLS12_PSK"

# The credential derived from GnuTLS's exporter also opens the MAF for OpenSSL.
ossl_client "$MAF_PORT" "$T/maf-ossl.out" "$T/session.req" -tls1_2 -cipher PSK-AES128-CBC-SHA256 \
  -psk "$KM1" -psk_identity "$KEID1" -servername "$MAF_FQDN" || fail "openssl MAF handshake failed"
assert_eq "$(http_field "$T/maf-ossl.out" json:kmId)" "$KEID1" "openssl at the MAF with the GnuTLS-derived Km"
pass "Km from GnuTLS's exporter works at the MAF with openssl s_client too"

# 2. TLS 1.3 external PSK, psk_ke only (the server allows it for clients that offer nothing else).
enrol_with tls13-psk-ke 2 "$TLS13_PSK_KE" "(TLS1.3-X.509)--(AES-128-GCM)" no
KEID2=$KEID KM2=$KM
assert_ne "$KEID2" "$KEID1" "re-enrolment rotates the KeID"
assert_file_has "$SERVE_LOG" "with KeID $KEID2 over TLSv1.3 TLS_AES_128_GCM_SHA256" "server view (psk_ke)"
maf_ok tls13-psk-ke "$KEID2" "$KM2" "$TLS13_PSK_KE"
maf_refused old-km-gen1 "$KEID1" "$KM1" "$TLS12_PSK"

# 3. TLS 1.3 psk_dhe_ke.
enrol_with tls13-psk-dhe-ke 3 "$TLS13_PSK_DHE_KE" "(TLS1.3-X.509)--(AES-128-GCM)" yes
KEID3=$KEID KM3=$KM
assert_ne "$KEID3" "$KEID2" "second re-enrolment rotates the KeID"
maf_ok tls13-psk-dhe-ke "$KEID3" "$KM3" "$TLS13_PSK_DHE_KE"
maf_refused old-km-gen2 "$KEID2" "$KM2" "$TLS13_PSK_KE"

# 4. Both modes offered: the server must prefer psk_dhe_ke (forward secrecy, docs/conventions.md §2).
enrol_with tls13-both-modes 4 "$TLS13_BOTH" "(TLS1.3-X.509)--(AES-128-GCM)" yes
KEID4=$KEID KM4=$KM
maf_ok tls13-both-modes "$KEID4" "$KM4" "$TLS12_PSK"
maf_refused old-km-gen3 "$KEID3" "$KM3" "$TLS13_PSK_DHE_KE"

assert_eq "$(db_query "SELECT km_id || ' ' || generation FROM maf_credentials")" "$KEID4 4" \
  "MAF key store holds only the generation-4 credential"
pass "MAF key store holds exactly the current credential"
