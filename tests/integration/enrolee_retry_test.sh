#!/usr/bin/env bash
# mte-enrolee says what a refusal means and keeps trying only what may pass (--retry-for): a wrong
# Kpm is reported in plain words and ends at once even with retries allowed; a MEF that is not up
# yet is tried again with backoff until it answers; the retries stop when --retry-for runs out.
source "$(dirname "$0")/lib.sh"

init_mte
KPM=$(openssl rand -hex 32)
KPM_ID="kpm-retry@maker.it.test"
add_device dev-retry "$KPM_ID" "$KPM" CLAIM-RETRY-1
add_stakeholder fay "pw-$(openssl rand -hex 8)"
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
