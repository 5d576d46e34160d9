#!/usr/bin/env bash
# Enrolment-Token rules (issue 3) with the real `mte serve` and `mte-enrolee enrol-bundle`:
#   - single use under concurrency: 32 devices present one token at once -> exactly one enrolment;
#   - revoked (a second token was issued), malformed and unknown tokens -> clear refusal, no change;
#   - retry-safe: the MEF dies after the token was accepted and before the commit -> the same
#     device enrols with the same token afterwards; the MEF dies after the commit (the answer is
#     lost) -> `mte-enrolee --retry-for` enrols the same device again with the spent token, a new
#     generation; another device, or the spent token once a newer one exists, is refused;
#   - failed token attempts are limited per source address: after 10, a valid token is refused;
#   - lifetime (`mte init --token-lifetime 2`): an expired token is refused, nothing recorded;
#   - stored only as SHA-256: tokens.token_hash is 32 octets = sha256(token text) by openssl, and
#     the token (text, raw octets, hex) appears nowhere in the data directory or the server log.
source "$(dirname "$0")/lib.sh"

START=$(date +%s)
init_mte
# A fixed MEF port: bundles name it, and the server restarts below.
set_config mefPort "$(free_ports 1)"
PASSWORD="pw-$(openssl rand -hex 12)"
add_stakeholder erin "$PASSWORD"
declare -A KPM
# t1..t4, and r1..r32 for the race: 32 devices, each with its own Kpm, for one token.
for d in t1 t2 t3 t4 $(seq -f 'r%g' 32); do
  KPM[$d]=$(openssl rand -hex 32)
  add_device "dev-$d" "kpm-$d@maker.it.test" "${KPM[$d]}" "CLAIM-$d-$(openssl rand -hex 4)"
done
start_server
BEARER=$(portal_login erin "$PASSWORD")
[[ -n "$BEARER" ]] || fail "portal login"
ISSUED=()  # every token text the portal issued

issue() {  # issue ENTRY_ID FILE: a bundle; records its token
  flowb_bundle "$1" "$2"
  ISSUED+=("$(bundle_token "$2")")
}

# enrol NAME BUNDLE DEVICE: one `mte-enrolee enrol-bundle`; output in $T/NAME.out; prints the
# exit status.
enrol() {
  local rc=0
  timeout 40 "$ENROLEE" enrol-bundle --bundle "$2" --kpm-id "kpm-$3@maker.it.test" \
    --kpm-hex "${KPM[$3]}" --state "$T/$1.state" --timeout-ms 30000 >"$T/$1.out" 2>&1 || rc=$?
  echo "$rc"
}

# expect_refused NAME BUNDLE DEVICE TEXT WHAT: enrol-bundle exits non-zero naming TEXT, and the
# enrolee database, audit log, outbox, MAF key store and token states are unchanged.
expect_refused() {
  local before after rc
  before=$({ state_snapshot; db_query "SELECT id, state, spent_at FROM tokens ORDER BY id;"; })
  rc=$(enrol "$1" "$2" "$3")
  assert_ne "$rc" 0 "$5: exit status"
  assert_file_has "$T/$1.out" "enrolment failed" "$5"
  assert_file_has "$T/$1.out" "$4" "$5"
  after=$({ state_snapshot; db_query "SELECT id, state, spent_at FROM tokens ORDER BY id;"; })
  [[ "$before" == "$after" ]] || { diff <(echo "$before") <(echo "$after") >&2; fail "$5: state changed"; }
}

restart_server() { stop_servers; start_server; }

# --- single use under concurrency ----------------------------------------------------------------
E_RACE=$(flowb_entry '{"label":"race","deviceInfo":"32 clients"}')
issue "$E_RACE" "$T/race.json"
TOKEN_RACE=${ISSUED[-1]}
RACE_PIDS=()
for i in $(seq 32); do
  (
    while [[ ! -e "$T/go" ]]; do sleep 0.005; done
    enrol "race-$i" "$T/race.json" "r$i" >"$T/race-$i.rc"
  ) &
  RACE_PIDS+=($!)
done
touch "$T/go"
for pid in "${RACE_PIDS[@]}"; do wait "$pid"; done
winners=0
for i in $(seq 32); do
  rc=$(cat "$T/race-$i.rc")
  if [[ "$rc" == 0 ]]; then
    winners=$((winners + 1))
    WINNER=$i
  else
    assert_file_has "$T/race-$i.out" "enrolment failed" "race client $i"
    grep -qE 'already been used|has been used or has expired|for another device|concurrent enrolment|too many failed' \
      "$T/race-$i.out" || { cat "$T/race-$i.out" >&2; fail "race client $i: no clear refusal"; }
  fi
done
assert_eq "$winners" 1 "clients that enrolled with one token"
echo "  refusals of the 31 others:"
sed -nE 's/.*failed: (.*)$/\1/p' "$T"/race-*.out | sed -E 's/^.*(RSC [0-9]+: )/\1/' | sort | uniq -c |
  sed 's/^/    /'
WINNER_KEID=$(json_get "['keId']" <"$T/race-$WINNER.state/enrolment.json")
assert_eq "$(audit_list | grep -c 'enrolment.commit')" 1 "audit: enrolment.commit entries"
assert_eq "$(audit_list | grep -c 'enrolment.reenrol' || true)" 0 "audit: enrolment.reenrol entries"
assert_eq "$(db_query "SELECT state, generation, device_id, ke_id FROM enrolees WHERE id = $E_RACE;")" \
  "enrolled|1|dev-r$WINNER|$WINNER_KEID" "the raced entry"
assert_eq "$(db_query "SELECT count(*) FROM outbox WHERE enrolee_id = $E_RACE;")" 1 "outbox items"
assert_eq "$(token_state "$TOKEN_RACE")" spent "the raced token"
pass "32 concurrent devices, one token: exactly one enrolment (generation 1), 31 refusals"

# The refusals above count as failed token attempts from 127.0.0.1 (kept in the store, like the
# portal's): start with none.
"$MTE" admin --data "$DATA" lockout clear --address 127.0.0.1 >/dev/null

# --- revoked ---------------------------------------------------------------------------------------
E_REV=$(flowb_entry '{"label":"revoked"}')
issue "$E_REV" "$T/rev1.json"
issue "$E_REV" "$T/rev2.json"
TOKEN_REV1=${ISSUED[-2]} TOKEN_REV2=${ISSUED[-1]}
assert_eq "$(token_state "$TOKEN_REV1")" revoked "first token after the second was issued"
expect_refused rev1 "$T/rev1.json" t2 "has been revoked" "revoked token"
assert_eq "$(db_query "SELECT state FROM enrolees WHERE id = $E_REV;")" pending "revoked: entry"
assert_eq "$(enrol rev2 "$T/rev2.json" t2)" 0 "the second token enrols"
assert_eq "$(db_query "SELECT state, device_id FROM enrolees WHERE id = $E_REV;")" "enrolled|dev-t2" "revoked: entry after the second token"
assert_eq "$(token_state "$TOKEN_REV1")" revoked "first token at the end"
assert_eq "$(token_state "$TOKEN_REV2")" spent "second token at the end"
pass "revoked token refused; the new one works"

# --- malformed and unknown -----------------------------------------------------------------------
E_RETRY=$(flowb_entry '{"label":"retry"}')
issue "$E_RETRY" "$T/retry.json"
TOKEN_RETRY=${ISSUED[-1]}
bundle_edit "$T/retry.json" "$T/malformed.json" "d['token'] = 'not-a-token'"
bundle_edit "$T/retry.json" "$T/unknown.json" \
  "import secrets; d['token'] = secrets.token_urlsafe(32)"
expect_refused malformed "$T/malformed.json" t3 "malformed Enrolment-Token" "malformed token"
expect_refused unknown "$T/unknown.json" t3 "unknown Enrolment-Token" "unknown token"
assert_eq "$(token_state "$TOKEN_RETRY")" active "the entry's real token"
pass "malformed and unknown tokens refused, nothing changed"

# --- retry-safe: the MEF dies after accepting the token, before the commit ------------------------
stop_servers
MTE_FAILPOINT=mef-before-commit start_server
CRASHING=${SERVER_PIDS[-1]}
BEFORE=$(state_snapshot)
rc=$(enrol retry-crash "$T/retry.json" t3)
assert_ne "$rc" 0 "enrolment against a MEF that dies before the commit"
reap_server "$CRASHING"
assert_eq "$REAPED_STATUS" 86 "the MEF stopped at the failpoint"
assert_file_has "$SERVE_LOG" "valid Enrolment-Token for enrolee $E_RETRY" "the token was accepted"
[[ "$BEFORE" == "$(state_snapshot)" ]] || fail "a crash before the commit changed the state"
assert_eq "$(token_state "$TOKEN_RETRY")" active "token after the crash"
start_server
assert_eq "$(enrol retry-ok "$T/retry.json" t3)" 0 "the same device retries with the same token"
assert_eq "$(db_query "SELECT state, generation, device_id FROM enrolees WHERE id = $E_RETRY;")" \
  "enrolled|1|dev-t3" "entry after the retry"
assert_eq "$(token_state "$TOKEN_RETRY")" spent "token after the retry"
pass "retry-safe: a crash before the commit leaves the token usable; once committed it is spent"

# --- retry-safe: the answer is lost after the commit -----------------------------------------------
# The MEF dies right after committing (generation 2): the device holds a spent token and no
# credential. `mte-enrolee --retry-for` treats the dropped connection as transient and tries again
# until the MEF is back; the same device, with the same spent token, then enrols once more
# (generation 3, which supersedes the one whose answer was lost).
stop_servers
MTE_FAILPOINT=mef-after-commit start_server
CRASHING=${SERVER_PIDS[-1]}
(
  rc=0
  timeout 120 "$ENROLEE" enrol-bundle --bundle "$T/retry.json" --kpm-id kpm-t3@maker.it.test \
    --kpm-hex "${KPM[t3]}" --state "$T/lost.state" --timeout-ms 30000 --retry-for 90s \
    >"$T/lost.out" 2>&1 || rc=$?
  echo "$rc" >"$T/lost.rc"
) &
LOST_PID=$!
reap_server "$CRASHING"
assert_eq "$REAPED_STATUS" 86 "the MEF stopped right after the commit"
assert_eq "$(db_query "SELECT state, generation, device_id FROM enrolees WHERE id = $E_RETRY;")" \
  "enrolled|2|dev-t3" "entry after the commit whose answer was lost"
LOST_KEID=$(db_query "SELECT ke_id FROM enrolees WHERE id = $E_RETRY;")
start_server
wait "$LOST_PID"
assert_eq "$(cat "$T/lost.rc")" 0 "the device retried with its spent token (output: $(tail -n 3 "$T/lost.out"))"
NEW_KEID=$(json_get "['keId']" <"$T/lost.state/enrolment.json")
assert_eq "$(db_query "SELECT state, generation, device_id, ke_id FROM enrolees WHERE id = $E_RETRY;")" \
  "enrolled|3|dev-t3|$NEW_KEID" "entry after the retry with the spent token"
assert_ne "$NEW_KEID" "$LOST_KEID" "the new KeID"
assert_match "$(audit_list | grep 'enrolment.reenrol' | grep "enrolee $E_RETRY ")" \
  "generation 3, flow B, token [0-9]+ presented again" "audit of the re-enrolment"
wait_delivered dev-t3 "$NEW_KEID"
assert_eq "$(db_query "SELECT group_concat(km_id) FROM maf_credentials WHERE enrolee_id = $E_RETRY;")" \
  "$NEW_KEID" "the MAF holds only the new Km (the one whose answer was lost is retired)"
assert_eq "$(token_state "$TOKEN_RETRY")" spent "token after the second enrolment"
pass "retry-safe: the answer lost after the commit; the same device enrols again with the spent token"

# Nobody else may use the spent token, and not once a newer token was issued for its entry.
expect_refused retry-other "$T/retry.json" t4 "already been used by another device" \
  "the spent token presented by another device"
issue "$E_RETRY" "$T/retry-new.json"
expect_refused retry-superseded "$T/retry.json" t3 "a newer one has been issued" \
  "the spent token after a newer one was issued"
pass "a spent token: refused for another device, and for its own once a newer token exists"

# --- per-address limit on failed token attempts ------------------------------------------------
"$MTE" admin --data "$DATA" lockout clear --address 127.0.0.1 >/dev/null
E_LIMIT=$(flowb_entry '{"label":"limit"}')
issue "$E_LIMIT" "$T/limit.json"
TOKEN_LIMIT=${ISSUED[-1]}
for i in $(seq 10); do
  bundle_edit "$T/limit.json" "$T/guess-$i.json" \
    "import secrets; d['token'] = secrets.token_urlsafe(32)"
  expect_refused "guess-$i" "$T/guess-$i.json" t4 "unknown Enrolment-Token" "guessed token $i"
done
expect_refused limited "$T/limit.json" t4 "too many failed" "valid token after 10 failures"
assert_eq "$(token_state "$TOKEN_LIMIT")" active "token refused by the limiter"
# The lock is in the store: it survives a restart of the MEF, shows in `lockout list`, and the
# operator's `lockout clear --address` ends it.
restart_server
expect_refused limited-after-restart "$T/limit.json" t4 "too many failed" \
  "valid token after a restart of the MEF"
assert_match "$("$MTE" admin --data "$DATA" lockout list)" "mef-address:127.0.0.1 +10 +1 " \
  "lockout list shows the MEF's address key"
"$MTE" admin --data "$DATA" lockout clear --address 127.0.0.1 >/dev/null
assert_eq "$(enrol limit-ok "$T/limit.json" t4)" 0 "the valid token after the lockout is cleared"
assert_eq "$(token_state "$TOKEN_LIMIT")" spent "token after the enrolment"
pass "after 10 failed attempts from 127.0.0.1 a valid token is refused (too many failed), also after a restart, until the operator clears the address"


# --- lifetime: a second MTE whose tokens live 2 seconds --------------------------------------------
stop_servers
FIRST_DATA=$DATA
DATA="$T/mte-short"
init_mte --token-lifetime 2
add_stakeholder erin "$PASSWORD"
KPM[x1]=$(openssl rand -hex 32)
add_device dev-x1 kpm-x1@maker.it.test "${KPM[x1]}" "CLAIM-x1-$(openssl rand -hex 4)"
start_server
BEARER=$(portal_login erin "$PASSWORD")
E_EXP=$(flowb_entry '{"label":"short-lived"}')
issued_at=$(date +%s)
issue "$E_EXP" "$T/expiring.json"
TOKEN_EXP=${ISSUED[-1]}
EXPIRES=$(python3 -c '
import datetime, json, sys
t = json.load(open(sys.argv[1]))["expiresAt"].replace("Z", "+00:00")
print(int(datetime.datetime.fromisoformat(t).timestamp()))' "$T/expiring.json")
(( EXPIRES - issued_at >= 1 && EXPIRES - issued_at <= 3 )) ||
  fail "token lifetime: expiresAt is $((EXPIRES - issued_at)) s after issue, expected 2"
wait_for "(( \$(date +%s) >= $EXPIRES ))" 60 || fail "the clock did not pass the token's expiry"
expect_refused expired "$T/expiring.json" x1 "has expired" "expired token"
assert_eq "$(db_query "SELECT state, device_id FROM enrolees WHERE id = $E_EXP;")" "pending|" "expired: entry"
assert_eq "$(audit_list | grep -c 'enrolment.commit' || true)" 0 "expired: audit"
pass "token lifetime 2 s: the expired token is refused, nothing recorded"
stop_servers

# --- stored only as a SHA-256 hash -----------------------------------------------------------------
check_hashes() {  # check_hashes DATA_DIR TOKEN...: each token's row holds sha256(text), 32 octets
  local data=$1 token hash
  shift
  for token in "$@"; do
    hash=$(printf %s "$token" | openssl dgst -sha256 | awk '{print toupper($NF)}')
    assert_eq "$(sqlite3 -readonly -batch -noheader "$data/mte.db" \
      "SELECT length(token_hash) FROM tokens WHERE hex(token_hash) = '$hash';")" 32 \
      "tokens.token_hash of a token in $(basename "$data")"
  done
  assert_eq "$(sqlite3 -readonly -batch -noheader "$data/mte.db" "SELECT count(*) FROM tokens;")" \
    "$#" "number of stored tokens in $(basename "$data")"
  assert_eq "$(sqlite3 -readonly -batch -noheader "$data/mte.db" \
    "SELECT count(*) FROM tokens WHERE typeof(token_hash) <> 'blob' OR length(token_hash) <> 32;")" \
    0 "every token_hash is a 32-octet blob"
}
check_hashes "$FIRST_DATA" "${ISSUED[@]:0:${#ISSUED[@]}-1}"
check_hashes "$DATA" "$TOKEN_EXP"
printf '%s\n' "${ISSUED[@]}" >"$T/issued.txt"
python3 - "$T/issued.txt" "$FIRST_DATA" "$DATA" "$SERVE_LOG" <<'EOF' || fail "token material found at rest or in the log"
import base64, os, sys
tokens = [t for t in open(sys.argv[1]).read().split() if t]
paths = []
for root in sys.argv[2:]:
    if os.path.isfile(root):
        paths.append(root)
    for d, _, files in os.walk(root):
        paths += [os.path.join(d, f) for f in files]
found = False
for token in tokens:
    raw = base64.urlsafe_b64decode(token + "=")
    needles = {"text": token.encode(), "raw": raw, "hex": raw.hex().encode(),
               "HEX": raw.hex().upper().encode()}
    for path in paths:
        data = open(path, "rb").read()
        for kind, needle in needles.items():
            if needle in data:
                print(f"token ({kind}) found in {path}", file=sys.stderr)
                found = True
sys.exit(1 if found else 0)
EOF
pass "${#ISSUED[@]} tokens stored only as SHA-256; no token text, octets or hex in DATA or serve.log"

echo "token_rules_test: all passed in $(( $(date +%s) - START )) s"
