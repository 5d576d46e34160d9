# Shared helpers for the integration tests (sourced, not run). Each test gets its own temporary
# directory, its own MTE data directory with ephemeral ports, and its own server processes, all
# on 127.0.0.1; everything is stopped and removed on exit.
set -euo pipefail

: "${MTE_BIN_DIR:?MTE_BIN_DIR must point at the built binaries}"
MTE="$MTE_BIN_DIR/mte"
ENROLEE="$MTE_BIN_DIR/mte-enrolee"
T=$(mktemp -d /tmp/mte-it.XXXXXX)
DATA="$T/mte"
MEF_FQDN=mef.it.test
MAF_FQDN=maf.it.test
SERVER_PIDS=()

cleanup() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${SERVER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ "${KEEP_TMP:-0}" != 1 ]]; then rm -rf "$T"; fi
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }

# json_get 'EXPR' < json   e.g. json_get "['keId']"
json_get() { python3 -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }

# init_mte [extra init args]: a data dir with ephemeral ports.
init_mte() {
  "$MTE" init --data "$DATA" --mef-fqdn "$MEF_FQDN" --maf-fqdn "$MAF_FQDN" \
    --mef-port 0 --maf-port 0 --maf-delivery-port 0 --portal-port 0 "$@" >/dev/null
}

# add_device ID KPMID KPMHEX CLAIM: imports one device.
add_device() {
  printf '[{"deviceId":"%s","kpmId":"%s","kpmHex":"%s","claimCode":"%s"}]' "$1" "$2" "$3" "$4" \
    >"$T/manifest-$1.json"
  "$MTE" admin --data "$DATA" device import "$T/manifest-$1.json" >/dev/null
}

add_stakeholder() { printf '%s\n' "$2" | "$MTE" admin --data "$DATA" stakeholder add "$1" --password-stdin >/dev/null; }

claim() { "$MTE" admin --data "$DATA" enrolee add --stakeholder "$1" --device "$2" --claim-code "$3" >/dev/null; }

# start_server [serve args]: starts mte serve in the background and waits for DIR/serve.json.
start_server() {
  rm -f "$DATA/serve.json"
  "$MTE" serve --data "$DATA" "$@" >>"$T/serve.log" 2>&1 &
  SERVER_PIDS+=($!)
  local i
  for i in $(seq 200); do
    [[ -f "$DATA/serve.json" ]] && break
    kill -0 "${SERVER_PIDS[-1]}" 2>/dev/null || { cat "$T/serve.log" >&2; fail "server exited"; }
    sleep 0.05
  done
  [[ -f "$DATA/serve.json" ]] || fail "server did not become ready"
  SERVE_JSON=$(cat "$DATA/serve.json")
  MEF_PORT=$(json_get ".get('mefPort','')" <<<"$SERVE_JSON")
  MAF_PORT=$(json_get ".get('mafPort','')" <<<"$SERVE_JSON")
  PORTAL_PORT=$(json_get ".get('portalPort','')" <<<"$SERVE_JSON")
}

stop_servers() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${SERVER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  SERVER_PIDS=()
}

enrolee_json() { "$MTE" admin --data "$DATA" enrolee list --json; }

# wait_for 'shell condition' [tries] [seconds between tries, 0.1]
wait_for() {
  local i
  for i in $(seq "${2:-100}"); do
    if eval "$1"; then return 0; fi
    sleep "${3:-0.1}"
  done
  return 1
}

# ---------------------------------------------------------------- protocol-level helpers
# (openssl s_client / gnutls-cli as independent peers, state snapshots, crash handling)

SERVE_LOG="$T/serve.log"

# Resolve the interpreter once: a version-manager shim costs ~0.3 s per start, and the helpers
# below start python often. Stdlib only, so `-S` (no site import) is safe and faster.
MTE_PYTHON=$(command python3 -c 'import sys; print(sys.executable)')
python3() { "$MTE_PYTHON" -S "$@"; }

assert_eq() { [[ "$1" == "$2" ]] || fail "$3: expected '$2', got '$1'"; }
assert_ne() { [[ "$1" != "$2" ]] || fail "$3: both are '$1'"; }
assert_match() { [[ "$1" =~ $2 ]] || fail "$3: '$1' does not match /$2/"; }
# assert_file_has FILE FIXED_STRING WHAT / assert_file_lacks FILE FIXED_STRING WHAT
assert_file_has() { grep -qaF -- "$2" "$1" || { tail -n 20 "$1" >&2; fail "$3: '$2' not in $(basename "$1")"; }; }
assert_file_lacks() { ! grep -qaF -- "$2" "$1" || fail "$3: '$2' found in $(basename "$1")"; }

# free_ports [N]: N distinct TCP ports on 127.0.0.1 that are free right now, one per line (for
# configurations that need fixed ports, e.g. the MAF delivery port of a MEF in another process).
free_ports() {
  python3 - "${1:-1}" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# set_config KEY JSON_VALUE: sets one member of DATA/mte.json (before the server starts).
set_config() {
  python3 - "$DATA/mte.json" "$1" "$2" <<'EOF'
import json, sys
path, key, value = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
config = json.load(open(path))
config[key] = value
with open(path, "w") as f:
    json.dump(config, f, indent=2)
EOF
}

# fixed_ports: four free ports written into DATA/mte.json (before the servers start) as mefPort,
# mafPort, mafDeliveryPort and portalPort, and set as P_MEF, P_MAF, P_DELIVERY and P_PORTAL: for
# roles in separate processes (a MEF finds the MAF's delivery port in the configuration) and for
# restarts on the same ports.
fixed_ports() {
  read -r -d '' P_MEF P_MAF P_DELIVERY P_PORTAL < <(free_ports 4) || true
  set_config mefPort "$P_MEF"
  set_config mafPort "$P_MAF"
  set_config mafDeliveryPort "$P_DELIVERY"
  set_config portalPort "$P_PORTAL"
}

# reap_server PID: waits for a server process that is expected to exit (crash point, kill -9),
# removes it from the cleanup list and sets REAPED_STATUS to its exit status. It must run in this
# shell, never inside $(...): a subshell cannot wait for its parent's children.
reap_server() {
  local pid=$1 kept=() p
  REAPED_STATUS=0
  wait "$pid" 2>/dev/null || REAPED_STATUS=$?
  for p in "${SERVER_PIDS[@]}"; do [[ "$p" == "$pid" ]] || kept+=("$p"); done
  SERVER_PIDS=("${kept[@]}")
}

# kill9_server PID: a power cut for one server process.
kill9_server() { kill -KILL "$1" 2>/dev/null || true; reap_server "$1"; }

audit_list() { "$MTE" admin --data "$DATA" audit list; }

# db_query SQL: a read-only query on the SQLite store (safe while mte serve runs).
db_query() { sqlite3 -readonly -batch -noheader "$DATA/mte.db" "$1"; }

# state_snapshot: everything a refused request must leave unchanged (enrolee database, audit log,
# outbox and MAF key store). It first waits (up to 10 s) until the outbox has delivered every
# item that is due, so that a delivery of an EARLIER enrolment, which the outbox makes shortly
# after the commit, does not land between two snapshots.
state_snapshot() {
  wait_for "[[ \$(db_query \"SELECT count(*) FROM outbox WHERE COALESCE(delivered_at, 0) = 0
                              AND next_attempt_at <= CAST(strftime('%s', 'now') AS INTEGER)\") == 0 ]]" 100 || true
  enrolee_json
  audit_list
  db_query "SELECT id, enrolee_id, generation, attempts, delivered_at FROM outbox ORDER BY id;
            SELECT km_id, enrolee_id, generation FROM maf_credentials ORDER BY id;"
}

# enrolee_field DEVICE_ID KEY: one member of that device's entry in 'enrolee list --json'.
enrolee_field() {
  enrolee_json | python3 -c '
import json, sys
entry = [e for e in json.load(sys.stdin) if e["deviceId"] == sys.argv[1]]
v = entry[0][sys.argv[2]] if entry else ""
print(json.dumps(v) if isinstance(v, (list, dict)) else v)' "$1" "$2"
}

# wait_delivered DEVICE_ID KEID: until the entry shows that KeID with mafDelivery == delivered.
wait_delivered() {
  wait_for "[[ \$(enrolee_field '$1' keId) == '$2' && \$(enrolee_field '$1' mafDelivery) == delivered ]]" "${3:-150}"
}

# http_request FILE METHOD TARGET BODY [HOST [EXTRA_HEADER_LINE...]]: writes one HTTP/1.1 request
# with oneM2M headers and Connection: close (Content-Type application/json unless an extra header
# sets it). BODY "@json:N" is a JSON object of exactly N bytes.
http_request() {
  python3 - "$@" <<'EOF'
import sys
out, method, target, body = sys.argv[1:5]
host = sys.argv[5] if len(sys.argv) > 5 else "mef"
extra = sys.argv[6:]
if body.startswith("@json:"):
    n = int(body[6:])
    data = b'{"x":"' + b"a" * (n - 8) + b'"}'
else:
    data = body.encode()
head = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
if not any(h.lower().startswith("content-type:") for h in extra):
    head.append("Content-Type: application/json")
head += ["X-M2M-Origin: Cit-device", "X-M2M-RI: it-req-1", "X-M2M-RVI: 3",
         f"Content-Length: {len(data)}", "Connection: close"] + extra
open(out, "wb").write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
EOF
}

# http_field TRANSCRIPT WHAT: from a client transcript holding one HTTP/1.1 response, prints
# WHAT = status | header:NAME | body | json:KEY (lists/objects as JSON); empty when absent.
http_field() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
data = open(sys.argv[1], "rb").read()
what = sys.argv[2]
i = data.find(b"HTTP/1.1 ")
if i < 0:
    print("")
    sys.exit(0)
head, _, rest = data[i:].partition(b"\r\n\r\n")
lines = head.decode("latin-1").split("\r\n")
headers = {}
for line in lines[1:]:
    k, _, v = line.partition(":")
    headers[k.strip().lower()] = v.strip()
body = rest[: int(headers.get("content-length", "0"))].decode("utf-8", "replace")
if what == "status":
    print(lines[0].split(" ")[1])
elif what.startswith("header:"):
    print(headers.get(what[7:].lower(), ""))
elif what == "body":
    print(body)
elif what.startswith("json:"):
    try:
        v = json.loads(body).get(what[5:], "")
    except ValueError:
        v = ""
    print(json.dumps(v) if isinstance(v, (list, dict)) else v)
EOF
}

# http_parse TRANSCRIPT: like http_field, for all fields at once (one interpreter start): fills
# the associative array RESP with keys status, body, header:<lower-case name> and json:<member>
# (top-level members; lists/objects as JSON). Empty when the transcript holds no response.
declare -gA RESP=()
http_parse() {
  RESP=()
  eval "$(python3 - "$1" <<'EOF'
import json, shlex, sys
data = open(sys.argv[1], "rb").read()
i = data.find(b"HTTP/1.1 ")
if i >= 0:
    head, _, rest = data[i:].partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    out = {"status": lines[0].split(" ")[1]}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        out["header:" + k.strip().lower()] = v.strip()
    body = rest[: int(out.get("header:content-length", "0"))].decode("utf-8", "replace")
    out["body"] = body
    try:
        j = json.loads(body)
    except ValueError:
        j = None
    if isinstance(j, dict):
        for k, v in j.items():
            out["json:" + k] = json.dumps(v) if isinstance(v, (list, dict)) else str(v)
    for k, v in out.items():
        print("RESP[%s]=%s" % (shlex.quote(k), shlex.quote(v)))
EOF
)"
}

# resp KEY: one field from the last http_parse ("" when absent).
resp() { echo "${RESP[$1]:-}"; }

# exporter_hex TRANSCRIPT: the keying material printed by openssl s_client ("Keying material:")
# or gnutls-cli ("- Key material:"), in upper case; empty when absent.
exporter_hex() {
  sed -nE 's/.*Key(ing)? material: ([0-9A-Fa-f]+).*/\2/p' "$1" | head -n 1 | tr a-f A-F
}

# keid_of EXPORT_HEX: TS-0003 §10.3.1/§10.3.4 by hand: UPPERCASE-HEX(octets 0-15) "@" MEF-FQDN.
keid_of() { echo "${1:0:32}@$MEF_FQDN"; }

# km_from_ke KE_HEX [MAF_ID]: Km = HMAC-SHA-256(Ke, label || MAF-ID), computed by openssl dgst
# (TS-0003 §10.3.2), lower-case hex.
km_from_ke() {
  printf '%s' "oneM2M Enrolment Key to Master Credential derivation${2:-$MAF_FQDN}" |
    openssl dgst -sha256 -mac HMAC -macopt "hexkey:$1" | awk '{print $NF}'
}

# km_of EXPORT_HEX [MAF_ID]: the same with Ke = octets 16-47 of the exporter output.
km_of() { km_from_ke "${1:32:64}" "${2:-$MAF_FQDN}"; }

# flip_hex HEX: the same key with its last hex digit changed.
flip_hex() { local h=$1 last=${1: -1}; [[ "$last" == 0 ]] && echo "${h%?}1" || echo "${h%?}0"; }

# ossl_client PORT OUT REQUEST_FILE [s_client options]: openssl s_client to 127.0.0.1:PORT with the
# request as input; stdout in OUT, stderr in OUT.err; returns the exit status.
ossl_client() {
  local port=$1 out=$2 req=$3
  shift 3
  timeout 20 openssl s_client -connect "127.0.0.1:$port" -ign_eof "$@" <"$req" >"$out" 2>"$out.err"
}

# gnutls_client PORT OUT REQUEST_FILE [gnutls-cli options]: gnutls-cli to 127.0.0.1:PORT; stdout
# in OUT, stderr in OUT.err, informational messages (handshake, exporter) in OUT.log.
gnutls_client() {
  local port=$1 out=$2 req=$3
  shift 3
  rm -f "$out.log"
  timeout 20 gnutls-cli --port "$port" 127.0.0.1 --logfile "$out.log" "$@" \
    <"$req" >"$out" 2>"$out.err"
}

# wait_log FIXED_TEXT [tries of 0.1 s]: until the server log contains the text.
wait_log() {
  local i
  for i in $(seq "${2:-50}"); do
    grep -qaF -- "$1" "$SERVE_LOG" && return 0
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------- portal REST and JSON documents

# portal_call OUT METHOD PATH [JSON_BODY] [BEARER]: one request to the portal over HTTPS (curl,
# verified against the development CA and the name localhost); the response body goes to OUT and
# the HTTP status is printed.
portal_call() {
  local out=$1 method=$2 path=$3 body=${4:-} bearer=${5:-}
  local args=(-sS -o "$out" -w '%{http_code}' --max-time 20 --cacert "$DATA/pki/ca.crt"
    --resolve "localhost:$PORTAL_PORT:127.0.0.1" -X "$method")
  [[ -z "$body" ]] || args+=(-H 'Content-Type: application/json' --data-binary "$body")
  [[ -z "$bearer" ]] || args+=(-H "Authorization: Bearer $bearer")
  curl "${args[@]}" "https://localhost:$PORTAL_PORT$path"
}

# portal_login NAME PASSWORD: prints the bearer token (empty when the login is refused).
portal_login() {
  local body
  body=$(python3 -c 'import json,sys; print(json.dumps({"name": sys.argv[1], "password": sys.argv[2]}))' "$1" "$2")
  [[ $(portal_call "$T/login.out" POST /api/v1/login "$body") == 200 ]] || { rm -f "$T/login.out"; return 0; }
  json_get ".get('token','')" <"$T/login.out"
  rm -f "$T/login.out"
}

# enrolee_by_id ID KEY: one member of entry ID in 'enrolee list --json' (lists/objects as JSON).
enrolee_by_id() {
  enrolee_json | python3 -c '
import json, sys
entry = [e for e in json.load(sys.stdin) if str(e["id"]) == sys.argv[1]]
v = entry[0][sys.argv[2]] if entry else ""
print(json.dumps(v) if isinstance(v, (list, dict)) else v)' "$1" "$2"
}

# json_flat FILE: fills the associative array JF with every member of a JSON document, keys joined
# with "." (list indices too, e.g. "a.0.b"); scalars as text (booleans as true/false), lists and
# objects also as compact JSON under their own key. A string member holding a JSON object or list
# (an HTTP body) is flattened once more under KEY.json. One interpreter start for all of them.
declare -gA JF=()
json_flat() {
  JF=()
  eval "$(python3 - "$1" <<'EOF'
import json, shlex, sys

def walk(prefix, v, out):
    if isinstance(v, (dict, list)):
        if prefix:
            out[prefix] = json.dumps(v, separators=(",", ":"))
        items = v.items() if isinstance(v, dict) else enumerate(v)
        for k, x in items:
            walk(f"{prefix}.{k}" if prefix else str(k), x, out)
        return
    if isinstance(v, bool):
        out[prefix] = "true" if v else "false"
    elif v is None:
        out[prefix] = ""
    else:
        out[prefix] = str(v)
    if isinstance(v, str) and v[:1] in ("{", "["):
        try:
            walk(prefix + ".json", json.loads(v), out)
        except ValueError:
            pass

out = {}
walk("", json.load(open(sys.argv[1])), out)
for k, v in out.items():
    print("JF[%s]=%s" % (shlex.quote(k), shlex.quote(v)))
EOF
)"
}

# jf KEY: one value from the last json_flat ("" when absent).
jf() { echo "${JF[$1]:-}"; }

# ---------------------------------------------------------------- Flow B: entries, bundles, devices
# (BEARER holds a portal bearer token from portal_login)

OBF="$MTE_BIN_DIR/mte-obf"

# flowb_entry JSON_BODY: adds a Flow B entry (no claim code) on the portal; prints its id.
flowb_entry() {
  local status
  status=$(portal_call "$T/entry.out" POST /api/v1/enrolees "$1" "$BEARER")
  [[ "$status" == 201 ]] || { cat "$T/entry.out" >&2; fail "portal: adding an entry gave $status"; }
  json_get "['id']" <"$T/entry.out"
}

# flowb_bundle ENTRY_ID FILE: issues an Enrolment-Token on the portal; the bundle goes to FILE.
flowb_bundle() {
  local status
  status=$(portal_call "$2" POST "/api/v1/enrolees/$1/tokens" "" "$BEARER")
  [[ "$status" == 201 ]] || { cat "$2" >&2; fail "portal: issuing a token gave $status"; }
}

bundle_token() { json_get "['token']" <"$1"; }

# bundle_edit IN OUT PYTHON_STATEMENT: a copy of a bundle changed by a statement on dict `d`.
bundle_edit() {
  python3 - "$1" "$2" "$3" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
exec(sys.argv[3])
json.dump(d, open(sys.argv[2], "w"))
PYEOF
}

# portal_enrolee_field ID KEY: one member of GET /api/v1/enrolees/ID (lists as JSON).
portal_enrolee_field() {
  local status
  status=$(portal_call "$T/enrolee.out" GET "/api/v1/enrolees/$1" "" "$BEARER")
  [[ "$status" == 200 ]] || { cat "$T/enrolee.out" >&2; fail "portal: GET enrolee $1 gave $status"; }
  python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))[sys.argv[2]]
print(json.dumps(v) if isinstance(v, (list, dict)) else v)' "$T/enrolee.out" "$2"
}

# token_state TOKEN_TEXT: the stored state of a token, looked up by its SHA-256 ("" if unknown).
token_state() {
  local hash
  hash=$(printf %s "$1" | openssl dgst -sha256 | awk '{print toupper($NF)}')
  db_query "SELECT state FROM tokens WHERE hex(token_hash) = '$hash';"
}

# wait_port_file NAME PID WHAT: waits until PID has written its port to $T/NAME.port (its output
# in $T/NAME.log); fails naming WHAT if it does not, or exits first. Prints the port.
wait_port_file() {
  local name=$1 pid=$2 what=$3
  wait_for "[[ -s '$T/$name.port' ]] || ! kill -0 $pid 2>/dev/null" 100 ||
    fail "$what did not start listening"
  [[ -s "$T/$name.port" ]] || { cat "$T/$name.log" >&2; fail "$what exited"; }
  cat "$T/$name.port"
}

# start_device_with NAME DEVICE_ID SETUP_CODE [await-obf credential args]: `mte-enrolee
# await-obf` in the background (state in $T/NAME.state, output in $T/NAME.log); waits for its port
# file; sets DEVICE_PID and DEVICE_PORT. Reap it with reap_server.
start_device_with() {
  local name=$1 id=$2 code=$3
  shift 3
  rm -f "$T/$name.port"
  # The setup code from a file (--setup-code-file), so that it does not appear in ps.
  (umask 077; printf '%s\n' "$code" >"$T/$name.code")
  "$ENROLEE" await-obf --listen 127.0.0.1:0 --device-id "$id" --setup-code-file "$T/$name.code" "$@" \
    --state "$T/$name.state" --port-file "$T/$name.port" --timeout-s 45 >"$T/$name.log" 2>&1 &
  DEVICE_PID=$!
  SERVER_PIDS+=("$DEVICE_PID")
  DEVICE_PORT=$(wait_port_file "$name" "$DEVICE_PID" "device $name")
}

# start_device NAME DEVICE_ID SETUP_CODE KPM_ID KPM_HEX: start_device_with a Kpm (PPSK-RSPF).
start_device() { start_device_with "$1" "$2" "$3" --kpm-id "$4" --kpm-hex "$5"; }

# obf_deliver OUT BUNDLE PORT SETUP_CODE: `mte-obf deliver`; stdout+stderr in OUT; prints the
# exit status.
obf_deliver() {
  local rc=0
  (umask 077; printf '%s\n' "$4" >"$1.code")
  timeout 50 "$OBF" deliver --bundle "$2" --device "127.0.0.1:$3" --setup-code-file "$1.code" \
    --timeout-s 40 >"$1" 2>&1 || rc=$?
  echo "$rc"
}

# ---------------------------------------------------------------- certificate RSPF: device PKI, OCSP

OCSP_RESPONDER="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ocsp_responder.py"

# device_ca NAME [mte admin pki init-device-ca args]: a device CA in $T/NAME (ca.crt, ca.key).
device_ca() {
  local name=$1
  shift
  "$MTE" admin pki init-device-ca --out "$T/$name" --name "$name" "$@" >/dev/null
}

# start_ocsp NAME INDEX CA_DIR [ocsp_responder.py args]: a responder for the CA in CA_DIR (signing
# with the CA's own key unless --rsigner/--rkey follow) over INDEX; port file $T/NAME.port, mode
# file $T/NAME.port.mode. Sets OCSP_PORT, OCSP_PID and OCSP_URL.
start_ocsp() {
  local name=$1 index=$2 ca=$3
  shift 3
  [[ -f "$index" ]] || : >"$index"
  rm -f "$T/$name.port" "$T/$name.port.mode"
  "$MTE_PYTHON" -S "$OCSP_RESPONDER" --index "$index" --ca "$ca/ca.crt" --rsigner "$ca/ca.crt" \
    --rkey "$ca/ca.key" --port-file "$T/$name.port" --max-seconds 120 "$@" 2>>"$T/$name.log" &
  OCSP_PID=$!
  SERVER_PIDS+=("$OCSP_PID")
  OCSP_PORT=$(wait_port_file "$name" "$OCSP_PID" "OCSP responder $name")
  OCSP_URL="http://127.0.0.1:$OCSP_PORT/"
}

# crl_ca_db DIR CA_DIR: an `openssl ca` database in DIR (index.txt, ca.cnf) for the CA in CA_DIR,
# for `openssl ca -config DIR/ca.cnf -revoke ... / -gencrl` (CRLs valid 7 days).
crl_ca_db() {
  local dir=$1 ca=$2
  mkdir -p "$dir"
  : >"$dir/index.txt"
  cat >"$dir/ca.cnf" <<EOF
[ca]
default_ca = dev_ca
[dev_ca]
database = $dir/index.txt
certificate = $ca/ca.crt
private_key = $ca/ca.key
default_md = sha256
default_crl_days = 7
EOF
}

# ocsp_mode NAME MODE: switches a running responder (good|silent|garbage|huge|http500|slow|...).
ocsp_mode() { echo "$2" >"$T/$1.port.mode"; }

# issue_cert ID CA_DIR [issue-device args]: a device certificate in $T/ID (device.crt, device.key);
# sets CERT_SHA, SPKI_SHA and SERIAL (upper-case hex, as openssl prints it).
issue_cert() {
  local id=$1 ca=$2
  shift 2
  "$MTE" admin pki issue-device --ca "$ca" --device-id "$id" --out "$T/$id" "$@" >"$T/$id.issue"
  CERT_SHA=$(sed -n 's/^certSha256 //p' "$T/$id.issue")
  SPKI_SHA=$(sed -n 's/^spkiSha256 //p' "$T/$id.issue")
  SERIAL=$(cert_serial "$T/$id/device.crt")
}

cert_serial() { openssl x509 -in "$1" -noout -serial | cut -d= -f2; }

# index_good INDEX SERIAL / index_revoked INDEX SERIAL: one line of an `openssl ocsp` index (the
# subject is unique per line: openssl refuses an index with duplicate subjects).
index_good() { printf 'V\t301231235959Z\t\t%s\tunknown\t/CN=%s\n' "$2" "$2" >>"$1"; }
index_revoked() { printf 'R\t301231235959Z\t261201000000Z\t%s\tunknown\t/CN=%s\n' "$2" "$2" >>"$1"; }

# add_cert_device ID KIND DIGEST CLAIM: imports one device whose credential is a certificate
# (KIND certSha256) or a key (KIND spkiSha256).
add_cert_device() {
  printf '[{"deviceId":"%s","%s":"%s","claimCode":"%s"}]' "$1" "$2" "$3" "$4" >"$T/manifest-$1.json"
  "$MTE" admin --data "$DATA" device import "$T/manifest-$1.json" >/dev/null
}

# enrol_cert OUT CERT KEY [mte-enrolee enrol args]: Flow A with a device certificate; output in
# OUT (stdout+stderr), state in OUT.state; prints the exit status.
enrol_cert() {
  local out=$1 cert=$2 key=$3 rc=0
  shift 3
  rm -rf "$out.state"
  timeout 30 "$ENROLEE" enrol --mef "127.0.0.1:$MEF_PORT" --mef-fqdn "$MEF_FQDN" \
    --ca "$DATA/pki/ca.crt" --cert "$cert" --key "$key" --state "$out.state" "$@" >"$out" 2>&1 || rc=$?
  echo "$rc"
}

# now_ms: wall-clock milliseconds.
now_ms() { date +%s%3N; }

# maf_ossl_ok NAME KMID KM [s_client options]: `openssl s_client -psk` opens the MAF with KmID/Km
# and the MAF reports this KmID.
maf_ossl_ok() {
  local name=$1 kmid=$2 km=$3 out="$T/maf-$1.out"
  shift 3
  [[ -f "$T/session.req" ]] || http_request "$T/session.req" GET /maf/v1/session '' "$MAF_FQDN"
  ossl_client "$MAF_PORT" "$out" "$T/session.req" -psk "$km" -psk_identity "$kmid" \
    -servername "$MAF_FQDN" "$@" || { cat "$out" "$out.err" >&2; fail "$name: MAF handshake failed"; }
  http_parse "$out"
  assert_eq "$(resp status)" 200 "$name: MAF HTTP status"
  assert_eq "$(resp json:kmId)" "$kmid" "$name: kmId reported by the MAF"
  pass "$name: MAF handshake with KmID/Km computed by openssl dgst ($(resp json:tlsVersion))"
}

# maf_ossl_refused NAME KMID KM [s_client options]: the MAF handshake fails with a TLS alert and no
# HTTP response comes back.
maf_ossl_refused() {
  local name=$1 kmid=$2 km=$3 out="$T/maf-$1.out" rc=0
  shift 3
  [[ -f "$T/session.req" ]] || http_request "$T/session.req" GET /maf/v1/session '' "$MAF_FQDN"
  ossl_client "$MAF_PORT" "$out" "$T/session.req" -psk "$km" -psk_identity "$kmid" \
    -servername "$MAF_FQDN" "$@" || rc=$?
  [[ $rc -ne 0 ]] || fail "$name: s_client succeeded"
  assert_file_lacks "$out" "HTTP/1.1" "$name: no HTTP response"
  assert_file_has "$out.err" "alert" "$name: the MAF sent a TLS alert"
  pass "$name: MAF refused the handshake (s_client exit $rc, no HTTP response)"
}
