#!/usr/bin/env bash
# The main job, shortened: trains, checks the first step against sequential
# training, rebalances, and writes its report and pictures.
set -euo pipefail
demo="$1"
out="${TEST_TMPDIR:-$(mktemp -d)}/demo"
"$demo" --steps=6 --rebalance_every=3 --out="$out" | tee "$out.log"
grep -q "first step vs sequential training .* (ok, bound 1e-05)" "$out.log"
grep -q "EPLB rebalance: balancedness" "$out.log"
grep -q '"kind":"dualpipe","pp":4,"ep":2' "$out/report.json"
grep -q "<svg" "$out/schedule.svg"
grep -q '"traceEvents"' "$out/executor_trace.json"
# The loss falls.
python3 - "$out/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert len(r["loss"]) == 6 and r["loss"][-1] < r["loss"][0], r["loss"]
assert r["first_step_max_relative_loss_error"] < 1e-5
PY
# Other kinds and the store backend run too.
for args in "--kind=1f1b --steps=2 --rebalance_every=0" "--kind=dualpipev --pp=2 --steps=2 --backend=store"; do
  log="$("$demo" $args --out="$out/other")"
  grep -q "first step vs sequential training .* (ok," <<<"$log" || { echo "FAIL: $args"; echo "$log"; exit 1; }
done
# A backend this build lacks is a clean error that says where it is.
if err="$("$demo" --backend=cuda_local --steps=1 --out="$out/other" 2>&1)"; then
  echo "FAIL: --backend=cuda_local succeeded in the CPU build"; exit 1
fi
grep -q "cuda_local is in the GPU build: bazel run //tools:demo_gpu" <<<"$err" || { echo "FAIL: $err"; exit 1; }
echo "demo_test: passed"
