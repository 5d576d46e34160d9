#!/usr/bin/env bash
# Flow B from QR codes with the real processes over loopback: the portal issues a token bundle,
# its QR code (MTB1 payload) is written as a picture, the device label's QR code (MTS1 payload)
# comes from `mte-enrolee new-setup-code --qr-png`, and `mte-obf deliver --qr ... --setup-code-qr
# ...` hands the bundle to a waiting `mte-enrolee await-obf`. Then the same with the trust
# anchors replaced by their pins (a JPEG of the code this time), a bundle whose pin names another
# key (refused at step 12 with nothing spent), and the MTB1 text given to `mte-enrolee
# enrol-bundle`.
source "$(dirname "$0")/lib.sh"

START=$(date +%s)
QRTOOL="$MTE_BIN_DIR/mte-qr-tool"
init_mte
# As `mte init` writes it, the MEF presents its chain up to the CA, so that a pin of the CA (the
# bundle's only anchor) names a certificate the device sees.
assert_eq "$(grep -c 'BEGIN CERTIFICATE' "$DATA/pki/mef.crt")" 2 "pki/mef.crt holds the leaf and the CA"
PASSWORD="pw-$(openssl rand -hex 12)"
add_stakeholder quinn "$PASSWORD"
declare -A KPM
for d in q1 q2 q3; do
  KPM[$d]=$(openssl rand -hex 32)
  add_device "dev-$d" "kpm-$d@maker.it.test" "${KPM[$d]}" "CLAIM-$d-$(openssl rand -hex 4)"
done
start_server
BEARER=$(portal_login quinn "$PASSWORD")
[[ -n "$BEARER" ]] || fail "portal login"

snapshot() { { state_snapshot; db_query "SELECT id, enrolee_id, state, spent_at FROM tokens ORDER BY id;"; } >"$T/$1.snap"; }
same_snapshot() { cmp -s "$T/$1.snap" "$T/$2.snap" || { diff "$T/$1.snap" "$T/$2.snap" >&2; fail "$3: state changed"; }; }
zbar() { zbarimg --nodbus --quiet --raw "$1" 2>/dev/null | tr -d '\n'; }

# label NAME: a new setup code in $T/NAME.code and its label QR code in $T/NAME.png.
label() {
  (umask 077; "$ENROLEE" new-setup-code --qr-png "$T/$1.png" >"$T/$1.code")
  assert_match "$(cat "$T/$1.code")" '^[A-Z2-7]{25}[AEIMQUY4]$' "setup code $1"
  assert_eq "$(zbar "$T/$1.png")" "MTS1:$(cat "$T/$1.code")" "label $1 read by zbarimg"
}

# obf_qr OUT BUNDLE_PICTURE PORT LABEL_PICTURE: mte-obf from the two pictures; prints the status.
obf_qr() {
  local rc=0
  timeout 50 "$OBF" deliver --qr "$2" --setup-code-qr "$4" --device "127.0.0.1:$3" \
    --timeout-s 40 >"$1" 2>&1 || rc=$?
  echo "$rc"
}

# no_secrets FILE TOKEN CODE_FILE WHAT: neither the token nor the setup code appears in FILE.
no_secrets() {
  assert_file_lacks "$1" "$2" "$4: the token"
  assert_file_lacks "$1" "$(cat "$3")" "$4: the setup code"
}

# --- the trust anchors in the QR code ------------------------------------------------------------
E1=$(flowb_entry '{"label":"qr boiler"}')
flowb_bundle "$E1" "$T/b1.json"
TOKEN1=$(bundle_token "$T/b1.json")
"$QRTOOL" encode-bundle "$T/b1.json" "$T/b1.png" >"$T/b1.qr" || fail "encode-bundle"
assert_file_has "$T/b1.qr" "anchored payload" "a bundle with one P-256 anchor fits with the anchor"
PAYLOAD1=$(zbar "$T/b1.png")
assert_match "$PAYLOAD1" '^MTB1:[0-9A-Z $%*+./:-]+$' "bundle QR code read by zbarimg"
label l1
start_device d1 dev-q1 "$(cat "$T/l1.code")" kpm-q1@maker.it.test "${KPM[q1]}"
rc=$(obf_qr "$T/obf-1.out" "$T/b1.png" "$DEVICE_PORT" "$T/l1.png")
[[ "$rc" == 0 ]] || { cat "$T/obf-1.out" "$T/d1.log" >&2; fail "mte-obf --qr exited $rc"; }
assert_file_has "$T/obf-1.out" "from the QR code in $T/b1.png" "OBF output"
assert_file_has "$T/obf-1.out" "outcome: device dev-q1 enrolled with KeID " "OBF output"
reap_server "$DEVICE_PID"
assert_eq "$REAPED_STATUS" 0 "device exit status"
assert_eq "$(portal_enrolee_field "$E1" state)" enrolled "entry 1 state"
assert_eq "$(portal_enrolee_field "$E1" deviceId)" dev-q1 "entry 1 device"
assert_eq "$(token_state "$TOKEN1")" spent "token 1"
no_secrets "$T/obf-1.out" "$TOKEN1" "$T/l1.code" "OBF output"
no_secrets "$T/d1.log" "$TOKEN1" "$T/l1.code" "device output"
pass "anchored QR code and label QR code: dev-q1 enrolled"

# --- the pins in the QR code, photographed as a JPEG ----------------------------------------------
E2=$(flowb_entry '{"label":"qr heat pump"}')
flowb_bundle "$E2" "$T/b2.json"
TOKEN2=$(bundle_token "$T/b2.json")
"$QRTOOL" encode-bundle "$T/b2.json" "$T/b2.png" --pins >"$T/b2.qr" || fail "encode-bundle --pins"
assert_file_has "$T/b2.qr" "pinned payload" "forced pins"
pngtopnm "$T/b2.png" | ppmtoppm | pnmrotate -background=white 4 | cjpeg -quality 75 >"$T/b2.jpg"
label l2
start_device d2 dev-q2 "$(cat "$T/l2.code")" kpm-q2@maker.it.test "${KPM[q2]}"
rc=$(obf_qr "$T/obf-2.out" "$T/b2.jpg" "$DEVICE_PORT" "$T/l2.png")
[[ "$rc" == 0 ]] || { cat "$T/obf-2.out" "$T/d2.log" >&2; fail "mte-obf --qr (pins) exited $rc"; }
assert_file_has "$T/obf-2.out" "the MEF is trusted by pinned keys" "OBF output"
assert_file_has "$T/obf-2.out" "outcome: device dev-q2 enrolled" "OBF output"
reap_server "$DEVICE_PID"
assert_eq "$REAPED_STATUS" 0 "device exit status (pins)"
assert_file_has "$T/d2.log" "step 12: server-authenticated TLS to the MEF $MEF_FQDN" "device output"
assert_eq "$(portal_enrolee_field "$E2" state)" enrolled "entry 2 state"
assert_eq "$(token_state "$TOKEN2")" spent "token 2"
no_secrets "$T/obf-2.out" "$TOKEN2" "$T/l2.code" "OBF output (pins)"
pass "pinned QR code (JPEG): dev-q2 enrolled"

# --- a pin of another key: refused at step 12, nothing spent --------------------------------------
E3=$(flowb_entry '{"label":"qr cellar"}')
flowb_bundle "$E3" "$T/b3.json"
TOKEN3=$(bundle_token "$T/b3.json")
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=Unrelated CA" \
  -days 2 -keyout "$T/unrelated.key" -out "$T/unrelated.crt" 2>/dev/null
"$QRTOOL" encode-bundle "$T/b3.json" "$T/b3-wrong.png" --pins-from "$T/unrelated.crt" >/dev/null ||
  fail "encode-bundle --pins-from"
label l3
start_device d3 dev-q3 "$(cat "$T/l3.code")" kpm-q3@maker.it.test "${KPM[q3]}"
snapshot before-wrong-pin
rc=$(obf_qr "$T/obf-3.out" "$T/b3-wrong.png" "$DEVICE_PORT" "$T/l3.png")
assert_ne "$rc" 0 "mte-obf with a wrong pin"
assert_file_has "$T/obf-3.out" "could not enrol: step 12" "wrong pin: the failing step"
assert_file_has "$T/obf-3.out" "pinned key" "wrong pin: the reason"
reap_server "$DEVICE_PID"
assert_ne "$REAPED_STATUS" 0 "device exit status on a wrong pin"
snapshot after-wrong-pin
same_snapshot before-wrong-pin after-wrong-pin "wrong pin"
assert_eq "$(token_state "$TOKEN3")" active "token 3 after the wrong pin"
assert_eq "$(portal_enrolee_field "$E3" state)" pending "entry 3 after the wrong pin"
assert_file_lacks "$SERVE_LOG" "valid Enrolment-Token for enrolee $E3" "wrong pin: the token never reached the MEF"
pass "wrong pin refused at step 12: $(grep -o 'could not enrol: .*' "$T/obf-3.out" | cut -c1-160)"

# --- the MTB1 text itself as the device's bundle file ----------------------------------------------
"$QRTOOL" encode-bundle "$T/b3.json" "$T/b3.png" --pins >/dev/null || fail "encode-bundle --pins"
"$QRTOOL" decode "$T/b3.png" >"$T/b3.mtb1" || fail "mte-qr-tool decode"
assert_eq "$(cut -c1-5 "$T/b3.mtb1")" "MTB1:" "decoded payload"
rc=0
timeout 30 "$ENROLEE" enrol-bundle --bundle "$T/b3.mtb1" --kpm-id kpm-q3@maker.it.test \
  --kpm-hex "${KPM[q3]}" --state "$T/d3b.state" >"$T/d3b.log" 2>&1 || rc=$?
[[ "$rc" == 0 ]] || { cat "$T/d3b.log" >&2; fail "enrol-bundle with an MTB1 payload exited $rc"; }
assert_eq "$(portal_enrolee_field "$E3" state)" enrolled "entry 3 state"
assert_eq "$(token_state "$TOKEN3")" spent "token 3"
pass "the MTB1 text (pins) as the bundle of mte-enrolee enrol-bundle: dev-q3 enrolled"

# --- refusals at the OBF: pictures that are not what they should be ----------------------------
rc=0
"$OBF" deliver --qr "$T/l1.png" --setup-code-qr "$T/l1.png" --device 127.0.0.1:9 >"$T/obf-swap.out" 2>&1 || rc=$?
assert_ne "$rc" 0 "mte-obf with the label as the bundle"
assert_file_has "$T/obf-swap.out" "not a token bundle QR code" "label as the bundle"
no_secrets "$T/obf-swap.out" "$TOKEN1" "$T/l1.code" "label as the bundle"
rc=0
"$OBF" deliver --qr "$T/b1.png" --setup-code-qr "$T/b1.png" --device 127.0.0.1:9 >"$T/obf-swap2.out" 2>&1 || rc=$?
assert_ne "$rc" 0 "mte-obf with the bundle as the label"
assert_file_has "$T/obf-swap2.out" "not a setup code QR code" "bundle as the label"
assert_file_lacks "$T/obf-swap2.out" "$TOKEN1" "bundle as the label: the token"
rc=0
"$OBF" deliver --qr "$T/b1.png" --bundle "$T/b1.json" --setup-code-qr "$T/l1.png" \
  --device 127.0.0.1:9 >"$T/obf-both.out" 2>&1 || rc=$?
assert_ne "$rc" 0 "mte-obf with --qr and --bundle"
assert_file_has "$T/obf-both.out" "excludes" "--qr and --bundle"
pass "mte-obf refuses swapped pictures and --qr with --bundle"

echo "qr_obf_test: all passed in $(( $(date +%s) - START )) s"
