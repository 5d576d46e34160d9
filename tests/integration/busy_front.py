#!/usr/bin/env python3
"""A front that is busy once: what a device sees when a MEF, or a proxy in front of it, cannot
serve it now.

The first --busy connections are answered by this script itself: it completes TLS with its own
certificate (which names the MEF FQDN; the test puts it into the bundle's trust anchors next to
the MEF's own), reads one HTTP request, and answers 503 with `Retry-After: SECONDS` and
`Connection: close`. Every later connection is relayed as raw TCP to the real MEF, so the MEF
terminates that TLS session itself.

Stops after --max-seconds. Writes its port to --port-file once listening, and one line per connection to --log:
"<unix seconds, 3 decimals> busy" or "<...> relay".
"""
import argparse
import os
import socket
import ssl
import threading
import time


def relay(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    finally:
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def answer_busy(conn, context, retry_after):
    with context.wrap_socket(conn, server_side=True) as tls:
        request = b""
        while b"\r\n\r\n" not in request and len(request) < 65536:
            chunk = tls.recv(4096)
            if not chunk:
                return
            request += chunk
        tls.sendall(b"HTTP/1.1 503 Service Unavailable\r\n"
                    b"Retry-After: " + str(retry_after).encode() + b"\r\n"
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n")


def pass_through(conn, mef_port):
    upstream = socket.create_connection(("127.0.0.1", mef_port))
    threads = [threading.Thread(target=relay, args=(conn, upstream)),
               threading.Thread(target=relay, args=(upstream, conn))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conn.close()
    upstream.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mef-port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--retry-after", type=int, required=True)
    ap.add_argument("--busy", type=int, default=1)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--max-seconds", type=float, default=120)
    args = ap.parse_args()
    deadline = time.monotonic() + args.max_seconds

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(1)
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(server.getsockname()[1]))
    os.rename(args.port_file + ".tmp", args.port_file)
    served = 0
    while time.monotonic() < deadline:
        try:
            conn, _ = server.accept()
        except socket.timeout:
            continue
        conn.settimeout(None)
        busy = served < args.busy
        served += 1
        with open(args.log, "a") as log:
            log.write("%.3f %s\n" % (time.time(), "busy" if busy else "relay"))
        if busy:
            try:
                answer_busy(conn, context, args.retry_after)
            except (OSError, ssl.SSLError):
                pass
        else:
            threading.Thread(target=pass_through, args=(conn, args.mef_port), daemon=True).start()


if __name__ == "__main__":
    main()
