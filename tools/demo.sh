#!/usr/bin/env bash
# The OpenMTE demo (what `make demo` runs): starts the MTE (portal, MEF, MAF) on loopback with an
# embedded SQLite store and a generated development PKI, then enrols a simulated device through
# the seed's clause 8.y.3 (enrolment without an OBF, PPSK-RSPF), narrating each step.
# Usage: tools/demo.sh BIN_DIR
set -euo pipefail

bin=$(cd "${1:?usage: demo.sh BIN_DIR}" && pwd)
work=$(mktemp -d /tmp/openmte-demo.XXXXXX)
data="$work/mte"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
# Narrates a command with any Kpm masked, then runs it.
run() {
  local shown="$*"
  [[ -n "${kpm:-}" ]] && shown=${shown//$kpm/<Kpm>}
  printf '  $ %s\n' "$shown"
  "$@" 2>&1 | sed 's/^/    /'
  return "${PIPESTATUS[0]}"
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }

say "Setting up an M2M Trust Enabler in $data"
run "$bin/mte" init --data "$data" --mef-fqdn mef.demo.test --maf-fqdn maf.demo.test \
  --mef-port 0 --maf-port 0 --maf-delivery-port 0 --portal-port 0

say "The device maker's manifest: one device with a pre-provisioned Kpm/KpmID and a claim code"
kpm=$(openssl rand -hex 32)
claim="CLAIM-$(openssl rand -hex 4 | tr a-f A-F)"
cat >"$work/manifest.json" <<JSON
[{"deviceId": "sensor-0001", "kpmId": "kpm-0001@maker.demo.test", "kpmHex": "$kpm", "claimCode": "$claim"}]
JSON
echo "    deviceId sensor-0001, KpmID kpm-0001@maker.demo.test, claim code printed on the label"
run "$bin/mte" admin --data "$data" device import "$work/manifest.json"

say "The enrolling stakeholder already has an account with the MTE (seed 8.y.2)"
password="demo-$(openssl rand -hex 8)"
printf '%s\n' "$password" | run "$bin/mte" admin --data "$data" stakeholder add alice --password-stdin

say "Starting the MTE: mte serve (portal, MEF, MAF) on 127.0.0.1"
"$bin/mte" serve --data "$data" >"$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do [[ -f "$data/serve.json" ]] && break; sleep 0.1; done
[[ -f "$data/serve.json" ]] || { cat "$work/serve.log"; echo "server did not start"; exit 1; }
ports=$(cat "$data/serve.json")
portal=$(json "['portalPort']" <<<"$ports"); mef=$(json "['mefPort']" <<<"$ports")
maf=$(json "['mafPort']" <<<"$ports")
echo "    portal https://127.0.0.1:$portal  MEF 127.0.0.1:$mef  MAF 127.0.0.1:$maf"
ca="$data/pki/ca.crt"
api="https://localhost:$portal/api/v1"
curl_() { curl -sS --cacert "$ca" --resolve "localhost:$portal:127.0.0.1" "$@"; }

say "8.y.3 steps 1-2: the stakeholder's browser opens server-authenticated TLS to the portal and logs in"
token=$(curl_ -H 'Content-Type: application/json' \
  -d "{\"name\":\"alice\",\"password\":\"$password\"}" "$api/login" | json "['token']")
echo "    logged in as alice (bearer token received)"

say "8.y.3 steps 3-4: proof of control (device ID + claim code) and adding the enrolee with a label"
enrolee=$(curl_ -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d "{\"deviceId\":\"sensor-0001\",\"claimCode\":\"$claim\",\"label\":\"Greenhouse sensor\"}" \
  "$api/enrolees")
id=$(json "['id']" <<<"$enrolee")
echo "    enrolee $id added: $(json "['label']" <<<"$enrolee"), state $(json "['state']" <<<"$enrolee")"

say "8.y.3 steps 5-6: the device decides to enrol and runs the PPSK-RSPF with the MEF"
echo "    (TLS-PSK with psk_identity = KpmID, SNI = MEF FQDN; Enrolment Exchange POST /enrolment;"
echo "     Ke and KeID from the exporter EXPORTER-oneM2M-Bootstrap)"
run "$bin/mte-enrolee" enrol --mef "127.0.0.1:$mef" --mef-fqdn mef.demo.test --ca "$ca" \
  --kpm-id kpm-0001@maker.demo.test --kpm-hex "$kpm" --state "$work/device"

say "8.y.3 step 7: the MEF recorded the credential ID and forwards Km to the MAF (durable outbox)"
for _ in $(seq 100); do
  view=$(curl_ -H "Authorization: Bearer $token" "$api/enrolees/$id")
  [[ $(json "['mafDelivery']" <<<"$view") == delivered ]] && break
  sleep 0.1
done
echo "    portal view: state $(json "['state']" <<<"$view"), KeID $(json "['keId']" <<<"$view")"
echo "                 credential IDs $(json "['credentialIds']" <<<"$view"), MAF delivery $(json "['mafDelivery']" <<<"$view")"

say "Using the result: the MAF handshake with KmID/Km (TLS-PSK)"
run "$bin/mte-enrolee" maf-check --maf "127.0.0.1:$maf" --maf-fqdn maf.demo.test --state "$work/device"

say "The operator's view"
run "$bin/mte" admin --data "$data" enrolee list

say "Demo complete: device sensor-0001 is enrolled and its master credential works at the MAF."
