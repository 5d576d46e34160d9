#!/usr/bin/env bash
# docs/api.md cannot drift: every ```sh block of it runs, in order, in one shell against a real
# `mte serve` (curl + jq only, and oathtool as the authenticator app), and what each block prints is compared with the block shown after
# it in the document (JSON member by member, with times, URIs and the MEF name made neutral).
source "$(dirname "$0")/lib.sh"

DOC="$(cd "$(dirname "$0")/../.." && pwd)/docs/api.md"
command -v jq >/dev/null || fail "jq is missing (tools/install-deps.sh --test installs it)"
command -v oathtool >/dev/null || fail "oathtool is missing (tools/install-deps.sh --test installs it)"

init_mte
CLAIM="CLAIM-$(openssl rand -hex 6)"
add_device urn:dev:acme:lamp-0001 kpm-lamp@maker.it.test "$(openssl rand -hex 32)" "$CLAIM"
PW="pw \"quoted\" $(openssl rand -hex 8)"
printf '%s\n' "$PW" | "$MTE" admin --data "$DATA" stakeholder add alice --admin --password-stdin >/dev/null
start_server

WALK="$T/walk"
mkdir -p "$WALK"
(umask 077; printf '%s\n' "$PW" >"$WALK/alice.password"; printf '%s\n' "$CLAIM" >"$WALK/lamp.claim-code")

python3 - "$DOC" "$T/walk.sh" "$T/expected.json" "https://localhost:$PORTAL_PORT" "$DATA/pki/ca.crt" <<'PY'
import json, re, sys
doc, script, expected_out, portal, ca = sys.argv[1:]
text = open(doc).read()
blocks = re.findall(r"```(\w*)\n(.*?)```", text, re.S)
lines, expected = ["set -euo pipefail"], []
i = 0
while i < len(blocks):
    lang, body = blocks[i]
    if lang == "sh":
        body = re.sub(r"^export PORTAL=.*$", "export PORTAL=" + portal, body, flags=re.M)
        body = re.sub(r"^export CA=.*$", "export CA=" + ca, body, flags=re.M)
        n = len(expected)
        lines.append(f"printf '\\n@@block {n}@@\\n'")
        lines.append(body)
        shown = None
        if i + 1 < len(blocks) and blocks[i + 1][0] in ("json", ""):
            shown = blocks[i + 1][1]
            i += 1
        expected.append(shown)
    i += 1
open(script, "w").write("\n".join(lines) + "\n")
json.dump(expected, open(expected_out, "w"))
print(f"{len(expected)} shell blocks", file=sys.stderr)
PY

(cd "$WALK" && PATH="$PATH" bash "$T/walk.sh") >"$T/walk.out" 2>"$T/walk.err" || {
  cat "$T/walk.out" "$T/walk.err" >&2
  fail "a block of docs/api.md failed"
}
assert_file_lacks "$T/walk.out" "$PW" "the walk's output"

python3 - "$T/walk.out" "$T/expected.json" "$MEF_FQDN" <<'PY'
import json, re, sys
out, expected_file, mef_fqdn = sys.argv[1:]
expected = json.load(open(expected_file))
parts = re.split(r"^@@block (\d+)@@\n", open(out).read(), flags=re.M)
got = {int(parts[k]): parts[k + 1] for k in range(1, len(parts), 2)}
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
VOLATILE = {"mefUri", "mefFqdn", "oldestPendingSeconds"}

def neutral(v, key=None):
    if isinstance(v, dict):
        return {k: neutral(x, k) for k, x in v.items()}
    if isinstance(v, list):
        return [neutral(x) for x in v]
    if key in VOLATILE:
        return "<volatile>"
    if isinstance(v, str) and TIME.match(v):
        return "<time>"
    return v

def parse(text):
    text = text.strip()
    if not text:
        return []
    try:
        return [neutral(json.loads(text))]
    except ValueError:
        pass
    values = []
    for line in text.splitlines():
        try:
            values.append(neutral(json.loads(line)))
        except ValueError:
            values.append(line.strip())
    return values

bad = 0
for n, shown in enumerate(expected):
    if n not in got:
        print(f"block {n}: did not run", file=sys.stderr); bad += 1; continue
    if shown is None:
        continue
    a, b = parse(got[n]), parse(shown)
    if a != b:
        print(f"block {n}: printed\n{got[n]}\nbut docs/api.md shows\n{shown}", file=sys.stderr)
        bad += 1
print(f"{len(expected)} blocks ran; {sum(1 for s in expected if s is not None)} outputs compared", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
pass "every block of docs/api.md ran and printed what the document shows"

# What the walk did, seen from the database: the lamp deleted, the boiler revoked with its token,
# the login session ended and the API token gone.
assert_eq "$(db_query "SELECT count(*) FROM enrolees WHERE device_id = 'urn:dev:acme:lamp-0001'")" 0 "the lamp is deleted"
assert_eq "$(db_query "SELECT state FROM enrolees WHERE label = 'Boiler'")" revoked "the boiler is revoked"
assert_eq "$(db_query "SELECT group_concat(state) FROM tokens")" revoked "the boiler's token is revoked"
assert_eq "$(db_query "SELECT count(*) FROM sessions")" 0 "the login session has ended"
assert_eq "$(db_query "SELECT count(*) FROM api_tokens")" 0 "the API token is revoked"
pass "the database shows what the walk did"
