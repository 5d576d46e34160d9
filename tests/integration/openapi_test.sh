#!/usr/bin/env bash
# GET /api/v1/openapi.json: the portal's OpenAPI 3.1 document (src/portal/openapi.json) is valid
# (@apidevtools/swagger-parser), served byte for byte, and agrees with the routes and answers of
# a real `mte serve` (tests/browser/openapi_check.mjs, responses validated with Ajv).
source "$(dirname "$0")/lib.sh"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
NODE_DIR="$ROOT/tests/browser"
[[ -f "$NODE_DIR/node_modules/@apidevtools/swagger-parser/package.json" ]] ||
  fail "swagger-parser is missing (tools/install-deps.sh --test runs npm ci in tests/browser)"
command -v oathtool >/dev/null || fail "oathtool is missing (tools/install-deps.sh --test)"

init_mte
CLAIM="CLAIM-$(openssl rand -hex 6)"
add_device urn:dev:acme:lamp-7 kpm-lamp7@maker.it.test "$(openssl rand -hex 32)" "$CLAIM"
(umask 077
 printf 'pw-%s\n' "$(openssl rand -hex 8)" >"$T/admin.password"
 printf 'pw-%s\n' "$(openssl rand -hex 8)" >"$T/user.password"
 printf '%s\n' "$CLAIM" >"$T/claim")
"$MTE" admin --data "$DATA" stakeholder add root --admin --password-stdin <"$T/admin.password" >/dev/null
"$MTE" admin --data "$DATA" stakeholder add alice --password-stdin <"$T/user.password" >/dev/null
start_server

(cd "$NODE_DIR" && OPENAPI_FILE="$ROOT/src/portal/openapi.json" PORTAL_PORT="$PORTAL_PORT" \
  CA_FILE="$DATA/pki/ca.crt" ADMIN_NAME=root ADMIN_PASSWORD_FILE="$T/admin.password" \
  USER_NAME=alice USER_PASSWORD_FILE="$T/user.password" DEVICE_ID=urn:dev:acme:lamp-7 \
  CLAIM_CODE_FILE="$T/claim" timeout 120 node openapi_check.mjs) >"$T/check.log" 2>&1 || {
  cat "$T/check.log" >&2
  fail "the OpenAPI document and the portal disagree"
}
cat "$T/check.log"
pass "the OpenAPI document is valid, served as is, and matches every route and answer"
