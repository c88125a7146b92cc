#!/usr/bin/env bash
# The main job, shortened: trains, checks the first step against sequential
# training, rebalances, and writes its report and pictures; every JSON it
# writes is parsed strictly.
set -euo pipefail
demo="$1"
json_check="$2"
check() { python3 "$json_check" "$@"; }
out="${TEST_TMPDIR:-$(mktemp -d)}/demo"
"$demo" --steps=6 --rebalance_every=3 --out="$out" | tee "$out.log"
grep -q "first step vs sequential training .* (ok, bound 1e-05)" "$out.log"
grep -q "EPLB rebalance: balancedness" "$out.log"
grep -q "<svg" "$out/schedule.svg"
check "$out/report.json" 'd["kind"] == "dualpipe" and d["pp"] == 4 and d["ep"] == 2' \
  'len(d["loss"]) == 6 and d["loss"][-1] < d["loss"][0]' \
  'd["first_step_max_relative_loss_error"] < 1e-5' \
  '[r["step"] for r in d["rebalances"]] == [3]' \
  'len(d["bubble"]) == 4'
check "$out/executor_trace.json" \
  'len({e["args"]["id"] for e in d["traceEvents"] if e["ph"] == "X"}) == len([e for e in d["traceEvents"] if e["ph"] == "X"]) > 0'
# Other kinds and the store backend run too.
for args in "--kind=1f1b --steps=2 --rebalance_every=0" "--kind=dualpipev --pp=2 --steps=2 --backend=store"; do
  log="$("$demo" $args --out="$out/other")"
  grep -q "first step vs sequential training .* (ok," <<<"$log" || { echo "FAIL: $args"; echo "$log"; exit 1; }
  check "$out/other/report.json" 'len(d["loss"]) == 2'
done
# A backend this build lacks is a clean error that says where it is.
if err="$("$demo" --backend=cuda_local --steps=1 --out="$out/other" 2>&1)"; then
  echo "FAIL: --backend=cuda_local succeeded in the CPU build"; exit 1
fi
grep -q "cuda_local is in the GPU build: bazel run //tools:demo_gpu" <<<"$err" || { echo "FAIL: $err"; exit 1; }
echo "demo_test: passed"
