#!/usr/bin/env python3
"""Flow B (seed 8.y.4 steps 12-17, docs/protocol.md §9) run by two openssl s_client processes, so
that neither TLS session is made by OpenMTE code.

OUTER: `openssl s_client` to the MEF, server-authenticated (CA file, -verify_hostname MEF-FQDN,
-verify_return_error), stdin/stdout as pipes. Over it this script sends
  POST /enrolment/token {"token", "rspfs": ["PPSK"]}   -> expects 200 {"rspf": "PPSK", ...}
  GET /enrolment/rspf (Connection/Upgrade: oneM2M-RSPF) -> expects 101
and then carries the INNER session: a second `openssl s_client` (TLS-PSK, psk_identity = KpmID,
SNI = MEF-FQDN) connects to a listener on 127.0.0.1 here, and its bytes are relayed as the outer
session's application data (outer stdin), while the outer stdout is parsed as TLS records and
relayed back record by record (binary-safe; anything that is not a TLS record is a failure).
The inner s_client's stdin is POST /enrolment {"mafEnrolment": true, "channelBinding": HEX}.

The channel binding is the RFC 9266 tls-exporter value of the OUTER session: label
EXPORTER-Channel-Binding, 32 octets, EMPTY context. `s_client -keymatexport` exports with NO
context (SSL_export_keying_material(..., use_context=0)); gnutls-cli --keymatexport too
(gnutls_prf_rfc5705(..., 0, NULL, ...), where NULL means "no context").
- TLS 1.3 (RFC 8446 §7.5): "no context" and "empty context" both hash the empty string, so the
  s_client value IS the binding. Checked here: the same value is recomputed from the session's
  EXPORTER_SECRET (s_client -keylogfile) with HKDF-Expand-Label and an empty context.
- TLS 1.2 (RFC 5705 §4): the empty context adds two zero length octets to the PRF seed, so the
  binding differs from what s_client prints. It is computed here with the TLS 1.2 PRF from the
  master secret (s_client -keylogfile, CLIENT_RANDOM) and the client/server randoms (s_client
  -msg), after checking that the same computation WITHOUT context reproduces s_client's value.

Modes: --stop-after token (only present the token; report the answer) or a full run.
--binding flip sends the binding with one hex digit changed; --binding no-context sends what
s_client printed (for TLS 1.2 the exporter WITHOUT context, which is not the binding).
Writes transcripts and result.json into --out; prints result.json; exit 0 when the protocol ran
to its end (whatever the MEF answered), 1 on a protocol or harness failure (reason on stderr).
Python stdlib only.
"""

import argparse
import hashlib
import hmac
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time

CB_LABEL = "EXPORTER-Channel-Binding"
CB_LENGTH = 32
BOOTSTRAP_LABEL = "EXPORTER-oneM2M-Bootstrap"
BOOTSTRAP_LENGTH = 48
UPGRADE_PROTOCOL = "oneM2M-RSPF"
MAX_HEAD = 16384
MAX_BODY = 1 << 20


class Failure(Exception):
    pass


class Deadline:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def left(self, what):
        left = self.end - time.monotonic()
        if left <= 0:
            raise Failure("timed out " + what)
        return left


class PipeReader:
    """Unbuffered reader of a child's stdout (os.read on the descriptor, select with deadline)."""

    def __init__(self, fd, deadline, log):
        self.fd = fd
        self.deadline = deadline
        self.buf = b""
        self.eof = False
        self.log = log  # every byte read is appended here (transcript)

    def fill(self, what, timeout=None):
        """Reads once; returns False at EOF. timeout (seconds) overrides the deadline wait."""
        if self.eof:
            return False
        wait = self.deadline.left(what) if timeout is None else timeout
        ready, _, _ = select.select([self.fd], [], [], wait)
        if not ready:
            if timeout is not None:
                return True
            raise Failure("timed out " + what)
        data = os.read(self.fd, 65536)
        if not data:
            self.eof = True
            return False
        self.log.write(data)
        self.log.flush()
        self.buf += data
        return True

    def until(self, pattern, what, limit=1 << 20):
        """Reads until the regex (bytes) matches; returns the match and consumes through it."""
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return m
            if len(self.buf) > limit:
                raise Failure(what + ": no match within %d bytes" % limit)
            if not self.fill(what):
                raise Failure(what + ": end of output before a match")

    def exact(self, n, what):
        while len(self.buf) < n:
            if not self.fill(what):
                raise Failure(what + ": end of output after %d of %d bytes" % (len(self.buf), n))
        data, self.buf = self.buf[:n], self.buf[n:]
        return data


def read_http_response(reader, what):
    """Strict HTTP/1.1 response: status line, CRLF headers, Content-Length framed body (none for
    1xx). Returns dict(status, reason, headers (lower-case name -> value), raw_headers, body)."""
    while b"\r\n\r\n" not in reader.buf:
        if len(reader.buf) > MAX_HEAD:
            raise Failure(what + ": response head longer than %d bytes" % MAX_HEAD)
        if not reader.fill(what):
            raise Failure(what + ": connection ended inside the response head: %r" % reader.buf[:200])
    head, reader.buf = reader.buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    m = re.fullmatch(r"HTTP/1\.1 ([1-5][0-9][0-9])(?: (.*))?", lines[0])
    if not m:
        raise Failure(what + ": malformed status line %r" % lines[0][:200])
    status = int(m.group(1))
    headers, raw = {}, []
    for line in lines[1:]:
        hm = re.fullmatch(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*", line)
        if not hm:
            raise Failure(what + ": malformed header line %r" % line[:200])
        name = hm.group(1).lower()
        if name in headers:
            raise Failure(what + ": duplicate header %s" % hm.group(1))
        headers[name] = hm.group(2)
        raw.append(line)
    if "transfer-encoding" in headers:
        raise Failure(what + ": unexpected Transfer-Encoding")
    body = b""
    if status >= 200:
        if "content-length" not in headers or not re.fullmatch(r"[0-9]{1,7}", headers["content-length"]):
            raise Failure(what + ": missing or malformed Content-Length")
        n = int(headers["content-length"])
        if n > MAX_BODY:
            raise Failure(what + ": body too long")
        body = reader.exact(n, what + " (body)")
    return {"status": status, "reason": m.group(2) or "", "headers": headers, "rawHeaders": raw,
            "body": body.decode("utf-8", "replace")}


def http_request(method, target, host, headers, body=b""):
    lines = ["%s %s HTTP/1.1" % (method, target), "Host: " + host] + headers
    if body or method == "POST":
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# ------------------------------------------------------------------ exporters by hand

def tls12_prf(hash_name, secret, label, seed, length):
    """RFC 5246 §5: PRF(secret, label, seed) = P_<hash>(secret, label + seed)."""
    seed = label + seed
    out, a = b"", seed
    while len(out) < length:
        a = hmac.new(secret, a, hash_name).digest()
        out += hmac.new(secret, a + seed, hash_name).digest()
    return out[:length]


def tls12_exporter(hash_name, master, client_random, server_random, label, length, context):
    """RFC 5705 §4: context None = no context; b"" = empty context (a zero length prefix)."""
    seed = client_random + server_random
    if context is not None:
        seed += len(context).to_bytes(2, "big") + context
    return tls12_prf(hash_name, master, label.encode(), seed, length)


def hkdf_expand_label(hash_name, secret, label, context, length):
    """RFC 8446 §7.1 HKDF-Expand-Label."""
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(context)]) + context
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([i]), hash_name).digest()
        out += block
        i += 1
    return out[:length]


def tls13_exporter(hash_name, exporter_secret, label, length, context):
    """RFC 8446 §7.5 TLS-Exporter(label, context_value, key_length)."""
    empty = hashlib.new(hash_name, b"").digest()
    derived = hkdf_expand_label(hash_name, exporter_secret, label.encode(), empty,
                                hashlib.new(hash_name).digest_size)
    return hkdf_expand_label(hash_name, derived, b"exporter",
                             hashlib.new(hash_name, context).digest(), length)


def keylog_entries(path):
    entries = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                entries.setdefault(parts[0], []).append((bytes.fromhex(parts[1]), bytes.fromhex(parts[2])))
    return entries


def msg_handshake(path, direction, name):
    """The bytes of one handshake message from s_client -msg output ('>>>' sent, '<<<' received)."""
    text = open(path, encoding="latin-1").read()
    m = re.search(r"^%s [^\n]*Handshake \[length [0-9a-f]+\], %s\n((?:    [0-9a-f ]+\n)+)"
                  % (re.escape(direction), name), text, re.M)
    if not m:
        raise Failure("no %s %s in the s_client -msg output" % (direction, name))
    return bytes.fromhex(m.group(1).replace("\n", " "))


def outer_binding(summary, keylog, msgfile):
    """Returns (binding bytes, method text); see the module comment."""
    printed = bytes.fromhex(summary["keyingMaterial"])
    cipher = summary["cipher"]
    hash_name = "sha384" if cipher.endswith("SHA384") else "sha256"
    entries = keylog_entries(keylog)
    if summary["protocol"] == "TLSv1.3":
        secrets = entries.get("EXPORTER_SECRET", [])
        if len(secrets) != 1:
            raise Failure("expected one EXPORTER_SECRET in the outer key log, got %d" % len(secrets))
        by_hand = tls13_exporter(hash_name, secrets[0][1], CB_LABEL, CB_LENGTH, b"")
        if by_hand != printed:
            raise Failure("TLS 1.3 exporter with empty context recomputed from EXPORTER_SECRET (%s) "
                          "differs from s_client's (%s)" % (by_hand.hex(), printed.hex()))
        return printed, ("s_client -keymatexport (TLS 1.3: no context == empty context); "
                         "equal to HKDF from EXPORTER_SECRET with empty context")
    if summary["protocol"] != "TLSv1.2":
        raise Failure("unexpected outer protocol " + summary["protocol"])
    randoms = entries.get("CLIENT_RANDOM", [])
    if len(randoms) != 1:
        raise Failure("expected one CLIENT_RANDOM in the outer key log, got %d" % len(randoms))
    client_random, master = randoms[0]
    client_hello = msg_handshake(msgfile, ">>>", "ClientHello")
    server_hello = msg_handshake(msgfile, "<<<", "ServerHello")
    if client_hello[0] != 1 or server_hello[0] != 2:
        raise Failure("unexpected handshake message types in the -msg output")
    if client_hello[6:38] != client_random:
        raise Failure("ClientHello random differs from the key log's CLIENT_RANDOM")
    server_random = server_hello[6:38]
    no_context = tls12_exporter(hash_name, master, client_random, server_random, CB_LABEL,
                                CB_LENGTH, None)
    if no_context != printed:
        raise Failure("TLS 1.2 PRF without context recomputed from the master secret (%s) differs "
                      "from s_client's (%s)" % (no_context.hex(), printed.hex()))
    empty = tls12_exporter(hash_name, master, client_random, server_random, CB_LABEL, CB_LENGTH, b"")
    return empty, ("TLS 1.2 PRF-%s over the master secret from s_client -keylogfile with an empty "
                   "context; the same computation without context equals s_client -keymatexport"
                   % hash_name.upper())


# ------------------------------------------------------------------ the run

def parse_summary(text):
    """Facts from s_client's connection summary."""
    def one(pattern):
        m = re.search(pattern, text, re.M)
        return m.group(1) if m else ""
    # "New, X, Cipher is" names the cipher's version, not the session's; prefer "Protocol  :".
    return {
        "protocol": one(r"^\s*Protocol\s*: (TLSv1\.[0-9])$") or one(r"^(?:New|Reused), (TLSv1\.3), Cipher is "),
        "cipher": one(r"^(?:New|Reused), TLSv1\.[0-9], Cipher is (\S+)"),
        "verifyReturnCode": one(r"^\s*Verify return code: ([0-9]+)"),
        "verifiedPeername": one(r"^Verified peername: (\S+)"),
        "serverTempKey": one(r"^Server Temp Key: ([^\n]*)"),
        "keyingMaterial": one(r"^\s*Keying material: ([0-9A-F]+)$"),
        "subject": one(r"^subject=([^\n]*)"),
    }


def spawn(argv, children, **kw):
    p = subprocess.Popen(argv, **kw)
    children.append(p)
    return p


def is_record_start(buf):
    return buf[0] in (20, 21, 22, 23) and (len(buf) < 2 or buf[1] == 3)


def run(a, result, children):
    deadline = Deadline(a.timeout)
    start = time.monotonic()
    timings = result.setdefault("timingsMs", {})

    def mark(what):
        timings[what] = round((time.monotonic() - start) * 1000)

    out = a.out
    outer_log = open(os.path.join(out, "outer.out"), "wb")
    outer_argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % a.mef_port,
                  "-servername", a.mef_fqdn, "-CAfile", a.ca, "-verify_hostname", a.mef_fqdn,
                  "-verify_return_error", "-tls" + a.outer_tls.replace(".", "_"),
                  "-keymatexport", CB_LABEL, "-keymatexportlen", str(CB_LENGTH),
                  "-keylogfile", os.path.join(out, "outer.keylog"),
                  "-msg", "-msgfile", os.path.join(out, "outer.msg"),
                  "-ign_eof", "-nocommands"]
    outer = spawn(outer_argv, children, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                  stderr=open(os.path.join(out, "outer.err"), "wb"), bufsize=0)
    reader = PipeReader(outer.stdout.fileno(), deadline, outer_log)

    def send_outer(data):
        os.write(outer.stdin.fileno(), data)

    # Step 12: server-authenticated TLS; the summary ends with the exporter line and "---".
    try:
        reader.until(rb"\n\s*Keying material: [0-9A-F]+\n---\n", "waiting for the outer handshake")
    except Failure as e:
        outer.wait(timeout=2)
        err = open(os.path.join(out, "outer.err"), "rb").read().decode("latin-1")
        result["outer"] = {"exit": outer.returncode, "stderr": err[-2000:]}
        raise Failure("outer handshake: %s; s_client stderr: %s" % (e, err.strip()[-600:]))
    mark("outerHandshake")
    with open(os.path.join(out, "outer.out"), "rb") as f:
        summary = parse_summary(f.read().decode("latin-1"))
    if reader.buf:
        raise Failure("unexpected bytes after the outer handshake summary: %r" % reader.buf[:200])
    binding, method = outer_binding(summary, os.path.join(out, "outer.keylog"),
                                    os.path.join(out, "outer.msg"))
    sent_binding = binding.hex()
    if a.binding == "flip":
        last = sent_binding[-1]
        sent_binding = sent_binding[:-1] + ("1" if last == "0" else "0")
    elif a.binding == "no-context":
        sent_binding = summary["keyingMaterial"].lower()
    result["outer"] = dict(summary, bindingHex=binding.hex(), bindingSentHex=sent_binding,
                           bindingMethod=method)

    # Steps 13-16: the Enrolment-Token and the supported RSPFs.
    body = json.dumps({"token": a.token, "rspfs": ["PPSK"]}, separators=(",", ":")).encode()
    send_outer(http_request("POST", "/enrolment/token", a.mef_fqdn,
                            ["Content-Type: application/json", "X-M2M-RI: token-1",
                             "X-M2M-RVI: 3"], body))
    token = read_http_response(reader, "token response")
    result["token"] = token
    mark("tokenResponse")
    if a.stop_after == "token" or token["status"] != 200:
        return
    rspf = json.loads(token["body"])
    if rspf.get("rspf") != "PPSK":
        raise Failure("MEF selected RSPF %r" % rspf.get("rspf"))

    # Step 17: switch to the RSPF handshake on the same connection.
    send_outer(http_request("GET", "/enrolment/rspf", a.mef_fqdn,
                            ["Connection: Upgrade", "Upgrade: " + UPGRADE_PROTOCOL,
                             "X-M2M-RI: rspf-1", "X-M2M-RVI: 3"]))
    upgrade = read_http_response(reader, "upgrade response")
    result["upgrade"] = upgrade
    mark("upgradeResponse")
    if upgrade["status"] != 101:
        return
    if upgrade["headers"].get("upgrade") != UPGRADE_PROTOCOL:
        raise Failure("101 without 'Upgrade: %s': %r" % (UPGRADE_PROTOCOL, upgrade["rawHeaders"]))
    if reader.buf:
        raise Failure("MEF sent %d bytes after the 101 before the inner ClientHello" % len(reader.buf))

    # The inner TLS-PSK session, tunnelled through the outer one.
    request_body = json.dumps({"mafEnrolment": True, "channelBinding": sent_binding},
                              separators=(",", ":")).encode()
    request = http_request("POST", "/enrolment", a.mef_fqdn,
                           ["Content-Type: application/json", "Accept: application/json",
                            "X-M2M-Origin: " + a.kpm_id, "X-M2M-RI: enrol-1", "X-M2M-RVI: 3",
                            "Connection: close"], request_body)
    with open(os.path.join(out, "inner.req"), "wb") as f:
        f.write(request)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    inner_argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % listener.getsockname()[1],
                  "-tls" + a.inner_tls.replace(".", "_"), "-psk", a.kpm_hex,
                  "-psk_identity", a.kpm_id, "-servername", a.mef_fqdn,
                  "-keymatexport", BOOTSTRAP_LABEL, "-keymatexportlen", str(BOOTSTRAP_LENGTH),
                  "-ign_eof", "-nocommands"]
    if a.inner_tls == "1.2":
        inner_argv += ["-cipher", "PSK-AES128-CBC-SHA256"]
    inner = spawn(inner_argv, children, stdin=open(os.path.join(out, "inner.req"), "rb"),
                  stdout=open(os.path.join(out, "inner.out"), "wb"),
                  stderr=open(os.path.join(out, "inner.err"), "wb"))
    listener.settimeout(deadline.left("waiting for the inner s_client to connect"))
    try:
        conn, _ = listener.accept()
    except socket.timeout:
        raise Failure("the inner s_client did not connect")
    listener.close()
    mark("innerConnected")
    stats = {"toMefBytes": 0, "toMefRecords": [], "fromMefBytes": 0, "fromMefRecords": [],
             "innerClosedFirst": False, "droppedAfterOuterEnd": []}
    result["relay"] = stats
    up_error = []

    def upstream():  # inner s_client -> outer s_client stdin (raw bytes, exactly as received)
        pending = b""
        try:
            conn.settimeout(max(0.1, deadline.end - time.monotonic()))
            while True:
                data = conn.recv(65536)
                if not data:
                    stats["innerClosedFirst"] = not reader.eof
                    return
                stats["toMefBytes"] += len(data)
                pending += data
                types = []
                while len(pending) >= 5 and len(pending) >= 5 + int.from_bytes(pending[3:5], "big"):
                    types.append(pending[0])
                    pending = pending[5 + int.from_bytes(pending[3:5], "big"):]
                try:
                    send_outer(data)
                except BrokenPipeError:
                    # The outer s_client has exited (the MEF closed the connection); only the
                    # inner client's closing alert (one record; type 23 under TLS 1.3) may arrive
                    # after that.
                    stats["droppedAfterOuterEnd"] += types
                    if len(types) != 1 or types[0] not in (21, 23) or pending:
                        up_error.append("the outer s_client exited while the inner client still "
                                        "sent records %r" % types)
                    return
                stats["toMefRecords"] += types
        except (OSError, socket.timeout) as e:
            up_error.append("relaying to the MEF: %s" % e)

    up = threading.Thread(target=upstream, daemon=True)
    up.start()
    trailer = b""
    inner_open = True
    while True:
        # Forward only complete TLS records; anything else on the outer channel is s_client text.
        while reader.buf and not trailer:
            if not is_record_start(reader.buf):
                trailer = reader.buf
                reader.buf = b""
                break
            if len(reader.buf) < 5:
                break
            n = 5 + int.from_bytes(reader.buf[3:5], "big")
            if n - 5 > 16384 + 2048:
                raise Failure("record length %d on the outer channel" % (n - 5))
            if len(reader.buf) < n:
                break
            record, reader.buf = reader.buf[:n], reader.buf[n:]
            stats["fromMefBytes"] += n
            stats["fromMefRecords"].append(record[0])
            if inner_open:
                try:
                    conn.sendall(record)
                except OSError as e:
                    inner_open = False
                    stats["innerSendError"] = str(e)
        if trailer:
            trailer += reader.buf
            reader.buf = b""
        if not reader.fill("relaying the inner session"):
            break
    mark("outerEnded")
    if reader.buf:
        raise Failure("outer channel ended inside a TLS record (%d bytes)" % len(reader.buf))
    stats["outerTrailer"] = trailer.decode("latin-1")
    if trailer not in (b"", b"closed\n"):
        raise Failure("non-record bytes on the outer channel: %r" % trailer[:300])
    try:
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    try:
        inner.wait(timeout=deadline.left("waiting for the inner s_client to exit"))
    except subprocess.TimeoutExpired:
        raise Failure("the inner s_client did not exit")
    up.join(timeout=2)
    conn.close()
    try:
        outer.stdin.close()
    except OSError:
        pass
    try:
        outer.wait(timeout=deadline.left("waiting for the outer s_client to exit"))
    except subprocess.TimeoutExpired:
        raise Failure("the outer s_client did not exit")
    if up_error:
        raise Failure(up_error[0])
    mark("childrenExited")
    stats["innerExit"] = inner.returncode
    stats["outerExit"] = outer.returncode
    with open(os.path.join(out, "inner.out"), "rb") as f:
        inner_text = f.read()
    isum = parse_summary(inner_text.decode("latin-1"))
    inner_resp = PipeReader(-1, deadline, open(os.devnull, "wb"))
    i = inner_text.find(b"HTTP/1.1 ")
    if i < 0:
        raise Failure("no HTTP response in the inner s_client output; stderr: %s" %
                      open(os.path.join(out, "inner.err"), "rb").read().decode("latin-1")[-600:])
    inner_resp.buf = inner_text[i:]
    inner_resp.eof = True
    result["inner"] = dict(isum, response=read_http_response(inner_resp, "inner response"))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mef-port", type=int, required=True)
    p.add_argument("--mef-fqdn", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--kpm-id", required=True)
    p.add_argument("--kpm-hex", required=True)
    p.add_argument("--outer-tls", choices=["1.2", "1.3"], default="1.3")
    p.add_argument("--inner-tls", choices=["1.2", "1.3"], default="1.2")
    p.add_argument("--binding", choices=["correct", "flip", "no-context"], default="correct")
    p.add_argument("--stop-after", choices=["token", "enrolment"], default="enrolment")
    p.add_argument("--out", required=True)
    p.add_argument("--timeout", type=float, default=20)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    children = []
    result = {"outerTls": a.outer_tls, "innerTls": a.inner_tls, "binding": a.binding}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rc = 0
    try:
        run(a, result, children)
    except (Failure, OSError) as e:
        result["error"] = str(e)
        print("nested_relay: " + str(e), file=sys.stderr)
        rc = 1
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
    text = json.dumps(result, indent=2, sort_keys=True)
    with open(os.path.join(a.out, "result.json"), "w") as f:
        f.write(text + "\n")
    print(text)
    return rc


if __name__ == "__main__":
    sys.exit(main())
