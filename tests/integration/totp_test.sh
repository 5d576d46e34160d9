#!/usr/bin/env bash
# Two-step sign-in on the REST API (docs/protocol.md §12): a stakeholder turns on TOTP with the
# key the portal gives, codes come from oathtool (an independent RFC 6238 implementation), a code
# is good once, recovery codes are single-use, wrong codes count towards the lockout, and the
# secret and codes are nowhere in the store or the log in plain text.
source "$(dirname "$0")/lib.sh"
command -v oathtool >/dev/null || fail "oathtool is missing (tools/install-deps.sh --test)"

init_mte
PW="pw-$(openssl rand -hex 8)"
add_stakeholder alice "$PW"
start_server

login_json() {  # login_json PASSWORD [MEMBER VALUE]: the body of a login as alice
  python3 -c '
import json, sys
body = {"name": "alice", "password": sys.argv[1]}
if len(sys.argv) > 3: body[sys.argv[2]] = sys.argv[3]
print(json.dumps(body))' "$@"
}
login_status() { portal_call "$T/login.out" POST /api/v1/login "$(login_json "$@")"; }
code_at() { oathtool --totp -b "$SECRET" --now "@$1"; }  # code_at UNIX-TIME

BEARER=$(portal_login alice "$PW")
[[ -n "$BEARER" ]] || fail "alice cannot log in"
assert_eq "$(portal_call "$T/acct.json" GET /api/v1/account "" "$BEARER")" 200 "GET account"
assert_eq "$(json_get "['totp']" <"$T/acct.json")" False "TOTP starts off"

# Setup: the key and an otpauth URI; until it is confirmed, the password alone still signs in.
assert_eq "$(portal_call "$T/setup.json" POST /api/v1/account/totp "" "$BEARER")" 201 "setup"
SECRET=$(json_get "['secret']" <"$T/setup.json")
URI=$(json_get "['otpauthUri']" <"$T/setup.json")
assert_match "$SECRET" '^[A-Z2-7]{32}$' "a 160-bit base32 key"
assert_eq "$URI" \
  "otpauth://totp/OpenMTE:alice?secret=$SECRET&issuer=OpenMTE&algorithm=SHA1&digits=6&period=30" \
  "the otpauth URI"
assert_eq "$(login_status "$PW")" 200 "an unconfirmed setup asks for no code"
pass "setup gives a base32 key and its otpauth URI; unconfirmed, it changes nothing"

NOW=$(date +%s)
GOOD=$(code_at "$NOW")
WRONG=$(printf '%06d' $(( (10#$GOOD + 500000) % 1000000 )))
assert_eq "$(portal_call "$T/confirm.json" POST /api/v1/account/totp/confirm \
  "{\"code\":\"$WRONG\"}" "$BEARER")" 401 "confirm with a wrong code"  # failure 1
assert_eq "$(portal_call "$T/confirm.json" POST /api/v1/account/totp/confirm \
  "{\"code\":\"$GOOD\"}" "$BEARER")" 200 "confirm with oathtool's code"
python3 - "$T/confirm.json" <<'PY' || fail "recovery codes: $(cat "$T/confirm.json")"
import json, re, sys
body = json.load(open(sys.argv[1]))
codes = body["recoveryCodes"]
assert body["totp"] is True and len(codes) == 10 and len(set(codes)) == 10, body
assert all(re.fullmatch(r"[a-z2-7]{4}(-[a-z2-7]{4}){3}", c) for c in codes), codes
PY
json_get "['recoveryCodes']" <"$T/confirm.json" | tr -d "[]',\"" | tr ' ' '\n' | grep . >"$T/codes"
assert_eq "$(wc -l <"$T/codes")" 10 "ten codes kept"
pass "oathtool's code turns TOTP on (a wrong one does not) and gives ten recovery codes"

# Sign-in now needs a code; each time step's code works once.
assert_eq "$(login_status "$PW")" 401 "the password alone"
assert_eq "$(json_get "['totpRequired']" <"$T/login.out")" True "401 says a code is required"
assert_eq "$(login_status "$PW" totp "$GOOD")" 401 "the confirming code again"  # failure 2
assert_match "$(json_get "['error']" <"$T/login.out")" "has been used" "a replay is named"
NEXT=$(code_at $((NOW + 30)))
assert_eq "$(login_status "$PW" totp "$NEXT")" 200 "the next step's code"
assert_eq "$(login_status "$PW" totp "$NEXT")" 401 "the same code twice"  # failure 3
assert_eq "$(login_status wrong-password totp "$(code_at $((NOW + 60)))")" 401 \
  "a wrong password with a code"  # failure 4
assert_eq "$(json_get ".get('totpRequired', False)" <"$T/login.out")" False \
  "a wrong password says nothing about the code"
pass "with TOTP on, sign-in needs the password and an unused code from oathtool"

RC1=$(sed -n 1p "$T/codes")
assert_eq "$(login_status "$PW" recoveryCode "$RC1")" 200 "a recovery code"
"$MTE" admin --data "$DATA" lockout clear --address 127.0.0.1 >/dev/null
assert_eq "$(login_status "$PW" recoveryCode "$RC1")" 401 "the same recovery code again"
RC2_UPPER=$(sed -n 2p "$T/codes" | tr 'a-z' 'A-Z' | tr -d '-')
assert_eq "$(login_status "$PW" recoveryCode "$RC2_UPPER")" 200 \
  "a recovery code in capitals without dashes"
assert_eq "$(portal_call "$T/acct.json" GET /api/v1/account "" "$BEARER")" 200 "GET account"
assert_eq "$(json_get "['recoveryCodesLeft']" <"$T/acct.json")" 8 "two codes used"
assert_eq "$(portal_call "$T/new.json" POST /api/v1/account/recovery-codes \
  "{\"code\":\"$(sed -n 3p "$T/codes")\"}" "$BEARER")" 200 "new recovery codes"
assert_eq "$(login_status "$PW" recoveryCode "$(sed -n 4p "$T/codes")")" 401 \
  "an old recovery code after the renewal"
assert_eq "$(portal_call "$T/acct.json" GET /api/v1/account "" "$BEARER")" 200 "GET account"
assert_eq "$(json_get "['recoveryCodesLeft']" <"$T/acct.json")" 10 "ten new codes"
pass "recovery codes sign in once each, in any case, and renewing them voids the old ones"

# Nothing secret in the store or the log.
HEX=$(python3 -c 'import base64,sys; print(base64.b32decode(sys.argv[1]).hex())' "$SECRET")
sqlite3 "$DATA/mte.db" .dump >"$T/dump.sql"
for needle in "$SECRET" "$HEX" "$RC1" "$(sed -n 5p "$T/codes")"; do
  ! grep -qi -- "$needle" "$T/dump.sql" || fail "the store holds $needle in plain text"
  ! grep -qi -- "$needle" "$T/serve.log" || fail "the log holds $needle"
done
assert_eq "$(db_query "SELECT length(secret_sealed) FROM totp_secrets")" $((1 + 12 + 20 + 16)) \
  "the key is sealed (version, nonce, 20 octets, tag)"
pass "the store keeps the key sealed and the codes hashed; the log has neither"

# Wrong codes count towards the lockout like wrong passwords.
"$MTE" admin --data "$DATA" lockout clear --address 127.0.0.1 >/dev/null
"$MTE" admin --data "$DATA" lockout clear --account alice >/dev/null
for i in 1 2 3 4 5; do
  assert_eq "$(login_status "$PW" totp 000000)" 401 "wrong code $i"
done
status=$(curl -sS -o /dev/null -D "$T/h" -w '%{http_code}' --cacert "$DATA/pki/ca.crt" \
  --resolve "localhost:$PORTAL_PORT:127.0.0.1" -H 'Content-Type: application/json' \
  --data-binary "$(login_json "$PW" totp "$(code_at "$(date +%s)")")" \
  "https://localhost:$PORTAL_PORT/api/v1/login")
assert_eq "$status" 429 "locked after five wrong codes"
grep -qi '^Retry-After: [1-9]' "$T/h" || fail "no Retry-After: $(cat "$T/h")"
"$MTE" admin --data "$DATA" lockout clear --address 127.0.0.1 >/dev/null
"$MTE" admin --data "$DATA" lockout clear --account alice >/dev/null
pass "five wrong codes lock the sign-in (429 with Retry-After)"

# Off again with a code; and an operator's reset for an owner who lost everything.
assert_eq "$(portal_call "$T/off.json" POST /api/v1/account/totp/disable '{"code":"123"}' \
  "$BEARER")" 401 "disable with a malformed code"
assert_eq "$(portal_call "$T/off.json" POST /api/v1/account/totp/disable \
  "{\"code\":\"$(sed -n 1p <(json_get "['recoveryCodes'][0]" <"$T/new.json"))\"}" "$BEARER")" 200 \
  "disable with a recovery code"
assert_eq "$(login_status "$PW")" 200 "the password alone again"
assert_eq "$(portal_call "$T/setup.json" POST /api/v1/account/totp "" "$BEARER")" 201 "setup again"
SECRET=$(json_get "['secret']" <"$T/setup.json")
assert_eq "$(portal_call "$T/confirm.json" POST /api/v1/account/totp/confirm \
  "{\"code\":\"$(code_at "$(date +%s)")\"}" "$BEARER")" 200 "confirm again"
assert_eq "$(portal_call "$T/setup.json" POST /api/v1/account/totp "" "$BEARER")" 409 \
  "a second setup while TOTP is on"
assert_eq "$("$MTE" admin --data "$DATA" stakeholder list --json | json_get "[0]['totp']")" True \
  "stakeholder list shows TOTP on"
assert_match "$("$MTE" admin --data "$DATA" stakeholder totp-reset alice)" \
  "turned off two-step sign-in for alice" "totp-reset"
assert_eq "$(login_status "$PW")" 200 "after the reset the password alone signs in"
assert_eq "$("$MTE" admin --data "$DATA" stakeholder list --json | json_get "[0]['totp']")" False \
  "stakeholder list shows TOTP off"
actions=$("$MTE" admin --data "$DATA" audit list --json | python3 -c '
import json, sys
entries = [json.loads(line) for line in sys.stdin if line.strip()]
print(" ".join(sorted({e["action"] for e in entries if e["action"].startswith("totp.")})))')
assert_eq "$actions" \
  "totp.disable totp.enable totp.recovery-code totp.recovery-codes totp.reset totp.setup" \
  "every step is audited"
pass "TOTP turns off with a code or by an operator's totp-reset, every step audited"
