# Sourced by the benchmark scripts. The caller sets MTE (the mte binary), DATA (the data
# directory), SERVER_PIDS (an array) and BENCH_NAME (for messages); optionally START_PREFIX (an
# array: a command the server runs under, e.g. valgrind) and START_WAIT_S (default 10).

# start ROLES LOG: one `mte serve` process; waits until it wrote DATA/serve.json.
start() {
  rm -f "$DATA/serve.json"
  "${START_PREFIX[@]}" "$MTE" serve --data "$DATA" --roles "$1" >>"$2" 2>&1 &
  SERVER_PIDS+=($!)
  local i
  for i in $(seq $(( ${START_WAIT_S:-10} * 20 ))); do
    [[ -f "$DATA/serve.json" ]] && return 0
    kill -0 "${SERVER_PIDS[-1]}" 2>/dev/null || { tail -n 20 "$2" >&2; echo "$BENCH_NAME: mte serve --roles $1 exited" >&2; exit 1; }
    sleep 0.05
  done
  echo "$BENCH_NAME: mte serve --roles $1 did not become ready" >&2
  exit 1
}
