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
  othercert  a real, signed response about another serial number of the same issuer
  nononce    a real, signed response about the requested certificate without the nonce
  stale      a real response with producedAt, thisUpdate and nextUpdate moved two hours into the
             past, signed again with the responder key (`openssl dgst -sign`)

Threaded: a silent or slow request does not hold up others. Exits on SIGTERM or SIGINT, and in
any case after --max-seconds, so it never outlives a test run. Python 3 standard library only.
"""

import argparse
import base64
import binascii
import calendar
import http.server
import os
import re
import signal
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

MODES = ("good", "silent", "garbage", "huge", "http500", "slow", "othercert", "nononce", "stale")
MAX_REQUEST_BYTES = 64 * 1024
HUGE_BYTES = 64 * 1024 * 1024
SLOW_SECONDS = 5
STALE_SHIFT_SECONDS = 2 * 3600
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

    def run_openssl(self, cmd):
        """Runs one openssl command; returns its stdout, or None (logged) when it fails."""
        try:
            done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  timeout=OPENSSL_TIMEOUT_SECONDS, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            log(f"openssl failed: {e}")
            return None
        if done.returncode != 0:
            log("openssl failed: " + done.stderr.decode(errors="replace").strip())
            return None
        return done.stdout

    def substitute_request(self, tmp, req, mode):
        """For othercert/nononce: writes and returns a new request built by `openssl ocsp`
        about (serial + 1 | the same serial) of the issuer --ca, without a nonce for nononce."""
        a = self.args
        text = self.run_openssl([a.openssl, "ocsp", "-reqin", req, "-req_text"])
        if text is None:
            return None
        serial = None
        for line in text.decode(errors="replace").splitlines():
            line = line.strip()
            if line.startswith("Serial Number:"):
                serial = int(line.split(":", 1)[1].strip(), 16)
                break
        if serial is None:
            log("no serial number in the request")
            return None
        if mode == "othercert":
            serial += 1
        new_req = os.path.join(tmp, "substitute.der")
        cmd = [a.openssl, "ocsp", "-issuer", a.ca, "-serial", hex(serial), "-reqout", new_req]
        if mode == "nononce":
            cmd.append("-no_nonce")
        if self.run_openssl(cmd) is None:
            return None
        return new_req

    def ocsp(self, request_der, mode="good"):
        """Runs `openssl ocsp` as the responder; returns the DER response or None."""
        a = self.args
        with tempfile.TemporaryDirectory(prefix="ocsp-responder-") as tmp:
            req = os.path.join(tmp, "req.der")
            resp = os.path.join(tmp, "resp.der")
            with open(req, "wb") as f:
                f.write(request_der)
            if mode in ("othercert", "nononce"):
                req = self.substitute_request(tmp, req, mode)
                if req is None:
                    return None
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
                response = f.read()
            if mode == "stale":
                return self.backdate(tmp, response)
            return response

    def backdate(self, tmp, response):
        """The response with every GeneralizedTime of tbsResponseData moved STALE_SHIFT_SECONDS
        back (same length), tbsResponseData signed again with --rkey (ECDSA/SHA-256 or
        RSA/SHA-256, matching what openssl ocsp used), and the DER lengths rebuilt."""
        try:
            _, outer = der_children(response)[0]
            status, bytes_tagged = der_children(outer)
            _, bytes_seq = der_children(bytes_tagged[1])[0]
            rtype, octets = der_children(bytes_seq)
            _, basic = der_children(octets[1])[0]
            parts = der_children(basic)
        except (IndexError, ValueError) as e:
            log(f"stale: cannot parse the response: {e}")
            return None
        tbs = der_encode(parts[0][0], parts[0][1])

        def shift(m):
            t = time.strptime(m.group(1).decode(), "%Y%m%d%H%M%SZ")
            back = time.gmtime(calendar.timegm(t) - STALE_SHIFT_SECONDS)
            return b"\x18\x0f" + time.strftime("%Y%m%d%H%M%SZ", back).encode()

        tbs = re.sub(rb"\x18\x0f(\d{14}Z)", shift, tbs)
        tbs_file = os.path.join(tmp, "tbs.der")
        with open(tbs_file, "wb") as f:
            f.write(tbs)
        sig = self.run_openssl([self.args.openssl, "dgst", "-sha256", "-sign", self.args.rkey,
                                tbs_file])
        if sig is None:
            return None
        new_parts = [tbs, der_encode(*parts[1]), der_encode(0x03, b"\0" + sig)]
        new_parts += [der_encode(*p) for p in parts[3:]]
        basic = der_encode(0x30, b"".join(new_parts))
        resp_bytes = der_encode(0x30, der_encode(*rtype) + der_encode(0x04, basic))
        return der_encode(0x30, der_encode(*status) + der_encode(0xA0, resp_bytes))


def der_children(data):
    """The (tag, value) pairs of a concatenation of DER TLVs (single-byte tags)."""
    out, i = [], 0
    while i < len(data):
        tag, n = data[i], data[i + 1]
        i += 2
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(data[i:i + k], "big")
            i += k
        if i + n > len(data):
            raise ValueError("truncated DER")
        out.append((tag, data[i:i + n]))
        i += n
    return out


def der_encode(tag, value):
    n = len(value)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + value


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
        response = self.server.ocsp(request_der, mode)
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
