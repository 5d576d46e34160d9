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

# feed_until_closed NAME WRITER S_CLIENT_ARGS...: runs the shell function WRITER NAME as the
# client's input (it writes $T/NAME.first when its timed part starts and stops once $T/NAME.end
# exists) and sets ELAPSED_MS to the time from then until the server closed the connection.
feed_until_closed() {
  local name=$1 writer=$2
  shift 2
  "$writer" "$name" | {
    timeout 60 openssl s_client -quiet "$@" >"$T/$name.out" 2>"$T/$name.err" || true
    now_ms >"$T/$name.end"
  } || true
  ELAPSED_MS=$(($(cat "$T/$name.end") - $(cat "$T/$name.first")))
}

# A request head, one byte every 0.5 s (about 25 s in all); timed from the first byte.
drip_writer() {
  local head="GET /api/v1/health HTTP/1.1"$'\r\n'"Host: $HOST"$'\r\n'"X-Pad: drip-drip-drip-drip"$'\r\n\r\n'
  local i
  sleep 0.5
  now_ms >"$T/$1.first"
  for ((i = 0; i < ${#head}; i++)); do
    [[ -f "$T/$1.end" ]] && break
    printf '%s' "${head:i:1}"
    sleep 0.5
  done
}

# $REQUEST twice, 0.5 s apart, then nothing; timed from the second.
idle_writer() {
  local i
  sleep 0.5
  printf '%s' "$REQUEST"
  sleep 0.5
  now_ms >"$T/$1.first"
  printf '%s' "$REQUEST"
  for ((i = 0; i < 150; i++)); do
    [[ -f "$T/$1.end" ]] && break
    sleep 0.2
  done
}

drip() { HOST=$2 feed_until_closed "$1" drip_writer "${@:3}"; }
idle() { REQUEST=$2 feed_until_closed "$1" idle_writer "${@:3}"; }

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
