# Sourced by the benchmark scripts. The caller sets MTE (the mte binary), DATA (the data
# directory), SERVER_PIDS (an array) and BENCH_NAME (for messages).

# start ROLES LOG: one `mte serve` process; waits until it wrote DATA/serve.json.
start() {
  rm -f "$DATA/serve.json"
  "$MTE" serve --data "$DATA" --roles "$1" >>"$2" 2>&1 &
  SERVER_PIDS+=($!)
  local i
  for i in $(seq 200); do
    [[ -f "$DATA/serve.json" ]] && return 0
    kill -0 "${SERVER_PIDS[-1]}" 2>/dev/null || { tail -n 20 "$2" >&2; echo "$BENCH_NAME: mte serve --roles $1 exited" >&2; exit 1; }
    sleep 0.05
  done
  echo "$BENCH_NAME: mte serve --roles $1 did not become ready" >&2
  exit 1
}
