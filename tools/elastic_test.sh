#!/usr/bin/env bash
# Elastic training over 4 processes (tools/launch --elastic, the demo on the
# store backend, a checkpoint every 2 steps): a rank killed with kill -9 at
# a random step between two checkpoints (rank 0, then a middle pipeline
# rank) and a rank stopped with SIGSTOP and resumed after the others
# re-formed. Each run completes its steps, and its final fingerprint
# equals that of an uninterrupted rerun of the survivors' mesh from the
# checkpoint it resumed from (the "resumed from CKPT with: -n M FLAGS"
# line), in the log and in both runs' report.json; the resumed stopped
# rank exits with the fencing message. Prints the recovery times.
set -uo pipefail
launch="$1"
demo="$2"
json_check="$3"
check() { python3 "$json_check" "$@"; }
tmp="${TEST_TMPDIR:-$(mktemp -d)}/elastic"
rm -rf "$tmp"
mkdir -p "$tmp"
base=(--backend=store --rebalance_every=2 --timeout_s=3 --hidden=16 --experts=4 --extra_slots=0)
# The pid of rank $1 of the first membership of this scenario: a process
# named demo (not the launcher's shells) with RANK=$1, TANDEM_GENERATION=0
# and this run's tag.
pid_of() {
  local p env
  for p in $(pgrep -x demo); do
    env="$(tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null)"
    grep -qx "RANK=$1" <<<"$env" && grep -qx "TANDEM_GENERATION=0" <<<"$env" &&
      grep -qx "ELASTIC_TEST_TAG=$ELASTIC_TEST_TAG" <<<"$env" && { echo "$p"; return; }
  done
}
wait_for() {  # wait_for FILE PATTERN SECONDS
  for _ in $(seq $((10 * $3))); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
fingerprint() { grep -oE 'final parameters fingerprint: [0-9a-f]+' "$1" | tail -1 | grep -oE '[0-9a-f]+$'; }

scenario() {  # scenario NAME RANK SIGNAL STEPS MESH_FLAGS...
  local name="$1" rank="$2" signal="$3" steps="$4"
  shift 4
  local dir="$tmp/$name" log="$tmp/$name.log"
  local at=$((2 * (1 + RANDOM % 3)))  # a checkpoint at step 2, 4 or 6
  export ELASTIC_TEST_TAG="$name-$$-$RANDOM"
  "$launch" -n 4 --elastic --grace 8 --timeout 240 -- "$demo" "${base[@]}" --steps="$steps" "$@" --checkpoint_every=2 \
    --checkpoint_keep=100 --checkpoint_dir="$dir" --out="$dir/out" >"$log" 2>&1 &
  local launcher=$!
  wait_for "$log" "checkpoint $dir/step-$at" 120 || { echo "FAIL: $name: no checkpoint at step $at"; cat "$log"; exit 1; }
  sleep "0.$((RANDOM % 3))"
  local victim
  victim="$(pid_of "$rank")"
  [[ -n "$victim" ]] || { echo "FAIL: $name: rank $rank not found"; exit 1; }
  kill -"$signal" "$victim"
  if [[ "$signal" == STOP ]]; then
    wait_for "$log" "resumed from" 120 || { echo "FAIL: $name: no re-formed membership"; cat "$log"; exit 1; }
    kill -CONT "$victim"
  fi
  wait "$launcher" || { echo "FAIL: $name: the elastic launch failed"; cat "$log"; exit 1; }
  local line ckpt n flags
  line="$(grep -oE 'resumed from [^ ]+ with: -n [0-9]+ .*' "$log" | head -1)"
  [[ -n "$line" ]] || { echo "FAIL: $name: no 'resumed from' line"; cat "$log"; exit 1; }
  ckpt="$(awk '{print $3}' <<<"$line")"
  n="$(awk '{print $6}' <<<"$line")"
  flags="$(cut -d' ' -f7- <<<"$line")"
  grep -q "^\[rank 0\] step $((steps - 1)) loss" "$log" || { echo "FAIL: $name: last step missing"; cat "$log"; exit 1; }
  # shellcheck disable=SC2086
  "$launch" -n "$n" --timeout 240 -- "$demo" "${base[@]}" --steps="$steps" $flags --resume_from="$ckpt" --out="$dir/rerun" \
    >"$tmp/$name.rerun.log" 2>&1 || { echo "FAIL: $name: rerun"; cat "$tmp/$name.rerun.log"; exit 1; }
  local a b
  a="$(fingerprint "$log")"
  b="$(fingerprint "$tmp/$name.rerun.log")"
  [[ -n "$a" && "$a" == "$b" ]] || { echo "FAIL: $name: fingerprint $a, rerun $b"; exit 1; }
  # Each run's report (rank 0 of its last membership, here the 3 survivors)
  # says the same.
  local from="${ckpt##*step-}"
  check "$dir/out/report.json" "d['generation'] == 1 and d['fingerprint'] == '$a' and d['first_step'] == $from" \
    "len(d['loss']) == $steps - $from and d['processes'] == 3 and d['pp'] * d['dp'] == $n" ||
    { echo "FAIL: $name: report"; cat "$dir/out/report.json"; exit 1; }
  check "$dir/rerun/report.json" "d['generation'] == 0 and d['fingerprint'] == '$b' and d['processes'] == $n" \
    "d['resumed_from'] == '$ckpt' and len(d['loss']) == $steps - $from" ||
    { echo "FAIL: $name: rerun report"; cat "$dir/rerun/report.json"; exit 1; }
  echo "$name: rank $rank ($signal) after the step-$at checkpoint; re-formed as -n $n $flags from $(basename "$ckpt");" \
    "fingerprint $a = rerun's; $(grep -oE 'recovery: [^[]*' "$log" | tr '\n' ';')" \
    "$(grep -oE 'restarting on [0-9]+ ranks, [0-9]+ ms after the failure was seen' "$log")"
  if [[ "$signal" == STOP ]]; then
    wait_for "$log" "fenced: generation 0 was superseded by generation 1" 30 ||
      { echo "FAIL: $name: the resumed rank did not report the fence"; cat "$log"; exit 1; }
    echo "$name: the resumed rank: $(grep -oE 'fenced: .*' "$log" | head -1)"
  fi
}

scenario killed_rank0 0 KILL 40 --pp=2 --dp=2 --ep=2
scenario killed_middle_pipeline_rank 2 KILL 40 --pp=4 --dp=1 --ep=1 --kind=1f1b --microbatches=8
# Long enough after the re-forming for the resumed rank to meet the store.
scenario stopped_rank 1 STOP 100 --pp=2 --dp=2 --ep=2
echo "elastic_test: passed"
