#!/usr/bin/env bash
# Must show 6: no secret (Kpm, Ke, Km, claim code, stakeholder password, portal bearer token)
# appears in the server log at any level (text at trace level, then JSON at trace level), in the
# output of the operator and device commands, or anywhere in the data directory (SQLite database,
# WAL and shared-memory files included), neither as hex (either case), base64, nor raw bytes.
# Also: key files have mode 0600 (device state, key-encryption key, PKI keys).
source "$(dirname "$0")/lib.sh"

CMD_OUT="$T/commands.out"  # stdout+stderr of every operator and device command
: >"$CMD_OUT"
admin() { "$MTE" admin --data "$DATA" "$@" >>"$CMD_OUT" 2>&1; }
SECRETS="$T/secrets.txt"   # NAME KIND VALUE per line (kind: hex = key octets, text = string)
: >"$SECRETS"
secret() { printf '%s %s %s\n' "$1" "$2" "$3" >>"$SECRETS"; }

init_mte >>"$CMD_OUT" 2>&1
PASSWORD="pw-$(openssl rand -hex 12)"
secret password text "$PASSWORD"
printf '%s\n' "$PASSWORD" | admin stakeholder add erin --password-stdin

declare -A KPM CLAIM
manifest="["
for d in 1 2 3; do
  KPM[$d]=$(openssl rand -hex 32)
  CLAIM[$d]="CLAIM-$(openssl rand -hex 6 | tr a-f A-F)"
  secret "kpm$d" hex "${KPM[$d]}"
  secret "claim$d" text "${CLAIM[$d]}"
  manifest+="{\"deviceId\":\"dev-$d\",\"kpmId\":\"kpm-$d@maker.it.test\",\"kpmHex\":\"${KPM[$d]}\",\"claimCode\":\"${CLAIM[$d]}\"}"
  [[ $d == 3 ]] || manifest+=","
done
printf '%s]' "$manifest" >"$T/manifest.json"
admin device import "$T/manifest.json"
rm -f "$T/manifest.json"  # it holds the secrets; it is not part of the MTE's data
WRONG_CLAIM="CLAIM-WRONG-$(openssl rand -hex 4)"
WRONG_PASSWORD="pw-wrong-$(openssl rand -hex 8)"
secret wrong-claim text "$WRONG_CLAIM"
secret wrong-password text "$WRONG_PASSWORD"

portal() {  # portal METHOD PATH [JSON_BODY_FILE] [TOKEN]: prints the response body
  local args=(-sS --cacert "$DATA/pki/ca.crt" --resolve "localhost:$PORTAL_PORT:127.0.0.1"
    -X "$1" "https://localhost:$PORTAL_PORT$2")
  [[ -z "${3:-}" ]] || args+=(-H 'Content-Type: application/json' --data-binary "@$3")
  [[ -z "${4:-}" ]] || args+=(-H "Authorization: Bearer $4")
  curl "${args[@]}"
}
login() {  # login PASSWORD: prints the bearer token (empty when refused)
  printf '{"name":"erin","password":"%s"}' "$1" >"$T/login.json"
  portal POST /api/v1/login "$T/login.json" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("token",""))'
  rm -f "$T/login.json"
}
claim_via_portal() {  # claim_via_portal DEVICE CODE TOKEN: prints the HTTP status
  printf '{"deviceId":"%s","claimCode":"%s","label":"secret test"}' "$1" "$2" >"$T/claim.json"
  curl -sS -o /dev/null -w '%{http_code}' --cacert "$DATA/pki/ca.crt" \
    --resolve "localhost:$PORTAL_PORT:127.0.0.1" -H 'Content-Type: application/json' \
    -H "Authorization: Bearer $3" --data-binary "@$T/claim.json" \
    "https://localhost:$PORTAL_PORT/api/v1/enrolees"
  rm -f "$T/claim.json"
}
enrol_with_enrolee() {  # enrol_with_enrolee N STATE_DIR: records Ke and Km from the device state
  "$ENROLEE" enrol --mef "127.0.0.1:$MEF_PORT" --mef-fqdn "$MEF_FQDN" --ca "$DATA/pki/ca.crt" \
    --kpm-id "kpm-$1@maker.it.test" --kpm-hex "${KPM[$1]}" --state "$2" >>"$CMD_OUT" 2>&1 ||
    { tail -n 3 "$CMD_OUT" >&2; fail "mte-enrolee enrol dev-$1 failed"; }
  local ke km
  ke=$(od -An -tx1 -v "$2/ke" | tr -d ' \n')
  km=$(od -An -tx1 -v "$2/km" | tr -d ' \n')
  assert_match "$ke" '^[0-9a-f]{64}$' "dev-$1: Ke in the device state"
  secret "ke-dev$1-$(date +%s%N)" hex "$ke"
  secret "km-dev$1-$(date +%s%N)" hex "$km"
  KEID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["keId"])' "$2/enrolment.json")
  wait_delivered "dev-$1" "$KEID" || fail "dev-$1: not delivered"
  "$ENROLEE" maf-check --maf "127.0.0.1:$MAF_PORT" --maf-fqdn "$MAF_FQDN" --state "$2" >>"$CMD_OUT" 2>&1 ||
    fail "dev-$1: maf-check failed"
}
enrol_with_openssl() {  # enrol_with_openssl N: records Ke (from the exporter) and Km
  local out="$T/ossl-$1-$RANDOM.out"
  ossl_client "$MEF_PORT" "$out" "$T/enrol.req" -tls1_2 -cipher ECDHE-PSK-AES128-CBC-SHA256 \
    -psk "${KPM[$1]}" -psk_identity "kpm-$1@maker.it.test" -servername "$MEF_FQDN" \
    -keymatexport EXPORTER-oneM2M-Bootstrap -keymatexportlen 48 || fail "s_client enrol dev-$1 failed"
  local export km
  export=$(exporter_hex "$out")
  http_parse "$out"
  KEID=$(resp json:keId)
  assert_eq "$KEID" "$(keid_of "$export")" "dev-$1: keId"
  km=$(km_of "$export")
  secret "ke-dev$1-$(date +%s%N)" hex "${export:32:64}"
  secret "km-dev$1-$(date +%s%N)" hex "$km"
  wait_delivered "dev-$1" "$KEID" || fail "dev-$1: not delivered"
  ossl_client "$MAF_PORT" "$out.maf" "$T/session.req" -tls1_3 -psk "$km" -psk_identity "$KEID" \
    -servername "$MAF_FQDN" || fail "dev-$1: MAF handshake failed"
  rm -f "$out" "$out.err" "$out.maf" "$out.maf.err"  # client transcripts hold Ke by design
}
hostile_handshakes() {  # failure paths that see a Kpm: wrong key, unknown identity
  ossl_client "$MEF_PORT" "$T/h.out" "$T/enrol.req" -tls1_2 -cipher PSK-AES128-CBC-SHA256 \
    -psk "$(flip_hex "${KPM[1]}")" -psk_identity kpm-1@maker.it.test -servername "$MEF_FQDN" || true
  ossl_client "$MEF_PORT" "$T/h.out" "$T/enrol.req" -tls1_3 -psk "${KPM[2]}" \
    -psk_identity nobody@maker.it.test -servername "$MEF_FQDN" || true
}

# scan WHAT FILE...: fails if any recorded secret occurs in any of the files, in any encoding.
scan() {
  local what=$1
  shift
  python3 - "$SECRETS" "$@" <<'EOF' || fail "$what: secrets found (see above)"
import base64, sys
secrets = []
for line in open(sys.argv[1]):
    name, kind, value = line.rstrip("\n").split(" ", 2)
    if kind == "hex":
        raw = bytes.fromhex(value)
        forms = {"hex": value.lower().encode(), "HEX": value.upper().encode(), "raw bytes": raw,
                 "base64": base64.b64encode(raw).rstrip(b"="),
                 "base64url": base64.urlsafe_b64encode(raw).rstrip(b"=")}
    else:
        forms = {"text": value.encode()}
    secrets.append((name, forms))
found = 0
for path in sys.argv[2:]:
    data = open(path, "rb").read()
    for name, forms in secrets:
        for form, needle in forms.items():
            if needle in data:
                print("SECRET %s (%s) in %s" % (name, form, path), file=sys.stderr)
                found += 1
sys.exit(1 if found else 0)
EOF
  pass "$what: none of $(wc -l <"$SECRETS") secrets in $# files (hex both cases, base64, raw)"
}
data_files() { find "$DATA" -type f | sort; }

http_request "$T/enrol.req" POST /enrolment '{}' "$MEF_FQDN"
http_request "$T/session.req" GET /maf/v1/session '' "$MAF_FQDN"

# ---------------------------------------------------------------- run 1: text log, trace level
start_server --log-level trace
pass "run 1: mte serve --log-level trace"
assert_eq "$(login "$WRONG_PASSWORD")" "" "a wrong password gets no token"
TOKEN1=$(login "$PASSWORD")
assert_match "$TOKEN1" '^[A-Za-z0-9_-]{40,}$' "bearer token"
secret token1 text "$TOKEN1"
assert_eq "$(claim_via_portal dev-1 "$WRONG_CLAIM" "$TOKEN1")" 403 "a wrong claim code is refused"
assert_eq "$(claim_via_portal dev-1 "${CLAIM[1]}" "$TOKEN1")" 201 "dev-1 claimed through the portal"
printf '%s\n' "${CLAIM[2]}" | admin enrolee add --stakeholder erin --device dev-2 --claim-code-stdin
portal GET /api/v1/enrolees "" "$TOKEN1" >/dev/null
hostile_handshakes
enrol_with_enrolee 1 "$T/state-1"
enrol_with_openssl 2
admin enrolee list
admin enrolee list --json
admin audit list
pass "run 1: dev-1 enrolled by mte-enrolee, dev-2 by openssl; both MAF checks passed"
assert_file_has "$SERVE_LOG" "debug mef: POST /enrolment from 127.0.0.1" "run 1: debug lines are logged"
scan "run 1 (server running)" "$SERVE_LOG" "$CMD_OUT" $(data_files)
stop_servers
scan "run 1 (after shutdown)" $(data_files)

# ---------------------------------------------------------------- run 2: JSON log, trace level
log_lines_before=$(wc -l <"$SERVE_LOG")
start_server --log-level trace --log-json
pass "run 2: mte serve --log-level trace --log-json"
TOKEN2=$(login "$PASSWORD")
secret token2 text "$TOKEN2"
assert_ne "$TOKEN2" "$TOKEN1" "a new login gets a new token"
assert_eq "$(login "$WRONG_PASSWORD")" "" "a wrong password gets no token"
assert_eq "$(claim_via_portal dev-3 "$WRONG_CLAIM" "$TOKEN2")" 403 "a wrong claim code is refused"
assert_eq "$(claim_via_portal dev-3 "${CLAIM[3]}" "$TOKEN2")" 201 "dev-3 claimed through the portal"
hostile_handshakes
enrol_with_enrolee 3 "$T/state-3"
enrol_with_openssl 2   # a re-enrolment: a new Ke
enrol_with_openssl 1   # dev-1 re-enrolled over openssl this time
admin enrolee list --json
admin audit list
pass "run 2: dev-3 enrolled by mte-enrolee, dev-1 and dev-2 re-enrolled by openssl"
tail -n +"$((log_lines_before + 1))" "$SERVE_LOG" | python3 -c '
import json, sys
n, debug = 0, False
for line in sys.stdin:
    entry = json.loads(line)
    assert {"ts_ms", "level", "msg"} <= entry.keys(), line
    n += 1
    debug = debug or entry["level"] == "debug"
assert n > 10 and debug, (n, debug)
print("ok: run 2: all %d log lines are JSON objects with ts_ms, level, msg (debug included)" % n)'
scan "run 2 (server running)" "$SERVE_LOG" "$CMD_OUT" $(data_files)
stop_servers
scan "run 2 (after shutdown)" $(data_files)
assert_eq "$(grep -c 'enrolment.reenrol' <<<"$(audit_list)")" 2 "two re-enrolments happened"

# ---------------------------------------------------------------- file modes
mode() { stat -c '%a' "$1"; }
for f in "$T/state-1/ke" "$T/state-1/km" "$T/state-1/enrolment.json" "$T/state-3/ke" "$T/state-3/km"; do
  assert_eq "$(mode "$f")" 600 "mode of $(basename "$(dirname "$f")")/$(basename "$f")"
done
assert_eq "$(mode "$T/state-1")" 700 "mode of the device state directory"
assert_eq "$(mode "$DATA/kek")" 600 "mode of DATA/kek"
assert_eq "$(mode "$DATA")" 700 "mode of DATA"
assert_eq "$(stat -c '%s' "$DATA/kek")" 32 "the key-encryption key is 32 octets"
for f in "$DATA"/pki/*.key "$DATA"/mte.db*; do
  assert_eq "$(mode "$f")" 600 "mode of ${f#"$DATA"/}"
done
pass "key and state files are 0600, directories 0700"
