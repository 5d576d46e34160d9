#!/usr/bin/env bash
# The certificate RSPF's operator side (TS-0003 §8.3.2.2) through the real `mte` binary: the
# development device PKI (`mte admin pki`), checked with the openssl CLI; a manifest mixing
# PPSK, certificate and key-pin entries; `mte admin device-ca add/list/remove` with every option;
# and the refusals, each leaving the store unchanged.
source "$(dirname "$0")/lib.sh"

init_mte
P="$T/pki"
mkdir -p "$P"

# ---- development device PKI (no --data)
"$MTE" admin pki init-device-ca --out "$P/ca" --name "Maker Devices CA #1" >"$T/init.out"
assert_file_has "$T/init.out" "created device CA 'Maker Devices CA #1'" "init-device-ca output"
assert_eq "$(stat -c %a "$P/ca/ca.key")" 600 "device CA key mode"
openssl x509 -in "$P/ca/ca.crt" -noout -text >"$T/ca.txt"
assert_file_has "$T/ca.txt" "CA:TRUE" "device CA basicConstraints"
assert_file_has "$T/ca.txt" "prime256v1" "device CA key"
ca_sha=$(openssl x509 -in "$P/ca/ca.crt" -outform DER | sha256sum | cut -d' ' -f1)
assert_file_has "$T/init.out" "(sha256 $ca_sha)" "init-device-ca prints the CA digest"

issue() {  # issue ID [extra args]: prints the issue-device output file
  local id=$1
  shift
  "$MTE" admin pki issue-device --ca "$P/ca" --device-id "$id" --out "$P/$id" "$@" >"$T/issue-$id.out"
}
issue cert-0001 --ocsp-url http://127.0.0.1:9/ocsp --valid-days 30
issue pin-0001
issue mixed-0001
for id in cert-0001 pin-0001 mixed-0001; do
  openssl verify -CAfile "$P/ca/ca.crt" "$P/$id/device.crt" >/dev/null ||
    fail "openssl verify $id"
  assert_eq "$(stat -c %a "$P/$id/device.key")" 600 "$id key mode"
done
openssl x509 -in "$P/cert-0001/device.crt" -noout -ocsp_uri >"$T/ocsp-uri.txt"
assert_file_has "$T/ocsp-uri.txt" "http://127.0.0.1:9/ocsp" "AIA OCSP URL"
not_after=$(date -d "$(openssl x509 -in "$P/cert-0001/device.crt" -noout -enddate | cut -d= -f2)" +%s)
days=$(( (not_after - $(date +%s)) / 86400 ))
[[ $days -ge 29 && $days -le 30 ]] || fail "--valid-days 30 gave $days days"

# certSha256 / spkiSha256 as the openssl CLI computes them, against what issue-device printed.
cert_sha() { openssl x509 -in "$P/$1/device.crt" -outform DER | sha256sum | cut -d' ' -f1; }
spki_sha() {
  openssl x509 -in "$P/$1/device.crt" -pubkey -noout | openssl pkey -pubin -outform DER |
    sha256sum | cut -d' ' -f1
}
printed() { sed -n "s/^$2 //p" "$T/issue-$1.out"; }
for id in cert-0001 pin-0001 mixed-0001; do
  assert_eq "$(printed "$id" certSha256)" "$(cert_sha "$id")" "$id certSha256"
  assert_eq "$(printed "$id" spkiSha256)" "$(spki_sha "$id")" "$id spkiSha256"
done
pass "pki init-device-ca and issue-device: openssl verifies; digests equal openssl's"

# ---- a mixed manifest: PPSK, certificate (upper case on purpose), key pin, and all of them
kpm1=$(openssl rand -hex 32)
kpm2=$(openssl rand -hex 16)
cert_upper=$(cert_sha cert-0001 | tr a-f A-F)
cat >"$T/mixed.json" <<EOF
[
  {"deviceId": "psk-0001", "kpmId": "kpm-0001@maker.it.test", "kpmHex": "$kpm1", "claimCode": "C1"},
  {"deviceId": "cert-0001", "certSha256": "$cert_upper", "claimCode": "C2"},
  {"deviceId": "pin-0001", "spkiSha256": "$(spki_sha pin-0001)", "claimCode": "C3"},
  {"deviceId": "mixed-0001", "kpmId": "kpm-mixed@maker.it.test", "kpmHex": "$kpm2",
   "certSha256": "$(cert_sha mixed-0001)", "spkiSha256": "$(spki_sha mixed-0001)", "claimCode": "C4"}
]
EOF
"$MTE" admin --data "$DATA" device import "$T/mixed.json" >"$T/import.out"
assert_file_has "$T/import.out" "imported 4 device(s)" "mixed import"
assert_eq "$(db_query 'SELECT count(*) FROM devices')" 4 "devices after the mixed import"
assert_eq "$(db_query "SELECT group_concat(kind || ':' || device_id, ' ') FROM (SELECT * FROM device_credentials ORDER BY device_id, kind)")" \
  "cert-sha256:cert-0001 cert-sha256:mixed-0001 kpm:mixed-0001 spki-sha256:mixed-0001 spki-sha256:pin-0001 kpm:psk-0001" \
  "credential rows"
assert_eq "$(db_query "SELECT credential_id FROM device_credentials WHERE device_id = 'cert-0001'")" \
  "$(cert_sha cert-0001)" "certSha256 stored lowercase"
assert_eq "$(db_query "SELECT count(*) FROM device_credentials WHERE kind <> 'kpm' AND secret_sealed IS NOT NULL")" \
  0 "no secret on certificate credentials"
pass "a mixed manifest imports every credential of every entry"

# ---- malformed manifests: refused naming entry and member, nothing imported
state=$(db_query "SELECT count(*) FROM devices; SELECT count(*) FROM device_credentials")
refused_import() {  # refused_import FILE EXPECTED-MESSAGE...
  local file=$1 rc=0
  shift
  "$MTE" admin --data "$DATA" device import "$file" >"$T/refused.out" 2>&1 || rc=$?
  assert_ne "$rc" 0 "import of $(basename "$file")"
  assert_file_has "$T/refused.out" "nothing imported" "import of $(basename "$file")"
  local message
  for message in "$@"; do assert_file_has "$T/refused.out" "$message" "import of $(basename "$file")"; done
  assert_eq "$(db_query "SELECT count(*) FROM devices; SELECT count(*) FROM device_credentials")" \
    "$state" "store after the refused import of $(basename "$file")"
}
good_entry="{\"deviceId\": \"new-0001\", \"certSha256\": \"$(printf 'ab%.0s' {1..32})\", \"claimCode\": \"C9\"}"
cat >"$T/bad.json" <<EOF
[
  $good_entry,
  {"deviceId": "bad-1", "certSha256": "abc", "claimCode": "C"},
  {"deviceId": "bad-2", "spkiSha256": "$(printf 'zz%.0s' {1..32})", "claimCode": "C"},
  {"deviceId": "bad-3", "claimCode": "C"},
  {"deviceId": "bad-4", "kpmId": "kpm-x", "claimCode": "C"},
  {"deviceId": "bad-5", "certSha256": "$(cert_sha pin-0001)", "fingerprint": "x", "claimCode": "C"},
  {"deviceId": "bad-6", "certSha256": 42, "claimCode": "C"},
  {"deviceId": "bad-7", "certSha256": "$(printf 'ab%.0s' {1..32})", "claimCode": "C"}
]
EOF
refused_import "$T/bad.json" \
  "entry 1: member 'certSha256' must be 64 hex characters" \
  "entry 2: member 'spkiSha256' must be 64 hex characters" \
  "entry 3: no credential" \
  "entry 4: member 'kpmHex' missing" \
  "entry 5: unknown member 'fingerprint'" \
  "entry 6: member 'certSha256' is not a string" \
  "entry 7: duplicate certSha256"
# A credential that another device in the store already has (the store refuses it).
cat >"$T/taken.json" <<EOF
[$good_entry, {"deviceId": "new-0002", "spkiSha256": "$(spki_sha pin-0001)", "claimCode": "C"}]
EOF
refused_import "$T/taken.json" "duplicate spki-sha256 credential '$(spki_sha pin-0001)'"
pass "malformed manifest entries are refused by index and member; nothing imported"

# ---- device-ca add
"$MTE" admin --data "$DATA" device-ca add "$P/ca/ca.crt" >"$T/add1.out"
assert_eq "$(cat "$T/add1.out")" "added device CA Maker-Devices-CA-1 (sha256 $ca_sha)" \
  "device-ca add with the default name"

"$MTE" admin pki init-device-ca --out "$P/ca2" --name "Second Maker" >/dev/null
ca2_sha=$(openssl x509 -in "$P/ca2/ca.crt" -outform DER | sha256sum | cut -d' ' -f1)
# An operator CRL from the openssl CLI, signed by the second CA and revoking nothing.
crl_ca_db "$P/crl" "$P/ca2"
openssl ca -batch -config "$P/crl/ca.cnf" -gencrl -out "$P/crl/ca2.crl" 2>/dev/null
(cd "$P" && "$MTE" admin --data "$DATA" device-ca add ca2/ca.crt --name maker-two \
  --ocsp-url http://127.0.0.1:9/ocsp --crl crl/ca2.crl --max-chain-depth 0 --ocsp-fail-open \
  >"$T/add2.out" 2>"$T/add2.err")
assert_eq "$(cat "$T/add2.out")" "added device CA maker-two (sha256 $ca2_sha)" "device-ca add with options"
assert_file_has "$T/add2.err" "fail-open" "device-ca add --ocsp-fail-open warns"

# A CA whose certificate file has text around the PEM block and no CN: named ca-<8 hex>.
openssl ecparam -name prime256v1 -genkey -noout -out "$P/nocn.key" 2>/dev/null
openssl req -new -x509 -key "$P/nocn.key" -subj "/O=No Common Name Inc" -days 30 -sha256 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$P/nocn.pem"
{ echo "Subject: O=No Common Name Inc"; cat "$P/nocn.pem"; } >"$P/nocn-with-text.pem"
nocn_sha=$(openssl x509 -in "$P/nocn.pem" -outform DER | sha256sum | cut -d' ' -f1)
"$MTE" admin --data "$DATA" device-ca add "$P/nocn-with-text.pem" >"$T/add3.out"
assert_eq "$(cat "$T/add3.out")" "added device CA ca-${nocn_sha:0:8} (sha256 $nocn_sha)" \
  "device-ca add names a CA without CN by its digest"
assert_eq "$(db_query "SELECT cert_pem FROM device_cas WHERE name = 'ca-${nocn_sha:0:8}'")" \
  "$(cat "$P/nocn.pem")" "only the PEM block is stored"

# ---- device-ca list
"$MTE" admin --data "$DATA" device-ca list >"$T/list.out"
assert_eq "$(head -1 "$T/list.out" | tr -s ' ')" "NAME SHA256 OCSP URL CRL DEPTH FAIL-OPEN" "list header"
assert_eq "$(sed -n 2p "$T/list.out" | tr -s ' ')" "Maker-Devices-CA-1 ${ca_sha:0:16} - - 2 no" "list row 1"
assert_eq "$(sed -n 3p "$T/list.out" | awk '{print $1}')" "ca-${nocn_sha:0:8}" "list is ordered by name"
assert_eq "$(sed -n 4p "$T/list.out" | tr -s ' ')" \
  "maker-two ${ca2_sha:0:16} http://127.0.0.1:9/ocsp $P/crl/ca2.crl 0 yes" "list row 3"
"$MTE" admin --data "$DATA" device-ca list --json >"$T/list.json"
assert_eq "$(python3 -c '
import json, sys
cas = json.load(open(sys.argv[1]))
two = [c for c in cas if c["name"] == "maker-two"][0]
print(len(cas), two["certSha256"], two["ocspUrl"], two["crlFile"], two["maxChainDepth"], two["ocspFailOpen"],
      two["certPem"].startswith("-----BEGIN CERTIFICATE-----"))' "$T/list.json")" \
  "3 $ca2_sha http://127.0.0.1:9/ocsp $P/crl/ca2.crl 0 True True" "list --json"
audit_list >"$T/audit.out"
assert_file_has "$T/audit.out" "device-ca.add" "audit of device-ca add"
assert_eq "$(db_query "SELECT count(*) FROM audit WHERE action = 'device-ca.add' AND subject = 'maker-two' AND detail LIKE '%FAIL-OPEN%'")" \
  1 "--ocsp-fail-open is audited as such"
pass "device-ca add (default name, --name/--crl/--ocsp-url/--max-chain-depth/--ocsp-fail-open) and list"

# ---- refusals, each changing nothing
cas_before=$(db_query "SELECT group_concat(name) FROM device_cas")
refused_ca() {  # refused_ca EXPECTED-MESSAGE args...
  local message=$1 rc=0
  shift
  "$MTE" admin --data "$DATA" device-ca "$@" >"$T/refused-ca.out" 2>&1 || rc=$?
  assert_ne "$rc" 0 "device-ca $*"
  assert_file_has "$T/refused-ca.out" "$message" "device-ca $*"
  assert_eq "$(db_query "SELECT group_concat(name) FROM device_cas")" "$cas_before" "device CAs after: $*"
}
"$MTE" admin pki init-device-ca --out "$P/ca3" --name "Third Maker" >/dev/null
refused_ca "not a CA certificate" add "$P/cert-0001/device.crt" --name leaf
cat "$P/ca3/ca.crt" "$P/ca/ca.crt" >"$P/two.pem"
refused_ca "exactly one certificate" add "$P/two.pem" --name two
refused_ca "--ocsp-url must be an http:// URL" add "$P/ca3/ca.crt" --ocsp-url https://ocsp.example/
refused_ca "--ocsp-url must be an http:// URL" add "$P/ca3/ca.crt" --ocsp-url "http://a b/"
refused_ca "the name exists" add "$P/ca3/ca.crt" --name maker-two
refused_ca "the same certificate is device CA 'maker-two'" add "$P/ca2/ca.crt" --name again
refused_ca "max-chain-depth" add "$P/ca3/ca.crt" --max-chain-depth 9
refused_ca "1..64 of [A-Za-z0-9._-]" add "$P/ca3/ca.crt" --name "bad name"
# A CRL of another CA, and a stale CRL (nextUpdate one second after it was made).
refused_ca "CRL is not signed by device CA" add "$P/ca3/ca.crt" --crl "$P/crl/ca2.crl"
openssl ca -batch -config "$P/crl/ca.cnf" -gencrl -crlsec 1 \
  -out "$P/crl/stale.crl" 2>/dev/null
sleep 2
refused_ca "CRL is stale (nextUpdate" add "$P/ca2/ca.crt" --name stale --crl "$P/crl/stale.crl"
refused_ca "no device CA named 'nobody'" remove nobody
pass "refused: not a CA, two certificates, bad URL, duplicate name/certificate, bad depth/name, foreign and stale CRL, unknown remove"

# ---- device-ca remove
"$MTE" admin --data "$DATA" device-ca remove maker-two >"$T/remove.out"
assert_eq "$(cat "$T/remove.out")" "removed device CA maker-two" "device-ca remove"
assert_eq "$(db_query "SELECT group_concat(name) FROM (SELECT name FROM device_cas ORDER BY name)")" \
  "Maker-Devices-CA-1,ca-${nocn_sha:0:8}" "device CAs after remove"
assert_eq "$(db_query "SELECT count(*) FROM audit WHERE action = 'device-ca.remove' AND subject = 'maker-two'")" \
  1 "audit of device-ca remove"
rc=0
"$MTE" admin device-ca list >"$T/nodata.out" 2>&1 || rc=$?
assert_ne "$rc" 0 "device-ca list without --data"
assert_file_has "$T/nodata.out" "--data DIR is required" "device-ca list without --data"
pass "device-ca remove; --data required outside 'pki'"
echo "device_ca_cli_test: all passed"
