#!/usr/bin/env bash
# Old protocol versions on every listener (docs/errors.md §2): a ClientHello for SSL 3.0 is
# answered with a fatal handshake_failure (40), one for TLS 1.0 or 1.1 with protocol_version (70),
# each in a record of the client's version. The ClientHellos are written byte by byte here (stock
# tools no longer speak SSL 3.0), and the answer is compared byte for byte.
source "$(dirname "$0")/lib.sh"

init_mte
start_server
DELIVERY_PORT=$(json_get ".get('mafDeliveryPort','')" <<<"$SERVE_JSON")

# alert_for PORT VERSION_HEX: the first 7 octets the server sends after a ClientHello of VERSION
# (offering TLS_RSA_WITH_AES_128_CBC_SHA and AES_256_CBC_SHA, no extensions), in hex.
alert_for() {
  python3 - "$1" "$2" <<'PY'
import os, socket, struct, sys
port, version = int(sys.argv[1]), int(sys.argv[2], 16)
body = struct.pack(">H", version) + os.urandom(32) + b"\x00" + b"\x00\x04\x00\x2f\x00\x35" + b"\x01\x00"
handshake = b"\x01" + struct.pack(">I", len(body))[1:] + body
record = b"\x16" + struct.pack(">HH", version, len(handshake)) + handshake
with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
    s.sendall(record)
    answer = b""
    while len(answer) < 7:
        chunk = s.recv(64)
        if not chunk:
            break
        answer += chunk
print(answer[:7].hex())
PY
}

for listener in mef:$MEF_PORT maf:$MAF_PORT maf-delivery:$DELIVERY_PORT portal:$PORTAL_PORT; do
  name=${listener%%:*} port=${listener##*:}
  assert_eq "$(alert_for "$port" 0300)" 15030000020228 "$name: SSL 3.0 ClientHello"
  assert_eq "$(alert_for "$port" 0301)" 15030100020246 "$name: TLS 1.0 ClientHello"
  assert_eq "$(alert_for "$port" 0302)" 15030200020246 "$name: TLS 1.1 ClientHello"
  pass "$name: SSL 3.0 gets handshake_failure (40), TLS 1.0 and 1.1 get protocol_version (70)"
done
