#!/usr/bin/env bash
# Training over 4 processes (2 pipeline x 2 expert-parallel ranks, TCP store,
# store backend): with and without overlapping the expert-parallel exchanges,
# every rank ends with the same bits. Must-fail twin: another expert placement
# (more replicas) changes them.
set -uo pipefail
launch="$1"
worker="$2"
fingerprints() {
  local out
  out="$("$launch" -n 4 --timeout 120 -- "$worker" "$@" 2>&1)" || { echo "$out" >&2; return 1; }
  grep -oE "rank [0-9] of 4: fingerprint [0-9a-f]+" <<<"$out" | sort
}
for kind in dualpipe dualpipev zb1p 1f1b; do
  a="$(fingerprints --kind=$kind --overlap=true)" || { echo "FAIL: $kind overlapped run"; exit 1; }
  b="$(fingerprints --kind=$kind --overlap=false)" || { echo "FAIL: $kind serial run"; exit 1; }
  [[ $(wc -l <<<"$a") -eq 4 ]] || { echo "FAIL: $kind: expected 4 ranks, got: $a"; exit 1; }
  [[ "$a" == "$b" ]] || { echo "FAIL: $kind: overlap changed the bits"; echo "$a"; echo "$b"; exit 1; }
  echo "$kind: 4 processes, same bits with and without overlap"
done
c="$(fingerprints --kind=dualpipe --extra_slots=4)" || { echo "FAIL: twin run"; exit 1; }
[[ "$c" != "$(fingerprints --kind=dualpipe)" ]] || { echo "FAIL: the twin did not change the bits"; exit 1; }
echo "multiprocess_overlap_test: passed"
