#!/usr/bin/env bash
# `mte init`: refuses an existing data directory without --force and leaves it untouched; with
# --force it replaces the directory as a whole (new key-encryption key, PKI, empty store), leaves
# no staging directory behind, and the new directory has the documented modes.
source "$(dirname "$0")/lib.sh"

init_mte
kek_before=$(sha256sum "$DATA/kek" | cut -d' ' -f1)
ca_before=$(sha256sum "$DATA/pki/ca.crt" | cut -d' ' -f1)
add_stakeholder alice "pw-$(openssl rand -hex 8)"
pass "initialised; one stakeholder added"

rc=0
"$MTE" init --data "$DATA" --mef-fqdn other.it.test --maf-fqdn "$MAF_FQDN" >"$T/again.out" 2>&1 || rc=$?
assert_ne "$rc" 0 "init over an existing directory"
assert_file_has "$T/again.out" "use --force" "init over an existing directory"
assert_eq "$(sha256sum "$DATA/kek" | cut -d' ' -f1)" "$kek_before" "kek after a refused init"
assert_eq "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["mefFqdn"])' "$DATA/mte.json")" \
  "$MEF_FQDN" "mte.json after a refused init"
assert_eq "$(db_query 'SELECT count(*) FROM stakeholders')" 1 "store after a refused init"
pass "without --force: refused, nothing changed"

"$MTE" init --data "$DATA" --mef-fqdn other.it.test --maf-fqdn "$MAF_FQDN" --force >/dev/null
assert_eq "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["mefFqdn"])' "$DATA/mte.json")" \
  other.it.test "mte.json after --force"
assert_ne "$(sha256sum "$DATA/kek" | cut -d' ' -f1)" "$kek_before" "kek after --force"
assert_ne "$(sha256sum "$DATA/pki/ca.crt" | cut -d' ' -f1)" "$ca_before" "CA after --force"
assert_eq "$(db_query 'SELECT count(*) FROM stakeholders')" 0 "store after --force"
assert_eq "$(stat -c %a "$DATA")" 700 "data directory mode"
assert_eq "$(stat -c %a "$DATA/kek")" 600 "kek mode"
leftovers=$(find "$T" -maxdepth 1 -name 'mte.init-*' | wc -l)
assert_eq "$leftovers" 0 "staging directories left behind"
pass "with --force: replaced as a whole (new kek, CA and store), modes 0700/0600, nothing left behind"
echo "init_test: all passed"
