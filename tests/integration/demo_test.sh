#!/usr/bin/env bash
# `mte demo` (what `make demo` runs): both flows through the real binaries on loopback. It must
# exit 0, show the portal's KeID for both devices (8.y.3 and 8.y.4), the refused revoked
# certificate and an enrolee's revocation with the MAF refusing its Km, report no failure, and
# never print a secret placeholder's value (it masks Kpm, password and tokens itself).
set -euo pipefail
: "${MTE_BIN_DIR:?MTE_BIN_DIR must point at the built binaries}"
out=$(mktemp /tmp/mte-demo-test.XXXXXX)
trap 'rm -f "$out"' EXIT

fail() { echo "FAIL: $*" >&2; sed 's/^/  | /' "$out" >&2; exit 1; }

rc=0
NO_COLOR=1 timeout 120 "$MTE_BIN_DIR/mte" demo >"$out" 2>&1 || rc=$?
[[ $rc == 0 ]] || fail "mte demo exited with status $rc"

keid='KeID [0-9A-F]{32}@mef\.demo\.test'
grep -qE "portal view: enrolee [0-9]+ \(device sensor-0001,.* $keid" "$out" ||
  fail "no portal KeID line for sensor-0001 (Flow A)"
grep -qE "portal view: enrolee [0-9]+ \(device sensor-0002,.* $keid" "$out" ||
  fail "no portal KeID line for sensor-0002 (Flow B)"
grep -qE "enrolled with $keid" "$out" || fail "mte-obf did not report the device's KeID"
for device in sensor-0003 sensor-0004; do
  grep -qE "portal view: enrolee [0-9]+ \(device $device,.* $keid" "$out" ||
    fail "no portal KeID line for $device (certificate RSPF)"
done
[[ $(grep -cE "credential IDs .*, RSPF CERT, MAF delivery delivered" "$out") == 2 ]] ||
  fail "expected two certificate-RSPF enrolments in the portal view"
[[ $(grep -cE "MAF accepted KmID" "$out") == 4 ]] || fail "expected four MAF handshakes"
grep -qE "sensor-0005 .* pending" "$out" || fail "the revoked sensor-0005 is not shown pending"
grep -q "RSC 4103: device certificate revoked (CRL" "$out" ||
  fail "the revoked device's refusal is not shown"
grep -q "step 12" "$out" || fail "the device's progress (steps 12-17) is not shown"
# The revocation of sensor-0002: the portal answers, the MAF retires the Km, the handshake fails.
grep -qE "POST https://localhost:[0-9]+/api/v1/enrolees/[0-9]+/revoke" "$out" ||
  fail "the revocation request is not shown"
grep -qE "enrolee [0-9]+ is revoked" "$out" || fail "the revoked state is not shown"
grep -A3 "MAF handshake with its old KmID/Km is refused" "$out" | grep -q "MAF handshake failed" ||
  fail "the revoked Km's refused MAF handshake is not shown"
grep -qE "sensor-0002 .* revoked +delivered" "$out" || fail "the operator view does not show sensor-0002 revoked"
! grep -q "FAIL" "$out" || fail "the demo output contains FAIL"
# Secrets are shown only as placeholders.
grep -q "<Kpm1>" "$out" || fail "the Flow A command line is not shown with <Kpm1>"
! grep -qiE "kpm-hex [0-9a-f]{16}" "$out" || fail "a Kpm appears in the output"
! grep -qE "\"password\":\"demo-" "$out" || fail "the password appears in the output"
# The temporary directory is removed (no --keep).
dir=$(sed -n 's/^ *DEMO=\([^ ]*\).*/\1/p' "$out" | head -n 1)
[[ -n "$dir" ]] || fail "no DEMO= line"
[[ ! -e "$dir" ]] || fail "$dir was not removed"
echo "ok: mte demo ran both flows with both RSPFs, refused the revoked certificate and revoked an enrolee"
