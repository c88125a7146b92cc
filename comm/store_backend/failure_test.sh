#!/usr/bin/env bash
# What every rank sees when one fails, over 4 processes and the TCP store
# (operation deadline 5 s, TANDEM_STORE_TIMEOUT=3 s): a rank that stalls is
# named by the others at the deadline; a rank that dies or stops ends the
# launch at once (the launcher sees it) or at the deadline; a store host
# that stops (SIGSTOP) is named by every other rank within the store
# timeout (regression: 71 s and 131 s, naming neither the host nor the
# time); a store host that dies is noticed at once. Prints each detection
# time.
set -uo pipefail
launch="$1"
worker="$2"
# run NAME LIMIT_S PATTERN RANKS ARGS...: every rank in RANKS reports PATTERN
# within LIMIT_S; with RANKS "some:R...", each of them that reports anything
# reports PATTERN and at least one does (the launcher may kill the others
# first, which ends the launch at once anyway).
run() {
  local name="$1" limit="$2" pattern="$3" ranks="$4"
  shift 4
  local start out some=0 reported=0
  [[ "$ranks" == some:* ]] && { some=1; ranks="${ranks#some:}"; }
  start=$(date +%s%N)
  out="$("$launch" -n 4 --timeout 120 --store_timeout 3 -- "$worker" --timeout_s=5 "$@" 2>&1)"
  local took_ms=$((($(date +%s%N) - start) / 1000000))
  for r in $ranks; do
    local line
    line="$(grep -E "^\[rank $r\] (rank $r detected after|error:)" <<<"$out" | head -1)"
    [[ -z "$line" && $some == 1 ]] && continue
    reported=$((reported + 1))
    grep -q -- "$pattern" <<<"$line" || { echo "FAIL: $name: rank $r: '$line'"; echo "$out"; exit 1; }
    local after
    after="$(grep -oE 'detected after [0-9.]+' <<<"$line" | grep -oE '[0-9.]+$' || true)"
    [[ -z "$after" || "${after%.*}" -lt "$limit" ]] || { echo "FAIL: $name: rank $r after $after s"; exit 1; }
  done
  ((some == 0 || reported > 0)) || { echo "FAIL: $name: no rank of $ranks reported"; echo "$out"; exit 1; }
  echo "$name: launch ended after $took_ms ms; $(grep -oE 'rank [0-9] detected after [0-9.]+ s' <<<"$out" | tr '\n' ';')"
}
run "stalled rank 2" 6 "waiting for ranks \[2\] to post it" "0 1 3" --scenario=stall --fail_rank=2
run "killed rank 2" 6 "" "" --scenario=kill --fail_rank=2
run "stopped store host (rank 0)" 4 "store 127.0.0.1:[0-9]* (rank [123]): the store host stopped answering: nothing for 3" \
  "1 2 3" --scenario=stop --fail_rank=0
run "killed store host (rank 0)" 1 "the store host closed the connection" "some:1 2 3" --scenario=kill_store
echo "failure_test: passed"
