#!/usr/bin/env bash
# Runs one libFuzzer target (docs/fuzzing.md): first every input of its committed seed corpus once
# (a regression replay), then SECONDS of fuzzing that starts from the seeds and from what earlier
# runs in WORKDIR found. New inputs go to WORKDIR/corpus, never into the committed corpus; a
# crashing input is written to WORKDIR/crash-* (leak-*, timeout-*, oom-*) and fails the run.
#
#   fuzz/run.sh BINARY SEED_CORPUS SECONDS WORKDIR
set -euo pipefail
if [[ $# -ne 4 ]]; then
  echo "usage: $0 BINARY SEED_CORPUS SECONDS WORKDIR" >&2
  exit 2
fi
binary=$1 seeds=$2 seconds=$3 work=$4
name=$(basename "$binary")
mkdir -p "$work/corpus"
# An input that takes more than 10 s, or a run above 2 GiB, is a bug of its own.
common=(-artifact_prefix="$work/" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
# Tokens of the input's language (fuzz/dict/NAME.dict), which mutations alone find slowly.
dict="$(dirname "$0")/dict/$name.dict"
if [[ -f $dict ]]; then common+=(-dict="$dict"); fi

shopt -s nullglob
seed_files=("$seeds"/*)
if [[ ${#seed_files[@]} -eq 0 ]]; then
  echo "$name: no seed corpus in $seeds" >&2
  exit 1
fi
echo "$name: replaying ${#seed_files[@]} seed inputs"
"$binary" "${common[@]}" -runs=0 "$seeds" >"$work/replay.log" 2>&1 || {
  cat "$work/replay.log" >&2
  echo "$name: a seed input failed (see above; the input is in $work/)" >&2
  exit 1
}

if [[ $seconds -gt 0 ]]; then
  echo "$name: fuzzing for ${seconds} s"
  "$binary" "${common[@]}" -max_total_time="$seconds" "$work/corpus" "$seeds" \
    >"$work/fuzz.log" 2>&1 || {
    tail -n 60 "$work/fuzz.log" >&2
    echo "$name: crash; the input is in $work/ (reproduce: $binary $work/crash-...)" >&2
    exit 1
  }
  # The last status line ("#N ... cov: C ft: F corp: ...") and the totals.
  { grep -a -E '^#[0-9]+.*cov: ' "$work/fuzz.log" | tail -n 1
    grep -a -E '^stat::(number_of_executed_units|average_exec_per_sec)' "$work/fuzz.log"
  } | sed "s/^/$name: /"
fi
