#!/usr/bin/env bash
# Connection floods (docs/protocol.md §13): one client address holds at most
# maxConnectionsPerAddress connections per listener, so a flood from it does not keep other
# devices out; and when the listener is full, the oldest connection that has not sent a byte is
# closed for a new one, so silent connections from many addresses do not either. Plain TCP
# connections from other loopback addresses (127.0.0.2 and up) are the flood; devices enrol with
# stock `openssl s_client` from 127.0.0.1 while it holds.
source "$(dirname "$0")/lib.sh"

init_mte
add_stakeholder erin "pw-$(openssl rand -hex 8)"
for d in a b; do
  eval "KPM_$d=\$(openssl rand -hex 32)"
  eval "add_device dev-$d kpm-$d@maker.it.test \"\$KPM_$d\" CLAIM-FLOOD-$d"
  claim erin "dev-$d" "CLAIM-FLOOD-$d"
done
set_config maxConnections 64
set_config maxConnectionsPerAddress 16
set_config handshakeTimeoutMs 60000  # the flood is not reaped by the handshake deadline here
start_server

# flood NAME SOURCES PER_SOURCE: opens PER_SOURCE silent TCP connections to the MEF from each
# source address (comma-separated) and holds them until $T/NAME.stop exists. After 1.5 s it
# writes into $T/NAME.open how many the server has not closed.
flood() {
  python3 - "$MEF_PORT" "$2" "$3" "$T/$1.stop" "$T/$1.open" <<'PY' &
import os, select, socket, sys, time
port, sources, per, stop, report = int(sys.argv[1]), sys.argv[2].split(","), int(sys.argv[3]), sys.argv[4], sys.argv[5]
socks = []
for source in sources:
    for _ in range(per):
        s = socket.socket()
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        socks.append(s)
time.sleep(1.5)
alive = 0
for s in socks:
    readable, _, _ = select.select([s], [], [], 0)
    if readable:
        try:
            data = s.recv(1)
        except OSError:
            data = b""
        if not data:
            continue
    alive += 1
with open(report + ".tmp", "w") as f:
    f.write(str(alive))
os.rename(report + ".tmp", report)
while not os.path.exists(stop) and os.path.isdir(os.path.dirname(stop)):
    time.sleep(0.1)
PY
  FLOOD_PIDS+=($!)
  wait_for "[[ -f '$T/$1.open' ]]" 200 || fail "$1: the flood did not connect"
}
FLOOD_PIDS=()

enrol() {
  http_request "$T/$1.req" POST /enrolment '{}' "$MEF_FQDN"
  local kpm_var="KPM_$2"
  ossl_client "$MEF_PORT" "$T/$1.out" "$T/$1.req" -tls1_2 -cipher PSK-AES128-CBC-SHA256 \
    -psk "${!kpm_var}" -psk_identity "kpm-$2@maker.it.test" -servername "$MEF_FQDN" || true
  http_parse "$T/$1.out"
  assert_eq "$(resp status)" 201 "$1: enrolment during the flood"
  assert_eq "$(enrolee_field "dev-$2" state)" enrolled "$1: dev-$2 is enrolled"
}

# (a) 200 connections from one address: 16 stay, the rest are closed at once.
flood one 127.0.0.2 200
OPEN=$(cat "$T/one.open")
assert_eq "$OPEN" 16 "connections the MEF keeps from 127.0.0.2 (maxConnectionsPerAddress 16)"
wait_log "127.0.0.2 holds 16 connections (maxConnectionsPerAddress)"
enrol flood-a a
pass "(a) a flood of 200 from one address keeps 16; a device from another address enrols"
touch "$T/one.stop"
wait "${FLOOD_PIDS[@]}"
FLOOD_PIDS=()

# (b) silent connections from 8 addresses fill the listener (8 x 16 > 64): a new connection
# closes the oldest silent one instead of being refused.
flood many 127.0.0.10,127.0.0.11,127.0.0.12,127.0.0.13,127.0.0.14,127.0.0.15,127.0.0.16,127.0.0.17 16
assert_eq "$(cat "$T/many.open")" 64 "silent connections the MEF holds (maxConnections 64)"
enrol flood-b b
wait_log "closing a silent one from 127.0.0.1"
pass "(b) with the listener full of silent connections, a device enrols and a silent one is closed"
touch "$T/many.stop"
wait "${FLOOD_PIDS[@]}"
