#!/usr/bin/env bash
# mte-enrolee says what a refusal means and keeps trying only what may pass (--retry-for): a wrong
# Kpm is reported in plain words and ends at once even with retries allowed; a MEF that is not up
# yet is tried again with backoff until it answers; the retries stop when --retry-for runs out; a
# MEF front that answers 503 with Retry-After is tried again no sooner than it asked (Flow B).
source "$(dirname "$0")/lib.sh"

init_mte
KPM=$(openssl rand -hex 32)
KPM_ID="kpm-retry@maker.it.test"
add_device dev-retry "$KPM_ID" "$KPM" CLAIM-RETRY-1
PASSWORD="pw-$(openssl rand -hex 8)"
add_stakeholder fay "$PASSWORD"
claim fay dev-retry CLAIM-RETRY-1
PORTS=($(free_ports 1))
set_config mefPort "${PORTS[0]}"
MEF="127.0.0.1:${PORTS[0]}"

# (1) nothing listens, and --retry-for runs out: a transient failure, reported after retries.
start=$(now_ms)
rc=0
"$ENROLEE" enrol --mef "$MEF" --mef-fqdn "$MEF_FQDN" --kpm-id "$KPM_ID" --kpm-hex "$KPM" \
  --state "$T/st1" --retry-for 4s >"$T/1.out" 2>&1 || rc=$?
elapsed=$(($(now_ms) - start))
assert_eq "$rc" 1 "no MEF: exit status"
assert_file_has "$T/1.out" "attempt 1 failed: nothing accepts connections at the MEF address" "no MEF: the retry"
assert_file_has "$T/1.out" "trying again in" "no MEF: the wait"
assert_file_lacks "$T/1.out" "will not help" "no MEF: not a refusal"
(( elapsed >= 1000 && elapsed <= 8000 )) || fail "no MEF: gave up after $elapsed ms with --retry-for 4s"
pass "(1) with no MEF, mte-enrolee retries for about --retry-for ($elapsed ms) and then fails"

# (2) the MEF comes up while the device retries: the device enrols.
"$ENROLEE" enrol --mef "$MEF" --mef-fqdn "$MEF_FQDN" --kpm-id "$KPM_ID" --kpm-hex "$KPM" \
  --state "$T/st2" --retry-for 60s >"$T/2.out" 2>&1 &
DEVICE=$!
sleep 2
start_server
wait "$DEVICE" || { cat "$T/2.out" >&2; fail "the device did not enrol once the MEF was up"; }
assert_file_has "$T/2.out" "trying again in" "late MEF: it retried"
assert_eq "$(enrolee_field dev-retry state)" enrolled "late MEF: the device is enrolled"
pass "(2) a device started before its MEF enrols when the MEF comes up"

# (3) a wrong Kpm: plain words, and no retry even though retries are allowed.
start=$(now_ms)
rc=0
"$ENROLEE" enrol --mef "$MEF" --mef-fqdn "$MEF_FQDN" --kpm-id "$KPM_ID" \
  --kpm-hex "$(openssl rand -hex 32)" --state "$T/st3" --retry-for 60s >"$T/3.out" 2>&1 || rc=$?
elapsed=$(($(now_ms) - start))
assert_eq "$rc" 1 "wrong Kpm: exit status"
assert_file_has "$T/3.out" "the MEF refused the pre-shared key: wrong Kpm or unknown KpmID" "wrong Kpm: the meaning"
assert_file_has "$T/3.out" "trying again unchanged will not help" "wrong Kpm: permanent"
assert_file_lacks "$T/3.out" "attempt 1 failed" "wrong Kpm: no retry"
(( elapsed < 10000 )) || fail "wrong Kpm: took $elapsed ms"
pass "(3) a wrong Kpm is reported as such and not retried"

# (4) a wrong MEF FQDN: plain words too.
rc=0
"$ENROLEE" enrol --mef "$MEF" --mef-fqdn "not-the-mef.it.test" --kpm-id "$KPM_ID" --kpm-hex "$KPM" \
  --state "$T/st4" --retry-for 60s >"$T/4.out" 2>&1 || rc=$?
assert_eq "$rc" 1 "wrong FQDN: exit status"
assert_file_has "$T/4.out" "the MEF does not answer to that name" "wrong FQDN: the meaning"
assert_file_lacks "$T/4.out" "attempt 1 failed" "wrong FQDN: no retry"
pass "(4) a wrong MEF FQDN is reported as such and not retried"

rc=0
"$ENROLEE" enrol --mef "$MEF" --mef-fqdn "$MEF_FQDN" --kpm-id "$KPM_ID" --kpm-hex "$KPM" \
  --state "$T/st5" --retry-for 5x >"$T/5.out" 2>&1 || rc=$?
assert_eq "$rc" 2 "a malformed --retry-for is a usage error"
assert_file_has "$T/5.out" "is not a duration" "malformed --retry-for: the reason"
pass "(5) a malformed --retry-for is refused"

# (6) Flow B through a front that answers the first connection 503 with Retry-After: 3 and relays
# the later ones to the MEF. The device waits at least the 3 s it was asked to (its own backoff
# would be 0.5-1 s), then enrols. The front's certificate names the MEF FQDN and is added to the
# bundle's trust anchors next to the MEF's.
KPM_B=$(openssl rand -hex 32)
add_device dev-busy kpm-busy@maker.it.test "$KPM_B" CLAIM-BUSY-1
BEARER=$(portal_login fay "$PASSWORD")
[[ -n "$BEARER" ]] || fail "portal login"
ENTRY=$(flowb_entry '{"label":"busy front"}')
flowb_bundle "$ENTRY" "$T/busy-bundle.json"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$MEF_FQDN" \
  -addext "subjectAltName=DNS:$MEF_FQDN" -keyout "$T/front.key" -out "$T/front.crt" 2>/dev/null
"$MTE_PYTHON" -S "$(dirname "$0")/busy_front.py" --mef-port "${PORTS[0]}" --cert "$T/front.crt" \
  --key "$T/front.key" --retry-after 3 --port-file "$T/front.port" --log "$T/front.conns" \
  --max-seconds 120 2>>"$T/front.log" &
FRONT=$!
SERVER_PIDS+=("$FRONT")
wait_port_file front "$FRONT" "the busy front" >/dev/null
bundle_edit "$T/busy-bundle.json" "$T/busy-front.json" "
d['mefUri'] = 'https://127.0.0.1:$(cat "$T/front.port")'
d['mefTrustAnchors'].append(open('$T/front.crt').read())"
rc=0
"$ENROLEE" enrol-bundle --bundle "$T/busy-front.json" --kpm-id kpm-busy@maker.it.test \
  --kpm-hex "$KPM_B" --state "$T/st6" --retry-for 30s >"$T/6.out" 2>&1 || rc=$?
kill "$FRONT" 2>/dev/null || true
wait "$FRONT" 2>/dev/null || true
assert_eq "$rc" 0 "busy front: exit status (output: $(tail -n 3 "$T/6.out"))"
assert_file_has "$T/6.out" "attempt 1 failed: the MEF could not serve the enrolment now" "busy front: the meaning"
assert_file_has "$T/6.out" "MEF answered HTTP 503" "busy front: the answer"
assert_file_has "$T/6.out" "trying again in 3.0 s (the MEF's Retry-After)" "busy front: the wait"
assert_eq "$(awk '{print $2}' "$T/front.conns" | paste -sd,)" "busy,relay" "busy front: connections"
gap=$(awk 'NR == 1 {a = $1} NR == 2 {printf "%d", ($1 - a) * 1000}' "$T/front.conns")
(( gap >= 3000 )) || fail "busy front: the second attempt came $gap ms after the first (Retry-After 3)"
assert_eq "$(enrolee_field dev-busy state)" enrolled "busy front: the device is enrolled"
pass "(6) 503 with Retry-After: 3 -> the device waited $gap ms, then enrolled through the MEF"
