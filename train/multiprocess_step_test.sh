#!/usr/bin/env bash
# A training step over 4 processes (TCP store, store backend) for several
# kinds: every rank checks its losses and gradients against sequential
# training.
set -uo pipefail
launch="$1"
worker="$2"
for kind in 1f1b zb1p interleaved1f1b zbv dualpipe dualpipev; do
  out="$("$launch" -n 4 --timeout 120 -- "$worker" --kind=$kind --microbatches=8 2>&1)"
  rc=$?
  echo "$out"
  [[ $rc -eq 0 ]] || { echo "FAIL: $kind: launcher exited $rc"; exit 1; }
  [[ $(grep -c "equal sequential training" <<<"$out") -eq 4 ]] || { echo "FAIL: $kind: not every rank passed"; exit 1; }
done
echo "multiprocess_step_test: 6 kinds x 4 processes equal sequential training"
