#!/usr/bin/env bash
# PP x DP meshes with EP inside DP over 8 processes (TCP store, store
# backend): 2 PP x 4 DP (EP 2) and 4 PP x 2 DP (EP 2). Every rank checks its
# first step's gradients against sequential training on the global batch
# (distance < 1e-10, trainer_worker --check_gradients; the twin that a
# missing replica fails it is trainer_test's). A mesh whose EP does not
# divide DP is refused naming it.
set -uo pipefail
launch="$1"
worker="$2"
run() {  # run N ARGS...: the launch's output; fails when a rank fails
  local n="$1"
  shift
  "$launch" -n "$n" --timeout 240 -- "$worker" "$@" 2>&1
}
for mesh in "--pp=2 --dp=4 --ep=2" "--pp=4 --dp=2 --ep=2"; do
  for kind in dualpipe 1f1b zbv; do
    microbatches=$(($(grep -oE 'pp=[0-9]+' <<<"$mesh" | grep -oE '[0-9]+') * 2))
    # shellcheck disable=SC2086
    out="$(run 8 --kind=$kind $mesh --microbatches=$microbatches --steps=2 --check_gradients)" ||
      { echo "FAIL: $kind $mesh"; echo "$out"; exit 1; }
    [[ $(grep -cE 'gradient distance [0-9.e+-]+ over' <<<"$out") -eq 8 ]] ||
      { echo "FAIL: $kind $mesh: expected 8 gradient checks"; echo "$out"; exit 1; }
    echo "$kind $mesh: 8 processes, worst $(grep -oE 'distance [0-9.e+-]+' <<<"$out" | sort -k2 -g | tail -1)"
  done
done
out="$(run 4 --pp=1 --dp=4 --ep=3 --kind=1f1b)" && { echo "FAIL: ep 3 with dp 4 was accepted"; exit 1; }
grep -q "ep 3 does not divide dp 4" <<<"$out" || { echo "FAIL: the refusal does not name the mesh: $out"; exit 1; }
echo "multiprocess_mesh_test: passed"
