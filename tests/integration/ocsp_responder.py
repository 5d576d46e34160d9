#!/usr/bin/env python3
"""A loopback OCSP responder for tests (OCSP over HTTP, RFC 6960 Appendix A.1).

Every request (POST with an application/ocsp-request body, or GET /<url-encoded base64>) is
answered by `openssl ocsp` in responder mode over the given index, CA and signer. The listening
socket is on 127.0.0.1 with a kernel-chosen port, written to --port-file once it is bound.

Misbehaviour for negative tests is chosen by --mode, and can be changed while running by writing
one word into "<port-file>.mode" (read on each request):
  good     a real OCSP response
  silent   read the request, never answer; the socket is held until the process exits
  garbage  200 with random bytes
  huge     200 with a 64 MiB body (Content-Length set), streamed
  http500  500 Internal Server Error
  slow     a real OCSP response after 5 s

Threaded: a silent or slow request does not hold up others. Exits on SIGTERM or SIGINT, and in
any case after --max-seconds, so it never outlives a test run. Python 3 standard library only.
"""

import argparse
import base64
import binascii
import http.server
import os
import signal
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

MODES = ("good", "silent", "garbage", "huge", "http500", "slow")
MAX_REQUEST_BYTES = 64 * 1024
HUGE_BYTES = 64 * 1024 * 1024
SLOW_SECONDS = 5
OPENSSL_TIMEOUT_SECONDS = 20


class Responder(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True  # silent handlers must not keep the process alive
    allow_reuse_address = False

    def __init__(self, args):
        self.args = args
        self.mode_file = args.port_file + ".mode"
        self.hold = threading.Event()  # never set: silent handlers wait on it forever
        super().__init__(("127.0.0.1", 0), Handler)

    def mode(self):
        try:
            with open(self.mode_file, encoding="ascii") as f:
                word = f.read().strip()
        except (OSError, UnicodeDecodeError):
            return self.args.mode
        return word if word in MODES else self.args.mode

    def ocsp(self, request_der):
        """Runs `openssl ocsp` as the responder; returns the DER response or None."""
        a = self.args
        with tempfile.TemporaryDirectory(prefix="ocsp-responder-") as tmp:
            req = os.path.join(tmp, "req.der")
            resp = os.path.join(tmp, "resp.der")
            with open(req, "wb") as f:
                f.write(request_der)
            cmd = [a.openssl, "ocsp", "-index", a.index, "-CA", a.ca, "-rsigner", a.rsigner,
                   "-rkey", a.rkey, "-reqin", req, "-respout", resp, "-nmin", str(a.nmin)]
            try:
                done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      timeout=OPENSSL_TIMEOUT_SECONDS, check=False)
            except (OSError, subprocess.TimeoutExpired) as e:
                log(f"openssl ocsp failed: {e}")
                return None
            if done.returncode != 0 or not os.path.exists(resp):
                log("openssl ocsp failed: " + done.stderr.decode(errors="replace").strip())
                return None
            with open(resp, "rb") as f:
                return f.read()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mte-test-ocsp"
    sys_version = ""

    def log_message(self, fmt, *args):
        if self.server.args.verbose:
            log(fmt % args)

    def do_POST(self):
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.plain(411, b"Content-Length required\n")
            return
        n = int(length)
        if n > MAX_REQUEST_BYTES:
            self.plain(413, b"request too large\n")
            return
        self.answer(self.rfile.read(n))

    def do_GET(self):
        # RFC 6960 A.1: GET {url}/{url-encoding of base-64 encoding of the DER OCSPRequest}
        encoded = urllib.parse.unquote(self.path.lstrip("/"))
        try:
            request_der = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            self.plain(400, b"bad base64\n")
            return
        self.answer(request_der)

    def answer(self, request_der):
        mode = self.server.mode()
        if mode == "silent":
            self.close_connection = True
            self.server.hold.wait()
            return
        if mode == "http500":
            self.plain(500, b"internal error\n")
            return
        if mode == "garbage":
            self.send_body(200, os.urandom(1024))
            return
        if mode == "huge":
            self.send_huge()
            return
        if mode == "slow":
            time.sleep(SLOW_SECONDS)
        response = self.server.ocsp(request_der)
        if response is None:
            self.plain(500, b"responder failed\n")
            return
        self.send_body(200, response)

    def send_head(self, status, content_type, length):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def send_body(self, status, body):
        try:
            self.send_head(status, "application/ocsp-response", len(body))
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def plain(self, status, text):
        try:
            self.send_head(status, "text/plain", len(text))
            self.wfile.write(text)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def send_huge(self):
        chunk = b"\0" * (64 * 1024)
        try:
            self.send_head(200, "application/ocsp-response", HUGE_BYTES)
            for _ in range(HUGE_BYTES // len(chunk)):
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading at its cap, as it should


def log(text):
    print(f"ocsp_responder: {text}", file=sys.stderr, flush=True)


def write_port_file(path, port):
    # Write then rename, so a reader never sees a partial number.
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--index", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--rsigner", required=True)
    p.add_argument("--rkey", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--mode", choices=MODES, default="good")
    p.add_argument("--nmin", type=int, default=10)
    p.add_argument("--max-seconds", type=int, default=300)
    p.add_argument("--openssl", default="openssl")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()
    if args.max_seconds <= 0:
        p.error("--max-seconds must be positive")

    def stop(signo, _frame):
        raise SystemExit(0 if signo != signal.SIGALRM else 2)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGALRM, stop)
    signal.alarm(args.max_seconds)  # the hard cap on lifetime

    server = Responder(args)
    try:
        write_port_file(args.port_file, server.server_address[1])
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
