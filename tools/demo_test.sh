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
# A PP x DP mesh with two EP groups, and a half-speed pipeline rank whose
# stage the partition shrinks.
"$demo" --pp=2 --dp=4 --ep=2 --steps=2 --rebalance_every=1 --out="$out/mesh" >"$out/mesh.log"
grep -q "first step vs sequential training .* (ok," "$out/mesh.log"
check "$out/mesh/report.json" 'd["pp"] == 2 and d["dp"] == 4 and d["ep"] == 2 and len(d["loss"]) == 2'
"$demo" --kind=1f1b --rank_speed=1,1,0.5,1 --steps=2 --out="$out/slow" >"$out/slow.log"
check "$out/slow/report.json" \
  'd["bounds"][3] - d["bounds"][2] < min(d["bounds"][1] - d["bounds"][0], d["bounds"][4] - d["bounds"][3])' \
  'd["bounds"][0] == 0 and len(d["bounds"]) == 5'
# Checkpoint and resume: resuming at step 4 ends with the same fingerprint
# (the whole logical model) as running straight through; on another mesh
# it trains on.
"$demo" --steps=6 --rebalance_every=2 --checkpoint_every=2 --checkpoint_dir="$out/ckpt" --out="$out/a" >"$out/a.log"
ls "$out/ckpt" | sort | tr '\n' ' ' | grep -qx "step-4 step-6 " || { echo "FAIL: kept $(ls "$out/ckpt")"; exit 1; }
"$demo" --steps=6 --rebalance_every=2 --resume_from="$out/ckpt/step-4" --out="$out/b" >"$out/b.log"
a="$(grep -o 'final parameters fingerprint: [0-9a-f]*' "$out/a.log")"
[[ -n "$a" && "$a" == "$(grep -o 'final parameters fingerprint: [0-9a-f]*' "$out/b.log")" ]] ||
  { echo "FAIL: resumed fingerprint differs: $a"; cat "$out/b.log"; exit 1; }
grep -q "^step   4  loss" "$out/b.log" && ! grep -q "^step   3  loss" "$out/b.log"
check "$out/b/report.json" 'd["first_step"] == 4 and len(d["loss"]) == 2 and d["fingerprint"] == d["fingerprint"].lower()'
"$demo" --steps=6 --kind=1f1b --pp=2 --dp=4 --microbatches=4 --units_per_stage=4 --resume_from="$out/ckpt/step-4" \
  --out="$out/c" >"$out/c.log"
grep -q "resumed from .*step-4 at step 4" "$out/c.log"
rc=0
err="$("$demo" --resume_from="$out/none/step-1" --out="$out/other" 2>&1)" || rc=$?
((rc == 2)) && grep -q -- "--resume_from: .*none/step-1" <<<"$err" || { echo "FAIL: missing checkpoint: $rc $err"; exit 1; }
# An emulated network: per pipeline rank the F&B figures of the last step,
# with overlap and without.
for overlap in true false; do
  "$demo" --pp=2 --steps=2 --rebalance_every=0 --ep_link=50:1 --pp_link=10:10 --overlap=$overlap \
    --out="$out/net" >"$out/net.log"
  grep -q "F&B pairs of the last step" "$out/net.log"
  check "$out/net/report.json" 'd["step_ms_median"] > 0' \
    '[r["rank"] for r in d["overlap"]] == [0, 1]' \
    'all(r["pairs"] > 0 and r["fb_ms"] > 0 and r["compute_ms"] > 0 and r["comm_ms"] > 0 for r in d["overlap"])' \
    'all(0 <= r["hidden_fraction"] <= 1 and r["predicted_fb_ms"] > 0 for r in d["overlap"])'
done
# Without one there is nothing to report.
check "$out/report.json" 'd["overlap"] == [] and d["step_ms_median"] > 0'
# Bad flags name themselves and the value, exit 2 at once (regressions:
# --steps=0 and -1 crashed with SIGSEGV, --tokens=0 stalled for a minute,
# --hidden=100000 aborted on allocation).
for flag in "--ep_link=bad" "--pp_link=10:-1" "--ranks_per_node=-2" "--units_per_stage=1" "--steps=0" "--steps=-1" \
  "--tokens=0" "--pp=0" "--ep=-3" "--microbatches=0" "--hidden=0" "--experts=0" "--top_k=9" "--extra_slots=-1" \
  "--rebalance_every=-1" "--hidden=100000" "--dp=0" "--rank_speed=1,0,1,1" "--rank_memory_gb=-1" \
  "--partition=bogus" "--checkpoint_every=-1" "--checkpoint_keep=0"; do
  rc=0
  err="$(ulimit -v 4194304; timeout 20 "$demo" --steps=1 "$flag" --out="$out/other" 2>&1)" || rc=$?
  ((rc == 2)) || { echo "FAIL: $flag: exit $rc, expected 2: $err"; exit 1; }
  grep -q -- "${flag%%=*}: expected .*got '*${flag#*=}" <<<"$err" || { echo "FAIL: $flag: $err"; exit 1; }
done
# Sizes whose product needs more memory than allowed are refused with the
# estimate, before anything is allocated.
rc=0
err="$(ulimit -v 4194304; timeout 20 "$demo" --hidden=60000 --out="$out/other" 2>&1)" || rc=$?
((rc == 2)) || { echo "FAIL: --hidden=60000: exit $rc: $err"; exit 1; }
grep -q "need about .* GiB, over --max_memory_gb" <<<"$err" || { echo "FAIL: --hidden=60000: $err"; exit 1; }
# A backend this build lacks is a clean error that says where it is.
if err="$("$demo" --backend=cuda_local --steps=1 --out="$out/other" 2>&1)"; then
  echo "FAIL: --backend=cuda_local succeeded in the CPU build"; exit 1
fi
grep -q "cuda_local is in the GPU build: bazel run //tools:demo_gpu" <<<"$err" || { echo "FAIL: $err"; exit 1; }
echo "demo_test: passed"
