#!/usr/bin/env bash
# The operator's inventory commands: `mte admin device list`, `stakeholder list`, `audit list`
# with filters and `audit export` (JSON Lines), each with --json where it applies. Identifiers
# only: no Kpm, sealed secret or password hash ever appears in what they print.
source "$(dirname "$0")/lib.sh"

init_mte
KPM=$(openssl rand -hex 32)
add_device inv-1 kpm-inv-1@maker.it.test "$KPM" CLAIM-INV-1
SHA=$(openssl rand -hex 32)
printf '[{"deviceId":"inv-2","certSha256":"%s","claimCode":"CLAIM-INV-2"}]' "$SHA" >"$T/m2.json"
"$MTE" admin --data "$DATA" device import "$T/m2.json" >/dev/null
add_stakeholder alice "pw-$(openssl rand -hex 8)"
add_stakeholder bob "pw-$(openssl rand -hex 8)"
claim alice inv-1 CLAIM-INV-1
"$MTE" admin --data "$DATA" enrolee revoke 1 >/dev/null

devices=$("$MTE" admin --data "$DATA" device list --json)
python3 - "$devices" "$SHA" <<'PY' || fail "device list --json"
import json, sys
d = json.loads(sys.argv[1])
assert [x["deviceId"] for x in d] == ["inv-1", "inv-2"], d
assert d[0]["credentials"] == [{"kind": "kpm", "id": "kpm-inv-1@maker.it.test"}], d[0]
assert d[0]["enroleeId"] == 1 and d[0]["state"] == "revoked", d[0]
assert d[1]["credentials"] == [{"kind": "cert-sha256", "id": sys.argv[2]}], d[1]
assert d[1]["enroleeId"] is None and d[1]["state"] == "unclaimed", d[1]
PY
table=$("$MTE" admin --data "$DATA" device list)
assert_match "$table" "inv-1 +1 +revoked" "device list: the claimed device"
assert_match "$table" "inv-2 +- +unclaimed" "device list: the unclaimed device"
pass "device list shows both devices, their credential identifiers and their enrolees"

people=$("$MTE" admin --data "$DATA" stakeholder list --json)
python3 - "$people" <<'PY' || fail "stakeholder list --json"
import json, sys
p = json.loads(sys.argv[1])
assert [(x["name"], x["enrolees"]) for x in p] == [("alice", 1), ("bob", 0)], p
assert all(set(x) == {"id", "name", "admin", "totp", "enrolees", "createdAt"} for x in p), p
assert [x["totp"] for x in p] == [False, False], p
assert [x["admin"] for x in p] == [False, False], p
PY
pass "stakeholder list shows both accounts and their enrolee counts"

for out in "$devices" "$table" "$people" "$("$MTE" admin --data "$DATA" audit export)"; do
  [[ "$out" != *"$KPM"* && "$out" != *'$argon2id$'* && "$out" != *CLAIM-INV* ]] ||
    fail "a secret, a hash or a claim code appears in an inventory listing"
done
pass "no Kpm, hash or claim code in any listing"

revokes=$("$MTE" admin --data "$DATA" audit list --action enrolee.revoke)
assert_eq "$(wc -l <<<"$revokes")" 1 "audit list --action enrolee.revoke"
assert_match "$revokes" "admin +enrolee.revoke +enrolee 1 device inv-1" "the revocation entry"
assert_eq "$("$MTE" admin --data "$DATA" audit list --actor admin --action stakeholder.add | wc -l)" 2 \
  "audit list --actor admin --action stakeholder.add"
assert_eq "$("$MTE" admin --data "$DATA" audit list --subject m2.json | wc -l)" 1 "audit list --subject"
assert_eq "$("$MTE" admin --data "$DATA" audit list --since "$(( $(date +%s) + 3600 ))" | wc -c)" 0 \
  "audit list --since the future"
assert_eq "$("$MTE" admin --data "$DATA" audit list --until 2000-01-01T00:00:00Z | wc -c)" 0 \
  "audit list --until the past"
rc=0; "$MTE" admin --data "$DATA" audit list --since tomorrow 2>"$T/bad.err" || rc=$?
assert_ne "$rc" 0 "audit list --since tomorrow"
assert_file_has "$T/bad.err" "RFC 3339" "a bad --since is explained"
"$MTE" admin --data "$DATA" audit export >"$T/audit.jsonl"
python3 - "$T/audit.jsonl" <<'PY' || fail "audit export is not JSON Lines in time order"
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
assert len(rows) >= 6, rows
assert [r["id"] for r in rows] == sorted(r["id"] for r in rows), rows
assert all(set(r) == {"id", "at", "actor", "action", "subject", "detail"} for r in rows), rows
assert [r["at"] for r in rows] == sorted(r["at"] for r in rows), rows
PY
pass "audit list filters by action, actor, subject and time; audit export is JSON Lines in time order"

# Repair: an account with enrolees stays; a revoked entry can be deleted, and its device claimed
# again; passwords can be set; an account without enrolees can be removed.
rc=0; "$MTE" admin --data "$DATA" stakeholder remove alice 2>"$T/rm.err" || rc=$?
assert_ne "$rc" 0 "removing alice while she has an enrolee"
assert_file_has "$T/rm.err" "has 1 enrolee(s); revoke and delete them first" "the refusal"
assert_match "$("$MTE" admin --data "$DATA" enrolee delete 1)" "deleted enrolee 1" "enrolee delete"
assert_match "$("$MTE" admin --data "$DATA" device list)" "inv-1 +- +unclaimed" "inv-1 unclaimed again"
claim alice inv-1 CLAIM-INV-1
rc=0; "$MTE" admin --data "$DATA" enrolee delete 2 2>"$T/del.err" || rc=$?
assert_eq "$rc" 0 "a pending entry can be deleted"
printf 'a new long passphrase\n' | "$MTE" admin --data "$DATA" stakeholder passwd alice --password-stdin >/dev/null
assert_match "$("$MTE" admin --data "$DATA" stakeholder remove bob)" "removed stakeholder bob" "remove bob"
assert_eq "$("$MTE" admin --data "$DATA" stakeholder list --json | json_get "[0]['name']")" alice \
  "alice is the only account left"
for action in enrolee.delete stakeholder.passwd stakeholder.remove; do
  [[ -n "$("$MTE" admin --data "$DATA" audit list --action "$action")" ]] || fail "no $action in the audit"
done
pass "enrolee delete, stakeholder passwd and stakeholder remove work and are audited"
