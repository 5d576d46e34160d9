#!/usr/bin/env bash
# One process per role on a data directory: a second `mte serve` for a role that is already
# running there is refused with a clear message and leaves the first one's serve.json alone; a
# process killed with -9 does not leave a lock behind; roles split over processes still start.
source "$(dirname "$0")/lib.sh"

init_mte
start_server
FIRST=${SERVER_PIDS[-1]}
FIRST_JSON=$(cat "$DATA/serve.json")

for roles in mef portal maf portal,mef,maf; do
  rc=0
  timeout 20 "$MTE" serve --data "$DATA" --roles "$roles" >"$T/second.log" 2>&1 || rc=$?
  assert_ne "$rc" 0 "a second 'mte serve --roles $roles' must not start"
  assert_ne "$rc" 124 "a second 'mte serve --roles $roles' must exit at once"
  assert_file_has "$T/second.log" "role is already running on $DATA" "second serve ($roles): the reason"
  assert_file_has "$T/second.log" "held by process $FIRST" "second serve ($roles): which process"
done
assert_eq "$(cat "$DATA/serve.json")" "$FIRST_JSON" "serve.json is still the first process's"
curl -sk --fail "https://127.0.0.1:$PORTAL_PORT/api/v1/health" >/dev/null || fail "the first server stopped answering"
pass "a second process for a running role is refused and the first keeps serving"

kill -KILL "$FIRST"
reap_server "$FIRST"
start_server
pass "after kill -9 the roles start again (the kernel released the locks)"
stop_servers

# Roles in separate processes: each holds only its own lock.
PORTS=($(free_ports 1))
set_config mafDeliveryPort "${PORTS[0]}"
start_server --roles maf
start_server --roles mef,portal
rc=0
timeout 20 "$MTE" serve --data "$DATA" --roles maf >"$T/third.log" 2>&1 || rc=$?
assert_ne "$rc" 0 "a second maf process must not start"
assert_file_has "$T/third.log" "the maf role is already running" "second maf: the reason"
pass "roles split over two processes start, and each role still runs only once"
