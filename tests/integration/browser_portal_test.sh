#!/usr/bin/env bash
# The portal in headless Chromium (tests/browser/portal_flow.mjs, playwright-core) with the real
# `mte serve`, `mte-enrolee await-obf` and `mte-obf deliver --qr`: sign in, add a Flow B entry,
# issue a token, photograph its QR code (decoded by zbarimg here as well), on-board the device
# from the photo, see "enrolled" appear on the page, open the timeline, revoke; then stock
# `openssl s_client -psk` with the device's Km is refused by the MAF. Every page's screenshot is
# kept in $MTE_ARTIFACTS (default build/test-artifacts/browser) and read back by OCR (tesseract):
# each must be a real picture that shows the page's expected text.
source "$(dirname "$0")/lib.sh"

SRC="$(cd "$(dirname "$0")/../.." && pwd)"
BROWSER_DIR="$SRC/tests/browser"
OBF="$MTE_BIN_DIR/mte-obf"
SHOTS="${MTE_ARTIFACTS:-$MTE_BIN_DIR/../test-artifacts}/browser"
for tool in node /usr/bin/chromium zbarimg tesseract; do
  command -v "$tool" >/dev/null || fail "$tool is missing (tools/install-deps.sh --test installs it)"
done
[[ -d "$BROWSER_DIR/node_modules/playwright-core" ]] ||
  fail "playwright-core is missing (tools/install-deps.sh --test runs npm ci in tests/browser)"
rm -rf "$SHOTS"
mkdir -p "$SHOTS"

init_mte
KPM=$(openssl rand -hex 32)
add_device dev-web kpm-web@maker.it.test "$KPM" "CLAIM-WEB-$(openssl rand -hex 4)"
PW="pw-$(openssl rand -hex 12)"
add_stakeholder wendy "$PW"
(umask 077; printf '%s\n' "$PW" >"$T/wendy.password")
start_server
SPKI=$(openssl x509 -in "$DATA/pki/portal.crt" -pubkey -noout | openssl pkey -pubin -outform DER |
  openssl dgst -sha256 -binary | base64)

CODE=$("$ENROLEE" new-setup-code)
start_device web dev-web "$CODE" kpm-web@maker.it.test "$KPM"
(umask 077; printf '%s\n' "$CODE" >"$T/obf.code")

# The QR photo decodes, with the independent zbarimg, to a version 1 token bundle payload.
cat >"$T/qr-check.sh" <<'SH'
set -euo pipefail
payload=$(zbarimg --quiet --raw "$1")
[[ "$payload" == MTB1:* ]] || { echo "the QR code holds '${payload:0:12}...', not an MTB1 payload" >&2; exit 1; }
echo "ok: zbarimg reads an MTB1 payload of ${#payload} characters from the page's QR code"
SH
# Just before the revocation the browser script pauses (BEFORE_REVOKE); meanwhile this shell shows
# that the device's Km opens the MAF.
cat >"$T/before-revoke.sh" <<SH
touch '$T/paused'
for i in \$(seq 600); do [[ -f '$T/resume' ]] && exit 0; sleep 0.1; done
echo 'the test did not resume the browser' >&2; exit 1
SH

(cd "$BROWSER_DIR" && PORTAL_URL="https://localhost:$PORTAL_PORT" PORTAL_SPKI="$SPKI" \
  USER_NAME=wendy PASSWORD_FILE="$T/wendy.password" OBF="$OBF" \
  DEVICE_ADDRESS="127.0.0.1:$DEVICE_PORT" SETUP_CODE_FILE="$T/obf.code" SHOTS="$SHOTS" \
  RESULT="$T/result.json" BEFORE_REVOKE="$T/before-revoke.sh" QR_DECODED_CHECK="$T/qr-check.sh" \
  exec timeout 240 node portal_flow.mjs) >"$T/browser.log" 2>&1 &
NODE_PID=$!
browser_failed() {
  cat "$T/browser.log" >&2
  tail -n 30 "$T/serve.log" >&2
  cat "$T/web.log" >&2 || true
  fail "the browser flow failed: $1"
}
while [[ ! -f "$T/paused" ]]; do
  kill -0 "$NODE_PID" 2>/dev/null || { wait "$NODE_PID" || true; browser_failed "before the revocation"; }
  sleep 0.2
done
KMID=$(json_get "['kmId']" <"$T/web.state/enrolment.json")
KM=$(od -An -v -tx1 "$T/web.state/km" | tr -d " \n")
assert_eq "${#KM}" 64 "the device's Km"
maf_ossl_ok before-revoke "$KMID" "$KM"
touch "$T/resume"
wait "$NODE_PID" || browser_failed "after the revocation"
cat "$T/browser.log"
pass "the browser flow: sign in, Flow B entry, token QR, mte-obf --qr, enrolled live, timeline, revoke"
ID=$(json_get "['enroleeId']" <"$T/result.json")
KEID=$(json_get "['keId']" <"$T/result.json")
assert_eq "$(enrolee_field dev-web state)" revoked "the entry after the revocation"
assert_eq "$(enrolee_field dev-web credentialIds)" "[]" "the credential IDs after the revocation"

# The MAF refuses the revoked credential once the retirement is delivered.
assert_match "$KEID" '^[0-9A-F]{32}@' "KeID on the page"
wait_for "[[ \$(db_query 'SELECT count(*) FROM maf_credentials') == 0 ]]" 150 ||
  fail "the MAF still holds the Km of enrolee $ID"
maf_ossl_refused after-revoke "$KMID" "$KM"
pass "openssl s_client -psk with the revoked Km is refused by the MAF"

# Every screenshot is a picture with content, and OCR finds the page's expected text in it.
python3 - "$T/result.json" <<'PY'
import json, subprocess, sys, zlib, struct
result = json.load(open(sys.argv[1]))
shots = result["screenshots"]
assert len(shots) >= 10, f"only {len(shots)} screenshots"
bad = 0
for shot in shots:
    data = open(shot["path"], "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < (300 if shot.get("small") else 5000):
        print(f"{shot['name']}: not a PNG with content ({len(data)} bytes)"); bad += 1; continue
    width, height = struct.unpack(">II", data[16:24])
    text = subprocess.run(["tesseract", shot["path"], "-", "--psm", str(shot.get("psm", 3))], capture_output=True,
                          text=True).stdout
    flat = " ".join(text.split()).lower()
    missing = [t for t in shot["mustShow"] if " ".join(t.split()).lower() not in flat]
    # OCR may misread a word; the page's own heading words must be there all the same.
    if missing:
        print(f"{shot['name']} ({width}x{height}): OCR did not find {missing} in: {flat[:300]}"); bad += 1
    else:
        print(f"ok: {shot['name']}.png {width}x{height}, shows {shot['mustShow']}")
sys.exit(1 if bad else 0)
PY
pass "every screenshot shows what its page must show (kept in $SHOTS)"
