#!/usr/bin/env bash
# Connection deadlines on the listeners (docs/protocol.md §13): a request must arrive whole within
# `requestTimeoutMs` of its first byte however slowly it drips (each byte used to restart the idle
# deadline, so one byte every few seconds held a connection open for ever), and an idle connection
# closes `idleTimeoutMs` after the last answer even when that is shorter than the 10 s write
# deadline. Stock `openssl s_client` as the client, on the portal and on the MEF (PSK session).
source "$(dirname "$0")/lib.sh"

init_mte
KPM=$(openssl rand -hex 32)
KPM_ID="kpm-drip@maker.it.test"
add_device dev-drip "$KPM_ID" "$KPM" CLAIM-DRIP-1
set_config idleTimeoutMs 2000
set_config requestTimeoutMs 4000
start_server

PORTAL_ARGS=(-connect "127.0.0.1:$PORTAL_PORT" -servername localhost)
MEF_ARGS=(-connect "127.0.0.1:$MEF_PORT" -psk "$KPM" -psk_identity "$KPM_ID" -servername "$MEF_FQDN")

# drip NAME HOST S_CLIENT_ARGS...: sends a request head one byte every 0.5 s (about 25 s in all)
# and sets ELAPSED_MS to the time from the first byte until the server closed the connection.
drip() {
  local name=$1 host=$2
  shift 2
  local head="GET /api/v1/health HTTP/1.1"$'\r\n'"Host: $host"$'\r\n'"X-Pad: drip-drip-drip-drip"$'\r\n\r\n'
  {
    sleep 0.5
    now_ms >"$T/$name.first"
    local i
    for ((i = 0; i < ${#head}; i++)); do
      [[ -f "$T/$name.end" ]] && break
      printf '%s' "${head:i:1}"
      sleep 0.5
    done
  } | {
    timeout 60 openssl s_client -quiet "$@" >"$T/$name.out" 2>"$T/$name.err" || true
    now_ms >"$T/$name.end"
  } || true
  ELAPSED_MS=$(($(cat "$T/$name.end") - $(cat "$T/$name.first")))
}

# idle NAME REQUEST_HEAD S_CLIENT_ARGS...: sends REQUEST twice 0.5 s apart, then nothing; sets
# ELAPSED_MS to the time from the second request until the server closed the connection.
idle() {
  local name=$1 request=$2
  shift 2
  {
    sleep 0.5
    printf '%s' "$request"
    sleep 0.5
    now_ms >"$T/$name.first"
    printf '%s' "$request"
    local i
    for ((i = 0; i < 150; i++)); do
      [[ -f "$T/$name.end" ]] && break
      sleep 0.2
    done
  } | {
    timeout 60 openssl s_client -quiet "$@" >"$T/$name.out" 2>"$T/$name.err" || true
    now_ms >"$T/$name.end"
  } || true
  ELAPSED_MS=$(($(cat "$T/$name.end") - $(cat "$T/$name.first")))
}

drip portal localhost "${PORTAL_ARGS[@]}"
(( ELAPSED_MS >= 3500 && ELAPSED_MS <= 8000 )) ||
  fail "portal: a dripped request was closed after $ELAPSED_MS ms (requestTimeoutMs 4000)"
assert_eq "$(grep -c '^HTTP/1.1' "$T/portal.out")" 0 "portal: the dripped request is not answered"
wait_log "did not complete a request within 4000 ms"
pass "portal: a request dripping one byte every 0.5 s is cut off after $ELAPSED_MS ms"

drip mef "$MEF_FQDN" "${MEF_ARGS[@]}"
(( ELAPSED_MS >= 3500 && ELAPSED_MS <= 8000 )) ||
  fail "MEF: a dripped request was closed after $ELAPSED_MS ms (requestTimeoutMs 4000)"
assert_eq "$(grep -c '^HTTP/1.1' "$T/mef.out")" 0 "MEF: the dripped request is not answered"
pass "MEF: a request dripping one byte every 0.5 s is cut off after $ELAPSED_MS ms"

idle portal-idle $'GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n' "${PORTAL_ARGS[@]}"
assert_eq "$(grep -o 'HTTP/1.1 200' "$T/portal-idle.out" | wc -l)" 2 "portal: both requests on one connection are answered"
(( ELAPSED_MS >= 1500 && ELAPSED_MS <= 6000 )) ||
  fail "portal: an idle connection closed $ELAPSED_MS ms after its last request (idleTimeoutMs 2000)"
pass "portal: a connection 0.5 s idle is kept; one idle for $ELAPSED_MS ms is closed (idleTimeoutMs 2000)"

# On the MEF, a request for a resource it does not have is answered, and the connection stays.
idle mef-idle $'GET /nothing-here HTTP/1.1\r\nHost: '"$MEF_FQDN"$'\r\nX-M2M-Origin: Cdev\r\nX-M2M-RI: idle-1\r\nX-M2M-RVI: 3\r\n\r\n' \
  "${MEF_ARGS[@]}"
assert_eq "$(grep -o 'HTTP/1.1 [0-9]*' "$T/mef-idle.out" | wc -l)" 2 "MEF: both requests on one connection are answered"
(( ELAPSED_MS >= 1500 && ELAPSED_MS <= 6000 )) ||
  fail "MEF: an idle connection closed $ELAPSED_MS ms after its last request (idleTimeoutMs 2000)"
pass "MEF: an idle connection is closed $ELAPSED_MS ms after its last answer"
