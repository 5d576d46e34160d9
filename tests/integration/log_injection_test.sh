#!/usr/bin/env bash
# Hostile input must not forge server log lines (docs/conventions.md §3: every byte from a peer is hostile).
# Peer-controlled strings that reach the text log (portal login name, claimed device ID) carry
# CR/LF here; every line of serve.log must still be a line the server wrote (timestamp first).
source "$(dirname "$0")/lib.sh"

init_mte
PASSWORD="pw-$(openssl rand -hex 8)"
add_stakeholder gina "$PASSWORD"
start_server
api="https://localhost:$PORTAL_PORT/api/v1"
curl_() { curl -sS --cacert "$DATA/pki/ca.crt" --resolve "localhost:$PORTAL_PORT:127.0.0.1" "$@"; }

# (names are at most 64 characters; any line that does not start with a timestamp is forged)
status=$(curl_ -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
  -d '{"name":"x\nFORGED-LOGIN","password":"wrong-password"}' "$api/login")
assert_eq "$status" 401 "login with a CR/LF name is refused"
token=$(curl_ -H 'Content-Type: application/json' -d "{\"name\":\"gina\",\"password\":\"$PASSWORD\"}" \
  "$api/login" | json_get "['token']")
status=$(curl_ -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' \
  -d '{"deviceId":"dev\r\nFORGED-CLAIM","claimCode":"abc"}' "$api/enrolees")
assert_match "$status" '^4[0-9][0-9]$' "claim of a CR/LF device ID is refused"
pass "portal refused both requests"

wait_log "portal: " || fail "portal requests not logged"
forged=$(grep -naE -v '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+ ' "$SERVE_LOG" || true)
[[ -z "$forged" ]] || fail "serve.log has lines the server did not write: $forged"
pass "every serve.log line starts with the server's timestamp (no forged lines)"
