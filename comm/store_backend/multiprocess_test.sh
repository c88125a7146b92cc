#!/usr/bin/env bash
# 4 processes over the TCP store on loopback, started by the launcher; then
# the must-fail twin: one rank exits 3 and the launcher fails fast with it.
set -uo pipefail
launch="$1"
worker="$2"
out="$("$launch" -n 4 --timeout 120 -- "$worker" 2>&1)"
rc=$?
echo "$out"
[[ $rc -eq 0 ]] || { echo "FAIL: launcher exited $rc"; exit 1; }
for r in 0 1 2 3; do
  grep -q "^\[rank $r\] ok: rank $r of 4 passed" <<<"$out" || { echo "FAIL: rank $r did not pass"; exit 1; }
done
start=$(date +%s)
out="$("$launch" -n 4 --timeout 120 -- "$worker" --fail_rank=2 2>&1)"
rc=$?
echo "$out"
[[ $rc -eq 3 ]] || { echo "FAIL: expected status 3 from the failing rank, got $rc"; exit 1; }
grep -q "launch: rank 2 exited with status 3" <<<"$out" || { echo "FAIL: launcher did not name rank 2"; exit 1; }
(( $(date +%s) - start < 60 )) || { echo "FAIL: the launcher did not fail fast"; exit 1; }
echo "multiprocess_test: 4 ranks passed; a failing rank stopped the launch"
