#!/usr/bin/env bash
# Memory per open connection of `mte serve`, and whether it is returned: opens N connections to
# one listener, reads the server's resident set size (VmRSS, /proc) before, with them open, and
# after they close, for two kinds of connection:
#   silent  TCP connections to the MEF that send nothing (the state a flood holds: the socket,
#           the coroutine frame, the 16 KiB read buffer and an SSL object);
#   tls     TLS 1.3 sessions to the portal, handshake complete, then idle (adds the session's
#           keys and OpenSSL's record buffers).
# usage: bench/connection_memory.sh BUILD_DIR [N]   (N defaults to 4000; raises the fd limit)
set -euo pipefail
BUILD=$(cd "${1:?usage: connection_memory.sh BUILD_DIR [N]}" && pwd)
N=${2:-4000}
ulimit -n $((N * 2 + 1024))
MTE="$BUILD/bin/mte"
T=$(mktemp -d /tmp/mte-mem.XXXXXX)
PID=
trap '[[ -n "$PID" ]] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT
"$MTE" init --data "$T/mte" --mef-fqdn mef.mem.test --maf-fqdn maf.mem.test --mef-port 0 \
  --maf-port 0 --maf-delivery-port 0 --portal-port 0 >/dev/null
python3 - "$T/mte/mte.json" "$N" <<'PY'
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
c = json.load(open(path))
c.update(maxConnections=n + 100, maxConnectionsPerAddress=n + 100, handshakeTimeoutMs=600000,
         idleTimeoutMs=600000)
json.dump(c, open(path, "w"))
PY
"$MTE" serve --data "$T/mte" --log-level warn 2>"$T/serve.log" &
PID=$!
for _ in $(seq 200); do [[ -f "$T/mte/serve.json" ]] && break; sleep 0.05; done
MEF_PORT=$(python3 -c "import json;print(json.load(open('$T/mte/serve.json'))['mefPort'])")
PORTAL_PORT=$(python3 -c "import json;print(json.load(open('$T/mte/serve.json'))['portalPort'])")
rss() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }

python3 - "$PID" "$N" "$MEF_PORT" "$PORTAL_PORT" <<'PY'
import socket, ssl, sys, time
pid, n, mef, portal = (int(a) for a in sys.argv[1:])
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
def settle():
    time.sleep(6)
    return rss()
base = settle()
print(f"baseline_rss_kib={base}")
for kind in ("silent", "tls"):
    before = settle()
    conns = []
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for _ in range(n):
        if kind == "silent":
            s = socket.create_connection(("127.0.0.1", mef))
        else:
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", portal)),
                                server_hostname="localhost")
        conns.append(s)
    during = settle()
    for s in conns:
        s.close()
    after = settle()
    per = (during - before) * 1024 / n
    print(f"{kind}: n={n} rss_before_kib={before} rss_open_kib={during} rss_after_close_kib={after} "
          f"per_connection_bytes={per:.0f} retained_after_close_kib={after - before}")
PY
