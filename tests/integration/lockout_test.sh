#!/usr/bin/env bash
# The portal's lockout counters are in the store: a lock survives a restart of `mte serve`, and
# `mte admin lockout list` / `lockout clear (--account NAME | --address IP)` show and end it
# while the server runs (docs/protocol.md §12, "Rate limits and lockout").
source "$(dirname "$0")/lib.sh"

init_mte
PW="pw-$(openssl rand -hex 8)"
add_stakeholder alice "$PW"
add_stakeholder bob "pw-$(openssl rand -hex 8)"
start_server

login_status() {  # login_status NAME PASSWORD: the HTTP status of POST /api/v1/login
  local body
  body=$(python3 -c 'import json,sys; print(json.dumps({"name": sys.argv[1], "password": sys.argv[2]}))' "$1" "$2")
  portal_call "$T/login.out" POST /api/v1/login "$body"
}

for i in 1 2 3 4 5; do
  assert_eq "$(login_status alice wrong-password-$i)" 401 "wrong password $i"
done
assert_eq "$(login_status alice "$PW")" 429 "the right password from the locked address"
locks=$("$MTE" admin --data "$DATA" lockout list --json)
python3 - "$locks" <<'PY' || fail "lockout list --json: $locks"
import json, sys
by_key = {x["key"]: x for x in json.loads(sys.argv[1])}
assert set(by_key) == {"account:alice", "address:127.0.0.1"}, by_key
for x in by_key.values():
    assert x["failures"] == 5 and x["locks"] == 1 and x["locked"], x
    assert 0 < x["retryAfterSeconds"] <= 300, x
PY
assert_match "$("$MTE" admin --data "$DATA" lockout list)" "address:127.0.0.1 +5 +1 " "lockout list"
pass "five failures lock the account and the address, and lockout list shows both"

stop_servers
start_server
assert_eq "$(login_status alice "$PW")" 429 "the lock after a restart"
pass "a lock survives a restart of mte serve"

# Clearing the account leaves the address locked; clearing the address lets alice in (her
# account is still locked, but the address has no failures left, so her password is checked).
assert_match "$("$MTE" admin --data "$DATA" lockout clear --account alice)" \
  "cleared 1 failure record of account alice" "lockout clear --account"
assert_eq "$(login_status alice "$PW")" 429 "the address is still locked"
cleared=$("$MTE" admin --data "$DATA" lockout clear --address 127.0.0.1 --json)
assert_eq "$(json_get "['cleared']" <<<"$cleared")" 1 "lockout clear --address --json: cleared"
assert_eq "$(json_get "['subject']" <<<"$cleared")" "address 127.0.0.1" "its subject"
assert_eq "$(login_status alice "$PW")" 200 "alice signs in after the clear"
assert_eq "$("$MTE" admin --data "$DATA" lockout list --json)" "[]" "no counters left"
assert_eq "$("$MTE" admin --data "$DATA" audit list --action lockout.clear | wc -l)" 2 \
  "both clears are in the audit log"
pass "lockout clear ends an account's and an address's lock on the running server, audited"

# Addresses are compared in their canonical form; bad arguments are refused and change nothing.
assert_eq "$("$MTE" admin --data "$DATA" lockout clear --address ::0001 --json | json_get "['subject']")" \
  "address ::1" "an IPv6 address in its RFC 5952 form"
for args in "--address not-an-ip" "" "--account alice --address 127.0.0.1"; do
  rc=0
  # shellcheck disable=SC2086
  "$MTE" admin --data "$DATA" lockout clear $args >/dev/null 2>"$T/bad.err" || rc=$?
  assert_ne "$rc" 0 "lockout clear $args"
done
assert_eq "$("$MTE" admin --data "$DATA" audit list --action lockout.clear | wc -l)" 2 \
  "a clear of nothing and refused clears write no audit entry"
pass "lockout clear refuses a bad address and a missing or doubled selector"
